"""Thread scaling of the engine and of ONNX Runtime, each measured alone in a fresh process.

bench_engine.py times every runtime in one process; there ONNX Runtime's intra-op threads (which spin after each
run by default) and torch's OpenMP threads keep the second core busy while the engine runs, so its 2-thread figures
understate everyone's scaling. Here each (model, backend, threads, shape) cell is its own subprocess: load, 3 warm-up
calls, then median latency over `--seconds` of back-to-back calls on random token ids. For each (model, shape), every
round runs every backend at every thread count back to back (engine 1, 2, ORT 1, 2, ...), `--rounds` rounds, and the
tables give the median over rounds with the spread, and the engine's ratio to the best ONNX Runtime with its range
over rounds (each round's ratio compares runs seconds apart): on this shared VM the second core's speed drifts over
minutes, so one pass per cell, or the engine's rows and ONNX Runtime's minutes apart, can mislead.

Run:
  python benchmarks/thread_scaling.py benchmarks/out/engine_models_v3/distilbert_s80 \\
      benchmarks/out/engine_models_v3/distilbert_s0
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cell(model: str, backend: str, threads: int, batch: int, seq: int, seconds: float) -> float:
    """Median ms of one configuration, measured in this process."""
    import time

    import numpy as np

    sys.path.insert(0, str(REPO))
    from hf_fast.runtime import load_fast_model

    rng = np.random.default_rng(0)
    feed = {"input_ids": rng.integers(1000, 20000, (batch, seq)).astype(np.int64),
            "attention_mask": np.ones((batch, seq), np.int64)}
    if backend == "onnxruntime-dynamic":  # ORT's own dynamic int8 of the same fp32 export (bench_engine.py writes it)
        import onnxruntime as ort

        path = Path(model) / "model_int8_dynamic.onnx"
        if not path.is_file():
            raise SystemExit(f"{path} is missing: benchmarks/bench_engine.py writes it next to model_fp32.onnx")
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        fm = lambda **f: sess.run(None, f)  # noqa: E731  (no wrapper: if anything, ORT is favoured)
    else:
        fm = load_fast_model(model, backend=backend, num_threads=threads)
    for _ in range(3):
        fm(**feed)
    ts, end = [], time.time() + seconds
    while time.time() < end:
        t0 = time.perf_counter()
        fm(**feed)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts) * 1e3)


def _name(model: str) -> str:
    """parent/name: artifact folders are often called alike (student_distilled_int8) under different runs."""
    return f"{Path(model).parent.name}/{Path(model).name}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", help="artifact directories")
    ap.add_argument("--shapes", nargs="+", default=["1x128", "8x128"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--backends", nargs="+", default=["native", "onnxruntime"],
                    help="native, onnxruntime (the artifact's model.onnx) and/or onnxruntime-dynamic "
                         "(model_int8_dynamic.onnx)")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=3, help="passes over each row's thread counts, alternating")
    ap.add_argument("--json", default=None, help="write the rows here")
    ap.add_argument("--cell", nargs=5, help=argparse.SUPPRESS)  # internal: model backend threads batch seq
    a = ap.parse_args(argv)
    if a.cell:
        m, be, th, b, s = a.cell
        print(json.dumps(cell(m, be, int(th), int(b), int(s), a.seconds)))
        return None
    if not a.models:
        ap.error("give at least one artifact directory")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # torch is imported but not timed: keep its pool small
    import numpy as np

    sys.path.insert(0, str(REPO))
    from hf_fast import native

    print(f"machine: hf-fast ISA {native.native_info().get('isa')}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f} at the start; {a.rounds} rounds x {a.seconds:g} s per cell", flush=True)
    rows = []
    print("| model | backend | batch x seq | " + " | ".join(f"{t} thr ms (min-max)" for t in a.threads) +
          f" | speed-up {a.threads[-1]} vs {a.threads[0]} |\n|---|---|---|" + "---|" * (len(a.threads) + 1), flush=True)
    ort_be = [be for be in a.backends if be.startswith("onnxruntime")]
    # every round runs every backend at every thread count, one cell after the other: the VM's speed (and the second
    # vCPU's, which drifts for minutes at a time) is then the same for the engine and ONNX Runtime within a round, and
    # the per-round ratios below compare runs seconds apart (session 8: with all engine rows first, a slow phase of
    # the second vCPU hit only the engine's 2-thread cells)
    ratios = []
    for m in a.models:
        for shape in a.shapes:
            b, s = shape.split("x")
            runs = {be: {th: [] for th in a.threads} for be in a.backends}
            for _ in range(a.rounds):
                for be in a.backends:
                    for th in a.threads:
                        out = subprocess.run([sys.executable, __file__, "--seconds", str(a.seconds), "--cell", m, be,
                                              str(th), b, s], capture_output=True, text=True, env=env, check=True)
                        runs[be][th].append(json.loads(out.stdout.strip().splitlines()[-1]))
            for be in a.backends:
                ms = [float(np.median(runs[be][th])) for th in a.threads]
                rows.append({"model": m, "backend": be, "shape": shape, "ms": dict(zip(a.threads, ms, strict=False)),
                             "rounds": {str(k): v for k, v in runs[be].items()}})
                print(f"| {_name(m)} | {be} | {shape} | " +
                      " | ".join(f"{x:.2f} ({min(runs[be][th]):.2f}-{max(runs[be][th]):.2f})"
                                 for x, th in zip(ms, a.threads, strict=False))
                      + f" | {ms[0] / ms[-1]:.2f}x |", flush=True)
            if "native" in a.backends and ort_be:
                per_round = {th: [min(runs[o][th][r] for o in ort_be) / runs["native"][th][r] for r in range(a.rounds)]
                             for th in a.threads}
                med = {th: min(float(np.median(runs[o][th])) for o in ort_be) / float(np.median(runs["native"][th]))
                       for th in a.threads}
                ratios.append((m, shape, med, per_round))
    if ratios:
        print("\n| model | batch x seq | " + " | ".join(f"engine vs best ORT ({' / '.join(ort_be)}), {t} thr "
                                                     "(per-round min-max)" for t in a.threads) +
              " |\n|---|---|" + "---|" * len(a.threads))
        for m, shape, med, per_round in ratios:
            print(f"| {_name(m)} | {shape} | " + " | ".join(
                f"{med[t]:.2f}x ({min(per_round[t]):.2f}-{max(per_round[t]):.2f})" for t in a.threads) + " |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
