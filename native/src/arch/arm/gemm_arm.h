/* The aarch64 int8 GEMM kernels, one template for the three ISA levels (kernels_<level>.c define, then include):
 *   LVL          the level's name (neon, dotprod, i8mm)
 *   ARM_XOR      0x80 when the level multiplies s8 x s8 (SDOT): activations are stored a ^ 0x80 = a - 128 as s8 and
 *                the sums get + 128 * wsum[n] back, exact in int32; 0 when u8 x s8 is native (USDOT / SUDOT, NEON)
 *   DOT_AFULL(acc, a, w, lane)  acc[i] += dot(a's 4 bytes i (u8 or shifted), w's 4 bytes `lane` (s8))
 *   DOT_WFULL(acc, w, a, lane)  acc[i] += dot(w's 4 bytes i (s8), a's 4 bytes `lane`) (dense kernel only)
 * Results are the exact int32 sums of the reference, so every level matches it bit for bit. */
#include <arm_neon.h>
#include <stdatomic.h>
#include <string.h>

#include "arm.h"

#define ARM_CAT2(a, b) a##_##b
#define ARM_CAT(a, b) ARM_CAT2(a, b)
#define ARM_FN(name) ARM_CAT(name, LVL)

/* ---- dense: 4 tokens x 8 channels per step; the 4 rows are copied (shifted, zero padded to 16 k) first. A level
 * with its own dense kernel (i8mm: USMMLA) defines ARM_NO_DOT_DENSE. ---- */
#ifndef ARM_NO_DOT_DENSE
int ARM_FN(hf_dense_gemm)(const struct hf_dense_w *w, int64_t M, const uint8_t *A, int64_t lda, int32_t *C,
                          int64_t ldc) {
    const int64_t N = w->N, K = w->K, KB = (K + 15) / 16, NT = (N + 7) / 8, rs = KB * 16;
    const int8_t *Wp = (const int8_t *)w->data;
    const int32_t *wsum = (const int32_t *)(Wp + NT * KB * 128);
    uint8_t *buf = (uint8_t *)hf_scratch(HF_SCRATCH_DENSE_A, (size_t)(4 * rs));
    if (!buf) return hf_fail(HF_ENOMEM, "dense_gemm(" "arm" "): out of memory");
    for (int64_t m0 = 0; m0 < M; m0 += 4) {
        const int mt = M - m0 < 4 ? (int)(M - m0) : 4;
        memset(buf, ARM_XOR, (size_t)(4 * rs));
        for (int t = 0; t < mt; t++) {
            const uint8_t *a = A + (m0 + t) * lda;
            for (int64_t k = 0; k < K; k++) buf[t * rs + k] = a[k] ^ ARM_XOR;
        }
        for (int64_t nt = 0; nt < NT; nt++) {
            const int8_t *wp = Wp + nt * KB * 128;
            int32x4_t c00 = vdupq_n_s32(0), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,
                      c31 = c00;
            for (int64_t kb = 0; kb < KB; kb++, wp += 128) {
                const uint8x16_t a0 = vld1q_u8(buf + kb * 16), a1 = vld1q_u8(buf + rs + kb * 16),
                                 a2 = vld1q_u8(buf + 2 * rs + kb * 16), a3 = vld1q_u8(buf + 3 * rs + kb * 16);
#define ARM_DSTEP(q)                                                                                                 \
    do {                                                                                                             \
        const int8x16_t w0 = vld1q_s8(wp + (q) * 32), w1 = vld1q_s8(wp + (q) * 32 + 16);                            \
        c00 = DOT_WFULL(c00, w0, a0, q);                                                                             \
        c01 = DOT_WFULL(c01, w1, a0, q);                                                                             \
        c10 = DOT_WFULL(c10, w0, a1, q);                                                                             \
        c11 = DOT_WFULL(c11, w1, a1, q);                                                                             \
        c20 = DOT_WFULL(c20, w0, a2, q);                                                                             \
        c21 = DOT_WFULL(c21, w1, a2, q);                                                                             \
        c30 = DOT_WFULL(c30, w0, a3, q);                                                                             \
        c31 = DOT_WFULL(c31, w1, a3, q);                                                                             \
    } while (0)
                ARM_DSTEP(0);
                ARM_DSTEP(1);
                ARM_DSTEP(2);
                ARM_DSTEP(3);
#undef ARM_DSTEP
            }
            int32x4_t cr[4][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}};
            int32x4_t k0 = vdupq_n_s32(0), k1 = k0;
            if (ARM_XOR) {
                k0 = vshlq_n_s32(vld1q_s32(wsum + nt * 8), 7);
                k1 = vshlq_n_s32(vld1q_s32(wsum + nt * 8 + 4), 7);
            }
            const int64_t n0 = nt * 8;
            for (int t = 0; t < mt; t++) {
                int32_t *c = C + (m0 + t) * ldc + n0;
                const int32x4_t lo = vaddq_s32(cr[t][0], k0), hi = vaddq_s32(cr[t][1], k1);
                if (n0 + 8 <= N) {
                    vst1q_s32(c, lo);
                    vst1q_s32(c + 4, hi);
                } else {
                    int32_t tmp[8];
                    vst1q_s32(tmp, lo);
                    vst1q_s32(tmp + 4, hi);
                    for (int64_t n = 0; n0 + n < N; n++) c[n] = tmp[n];
                }
            }
        }
    }
    return HF_OK;
}
#endif

/* ---- block-sparse: 16-token tiles claimed by the threads; a tile's activations are re-laid so one 16-byte load
 * gives 4 tokens' 4 bytes of a block (1x4: [k/4][token][k%4]) or one k for 16 tokens (4x1: [k][token]) ---- */
typedef struct {
    const struct hf_sparse_w *w;
    int64_t M, lda, ldc;
    const uint8_t *A;
    void *C;
    const hf_epilogue *ep;
    atomic_llong next;
    atomic_int rc;
} ARM_FN(sparse_job);

/* cm[c][16]: the sums of channels n0..n0+nc-1 for the tile's 16 tokens; + 128 * wsum (shifted levels), transposed to
 * token-major and through the NEON epilogue (4 channels of a token at a time) */
static void ARM_FN(sparse_store)(const ARM_FN(sparse_job) * j, const int32x4_t cm[4][4], const int32_t *wsum, int64_t n0,
                                 int nc, int64_t m0, int nt) {
    int32_t v[4][16], tile[16 * 4];
    for (int c = 0; c < 4; c++)
        for (int i = 0; i < 4; i++) vst1q_s32(v[c] + 4 * i, cm[c][i]);
    for (int c = 0; c < nc; c++) {
        const uint32_t k = ARM_XOR ? (uint32_t)wsum[n0 + c] << 7 : 0u;
        for (int t = 0; t < nt; t++) tile[4 * t + c] = (int32_t)((uint32_t)v[c][t] + k);
    }
    hf_arm_epi_tile(j->ep, tile, nt, m0, n0, nc, j->C, j->ldc);
}

static void ARM_FN(sparse_task)(void *ctx, int tid, int nth) {
    ARM_FN(sparse_job) *j = (ARM_FN(sparse_job) *)ctx;
    const struct hf_sparse_w *w = j->w;
    const int br = w->br;
    const int64_t NB = (w->N + br - 1) / br, K = w->K, KP = (K + 3) / 4 * 4, ntile = (j->M + 15) / 16;
    const int64_t *gptr = (const int64_t *)w->data;
    const int32_t *wsum = (const int32_t *)(gptr + NB + 1);
    const char *groups = (const char *)w->data + hf_arm_sparse_groups_offset(NB, br);
    uint8_t *X = (uint8_t *)hf_scratch(HF_SCRATCH_SPARSE_ROWS, (size_t)(KP * 16));
    int64_t tile;
    (void)tid;
    (void)nth;
    if (!X) {
        atomic_store(&j->rc, HF_ENOMEM);
        return;
    }
    while ((tile = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < ntile) {
        const int64_t m0 = tile * 16;
        const int nt = j->M - m0 < 16 ? (int)(j->M - m0) : 16;
        memset(X, ARM_XOR, (size_t)(KP * 16));
        for (int t = 0; t < nt; t++) {
            const uint8_t *a = j->A + (m0 + t) * j->lda;
            if (br == 1)
                for (int64_t k = 0; k < K; k++) X[((k >> 2) * 16 + t) * 4 + (k & 3)] = a[k] ^ ARM_XOR;
            else
                for (int64_t k = 0; k < K; k++) X[k * 16 + t] = a[k] ^ ARM_XOR;
        }
        int32x4_t cm[4][4]; /* 4 channels x 16 tokens: one 4x1 block row, or four 1x4 ones */
        memset(cm, 0, sizeof cm);
        for (int64_t b = 0; b < NB; b++) {
            const char *g = groups + gptr[b] * 32, *ge = groups + gptr[b + 1] * 32;
            if (br == 1) {
                int32x4_t *acc = cm[b & 3];
                for (int i = 0; i < 4; i++) acc[i] = vdupq_n_s32(0);
                for (; g < ge; g += 32) {
                    const int32_t *col = (const int32_t *)g;
                    const int8x16_t wv = vld1q_s8((const int8_t *)(g + 16));
#define ARM_S14(jj)                                                                                                  \
    do {                                                                                                             \
        const uint8_t *x = X + (int64_t)col[jj] * 64;                                                                \
        acc[0] = DOT_AFULL(acc[0], vld1q_u8(x), wv, jj);                                                             \
        acc[1] = DOT_AFULL(acc[1], vld1q_u8(x + 16), wv, jj);                                                        \
        acc[2] = DOT_AFULL(acc[2], vld1q_u8(x + 32), wv, jj);                                                        \
        acc[3] = DOT_AFULL(acc[3], vld1q_u8(x + 48), wv, jj);                                                        \
    } while (0)
                    ARM_S14(0);
                    ARM_S14(1);
                    ARM_S14(2);
                    ARM_S14(3);
#undef ARM_S14
                }
                if ((b & 3) == 3 || b == NB - 1) ARM_FN(sparse_store)(j, cm, wsum, b & ~(int64_t)3, (int)(b & 3) + 1, m0, nt);
            } else {
                int32x4_t(*acc)[4] = cm;
                for (int r = 0; r < 4; r++)
                    for (int i = 0; i < 4; i++) acc[r][i] = vdupq_n_s32(0);
                for (; g < ge; g += 32) {
                    const int32_t *col = (const int32_t *)g;
                    const int8x16_t wv = vld1q_s8((const int8_t *)(g + 16));
                    const uint8x16_t x0 = vld1q_u8(X + (int64_t)col[0] * 16), x1 = vld1q_u8(X + (int64_t)col[1] * 16),
                                     x2 = vld1q_u8(X + (int64_t)col[2] * 16), x3 = vld1q_u8(X + (int64_t)col[3] * 16);
                    /* 16 tokens x 4 k -> 4 vectors of 4 tokens' [k0 k1 k2 k3] */
                    const uint8x16_t p01l = vzip1q_u8(x0, x1), p01h = vzip2q_u8(x0, x1), p23l = vzip1q_u8(x2, x3),
                                     p23h = vzip2q_u8(x2, x3);
                    const uint8x16_t q[4] = {
                        vreinterpretq_u8_u16(vzip1q_u16(vreinterpretq_u16_u8(p01l), vreinterpretq_u16_u8(p23l))),
                        vreinterpretq_u8_u16(vzip2q_u16(vreinterpretq_u16_u8(p01l), vreinterpretq_u16_u8(p23l))),
                        vreinterpretq_u8_u16(vzip1q_u16(vreinterpretq_u16_u8(p01h), vreinterpretq_u16_u8(p23h))),
                        vreinterpretq_u8_u16(vzip2q_u16(vreinterpretq_u16_u8(p01h), vreinterpretq_u16_u8(p23h)))};
                    for (int i = 0; i < 4; i++) {
                        acc[0][i] = DOT_AFULL(acc[0][i], q[i], wv, 0);
                        acc[1][i] = DOT_AFULL(acc[1][i], q[i], wv, 1);
                        acc[2][i] = DOT_AFULL(acc[2][i], q[i], wv, 2);
                        acc[3][i] = DOT_AFULL(acc[3][i], q[i], wv, 3);
                    }
                }
                ARM_FN(sparse_store)(j, cm, wsum, b * 4, (int)(w->N - b * 4 < 4 ? w->N - b * 4 : 4), m0, nt);
            }
        }
    }
}

int ARM_FN(hf_sparse_gemm)(const struct hf_sparse_w *w, int64_t M, const uint8_t *A, int64_t lda, void *C,
                           int64_t ldc, const hf_epilogue *ep) {
    ARM_FN(sparse_job) j;
    j.w = w;
    j.M = M;
    j.lda = lda;
    j.ldc = ldc;
    j.A = A;
    j.C = C;
    j.ep = ep;
    atomic_init(&j.next, 0);
    atomic_init(&j.rc, HF_OK);
    hf_parallel(ARM_FN(sparse_task), &j, (int)((M + 15) / 16 < 64 ? (M + 15) / 16 : 64));
    if (atomic_load(&j.rc) != HF_OK) return hf_fail(HF_ENOMEM, "sparse_gemm(arm): out of memory");
    return HF_OK;
}
