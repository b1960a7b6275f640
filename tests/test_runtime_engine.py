"""Native engine vs ONNX Runtime on the same exported artifact (tiny random models, every task)."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from _export_helpers import calibration_for, tiny_model

from hf_fast import native
from hf_fast.runtime.engine import NativeEngine
from hf_fast.runtime.graph import GraphMatchError

TASKS = ["text-classification", "question-answering", "token-classification"]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, tok):
    """Plain exports (dedicated Q/DQ per MatMul: fp32 residuals, no smoothing), SmoothQuant exports ("bert-smooth",
    ...: a Mul by a per-channel 1/s in front of every encoder Linear's QuantizeLinear), and for text classification
    also the shared-Q/DQ layout ("bert-shared", ...) in which the residual Adds read the uint8-rounded tensor."""
    from hf_fast.export import export

    out = {}
    for arch in ("bert", "distilbert"):
        for task in TASKS:
            m = tiny_model(arch, task, tok.vocab_size, seed=1, layers=2, hidden=32, heads=4, ffn=64, max_pos=64)
            d = tmp_path_factory.mktemp(f"{arch}-{task}")
            export(m, tok, d, calibration_dataset=calibration_for(task), task=task, progress=False, smooth_quant=None)
            out[(arch, task)] = d
            d = tmp_path_factory.mktemp(f"{arch}-smooth-{task}")
            export(m, tok, d, calibration_dataset=calibration_for(task), task=task, progress=False, smooth_quant=0.8)
            out[(f"{arch}-smooth", task)] = d
            if task == "text-classification":
                d = tmp_path_factory.mktemp(f"{arch}-shared-{task}")
                export(m, tok, d, calibration_dataset=calibration_for(task), task=task, progress=False,
                       quantize_residuals=True)
                out[(f"{arch}-shared", task)] = d
    return out


def _feeds(names, rng, b=3, s=12, vocab=30522):
    ids = rng.integers(1000, vocab, size=(b, s)).astype(np.int64)
    mask = np.ones((b, s), np.int64)
    mask[1, s - 4:] = 0  # right padding
    mask[2, :2] = 0      # left padding
    feeds = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in names:
        tt = np.zeros((b, s), np.int64)
        tt[:, s // 2:] = 1
        feeds["token_type_ids"] = tt
    return feeds


def _load(d):
    fc = json.loads((d / "fast_config.json").read_text())
    return onnx.load(str(d / "model.onnx")), fc


@pytest.mark.parametrize("arch, task", [(a, t) for a in ("bert", "distilbert", "bert-smooth", "distilbert-smooth")
                                        for t in TASKS]
                         + [("bert-shared", "text-classification"), ("distilbert-shared", "text-classification")])
@pytest.mark.parametrize("isa", native.BUILT_ISA_NAMES)  # unsupported ones skip visibly (conftest.py)
def test_engine_matches_onnxruntime_on_same_file(artifacts, arch, task, isa):
    d = artifacts[(arch, task)]
    model, fc = _load(d)
    eng = NativeEngine.from_onnx(model, fc["num_heads"], block="4x1", isa=isa)
    sess = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    feeds = _feeds(names, np.random.default_rng(5))
    ref = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=False))
    got = eng.run(**feeds)
    assert set(got) == set(ref)
    for name, r in ref.items():
        g = got[name]
        assert g.shape == r.shape, name
        per_token = g.ndim >= 2 and g.shape[:2] == feeds["input_ids"].shape
        valid = feeds["attention_mask"].astype(bool) if per_token else None
        diff = np.abs(g - r) if valid is None else np.abs(g - r)[valid]
        scale = np.abs(r).max() + 1e-6
        # same int8 weights, activation scales and fake-quantized residuals: only fp32 rounding (GELU, LN,
        # softmax order) and the rare u8 rounding flip it causes separate the two
        assert diff.max() <= 0.01 * scale + 1e-4, f"{name}: max |diff| {diff.max()} vs scale {scale}"
        assert diff.mean() <= 0.001 * scale + 1e-5, f"{name}: mean |diff| {diff.mean()} vs scale {scale}"
    # shared Q/DQ pairs: the residual Adds read the fake-quantized tensor, and the engine must do the same
    shared = arch.endswith("-shared")
    assert all(lp.in_fq == shared and lp.mid_fq == shared for lp in eng.plan.layers)
    # SmoothQuant: all four inputs of every layer carry their 1/s (Q, K and V share the LayerNorm output's)
    smooth = arch.endswith("-smooth")
    for lp in eng.plan.layers:
        lins = (lp.q, lp.k, lp.v, lp.attn_out, lp.ffn_in, lp.ffn_out)
        assert all((x.in_mul is not None) == smooth for x in lins)
        if smooth:
            assert np.array_equal(lp.q.in_mul, lp.v.in_mul) and lp.ffn_out.in_mul.shape == (eng.plan.ffn,)


def _smooth_mul_nodes(model):
    return {n.name: n for n in model.graph.node if n.name.endswith("_smooth/Mul")}


def test_smoothing_vector_is_really_applied(artifacts):
    """An all-ones 1/s must equal no Mul at all, and a doubled one must change the engine's output the way it
    changes ONNX Runtime's (the multiplier is not matched and then dropped)."""
    d = artifacts[("bert-smooth", "text-classification")]
    model, fc = _load(d)
    feeds = _feeds(["token_type_ids"], np.random.default_rng(4))
    for factor in (0.0, 2.0):
        m = onnx.ModelProto()
        m.CopyFrom(model)
        for init in m.graph.initializer:
            if init.name.endswith("_smooth_inv"):
                a = onnx.numpy_helper.to_array(init)
                init.CopyFrom(onnx.numpy_helper.from_array((a * factor + (factor == 0)).astype(np.float32), init.name))
        ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(["logits"], feeds)[0]
        got = NativeEngine.from_onnx(m, fc["num_heads"]).run(**feeds)["logits"]
        assert np.abs(got - ref).max() <= 0.01 * np.abs(ref).max() + 1e-4


@pytest.mark.parametrize("where", ["embeddings/LayerNorm", "attention/self/Reshape_3", "intermediate_act_fn",
                                   "output/LayerNorm"])
def test_other_op_in_place_of_the_smoothing_mul_is_named(artifacts, where):
    model, fc = _load(artifacts[("bert-smooth", "text-classification")])
    node = next(n for name, n in _smooth_mul_nodes(model).items() if where in name)
    node.op_type, node.name = "Add", "my_add"
    with pytest.raises(GraphMatchError, match="Add.*my_add"):
        NativeEngine.from_onnx(model, fc["num_heads"])


@pytest.mark.parametrize("lie", ["short", "long", "nan", "inf", "matrix"])
def test_lying_smoothing_vector_is_refused(artifacts, lie):
    """A 1/s of the wrong length, non-finite or not a per-channel vector: a typed error, never a read out of bounds."""
    model, fc = _load(artifacts[("bert-smooth", "text-classification")])
    init = next(i for i in model.graph.initializer if i.name.endswith("_smooth_inv"))
    a = onnx.numpy_helper.to_array(init).copy()
    if lie == "short":
        a = a[:-3]
    elif lie == "long":
        a = np.concatenate([a, a])
    elif lie in ("nan", "inf"):
        a[1] = np.nan if lie == "nan" else np.inf
    else:
        a = np.tile(a[:, None], (1, a.size))
    init.CopyFrom(onnx.numpy_helper.from_array(a.astype(np.float32), init.name))
    with pytest.raises(GraphMatchError, match="smoothing vector|Mul"):
        NativeEngine.from_onnx(model, fc["num_heads"])


def test_engine_is_deterministic_across_threads_and_block_shapes(artifacts):
    model, fc = _load(artifacts[("bert", "text-classification")])
    feeds = _feeds(["token_type_ids"], np.random.default_rng(2), b=4, s=16)
    outs = []
    for th in (1, 2):
        with native.num_threads(th):
            for block in ("4x1", "1x4", None):
                outs.append(NativeEngine.from_onnx(model, fc["num_heads"], block=block).run(**feeds)["logits"])
    for o in outs[1:]:
        np.testing.assert_allclose(o, outs[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("task", ["text-classification", "token-classification"])
def test_batch_of_several_passes_matches_each_sequence_alone(artifacts, task):
    """hf_engine_run runs a batch in passes of ~512 tokens (HF_TOKENS_PER_PASS): 45 x 24 = 1080 tokens make 3 passes
    (21 + 21 + 3 sequences); every sequence's outputs, masks and token types included, must be bit for bit its own
    run (a wrong offset into ids / mask / types / out would mix sequences or leave rows unwritten)."""
    model, fc = _load(artifacts[("bert", task)])
    eng = NativeEngine.from_onnx(model, fc["num_heads"])
    rng = np.random.default_rng(11)
    b, s = 45, 24
    ids = rng.integers(1000, 30000, size=(b, s)).astype(np.int64)
    mask = (rng.random((b, s)) > 0.2).astype(np.int64)
    mask[:, 0] = 1
    types = (rng.random((b, s)) > 0.5).astype(np.int64)
    key = "logits"
    whole = eng.run(ids, mask, types)[key]
    assert whole.shape[0] == b
    for i in (0, 20, 21, 22, 41, 42, 44):
        alone = eng.run(ids[i:i + 1], mask[i:i + 1], types[i:i + 1])[key]
        np.testing.assert_array_equal(whole[i:i + 1], alone)


def test_padding_does_not_change_valid_outputs(artifacts):
    model, fc = _load(artifacts[("bert", "text-classification")])
    eng = NativeEngine.from_onnx(model, fc["num_heads"])
    rng = np.random.default_rng(9)
    ids = rng.integers(1000, 30000, size=(1, 10)).astype(np.int64)
    short = eng.run(ids, np.ones_like(ids), np.zeros_like(ids))["logits"]
    padded_ids = np.concatenate([ids, np.zeros((1, 6), np.int64)], 1)
    mask = np.concatenate([np.ones((1, 10), np.int64), np.zeros((1, 6), np.int64)], 1)
    padded = eng.run(padded_ids, mask, np.zeros_like(padded_ids))["logits"]
    np.testing.assert_allclose(padded, short, rtol=1e-5, atol=1e-6)


def test_engine_rejects_bad_inputs(artifacts):
    model, fc = _load(artifacts[("distilbert", "question-answering")])
    eng = NativeEngine.from_onnx(model, fc["num_heads"])
    ids = np.ones((2, 8), np.int64)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        eng.run(np.full((2, 8), 10**6, np.int64), np.ones((2, 8), np.int64))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        eng.run(-ids, np.ones((2, 8), np.int64))
    with pytest.raises(ValueError, match="exceeds"):
        eng.run(np.ones((1, 65), np.int64))
    with pytest.raises(ValueError, match="empty"):
        eng.run(np.ones((0, 8), np.int64))
    with pytest.raises(ValueError, match="shape"):
        eng.run(ids, np.ones((2, 7), np.int64))
    with pytest.raises(TypeError, match="integers"):
        eng.run(ids.astype(np.float32))
    with pytest.raises(ValueError, match="2-D"):
        eng.run(ids[0])
    # non-contiguous input is copied, not misread
    wide = np.ones((2, 16), np.int64) * 1234
    a = eng.run(wide[:, ::2])
    b = eng.run(np.ascontiguousarray(wide[:, ::2]))
    np.testing.assert_array_equal(a["start_logits"], b["start_logits"])


def test_config_that_does_not_match_graph_is_refused(artifacts):
    model, fc = _load(artifacts[("bert", "text-classification")])
    with pytest.raises(GraphMatchError, match="does not match"):
        NativeEngine.from_onnx(model, fc["num_heads"] * 2)


def test_float_graph_is_refused_with_a_clear_error(tmp_path, tok):
    from hf_fast.export import export

    m = tiny_model("bert", "text-classification", tok.vocab_size)
    d = export(m, tok, tmp_path / "a", calibration_dataset=calibration_for("text-classification"),
               keep_fp32=True, progress=False)
    with pytest.raises(GraphMatchError, match="float weight"):
        NativeEngine.from_onnx(onnx.load(str(d / "model_fp32.onnx")), 4)


def test_unsupported_op_in_head_is_named(artifacts):
    model, fc = _load(artifacts[("bert", "token-classification")])
    g = model.graph
    out = g.output[0].name
    # route the logits through an op the engine does not know
    for n in g.node:
        for i, o in enumerate(n.output):
            if o == out:
                n.output[i] = out + "_pre"
    g.node.append(onnx.helper.make_node("Sigmoid", [out + "_pre"], [out], name="my_sigmoid"))
    with pytest.raises(GraphMatchError, match="Sigmoid"):
        NativeEngine.from_onnx(model, fc["num_heads"])


@pytest.mark.parametrize("how", ["no_input", "cycle"])
def test_malformed_identity_on_a_constant_is_a_graph_error(artifacts, how):
    """A Constant the matcher reads (e.g. the embeddings' gather index) turned into an Identity with no input, or
    Identities that read each other (what the graph fuzzer produced): a GraphMatchError, not an IndexError or a
    RecursionError."""
    model, fc = _load(artifacts[("bert", "text-classification")])
    const = [n for n in model.graph.node if n.op_type == "Constant"]
    assert const
    for n in const:
        n.op_type = "Identity"
        del n.attribute[:]
        if how == "cycle":
            n.input[:] = [n.output[0]]
    with pytest.raises(GraphMatchError, match="Identity"):
        NativeEngine.from_onnx(model, fc["num_heads"])
