/* Dense u8 x s8 -> s32 GEMM with AVX2, exact. Two kernels (dense.c picks one at pack time):
 *
 * hf_dense_avx2 ("avx2-s16", any int8 weights):
 * vpmaddubsw would saturate its int16 pair sums (255*127*2 > 32767), so this path widens to int16
 * and uses vpmaddwd, whose pair sums are exact in int32: it matches the reference bit for bit.
 * Packed weight: panels of 8 output channels, [ceil(N/8)][ceil(K/2)][8][2] int16, zero padded; one
 * 32-byte load is 8 channels x 2 consecutive k. A rows are widened to u16 once per row block, so a
 * broadcast 32-bit word is the (a[k], a[k+1]) pair. Register block: 4 rows x 16 channels.
 */
#include <immintrin.h>
#include <string.h>

#include "x86.h"

#define TGT __attribute__((target("avx2,fma")))
#define MR 4
#define NP 2 /* panels of 8 per block */

static int64_t avx2_packed_size(int64_t N, int64_t K) { return ((N + 7) / 8) * ((K + 1) / 2) * 32; }

static void avx2_pack(int64_t N, int64_t K, const int8_t *W, int64_t ldw, void *dst) {
    const int64_t K2 = (K + 1) / 2, P = (N + 7) / 8;
    int16_t *d = (int16_t *)dst;
    memset(d, 0, (size_t)avx2_packed_size(N, K));
    for (int64_t p = 0; p < P; p++)
        for (int64_t j = 0; j < 8; j++) {
            int64_t n = p * 8 + j;
            if (n >= N) break;
            for (int64_t k = 0; k < K; k++) d[((p * K2 + k / 2) * 8 + j) * 2 + (k & 1)] = W[n * ldw + k];
        }
}

static inline TGT __attribute__((always_inline)) void
micro(int mr, int np, int64_t K2, const uint16_t *A16, int64_t K2pad, const int16_t *Wp, int64_t pstride,
      int32_t *C, int64_t ldc, int64_t nvalid) {
    __m256i acc[MR][NP];
    for (int r = 0; r < mr; r++)
        for (int q = 0; q < np; q++) acc[r][q] = _mm256_setzero_si256();
    for (int64_t k2 = 0; k2 < K2; k2++) {
        __m256i w[NP];
        for (int q = 0; q < np; q++) w[q] = _mm256_loadu_si256((const __m256i *)(Wp + q * pstride + k2 * 16));
        for (int r = 0; r < mr; r++) {
            int32_t word;
            memcpy(&word, A16 + (r * K2pad + k2) * 2, 4);
            __m256i a = _mm256_set1_epi32(word);
            for (int q = 0; q < np; q++) acc[r][q] = _mm256_add_epi32(acc[r][q], _mm256_madd_epi16(a, w[q]));
        }
    }
    for (int q = 0; q < np; q++) {
        int64_t left = nvalid - q * 8;
        for (int r = 0; r < mr; r++) {
            if (left >= 8) {
                _mm256_storeu_si256((__m256i *)(C + r * ldc + q * 8), acc[r][q]);
            } else {
                int32_t tmp[8];
                _mm256_storeu_si256((__m256i *)tmp, acc[r][q]);
                memcpy(C + r * ldc + q * 8, tmp, (size_t)left * 4);
            }
        }
    }
}

/* Widen MR rows of A to u16, zero padded to an even K. */
static TGT void widen_rows(int mr, int64_t K, int64_t K2, const uint8_t *A, int64_t lda, uint16_t *dst) {
    for (int r = 0; r < mr; r++) {
        const uint8_t *a = A + r * lda;
        uint16_t *d = dst + r * K2 * 2;
        int64_t k = 0;
        for (; k + 16 <= K; k += 16)
            _mm256_storeu_si256((__m256i *)(d + k), _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(a + k))));
        for (; k < K; k++) d[k] = a[k];
        for (; k < K2 * 2; k++) d[k] = 0;
    }
}

static TGT int avx2_gemm(const struct hf_dense_w *w, int64_t M, const uint8_t *A, int64_t lda, int32_t *C,
                         int64_t ldc) {
    const int64_t N = w->N, K = w->K, K2 = (K + 1) / 2, P = (N + 7) / 8;
    const int64_t pstride = K2 * 16; /* int16 elements per panel */
    const int16_t *Wd = (const int16_t *)w->data;
    /* per-thread scratch: no allocation on the hot path (linear.c calls this from pool workers) */
    uint16_t *A16 = (uint16_t *)hf_scratch(HF_SCRATCH_DENSE_A, (size_t)(MR * K2 * 2) * sizeof(uint16_t));
    if (!A16) return hf_fail(HF_ENOMEM, "dense_gemm(avx2): out of memory");
    for (int64_t m = 0; m < M; m += MR) {
        const int mr = (M - m) >= MR ? MR : (int)(M - m);
        widen_rows(mr, K, K2, A + m * lda, lda, A16);
        for (int64_t p = 0; p < P; p += NP) {
            const int np = (P - p) >= NP ? NP : (int)(P - p);
            const int64_t nvalid = (N - p * 8) < np * 8 ? (N - p * 8) : np * 8;
            int32_t *c = C + m * ldc + p * 8;
            const int16_t *wp = Wd + p * pstride;
            if (mr == MR && np == NP)
                micro(MR, NP, K2, A16, K2, wp, pstride, c, ldc, nvalid);
            else if (np == NP)
                micro(mr, NP, K2, A16, K2, wp, pstride, c, ldc, nvalid);
            else
                micro(mr, 1, K2, A16, K2, wp, pstride, c, ldc, nvalid);
        }
    }
    return HF_OK;
}

const hf_dense_kernel hf_dense_avx2 = {avx2_packed_size, avx2_pack, avx2_gemm, 8};

/* ---- hf_dense_avx2_s7 ("avx2-s7"): every weight in [-64, 64] ----
 * |a0*w0 + a1*w1| <= 255*64*2 = 32640, so vpmaddubsw (u8 x s8, int16 pair sums) cannot saturate;
 * vpmaddwd with ones then adds the two pair sums of a 4-byte group into int32: exact.
 * Packed weight: panels of 8 output channels, [ceil(N/8)][ceil(K/4)][8][4] int8, zero padded; one
 * 32-byte load is 8 channels x 4 consecutive k, multiplied by a broadcast 4-byte word of a row of A
 * (read in place: no widening, no scratch). Register block: S7_MR rows x 16 channels. */
#define S7_MR 6

static int64_t s7_packed_size(int64_t N, int64_t K) { return ((N + 7) / 8) * ((K + 3) / 4) * 32; }

static void s7_pack(int64_t N, int64_t K, const int8_t *W, int64_t ldw, void *dst) {
    const int64_t K4 = (K + 3) / 4, P = (N + 7) / 8;
    int8_t *d = (int8_t *)dst;
    memset(d, 0, (size_t)s7_packed_size(N, K));
    for (int64_t p = 0; p < P; p++)
        for (int64_t j = 0; j < 8; j++) {
            int64_t n = p * 8 + j;
            if (n >= N) break;
            for (int64_t k = 0; k < K; k++) d[((p * K4 + k / 4) * 8 + j) * 4 + (k & 3)] = W[n * ldw + k];
        }
}

/* 4 bytes of a row starting at k, zero filled past K. */
static inline int32_t s7_word(const uint8_t *a, int64_t k, int64_t K) {
    int32_t v = 0;
    memcpy(&v, a + k, (size_t)(K - k < 4 ? K - k : 4));
    return v;
}

static inline TGT __attribute__((always_inline)) void
s7_micro(int mr, int np, int64_t K, const uint8_t *A, int64_t lda, const int8_t *Wp, int64_t pstride, int32_t *C,
         int64_t ldc, int64_t nvalid) {
    __m256i acc[S7_MR][NP];
    const __m256i ones = _mm256_set1_epi16(1);
    const int64_t K4full = K / 4, K4 = (K + 3) / 4;
    for (int r = 0; r < mr; r++)
        for (int q = 0; q < np; q++) acc[r][q] = _mm256_setzero_si256();
#define S7_STEP(k4, WORD)                                                                                  \
    do {                                                                                                   \
        __m256i w_[NP];                                                                                    \
        for (int q = 0; q < np; q++) w_[q] = _mm256_loadu_si256((const __m256i *)(Wp + q * pstride + (k4) * 32)); \
        for (int r = 0; r < mr; r++) {                                                                     \
            const __m256i a_ = _mm256_set1_epi32(WORD);                                                    \
            for (int q = 0; q < np; q++)                                                                   \
                acc[r][q] = _mm256_add_epi32(acc[r][q], _mm256_madd_epi16(_mm256_maddubs_epi16(a_, w_[q]), ones)); \
        }                                                                                                  \
    } while (0)
    for (int64_t k4 = 0; k4 < K4full; k4++) S7_STEP(k4, ({ int32_t v_; memcpy(&v_, A + r * lda + k4 * 4, 4); v_; }));
    if (K4 > K4full) S7_STEP(K4full, s7_word(A + r * lda, K4full * 4, K));
#undef S7_STEP
    for (int q = 0; q < np; q++) {
        int64_t left = nvalid - q * 8;
        for (int r = 0; r < mr; r++) {
            if (left >= 8) {
                _mm256_storeu_si256((__m256i *)(C + r * ldc + q * 8), acc[r][q]);
            } else {
                int32_t tmp[8];
                _mm256_storeu_si256((__m256i *)tmp, acc[r][q]);
                memcpy(C + r * ldc + q * 8, tmp, (size_t)left * 4);
            }
        }
    }
}

static TGT int s7_gemm(const struct hf_dense_w *w, int64_t M, const uint8_t *A, int64_t lda, int32_t *C,
                       int64_t ldc) {
    const int64_t N = w->N, K = w->K, K4 = (K + 3) / 4, P = (N + 7) / 8;
    const int64_t pstride = K4 * 32; /* bytes per panel */
    const int8_t *Wd = (const int8_t *)w->data;
    /* panel pair outer, rows inner: the 2 panels (16 x K bytes) stay in L1/L2 while rows stream */
    for (int64_t p = 0; p < P; p += NP) {
        const int np = (P - p) >= NP ? NP : (int)(P - p);
        const int64_t nvalid = (N - p * 8) < np * 8 ? (N - p * 8) : np * 8;
        const int8_t *wp = Wd + p * pstride;
        for (int64_t m = 0; m < M; m += S7_MR) {
            const int mr = (M - m) >= S7_MR ? S7_MR : (int)(M - m);
            const uint8_t *a = A + m * lda;
            int32_t *c = C + m * ldc + p * 8;
            if (mr == S7_MR && np == NP) s7_micro(S7_MR, NP, K, a, lda, wp, pstride, c, ldc, nvalid);
            else if (np == NP) s7_micro(mr, NP, K, a, lda, wp, pstride, c, ldc, nvalid);
            else s7_micro(mr, 1, K, a, lda, wp, pstride, c, ldc, nvalid);
        }
    }
    return HF_OK;
}

const hf_dense_kernel hf_dense_avx2_s7 = {s7_packed_size, s7_pack, s7_gemm, 8};
