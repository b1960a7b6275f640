"""OpenVINO as the benchmarks' second baseline (hf_fast/openvino_baseline.py): it runs the artifact's own model.onnx
and agrees with ONNX Runtime on it; without openvino the benchmark prints the install note and times the rest."""
from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("torch")

from _fuzz_helpers import micro_artifact, valid_inputs  # noqa: E402

from hf_fast import bench, openvino_baseline  # noqa: E402


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return micro_artifact(tmp_path_factory.mktemp("ov") / "bert", "bert", "text-classification")


def test_openvino_runs_the_same_model_onnx(art):
    pytest.importorskip("openvino")
    import onnxruntime as ort

    feeds = valid_inputs("bert", b=3, s=7)
    feeds["attention_mask"][1, 4:] = 0
    got = openvino_baseline.compile_onnx(art / "model.onnx", threads=1)(feeds)
    want = ort.InferenceSession(str(art / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert len(got) == len(want) and got[0].shape == want[0].shape == (3, 3)
    # int8 QDQ in both; OpenVINO may run the fp32 parts in bf16 on CPUs that have it
    np.testing.assert_allclose(got[0], want[0], atol=0.05 * (np.abs(want[0]).max() + 1e-3))


def test_bench_times_openvino_in_the_same_run(art):
    pytest.importorskip("openvino")
    rows = bench.bench_folder(art, [2], [8], runtimes=("native", "onnxruntime", "openvino"), iterations=2, warmup=0,
                              threads=1, progress=False)
    assert {r["runtime"] for r in rows} == {"native", "onnxruntime", "openvino"}
    assert all(r["latency_ms"] > 0 for r in rows)
    table = bench.format_table(rows)
    assert "| openvino (ms) |" in table and "native vs openvino |" in table


def test_bench_without_openvino_prints_the_note(art, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    assert not openvino_baseline.available()
    rows = bench.bench_folder(art, [1], [8], runtimes=("native", "onnxruntime", "openvino"), iterations=1, warmup=0,
                              threads=1, progress=False)
    assert "no OpenVINO column (openvino is not installed" in capsys.readouterr().out
    assert {r["runtime"] for r in rows} == {"native", "onnxruntime"}
    assert "openvino" not in bench.format_table(rows)
