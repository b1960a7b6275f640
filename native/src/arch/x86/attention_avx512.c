/* AVX-512 attention for one (sequence, head) on AVX-512 machines: the AVX2 kernel's algorithm
 * (attention_avx2.c) on 16 lanes. One register-blocked micro-kernel C[MR rows][32 cols] += A B
 * (A broadcast, B two 16-float loads per k, 16 independent accumulator chains) runs both products:
 *   scores = q k^T : B = K^T packed once per head into scratch [d][sp] (sp = round_up(S, 16));
 *   ctx    = p v   : B = v rows copied once per head into scratch [ne][d]. In place, v's rows sit heads * d floats
 *            apart (3 KB, 48 cache lines, for 12 heads of 64), so rows 4 apart share their L1 sets and a 32-column
 *            block's keys crowded into 8 of the 64 sets (12 ways each): p v ran from L2. Copied, the global
 *            kernel at S = 2048 went from 228-237 to 131-136 ms for 12 heads of 64 on an Emerald Rapids Xeon
 *            (benchmarks/attention_bf16.py kernel; HISTORY, session 17).
 * Softmax (max, exp, sum) on 16 lanes with masked tails. Keys past the last unmasked one are skipped
 * (probability exactly 0); a row whose keys are all masked gets uniform weights, as the reference.
 * Requires d % 16 == 0; other multiples of 8 go to the AVX2 kernel. */
#include <math.h>
#include <string.h>

#include "x86.h"
#include "vecmath_avx2.h"
#include "vecmath_avx512.h"

#define MR 12 /* 12 x 32 block: 24 accumulators + 2 B vectors + the broadcast fit the 32 zmm (8 rows: 15-20% slower) */
#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))
#define INL static inline __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"), always_inline))

/* acc[r][0..nb) = sum_k A[r][k] * B[k][16*b .. 16*b+16), r < mr, nb (1 or 2) 16-float column blocks. */
INL void mk(const int mr, const int nb, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
            __m512 acc[MR][2]) {
    for (int r = 0; r < mr; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        const __m512 b0 = _mm512_loadu_ps(B + k * ldb);
        const __m512 b1 = nb > 1 ? _mm512_loadu_ps(B + k * ldb + 16) : b0;
        for (int r = 0; r < mr; r++) {
            const __m512 a = _mm512_set1_ps(A[r * lda + k]);
            acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
            if (nb > 1) acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
        }
    }
}

/* scores sc[r][j] = (q_r . k_j) * scale + bias[j] for j < round_up(ne, 16) (entries past ne are junk). */
INL void scores_rows(const int mr, int64_t d, const float *q, int64_t ld, const float *kt, int64_t sp, int64_t ne,
                     const float *key_bias, const float *rb, int64_t rb_step, float scale, float *sc) {
    const __m512 vs = _mm512_set1_ps(scale);
    for (int64_t j = 0; j < ne; j += 32) {
        __m512 acc[MR][2];
        const int two = ne - j > 16;
        if (two) mk(mr, 2, d, q, ld, kt + j, sp, acc);
        else mk(mr, 1, d, q, ld, kt + j, sp, acc);
        __m512 b0 = _mm512_setzero_ps(), b1 = b0;
        if (key_bias) { /* bias has ne valid entries */
            b0 = _mm512_maskz_loadu_ps(hf_tail16(ne - j), key_bias + j);
            if (two) b1 = _mm512_maskz_loadu_ps(hf_tail16(ne - j - 16), key_bias + j + 16);
        }
        if (rb) { /* (s * scale + rb) + key_bias; rb rows have ne valid entries */
            const __mmask16 m0 = hf_tail16(ne - j), m1 = two ? hf_tail16(ne - j - 16) : 0;
            for (int r = 0; r < mr; r++) {
                const float *rr = rb + r * rb_step + j;
                const __m512 s0 = _mm512_add_ps(_mm512_mul_ps(acc[r][0], vs), _mm512_maskz_loadu_ps(m0, rr));
                _mm512_storeu_ps(sc + r * sp + j, _mm512_add_ps(s0, b0));
                if (two) {
                    const __m512 s1 = _mm512_add_ps(_mm512_mul_ps(acc[r][1], vs), _mm512_maskz_loadu_ps(m1, rr + 16));
                    _mm512_storeu_ps(sc + r * sp + j + 16, _mm512_add_ps(s1, b1));
                }
            }
            continue;
        }
        for (int r = 0; r < mr; r++) {
            _mm512_storeu_ps(sc + r * sp + j, _mm512_add_ps(_mm512_mul_ps(acc[r][0], vs), b0));
            if (two) _mm512_storeu_ps(sc + r * sp + j + 16, _mm512_add_ps(_mm512_mul_ps(acc[r][1], vs), b1));
        }
    }
}

/* ctx rows = (p v) * inv for mr rows of p (stride sp), keys [0, ne). */
INL void pv_rows(const int mr, int64_t d, const float *p, int64_t sp, int64_t ne, const float *v, int64_t ld,
                 const float *inv, float *ctx, int64_t ldo) {
    int64_t c = 0;
    for (; c + 32 <= d; c += 32) {
        __m512 acc[MR][2];
        mk(mr, 2, ne, p, sp, v + c, ld, acc);
        for (int r = 0; r < mr; r++) {
            const __m512 s = _mm512_set1_ps(inv[r]);
            _mm512_storeu_ps(ctx + r * ldo + c, _mm512_mul_ps(acc[r][0], s));
            _mm512_storeu_ps(ctx + r * ldo + c + 16, _mm512_mul_ps(acc[r][1], s));
        }
    }
    if (c < d) { /* d % 32 == 16 */
        __m512 acc[MR][2];
        mk(mr, 1, ne, p, sp, v + c, ld, acc);
        for (int r = 0; r < mr; r++) _mm512_storeu_ps(ctx + r * ldo + c, _mm512_mul_ps(acc[r][0], _mm512_set1_ps(inv[r])));
    }
}

#define ROWS(MRV)                                                                                      \
    do {                                                                                               \
        scores_rows(MRV, d, q + i0 * ld, ld, kt, sp, ne, key_bias, rb ? rb + i0 * rb_step : NULL, rb_step, scale, \
                    sc);                                                                               \
        for (int r = 0; r < MRV; r++) inv[r] = hf_softmax_row16(sc + r * sp, ne);                         \
        pv_rows(MRV, d, sc, sp, ne, vp, d, inv, ctx + i0 * ldo, ldo);                                  \
    } while (0)

INL void head_core(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                    const float *key_bias, const float *rb, int64_t rb_step, float scale, float *ctx, int64_t ldo,
                    float *scratch) {
    if (d % 16) {
        if (rb) hf_attention_head_rb_avx2(S, d, q, k, v, ld, key_bias, rb, rb_step, scale, ctx, ldo, scratch);
        else hf_attention_head_avx2(S, d, q, k, v, ld, key_bias, scale, ctx, ldo, scratch);
        return;
    }
    const int64_t sp = (S + 15) & ~(int64_t)15;
    float *kt = scratch;          /* [d][sp] */
    float *sc = scratch + d * sp; /* [MR][sp] */
    float *vp = sc + 16 * sp;     /* [ne][d] */
    float inv[MR];
    const int64_t ne = hf_attended_keys(S, key_bias);
    hf_transpose_keys(ne, d, k, ld, kt, sp);
    for (int64_t j = 0; j < ne; j++) memcpy(vp + j * d, v + j * ld, (size_t)d * sizeof(float));
    int64_t i0 = 0;
    for (; i0 + MR <= S; i0 += MR) ROWS(MR);
    HF_ROW_TAIL_12(S - i0, ROWS);
}

TGT void hf_attention_head_avx512(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                                  const float *key_bias, float scale, float *ctx, int64_t ldo, float *scratch) {
    head_core(S, d, q, k, v, ld, key_bias, NULL, 0, scale, ctx, ldo, scratch);
}

/* the same with a per-row bias (hf_attention_head_rb_fn) */
TGT void hf_attention_head_rb_avx512(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                                     const float *key_bias, const float *rb, int64_t rb_step, float scale, float *ctx, int64_t ldo,
                                     float *scratch) {
    head_core(S, d, q, k, v, ld, key_bias, rb, rb_step, scale, ctx, ldo, scratch);
}
