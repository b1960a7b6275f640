/* Block-sparse u8 x s8 GEMM front end: argument checks, zero-block detection, dispatch. */
#include <string.h>

#include "internal.h"

/* CSR of kept blocks: rowptr[NB+1] over block rows, cols[] block-column indices (ascending). */
static int scan_blocks(int br, int bc, int64_t N, int64_t K, const int8_t *W, int64_t ldw, int64_t **rowptr_out,
                       int32_t **cols_out, int64_t *kept_out) {
    const int64_t NB = (N + br - 1) / br, KB = (K + bc - 1) / bc;
    int64_t *rowptr = (int64_t *)hf_alloc((size_t)(NB + 1) * sizeof(int64_t));
    int32_t *cols;
    int64_t kept = 0;
    if (!rowptr) return hf_fail(HF_ENOMEM, "sparse_pack: out of memory");
    /* pass 1: count */
    for (int64_t b = 0; b < NB; b++) {
        rowptr[b] = kept;
        for (int64_t j = 0; j < KB; j++) {
            int nz = 0;
            for (int r = 0; r < br && !nz; r++)
                for (int c = 0; c < bc && !nz; c++) nz = hf_w_at(W, ldw, N, K, b * br + r, j * bc + c) != 0;
            kept += nz;
        }
    }
    rowptr[NB] = kept;
    cols = (int32_t *)hf_alloc((size_t)(kept ? kept : 1) * sizeof(int32_t));
    if (!cols) {
        hf_free(rowptr);
        return hf_fail(HF_ENOMEM, "sparse_pack: out of memory");
    }
    /* pass 2: fill */
    for (int64_t b = 0, i = 0; b < NB; b++)
        for (int64_t j = 0; j < KB; j++) {
            int nz = 0;
            for (int r = 0; r < br && !nz; r++)
                for (int c = 0; c < bc && !nz; c++) nz = hf_w_at(W, ldw, N, K, b * br + r, j * bc + c) != 0;
            if (nz) cols[i++] = (int32_t)j;
        }
    *rowptr_out = rowptr;
    *cols_out = cols;
    *kept_out = kept;
    return HF_OK;
}

void hf_split_tiles(const int64_t *work, int64_t ntiles, int tid, int nth, int64_t *lo, int64_t *hi) {
    const int64_t total = work[ntiles];
    int64_t b[2];
    for (int e = 0; e < 2; e++) {
        const int i = tid + e;
        if (i >= nth) {
            b[e] = ntiles;
            continue;
        }
        /* first tile whose prefix reaches i/nth of the work */
        const int64_t target = (total * i + nth - 1) / nth;
        int64_t l = 0, h = ntiles;
        while (l < h) {
            int64_t mid = (l + h) / 2;
            if (work[mid] >= target) h = mid;
            else l = mid + 1;
        }
        b[e] = i == 0 ? 0 : l;
    }
    *lo = b[0];
    *hi = b[1];
}

int hf_sparse_pack(int isa, int block_rows, int block_cols, int64_t N, int64_t K, const int8_t *W, int64_t ldw,
                   hf_sparse_w **out) {
    const hf_sparse_kernel *k;
    hf_sparse_w *w;
    int64_t *rowptr = NULL;
    int32_t *cols = NULL;
    int rc;
    if (!out) return hf_fail(HF_EINVAL, "sparse_pack: out is NULL");
    *out = NULL;
    if (!W) return hf_fail(HF_EINVAL, "sparse_pack: W is NULL");
    if (!((block_rows == 4 && block_cols == 1) || (block_rows == 1 && block_cols == 4)))
        return hf_fail(HF_EINVAL, "sparse_pack: block %dx%d is not supported (use 4x1 or 1x4)", block_rows,
                       block_cols);
    if (N <= 0 || K <= 0)
        return hf_fail(HF_EINVAL, "sparse_pack: N=%lld and K=%lld must be > 0", (long long)N, (long long)K);
    if (K > HF_MAX_K)
        return hf_fail(HF_EINVAL, "sparse_pack: K=%lld exceeds %d (int32 accumulators would overflow)", (long long)K,
                       HF_MAX_K);
    if (N > (int64_t)1 << 30) return hf_fail(HF_EINVAL, "sparse_pack: N=%lld is too large", (long long)N);
    if (ldw < K) return hf_fail(HF_EINVAL, "sparse_pack: ldw=%lld < K=%lld", (long long)ldw, (long long)K);
    if ((rc = hf_resolve_isa(isa, &isa)) != HF_OK) return rc;
    k = hf_sparse_kernel_for(isa);
    if (!k) return hf_fail(HF_EUNSUPPORTED, "sparse_pack: no sparse kernels for '%s'", hf_isa_name(isa));
    w = (hf_sparse_w *)hf_alloc(sizeof *w);
    if (!w) return hf_fail(HF_ENOMEM, "sparse_pack: out of memory");
    memset(w, 0, sizeof *w);
    w->isa = isa;
    w->br = block_rows;
    w->bc = block_cols;
    w->N = N;
    w->K = K;
    w->ntiles = (N + 7) / 8;
    w->total = ((N + block_rows - 1) / block_rows) * ((K + block_cols - 1) / block_cols);
    w->work = (int64_t *)hf_alloc((size_t)(w->ntiles + 1) * sizeof(int64_t));
    if (!w->work) {
        hf_free(w);
        return hf_fail(HF_ENOMEM, "sparse_pack: out of memory");
    }
    if ((rc = scan_blocks(block_rows, block_cols, N, K, W, ldw, &rowptr, &cols, &w->kept)) != HF_OK) {
        hf_sparse_free(w);
        return rc;
    }
    rc = k->pack(w, W, ldw, rowptr, cols);
    hf_free(rowptr);
    hf_free(cols);
    if (rc != HF_OK) {
        hf_sparse_free(w);
        return rc;
    }
    w->nbytes += (int64_t)sizeof *w + (w->ntiles + 1) * (int64_t)sizeof(int64_t);
    *out = w;
    return HF_OK;
}

void hf_sparse_free(hf_sparse_w *w) {
    if (!w) return;
    hf_free(w->data);
    hf_free(w->work);
    hf_free(w);
}

int hf_sparse_isa(const hf_sparse_w *w) { return w ? w->isa : -1; }
const char *hf_sparse_kernel_name(const hf_sparse_w *w) { return w ? hf_kernel_variant_name(w->isa, w->variant) : ""; }
int64_t hf_sparse_nbytes(const hf_sparse_w *w) { return w ? w->nbytes : 0; }
int64_t hf_sparse_quad_groups(const hf_sparse_w *w) {
    const hf_sparse_kernel *k = w ? hf_sparse_kernel_for(w->isa) : NULL;
    return k && k->quad_groups ? k->quad_groups(w) : 0;
}

int hf_sparse_info(const hf_sparse_w *w, int64_t *kept_blocks, int64_t *total_blocks, int *block_rows,
                   int *block_cols) {
    if (!w) return hf_fail(HF_EINVAL, "sparse_info: packed weight is NULL");
    if (kept_blocks) *kept_blocks = w->kept;
    if (total_blocks) *total_blocks = w->total;
    if (block_rows) *block_rows = w->br;
    if (block_cols) *block_cols = w->bc;
    return HF_OK;
}

int hf_sparse_gemm(const hf_sparse_w *w, int64_t M, const uint8_t *A, int64_t lda, int32_t *C, int64_t ldc) {
    const hf_sparse_kernel *k;
    hf_epilogue ep;
    if (!w || !w->data) return hf_fail(HF_EINVAL, "sparse_gemm: packed weight is NULL");
    if (M < 0) return hf_fail(HF_EINVAL, "sparse_gemm: M=%lld < 0", (long long)M);
    if (M == 0) return HF_OK;
    if (!A || !C) return hf_fail(HF_EINVAL, "sparse_gemm: A or C is NULL");
    if (lda < w->K) return hf_fail(HF_EINVAL, "sparse_gemm: lda=%lld < K=%lld", (long long)lda, (long long)w->K);
    if (ldc < w->N) return hf_fail(HF_EINVAL, "sparse_gemm: ldc=%lld < N=%lld", (long long)ldc, (long long)w->N);
    k = hf_sparse_kernel_for(w->isa);
    if (!k)
        return hf_fail(HF_EUNSUPPORTED, "sparse_gemm: weight packed for '%s', which this CPU cannot run",
                       hf_isa_name(w->isa));
    memset(&ep, 0, sizeof ep);
    return k->gemm(w, M, A, lda, C, ldc, &ep);
}
