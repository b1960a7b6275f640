/* Sliding-window attention (ModernBERT's local layers), scalar reference: query i attends to the keys j with
 * |i - j| <= window only, so a row costs O(window) and no S x S score buffer exists. Also the reference encoder-ops
 * table (rotary, GeGLU, windowed attention). */
#include <math.h>

#include "internal.h"

int64_t hf_attention_window_scratch_floats(int64_t S, int64_t window, int64_t d) {
    /* SIMD kernels: K^T [d][round16(S) + 16] (+ 64 floats their key blocks may read past its end), then the scores of
     * the union of up to 4 rows' windows (2 window + 4 keys), each row rounded up to 64 */
    const int64_t sp = ((S + 15) & ~(int64_t)15) + 16, n = 2 * window + 4 < S ? 2 * window + 4 : S;
    return d * sp + 64 + 4 * ((n + 63) & ~(int64_t)63) + 64; /* up to 4 rows of a 4-query block's window union */
}

void hf_attention_window_ref(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                             const float *key_bias, int64_t window, float scale, float *ctx, int64_t ldo,
                             float *scratch) {
    float *p = scratch;
    for (int64_t i = 0; i < S; i++) {
        const int64_t lo = i - window > 0 ? i - window : 0, hi = i + window < S - 1 ? i + window : S - 1;
        const int64_t n = hi - lo + 1;
        float mx = -INFINITY;
        for (int64_t j = lo; j <= hi; j++) {
            float s = 0.f;
            for (int64_t c = 0; c < d; c++) s += q[i * ld + c] * k[j * ld + c];
            s = s * scale + (key_bias ? key_bias[j] : 0.f);
            p[j - lo] = s;
            if (s > mx) mx = s;
        }
        double sum = 0.0;
        for (int64_t j = 0; j < n; j++) {
            p[j] = mx == -INFINITY ? 1.f : expf(p[j] - mx);
            sum += p[j];
        }
        const float inv = (float)(1.0 / sum);
        for (int64_t c = 0; c < d; c++) {
            float acc = 0.f;
            for (int64_t j = 0; j < n; j++) acc += p[j] * v[(lo + j) * ld + c];
            ctx[i * ldo + c] = acc * inv;
        }
    }
}

const hf_encoder_ops hf_encoder_ops_ref = {hf_rotary_ref, hf_geglu_ref, hf_attention_window_ref};
