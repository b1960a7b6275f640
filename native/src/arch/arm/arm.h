/* aarch64 kernels (NEON, dot product, i8mm): declarations shared by the files of this folder and its dispatch table
 * (arch/arm/dispatch_arm.c). Nothing outside arch/arm/ names them. Each ISA level's kernels live in their own file
 * compiled for that level with `#pragma GCC target` (kernels_<level>.c), so the library is built for baseline ARMv8-A
 * and a core without dot product (cortex-a72) never executes SDOT.
 *
 * Packed layouts (one per family, shared by the three levels; weights are stored signed, as given):
 *  dense:  8-channel tiles x 16-k blocks x 4 k-quads x 2 halves x 16 bytes (byte c*4+j of half h: W[8t+4h+c][16kb+4q+j],
 *          zero padded past N and K), then int32 wsum[round8(N)] (row sums of W, for the u8 -> s8 offset of SDOT).
 *  dense for USMMLA (i8mm): 8-channel tiles x 8-k blocks x 4 channel pairs x 16 bytes (byte 8i+j of pair p:
 *          W[8t+2p+i][8kb+j], zero padded).
 *  sparse: int64 gptr[NB+1] (groups of each block row), int32 wsum[NB*br], then 32-byte groups of 4 kept blocks
 *          {int32 col[4]; int8 w[16]}: 1x4, w[4j+c] = W[b][4 col[j] + c]; 4x1, w[4r+j] = W[4b+r][col[j]]; a group's
 *          unused blocks have col 0 and zero weights. */
#ifndef HF_ARCH_ARM_H
#define HF_ARCH_ARM_H

#include "internal.h"

/* CPU features (cpu_arm.c): HWCAP bits read once with getauxval */
#define HF_ARM_ASIMD 1
#define HF_ARM_DOTPROD 2
#define HF_ARM_I8MM 4
#define HF_ARM_SVE 8
#define HF_ARM_SVE2 16
#define HF_ARM_BF16 32
int hf_arm_features(void);

/* arm_pack.c: the layouts above */
int64_t hf_arm_dense_packed_size(int64_t N, int64_t K);
void hf_arm_dense_pack(int64_t N, int64_t K, const int8_t *W, int64_t ldw, void *dst);
int64_t hf_arm_mmla_packed_size(int64_t N, int64_t K);
void hf_arm_mmla_pack(int64_t N, int64_t K, const int8_t *W, int64_t ldw, void *dst);
int hf_arm_sparse_pack(struct hf_sparse_w *w, const int8_t *W, int64_t ldw, const int64_t *rowptr,
                       const int32_t *cols);
static inline int64_t hf_arm_sparse_groups_offset(int64_t NB, int br) {
    return ((NB + 1) * 8 + NB * br * 4 + 15) / 16 * 16;
}

/* kernels_<level>.c */
int hf_dense_gemm_neon(const struct hf_dense_w *w, int64_t M, const uint8_t *A, int64_t lda, int32_t *C, int64_t ldc);
int hf_dense_gemm_dotprod(const struct hf_dense_w *w, int64_t M, const uint8_t *A, int64_t lda, int32_t *C,
                          int64_t ldc);
int hf_dense_gemm_i8mm(const struct hf_dense_w *w, int64_t M, const uint8_t *A, int64_t lda, int32_t *C, int64_t ldc);
int hf_sparse_gemm_neon(const struct hf_sparse_w *w, int64_t M, const uint8_t *A, int64_t lda, void *C, int64_t ldc,
                        const hf_epilogue *ep);
int hf_sparse_gemm_dotprod(const struct hf_sparse_w *w, int64_t M, const uint8_t *A, int64_t lda, void *C,
                           int64_t ldc, const hf_epilogue *ep);
int hf_sparse_gemm_i8mm(const struct hf_sparse_w *w, int64_t M, const uint8_t *A, int64_t lda, void *C, int64_t ldc,
                        const hf_epilogue *ep);

/* linear_neon.c: the reference's epilogue and quantizers, bit for bit except GELU (within its tolerance) */
void hf_epilogue_rows_neon(const hf_epilogue *ep, int64_t m0, int64_t M, int64_t N, const int32_t *acc, int64_t lda,
                           void *C, int64_t ldc);
/* tile[nt][4]: the sums of channels n0..n0+nc-1 (nc <= 4) of tokens m0..m0+nt-1 (rows of C, global for the residual) */
void hf_arm_epi_tile(const hf_epilogue *ep, const int32_t *tile, int nt, int64_t m0, int64_t n0, int nc, void *C,
                     int64_t ldc);
void hf_gelu_neon(int64_t n, const float *x, float *y);
void hf_quantize_neon(int64_t n, const float *x, float scale, int32_t zp, uint8_t *y);
void hf_quantize_mul_neon(int64_t n, const float *x, const float *mul, float scale, int32_t zp, uint8_t *y);

/* layernorm_neon.c */
void hf_layernorm_neon(int64_t T, int64_t H, const float *x, const float *r, const float *gamma, const float *beta,
                       float eps, float *y);

/* attention_neon.c: d % 4 == 0 */
void hf_attention_head_neon(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                            const float *key_bias, float scale, float *ctx, int64_t ldo, float *scratch);

/* attention_q8_neon.c: d % 8 == 0, bit for bit the reference */
void hf_attention_q8_head_neon(int64_t S, int64_t d, const uint8_t *q8, const uint8_t *k8, const uint8_t *v8,
                               int64_t ld, const float *key_bias, float scale, const hf_attn_quant *aq, float *ctx,
                               int64_t ldo, const hf_ctx_quant *oq, void *scratch);

void hf_head_linear_arm(int64_t N, int64_t K, const float *W, const float *b, int64_t rows, const float *in,
                        float *out);

#endif
