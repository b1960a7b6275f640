/* Scalar reference of the dynamic int8 attention of one (sequence, head) (the engine's attention="int8-dynamic" on
 * fp32-attention layers): the scales come from the tensors themselves at run time, finer than the static per-tensor
 * QDQ of an int8-attention export.
 *   q, k: int8 per token (symmetric over the head's d channels: x8 = rint(x * (127 / max|x|)), scale max|x| / 127);
 *   scores: exact int32 q8 . k8, then (float)acc * (s_q[i] * scale * s_k[j]) + key_bias[j];
 *   softmax: fp32 (hf_exp512xn's polynomial lane by lane), the unnormalised weights e = exp(s - rowmax) in (0, 1]
 *            rounded to int16 p = rint(e * pmax), pmax = 32767 (fewer bits past 516 keys, so that the int32 sum
 *            p . v8 cannot overflow);
 *   v: int8 per channel (symmetric over the attended keys);
 *   ctx = ((float)(p . v8) * s_v[c]) * (1 / (float)sum p): exact int32 sums, normalised by the rounded weights.
 * Every integer sum is exact, so the AVX-512 VNNI kernel (vpdpbusd for q.k^T, vpdpwssd for p.v) agrees bit for bit.
 * Keys past the last unmasked one are skipped; a row whose keys are all masked gets uniform weights. */
#include <math.h>

#include "internal.h"
#include "ref/bf16_scalar.h"

int64_t hf_attention_dq8_scratch_floats(int64_t S, int64_t d) {
    /* the AVX-512 kernel (sp = S rounded up to 32, dq = d rounded up to 4): int8 k [sp][dq] and v [sp][d],
     * K^T quads [dq/4][sp], q quads [S][dq/4], v int16 pairs [sp/2][d], 12 fp32 score rows, their int16 weights
     * [12][sp/2], scales s_q [S], s_k and k's sums [sp], s_v [d]; the reference fits in it */
    const int64_t sp = (S + 31) & ~(int64_t)31, dq = (d + 3) & ~(int64_t)3;
    return (sp * dq + sp * d) / 4 + (dq / 4) * sp + S * (dq / 4) + (sp / 2) * d + 12 * sp + 6 * sp + S + 2 * sp + d
           + 256;
}

int32_t hf_dq8_pmax(int64_t ne) {
    const int64_t m = (int64_t)2147483647 / (127 * (ne > 0 ? ne : 1));
    return (int32_t)(m < 32767 ? (m > 1 ? m : 1) : 32767);
}

float hf_dq8_quantize_ref(const float *x, int64_t n, int64_t stride, int8_t *out) {
    float mx = 0.f;
    for (int64_t c = 0; c < n; c++) mx = fmaxf(mx, fabsf(x[c * stride]));
    if (!(mx > 0.f)) {
        for (int64_t c = 0; c < n; c++) out[c] = 0;
        return 0.f;
    }
    const float r = 127.f / mx;
    for (int64_t c = 0; c < n; c++) {
        float t = __builtin_nearbyintf(x[c * stride] * r);
        out[c] = (int8_t)(t > 127.f ? 127.f : t < -127.f ? -127.f : t);
    }
    return mx / 127.f;
}

void hf_attention_head_dq8_ref(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                               const float *key_bias, float scale, float *ctx, int64_t ldo, float *scratch) {
    const int64_t ne = hf_attended_keys(S, key_bias);
    int8_t *k8 = (int8_t *)scratch;     /* [ne][d] */
    int8_t *v8 = k8 + ne * d;           /* [ne][d] (column c: channel c of every key) */
    int8_t *q8 = v8 + ne * d;           /* [d] */
    float *sk = (float *)hf_align64((char *)(q8 + d)); /* [ne] */
    float *sv = sk + ne;                /* [d] */
    float *sc = sv + d;                 /* [ne] scores */
    int32_t *p = (int32_t *)(sc + ne);  /* [ne] int16 weights */
    for (int64_t j = 0; j < ne; j++) sk[j] = hf_dq8_quantize_ref(k + j * ld, d, 1, k8 + j * d);
    for (int64_t c = 0; c < d; c++) {
        float mx = 0.f;
        for (int64_t j = 0; j < ne; j++) mx = fmaxf(mx, fabsf(v[j * ld + c]));
        const float r = mx > 0.f ? 127.f / mx : 0.f;
        sv[c] = mx > 0.f ? mx / 127.f : 0.f;
        for (int64_t j = 0; j < ne; j++) {
            float t = __builtin_nearbyintf(v[j * ld + c] * r);
            v8[j * d + c] = (int8_t)(t > 127.f ? 127.f : t < -127.f ? -127.f : t);
        }
    }
    const float pm = (float)hf_dq8_pmax(ne);
    for (int64_t i = 0; i < S; i++) {
        const float sqi = hf_dq8_quantize_ref(q + i * ld, d, 1, q8) * scale;
        float mx = -INFINITY;
        for (int64_t j = 0; j < ne; j++) {
            int32_t acc = 0;
            for (int64_t c = 0; c < d; c++) acc += (int32_t)q8[c] * (int32_t)k8[j * d + c];
            const float s = (float)acc * (sqi * sk[j]) + (key_bias ? key_bias[j] : 0.f);
            sc[j] = s;
            if (s > mx) mx = s;
        }
        int32_t sum = 0;
        for (int64_t j = 0; j < ne; j++) {
            const float e = mx == -INFINITY ? 1.f : hf_exp512_lane(sc[j] - mx);
            p[j] = (int32_t)__builtin_nearbyintf(e * pm);
            sum += p[j];
        }
        const float inv = 1.0f / (float)sum;
        for (int64_t c = 0; c < d; c++) {
            int32_t acc = 0;
            for (int64_t j = 0; j < ne; j++) acc += p[j] * (int32_t)v8[j * d + c];
            ctx[i * ldo + c] = ((float)acc * sv[c]) * inv;
        }
    }
}
