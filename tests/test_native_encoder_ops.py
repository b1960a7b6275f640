"""ModernBERT's engine ops (rotary, GeGLU, sliding-window attention): every ISA path against a float64 torch
computation (transformers' own functions where it has them) and against the scalar reference."""
import numpy as np
import pytest
import torch

from hf_fast import native
from hf_fast.native import encoder_kernels as ek

ISAS = native.BUILT_ISA_NAMES


def _rope_torch(x, heads, theta):
    """transformers' ModernBERT RoPE (inv_freq, cos / sin in fp32, apply_rotary_pos_emb) on [S, heads*d]."""
    from transformers.models.modernbert.modeling_modernbert import apply_rotary_pos_emb
    s, hd = x.shape
    d = hd // heads
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    freqs = torch.arange(s).float()[:, None] * inv[None, :]
    emb = torch.cat((freqs, freqs), -1)
    t = torch.from_numpy(x).view(1, s, heads, d).transpose(1, 2)
    out, _ = apply_rotary_pos_emb(t, t, emb.cos()[None], emb.sin()[None], unsqueeze_dim=1)
    return out.transpose(1, 2).reshape(s, hd).numpy()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("s,heads,d,theta", [(1, 1, 2, 10000.0), (7, 2, 8, 10000.0), (33, 3, 64, 160000.0),
                                             (300, 2, 34, 10000.0), (4096, 1, 64, 160000.0)])
def test_rotary_matches_transformers(isa, s, heads, d, theta):
    rng = np.random.default_rng(s + d)
    q = rng.standard_normal((s, heads * d)).astype(np.float32)
    k = rng.standard_normal((s, heads * d)).astype(np.float32)
    rq, rk = ek.rotary(q, k, heads, theta, isa=isa)
    # positions up to 4096: the angle's fp32 rounding (t * inv_freq) is shared, cos/sin within an ulp of torch's
    np.testing.assert_allclose(rq, _rope_torch(q, heads, theta), rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(rk, _rope_torch(k, heads, theta), rtol=1e-5, atol=2e-5)
    ref = ek.rotary(q, k, heads, theta, isa="ref")
    np.testing.assert_array_equal(rq, ref[0])  # bit for bit the reference on every ISA
    np.testing.assert_array_equal(rk, ref[1])
    assert s == 1 or not np.allclose(rq, q)  # position 0 is the identity, later ones rotate


def _gelu64(x):
    return 0.5 * x * (1.0 + torch.erf(torch.from_numpy(x.astype(np.float64)) / np.sqrt(2.0)).numpy())


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("rows,f", [(1, 1), (3, 17), (5, 256), (4, 1000)])
@pytest.mark.parametrize("with_mul", [False, True])
def test_geglu_u8_matches_torch(isa, rows, f, with_mul):
    rng = np.random.default_rng(rows * 13 + f)
    x = (rng.standard_normal((rows, 2 * f)) * 2).astype(np.float32)
    mul = (rng.random(f) + 0.5).astype(np.float32) if with_mul else None
    scale, zp = 0.02, 100
    y = ek.geglu_u8(x, scale, zp, mul=mul, isa=isa)
    want = _gelu64(x[:, :f]) * x[:, f:] * (mul if with_mul else 1.0)
    q = np.clip(np.rint(want / scale) + zp, 0, 255)
    # GELU's tolerance can move a value across a rounding boundary: at most one step, rarely
    diff = np.abs(y.astype(np.int64) - q)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    ref = ek.geglu_u8(x, scale, zp, mul=mul, isa="ref")
    assert np.abs(y.astype(np.int64) - ref).max() <= 1
    # the gate matters: GELU(a) alone quantizes to something else
    assert not np.array_equal(y, np.clip(np.rint(_gelu64(x[:, :f]) / scale) + zp, 0, 255).astype(np.uint8))


def _attn_window_ref(q, k, v, heads, window, mask):
    s, hd = q.shape
    d = hd // heads
    qh, kh, vh = (torch.from_numpy(a).double().view(s, heads, d).transpose(0, 1) for a in (q, k, v))
    sc = qh @ kh.transpose(1, 2) / np.sqrt(d)
    i = torch.arange(s)
    allowed = (i[:, None] - i[None, :]).abs() <= window
    if mask is not None:
        allowed = allowed & torch.from_numpy(mask != 0)[None, :]
    sc = sc.masked_fill(~allowed, -torch.inf)
    return (torch.softmax(sc, -1) @ vh).transpose(0, 1).reshape(s, hd).numpy()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("s,heads,d,window", [(1, 1, 8, 2), (9, 2, 8, 1), (40, 2, 16, 4), (130, 3, 64, 64),
                                              (77, 2, 5, 10), (300, 1, 32, 0), (64, 2, 64, 200),
                                              # last key block of 2 / 3 16-key vectors (AVX-512)
                                              (200, 2, 16, 12), (200, 2, 32, 20)])
@pytest.mark.parametrize("masked", [False, True])
def test_attention_window_matches_torch(isa, s, heads, d, window, masked):
    rng = np.random.default_rng(s * 7 + heads + d + window)
    q, k, v = (rng.standard_normal((s, heads * d)).astype(np.float32) * 2 for _ in range(3))
    mask = None
    if masked:
        mask = np.ones(s, np.int64)
        mask[s - s // 3:] = 0  # right padding: every real query keeps itself
        mask[0] = 1
    out = ek.attention_window(q, k, v, heads, window, mask=mask, isa=isa)
    want = _attn_window_ref(q, k, v, heads, window, mask)
    real = slice(None) if mask is None else mask.astype(bool)
    np.testing.assert_allclose(out[real], want[real], rtol=2e-4, atol=2e-5)
    if window >= s - 1:  # a window covering the sequence is global attention
        np.testing.assert_allclose(out[real], native.attention(q, k, v, heads, mask=mask, isa=isa)[real],
                                   rtol=2e-4, atol=2e-5)
    elif s > 2 * window + 1:  # and a short one is not
        assert not np.allclose(out, native.attention(q, k, v, heads, mask=mask, isa=isa), rtol=1e-3, atol=1e-4)


def test_encoder_ops_bad_input():
    x = np.zeros((4, 8), np.float32)
    with pytest.raises(ValueError, match="even"):
        ek.rotary(np.zeros((4, 6), np.float32), np.zeros((4, 6), np.float32), 2, 10000.0)  # d = 3
    with pytest.raises(ValueError, match="theta"):
        ek.rotary(x, x, 2, 0.0)
    with pytest.raises(ValueError, match="even width"):
        ek.geglu_u8(np.zeros((2, 5), np.float32), 0.1, 0)
    with pytest.raises(ValueError, match="scale"):
        ek.geglu_u8(x, 0.0, 0)
    with pytest.raises(ValueError, match="window"):
        ek.attention_window(x, x, x, 2, -1)
