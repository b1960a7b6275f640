/* AVX-512 sliding-window attention for one (sequence, head): query i attends to keys j with |i - j| <= window
 * (hf_attention_window_fn). K is transposed once per head into scratch [d][sp]; each row's scores over its window run
 * 64 keys at a time (4 accumulator chains, q broadcast per channel), the softmax on 16 lanes (hf_softmax_row16), and
 * p v over the window on 16-channel strips. O(S x window x d) flops, O(S x d + window) scratch: no S x S buffer.
 * d % 16 != 0 runs the AVX2 kernel (d % 8 == 0) or the reference. */
#include <math.h>

#include "x86.h"
#include "vecmath_avx2.h"
#include "vecmath_avx512.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))

TGT void hf_attention_window_avx512(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                                    const float *key_bias, int64_t window, float scale, float *ctx, int64_t ldo,
                                    float *scratch) {
    if (d % 16) {
        hf_attention_window_avx2(S, d, q, k, v, ld, key_bias, window, scale, ctx, ldo, scratch);
        return;
    }
    const int64_t sp = (S + 15) & ~(int64_t)15;
    float *kt = scratch, *p = (float *)hf_align64((char *)(scratch + d * sp + 64));
    hf_transpose_keys(S, d, k, ld, kt, sp);
    const __m512 vs = _mm512_set1_ps(scale);
    for (int64_t i = 0; i < S; i++) {
        const int64_t lo = i - window > 0 ? i - window : 0, hi = i + window < S - 1 ? i + window : S - 1;
        const int64_t n = hi - lo + 1;
        const float *qi = q + i * ld;
        for (int64_t j0 = 0; j0 < n; j0 += 64) {
            __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
            const float *kb = kt + lo + j0; /* may read up to 63 floats past the row (padding) */
            for (int64_t c = 0; c < d; c++) {
                const __m512 a = _mm512_set1_ps(qi[c]);
                for (int u = 0; u < 4; u++) acc[u] = _mm512_fmadd_ps(a, _mm512_loadu_ps(kb + c * sp + 16 * u), acc[u]);
            }
            for (int u = 0; u < 4; u++) {
                const int64_t jj = j0 + 16 * u;
                if (jj >= n) break;
                const __mmask16 m = hf_tail16(n - jj);
                __m512 s = _mm512_mul_ps(acc[u], vs);
                if (key_bias) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(m, key_bias + lo + jj));
                _mm512_mask_storeu_ps(p + jj, m, s);
            }
        }
        const float inv = hf_softmax_row16(p, n);
        const __m512 vinv = _mm512_set1_ps(inv);
        for (int64_t c0 = 0; c0 < d; c0 += 64) {
            const int nc = d - c0 >= 64 ? 4 : (int)((d - c0) / 16);
            __m512 o[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
            for (int64_t j = 0; j < n; j++) {
                const __m512 pj = _mm512_set1_ps(p[j]);
                const float *vr = v + (lo + j) * ld + c0;
                for (int u = 0; u < nc; u++) o[u] = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vr + 16 * u), o[u]);
            }
            for (int u = 0; u < nc; u++) _mm512_storeu_ps(ctx + i * ldo + c0 + 16 * u, _mm512_mul_ps(o[u], vinv));
        }
    }
}
