/* AVX2 LayerNorm with fused residual add (two passes over the row, which stays in L1). */
#include <math.h>

#include "x86.h"
#include "vecmath_avx2.h"

__attribute__((target("avx2,fma"))) void hf_layernorm_avx2(int64_t T, int64_t H, const float *x,
                                                           const float *r, const float *gamma,
                                                           const float *beta, float eps, float *y) {
    const int64_t H8 = H & ~(int64_t)7;
    for (int64_t t = 0; t < T; t++) {
        const float *xt = x + t * H, *rt = r ? r + t * H : NULL;
        float *yt = y + t * H;
        __m256 s = _mm256_setzero_ps();
        float tail = 0.f;
        int64_t i = 0;
        for (; i < H8; i += 8) {
            __m256 v = _mm256_loadu_ps(xt + i);
            if (rt) v = _mm256_add_ps(v, _mm256_loadu_ps(rt + i));
            _mm256_storeu_ps(yt + i, v);
            s = _mm256_add_ps(s, v);
        }
        for (; i < H; i++) {
            float v = rt ? xt[i] + rt[i] : xt[i];
            yt[i] = v;
            tail += v;
        }
        const float mu = (hf_hsum256(s) + tail) / (float)H;
        const __m256 vmu = _mm256_set1_ps(mu);
        __m256 q = _mm256_setzero_ps();
        float qt = 0.f;
        for (i = 0; i < H8; i += 8) {
            __m256 d = _mm256_sub_ps(_mm256_loadu_ps(yt + i), vmu);
            q = _mm256_fmadd_ps(d, d, q);
        }
        for (; i < H; i++) qt += (yt[i] - mu) * (yt[i] - mu);
        const float inv = 1.0f / sqrtf((hf_hsum256(q) + qt) / (float)H + eps);
        const __m256 vinv = _mm256_set1_ps(inv);
        for (i = 0; i < H8; i += 8) {
            __m256 d = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(yt + i), vmu), vinv);
            _mm256_storeu_ps(yt + i, _mm256_fmadd_ps(d, _mm256_loadu_ps(gamma + i), _mm256_loadu_ps(beta + i)));
        }
        for (; i < H; i++) yt[i] = (yt[i] - mu) * inv * gamma[i] + beta[i];
    }
}
