/* Dynamic int8 attention for one (sequence, head) on AVX-512 VNNI (the engine's attention="int8-dynamic" on
 * fp32-attention layers; ref/attention_dq8_ref.c defines the arithmetic and this kernel agrees with it bit for bit:
 * every sum is exact int32 and every float operation is the reference's, in its order).
 *   quantize: q, k int8 per token, v int8 per channel (over the attended keys), scales max|x| / 127;
 *   scores  : vpdpbusd on (q8 + 128) as uint8 quads x k8 quads (K^T packed [d/4][keys]), minus 128 * sum(k8_j);
 *   softmax : fp32 (hf_exp512xn), weights e = exp(s - rowmax) rounded to int16 (x pmax), their exact int32 sum;
 *   ctx     : vpdpwssd on pairs of weights x pairs of v8 widened to int16 ([keys/2][d]), times s_v[c] / sum.
 * One register-blocked micro-kernel C[MR rows][16 nb cols] += A B, A a broadcast 32-bit group, B nb 16-lane loads
 * per step (scores: nb 2, ctx: 4). Requires d % 16 == 0 (dispatch.c). */
#include <math.h>
#include <string.h>

#include "x86.h"
#include "vecmath_avx512.h"

#define MR 6 /* query rows per block: 6 x 4 accumulators (12 rows spill them on GCC 12) */
#define FEAT "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma"
#define TGT __attribute__((target(FEAT)))
#define INL static inline __attribute__((target(FEAT), always_inline))

/* acc[r][0..nb) = sum over k of A[r][k] . B[k][16*b .. 16*b+16), nb <= 4: 4 u8 x s8 products per lane
 * (vpdpbusd) or 2 int16 x int16 products (vpdpwssd) */
#define MK(NAME, DP)                                                                                             \
    INL void NAME(const int mr, const int nb, int64_t K, const uint32_t *A, int64_t lda, const uint32_t *B,       \
                  int64_t ldb, __m512i acc[MR][4]) {                                                             \
        for (int r = 0; r < mr; r++) /* all 4: the unused ones are dead code, and no read is uninitialised */   \
            for (int b = 0; b < 4; b++) acc[r][b] = _mm512_setzero_si512();                                      \
        for (int64_t k = 0; k < K; k++) {                                                                        \
            __m512i bv[4];                                                                                       \
            for (int b = 0; b < nb; b++) bv[b] = _mm512_loadu_si512(B + k * ldb + 16 * b);                       \
            for (int r = 0; r < mr; r++) {                                                                       \
                const __m512i a = _mm512_set1_epi32((int)A[r * lda + k]);                                        \
                for (int b = 0; b < nb; b++) acc[r][b] = DP(acc[r][b], a, bv[b]);                                \
            }                                                                                                    \
        }                                                                                                        \
    }
MK(mk_u8s8, _mm512_dpbusd_epi32)
MK(mk_s16, _mm512_dpwssd_epi32)

/* 16 floats times r, rounded to nearest even, clamped to [-127, 127] -> 16 int8 */
INL __m128i q16(__m512 x, __m512 r) {
    __m512i t = _mm512_cvtps_epi32(_mm512_mul_ps(x, r));
    t = _mm512_min_epi32(_mm512_max_epi32(t, _mm512_set1_epi32(-127)), _mm512_set1_epi32(127));
    return _mm512_cvtepi32_epi8(t);
}

/* x[0, d) -> out int8, returns the scale max|x| / 127 (0 and zeros for an all-zero row): hf_dq8_quantize_ref */
INL float quant_row(const float *x, int64_t d, int8_t *out) {
    __m512 m = _mm512_setzero_ps();
    for (int64_t c = 0; c < d; c += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + c)));
    const float mx = _mm512_reduce_max_ps(m);
    if (!(mx > 0.f)) {
        memset(out, 0, (size_t)d);
        return 0.f;
    }
    const __m512 r = _mm512_set1_ps(127.f / mx);
    for (int64_t c = 0; c < d; c += 16) _mm_storeu_si128((__m128i *)(out + c), q16(_mm512_loadu_ps(x + c), r));
    return mx / 127.f;
}

/* sc[r][j] = (float)(q8_r . k8_j) * (sq[r] * sk[j]) + bias[j] for j < round_up(ne, 16) */
INL void scores_rows(const int mr, int64_t dq, const uint32_t *qb, const uint32_t *kt, int64_t sp, int64_t ne,
                     const float *key_bias, const float *sq, const float *sk, const int32_t *ks, float *sc) {
    for (int64_t j = 0; j < ne; j += 32) {
        __m512i acc[MR][4];
        const int two = ne - j > 16;
        if (two) mk_u8s8(mr, 2, dq, qb, dq, kt + j, sp, acc);
        else mk_u8s8(mr, 1, dq, qb, dq, kt + j, sp, acc);
        __m512 b0 = _mm512_setzero_ps(), b1 = b0;
        if (key_bias) {
            b0 = _mm512_maskz_loadu_ps(hf_tail16(ne - j), key_bias + j);
            if (two) b1 = _mm512_maskz_loadu_ps(hf_tail16(ne - j - 16), key_bias + j + 16);
        }
        const __m512 k0 = _mm512_loadu_ps(sk + j), k1 = _mm512_loadu_ps(sk + j + 16);
        const __m512i c0 = _mm512_loadu_si512(ks + j), c1 = _mm512_loadu_si512(ks + j + 16);
        for (int r = 0; r < mr; r++) {
            const __m512 a = _mm512_set1_ps(sq[r]);
            _mm512_storeu_ps(sc + r * sp + j, _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(
                _mm512_sub_epi32(acc[r][0], c0)), _mm512_mul_ps(a, k0)), b0));
            if (two)
                _mm512_storeu_ps(sc + r * sp + j + 16, _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(
                    _mm512_sub_epi32(acc[r][1], c1)), _mm512_mul_ps(a, k1)), b1));
        }
    }
}

/* one score row -> int16 weights pw[0, round_up(ne, 16)) (0 past ne); returns their sum */
INL int32_t softmax_i16(const float *s, int64_t ne, float pm, int16_t *pw) {
    __m512 vm = _mm512_set1_ps(-INFINITY);
    __m512i vsum = _mm512_setzero_si512();
    for (int64_t j = 0; j < ne; j += 16)
        vm = _mm512_max_ps(vm, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), hf_tail16(ne - j), s + j));
    const float mx = _mm512_reduce_max_ps(vm);
    const __m512 vmx = _mm512_set1_ps(mx), vpm = _mm512_set1_ps(pm);
    int64_t j = 0;
    if (mx != -INFINITY) {
        for (; j + 64 <= ne; j += 64) { /* 4 exps in lockstep */
            __m512 e[4];
            for (int i = 0; i < 4; i++) e[i] = _mm512_sub_ps(_mm512_loadu_ps(s + j + 16 * i), vmx);
            hf_exp512xn(e, 4);
            for (int i = 0; i < 4; i++) {
                const __m512i p = _mm512_cvtps_epi32(_mm512_mul_ps(e[i], vpm));
                _mm256_storeu_si256((__m256i *)(pw + j + 16 * i), _mm512_cvtepi32_epi16(p));
                vsum = _mm512_add_epi32(vsum, p);
            }
        }
    }
    for (; j < ne; j += 16) {
        const __mmask16 m = hf_tail16(ne - j);
        __m512 e;
        if (mx == -INFINITY) {
            e = _mm512_maskz_mov_ps(m, _mm512_set1_ps(1.f));
        } else {
            e = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + j), vmx);
            hf_exp512xn(&e, 1);
            e = _mm512_maskz_mov_ps(m, e);
        }
        const __m512i p = _mm512_cvtps_epi32(_mm512_mul_ps(e, vpm));
        _mm256_storeu_si256((__m256i *)(pw + j), _mm512_cvtepi32_epi16(p));
        vsum = _mm512_add_epi32(vsum, p);
    }
    return _mm512_reduce_add_epi32(vsum);
}

/* ctx rows = ((float)(p . v8) * sv) * inv for mr rows of pb (pairs, stride sp / 2), kp key pairs: 64 channels
 * per pass (the weights broadcast once for 4 vectors), then 16 at a time */
INL void pv_rows(const int mr, int64_t d, const uint32_t *pb, int64_t sp, int64_t kp, const uint32_t *vp,
                 const float *sv, const float *inv, float *ctx, int64_t ldo) {
    for (int64_t c = 0; c < d;) {
        __m512i acc[MR][4];
        const int nb = d - c >= 64 ? 4 : 1;
        if (nb == 4) mk_s16(mr, 4, kp, pb, sp / 2, vp + c, d, acc);
        else mk_s16(mr, 1, kp, pb, sp / 2, vp + c, d, acc);
        for (int b = 0; b < nb; b++) {
            const __m512 s0 = _mm512_loadu_ps(sv + c + 16 * b);
            for (int r = 0; r < mr; r++)
                _mm512_storeu_ps(ctx + r * ldo + c + 16 * b, _mm512_mul_ps(_mm512_mul_ps(
                    _mm512_cvtepi32_ps(acc[r][b]), s0), _mm512_set1_ps(inv[r])));
        }
        c += 16 * nb;
    }
}

#define ROWS(MRV)                                                                                                \
    do {                                                                                                         \
        scores_rows(MRV, dq, qb + i0 * dq, kt, sp, ne, key_bias, sq + i0, sk, ks, sc);                           \
        for (int r = 0; r < MRV; r++)                                                                            \
            inv[r] = 1.0f / (float)softmax_i16(sc + r * sp, ne, pm, (int16_t *)(pb + r * (sp / 2)));             \
        pv_rows(MRV, d, pb, sp, (ne + 1) / 2, vp, sv, inv, ctx + i0 * ldo, ldo);                                 \
    } while (0)

TGT void hf_attention_head_dq8_avx512vnni(int64_t S, int64_t d, const float *q, const float *k, const float *v,
                                          int64_t ld, const float *key_bias, float scale, float *ctx, int64_t ldo,
                                          float *scratch) {
    /* the layout of hf_attention_dq8_scratch_floats */
    const int64_t sp = (S + 31) & ~(int64_t)31, dq = d / 4;
    const int64_t ne = hf_attended_keys(S, key_bias), nz = (ne + 31) & ~(int64_t)31;
    int8_t *k8 = (int8_t *)scratch;                              /* [sp][d] */
    int8_t *v8 = k8 + sp * d;                                    /* [sp][d] */
    uint32_t *kt = (uint32_t *)hf_align64((char *)(v8 + sp * d)); /* [dq][sp] */
    uint32_t *qb = kt + dq * sp;                                 /* [S][dq] */
    uint32_t *vp = qb + S * dq;                                  /* [sp / 2][d] */
    float *sc = (float *)(vp + (sp / 2) * d);                    /* [MR][sp] */
    uint32_t *pb = (uint32_t *)(sc + MR * sp);                   /* [MR][sp / 2] */
    float *sq = (float *)(pb + MR * (sp / 2));                   /* [S] */
    float *sk = sq + S;                                          /* [sp] */
    int32_t *ks = (int32_t *)(sk + sp);                          /* [sp] */
    float *sv = (float *)(ks + sp);                              /* [d] */
    float inv[MR];
    const float pm = (float)hf_dq8_pmax(ne);
    /* k: int8 rows, 128 * their sums (the +128 of q's uint8), K^T quads; keys ne..nz zero */
    for (int64_t j = 0; j < nz; j++) {
        int8_t *row = k8 + j * d;
        int32_t s = 0;
        if (j < ne) {
            sk[j] = quant_row(k + j * ld, d, row);
            for (int64_t c = 0; c < d; c++) s += row[c];
        } else {
            sk[j] = 0.f;
            memset(row, 0, (size_t)d);
        }
        ks[j] = 128 * s;
        for (int64_t t = 0; t < dq; t++) {
            uint32_t w;
            memcpy(&w, row + 4 * t, 4);
            kt[t * sp + j] = w;
        }
    }
    /* q: int8 rows as uint8 (+128), their scales times `scale` */
    for (int64_t i = 0; i < S; i++) {
        int8_t *row = (int8_t *)(qb + i * dq);
        sq[i] = quant_row(q + i * ld, d, row) * scale;
        for (int64_t c = 0; c < d; c += 16)
            _mm_storeu_si128((__m128i *)(row + c),
                             _mm_xor_si128(_mm_loadu_si128((const __m128i *)(row + c)), _mm_set1_epi8((char)0x80)));
    }
    /* v: int8 per channel over the attended keys, then pairs of keys as int16 */
    for (int64_t c = 0; c < d; c += 16) {
        __m512 m = _mm512_setzero_ps();
        for (int64_t j = 0; j < ne; j++) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(v + j * ld + c)));
        const __mmask16 pos = _mm512_cmp_ps_mask(m, _mm512_setzero_ps(), _CMP_GT_OQ);
        const __m512 r = _mm512_maskz_div_ps(pos, _mm512_set1_ps(127.f), m);
        _mm512_storeu_ps(sv + c, _mm512_maskz_div_ps(pos, m, _mm512_set1_ps(127.f)));
        for (int64_t j = 0; j < ne; j++) _mm_storeu_si128((__m128i *)(v8 + j * d + c), q16(_mm512_loadu_ps(v + j * ld + c), r));
    }
    for (int64_t t = 0; 2 * t < ne; t++) {
        const int8_t *v0 = v8 + 2 * t * d, *v1 = v0 + d;
        const int two = 2 * t + 1 < ne;
        for (int64_t c = 0; c < d; c += 16) {
            const __m512i lo = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(v0 + c)));
            const __m512i hi = two ? _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(v1 + c)))
                                   : _mm512_setzero_si512();
            _mm512_storeu_si512(vp + t * d + c, _mm512_or_si512(_mm512_and_si512(lo, _mm512_set1_epi32(0xffff)),
                                                                _mm512_slli_epi32(hi, 16)));
        }
    }
    int64_t i0 = 0;
    for (; i0 + MR <= S; i0 += MR) ROWS(MR);
    HF_ROW_TAIL_6(S - i0, ROWS);
}
