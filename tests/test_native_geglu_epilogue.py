"""GeGLU fused in the Linear epilogue (hf_linear_pack_geglu): Wi's GELU inputs and gates are interleaved in groups of 4
at pack time, so every kernel tile holds whole (a, g) pairs and the epilogue writes Q(GELU(a) * g [* mul]) as uint8
[M][F] with no fp32 [M][2F]. On each ISA the fused bytes equal the unfused path (fp32 Linear output, then
hf_geglu_u8) bit for bit; against the scalar reference they differ only by GELU's tolerance (at most one
quantization step, rarely); the reference ISA is the reference itself (bit for bit)."""
import numpy as np
import pytest

from hf_fast import native
from hf_fast.native import encoder_kernels as ek
from hf_fast.native import ffi, lib
from hf_fast.native.kernels import linear_chain

ISAS = native.BUILT_ISA_NAMES


def _glu_weights(f, k, block, seed, bias=True):
    """int8 W [2F, K] (80% of aligned 4x1 blocks zero for "4x1", 80% of 1x4 for "1x4"), scales and bias."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-127, 128, (2 * f, k), dtype=np.int64).astype(np.int8)
    if block == "4x1":
        w *= np.repeat(rng.random((2 * f // 4, k)) > 0.8, 4, axis=0).astype(np.int8)
    elif block == "1x4":
        w *= np.repeat(rng.random((2 * f, (k + 3) // 4)) > 0.8, 4, axis=1)[:, :k].astype(np.int8)
    scale = (rng.random(2 * f) * 2e-3 + 1e-3).astype(np.float32)
    b = (rng.standard_normal(2 * f) * 0.5).astype(np.float32) if bias else None
    return w, scale, b


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("block", ["dense", "4x1", "1x4"])
@pytest.mark.parametrize("m,f,k", [(1, 4, 32), (17, 12, 40), (70, 96, 64), (130, 36, 48)])
@pytest.mark.parametrize("with_mul", [False, True])
def test_fused_geglu_equals_the_unfused_path(isa, block, m, f, k, with_mul):
    """F = 4, 12, 36 (F % 8 == 4: a last 8-channel strip holding one group), M past the 16- and 64-token tiles."""
    w, ws, b = _glu_weights(f, k, block, seed=m * 7 + f, bias=f != 12)
    rng = np.random.default_rng(f)
    a = rng.integers(0, 256, (m, k), dtype=np.int64).astype(np.uint8)
    mul = (rng.random(f) + 0.5).astype(np.float32) if with_mul else None
    oq = (0.01, 90) if mul is None else (0.01, 90, mul)
    fused = native.PackedLinear(w, ws, b, block=block, isa=isa, geglu=True)
    assert fused.geglu and fused.shape == (2 * f, k)
    y = fused.forward(a, 0.05, 7, out_quant=oq)
    assert y.shape == (m, f) and y.dtype == np.uint8
    plain = native.PackedLinear(w, ws, b, block=block, isa=isa)
    x = plain.forward(a, 0.05, 7)  # fp32 [M][2F]
    np.testing.assert_array_equal(y, ek.geglu_u8(x, 0.01, 90, mul=mul, isa=isa))
    ref = native.PackedLinear(w, ws, b, block=block, isa="ref", geglu=True).forward(a, 0.05, 7, out_quant=oq)
    np.testing.assert_array_equal(ref, ek.geglu_u8(x, 0.01, 90, mul=mul, isa="ref"))
    diff = np.abs(y.astype(np.int64) - ref)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.02  # GELU's tolerance, one step across a rounding boundary
    # the gate is applied: GELU(a) alone quantizes to something else
    assert not np.array_equal(y, ek.geglu_u8(np.concatenate([x[:, :f], np.ones_like(x[:, :f])], 1), 0.01, 90,
                                             mul=mul, isa=isa))
    # saved and restored with its channel order
    back = native.PackedLinear.from_bytes(fused.to_bytes())
    assert back.geglu
    np.testing.assert_array_equal(back.forward(a, 0.05, 7, out_quant=oq), y)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("block", ["dense", "4x1"])
def test_fused_geglu_chain_equals_two_calls(isa, block):
    """hf_linear_chain with GeGLU's Linear first (the engine's FFN): on AVX-512 VNNI 4x1 the gated bytes go straight
    into the second Linear's packed activations; bit for bit the two separate calls."""
    f, k, m = 96, 64, 70
    w, ws, b = _glu_weights(f, k, block, seed=3)
    rng = np.random.default_rng(5)
    w2 = (rng.integers(-127, 128, (k, f), dtype=np.int64)
          * np.repeat(rng.random((k // 4, f)) > 0.5, 4, axis=0)).astype(np.int8)
    first = native.PackedLinear(w, ws, b, block=block, isa=isa, geglu=True)
    second = native.PackedLinear(w2, np.full(k, 2e-3, np.float32), None, block=block, isa=isa)
    a = rng.integers(0, 256, (m, k), dtype=np.int64).astype(np.uint8)
    res = rng.standard_normal((m, k)).astype(np.float32)
    mul = (rng.random(f) + 0.5).astype(np.float32)
    got = linear_chain(first, second, a, 0.05, 7, (0.01, 90, mul), residual=res)
    h = first.forward(a, 0.05, 7, out_quant=(0.01, 90, mul))
    np.testing.assert_array_equal(got, second.forward(h, 0.01, 90, residual=res))


def test_geglu_linear_bad_use_is_refused():
    w6, ws6, b6 = _glu_weights(6, 16, "dense", seed=0)  # F = 6: not a multiple of 4
    with pytest.raises(ValueError, match="GeGLU's Linear needs 2F rows with F a multiple of 4"):
        native.PackedLinear(w6, ws6, b6, block="dense", geglu=True)
    out = ffi.new("hf_linear **")
    assert lib.hf_linear_pack_geglu(0, 0, 0, 12, 16, ffi.cast("const int8_t *", w6.ctypes.data), 16,
                                    ffi.cast("const float *", ws6.ctypes.data), ffi.NULL, out) == lib.HF_EINVAL
    assert "F a multiple of 4" in ffi.string(lib.hf_last_error()).decode()
    w, ws, b = _glu_weights(4, 16, "dense", seed=0)
    lin = native.PackedLinear(w, ws, b, block="dense", geglu=True)
    a = np.zeros((2, 16), np.uint8)
    with pytest.raises(ValueError, match="pass out_quant"):
        lin.forward(a, 0.1, 0)
    with pytest.raises(ValueError, match="mul"):
        lin.forward(a, 0.1, 0, out_quant=(0.1, 0, np.ones(8, np.float32)))  # [F] = 4 multipliers, not 2F
    # the C side refuses the fp32 forward of a GeGLU-packed Linear by name
    y = np.empty((2, 8), np.float32)
    rc = lib.hf_linear_forward(lin._l, 2, ffi.cast("const uint8_t *", a.ctypes.data), 16, 0.1, 0,
                               ffi.cast("float *", y.ctypes.data), 8, 0, ffi.NULL, 0)
    assert rc != lib.HF_OK and "packed for GeGLU" in ffi.string(lib.hf_last_error()).decode()


@pytest.mark.parametrize("isa", ISAS)
def test_modernbert_engine_fused_geglu_equals_the_separate_pass(isa):
    """The engine's hook: a ModernBERT whose Wi is packed for the gated epilogue runs ffn_in -> ffn_out as one chain
    with no fp32 [T][2F]; its last_hidden_state equals the separate-pass engine's bit for bit (4x1-sparse weights:
    on AVX-512 VNNI the packed-activation chain)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from test_family_modernbert import batch, tiny_modernbert

    from hf_fast.runtime.torch_engine import ModernBertEngine, calibrate

    m = tiny_modernbert()
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for layer in m.layers:
            w = layer.mlp.Wi.weight
            w.mul_(torch.from_numpy(rng.random((w.shape[0] // 4, w.shape[1])) > 0.5).repeat_interleave(4, 0))
    ids, mask = batch()
    quant = calibrate(m, [(ids, mask)])
    for block in ("dense", "4x1"):
        fused = ModernBertEngine(m, quant, isa=isa, block=block)
        lins = [pl for pl in fused._keep if isinstance(pl, native.PackedLinear)]
        assert sum(pl.geglu for pl in lins) == len(m.layers)  # each layer's Wi, nothing else
        sep = ModernBertEngine(m, quant, isa=isa, block=block, unfused_geglu=True)
        np.testing.assert_array_equal(fused.run(ids.numpy(), mask.numpy()), sep.run(ids.numpy(), mask.numpy()))


@pytest.mark.parametrize("isa", ISAS)
def test_fused_geglu_on_4x4_tiles_runs_as_quads(isa):
    """GeGLU's Wi pruned in 4x4 tiles (ModernBERT, FastConfig(block="4x4")): the pack's interleaving of inputs and
    gates moves whole groups of 4 rows, so the tiles stay whole and every group runs as quads on AVX-512 VNNI; the
    fused bytes equal the unfused path's, alone and as the first Linear of the FFN chain."""
    f, k, m = 96, 64, 70
    rng = np.random.default_rng(11)
    w = rng.integers(-127, 128, (2 * f, k), dtype=np.int64).astype(np.int8) | 1
    keep = rng.random((2 * f // 4, k // 4)) > 0.7
    keep[:, 0] = True  # every group keeps a tile
    w *= np.repeat(np.repeat(keep, 4, 0), 4, 1).astype(np.int8)
    ws = (rng.random(2 * f) * 2e-3 + 1e-3).astype(np.float32)
    b = (rng.standard_normal(2 * f) * 0.5).astype(np.float32)
    fused = native.PackedLinear(w, ws, b, block="4x1", isa=isa, geglu=True)
    assert fused.quad_groups == (2 * f // 4 if isa == "avx512vnni" else 0)
    a = rng.integers(0, 256, (m, k), dtype=np.int64).astype(np.uint8)
    mul = (rng.random(f) + 0.5).astype(np.float32)
    y = fused.forward(a, 0.05, 7, out_quant=(0.01, 90, mul))
    x = native.PackedLinear(w, ws, b, block="4x1", isa=isa).forward(a, 0.05, 7)
    np.testing.assert_array_equal(y, ek.geglu_u8(x, 0.01, 90, mul=mul, isa=isa))
    w2 = (rng.integers(-127, 128, (k, f), dtype=np.int64) | 1).astype(np.int8)
    w2 *= np.repeat(np.repeat(rng.random((k // 4, f // 4)) > 0.5, 4, 0), 4, 1).astype(np.int8)
    second = native.PackedLinear(w2, np.full(k, 2e-3, np.float32), None, block="4x1", isa=isa)
    res = rng.standard_normal((m, k)).astype(np.float32)
    got = linear_chain(fused, second, a, 0.05, 7, (0.01, 90, mul), residual=res)
    np.testing.assert_array_equal(got, second.forward(y, 0.01, 90, residual=res))
