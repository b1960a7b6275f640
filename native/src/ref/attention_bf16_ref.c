/* Scalar reference of the bf16 attention of one (sequence, head): hf_attention_head_fn's softmax(q k^T * scale +
 * key_bias) v with q, k, v rounded to bf16 (round to nearest even) and both products summed as vdpbf16ps does
 * (pairs of consecutive elements, the odd one first, fp32 FMAs; ref/bf16_scalar.h). The softmax stays fp32: the
 * scores are fp32, exp is hf_exp512xn's polynomial lane by lane, and the probabilities are rounded to bf16 for p v,
 * normalised by the sum of the rounded values (added per lane j % 16 in key order, then lane 0..15), so the weights
 * of a row sum to 1. This is the AVX-512 BF16 kernel's arithmetic, operation for operation: the two agree bit for
 * bit. Keys past the last unmasked one are skipped (probability exactly 0); a row whose keys are all masked gets
 * uniform weights. */
#include <math.h>

#include "internal.h"
#include "ref/bf16_scalar.h"

int64_t hf_attention_bf16_scratch_floats(int64_t S, int64_t d) {
    /* the AVX-512 kernel: K^T pairs [d/2][sp], q [S][d/2], v pairs [sp/2][d], 12 fp32 score rows and their bf16
     * probabilities [12][sp/2] (sp = S rounded up to 32); the reference uses S + 16 floats */
    const int64_t sp = (S + 31) & ~(int64_t)31, dp = (d + 1) / 2;
    return dp * sp + S * dp + (sp / 2) * d + 12 * sp + 6 * sp + 64;
}

void hf_attention_head_bf16_ref(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                                const float *key_bias, float scale, float *ctx, int64_t ldo, float *scratch) {
    const int64_t ne = hf_attended_keys(S, key_bias), pairs = (d + 1) / 2, kpairs = (ne + 1) / 2;
    float *p = scratch; /* [ne] bf16-rounded probabilities, as floats */
#define B16(x) hf_bf16_from_f32(x)
    for (int64_t i = 0; i < S; i++) {
        float mx = -INFINITY;
        for (int64_t j = 0; j < ne; j++) {
            float acc = 0.f;
            for (int64_t t = 0; t < pairs; t++) {
                const int64_t c = 2 * t;
                const int odd_ok = c + 1 < d;
                acc = hf_bf16_dot2(acc, B16(q[i * ld + c]), odd_ok ? B16(q[i * ld + c + 1]) : 0,
                                   B16(k[j * ld + c]), odd_ok ? B16(k[j * ld + c + 1]) : 0);
            }
            const float s = acc * scale + (key_bias ? key_bias[j] : 0.f);
            p[j] = s;
            if (s > mx) mx = s;
        }
        float lanes[16] = {0};
        for (int64_t j = 0; j < ne; j++) {
            p[j] = hf_f32_from_bf16(B16(mx == -INFINITY ? 1.f : hf_exp512_lane(p[j] - mx)));
            lanes[j % 16] += p[j];
        }
        float sum = 0.f;
        for (int l = 0; l < 16; l++) sum += lanes[l];
        const float inv = 1.0f / sum;
        for (int64_t c = 0; c < d; c++) {
            float acc = 0.f;
            for (int64_t t = 0; t < kpairs; t++) {
                const int64_t j = 2 * t;
                const int odd_ok = j + 1 < ne;
                acc = hf_bf16_dot2(acc, B16(p[j]), odd_ok ? B16(p[j + 1]) : 0, B16(v[j * ld + c]),
                                   odd_ok ? B16(v[(j + 1) * ld + c]) : 0);
            }
            ctx[i * ldo + c] = acc * inv;
        }
    }
#undef B16
}
