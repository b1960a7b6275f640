"""fp32 ops (LayerNorm, attention): every ISA path against a float64 numpy/torch computation."""
import numpy as np
import pytest
import torch

from hf_fast import native

ISAS = native.BUILT_ISA_NAMES  # every ISA of this build: the ones this CPU lacks skip visibly (conftest.py)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("t,h", [(1, 1), (3, 7), (5, 384), (17, 768), (2, 1001)])
@pytest.mark.parametrize("with_residual", [False, True])
def test_layernorm_matches_torch(isa, t, h, with_residual):
    rng = np.random.default_rng(t * 31 + h)
    x = (rng.standard_normal((t, h)) * 3 + 1).astype(np.float32)
    r = rng.standard_normal((t, h)).astype(np.float32) if with_residual else None
    g = rng.standard_normal(h).astype(np.float32)
    b = rng.standard_normal(h).astype(np.float32)
    y = native.layernorm(x, g, b, eps=1e-12, residual=r, isa=isa)
    xin = torch.from_numpy(x.astype(np.float64) + (r if r is not None else 0))
    ref = torch.nn.functional.layer_norm(xin, (h,), torch.from_numpy(g).double(), torch.from_numpy(b).double(), 1e-12)
    np.testing.assert_allclose(y, ref.numpy(), rtol=1e-4, atol=2e-5 * (1 if h > 1 else 0) + 1e-5)


def _attn_ref(q, k, v, heads, mask):
    s, hd = q.shape
    d = hd // heads
    qh = torch.from_numpy(q).double().view(s, heads, d).transpose(0, 1)
    kh = torch.from_numpy(k).double().view(s, heads, d).transpose(0, 1)
    vh = torch.from_numpy(v).double().view(s, heads, d).transpose(0, 1)
    sc = qh @ kh.transpose(1, 2) / np.sqrt(d)
    if mask is not None:
        sc = sc + torch.from_numpy(np.where(mask[None, None, :] != 0, 0.0, torch.finfo(torch.float64).min))
    return (torch.softmax(sc, -1) @ vh).transpose(0, 1).reshape(s, hd).numpy()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("s,heads,d", [(1, 1, 8), (5, 2, 8), (13, 3, 16), (128, 12, 64), (37, 12, 32), (9, 2, 5)])
@pytest.mark.parametrize("masked", [False, True])
def test_attention_matches_torch(isa, s, heads, d, masked):
    rng = np.random.default_rng(s * 7 + heads + d)
    q, k, v = (rng.standard_normal((s, heads * d)).astype(np.float32) * 2 for _ in range(3))
    mask = None
    if masked:
        mask = (rng.random(s) > 0.3).astype(np.int64)
        mask[0] = 1
    out = native.attention(q, k, v, heads, mask=mask, isa=isa)
    np.testing.assert_allclose(out, _attn_ref(q, k, v, heads, mask), rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("isa", ISAS)
def test_attention_all_keys_masked_is_uniform_like_torch(isa):
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((6, 16)).astype(np.float32) for _ in range(3))
    out = native.attention(q, k, v, 2, mask=np.zeros(6, np.int64), isa=isa)
    np.testing.assert_allclose(out, np.broadcast_to(v.mean(0), v.shape), rtol=1e-5, atol=1e-6)


def test_f32_ops_bad_input():
    x = np.ones((2, 4), np.float32)
    with pytest.raises(TypeError):
        native.layernorm(x.astype(np.float64), np.ones(4, np.float32), np.ones(4, np.float32))
    with pytest.raises(ValueError, match="gamma"):
        native.layernorm(x, np.ones(3, np.float32), np.ones(3, np.float32))
    with pytest.raises(ValueError, match="divisible"):
        native.attention(x, x, x, heads=3)
    with pytest.raises(ValueError, match="mask"):
        native.attention(x, x, x, heads=2, mask=np.ones(3, np.int64))


@pytest.mark.parametrize("isa", [i for i in ISAS if i != "ref"])
@pytest.mark.parametrize("s,heads,d", [(2, 1, 8), (7, 2, 24), (16, 1, 16), (17, 3, 40), (130, 2, 64), (385, 1, 64),
                                       (23, 1, 16), (21, 2, 32)])
@pytest.mark.parametrize("mask_kind", ["none", "right_pad", "holes", "only_last", "all"])
def test_attention_fast_matches_reference_odd_shapes_and_masks(isa, s, heads, d, mask_kind):
    """The blocked AVX2 kernel (6-row blocks, 16-key panels, pad keys skipped) against the scalar
    reference on shapes that exercise every row/column tail and every mask layout."""
    rng = np.random.default_rng(s * 13 + d + len(mask_kind))
    q, k, v = (rng.standard_normal((s, heads * d)).astype(np.float32) * 2 for _ in range(3))
    mask = {"none": None,
            "right_pad": (np.arange(s) < max(1, (2 * s) // 3)).astype(np.int64),
            "holes": (rng.random(s) > 0.4).astype(np.int64),
            "only_last": (np.arange(s) == s - 1).astype(np.int64),
            "all": np.zeros(s, np.int64)}[mask_kind]
    out = native.attention(q, k, v, heads, mask=mask, isa=isa)
    ref = native.attention(q, k, v, heads, mask=mask, isa="ref")
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=2e-5)
    if mask is not None and mask.any():
        np.testing.assert_allclose(out, _attn_ref(q, k, v, heads, mask), rtol=2e-4, atol=2e-5)


# ---------------------------------------------------------------- int8 attention (QDQ q k^T and p v)
def _q8(x, scale, zp):
    return np.clip(np.rint(x.astype(np.float32) / np.float32(scale)) + zp, 0, 255).astype(np.int64)


def _attn_q8_ref(q, k, v, heads, mask, quant):
    """The QDQ graph in numpy: exact integer products, float64 softmax, probabilities rounded to uint8."""
    s, hd = q.shape
    d = hd // heads
    (sq, zq), (sk, zk), (sp, zp), (sv, zv) = (quant[n] for n in "qkpv")
    out = np.empty((s, hd))
    bias = np.where(mask != 0, 0.0, -np.inf) if mask is not None else np.zeros(s)
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        q8, k8, v8 = _q8(q[:, sl], sq, zq), _q8(k[:, sl], sk, zk), _q8(v[:, sl], sv, zv)
        acc = (q8 - zq) @ (k8 - zk).T
        sc = acc * (np.float32(sq) * np.float32(sk)) / np.sqrt(d) + bias
        if np.all(np.isinf(bias)):
            p = np.full((s, s), 1.0 / s)
        else:
            e = np.exp(sc - sc.max(1, keepdims=True))
            p = e / e.sum(1, keepdims=True)
        p8 = np.clip(np.rint(p / sp) + zp, 0, 255).astype(np.int64)
        out[:, sl] = ((p8 - zp) @ (v8 - zv)) * (np.float32(sp) * np.float32(sv))
    return out


def _quant_for(q, k, v, zp_p=0):
    def rng_q(x):
        lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
        scale = (hi - lo) / 255.0
        return np.float32(scale), int(np.clip(np.rint(-lo / scale), 0, 255))
    return {"q": rng_q(q), "k": rng_q(k), "v": rng_q(v), "p": (np.float32(1.0 / 255), zp_p)}


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("s,heads,d", [(1, 1, 16), (5, 2, 16), (13, 3, 32), (128, 12, 64), (37, 2, 48), (9, 2, 8),
                                       (70, 1, 80), (385, 1, 64)])
@pytest.mark.parametrize("mask_kind", ["none", "right_pad", "holes", "all"])
def test_attention_q8_matches_qdq_graph(isa, s, heads, d, mask_kind):
    """Every path (VNNI u8 x s8 with zero-point corrections, AVX2 int16 pairs, reference) against the QDQ graph
    computed in numpy. The integer products are exact; only exp's last bits may move a probability across a
    uint8 rounding boundary, which changes ctx by at most p_scale * |v8 - zv| per flipped probability."""
    rng = np.random.default_rng(s * 11 + d + heads + len(mask_kind))
    q, k, v = (rng.standard_normal((s, heads * d)).astype(np.float32) * 2 + 0.3 for _ in range(3))
    mask = {"none": None, "right_pad": (np.arange(s) < max(1, (2 * s) // 3)).astype(np.int64),
            "holes": (rng.random(s) > 0.4).astype(np.int64), "all": np.zeros(s, np.int64)}[mask_kind]
    if mask_kind == "holes":
        mask[0] = 1
    quant = _quant_for(q, k, v, zp_p=3 if s % 2 else 0)  # a nonzero p zero point exercises its correction
    out = native.attention_q8(q, k, v, heads, quant, mask=mask, isa=isa)
    ref = _attn_q8_ref(q, k, v, heads, mask, quant)
    step = float(quant["p"][0]) * float(quant["v"][0]) * 255
    err = np.abs(out - ref)
    assert err.max() <= 2 * step + 1e-5 * np.abs(ref).max(), err.max()
    # nearly every entry exact up to float rounding of the final scale
    assert np.mean(err <= 1e-5 * (1 + np.abs(ref))) > 0.97


@pytest.mark.parametrize("isa", [i for i in ISAS if i != "ref"])
@pytest.mark.parametrize("s,heads,d", [(17, 3, 16), (130, 2, 64), (64, 4, 32), (200, 1, 128)])
def test_attention_q8_fast_matches_reference(isa, s, heads, d):
    rng = np.random.default_rng(s + d)
    q, k, v = (rng.standard_normal((s, heads * d)).astype(np.float32) for _ in range(3))
    mask = (np.arange(s) < s - 5).astype(np.int64)
    quant = _quant_for(q, k, v)
    out = native.attention_q8(q, k, v, heads, quant, mask=mask, isa=isa)
    ref = native.attention_q8(q, k, v, heads, quant, mask=mask, isa="ref")
    step = float(quant["p"][0]) * float(quant["v"][0]) * 255
    assert np.abs(out - ref).max() <= 2 * step
    assert np.mean(np.abs(out - ref) <= 1e-6 * (1 + np.abs(ref))) > 0.97


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("s,heads,d", [(5, 2, 16), (70, 3, 64), (37, 2, 48)])
def test_attention_q8_on_uint8_inputs_equals_float_inputs(isa, s, heads, d):
    """hf_attention_q8_u8 (the engine's entry: q, k, v already uint8 from the qkv GEMM) gives exactly what
    hf_attention_q8 gives on the float tensors it quantizes with the same parameters."""
    rng = np.random.default_rng(s + heads + d)
    q, k, v = (rng.standard_normal((s, heads * d)).astype(np.float32) * 2 for _ in range(3))
    mask = (np.arange(s) < s - 2).astype(np.int64)
    quant = _quant_for(q, k, v, zp_p=3)
    q8, k8, v8 = (native.quantize_u8(x, *quant[n]) for x, n in ((q, "q"), (k, "k"), (v, "v")))
    out8 = native.attention_q8(q8, k8, v8, heads, quant, mask=mask, isa=isa)
    out = native.attention_q8(q, k, v, heads, quant, mask=mask, isa=isa)
    np.testing.assert_array_equal(out8, out)
    # the uint8 path really reads its bytes: one changed value of k moves the result
    k8[0, 0] ^= 0x40
    assert not np.array_equal(native.attention_q8(q8, k8, v8, heads, quant, mask=mask, isa=isa), out)
    with pytest.raises(ValueError, match="differ"):
        native.attention_q8(q8, k8[:-1], v8, heads, quant, isa=isa)
    with pytest.raises(TypeError, match="all be float32 or all uint8"):
        native.attention_q8(q8, k, v8, heads, quant, isa=isa)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("s,heads,d", [(5, 2, 16), (70, 3, 64), (37, 2, 48), (13, 2, 8)])
@pytest.mark.parametrize("with_mul", [False, True])
def test_attention_q8_uint8_context_is_quantize_of_float_context(isa, s, heads, d, with_mul):
    """hf_attention_q8_u8_quant (the engine's attention: the context quantized for attn_out in the kernel, with
    SmoothQuant's per-channel multiplier) equals quantize_u8 of the float context bit for bit, on every ISA and on
    the reference fallback (d = 8); a NaN/inf-free multiplier with a dead channel and a sign flip."""
    rng = np.random.default_rng(s * 7 + heads + d)
    q, k, v = (rng.standard_normal((s, heads * d)).astype(np.float32) * 2 for _ in range(3))
    mask = (np.arange(s) < s - 2).astype(np.int64)
    quant = _quant_for(q, k, v, zp_p=3)
    q8, k8, v8 = (native.quantize_u8(x, *quant[n]) for x, n in ((q, "q"), (k, "k"), (v, "v")))
    ctx = native.attention_q8(q8, k8, v8, heads, quant, mask=mask, isa=isa)
    mul = None
    if with_mul:
        mul = np.exp(rng.normal(0, 1, heads * d)).astype(np.float32)
        mul[:2] = [0.0, -0.5]
    lo, hi = float((ctx if mul is None else ctx * mul).min()), float((ctx if mul is None else ctx * mul).max())
    o_scale = np.float32((hi - lo) / 240)  # the top 30 steps past 255: the clamp is exercised
    o_zp = int(np.clip(np.rint(-lo / o_scale) + 30, 0, 255))
    out = native.attention_q8(q8, k8, v8, heads, quant, mask=mask, isa=isa, out_quant=(o_scale, o_zp, mul))
    exp = native.quantize_u8(ctx, o_scale, o_zp, isa="ref", mul=mul)
    assert out.dtype == np.uint8 and out.shape == ctx.shape
    np.testing.assert_array_equal(out, exp)
    assert len(np.unique(out)) > 20 and 0 < out.min() and out.max() == 255  # a real spread, and the clamp is reached
    with pytest.raises((ValueError, native.NativeError), match="output scale"):
        native.attention_q8(q8, k8, v8, heads, quant, isa=isa, out_quant=(0.0, 0))
    with pytest.raises(TypeError, match="uint8"):
        native.attention_q8(q, k, v, heads, quant, isa=isa, out_quant=(o_scale, o_zp))


def test_attention_q8_close_to_fp32_attention():
    """Sanity of the whole int8 pipeline against fp32 attention: close, not equal (it is quantized)."""
    rng = np.random.default_rng(5)
    q, k, v = (rng.standard_normal((64, 128)).astype(np.float32) for _ in range(3))
    quant = _quant_for(q, k, v)
    out = native.attention_q8(q, k, v, 2, quant)
    ref = native.attention(q, k, v, 2)
    assert np.abs(out - ref).max() < 0.1 and np.abs(out - ref).max() > 0


def test_attention_q8_bad_input():
    x = np.ones((4, 16), np.float32)
    good = {"q": (0.1, 128), "k": (0.1, 128), "p": (1 / 255, 0), "v": (0.1, 128)}
    with pytest.raises(ValueError, match="q, k, p and v"):
        native.attention_q8(x, x, x, 1, {"q": (0.1, 0)})
    for name, bad in (("k", (0.0, 0)), ("v", (float("nan"), 0)), ("p", (0.1, 256)), ("q", (0.1, -1))):
        with pytest.raises(ValueError, match=f"int8 attention {name} scale"):
            native.attention_q8(x, x, x, 1, {**good, name: bad})
    with pytest.raises(ValueError, match="mask"):
        native.attention_q8(x, x, x, 1, good, mask=np.ones(3, np.int64))
