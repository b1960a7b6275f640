/* AVX2 GeGLU + quantizer (hf_geglu_fn): hf_gelu_avx2 on a 256-channel chunk, times the gate [and multiplier], then
 * hf_quantize_avx2 (the exact quantizer): everything but GELU bit for bit the reference. */
#include <immintrin.h>

#include "x86.h"

#define TGT __attribute__((target("avx2,fma")))

TGT void hf_geglu_avx2(int64_t n, const float *a, const float *g, const float *mul, float scale, int32_t zp,
                       uint8_t *y) {
    float tmp[256] __attribute__((aligned(32)));
    for (int64_t i0 = 0; i0 < n; i0 += 256) {
        const int64_t m = n - i0 < 256 ? n - i0 : 256;
        hf_gelu_avx2(m, a + i0, tmp);
        for (int64_t i = 0; i < m; i++) tmp[i] *= g[i0 + i];
        if (mul)
            for (int64_t i = 0; i < m; i++) tmp[i] *= mul[i0 + i];
        hf_quantize_avx2(m, tmp, scale, zp, y + i0);
    }
}
