/* x86 kernels (AVX2, AVX-512 VNNI): declarations shared by the files of this folder and its dispatch table
 * (arch/x86/dispatch_x86.c). Nothing outside arch/x86/ names them: the runtime reaches them only through the
 * hf_isa_table the dispatcher picks. Every function carries its own target(...) attribute, so the library is built
 * for baseline x86-64 and runs the reference on any CPU. */
#ifndef HF_ARCH_X86_H
#define HF_ARCH_X86_H

#include <immintrin.h>

#include "internal.h"

extern const hf_dense_kernel hf_dense_avx2;
extern const hf_dense_kernel hf_dense_avx2_s7;
extern const hf_dense_kernel hf_dense_avx512vnni;
extern const hf_sparse_kernel hf_sparse_avx2;
extern const hf_sparse_kernel hf_sparse_avx512vnni;
int64_t hf_int8_peak_avx512vnni(int64_t iters);

void hf_attention_q8_head_avx2(int64_t S, int64_t d, const uint8_t *q8, const uint8_t *k8, const uint8_t *v8,
    int64_t ld, const float *key_bias, float scale, const hf_attn_quant *aq, float *ctx, int64_t ldo,
    const hf_ctx_quant *oq, void *scratch);
void hf_attention_q8_head_avx512vnni(int64_t S, int64_t d, const uint8_t *q8, const uint8_t *k8, const uint8_t *v8,
    int64_t ld, const float *key_bias, float scale, const hf_attn_quant *aq, float *ctx, int64_t ldo,
    const hf_ctx_quant *oq, void *scratch);
void hf_layernorm_avx2(int64_t T, int64_t H, const float *x, const float *r, const float *gamma,
                       const float *beta, float eps, float *y);
void hf_attention_head_avx2(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                            const float *key_bias, float scale, float *ctx, int64_t ldo, float *scratch);
/* AVX-512 (VNNI machines): d % 16 == 0 on 16 lanes, other multiples of 8 via the AVX2 kernel. */
void hf_attention_head_avx512(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                              const float *key_bias, float scale, float *ctx, int64_t ldo, float *scratch);
/* the attention kernels with a per-row bias (hf_attention_head_rb_fn, hf_attention_q8_head_rb_fn) */
void hf_attention_q8_head_rb_avx2(int64_t S, int64_t d, const uint8_t *q8, const uint8_t *k8, const uint8_t *v8,
    int64_t ld, const float *key_bias, const float *rb, int64_t rb_step, float scale, const hf_attn_quant *aq,
    float *ctx, int64_t ldo, const hf_ctx_quant *oq, void *scratch);
void hf_attention_q8_head_rb_avx512vnni(int64_t S, int64_t d, const uint8_t *q8, const uint8_t *k8, const uint8_t *v8,
    int64_t ld, const float *key_bias, const float *rb, int64_t rb_step, float scale, const hf_attn_quant *aq,
    float *ctx, int64_t ldo, const hf_ctx_quant *oq, void *scratch);
void hf_attention_head_rb_avx2(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                               const float *key_bias, const float *rb, int64_t rb_step, float scale, float *ctx,
                               int64_t ldo, float *scratch);
void hf_attention_head_rb_avx512(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                                 const float *key_bias, const float *rb, int64_t rb_step, float scale, float *ctx,
                                 int64_t ldo, float *scratch);
/* AVX512_BF16 machines (hf_x86_has_avx512bf16): bf16 q k^T and p v, fp32 softmax; d % 16 == 0; bit for bit
 * hf_attention_head_bf16_ref */
void hf_attention_head_bf16_avx512(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                                   const float *key_bias, float scale, float *ctx, int64_t ldo, float *scratch);
/* the same with a per-row bias and / or a sliding window (hf_attention_bf16x_fn), bit for bit hf_attention_bf16x_ref */
void hf_attention_bf16x_avx512(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                               const float *key_bias, const float *rb, int64_t rb_step, int64_t window, float scale,
                               float *ctx, int64_t ldo, float *scratch);
int hf_x86_has_avx512bf16(void);
/* dynamic int8 attention (vpdpbusd q.k^T, vpdpwssd p.v); d % 16 == 0; bit for bit hf_attention_head_dq8_ref */
void hf_attention_head_dq8_avx512vnni(int64_t S, int64_t d, const float *q, const float *k, const float *v,
                                      int64_t ld, const float *key_bias, float scale, float *ctx, int64_t ldo,
                                      float *scratch);
void hf_layernorm_avx512(int64_t T, int64_t H, const float *x, const float *r, const float *gamma,
                         const float *beta, float eps, float *y);

void hf_epilogue_rows_avx2(const hf_epilogue *ep, int64_t m0, int64_t M, int64_t N, const int32_t *acc,
                           int64_t lda, void *C, int64_t ldc);
/* GeGLU stores (ep->glu): q[i] holds 16 tokens' bytes of gated channel j0 + i; writes C[m0 + t][j0 .. j0 + 3], t < nt */
void hf_glu_scatter4(const __m128i q[4], int nt, int64_t m0, int64_t j0, uint8_t *C, int64_t ldc);
/* AVX2 tile store: tile[8][16] int32 is 8 output channels (n0..n0+7, nr valid) x 16 tokens
 * (m0..m0+15, nt valid); transposes and writes C[m][n] through the epilogue. */
void hf_tile_store_avx2(const hf_epilogue *ep, const int32_t *tile, int nr, int nt, int64_t m0, int64_t n0,
                        void *C, int64_t ldc);
/* The second half of hf_tile_store_avx2: ytile[8][16] holds y (scale, bias and GELU applied) channel-major;
 * transposes, adds the residual and stores float or u8. */
void hf_tile_store_f32_avx2(const hf_epilogue *ep, const float *ytile, int nr, int nt, int64_t m0, int64_t n0,
                            void *C, int64_t ldc);
/* AVX-512 (VNNI machines): the same results as the AVX2 epilogue except GELU (16 lanes, vrcp14ps), within
 * the GELU tolerance; everything else bit for bit. */
void hf_tile_store_avx512(const hf_epilogue *ep, const int32_t *tile, int nr, int nt, int64_t m0, int64_t n0,
                          void *C, int64_t ldc);
/* tile[16][ldt] int32 is 16 channels (n0.., nr valid) x nt tokens (m0.., nt <= ldt, rows past nr readable):
 * transposes 16x16 in registers and writes C[m][n] through the 16-lane epilogue. The tile holds the sums already
 * corrected, acc - a_zp * colsum[n] (wrapping; the 4x1 kernel starts its accumulators there), except for
 * HF_EPI_S32 output, where it holds acc. */
void hf_strip_store_avx512(const hf_epilogue *ep, const int32_t *tile, int64_t ldt, int nr, int nt, int64_t m0,
                           int64_t n0, void *C, int64_t ldc);
/* The same tile (acc - a_zp * colsum[n]) into the packed activation layout of ep->pack_ld (X: the tile's token
 * tile, nt <= 64 tokens; rows of tokens past nt are written as 0). */
void hf_strip_store_packed_avx512(const hf_epilogue *ep, const int32_t *tile, int64_t ldt, int nr, int nt, int64_t n0,
                                  uint8_t *X);
void hf_epilogue_rows_avx512(const hf_epilogue *ep, int64_t m0, int64_t M, int64_t N, const int32_t *acc,
                             int64_t lda, void *C, int64_t ldc);
void hf_gelu_avx512(int64_t n, const float *x, float *y);
void hf_gelu_avx2(int64_t n, const float *x, float *y);
void hf_quantize_avx2(int64_t n, const float *x, float scale, int32_t zp, uint8_t *y);
void hf_quantize_avx512(int64_t n, const float *x, float scale, int32_t zp, uint8_t *y);
void hf_quantize_mul_avx2(int64_t n, const float *x, const float *mul, float scale, int32_t zp, uint8_t *y);
void hf_quantize_mul_avx512(int64_t n, const float *x, const float *mul, float scale, int32_t zp, uint8_t *y);

/* head_linear_x86.c: the fp32 head Linear (ref/head_linear.h's body) compiled for AVX2 and AVX-512 */
void hf_head_linear_avx2(int64_t N, int64_t K, const float *W, const float *b, int64_t rows, const float *in,
                         float *out);
void hf_head_linear_avx512(int64_t N, int64_t K, const float *W, const float *b, int64_t rows, const float *in,
                           float *out);

/* ModernBERT-style encoder ops (rotary_*.c, geglu_*.c, attention_window_*.c; hf_encoder_ops in internal.h) */
void hf_rotary_avx2(int64_t S, int64_t d, float *q, float *k, int64_t ld, const float *cs);
void hf_rotary_avx512(int64_t S, int64_t d, float *q, float *k, int64_t ld, const float *cs);
void hf_geglu_avx2(int64_t n, const float *a, const float *g, const float *mul, float scale, int32_t zp, uint8_t *y);
void hf_geglu_avx512(int64_t n, const float *a, const float *g, const float *mul, float scale, int32_t zp, uint8_t *y);
void hf_attention_window_avx2(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                              const float *key_bias, int64_t window, float scale, float *ctx, int64_t ldo,
                              float *scratch);
void hf_attention_window_avx512(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                                const float *key_bias, int64_t window, float scale, float *ctx, int64_t ldo,
                                float *scratch);

/* The row tail of a kernel blocked in MR query rows: BLK(r) once for the r = rem rows left, 0 < rem < MR, where BLK is
 * the caller's macro for a block of a constant number of rows (the constant lets the compiler unroll each block). */
#define HF_ROW_TAIL_6(rem, BLK)                                                                                         \
    switch (rem) {                                                                                                      \
    case 5: BLK(5); break;                                                                                              \
    case 4: BLK(4); break;                                                                                              \
    case 3: BLK(3); break;                                                                                              \
    case 2: BLK(2); break;                                                                                              \
    case 1: BLK(1); break;                                                                                              \
    default: break;                                                                                                     \
    }
#define HF_ROW_TAIL_12(rem, BLK)                                                                                        \
    switch (rem) {                                                                                                      \
    case 11: BLK(11); break;                                                                                            \
    case 10: BLK(10); break;                                                                                            \
    case 9: BLK(9); break;                                                                                              \
    case 8: BLK(8); break;                                                                                              \
    case 7: BLK(7); break;                                                                                              \
    case 6: BLK(6); break;                                                                                              \
    case 5: BLK(5); break;                                                                                              \
    case 4: BLK(4); break;                                                                                              \
    case 3: BLK(3); break;                                                                                              \
    case 2: BLK(2); break;                                                                                              \
    case 1: BLK(1); break;                                                                                              \
    default: break;                                                                                                     \
    }

#endif
