"""`make demo`: runs, end to end, every stage of the pipeline that exists so far, and says what it did.

Stages land one issue at a time; a stage that has not landed is reported as such, never faked.
"""
from __future__ import annotations

import time

import numpy as np


def _stage(title: str) -> None:
    print(f"\n== {title}")


def native_stage() -> None:
    from hf_fast import native

    _stage("native runtime")
    info = native.native_info()
    print(f"ISA chosen: {info['isa']}  supported: {', '.join(info['supported_isas'])}  threads: {info['threads']}")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(128, 768), dtype=np.uint8)
    w = rng.integers(-128, 128, size=(768, 768), dtype=np.int8)
    ref = a.astype(np.int64) @ w.astype(np.int64).T
    for isa in info["supported_isas"]:
        packed = native.DenseWeight(w, isa=isa)
        t0 = time.perf_counter()
        c = packed.matmul(a)
        dt = time.perf_counter() - t0
        ok = np.array_equal(c, ref)
        print(f"dense u8xs8 GEMM 128x768x768 on {isa:>10}: {dt * 1e3:7.2f} ms, "
              f"{2 * 128 * 768 * 768 / dt / 1e9:6.1f} GOP/s, exact vs numpy: {ok}")
        if not ok:
            raise SystemExit(f"native GEMM on {isa} disagrees with numpy")


def main() -> None:
    print("hf-fast demo")
    native_stage()
    _stage("not yet built (open issues): prune+distil training, sparse int8 export, fused engine")


if __name__ == "__main__":
    main()
