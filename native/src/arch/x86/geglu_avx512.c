/* AVX-512 GeGLU + quantizer (hf_geglu_fn): GELU of the first half by the epilogue's 16-lane GELU (hf_gelu_avx512,
 * within its tolerance of the reference), then times the gate [times the smoothing multiplier] and the exact
 * quantizer (hf_quant16) on 16 lanes: everything but GELU bit for bit the reference. Chunks of 256 channels stay
 * in L1 between the two passes. */
#include "x86.h"
#include "vecmath_avx512.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))

TGT void hf_geglu_avx512(int64_t n, const float *a, const float *g, const float *mul, float scale, int32_t zp,
                         uint8_t *y) {
    float tmp[256] __attribute__((aligned(64)));
    for (int64_t i0 = 0; i0 < n; i0 += 256) {
        const int64_t m = n - i0 < 256 ? n - i0 : 256;
        hf_gelu_avx512(m, a + i0, tmp);
        for (int64_t i = 0; i < m; i += 16) {
            const __mmask16 k = hf_tail16(m - i);
            __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, tmp + i), _mm512_maskz_loadu_ps(k, g + i0 + i));
            if (mul) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(k, mul + i0 + i));
            _mm_mask_storeu_epi8(y + i0 + i, k, hf_quant16(v, scale, zp));
        }
    }
}
