"""Several artifacts' native engines (and ONNX Runtime int8) timed in one process, interleaved call by call.

On a noisy VM the engines' difference is smaller than the drift between separate runs, so this times them side by
side: each round makes one timed call of every runner (after warm-up calls of the same runner, so it finds its own
weights in cache), for --seconds per shape; medians of process CPU time (1 thread: the work of this process only) and
wall time. `--ort` adds ONNX Runtime on each artifact's model_int8_dynamic.onnx (bench_engine.py writes it: the
per-channel quantize_dynamic of the same fp32 export) and on its model.onnx, and reports the engine against the
faster of the two.

    python benchmarks/engines_interleaved.py benchmarks/out/engine_models_s18/distilbert_s80 \\
        benchmarks/out/engine_models_s18/distilbert_s80_b4x4 --shapes 1x128 8x128 1x384 --seconds 30 --ort
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", type=Path, help="artifact directories; the first is the reference")
    ap.add_argument("--shapes", nargs="+", default=["1x128"], help="BATCHxSEQ")
    ap.add_argument("--seconds", type=float, default=30.0, help="per shape")
    ap.add_argument("--warm-calls", type=int, default=2, help="calls of a runner per round (the last one timed)")
    ap.add_argument("--ort", action="store_true", help="also ONNX Runtime int8 (1 intra-op thread) on each artifact")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)

    import numpy as np
    from latency_target import interleaved

    from hf_fast import native
    from hf_fast.runtime import load_fast_model

    native.set_num_threads(1)
    names = [f"{p.parent.name}/{p.name}" for p in a.models]
    engines = {n: load_fast_model(p, backend="native", num_threads=1) for n, p in zip(names, a.models, strict=True)}
    sessions = {}
    if a.ort:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
        for n, p in zip(names, a.models, strict=True):
            for f in ("model_int8_dynamic.onnx", "model.onnx"):
                if (p / f).is_file():
                    sessions[f"{n} ORT {f}"] = ort.InferenceSession(str(p / f), so, providers=["CPUExecutionProvider"])
    print(f"machine: hf-fast ISA {native.native_info().get('isa')}, {os.cpu_count()} CPUs, 1 thread, load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    out = {"models": [str(p) for p in a.models], "isa": native.native_info().get("isa"), "shapes": {}}
    for shape in a.shapes:
        b, s = (int(v) for v in shape.split("x"))
        rng = np.random.default_rng(0)
        ids = rng.integers(1000, 20000, (b, s)).astype(np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        runners = {n: (lambda e=e, feed=feed: e(**feed)) for n, e in engines.items()}
        for n, sess in sessions.items():
            names_in = {i.name for i in sess.get_inputs()}
            f = {k: v for k, v in {**feed, "token_type_ids": np.zeros_like(ids)}.items() if k in names_in}
            runners[n] = (lambda sess=sess, f=f: sess.run(None, f))
        t = interleaved(runners, a.seconds, warm_calls=a.warm_calls)
        out["shapes"][shape] = t
        ref = t[names[0]]["cpu_ms"]
        print(f"\n{shape} ({t[names[0]]['rounds']} rounds): median process CPU ms (wall ms)", flush=True)
        for n in names:
            line = f"  {n}: {t[n]['cpu_ms']:.2f} ({t[n]['wall_ms']:.2f}), {ref / t[n]['cpu_ms']:.2f}x the first"
            orts = [t[k]["cpu_ms"] for k in sessions if k.startswith(f"{n} ORT ")]
            if orts:
                line += f"; vs best ONNX Runtime int8 {min(orts):.2f} ms: {min(orts) / t[n]['cpu_ms']:.2f}x"
            print(line, flush=True)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
