/* Scalar reference for the block-sparse u8 x s8 -> s32 GEMM: the definition every fast path must
 * match. Packed format (one allocation): int64 rowptr[NB+1] over block rows, int32 cols[kept]
 * (block-column index), int8 vals[kept][br*bc] (row-major inside the block, zero padded past N/K).
 * Single-threaded on purpose: it is the reference, not a fast path. */
#include <string.h>

#include "internal.h"

typedef struct {
    int64_t NB;
    int64_t *rowptr;
    int32_t *cols;
    int8_t *vals;
} ref_layout;

static ref_layout layout(const struct hf_sparse_w *w) {
    ref_layout L;
    L.NB = (w->N + w->br - 1) / w->br;
    L.rowptr = (int64_t *)w->data;
    L.cols = (int32_t *)(L.rowptr + L.NB + 1);
    L.vals = (int8_t *)(L.cols + (w->kept + 1));
    return L;
}

static int ref_pack(struct hf_sparse_w *w, const int8_t *W, int64_t ldw, const int64_t *rowptr, const int32_t *cols) {
    const int64_t NB = (w->N + w->br - 1) / w->br, bs = w->br * w->bc;
    const int64_t bytes = (NB + 1) * 8 + (w->kept + 1) * 4 + w->kept * bs;
    ref_layout L;
    w->data = hf_alloc((size_t)bytes);
    if (!w->data) return hf_fail(HF_ENOMEM, "sparse_pack(ref): out of memory");
    w->nbytes = bytes;
    L = layout(w);
    memcpy(L.rowptr, rowptr, (size_t)(NB + 1) * 8);
    memcpy(L.cols, cols, (size_t)w->kept * 4);
    for (int64_t b = 0; b < NB; b++)
        for (int64_t i = rowptr[b]; i < rowptr[b + 1]; i++)
            for (int r = 0; r < w->br; r++)
                for (int c = 0; c < w->bc; c++)
                    L.vals[i * bs + r * w->bc + c] =
                        hf_w_at(W, ldw, w->N, w->K, b * w->br + r, (int64_t)cols[i] * w->bc + c);
    /* work: kept blocks per 8-channel tile (+1 so empty tiles still count) */
    w->work[0] = 0;
    for (int64_t t = 0; t < w->ntiles; t++) {
        int64_t b0 = t * 8 / w->br, b1 = ((t + 1) * 8 + w->br - 1) / w->br;
        if (b1 > NB) b1 = NB;
        w->work[t + 1] = w->work[t] + (rowptr[b1] - rowptr[b0]) + 1;
    }
    return HF_OK;
}

static int ref_gemm(const struct hf_sparse_w *w, int64_t M, const uint8_t *A, int64_t lda, void *C, int64_t ldc,
                    const hf_epilogue *ep) {
    const ref_layout L = layout(w);
    const int br = w->br, bc = w->bc, bs = br * bc;
    for (int64_t m = 0; m < M; m++) {
        const uint8_t *a = A + m * lda;
        for (int64_t b = 0; b < L.NB; b++) {
            int32_t acc[4] = {0, 0, 0, 0};
            for (int64_t i = L.rowptr[b]; i < L.rowptr[b + 1]; i++) {
                const int8_t *v = L.vals + i * bs;
                const int64_t k0 = (int64_t)L.cols[i] * bc;
                for (int r = 0; r < br; r++)
                    for (int c = 0; c < bc; c++)
                        if (k0 + c < w->K) acc[r] += (int32_t)a[k0 + c] * (int32_t)v[r * bc + c];
            }
            for (int r = 0; r < br; r++) {
                const int64_t n = b * br + r;
                if (n >= w->N) break;
                hf_epi_store_ref1(ep, acc[r], m, n, C, ldc);
            }
        }
    }
    return HF_OK;
}

const hf_sparse_kernel hf_sparse_ref = {ref_pack, ref_gemm};
