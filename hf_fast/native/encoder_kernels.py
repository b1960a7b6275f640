"""ModernBERT's engine ops on numpy arrays: rotary embeddings, GeGLU into uint8 and sliding-window attention
(native/include/hf_fast.h hf_rotary, hf_geglu_u8, hf_attention_window). The engine runs the same kernels per layer;
these entry points are for tests and for checking one op in isolation."""
from __future__ import annotations

import numpy as np

from hf_fast.native._loader import _check, ffi, isa_id, lib
from hf_fast.native.kernels import _attention_args, _f32, _fptr


def rotary(q: np.ndarray, k: np.ndarray, heads: int, theta: float, isa: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """q and k ([S, heads*d] float32) rotated by token position with base theta (transformers' rotate_half RoPE);
    returns new arrays."""
    q, k = _f32(q, "q", 2).copy(), _f32(k, "k", 2).copy()
    if q.shape != k.shape:
        raise ValueError(f"q/k shapes differ: {q.shape}, {k.shape}")
    s, hd = q.shape
    if heads <= 0 or hd % heads:
        raise ValueError(f"hidden size {hd} is not divisible by heads={heads}")
    _check(lib.hf_rotary(isa_id(isa), s, heads, hd // heads, _fptr(q), _fptr(k), hd, float(theta)), "rotary")
    return q, k


def geglu_u8(x: np.ndarray, scale: float, zp: int, mul: np.ndarray | None = None, isa: str = "auto") -> np.ndarray:
    """uint8 [rows, F] = QuantizeLinear(GELU(x[:, :F]) * x[:, F:] [* mul], scale, zp) for x [rows, 2F] float32."""
    x = _f32(x, "x", 2)
    rows, f2 = x.shape
    if f2 % 2:
        raise ValueError(f"x has {f2} columns: GeGLU needs an even width (a, gate)")
    f = f2 // 2
    if mul is not None:
        mul = _f32(mul, "mul", 1)
        if mul.shape != (f,):
            raise ValueError(f"mul must have shape ({f},), got {mul.shape}")
    y = np.empty((rows, f), np.uint8)
    _check(lib.hf_geglu_u8(isa_id(isa), rows, f, _fptr(x), f2, _fptr(mul), float(scale), int(zp),
                           ffi.cast("uint8_t *", y.ctypes.data), f), "geglu_u8")
    return y


def attention_window(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int, window: int,
                     mask: np.ndarray | None = None, scale: float | None = None, isa: str = "auto") -> np.ndarray:
    """softmax(q k^T * scale + mask) v per head over the keys within `window` tokens of each query."""
    q, k, v, (s, hd, d), mask = _attention_args(q, k, v, heads, mask)
    out = np.empty_like(q)
    _check(lib.hf_attention_window(isa_id(isa), s, heads, d, _fptr(q), _fptr(k), _fptr(v), hd,
                                   ffi.cast("int64_t *", mask.ctypes.data) if mask is not None else ffi.NULL,
                                   int(window), float(1.0 / np.sqrt(d) if scale is None else scale), _fptr(out), hd),
           "attention_window")
    return out
