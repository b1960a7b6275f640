/* Block-sparse u8 x s8 -> s32 GEMM with AVX2, exact.
 *
 * vpmaddubsw would saturate its int16 pair sums, so (like the dense AVX2 kernel) activations are
 * widened to int16 and multiplied with vpmaddwd, whose pair sums are exact in int32.
 *
 * Activations are packed once per call into token tiles of 16 rows (sparse_act_pack.h):
 *   4x1: X[k][16 tokens] int16           (32 bytes per k)
 *   1x4: X[k/2][16 tokens][2] int16      (64 bytes per k pair)
 * Packed weight = int64 ptr[R+1] followed by records:
 *   4x1: R = ceil(N/4) groups of 4 output channels; the kept input channels of a group are taken in
 *        pairs (ka, kb) (an odd count is padded with a zero-weight copy): record {int32 byte offsets
 *        of ka and kb in the tile, int32 w[4] = the (W[n][ka], W[n][kb]) int16 pair of each row}
 *        = 24 bytes per 8 weights. One pair = 2 loads + 2 vpunpck{l,h}wd (gather 16 tokens x
 *        (ka, kb)) feeding 8 vpmaddwd (4 rows x 16 tokens).
 *   1x4: R = N rows; record {int32 byte offset of the block's k pairs, int32 (w0,w1), int32 (w2,w3)}
 *        = 12 bytes per 4 weights. One block = 4 vpmaddwd on 16 tokens with broadcast weight pairs.
 * 7-bit weights ("avx2-s7", chosen at pack time when every weight lies in [-64, 64]): vpmaddubsw
 * (u8 x s8 -> int16 pair sums) cannot saturate then (255*64*2 = 32640 <= 32767), so activations stay
 * u8 and vpmaddwd with ones adds the two pair sums of a 4-byte group into int32: exact.
 *   4x1: X[k][16 tokens] u8 (16 bytes per k). Record {uint16 k[4], int32 w[4]} = 24 bytes per 16
 *        weights: the group's kept input channels four at a time (padded with zero-weight copies);
 *        4 loads + 8 shuffles gather 16 tokens x 4 k, which feed 8 vpmaddubsw (4 rows x 16 tokens).
 *   1x4: X[k/4][16 tokens][4] u8 (64 bytes per block column). Records are split in two arrays,
 *        int32 w[] (the block's 4 weights) and uint16 kb[] (block column) = 6 bytes per 4 weights;
 *        one block = 2 vpmaddubsw on 16 tokens with a broadcast weight word.
 * Work is split over threads by 8-channel tiles (balanced on kept blocks), or over token tiles
 * when there are too few channel tiles. Each 8 x 16 tile is written through hf_tile_store_avx2
 * (transpose to C[m][n] + fused epilogue).
 */
#include <immintrin.h>
#include <stdatomic.h>
#include <string.h>

#include "x86.h"
#include "sparse_act_pack.h"

#define TGT __attribute__((target("avx2,fma")))
#define INL static inline __attribute__((target("avx2,fma"), always_inline))
#define CHUNK_BYTES (192 * 1024) /* activation bytes kept hot in L2 while a channel tile sweeps them */

typedef struct {
    int32_t oa, ob;
    int32_t w[4];
} pair4x1;
typedef struct {
    int32_t off, w01, w23;
} blk1x4;
typedef struct {
    uint16_t k[4];
    int32_t w[4];
} quad7;

static inline int32_t pack8x4(int8_t a, int8_t b, int8_t c, int8_t d) {
    return (int32_t)((uint32_t)(uint8_t)a | ((uint32_t)(uint8_t)b << 8) | ((uint32_t)(uint8_t)c << 16) |
                     ((uint32_t)(uint8_t)d << 24));
}

static inline int32_t pack16(int8_t lo, int8_t hi) { return (int32_t)(((uint32_t)(uint16_t)(int16_t)hi << 16) | (uint16_t)(int16_t)lo); }

static int64_t nrec_rows(const struct hf_sparse_w *w) { return w->br == 4 ? (w->N + 3) / 4 : w->N; }

static int s7_pack(struct hf_sparse_w *w, const int8_t *W, int64_t ldw, const int64_t *rowptr, const int32_t *cols) {
    const int64_t R = nrec_rows(w), N = w->N, K = w->K;
    int64_t nrec = 0, bytes;
    int64_t *ptr;
    if (w->br == 4)
        for (int64_t g = 0; g < R; g++) nrec += (rowptr[g + 1] - rowptr[g] + 3) / 4;
    else
        nrec = w->kept;
    bytes = (R + 1) * 8 + (w->br == 4 ? nrec * (int64_t)sizeof(quad7) : nrec * 6);
    w->data = hf_alloc((size_t)bytes);
    if (!w->data) return hf_fail(HF_ENOMEM, "sparse_pack(avx2): out of memory for %lld bytes", (long long)bytes);
    w->nbytes = bytes;
    ptr = (int64_t *)w->data;
    if (w->br == 4) {
        quad7 *q = (quad7 *)(ptr + R + 1);
        int64_t i = 0;
        for (int64_t g = 0; g < R; g++) {
            const int64_t b0 = rowptr[g], cnt = rowptr[g + 1] - b0;
            ptr[g] = i;
            for (int64_t j = 0; j < cnt; j += 4, i++) {
                int64_t k[4];
                int valid[4];
                for (int e = 0; e < 4; e++) {
                    valid[e] = j + e < cnt;
                    k[e] = valid[e] ? cols[b0 + j + e] : cols[b0 + j]; /* K <= 65536: k fits uint16 */
                    q[i].k[e] = (uint16_t)k[e];
                }
                for (int r = 0; r < 4; r++) {
                    int8_t v[4];
                    for (int e = 0; e < 4; e++) v[e] = valid[e] ? hf_w_at(W, ldw, N, K, g * 4 + r, k[e]) : 0;
                    q[i].w[r] = pack8x4(v[0], v[1], v[2], v[3]);
                }
            }
        }
        ptr[R] = i;
        w->work[0] = 0;
        for (int64_t t = 0; t < w->ntiles; t++) {
            const int64_t g0 = 2 * t, g1 = 2 * t + 2 < R ? 2 * t + 2 : R;
            w->work[t + 1] = w->work[t] + (ptr[g1] - ptr[g0]) + 2;
        }
    } else {
        int32_t *wv = (int32_t *)(ptr + R + 1);
        uint16_t *kb = (uint16_t *)(wv + nrec);
        int64_t i = 0;
        for (int64_t n = 0; n < N; n++) {
            ptr[n] = i;
            for (int64_t j = rowptr[n]; j < rowptr[n + 1]; j++, i++) {
                const int64_t b = cols[j], k0 = b * 4;
                kb[i] = (uint16_t)b;
                wv[i] = pack8x4(hf_w_at(W, ldw, N, K, n, k0), hf_w_at(W, ldw, N, K, n, k0 + 1),
                                hf_w_at(W, ldw, N, K, n, k0 + 2), hf_w_at(W, ldw, N, K, n, k0 + 3));
            }
        }
        ptr[N] = i;
        w->work[0] = 0;
        for (int64_t t = 0; t < w->ntiles; t++) {
            const int64_t n1 = (t + 1) * 8 < N ? (t + 1) * 8 : N;
            w->work[t + 1] = w->work[t] + (ptr[n1] - ptr[t * 8]) / 4 + 2;
        }
    }
    return HF_OK;
}

static int avx2_pack(struct hf_sparse_w *w, const int8_t *W, int64_t ldw, const int64_t *rowptr, const int32_t *cols) {
    const int64_t R = nrec_rows(w), N = w->N, K = w->K;
    int64_t nrec = 0, recsz, bytes;
    int64_t *ptr;
    w->variant = hf_weights_fit_s7(N, K, W, ldw) ? HF_VARIANT_S7 : HF_VARIANT_DEFAULT;
    if (w->variant == HF_VARIANT_S7) return s7_pack(w, W, ldw, rowptr, cols);
    if (w->br == 4)
        for (int64_t g = 0; g < R; g++) nrec += (rowptr[g + 1] - rowptr[g] + 1) / 2;
    else
        nrec = w->kept;
    recsz = w->br == 4 ? (int64_t)sizeof(pair4x1) : (int64_t)sizeof(blk1x4);
    bytes = (R + 1) * 8 + nrec * recsz;
    w->data = hf_alloc((size_t)bytes);
    if (!w->data) return hf_fail(HF_ENOMEM, "sparse_pack(avx2): out of memory for %lld bytes", (long long)bytes);
    w->nbytes = bytes;
    ptr = (int64_t *)w->data;
    if (w->br == 4) {
        pair4x1 *p = (pair4x1 *)(ptr + R + 1);
        int64_t i = 0;
        for (int64_t g = 0; g < R; g++) {
            const int64_t b0 = rowptr[g], cnt = rowptr[g + 1] - b0;
            ptr[g] = i;
            for (int64_t j = 0; j < cnt; j += 2, i++) {
                const int64_t ka = cols[b0 + j], kb = j + 1 < cnt ? cols[b0 + j + 1] : ka;
                p[i].oa = (int32_t)(ka * 32);
                p[i].ob = (int32_t)(kb * 32);
                for (int r = 0; r < 4; r++) {
                    const int64_t n = g * 4 + r;
                    p[i].w[r] = pack16(hf_w_at(W, ldw, N, K, n, ka), j + 1 < cnt ? hf_w_at(W, ldw, N, K, n, kb) : 0);
                }
            }
        }
        ptr[R] = i;
        w->work[0] = 0;
        for (int64_t t = 0; t < w->ntiles; t++) {
            const int64_t g0 = 2 * t, g1 = 2 * t + 2 < R ? 2 * t + 2 : R;
            w->work[t + 1] = w->work[t] + (ptr[g1] - ptr[g0]) + 2;
        }
    } else {
        blk1x4 *b = (blk1x4 *)(ptr + R + 1);
        int64_t i = 0;
        for (int64_t n = 0; n < N; n++) {
            ptr[n] = i;
            for (int64_t j = rowptr[n]; j < rowptr[n + 1]; j++, i++) {
                const int64_t kb = cols[j], k0 = kb * 4;
                b[i].off = (int32_t)(kb * 128);
                b[i].w01 = pack16(hf_w_at(W, ldw, N, K, n, k0), hf_w_at(W, ldw, N, K, n, k0 + 1));
                b[i].w23 = pack16(hf_w_at(W, ldw, N, K, n, k0 + 2), hf_w_at(W, ldw, N, K, n, k0 + 3));
            }
        }
        ptr[N] = i;
        w->work[0] = 0;
        for (int64_t t = 0; t < w->ntiles; t++) {
            const int64_t n1 = (t + 1) * 8 < N ? (t + 1) * 8 : N;
            w->work[t + 1] = w->work[t] + (ptr[n1] - ptr[t * 8]) / 2 + 2;
        }
    }
    return HF_OK;
}

/* 4 output channels x 16 tokens of one group into tile rows [4][16]. */
INL void group4x1(const pair4x1 *p, int64_t np, const char *X, int32_t *tile) {
    __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    for (int64_t i = 0; i < np; i++) {
        const __m256i xa = _mm256_load_si256((const __m256i *)(X + p[i].oa));
        const __m256i xb = _mm256_load_si256((const __m256i *)(X + p[i].ob));
        const __m256i lo = _mm256_unpacklo_epi16(xa, xb); /* tokens 0-3 | 8-11 as (ka, kb) pairs */
        const __m256i hi = _mm256_unpackhi_epi16(xa, xb); /* tokens 4-7 | 12-15 */
        __m256i w;
        w = _mm256_set1_epi32(p[i].w[0]);
        a00 = _mm256_add_epi32(a00, _mm256_madd_epi16(lo, w));
        a01 = _mm256_add_epi32(a01, _mm256_madd_epi16(hi, w));
        w = _mm256_set1_epi32(p[i].w[1]);
        a10 = _mm256_add_epi32(a10, _mm256_madd_epi16(lo, w));
        a11 = _mm256_add_epi32(a11, _mm256_madd_epi16(hi, w));
        w = _mm256_set1_epi32(p[i].w[2]);
        a20 = _mm256_add_epi32(a20, _mm256_madd_epi16(lo, w));
        a21 = _mm256_add_epi32(a21, _mm256_madd_epi16(hi, w));
        w = _mm256_set1_epi32(p[i].w[3]);
        a30 = _mm256_add_epi32(a30, _mm256_madd_epi16(lo, w));
        a31 = _mm256_add_epi32(a31, _mm256_madd_epi16(hi, w));
    }
#define ST(r, x0, x1)                                                                                  \
    _mm256_store_si256((__m256i *)(tile + (r) * 16), _mm256_permute2x128_si256(x0, x1, 0x20));     \
    _mm256_store_si256((__m256i *)(tile + (r) * 16 + 8), _mm256_permute2x128_si256(x0, x1, 0x31));
    ST(0, a00, a01) ST(1, a10, a11) ST(2, a20, a21) ST(3, a30, a31)
#undef ST
}

/* One output channel x 16 tokens into tile row [16]. */
INL void row1x4(const blk1x4 *b, int64_t nb, const char *X, int32_t *tile) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, c0 = a0, c1 = a0;
    for (int64_t i = 0; i < nb; i++) {
        const char *x = X + b[i].off;
        const __m256i w01 = _mm256_set1_epi32(b[i].w01), w23 = _mm256_set1_epi32(b[i].w23);
        a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_load_si256((const __m256i *)x), w01));
        a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_load_si256((const __m256i *)(x + 32)), w01));
        c0 = _mm256_add_epi32(c0, _mm256_madd_epi16(_mm256_load_si256((const __m256i *)(x + 64)), w23));
        c1 = _mm256_add_epi32(c1, _mm256_madd_epi16(_mm256_load_si256((const __m256i *)(x + 96)), w23));
    }
    _mm256_store_si256((__m256i *)tile, _mm256_add_epi32(a0, c0));
    _mm256_store_si256((__m256i *)(tile + 8), _mm256_add_epi32(a1, c1));
}

/* 7-bit: 4 output channels x 16 tokens of one group into tile rows [4][16]. */
INL void group4x1_s7(const quad7 *q, int64_t nq, const uint8_t *X, int32_t *tile) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    for (int64_t i = 0; i < nq; i++) {
        const __m128i ka = _mm_load_si128((const __m128i *)(X + ((size_t)q[i].k[0] << 4)));
        const __m128i kb = _mm_load_si128((const __m128i *)(X + ((size_t)q[i].k[1] << 4)));
        const __m128i kc = _mm_load_si128((const __m128i *)(X + ((size_t)q[i].k[2] << 4)));
        const __m128i kd = _mm_load_si128((const __m128i *)(X + ((size_t)q[i].k[3] << 4)));
        /* (ka, kb) byte pairs of tokens 0-7 | 8-15, then (ka..kd) words: x0 = tokens 0-3 | 8-11, x1 = 4-7 | 12-15 */
        const __m256i ab = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi8(ka, kb)), _mm_unpackhi_epi8(ka, kb), 1);
        const __m256i cd = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi8(kc, kd)), _mm_unpackhi_epi8(kc, kd), 1);
        const __m256i x0 = _mm256_unpacklo_epi16(ab, cd), x1 = _mm256_unpackhi_epi16(ab, cd);
        __m256i w;
#define MAC(acc0, acc1, r)                                                                             \
    w = _mm256_set1_epi32(q[i].w[r]);                                                                  \
    acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(_mm256_maddubs_epi16(x0, w), ones));               \
    acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(_mm256_maddubs_epi16(x1, w), ones));
        MAC(a00, a01, 0) MAC(a10, a11, 1) MAC(a20, a21, 2) MAC(a30, a31, 3)
#undef MAC
    }
#define ST(r, x0, x1)                                                                                  \
    _mm256_store_si256((__m256i *)(tile + (r) * 16), _mm256_permute2x128_si256(x0, x1, 0x20));     \
    _mm256_store_si256((__m256i *)(tile + (r) * 16 + 8), _mm256_permute2x128_si256(x0, x1, 0x31));
    ST(0, a00, a01) ST(1, a10, a11) ST(2, a20, a21) ST(3, a30, a31)
#undef ST
}

/* 7-bit: one output channel x 16 tokens into tile row [16]. */
INL void row1x4_s7(const int32_t *wv, const uint16_t *kb, int64_t nb, const uint8_t *X, int32_t *tile) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, c0 = a0, c1 = a0;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const uint8_t *x = X + ((size_t)kb[i] << 6), *y = X + ((size_t)kb[i + 1] << 6);
        const __m256i w0 = _mm256_set1_epi32(wv[i]), w1 = _mm256_set1_epi32(wv[i + 1]);
        a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_load_si256((const __m256i *)x), w0), ones));
        a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_load_si256((const __m256i *)(x + 32)), w0), ones));
        c0 = _mm256_add_epi32(c0, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_load_si256((const __m256i *)y), w1), ones));
        c1 = _mm256_add_epi32(c1, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_load_si256((const __m256i *)(y + 32)), w1), ones));
    }
    if (i < nb) {
        const uint8_t *x = X + ((size_t)kb[i] << 6);
        const __m256i w0 = _mm256_set1_epi32(wv[i]);
        a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_load_si256((const __m256i *)x), w0), ones));
        a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_load_si256((const __m256i *)(x + 32)), w0), ones));
    }
    _mm256_store_si256((__m256i *)tile, _mm256_add_epi32(a0, c0));
    _mm256_store_si256((__m256i *)(tile + 8), _mm256_add_epi32(a1, c1));
}

typedef struct {
    const struct hf_sparse_w *w;
    int64_t M, lda, ldc;
    const uint8_t *A;
    void *C;
    const hf_epilogue *ep;
    char *X;
    int64_t tstride, ntt;
    int64_t chunk, tg, ngt, nunits; /* token tiles per chunk, channel tiles per unit */
    atomic_llong next, next_pack;
    atomic_int failed;
} job_t;

static TGT void pack_task(void *ctx, int tid, int nth) {
    job_t *j = (job_t *)ctx;
    const int64_t K = j->w->K;
    uint8_t *rows;
    (void)tid;
    (void)nth;
    const int widen = j->w->variant != HF_VARIANT_S7;
    rows = (uint8_t *)hf_scratch(HF_SCRATCH_SPARSE_ROWS, (size_t)(16 * hf_round16(K)));
    if (!rows) {
        atomic_store(&j->failed, 1);
        return;
    }
    for (;;) {
        const int64_t t = atomic_fetch_add_explicit(&j->next_pack, 1, memory_order_relaxed);
        if (t >= j->ntt) break;
        const int64_t m0 = t * 16;
        const int mt = j->M - m0 < 16 ? (int)(j->M - m0) : 16;
        if (j->w->br == 4) hf_pack_kt(mt, K, j->A + m0 * j->lda, j->lda, rows, j->X + t * j->tstride, widen);
        else hf_pack_dw(mt, K, j->A + m0 * j->lda, j->lda, rows, j->X + t * j->tstride, widen);
    }
}

static TGT void compute_task(void *ctx, int tid, int nth) {
    job_t *j = (job_t *)ctx;
    const struct hf_sparse_w *w = j->w;
    const int64_t R = nrec_rows(w), N = w->N;
    const int64_t *ptr = (const int64_t *)w->data;
    int32_t tile[8 * 16] __attribute__((aligned(64)));
    const int s7 = w->variant == HF_VARIANT_S7;
    (void)tid;
    (void)nth;
    /* dynamic schedule: units of (token chunk, TG channel tiles) taken from a shared counter, so a
     * descheduled thread does not hold the others back; each tile's result is independent of who
     * computes it */
    for (;;) {
        const int64_t u = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (u >= j->nunits) break;
        const int64_t c0 = (u / j->ngt) * j->chunk, c1 = c0 + j->chunk < j->ntt ? c0 + j->chunk : j->ntt;
        const int64_t t0 = (u % j->ngt) * j->tg, t1 = t0 + j->tg < w->ntiles ? t0 + j->tg : w->ntiles;
        for (int64_t t = t0; t < t1; t++) {
            const int64_t n0 = t * 8;
            const int nr = N - n0 < 8 ? (int)(N - n0) : 8;
            for (int64_t mt = c0; mt < c1; mt++) {
                const char *X = j->X + mt * j->tstride;
                const int64_t m0 = mt * 16;
                const int nt = j->M - m0 < 16 ? (int)(j->M - m0) : 16;
                if (s7 && w->br == 4) {
                    const quad7 *q = (const quad7 *)(ptr + R + 1);
                    const int64_t g = 2 * t;
                    group4x1_s7(q + ptr[g], ptr[g + 1] - ptr[g], (const uint8_t *)X, tile);
                    if (g + 1 < R) group4x1_s7(q + ptr[g + 1], ptr[g + 2] - ptr[g + 1], (const uint8_t *)X, tile + 64);
                } else if (s7) {
                    const int32_t *wv = (const int32_t *)(ptr + R + 1);
                    const uint16_t *kb = (const uint16_t *)(wv + ptr[R]);
                    for (int r = 0; r < nr; r++) {
                        const int64_t b0 = ptr[n0 + r];
                        row1x4_s7(wv + b0, kb + b0, ptr[n0 + r + 1] - b0, (const uint8_t *)X, tile + r * 16);
                    }
                } else if (w->br == 4) {
                    const pair4x1 *p = (const pair4x1 *)(ptr + R + 1);
                    const int64_t g = 2 * t;
                    group4x1(p + ptr[g], ptr[g + 1] - ptr[g], X, tile);
                    if (g + 1 < R) group4x1(p + ptr[g + 1], ptr[g + 2] - ptr[g + 1], X, tile + 64);
                } else {
                    const blk1x4 *b = (const blk1x4 *)(ptr + R + 1);
                    for (int r = 0; r < nr; r++) row1x4(b + ptr[n0 + r], ptr[n0 + r + 1] - ptr[n0 + r], X, tile + r * 16);
                }
                hf_tile_store_avx2(j->ep, tile, nr, nt, m0, n0, j->C, j->ldc);
            }
        }
    }
}

static int avx2_gemm(const struct hf_sparse_w *w, int64_t M, const uint8_t *A, int64_t lda, void *C, int64_t ldc,
                     const hf_epilogue *ep) {
    job_t j;
    int nth = hf_get_num_threads();
    memset(&j, 0, sizeof j);
    j.w = w;
    j.M = M;
    j.A = A;
    j.lda = lda;
    j.C = C;
    j.ldc = ldc;
    j.ep = ep;
    j.ntt = (M + 15) / 16;
    j.tstride = hf_round16(w->K) * (w->variant == HF_VARIANT_S7 ? 16 : 32); /* u8 or int16 activations */
    j.X = (char *)hf_scratch(HF_SCRATCH_SPARSE_X, (size_t)(j.ntt * j.tstride));
    if (!j.X) return hf_fail(HF_ENOMEM, "sparse_gemm(avx2): out of memory for activations");
    atomic_init(&j.failed, 0);
    atomic_init(&j.next_pack, 0);
    hf_parallel(pack_task, &j, (int)(j.ntt < nth ? j.ntt : nth));
    if (atomic_load(&j.failed)) return hf_fail(HF_ENOMEM, "sparse_gemm(avx2): out of memory for scratch");
    j.chunk = CHUNK_BYTES / j.tstride;
    if (j.chunk < 1) j.chunk = 1;
    if (j.chunk > j.ntt) j.chunk = j.ntt;
    j.tg = 4;
    if (w->ntiles < j.tg * 8 * (int64_t)nth) j.tg = 1;
    j.ngt = (w->ntiles + j.tg - 1) / j.tg;
    while (j.chunk > 1 && ((j.ntt + j.chunk - 1) / j.chunk) * j.ngt < 8 * (int64_t)nth) j.chunk = (j.chunk + 1) / 2;
    j.nunits = ((j.ntt + j.chunk - 1) / j.chunk) * j.ngt;
    atomic_init(&j.next, 0);
    hf_parallel(compute_task, &j, nth);
    return HF_OK;
}

const hf_sparse_kernel hf_sparse_avx2 = {avx2_pack, avx2_gemm};
