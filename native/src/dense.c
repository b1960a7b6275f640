/* Dense u8 x s8 GEMM front end: argument checks, packing, dispatch to a kernel family. */
#include <string.h>

#include "internal.h"

int hf_dense_pack(int isa, int64_t N, int64_t K, const int8_t *W, int64_t ldw, hf_dense_w **out) {
    const hf_dense_kernel *k;
    hf_dense_w *w;
    int rc;
    if (!out) return hf_fail(HF_EINVAL, "dense_pack: out is NULL");
    *out = NULL;
    if (!W) return hf_fail(HF_EINVAL, "dense_pack: W is NULL");
    if (N <= 0 || K <= 0) return hf_fail(HF_EINVAL, "dense_pack: N=%lld and K=%lld must be > 0", (long long)N, (long long)K);
    if (K > HF_MAX_K) return hf_fail(HF_EINVAL, "dense_pack: K=%lld exceeds %d (int32 accumulators would overflow)", (long long)K, HF_MAX_K);
    if (ldw < K) return hf_fail(HF_EINVAL, "dense_pack: ldw=%lld < K=%lld", (long long)ldw, (long long)K);
    if ((rc = hf_resolve_isa(isa, &isa)) != HF_OK) return rc;
    w = (hf_dense_w *)hf_alloc(sizeof *w);
    if (!w) return hf_fail(HF_ENOMEM, "dense_pack: out of memory");
    w->isa = isa;
    /* e.g. AVX2: 7-bit weights take the exact vpmaddubsw kernel, others the int16 vpmaddwd one */
    w->variant = hf_dense_variant_for(isa, N, K, W, ldw);
    k = hf_dense_kernel_for_variant(isa, w->variant);
    w->N = N;
    w->K = K;
    w->nbytes = k->packed_size(N, K);
    w->data = hf_alloc((size_t)w->nbytes);
    if (!w->data) {
        hf_free(w);
        return hf_fail(HF_ENOMEM, "dense_pack: out of memory for %lld bytes", (long long)w->nbytes);
    }
    k->pack(N, K, W, ldw, w->data);
    *out = w;
    return HF_OK;
}

void hf_dense_free(hf_dense_w *w) {
    if (!w) return;
    hf_free(w->data);
    hf_free(w);
}

int hf_dense_isa(const hf_dense_w *w) { return w ? w->isa : -1; }
const char *hf_dense_kernel_name(const hf_dense_w *w) { return w ? hf_kernel_variant_name(w->isa, w->variant) : ""; }
int64_t hf_dense_nbytes(const hf_dense_w *w) { return w ? w->nbytes : 0; }

int hf_dense_gemm(const hf_dense_w *w, int64_t M, const uint8_t *A, int64_t lda, int32_t *C, int64_t ldc) {
    const hf_dense_kernel *k;
    if (!w || !w->data) return hf_fail(HF_EINVAL, "dense_gemm: packed weight is NULL");
    if (M < 0) return hf_fail(HF_EINVAL, "dense_gemm: M=%lld < 0", (long long)M);
    if (M == 0) return HF_OK;
    if (!A || !C) return hf_fail(HF_EINVAL, "dense_gemm: A or C is NULL");
    if (lda < w->K) return hf_fail(HF_EINVAL, "dense_gemm: lda=%lld < K=%lld", (long long)lda, (long long)w->K);
    if (ldc < w->N) return hf_fail(HF_EINVAL, "dense_gemm: ldc=%lld < N=%lld", (long long)ldc, (long long)w->N);
    k = hf_dense_kernel_for_variant(w->isa, w->variant);
    if (!k) return hf_fail(HF_EUNSUPPORTED, "dense_gemm: weight packed for '%s', which this CPU cannot run", hf_isa_name(w->isa));
    return k->gemm(w, M, A, lda, C, ldc);
}

int hf_gemm_u8s8s32(int64_t M, int64_t N, int64_t K, const uint8_t *A, int64_t lda, const int8_t *W,
                    int64_t ldw, int32_t *C, int64_t ldc) {
    hf_dense_w *w = NULL;
    int rc = hf_dense_pack(HF_ISA_AUTO, N, K, W, ldw, &w);
    if (rc != HF_OK) return rc;
    rc = hf_dense_gemm(w, M, A, lda, C, ldc);
    hf_dense_free(w);
    return rc;
}
