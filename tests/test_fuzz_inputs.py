"""Fuzzing the entry points with bad inputs (issue 7): ids out of vocab, negative ids, huge batch, seq 0,
wrong dtypes, 0-/1-/3-D, non-contiguous, Fortran order, torch tensors, ragged lists, NaN/inf floats; through
FastModel (both backends), NativeEngine.run and the native kernel wrappers. A clear exception or a
well-formed finite result, never a crash or a hang; repeated bad calls do not grow memory.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _fuzz_helpers import EXAMPLES, VOCAB, acceptable_errors, micro_artifact, rss_bytes, valid_inputs, watchdog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hf_fast import native

FUZZ = settings(max_examples=EXAMPLES * 2, deadline=None, database=None, suppress_health_check=list(HealthCheck))
STATS = {"cases": 0, "ran": 0, "refused": 0}

INT_DTYPES = [np.int64, np.int32, np.int16, np.int8, np.uint8, np.uint16, np.uint32, np.uint64]
OTHER_DTYPES = [np.float32, np.float64, np.float16, np.bool_, np.complex64, object, "U3"]
DIMS = [0, 1, 2, 3, 5, 15, 16, 17, 33]
SPECIAL_INTS = [-(2**63), -(2**31), -1, 0, 1, 2, VOCAB - 1, VOCAB, VOCAB + 1, 2**31, 2**63 - 1]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from hf_fast.runtime.modeling import load_fast_model

    root = tmp_path_factory.mktemp("micro-in")
    out = {}
    for arch, task in (("bert", "text-classification"), ("distilbert", "question-answering"),
                       ("roberta", "token-classification")):
        d = micro_artifact(root / arch, arch, task)
        out[arch] = {be: load_fast_model(d, backend=be) for be in ("native", "onnxruntime")}
    return out


@st.composite
def arrays(draw, base_shape=None):
    """A plausible or broken int tensor: dtype, shape, values, layout and container all drawn."""
    dtype = draw(st.sampled_from(INT_DTYPES * 3 + OTHER_DTYPES))
    if base_shape is not None and draw(st.booleans()):
        shape = base_shape
    else:
        shape = tuple(draw(st.lists(st.sampled_from(DIMS), min_size=0, max_size=3)))
    n = int(np.prod(shape)) if shape else 1
    mode = draw(st.sampled_from(["valid", "valid", "special", "random"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if mode == "valid":
        vals = rng.integers(0, VOCAB, size=n)
    elif mode == "special":
        vals = rng.choice(np.asarray(SPECIAL_INTS + [0] * 4, dtype=object), size=n)
    else:
        vals = rng.integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64)
    vals = np.asarray(vals, dtype=object)
    if dtype in (np.float32, np.float64, np.float16, np.complex64):
        a = np.asarray(vals.astype(np.float64), dtype=dtype)
        if a.size and draw(st.booleans()):
            a.reshape(-1)[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    elif dtype is object or dtype == "U3":
        a = vals.astype(dtype)
    elif dtype is np.bool_:
        a = (vals % 2).astype(np.bool_)
    else:
        info = np.iinfo(dtype)
        a = np.asarray([int(v) % (int(info.max) + 1) if info.min == 0 else max(min(int(v), info.max), info.min)
                        for v in vals.reshape(-1)], dtype=dtype) if n else np.zeros(0, dtype)
    a = a.reshape(shape)
    layout = draw(st.sampled_from(["c", "c", "strided", "fortran", "torch", "list", "ragged", "scalar"]))
    if layout == "strided" and a.ndim >= 1:
        wide = np.repeat(a, 2, axis=-1)
        a = wide[..., ::2]
        assert not a.flags.c_contiguous or a.size <= 1
    elif layout == "fortran":
        a = np.asfortranarray(a)
    elif layout == "torch" and a.dtype.kind in "iub" and a.dtype not in (np.uint16, np.uint32, np.uint64):
        return torch.from_numpy(np.ascontiguousarray(a))
    elif layout == "list":
        return a.tolist()
    elif layout == "ragged" and a.ndim == 2 and a.shape[0] >= 2 and a.shape[1] >= 1:
        rows = a.tolist()
        rows[0] = rows[0][:-1]
        return rows
    elif layout == "scalar":
        return int(vals.reshape(-1)[0]) if n else 0
    return a


def _check(fn):
    STATS["cases"] += 1
    with watchdog():
        try:
            out = fn()
        except acceptable_errors():
            STATS["refused"] += 1
            return None
    STATS["ran"] += 1
    return out


@pytest.mark.parametrize("arch", ["bert", "distilbert", "roberta"])
def test_fuzz_model_inputs(models, arch):
    @FUZZ
    @given(data=st.data(), backend=st.sampled_from(["native", "onnxruntime"]))
    def prop(data, backend):
        m = models[arch][backend]
        ids = data.draw(arrays(), "input_ids")
        shape = tuple(np.shape(ids)) if not isinstance(ids, list) or ids and not isinstance(ids[0], list) \
            or len({len(r) for r in ids}) == 1 else None
        kw = {"input_ids": ids}
        if data.draw(st.booleans(), "with mask"):
            kw["attention_mask"] = data.draw(arrays(base_shape=shape), "attention_mask")
        if data.draw(st.booleans(), "with types"):
            kw["token_type_ids"] = data.draw(arrays(base_shape=shape), "token_type_ids")
        out = _check(lambda: m(**kw))
        if out is None:
            return
        ref_ids = np.asarray(ids.numpy() if isinstance(ids, torch.Tensor) else ids)
        b = 1 if ref_ids.ndim == 1 else ref_ids.shape[0]
        for v in out.values():
            assert isinstance(v, torch.Tensor) and v.dtype == torch.float32 and v.shape[0] == b
            assert torch.isfinite(v).all(), "validated inputs must give finite outputs"

    prop()


def test_fuzz_engine_run_direct(models):
    """NativeEngine.run is the lower-level entry point (no FastModel validation in front of it)."""
    eng = models["bert"]["native"].backend.engine

    @FUZZ
    @given(data=st.data())
    def prop(data):
        ids = data.draw(arrays(), "input_ids")
        shape = np.shape(ids) if isinstance(ids, np.ndarray) else None
        mask = data.draw(st.one_of(st.none(), arrays(base_shape=shape)), "mask")
        types = data.draw(st.one_of(st.none(), arrays(base_shape=shape)), "types")
        out = _check(lambda: eng.run(ids, mask, types))
        if out is not None:
            for v in out.values():
                assert v.dtype == np.float32 and np.isfinite(v).all()

    prop()


@pytest.mark.parametrize("backend", ["native", "onnxruntime"])
def test_edge_inputs(models, backend):
    m = models["bert"][backend]
    ok = valid_inputs("bert")
    errors = acceptable_errors()
    cases = {
        "id = vocab": dict(ok, input_ids=np.full((2, 6), VOCAB)),
        "negative id": dict(ok, input_ids=-ok["input_ids"]),
        "seq 0": dict(input_ids=np.zeros((2, 0), np.int64)),
        "batch 0": dict(input_ids=np.zeros((0, 6), np.int64)),
        "seq > max positions": dict(input_ids=np.ones((1, 17), np.int64)),
        "float ids": dict(input_ids=ok["input_ids"].astype(np.float32)),
        "NaN ids": dict(input_ids=np.full((1, 4), np.nan)),
        "mask of 2": dict(ok, attention_mask=np.full((2, 6), 2)),
        "type id 2": dict(ok, token_type_ids=np.full((2, 6), 2)),
        "3-D": dict(input_ids=ok["input_ids"][None]),
        "strings": dict(input_ids=[["a", "b"]]),
    }
    for _name, kw in cases.items():
        with watchdog(), pytest.raises(errors):
            m(**kw)
    # huge batch: refused before any large allocation by the native engine, run fine or refused by ORT
    huge = np.ones((2**20 + 1, 1), np.int64)
    if backend == "native":
        with watchdog(), pytest.raises(ValueError, match="too large"):
            m(input_ids=huge)
    # fully padded row and a non-contiguous view: finite, and the same as the contiguous copy
    mask = np.ones((2, 6), np.int64)
    mask[1] = 0
    r = m(input_ids=ok["input_ids"], attention_mask=mask, token_type_ids=ok["token_type_ids"]).logits
    assert torch.isfinite(r).all()
    wide = np.repeat(ok["input_ids"], 2, axis=1)
    a = m(input_ids=wide[:, ::2]).logits
    b = m(input_ids=np.ascontiguousarray(wide[:, ::2])).logits
    assert torch.equal(a, b)


# ------------------------------------------------------------------ native kernel wrappers
FLOATS = st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e-45, 1e38, math.nan, math.inf, -math.inf, 0.1, 255.0])


@st.composite
def f32(draw, max_dim=9):
    shape = tuple(draw(st.lists(st.integers(0, max_dim), min_size=0, max_size=3)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pool = np.asarray([0.0, -0.0, 1.0, -1.0, 1e-45, 1e38, math.nan, math.inf, -math.inf, 0.1, 255.0])
    a = (rng.standard_normal(shape) if draw(st.booleans()) else rng.choice(pool, size=shape))
    a = np.asarray(a, dtype=draw(st.sampled_from([np.float32, np.float32, np.float64])))
    return a if not (a.ndim == 2 and draw(st.booleans())) else np.asfortranarray(a)


def test_fuzz_native_kernels():
    rng = np.random.default_rng(0)
    lin = {b: native.PackedLinear(rng.integers(-8, 8, size=(8, 12), dtype=np.int8), 0.01, np.zeros(8, np.float32),
                                  block=b) for b in ("4x1", "1x4", "dense")}

    @FUZZ
    @given(data=st.data())
    def prop(data):
        which = data.draw(st.sampled_from(["linear", "quantize", "gelu", "layernorm", "attention", "sparse", "dense"]))
        if which == "linear":
            a = data.draw(st.one_of(arrays(), st.just(rng.integers(0, 255, size=(3, 12), dtype=np.uint8))))
            res = data.draw(st.one_of(st.none(), f32()))
            out = _check(lambda: lin[data.draw(st.sampled_from(list(lin)))].forward(
                a, data.draw(FLOATS), data.draw(st.sampled_from([-1, 0, 128, 255, 256, 2**40])),
                gelu=data.draw(st.booleans()), residual=res))
            if out is not None:
                assert out.shape == (np.shape(a)[0], 8)
        elif which == "quantize":
            x = data.draw(f32())
            scale, zp = data.draw(FLOATS), data.draw(st.sampled_from([-1, 0, 7, 255, 256]))
            out = _check(lambda: native.quantize_u8(x, scale, zp))
            if out is not None:
                assert out.shape == x.shape and out.dtype == np.uint8
        elif which == "gelu":
            x = data.draw(f32())
            out = _check(lambda: native.gelu(x))
            if out is not None:
                assert out.shape == x.shape
        elif which == "layernorm":
            x, g, b = data.draw(f32()), data.draw(f32()), data.draw(f32())
            _check(lambda: native.layernorm(x, g, b, eps=data.draw(FLOATS)))
        elif which == "attention":
            q = data.draw(f32())
            _check(lambda: native.attention(q, q, q, heads=data.draw(st.sampled_from([-1, 0, 1, 2, 3])),
                                            mask=data.draw(st.one_of(st.none(), arrays()))))
        else:
            w = data.draw(arrays())
            blk = data.draw(st.sampled_from(["4x1", "1x4", "2x2", "", None, (4, 1), (0, 0)]))
            if which == "sparse":
                sw = _check(lambda: native.SparseWeight(w, block=blk))
            else:
                sw = _check(lambda: native.DenseWeight(w))
            if sw is not None:
                a = data.draw(arrays())
                _check(lambda: sw.matmul(a))

    prop()


def test_bad_calls_do_not_grow_memory(models):
    m = models["bert"]["native"]
    bad = [dict(input_ids=np.full((4, 16), VOCAB)), dict(input_ids=np.ones((1, 17), np.int64)),
           dict(input_ids=np.ones((2, 8)), attention_mask=np.ones((2, 8)))]
    ok = valid_inputs("bert", b=4, s=16)

    def once():
        for kw in bad:
            with pytest.raises(ValueError):
                m(**kw)
        m(**ok)

    for _ in range(50):
        once()
    before = rss_bytes()
    for _ in range(600):
        once()
    grown = rss_bytes() - before
    assert grown < 16 * 2**20, f"RSS grew {grown / 2**20:.1f} MiB over 1800 bad + 600 good calls"


def test_input_fuzz_stats():
    if STATS["cases"] == 0:
        pytest.skip("fuzz properties did not run")
    assert STATS["refused"] > 0 and STATS["ran"] > 0, STATS
    print(f"\ninput fuzz: {STATS}")
