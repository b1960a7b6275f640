"""OpenVINO as a second baseline for the benchmarks (`hf-fast bench`, benchmarks/bench_engine.py).

OpenVINO is what optimum-intel users deploy on CPUs. It reads the artifact's own int8 QDQ `model.onnx` (the file
the engine and ONNX Runtime run) and compiles it for latency: PERFORMANCE_HINT=LATENCY, one stream,
INFERENCE_NUM_THREADS = the benchmark's threads. Optional: `pip install 'hf-fast[bench]'` (openvino); without it
the benchmarks print NOTE and time the other runtimes.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

NOTE = "no OpenVINO column (openvino is not installed: pip install 'hf-fast[bench]', or pip install openvino)"


def available() -> bool:
    try:
        import openvino  # noqa: F401  (probing the optional dependency)
    except ImportError:
        return False
    return True


def compile_onnx(path: str | Path, threads: int | None = None) -> Callable[[Mapping[str, np.ndarray]], list]:
    """A runner for `path`: feeds {input name: array} (names the graph lacks are dropped, as ONNX Runtime would be
    given them) -> the graph's outputs in order. ImportError when openvino is not installed."""
    import openvino as ov

    cfg = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
    if threads:
        cfg["INFERENCE_NUM_THREADS"] = str(int(threads))
    compiled = ov.Core().compile_model(str(path), "CPU", cfg)
    names = {i.get_any_name() for i in compiled.inputs}
    outputs = list(compiled.outputs)
    req = compiled.create_infer_request()

    def run(feeds: Mapping[str, np.ndarray]) -> list:
        res = req.infer({k: v for k, v in feeds.items() if k in names})
        return [res[o] for o in outputs]

    return run
