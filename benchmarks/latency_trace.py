"""Per-second latency trace of one runtime in one process: the median of each second of back-to-back calls.

thread_scaling.py gives one median per cell; this shows how a cell's speed moves within a process. On this shared VM
the engine's 2-thread latency flips between two levels for seconds to minutes at a time (1x384, 80%: 8.7 and 13.1 ms
in one process) while its 1-thread latency stays put; perf shows both threads busy in the same functions in both
levels, only slower in the second, as if the two vCPUs then shared one physical core.

Run: python benchmarks/latency_trace.py benchmarks/out/engine_models_v5/distilbert_s80_qa --shape 1x384 --threads 2
     python benchmarks/latency_trace.py MODEL --backend onnxruntime-dynamic --shape 1x128 --threads 2 --seconds 15
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def runner(model: str, backend: str, threads: int):
    """A callable taking the feed dict: the FastModel for native / onnxruntime, a bare session for ORT dynamic."""
    if backend == "onnxruntime-dynamic":  # as thread_scaling.cell: ORT's own dynamic int8 of the same fp32 export
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(str(Path(model) / "model_int8_dynamic.onnx"), so,
                                    providers=["CPUExecutionProvider"])
        return lambda feed: sess.run(None, feed)
    sys.path.insert(0, str(REPO))
    from hf_fast.runtime import load_fast_model

    fm = load_fast_model(model, backend=backend, num_threads=threads)
    return lambda feed: fm(**feed)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="fast artifact directory")
    ap.add_argument("--backend", default="native", choices=["native", "onnxruntime", "onnxruntime-dynamic"])
    ap.add_argument("--shape", default="1x128", help="batch x sequence")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=10, help="how many one-second buckets")
    a = ap.parse_args(argv)
    b, s = (int(x) for x in a.shape.split("x"))
    run = runner(a.model, a.backend, a.threads)
    rng = np.random.default_rng(0)
    feed = {"input_ids": rng.integers(1000, 20000, (b, s)).astype(np.int64),
            "attention_mask": np.ones((b, s), np.int64)}
    for _ in range(3):
        run(feed)
    medians = []
    for _ in range(a.seconds):
        ts, end = [], time.time() + 1.0
        while time.time() < end:
            t0 = time.perf_counter()
            run(feed)
            ts.append((time.perf_counter() - t0) * 1e3)
        medians.append(round(float(np.median(ts)), 2))
    print(f"{a.backend} {a.shape} {a.threads} thread(s), ms per second of calls: {medians}")
    return medians


if __name__ == "__main__":
    main()
