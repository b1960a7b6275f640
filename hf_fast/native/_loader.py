"""Loading of the cffi module hf_fast._native, C status codes as exceptions, the ISA choice, threads and
native_info().

The C library never prints or aborts; every failure comes back here as a status code plus the
thread-local message from ``hf_last_error()`` and is raised as :class:`NativeError` (or a subclass).
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import numpy as np


def _load_native_from(directory: str):
    """HF_FAST_NATIVE_DIR=dir: import the cffi module from dir/_native*.so instead of the installed one
    (`make sanitize` points it at the ASan/UBSan build in build/sanitize/ without touching hf_fast/_native*.so)."""
    import glob
    import importlib.util
    import sys

    found = sorted(glob.glob(os.path.join(directory, "**", "_native*.so"), recursive=True))
    if not found:
        raise ImportError(f"HF_FAST_NATIVE_DIR={directory!r} holds no _native*.so")
    spec = importlib.util.spec_from_file_location("hf_fast._native", found[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.modules["hf_fast._native"] = mod
    return mod.ffi, mod.lib


try:
    if os.environ.get("HF_FAST_NATIVE_DIR"):
        ffi, lib = _load_native_from(os.environ["HF_FAST_NATIVE_DIR"])
    else:
        from hf_fast._native import ffi, lib
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "hf_fast._native is not built: install the package with `pip install -e .` "
        "(or run `make demo` / `make test`), which compiles native/ with cffi"
    ) from exc
# the dispatcher's names (native/src/dispatch.c), by HF_ISA_* id: the ISA names are spelled there and in the header only
ISA_NAMES = tuple(ffi.string(lib.hf_isa_name(i)).decode() for i in range(lib.HF_ISA_COUNT))
# the ISAs this build has kernels for (ref and its architecture's): tests parametrize over these, so an x86 build
# does not list the ARM ISAs as skipped tests and an ARM build not the x86 ones
BUILT_ISA_NAMES = tuple(n for i, n in enumerate(ISA_NAMES) if lib.hf_isa_built(i))
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


# op name -> HF_OP_* id of hf_op_kernel (native/include/hf_fast.h)
KERNEL_OPS = {
    "dense_u8s8s32_gemm": "DENSE_GEMM", "dense_u8s8s32_gemm_7bit": "DENSE_GEMM_7BIT",
    "sparse_u8s8s32_gemm": "SPARSE_GEMM", "sparse_u8s8s32_gemm_7bit": "SPARSE_GEMM_7BIT",
    "linear_epilogue": "LINEAR_EPILOGUE", "quantize_u8": "QUANTIZE", "gelu": "GELU", "layernorm": "LAYERNORM",
    "attention_f32": "ATTENTION", "attention_int8": "ATTENTION_Q8",
}


def op_kernel(op: str, isa: str = "auto", head_size: int = 64) -> str:
    """The kernel the C dispatcher (native/src/dispatch.c) picks for ``op`` (a KERNEL_OPS key) on ``isa``:
    e.g. "avx512vnni", "avx2-s16", "avx2", "ref". ``head_size`` matters for the attention ops only (head sizes
    the SIMD kernels do not take run the reference)."""
    if op not in KERNEL_OPS:
        raise ValueError(f"unknown op {op!r}; expected one of {', '.join(KERNEL_OPS)}")
    i = isa_id(isa)
    if i != lib.HF_ISA_AUTO and not lib.hf_isa_supported(i):
        raise UnsupportedISAError(f"ISA {isa!r} is not supported by this CPU", lib.HF_EUNSUPPORTED)
    return ffi.string(lib.hf_op_kernel(getattr(lib, f"HF_OP_{KERNEL_OPS[op]}"), i, int(head_size))).decode()


def native_info() -> dict:
    """What the native runtime runs on: version, chosen ISA, supported ISAs and the kernel each op runs on the
    chosen ISA (attention: for head size 64; the GEMMs: 8-bit weights, and weights in [-64, 64] for *_7bit)."""
    return {
        "version": ffi.string(lib.hf_version()).decode(),
        "isa": active_isa(),
        "isa_forced_by_env": os.environ.get("HF_FAST_ISA") or None,
        "supported_isas": supported_isas(),
        "kernels": {op: op_kernel(op) for op in KERNEL_OPS},
        "threads": get_num_threads(),
        "threads_from_env": os.environ.get("HF_FAST_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or None,
        "cpu": _cpu_model(),
    }


def set_num_threads(n: int) -> None:
    """Threads the native kernels use (a persistent pool; results never depend on it)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    _check(lib.hf_set_num_threads(int(n)), "set_num_threads")


def get_num_threads() -> int:
    return int(lib.hf_get_num_threads())


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Temporarily run the native kernels on ``n`` threads."""
    prev = get_num_threads()
    set_num_threads(n)
    try:
        yield
    finally:
        set_num_threads(prev)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown-cpu"
