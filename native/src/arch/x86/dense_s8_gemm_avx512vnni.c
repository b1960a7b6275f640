/* Dense u8 x s8 -> s32 GEMM with AVX-512 VNNI (vpdpbusd).
 *
 * Packed weight: panels of 16 output channels, [ceil(N/16)][ceil(K/4)][16][4] int8, zero padded, so
 * one 64-byte load is 16 channels x 4 consecutive k and one vpdpbusd with a broadcast 4-byte word
 * of a row of A accumulates 4 k-steps into 16 int32 lanes. Register block: 8 rows x 32 channels.
 */
#include <immintrin.h>
#include <string.h>

#include "x86.h"

/* an unaligned 4-byte load without undefined behaviour (one mov after optimisation; found by UBSan fuzzing) */
static inline int32_t load_i32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define MR 8
#define NP 2 /* panels of 16 per block */

static int64_t vnni_packed_size(int64_t N, int64_t K) { return ((N + 15) / 16) * ((K + 3) / 4) * 64; }

static void vnni_pack(int64_t N, int64_t K, const int8_t *W, int64_t ldw, void *dst) {
    const int64_t K4 = (K + 3) / 4, P = (N + 15) / 16;
    int8_t *d = (int8_t *)dst;
    memset(d, 0, (size_t)vnni_packed_size(N, K));
    for (int64_t p = 0; p < P; p++)
        for (int64_t j = 0; j < 16; j++) {
            int64_t n = p * 16 + j;
            if (n >= N) break;
            for (int64_t k = 0; k < K; k++) d[((p * K4 + k / 4) * 16 + j) * 4 + (k & 3)] = W[n * ldw + k];
        }
}

/* 4 bytes of a row starting at k, zero filled past K. */
static inline int32_t load_word(const uint8_t *a, int64_t k, int64_t K) {
    int32_t v = 0;
    int64_t n = K - k < 4 ? K - k : 4;
    memcpy(&v, a + k, (size_t)n);
    return v;
}

/* acc += a (u8) . w (s8), 4-byte groups. Inline asm ties the accumulator to one register: GCC's
 * builtin makes it copy (and spill) accumulators around every vpdpbusd in this loop nest. */
#define DPBUSD(acc, a, w) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(w))

static inline TGT __attribute__((always_inline)) void
micro(int mr, int np, int64_t K, const uint8_t *A, int64_t lda, const int8_t *Wp, int64_t pstride,
      int32_t *C, int64_t ldc, int64_t nvalid) {
    __m512i acc[MR][NP];
    const int64_t K4full = K / 4, K4 = (K + 3) / 4;
    for (int r = 0; r < mr; r++)
        for (int q = 0; q < np; q++) acc[r][q] = _mm512_setzero_si512();
    for (int64_t k4 = 0; k4 < K4full; k4++) {
        __m512i w[NP];
        for (int q = 0; q < np; q++) w[q] = _mm512_loadu_si512((const void *)(Wp + q * pstride + k4 * 64));
        for (int r = 0; r < mr; r++) {
            int32_t word;
            memcpy(&word, A + r * lda + k4 * 4, 4);
            __m512i a = _mm512_set1_epi32(word);
            for (int q = 0; q < np; q++) DPBUSD(acc[r][q], a, w[q]);
        }
    }
    if (K4 > K4full) {
        const int64_t k4 = K4full;
        __m512i w[NP];
        for (int q = 0; q < np; q++) w[q] = _mm512_loadu_si512((const void *)(Wp + q * pstride + k4 * 64));
        for (int r = 0; r < mr; r++) {
            __m512i a = _mm512_set1_epi32(load_word(A + r * lda, k4 * 4, K));
            for (int q = 0; q < np; q++) DPBUSD(acc[r][q], a, w[q]);
        }
    }
    for (int q = 0; q < np; q++) {
        int64_t left = nvalid - q * 16;
        __mmask16 mask = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
        for (int r = 0; r < mr; r++) _mm512_mask_storeu_epi32(C + r * ldc + q * 16, mask, acc[r][q]);
    }
}

/* The full MR x NP block with named accumulators: 16 zmm registers (GCC keeps array accumulators
 * of the generic micro() on the stack). */
static inline TGT __attribute__((always_inline)) void
micro_full(int64_t K, const uint8_t *A, int64_t lda, const int8_t *Wp, int64_t pstride, int32_t *C, int64_t ldc) {
    __m512i c00 = _mm512_setzero_si512(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    __m512i c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
    const int64_t K4 = K / 4;
    const uint8_t *a0 = A, *a4 = A + 4 * lda;
    const int8_t *w0p = Wp, *w1p = Wp + pstride;
    for (int64_t k4 = 0; k4 < K4; k4++) {
        const __m512i w0 = _mm512_loadu_si512((const void *)(w0p + k4 * 64));
        const __m512i w1 = _mm512_loadu_si512((const void *)(w1p + k4 * 64));
        __m512i a;
#define ROW(base, r, x0, x1)                                                                           \
    a = _mm512_set1_epi32(load_i32((base) + (r) * lda + k4 * 4)); /* rows need not be 4-byte aligned */ \
    DPBUSD(x0, a, w0);                                                                                 \
    DPBUSD(x1, a, w1);
        ROW(a0, 0, c00, c01) ROW(a0, 1, c10, c11) ROW(a0, 2, c20, c21) ROW(a0, 3, c30, c31)
        ROW(a4, 0, c40, c41) ROW(a4, 1, c50, c51) ROW(a4, 2, c60, c61) ROW(a4, 3, c70, c71)
#undef ROW
    }
    if (K4 * 4 < K) { /* last partial group of 4 k */
        const __m512i w0 = _mm512_loadu_si512((const void *)(w0p + K4 * 64));
        const __m512i w1 = _mm512_loadu_si512((const void *)(w1p + K4 * 64));
        __m512i a;
#define ROW(r, x0, x1)                                                                                 \
    a = _mm512_set1_epi32(load_word(A + (r) * lda, K4 * 4, K));                                        \
    DPBUSD(x0, a, w0);                                                                                 \
    DPBUSD(x1, a, w1);
        ROW(0, c00, c01) ROW(1, c10, c11) ROW(2, c20, c21) ROW(3, c30, c31)
        ROW(4, c40, c41) ROW(5, c50, c51) ROW(6, c60, c61) ROW(7, c70, c71)
#undef ROW
    }
#define ST(r, x0, x1)                                                                                  \
    _mm512_storeu_si512((void *)(C + (r) * ldc), x0);                                                  \
    _mm512_storeu_si512((void *)(C + (r) * ldc + 16), x1);
    ST(0, c00, c01) ST(1, c10, c11) ST(2, c20, c21) ST(3, c30, c31)
    ST(4, c40, c41) ST(5, c50, c51) ST(6, c60, c61) ST(7, c70, c71)
#undef ST
}

static TGT int vnni_gemm(const struct hf_dense_w *w, int64_t M, const uint8_t *A, int64_t lda, int32_t *C,
                         int64_t ldc) {
    const int64_t N = w->N, K = w->K, K4 = (K + 3) / 4, P = (N + 15) / 16;
    const int64_t pstride = K4 * 64;
    const int8_t *Wd = (const int8_t *)w->data;
    for (int64_t p = 0; p < P; p += NP) {
        const int np = (P - p) >= NP ? NP : (int)(P - p);
        const int64_t nvalid = (N - p * 16) < np * 16 ? (N - p * 16) : np * 16;
        for (int64_t m = 0; m < M; m += MR) {
            const int mr = (M - m) >= MR ? MR : (int)(M - m);
            const uint8_t *a = A + m * lda;
            int32_t *c = C + m * ldc + p * 16;
            const int8_t *wp = Wd + p * pstride;
            if (mr == MR && np == NP && nvalid == 32)
                micro_full(K, a, lda, wp, pstride, c, ldc);
            else if (mr == MR && np == NP)
                micro(MR, NP, K, a, lda, wp, pstride, c, ldc, nvalid);
            else if (np == NP)
                micro(mr, NP, K, a, lda, wp, pstride, c, ldc, nvalid);
            else
                micro(mr, 1, K, a, lda, wp, pstride, c, ldc, nvalid);
        }
    }
    return HF_OK;
}

const hf_dense_kernel hf_dense_avx512vnni = {vnni_packed_size, vnni_pack, vnni_gemm, 16};
