/* aarch64 int8 attention for one (sequence, head) (hf_attention_q8's per-head definition), d % 8 == 0: the exact int32
 * sums of q k^T and p v on 8 lanes (q, k, v widened to int16 minus their zero points once per head, vmlal into int32),
 * and the reference's softmax and quantizers in the reference's order (scalar expf): bit for bit the reference. */
#include <arm_neon.h>
#include <math.h>

#include "arm.h"

static inline void widen_row(int64_t d, const uint8_t *x, int32_t zp, int16_t *y) {
    const int16x8_t z = vdupq_n_s16((int16_t)zp);
    for (int64_t c = 0; c < d; c += 8) vst1q_s16(y + c, vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(vld1_u8(x + c))), z));
}

void hf_attention_q8_head_neon(int64_t S, int64_t d, const uint8_t *q8, const uint8_t *k8, const uint8_t *v8,
                               int64_t ld, const float *key_bias, float scale, const hf_attn_quant *aq, float *ctx,
                               int64_t ldo, const hf_ctx_quant *oq, void *scratch) {
    /* scratch: p8[S] | p[S] | qw[d] | kw[S][d] | vw[S][d] (int16), each 64-byte aligned; within
     * hf_attention_q8_scratch_bytes (6 * round32(S) * round64(d) + ...) */
    uint8_t *p8 = (uint8_t *)scratch;
    float *p = (float *)hf_align64((char *)(p8 + S));
    int16_t *qw = (int16_t *)hf_align64((char *)(p + S));
    int16_t *kw = (int16_t *)hf_align64((char *)(qw + d));
    int16_t *vw = (int16_t *)hf_align64((char *)(kw + S * d));
    const float sqk = aq->q_scale * aq->k_scale, spv = aq->p_scale * aq->v_scale;
    for (int64_t j = 0; j < S; j++) {
        widen_row(d, k8 + j * ld, aq->k_zp, kw + j * d);
        widen_row(d, v8 + j * ld, aq->v_zp, vw + j * d);
    }
    for (int64_t i = 0; i < S; i++) {
        float mx = -INFINITY;
        widen_row(d, q8 + i * ld, aq->q_zp, qw);
        for (int64_t j = 0; j < S; j++) {
            const int16_t *kj = kw + j * d;
            int32x4_t a0 = vdupq_n_s32(0), a1 = a0;
            for (int64_t c = 0; c < d; c += 8) {
                const int16x8_t qv = vld1q_s16(qw + c), kv = vld1q_s16(kj + c);
                a0 = vmlal_s16(a0, vget_low_s16(qv), vget_low_s16(kv));
                a1 = vmlal_high_s16(a1, qv, kv);
            }
            float s = (float)vaddvq_s32(vaddq_s32(a0, a1)) * sqk;
            s = s * scale + (key_bias ? key_bias[j] : 0.f);
            p[j] = s;
            if (s > mx) mx = s;
        }
        float sum = 0.f;
        if (mx == -INFINITY) {
            for (int64_t j = 0; j < S; j++) p[j] = 1.f;
            sum = (float)S;
        } else {
            for (int64_t j = 0; j < S; j++) {
                p[j] = expf(p[j] - mx);
                sum += p[j];
            }
        }
        const float w = (1.0f / sum) / aq->p_scale;
        for (int64_t j = 0; j < S; j++) {
            const float r = __builtin_nearbyintf(p[j] * w) + (float)aq->p_zp;
            p8[j] = (uint8_t)(r > 255.f ? 255.f : r);
        }
        for (int64_t c = 0; c < d; c += 8) {
            int32x4_t a0 = vdupq_n_s32(0), a1 = a0;
            for (int64_t j = 0; j < S; j++) {
                const int16x8_t vv = vld1q_s16(vw + j * d + c);
                const int16_t pj = (int16_t)((int32_t)p8[j] - aq->p_zp);
                a0 = vmlal_n_s16(a0, vget_low_s16(vv), pj);
                a1 = vmlal_high_n_s16(a1, vv, pj);
            }
            int32_t acc[8];
            vst1q_s32(acc, a0);
            vst1q_s32(acc + 4, a1);
            for (int e = 0; e < 8; e++) {
                const float y = (float)acc[e] * spv;
                if (oq) oq->out[i * oq->ldo + c + e] = hf_quantize_ref1(oq->mul ? y * oq->mul[c + e] : y, oq->scale, oq->zp);
                else ctx[i * ldo + c + e] = y;
            }
        }
    }
}
