"""One Linear (PackedLinear) timed alone in this process: thread scaling of a kernel without other runtimes around.

Run: python benchmarks/gemm_threads.py THREADS M N K SPARSITY BLOCK     e.g. 2 128 3072 768 0.8 4x1
(random int8 weights, 4x1 blocks pruned at SPARSITY; median of 2 s of calls; f32 output)
"""
import sys, time, numpy as np
sys.path.insert(0, __import__("os").path.join(__import__("os").path.dirname(__file__), ".."))
from hf_fast import native
th, M, N, K, sp, block = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
native.set_num_threads(th)
rng = np.random.default_rng(0)
w = rng.integers(-127, 128, (N, K)).astype(np.int8)
if sp > 0:
    keep = rng.random((N // 4, K)) >= sp
    w = w * np.repeat(keep, 4, axis=0)
lin = native.PackedLinear(w.astype(np.int8), np.full(N, 0.01, np.float32), np.zeros(N, np.float32), block=block)
A = rng.integers(0, 256, (M, K)).astype(np.uint8)
for _ in range(5): lin.forward(A, 0.02, 128)
ts = []; end = time.time() + 2
while time.time() < end:
    t0 = time.perf_counter(); lin.forward(A, 0.02, 128); ts.append(time.perf_counter() - t0)
print(f"th{th} M{M} {N}x{K} sp{sp} {block}: {np.median(ts)*1e3:.3f} ms")
