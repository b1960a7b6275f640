/* hf-fast native runtime: the one C ABI.
 *
 * Conventions
 *  - Every function that can fail returns an int status (HF_OK == 0) and leaves a message
 *    for hf_last_error(); the library never aborts, exits or prints.
 *  - Weights are given as PyTorch stores them: W[N][K] (out_features x in_features), int8.
 *  - Activations are u8 (asymmetric, zero point handled by the caller / epilogue), row-major [M][K].
 *  - Kernels compute the exact integer product C[m][n] = sum_k A[m][k] * W[n][k] (int32);
 *    every ISA path must match the scalar reference bit for bit.
 */
#ifndef HF_FAST_H
#define HF_FAST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes ---- */
#define HF_OK 0
#define HF_EINVAL 1       /* bad argument (shape, pointer, value) */
#define HF_ENOMEM 2       /* allocation failed */
#define HF_EUNSUPPORTED 3 /* ISA or feature not available on this CPU / build */
#define HF_EFORMAT 4      /* malformed packed data or plan */

/* ---- ISA selection (dispatch.c is the only place that decides) ---- */
#define HF_ISA_AUTO -1
#define HF_ISA_REF 0
#define HF_ISA_AVX2 1
#define HF_ISA_AVX512VNNI 2
#define HF_ISA_COUNT 3

/* Reads HF_FAST_ISA once (ref|avx2|avx512vnni|auto) and picks the ISA. */
int hf_init(void);
/* 1 when the CPU (and OS) can run `isa`. */
int hf_isa_supported(int isa);
/* The ISA kernels use now. */
int hf_isa_active(void);
/* Force an ISA (HF_ISA_AUTO = best supported). Fails with HF_EUNSUPPORTED if the CPU lacks it. */
int hf_set_isa(int isa);
const char *hf_isa_name(int isa);
/* Parses "ref", "avx2", "avx512vnni", "auto"; returns -2 on an unknown name. */
int hf_isa_from_name(const char *name);
const char *hf_version(void);

/* ---- error channel (thread-local) ---- */
const char *hf_last_error(void);

/* ---- dense u8 x s8 -> s32 GEMM ----
 * A packed weight is tied to the ISA it was packed for. */
typedef struct hf_dense_w hf_dense_w;

/* Pack W[N][K] (row stride ldw) for `isa` (HF_ISA_AUTO = active ISA). */
int hf_dense_pack(int isa, int64_t N, int64_t K, const int8_t *W, int64_t ldw, hf_dense_w **out);
void hf_dense_free(hf_dense_w *w);
int hf_dense_isa(const hf_dense_w *w);
/* Bytes held by the packed weight. */
int64_t hf_dense_nbytes(const hf_dense_w *w);
/* C[M][N] (row stride ldc) = A[M][K] (row stride lda) x W^T */
int hf_dense_gemm(const hf_dense_w *w, int64_t M, const uint8_t *A, int64_t lda, int32_t *C,
                  int64_t ldc);
/* One-shot convenience: pack for the active ISA, multiply, free. */
int hf_gemm_u8s8s32(int64_t M, int64_t N, int64_t K, const uint8_t *A, int64_t lda,
                    const int8_t *W, int64_t ldw, int32_t *C, int64_t ldc);

/* ---- fp32 transformer ops ---- */
/* y[t] = LayerNorm(x[t] + r[t]) * gamma + beta over T rows of width H; r may be NULL, y may alias x. */
int hf_layernorm(int isa, int64_t T, int64_t H, const float *x, const float *r, const float *gamma,
                 const float *beta, float eps, float *y);
/* Floats of scratch hf_attention needs for a sequence of S tokens and head size d. */
int64_t hf_attention_scratch_floats(int64_t S, int64_t d);
/* Multi-head self-attention of one sequence. q/k/v rows have stride ld with head h at columns
 * [h*d, (h+1)*d); key_mask[S] (nonzero = attend; NULL = all); ctx[S][heads*d] with stride ldo. */
int hf_attention(int isa, int64_t S, int64_t heads, int64_t d, const float *q, const float *k, const float *v,
                 int64_t ld, const int64_t *key_mask, float scale, float *ctx, int64_t ldo);

#ifdef __cplusplus
}
#endif
#endif /* HF_FAST_H */
