/* AVX2 sliding-window attention for one (sequence, head) (hf_attention_window_fn): attention_window_avx512.c's
 * algorithm on 8 lanes: K^T once per head, each row's window scores 32 keys at a time, hf_softmax_row8, p v on
 * 8-channel strips. No S x S buffer. d % 8 != 0 runs the reference. */
#include <math.h>

#include "x86.h"
#include "vecmath_avx2.h"

#define TGT __attribute__((target("avx2,fma")))

TGT void hf_attention_window_avx2(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                                  const float *key_bias, int64_t window, float scale, float *ctx, int64_t ldo,
                                  float *scratch) {
    if (d % 8) {
        hf_attention_window_ref(S, d, q, k, v, ld, key_bias, window, scale, ctx, ldo, scratch);
        return;
    }
    /* K^T row stride: 16 floats past a multiple of 16 so that the d rows of one key block fall in different L1 sets
     * (a stride of a multiple of 4 KB put all of them in one set: 4 query rows did not amortize the misses) */
    const int64_t sp = ((S + 15) & ~(int64_t)15) + 16;
    float *kt = scratch, *p = (float *)hf_align64((char *)(scratch + d * sp + 64));
    hf_transpose_keys(S, d, k, ld, kt, sp);
    const __m256 vs = _mm256_set1_ps(scale);
    for (int64_t i = 0; i < S; i++) {
        const int64_t lo = i - window > 0 ? i - window : 0, hi = i + window < S - 1 ? i + window : S - 1;
        const int64_t n = hi - lo + 1;
        const float *qi = q + i * ld;
        for (int64_t j0 = 0; j0 < n; j0 += 32) {
            __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
            const float *kb = kt + lo + j0; /* may read up to 31 floats past the row (padding) */
            for (int64_t c = 0; c < d; c++) {
                const __m256 a = _mm256_broadcast_ss(qi + c);
                for (int u = 0; u < 4; u++) acc[u] = _mm256_fmadd_ps(a, _mm256_loadu_ps(kb + c * sp + 8 * u), acc[u]);
            }
            for (int u = 0; u < 4; u++) {
                const int64_t jj = j0 + 8 * u;
                if (jj >= n) break;
                __m256 s = _mm256_mul_ps(acc[u], vs);
                float tmp[8];
                _mm256_storeu_ps(tmp, s);
                const int64_t cnt = n - jj < 8 ? n - jj : 8;
                for (int64_t t = 0; t < cnt; t++) p[jj + t] = tmp[t] + (key_bias ? key_bias[lo + jj + t] : 0.f);
            }
        }
        const float inv = hf_softmax_row8(p, n);
        const __m256 vinv = _mm256_set1_ps(inv);
        for (int64_t c0 = 0; c0 < d; c0 += 32) {
            const int nc = d - c0 >= 32 ? 4 : (int)((d - c0) / 8);
            __m256 o[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
            for (int64_t j = 0; j < n; j++) {
                const __m256 pj = _mm256_broadcast_ss(p + j);
                const float *vr = v + (lo + j) * ld + c0;
                for (int u = 0; u < nc; u++) o[u] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vr + 8 * u), o[u]);
            }
            for (int u = 0; u < nc; u++) _mm256_storeu_ps(ctx + i * ldo + c0 + 8 * u, _mm256_mul_ps(o[u], vinv));
        }
    }
}
