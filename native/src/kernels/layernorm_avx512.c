/* AVX-512 LayerNorm with fused residual add (AVX-512 machines): layernorm_avx2.c on 16 lanes with
 * masked tails (two passes over the row, which stays in L1). */
#include <math.h>

#include "../internal.h"

#include <immintrin.h>

__attribute__((target("avx512f,avx512vl,avx2,fma"))) void hf_layernorm_avx512(int64_t T, int64_t H, const float *x,
                                                                             const float *r, const float *gamma,
                                                                             const float *beta, float eps, float *y) {
    for (int64_t t = 0; t < T; t++) {
        const float *xt = x + t * H, *rt = r ? r + t * H : NULL;
        float *yt = y + t * H;
        __m512 s = _mm512_setzero_ps();
        for (int64_t i = 0; i < H; i += 16) {
            const __mmask16 k = H - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (H - i)) - 1u);
            __m512 v = _mm512_maskz_loadu_ps(k, xt + i);
            if (rt) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, rt + i));
            _mm512_mask_storeu_ps(yt + i, k, v);
            s = _mm512_add_ps(s, v);
        }
        const float mu = _mm512_reduce_add_ps(s) / (float)H;
        const __m512 vmu = _mm512_set1_ps(mu);
        __m512 q = _mm512_setzero_ps();
        for (int64_t i = 0; i < H; i += 16) {
            const __mmask16 k = H - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (H - i)) - 1u);
            const __m512 d = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, yt + i), vmu);
            q = _mm512_fmadd_ps(d, d, q);
        }
        const float inv = 1.0f / sqrtf(_mm512_reduce_add_ps(q) / (float)H + eps);
        const __m512 vinv = _mm512_set1_ps(inv);
        for (int64_t i = 0; i < H; i += 16) {
            const __mmask16 k = H - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (H - i)) - 1u);
            const __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, yt + i), vmu), vinv);
            _mm512_mask_storeu_ps(yt + i, k,
                                  _mm512_fmadd_ps(d, _mm512_maskz_loadu_ps(k, gamma + i), _mm512_maskz_loadu_ps(k, beta + i)));
        }
    }
}
