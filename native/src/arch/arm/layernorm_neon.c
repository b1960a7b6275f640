/* aarch64 LayerNorm with fused residual add (baseline Advanced SIMD): the AVX2 kernel's float arithmetic on 4 lanes
 * (two passes over the row, which stays in L1); within the LayerNorm tolerance of the (double) reference. */
#include <arm_neon.h>
#include <math.h>

#include "arm.h"

void hf_layernorm_neon(int64_t T, int64_t H, const float *x, const float *r, const float *gamma, const float *beta,
                       float eps, float *y) {
    const int64_t H4 = H & ~(int64_t)3;
    for (int64_t t = 0; t < T; t++) {
        const float *xt = x + t * H, *rt = r ? r + t * H : NULL;
        float *yt = y + t * H;
        float32x4_t s = vdupq_n_f32(0.f);
        float tail = 0.f;
        int64_t i = 0;
        for (; i < H4; i += 4) {
            float32x4_t v = vld1q_f32(xt + i);
            if (rt) v = vaddq_f32(v, vld1q_f32(rt + i));
            vst1q_f32(yt + i, v);
            s = vaddq_f32(s, v);
        }
        for (; i < H; i++) {
            const float v = rt ? xt[i] + rt[i] : xt[i];
            yt[i] = v;
            tail += v;
        }
        const float mu = (vaddvq_f32(s) + tail) / (float)H;
        const float32x4_t vmu = vdupq_n_f32(mu);
        float32x4_t q = vdupq_n_f32(0.f);
        float qt = 0.f;
        for (i = 0; i < H4; i += 4) {
            const float32x4_t d = vsubq_f32(vld1q_f32(yt + i), vmu);
            q = vfmaq_f32(q, d, d);
        }
        for (; i < H; i++) qt += (yt[i] - mu) * (yt[i] - mu);
        const float inv = 1.0f / sqrtf((vaddvq_f32(q) + qt) / (float)H + eps);
        const float32x4_t vinv = vdupq_n_f32(inv);
        for (i = 0; i < H4; i += 4) {
            const float32x4_t d = vmulq_f32(vsubq_f32(vld1q_f32(yt + i), vmu), vinv);
            vst1q_f32(yt + i, vfmaq_f32(vld1q_f32(beta + i), d, vld1q_f32(gamma + i)));
        }
        for (; i < H; i++) yt[i] = (yt[i] - mu) * inv * gamma[i] + beta[i];
    }
}
