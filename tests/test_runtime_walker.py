"""runtime/walker.py, the one ONNX graph walker: paths on small hand-made graphs (a match, a mismatch named by node,
optional and repeated steps, Q/DQ folding), and the registry's layer pattern on real exports (the exporter's
quantizer and the runtime plan read the same match), with the refusal messages of a graph that differs."""
import dataclasses
import json

import numpy as np
import onnx
import pytest
from _export_helpers import calibration_for, tiny_model
from onnx import TensorProto, helper, numpy_helper

from hf_fast.export.onnx_export import module_path
from hf_fast.export.quantize import check_attention_qdq, encoder_matmuls
from hf_fast.models import patterns, registry
from hf_fast.runtime.graph import GraphMatchError, LogicalGraph
from hf_fast.runtime.plan import build_plan
from hf_fast.runtime.walker import PatternMismatch, Step, find_layers, match_children, match_parents

TASK = "text-classification"


# ------------------------------------------------------------------ paths on hand-made graphs
def _graph(nodes, consts, inputs=("x",), outputs=("y",)):
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(i, TensorProto.FLOAT, None) for i in inputs],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k)
         for k, v in consts.items()])
    return LogicalGraph(helper.make_model(g))


def _scores(scale_op="Div", qdq=False, reshape=False):
    """x -> MatMul(W) -> [Q/DQ] -> [Reshape] -> Add(b) -> Div|Mul(c) -> Softmax -> y"""
    nodes = [helper.make_node("MatMul", ["x", "W"], ["mm"], name="mm_node")]
    t = "mm"
    if qdq:
        nodes += [helper.make_node("QuantizeLinear", [t, "s", "zp"], ["q"], name="q_node"),
                  helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["dq"], name="dq_node")]
        t = "dq"
    if reshape:
        nodes.append(helper.make_node("Reshape", [t, "shape"], ["rs"], name="rs_node"))
        t = "rs"
    nodes += [helper.make_node("Add", [t, "b"], ["add"], name="add_node"),
              helper.make_node(scale_op, ["add", "c"], ["sc"], name="scale_node"),
              helper.make_node("Softmax", ["sc"], ["y"], name="softmax_node")]
    consts = {"W": np.ones((4, 4), np.float32), "b": np.zeros(4, np.float32), "c": np.float32(2.0),
              "s": np.float32(0.1), "zp": np.uint8(128), "shape": np.array([-1, 4], np.int64)}
    return _graph(nodes, consts)


PATH = (Step(("Div",), "scale"), Step(("Add",), "bias"), Step(("MatMul",), "mm", follow=None))


def test_parent_path_matches_and_captures_each_node():
    g = _scores()
    m = match_parents(g, "sc", PATH, "scores")
    assert [n.name for n in m.nodes] == ["scale_node", "add_node", "mm_node"]
    assert m["mm"].name == "mm_node" and m["bias"].op_type == "Add" and m.end == "mm"


def test_parent_path_looks_through_qdq_and_data_movement():
    m = match_parents(_scores(qdq=True, reshape=True), "sc", PATH, "scores")
    assert [n.name for n in m.nodes] == ["scale_node", "add_node", "mm_node"]


def test_mismatch_names_the_node_and_op_found():
    with pytest.raises(PatternMismatch, match=r"scores: expected Div producing 'sc', found Mul 'scale_node'") as e:
        match_parents(_scores(scale_op="Mul"), "sc", PATH, "scores")
    assert e.value.node == "scale_node" and e.value.step == 0
    assert isinstance(e.value, GraphMatchError)  # callers that catch the plan's errors catch it too
    with pytest.raises(PatternMismatch, match=r"expected the bias .*found a graph input or constant") as e:
        match_parents(_scores(), "x", (Step(("MatMul",), what="the bias"),), "x")


def test_optional_and_repeated_steps():
    g = _scores(scale_op="Mul")
    opt = (Step(("Div",), "scale", optional=True), Step(("Mul",), "mul"), Step(("Add",)),
           Step(("Gelu",), optional=True), Step(("MatMul",), "mm", follow=None))
    m = match_parents(g, "sc", opt, "scores")
    assert "scale" not in m.named and m["mul"].name == "scale_node" and m["mm"].name == "mm_node"
    rep = (Step(("Add", "Mul"), "between", repeat=True), Step(("MatMul",), "mm", follow=None))
    m = match_parents(g, "sc", rep, "scores")
    assert [n.name for n in m["between"]] == ["scale_node", "add_node"]
    # a required repeated step must match at least once, named or not
    for name in ("d", None):
        with pytest.raises(PatternMismatch, match="expected Div.*found Mul 'scale_node'"):
            match_parents(g, "sc", (Step(("Div",), name, repeat=True),), "scores")
    m = match_parents(g, "sc", (Step(("Add", "Mul"), repeat=True), Step(("MatMul",), "mm", follow=None)), "s")
    assert [n.name for n in m.nodes] == ["scale_node", "add_node", "mm_node"]
    # children: Add then the Softmax, repeated Adds/Divs from the MatMul output
    m = match_children(_scores(), "mm", (Step(("Add", "Div"), "ops", repeat=True), Step(("Softmax",), "sm")), "s")
    assert [n.name for n in m["ops"]] == ["add_node", "scale_node"] and m.end == "y"


def test_follow_function_picks_the_input_and_may_refuse():
    g = _scores()

    def refuse(gg, node):
        raise PatternMismatch(f"{node.name} refused", node.name)

    with pytest.raises(PatternMismatch, match="scale_node refused") as e:
        match_parents(g, "sc", (Step(("Add",), optional=True), Step(("Div",), follow=refuse)), "scores")
    assert e.value.step == 1 and e.value.node == "scale_node"
    m = match_parents(g, "sc", (Step(("Div",), follow=lambda gg, n: 0), Step(("Add",), "a", follow=None)), "s")
    assert m["a"].name == "add_node"


def _residual(norm_op="LayerNormalization", two_adds=False):
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="proj"),
             helper.make_node("Add", ["h", "x"], ["r"], name="residual_add"),
             helper.make_node(norm_op, ["r", "gamma", "beta"], ["y"], name="norm_node")]
    if two_adds:
        nodes.append(helper.make_node("Add", ["h", "x"], ["r2"], name="second_add"))
    return _graph(nodes, {"W": np.ones((4, 4), np.float32), "gamma": np.ones(4, np.float32),
                          "beta": np.zeros(4, np.float32)})


RESIDUAL = (Step(("Add",), "add", accept=lambda g, u, t: "x" in u.input, what="the residual Add"),
            Step(("LayerNormalization",), "ln", what="LayerNormalization", hint=" (use opset >= 17)"))


def test_child_path_matches_and_refuses_by_name():
    m = match_children(_residual(), "h", RESIDUAL, "block")
    assert m["add"].name == "residual_add" and m["ln"].name == "norm_node" and m.end == "y"
    with pytest.raises(PatternMismatch, match=r"expected LayerNormalization reading 'r', found "
                                              r"InstanceNormalization 'norm_node' \(use opset >= 17\)") as e:
        match_children(_residual("InstanceNormalization"), "h", RESIDUAL, "block")
    assert e.value.node == "norm_node" and e.value.step == 1
    with pytest.raises(PatternMismatch, match="expected one the residual Add reading 'h', found Add 'residual_add', "
                                              "Add 'second_add'"):
        match_children(_residual(two_adds=True), "h", RESIDUAL, "block")


# ------------------------------------------------------------------ layer patterns
def test_layer_pattern_is_checked_when_written():
    L, A = patterns.Linear, patterns.Attention
    with pytest.raises(ValueError, match=r"reads \['ctx'\] before any step names them"):
        patterns.LayerPattern("p", (L("attn_out", "ctx"),), "attn_out")
    with pytest.raises(ValueError, match="named twice"):
        patterns.LayerPattern("p", (L("q", "x"), L("q", "x")), "q")
    with pytest.raises(ValueError, match="output 'y' is not named"):
        patterns.LayerPattern("p", (L("q", "x"), L("k", "x"), L("v", "x"), A("q", "k", "v")), "y")
    with pytest.raises(ValueError, match="Activation kind 'swiglu'"):
        patterns.Activation("swiglu", "x", "y")
    bert = registry.get("bert")
    with pytest.raises(ValueError, match="layer pattern 'p' has Linears"):
        dataclasses.replace(bert, layer=patterns.LayerPattern("p", (L("q", "x"),), "q"))
    assert registry.layer_patterns() == (patterns.POST_LN, patterns.MODERNBERT_LAYER, patterns.MPNET_LAYER)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tok):
    """An int8 export of each family, with its fp32 graph kept."""
    import hf_fast

    out = {}
    for arch in registry.families():
        m = tiny_model(arch, TASK, tok.vocab_size, seed=5, layers=2)
        d = hf_fast.export(m, tok, tmp_path_factory.mktemp(arch), calibration_dataset=calibration_for(TASK),
                           progress=False, keep_fp32=True)
        out[arch] = (d, m)
    return out


def _load(d, name="model.onnx"):
    return onnx.load(str(d / name))


@pytest.mark.parametrize("arch", ["bert", "distilbert", "roberta"])
def test_layer_pattern_finds_each_prunable_linear_in_its_role(exported, arch):
    """The walker tells Q, K and V apart by the attention alone; module names must agree on every role."""
    d, model = exported[arch]
    fam = registry.get(arch)
    found = {}
    for name in ("model_fp32.onnx", "model.onnx"):
        layers = find_layers(LogicalGraph(_load(d, name)), fam.layer)
        assert len(layers) == 2
        found[name] = [(module_path(mm.name), role) for m in layers for role, mm in m.linears.items()]
        for i, m in enumerate(layers):
            for role, mm in m.linears.items():
                assert fam.linear_role(module_path(mm.name)) == (i, role), mm.name
    assert found["model_fp32.onnx"] == found["model.onnx"]
    prunable = sorted(n for n, _ in model.named_modules() if fam.linear_role(n) is not None)
    assert sorted(p for p, _ in found["model.onnx"]) == prunable
    # the quantizer's selection is this match, in graph order, on either graph
    lin, att = encoder_matmuls(_load(d, "model_fp32.onnx"))
    assert (lin, att) == encoder_matmuls(_load(d))
    assert len(lin) == 12 and len(att) == 4


def test_the_pattern_drives_the_walker(exported):
    """The same walker, given another pattern (here: an FFN without activation), reports where the graph leaves
    it, by step and node; a pattern is data, not code."""
    L, A, N = patterns.Linear, patterns.Attention, patterns.ResidualNorm
    no_act = patterns.LayerPattern("layer without activation", (
        L("q", "x"), L("k", "x"), L("v", "x"), A("q", "k", "v"), L("attn_out", "ctx"), N("ln1", "attn_out", "x"),
        L("ffn_in", "ln1"), L("ffn_out", "ffn_in"), N("ln2", "ffn_out", "ln1")), "ln2")
    g = LogicalGraph(_load(exported["roberta"][0]))
    with pytest.raises(PatternMismatch, match=r"encoder layer 0: expected 1 Linear projection \(ffn_out\) of ffn_in "
                                              r"\('/roberta/encoder/layer\.0/intermediate/dense/Add_output_0'\), "
                                              "found 0") as e:
        find_layers(g, no_act)
    assert e.value.step == no_act.steps.index(L("ffn_out", "ffn_in"))


def _plan_error(d, mutate, arch="bert"):
    fc = json.loads((d / "fast_config.json").read_text())
    proto = _load(d)
    mutate(proto.graph)
    with pytest.raises(GraphMatchError) as e:
        build_plan(proto, fc["num_heads"], fc["model_type"], fc["task"])
    return str(e.value)


def _node(graph, op, k=0):
    return [n for n in graph.node if n.op_type == op][k]


def test_refusal_names_the_activation_op(exported):
    def mutate(g):
        n = _node(g, "Erf", 1)  # layer 1's GELU
        n.op_type, n.name = "Tanh", "my_tanh"

    msg = _plan_error(exported["bert"][0], mutate)
    assert "encoder layer 1: unsupported FFN activation op Tanh ('my_tanh')" in msg


def test_refusal_names_the_op_in_place_of_the_layernorm(exported):
    def mutate(g):
        n = _node(g, "LayerNormalization", 1)  # layer 0's attention LayerNorm (0 is the embeddings')
        n.op_type, n.name = "InstanceNormalization", "my_norm"

    msg = _plan_error(exported["distilbert"][0], mutate)
    assert "encoder layer 0 ln1: expected LayerNormalization after the residual Add reading" in msg
    assert "found InstanceNormalization 'my_norm' (export with opset >= 17" in msg


def test_refusal_names_a_missing_projection(exported):
    """Layer 1's V projection reads layer 0's attention output instead of the layer input: layer 1 does not start, and
    the error of the head matcher (which then meets Q and K) says why the layers ended there."""
    d = exported["bert"][0]
    attn_out = find_layers(LogicalGraph(_load(d)))[0].tensors["attn_out"]  # read by the residual Add alone

    def mutate(g):
        mm = next(n for n in g.node if n.op_type == "MatMul" and "layer.1/attention/self/value" in n.name)
        dq = next(n for n in g.node if n.output[0] == mm.input[0])
        q = next(n for n in g.node if n.output[0] == dq.input[0])
        q.input[0] = attn_out

    msg = _plan_error(d, mutate)
    assert "after 1 encoder layers; another does not start there: encoder layer 1: expected 3 Linear projections " \
           "(q, k, v) of x" in msg
    assert "found 2: '/bert/encoder/layer.1/attention/self/" in msg and "value" not in msg


def test_disagreeing_qdq_pair_is_refused(exported):
    """Regression: the plan read the QuantizeLinear's scale and ignored the DequantizeLinear's, so a pair whose two
    scales differ (another function than the engine's) was run with the wrong one; now it is refused by name."""
    def mutate(g):
        dq = next(n for n in g.node if n.op_type == "DequantizeLinear" and "MatMul" not in n.output[0]
                  and any(q.op_type == "QuantizeLinear" and q.output[0] == n.input[0] for q in g.node))
        scale = next(i for i in g.initializer if i.name == dq.input[1])
        g.initializer.append(numpy_helper.from_array(numpy_helper.to_array(scale) * 2, "other_scale"))
        dq.input[1] = "other_scale"
        dq.name = "my_dq"

    msg = _plan_error(exported["bert"][0], mutate)
    assert "DequantizeLinear 'my_dq' do not share one constant per-tensor scale and zero point" in msg


def test_quantizer_check_uses_the_same_fake_quant_rule(exported):
    proto = _load(exported["bert"][0])
    _, att = encoder_matmuls(proto)
    with pytest.raises(RuntimeError, match="not read through a QuantizeLinear -> DequantizeLinear pair"):
        check_attention_qdq(proto, att)


def test_weight_width_refuses_a_weight_that_is_no_matrix():
    # found by test_fuzz_lying_graph: a MatMul whose constant operand was mutated into a scalar raised IndexError
    import numpy as np

    from hf_fast.runtime import walker
    from hf_fast.runtime.graph import GraphMatchError

    assert walker.weight_width(np.zeros((4, 3), np.float32)) == 3
    for bad in (np.float32(0.5), np.zeros(3, np.float32), np.zeros((2, 3, 4), np.float32)):
        with pytest.raises(GraphMatchError, match=r"\[K, N\] matrix"):
            walker.weight_width(bad)
