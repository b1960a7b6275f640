/* Block-sparse u8 x s8 -> s32 GEMM with AVX-512 VNNI (vpdpbusd: exact, no saturation).
 *
 * Activations are packed once per call into token tiles of 16 rows (sparse_act_pack.h, u8):
 *   4x1: X[k][16 tokens] u8             (16 bytes per k)
 *   1x4: X[k/4][16 tokens][4] u8        (64 bytes per block column: one zmm)
 * Packed weight = int64 ptr[R+1] followed by records:
 *   4x1 (Intel's kernel): R = ceil(N/4) groups; the kept input channels of a group are taken four
 *        at a time (ka..kd, padded with zero-weight copies of the last): record {uint8 deltas ka - k_prev,
 *        kb - ka, kc - kb, kd - kc (k_prev: kd of the group's previous record, 0 at its start), int32 w[4] =
 *        (W[n][ka], W[n][kb], W[n][kc], W[n][kd]) bytes of each row} = 20 bytes per 16 weights. A gap over 255
 *        closes the open record and emits filler records {255, 0, 0, 0} with zero weights. (int32 byte offsets
 *        made a record 32 bytes: the packed 80%-sparse DistilBERT then outgrew the share of L3 this VM gets, and
 *        records streamed from DRAM ran the loop at half rate; uint16 channels made it 24.) The 4 activation rows are gathered and interleaved into one zmm (16 tokens x 4 k)
 *        that feeds 4 vpdpbusd (one per output row, broadcast weight word).
 *        4x4-structured groups (every kept channel in a full, aligned quad 4j..4j+3: weights pruned in 4x4 tiles, or
 *        in any shape made of them) are written as quad records instead: {uint8 k0 - k0_prev, 1, 1, 1; the same
 *        int32 w[4]} (k0_prev: the previous record's k0; gaps over 255 as {255, 0, 0, 0} fillers with zero weights), and
 *        the data ends with {int64 quad groups; uint8 flag[R]}. Their activations are interleaved once per token tile
 *        (quadify: X4[k0 / 4][4 x 16 tokens][4 channels], 8 unpacks per 4 channels), so a quad record is 4 loads and 16
 *        vpdpbusd with no unpack in the loop. On Intel the 8 unpacks of a general record share port 5 with half of its
 *        16 vpdpbusd and bound the loop at ~2/3 of the VNNI peak (benchmarks/record_loop_harness.c); quads lift that.
 *   1x4: R = N rows; record {int32 byte offset, int32 the 4 weights} = 8 bytes per 4 weights; one
 *        vpdpbusd per block, 4 independent accumulators.
 * Threading is as in the AVX2 kernel; tiles are written by hf_tile_store_avx512 (GELU on 16 lanes).
 */
#include <immintrin.h>
#include <stdatomic.h>
#include <string.h>

#include "x86.h"
#include "sparse_act_pack.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")))
#define INL static inline __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma"), always_inline))
#define CHUNK_BYTES (192 * 1024)
#define TILE_T 64 /* tokens per 4x1 activation tile */
#define STREAM_BYTES (2 << 20) /* the L2 of a core is 1 MB here (Zen 4), 2 MB on Zen 5 */

typedef struct {
    uint8_t dk[4]; /* input channels as deltas; the activation row of channel k is X + k * TILE_T */
    int32_t w[4];
} quad4x1;
typedef struct {
    int32_t off, w;
} blk1x4;

static inline int32_t pack8x4(int8_t a, int8_t b, int8_t c, int8_t d) {
    return (int32_t)((uint32_t)(uint8_t)a | ((uint32_t)(uint8_t)b << 8) | ((uint32_t)(uint8_t)c << 16) |
                     ((uint32_t)(uint8_t)d << 24));
}

/* Writes (or with q == NULL only counts) the delta-coded records of one 4x1 group. */
typedef struct {
    quad4x1 *q;
    int64_t n, prev; /* records so far; channel of the last entry */
    int fill;        /* entries in the open record */
    uint8_t dk[4];
    int8_t v[4][4];  /* [row][entry] */
} rec_writer;

static void rw_flush(rec_writer *rw) {
    if (!rw->fill) return;
    for (int e = rw->fill; e < 4; e++) { /* padding: the last channel again (delta 0), zero weights */
        rw->dk[e] = 0;
        for (int r = 0; r < 4; r++) rw->v[r][e] = 0;
    }
    if (rw->q) {
        memcpy(rw->q[rw->n].dk, rw->dk, 4);
        for (int r = 0; r < 4; r++) rw->q[rw->n].w[r] = pack8x4(rw->v[r][0], rw->v[r][1], rw->v[r][2], rw->v[r][3]);
    }
    rw->n++;
    rw->fill = 0;
}

static void rw_add(rec_writer *rw, int64_t k, const int8_t w4[4]) {
    if (k - rw->prev > 255) {
        rw_flush(rw);
        while (k - rw->prev > 255) { /* filler: every entry at prev + 255 (< k <= K - 1), zero weights */
            if (rw->q) {
                memset(&rw->q[rw->n], 0, sizeof(quad4x1));
                rw->q[rw->n].dk[0] = 255;
            }
            rw->n++;
            rw->prev += 255;
        }
    }
    rw->dk[rw->fill] = (uint8_t)(k - rw->prev);
    for (int r = 0; r < 4; r++) rw->v[r][rw->fill] = w4[r];
    rw->prev = k;
    if (++rw->fill == 4) rw_flush(rw);
}

/* The records of group g (output channels 4g .. 4g+3, kept input channels cols[0 .. cnt), ascending). */
static int64_t group_records(const int32_t *cols, int64_t cnt, const int8_t *W, int64_t ldw, int64_t N, int64_t K,
                             int64_t g, quad4x1 *q) {
    rec_writer rw;
    memset(&rw, 0, sizeof rw);
    rw.q = q;
    for (int64_t j = 0; j < cnt; j++) {
        int8_t w4[4];
        for (int r = 0; r < 4; r++) w4[r] = hf_w_at(W, ldw, N, K, g * 4 + r, cols[j]);
        rw_add(&rw, cols[j], w4);
    }
    rw_flush(&rw);
    return rw.n;
}

/* A group is quad-structured when its kept channels are whole aligned quads 4j..4j+3 (and it has some). */
static int is_quad_group(const int32_t *cols, int64_t cnt) {
    if (cnt == 0 || cnt % 4) return 0;
    for (int64_t j = 0; j < cnt; j += 4)
        if (cols[j] % 4 || cols[j + 1] != cols[j] + 1 || cols[j + 2] != cols[j] + 2 || cols[j + 3] != cols[j] + 3) return 0;
    return 1;
}

/* Writes (or with q == NULL only counts) the quad records of a quad-structured group g. */
static int64_t quad_records(const int32_t *cols, int64_t cnt, const int8_t *W, int64_t ldw, int64_t N, int64_t K,
                            int64_t g, quad4x1 *q) {
    int64_t n = 0, prev = 0;
    for (int64_t j = 0; j < cnt; j += 4) {
        const int64_t k0 = cols[j];
        while (k0 - prev > 255) { /* filler: k advances 255 (k stays < k0 <= K - 4, so its 4 loads are in bounds) */
            if (q) {
                memset(&q[n], 0, sizeof(quad4x1));
                q[n].dk[0] = 255;
            }
            n++;
            prev += 255;
        }
        if (q) {
            const uint8_t dk[4] = {(uint8_t)(k0 - prev), 1, 1, 1};
            memcpy(q[n].dk, dk, 4);
            for (int r = 0; r < 4; r++)
                q[n].w[r] = pack8x4(hf_w_at(W, ldw, N, K, g * 4 + r, k0), hf_w_at(W, ldw, N, K, g * 4 + r, k0 + 1),
                                    hf_w_at(W, ldw, N, K, g * 4 + r, k0 + 2), hf_w_at(W, ldw, N, K, g * 4 + r, k0 + 3));
        }
        n++;
        prev = k0;
    }
    return n;
}

/* Writes (or with q == NULL only counts) the records of group g: quad records when `quad` (is_quad_group). */
static int64_t records_of(int quad, const int32_t *cols, int64_t cnt, const int8_t *W, int64_t ldw, int64_t N,
                          int64_t K, int64_t g, quad4x1 *q) {
    return quad ? quad_records(cols, cnt, W, ldw, N, K, g, q) : group_records(cols, cnt, W, ldw, N, K, g, q);
}

static int64_t nrec_rows(const struct hf_sparse_w *w) { return w->br == 4 ? (w->N + 3) / 4 : w->N; }

/* 4x1: the number of quad groups and their flags (stored after the records). */
static const uint8_t *quad_flags(const struct hf_sparse_w *w, int64_t *nquad) {
    const int64_t R = nrec_rows(w), *ptr = (const int64_t *)w->data;
    const uint8_t *p = (const uint8_t *)((const quad4x1 *)(ptr + R + 1) + ptr[R]);
    memcpy(nquad, p, sizeof *nquad);
    return p + sizeof *nquad;
}

/* hf_sparse_quad_groups: 0 for 1x4 (no flags) */
static int64_t vnni_quad_groups(const struct hf_sparse_w *w) {
    int64_t nquad = 0;
    if (w->br == 4) quad_flags(w, &nquad);
    return nquad;
}

static int vnni_pack(struct hf_sparse_w *w, const int8_t *W, int64_t ldw, const int64_t *rowptr, const int32_t *cols) {
    const int64_t R = nrec_rows(w), N = w->N, K = w->K;
    int64_t nrec = 0, recsz, bytes;
    int64_t *ptr;
    if (w->br == 4)
        for (int64_t g = 0; g < R; g++) {
            const int32_t *c = cols + rowptr[g];
            const int64_t cnt = rowptr[g + 1] - rowptr[g];
            nrec += records_of(is_quad_group(c, cnt), c, cnt, W, ldw, N, K, g, NULL);
        }
    else
        nrec = w->kept;
    recsz = w->br == 4 ? (int64_t)sizeof(quad4x1) : (int64_t)sizeof(blk1x4);
    bytes = (R + 1) * 8 + nrec * recsz + (w->br == 4 ? 8 + R : 0);
    w->data = hf_alloc((size_t)bytes);
    if (!w->data) return hf_fail(HF_ENOMEM, "sparse_pack(avx512vnni): out of memory for %lld bytes", (long long)bytes);
    w->nbytes = bytes;
    ptr = (int64_t *)w->data;
    if (w->br == 4) {
        quad4x1 *q = (quad4x1 *)(ptr + R + 1);
        uint8_t *flag = (uint8_t *)(q + nrec) + 8;
        int64_t i = 0, nquad = 0;
        for (int64_t g = 0; g < R; g++) {
            const int32_t *c = cols + rowptr[g];
            const int64_t cnt = rowptr[g + 1] - rowptr[g];
            ptr[g] = i;
            flag[g] = (uint8_t)is_quad_group(c, cnt);
            nquad += flag[g];
            i += records_of(flag[g], c, cnt, W, ldw, N, K, g, q + i);
        }
        ptr[R] = i;
        memcpy(q + nrec, &nquad, sizeof nquad);
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
                b[i].off = (int32_t)(kb * 64);
                b[i].w = pack8x4(hf_w_at(W, ldw, N, K, n, k0), hf_w_at(W, ldw, N, K, n, k0 + 1),
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

/* ---- 4x1, 64-token tiles ----
 * Activations: X[k][64] u8 per 64-token tile, tokens permuted inside each 64-byte row so that the
 * in-lane byte/word unpacks of 4 rows (ka..kd) give 4 zmm whose 16 dwords are tokens 16j..16j+15 in
 * order (position 16a + 4b + i holds token 16b + 4a + i). One quad = 4 loads + 6 unpacks feeding 16
 * vpdpbusd (4 channels x 64 tokens, weights as embedded broadcasts). */

/* acc += x (u8) . broadcast(*wp) (s8); inline asm keeps the accumulator in one register */
#define DPB(acc, x, wp) __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(x), "m"(*(const int32_t *)(wp)))
#define DPR(acc, x, w) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w))

static TGT void pack64(int mt, int64_t K, const uint8_t *A, int64_t lda, uint8_t *rows, uint8_t *dst) {
    const int64_t K16 = hf_round16(K);
    const __m512i perm = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const int nj = (mt + 15) / 16; /* chunks of 16 tokens holding data */
    /* a full tile with K % 16 == 0 is read in place; otherwise through rows (zero padded to K16 and to nj * 16 rows) */
    const uint8_t *src = A;
    int64_t ld = lda;
    if (mt < TILE_T || K != K16) {
        hf_copy_rows(nj * 16, mt, K, A, lda, rows);
        src = rows;
        ld = K16;
    }
    for (int64_t k = 0; k < K16; k += 16) {
        /* r[t], 128-bit lane j: bytes k..k+15 of token 16 j + t; four rounds of in-lane byte unpacks transpose the
         * four 16 x 16 blocks at once (the xmm version did one block a time: ~430 operations per 1 KB, now ~160) */
        __m512i r[16], o[16];
        for (int t = 0; t < 16; t++) {
            __m512i v = _mm512_zextsi128_si512(_mm_loadu_si128((const __m128i *)(src + t * ld + k)));
            if (nj > 1) v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(src + (16 + t) * ld + k)), 1);
            if (nj > 2) v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(src + (32 + t) * ld + k)), 2);
            if (nj > 3) v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(src + (48 + t) * ld + k)), 3);
            r[t] = v;
        }
        for (int s = 0; s < 4; s++) {
            for (int i = 0; i < 8; i++) {
                o[2 * i] = _mm512_unpacklo_epi8(r[i], r[i + 8]);
                o[2 * i + 1] = _mm512_unpackhi_epi8(r[i], r[i + 8]);
            }
            memcpy(r, o, sizeof r);
        }
        /* r[c], lane j: tokens 16 j .. 16 j + 15 of channel k + c; the dword permutation gives the GEMM's token order */
        for (int c = 0; c < 16; c++) _mm512_store_si512((void *)(dst + (k + c) * TILE_T), _mm512_permutexvar_epi32(perm, r[c]));
    }
}

/* The 16 accumulators of a group call (4 channels x 4 chunks of 16 tokens), started at z[channel]: pinned to
 * zmm16-31 (local register variables, used only as asm operands; GCC otherwise shuffles some of them through
 * temporaries every record). STORE16_TO writes the J chunks that hold tokens into out[4][64]. */
#define ACC16_FROM(z)                                                                                                \
    register __m512i a00 __asm__("zmm16") = _mm512_set1_epi32((z)[0]), a01 __asm__("zmm17") = a00;                 \
    register __m512i a02 __asm__("zmm18") = a00, a03 __asm__("zmm19") = a00;                                       \
    register __m512i a10 __asm__("zmm20") = _mm512_set1_epi32((z)[1]), a11 __asm__("zmm21") = a10;                 \
    register __m512i a12 __asm__("zmm22") = a10, a13 __asm__("zmm23") = a10;                                       \
    register __m512i a20 __asm__("zmm24") = _mm512_set1_epi32((z)[2]), a21 __asm__("zmm25") = a20;                 \
    register __m512i a22 __asm__("zmm26") = a20, a23 __asm__("zmm27") = a20;                                       \
    register __m512i a30 __asm__("zmm28") = _mm512_set1_epi32((z)[3]), a31 __asm__("zmm29") = a30;                 \
    register __m512i a32 __asm__("zmm30") = a30, a33 __asm__("zmm31") = a30
#define ST1(out, J, rr, j, v) if ((j) < (J)) _mm512_store_si512((void *)((out) + (rr) * 64 + (j) * 16), v)
#define STORE16_TO(out, J)                                                                                           \
    do {                                                                                                             \
        ST1(out, J, 0, 0, a00); ST1(out, J, 0, 1, a01); ST1(out, J, 0, 2, a02); ST1(out, J, 0, 3, a03);            \
        ST1(out, J, 1, 0, a10); ST1(out, J, 1, 1, a11); ST1(out, J, 1, 2, a12); ST1(out, J, 1, 3, a13);            \
        ST1(out, J, 2, 0, a20); ST1(out, J, 2, 1, a21); ST1(out, J, 2, 2, a22); ST1(out, J, 2, 3, a23);            \
        ST1(out, J, 3, 0, a30); ST1(out, J, 3, 1, a31); ST1(out, J, 3, 2, a32); ST1(out, J, 3, 3, a33);            \
    } while (0)

/* 4 channels x (16 J) tokens of one group into out[4][64] (channel-major), each channel's sums started at z[r]
 * (the epilogue's -a_zp * colsum[n], so the strip stores need no subtraction; 0 for raw int32 output). */
INL void group64(const quad4x1 *q, int64_t nq, const char *X, const int J, const int32_t *z, int32_t *out) {
    ACC16_FROM(z);
    size_t k = 0; /* channel of the previous entry */
    for (int64_t i = 0; i < nq; i++) {
        const quad4x1 *r = q + i;
        uint32_t d;
        memcpy(&d, r->dk, 4);
        const size_t k0 = k + (d & 255u), k1 = k0 + ((d >> 8) & 255u), k2 = k1 + ((d >> 16) & 255u), k3 = k2 + (d >> 24);
        k = k3;
        /* the 4 weight words broadcast once (4 loads) instead of as 16 embedded-broadcast operands:
         * 512-bit loads, not vpdpbusd, were the limit (4 + 16 per record) */
        const __m512i w0 = _mm512_set1_epi32(r->w[0]), w1 = _mm512_set1_epi32(r->w[1]);
        const __m512i w2 = _mm512_set1_epi32(r->w[2]), w3 = _mm512_set1_epi32(r->w[3]);
        const __m512i ka = _mm512_load_si512((const void *)(X + k0 * TILE_T));
        const __m512i kb = _mm512_load_si512((const void *)(X + k1 * TILE_T));
        const __m512i kc = _mm512_load_si512((const void *)(X + k2 * TILE_T));
        const __m512i kd = _mm512_load_si512((const void *)(X + k3 * TILE_T));
        const __m512i ab0 = _mm512_unpacklo_epi8(ka, kb), cd0 = _mm512_unpacklo_epi8(kc, kd);
        const __m512i x0 = _mm512_unpacklo_epi16(ab0, cd0);
        DPR(a00, x0, w0); DPR(a10, x0, w1); DPR(a20, x0, w2); DPR(a30, x0, w3);
        if (J > 1) {
            const __m512i x1 = _mm512_unpackhi_epi16(ab0, cd0);
            DPR(a01, x1, w0); DPR(a11, x1, w1); DPR(a21, x1, w2); DPR(a31, x1, w3);
        }
        if (J > 2) {
            const __m512i ab1 = _mm512_unpackhi_epi8(ka, kb), cd1 = _mm512_unpackhi_epi8(kc, kd);
            const __m512i x2 = _mm512_unpacklo_epi16(ab1, cd1);
            DPR(a02, x2, w0); DPR(a12, x2, w1); DPR(a22, x2, w2); DPR(a32, x2, w3);
            if (J > 3) {
                const __m512i x3 = _mm512_unpackhi_epi16(ab1, cd1);
                DPR(a03, x3, w0); DPR(a13, x3, w1); DPR(a23, x3, w2); DPR(a33, x3, w3);
            }
        }
    }
    STORE16_TO(out, J);
}

/* A quad-structured group: as group64, with each record's 4 channels read already interleaved from X4 (quadify). */
INL void quad64(const quad4x1 *q, int64_t nq, const char *X4, const int J, const int32_t *z, int32_t *out) {
    ACC16_FROM(z);
    size_t k = 0; /* k0 of the previous record */
    for (int64_t i = 0; i < nq; i++) {
        const quad4x1 *r = q + i;
        k += r->dk[0];
        const char *x = X4 + k * 64; /* = X4 + (k / 4) * 256: the 4 chunks of 16 tokens of quad k / 4 */
        const __m512i w0 = _mm512_set1_epi32(r->w[0]), w1 = _mm512_set1_epi32(r->w[1]);
        const __m512i w2 = _mm512_set1_epi32(r->w[2]), w3 = _mm512_set1_epi32(r->w[3]);
        const __m512i x0 = _mm512_load_si512((const void *)x);
        DPR(a00, x0, w0); DPR(a10, x0, w1); DPR(a20, x0, w2); DPR(a30, x0, w3);
        if (J > 1) {
            const __m512i x1 = _mm512_load_si512((const void *)(x + 64));
            DPR(a01, x1, w0); DPR(a11, x1, w1); DPR(a21, x1, w2); DPR(a31, x1, w3);
        }
        if (J > 2) {
            const __m512i x2 = _mm512_load_si512((const void *)(x + 128));
            DPR(a02, x2, w0); DPR(a12, x2, w1); DPR(a22, x2, w2); DPR(a32, x2, w3);
        }
        if (J > 3) {
            const __m512i x3 = _mm512_load_si512((const void *)(x + 192));
            DPR(a03, x3, w0); DPR(a13, x3, w1); DPR(a23, x3, w2); DPR(a33, x3, w3);
        }
    }
    STORE16_TO(out, J);
}

static TGT void quad64_j(const quad4x1 *q, int64_t nq, const char *X4, int J, const int32_t *z, int32_t *out) {
    switch (J) {
    case 1: quad64(q, nq, X4, 1, z, out); break;
    case 2: quad64(q, nq, X4, 2, z, out); break;
    case 3: quad64(q, nq, X4, 3, z, out); break;
    default: quad64(q, nq, X4, 4, z, out); break;
    }
}

/* X4 of one token tile from its pack64 rows: for each quad of channels, the 4 zmm that group64's unpacks would make
 * (16 tokens x 4 channels each, tokens in order), stored at X4 + k0 * 64. */
static TGT void quadify(const char *X, int64_t K16, char *X4) {
    for (int64_t k0 = 0; k0 < K16; k0 += 4) {
        const __m512i ka = _mm512_load_si512((const void *)(X + k0 * TILE_T));
        const __m512i kb = _mm512_load_si512((const void *)(X + (k0 + 1) * TILE_T));
        const __m512i kc = _mm512_load_si512((const void *)(X + (k0 + 2) * TILE_T));
        const __m512i kd = _mm512_load_si512((const void *)(X + (k0 + 3) * TILE_T));
        const __m512i ab0 = _mm512_unpacklo_epi8(ka, kb), cd0 = _mm512_unpacklo_epi8(kc, kd);
        const __m512i ab1 = _mm512_unpackhi_epi8(ka, kb), cd1 = _mm512_unpackhi_epi8(kc, kd);
        char *d = X4 + k0 * 64;
        _mm512_store_si512((void *)d, _mm512_unpacklo_epi16(ab0, cd0));
        _mm512_store_si512((void *)(d + 64), _mm512_unpackhi_epi16(ab0, cd0));
        _mm512_store_si512((void *)(d + 128), _mm512_unpacklo_epi16(ab1, cd1));
        _mm512_store_si512((void *)(d + 192), _mm512_unpackhi_epi16(ab1, cd1));
    }
}

static TGT void group64_j(const quad4x1 *q, int64_t nq, const char *X, int J, const int32_t *z, int32_t *out) {
    switch (J) {
    case 1: group64(q, nq, X, 1, z, out); break;
    case 2: group64(q, nq, X, 2, z, out); break;
    case 3: group64(q, nq, X, 3, z, out); break;
    default: group64(q, nq, X, 4, z, out); break;
    }
}

/* One output channel x 16 tokens: 4 accumulators hide vpdpbusd's latency. */
INL void row1x4(const blk1x4 *b, int64_t nb, const char *X, int32_t *tile) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        a0 = _mm512_dpbusd_epi32(a0, _mm512_load_si512((const void *)(X + b[i].off)), _mm512_set1_epi32(b[i].w));
        a1 = _mm512_dpbusd_epi32(a1, _mm512_load_si512((const void *)(X + b[i + 1].off)), _mm512_set1_epi32(b[i + 1].w));
        a2 = _mm512_dpbusd_epi32(a2, _mm512_load_si512((const void *)(X + b[i + 2].off)), _mm512_set1_epi32(b[i + 2].w));
        a3 = _mm512_dpbusd_epi32(a3, _mm512_load_si512((const void *)(X + b[i + 3].off)), _mm512_set1_epi32(b[i + 3].w));
    }
    for (; i < nb; i++)
        a0 = _mm512_dpbusd_epi32(a0, _mm512_load_si512((const void *)(X + b[i].off)), _mm512_set1_epi32(b[i].w));
    _mm512_store_si512((void *)tile, _mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)));
}

typedef struct {
    const struct hf_sparse_w *w;
    int64_t M, lda, ldc;
    const uint8_t *A;
    void *C;
    const hf_epilogue *ep;
    char *X, *X4; /* X4: interleaved quads of each tile (quadify), only when the weight has quad groups */
    int64_t tstride, ntt;
    int64_t chunk, tg, ngt, nunits; /* token tiles per chunk, channel tiles per unit */
    atomic_int failed;
    int nr;                     /* ranges of units and of token tiles (hf_ranges_claim) */
    hf_range units[HF_MAX_RANGES], tiles[HF_MAX_RANGES];
} job_t;

static TGT void pack_task(void *ctx, int tid, int nth) {
    job_t *j = (job_t *)ctx;
    const int64_t K = j->w->K;
    uint8_t *rows;
    (void)nth;
    rows = (uint8_t *)hf_scratch(1, (size_t)((j->w->br == 4 ? TILE_T : 16) * hf_round16(K)));
    if (!rows) {
        atomic_store(&j->failed, 1);
        return;
    }
    for (int64_t t; hf_ranges_claim(j->tiles, j->nr, tid, &t);) {
        const int64_t tt = j->w->br == 4 ? TILE_T : 16, m0 = t * tt;
        const int mt = j->M - m0 < tt ? (int)(j->M - m0) : (int)tt;
        if (j->w->br == 4) {
            pack64(mt, K, j->A + m0 * j->lda, j->lda, rows, (uint8_t *)j->X + t * j->tstride);
            if (j->X4) quadify(j->X + t * j->tstride, hf_round16(K), j->X4 + t * j->tstride);
        } else {
            hf_pack_dw(mt, K, j->A + m0 * j->lda, j->lda, rows, j->X + t * j->tstride, 0);
        }
    }
}

/* packed activations (an epilogue wrote X): only the quads are made here */
static TGT void quadify_task(void *ctx, int tid, int nth) {
    job_t *j = (job_t *)ctx;
    (void)nth;
    for (int64_t t; hf_ranges_claim(j->tiles, j->nr, tid, &t);)
        quadify(j->X + t * j->tstride, hf_round16(j->w->K), j->X4 + t * j->tstride);
}

/* 4x1: units of (token chunk, TG strips of 16 channels); a strip is 4 groups computed into a
 * channel-major int32 tile [16][64], then transposed and stored through the 16-lane epilogue. */
static TGT void compute4x1_task(void *ctx, int tid, int nth) {
    job_t *j = (job_t *)ctx;
    const struct hf_sparse_w *w = j->w;
    const int64_t R = nrec_rows(w), N = w->N, nstrips = (N + 15) / 16;
    const int64_t *ptr = (const int64_t *)w->data;
    const quad4x1 *q = (const quad4x1 *)(ptr + R + 1);
    int64_t nquad;
    const uint8_t *quad = quad_flags(w, &nquad);
    int32_t tile[16 * TILE_T] __attribute__((aligned(64)));
    /* the sums start at -a_zp * colsum[n] (wrapping, as the epilogue's subtraction was), the strip stores' contract;
     * raw int32 output starts at 0 */
    const int zstart = j->ep->f32 != HF_EPI_S32;
    (void)nth;
    memset(tile, 0, sizeof tile); /* rows of groups past N stay zero (masked out by the store) */
    int64_t u;
    while (hf_ranges_claim(j->units, j->nr, tid, &u)) {
        const int64_t c0 = (u / j->ngt) * j->chunk, c1 = c0 + j->chunk < j->ntt ? c0 + j->chunk : j->ntt;
        const int64_t s0 = (u % j->ngt) * j->tg, s1 = s0 + j->tg < nstrips ? s0 + j->tg : nstrips;
        for (int64_t st = s0; st < s1; st++) {
            const int64_t n0 = st * 16;
            const int nr = N - n0 < 16 ? (int)(N - n0) : 16;
            for (int64_t mt = c0; mt < c1; mt++) {
                const char *X = j->X + mt * j->tstride;
                const int64_t m0 = mt * TILE_T;
                const int nt = j->M - m0 < TILE_T ? (int)(j->M - m0) : TILE_T;
                const int J = (nt + 15) / 16;
                for (int g = 0; g < 4; g++) {
                    const int64_t G = 4 * st + g;
                    if (G >= R) continue;
                    int32_t z[4] = {0, 0, 0, 0};
                    for (int r = 0; zstart && r < 4 && 4 * G + r < N; r++)
                        z[r] = (int32_t)(0u - (uint32_t)j->ep->a_zp * (uint32_t)j->ep->colsum[4 * G + r]);
                    if (quad[G])
                        quad64_j(q + ptr[G], ptr[G + 1] - ptr[G], j->X4 + mt * j->tstride, J, z, tile + g * 4 * TILE_T);
                    else
                        group64_j(q + ptr[G], ptr[G + 1] - ptr[G], X, J, z, tile + g * 4 * TILE_T);
                }
                if (j->ep->pack_ld)
                    hf_strip_store_packed_avx512(j->ep, tile, TILE_T, nr, nt, n0, (uint8_t *)j->C + mt * j->ep->pack_ld);
                else
                    hf_strip_store_avx512(j->ep, tile, TILE_T, nr, nt, m0, n0, j->C, j->ldc);
            }
        }
    }
    if (j->ep->stream) _mm_sfence(); /* the non-temporal stores are visible before the join */
}

static TGT void compute1x4_task(void *ctx, int tid, int nth) {
    job_t *j = (job_t *)ctx;
    const struct hf_sparse_w *w = j->w;
    const int64_t R = nrec_rows(w), N = w->N;
    const int64_t *ptr = (const int64_t *)w->data;
    const blk1x4 *b = (const blk1x4 *)(ptr + R + 1);
    int32_t tile[8 * 16] __attribute__((aligned(64)));
    (void)nth;
    /* dynamic schedule: units of (token chunk, TG channel tiles) claimed with affinity (hf_ranges_claim), so a
     * descheduled thread does not hold the others back; each tile's result is independent of who computes it */
    for (int64_t u; hf_ranges_claim(j->units, j->nr, tid, &u);) {
        const int64_t c0 = (u / j->ngt) * j->chunk, c1 = c0 + j->chunk < j->ntt ? c0 + j->chunk : j->ntt;
        const int64_t t0 = (u % j->ngt) * j->tg, t1 = t0 + j->tg < w->ntiles ? t0 + j->tg : w->ntiles;
        for (int64_t t = t0; t < t1; t++) {
            const int64_t n0 = t * 8;
            const int nr = N - n0 < 8 ? (int)(N - n0) : 8;
            for (int64_t mt = c0; mt < c1; mt++) {
                const char *X = j->X + mt * j->tstride;
                const int64_t m0 = mt * 16;
                const int nt = j->M - m0 < 16 ? (int)(j->M - m0) : 16;
                for (int r = 0; r < nr; r++) row1x4(b + ptr[n0 + r], ptr[n0 + r + 1] - ptr[n0 + r], X, tile + r * 16);
                hf_tile_store_avx512(j->ep, tile, nr, nt, m0, n0, j->C, j->ldc);
            }
        }
    }
}

/* packed: A is already in the activation layout (vnni_gemm_packed), else it is packed here */
static int vnni_run(const struct hf_sparse_w *w, int64_t M, const uint8_t *A, int64_t lda, int packed, void *C,
                    int64_t ldc, const hf_epilogue *ep) {
    job_t j;
    int nth = hf_get_num_threads();
    memset(&j, 0, sizeof j);
    j.w = w;
    j.M = M;
    j.A = A;
    j.lda = lda;
    j.C = C;
    j.ldc = ldc;
    hf_epilogue eps = *ep;
    /* raw int32 output larger than the L2 share of a core: stream it (an RFO per line cost a third of the
     * GEMM at M=1024, N=3072) */
    eps.stream = ep->f32 == HF_EPI_S32 && M * ldc * (int64_t)sizeof(int32_t) >= STREAM_BYTES && !(ldc & 15);
    j.ep = &eps;
    const int64_t tt = w->br == 4 ? TILE_T : 16;
    j.ntt = (M + tt - 1) / tt;
    j.tstride = hf_round16(w->K) * tt;
    j.chunk = CHUNK_BYTES / j.tstride;
    if (j.chunk < 1) j.chunk = 1;
    if (j.chunk > j.ntt) j.chunk = j.ntt;
    const int64_t ncol = w->br == 4 ? (w->N + 15) / 16 : w->ntiles; /* 16-channel strips / 8-channel tiles */
    /* wide units (8 strips / tiles = 128 / 64 channels): with 2-strip units two threads kept writing the same
     * output lines and the 2-thread GEMM ran slower than 1 thread below M ~ 1024 tokens (M=128, 3072x768, 80%:
     * 0.33 ms -> 0.61 ms; with 8-strip units 0.32 -> 0.23 ms, measured in isolation) */
    j.tg = 8;
    if (ncol < j.tg * 8 * (int64_t)nth) j.tg = 4;
    j.ngt = (ncol + j.tg - 1) / j.tg;
    while (j.chunk > 1 && ((j.ntt + j.chunk - 1) / j.chunk) * j.ngt < 8 * (int64_t)nth) j.chunk = (j.chunk + 1) / 2;
    j.nunits = ((j.ntt + j.chunk - 1) / j.chunk) * j.ngt;
    if (vnni_quad_groups(w)) {
        j.X4 = (char *)hf_scratch(HF_SCRATCH_SPARSE_X4, (size_t)(j.ntt * j.tstride));
        if (!j.X4) return hf_fail(HF_ENOMEM, "sparse_gemm(avx512vnni): out of memory for activations");
    }
    if (packed) {
        j.X = (char *)A;
        if (j.X4) {
            j.nr = hf_ranges_init(j.tiles, nth, j.ntt);
            hf_parallel(quadify_task, &j, (int)(j.ntt < nth ? j.ntt : nth));
        }
    } else {
        j.X = (char *)hf_scratch(0, (size_t)(j.ntt * j.tstride));
        if (!j.X) return hf_fail(HF_ENOMEM, "sparse_gemm(avx512vnni): out of memory for activations");
        atomic_init(&j.failed, 0);
        if (nth == 1 && w->br == 4) {
            /* one thread: pack each chunk of token tiles just before its units (units are chunk-major), so the
             * tiles are read back from L2, not from L3 after the whole activation matrix was packed */
            for (int64_t c0 = 0, u0 = 0; c0 < j.ntt; c0 += j.chunk, u0 += j.ngt) {
                j.nr = 1;
                atomic_init(&j.tiles[0].next, c0);
                j.tiles[0].end = c0 + j.chunk < j.ntt ? c0 + j.chunk : j.ntt;
                pack_task(&j, 0, 1);
                if (atomic_load(&j.failed))
                    return hf_fail(HF_ENOMEM, "sparse_gemm(avx512vnni): out of memory for scratch");
                atomic_init(&j.units[0].next, u0);
                j.units[0].end = u0 + j.ngt;
                compute4x1_task(&j, 0, 1);
            }
            return HF_OK;
        }
        j.nr = hf_ranges_init(j.tiles, nth, j.ntt);
        hf_parallel(pack_task, &j, (int)(j.ntt < nth ? j.ntt : nth));
        if (atomic_load(&j.failed)) return hf_fail(HF_ENOMEM, "sparse_gemm(avx512vnni): out of memory for scratch");
    }
    j.nr = hf_ranges_init(j.units, nth, j.nunits);
    hf_parallel(w->br == 4 ? compute4x1_task : compute1x4_task, &j, nth);
    return HF_OK;
}

static int vnni_gemm(const struct hf_sparse_w *w, int64_t M, const uint8_t *A, int64_t lda, void *C, int64_t ldc,
                     const hf_epilogue *ep) {
    return vnni_run(w, M, A, lda, 0, C, ldc, ep);
}

/* 4x1 only: A holds hf_packed_act_bytes(M, K) bytes of packed activations (an epilogue with pack_ld wrote them) */
static int vnni_gemm_packed(const struct hf_sparse_w *w, int64_t M, const uint8_t *A, int64_t lda, void *C,
                            int64_t ldc, const hf_epilogue *ep) {
    if (w->br != 4) return hf_fail(HF_EINVAL, "sparse_gemm(avx512vnni): packed activations need 4x1 blocks");
    return vnni_run(w, M, A, lda, 1, C, ldc, ep);
}

const hf_sparse_kernel hf_sparse_avx512vnni = {vnni_pack, vnni_gemm, vnni_gemm_packed, vnni_quad_groups};
