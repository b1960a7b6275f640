/* Internal declarations shared by the runtime's C files (not part of the ABI). */
#ifndef HF_INTERNAL_H
#define HF_INTERNAL_H

#include "hf_fast.h"

/* error.c: record a message for hf_last_error() and return `code`. */
int hf_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Largest K the int32 accumulators hold without overflow: 255 * 128 * K < 2^31. */
#define HF_MAX_K 65536

/* 64-byte aligned allocation; NULL on failure (callers report HF_ENOMEM). */
void *hf_alloc(size_t bytes);
void hf_free(void *p);

/* ---- dense GEMM kernel family (kernels/dense_s8_gemm_*.c) ----
 * Each ISA has its own packed layout; `data` is opaque to everyone but that kernel. */
struct hf_dense_w {
    int isa;
    int64_t N, K;
    int64_t nbytes;
    void *data;
};

typedef int64_t (*hf_dense_packed_size_fn)(int64_t N, int64_t K);
typedef void (*hf_dense_pack_fn)(int64_t N, int64_t K, const int8_t *W, int64_t ldw, void *dst);
typedef int (*hf_dense_gemm_fn)(const struct hf_dense_w *w, int64_t M, const uint8_t *A,
                                int64_t lda, int32_t *C, int64_t ldc);

typedef struct {
    hf_dense_packed_size_fn packed_size;
    hf_dense_pack_fn pack;
    hf_dense_gemm_fn gemm;
} hf_dense_kernel;

extern const hf_dense_kernel hf_dense_ref;
extern const hf_dense_kernel hf_dense_avx2;
extern const hf_dense_kernel hf_dense_avx512vnni;

/* dispatch.c: the kernel table for an ISA (NULL if the CPU cannot run it). */
const hf_dense_kernel *hf_dense_kernel_for(int isa);
/* Resolve HF_ISA_AUTO to the active ISA and check support. */
int hf_resolve_isa(int isa, int *out);

/* ---- fp32 transformer ops (kernels/layernorm_*.c, kernels/attention_*.c) ---- */
typedef void (*hf_layernorm_fn)(int64_t T, int64_t H, const float *x, const float *r, const float *gamma,
                                const float *beta, float eps, float *y);
typedef void (*hf_attention_head_fn)(int64_t S, int64_t d, const float *q, const float *k, const float *v,
                                     int64_t ld, const float *key_bias, float scale, float *ctx, int64_t ldo,
                                     float *scratch);
typedef struct {
    hf_layernorm_fn layernorm;
    hf_attention_head_fn attention_head; /* requires d % 8 == 0 unless it is the reference */
} hf_f32_ops;

void hf_layernorm_ref(int64_t T, int64_t H, const float *x, const float *r, const float *gamma,
                      const float *beta, float eps, float *y);
void hf_layernorm_avx2(int64_t T, int64_t H, const float *x, const float *r, const float *gamma,
                       const float *beta, float eps, float *y);
void hf_attention_head_ref(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                           const float *key_bias, float scale, float *ctx, int64_t ldo, float *scratch);
void hf_attention_head_avx2(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                            const float *key_bias, float scale, float *ctx, int64_t ldo, float *scratch);
/* dispatch.c: fp32 ops for an ISA (AVX-512 machines use the AVX2 fp32 ops). */
const hf_f32_ops *hf_f32_ops_for(int isa);

#endif
