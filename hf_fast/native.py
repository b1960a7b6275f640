"""Python side of the native runtime: loads hf_fast._native (cffi), turns C status codes into
exceptions and exposes the kernels on numpy arrays.

The C library never prints or aborts; every failure comes back here as a status code plus the
thread-local message from ``hf_last_error()`` and is raised as :class:`NativeError` (or a subclass).
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator

import numpy as np

try:
    from hf_fast._native import ffi, lib
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "hf_fast._native is not built: install the package with `pip install -e .` "
        "(or run `make demo` / `make test`), which compiles native/ with cffi"
    ) from exc

ISA_NAMES = ("ref", "avx2", "avx512vnni")
_isa_lock = threading.Lock()


class NativeError(RuntimeError):
    """An error reported by the native engine, carrying its message and status code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


class UnsupportedISAError(NativeError):
    """The requested instruction set is not available on this CPU."""


def _check(rc: int, what: str) -> None:
    if rc == lib.HF_OK:
        return
    msg = ffi.string(lib.hf_last_error()).decode("utf-8", "replace") or f"{what} failed"
    cls = UnsupportedISAError if rc == lib.HF_EUNSUPPORTED else NativeError
    if rc == lib.HF_EINVAL:
        raise ValueError(msg)
    if rc == lib.HF_ENOMEM:
        raise MemoryError(msg)
    raise cls(msg, rc)


def _init() -> None:
    rc = lib.hf_init()
    if rc != lib.HF_OK:
        msg = ffi.string(lib.hf_last_error()).decode()
        raise UnsupportedISAError(f"{msg} (unset HF_FAST_ISA or pick a supported one)", rc)


_init()


def isa_id(name: str) -> int:
    i = lib.hf_isa_from_name(name.encode())
    if i == -2:
        raise ValueError(f"unknown ISA {name!r}; expected one of {', '.join(ISA_NAMES)} or 'auto'")
    return i


def supported_isas() -> list[str]:
    """ISAs this CPU can run, slowest (the scalar reference) first."""
    return [n for i, n in enumerate(ISA_NAMES) if lib.hf_isa_supported(i)]


def active_isa() -> str:
    return ISA_NAMES[lib.hf_isa_active()]


def set_isa(name: str) -> None:
    """Force the kernels of one ISA process-wide (``"auto"`` = the best this CPU supports)."""
    _check(lib.hf_set_isa(isa_id(name)), "set_isa")


@contextlib.contextmanager
def use_isa(name: str) -> Iterator[None]:
    """Temporarily run every kernel on ``name``; restores the previous choice afterwards."""
    with _isa_lock:
        prev = active_isa()
        set_isa(name)
        try:
            yield
        finally:
            set_isa(prev)


def native_info() -> dict:
    """What the native runtime runs on: version, chosen ISA, supported ISAs and kernels."""
    return {
        "version": ffi.string(lib.hf_version()).decode(),
        "isa": active_isa(),
        "isa_forced_by_env": os.environ.get("HF_FAST_ISA") or None,
        "supported_isas": supported_isas(),
        "kernels": {"dense_u8s8s32_gemm": supported_isas()},
        "threads": os.cpu_count(),
    }


# ---------------------------------------------------------------- dense GEMM
def _as_2d(x: np.ndarray, dtype, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype).name}, got {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {x.shape}")
    return np.ascontiguousarray(x)


class DenseWeight:
    """An int8 weight W[N, K] (PyTorch layout) packed for one ISA's dense kernel."""

    def __init__(self, w: np.ndarray, isa: str = "auto"):
        w = _as_2d(w, np.int8, "weight")
        if 0 in w.shape:
            raise ValueError(f"weight must be non-empty, got shape {w.shape}")
        n, k = w.shape
        out = ffi.new("hf_dense_w **")
        _check(lib.hf_dense_pack(isa_id(isa), n, k, ffi.cast("const int8_t *", w.ctypes.data), k, out),
               "dense_pack")
        self._w = ffi.gc(out[0], lib.hf_dense_free)
        self.shape = (n, k)
        self.isa = ISA_NAMES[lib.hf_dense_isa(self._w)]
        self.nbytes = int(lib.hf_dense_nbytes(self._w))

    def matmul(self, a: np.ndarray) -> np.ndarray:
        """C[M, N] = A[M, K] (uint8) @ W.T, exact int32."""
        a = _as_2d(a, np.uint8, "activations")
        n, k = self.shape
        if a.shape[1] != k:
            raise ValueError(f"activations have {a.shape[1]} columns, weight expects K={k}")
        c = np.empty((a.shape[0], n), dtype=np.int32)
        _check(lib.hf_dense_gemm(self._w, a.shape[0], ffi.cast("const uint8_t *", a.ctypes.data), k,
                                 ffi.cast("int32_t *", c.ctypes.data), n), "dense_gemm")
        return c


def gemm_u8s8s32(a: np.ndarray, w: np.ndarray, isa: str = "auto") -> np.ndarray:
    """Exact ``a @ w.T`` for uint8 ``a`` [M, K] and int8 ``w`` [N, K], on the chosen ISA's kernel."""
    return DenseWeight(w, isa=isa).matmul(a)


# ---------------------------------------------------------------- fp32 transformer ops
def _f32(x, name: str, ndim: int) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.dtype != np.float32:
        raise TypeError(f"{name} must be a float32 numpy array")
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")
    return np.ascontiguousarray(x)


def _fptr(x):
    return ffi.cast("float *", x.ctypes.data) if x is not None else ffi.NULL


def layernorm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-12,
              residual: np.ndarray | None = None, isa: str = "auto") -> np.ndarray:
    """LayerNorm(x + residual) * gamma + beta over the last axis of a [T, H] float32 array."""
    x = _f32(x, "x", 2)
    t, h = x.shape
    gamma, beta = _f32(gamma, "gamma", 1), _f32(beta, "beta", 1)
    if gamma.shape != (h,) or beta.shape != (h,):
        raise ValueError(f"gamma/beta must have shape ({h},)")
    if residual is not None:
        residual = _f32(residual, "residual", 2)
        if residual.shape != x.shape:
            raise ValueError(f"residual shape {residual.shape} != x shape {x.shape}")
    y = np.empty_like(x)
    _check(lib.hf_layernorm(isa_id(isa), t, h, _fptr(x), _fptr(residual), _fptr(gamma), _fptr(beta),
                            float(eps), _fptr(y)), "layernorm")
    return y


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int, mask: np.ndarray | None = None,
              scale: float | None = None, isa: str = "auto") -> np.ndarray:
    """softmax(q k^T * scale + mask) v per head for one sequence; q/k/v are [S, heads*d] float32."""
    q, k, v = (_f32(a, n, 2) for a, n in ((q, "q"), (k, "k"), (v, "v")))
    if not (q.shape == k.shape == v.shape):
        raise ValueError(f"q/k/v shapes differ: {q.shape}, {k.shape}, {v.shape}")
    s, hd = q.shape
    if heads <= 0 or hd % heads:
        raise ValueError(f"hidden size {hd} is not divisible by heads={heads}")
    d = hd // heads
    if mask is not None:
        mask = np.ascontiguousarray(mask, dtype=np.int64)
        if mask.shape != (s,):
            raise ValueError(f"mask must have shape ({s},), got {mask.shape}")
    out = np.empty_like(q)
    _check(lib.hf_attention(isa_id(isa), s, heads, d, _fptr(q), _fptr(k), _fptr(v), hd,
                            ffi.cast("int64_t *", mask.ctypes.data) if mask is not None else ffi.NULL,
                            float(1.0 / np.sqrt(d) if scale is None else scale), _fptr(out), hd), "attention")
    return out
