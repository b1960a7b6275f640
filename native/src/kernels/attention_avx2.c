/* AVX2 attention for one (sequence, head). K is transposed once into scratch so both products are
 * broadcast-FMA (axpy) loops with no horizontal sums: scores for 4 query rows share each load of
 * K^T, and the context row accumulates p[j] * v[j] in registers. Requires d % 8 == 0 (callers fall
 * back to the reference otherwise). */
#include <math.h>
#include <string.h>

#include "../internal.h"
#include "vecmath_avx2.h"

#define QR 4

__attribute__((target("avx2,fma"))) void hf_attention_head_avx2(int64_t S, int64_t d, const float *q,
                                                                const float *k, const float *v, int64_t ld,
                                                                const float *key_bias, float scale,
                                                                float *ctx, int64_t ldo, float *scratch) {
    const int64_t sp = (S + 7) & ~(int64_t)7;
    float *kt = scratch;         /* [d][sp] */
    float *sc = scratch + d * sp; /* [QR][sp] */
    for (int64_t j = 0; j < S; j++)
        for (int64_t c = 0; c < d; c++) kt[c * sp + j] = k[j * ld + c];
    for (int64_t c = 0; c < d; c++)
        for (int64_t j = S; j < sp; j++) kt[c * sp + j] = 0.f;
    const __m256 vscale = _mm256_set1_ps(scale);
    for (int64_t i0 = 0; i0 < S; i0 += QR) {
        const int qr = (S - i0) >= QR ? QR : (int)(S - i0);
        /* scores = q k^T for qr rows, 8 keys at a time */
        for (int64_t j = 0; j < sp; j += 8) {
            __m256 acc[QR];
            for (int r = 0; r < QR; r++) acc[r] = _mm256_setzero_ps();
            for (int64_t c = 0; c < d; c++) {
                __m256 kv = _mm256_loadu_ps(kt + c * sp + j);
                for (int r = 0; r < qr; r++)
                    acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(q[(i0 + r) * ld + c]), kv, acc[r]);
            }
            for (int r = 0; r < qr; r++) _mm256_storeu_ps(sc + r * sp + j, _mm256_mul_ps(acc[r], vscale));
        }
        for (int r = 0; r < qr; r++) {
            float *p = sc + r * sp;
            float mx = -INFINITY;
            if (key_bias)
                for (int64_t j = 0; j < S; j++) p[j] += key_bias[j];
            for (int64_t j = 0; j < S; j++) mx = p[j] > mx ? p[j] : mx;
            float sum = 0.f;
            if (mx == -INFINITY) {
                for (int64_t j = 0; j < S; j++) p[j] = 1.f;
                sum = (float)S;
            } else {
                const __m256 vmx = _mm256_set1_ps(mx);
                __m256 vs = _mm256_setzero_ps();
                int64_t j = 0;
                for (; j + 8 <= S; j += 8) {
                    __m256 e = hf_exp256(_mm256_sub_ps(_mm256_loadu_ps(p + j), vmx));
                    _mm256_storeu_ps(p + j, e);
                    vs = _mm256_add_ps(vs, e);
                }
                sum = hf_hsum256(vs);
                for (; j < S; j++) {
                    p[j] = expf(p[j] - mx);
                    sum += p[j];
                }
            }
            const float inv = 1.0f / sum;
            float *o = ctx + (i0 + r) * ldo;
            for (int64_t c0 = 0; c0 < d; c0 += 32) {
                const int nv = (d - c0) >= 32 ? 4 : (int)((d - c0) / 8);
                __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
                for (int64_t j = 0; j < S; j++) {
                    const __m256 pj = _mm256_set1_ps(p[j]);
                    const float *vj = v + j * ld + c0;
                    for (int u = 0; u < nv; u++) acc[u] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 8 * u), acc[u]);
                }
                const __m256 vinv = _mm256_set1_ps(inv);
                for (int u = 0; u < nv; u++) _mm256_storeu_ps(o + c0 + 8 * u, _mm256_mul_ps(acc[u], vinv));
            }
        }
    }
}
