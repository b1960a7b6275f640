/* aarch64 fp32 attention for one (sequence, head): softmax(q k^T * scale + key_bias) v, row by row on 4 lanes
 * (requires d % 4 == 0; the dispatcher sends other head sizes to the reference). Keys past the last unmasked one get
 * probability exactly 0 and are skipped (right-padded batches); a row whose keys are all masked gets uniform weights
 * over all S keys, as the reference. Sums run in another order than the reference: within the attention tolerance. */
#include <arm_neon.h>
#include <math.h>

#include "arm.h"
#include "vecmath_neon.h"

/* exp(x) for x <= 0, 0 below -87.3 (also -inf: a masked key) */
static inline float32x4_t exp4_neg(float32x4_t x) {
    const float32x4_t lo = vdupq_n_f32(-87.3365478515625f);
    const uint32x4_t under = vcltq_f32(x, lo);
    return vreinterpretq_f32_u32(
        vbicq_u32(vreinterpretq_u32_f32(hf_exp4_unclamped(vmaxq_f32(x, lo))), under));
}

void hf_attention_head_neon(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                            const float *key_bias, float scale, float *ctx, int64_t ldo, float *scratch) {
    float *p = scratch;
    const int64_t ne = hf_attended_keys(S, key_bias);
    for (int64_t i = 0; i < S; i++) {
        const float *qi = q + i * ld;
        float mx = -INFINITY;
        for (int64_t j = 0; j < ne; j++) {
            const float *kj = k + j * ld;
            float32x4_t a0 = vdupq_n_f32(0.f), a1 = a0;
            int64_t c = 0;
            for (; c + 8 <= d; c += 8) {
                a0 = vfmaq_f32(a0, vld1q_f32(qi + c), vld1q_f32(kj + c));
                a1 = vfmaq_f32(a1, vld1q_f32(qi + c + 4), vld1q_f32(kj + c + 4));
            }
            if (c < d) a0 = vfmaq_f32(a0, vld1q_f32(qi + c), vld1q_f32(kj + c));
            const float s = vaddvq_f32(vaddq_f32(a0, a1)) * scale + (key_bias ? key_bias[j] : 0.f);
            p[j] = s;
            mx = s > mx ? s : mx;
        }
        int64_t nk = ne;
        float sum;
        if (mx == -INFINITY) { /* every key masked: uniform over all S */
            nk = S;
            for (int64_t j = 0; j < S; j++) p[j] = 1.f;
            sum = (float)S;
        } else {
            float32x4_t vs = vdupq_n_f32(0.f);
            const float32x4_t vmx = vdupq_n_f32(mx);
            int64_t j = 0;
            for (; j + 4 <= ne; j += 4) {
                const float32x4_t e = exp4_neg(vsubq_f32(vld1q_f32(p + j), vmx));
                vst1q_f32(p + j, e);
                vs = vaddq_f32(vs, e);
            }
            sum = vaddvq_f32(vs);
            for (; j < ne; j++) {
                p[j] = expf(p[j] - mx);
                sum += p[j];
            }
        }
        const float32x4_t inv = vdupq_n_f32(1.0f / sum);
        for (int64_t c = 0; c < d; c += 4) {
            float32x4_t acc = vdupq_n_f32(0.f);
            for (int64_t j = 0; j < nk; j++) acc = vfmaq_n_f32(acc, vld1q_f32(v + j * ld + c), p[j]);
            vst1q_f32(ctx + i * ldo + c, vmulq_f32(acc, inv));
        }
    }
}
