/* AVX2 attention for one (sequence, head): softmax(q k^T * scale + key_bias) v.
 *
 * Both products run through one register-blocked micro-kernel, C[MR rows][16 cols] += A[MR][K] B[K][16]
 * (A broadcast, B two 8-float loads per k, 12 independent accumulator chains: FMA-throughput bound,
 * not latency bound):
 *   scores = q k^T : A = q rows (stride ld), B = K^T packed once per head into scratch [d][sp] with
 *                    8x8 register transposes (zero padded to sp = round_up(S, 16));
 *   ctx    = p v   : A = the MR rows of unnormalized probabilities, B = v rows read in place.
 * The MR x S score block stays in L1 between the two products and the softmax (vector max, exp, sum).
 * Keys past the last unmasked one contribute exactly 0 (exp(-inf) = 0), so both products stop there
 * (right-padded batches skip their pad keys); a row whose keys are all masked gets uniform weights
 * over all S keys, as the reference does. Requires d % 8 == 0 (callers fall back to the reference
 * otherwise). */
#include <math.h>
#include <string.h>

#include "x86.h"
#include "vecmath_avx2.h"

#define MR 6
#define TGT __attribute__((target("avx2,fma")))
#define INL static inline __attribute__((target("avx2,fma"), always_inline))

/* acc[r][0..nb) = sum_k A[r][k] * B[k][8*b .. 8*b+8), r < mr, for nb (1 or 2) 8-float column blocks. */
INL void mk(const int mr, const int nb, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
            __m256 acc[MR][2]) {
    for (int r = 0; r < mr; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        const __m256 b0 = _mm256_loadu_ps(B + k * ldb);
        const __m256 b1 = nb > 1 ? _mm256_loadu_ps(B + k * ldb + 8) : b0;
        for (int r = 0; r < mr; r++) {
            const __m256 a = _mm256_broadcast_ss(A + r * lda + k);
            acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
            if (nb > 1) acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
        }
    }
}

/* scores sc[r][j] = (q_r . k_j) * scale + bias[j] for j < round_up(ne, 16) (entries past ne are junk). */
INL void scores_rows(const int mr, int64_t d, const float *q, int64_t ld, const float *kt, int64_t sp, int64_t ne,
                     const float *key_bias, const float *rb, int64_t rb_step, float scale, float *sc) {
    const __m256 vs = _mm256_set1_ps(scale);
    for (int64_t j = 0; j < ne; j += 16) {
        __m256 acc[MR][2];
        mk(mr, 2, d, q, ld, kt + j, sp, acc);
        __m256 b0 = _mm256_setzero_ps(), b1 = b0;
        if (key_bias) { /* bias has ne valid entries: masked loads past them */
            const int64_t left = ne - j;
            b0 = left >= 8 ? _mm256_loadu_ps(key_bias + j) : _mm256_maskload_ps(key_bias + j, hf_tailmask256((int)left));
            b1 = left >= 16 ? _mm256_loadu_ps(key_bias + j + 8)
                            : _mm256_maskload_ps(key_bias + j + 8, hf_tailmask256(left > 8 ? (int)(left - 8) : 0));
        }
        if (rb) { /* (s * scale + rb) + key_bias; rb rows have ne valid entries: masked loads past them */
            const int64_t left = ne - j;
            const __m256i m0 = hf_tailmask256(left >= 8 ? 8 : (int)left), m1 = hf_tailmask256(left >= 16 ? 8 : left > 8 ? (int)(left - 8) : 0);
            for (int r = 0; r < mr; r++) {
                const float *rr = rb + r * rb_step + j;
                const __m256 s0 = _mm256_add_ps(_mm256_mul_ps(acc[r][0], vs), _mm256_maskload_ps(rr, m0));
                const __m256 s1 = _mm256_add_ps(_mm256_mul_ps(acc[r][1], vs), _mm256_maskload_ps(rr + 8, m1));
                _mm256_storeu_ps(sc + r * sp + j, _mm256_add_ps(s0, b0));
                _mm256_storeu_ps(sc + r * sp + j + 8, _mm256_add_ps(s1, b1));
            }
            continue;
        }
        for (int r = 0; r < mr; r++) {
            _mm256_storeu_ps(sc + r * sp + j, _mm256_add_ps(_mm256_mul_ps(acc[r][0], vs), b0));
            _mm256_storeu_ps(sc + r * sp + j + 8, _mm256_add_ps(_mm256_mul_ps(acc[r][1], vs), b1));
        }
    }
}

/* ctx rows = (p v) * inv for mr rows of p (stride sp), keys [0, ne). */
INL void pv_rows(const int mr, int64_t d, const float *p, int64_t sp, int64_t ne, const float *v, int64_t ld,
                 const float *inv, float *ctx, int64_t ldo) {
    int64_t c = 0;
    for (; c + 16 <= d; c += 16) {
        __m256 acc[MR][2];
        mk(mr, 2, ne, p, sp, v + c, ld, acc);
        for (int r = 0; r < mr; r++) {
            const __m256 s = _mm256_set1_ps(inv[r]);
            _mm256_storeu_ps(ctx + r * ldo + c, _mm256_mul_ps(acc[r][0], s));
            _mm256_storeu_ps(ctx + r * ldo + c + 8, _mm256_mul_ps(acc[r][1], s));
        }
    }
    if (c < d) { /* d % 16 == 8 */
        __m256 acc[MR][2];
        mk(mr, 1, ne, p, sp, v + c, ld, acc);
        for (int r = 0; r < mr; r++) _mm256_storeu_ps(ctx + r * ldo + c, _mm256_mul_ps(acc[r][0], _mm256_set1_ps(inv[r])));
    }
}

#define ROWS(MRV)                                                                                      \
    do {                                                                                               \
        scores_rows(MRV, d, q + i0 * ld, ld, kt, sp, ne, key_bias, rb ? rb + i0 * rb_step : NULL, rb_step, scale, \
                    sc);                                                                               \
        for (int r = 0; r < MRV; r++) inv[r] = hf_softmax_row8(sc + r * sp, ne);                           \
        pv_rows(MRV, d, sc, sp, ne, v, ld, inv, ctx + i0 * ldo, ldo);                                  \
    } while (0)

INL void head_core(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                    const float *key_bias, const float *rb, int64_t rb_step, float scale, float *ctx, int64_t ldo,
                    float *scratch) {
    const int64_t sp = (S + 15) & ~(int64_t)15;
    float *kt = scratch;          /* [d][sp] */
    float *sc = scratch + d * sp; /* [MR][sp] */
    float inv[MR];
    /* keys past the last unmasked one get probability exactly 0: stop both products there */
    const int64_t ne = hf_attended_keys(S, key_bias);
    hf_transpose_keys(ne, d, k, ld, kt, sp);
    int64_t i0 = 0;
    for (; i0 + MR <= S; i0 += MR) ROWS(MR);
    HF_ROW_TAIL_6(S - i0, ROWS);
}

TGT void hf_attention_head_avx2(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                                const float *key_bias, float scale, float *ctx, int64_t ldo, float *scratch) {
    head_core(S, d, q, k, v, ld, key_bias, NULL, 0, scale, ctx, ldo, scratch);
}

/* the same with a per-row bias (hf_attention_head_rb_fn) */
TGT void hf_attention_head_rb_avx2(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                                   const float *key_bias, const float *rb, int64_t rb_step, float scale, float *ctx, int64_t ldo,
                                   float *scratch) {
    head_core(S, d, q, k, v, ld, key_bias, rb, rb_step, scale, ctx, ldo, scratch);
}
