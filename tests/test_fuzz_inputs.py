"""Fuzzing the entry points with bad inputs (issue 7): ids out of vocab, negative ids, huge batch, seq 0,
wrong dtypes, 0-/1-/3-D, non-contiguous, Fortran order, torch tensors, ragged lists, NaN/inf floats; through
FastModel (both backends), NativeEngine.run and the native kernel wrappers. A clear exception or a
well-formed finite result, never a crash or a hang; repeated bad calls do not grow memory.
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from _fuzz_helpers import EXAMPLES, VOCAB, acceptable_errors, rss_bytes, valid_inputs, watchdog
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from hf_fast import native

FUZZ = settings(max_examples=EXAMPLES * 2, deadline=None, database=None, suppress_health_check=list(HealthCheck))
# test_input_fuzz_stats: a fixed sample (seed derived from the test, no database, no replay) of the same cases
SAMPLE = settings(max_examples=60, derandomize=True, database=None, phases=[Phase.generate], deadline=None,
                  suppress_health_check=list(HealthCheck))

INT_DTYPES = [np.int64, np.int32, np.int16, np.int8, np.uint8, np.uint16, np.uint32, np.uint64]
OTHER_DTYPES = [np.float32, np.float64, np.float16, np.bool_, np.complex64, object, "U3"]
DIMS = [0, 1, 2, 3, 5, 15, 16, 17, 33]
SPECIAL_INTS = [-(2**63), -(2**31), -1, 0, 1, 2, VOCAB - 1, VOCAB, VOCAB + 1, 2**31, 2**63 - 1]


@pytest.fixture(scope="module")
def models(micro_artifacts):
    from hf_fast.runtime.modeling import load_fast_model

    return {arch: {be: load_fast_model(d, backend=be) for be in ("native", "onnxruntime")}
            for arch, d in micro_artifacts.items()}


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


VALID_DTYPES = [np.int64, np.int32, np.int16, np.int8, np.uint8, np.uint16, np.uint32, np.uint64]  # ids < 64 fit


@st.composite
def valid_feeds(draw, arch: str, containers=("c", "strided", "fortran", "torch", "list")):
    """What a tokenizer emits (right-padded rows, pad id 0 under a 0 mask, token types for BERT), in any integer
    dtype and container the models accept: these cases must run. Without them ~2% of the broken-input cases
    above are valid, too few to test the path that runs (a CI run once drew 0 of 252)."""
    b, s = draw(st.integers(1, 3)), draw(st.integers(1, 16))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lens = rng.integers(1, s + 1, size=b)
    mask = (np.arange(s)[None, :] < lens[:, None]).astype(np.int64)
    feeds = {"input_ids": np.where(mask == 1, rng.integers(3, VOCAB, size=(b, s)), 0)}
    if draw(st.booleans()):
        feeds["attention_mask"] = mask
    if arch == "bert" and draw(st.booleans()):
        feeds["token_type_ids"] = rng.integers(0, 2, size=(b, s)) * mask
    out = {}
    for k, a in feeds.items():
        a = a.astype(draw(st.sampled_from(VALID_DTYPES)))
        layout = draw(st.sampled_from(containers))
        if layout == "strided":
            a = np.repeat(a, 2, axis=-1)[..., ::2]
        elif layout == "fortran":
            a = np.asfortranarray(a)
        elif layout == "torch":
            a = torch.from_numpy(a.astype(np.int64))
        elif layout == "list":
            a = a.tolist()
        out[k] = a
    return out


def _check(fn, tally: Counter | None = None):
    """Run one case: its result, or None when it was refused with a clear error (anything else fails).
    tally (test_input_fuzz_stats) counts the two outcomes."""
    with watchdog():
        try:
            out = fn()
        except acceptable_errors():
            if tally is not None:
                tally["refused"] += 1
            return None
    if tally is not None:
        tally["ran"] += 1
    return out


def _model_case(data, m, arch, tally=None):
    """FastModel.__call__ with drawn input_ids and, maybe, attention_mask / token_type_ids: a valid batch, a
    valid batch with one input broken, or every input drawn from the broken-input strategy."""
    kind = data.draw(st.sampled_from(["valid", "one broken", "random"]), "kind")
    if kind == "random":
        ids = data.draw(arrays(), "input_ids")
        shape = tuple(np.shape(ids)) if not isinstance(ids, list) or ids and not isinstance(ids[0], list) \
            or len({len(r) for r in ids}) == 1 else None
        kw = {"input_ids": ids}
        if data.draw(st.booleans(), "with mask"):
            kw["attention_mask"] = data.draw(arrays(base_shape=shape), "attention_mask")
        if data.draw(st.booleans(), "with types"):
            kw["token_type_ids"] = data.draw(arrays(base_shape=shape), "token_type_ids")
    else:
        kw = data.draw(valid_feeds(arch), "valid inputs")
        if kind == "one broken":
            name = data.draw(st.sampled_from(["input_ids", "attention_mask", "token_type_ids"]), "broken input")
            kw[name] = data.draw(arrays(base_shape=tuple(np.shape(kw["input_ids"]))), name)
    ids = kw["input_ids"]
    out = _check(lambda: m(**kw), tally)
    if out is None:
        return
    ref_ids = np.asarray(ids.numpy() if isinstance(ids, torch.Tensor) else ids)
    b = 1 if ref_ids.ndim == 1 else ref_ids.shape[0]
    for v in out.values():
        assert isinstance(v, torch.Tensor) and v.dtype == torch.float32 and v.shape[0] == b
        assert torch.isfinite(v).all(), "validated inputs must give finite outputs"


def _engine_case(data, eng, tally=None):
    """NativeEngine.run is the lower-level entry point (no FastModel validation in front of it)."""
    if data.draw(st.booleans(), "valid"):  # numpy arrays only: the engine takes no lists
        kw = data.draw(valid_feeds("bert", containers=("c", "strided", "fortran")), "valid inputs")
        ids, mask, types = kw["input_ids"], kw.get("attention_mask"), kw.get("token_type_ids")
    else:
        ids = data.draw(arrays(), "input_ids")
        shape = np.shape(ids) if isinstance(ids, np.ndarray) else None
        mask = data.draw(st.one_of(st.none(), arrays(base_shape=shape)), "mask")
        types = data.draw(st.one_of(st.none(), arrays(base_shape=shape)), "types")
    out = _check(lambda: eng.run(ids, mask, types), tally)
    if out is not None:
        for v in out.values():
            assert v.dtype == np.float32 and np.isfinite(v).all()


@pytest.mark.parametrize("arch", ["bert", "distilbert", "roberta"])
def test_fuzz_model_inputs(models, arch):
    @FUZZ
    @given(data=st.data(), backend=st.sampled_from(["native", "onnxruntime"]))
    def prop(data, backend):
        _model_case(data, models[arch][backend], arch)

    prop()


def test_fuzz_engine_run_direct(models):
    eng = models["bert"]["native"].backend.engine

    @FUZZ
    @given(data=st.data())
    def prop(data):
        _engine_case(data, eng)

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
POSITIVE = st.sampled_from([1.0, 0.1, 0.0123, 255.0])  # scales every kernel accepts


@st.composite
def f32(draw, max_dim=9):
    shape = tuple(draw(st.lists(st.integers(0, max_dim), min_size=0, max_size=3)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pool = np.asarray([0.0, -0.0, 1.0, -1.0, 1e-45, 1e38, math.nan, math.inf, -math.inf, 0.1, 255.0])
    a = (rng.standard_normal(shape) if draw(st.booleans()) else rng.choice(pool, size=shape))
    a = np.asarray(a, dtype=draw(st.sampled_from([np.float32, np.float32, np.float64])))
    return a if not (a.ndim == 2 and draw(st.booleans())) else np.asfortranarray(a)


def _kernel_lins():
    rng = np.random.default_rng(0)
    return {b: native.PackedLinear(rng.integers(-8, 8, size=(8, 12), dtype=np.int8), 0.01, np.zeros(8, np.float32),
                                   block=b) for b in ("4x1", "1x4", "dense")}


def _kernel_case(data, lin, tally=None):
    """One call of a native kernel wrapper: half the cases with arguments the kernel accepts (shapes that agree,
    finite positive scales, zero points in [0, 255]), half with drawn broken arrays, scales, zero points, blocks
    and heads."""
    which = data.draw(st.sampled_from(["linear", "quantize", "gelu", "layernorm", "attention", "sparse", "dense"]))
    ok = data.draw(st.booleans(), "valid arguments")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    rows, width = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 40))

    def good(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    if which == "linear":
        key, gelu = data.draw(st.sampled_from(list(lin))), data.draw(st.booleans())
        if ok:
            a = rng.integers(0, 256, size=(rows, 12), dtype=np.uint8)
            scale, zp = data.draw(POSITIVE), data.draw(st.sampled_from([0, 128, 255]))
            res = good(rows, 8) if data.draw(st.booleans()) else None
        else:
            a = data.draw(st.one_of(arrays(), st.just(rng.integers(0, 255, size=(3, 12), dtype=np.uint8))))
            res = data.draw(st.one_of(st.none(), f32()))
            scale, zp = data.draw(FLOATS), data.draw(st.sampled_from([-1, 0, 128, 255, 256, 2**40]))
        out = _check(lambda: lin[key].forward(a, scale, zp, gelu=gelu, residual=res), tally)
        if out is not None:
            assert out.shape == (np.shape(a)[0], 8)
    elif which == "quantize":
        x = good(rows, width) if ok else data.draw(f32())
        scale = data.draw(POSITIVE if ok else FLOATS)
        zp = data.draw(st.sampled_from([0, 7, 255] if ok else [-1, 0, 7, 255, 256]))
        out = _check(lambda: native.quantize_u8(x, scale, zp), tally)
        if out is not None:
            assert out.shape == x.shape and out.dtype == np.uint8
    elif which == "gelu":
        x = good(rows, width) if ok else data.draw(f32())
        out = _check(lambda: native.gelu(x), tally)
        if out is not None:
            assert out.shape == x.shape
    elif which == "layernorm":
        if ok:
            x, g, b, eps = good(rows, width), good(width), good(width), 1e-5
        else:
            x, g, b, eps = data.draw(f32()), data.draw(f32()), data.draw(f32()), data.draw(FLOATS)
        out = _check(lambda: native.layernorm(x, g, b, eps=eps), tally)
        if out is not None and ok:
            assert out.shape == x.shape and np.isfinite(out).all()
    elif which == "attention":
        if ok:
            heads, d = data.draw(st.sampled_from([1, 2, 4])), data.draw(st.sampled_from([8, 16]))
            q = good(rows, heads * d)
            mask = rng.integers(0, 2, size=rows) if data.draw(st.booleans()) else None
        else:
            q = data.draw(f32())
            heads, mask = data.draw(st.sampled_from([-1, 0, 1, 2, 3])), data.draw(st.one_of(st.none(), arrays()))
        out = _check(lambda: native.attention(q, q, q, heads=heads, mask=mask), tally)
        if out is not None and ok:
            assert out.shape == q.shape and np.isfinite(out).all()
    else:
        if ok:
            w, blk = rng.integers(-8, 8, size=(8, 16), dtype=np.int8), data.draw(st.sampled_from(["4x1", "1x4"]))
        else:
            w = data.draw(arrays())
            blk = data.draw(st.sampled_from(["4x1", "1x4", "2x2", "", None, (4, 1), (0, 0)]))
        sw = _check(lambda: native.SparseWeight(w, block=blk) if which == "sparse" else native.DenseWeight(w))
        if sw is None:
            if tally is not None:  # one outcome per case: the weight itself was refused
                tally["refused"] += 1
        else:
            a = rng.integers(0, 256, size=(rows, 16), dtype=np.uint8) if ok else data.draw(arrays())
            out = _check(lambda: sw.matmul(a), tally)
            if out is not None and ok:
                np.testing.assert_array_equal(out, a.astype(np.int64) @ w.astype(np.int64).T)


def test_fuzz_native_kernels():
    lin = _kernel_lins()

    @FUZZ
    @given(data=st.data())
    def prop(data):
        _kernel_case(data, lin)

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


@pytest.mark.parametrize("entry", ["bert", "distilbert", "roberta", "engine", "kernels"])
def test_input_fuzz_stats(models, entry):
    """The strategies above really exercise both outcomes: on a fixed sample (same strategies, a seed derived from
    this test, so the same cases on every run and in any test order), each entry point both refuses and runs a
    fair share of its cases."""
    tally = Counter()
    lin = _kernel_lins() if entry == "kernels" else None

    @SAMPLE
    @given(data=st.data(), backend=st.sampled_from(["native", "onnxruntime"]))
    def prop(data, backend):
        if entry == "kernels":
            _kernel_case(data, lin, tally)
        elif entry == "engine":
            _engine_case(data, models["bert"]["native"].backend.engine, tally)
        else:
            _model_case(data, models[entry][backend], entry, tally)

    prop()
    n = tally["ran"] + tally["refused"]
    print(f"\ninput fuzz sample, {entry}: {dict(tally)}")
    assert n >= SAMPLE.max_examples, tally
    assert tally["ran"] >= 0.1 * n and tally["refused"] >= 0.1 * n, tally
