/* AVX-512 sliding-window attention for one (sequence, head): query i attends to keys j with |i - j| <= window
 * (hf_attention_window_fn). K is transposed once per head into scratch [d][sp]; blocks of RB query rows share the
 * union of their windows: scores 64 keys x RB rows at a time (each key vector loaded once for the RB rows), keys
 * outside a row's own window set to -inf, each row's softmax on 16 lanes (hf_softmax_row16) over its own window, and
 * p v over the union on 16-channel strips (each v row loaded once for the RB rows). O(S x window x d) flops, O(S x d + window) scratch: no S x S buffer.
 * d % 16 != 0 runs the AVX2 kernel (d % 8 == 0) or the reference. */
#include <math.h>

#include "x86.h"
#include "vecmath_avx2.h"
#include "vecmath_avx512.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))
#define RB 4 /* query rows per block: their windows' union is read once (4 x 4 accumulators + 4 key vectors) */

#define INL static inline __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"), always_inline))

/* ctx rows i0..i0+rb-1 (of RB computed) += p v over the union's n keys, NC 16-channel strips from c0; compile-time
 * RB and NC keep the RB x NC accumulators in registers */
INL void pv_block(const int NC, int rb, int64_t n, const float *p, int64_t np, const float *v, int64_t ld, int64_t c0,
                  const float *inv, float *ctx, int64_t ldo) {
    __m512 o[RB][4];
    for (int r = 0; r < RB; r++)
        for (int u = 0; u < NC; u++) o[r][u] = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; j++) {
        __m512 vv[4];
        const float *vr = v + j * ld + c0;
        for (int u = 0; u < NC; u++) vv[u] = _mm512_loadu_ps(vr + 16 * u);
        for (int r = 0; r < RB; r++) {
            const __m512 pj = _mm512_set1_ps(p[r * np + j]);
            for (int u = 0; u < NC; u++) o[r][u] = _mm512_fmadd_ps(pj, vv[u], o[r][u]);
        }
    }
    for (int r = 0; r < RB; r++)
        if (r < rb)
            for (int u = 0; u < NC; u++)
                _mm512_storeu_ps(ctx + r * ldo + c0 + 16 * u, _mm512_mul_ps(o[r][u], _mm512_set1_ps(inv[r])));
}

/* scores of RB rows against NU 16-key vectors from key lo + j0 into p (row stride np); keys outside a row's window
 * [i - window, i + window] (or past the union's n) get -inf: probability 0 */
INL void score_block(const int NU, int64_t d, const float *const qr[RB], const int64_t row[RB], const float *kb,
                     int64_t sp, int64_t lo, int64_t j0, int64_t n, int64_t window, const float *key_bias, float scale,
                     float *p, int64_t np) {
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512 acc[RB][4];
    for (int r = 0; r < RB; r++)
        for (int u = 0; u < NU; u++) acc[r][u] = _mm512_setzero_ps();
    for (int64_t c = 0; c < d; c++) {
        __m512 kv[4];
        for (int u = 0; u < NU; u++) kv[u] = _mm512_loadu_ps(kb + c * sp + 16 * u);
        for (int r = 0; r < RB; r++) {
            const __m512 a = _mm512_set1_ps(qr[r][c]);
            for (int u = 0; u < NU; u++) acc[r][u] = _mm512_fmadd_ps(a, kv[u], acc[r][u]);
        }
    }
    for (int u = 0; u < NU; u++) {
        const int64_t jj = j0 + 16 * u;
        const __m512i key = _mm512_add_epi32(_mm512_set1_epi32((int)(lo + jj)), lane);
        const __mmask16 valid = hf_tail16(n - jj);
        const __m512 kbias = key_bias ? _mm512_maskz_loadu_ps(valid, key_bias + lo + jj) : _mm512_setzero_ps();
        for (int r = 0; r < RB; r++) {
            const __mmask16 in = _mm512_cmpge_epi32_mask(key, _mm512_set1_epi32((int)(row[r] - window))) &
                                 _mm512_cmple_epi32_mask(key, _mm512_set1_epi32((int)(row[r] + window))) & valid;
            const __m512 sc = _mm512_add_ps(_mm512_mul_ps(acc[r][u], _mm512_set1_ps(scale)), kbias);
            _mm512_storeu_ps(p + r * np + jj, _mm512_mask_blend_ps(in, _mm512_set1_ps(-INFINITY), sc));
        }
    }
}

TGT void hf_attention_window_avx512(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                                    const float *key_bias, int64_t window, float scale, float *ctx, int64_t ldo,
                                    float *scratch) {
    if (d % 16) {
        hf_attention_window_avx2(S, d, q, k, v, ld, key_bias, window, scale, ctx, ldo, scratch);
        return;
    }
    /* K^T row stride: 16 floats past a multiple of 16, so the d rows of a key block do not all fall in one L1 set */
    const int64_t sp = ((S + 15) & ~(int64_t)15) + 16;
    float *kt = scratch, *p = (float *)hf_align64((char *)(scratch + d * sp + 64));
    hf_transpose_keys(S, d, k, ld, kt, sp);
    for (int64_t i0 = 0; i0 < S; i0 += RB) {
        const int rb = S - i0 < RB ? (int)(S - i0) : RB;
        /* the union of the rows' windows: keys [lo, lo + n); rows past S repeat row S - 1 (computed, not stored) */
        const int64_t lo = i0 - window > 0 ? i0 - window : 0;
        const int64_t hi = i0 + rb - 1 + window < S - 1 ? i0 + rb - 1 + window : S - 1;
        const int64_t n = hi - lo + 1, np = (n + 63) & ~(int64_t)63;
        const float *qr[RB];
        int64_t row[RB];
        for (int r = 0; r < RB; r++) row[r] = i0 + r < S ? i0 + r : S - 1, qr[r] = q + row[r] * ld;
        for (int64_t j0 = 0; j0 < n; j0 += 64) {
            /* the last block scores only the 16-key vectors that reach the union (at S = 2048, +-64: 144 keys of 132
             * instead of 192; the keys it skips were -inf, their probabilities 0) */
            switch (n - j0 >= 64 ? 4 : (int)((n - j0 + 15) / 16)) {
            case 4: score_block(4, d, qr, row, kt + lo + j0, sp, lo, j0, n, window, key_bias, scale, p, np); break;
            case 3: score_block(3, d, qr, row, kt + lo + j0, sp, lo, j0, n, window, key_bias, scale, p, np); break;
            case 2: score_block(2, d, qr, row, kt + lo + j0, sp, lo, j0, n, window, key_bias, scale, p, np); break;
            default: score_block(1, d, qr, row, kt + lo + j0, sp, lo, j0, n, window, key_bias, scale, p, np); break;
            }
        }
        float inv[RB];
        for (int r = 0; r < RB; r++) {
            /* each row's softmax over its own window only (the union's other keys are -inf, then 0) */
            const int64_t a = (row[r] - window > 0 ? row[r] - window : 0) - lo;
            const int64_t b = (row[r] + window < S - 1 ? row[r] + window : S - 1) - lo;
            float *pr = p + r * np;
            inv[r] = hf_softmax_row16(pr + a, b - a + 1);
            for (int64_t j = 0; j < a; j++) pr[j] = 0.f;
            for (int64_t j = b + 1; j < n; j++) pr[j] = 0.f;
        }
        const float *vb = v + lo * ld;
        float *cb = ctx + i0 * ldo;
        int64_t c0 = 0;
        for (; c0 + 64 <= d; c0 += 64) pv_block(4, rb, n, p, np, vb, ld, c0, inv, cb, ldo);
        switch ((d - c0) / 16) {
        case 3: pv_block(3, rb, n, p, np, vb, ld, c0, inv, cb, ldo); break;
        case 2: pv_block(2, rb, n, p, np, vb, ld, c0, inv, cb, ldo); break;
        case 1: pv_block(1, rb, n, p, np, vb, ld, c0, inv, cb, ldo); break;
        default: break;
        }
    }
}
