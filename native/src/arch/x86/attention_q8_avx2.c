/* int8 attention for one (sequence, head) with AVX2: hf_attention_q8_head_ref's QDQ graph on vpmaddwd.
 * AVX2 has no u8 x s8 dot product that cannot saturate (vpmaddubsw saturates at int16), so the quantized
 * values are widened to int16 with their zero points subtracted, (x8 - zp) in [-255, 255], and multiplied in
 * pairs into int32: exact, and no correction terms. Inputs are the uint8 Q(q), Q(k), Q(v).
 * Layouts (scratch): q16 rows [S][d]; K as dwords Kp[d/2][sp] (2 channels of one key, 8 keys a ymm); V as
 * dwords Vp[ne2/2][d] (2 keys of one channel, 8 channels a ymm). Per block of 6 query rows: scores ->
 * fp32 softmax -> p quantized, widened to int16 in L1 -> ctx; keys stop at the last unmasked one.
 * Requires d % 16 == 0 (the dispatcher sends other head sizes to the reference). */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "x86.h"
#include "vecmath_avx2.h"

#define MR 6 /* 6 rows x 2 ymm accumulators + 2 B vectors + the broadcast: 15 of 16 ymm */
#define TGT __attribute__((target("avx2,fma")))
#define INL static inline __attribute__((target("avx2,fma"), always_inline))

/* 16 context values of channels c0.. as Q(y * mul) (hf_ctx_quant), as hf_quantize_mul_avx2 quantizes */
INL __m128i ctx_q16(const hf_ctx_quant *oq, int64_t c0, __m256 y0, __m256 y1) {
    const __m256 vs = _mm256_set1_ps(oq->scale), vz = _mm256_set1_ps((float)oq->zp);
    if (oq->mul) {
        y0 = _mm256_mul_ps(y0, _mm256_loadu_ps(oq->mul + c0));
        y1 = _mm256_mul_ps(y1, _mm256_loadu_ps(oq->mul + c0 + 8));
    }
    return _mm_unpacklo_epi64(hf_quant8_u8(y0, vs, vz), hf_quant8_u8(y1, vs, vz));
}

/* acc[r][b] = sum over n2 steps of bcast(A[r] int16 pair t) . B[t][8 b ..] (vpmaddwd), r < mr, b < 2. */
INL void mk(const int mr, int64_t n2, const int16_t *A, int64_t lda, const int32_t *B, int64_t ldb, __m256i acc[MR][2]) {
    for (int r = 0; r < mr; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    for (int64_t t = 0; t < n2; t++) {
        const __m256i b0 = _mm256_loadu_si256((const __m256i *)(B + t * ldb));
        const __m256i b1 = _mm256_loadu_si256((const __m256i *)(B + t * ldb + 8));
        for (int r = 0; r < mr; r++) {
            int32_t w;
            memcpy(&w, A + r * lda + 2 * t, 4);
            const __m256i a = _mm256_set1_epi32(w);
            acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(a, b0));
            acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(a, b1));
        }
    }
}

/* a row of d uint8 (d % 16 == 0) -> (x8 - zp) as int16 */
INL void row_s16(const uint8_t *x, int64_t d, int32_t zp, int16_t *dst) {
    const __m256i z = _mm256_set1_epi16((short)zp);
    for (int64_t c = 0; c < d; c += 16)
        _mm256_storeu_si256((__m256i *)(dst + c),
                            _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(x + c))), z));
}

/* rint(e * w) + zp, at most 255 (the reference's probability quantizer: e >= 0, w = (1/sum) / p_scale) */
INL __m256i q_prob8(__m256 e, __m256 w, __m256 zp) {
    const __m256 r = _mm256_add_ps(_mm256_round_ps(_mm256_mul_ps(e, w), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), zp);
    return _mm256_cvtps_epi32(_mm256_min_ps(r, _mm256_set1_ps(255.f)));
}

#define BLOCK(MRB)                                                                                             \
    do {                                                                                                       \
        for (int64_t j = 0; j < ne; j += 16) {                                                                 \
            __m256i acc[MR][2];                                                                                \
            mk(MRB, d / 2, q16 + i0 * d, d, Kp + j, sp, acc);                                                  \
            __m256 b0 = _mm256_setzero_ps(), b1 = b0;                                                          \
            if (key_bias) {                                                                                    \
                const int64_t left = ne - j;                                                                   \
                b0 = _mm256_maskload_ps(key_bias + j, hf_tailmask256(left >= 8 ? 8 : (int)left));             \
                b1 = _mm256_maskload_ps(key_bias + j + 8, hf_tailmask256(left >= 16 ? 8 : left > 8 ? (int)(left - 8) : 0)); \
            }                                                                                                  \
            for (int r = 0; r < MRB; r++) {                                                                    \
                const __m256 s0 = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[r][0]), vqk);                           \
                const __m256 s1 = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[r][1]), vqk);                           \
                if (rb) { /* (s * scale + rb) + key_bias, rb rows masked past ne */                            \
                    const int64_t left = ne - j;                                                               \
                    const float *rr = rb + (i0 + r) * rb_step + j;                                             \
                    const __m256 r0 = _mm256_maskload_ps(rr, hf_tailmask256(left >= 8 ? 8 : (int)left));      \
                    const __m256 r1 = _mm256_maskload_ps(rr + 8, hf_tailmask256(left >= 16 ? 8 : left > 8 ? (int)(left - 8) : 0)); \
                    _mm256_storeu_ps(sc + r * sp + j, _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(s0, vsc), r0), b0)); \
                    _mm256_storeu_ps(sc + r * sp + j + 8, _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(s1, vsc), r1), b1)); \
                    continue;                                                                                  \
                }                                                                                              \
                _mm256_storeu_ps(sc + r * sp + j, _mm256_add_ps(_mm256_mul_ps(s0, vsc), b0));                  \
                _mm256_storeu_ps(sc + r * sp + j + 8, _mm256_add_ps(_mm256_mul_ps(s1, vsc), b1));              \
            }                                                                                                  \
        }                                                                                                      \
        for (int r = 0; r < MRB; r++) {                                                                        \
            float *e = sc + r * sp;                                                                            \
            const __m256 vi = _mm256_set1_ps(hf_softmax_row8(e, ne) / aq->p_scale);                           \
            for (int64_t j = ne; j < ne16; j++) e[j] = 0.f; /* quantized to zp, then 0 after - zp */          \
            for (int64_t j = 0; j < ne16; j += 16) {                                                           \
                const __m256i a = q_prob8(_mm256_loadu_ps(e + j), vi, vpz);                                     \
                const __m256i b = q_prob8(_mm256_loadu_ps(e + j + 8), vi, vpz);                                 \
                const __m256i z = _mm256_set1_epi32(aq->p_zp);                                                 \
                _mm256_storeu_si256((__m256i *)(p16 + r * sp + j),                                             \
                    _mm256_permute4x64_epi64(_mm256_packs_epi32(_mm256_sub_epi32(a, z), _mm256_sub_epi32(b, z)), 0xD8)); \
            }                                                                                                  \
        }                                                                                                      \
        for (int64_t c0 = 0; c0 < d; c0 += 16) {                                                              \
            __m256i acc[MR][2];                                                                                \
            mk(MRB, ne2 / 2, p16, sp, Vp + c0, d, acc);                                                        \
            for (int r = 0; r < MRB; r++) {                                                                    \
                const __m256 y0 = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[r][0]), vpv);                           \
                const __m256 y1 = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[r][1]), vpv);                           \
                if (oq) {                                                                                      \
                    _mm_storeu_si128((__m128i *)(oq->out + (i0 + r) * oq->ldo + c0), ctx_q16(oq, c0, y0, y1)); \
                } else {                                                                                       \
                    _mm256_storeu_ps(ctx + (i0 + r) * ldo + c0, y0);                                           \
                    _mm256_storeu_ps(ctx + (i0 + r) * ldo + c0 + 8, y1);                                       \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
    } while (0)

INL void q8_head(int64_t S, int64_t d, const uint8_t *q, const uint8_t *k, const uint8_t *v, int64_t ld,
                 const float *key_bias, const float *rb, int64_t rb_step, float scale, const hf_attn_quant *aq,
                 float *ctx, int64_t ldo, const hf_ctx_quant *oq, void *scratch) {
    if (d % 16) {
        if (rb) hf_attention_q8_head_rb_ref(S, d, q, k, v, ld, key_bias, rb, rb_step, scale, aq, ctx, ldo, oq, scratch);
        else hf_attention_q8_head_ref(S, d, q, k, v, ld, key_bias, scale, aq, ctx, ldo, oq, scratch);
        return;
    }
    const int64_t sp = (S + 15) & ~(int64_t)15, d2 = d / 2;
    const int64_t ne = hf_attended_keys(S, key_bias);
    const int64_t ne2 = (ne + 1) & ~(int64_t)1, ne16 = (ne + 15) & ~(int64_t)15;
    char *p = hf_align64((char *)scratch);
    int16_t *q16 = (int16_t *)p;           p = hf_align64(p + 2 * S * d);
    int32_t *Kp = (int32_t *)p;            p = hf_align64(p + 4 * d2 * sp);
    int32_t *Vp = (int32_t *)p;            p = hf_align64(p + 4 * (sp / 2) * d);
    float *sc = (float *)p;                p = hf_align64(p + 4 * MR * sp);
    int16_t *p16 = (int16_t *)p;           p = hf_align64(p + 2 * MR * sp);
    int16_t *tmp = (int16_t *)p;           /* 2 rows of d int16 */

    for (int64_t i = 0; i < S; i++) row_s16(q + i * ld, d, aq->q_zp, q16 + i * d);
    for (int64_t j = 0; j < sp; j++) {
        if (j < ne) {
            row_s16(k + j * ld, d, aq->k_zp, tmp);
            for (int64_t t = 0; t < d2; t++) memcpy(Kp + t * sp + j, tmp + 2 * t, 4);
        } else {
            for (int64_t t = 0; t < d2; t++) Kp[t * sp + j] = 0;
        }
    }
    for (int64_t j2 = 0; j2 < ne2 / 2; j2++) {
        for (int t = 0; t < 2; t++) {
            if (2 * j2 + t < ne) row_s16(v + (2 * j2 + t) * ld, d, aq->v_zp, tmp + t * d);
            else memset(tmp + t * d, 0, (size_t)d * sizeof(int16_t));
        }
        for (int64_t c0 = 0; c0 < d; c0 += 16) {
            const __m256i r0 = _mm256_loadu_si256((const __m256i *)(tmp + c0));
            const __m256i r1 = _mm256_loadu_si256((const __m256i *)(tmp + d + c0));
            const __m256i lo = _mm256_unpacklo_epi16(r0, r1), hi = _mm256_unpackhi_epi16(r0, r1);
            _mm256_storeu_si256((__m256i *)(Vp + j2 * d + c0), _mm256_permute2x128_si256(lo, hi, 0x20));
            _mm256_storeu_si256((__m256i *)(Vp + j2 * d + c0 + 8), _mm256_permute2x128_si256(lo, hi, 0x31));
        }
    }
    const __m256 vqk = _mm256_set1_ps(aq->q_scale * aq->k_scale), vsc = _mm256_set1_ps(scale);
    const __m256 vpv = _mm256_set1_ps(aq->p_scale * aq->v_scale);
    const __m256 vpz = _mm256_set1_ps((float)aq->p_zp);
    int64_t i0 = 0;
    for (; i0 + MR <= S; i0 += MR) BLOCK(MR);
    HF_ROW_TAIL_6(S - i0, BLOCK);
}

TGT void hf_attention_q8_head_avx2(int64_t S, int64_t d, const uint8_t *q, const uint8_t *k, const uint8_t *v,
                                   int64_t ld, const float *key_bias, float scale, const hf_attn_quant *aq, float *ctx,
                                   int64_t ldo, const hf_ctx_quant *oq, void *scratch) {
    q8_head(S, d, q, k, v, ld, key_bias, NULL, 0, scale, aq, ctx, ldo, oq, scratch);
}

/* the same with a per-row bias (hf_attention_q8_head_rb_fn) */
TGT void hf_attention_q8_head_rb_avx2(int64_t S, int64_t d, const uint8_t *q, const uint8_t *k, const uint8_t *v,
                                      int64_t ld, const float *key_bias, const float *rb, int64_t rb_step, float scale,
                                      const hf_attn_quant *aq, float *ctx, int64_t ldo, const hf_ctx_quant *oq,
                                      void *scratch) {
    q8_head(S, d, q, k, v, ld, key_bias, rb, rb_step, scale, aq, ctx, ldo, oq, scratch);
}
