/* Activation packing shared by the x86 sparse kernels (AVX2 instructions only, so AVX-512
 * machines can use it too). A token tile is 16 rows of A (rows past M are zero).
 *  - hf_pack_kt:  dst[k][16 tokens], elements int16 (widened) or u8, for k < round_up(K, 16)
 *  - hf_pack_dw:  dst[j][16 tokens][dword], the j-th 4-byte word of each padded row: with
 *                 widen=1 a word is an int16 pair (k = 2j, 2j+1), with widen=0 four u8 (k = 4j..4j+3);
 *                 j < round_up(K, 16) * (widen ? 1/2 : 1/4)
 * `rows` is caller scratch of 16 * round_up(K, 16) bytes. */
#ifndef HF_SPARSE_ACT_PACK_H
#define HF_SPARSE_ACT_PACK_H
#include <immintrin.h>
#include <string.h>

#include "x86.h"
#include "vecmath_avx2.h"

#define HF_PK static inline __attribute__((target("avx2,fma"), always_inline))

static inline int64_t hf_round16(int64_t k) { return (k + 15) & ~(int64_t)15; }

/* Copy n rows of A into `rows` [n][K16] u8, zero padded (columns past K, rows past mt). */
HF_PK void hf_copy_rows(int n, int mt, int64_t K, const uint8_t *A, int64_t lda, uint8_t *rows) {
    const int64_t K16 = hf_round16(K);
    for (int t = 0; t < n; t++) {
        uint8_t *d = rows + t * K16;
        if (t < mt) {
            memcpy(d, A + t * lda, (size_t)K);
            memset(d + K, 0, (size_t)(K16 - K));
        } else {
            memset(d, 0, (size_t)K16);
        }
    }
}

/* The tile's 16 rows. */
HF_PK void hf_pack_rows(int mt, int64_t K, const uint8_t *A, int64_t lda, uint8_t *rows) {
    hf_copy_rows(16, mt, K, A, lda, rows);
}

HF_PK void hf_pack_kt(int mt, int64_t K, const uint8_t *A, int64_t lda, uint8_t *rows, void *dst, int widen) {
    const int64_t K16 = hf_round16(K);
    hf_pack_rows(mt, K, A, lda, rows);
    for (int64_t k = 0; k < K16; k += 16) {
        __m128i r[16], o[16];
        for (int t = 0; t < 16; t++) r[t] = _mm_loadu_si128((const __m128i *)(rows + t * K16 + k));
        for (int s = 0; s < 4; s++) {
            for (int i = 0; i < 8; i++) {
                o[2 * i] = _mm_unpacklo_epi8(r[i], r[i + 8]);
                o[2 * i + 1] = _mm_unpackhi_epi8(r[i], r[i + 8]);
            }
            memcpy(r, o, sizeof r);
        }
        /* r[j] = 16 tokens of column k + j */
        if (widen) {
            int16_t *d = (int16_t *)dst + k * 16;
            for (int j = 0; j < 16; j++) _mm256_storeu_si256((__m256i *)(d + j * 16), _mm256_cvtepu8_epi16(r[j]));
        } else {
            uint8_t *d = (uint8_t *)dst + k * 16;
            for (int j = 0; j < 16; j++) _mm_storeu_si128((__m128i *)(d + j * 16), r[j]);
        }
    }
}

HF_PK void hf_transpose8x8_epi32(__m256i v[8]) {
    __m256 r[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_castsi256_ps(v[i]);
    hf_transpose8_ps(r);
    for (int i = 0; i < 8; i++) v[i] = _mm256_castps_si256(r[i]);
}

HF_PK void hf_pack_dw(int mt, int64_t K, const uint8_t *A, int64_t lda, uint8_t *rows, void *dst, int widen) {
    const int64_t K16 = hf_round16(K);
    int32_t *d = (int32_t *)dst;
    hf_pack_rows(mt, K, A, lda, rows);
    /* 16 source bytes of a row give 8 words when widened (int16 pairs), 4 words otherwise; load
     * 8 words per token per step either way */
    const int64_t step = widen ? 16 : 32; /* source bytes per step */
    for (int64_t k = 0; k < K16; k += step) {
        const int64_t j0 = widen ? k / 2 : k / 4; /* first word of this step */
        const int nw = (int)((K16 - k) < step ? (K16 - k) / (widen ? 2 : 4) : 8);
        for (int h = 0; h < 2; h++) {
            __m256i v[8];
            for (int t = 0; t < 8; t++) {
                const uint8_t *src = rows + (h * 8 + t) * K16 + k;
                if (widen) v[t] = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)src));
                else if (nw == 8) v[t] = _mm256_loadu_si256((const __m256i *)src);
                else v[t] = _mm256_inserti128_si256(_mm256_setzero_si256(), _mm_loadu_si128((const __m128i *)src), 0);
            }
            hf_transpose8x8_epi32(v);
            for (int j = 0; j < nw; j++) _mm256_storeu_si256((__m256i *)(d + (j0 + j) * 16 + h * 8), v[j]);
        }
    }
}
#endif
