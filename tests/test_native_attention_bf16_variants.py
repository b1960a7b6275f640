"""bf16 attention for MPNet and ModernBERT (issue 21): the variant kernel with a per-row relative-position bias and /
or a sliding window (hf_attention_bf16_ex; the engine runs it under attention="bf16" / "auto" in MPNet's layers and
ModernBERT's local layers; rotary q / k are rotated before it, as for fp32). The AVX-512 BF16 kernel against its
scalar reference (bit for bit, as tests/test_native_attention_bf16.py), the reference against a float64 numpy model of
the same rounding, the fallbacks (AVX2: none), and the engines on tiny peaked MPNet (sequences past the bucket range)
and ModernBERT (windows shorter than the sequence, a global layer) models against PyTorch and fp32 attention."""
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from _attention_helpers import attention_inputs
from _export_helpers import calibration_for
from _family_parity import real_sentences
from _family_parity import rel as _rel
from test_family_modernbert import modernbert_case, rel_err

import hf_fast
from hf_fast import native
from hf_fast.native.encoder_kernels import attention_window
from hf_fast.runtime.engine import NativeEngine
from hf_fast.runtime.plan import build_plan
from hf_fast.runtime.torch_engine import ModernBertEngine

HW = native.bf16_attention_hardware(64)
# attention="auto" runs bf16 only where this CPU's bf16 kernel measures faster than fp32 (the tiny models: head size 16)
AUTO_BF16 = native.bf16_attention_pays(16)
needs_bf16 = pytest.mark.skipif(not HW, reason="this CPU has no AVX512_BF16")

# S, heads, d, mask, relative bias, window (None: every key). Windows shorter and longer than S, 0 (the key itself),
# odd window starts (key pairs straddling the window edge), masked keys inside windows, rows whose window keys are all
# masked ("all"), S past MPNet's bucket range (max_distance 128) and past the 12-row / 32-key blocks.
VARIANTS = [
    (1, 1, 16, None, True, None), (7, 2, 16, "random", True, None), (12, 3, 32, "all", True, None),
    (33, 2, 64, "tail", True, None), (200, 2, 64, "middle", True, None), (97, 2, 80, "random", True, None),
    (5, 1, 16, None, False, 0), (13, 2, 48, "all", False, 3), (40, 2, 16, "tail", False, 4),
    (97, 2, 80, "random", False, 8), (128, 4, 64, None, False, 64), (300, 2, 64, "middle", False, 16),
    (64, 2, 32, None, False, 100), (50, 2, 32, "random", True, 6),
]


def _rel_table(s, heads, seed):
    rng = np.random.default_rng(seed)
    return native.relative_position_bias(s, rng.standard_normal((32, heads)).astype(np.float32) * 3, 128)


def _case(s, heads, d, mask, rel, window, seed, scale=1.0):
    q, k, v, m = attention_inputs(s, heads, d, mask, seed=seed, scale=scale)
    return q, k, v, m, (_rel_table(s, heads, seed + 1) if rel else None), window


def _bf16(x):
    """float32 -> bf16 (round to nearest even, denormals to zero) -> float32, in numpy's integer arithmetic"""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    r = np.where((u & 0x7F800000) == 0, u & 0x80000000, r)
    return r.astype(np.uint32).view(np.float32)


def _model(q, k, v, heads, m, rel, window):
    """the bf16 variant's definition in float64: bf16 q, k, v; score + rel[h, j - i + S - 1]; keys outside
    |i - j| <= window excluded (a row whose window keys are all masked: uniform over its window); bf16 probabilities
    normalised by their own sum"""
    s, hd = q.shape
    d = hd // heads
    keep = np.ones(s, bool) if m is None else m.astype(bool)
    i, j = np.meshgrid(np.arange(s), np.arange(s), indexing="ij")
    inwin = np.ones((s, s), bool) if window is None else np.abs(i - j) <= window
    out = np.empty((s, hd))
    qb, kb, vb = (_bf16(x).astype(np.float64) for x in (q, k, v))
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        sc = qb[:, sl] @ kb[:, sl].T / np.sqrt(d)
        if rel is not None:
            sc = sc + rel[h][j - i + s - 1]
        ok = inwin & keep[None, :]
        sc = np.where(ok, sc, -np.inf)
        mx = sc.max(axis=1, keepdims=True)
        e = np.where(ok, np.exp(sc - np.where(np.isfinite(mx), mx, 0.0)), 0.0)
        e = np.where(np.isfinite(mx), e, inwin.astype(np.float64))  # every window key masked: uniform
        p = _bf16(e.astype(np.float32)).astype(np.float64)
        out[:, sl] = (p @ vb[:, sl]) / p.sum(axis=1, keepdims=True)
    return out


def _fp32(q, k, v, heads, m, rel, window):
    """the fp32 attention of the same variant (the engine's default kernels)"""
    if window is not None:
        assert rel is None
        return attention_window(q, k, v, heads, window, mask=m, isa="ref")
    if rel is not None:
        return native.attention_relbias(q, k, v, heads, rel, mask=m, isa="ref")
    return native.attention(q, k, v, heads, m, isa="ref")


@needs_bf16
@pytest.mark.parametrize("s, heads, d, mask, rel, window", VARIANTS)
@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_avx512_bf16_variant_is_the_reference_bit_for_bit(s, heads, d, mask, rel, window, scale):
    q, k, v, m, r, w = _case(s, heads, d, mask, rel, window, seed=s * 7 + d, scale=scale)
    got = native.attention_bf16_ex(q, k, v, heads, m, rel=r, window=w, isa="avx512vnni")
    ref = native.attention_bf16_ex(q, k, v, heads, m, rel=r, window=w, isa="ref")
    np.testing.assert_array_equal(got.view(np.uint32), ref.view(np.uint32))


ODD_D = [(9, 2, 7, "random", True, None), (9, 2, 7, "random", False, 2)]  # head sizes only the reference takes


@pytest.mark.parametrize("s, heads, d, mask, rel, window", VARIANTS[:5] + VARIANTS[6:11] + ODD_D)
def test_reference_variant_is_bf16_products_with_an_fp32_softmax(s, heads, d, mask, rel, window):
    """the scalar reference against the float64 model (tolerances of the unbiased bf16 test): the bias and the window
    are in it, and the bf16 rounding is, since the fp32 attention of the same variant is far further from the model"""
    q, k, v, m, r, w = _case(s, heads, d, mask, rel, window, seed=s + d)
    ref = native.attention_bf16_ex(q, k, v, heads, m, rel=r, window=w, isa="ref")
    want = _model(q, k, v, heads, m, r, w)
    err = np.abs(ref - want)
    assert err.max() <= 2e-3 * np.abs(v).max(), err.max()
    assert err.mean() <= 1e-5 * np.abs(v).max(), err.mean()
    if s > 1:
        assert np.abs(_fp32(q, k, v, heads, m, r, w) - want).mean() > 20 * err.mean()


@pytest.mark.parametrize("rel, window", [(True, None), (False, 8), (False, 64)])
def test_bf16_variant_is_close_to_fp32_and_needs_its_bias_or_window(rel, window):
    """bf16 against fp32 attention of the same variant: max |diff| / max |fp32| in (1e-5, 2e-2); the variant
    without its bias / window (the plain bf16 attention) is > 10x further from it"""
    q, k, v, m, r, w = _case(256, 4, 64, "tail", rel, window, seed=3, scale=1.5)
    got = native.attention_bf16_ex(q, k, v, 4, m, rel=r, window=w, isa="ref")  # (any HF_FAST_ISA)
    fp32 = _fp32(q, k, v, 4, m, r, w)
    rel_err = np.abs(got - fp32).max() / np.abs(fp32).max()
    assert 1e-5 < rel_err < 2e-2, rel_err
    plain = native.attention_bf16(q, k, v, 4, m, isa="ref")
    assert np.abs(plain - fp32).max() / np.abs(fp32).max() > 10 * rel_err


def test_no_variant_without_a_bf16_kernel_and_bad_input():
    q, k, v, m = attention_inputs(8, 2, 16, None, seed=0)
    if "avx2" in native.supported_isas():
        with pytest.raises(native.NativeError, match="no bf16 attention kernel"):
            native.attention_bf16_ex(q, k, v, 2, m, window=2, isa="avx2")
    with pytest.raises(ValueError, match=r"rel must have shape \(2, 15\)"):
        native.attention_bf16_ex(q, k, v, 2, m, rel=np.zeros((2, 8), np.float32))
    with pytest.raises(ValueError, match="window must be a non-negative int"):
        native.attention_bf16_ex(q, k, v, 2, m, window=-1)
    # window >= S - 1 is the global bf16 attention, a zero bias adds nothing: bit for bit
    plain = native.attention_bf16(q, k, v, 2, m, isa="ref")
    assert np.array_equal(native.attention_bf16_ex(q, k, v, 2, m, window=7, isa="ref"), plain)
    assert np.array_equal(native.attention_bf16_ex(q, k, v, 2, m, rel=np.zeros((2, 15), np.float32), isa="ref"), plain)


# ---- ModernBERT: rotary q / k (rotated before attention), local layers on the windowed variant, a global layer ----

def _isa_has_bf16(isa):
    return native.attention_bf16_kernel(16, isa) != ""


@pytest.fixture(scope="module")
def modernbert():
    return modernbert_case()  # layer 0 global, 1-2 local with window 4 each side; 40 tokens, one padded row


MB_TOL = 0.05  # tests/test_family_modernbert.py's engine (int8) vs PyTorch fp32 tolerance, kept under bf16
# bf16 against fp32 attention, same engine and ISA: max |diff| / max |fp32| over real tokens (measured 0.025 on this
# peaked model, q / k x4, where the int8 engine's own error against PyTorch fp32 is 0.021)
BF16_VS_FP32 = 0.04


@pytest.mark.parametrize("isa", [i for i in native.BUILT_ISA_NAMES if i != "auto"])
def test_modernbert_bf16_attention(modernbert, isa):
    m, quant, ids, mask, ref = modernbert
    if not _isa_has_bf16(isa):  # AVX2 (or a CPU without AVX512_BF16): refused, the engine keeps fp32
        with pytest.raises(native.NativeError, match="no bf16 attention kernel"):
            ModernBertEngine(m, quant, isa=isa, attention="bf16")
        return
    eng = ModernBertEngine(m, quant, isa=isa, attention="bf16")
    fp32 = ModernBertEngine(m, quant, isa=isa).run(ids, mask)
    out = eng.run(ids, mask)
    assert rel_err(out, ref, mask) < MB_TOL
    assert 0 < rel_err(out, fp32, mask) < BF16_VS_FP32
    if isa != "ref":  # the same bf16 attention as the reference ISA's (the other ops' ISA differences only)
        np.testing.assert_allclose(out, ModernBertEngine(m, quant, isa="ref", attention="bf16").run(ids, mask),
                                   rtol=0, atol=2e-3)
    # dropping the window from the engine (global attention in the local layers) breaks parity under bf16 too
    assert rel_err(ModernBertEngine(m, quant, isa=isa, attention="bf16", leave_out=("window",)).run(ids, mask), ref,
                mask) > 4 * MB_TOL


def test_modernbert_local_layers_run_bf16(modernbert):
    """every layer local (the engine's description only): the bf16 engine differs from the fp32 one, so the window
    layers run the bf16 variant rather than keeping their fp32 kernel; ModernBERT-base's shape class (window 64 of
    128 tokens) on the reference ISA"""
    m, quant, ids, mask, _ = modernbert
    cfg = m.config
    saved = list(cfg.layer_types)
    try:
        cfg.layer_types = ["sliding_attention"] * len(saved)
        a = ModernBertEngine(m, quant, isa="ref", attention="bf16").run(ids, mask)
        b = ModernBertEngine(m, quant, isa="ref").run(ids, mask)
    finally:
        cfg.layer_types = saved
    assert 0 < rel_err(a, b, mask) < BF16_VS_FP32


# ---- MPNet: the relative-position bias on sequences longer than the bucket range ----

@pytest.fixture(scope="module")
def mpnet(tmp_path_factory, tok):
    from test_family_mpnet import peaked_mpnet

    sentences = real_sentences()
    m = peaked_mpnet("token-classification", tok.vocab_size)
    path = hf_fast.export(m, tok, tmp_path_factory.mktemp("mpnet-bf16"),
                          calibration_dataset=calibration_for("token-classification", sentences[:64]), progress=False)
    return m, path, sentences


def _mpnet_feeds(tok, sentences, long):
    from test_family_mpnet import MAX_POS, _feeds, _long_texts

    x = _feeds(tok, "token-classification", _long_texts(sentences) if long else sentences[:32],
               max_length=MAX_POS if long else 64)
    if long:
        assert x["attention_mask"].sum(1).min() > 128  # past max_distance: offsets share the last buckets
    return x


def _mpnet_engine(path, **kw):
    from test_family_mpnet import _hidden_plan

    return NativeEngine(_hidden_plan(path), **kw)


MPNET_TOL = 0.05  # test_family_mpnet.TOL_HIDDEN: the int8 engine's relative L2 error against PyTorch fp32
# bf16 against fp32 attention, same engine and ISA, relative L2 over real tokens (measured 0.022 on this peaked model,
# q / k x2 and a bias table of std 3, where the int8 engine's own error against PyTorch fp32 is ~0.032)
MPNET_BF16_VS_FP32 = 0.04


@pytest.mark.parametrize("long", [False, True])
def test_mpnet_bf16_attention_with_the_relative_bias(mpnet, tok, long):
    """attention="bf16" loads (it was refused: "a relative attention bias") and runs the biased variant: relative L2
    error against PyTorch within the fp32 engine's tolerance, against the fp32-attention engine nonzero and below
    MPNET_BF16_VS_FP32; with the bias table zeroed (an engine ignoring it) far outside"""
    from test_family_mpnet import _hidden

    m, path, sentences = mpnet
    x = _mpnet_feeds(tok, sentences, long)
    valid = x["attention_mask"].astype(bool)
    want = _hidden(m, x)[valid]
    run = lambda e: e.run(x["input_ids"], x["attention_mask"])["last_hidden_state"][valid]  # noqa: E731
    isas = ["ref"] + (["avx512vnni"] if HW else [])
    outs = {}
    for isa in isas:
        eng = _mpnet_engine(path, isa=isa, attention="bf16")
        assert eng.attention == "bf16"
        outs[isa] = got = run(eng)
        assert _rel(got, want) <= MPNET_TOL, _rel(got, want)
        fp32 = run(_mpnet_engine(path, isa=isa))
        assert 0 < _rel(got, fp32) < MPNET_BF16_VS_FP32, _rel(got, fp32)
    if HW:
        assert _rel(outs["avx512vnni"], outs["ref"]) < 2e-3
    plan = _hidden_plan_zero_bias(path)
    assert _rel(run(NativeEngine(plan, isa="ref", attention="bf16")), want) > 5 * MPNET_TOL


def _hidden_plan_zero_bias(path):
    plan = build_plan(onnx.load(str(path / "model.onnx")), 4, "mpnet", "token-classification")
    plan.head, plan.outputs = [], {"last_hidden_state": (0, None)}
    plan.attention_bias.table = np.zeros_like(plan.attention_bias.table)
    return plan


def test_mpnet_attention_option_on_every_isa(mpnet):
    """auto: bf16 where the ISA has a kernel and the CPU's bf16 kernel is the faster one, else fp32; bf16 without a
    kernel: the clear
    ValueError; dynamic int8 still refuses the bias (it has no variant)"""
    _, path, _ = mpnet
    for isa in native.supported_isas():
        has = _isa_has_bf16(isa)
        assert _mpnet_engine(path, isa=isa, attention="auto").attention == ("bf16" if has and AUTO_BF16 else "fp32")
        if has:
            assert _mpnet_engine(path, isa=isa, attention="bf16").attention == "bf16"
        else:
            with pytest.raises(ValueError, match="attention='bf16' is not available: no bf16 attention kernel"):
                _mpnet_engine(path, isa=isa, attention="bf16")
    if native.attention_dq8_kernel(16, "ref"):
        with pytest.raises(ValueError, match="a relative attention bias"):
            _mpnet_engine(path, isa="ref", attention="int8-dynamic")


@pytest.mark.parametrize("isa", ["avx2", "ref"])
def test_forced_isa_runs_mpnet_through_from_pretrained(mpnet, isa):
    """HF_FAST_ISA=avx2: auto runs fp32, bf16 is refused; =ref: auto runs the bf16 reference where the CPU's bf16
    kernel is the faster one, bf16 always"""
    if isa not in native.supported_isas():
        pytest.skip(f"no {isa}")
    _, path, _ = mpnet
    code = ("import json, sys, numpy as np\n"
            "from hf_fast import FastModelForTokenClassification as M\n"
            "ids = np.array([[0] + list(range(1000, 1200)) + [2]])\n"
            "out = {}\n"
            "for att in ('auto', 'fp32', 'bf16'):\n"
            "    try:\n"
            "        m = M.from_pretrained(sys.argv[1], attention=att)\n"
            "    except ValueError as exc:\n"
            "        out[att] = str(exc)\n"
            "        continue\n"
            "    r = m.backend.run(ids, np.ones_like(ids))\n"
            "    out[att] = [m.backend.engine.attention, m.backend.engine.isa, np.asarray(r['logits']).tolist()]\n"
            "print(json.dumps(out))\n")
    env = {**os.environ, "HF_FAST_ISA": isa, "HF_FAST_PACK_CACHE": "0"}
    r = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["fp32"][:2] == ["fp32", isa]
    assert out["auto"][:2] == ["bf16" if AUTO_BF16 and isa == "ref" else "fp32", isa]
    if isa == "avx2":
        assert "attention='bf16' is not available" in out["bf16"]
    else:
        assert out["bf16"][:2] == ["bf16", "ref"]
        a, b = np.asarray(out["bf16"][2]), np.asarray(out["fp32"][2])
        assert np.all(np.isfinite(a)) and not np.array_equal(a, b)
        assert np.abs(a - b).max() <= 0.05 * np.abs(b).max() + 1e-3
