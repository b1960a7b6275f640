"""The hardware-aware choices, measured on this CPU rather than read off its feature flags: which block shape its
sparse kernels run fastest (measured once and cached on disk, keyed by CPU model, active ISA and library version),
and whether bf16 attention is faster than fp32 here (measured once per process)."""
from __future__ import annotations

import functools
import os
import threading
import time

import numpy as np

from hf_fast import _atomic
from hf_fast.native import kernels
from hf_fast.native._loader import _cpu_model, active_isa, ffi, lib, num_threads
from hf_fast.native.kernels import BLOCK_SHAPES, SparseWeight

ARM_DEFAULT_BLOCK = "4x1"  # block="auto" on aarch64 until ARM hardware is measured (the kernels run 4x1 and 1x4)
_BLOCK_CACHE_VERSION = 2  # 2: 64-token VNNI 4x1 kernel; timed into preallocated outputs
_pref_lock = threading.Lock()
_pref_memo: dict = {}


def _block_cache_path():
    from pathlib import Path

    base = os.environ.get("HF_FAST_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "hf_fast")
    return Path(base) / "preferred_block.json"


def _block_cache_key() -> str:
    return f"{_cpu_model()}|{active_isa()}|{ffi.string(lib.hf_version()).decode()}|v{_BLOCK_CACHE_VERSION}"


def _measure_block(budget_s: float = 0.3) -> tuple[str, dict]:
    """Time both block shapes' sparse kernels on a DistilBERT-shaped layer at 80% block sparsity.

    Returns (winner, {block: seconds per GEMM}). Falls back to "4x1" (the paper's block) when the
    sparse kernels are not available in this build.
    """
    import time

    if not hasattr(lib, "hf_sparse_pack"):
        return "4x1", {}
    rng = np.random.default_rng(0)
    m, n, k, sparsity = 128, 768, 768, 0.8
    a = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    packed = {}
    for blk in BLOCK_SHAPES:
        r, c = (4, 1) if blk == "4x1" else (1, 4)
        keep = rng.random((n // r, k // c)) >= sparsity
        w = rng.integers(-128, 128, size=(n, k), dtype=np.int8)
        w *= np.repeat(np.repeat(keep, r, axis=0), c, axis=1).astype(np.int8)
        packed[blk] = SparseWeight(w, blk)
    outs = {blk: np.empty((m, n), dtype=np.int32) for blk in BLOCK_SHAPES}  # no page faults in the timings
    times = {blk: [] for blk in BLOCK_SHAPES}
    # one thread: the per-core kernel speed decides, and a busy sibling core adds no noise
    with num_threads(1):
        for blk in BLOCK_SHAPES:  # warm-up (also grows the scratch buffers)
            packed[blk].matmul(a, out=outs[blk])
        t_end = time.perf_counter() + budget_s
        rounds = 0
        while rounds < 3 or (time.perf_counter() < t_end and rounds < 200):
            for blk in BLOCK_SHAPES:  # interleaved, so load changes hit both alike
                t0 = time.perf_counter()
                packed[blk].matmul(a, out=outs[blk])
                times[blk].append(time.perf_counter() - t0)
            rounds += 1
    med = {blk: float(np.median(v)) for blk, v in times.items()}
    return min(med, key=med.get), med


def preferred_block(refresh: bool = False) -> str:
    """The block shape ("4x1" or "1x4") this CPU's sparse kernels run fastest at 80% sparsity.

    ``HF_FAST_BLOCK`` overrides. On aarch64, ``ARM_DEFAULT_BLOCK`` ("4x1"), a documented default until ARM hardware
    is measured. Otherwise measured once (a <= 0.3 s micro-benchmark on a 768x768
    DistilBERT layer, 128 tokens) and cached in ``~/.cache/hf_fast/preferred_block.json`` (or
    ``$HF_FAST_CACHE_DIR``), keyed by CPU model, active ISA and library version.
    """
    import json

    env = os.environ.get("HF_FAST_BLOCK")
    if env:
        env = env.strip().lower()
        if env not in BLOCK_SHAPES:
            raise ValueError(f"HF_FAST_BLOCK={env!r} must be one of {', '.join(BLOCK_SHAPES)}")
        return env
    import platform

    if platform.machine().lower() in ("aarch64", "arm64"):
        # no ARM CPU has been measured yet (the ARM kernels are checked under qemu, whose timings mean nothing):
        # a stated default, the paper's block, until real hardware says otherwise (README, "Status")
        return ARM_DEFAULT_BLOCK
    key = _block_cache_key()
    with _pref_lock:
        if not refresh and key in _pref_memo:
            return _pref_memo[key]
        path = _block_cache_path()
        cache = {}
        try:
            cache = json.loads(path.read_text())
            if not isinstance(cache, dict):
                cache = {}
        except (OSError, ValueError):
            cache = {}
        entry = cache.get(key)
        if not refresh and isinstance(entry, dict) and entry.get("block") in BLOCK_SHAPES:
            _pref_memo[key] = entry["block"]
            return entry["block"]
        block, med = _measure_block()
        if med:  # only a real measurement is worth remembering
            cache[key] = {"block": block, "seconds": med, "shape": "M=128 N=768 K=768 sparsity=0.8",
                          "threads": 1}
            try:
                _atomic.write_text(path, json.dumps(cache, indent=1, sort_keys=True))
            except OSError:
                pass
            _pref_memo[key] = block
        return block


@functools.cache
def bf16_attention_pays(head_dim: int = 64) -> bool:
    """What attention="auto" runs: True where this CPU has the SIMD bf16 attention kernel for `head_dim` and that
    kernel measures faster than the fp32 one here. Having AVX512_BF16 is not enough: on the Zen 5 EPYC of earlier
    sessions the bf16 kernel was ~1.5x faster than fp32, on an Emerald Rapids Xeon 0.75-0.80x
    (`benchmarks/attention_bf16.py kernel`; benchmarks/RESULTS.md). Measured once per process and head size: both
    kernels alternately on 4 heads of 128 random tokens, the best of 5 thread-CPU-time runs each (~5 ms in all)."""
    # the CPU's own SIMD kernels, named: HF_FAST_ISA (avx2, ref) may hold the engine elsewhere, the answer is the CPU's
    isa = kernels.bf16_attention_isa(head_dim)
    if isa is None:
        return False
    rng = np.random.default_rng(0)
    heads, seq = 4, 128
    q, k, v = (rng.standard_normal((seq, heads * head_dim), dtype=np.float32) for _ in range(3))
    best = {"fp32": np.inf, "bf16": np.inf}
    for _ in range(5):
        for name, fn in (("fp32", kernels.attention), ("bf16", kernels.attention_bf16)):
            t0 = time.thread_time()  # this thread's CPU: a busy sibling core adds no noise
            fn(q, k, v, heads, isa=isa)
            best[name] = min(best[name], time.thread_time() - t0)
    return bool(best["bf16"] < 0.95 * best["fp32"])
