/* Dense u8 x s8 -> s32 GEMM with AVX2, exact.
 *
 * vpmaddubsw would saturate its int16 pair sums (255*127*2 > 32767), so this path widens to int16
 * and uses vpmaddwd, whose pair sums are exact in int32: it matches the reference bit for bit.
 * Packed weight: panels of 8 output channels, [ceil(N/8)][ceil(K/2)][8][2] int16, zero padded; one
 * 32-byte load is 8 channels x 2 consecutive k. A rows are widened to u16 once per row block, so a
 * broadcast 32-bit word is the (a[k], a[k+1]) pair. Register block: 4 rows x 16 channels.
 */
#include <immintrin.h>
#include <string.h>

#include "../internal.h"

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
    uint16_t *A16 = (uint16_t *)hf_alloc((size_t)(MR * K2 * 2) * sizeof(uint16_t));
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
    hf_free(A16);
    return HF_OK;
}

const hf_dense_kernel hf_dense_avx2 = {avx2_packed_size, avx2_pack, avx2_gemm};
