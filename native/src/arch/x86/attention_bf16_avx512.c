/* bf16 attention for one (sequence, head) on CPUs with AVX512_BF16: both products on vdpbf16ps (two bf16 products
 * per fp32 lane per instruction, twice the fp32 FMA's work), the softmax in fp32. The structure of the fp32 AVX-512
 * kernel (attention_avx512.c): one register-blocked micro-kernel C[MR rows][32 cols] += A B, A a broadcast bf16 pair,
 * B two 16-pair loads per step, runs
 *   scores = q k^T : A = q rows as bf16 pairs [S][d/2], B = K^T as pairs of head channels [d/2][sp] (packed per head);
 *   ctx    = p v   : A = the probabilities as bf16 pairs of keys, B = v as pairs of keys [ne/2][d] (packed per head).
 * Scores, max, exp (hf_exp512xn) and the sum are fp32; the probabilities are rounded to bf16 for p v and normalised
 * by the sum of the rounded values, taken lane by lane in key order, then lane 0..15. ref/attention_bf16_ref.c is
 * the same arithmetic in scalar code: the two agree bit for bit. Requires d % 16 == 0 (dispatch.c: other head sizes
 * run the fp32 kernel). */
#include <math.h>
#include <string.h>

#include "x86.h"
#include "vecmath_avx512.h"
#include "ref/bf16_scalar.h"

#define MR 12
#define FEAT "avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma"
#define TGT __attribute__((target(FEAT)))
#define INL static inline __attribute__((target(FEAT), always_inline))

static inline uint32_t pair(float lo, float hi) {
    return (uint32_t)hf_bf16_from_f32(lo) | (uint32_t)hf_bf16_from_f32(hi) << 16;
}

/* acc[r][0..nb) = sum over pairs k of A[r][k] . B[k][16*b .. 16*b+16) (vdpbf16ps), r < mr, nb 1 or 2 */
INL void mk(const int mr, const int nb, int64_t K, const uint32_t *A, int64_t lda, const uint32_t *B, int64_t ldb,
            __m512 acc[MR][2]) {
    for (int r = 0; r < mr; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(B + k * ldb);
        const __m512bh b1 = nb > 1 ? (__m512bh)_mm512_loadu_si512(B + k * ldb + 16) : b0;
        for (int r = 0; r < mr; r++) {
            const __m512bh a = (__m512bh)_mm512_set1_epi32((int)A[r * lda + k]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], a, b0);
            if (nb > 1) acc[r][1] = _mm512_dpbf16_ps(acc[r][1], a, b1);
        }
    }
}

/* 32 floats -> 16 bf16 pairs (element 2i low, 2i + 1 high) */
INL __m512i pairs32(const float *x) {
    return (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + 16), _mm512_loadu_ps(x));
}

/* 16 floats -> 8 bf16 pairs */
INL __m256i pairs16(const float *x) { return (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x)); }

/* kt[t][j] = pair(k[j][2t], k[j][2t+1]) for keys j < ne, zero for ne <= j < round_up(ne, 16) */
INL void pack_keys(int64_t ne, int64_t d, const float *k, int64_t ld, uint32_t *kt, int64_t sp) {
    const int64_t dp = d / 2;
    int64_t j = 0;
    for (; j + 16 <= ne; j += 16) {
        int64_t t = 0;
        for (; t + 16 <= dp; t += 16) {
            __m512i r[16];
            for (int i = 0; i < 16; i++) r[i] = pairs32(k + (j + i) * ld + 2 * t);
            hf_transpose16_epi32(r);
            for (int i = 0; i < 16; i++) _mm512_storeu_si512(kt + (t + i) * sp + j, r[i]);
        }
        for (; t < dp; t++)
            for (int i = 0; i < 16; i++) kt[t * sp + j + i] = pair(k[(j + i) * ld + 2 * t], k[(j + i) * ld + 2 * t + 1]);
    }
    for (int64_t t = 0; t < dp; t++) {
        for (int64_t jj = j; jj < ne; jj++) kt[t * sp + jj] = pair(k[jj * ld + 2 * t], k[jj * ld + 2 * t + 1]);
        for (int64_t jj = ne; jj < ((ne + 15) & ~(int64_t)15); jj++) kt[t * sp + jj] = 0;
    }
}

/* qb[i][t] = pair(q[i][2t], q[i][2t+1]) */
INL void pack_rows(int64_t S, int64_t d, const float *q, int64_t ld, uint32_t *qb) {
    const int64_t dp = d / 2;
    for (int64_t i = 0; i < S; i++) {
        int64_t c = 0;
        for (; c + 32 <= d; c += 32) _mm512_storeu_si512(qb + i * dp + c / 2, pairs32(q + i * ld + c));
        if (c < d) _mm256_storeu_si256((__m256i *)(qb + i * dp + c / 2), pairs16(q + i * ld + c));
    }
}

/* vp[t][c] = pair(v[2t][c], v[2t+1][c]) for t < (ne + 1) / 2, key ne (odd ne) as 0 */
INL void pack_values(int64_t ne, int64_t d, const float *v, int64_t ld, uint32_t *vp) {
    const __m512i ilv = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                         21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (int64_t t = 0; 2 * t < ne; t++) {
        const float *v0 = v + 2 * t * ld, *v1 = v0 + ld;
        const int two = 2 * t + 1 < ne;
        for (int64_t c = 0; c < d; c += 16) {
            const __m512 lo = _mm512_loadu_ps(v0 + c), hi = two ? _mm512_loadu_ps(v1 + c) : _mm512_setzero_ps();
            const __m512i x = (__m512i)_mm512_cvtne2ps_pbh(hi, lo); /* words 0..15: lo, 16..31: hi */
            _mm512_storeu_si512(vp + t * d + c, _mm512_permutexvar_epi16(ilv, x));
        }
    }
}

/* sc[r][j] = (q_r . k_j) * scale [+ rb[r * rb_step + j]] + bias[j] for j < round_up(ne, 16) (kt, key_bias and rb
 * from the block's first key) */
INL void scores_rows(const int mr, int64_t dp, const uint32_t *qb, const uint32_t *kt, int64_t sp, int64_t ne,
                     const float *key_bias, const float *rb, int64_t rb_step, float scale, float *sc, int64_t scs) {
    const __m512 vs = _mm512_set1_ps(scale);
    for (int64_t j = 0; j < ne; j += 32) {
        __m512 acc[MR][2];
        const int two = ne - j > 16;
        if (two) mk(mr, 2, dp, qb, dp, kt + j, sp, acc);
        else mk(mr, 1, dp, qb, dp, kt + j, sp, acc);
        const __mmask16 m0 = hf_tail16(ne - j), m1 = two ? hf_tail16(ne - j - 16) : 0;
        __m512 b0 = _mm512_setzero_ps(), b1 = b0;
        if (key_bias) {
            b0 = _mm512_maskz_loadu_ps(m0, key_bias + j);
            if (two) b1 = _mm512_maskz_loadu_ps(m1, key_bias + j + 16);
        }
        for (int r = 0; r < mr; r++) {
            __m512 s0 = _mm512_mul_ps(acc[r][0], vs), s1 = _mm512_mul_ps(acc[r][1], vs);
            if (rb) { /* (s * scale + rb) + key_bias, as the fp32 kernels */
                s0 = _mm512_add_ps(s0, _mm512_maskz_loadu_ps(m0, rb + r * rb_step + j));
                if (two) s1 = _mm512_add_ps(s1, _mm512_maskz_loadu_ps(m1, rb + r * rb_step + j + 16));
            }
            _mm512_storeu_ps(sc + r * scs + j, _mm512_add_ps(s0, b0));
            if (two) _mm512_storeu_ps(sc + r * scs + j + 16, _mm512_add_ps(s1, b1));
        }
    }
}

/* one score row -> bf16 probabilities pb[0, round_up(ne, 16)) (0 past ne); returns 1 / (sum of the rounded ones) */
INL float softmax_bf16(const float *s, int64_t ne, uint16_t *pb) {
    __m512 vm = _mm512_set1_ps(-INFINITY), vsum = _mm512_setzero_ps();
    for (int64_t j = 0; j < ne; j += 16)
        vm = _mm512_max_ps(vm, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), hf_tail16(ne - j), s + j));
    const float mx = _mm512_reduce_max_ps(vm);
    const __m512 vmx = _mm512_set1_ps(mx);
    int64_t j = 0;
    if (mx != -INFINITY) {
        for (; j + 64 <= ne; j += 64) { /* 4 exps in lockstep (hf_exp_row16) */
            __m512 e[4];
            for (int i = 0; i < 4; i++) e[i] = _mm512_sub_ps(_mm512_loadu_ps(s + j + 16 * i), vmx);
            hf_exp512xn(e, 4);
            for (int i = 0; i < 4; i++) {
                const __m256i b = (__m256i)_mm512_cvtneps_pbh(e[i]);
                _mm256_storeu_si256((__m256i *)(pb + j + 16 * i), b);
                vsum = _mm512_add_ps(vsum, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16)));
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
        const __m256i b = (__m256i)_mm512_cvtneps_pbh(e);
        _mm256_storeu_si256((__m256i *)(pb + j), b);
        vsum = _mm512_add_ps(vsum, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16)));
    }
    float lanes[16], sum = 0.f;
    _mm512_storeu_ps(lanes, vsum);
    for (int l = 0; l < 16; l++) sum += lanes[l]; /* in lane order: the reference's */
    return 1.0f / sum;
}

/* ctx rows = (p v) * inv for mr rows of pb (pairs, stride scs / 2), kp key pairs */
INL void pv_rows(const int mr, int64_t d, const uint32_t *pb, int64_t scs, int64_t kp, const uint32_t *vp,
                 const float *inv, float *ctx, int64_t ldo) {
    int64_t c = 0;
    for (; c + 32 <= d; c += 32) {
        __m512 acc[MR][2];
        mk(mr, 2, kp, pb, scs / 2, vp + c, d, acc);
        for (int r = 0; r < mr; r++) {
            const __m512 s = _mm512_set1_ps(inv[r]);
            _mm512_storeu_ps(ctx + r * ldo + c, _mm512_mul_ps(acc[r][0], s));
            _mm512_storeu_ps(ctx + r * ldo + c + 16, _mm512_mul_ps(acc[r][1], s));
        }
    }
    if (c < d) {
        __m512 acc[MR][2];
        mk(mr, 1, kp, pb, scs / 2, vp + c, d, acc);
        for (int r = 0; r < mr; r++) _mm512_storeu_ps(ctx + r * ldo + c, _mm512_mul_ps(acc[r][0], _mm512_set1_ps(inv[r])));
    }
}

/* rows i0 .. i0 + mr - 1: the keys [lo, lo + n) they reach (lo even: whole key pairs for p v), each row's softmax
 * over its own keys [a, a + nr) of them (the others probability 0), then p v over the block's key pairs */
INL void rows_block(const int mr, int64_t S, int64_t ne, int64_t i0, int64_t window, int64_t d, const uint32_t *qb,
                    const uint32_t *kt, int64_t sp, const uint32_t *vp, const float *key_bias, const float *rb,
                    int64_t rb_step, float scale, float *sc, uint32_t *pb, int64_t scs, float *ctx, int64_t ldo) {
    const int64_t dp = d / 2;
    int64_t lo = 0, hi = ne - 1;
    if (window >= 0) {
        lo = (i0 - window > 0 ? i0 - window : 0) & ~(int64_t)1;
        hi = i0 + mr - 1 + window < S - 1 ? i0 + mr - 1 + window : S - 1;
    }
    const int64_t n = hi - lo + 1, kp = (n + 1) / 2;
    float inv[MR];
    scores_rows(mr, dp, qb + i0 * dp, kt + lo, sp, n, key_bias ? key_bias + lo : NULL,
                rb ? rb + i0 * rb_step + lo : NULL, rb_step, scale, sc, scs);
    for (int r = 0; r < mr; r++) {
        uint16_t *pr = (uint16_t *)(pb + r * (scs / 2));
        int64_t a = 0, nr = n;
        if (window >= 0) {
            const int64_t i = i0 + r, wl = i - window > 0 ? i - window : 0;
            a = wl - lo, nr = (i + window < S - 1 ? i + window : S - 1) - wl + 1;
        }
        inv[r] = softmax_bf16(sc + r * scs + a, nr, pr + a); /* writes pr[a, a + round_up(nr, 16)) */
        for (int64_t j = 0; j < a; j++) pr[j] = 0;
        for (int64_t j = a + nr; j < 2 * kp; j++) pr[j] = 0;
    }
    pv_rows(mr, d, pb, scs, kp, vp + (lo / 2) * d, inv, ctx + i0 * ldo, ldo);
}

#define ROWS(MRV) rows_block(MRV, S, ne, i0, window, d, qb, kt, sp, vp, key_bias, rb, rb_step, scale, sc, pb, scs, \
                             ctx, ldo)

/* hf_attention_bf16x_fn: window < 0 all keys (up to the last unmasked one), else |i - j| <= window (O(S window)) */
TGT void hf_attention_bf16x_avx512(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                                   const float *key_bias, const float *rb, int64_t rb_step, int64_t window,
                                   float scale, float *ctx, int64_t ldo, float *scratch) {
    /* the layout of hf_attention_bf16x_scratch_floats */
    const int64_t sp = ((S + 31) & ~(int64_t)31) + (window >= 0 ? 32 : 0), dp = d / 2;
    const int64_t nmax = window >= 0 && 2 * window + 14 < S ? 2 * window + 14 : S;
    const int64_t scs = window >= 0 ? ((nmax + 31) & ~(int64_t)31) + 32 : sp;
    uint32_t *kt = (uint32_t *)scratch;       /* [dp][sp] */
    uint32_t *qb = kt + dp * sp;              /* [S][dp] */
    uint32_t *vp = qb + S * dp;               /* [sp / 2][d] */
    float *sc = (float *)(vp + (sp / 2) * d); /* [MR][scs] */
    uint32_t *pb = (uint32_t *)(sc + MR * scs); /* [MR][scs / 2] */
    const int64_t ne = window >= 0 ? S : hf_attended_keys(S, key_bias);
    pack_keys(ne, d, k, ld, kt, sp);
    if (window >= 0) /* a window block's last 32-key load may reach past S: zero pairs there */
        for (int64_t t = 0; t < dp; t++)
            memset(kt + t * sp + ((ne + 15) & ~(int64_t)15), 0, (size_t)(sp - ((ne + 15) & ~(int64_t)15)) * 4);
    pack_rows(S, d, q, ld, qb);
    pack_values(ne, d, v, ld, vp);
    int64_t i0 = 0;
    for (; i0 + MR <= S; i0 += MR) ROWS(MR);
    HF_ROW_TAIL_12(S - i0, ROWS);
}

TGT void hf_attention_head_bf16_avx512(int64_t S, int64_t d, const float *q, const float *k, const float *v,
                                       int64_t ld, const float *key_bias, float scale, float *ctx, int64_t ldo,
                                       float *scratch) {
    hf_attention_bf16x_avx512(S, d, q, k, v, ld, key_bias, NULL, 0, -1, scale, ctx, ldo, scratch);
}
