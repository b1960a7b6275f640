/* AVX-512 rotary position embedding (hf_rotary_fn): each row's two halves rotated 16 channels at a time, with masked
 * tails; the same products and order as the reference (x1 cos - x2 sin, x2 cos + x1 sin, no FMA contraction), so
 * the result is bit for bit the reference's. */
#include "x86.h"
#include "vecmath_avx512.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))

TGT static void rotate_rows(int64_t S, int64_t d, float *x, int64_t ld, const float *cs) {
    const int64_t h = d / 2;
    const float *c = cs, *s = cs + S * h;
    for (int64_t t = 0; t < S; t++) {
        float *r = x + t * ld;
        for (int64_t i = 0; i < h; i += 16) {
            const __mmask16 m = hf_tail16(h - i);
            const __m512 x1 = _mm512_maskz_loadu_ps(m, r + i), x2 = _mm512_maskz_loadu_ps(m, r + i + h);
            const __m512 co = _mm512_maskz_loadu_ps(m, c + t * h + i), si = _mm512_maskz_loadu_ps(m, s + t * h + i);
            _mm512_mask_storeu_ps(r + i, m, _mm512_sub_ps(_mm512_mul_ps(x1, co), _mm512_mul_ps(x2, si)));
            _mm512_mask_storeu_ps(r + i + h, m, _mm512_add_ps(_mm512_mul_ps(x2, co), _mm512_mul_ps(x1, si)));
        }
    }
}

TGT void hf_rotary_avx512(int64_t S, int64_t d, float *q, float *k, int64_t ld, const float *cs) {
    rotate_rows(S, d, q, ld, cs);
    rotate_rows(S, d, k, ld, cs);
}
