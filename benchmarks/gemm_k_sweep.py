"""Where the 4x1 sparse GEMM's time goes: its kept-MAC rate against K at a fixed N, M and sparsity. Each group of
4 output channels runs ~K x (1 - sparsity) / 4 records per 64-token tile, so the time splits into a cost per record
(the steady-state loop) and a cost per (group, token tile) call (accumulator set-up and stores, the strip's
epilogue, the loop's exit): a line through the K points separates them. 1 thread, process-thread CPU time, medians
of --rounds, each round beside a run of the int8 peak loop (`vpdpbusd` zmm), so the % of peak compares like with
like on a machine whose speed drifts. int32 outputs, as bench_gemm.py.

    python benchmarks/gemm_k_sweep.py --tokens 128      # the engine's b1 s128 calls
    python benchmarks/gemm_k_sweep.py --tokens 1024     # bench_gemm.py's b8 s128
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--n", type=int, default=768)
    ap.add_argument("--ks", type=int, nargs="+", default=[128, 256, 512, 768, 1536, 3072])
    ap.add_argument("--sparsity", type=float, default=0.8)
    ap.add_argument("--rounds", type=int, default=9)
    a = ap.parse_args(argv)

    from hf_fast import native
    from hf_fast.native.kernels import SparseWeight

    rng = np.random.default_rng(0)
    m, n = a.tokens, a.n
    reps = max(1, 5120 // m)
    rows = []
    with native.num_threads(1):
        for k in a.ks:
            x = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
            keep = rng.random((n // 4, k)) >= a.sparsity
            w = rng.integers(-128, 128, size=(n, k), dtype=np.int8) * np.repeat(keep, 4, axis=0).astype(np.int8)
            sw = SparseWeight(w, "4x1")
            out = np.empty((m, n), np.int32)
            sw.matmul(x, out=out)
            ts, peaks = [], []
            for _ in range(a.rounds):
                t0 = time.thread_time()
                for _ in range(reps):
                    sw.matmul(x, out=out)
                ts.append((time.thread_time() - t0) / reps)
                t0 = time.thread_time()
                macs = native.int8_peak_probe(200_000)
                peaks.append(macs / (time.thread_time() - t0))
            t, peak = float(np.median(ts)), float(np.median(peaks))
            kept = int(keep.sum()) * 4 * m
            calls = (n // 4) * -(-m // 64)  # (group, 64-token tile) calls
            records = calls * keep.sum(axis=1).mean() / 4  # ~4 kept channels per record, padding aside
            rows.append((k, t, kept / t, kept / t / peak, calls, records))
            print(f"N {n} K {k} M {m}: {t * 1e3:.3f} ms, {kept / t / 1e9:.0f} G kept MAC/s, "
                  f"{kept / t / peak * 100:.0f}% of the peak ({peak / 1e9:.0f} GMAC/s)", flush=True)
    rec = np.array([r[5] for r in rows])
    tt = np.array([r[1] for r in rows])
    per_record, fixed = np.polyfit(rec, tt, 1)
    print(f"fit over K: {per_record * 1e9:.2f} ns per record, {fixed / rows[0][4] * 1e9:.0f} ns per (group, "
          f"token tile) call ({rows[0][4]} calls); a record is 16 vpdpbusd = 1,024 MACs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
