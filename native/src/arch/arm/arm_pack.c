/* The aarch64 packed layouts (arm.h), shared by the NEON, dot product and i8mm kernels. */
#include <string.h>

#include "arm.h"
#include "ref/head_linear.h"

int64_t hf_arm_dense_packed_size(int64_t N, int64_t K) {
    const int64_t NT = (N + 7) / 8, KB = (K + 15) / 16;
    return NT * KB * 128 + NT * 8 * 4;
}

void hf_arm_dense_pack(int64_t N, int64_t K, const int8_t *W, int64_t ldw, void *dst) {
    const int64_t NT = (N + 7) / 8, KB = (K + 15) / 16;
    int8_t *d = (int8_t *)dst;
    int32_t *wsum = (int32_t *)(d + NT * KB * 128);
    memset(dst, 0, (size_t)hf_arm_dense_packed_size(N, K));
    for (int64_t n = 0; n < N; n++) {
        const int64_t t = n / 8, h = (n % 8) / 4, c = n % 4;
        int32_t s = 0;
        for (int64_t k = 0; k < K; k++) {
            const int8_t v = W[n * ldw + k];
            d[t * KB * 128 + (k / 16) * 128 + ((k % 16) / 4) * 32 + h * 16 + c * 4 + k % 4] = v;
            s += v;
        }
        wsum[n] = s;
    }
}

int64_t hf_arm_mmla_packed_size(int64_t N, int64_t K) { return (N + 7) / 8 * ((K + 7) / 8) * 64; }

void hf_arm_mmla_pack(int64_t N, int64_t K, const int8_t *W, int64_t ldw, void *dst) {
    const int64_t KB = (K + 7) / 8;
    int8_t *d = (int8_t *)dst;
    memset(dst, 0, (size_t)hf_arm_mmla_packed_size(N, K));
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++)
            d[(n / 8) * KB * 64 + (k / 8) * 64 + ((n % 8) / 2) * 16 + (n % 2) * 8 + k % 8] = W[n * ldw + k];
}

int hf_arm_sparse_pack(struct hf_sparse_w *w, const int8_t *W, int64_t ldw, const int64_t *rowptr,
                       const int32_t *cols) {
    const int br = w->br, bc = w->bc;
    const int64_t NB = (w->N + br - 1) / br;
    int64_t G = 0, off;
    for (int64_t b = 0; b < NB; b++) G += (rowptr[b + 1] - rowptr[b] + 3) / 4;
    off = hf_arm_sparse_groups_offset(NB, br);
    w->nbytes = off + G * 32;
    w->data = hf_alloc((size_t)w->nbytes);
    if (!w->data) return hf_fail(HF_ENOMEM, "sparse_pack(arm): out of memory");
    memset(w->data, 0, (size_t)w->nbytes);
    int64_t *gptr = (int64_t *)w->data;
    int32_t *wsum = (int32_t *)(gptr + NB + 1);
    char *groups = (char *)w->data + off;
    gptr[0] = 0;
    for (int64_t b = 0; b < NB; b++) {
        const int64_t i0 = rowptr[b], i1 = rowptr[b + 1];
        gptr[b + 1] = gptr[b] + (i1 - i0 + 3) / 4;
        for (int64_t i = i0; i < i1; i++) {
            char *g = groups + (gptr[b] + (i - i0) / 4) * 32;
            const int j = (int)((i - i0) % 4);
            int8_t *v = (int8_t *)(g + 16);
            ((int32_t *)g)[j] = cols[i];
            for (int r = 0; r < br; r++)
                for (int c = 0; c < bc; c++) {
                    const int8_t x = hf_w_at(W, ldw, w->N, w->K, b * br + r, (int64_t)cols[i] * bc + c);
                    if (br == 1) v[4 * j + c] = x;
                    else v[4 * r + j] = x;
                    wsum[b * br + r] += x;
                }
        }
    }
    /* work: kept blocks per 8-channel tile (+1 so empty tiles still count), as the reference */
    w->work[0] = 0;
    for (int64_t t = 0; t < w->ntiles; t++) {
        int64_t b0 = t * 8 / br, b1 = ((t + 1) * 8 + br - 1) / br;
        if (b1 > NB) b1 = NB;
        w->work[t + 1] = w->work[t] + (rowptr[b1] - rowptr[b0]) + 1;
    }
    return HF_OK;
}

/* The fp32 head Linear: ref/head_linear.h's body, the same sums in the same order as every ISA. */
void hf_head_linear_arm(int64_t N, int64_t K, const float *W, const float *b, int64_t rows, const float *in,
                        float *out) {
    hf_head_linear_body(N, K, W, b, rows, in, out);
}
