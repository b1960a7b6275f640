"""bf16 attention (q k^T and p v on bf16 pairs, fp32 softmax): the AVX-512 BF16 kernel against its scalar reference
(bit for bit), the reference against an independent numpy model of the same arithmetic, the fallbacks (AVX2: none,
fp32), and the engine's attention= option."""
import json
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
from _attention_helpers import attention_inputs, engine_feeds, engine_for, fp32_attention_artifact

from hf_fast import native

HW = native.bf16_attention_hardware(64)
needs_bf16 = pytest.mark.skipif(not HW, reason="this CPU has no AVX512_BF16")
# what attention="auto" runs for the test artifact's head size 16: bf16 only where it is the faster kernel here
AUTO_BF16 = native.bf16_attention_pays(16)

SHAPES = [  # S, heads, d, mask
    (1, 1, 16, None), (7, 2, 16, None), (12, 3, 32, "random"), (13, 2, 48, "all"), (33, 2, 64, "tail"),
    (64, 4, 64, "middle"), (97, 2, 80, "random"), (128, 12, 64, None), (200, 2, 128, "tail"), (384, 2, 64, "tail"),
]


_inputs = attention_inputs


def _bf16(x):
    """float32 -> bf16 (round to nearest even, denormals to zero) -> float32, in numpy's integer arithmetic"""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    r = np.where((u & 0x7F800000) == 0, u & 0x80000000, r)
    return r.astype(np.uint32).view(np.float32)


def _model(q, k, v, heads, m):
    """the bf16 attention's definition in float64: bf16 q, k, v; fp32-ish softmax; bf16 probabilities normalised
    by their own sum"""
    s, hd = q.shape
    d = hd // heads
    keep = np.ones(s, bool) if m is None else m.astype(bool)
    out = np.empty((s, hd))
    qb, kb, vb = (_bf16(x).astype(np.float64) for x in (q, k, v))
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        sc = qb[:, sl] @ kb[:, sl].T / np.sqrt(d)
        sc[:, ~keep] = -np.inf
        e = np.exp(sc - sc.max(axis=1, keepdims=True)) if keep.any() else np.ones_like(sc)  # all masked: uniform
        p = _bf16(e.astype(np.float32)).astype(np.float64)
        out[:, sl] = (p @ vb[:, sl]) / p.sum(axis=1, keepdims=True)
    return out


@needs_bf16
@pytest.mark.parametrize("s, heads, d, mask", SHAPES)
@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_avx512_bf16_kernel_is_the_reference_bit_for_bit(s, heads, d, mask, scale):
    q, k, v, m = _inputs(s, heads, d, mask, seed=s * 7 + d, scale=scale)
    assert native.attention_bf16_kernel(d, "avx512vnni") == "avx512bf16"
    got = native.attention_bf16(q, k, v, heads, m, isa="avx512vnni")
    ref = native.attention_bf16(q, k, v, heads, m, isa="ref")
    np.testing.assert_array_equal(got.view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("s, heads, d, mask", SHAPES[:7] + [(9, 2, 7, "random"), (10, 1, 8, None)])
def test_reference_is_bf16_products_with_an_fp32_softmax(s, heads, d, mask):
    """the scalar reference against a float64 numpy model of the same rounding: equal up to the fp32 sums (and a
    bf16 rounding flip of p where fp32 exp and float64 exp straddle a rounding boundary), far closer than to fp32"""
    q, k, v, m = _inputs(s, heads, d, mask, seed=s + d)
    ref = native.attention_bf16(q, k, v, heads, m, isa="ref")
    want = _model(q, k, v, heads, m)
    fp32 = native.attention(q, k, v, heads, m, isa="ref")
    err = np.abs(ref - want).max()
    assert err <= 2e-3 * np.abs(v).max(), err
    assert np.abs(ref - want).mean() <= 1e-5 * np.abs(v).max()
    # the rounding is really there: the fp32 attention differs from the model by far more than the reference does
    assert np.abs(fp32 - want).mean() > 20 * np.abs(ref - want).mean()


def test_bf16_attention_is_close_to_fp32():
    q, k, v, m = _inputs(128, 4, 64, "tail", seed=3)
    got = native.attention_bf16(q, k, v, 4, m, isa="ref")
    fp32 = native.attention(q, k, v, 4, m, isa="ref")
    rel = np.abs(got - fp32).max() / np.abs(fp32).max()
    assert 1e-5 < rel < 2e-2, rel


def test_avx2_has_no_bf16_kernel_and_says_so():
    if "avx2" not in native.supported_isas():
        pytest.skip("no AVX2")
    assert native.attention_bf16_kernel(64, "avx2") == ""
    q, k, v, m = _inputs(8, 2, 16, None, seed=0)
    with pytest.raises(native.NativeError, match="no bf16 attention kernel"):
        native.attention_bf16(q, k, v, 2, m, isa="avx2")
    # the reference runs every head size, the AVX-512 kernel d % 16 == 0 only
    assert native.attention_bf16_kernel(24, "ref") == "ref"
    if HW:
        assert native.attention_bf16_kernel(24, "avx512vnni") == ""


# ---- the engine's attention= option ----

@pytest.fixture(scope="module")
def artifact(tmp_path_factory, tok):
    return fp32_attention_artifact(tmp_path_factory.mktemp("bf16-bert"), tok)


_feeds, _engine = engine_feeds, engine_for


def test_engine_attention_option(artifact):
    feeds = _feeds(np.random.default_rng(1))
    assert _engine(artifact).attention == "fp32"  # the default: bf16 is opt-in
    # ... for a task head: a loaded classifier keeps fp32 unless asked (only sentence embeddings default to "auto")
    from hf_fast import FastModelForSequenceClassification

    assert FastModelForSequenceClassification.from_pretrained(artifact).backend.engine.attention == "fp32"
    assert FastModelForSequenceClassification.from_pretrained(artifact, attention="auto").backend.engine.attention \
        == ("bf16" if AUTO_BF16 else "fp32")
    # auto on the reference ISA: the bf16 model only where the CPU's bf16 kernel is the faster one
    assert _engine(artifact, isa="ref", attention="auto").attention == ("bf16" if AUTO_BF16 else "fp32")
    ref32 = _engine(artifact, isa="ref", attention="fp32")
    ref16 = _engine(artifact, isa="ref", attention="bf16")  # the reference ISA runs bf16 on any CPU
    assert (ref32.attention, ref16.attention) == ("fp32", "bf16")
    a, b = ref32.run(**feeds)["logits"], ref16.run(**feeds)["logits"]
    assert not np.array_equal(a, b)  # the option really changes the arithmetic
    assert np.abs(a - b).max() <= 0.05 * np.abs(a).max() + 1e-3
    with pytest.raises(ValueError, match="attention='fast'"):
        _engine(artifact, attention="fast")
    sess = ort.InferenceSession(str(artifact / "model.onnx"), providers=["CPUExecutionProvider"])
    want = sess.run(["logits"], feeds)[0]
    for isa in native.supported_isas():
        for att in ("auto", "fp32", "bf16"):
            if att == "bf16" and native.attention_bf16_kernel(16, isa) == "":
                with pytest.raises(ValueError, match="attention='bf16' is not available"):
                    _engine(artifact, isa=isa, attention=att)
                continue
            eng = _engine(artifact, isa=isa, attention=att)
            has = native.attention_bf16_kernel(16, isa) != ""
            expect = "bf16" if has and (att == "bf16" or (att == "auto" and AUTO_BF16)) else "fp32"
            assert eng.attention == expect, (isa, att)
            got = eng.run(**feeds)["logits"]
            assert np.abs(got - want).max() <= 0.03 * np.abs(want).max() + 1e-3, (isa, att)
            if expect == "bf16" and isa != "ref":  # same int8 GEMMs, same bf16 attention: close to the ref ISA's
                assert np.abs(got - b).max() <= 0.01 * np.abs(b).max() + 1e-4


def test_auto_follows_the_measurement(artifact, monkeypatch):
    """attention="auto" runs bf16 only where the probe measures the bf16 kernel faster than fp32 (AVX512_BF16 alone
    is not enough: on Sapphire / Emerald Rapids the bf16 kernel is the slower one); the probe itself answers False
    without the hardware, and follows the timings where it has it"""
    from hf_fast.native import autotune, kernels

    for pays in (True, False):
        monkeypatch.setattr(native, "bf16_attention_pays", lambda d, pays=pays: pays)
        assert _engine(artifact, isa="ref", attention="auto").attention == ("bf16" if pays else "fp32")
        assert _engine(artifact, isa="ref", attention="bf16").attention == "bf16"  # asked for: always
    monkeypatch.undo()
    probe = autotune.bf16_attention_pays
    try:
        probe.cache_clear()
        monkeypatch.setattr(kernels, "bf16_attention_isa", lambda d: None)
        assert probe(64) is False
        monkeypatch.undo()
        if HW:  # a bf16 kernel made artificially slow (or instant) decides the answer
            slow = kernels.attention_bf16
            fakes = ((lambda *a, **k: [slow(*a, **k) for _ in range(3)], False), (lambda *a, **k: None, True))
            for fake, want in fakes:
                probe.cache_clear()
                monkeypatch.setattr(kernels, "attention_bf16", fake)
                assert probe(64) is want
                monkeypatch.undo()
    finally:
        probe.cache_clear()


def test_auto_does_not_probe_where_the_engine_has_no_bf16_kernel(artifact, monkeypatch):
    """attention="auto" on an engine ISA without a bf16 kernel (HF_FAST_ISA=avx2) runs fp32 without timing the
    kernels first (the probe costs ~5 ms and could only say "fp32")"""
    if "avx2" not in native.supported_isas():
        pytest.skip("no avx2")
    monkeypatch.setattr(native, "bf16_attention_pays", lambda d: pytest.fail("probed on an ISA without bf16"))
    assert _engine(artifact, isa="avx2", attention="auto").attention == "fp32"


@pytest.mark.parametrize("isa", ["avx2", "ref"])
def test_forced_isa_runs_through_from_pretrained(artifact, isa):
    """HF_FAST_ISA=avx2 runs fp32 attention (no bf16 kernel), =ref the bf16 reference where the CPU has AVX512_BF16;
    attention="fp32" forces fp32 on both"""
    if isa not in native.supported_isas():
        pytest.skip(f"no {isa}")
    code = ("import json, sys, numpy as np\n"
            "from hf_fast import FastModelForSequenceClassification as M\n"
            "out = {}\n"
            "for att in ('auto', 'fp32'):\n"
            "    m = M.from_pretrained(sys.argv[1], attention=att)\n"
            "    ids = np.array([[101, 2023, 2003, 1037, 3231, 102]])\n"
            "    r = m.backend.run(ids, np.ones_like(ids))\n"
            "    out[att] = [m.backend.engine.attention, m.backend.engine.isa, np.asarray(r['logits']).tolist()]\n"
            "print(json.dumps(out))\n")
    env = {**os.environ, "HF_FAST_ISA": isa, "HF_FAST_PACK_CACHE": "0"}
    r = subprocess.run([sys.executable, "-c", code, str(artifact)], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["fp32"][:2] == ["fp32", isa]
    assert out["auto"][:2] == ["bf16" if AUTO_BF16 and isa == "ref" else "fp32", isa]
    assert np.all(np.isfinite(out["auto"][2]))
    assert np.abs(np.subtract(out["auto"][2], out["fp32"][2])).max() <= 0.05 * np.abs(out["fp32"][2]).max() + 1e-3
