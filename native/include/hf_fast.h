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
#define HF_ENOTIMPL 5     /* the model description asks for an op this engine build does not run (yet) */

/* ---- ISA selection (dispatch.c is the only place that decides) ---- */
#define HF_ISA_AUTO -1
#define HF_ISA_REF 0
#define HF_ISA_AVX2 1
#define HF_ISA_AVX512VNNI 2
/* aarch64 (native/src/arch/arm/): NEON (ARMv8 base), + dot product (SDOT/UDOT), + i8mm (USDOT/USMMLA) */
#define HF_ISA_NEON 3
#define HF_ISA_DOTPROD 4
#define HF_ISA_I8MM 5
#define HF_ISA_COUNT 6

/* Reads HF_FAST_ISA once (ref|avx2|avx512vnni on x86; ref|neon|dotprod|i8mm on aarch64; auto) and picks the ISA. */
int hf_init(void);
/* 1 when this build has kernels for `isa` (its target architecture's ISAs and ref), whatever the CPU. */
int hf_isa_built(int isa);
/* 1 when the CPU (and OS) can run `isa`. */
int hf_isa_supported(int isa);
/* The ISA kernels use now. */
int hf_isa_active(void);
/* Force an ISA (HF_ISA_AUTO = best supported). Fails with HF_EUNSUPPORTED if the CPU lacks it. */
int hf_set_isa(int isa);
const char *hf_isa_name(int isa);
/* Parses "ref", "avx2", "avx512vnni", "neon", "dotprod", "i8mm", "auto"; returns -2 on an unknown name. */
int hf_isa_from_name(const char *name);
const char *hf_version(void);
/* The int8 dot-product peak of one core on `isa` (HF_ISA_AUTO = active): runs `iters` steps of a register-only
 * throughput loop of its widest instruction (x86: 12 vpdpbusd zmm) and sets *macs to the multiply-adds done; the
 * caller times the call. HF_EUNSUPPORTED for an ISA without a probe (ref, avx2, aarch64 for now). */
int hf_int8_peak_probe(int isa, int64_t iters, int64_t *macs);

/* Which kernel runs an op on `isa` (HF_ISA_AUTO = the active ISA): the name dispatch.c derives from the kernel it
 * picks, a static string; "" for an unknown op or an ISA this CPU cannot run. arg is the head size d for the two
 * attention ops (head sizes the SIMD kernels do not take run the reference, or on AVX-512 the AVX2 kernel) and
 * ignored otherwise. GEMM names as hf_dense_kernel_name ("ref", "avx2-s16", "avx2-s7", "avx512vnni"; the *_7BIT ops:
 * weights in [-64, 64]); the others "ref", "avx2", "avx512" or "avx512vnni". */
#define HF_OP_DENSE_GEMM 0
#define HF_OP_DENSE_GEMM_7BIT 1
#define HF_OP_SPARSE_GEMM 2
#define HF_OP_SPARSE_GEMM_7BIT 3
#define HF_OP_LINEAR_EPILOGUE 4 /* dequantize, bias, GELU, residual and requantize after a GEMM */
#define HF_OP_QUANTIZE 5
#define HF_OP_GELU 6
#define HF_OP_LAYERNORM 7
#define HF_OP_ATTENTION 8    /* fp32 */
#define HF_OP_ATTENTION_Q8 9 /* int8 */
#define HF_OP_COUNT 10
const char *hf_op_kernel(int op, int isa, int64_t arg);

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
/* The kernel variant that runs a packed weight (dense, sparse or Linear): "ref", "avx2-s16" (exact
 * int16 vpmaddwd), "avx2-s7" (exact u8 x s8 vpmaddubsw, chosen on AVX2 when every weight lies in
 * [-64, 63], i.e. 7-bit / reduce_range weights) or "avx512vnni". Static strings; "" for NULL. */
const char *hf_dense_kernel_name(const hf_dense_w *w);
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

/* bf16 attention: hf_attention with q, k, v and the softmax probabilities rounded to bf16 (nearest even) for the two
 * products, summed in fp32 as vdpbf16ps does; scores, softmax and normalisation in fp32 (ref/attention_bf16_ref.c
 * defines it). HF_EUNSUPPORTED where isa has no bf16 kernel for head size d: the reference has one for every d, the
 * AVX-512 table for d % 16 == 0 on CPUs with AVX512_BF16, AVX2 none. */
int64_t hf_attention_bf16_scratch_floats(int64_t S, int64_t d);
/* The bf16 attention kernel isa (HF_ISA_AUTO: the active one) runs for head size d: "avx512bf16", "ref", or "" for
 * none (the engine then runs the fp32 attention). */
const char *hf_attention_bf16_kernel(int isa, int64_t d);
int hf_attention_bf16(int isa, int64_t S, int64_t heads, int64_t d, const float *q, const float *k, const float *v,
                      int64_t ld, const int64_t *key_mask, float scale, float *ctx, int64_t ldo);
/* hf_attention_bf16 with MPNet's relative-position bias (rel: [heads][2S - 1] as hf_relative_position_bias writes it,
 * added as hf_attention_relbias does; NULL: none) and / or ModernBERT's sliding window (window >= 0: as
 * hf_attention_window, keys |i - j| <= window only, O(S x window); -1: every key). The same kernels and errors. */
int hf_attention_bf16_ex(int isa, int64_t S, int64_t heads, int64_t d, const float *q, const float *k,
                         const float *v, int64_t ld, const int64_t *key_mask, const float *rel, int64_t window,
                         float scale, float *ctx, int64_t ldo);

/* Dynamic int8 attention: hf_attention with q and k quantized to int8 per token (symmetric, max|x| / 127 over the
 * head's channels), v per channel over the attended keys, exact int32 q.k^T, fp32 softmax, the unnormalised weights
 * exp(s - rowmax) rounded to int16 and an exact int32 p.v normalised by their sum (ref/attention_dq8_ref.c defines
 * it). HF_EUNSUPPORTED where isa has no kernel for head size d: the reference has one for every d, the AVX-512 VNNI
 * table for d % 16 == 0, AVX2 none. */
int64_t hf_attention_dq8_scratch_floats(int64_t S, int64_t d);
/* The dynamic int8 attention kernel isa (HF_ISA_AUTO: the active one) runs for head size d: "avx512vnni", "ref" or
 * "" for none. */
const char *hf_attention_dq8_kernel(int isa, int64_t d);
int hf_attention_dq8(int isa, int64_t S, int64_t heads, int64_t d, const float *q, const float *k, const float *v,
                     int64_t ld, const int64_t *key_mask, float scale, float *ctx, int64_t ldo);

/* Relative-position attention bias (MPNet, T5): out[h][r + S - 1] = table[bucket(r)][h] for each key - query offset
 * r in [-(S-1), S-1] (out: heads x (2S - 1) floats), bucket(r) T5's bucketing as transformers computes it in fp32
 * (relative_position_bucket(r, buckets, max_distance): half the buckets per direction, the first quarter exact
 * distances, then log-spaced up to max_distance, the last bucket beyond). table: [buckets][heads]. The score of
 * query i and key j then gets out[h][j - i + S - 1]: row i reads the contiguous slice starting at S - 1 - i. */
int hf_relative_position_bias(int64_t S, int64_t heads, const float *table, int32_t buckets, int64_t max_distance,
                              float *out);
/* hf_attention with that bias: softmax(q k^T * scale + rel[h][j - i + S - 1] + mask) v; rel as
 * hf_relative_position_bias writes it ([heads][2S - 1]). */
int hf_attention_relbias(int isa, int64_t S, int64_t heads, int64_t d, const float *q, const float *k, const float *v,
                         int64_t ld, const int64_t *key_mask, const float *rel, float scale, float *ctx, int64_t ldo);

/* ModernBERT's ops (each with a scalar reference and AVX2 / AVX-512 kernels; the engine runs them per layer):
 * hf_rotary rotates q and k (rows of stride ld, head h at columns [h*d, (h+1)*d), d even) in place by position t with
 * base theta, transformers' rotate_half form: x'[c] = x[c] cos - x[c + d/2] sin, x'[c + d/2] = x[c + d/2] cos +
 * x[c] sin, angle t * theta^(-2c/d) in fp32 (bit for bit on every ISA). */
int hf_rotary(int isa, int64_t S, int64_t heads, int64_t d, float *q, float *k, int64_t ld, float theta);
/* GeGLU into the next Linear's uint8 input: x rows (stride ldx) hold [2F] = (a, g); y[r][i] = hf_quantize_u8(
 * GELU(a[i]) * g[i] [* mul[i]], scale, zp) (mul: [F] SmoothQuant multipliers or NULL); GELU within its tolerance. */
int hf_geglu_u8(int isa, int64_t rows, int64_t F, const float *x, int64_t ldx, const float *mul, float scale,
                int32_t zp, uint8_t *y, int64_t ldy);
/* hf_attention restricted to the keys j with |i - j| <= window (ModernBERT's local layers: window = local_attention
 * / 2): O(S x window) per head, no S x S buffer. */
int hf_attention_window(int isa, int64_t S, int64_t heads, int64_t d, const float *q, const float *k, const float *v,
                        int64_t ld, const int64_t *key_mask, int64_t window, float scale, float *ctx, int64_t ldo);

/* int8 self-attention, as a QDQ graph whose two activation x activation MatMuls (q k^T and p v) read
 * Q/DQ pairs: uint8 per-tensor scale / zero point of q, k, the softmax probabilities p and v. */
typedef struct {
    float q_scale, k_scale, p_scale, v_scale;
    int32_t q_zp, k_zp, p_zp, v_zp;
} hf_attn_quant;
/* Bytes of scratch the int8 attention of one (sequence, head) needs. */
int64_t hf_attention_q8_scratch_bytes(int64_t S, int64_t d);
/* hf_attention with int8 products, per head:
 *   q8, k8, v8 = hf_quantize_u8(q | k | v, its scale, zero point)
 *   s[i][j]    = (float)(sum_c (q8[i][c] - q_zp) (k8[j][c] - k_zp)) * (q_scale * k_scale), then * scale + bias[j]
 *   p[i][j]    = exp(s[i][j] - max_j) * (1 / sum_j exp(.))           (uniform 1/S when every key is masked)
 *   ctx[i][c]  = (float)(sum_j (p8[i][j] - p_zp) (v8[j][c] - v_zp)) * (p_scale * v_scale),
 *                p8 = Q(p) = min(rint(exp(.) * ((1 / sum) / p_scale)) + p_zp, 255)
 * The sums are exact int32 on every ISA; only exp (hence a p8 at a rounding boundary) may differ. */
int hf_attention_q8(int isa, int64_t S, int64_t heads, int64_t d, const float *q, const float *k, const float *v,
                    int64_t ld, const int64_t *key_mask, float scale, const hf_attn_quant *aq, float *ctx, int64_t ldo);
/* The same on q8, k8, v8 already quantized (uint8 [S][ld], Q(q) etc. with aq's parameters): what the engine runs
 * on the qkv GEMM's uint8 output. hf_attention_q8 quantizes its float inputs and calls the same kernels. */
int hf_attention_q8_u8(int isa, int64_t S, int64_t heads, int64_t d, const uint8_t *q8, const uint8_t *k8,
                       const uint8_t *v8, int64_t ld, const int64_t *key_mask, float scale, const hf_attn_quant *aq,
                       float *ctx, int64_t ldo);
/* hf_attention_q8_u8 with the relative-position bias of hf_attention_relbias (rel: [heads][2S - 1]) added to the
 * scaled scores: (s * scale + rel[h][j - i + S - 1]) + bias[j]. */
int hf_attention_q8_u8_relbias(int isa, int64_t S, int64_t heads, int64_t d, const uint8_t *q8, const uint8_t *k8,
                               const uint8_t *v8, int64_t ld, const int64_t *key_mask, const float *rel, float scale,
                               const hf_attn_quant *aq, float *ctx, int64_t ldo);
/* hf_attention_q8_u8 whose context is written as uint8 out[S][ldo] = hf_quantize_u8(ctx * out_mul, out_scale,
 * out_zp) (out_mul: [heads*d] per-channel multipliers, SmoothQuant's 1/s, or NULL), bit for bit: the engine
 * quantizes attn_out's input this way while the context is in registers. */
int hf_attention_q8_u8_quant(int isa, int64_t S, int64_t heads, int64_t d, const uint8_t *q8, const uint8_t *k8,
                             const uint8_t *v8, int64_t ld, const int64_t *key_mask, float scale,
                             const hf_attn_quant *aq, float out_scale, int32_t out_zp, const float *out_mul,
                             uint8_t *out, int64_t ldo);

/* ---- threads ----
 * A persistent pool; default = HF_FAST_NUM_THREADS, else OMP_NUM_THREADS, else the CPUs this
 * process may run on. Results never depend on the thread count. */
int hf_set_num_threads(int n);
int hf_get_num_threads(void);

/* ---- block-sparse u8 x s8 -> s32 GEMM ----
 * Blocks of W[N][K]: block_rows x block_cols = 4x1 (4 output channels x 1 input) or 1x4 (1 output
 * channel x 4 inputs). Blocks that are all zero in W are skipped (detected at pack time); N and K
 * need not be multiples of the block (edges are zero padded). The packed weight is tied to its ISA. */
typedef struct hf_sparse_w hf_sparse_w;
int hf_sparse_pack(int isa, int block_rows, int block_cols, int64_t N, int64_t K, const int8_t *W, int64_t ldw,
                   hf_sparse_w **out);
void hf_sparse_free(hf_sparse_w *w);
int hf_sparse_isa(const hf_sparse_w *w);
/* Bytes held by the packed weight (values + indices). */
int64_t hf_sparse_nbytes(const hf_sparse_w *w);
const char *hf_sparse_kernel_name(const hf_sparse_w *w); /* see hf_dense_kernel_name */
/* 4x1 groups (4 output channels) whose kept inputs are all whole aligned quads 4j..4j+3, i.e. 4x4 tiles, which the
 * AVX-512 VNNI kernel reads pre-interleaved (no unpack in its loop); 0 on other kernels and for 1x4. */
int64_t hf_sparse_quad_groups(const hf_sparse_w *w);
/* Kept (non-zero) blocks, all blocks, and the block shape; any out pointer may be NULL. */
int hf_sparse_info(const hf_sparse_w *w, int64_t *kept_blocks, int64_t *total_blocks, int *block_rows,
                   int *block_cols);
/* C[M][N] (row stride ldc) = A[M][K] (row stride lda) x W^T, exact int32. */
int hf_sparse_gemm(const hf_sparse_w *w, int64_t M, const uint8_t *A, int64_t lda, int32_t *C, int64_t ldc);

/* ---- packed int8 Linear with fused epilogue ----
 * Y[m][n] = (sum_k A[m][k] W[n][k] - a_zp * colsum_w[n]) * a_scale * w_scale[n] + bias[n]
 *           [then GELU (erf form) if HF_LINEAR_GELU] [then + residual[m][n] if residual != NULL]
 * block_rows = block_cols = 0 packs a dense weight (dense kernels); 4x1 / 1x4 pack block-sparse. */
#define HF_LINEAR_GELU 1
typedef struct hf_linear hf_linear;
int hf_linear_pack(int isa, int block_rows, int block_cols, int64_t N, int64_t K, const int8_t *W, int64_t ldw,
                   const float *w_scale, const float *bias, hf_linear **out);
/* GeGLU's Linear (ModernBERT's Wi): W[N][K] rows [0, N/2) are the GELU inputs a, rows [N/2, N) the gates g; N/2 a
 * multiple of 4. Packed with its output channels interleaved in groups of 4 (a[4q..4q+3], then g[4q..4q+3]), so
 * every 8-channel tile of the kernels holds whole (a, g) pairs and the gate is applied in the GEMM epilogue: the
 * [M][N] fp32 output is never written. Such a Linear gives Y[M][N/2] uint8 = hf_quantize_u8(GELU(y_a) * y_g [*
 * y_mul[j]], y_scale, y_zp) through hf_linear_forward_u8 (flags 0, no residual) and hf_linear_chain, bit for bit
 * hf_linear_forward's fp32 output then hf_geglu_u8 on the same ISA; hf_linear_forward refuses it. 4x1 blocks of
 * the original rows stay 4x1 blocks (a block must not straddle the a / g split, as the pruner keeps it). */
int hf_linear_pack_geglu(int isa, int block_rows, int block_cols, int64_t N, int64_t K, const int8_t *W, int64_t ldw,
                         const float *w_scale, const float *bias, hf_linear **out);
/* 1 when lin was packed with hf_linear_pack_geglu (its outputs are N/2 gated channels), else 0 */
int hf_linear_is_geglu(const hf_linear *lin);
void hf_linear_free(hf_linear *lin);
int64_t hf_linear_nbytes(const hf_linear *lin);
const char *hf_linear_kernel_name(const hf_linear *lin); /* see hf_dense_kernel_name */
/* hf_sparse_quad_groups of a block-sparse Linear (its 4x4-tile groups on AVX-512 VNNI); 0 when dense */
int64_t hf_linear_quad_groups(const hf_linear *lin);
/* The same Linear packed for the other kernel (one of lin / alt block-sparse, the other dense; same ISA, shape, GeGLU
 * order, scales and bias, else HF_EINVAL), for the calls that kernel runs faster: calls of M >= rows tokens run the
 * block-sparse one, shorter calls the dense one. The outputs are the same bit for bit (both kernels sum the same int32
 * products and share the epilogue). lin keeps a pointer: alt must outlive it. alt NULL: none. */
int hf_linear_set_alternative(hf_linear *lin, const hf_linear *alt, int64_t rows);
/* 1 when a call of M tokens on lin runs the block-sparse kernel (lin's own or its alternative's), 0 dense, -1 NULL */
int hf_linear_runs_sparse(const hf_linear *lin, int64_t M);
/* isa, N, K, block shape (0x0 = dense), kept and total blocks; out pointers may be NULL. */
int hf_linear_info(const hf_linear *lin, int *isa, int64_t *N, int64_t *K, int *block_rows, int *block_cols,
                   int64_t *kept_blocks, int64_t *total_blocks);
/* Save / restore a packed Linear (hf_fast.runtime.pack_cache: a second load skips packing). The bytes are this
 * build's private layout for the ISA it was packed on: restore them only with the same library build (the cache
 * keys on the library file's sha256 and checksums the bytes; hf_linear_deserialize checks the header, sizes and
 * ISA support, not the packed contents). hf_linear_serialize writes hf_linear_serialized_size(lin) bytes to buf
 * (cap bytes); hf_linear_deserialize fails with HF_EFORMAT on a malformed or truncated buffer. */
int64_t hf_linear_serialized_size(const hf_linear *lin);
int hf_linear_serialize(const hf_linear *lin, void *buf, int64_t cap);
int hf_linear_deserialize(const void *buf, int64_t size, hf_linear **out);
/* A[M][K] u8 (stride lda); Y[M][N] fp32 (stride ldy); residual (stride ldr) may be NULL. */
int hf_linear_forward(const hf_linear *lin, int64_t M, const uint8_t *A, int64_t lda, float a_scale, int32_t a_zp,
                      float *Y, int64_t ldy, int flags, const float *residual, int64_t ldr);
/* The same, with Y quantized in the epilogue: Y[M][N] u8 = hf_quantize_u8(float result, y_scale, y_zp), bit
 * for bit (the next Linear's input without a float round trip). y_mul[N] (may be NULL): the float result is
 * first multiplied by y_mul[n] (a SmoothQuant Mul in front of the QuantizeLinear), i.e. hf_quantize_u8_mul. */
int hf_linear_forward_u8(const hf_linear *lin, int64_t M, const uint8_t *A, int64_t lda, float a_scale, int32_t a_zp,
                         uint8_t *Y, int64_t ldy, int flags, const float *residual, int64_t ldr, float y_scale,
                         int32_t y_zp, const float *y_mul);
/* hf_linear_forward_u8 (no GELU, residual or multiplier) with one quantizer per segment of seg output channels:
 * channel n is quantized with seg_scale / seg_zp[n / seg] (seg a multiple of 16 dividing N). The engine's qkv
 * GEMM writes q, k and v this way for the int8 attention. */
int hf_linear_forward_u8_seg(const hf_linear *lin, int64_t M, const uint8_t *A, int64_t lda, float a_scale, int32_t a_zp,
                             uint8_t *Y, int64_t ldy, int64_t seg, const float *seg_scale, const int32_t *seg_zp);
/* Y = l2(Q(l1(A))) [+ residual]: l1 with its flags (HF_LINEAR_GELU) quantized to uint8 with h_scale / h_zp (after
 * h_mul[n], or NULL), then l2 (l1's N == l2's K) as hf_linear_forward. The intermediate goes through hbuf, which holds
 * hf_linear_chain_scratch_bytes(l1, l2, M) bytes, 64-byte aligned. When both are 4x1-sparse on AVX-512 VNNI, l1's epilogue writes l2's
 * packed activations directly (no transpose, no pack pass); the result is the two-call result bit for bit. The
 * engine's FFN (ffn_in with GELU, then ffn_out with the residual). */
int64_t hf_linear_chain_scratch_bytes(const hf_linear *l1, const hf_linear *l2, int64_t M);
int hf_linear_chain(const hf_linear *l1, const hf_linear *l2, int64_t M, const uint8_t *A, int64_t lda, float a_scale,
                    int32_t a_zp, int flags1, float h_scale, int32_t h_zp, const float *h_mul, uint8_t *hbuf, float *Y,
                    int64_t ldy, const float *residual, int64_t ldr);

/* ---- activation quantizer and GELU ----
 * y = saturate_u8(round_half_even(x / scale) + zp), exactly ONNX QuantizeLinear (true division, not
 * a reciprocal multiply); NaN -> 0; scale finite > 0, 0 <= zp <= 255. */
int hf_quantize_u8(int isa, int64_t n, const float *x, float scale, int32_t zp, uint8_t *y);
/* ONNX Mul(x, mul) then QuantizeLinear on x[rows][n] with a per-column mul[n] (SmoothQuant's 1/s):
 * y[r][i] = hf_quantize_u8(fp32(x[r][i] * mul[i]), scale, zp), the two roundings ONNX Runtime does. */
int hf_quantize_u8_mul(int isa, int64_t rows, int64_t n, const float *x, const float *mul, float scale, int32_t zp,
                       uint8_t *y);
/* y = 0.5 x (1 + erf(x / sqrt 2)); y may alias x. */
int hf_gelu(int isa, int64_t n, const float *x, float *y);

/* ---- fused encoder engine (engine.c) ----
 * Built once from a plan (hf_fast/runtime/engine.py); hf_engine_run is safe to call from many
 * threads (calls on one engine take turns on its workspace). Linear layers are borrowed: the caller
 * keeps them alive as long as the engine. */
typedef struct hf_engine hf_engine;

/* What the engine runs: a description of the encoder layer each model family fills in (hf_fast/models, spec.py
 * EngineLayer). The enums name the ops of the encoder families hf-fast targets (BERT, RoBERTa, ELECTRA, MPNet,
 * ModernBERT), so a new family adds kernels behind a value, not a new interface. A value this build does not run
 * is refused by hf_engine_create with HF_ENOTIMPL and a message naming the op: never run as something else. */
#define HF_ENGINE_DESC_VERSION 1
/* norm: where each block's LayerNorm sits */
#define HF_NORM_POST 0 /* x = LN(x + block(x))                                (BERT, RoBERTa, ELECTRA, MPNet) */
#define HF_NORM_PRE 1  /* x = x + block(LN(x)), one final LN (hf_engine_set_final_norm)  (ModernBERT); a layer's ln1
                        * may be NULL: no attention LayerNorm (ModernBERT's layer 0) */
/* activation: the FFN's */
#define HF_ACT_GELU 0      /* exact (erf) GELU of ffn_in's output */
#define HF_ACT_GELU_TANH 1 /* tanh-approximate GELU: not implemented */
#define HF_ACT_GEGLU 2     /* ffn_in gives [2F] = (a, g): GELU(a) * g (ModernBERT), one pass into ffn_out's uint8 input */
#define HF_ACT_SWIGLU 3    /* SiLU(a) * g: not implemented */
#define HF_ACT_COUNT 4
/* position: how token positions enter */
#define HF_POS_ABSOLUTE 0       /* + row t of the position table */
#define HF_POS_PADDING_OFFSET 1 /* RoBERTa: row padding_idx + 1 + t; the caller passes the table from that row on and
                                 * feeds right-padded batches (the row of real token t is then row t) */
#define HF_POS_ROTARY 2         /* no table (max_pos: the longest sequence); q, k rotated per layer by rope_theta[layer]
                                 * (ModernBERT; fp32 attention only) */
#define HF_POS_COUNT 3
/* attn_bias: an additive bias on the attention scores besides the key mask */
#define HF_ATTN_BIAS_NONE 0
#define HF_ATTN_BIAS_RELATIVE 1 /* bucketed relative-position bias (MPNet, T5): a [rel_buckets][heads] table set with
                                 * hf_engine_set_attention_bias, shared by every layer, added to the scaled scores
                                 * (fp32 and int8 attention) */
#define HF_ATTN_BIAS_COUNT 2
/* linear_bias: bits of the Linears that have a bias. Each packed hf_linear carries its own bias, so a bias-free
 * Linear runs packed with a zero bias (and a bias-free LayerNorm with a zero beta): every combination runs. */
#define HF_BIAS_QKV 1
#define HF_BIAS_ATTN_OUT 2
#define HF_BIAS_FFN_IN 4
#define HF_BIAS_FFN_OUT 8
#define HF_BIAS_LAYERNORM 16
#define HF_BIAS_ALL 31
typedef struct {
    uint32_t size;    /* sizeof(hf_engine_model_desc) as the caller compiled it: a stale caller is refused */
    uint32_t version; /* HF_ENGINE_DESC_VERSION */
    int32_t isa;      /* HF_ISA_* or HF_ISA_AUTO; an unknown id is refused */
    int32_t norm, activation, position, attn_bias; /* HF_NORM_*, HF_ACT_*, HF_POS_*, HF_ATTN_BIAS_* */
    uint32_t linear_bias;                          /* HF_BIAS_* bits */
    int64_t hidden, heads, ffn, layers, vocab;
    int64_t max_pos;        /* rows of the position table (0 with HF_POS_ROTARY) */
    int64_t type_vocab;     /* rows of the token-type table, 0 = none */
    int64_t embedding_size; /* width of the embedding tables and their LayerNorm; 0 = hidden */
    /* 1: an fp32 Linear embedding_size -> hidden runs after the embeddings LayerNorm (ELECTRA's
     * embeddings_project), set with hf_engine_set_embeddings_project; 0: embedding_size must equal hidden */
    int32_t embed_proj;
    int32_t rel_buckets;      /* HF_ATTN_BIAS_RELATIVE: number of buckets and the distance of the last one */
    int64_t rel_max_distance;
    const int64_t *attn_window; /* [layers]: keys within this many tokens of the query (0 = global); NULL = all
                                 * global. ModernBERT's local layers: local_attention / 2; O(S x window), fp32. */
    const float *rope_theta;    /* [layers]: rotary base of each layer (HF_POS_ROTARY), NULL otherwise */
} hf_engine_model_desc;

#define HF_ENGINE_MAX_HEAD_OPS 16
#define HF_HEAD_CLS 0
#define HF_HEAD_LINEAR 1
#define HF_HEAD_TANH 2
#define HF_HEAD_RELU 3
#define HF_HEAD_GELU 4 /* exact (erf) GELU, ELECTRA's classification head */
#define HF_HEAD_LAYERNORM 5 /* LayerNorm over the head width (ModernBERT's head.norm): added with
                             * hf_engine_add_head_layernorm, run by the engine's LayerNorm kernel (ref / AVX2 / AVX-512) */
/* Sentence-embedding ops (task feature-extraction), as sentence-transformers' Pooling / Normalize compute them,
 * over the tokens the attention mask keeps (all tokens for a NULL mask); each turns [B][S][w] into [B][w]:
 * MEAN sum/max(n, 1e-9), MEAN_SQRT_LEN sum/sqrt(max(n, 1e-9)), MAX the largest kept value (-1e9 where a row
 * keeps none). L2NORM divides each row by max(||row||, 1e-12) (torch.nn.functional.normalize). */
#define HF_HEAD_POOL_MEAN 16
#define HF_HEAD_POOL_MAX 17
#define HF_HEAD_POOL_MEAN_SQRT_LEN 18
#define HF_HEAD_L2NORM 19
typedef struct {
    hf_linear *qkv;      /* [3H x H]: Q, K, V projections stacked along the output axis */
    hf_linear *attn_out; /* [H x H] */
    hf_linear *ffn_in;   /* [F x H], GELU fused; [2F x H] with HF_ACT_GEGLU */
    hf_linear *ffn_out;  /* [H x F] */
    float qkv_scale, o_scale, i_scale, f_scale; /* uint8 activation scales of each Linear's input */
    int qkv_zp, o_zp, i_zp, f_zp;
    float att_scale;     /* score scale, 1/sqrt(head size) for BERT */
    const float *ln1_g, *ln1_b, *ln2_g, *ln2_b;
    float ln1_eps, ln2_eps;
    /* 1: the residual Add reads the fake-quantized tensor, dequant(quant(.)), as an ONNX QDQ graph whose
     * Q/DQ pair is shared by the MatMul and the Add does; in_fq: the layer input (residual of attn_out,
     * quantized like qkv's input); mid_fq: the attention LayerNorm output (residual of ffn_out, like ffn_in's) */
    int in_fq, mid_fq;
    /* SmoothQuant: per-channel multipliers (1/s) of each Linear's input, applied in fp32 right before its
     * quantizer (qkv_mul[H] on the LayerNorm output, o_mul[H] on the context, i_mul[H], f_mul[F] on the GELU
     * output); NULL = none. Finite values only; qkv_mul excludes in_fq and i_mul mid_fq (the residual reads
     * the unsmoothed tensor). Copied by hf_engine_set_layer. */
    const float *qkv_mul, *o_mul, *i_mul, *f_mul;
    /* int8 attention (hf_attention_q8) with these parameters; NULL = fp32 attention. Copied. */
    const hf_attn_quant *attn_q;
} hf_engine_layer_desc;
/* An engine for the model `desc` describes (copied: its arrays need not outlive the call). HF_EINVAL for bad
 * dimensions, an unknown ISA id or enum value, or a desc of another size / version; HF_ENOTIMPL for an op this build
 * does not run (tanh GELU, SwiGLU, a sliding window with a relative bias; hf_engine_set_layer: int8 attention with
 * rotary positions or a window). */
int hf_engine_create(const hf_engine_model_desc *desc, hf_engine **out);
void hf_engine_free(hf_engine *e);
/* Tables of embedding_size columns: word[vocab], pos[max_pos], type[type_vocab] (NULL when 0); LayerNorm over
 * embedding_size. */
int hf_engine_set_embeddings(hf_engine *e, const float *word, const float *pos, const float *type,
                             const float *ln_g, const float *ln_b, float eps);
int hf_engine_set_layer(hf_engine *e, int64_t i, const hf_engine_layer_desc *desc);
/* The embeddings projection (desc.embed_proj): fp32 W[hidden][embedding_size] and b[hidden] (NULL = zero), applied
 * to the embeddings LayerNorm output. Copied. */
int hf_engine_set_embeddings_project(hf_engine *e, const float *W, const float *b);
/* The relative attention bias table (desc.attn_bias == HF_ATTN_BIAS_RELATIVE): [rel_buckets][heads] floats, the
 * layout of MPNet's encoder.relative_attention_bias.weight. Copied; finite values only. */
int hf_engine_set_attention_bias(hf_engine *e, const float *table);
/* The final LayerNorm of a pre-LN engine (desc.norm == HF_NORM_PRE; ModernBERT's final_norm), applied to the last
 * layer's output before the head program. Copied. */
int hf_engine_set_final_norm(hf_engine *e, const float *gamma, const float *beta, float eps);
/* Head program: HF_HEAD_CLS keeps token 0 of each sequence; LINEAR is fp32 W[N][K] + b; TANH, RELU, GELU
 * elementwise; the HF_HEAD_POOL_* ops pool the tokens of each sequence (at most one CLS or pooling op). */
int hf_engine_add_head_op(hf_engine *e, int kind, int64_t N, int64_t K, const float *W, const float *b);
/* Head op HF_HEAD_LAYERNORM: y = LN(x) * gamma + beta over the current head width (gamma, beta: [width], copied;
 * beta NULL = zero). */
int hf_engine_add_head_layernorm(hf_engine *e, const float *gamma, const float *beta, float eps);
int64_t hf_engine_output_width(const hf_engine *e);
int hf_engine_token_level(const hf_engine *e);
/* The ISA (HF_ISA_*) the engine was created for, after resolving HF_ISA_AUTO: its LayerNorm, attention, epilogue
 * and head kernels run on it (hf_op_kernel names them); -1 for NULL. */
int hf_engine_isa(const hf_engine *e);
/* Precision of the engine's attention in the layers without int8 attention: HF_ATTN_FP32 (the default) or
 * HF_ATTN_BF16 (hf_attention_bf16's products; hf_attention_bf16_ex's in layers with a relative bias or a sliding
 * window). BF16 where the engine's ISA has no bf16 kernel for its head size is HF_EUNSUPPORTED (the engine stays
 * fp32). */
#define HF_ATTN_FP32 0
#define HF_ATTN_BF16 1
#define HF_ATTN_INT8_DYNAMIC 2 /* hf_attention_dq8's arithmetic; HF_EUNSUPPORTED where the ISA has no kernel for d or
                                * with a relative attention bias; sliding-window layers keep fp32 */
int hf_engine_set_attention_precision(hf_engine *e, int precision);
/* HF_ATTN_FP32, HF_ATTN_BF16 or HF_ATTN_INT8_DYNAMIC; -1 for NULL. */
int hf_engine_attention_precision(const hf_engine *e);
/* ids/mask/types: [B][S] int64 (mask, types may be NULL); out: [B][S][width] or [B][width]. */
int hf_engine_run(hf_engine *e, int64_t B, int64_t S, const int64_t *ids, const int64_t *mask,
                  const int64_t *types, float *out, int64_t out_len);
/* Padding-free ragged batch: n sequences of lens[b] >= 1 tokens packed back to back, ids/types [sum lens] (types may
 * be NULL). Every Linear, LayerNorm and GELU runs on the sum(lens) real rows; attention runs per sequence over its own
 * tokens. Token i of sequence b reads row pos0[b] + i of the position table (pos0 NULL = 0; a left-padded row of the
 * padded layout passes its pad count, so each token keeps its position). out: [sum lens][width] packed, or
 * [n][width] for a CLS / pooling head. Each sequence's output is the padded run's at its real tokens (within float
 * rounding: the key sums skip the masked keys instead of adding their zeros). A length 0 is refused (HF_EINVAL). */
int hf_engine_run_packed(hf_engine *e, int64_t n, const int64_t *lens, const int64_t *pos0, const int64_t *ids,
                         const int64_t *types, float *out, int64_t out_len);

#ifdef __cplusplus
}
#endif
#endif /* HF_FAST_H */
