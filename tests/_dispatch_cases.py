"""Every native op on fixed inputs, for test_native_dispatch.py: run in a process whose kernels HF_FAST_ISA forces
(isa="auto") and in the test process on the scalar reference (isa="ref"), then compared.

EXACT ops must match the reference bit for bit (integer sums, the fused epilogue's single fmaf, the exact
quantizer); the others use vector exp / rsqrt / erf approximations and match within a tight tolerance."""
from __future__ import annotations

import numpy as np

from hf_fast import native

BLOCKS = ("dense", "4x1", "1x4")
# fp32 attention head sizes: 64 and 16 (the ISA's kernel), 24 (AVX-512: the AVX2 kernel), 20 (the reference)
F32_HEADS = (64, 16, 24, 20)


def _weight(rng, n, k, block, bits=8, keep=0.4):
    """int8 [n, k] with ~60% of its blocks zero; bits=7: every value in [-64, 64] (AVX2's vpmaddubsw kernel)."""
    lo, hi = (-128, 128) if bits == 8 else (-64, 65)
    w = rng.integers(lo, hi, size=(n, k)).astype(np.int8)
    br, bc = {"dense": (1, 1), "4x1": (4, 1), "1x4": (1, 4)}[block]
    keep_blocks = rng.random((-(-n // br), -(-k // bc))) < keep
    w *= np.kron(keep_blocks, np.ones((br, bc), np.int8))[:n, :k]
    w[0, :] = -128 if bits == 8 else -64  # saturating extremes against a = 255
    return w


def _range_quant(t):
    """uint8 (scale, zero point) covering t's range, as the exporter calibrates them."""
    lo, hi = min(float(t.min()), 0.0), max(float(t.max()), 0.0)
    return np.float32((hi - lo) / 255), int(np.rint(-lo * 255 / (hi - lo)))


def _perm_attention(s, heads, d):
    """q, k one-hot per head (s <= d) so that each query matches one key by a score 16 above every other: every
    probability rounds to exactly 0 or 255 / 255 on any exp approximation (exp(-16) * 255 ~ 3e-5), so int8 attention
    is exact. The last key is masked out (no query matches it)."""
    rng = np.random.default_rng(s * heads + d)
    val = 4.0 * d**0.25  # score gap val^2 / sqrt(d) = 16
    q = np.zeros((s, heads * d), np.float32)
    k = np.zeros((s, heads * d), np.float32)
    for h in range(heads):
        for j in range(s):
            k[j, h * d + j] = val
            q[j, h * d + (3 * j + 1 + h) % (s - 1)] = val
    v = (rng.standard_normal((s, heads * d)) * 2).astype(np.float32)
    quant = {"q": (np.float32(val / 127), 3), "k": (np.float32(val / 127), 3), "p": (np.float32(1 / 255), 0),
             "v": _range_quant(v)}
    mask = np.ones(s, np.int64)
    mask[-1] = 0
    return q, k, v, quant, mask


def run_ops(isa: str = "auto") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(results by case name, the kernel name each packed weight reports)."""
    rng = np.random.default_rng(0)
    out: dict[str, np.ndarray] = {}
    kernels: dict[str, str] = {}
    a = rng.integers(0, 256, size=(19, 100), dtype=np.uint8)
    a[0, :] = 255
    for bits in (8, 7):
        w = _weight(rng, 40, 100, "dense", bits)
        dw = native.DenseWeight(w, isa=isa)
        out[f"dense_gemm_{bits}bit"], kernels[f"dense_{bits}bit"] = dw.matmul(a), dw.kernel
        for blk in ("4x1", "1x4"):
            sw = native.SparseWeight(_weight(rng, 40, 100, blk, bits), blk, isa=isa)
            out[f"sparse_gemm_{blk}_{bits}bit"], kernels[f"sparse_{blk}_{bits}bit"] = sw.matmul(a), sw.kernel

    # int8 Linear with the fused epilogue: float output, requantized uint8 output (with SmoothQuant's multiplier
    # and per-segment quantizers), two Linears chained through uint8 (the FFN)
    x = rng.integers(0, 256, size=(21, 96), dtype=np.uint8)
    res = rng.standard_normal((21, 48)).astype(np.float32)
    mul = np.exp(rng.normal(0, 0.5, 48)).astype(np.float32)
    for bits in (8, 7):
        for blk in BLOCKS:
            name = f"linear_{blk}_{bits}bit"
            lin = native.PackedLinear(_weight(rng, 48, 96, blk, bits), rng.uniform(0.001, 0.01, 48).astype(np.float32),
                                      rng.standard_normal(48).astype(np.float32), block=blk, isa=isa)
            lin2 = native.PackedLinear(_weight(rng, 32, 48, blk, bits), rng.uniform(0.001, 0.01, 32).astype(np.float32),
                                       rng.standard_normal(32).astype(np.float32), block=blk, isa=isa)
            kernels[name] = lin.kernel
            out[f"{name}_f32"] = lin.forward(x, 0.0123, 101, residual=res)
            out[f"{name}_u8"] = lin.forward(x, 0.0123, 101, residual=res, out_quant=(0.05, 128))
            out[f"{name}_u8_mul"] = lin.forward(x, 0.0123, 101, out_quant=(0.05, 7, mul))
            out[f"{name}_u8_segments"] = lin.forward_u8_segments(x, 0.0123, 101, [(0.04, 120), (0.06, 3), (0.02, 250)])
            out[f"{name}_chain"] = native.linear_chain(lin, lin2, x, 0.0123, 101, (0.05, 9, mul),
                                                       residual=res[:, :32].copy())
            out[f"{name}_gelu_f32"] = lin.forward(x, 0.0123, 101, gelu=True, residual=res)

    f = (rng.standard_normal((37, 77)) * 3).astype(np.float32)
    f[0, :8] = [0.0, -0.0, 1e-30, -1e-30, 3e3, -3e3, 0.5, -0.5]
    out["quantize_u8"] = native.quantize_u8(f, 0.05, 128, isa=isa)
    out["quantize_u8_mul"] = native.quantize_u8(f, 0.05, 128, isa=isa,
                                                mul=np.exp(rng.normal(0, 0.5, 77)).astype(np.float32))
    out["gelu"] = native.gelu(f, isa=isa)
    g, b = rng.standard_normal(77).astype(np.float32), rng.standard_normal(77).astype(np.float32)
    out["layernorm"] = native.layernorm(f, g, b, eps=1e-5, residual=f[::-1].copy(), isa=isa)

    for d in F32_HEADS:
        qkv = [rng.standard_normal((29, 2 * d)).astype(np.float32) for _ in range(3)]
        mask = (np.arange(29) < 25).astype(np.int64)
        out[f"attention_f32_d{d}"] = native.attention(*qkv, heads=2, mask=mask, isa=isa)

    for s, heads, d in ((8, 2, 16), (20, 3, 64), (9, 2, 24)):  # d = 24: the reference on every ISA
        q, k, v, quant, mask = _perm_attention(s, heads, d)
        q8, k8, v8 = (native.quantize_u8(t, *quant[n], isa=isa) for t, n in ((q, "q"), (k, "k"), (v, "v")))
        out[f"attention_q8_d{d}"] = native.attention_q8(q, k, v, heads, quant, mask=mask, isa=isa)
        out[f"attention_q8_u8_d{d}"] = native.attention_q8(q8, k8, v8, heads, quant, mask=mask, isa=isa)
        out[f"attention_q8_u8_quant_d{d}"] = native.attention_q8(q8, k8, v8, heads, quant, mask=mask, isa=isa,
                                                                 out_quant=(0.03, 100))
    # random scores: the integer sums are exact, only a probability at a uint8 rounding boundary may differ
    q, k, v = (rng.standard_normal((130, 4 * 64)).astype(np.float32) * 2 for _ in range(3))
    quant = {n: _range_quant(t) for n, t in (("q", q), ("k", k), ("v", v))}
    quant["p"] = (np.float32(1 / 255), 3)
    out["attention_q8_random"] = native.attention_q8(q, k, v, 4, quant, mask=(np.arange(130) < 127).astype(np.int64),
                                                     isa=isa)
    out["attention_q8_random_step"] = np.float64(quant["p"][0]) * np.float64(quant["v"][0]) * 255
    return out, kernels
