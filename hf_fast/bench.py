"""Latency of one fast folder in the hf-fast engine, ONNX Runtime, OpenVINO (optional: hf_fast/openvino_baseline.py,
on the same model.onnx; skipped with a note when not installed) and (when the folder holds the weights, or
``--pytorch DIR`` names a checkpoint) PyTorch, over a grid of batch sizes and sequence lengths.

    rows = bench_folder("out/fast", batch_sizes=[1, 8], seq_lengths=[32, 128])
    print(format_table(rows)); plot(rows, "bench.png")

Inputs are random in-vocabulary token ids with full attention masks (latency does not depend on the values).
Runners are timed interleaved, round by round, so a busy machine slows them alike; the median is reported.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

RUNTIMES = ("native", "onnxruntime", "openvino", "pytorch")


def make_inputs(fc: Mapping[str, Any], batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000 if fc["vocab_size"] > 2000 else 1, fc["vocab_size"], size=(batch, seq), dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    if "token_type_ids" in fc["inputs"]:
        feeds["token_type_ids"] = np.zeros_like(ids)
    return feeds


def _runners(folder: Path, fc, runtimes: Sequence[str], threads: int | None, pytorch: str | Path | None):
    from hf_fast.runtime.modeling import load_fast_model

    out: dict[str, Callable[[dict[str, np.ndarray]], Any]] = {}
    opts = {} if threads is None else {"num_threads": int(threads)}
    for rt in runtimes:
        if rt == "native" and (fc.get("native_engine") or {}).get("family") is False:
            # an encoder exported by the generic rule: ONNX Runtime runs it, there is no engine column to time
            print(f"hf-fast bench: no native column ({fc['native_engine'].get('reason')})")
            continue
        if rt in ("native", "onnxruntime"):
            m = load_fast_model(folder, backend=rt, **opts)
            out[rt] = lambda f, m=m: m.run(**f)
        elif rt == "openvino":
            from hf_fast import openvino_baseline

            if not openvino_baseline.available():
                print(f"hf-fast bench: {openvino_baseline.NOTE}")
                continue
            out[rt] = openvino_baseline.compile_onnx(folder / "model.onnx", threads)
        elif rt == "pytorch":
            src = Path(pytorch) if pytorch else folder
            if not ((src / "model.safetensors").is_file() or (src / "model.safetensors.index.json").is_file()):
                continue  # an artifact without weights: nothing to run in PyTorch
            from hf_fast._deps import missing

            if missing(("torch",)):  # a runtime-only install: the other columns still run
                print("hf-fast bench: no PyTorch column (torch is not installed: pip install 'hf-fast[train]')")
                continue
            import torch
            import transformers

            from hf_fast.export.tasks import TASKS

            auto = getattr(transformers, str(TASKS[fc["task"]]["auto_class"]))
            tm = auto.from_pretrained(str(src)).eval()
            if threads:
                torch.set_num_threads(int(threads))

            from hf_fast.models import registry

            fam = registry.find(fc["model_type"])  # the PyTorch model takes its family's graph inputs
            names = set(fam.inputs if fam is not None else fc["inputs"])

            def run_pt(f, tm=tm, names=names):
                with torch.inference_mode():
                    return tm(**{k: torch.from_numpy(v) for k, v in f.items() if k in names})
            out[rt] = run_pt
        else:
            raise ValueError(f"unknown runtime {rt!r}: choose from {', '.join(RUNTIMES)}")
    return out


def bench_folder(folder: str | Path, batch_sizes: Iterable[int] = (1,), seq_lengths: Iterable[int] = (128,),
                 runtimes: Sequence[str] = RUNTIMES, iterations: int = 20, warmup: int = 2,
                 threads: int | None = None, pytorch: str | Path | None = None,
                 progress: bool = True) -> list[dict[str, Any]]:
    """-> [{"runtime", "batch_size", "sequence_length", "latency_ms" (median), "p90_ms", "throughput"}, ...]"""
    from hf_fast.export.artifact import load_fast_config

    folder = Path(folder)
    fc = load_fast_config(folder, verify=True)
    if iterations < 1 or warmup < 0:
        raise ValueError("iterations must be >= 1 and warmup >= 0")
    grid = [(int(b), int(s)) for b in batch_sizes for s in seq_lengths]
    for b, s in grid:
        if b < 1 or s < 1:
            raise ValueError(f"batch size and sequence length must be >= 1, got {b}x{s}")
        if s > int(fc.get("max_sequence_length") or fc["max_position_embeddings"]):
            raise ValueError(f"sequence length {s} exceeds the model's {fc['max_sequence_length']} positions")
    runners = _runners(folder, fc, runtimes, threads, pytorch)
    rows = []
    from tqdm.auto import tqdm

    bar = tqdm(total=len(grid) * (warmup + iterations), desc="bench", unit="round", disable=not progress)
    for b, s in grid:
        feeds = make_inputs(fc, b, s)
        times: dict[str, list[float]] = {k: [] for k in runners}
        for i in range(warmup + iterations):
            for name, run in runners.items():
                t0 = time.perf_counter()
                run(feeds)
                dt = time.perf_counter() - t0
                if i >= warmup:
                    times[name].append(dt * 1e3)
            bar.update(1)
        for name, ts in times.items():
            med = statistics.median(ts)
            rows.append({"runtime": name, "batch_size": b, "sequence_length": s, "latency_ms": round(med, 4),
                         "p90_ms": round(float(np.percentile(ts, 90)), 4),
                         "throughput": round(b * 1e3 / med, 2)})
    bar.close()
    return rows


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: one line per (batch, sequence), a latency column per runtime, speed-ups vs ONNX Runtime and
    OpenVINO."""
    names = list(dict.fromkeys(r["runtime"] for r in rows))
    keys = list(dict.fromkeys((r["batch_size"], r["sequence_length"]) for r in rows))
    lat = {(r["runtime"], r["batch_size"], r["sequence_length"]): r["latency_ms"] for r in rows}
    head = "| batch | seq | " + " | ".join(f"{n} (ms)" for n in names)
    extra = [base for base in ("onnxruntime", "openvino") if {"native", base} <= set(names)]
    head += "".join(f" | native vs {base}" for base in extra) + " |"
    lines = [head, "|" + "---|" * (2 + len(names) + len(extra))]
    for b, s in keys:
        cells = [f"{lat[(n, b, s)]:.2f}" if (n, b, s) in lat else "-" for n in names]
        cells += [f"{lat[(base, b, s)] / lat[('native', b, s)]:.2f}x" for base in extra]
        lines.append(f"| {b} | {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """PNG: latency vs batch size (one panel) and vs sequence length (another), a line per runtime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["runtime"] for r in rows))
    bs = sorted({r["batch_size"] for r in rows})
    ss = sorted({r["sequence_length"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    s_fix, b_fix = max(ss), min(bs)
    for n in names:
        mine = [r for r in rows if r["runtime"] == n]
        pts = sorted((r["batch_size"], r["latency_ms"]) for r in mine if r["sequence_length"] == s_fix)
        axes[0].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=n)
        pts = sorted((r["sequence_length"], r["latency_ms"]) for r in mine if r["batch_size"] == b_fix)
        axes[1].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=n)
    axes[0].set(xlabel="batch size", ylabel="latency (ms, median)", title=f"sequence length {s_fix}")
    axes[1].set(xlabel="sequence length", ylabel="latency (ms, median)", title=f"batch size {b_fix}")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ------------------------------------------------------------------ speed for the model card
SPEED_ROUNDS = 5      # at least this many rounds: a median over fewer says little
MAX_SPREAD = 0.10     # rounds further apart than this (relative to their median): no figure on the card


def interleaved_rounds(runners: Mapping[str, Callable[[], Any]], rounds: int = SPEED_ROUNDS, iterations: int = 10,
                       warmup: int = 2, clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Time the runners in ``rounds`` rounds; in each, they take turns run by run (A B A B ...), ``iterations``
    timed runs each. Returns {runner: [median ms of round 1, round 2, ...]}. ``warmup`` untimed turns first."""
    for _ in range(warmup):
        for run in runners.values():
            run()
    out: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(rounds):
        times: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(iterations):
            for name, run in runners.items():
                t0 = clock()
                run()
                times[name].append((clock() - t0) * 1e3)
        for name, ts in times.items():
            out[name].append(statistics.median(ts))
    return out


def _spread(xs: Sequence[float]) -> float:
    med = statistics.median(xs)
    return (max(xs) - min(xs)) / med if med > 0 else float("inf")


def summarize_rounds(per_round: Mapping[str, Sequence[float]], max_spread: float = MAX_SPREAD) -> dict[str, Any]:
    """Median latency per runtime over the rounds, the median per-round speed-up of "native" over "onnxruntime",
    and ``spread``: the largest (max - min) / median over the rounds of any runtime's latency or of the speed-up.
    ``stable`` is spread <= max_spread: rounds that disagree more mean the machine was busy while measuring."""
    if not per_round or any(len(v) < 1 for v in per_round.values()):
        raise ValueError("no timing rounds to summarize")
    lat = {k: round(statistics.median(v), 4) for k, v in per_round.items()}
    series = [list(v) for v in per_round.values()]
    speedup = None
    if {"native", "onnxruntime"} <= set(per_round):
        ratios = [o / n for o, n in zip(per_round["onnxruntime"], per_round["native"], strict=True)]
        speedup = round(statistics.median(ratios), 4)
        series.append(ratios)
    spread = max(_spread(s) for s in series)
    return {"latency_ms": lat, "speedup": speedup, "rounds": len(series[0]), "spread": round(spread, 4),
            "max_spread": max_spread, "stable": bool(spread <= max_spread)}


def quick_speed(folder: str | Path, batch_size: int = 1, sequence_length: int = 128, rounds: int = SPEED_ROUNDS,
                iterations: int = 10, threads: int | None = None, max_spread: float = MAX_SPREAD,
                time_rounds: Callable[..., Mapping[str, Sequence[float]]] | None = None) -> dict[str, Any]:
    """The speed figures for a model card: the hf-fast engine and ONNX Runtime, both on ``threads`` threads
    (default: the engine's), timed interleaved (``interleaved_rounds``, or ``time_rounds`` with its signature).
    -> summarize_rounds(...) + {"batch_size", "sequence_length", "iterations", "threads", "cpu", "isa"}."""
    import hf_fast
    from hf_fast.export.artifact import load_fast_config

    if rounds < SPEED_ROUNDS:
        raise ValueError(f"rounds must be >= {SPEED_ROUNDS} (a median over fewer rounds says little), got {rounds}")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    folder = Path(folder)
    fc = load_fast_config(folder, verify=False)
    seq = min(int(sequence_length), int(fc.get("max_sequence_length") or fc["max_position_embeddings"]))
    info = hf_fast.native_info()
    threads = int(threads or info["threads"])
    runners = _runners(folder, fc, ("native", "onnxruntime"), threads, None)
    feeds = make_inputs(fc, batch_size, seq)
    timer = time_rounds or interleaved_rounds  # looked up now, so tests can substitute the module's function
    per_round = timer({k: (lambda run=run: run(feeds)) for k, run in runners.items()}, rounds=rounds,
                      iterations=iterations)
    return {**summarize_rounds(per_round, max_spread), "batch_size": int(batch_size), "sequence_length": seq,
            "iterations": iterations, "threads": threads, "cpu": info.get("cpu"), "isa": info.get("isa")}
