"""Fuzzing the artifact loader (issue 7): corrupted/truncated model.onnx, lying fast_config.json, lying
graphs (wrong shapes, scales of 0/NaN/inf, huge dims, rewired nodes). Every case must end in a clear
Python exception or a model that runs and returns well-formed outputs: never a crash, a hang or growth.

Bounded here (HF_FAST_FUZZ_EXAMPLES cases per property); `make fuzz` runs thousands (HF_FAST_FUZZ=long).
"""
from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from _fuzz_helpers import (
    EXAMPLES,
    MICRO_KINDS,
    acceptable_errors,
    copy_artifact,
    corpus_cases,
    micro_artifact,
    refresh_sha,
    rss_bytes,
    valid_inputs,
    watchdog,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

from hf_fast.export.artifact import ArtifactError

BACKENDS = ["native", "onnxruntime"]
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=False, database=None,
                suppress_health_check=list(HealthCheck))
# test_fuzz_stats_are_sane: a fixed sample (seed derived from the test, no database, no replay) of the same cases
SAMPLE = settings(max_examples=50, derandomize=True, database=None, phases=[Phase.generate], deadline=None,
                  suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def micro(micro_artifacts):
    out = {}
    for arch, _ in MICRO_KINDS:
        d = micro_artifacts[arch]
        out[arch] = {"dir": d, "bytes": (d / "model.onnx").read_bytes(),
                     "fc": (d / "fast_config.json").read_text(), "ref": {}}
        for be in BACKENDS:
            out[arch]["ref"][be] = _load(d, be).run(**valid_inputs(arch))
    return out


def _load(d, backend, verify=True):
    from hf_fast.runtime.modeling import load_fast_model

    return load_fast_model(d, backend=backend, verify=verify)


def _try_load_and_run(d, arch, backend, verify=True, ref=None):
    """Load + run valid inputs. Returns 'refused' or 'ran'; any other exception (or a crash) fails."""
    with watchdog():
        try:
            m = _load(d, backend, verify=verify)
        except acceptable_errors():
            return "refused"
        feeds = valid_inputs(arch)
        try:
            out = m.run(**feeds)
        except acceptable_errors():
            return "refused"
    assert set(out) == set(m.output_names)
    for k, v in out.items():
        assert isinstance(v, np.ndarray) and v.dtype == np.float32 and v.shape[0] == feeds["input_ids"].shape[0], k
    if ref is not None:
        for k, v in out.items():
            np.testing.assert_allclose(v, ref[k], rtol=0, atol=1e-5, err_msg=k)
    return "ran"


class _Scratch:
    """One scratch copy per (test, arch), rewritten by every example (cheaper than a copy per case)."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="hf-fast-fuzz-"))
        self.dirs = {}

    def fresh(self, micro, arch) -> Path:
        d = self.root / arch
        if arch not in self.dirs:
            copy_artifact(micro[arch]["dir"], d)
            self.dirs[arch] = d
        (d / "model.onnx").write_bytes(micro[arch]["bytes"])
        (d / "fast_config.json").write_text(micro[arch]["fc"])
        return d


@pytest.fixture(scope="module")
def scratch():
    s = _Scratch()
    yield s
    shutil.rmtree(s.root, ignore_errors=True)


# ------------------------------------------------------------------ 1. bytes of model.onnx
@st.composite
def byte_mutation(draw, n):
    kind = draw(st.sampled_from(["truncate", "flip", "splice", "zero", "empty", "garbage", "repeat"]))
    if kind == "truncate":
        return kind, draw(st.integers(0, n - 1))
    if kind == "flip":
        return kind, draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 255)), min_size=1, max_size=16))
    if kind == "splice":
        return kind, (draw(st.integers(0, n)), draw(st.binary(min_size=1, max_size=64)))
    if kind == "zero":
        a = draw(st.integers(0, n - 1))
        return kind, (a, draw(st.integers(a + 1, min(n, a + 4096))))
    if kind == "garbage":
        return kind, draw(st.binary(min_size=0, max_size=256))
    if kind == "repeat":
        return kind, draw(st.integers(0, n - 1))
    return kind, None


def apply_bytes(data: bytes, mut) -> bytes:
    kind, arg = mut
    b = bytearray(data)
    if kind == "truncate":
        return bytes(b[:arg])
    if kind == "flip":
        for pos, x in arg:
            b[pos] ^= x
        return bytes(b)
    if kind == "splice":
        return bytes(b[:arg[0]] + arg[1] + b[arg[0]:])
    if kind == "zero":
        b[arg[0]:arg[1]] = bytes(arg[1] - arg[0])
        return bytes(b)
    if kind == "garbage":
        return arg
    if kind == "repeat":  # a valid message followed by a second copy of its tail (protobuf merges fields)
        return bytes(b + b[arg:])
    return b""


def _bytes_case(micro, scratch, arch, mut, backend) -> str:
    d = scratch.fresh(micro, arch)
    data = apply_bytes(micro[arch]["bytes"], mut)
    (d / "model.onnx").write_bytes(data)
    if data != micro[arch]["bytes"]:  # the checksum catches every change before any parser runs
        with pytest.raises(ArtifactError, match="corrupted or truncated"):
            _load(d, backend)
    # and with verify=False the parsers themselves must refuse it cleanly (or run it)
    return _try_load_and_run(d, arch, backend, verify=False)


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_fuzz_corrupted_model_bytes(micro, scratch, arch):
    @FUZZ
    @given(mut=byte_mutation(len(micro[arch]["bytes"])), backend=st.sampled_from(BACKENDS))
    def prop(mut, backend):
        _bytes_case(micro, scratch, arch, mut, backend)

    prop()


# ------------------------------------------------------------------ 2. lying fast_config.json
NASTY = st.one_of(
    st.none(), st.booleans(), st.sampled_from([0, -1, 1, 2, 3, 7, 2**31, 2**63, 10**30, -(2**63)]),
    st.sampled_from([0.0, -0.0, 1e-45, 1e308, math.nan, math.inf, -math.inf, 0.5]),
    st.sampled_from(["", "4x1", "1x4", "dense", "1x1", "7x3", "0x0", "-4x1", "4x", "x", "\x00", "ü" * 3]),
    st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.text(max_size=12),
)
FC_KEYS = ["format_version", "library", "task", "architecture", "model_type", "num_layers", "hidden_size",
           "num_heads", "intermediate_size", "max_position_embeddings", "max_sequence_length", "vocab_size",
           "type_vocab_size", "num_labels", "inputs", "outputs", "block", "sparsity", "element_sparsity",
           "quantization", "files", "opset", "metrics"]


@st.composite
def fc_mutation(draw):
    muts = []
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.sampled_from(FC_KEYS))
        op = draw(st.sampled_from(["set", "set", "delete", "nudge"]))
        val = draw(NASTY) if op == "set" else draw(st.integers(-2, 2)) if op == "nudge" else None
        muts.append((key, op, val))
    return muts


def apply_fc(fc: dict, muts) -> dict:
    fc = json.loads(json.dumps(fc))
    for key, op, val in muts:
        if op == "delete":
            fc.pop(key, None)
        elif op == "nudge" and isinstance(fc.get(key), int) and not isinstance(fc.get(key), bool):
            fc[key] = fc[key] + val  # off by a little: the most plausible lie
        elif op == "nudge" and key == "sparsity" and isinstance(fc.get(key), dict):
            fc[key] = {k: v + val for k, v in fc[key].items()}
        else:
            fc[key] = val
    return fc


def _fc_case(micro, scratch, arch, muts, backend) -> str:
    d = scratch.fresh(micro, arch)
    (d / "fast_config.json").write_text(json.dumps(apply_fc(json.loads(micro[arch]["fc"]), muts)))
    # the graph is untouched: a model that loads must compute exactly what the honest artifact does
    return _try_load_and_run(d, arch, backend, ref=micro[arch]["ref"][backend])


@pytest.mark.parametrize("arch", ["bert", "distilbert", "roberta"])
def test_fuzz_lying_fast_config(micro, scratch, arch):
    @FUZZ
    @given(muts=fc_mutation(), backend=st.sampled_from(BACKENDS))
    def prop(muts, backend):
        _fc_case(micro, scratch, arch, muts, backend)

    prop()


# ------------------------------------------------------------------ 3. lying graphs (semantic mutations)
SPECIAL_F = [0.0, -0.0, math.nan, math.inf, -math.inf, -1.0, 1e30, 1e-45, 3.4e38]
HUGE_DIMS = [0, 1, 2, 3, 15, 16, 17, 64, 2**31 - 1, 2**31, 2**40, 2**62, -1]
OPS = ["MatMul", "Add", "Gather", "LayerNormalization", "Softmax", "Erf", "Identity", "QuantizeLinear",
       "DequantizeLinear", "Transpose", "Reshape", "Gemm", "Tanh", "Relu", "Split", "Slice", "Mul", "Div", "Where",
       "Cast", "Sigmoid", "Loop", "NonExistentOp"]


@st.composite
def graph_mutation(draw, n_init, n_nodes):
    muts = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["init_value", "init_value", "init_dims", "init_resize", "init_dtype",
                                     "node_op", "node_input", "node_attr", "attr_type", "drop_node", "io"]))
        muts.append((kind, draw(st.integers(0, n_init - 1)), draw(st.integers(0, n_nodes - 1)),
                     draw(st.sampled_from(SPECIAL_F)), draw(st.lists(st.sampled_from(HUGE_DIMS), max_size=3)),
                     draw(st.integers(0, 10**6)), draw(st.sampled_from(OPS))))
    return muts


def apply_graph(model: onnx.ModelProto, muts) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    for kind, ii, ni, fval, dims, r, op in muts:
        init = g.initializer[ii % len(g.initializer)]
        node = g.node[ni % len(g.node)] if len(g.node) else None
        try:
            a = numpy_helper.to_array(init).copy()  # an earlier mutation may have broken it already
        except Exception:
            a = None
        if kind in ("init_value", "init_resize") and a is None:
            continue
        if kind == "init_value":  # scales (and weights, tables, eps) of 0 / NaN / inf / huge
            if a.size == 0:
                continue
            if np.issubdtype(a.dtype, np.floating):
                if r % 2:
                    a.reshape(-1)[r % a.size] = fval
                else:
                    a[...] = fval
            elif np.issubdtype(a.dtype, np.integer):
                info = np.iinfo(a.dtype)
                a.reshape(-1)[r % a.size] = [info.min, info.max, 0, -1 if info.min < 0 else 1][r % 4]
            init.CopyFrom(numpy_helper.from_array(a, init.name))
        elif kind == "init_dims":  # a shape that lies about the data behind it
            del init.dims[:]
            init.dims.extend(dims)
        elif kind == "init_resize":  # consistent data, wrong shape (one more / one fewer row or column)
            if a.ndim == 0:
                continue
            ax = r % a.ndim
            shape = list(a.shape)
            shape[ax] = max(0, shape[ax] + (1 if r % 3 == 0 else -1))
            init.CopyFrom(numpy_helper.from_array(np.resize(a, shape).astype(a.dtype), init.name))
        elif kind == "init_dtype":
            init.data_type = [1, 2, 3, 6, 7, 10, 11, 0, 99][r % 9]
        elif kind == "node_op" and node is not None:
            node.op_type = op
        elif kind == "node_input" and node is not None and len(node.input):
            names = [i.name for i in g.initializer] + [o for n in g.node for o in n.output] + ["", "no_such_tensor"]
            node.input[r % len(node.input)] = names[(r // 7) % len(names)]
        elif kind == "node_attr" and node is not None and len(node.attribute):
            a = node.attribute[r % len(node.attribute)]
            if a.type == onnx.AttributeProto.FLOAT:
                a.f = fval
            elif a.type == onnx.AttributeProto.INT:
                a.i = [d for d in dims][0] if dims else -1
            elif a.type == onnx.AttributeProto.INTS:
                del a.ints[:]
                a.ints.extend(dims)
        elif kind == "attr_type" and node is not None and len(node.attribute):
            node.attribute[r % len(node.attribute)].type = [5, 11, 1, 2, 3, 4, 7, 13][r % 8]
        elif kind == "op_input":  # corpus cases: the first node of type `op`, input r -> a missing tensor
            tgt = next((n for n in g.node if n.op_type == op), None)
            if tgt is not None and len(tgt.input) > r:
                tgt.input[r] = "no_such_tensor"
        elif kind == "op_attr_type":  # corpus cases: the first node of type `op`, attribute 0 -> type r
            tgt = next((n for n in g.node if n.op_type == op and len(n.attribute)), None)
            if tgt is not None:
                tgt.attribute[0].type = r
        elif kind == "drop_node" and node is not None:
            g.node.remove(node)
        elif kind == "io":
            if r % 3 == 0 and len(g.output) > 0:
                g.output.remove(g.output[r % len(g.output)])
            elif r % 3 == 1:
                g.input[r % len(g.input)].type.tensor_type.elem_type = [1, 6, 7, 9, 0][r % 5]
            else:
                g.input[r % len(g.input)].name = ["input_ids", "attention_mask", "pixel_values", ""][r % 4]
    return m


def _graph_case(micro, scratch, arch, model, muts, backend) -> str:
    d = scratch.fresh(micro, arch)
    (d / "model.onnx").write_bytes(apply_graph(model, muts).SerializeToString())
    refresh_sha(d)  # the file is "honest" about its checksum: only the graph lies
    return _try_load_and_run(d, arch, backend)


@pytest.mark.parametrize("arch", ["bert", "distilbert", "roberta"])
def test_fuzz_lying_graph(micro, scratch, arch):
    model = onnx.load_from_string(micro[arch]["bytes"])

    @FUZZ
    @given(muts=graph_mutation(len(model.graph.initializer), len(model.graph.node)),
           backend=st.sampled_from(BACKENDS))
    def prop(muts, backend):
        _graph_case(micro, scratch, arch, model, muts, backend)

    prop()


# ------------------------------------------------------------------ 4. lying SmoothQuant vectors
@pytest.fixture(scope="module")
def micro_smooth(tmp_path_factory):
    """The bert micro artifact exported with smooth_quant: a Mul by a [K] 1/s before every Linear's quantizer."""
    d = micro_artifact(tmp_path_factory.mktemp("micro-smooth") / "bert", "bert", "text-classification",
                       smooth_quant=0.8)
    return {"bert-smooth": {"dir": d, "bytes": (d / "model.onnx").read_bytes(),
                            "fc": (d / "fast_config.json").read_text()}}


@st.composite
def smooth_mutation(draw):
    kind = draw(st.sampled_from(["value", "all", "resize", "matrix", "scalar"]))
    return kind, draw(st.integers(0, 10**6)), draw(st.sampled_from(SPECIAL_F))


def _smooth_case(micro_smooth, scratch, model, mut, backend) -> str:
    names = [i.name for i in model.graph.initializer if i.name.endswith("_smooth_inv")]
    assert len(names) == 4  # embeddings LN, context, attention LN, GELU (1 layer)
    kind, r, fval = mut
    m = onnx.ModelProto()
    m.CopyFrom(model)
    init = next(i for i in m.graph.initializer if i.name == names[r % len(names)])
    a = numpy_helper.to_array(init).copy()
    if kind == "value":
        a[r % a.size] = fval
    elif kind == "all":
        a[...] = fval
    elif kind == "resize":
        a = np.resize(a, max(2, a.size + [-1, 1, a.size][r % 3]))
    elif kind == "matrix":
        a = np.tile(a[:, None], (1, 2 + r % 3))
    else:
        a = np.float32(fval)
    init.CopyFrom(numpy_helper.from_array(np.asarray(a, np.float32), init.name))
    d = scratch.fresh(micro_smooth, "bert-smooth")
    (d / "model.onnx").write_bytes(m.SerializeToString())
    refresh_sha(d)
    got = _try_load_and_run(d, "bert", backend)
    # a scalar is no per-channel vector: refused by name (the GELU's own tail Mul is by 0.5 only)
    invalid = kind in ("resize", "matrix", "scalar") or (kind in ("value", "all") and not math.isfinite(fval))
    if backend == "native" and invalid:
        assert got == "refused", mut
    return got


def test_fuzz_lying_smoothing_vector(micro_smooth, scratch):
    """A 1/s vector of the wrong length or shape, or non-finite: the native engine refuses it with a typed error
    (never reads past it); finite values of any size run."""
    model = onnx.load_from_string(micro_smooth["bert-smooth"]["bytes"])

    @FUZZ
    @given(mut=smooth_mutation(), backend=st.sampled_from(BACKENDS))
    def prop(mut, backend):
        _smooth_case(micro_smooth, scratch, model, mut, backend)

    prop()


# ------------------------------------------------------------------ corpus replay + memory
def _replay(case: dict, micro, scratch):
    arch, backend = case["arch"], case["backend"]
    d = scratch.fresh(micro, arch)
    if case["kind"] == "bytes":
        mut = tuple(case["mutation"])
        if mut[0] == "flip":
            mut = ("flip", [tuple(x) for x in mut[1]])
        elif mut[0] in ("splice",):
            mut = ("splice", (mut[1][0], bytes.fromhex(mut[1][1])))
        elif mut[0] == "garbage":
            mut = ("garbage", bytes.fromhex(mut[1]))
        (d / "model.onnx").write_bytes(apply_bytes(micro[arch]["bytes"], mut))
        return _try_load_and_run(d, arch, backend, verify=False)
    if case["kind"] == "fast_config":
        (d / "fast_config.json").write_text(json.dumps(apply_fc(json.loads(micro[arch]["fc"]),
                                                                [tuple(m) for m in case["mutation"]])))
        return _try_load_and_run(d, arch, backend, ref=micro[arch]["ref"][backend])
    if case["kind"] == "graph":
        model = onnx.load_from_string(micro[arch]["bytes"])
        (d / "model.onnx").write_bytes(apply_graph(model, [tuple(m) for m in case["mutation"]]).SerializeToString())
        refresh_sha(d)
        return _try_load_and_run(d, arch, backend)
    raise AssertionError(case["kind"])


@pytest.mark.parametrize("path", corpus_cases("artifact"), ids=lambda p: p.stem)
def test_corpus_replay(micro, scratch, path):
    case = json.loads(path.read_text())
    assert _replay(case, micro, scratch) == case["expect"], case.get("note")


def test_failed_loads_do_not_grow_memory(micro, scratch):
    """Hundreds of refused artifacts (parse errors, graph-match errors, half-built engines) leak nothing."""
    model = onnx.load_from_string(micro["bert"]["bytes"])
    bad = {
        "truncated": micro["bert"]["bytes"][: len(micro["bert"]["bytes"]) // 2],
        # a layer whose FFN weight lies about its width: refused after the engine has packed earlier linears
        "graph": apply_graph(model, [("init_resize", i, 0, 0.0, [], 3, "Add")
                                     for i in range(len(model.graph.initializer))
                                     if numpy_helper.to_array(model.graph.initializer[i]).dtype == np.int8][-1:])
        .SerializeToString(),
    }

    def once():
        for data in bad.values():
            d = scratch.fresh(micro, "bert")
            (d / "model.onnx").write_bytes(data)
            with pytest.raises(acceptable_errors()):
                _load(d, "native", verify=False).run(**valid_inputs("bert"))

    for _ in range(20):
        once()  # warm-up: allocator pools, lazy imports
    before = rss_bytes()
    for _ in range(150):
        once()
    grown = rss_bytes() - before
    assert grown < 24 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB over 300 refused loads"


@pytest.mark.parametrize("kind", ["bytes", "fast_config", "graph", "smoothing"])
def test_fuzz_stats_are_sane(micro, micro_smooth, scratch, kind):
    """The mutation strategies above really exercise both outcomes: on a fixed sample (same strategies, a seed
    derived from this test, so the same cases on every run and in any test order), each kind of lie is refused
    in some cases and loads and runs in others."""
    tally = Counter()
    model = onnx.load_from_string((micro_smooth["bert-smooth"] if kind == "smoothing" else micro["bert"])["bytes"])
    muts = {"bytes": byte_mutation(len(micro["bert"]["bytes"])), "fast_config": fc_mutation(),
            "graph": graph_mutation(len(model.graph.initializer), len(model.graph.node)),
            "smoothing": smooth_mutation()}[kind]

    @SAMPLE
    @given(mut=muts, backend=st.sampled_from(BACKENDS))
    def prop(mut, backend):
        if kind == "bytes":
            tally[_bytes_case(micro, scratch, "bert", mut, backend)] += 1
        elif kind == "fast_config":
            tally[_fc_case(micro, scratch, "bert", mut, backend)] += 1
        elif kind == "graph":
            tally[_graph_case(micro, scratch, "bert", model, mut, backend)] += 1
        else:
            tally[_smooth_case(micro_smooth, scratch, model, mut, backend)] += 1

    prop()
    print(f"\nartifact fuzz sample, {kind}: {dict(tally)}")
    assert sum(tally.values()) >= SAMPLE.max_examples, tally
    assert tally["ran"] > 0 and tally["refused"] > 0, tally
