/* AVX2 rotary position embedding (hf_rotary_fn): rotary_avx512.c on 8 lanes (scalar tail), bit for bit the
 * reference. */
#include <immintrin.h>

#include "x86.h"

#define TGT __attribute__((target("avx2,fma")))

TGT static void rotate_rows(int64_t S, int64_t d, float *x, int64_t ld, const float *cs) {
    const int64_t h = d / 2;
    const float *c = cs, *s = cs + S * h;
    for (int64_t t = 0; t < S; t++) {
        float *r = x + t * ld;
        int64_t i = 0;
        for (; i + 8 <= h; i += 8) {
            const __m256 x1 = _mm256_loadu_ps(r + i), x2 = _mm256_loadu_ps(r + i + h);
            const __m256 co = _mm256_loadu_ps(c + t * h + i), si = _mm256_loadu_ps(s + t * h + i);
            _mm256_storeu_ps(r + i, _mm256_sub_ps(_mm256_mul_ps(x1, co), _mm256_mul_ps(x2, si)));
            _mm256_storeu_ps(r + i + h, _mm256_add_ps(_mm256_mul_ps(x2, co), _mm256_mul_ps(x1, si)));
        }
        for (; i < h; i++) {
            const float x1 = r[i], x2 = r[i + h], co = c[t * h + i], si = s[t * h + i];
            r[i] = x1 * co - x2 * si;
            r[i + h] = x2 * co + x1 * si;
        }
    }
}

TGT void hf_rotary_avx2(int64_t S, int64_t d, float *q, float *k, int64_t ld, const float *cs) {
    rotate_rows(S, d, q, ld, cs);
    rotate_rows(S, d, k, ld, cs);
}
