"""Dynamic int8 attention (q, k int8 per token, v per channel, int16 softmax weights, run-time scales): the AVX-512
VNNI kernel against its scalar reference (bit for bit), the reference against an independent numpy model of the same
arithmetic, the int32 overflow guard on long sequences, the fallbacks (AVX2: none), and the engine's
attention="int8-dynamic" option."""
import json
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
from _attention_helpers import attention_inputs, engine_feeds, engine_for, fp32_attention_artifact

from hf_fast import native

VNNI = "avx512vnni" in native.supported_isas()
needs_vnni = pytest.mark.skipif(not VNNI, reason="this CPU has no AVX-512 VNNI")

SHAPES = [  # S, heads, d, mask
    (1, 1, 16, None), (7, 2, 16, None), (12, 3, 32, "random"), (13, 2, 48, "all"), (33, 2, 64, "tail"),
    (64, 4, 64, "middle"), (97, 2, 80, "random"), (128, 12, 64, None), (200, 2, 128, "tail"), (384, 2, 64, "tail"),
    (600, 1, 64, None),  # > 516 keys: fewer weight bits (hf_dq8_pmax)
]


def _inputs(s, heads, d, mask, seed, scale=1.0):
    q, k, v, m = attention_inputs(s, heads, d, mask, seed, scale)
    q[0, :d] = 0.0  # an all-zero row (scale 0)
    return q, k, v, m


def _pmax(ne):
    return max(1, min(32767, (2 ** 31 - 1) // (127 * ne)))


def _q8(x, axis):
    """symmetric int8 with scale max|x| / 127 along `axis` (float32 arithmetic, as the kernels do)"""
    mx = np.abs(x).max(axis=axis, keepdims=True)
    r = np.where(mx > 0, np.float32(127) / np.where(mx > 0, mx, 1), 0).astype(np.float32)
    return np.clip(np.rint(x * r), -127, 127), (mx / np.float32(127)).astype(np.float64)


def _model(q, k, v, heads, m):
    """the dynamic int8 attention in float64 on the same integers"""
    s, hd = q.shape
    d = hd // heads
    keep = np.ones(s, bool) if m is None else m.astype(bool)
    ne = int(np.nonzero(keep)[0].max()) + 1 if keep.any() else s
    out = np.empty((s, hd))
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        q8, sq = _q8(q[:, sl], 1)
        k8, sk = _q8(k[:ne, sl], 1)
        v8, sv = _q8(v[:ne, sl], 0)
        sc = (q8 @ k8.T) * sq * sk.T / np.sqrt(d)
        sc[:, ~keep[:ne]] = -np.inf
        e = np.exp(sc - sc.max(axis=1, keepdims=True)) if keep.any() else np.ones_like(sc)
        p = np.rint(e * _pmax(ne))
        out[:, sl] = (p @ v8) * sv / p.sum(axis=1, keepdims=True)
    return out


@needs_vnni
@pytest.mark.parametrize("s, heads, d, mask", SHAPES)
@pytest.mark.parametrize("scale", [1.0, 40.0])
def test_avx512vnni_kernel_is_the_reference_bit_for_bit(s, heads, d, mask, scale):
    q, k, v, m = _inputs(s, heads, d, mask, seed=s * 7 + d, scale=scale)
    assert native.attention_dq8_kernel(d, "avx512vnni") == "avx512vnni"
    got = native.attention_dq8(q, k, v, heads, m, isa="avx512vnni")
    ref = native.attention_dq8(q, k, v, heads, m, isa="ref")
    np.testing.assert_array_equal(got.view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("s, heads, d, mask", SHAPES[:7] + [(9, 2, 7, "random"), (600, 1, 16, "tail")])
def test_reference_is_the_dynamic_int8_arithmetic(s, heads, d, mask):
    """the scalar reference against a float64 model on the same integers: equal up to fp32 rounding of the scores
    and exp (which can move an int8 or int16 value by one step), far closer than to the fp32 attention"""
    q, k, v, m = _inputs(s, heads, d, mask, seed=s + d)
    ref = native.attention_dq8(q, k, v, heads, m, isa="ref")
    want = _model(q, k, v, heads, m)
    fp32 = native.attention(q, k, v, heads, m, isa="ref")
    assert np.abs(ref - want).max() <= 1e-3 * np.abs(v).max()
    if s > 1:  # one key: every scheme returns v
        assert np.abs(fp32 - want).mean() > 20 * np.abs(ref - want).mean()


def test_long_sequence_does_not_overflow():
    """flat attention over 2,000 keys of one-signed v: p . v8 would pass 2^31 with 15-bit weights"""
    s, d = 2000, 16
    q = np.zeros((s, d), np.float32)
    k = np.ones((s, d), np.float32)
    v = np.full((s, d), 3.0, np.float32)
    for isa in ["ref"] + (["avx512vnni"] if VNNI else []):
        got = native.attention_dq8(q, k, v, 1, None, isa=isa)
        np.testing.assert_allclose(got, 3.0, rtol=1e-6)


def test_dynamic_int8_attention_is_close_to_fp32():
    q, k, v, m = _inputs(128, 4, 64, "tail", seed=3, scale=2.0)
    got = native.attention_dq8(q, k, v, 4, m, isa="ref")
    fp32 = native.attention(q, k, v, 4, m, isa="ref")
    rel = np.linalg.norm(got - fp32) / np.linalg.norm(fp32)
    assert 1e-4 < rel < 2e-2, rel


def test_avx2_has_no_dynamic_int8_kernel_and_says_so():
    if "avx2" not in native.supported_isas():
        pytest.skip("no AVX2")
    assert native.attention_dq8_kernel(64, "avx2") == ""
    q, k, v, m = _inputs(8, 2, 16, None, seed=0)
    with pytest.raises(native.NativeError, match="no dynamic int8 attention kernel"):
        native.attention_dq8(q, k, v, 2, m, isa="avx2")
    assert native.attention_dq8_kernel(24, "ref") == "ref"
    if VNNI:
        assert native.attention_dq8_kernel(24, "avx512vnni") == ""


# ---- the engine's attention="int8-dynamic" ----

@pytest.fixture(scope="module")
def artifact(tmp_path_factory, tok):
    return fp32_attention_artifact(tmp_path_factory.mktemp("dq8-bert"), tok)


_feeds, _engine = engine_feeds, engine_for


def test_engine_int8_dynamic_option(artifact):
    feeds = _feeds(np.random.default_rng(1))
    ref32 = _engine(artifact, isa="ref", attention="fp32")
    ref8 = _engine(artifact, isa="ref", attention="int8-dynamic")
    assert (ref32.attention, ref8.attention) == ("fp32", "int8-dynamic")
    a, b = ref32.run(**feeds)["logits"], ref8.run(**feeds)["logits"]
    assert not np.array_equal(a, b)  # the option really changes the arithmetic
    assert np.abs(a - b).max() <= 0.05 * np.abs(a).max() + 1e-3
    want = ort.InferenceSession(str(artifact / "model.onnx"), providers=["CPUExecutionProvider"]).run(
        ["logits"], feeds)[0]
    for isa in native.supported_isas():
        if native.attention_dq8_kernel(16, isa) == "":
            with pytest.raises(ValueError, match="attention='int8-dynamic' is not available"):
                _engine(artifact, isa=isa, attention="int8-dynamic")
            continue
        eng = _engine(artifact, isa=isa, attention="int8-dynamic")
        assert eng.attention == "int8-dynamic"
        got = eng.run(**feeds)["logits"]
        assert np.abs(got - want).max() <= 0.03 * np.abs(want).max() + 1e-3, isa
        assert np.abs(got - b).max() <= 0.01 * np.abs(b).max() + 1e-4, isa


@pytest.mark.parametrize("isa", ["avx2", "ref", "avx512vnni"])
def test_forced_isa_through_from_pretrained(artifact, isa):
    """HF_FAST_ISA=avx2 refuses attention="int8-dynamic" with a clear ValueError; ref and avx512vnni run it"""
    if isa not in native.supported_isas():
        pytest.skip(f"no {isa}")
    code = ("import json, sys, numpy as np\n"
            "from hf_fast import FastModelForSequenceClassification as M\n"
            "out = {}\n"
            "for att in ('int8-dynamic', 'fp32'):\n"
            "    try:\n"
            "        m = M.from_pretrained(sys.argv[1], attention=att)\n"
            "    except ValueError as e:\n"
            "        out[att] = str(e)\n"
            "        continue\n"
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
    if isa == "avx2":
        assert "not available" in out["int8-dynamic"] and "AVX-512 VNNI" in out["int8-dynamic"]
        return
    assert out["int8-dynamic"][:2] == ["int8-dynamic", isa]
    dq, f = np.asarray(out["int8-dynamic"][2]), np.asarray(out["fp32"][2])
    assert np.all(np.isfinite(dq)) and np.abs(dq - f).max() <= 0.05 * np.abs(f).max() + 1e-3


def test_explain_names_the_dynamic_int8_attention(artifact):
    from hf_fast import FastModelForSequenceClassification

    isa = "avx512vnni" if VNNI else "ref"
    m = FastModelForSequenceClassification.from_pretrained(artifact, isa=isa, attention="int8-dynamic")
    rec = m.explain(as_dict=True)
    assert {la["attention"] for la in rec["layers"]} == {"int8-dynamic"}
    assert {la["attention_kernel"] for la in rec["layers"]} == {isa}
    assert "attention='int8-dynamic'" in m.explain()
    plain = FastModelForSequenceClassification.from_pretrained(artifact, isa=isa).explain(as_dict=True)
    assert {la["attention"] for la in plain["layers"]} == {"fp32"}
