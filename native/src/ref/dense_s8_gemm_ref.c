/* Scalar reference for the dense u8 x s8 -> s32 GEMM: the definition every fast path must match. */
#include <string.h>

#include "internal.h"

static int64_t ref_packed_size(int64_t N, int64_t K) { return N * K; }

static void ref_pack(int64_t N, int64_t K, const int8_t *W, int64_t ldw, void *dst) {
    int8_t *d = (int8_t *)dst;
    for (int64_t n = 0; n < N; n++) memcpy(d + n * K, W + n * ldw, (size_t)K);
}

static int ref_gemm(const struct hf_dense_w *w, int64_t M, const uint8_t *A, int64_t lda, int32_t *C,
                    int64_t ldc) {
    const int8_t *W = (const int8_t *)w->data;
    const int64_t N = w->N, K = w->K;
    for (int64_t m = 0; m < M; m++) {
        const uint8_t *a = A + m * lda;
        for (int64_t n = 0; n < N; n++) {
            const int8_t *b = W + n * K;
            int32_t acc = 0;
            for (int64_t k = 0; k < K; k++) acc += (int32_t)a[k] * (int32_t)b[k];
            C[m * ldc + n] = acc;
        }
    }
    return HF_OK;
}

const hf_dense_kernel hf_dense_ref = {ref_packed_size, ref_pack, ref_gemm, 1};
