"""fp32 ops (LayerNorm, attention): every ISA path against a float64 numpy/torch computation."""
import numpy as np
import pytest
import torch

from hf_fast import native

ISAS = native.supported_isas()


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
@pytest.mark.parametrize("s,heads,d", [(2, 1, 8), (7, 2, 24), (16, 1, 16), (17, 3, 40), (130, 2, 64), (385, 1, 64), (23, 1, 16), (21, 2, 32)])
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
