/* Internal declarations shared by the runtime's C files (not part of the ABI). */
#ifndef HF_INTERNAL_H
#define HF_INTERNAL_H

#include <stdatomic.h>

#include "hf_fast.h"

/* error.c: record a message for hf_last_error() and return `code`. */
int hf_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Largest K the int32 accumulators hold without overflow: 255 * 128 * K < 2^31. */
#define HF_MAX_K 65536

/* 64-byte aligned allocation; NULL on failure (callers report HF_ENOMEM). */
void *hf_alloc(size_t bytes);
void hf_free(void *p);

/* ---- dense GEMM kernel family (ref/dense_s8_gemm_ref.c, arch/<arch>/dense_s8_gemm_*.c) ----
 * Each ISA has its own packed layout; `data` is opaque to everyone but that kernel. */
struct hf_dense_w {
    int isa;
    int variant; /* HF_VARIANT_*: which kernel of the ISA family packed `data` */
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
    /* > 0: the packed data is panel-major, `panel` output channels a panel of packed_size(panel, K) bytes, so a run of
     * whole panels is a weight of its own (linear.c splits short calls over output channels); 0: not splittable */
    int panel;
} hf_dense_kernel;

extern const hf_dense_kernel hf_dense_ref;

/* Kernel variants inside an ISA family (packed layouts differ). On AVX2, weights that all lie in
 * [-64, 64] (7-bit, ONNX Runtime's reduce_range) use u8 x s8 vpmaddubsw, whose int16 pair sums
 * cannot saturate then (255*64*2 <= 32767): exact. Other weights use the int16 vpmaddwd path. */
#define HF_VARIANT_DEFAULT 0 /* ref, avx512vnni, and AVX2's exact int16 (vpmaddwd) path */
#define HF_VARIANT_S7 1      /* AVX2 vpmaddubsw path for 7-bit weights */
/* 1 when every W[n][k] (n < N, k < K) lies in [-64, 64] (ONNX Runtime's symmetric reduce_range weights;
 * 255 * 64 * 2 = 32640 still fits int16). */
int hf_weights_fit_s7(int64_t N, int64_t K, const int8_t *W, int64_t ldw);
/* dispatch.c: the kernel name of an ISA's variant ("ref", "avx2-s16", "avx2-s7", "avx512vnni"; "unknown") */
const char *hf_kernel_variant_name(int isa, int variant);

/* dispatch.c: the kernel table for an ISA (NULL if the CPU cannot run it). */
const hf_dense_kernel *hf_dense_kernel_for(int isa);
/* The table that packed / runs `w` (its ISA and variant). */
const hf_dense_kernel *hf_dense_kernel_for_variant(int isa, int variant);
/* dispatch.c: the variant the dense kernel of a supported isa packs W with (7-bit weights may get their own). */
int hf_dense_variant_for(int isa, int64_t N, int64_t K, const int8_t *W, int64_t ldw);
/* Resolve HF_ISA_AUTO to the active ISA and check support. */
int hf_resolve_isa(int isa, int *out);

/* ---- fp32 transformer ops (ref/, arch/<arch>/: layernorm_*.c, attention_*.c) ---- */
typedef void (*hf_layernorm_fn)(int64_t T, int64_t H, const float *x, const float *r, const float *gamma,
                                const float *beta, float eps, float *y);
typedef void (*hf_attention_head_fn)(int64_t S, int64_t d, const float *q, const float *k, const float *v,
                                     int64_t ld, const float *key_bias, float scale, float *ctx, int64_t ldo,
                                     float *scratch);
/* The int8 attention's optional uint8 output: out[i][c] = Q(ctx[i][c] * mul[c]) (mul: the head's d channels of
 * SmoothQuant's 1/s, or NULL for none) with the exact quantizer, in place of the float ctx: the next Linear's input,
 * quantized while the context is in registers. */
typedef struct {
    uint8_t *out;
    int64_t ldo;
    float scale;
    int32_t zp;
    const float *mul;
} hf_ctx_quant;
/* int8 attention of one (sequence, head) (hf_attention_q8's per-head definition) on the quantized q8, k8, v8
 * (uint8 rows of stride ld bytes, already Q(q), Q(k), Q(v) with aq's parameters) into ctx, or with oq != NULL into
 * oq's uint8 rows (ctx unused); scratch holds hf_attention_q8_scratch_bytes(S, d), 64-byte aligned. */
typedef void (*hf_attention_q8_head_fn)(int64_t S, int64_t d, const uint8_t *q8, const uint8_t *k8, const uint8_t *v8,
                                        int64_t ld, const float *key_bias, float scale, const hf_attn_quant *aq,
                                        float *ctx, int64_t ldo, const hf_ctx_quant *oq, void *scratch);
/* hf_attention_head_fn with an additive bias per (query, key) besides key_bias: row i adds rb[i * rb_step + j] for key j
 * (j < S), as (s * scale + rb) + key_bias. The relative-position bias is rb = rel + S - 1, rb_step = -1 (row i reads
 * rel[j - i + S - 1], a contiguous slice). */
typedef void (*hf_attention_head_rb_fn)(int64_t S, int64_t d, const float *q, const float *k, const float *v,
                                        int64_t ld, const float *key_bias, const float *rb, int64_t rb_step,
                                        float scale, float *ctx, int64_t ldo, float *scratch);
typedef void (*hf_attention_q8_head_rb_fn)(int64_t S, int64_t d, const uint8_t *q8, const uint8_t *k8,
                                           const uint8_t *v8, int64_t ld, const float *key_bias, const float *rb,
                                           int64_t rb_step, float scale, const hf_attn_quant *aq, float *ctx,
                                           int64_t ldo, const hf_ctx_quant *oq, void *scratch);
typedef struct {
    hf_layernorm_fn layernorm;
    hf_attention_head_fn attention_head;       /* requires d % 8 == 0 unless it is the reference */
    hf_attention_q8_head_fn attention_q8_head; /* requires d % 16 == 0 unless it is the reference */
    /* attention_head with a per-row bias (same head sizes as attention_head); NULL: the reference runs it */
    hf_attention_head_rb_fn attention_head_rb;
    /* attention_q8_head with a per-row bias (hf_attention_head_rb_fn's rb, rb_step); NULL: the reference runs it */
    hf_attention_q8_head_rb_fn attention_q8_head_rb;
} hf_f32_ops;
void hf_attention_q8_head_rb_ref(int64_t S, int64_t d, const uint8_t *q8, const uint8_t *k8, const uint8_t *v8,
    int64_t ld, const float *key_bias, const float *rb, int64_t rb_step, float scale, const hf_attn_quant *aq,
    float *ctx, int64_t ldo, const hf_ctx_quant *oq, void *scratch);
hf_attention_q8_head_rb_fn hf_attention_q8_rb_kernel_for(int isa, int64_t d);
void hf_attention_head_rb_ref(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                              const float *key_bias, const float *rb, int64_t rb_step, float scale, float *ctx,
                              int64_t ldo, float *scratch);
/* dispatch.c: the biased attention kernel that runs head size d on isa (the table hf_attention_ops_for picks, or the
 * reference where that table has none) */
hf_attention_head_rb_fn hf_attention_rb_kernel_for(int isa, int64_t d);
/* ops.c: bucket of a key - query offset (hf_relative_position_bias) */
int32_t hf_relative_bucket(int64_t rel, int32_t buckets, int64_t max_distance);
void hf_attention_q8_head_ref(int64_t S, int64_t d, const uint8_t *q8, const uint8_t *k8, const uint8_t *v8,
    int64_t ld, const float *key_bias, float scale, const hf_attn_quant *aq, float *ctx, int64_t ldo,
    const hf_ctx_quant *oq, void *scratch);

void hf_layernorm_ref(int64_t T, int64_t H, const float *x, const float *r, const float *gamma,
                      const float *beta, float eps, float *y);
/* ref/attention_bf16_ref.c: the bf16 attention's definition (every bf16 kernel matches it bit for bit) */
void hf_attention_head_bf16_ref(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                                const float *key_bias, float scale, float *ctx, int64_t ldo, float *scratch);
/* dispatch.c: the bf16 attention kernel of a supported isa for head size d; NULL where it has none (run fp32) */
hf_attention_head_fn hf_attention_bf16_kernel_for(int isa, int64_t d);
/* The bf16 attention with a per-row bias (hf_attention_head_rb_fn's rb, rb_step; NULL: none) and / or a window
 * (window >= 0: row i attends to the keys |i - j| <= window only, O(S window) work, as hf_attention_window_fn; < 0:
 * every key). Scratch: hf_attention_bf16x_scratch_floats(S, window, d) floats (O(S d) with a window: no S x S). */
typedef void (*hf_attention_bf16x_fn)(int64_t S, int64_t d, const float *q, const float *k, const float *v,
                                      int64_t ld, const float *key_bias, const float *rb, int64_t rb_step,
                                      int64_t window, float scale, float *ctx, int64_t ldo, float *scratch);
void hf_attention_bf16x_ref(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                            const float *key_bias, const float *rb, int64_t rb_step, int64_t window, float scale,
                            float *ctx, int64_t ldo, float *scratch);
int64_t hf_attention_bf16x_scratch_floats(int64_t S, int64_t window, int64_t d);
/* dispatch.c: the variant kernel of the isa whose bf16 kernel hf_attention_bf16_kernel_for returns; NULL with it */
hf_attention_bf16x_fn hf_attention_bf16x_kernel_for(int isa, int64_t d);
/* ref/attention_dq8_ref.c: the dynamic int8 attention's definition (every such kernel matches it bit for bit), its
 * int16 weight scale for ne attended keys, and its per-row int8 quantizer (returns the scale) */
void hf_attention_head_dq8_ref(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                               const float *key_bias, float scale, float *ctx, int64_t ldo, float *scratch);
int32_t hf_dq8_pmax(int64_t ne);
float hf_dq8_quantize_ref(const float *x, int64_t n, int64_t stride, int8_t *out);
/* dispatch.c: the dynamic int8 attention kernel of a supported isa for head size d; NULL where it has none */
hf_attention_head_fn hf_attention_dq8_kernel_for(int isa, int64_t d);
void hf_attention_head_ref(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                           const float *key_bias, float scale, float *ctx, int64_t ldo, float *scratch);
/* p rounded up to the next 64-byte boundary (carving aligned buffers out of a scratch block) */
static inline char *hf_align64(char *p) { return (char *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }
/* Keys the SIMD attention kernels loop over: up to the last one not masked (-inf bias), since the ones past it get
 * probability exactly 0 (right-padded batches skip their pad keys); all S when every key is masked (uniform). */
static inline int64_t hf_attended_keys(int64_t S, const float *key_bias) {
    int64_t ne = S;
    if (key_bias) {
        while (ne > 0 && key_bias[ne - 1] == -__builtin_inff()) ne--;
        if (ne == 0) ne = S;
    }
    return ne;
}
/* ops.c: HF_EINVAL naming `where` unless every scale is positive and finite and every zero point in [0, 255]. */
int hf_check_attn_quant(const hf_attn_quant *aq, const char *where);
/* dispatch.c: fp32 ops for an ISA. */
const hf_f32_ops *hf_f32_ops_for(int isa);
/* dispatch.c: the table whose attention_head (int8 == 0) or attention_q8_head (int8 == 1) runs head size d on isa
 * (hf_isa_table's attn_step / attn_fallback: on x86 the reference for fp32 d % 8 and int8 d % 16; fp32 d % 16 == 8 on
 * AVX-512: the AVX2 kernel). */
const hf_f32_ops *hf_attention_ops_for(int isa, int64_t d, int int8);

/* ---- ModernBERT-style encoder ops (ref/rotary_ref.c, geglu_ref.c, attention_window_ref.c; arch/x86/ the same names _avx2.c, _avx512.c) ----
 * rotary: rotates rows of q and k in place (S rows of stride ld, d columns, d even): with h = d / 2, c < h,
 *   x'[c] = x[c] cos[t][c] - x[c + h] sin[t][c],  x'[c + h] = x[c + h] cos[t][c] + x[c] sin[t][c]
 *   (transformers' rotate_half form); cs holds cos [S][h] then sin [S][h] (hf_rope_table).
 * geglu: y[i] = Q(GELU(a[i]) * g[i] [* mul[i]]) with the exact quantizer (a, g: the two halves of ffn_in's row).
 * attention_window: hf_attention_head_fn over the keys j with |i - j| <= window only (ModernBERT's local layers):
 *   O(S x window) work, scratch of hf_attention_window_scratch_floats(S, window, d) floats (K^T and one row's window
 *   of scores: O(S x d + window), no S x S buffer); a row whose
 *   window keys are all masked gets uniform weights over its window. */
typedef void (*hf_rotary_fn)(int64_t S, int64_t d, float *q, float *k, int64_t ld, const float *cs);
typedef void (*hf_geglu_fn)(int64_t n, const float *a, const float *g, const float *mul, float scale, int32_t zp,
                            uint8_t *y);
typedef void (*hf_attention_window_fn)(int64_t S, int64_t d, const float *q, const float *k, const float *v,
                                       int64_t ld, const float *key_bias, int64_t window, float scale, float *ctx,
                                       int64_t ldo, float *scratch);
typedef struct {
    hf_rotary_fn rotary;
    hf_geglu_fn geglu;
    hf_attention_window_fn attention_window;
} hf_encoder_ops;
extern const hf_encoder_ops hf_encoder_ops_ref;
void hf_rotary_ref(int64_t S, int64_t d, float *q, float *k, int64_t ld, const float *cs);
void hf_geglu_ref(int64_t n, const float *a, const float *g, const float *mul, float scale, int32_t zp, uint8_t *y);
void hf_attention_window_ref(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                             const float *key_bias, int64_t window, float scale, float *ctx, int64_t ldo,
                             float *scratch);
int64_t hf_attention_window_scratch_floats(int64_t S, int64_t window, int64_t d);
/* cos then sin tables [S][d / 2] of rotary base theta, in transformers' fp32 arithmetic (inv_freq = 1 / theta^(2c/d),
 * angle = fp32(t * inv_freq)) */
void hf_rope_table(int64_t S, int64_t d, float theta, float *cs);
/* dispatch.c: the encoder ops of a supported isa (the reference table's where the ISA has none) */
const hf_encoder_ops *hf_encoder_ops_for(int isa);

/* ---- thread pool (threadpool.c) ----
 * A persistent pthread pool; the calling thread is worker 0. No thread creation or allocation in
 * hf_parallel once the pool exists. Nested or concurrent calls run serially on the caller. */
typedef void (*hf_task_fn)(void *ctx, int tid, int nthreads);
/* Run fn(ctx, tid, n) on the caller (tid 0) and on up to n-1 pool workers, n = min(want,
 * hf_get_num_threads()); returns n. Workers may join late or not at all: fn must claim work
 * dynamically (an atomic counter in ctx, or hf_ranges_claim) until none is left, never split statically by tid. */
int hf_parallel(hf_task_fn fn, void *ctx, int want);
/* Bracket a run that takes locks of its own (hf_engine_run: the engine's arena lock): fork() waits for runs in
 * flight and holds new ones until it returns, so a child never inherits such a lock held by a thread it lacks. */
void hf_fork_gate_enter(void);
void hf_fork_gate_exit(void);
/* Work split with affinity: items [0, n) cut into one contiguous range per thread; a thread takes items from its own
 * range first, then from the others' (each range has its own counter, on its own cache line). The 4x1 GEMM's units and
 * tiles and the engine's row blocks are in token order, so a thread packs, computes and normalises mostly its own
 * tokens' rows: with one shared counter the rows one core wrote were read by the other, and on this VM the 2-thread
 * sparse engine ran ~1.5x slower for seconds to minutes at a time. Any thread may still take any item, so a slow or
 * absent thread delays nothing. */
#define HF_MAX_RANGES 8
typedef struct {
    _Alignas(64) atomic_llong next;
    int64_t end;
} hf_range;

/* Cuts [0, n) into one range per thread (nth, at most HF_MAX_RANGES); returns the number of ranges. */
static inline int hf_ranges_init(hf_range *rg, int nth, int64_t n) {
    const int nr = nth < 1 ? 1 : nth < HF_MAX_RANGES ? nth : HF_MAX_RANGES;
    for (int r = 0; r < nr; r++) {
        atomic_init(&rg[r].next, n * r / nr);
        rg[r].end = n * (r + 1) / nr;
    }
    return nr;
}

static inline int hf_ranges_claim(hf_range *rg, int nr, int tid, int64_t *item) {
    for (int k = 0; k < nr; k++) {
        hf_range *r = &rg[(tid + k) % nr];
        if (atomic_load_explicit(&r->next, memory_order_relaxed) >= r->end) continue;
        const int64_t u = atomic_fetch_add_explicit(&r->next, 1, memory_order_relaxed);
        if (u < r->end) {
            *item = u;
            return 1;
        }
    }
    return 0;
}

/* Grow-only 64-byte aligned scratch owned by the calling thread (slot 0..HF_SCRATCH_SLOTS-1);
 * NULL on failure. Freed when the thread exits. */
#define HF_SCRATCH_SLOTS 6
#define HF_SCRATCH_SPARSE_X 0    /* sparse kernels: packed activation tiles (calling thread) */
#define HF_SCRATCH_SPARSE_ROWS 1 /* sparse kernels: activation packing rows (each worker) */
#define HF_SCRATCH_LINEAR_ACC 2  /* linear.c dense path: int32 accumulators (calling thread) */
#define HF_SCRATCH_ATTENTION 3   /* engine.c: attention scratch (each worker) */
#define HF_SCRATCH_DENSE_A 4     /* dense AVX2 int16 kernel: widened rows of A (each worker) */
#define HF_SCRATCH_SPARSE_X4 5   /* 4x1 VNNI kernel: interleaved quads of the activation tiles (calling thread) */
void *hf_scratch(int slot, size_t bytes);

/* ---- fused epilogue (ref/linear_ref.c, arch/<arch>/linear_*.c) ----
 * f32 == 0 (HF_EPI_S32): C is int32 [M][ldc], the raw accumulators.
 * f32 == 1 (HF_EPI_F32): C is float [M][ldc], y = (acc - a_zp*colsum[n]) * (a_scale*w_scale[n]) + bias[n]
 *           (one fmaf), then GELU (erf form) if gelu, then + residual[m*ldr+n] if residual.
 * f32 == 2 (HF_EPI_U8):  C is uint8 [M][ldc], the float y above quantized exactly like
 *           hf_quantize_u8(y, q_scale, q_zp): the next Linear's input, with no float round trip.
 * acc - a_zp*colsum is computed in wrapping 32-bit arithmetic: the true value sum (a-zp)*w fits. */
#define HF_EPI_S32 0
#define HF_EPI_F32 1
#define HF_EPI_U8 2
typedef struct {
    int f32, gelu;
    int32_t a_zp;
    float a_scale;
    const int32_t *colsum;
    const float *w_scale, *bias; /* bias may be NULL */
    const float *residual;       /* may be NULL */
    int64_t ldr;
    float q_scale; /* HF_EPI_U8 output quantization */
    int32_t q_zp;
    const float *q_mul; /* HF_EPI_U8: y[n] * q_mul[n] is quantized (SmoothQuant's 1/s), or NULL */
    /* HF_EPI_U8 with q_seg > 0 (a multiple of 16): channel n is quantized with q_seg_scale / q_seg_zp[n / q_seg]
     * instead of q_scale / q_zp (the engine's qkv GEMM writes q, k and v as uint8, each with its own parameters) */
    int64_t q_seg;
    const float *q_seg_scale;
    const int32_t *q_seg_zp;
    /* HF_EPI_U8 with pack_ld > 0 (4x1 AVX-512 VNNI kernel only, no residual): C is the next 4x1 VNNI layer's packed
     * activations (hf_sparse_kernel.gemm_packed), the 64-byte row of channel n in token tile t at C + t * pack_ld +
     * n * 64, pack_ld = round16(N) * 64; written channel by channel from the kernel's channel-major tile, with no
     * transpose (hf_strip_store_packed_avx512) and no pack pass on the consumer's side. */
    int64_t pack_ld;
    /* HF_EPI_S32 only: full 64-byte-aligned rows are written with non-temporal stores (set by a kernel for an
     * output too large to stay in cache, so its lines are not read for ownership first; the kernel fences) */
    int stream;
    /* HF_EPI_U8 with glu (hf_linear_pack_geglu's Linear; no gelu, residual or q_seg): channels are interleaved in
     * groups of 4, channel 8q + r the GELU input of gated channel 4q + r for r < 4 and its gate (of 4q + r - 4)
     * otherwise; C is uint8 [M][N/2], C[m][j] = Q(GELU(y_a) * y_g [* q_mul[j]]), the arithmetic of the fp32 epilogue
     * followed by the ISA's hf_geglu_fn. Stores take tiles of whole groups (8 or 16 channels). */
    int glu;
} hf_epilogue;
/* GeGLU epilogue: the Linear channel of gated channel j's GELU input (its gate is 4 channels further) */
static inline int64_t hf_glu_chan(int64_t j) { return (j / 4) * 8 + j % 4; }
/* The output quantizer of channel n (a 16-channel strip or 8-channel tile never straddles two segments). */
static inline float hf_epi_qscale(const hf_epilogue *ep, int64_t n) {
    return ep->q_seg ? ep->q_seg_scale[n / ep->q_seg] : ep->q_scale;
}
static inline int32_t hf_epi_qzp(const hf_epilogue *ep, int64_t n) {
    return ep->q_seg ? ep->q_seg_zp[n / ep->q_seg] : ep->q_zp;
}

float hf_gelu_ref1(float x);
float hf_epi_ref1(const hf_epilogue *ep, int32_t acc, int64_t m, int64_t n);
/* ONNX QuantizeLinear of one value (the reference every quantizer matches bit for bit). */
static inline uint8_t hf_quantize_ref1(float x, float scale, int32_t zp) {
    float r = __builtin_nearbyintf(x / scale) + (float)zp;
    if (!(r >= 0.f)) r = 0.f; /* also NaN */
    if (r > 255.f) r = 255.f;
    return (uint8_t)r;
}
/* Reference store of one accumulator through the epilogue into C (int32, float or u8). */
static inline void hf_epi_store_ref1(const hf_epilogue *ep, int32_t acc, int64_t m, int64_t n, void *C, int64_t ldc) {
    if (ep->f32 == HF_EPI_S32) {
        ((int32_t *)C)[m * ldc + n] = acc;
    } else if (ep->f32 == HF_EPI_F32) {
        ((float *)C)[m * ldc + n] = hf_epi_ref1(ep, acc, m, n);
    } else {
        float y = hf_epi_ref1(ep, acc, m, n);
        if (ep->q_mul) y *= ep->q_mul[n]; /* the graph's Mul, then its QuantizeLinear: two roundings, as ORT */
        ((uint8_t *)C)[m * ldc + n] = hf_quantize_ref1(y, hf_epi_qscale(ep, n), hf_epi_qzp(ep, n));
    }
}
/* Apply the epilogue to rows of int32 accumulators acc[M][lda] into C (int32, float or u8) [M][ldc];
 * m0 is the global row of acc's first row (for the residual), C points at that row. */
void hf_epilogue_rows_ref(const hf_epilogue *ep, int64_t m0, int64_t M, int64_t N, const int32_t *acc,
                          int64_t lda, void *C, int64_t ldc);
/* ep->glu: gated channel j of row m from the accumulators of its two Linear channels, into C[m][j] (uint8) */
void hf_glu_store_ref1(const hf_epilogue *ep, int32_t acc_a, int32_t acc_g, int64_t m, int64_t j, uint8_t *C,
                       int64_t ldc);
void hf_gelu_ref(int64_t n, const float *x, float *y);
void hf_quantize_ref(int64_t n, const float *x, float scale, int32_t zp, uint8_t *y);
/* y[i] = hf_quantize_ref1(x[i] * mul[i], scale, zp): a per-channel Mul (SmoothQuant's 1/s) rounded to fp32, then
 * QuantizeLinear, exactly the two ONNX ops (no folding of mul / scale, which would round differently). */
void hf_quantize_mul_ref(int64_t n, const float *x, const float *mul, float scale, int32_t zp, uint8_t *y);

/* ---- block-sparse GEMM kernel families (ref/sparse_s8_gemm_ref.c, arch/<arch>/sparse_s8_gemm_*.c) ----
 * Blocks are br x bc of W[N][K] (4x1 or 1x4). `data` is owned by the kernel family of `isa`.
 * work[ntiles+1] is a prefix sum of the cost of each 8-output-channel tile (threads split on it). */
struct hf_sparse_w {
    int isa, br, bc;
    int variant; /* HF_VARIANT_*, set by the kernel family's pack */
    int64_t N, K;
    int64_t kept, total; /* kept / all blocks */
    int64_t nbytes;      /* data + index bytes */
    int64_t ntiles;      /* ceil(N / 8) */
    int64_t *work;
    void *data;
};
typedef int (*hf_sparse_pack_fn)(struct hf_sparse_w *w, const int8_t *W, int64_t ldw,
                                 const int64_t *rowptr, const int32_t *cols);
typedef int (*hf_sparse_gemm_fn)(const struct hf_sparse_w *w, int64_t M, const uint8_t *A, int64_t lda,
                                 void *C, int64_t ldc, const hf_epilogue *ep);
typedef struct {
    hf_sparse_pack_fn pack; /* fills data, nbytes (data part) and work */
    hf_sparse_gemm_fn gemm;
    /* gemm on activations already in the kernel's packed layout (A: token tiles of round16(K) * 64 bytes, as an
     * epilogue with pack_ld writes them; lda unused); NULL where the kernel has none (only 4x1 VNNI has one). A
     * kernel with gemm_packed also writes that layout from its 4x1 gemm when ep->pack_ld is set. */
    hf_sparse_gemm_fn gemm_packed;
    int64_t (*quad_groups)(const struct hf_sparse_w *w); /* hf_sparse_quad_groups; NULL: the kernel has none */
} hf_sparse_kernel;
/* Bytes of a 4x1 VNNI packed activation buffer for M tokens of K channels (64-token tiles). */
static inline int64_t hf_packed_act_bytes(int64_t M, int64_t K) { return ((M + 63) / 64) * ((K + 15) / 16 * 16) * 64; }

extern const hf_sparse_kernel hf_sparse_ref;
/* dispatch.c */
const hf_sparse_kernel *hf_sparse_kernel_for(int isa);
/* dispatch.c: whether isa's Linear tile stores apply a fused GeGLU epilogue (hf_isa_table.glu_tile_stores) */
int hf_glu_tile_stores(int isa);
typedef struct {
    void (*epilogue_rows)(const hf_epilogue *ep, int64_t m0, int64_t M, int64_t N, const int32_t *acc, int64_t lda,
                          void *C, int64_t ldc);
    void (*gelu)(int64_t n, const float *x, float *y);
    void (*quantize)(int64_t n, const float *x, float scale, int32_t zp, uint8_t *y);
    void (*quantize_mul)(int64_t n, const float *x, const float *mul, float scale, int32_t zp, uint8_t *y);
} hf_linear_ops;
/* dispatch.c: epilogue / GELU / quantizer kernels for an ISA. */
const hf_linear_ops *hf_linear_ops_for(int isa);

/* ---- dispatch: one table of kernels per ISA ----
 * The scalar references (ref/) are the table every architecture has; each architecture's folder (arch/x86/, ...)
 * holds its kernels, its CPU feature detection and the tables of its ISAs. build_native.py compiles the folder of
 * the target architecture only (arch/generic/: no SIMD tables). dispatch.c, the one place that chooses, reaches
 * them through the two hf_arch_* functions; nothing else names an ISA's kernels. */
typedef void (*hf_head_linear_fn)(int64_t N, int64_t K, const float *W, const float *b, int64_t rows,
                                  const float *in, float *out);
typedef struct hf_isa_table {
    int isa; /* HF_ISA_* */
    const hf_dense_kernel *dense;
    const hf_dense_kernel *dense_s7; /* its own kernel for 7-bit weights (HF_VARIANT_S7), or NULL: dense takes them */
    const hf_sparse_kernel *sparse;
    const hf_linear_ops *linear;
    const hf_f32_ops *f32;
    hf_head_linear_fn head_linear; /* the fp32 head Linear: the same sums in the same order on every ISA */
    /* head sizes d the attention kernels take (d % step == 0); the others run on the fallback table's kernel */
    int attn_step, attn_q8_step;
    const struct hf_isa_table *attn_fallback, *attn_q8_fallback;
    const hf_encoder_ops *encoder; /* rotary, GeGLU, windowed attention; NULL: the reference's */
    /* bf16 attention (q k^T, p v on bf16 pairs, fp32 softmax) for d % attn_bf16_step == 0 where attn_bf16_cpu()
     * (NULL: always) says the CPU runs it; NULL kernel: none (the fp32 attention runs) */
    hf_attention_head_fn attention_bf16;
    hf_attention_bf16x_fn attention_bf16x; /* the same with a per-row bias and / or a window */
    int attn_bf16_step;
    int (*attn_bf16_cpu)(void);
    /* dynamic int8 attention (per-token q / k, per-channel v, int16 weights) for d % attn_dq8_step == 0; NULL: none */
    hf_attention_head_fn attention_dq8;
    int attn_dq8_step;
    /* a throughput loop of the ISA's widest int8 dot product (hf_int8_peak_probe): returns the MACs it did in `iters`
     * steps, -1 if its check failed; NULL: no probe for this ISA */
    int64_t (*int8_peak)(int64_t iters);
    /* 1: the ISA's tile stores take whole GeGLU (input, gate) groups (hf_epilogue.glu); 0: the reference rows
     * epilogue applies GeGLU to the int32 accumulators (4-channel tiles split a group) */
    int glu_tile_stores;
    /* the name hf_op_kernel reports for each HF_OP_* whose kernel this table owns */
    const char *op_names[HF_OP_COUNT];
} hf_isa_table;
extern const hf_isa_table hf_table_ref; /* ref/ref.c */
/* arch/<arch>/: sets supported[isa] = 1 for each ISA of this architecture the CPU and OS can run (ids of one
 * architecture are numbered in order of preference: the highest supported one is the default). */
void hf_arch_detect(int supported[HF_ISA_COUNT]);
/* arch/<arch>/: this architecture's table for isa (not HF_ISA_REF), NULL for an ISA it does not have. */
const hf_isa_table *hf_arch_table(int isa);
/* dispatch.c: the fp32 head Linear of a supported isa. */
hf_head_linear_fn hf_head_linear_for(int isa);
/* sparse.c: element of W or 0 outside [N) x [K) */
static inline int8_t hf_w_at(const int8_t *W, int64_t ldw, int64_t N, int64_t K, int64_t n, int64_t k) {
    return (n < N && k < K) ? W[n * ldw + k] : 0;
}
/* sparse.c: [lo, hi) of 8-channel tiles for thread tid of nth, balanced on the work prefix. */
void hf_split_tiles(const int64_t *work, int64_t ntiles, int tid, int nth, int64_t *lo, int64_t *hi);

#endif
