"""One Linear (PackedLinear) timed alone in this process: thread scaling of a kernel without other runtimes around.

Run: python benchmarks/gemm_threads.py THREADS M N K SPARSITY BLOCK     e.g. 2 128 3072 768 0.8 4x1
(random int8 weights, 4x1 blocks pruned at SPARSITY; median of 2 s of calls; f32 output; HF_FAST_ISA picks the path)
"""
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hf_fast import native  # noqa: E402


def main(argv=None):
    a = argv if argv is not None else sys.argv[1:]
    if len(a) != 6:
        raise SystemExit(__doc__)
    th, m, n, k, sp, block = int(a[0]), int(a[1]), int(a[2]), int(a[3]), float(a[4]), a[5]
    native.set_num_threads(th)
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (n, k)).astype(np.int8)
    if sp > 0:
        w = w * np.repeat(rng.random((n // 4, k)) >= sp, 4, axis=0)
    lin = native.PackedLinear(w.astype(np.int8), np.full(n, 0.01, np.float32), np.zeros(n, np.float32), block=block)
    x = rng.integers(0, 256, (m, k)).astype(np.uint8)
    for _ in range(5):
        lin.forward(x, 0.02, 128)
    ts, end = [], time.time() + 2
    while time.time() < end:
        t0 = time.perf_counter()
        lin.forward(x, 0.02, 128)
        ts.append(time.perf_counter() - t0)
    print(f"th{th} M{m} {n}x{k} sp{sp} {block}: {np.median(ts) * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
