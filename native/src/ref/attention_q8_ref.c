/* Scalar reference int8 attention for one (sequence, head): the QDQ graph
 *   softmax(DQ(Q(q)) DQ(Q(k))^T * scale + key_bias) -> Q/DQ -> x DQ(Q(v))
 * with exact int32 dot products (hf_attention_q8 in hf_fast.h gives the formulas), on q, k and v already quantized
 * (hf_attention_q8 quantizes its float inputs first; the engine's qkv GEMM writes them as uint8). The SIMD kernels
 * must reproduce it: bit for bit up to the scores, then up to exp's last bits. */
#include <math.h>
#include <string.h>

#include "internal.h"

int64_t hf_attention_q8_scratch_bytes(int64_t S, int64_t d) {
    /* a bound on every kernel's layout (keys padded to 32, channels to 64; AVX2: int16 q rows, K and V packed as
     * int16 pairs; VNNI: q rows + 12, 12 rows of scores, probabilities and a 12 x 64 int32 tile) with slack */
    const int64_t sk = (S + 31) & ~(int64_t)31, dv = (d + 63) & ~(int64_t)63;
    return 6 * sk * dv + 96 * sk + 48 * dv + 8192;
}

/* rb: the per-row bias of hf_attention_q8_head_rb_fn, NULL for none */
static inline void q8_head_ref(int64_t S, int64_t d, const uint8_t *q8, const uint8_t *k8, const uint8_t *v8,
                               int64_t ld, const float *key_bias, const float *rb, int64_t rb_step, float scale,
                               const hf_attn_quant *aq, float *ctx, int64_t ldo, const hf_ctx_quant *oq,
                               void *scratch) {
    uint8_t *p8 = (uint8_t *)scratch;
    float *p = (float *)hf_align64((char *)(p8 + S));
    const float sqk = aq->q_scale * aq->k_scale, spv = aq->p_scale * aq->v_scale;
    for (int64_t i = 0; i < S; i++) {
        float mx = -INFINITY;
        for (int64_t j = 0; j < S; j++) {
            int32_t acc = 0;
            for (int64_t c = 0; c < d; c++)
                acc += ((int32_t)q8[i * ld + c] - aq->q_zp) * ((int32_t)k8[j * ld + c] - aq->k_zp);
            float s = (float)acc * sqk;
            if (rb) s = (s * scale + rb[i * rb_step + j]) + (key_bias ? key_bias[j] : 0.f);
            else s = s * scale + (key_bias ? key_bias[j] : 0.f);
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
        /* p8 = Q(p) with p = e / sum, computed as rint(e * ((1 / sum) / p_scale)): one rounding fewer than
         * rint((e * (1 / sum)) / p_scale) and no division per probability; the two differ only for a quotient within
         * an ulp of a rounding boundary, far below the gap exp's own last bits leave to ONNX Runtime's softmax */
        const float w = (1.0f / sum) / aq->p_scale;
        for (int64_t j = 0; j < S; j++) {
            float r = __builtin_nearbyintf(p[j] * w) + (float)aq->p_zp;
            p8[j] = (uint8_t)(r > 255.f ? 255.f : r); /* p >= 0: never below zp */
        }
        for (int64_t c = 0; c < d; c++) {
            int32_t acc = 0;
            for (int64_t j = 0; j < S; j++)
                acc += ((int32_t)p8[j] - aq->p_zp) * ((int32_t)v8[j * ld + c] - aq->v_zp);
            const float y = (float)acc * spv;
            if (oq) oq->out[i * oq->ldo + c] = hf_quantize_ref1(oq->mul ? y * oq->mul[c] : y, oq->scale, oq->zp);
            else ctx[i * ldo + c] = y;
        }
    }
}

void hf_attention_q8_head_ref(int64_t S, int64_t d, const uint8_t *q8, const uint8_t *k8, const uint8_t *v8, int64_t ld,
                              const float *key_bias, float scale, const hf_attn_quant *aq, float *ctx, int64_t ldo,
                              const hf_ctx_quant *oq, void *scratch) {
    q8_head_ref(S, d, q8, k8, v8, ld, key_bias, NULL, 0, scale, aq, ctx, ldo, oq, scratch);
}

void hf_attention_q8_head_rb_ref(int64_t S, int64_t d, const uint8_t *q8, const uint8_t *k8, const uint8_t *v8,
                                 int64_t ld, const float *key_bias, const float *rb, int64_t rb_step, float scale,
                                 const hf_attn_quant *aq, float *ctx, int64_t ldo, const hf_ctx_quant *oq,
                                 void *scratch) {
    q8_head_ref(S, d, q8, k8, v8, ld, key_bias, rb, rb_step, scale, aq, ctx, ldo, oq, scratch);
}
