"""export(quantize_attention="auto"): int8 attention only in the layers whose output it moves by at most the tolerance,
measured on held-back calibration batches; the per-layer choice is in fast_config.json and in the one model.onnx that
ONNX Runtime and the engine both run; bad values are refused by name."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from _export_helpers import calibration_for, tiny_model, tokenizer  # noqa: E402

from hf_fast.export import attention_auto, export  # noqa: E402
from hf_fast.export.quantize import attention_matmuls  # noqa: E402

TOLERANCE = 0.006  # between the plain layers' error (~0.003) and the ill-conditioned layer's (>= 0.01)


def _ill_conditioned(m, layer: int):
    """Make one layer's attention hard for per-tensor uint8: head 0's q / k 30x larger than the other heads' (their
    q / k then round to a 30x coarser grid, and head 0's softmax is peaked), and the attention branch 10x stronger
    against the residual, so its rounding shows in the layer output."""
    with torch.no_grad():
        enc = m.bert.encoder.layer[layer].attention
        head = m.config.hidden_size // m.config.num_attention_heads
        enc.self.query.weight[:head].mul_(30)
        enc.self.key.weight[:head].mul_(30)
        enc.self.value.weight.mul_(10)
        enc.output.dense.weight.mul_(10)
    return m


@pytest.fixture(scope="module")
def tok():
    return tokenizer()


@pytest.fixture(scope="module")
def auto_artifact(tmp_path_factory, tok):
    m = _ill_conditioned(tiny_model("bert", "text-classification", tok.vocab_size, seed=3, layers=3, hidden=64,
                                    heads=4, ffn=128), 1)
    d = tmp_path_factory.mktemp("auto")
    export(m, tok, d, calibration_dataset=calibration_for("text-classification"), progress=False,
           quantize_attention="auto", attention_tolerance=TOLERANCE)
    return d


def _fed_by_qdq(g, tensor) -> bool:
    producer = {o: n for n in g.node for o in n.output}
    dq = producer.get(tensor)
    return dq is not None and dq.op_type == "DequantizeLinear" and producer.get(dq.input[0]) is not None \
        and producer[dq.input[0]].op_type == "QuantizeLinear"


def test_auto_keeps_fp32_attention_in_the_ill_conditioned_layer_only(auto_artifact):
    q = json.loads((auto_artifact / "fast_config.json").read_text())["quantization"]
    sel = q["attention_selection"]
    errors = sel["errors"]
    assert errors[1] > TOLERANCE >= max(errors[0], errors[2]), errors
    assert q["attention_per_layer"] == sel["layers"] == ["int8", "fp32", "int8"]
    assert q["quantize_attention"] is True and q["num_quantized_attention_matmuls"] == 4
    assert sel["tolerance"] == TOLERANCE and sel["held_back_samples"] >= 1
    assert "attention MatMuls int8 in layers [0, 2]" in (auto_artifact / "README.md").read_text()
    # the artifact itself is calibrated on every sample (the held-back ones calibrated only the probe)
    assert q["calibration_size"] == len(calibration_for("text-classification"))
    # the graph holds exactly that mix: QDQ on both inputs of layers 0 and 2's attention MatMuls, none on layer 1's
    g = onnx.load(str(auto_artifact / "model.onnx")).graph
    names = attention_matmuls(onnx.load(str(auto_artifact / "model.onnx")))
    assert len(names) == 6
    by_name = {n.name: n for n in g.node}
    for k, name in enumerate(names):
        quantized = [_fed_by_qdq(g, t) for t in by_name[name].input]
        assert quantized == ([False, False] if k // 2 == 1 else [True, True]), (name, quantized)
    # no orphan Q/DQ left behind by the stripped layer
    read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    assert all(any(o in read for o in n.output) for n in g.node)


def test_auto_artifact_runs_the_same_mix_in_both_runtimes(auto_artifact):
    from hf_fast.runtime import load_fast_model

    fc = json.loads((auto_artifact / "fast_config.json").read_text())
    eng = load_fast_model(auto_artifact, backend="native", num_threads=1)
    plan = ["int8" if layer.attn_quant is not None else "fp32" for layer in eng.backend.engine.plan.layers]
    assert plan == fc["quantization"]["attention_per_layer"]
    assert [r["attention"] for r in eng.explain(as_dict=True)["layers"]] == plan
    ortm = load_fast_model(auto_artifact, backend="onnxruntime", num_threads=1)
    assert [r["attention"] for r in ortm.explain(as_dict=True)["layers"]] == plan
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30000, size=(3, 20)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 14:] = 0
    a = eng(input_ids=ids, attention_mask=mask).logits.numpy()
    b = ortm(input_ids=ids, attention_mask=mask).logits.numpy()
    assert np.isfinite(a).all() and np.abs(a - b).max() < 0.05 * max(1.0, np.abs(b).max())


def test_strip_attention_qdq_gives_back_the_fp32_attention_graph(tmp_path, tok):
    """Stripping every layer's attention Q/DQ from the all-int8 file computes what the default (fp32-attention)
    export computes from the same calibration."""
    m = tiny_model("bert", "text-classification", tok.vocab_size, seed=1, layers=2, hidden=32, heads=4, ffn=64)
    cal = calibration_for("text-classification")
    q8 = export(m, tok, tmp_path / "q8", calibration_dataset=cal, progress=False, quantize_attention=True)
    f32 = export(m, tok, tmp_path / "f32", calibration_dataset=cal, progress=False)
    proto = onnx.load(str(q8 / "model.onnx"))
    attention_auto.strip_attention_qdq(proto, attention_matmuls(proto))
    ids = np.random.default_rng(2).integers(1000, 30000, size=(2, 16)).astype(np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    stripped = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = ort.InferenceSession(str(f32 / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(stripped.run(None, feed)[0], ref.run(None, feed)[0])
    assert len([n for n in proto.graph.node if n.op_type == "QuantizeLinear"]) == \
        len([n for n in onnx.load(str(f32 / "model.onnx")).graph.node if n.op_type == "QuantizeLinear"])


def test_auto_with_every_layer_fp32_is_the_default_export(tmp_path, tok):
    """Regression: "auto" once calibrated the artifact without its held-back batches, so even with every layer left
    in fp32 it computed something else than the default export (-1.1 F1 on the SQuAD teacher)."""
    m = tiny_model("bert", "text-classification", tok.vocab_size, seed=1, layers=2, hidden=32, heads=4, ffn=64)
    cal = calibration_for("text-classification")
    auto = export(m, tok, tmp_path / "auto", calibration_dataset=cal, progress=False, quantize_attention="auto",
                  attention_tolerance=1e-9)
    f32 = export(m, tok, tmp_path / "f32", calibration_dataset=cal, progress=False)
    q = json.loads((auto / "fast_config.json").read_text())["quantization"]
    assert q["attention_per_layer"] == ["fp32", "fp32"] and q["quantize_attention"] is False
    ids = np.random.default_rng(2).integers(1000, 30000, size=(2, 16)).astype(np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    a, b = (ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, feed)[0]
            for d in (auto, f32))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs,match", [
    ({"quantize_attention": "yes"}, "quantize_attention must be True, False or 'auto'"),
    ({"quantize_attention": 1}, "quantize_attention must be True, False or 'auto'"),
    ({"quantize_attention": True, "attention_tolerance": 0.01}, "attention_tolerance applies to quantize_attention"),
    ({"quantize_attention": "auto", "attention_tolerance": 0.0}, r"attention_tolerance must be a number in \(0, 1\)"),
    ({"quantize_attention": "auto", "attention_tolerance": float("nan")}, "attention_tolerance must be a number"),
    ({"quantize_attention": "auto", "attention_tolerance": True}, "attention_tolerance must be a number"),
    ({"quantize_attention": "auto", "attention_tolerance": "0.01"}, "attention_tolerance must be a number"),
])
def test_bad_values_are_refused(tmp_path, tok, kwargs, match):
    m = tiny_model("bert", "text-classification", tok.vocab_size, layers=1)
    with pytest.raises(ValueError, match=match):
        export(m, tok, tmp_path / "x", calibration_dataset=calibration_for("text-classification"), progress=False,
               **kwargs)
    assert not (tmp_path / "x").exists()


def test_auto_needs_two_calibration_batches(tmp_path, tok):
    m = tiny_model("bert", "text-classification", tok.vocab_size, layers=1)
    with pytest.raises(ValueError, match="at least 2 calibration batches; got 1"):
        export(m, tok, tmp_path / "x", calibration_dataset=calibration_for("text-classification")[:1],
               progress=False, quantize_attention="auto")


def test_cli_quantize_attention_values():
    from hf_fast.cli import build_parser

    p = build_parser()
    base = ["export", "-m", "m", "-o", "o"]
    assert p.parse_args(base).quantize_attention is False
    assert p.parse_args(base + ["--quantize-attention"]).quantize_attention is True
    a = p.parse_args(base + ["--quantize-attention", "auto", "--attention-tolerance", "0.01"])
    assert a.quantize_attention == "auto" and a.attention_tolerance == 0.01
    assert p.parse_args(base + ["--quantize-attention", "off"]).quantize_attention is False
    with pytest.raises(SystemExit):
        p.parse_args(base + ["--quantize-attention", "sometimes"])
