"""Fit the polynomial of hf_exp2_512xn (native/src/arch/x86/vecmath_avx512.h): 2^r ~ 1 + c1 r + ... + c5 r^5 on
r in [-1/2, 1/2], minimising the relative error.

c0 is pinned to 1 so that 2^0 is exact (a key at the row's max gets exactly 1). The fit is a least-squares fit
reweighted towards the worst points (a Lawson-style approximation of minimax), in float64; the coefficients are
then rounded to float32 and the kernel's exact evaluation (Horner with fma, emulated in float64: a float32
product is exact there) is checked against 2^r in float64. Prints the coefficients, highest first, as the
kernel's fmadd chain uses them, and the worst relative error (degree 5: 1.7e-7, about 3 ulp; degree 4 would be
49 ulp, degree 6 one operation more for 1.3 ulp).

Run: python native/tools/gen_exp2_poly.py [degree]
"""
import sys

import numpy as np


def fit(deg: int) -> np.ndarray:
    r = np.linspace(-0.5, 0.5, 20001)
    f = 2.0 ** r
    a = np.stack([r ** k for k in range(1, deg + 1)], 1)
    w = np.ones_like(r)
    for _ in range(60):
        c, *_ = np.linalg.lstsq(a * (w / f)[:, None], (f - 1) * w / f, rcond=None)
        err = np.abs((1 + a @ c - f) / f)
        w = w * (err / err.max()) ** 0.3 + 1e-12
        w /= w.max()
    return np.float32(c)


def worst_rel_error(c: np.ndarray) -> float:
    r = np.float32(np.linspace(-0.5, 0.5, 200001))
    p = np.float32(c[-1])
    for k in range(len(c) - 2, -1, -1):
        p = np.float32(np.float64(p) * np.float64(r) + np.float64(c[k]))
    p = np.float32(np.float64(p) * np.float64(r) + 1.0)
    t = 2.0 ** r.astype(np.float64)
    return float(np.max(np.abs(p.astype(np.float64) - t) / t))


def main(argv=None):
    deg = int((argv or sys.argv[1:] or ["5"])[0])
    c = fit(deg)
    print(f"coefficients c{deg} .. c1:", ", ".join(f"{float(x):.10e}f" for x in c[::-1]))
    e = worst_rel_error(c)
    print(f"worst relative error {e:.3g} ({e / 2.0 ** -24:.2f} ulp)")


if __name__ == "__main__":
    main()
