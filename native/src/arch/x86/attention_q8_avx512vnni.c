/* int8 attention for one (sequence, head) with AVX-512 VNNI: hf_attention_q8_head_ref's QDQ graph, the two
 * products on vpdpbusd (u8 x s8, 64 MACs an instruction against the fp32 kernel's 16 FMAs).
 *
 * vpdpbusd multiplies unsigned by signed bytes; k8 and v8 are uint8 with a zero point, so they are stored
 * as s8 = u8 - 128 (a xor) and the sums corrected in exact int32 arithmetic:
 *   sum_c (q8 - zq)(k8 - zk) = sum_c q8 (k8 - 128) + (128 - zk) sum_c q8 - zq sum_c k8 + d zq zk
 *   sum_j (p8 - zp)(v8 - zv) = sum_j p8 (v8 - 128) + (128 - zv) sum_j p8 - zp sum_j v8 + ne zp zv
 * Layouts (scratch): q8 rows [S + 12][d] u8 (a query's 4 channels broadcast as one dword; zero rows past S);
 *   K as dwords Kp[d/4][sk] (4 channels of one key, 16 keys a zmm; sk = S rounded up to 32, zero keys past ne),
 *   packed with 16 x 16 dword transposes; V as dwords Vp[ne4/4][dv] (4 keys of one channel, 16 channels a zmm;
 *   dv = d rounded up to 64, zero channels and keys as padding). Both once per head.
 * Per block of 12 query rows: scores (12 x 32 keys a micro-kernel call, accumulators pinned with inline asm;
 * the row max taken in the same epilogue) -> fp32 exp and sum -> p = rint(e * ((1/sum)/p_scale)) + zp as u8 in
 * L1 -> ctx (6 rows x 64 channels a call). Keys past the last unmasked one have p8 = zp exactly, i.e. contribute
 * 0, so both products stop at ne (as the fp32 kernels).
 * Inputs are the uint8 Q(q), Q(k), Q(v). Requires d % 16 == 0 (other head sizes run the reference). */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "x86.h"
#include "vecmath_avx512.h"

#define MR 12  /* query rows per block: the scores micro-kernel holds 12 x 2 accumulators */
#define MRV 6  /* rows per ctx micro-kernel call: 6 x 4 accumulators */
#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma")))
#define INL static inline __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma"), always_inline))

/* acc += x (u8) . w (s8); inline asm keeps each accumulator in its register (with the intrinsic GCC copied
 * and spilled accumulators every step: half the VNNI rate) */
#define DPR(acc, x, w) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w))
#define ACC(name, reg) register __m512i name __asm__(reg) = _mm512_setzero_si512()
#define BC(A, r) _mm512_set1_epi32(*(const int32_t *)(A + (r) * lda + 4 * t)) /* 4 u8 of row r at step t */

/* out[12][32] = 12 rows of A (u8, stride lda bytes) x 32 columns of B (dwords [n4][ldb]): the scores of 12
 * queries against 32 keys (rows past the block's last are computed from padding and not read). */
INL void qk12x32(int64_t n4, const uint8_t *A, int64_t lda, const int32_t *B, int64_t ldb, int32_t *out) {
    ACC(c00, "zmm8"); ACC(c01, "zmm9"); ACC(c10, "zmm10"); ACC(c11, "zmm11"); ACC(c20, "zmm12"); ACC(c21, "zmm13");
    ACC(c30, "zmm14"); ACC(c31, "zmm15"); ACC(c40, "zmm16"); ACC(c41, "zmm17"); ACC(c50, "zmm18"); ACC(c51, "zmm19");
    ACC(c60, "zmm20"); ACC(c61, "zmm21"); ACC(c70, "zmm22"); ACC(c71, "zmm23"); ACC(c80, "zmm24"); ACC(c81, "zmm25");
    ACC(c90, "zmm26"); ACC(c91, "zmm27"); ACC(ca0, "zmm28"); ACC(ca1, "zmm29"); ACC(cb0, "zmm30"); ACC(cb1, "zmm31");
    for (int64_t t = 0; t < n4; t++) {
        const __m512i b0 = _mm512_loadu_si512((const void *)(B + t * ldb));
        const __m512i b1 = _mm512_loadu_si512((const void *)(B + t * ldb + 16));
        __m512i a;
        a = BC(A, 0); DPR(c00, a, b0); DPR(c01, a, b1);
        a = BC(A, 1); DPR(c10, a, b0); DPR(c11, a, b1);
        a = BC(A, 2); DPR(c20, a, b0); DPR(c21, a, b1);
        a = BC(A, 3); DPR(c30, a, b0); DPR(c31, a, b1);
        a = BC(A, 4); DPR(c40, a, b0); DPR(c41, a, b1);
        a = BC(A, 5); DPR(c50, a, b0); DPR(c51, a, b1);
        a = BC(A, 6); DPR(c60, a, b0); DPR(c61, a, b1);
        a = BC(A, 7); DPR(c70, a, b0); DPR(c71, a, b1);
        a = BC(A, 8); DPR(c80, a, b0); DPR(c81, a, b1);
        a = BC(A, 9); DPR(c90, a, b0); DPR(c91, a, b1);
        a = BC(A, 10); DPR(ca0, a, b0); DPR(ca1, a, b1);
        a = BC(A, 11); DPR(cb0, a, b0); DPR(cb1, a, b1);
    }
#define ST(r, v0, v1) _mm512_store_si512((void *)(out + (r) * 32), v0), _mm512_store_si512((void *)(out + (r) * 32 + 16), v1)
    ST(0, c00, c01); ST(1, c10, c11); ST(2, c20, c21); ST(3, c30, c31); ST(4, c40, c41); ST(5, c50, c51);
    ST(6, c60, c61); ST(7, c70, c71); ST(8, c80, c81); ST(9, c90, c91); ST(10, ca0, ca1); ST(11, cb0, cb1);
#undef ST
}

/* out[6][64] = 6 rows of A (u8 probabilities) x 64 columns of B (dwords [n4][ldb]): 6 queries' context over 64
 * channels. */
INL void pv6x64(int64_t n4, const uint8_t *A, int64_t lda, const int32_t *B, int64_t ldb, int32_t *out) {
    ACC(c00, "zmm8"); ACC(c01, "zmm9"); ACC(c02, "zmm10"); ACC(c03, "zmm11"); ACC(c10, "zmm12"); ACC(c11, "zmm13");
    ACC(c12, "zmm14"); ACC(c13, "zmm15"); ACC(c20, "zmm16"); ACC(c21, "zmm17"); ACC(c22, "zmm18"); ACC(c23, "zmm19");
    ACC(c30, "zmm20"); ACC(c31, "zmm21"); ACC(c32, "zmm22"); ACC(c33, "zmm23"); ACC(c40, "zmm24"); ACC(c41, "zmm25");
    ACC(c42, "zmm26"); ACC(c43, "zmm27"); ACC(c50, "zmm28"); ACC(c51, "zmm29"); ACC(c52, "zmm30"); ACC(c53, "zmm31");
    for (int64_t t = 0; t < n4; t++) {
        const __m512i b0 = _mm512_loadu_si512((const void *)(B + t * ldb));
        const __m512i b1 = _mm512_loadu_si512((const void *)(B + t * ldb + 16));
        const __m512i b2 = _mm512_loadu_si512((const void *)(B + t * ldb + 32));
        const __m512i b3 = _mm512_loadu_si512((const void *)(B + t * ldb + 48));
        __m512i a;
        a = BC(A, 0); DPR(c00, a, b0); DPR(c01, a, b1); DPR(c02, a, b2); DPR(c03, a, b3);
        a = BC(A, 1); DPR(c10, a, b0); DPR(c11, a, b1); DPR(c12, a, b2); DPR(c13, a, b3);
        a = BC(A, 2); DPR(c20, a, b0); DPR(c21, a, b1); DPR(c22, a, b2); DPR(c23, a, b3);
        a = BC(A, 3); DPR(c30, a, b0); DPR(c31, a, b1); DPR(c32, a, b2); DPR(c33, a, b3);
        a = BC(A, 4); DPR(c40, a, b0); DPR(c41, a, b1); DPR(c42, a, b2); DPR(c43, a, b3);
        a = BC(A, 5); DPR(c50, a, b0); DPR(c51, a, b1); DPR(c52, a, b2); DPR(c53, a, b3);
    }
#define ST(r, v0, v1, v2, v3)                                                                                    \
    _mm512_store_si512((void *)(out + (r) * 64), v0), _mm512_store_si512((void *)(out + (r) * 64 + 16), v1),     \
        _mm512_store_si512((void *)(out + (r) * 64 + 32), v2), _mm512_store_si512((void *)(out + (r) * 64 + 48), v3)
    ST(0, c00, c01, c02, c03); ST(1, c10, c11, c12, c13); ST(2, c20, c21, c22, c23);
    ST(3, c30, c31, c32, c33); ST(4, c40, c41, c42, c43); ST(5, c50, c51, c52, c53);
#undef ST
}
#undef BC
#undef ACC

typedef struct {
    const uint8_t *q8;
    const int32_t *rq;  /* [S] (128 - zk) * sum_c q8[i][c] */
    const int32_t *Kp;  /* [d/4][sk] */
    const int32_t *ck;  /* [sk] d zq zk - zq * sum_c k8[j][c] */
    const int32_t *Vp;  /* [ne4/4][dv] */
    const int32_t *cv;  /* [dv] ne zp zv - zp * sum_j v8[j][c] */
    float *sc;          /* [MR][sk] */
    uint8_t *p8;        /* [MR][sk] */
    int32_t *tile;      /* [12][64] */
    int64_t d, sk, dv, ne;
    const float *key_bias;
    float c2, spv, p_scale; /* c2 = q_scale * k_scale * scale * log2(e) */
    int32_t p_zp, cp; /* cp = 128 - zv */
    const float *rb;  /* per-row bias (hf_attention_q8_head_rb_fn): row i adds rb[i * rb_step + j]; NULL = none */
    int64_t rb_step;
} q8_ctx;

/* Scores of rows i0 .. i0+mr into sc, in base-2 units: y = fma(float(exact int32), sqk * scale * log2(e),
 * max(bias * log2(e), -1e30)) for keys [0, round_up(ne, 32)), so that the softmax's exp is a bare 2^(y - max) (the
 * reference's expf(s - max) up to a few ulp of the argument). A masked key's -inf bias becomes -1e30: every y is
 * finite (hf_exp2_512xn needs that), such a key still gets exactly 0 (2^(-1e30 - max)), and a row with every key
 * masked is all -1e30, so every key gets 2^0 = 1: the reference's uniform weights. The max of each row over keys
 * [0, ne) goes to rmax (the softmax's first pass, done while the scores are in registers). */
static TGT void scores_rows(int mr, const q8_ctx *c, int64_t i0, float *rmax) {
    const __m512 vc = _mm512_set1_ps(c->c2), l2e = _mm512_set1_ps(HF_LOG2E), lo = _mm512_set1_ps(-1e30f);
    __m512 vm[MR];
    for (int r = 0; r < mr; r++) vm[r] = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < c->ne; j += 32) {
        qk12x32(c->d / 4, c->q8 + i0 * c->d, c->d, c->Kp + j, c->sk, c->tile);
        const __m512i k0 = _mm512_loadu_si512((const void *)(c->ck + j));
        const __m512i k1 = _mm512_loadu_si512((const void *)(c->ck + j + 16));
        const __mmask16 m0 = hf_tail16(c->ne - j), m1 = hf_tail16(c->ne - j - 16);
        __m512 b0 = _mm512_setzero_ps(), b1 = b0, kb0 = b0, kb1 = b0;
        if (c->key_bias) {
            kb0 = _mm512_maskz_loadu_ps(m0, c->key_bias + j), kb1 = _mm512_maskz_loadu_ps(m1, c->key_bias + j + 16);
            b0 = _mm512_max_ps(_mm512_mul_ps(kb0, l2e), lo);
            b1 = _mm512_max_ps(_mm512_mul_ps(kb1, l2e), lo);
        }
        for (int r = 0; r < mr; r++) {
            if (c->rb) { /* the row's bias joins the key bias: max((rb + key_bias) * log2(e), -1e30) */
                const float *rr = c->rb + (i0 + r) * c->rb_step + j;
                b0 = _mm512_max_ps(_mm512_mul_ps(_mm512_add_ps(_mm512_maskz_loadu_ps(m0, rr), kb0), l2e), lo);
                b1 = _mm512_max_ps(_mm512_mul_ps(_mm512_add_ps(_mm512_maskz_loadu_ps(m1, rr + 16), kb1), l2e), lo);
            }
            const __m512i ri = _mm512_set1_epi32(c->rq[i0 + r]);
            const int32_t *t = c->tile + r * 32;
            float *row = c->sc + r * c->sk + j;
            const __m512 y0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(
                                  _mm512_add_epi32(_mm512_load_si512((const void *)t), ri), k0)), vc, b0);
            const __m512 y1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(
                                  _mm512_add_epi32(_mm512_load_si512((const void *)(t + 16)), ri), k1)), vc, b1);
            _mm512_storeu_ps(row, y0);
            _mm512_storeu_ps(row + 16, y1);
            vm[r] = _mm512_mask_max_ps(_mm512_mask_max_ps(vm[r], m0, vm[r], y0), m1, vm[r], y1);
        }
    }
    for (int r = 0; r < mr; r++) rmax[r] = _mm512_reduce_max_ps(vm[r]);
}

/* ctx rows r0 .. r0+mr (mr <= 6) of the block (query i0 + r): float(exact int32) * spv, or with oq its uint8
 * Q(. * mul) (ctx and oq->out point at the block's first row). */
static TGT void ctx_rows(int mr, const q8_ctx *c, int r0, const int32_t *psum, float *ctx, int64_t ldo,
                         const hf_ctx_quant *oq, uint8_t *out) {
    const int64_t n4 = (c->ne + 3) / 4;
    const __m512 vpv = _mm512_set1_ps(c->spv);
    for (int64_t c0 = 0; c0 < c->d; c0 += 64) {
        pv6x64(n4, c->p8 + r0 * c->sk, c->sk, c->Vp + c0, c->dv, c->tile);
        const int nb = c->d - c0 >= 64 ? 4 : (int)((c->d - c0) / 16);
        for (int r = 0; r < mr; r++) {
            const __m512i pr = _mm512_set1_epi32(c->cp * psum[r0 + r]);
            for (int b = 0; b < nb; b++) {
                const __m512i cv = _mm512_loadu_si512((const void *)(c->cv + c0 + 16 * b));
                const __m512i v = _mm512_add_epi32(_mm512_add_epi32(
                                      _mm512_load_si512((const void *)(c->tile + r * 64 + 16 * b)), pr), cv);
                const __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(v), vpv);
                if (oq)
                    _mm_storeu_si128((__m128i *)(out + (r0 + r) * oq->ldo + c0 + 16 * b),
                                     hf_quant16(oq->mul ? _mm512_mul_ps(y, _mm512_loadu_ps(oq->mul + c0 + 16 * b)) : y,
                                                oq->scale, oq->zp));
                else
                    _mm512_storeu_ps(ctx + (r0 + r) * ldo + c0 + 16 * b, y);
            }
        }
    }
}

/* p8 = rint(e * w) + zp over keys [0, ne), w = (1/sum) / p_scale (hf_attention_q8_head_ref's rounding: one multiply,
 * no division), zero bytes up to the next multiple of 16 (v's padding keys are zero too); returns sum_j p8.
 * 0 <= e <= 1 (exp(s - max)), so e * w is never negative and the narrowing's unsigned saturation is the only clamp:
 * a product past the int32 range converts to 0x80000000, which + zp is still above 255 as unsigned, as is an
 * in-range rint + zp that wraps past 2^31 - 1; both saturate to 255, the reference's clamp. The sum is taken from the
 * stored bytes (vpsadbw): 6 operations per 16 probabilities instead of 10. */
INL int32_t quant_probs(const float *e, float w, int64_t ne, int32_t pz, uint8_t *p8) {
    const __m512 vw = _mm512_set1_ps(w);
    const __m512i z = _mm512_set1_epi32(pz);
    int64_t j = 0;
    for (; j + 16 <= ne; j += 16) {
        const __m512 t = _mm512_mul_ps(_mm512_loadu_ps(e + j), vw);
        const __m512i q = _mm512_add_epi32(_mm512_cvt_roundps_epi32(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), z);
        _mm_storeu_si128((__m128i *)(p8 + j), _mm512_cvtusepi32_epi8(q));
    }
    if (j < ne) {
        const __mmask16 k = hf_tail16(ne - j);
        const __m512 t = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, e + j), vw);
        const __m512i q = _mm512_maskz_add_epi32(k, _mm512_cvt_roundps_epi32(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), z);
        _mm_storeu_si128((__m128i *)(p8 + j), _mm512_cvtusepi32_epi8(q)); /* lanes past ne: 0 */
    }
    const int64_t n16 = (ne + 15) & ~(int64_t)15;
    __m512i sum = _mm512_setzero_si512();
    for (j = 0; j < n16; j += 64) {
        const __mmask64 m = n16 - j >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (n16 - j)) - 1);
        sum = _mm512_add_epi64(sum, _mm512_sad_epu8(_mm512_maskz_loadu_epi8(m, p8 + j), _mm512_setzero_si512()));
    }
    return (int32_t)_mm512_reduce_add_epi64(sum);
}

/* One row of n (multiple of 16) uint8 copied to dst (xor `flip`: 0x80 stores u8 - 128 as s8); returns its sum. */
INL int32_t copy_row(const uint8_t *x, int64_t n, uint8_t flip, uint8_t *dst) {
    __m512i sum = _mm512_setzero_si512();
    const __m128i fx = _mm_set1_epi8((char)flip);
    for (int64_t c = 0; c < n; c += 16) {
        const __m128i b = _mm_loadu_si128((const __m128i *)(x + c));
        sum = _mm512_add_epi32(sum, _mm512_cvtepu8_epi32(b));
        _mm_storeu_si128((__m128i *)(dst + c), _mm_xor_si128(b, fx));
    }
    return _mm512_reduce_add_epi32(sum);
}

/* scores, softmax + quantized probabilities, then context, for the mr (<= 12) queries from i0 */
static TGT void block(int mr, const q8_ctx *c, int64_t i0, float *ctx, int64_t ldo, const hf_ctx_quant *oq) {
    int32_t psum[MR];
    float rmax[MR];
    float sums[16] __attribute__((aligned(64)));
    scores_rows(mr, c, i0, rmax);
    for (int r = 0; r < 16; r++) sums[r] = r < mr ? hf_exp_row16(c->sc + r * c->sk, c->ne, rmax[r], 1) : 1.0f;
    /* the rows' (1 / sum) / p_scale in one pair of vector divisions (per row they were a serial chain) */
    const __m512 vw = _mm512_div_ps(_mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_load_ps(sums)), _mm512_set1_ps(c->p_scale));
    _mm512_store_ps(sums, vw);
    for (int r = 0; r < mr; r++) psum[r] = quant_probs(c->sc + r * c->sk, sums[r], c->ne, c->p_zp, c->p8 + r * c->sk);
    float *cb = oq ? NULL : ctx + i0 * ldo;
    uint8_t *ob = oq ? oq->out + i0 * oq->ldo : NULL;
    ctx_rows(mr < MRV ? mr : MRV, c, 0, psum, cb, ldo, oq, ob);
    if (mr > MRV) ctx_rows(mr - MRV, c, MRV, psum, cb, ldo, oq, ob);
}

static TGT void q8_head(int64_t S, int64_t d, const uint8_t *q, const uint8_t *k, const uint8_t *v, int64_t ld,
                        const float *key_bias, const float *rb, int64_t rb_step, float scale, const hf_attn_quant *aq,
                        float *ctx, int64_t ldo, const hf_ctx_quant *oq, void *scratch) {
    if (d % 16) {
        if (rb) hf_attention_q8_head_rb_ref(S, d, q, k, v, ld, key_bias, rb, rb_step, scale, aq, ctx, ldo, oq, scratch);
        else hf_attention_q8_head_ref(S, d, q, k, v, ld, key_bias, scale, aq, ctx, ldo, oq, scratch);
        return;
    }
    /* keys padded to 32 and channels to 64 (zeros), so the micro-kernels always run full width; q rows padded
     * by 12 so a tail block reads defined bytes */
    const int64_t sk = (S + 31) & ~(int64_t)31, dv = (d + 63) & ~(int64_t)63, d4 = d / 4;
    const int64_t ne = hf_attended_keys(S, key_bias);
    char *p = hf_align64((char *)scratch);
    uint8_t *q8 = (uint8_t *)p;            p = hf_align64(p + (S + MR) * d);
    int32_t *rq = (int32_t *)p;            p = hf_align64(p + 4 * S);
    int32_t *Kp = (int32_t *)p;            p = hf_align64(p + 4 * d4 * sk);
    int32_t *ck = (int32_t *)p;            p = hf_align64(p + 4 * sk);
    int32_t *Vp = (int32_t *)p;            p = hf_align64(p + 4 * (sk / 4) * dv);
    int32_t *cv = (int32_t *)p;            p = hf_align64(p + 4 * dv);
    float *sc = (float *)p;                p = hf_align64(p + 4 * MR * sk);
    uint8_t *p8 = (uint8_t *)p;            p = hf_align64(p + MR * sk);
    int32_t *tile = (int32_t *)p;          p = hf_align64(p + 4 * MR * 64);
    uint8_t *tmp = (uint8_t *)p;           /* 16 rows of dv bytes (K), then 4 rows of d bytes (V) */

    /* q rows; K as Kp[c4][j] (s8): 16 keys at a time copied (xor 0x80) into rows of dv bytes (zero padded), then each
     * 64-channel chunk transposed as 16 x 16 dwords; keys from ne up to sk are zero */
    for (int64_t i = 0; i < S; i++)
        rq[i] = (128 - aq->k_zp) * copy_row(q + i * ld, d, 0, q8 + i * d);
    memset(q8 + S * d, 0, (size_t)(MR * d));
    const int32_t dzz = (int32_t)d * aq->q_zp * aq->k_zp;
    memset(tmp, 0, (size_t)(16 * dv));
    for (int64_t j0 = 0; j0 < sk; j0 += 16) {
        for (int jj = 0; jj < 16; jj++) {
            const int64_t j = j0 + jj;
            if (j < ne) ck[j] = dzz - aq->q_zp * copy_row(k + j * ld, d, 0x80, tmp + jj * dv);
            else ck[j] = 0, memset(tmp + jj * dv, 0, (size_t)d);
        }
        for (int64_t c0 = 0; c0 < d; c0 += 64) {
            __m512i r[16];
            for (int jj = 0; jj < 16; jj++) r[jj] = _mm512_loadu_si512((const void *)(tmp + jj * dv + c0));
            hf_transpose16_epi32(r);
            const int64_t nt = (d - c0) / 4 < 16 ? (d - c0) / 4 : 16;
            for (int64_t t = 0; t < nt; t++) _mm512_storeu_si512((void *)(Kp + (c0 / 4 + t) * sk + j0), r[t]);
        }
    }
    /* V as Vp[j4][c]: 4 rows interleaved by bytes (unpacks within 128-bit lanes, then a 4x4 lane transpose
     * puts the channels back in order); padding keys are zero bytes and stay out of the sums */
    const int64_t n4 = (ne + 3) / 4;
    for (int64_t c0 = 0; c0 < dv; c0 += 16) _mm512_storeu_si512((void *)(cv + c0), _mm512_setzero_si512());
    for (int64_t j4 = 0; j4 < n4; j4++) {
        for (int t = 0; t < 4; t++) {
            const int64_t j = 4 * j4 + t;
            uint8_t *row = tmp + t * d;
            if (j >= ne) {
                memset(row, 0, (size_t)d);
                continue;
            }
            for (int64_t c0 = 0; c0 < d; c0 += 16) {
                const __m128i b = _mm_loadu_si128((const __m128i *)(v + j * ld + c0));
                _mm512_storeu_si512((void *)(cv + c0), _mm512_add_epi32(_mm512_loadu_si512((const void *)(cv + c0)),
                                                                        _mm512_cvtepu8_epi32(b)));
                _mm_storeu_si128((__m128i *)(row + c0), _mm_xor_si128(b, _mm_set1_epi8((char)0x80)));
            }
        }
        for (int64_t c0 = 0; c0 < d; c0 += 64) {
            const int nb = d - c0 >= 64 ? 4 : (int)((d - c0) / 16);
            const __mmask64 m = nb == 4 ? ~(__mmask64)0 : (((__mmask64)1 << (16 * nb)) - 1);
            const __m512i r0 = _mm512_maskz_loadu_epi8(m, tmp + c0), r1 = _mm512_maskz_loadu_epi8(m, tmp + d + c0);
            const __m512i r2 = _mm512_maskz_loadu_epi8(m, tmp + 2 * d + c0), r3 = _mm512_maskz_loadu_epi8(m, tmp + 3 * d + c0);
            const __m512i a0 = _mm512_unpacklo_epi8(r0, r1), a1 = _mm512_unpackhi_epi8(r0, r1);
            const __m512i b0 = _mm512_unpacklo_epi8(r2, r3), b1 = _mm512_unpackhi_epi8(r2, r3);
            /* x_i, lane l: the dwords of channels 16 l + 4 i .. 16 l + 4 i + 3 */
            const __m512i x0 = _mm512_unpacklo_epi16(a0, b0), x1 = _mm512_unpackhi_epi16(a0, b0);
            const __m512i x2 = _mm512_unpacklo_epi16(a1, b1), x3 = _mm512_unpackhi_epi16(a1, b1);
            const __m512i t0 = _mm512_shuffle_i32x4(x0, x1, 0x44), t1 = _mm512_shuffle_i32x4(x2, x3, 0x44);
            const __m512i t2 = _mm512_shuffle_i32x4(x0, x1, 0xEE), t3 = _mm512_shuffle_i32x4(x2, x3, 0xEE);
            const __m512i o[4] = {_mm512_shuffle_i32x4(t0, t1, 0x88), _mm512_shuffle_i32x4(t0, t1, 0xDD),
                                  _mm512_shuffle_i32x4(t2, t3, 0x88), _mm512_shuffle_i32x4(t2, t3, 0xDD)};
            for (int b = 0; b < 4; b++) _mm512_storeu_si512((void *)(Vp + j4 * dv + c0 + 16 * b), o[b]); /* pad: 0 */
        }
    }
    const int32_t nzz = (int32_t)ne * aq->p_zp * aq->v_zp;
    for (int64_t c0 = 0; c0 < d; c0 += 16)
        _mm512_storeu_si512((void *)(cv + c0), _mm512_sub_epi32(_mm512_set1_epi32(nzz),
                            _mm512_mullo_epi32(_mm512_set1_epi32(aq->p_zp), _mm512_loadu_si512((const void *)(cv + c0)))));

    const q8_ctx c = {q8, rq, Kp, ck, Vp, cv, sc, p8, tile, d, sk, dv, ne, key_bias,
                      aq->q_scale * aq->k_scale * scale * HF_LOG2E, aq->p_scale * aq->v_scale, aq->p_scale,
                      aq->p_zp, 128 - aq->v_zp, rb, rb_step};
    for (int64_t i0 = 0; i0 < S; i0 += MR) block(S - i0 < MR ? (int)(S - i0) : MR, &c, i0, ctx, ldo, oq);
}

TGT void hf_attention_q8_head_avx512vnni(int64_t S, int64_t d, const uint8_t *q, const uint8_t *k, const uint8_t *v,
                                         int64_t ld, const float *key_bias, float scale, const hf_attn_quant *aq,
                                         float *ctx, int64_t ldo, const hf_ctx_quant *oq, void *scratch) {
    q8_head(S, d, q, k, v, ld, key_bias, NULL, 0, scale, aq, ctx, ldo, oq, scratch);
}

/* the same with a per-row bias (hf_attention_q8_head_rb_fn) */
TGT void hf_attention_q8_head_rb_avx512vnni(int64_t S, int64_t d, const uint8_t *q, const uint8_t *k,
                                            const uint8_t *v, int64_t ld, const float *key_bias, const float *rb,
                                            int64_t rb_step, float scale, const hf_attn_quant *aq, float *ctx,
                                            int64_t ldo, const hf_ctx_quant *oq, void *scratch) {
    q8_head(S, d, q, k, v, ld, key_bias, rb, rb_step, scale, aq, ctx, ldo, oq, scratch);
}
