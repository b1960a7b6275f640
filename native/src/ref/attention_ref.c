/* Scalar reference attention for one (sequence, head): softmax(q k^T * scale + key_bias) v.
 * key_bias[j] is 0 for a kept key and -INFINITY for a masked one; a row whose keys are all masked
 * gets uniform weights, as PyTorch does with its finfo.min mask. */
#include <math.h>

#include "internal.h"

int64_t hf_attention_scratch_floats(int64_t S, int64_t d) {
    /* SIMD kernels: transposed K (d x S rounded up to 16) + up to 16 rows of scores (AVX2: 6, AVX-512: 12) + V
     * packed to rows of d (AVX-512; the AVX2 kernel measured no gain from it) */
    int64_t sp = (S + 15) & ~(int64_t)15;
    return 2 * d * sp + 16 * sp + 64;
}

/* rb: the per-row bias of hf_attention_head_rb_fn, NULL for none (hf_attention_head_ref) */
static inline void attention_head_ref(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                                      const float *key_bias, const float *rb, int64_t rb_step, float scale,
                                      float *ctx, int64_t ldo, float *scratch) {
    float *p = scratch;
    for (int64_t i = 0; i < S; i++) {
        float mx = -INFINITY;
        for (int64_t j = 0; j < S; j++) {
            float s = 0.f;
            for (int64_t c = 0; c < d; c++) s += q[i * ld + c] * k[j * ld + c];
            if (rb) s = (s * scale + rb[i * rb_step + j]) + (key_bias ? key_bias[j] : 0.f);
            else s = s * scale + (key_bias ? key_bias[j] : 0.f);
            p[j] = s;
            if (s > mx) mx = s;
        }
        double sum = 0.0;
        if (mx == -INFINITY) {
            for (int64_t j = 0; j < S; j++) p[j] = 1.f;
            sum = (double)S;
        } else {
            for (int64_t j = 0; j < S; j++) {
                p[j] = expf(p[j] - mx);
                sum += p[j];
            }
        }
        const float inv = (float)(1.0 / sum);
        for (int64_t c = 0; c < d; c++) {
            float acc = 0.f;
            for (int64_t j = 0; j < S; j++) acc += p[j] * v[j * ld + c];
            ctx[i * ldo + c] = acc * inv;
        }
    }
}

void hf_attention_head_ref(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                           const float *key_bias, float scale, float *ctx, int64_t ldo, float *scratch) {
    attention_head_ref(S, d, q, k, v, ld, key_bias, NULL, 0, scale, ctx, ldo, scratch);
}

void hf_attention_head_rb_ref(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                              const float *key_bias, const float *rb, int64_t rb_step, float scale, float *ctx,
                              int64_t ldo, float *scratch) {
    attention_head_ref(S, d, q, k, v, ld, key_bias, rb, rb_step, scale, ctx, ldo, scratch);
}
