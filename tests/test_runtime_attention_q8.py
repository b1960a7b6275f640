"""Int8 attention artifacts (export(quantize_attention=True)) in the native engine: the engine must run the same
QDQ attention ONNX Runtime runs, never silently fall back to fp32 attention, and refuse mixes it cannot run."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from _export_helpers import calibration_for, tiny_model, tokenizer

from hf_fast import native
from hf_fast.runtime.engine import NativeEngine
from hf_fast.runtime.graph import GraphMatchError

# (arch, task, hidden, heads): head size 16 runs the SIMD int8 kernels, 8 the reference fallback; hidden 40 (not a
# multiple of 16) takes the engine's fp32 qkv + quantizer path instead of the segmented uint8 epilogue
CASES = [("bert", "text-classification", 64, 4), ("distilbert", "question-answering", 64, 4),
         ("bert", "token-classification", 32, 4), ("bert", "text-classification", 40, 4)]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    from hf_fast.export import export

    tok = tokenizer()
    out = {}
    for arch, task, hidden, heads in CASES:
        m = tiny_model(arch, task, tok.vocab_size, seed=3, layers=2, hidden=hidden, heads=heads, ffn=2 * hidden,
                       max_pos=64)
        for qa in (True, False):
            d = tmp_path_factory.mktemp(f"{arch}-{task}-{'q8' if qa else 'f32'}")
            export(m, tok, d, calibration_dataset=calibration_for(task), task=task, progress=False,
                   quantize_attention=qa)
            out[(arch, task, qa)] = d
    return out


def _feeds(names, rng, b=3, s=20):
    ids = rng.integers(1000, 30000, size=(b, s)).astype(np.int64)
    mask = np.ones((b, s), np.int64)
    mask[1, s - 6:] = 0  # right padding
    mask[2, :3] = 0      # left padding
    feeds = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in names:
        feeds["token_type_ids"] = (np.arange(s)[None, :] >= s // 2).repeat(b, 0).astype(np.int64)
    return feeds


def _engine(d, isa="auto", model=None):
    fc = json.loads((d / "fast_config.json").read_text())
    return NativeEngine.from_onnx(model or onnx.load(str(d / "model.onnx")), fc["num_heads"], block="4x1", isa=isa)


def _ort(d, feeds):
    sess = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {i.name: feeds[i.name] for i in sess.get_inputs()})
    return dict(zip([o.name for o in sess.get_outputs()], outs, strict=True))


def _diff(got, ref, mask):
    out = {}
    for name, r in ref.items():
        g = got[name]
        valid = mask.astype(bool) if g.ndim >= 2 and g.shape[:2] == mask.shape else None
        dd = np.abs(g - r) if valid is None else np.abs(g - r)[valid]
        out[name] = (dd.max(), dd.mean(), np.abs(r).max() + 1e-6)
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-d{c[2] // c[3]}")
@pytest.mark.parametrize("isa", native.BUILT_ISA_NAMES)  # unsupported ones skip visibly (conftest.py)
def test_engine_runs_the_int8_attention_onnxruntime_runs(artifacts, case, isa):
    arch, task = case[:2]
    d = artifacts[(arch, task, True)]
    eng = _engine(d, isa)
    assert all(lp.attn_quant is not None for lp in eng.plan.layers)
    names = eng.plan.inputs
    feeds = _feeds(names, np.random.default_rng(7))
    ref = _ort(d, feeds)
    for name, (mx, mean, scale) in _diff(eng.run(**feeds), ref, feeds["attention_mask"]).items():
        assert mx <= 0.01 * scale + 1e-4, f"{name}: max |diff| {mx} vs scale {scale}"
        assert mean <= 0.001 * scale + 1e-5, f"{name}: mean |diff| {mean} vs scale {scale}"


@pytest.mark.parametrize("case", CASES[:2], ids=lambda c: f"{c[0]}-{c[1]}")
def test_int8_attention_is_not_silently_run_in_fp32(artifacts, case):
    """The same weights exported with fp32 attention give other outputs: the engine on the int8-attention file must
    be much closer to ONNX Runtime on that file than the fp32-attention engine is."""
    arch, task = case[:2]
    d8, d32 = artifacts[(arch, task, True)], artifacts[(arch, task, False)]
    e8, e32 = _engine(d8), _engine(d32)
    assert all(lp.attn_quant is None for lp in e32.plan.layers)
    feeds = _feeds(e8.plan.inputs, np.random.default_rng(11))
    ref = _ort(d8, feeds)
    same = _diff(e8.run(**feeds), ref, feeds["attention_mask"])
    other = _diff(e32.run(**feeds), ref, feeds["attention_mask"])
    assert sum(v[1] for v in other.values()) > 5 * sum(v[1] for v in same.values()) > 0 or \
        sum(v[1] for v in same.values()) == 0 < sum(v[1] for v in other.values())


def _attention_mms(model):
    return [n for n in model.graph.node if n.op_type == "MatMul" and n.name.endswith(("attention/self/MatMul",
                                                                                        "attention/MatMul",
                                                                                        "attention/self/MatMul_1",
                                                                                        "attention/MatMul_1"))]


def _bypass_qdq(model, node, i):
    """Rewire input i of node to the fp32 tensor its DQ(Q(x)) pair quantizes."""
    prod = {o: n for n in model.graph.node for o in n.output}
    dq = prod[node.input[i]]
    q = prod[dq.input[0]]
    assert dq.op_type == "DequantizeLinear" and q.op_type == "QuantizeLinear"
    node.input[i] = q.input[0]


@pytest.mark.parametrize("which", ["q", "k", "p", "v"])
def test_partially_quantized_attention_is_refused(artifacts, which):
    d = artifacts[("bert", "text-classification", True)]
    model = onnx.load(str(d / "model.onnx"))
    mms = _attention_mms(model)
    score = next(n for n in mms if n.name.endswith("MatMul"))
    ctx = next(n for n in mms if n.name.endswith("MatMul_1"))
    node, i = {"q": (score, 0), "k": (score, 1), "p": (ctx, 0), "v": (ctx, 1)}[which]
    _bypass_qdq(model, node, i)
    with pytest.raises(GraphMatchError, match="quantize only"):
        _engine(d, model=model)


def test_fake_quantized_scores_are_refused(artifacts):
    """A Q/DQ pair on the scores MatMul output (which the engine keeps in fp32) is named, not ignored."""
    d = artifacts[("bert", "text-classification", True)]
    model = onnx.load(str(d / "model.onnx"))
    score = next(n for n in _attention_mms(model) if n.name.endswith("MatMul"))
    out = score.output[0]
    users = [n for n in model.graph.node if out in n.input]
    model.graph.initializer.extend([onnx.numpy_helper.from_array(np.array(0.05, np.float32), "fq_s"),
                                    onnx.numpy_helper.from_array(np.array(128, np.uint8), "fq_z")])
    q = onnx.helper.make_node("QuantizeLinear", [out, "fq_s", "fq_z"], ["fq_q"], name="fq_Q")
    dq = onnx.helper.make_node("DequantizeLinear", ["fq_q", "fq_s", "fq_z"], ["fq_dq"], name="fq_DQ")
    for u in users:
        for j, name in enumerate(u.input):
            if name == out:
                u.input[j] = "fq_dq"
    model.graph.node.extend([q, dq])
    with pytest.raises(GraphMatchError, match="fake-quantized"):
        _engine(d, model=model)


@pytest.mark.parametrize("which,field,value", [("p", "zero_point", 300), ("v", "scale", 0.0),
                                               ("q", "scale", float("nan"))])
def test_bad_attention_quant_params_are_refused_by_the_c_side(artifacts, which, field, value):
    """The C side checks the parameters it is handed, not only the plan builder (engine_set_layer)."""
    from hf_fast.runtime.plan import build_plan

    d = artifacts[("bert", "text-classification", True)]
    fc = json.loads((d / "fast_config.json").read_text())
    plan = build_plan(onnx.load(str(d / "model.onnx")), fc["num_heads"])
    setattr(getattr(plan.layers[1].attn_quant, which), field, value)
    with pytest.raises(ValueError, match=f"int8 attention {which} scale"):
        NativeEngine(plan, block="4x1")
