/* The fused BERT-family encoder engine.
 *
 * Python (hf_fast/runtime/engine.py) builds an engine from a plan matched in the artifact's ONNX
 * graph: embeddings, N post-LayerNorm encoder layers whose Linear layers are packed int8 weights
 * (hf_linear, block-sparse or dense), and a small fp32 head program. One call runs a whole batch:
 *
 *   x = LN(word[ids] + pos[t] + type[tt])           (tables of embedding_size columns)
 *   [x = x P^T + p]                                 (ELECTRA's embeddings_project, fp32, embedding_size -> H)
 *   per layer:  qkv = Linear_qkv(Q(x))            (one GEMM for the three projections)
 *               ctx = softmax(q k^T * scale [+ rel] + mask) v   per (sequence, head), in parallel
 *                     (rel: MPNet's relative-position bias, [heads][2S - 1] built once per call from the bucket table)
 *               x   = LN(Linear_o(Q(ctx)) + x)        (residual fused in the GEMM epilogue)
 *               x   = LN(Linear_2(Q(gelu(Linear_1(Q(x))))) + x)   (GELU fused in the epilogue)
 *   head:       [CLS] select, fp32 linears with tanh/relu/gelu
 *
 * Pre-LN layers (HF_NORM_PRE, ModernBERT; run_layers_pre): x = x + Linear_o(Q(attn(Q(LN1(x))))) (no LN1 when the layer
 * has none), x = x + Linear_2(Q(act(Linear_1(Q(LN2(x)))))), then the final LayerNorm. With HF_POS_ROTARY each
 * (sequence, head) task rotates its q and k columns in place before its attention (the layer's theta's table, built
 * once per call); a layer with attn_window > 0 runs the sliding-window kernel (O(S x window)); HF_ACT_GEGLU runs
 * ffn_in into fp32 [T][2F] and one GELU(a) * g + quantizer pass into ffn_out's uint8 input (ffn_phase).
 *
 * The program is the one hf_engine_model_desc describes; hf_engine_create refuses (HF_ENOTIMPL) any value of it
 * this file does not run.
 *
 * Q(.) quantizes to uint8 with the activation scale/zero point the artifact's QDQ nodes give. No
 * quantization is a separate pass: Q(LN(.)) runs in the LayerNorm row blocks, Q(ctx) in the int8 attention's
 * context epilogue (per (sequence, head) right after the fp32 attention), and Q(gelu(.)) in ffn_in's GEMM epilogue
 * (u8 output). A SmoothQuant artifact
 * multiplies each Linear's input by a per-channel 1/s before its quantizer: Q(x * inv_s), done by the same three
 * quantizers (the residuals keep reading x). Every phase
 * (embeddings/LN row blocks, attention heads, GEMM tiles) is split over the thread pool.
 * Workspace: one arena per engine, reused by every call that finds it free (a concurrent call
 * gets a private one), so steady-state inference allocates nothing.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "internal.h"

typedef struct {
    hf_linear *qkv, *attn_out, *ffn_in, *ffn_out;
    float qkv_s, o_s, i_s, f_s;
    int qkv_zp, o_zp, i_zp, f_zp;
    float att_scale;
    float *ln1_g, *ln1_b, *ln2_g, *ln2_b;
    float ln1_eps, ln2_eps;
    int in_fq, mid_fq; /* residuals read dequant(quant(x)) (hf_engine_layer_desc) */
    float *qkv_m, *o_m, *i_m, *f_m; /* SmoothQuant multipliers before each quantizer, NULL = none */
    int attn_q8;                    /* int8 attention with aq (hf_attention_q8), else fp32 */
    hf_attn_quant aq;
} hf_layer;

typedef struct {
    int kind; /* HF_HEAD_* */
    int64_t N, K;
    float *W, *b; /* HF_HEAD_LAYERNORM: gamma, beta [K] */
    float eps;
} hf_head_op;

struct hf_engine {
    int isa;
    int64_t H, heads, F, L, vocab, max_pos, type_vocab;
    int64_t E;          /* embedding width: H, or the input width of the embeddings projection */
    int embed_proj;     /* hf_engine_model_desc.embed_proj */
    float *proj_w, *proj_b; /* [H][E], [H] */
    float *word, *pos, *type, *eln_g, *eln_b;
    float eln_eps;
    hf_layer *layers;
    int64_t n_layers_set;
    int attn_bias;           /* HF_ATTN_BIAS_* */
    int32_t rel_buckets;     /* HF_ATTN_BIAS_RELATIVE: the bucketing and its [rel_buckets][heads] table */
    int64_t rel_max_distance;
    float *rel_table;
    hf_head_op head[HF_ENGINE_MAX_HEAD_OPS];
    int n_head;
    /* ModernBERT-style layers: HF_NORM_PRE runs x = x + block(LN(x)) and a final LayerNorm (fln_*); HF_ACT_GEGLU an
     * ffn_in of 2F outputs; HF_POS_ROTARY no position table, q and k rotated per layer by the rope table of its theta
     * (theta_idx into thetas); window[l] > 0: sliding-window attention (hf_encoder_ops) */
    int norm, activation, position;
    int64_t *window;    /* [L] */
    int32_t *theta_idx; /* [L] */
    float *thetas;      /* distinct rope_theta values, n_theta of them */
    int n_theta;
    float *fln_g, *fln_b;
    float fln_eps;
    int attn_prec;        /* HF_ATTN_FP32 / HF_ATTN_BF16 (hf_engine_set_attention_precision) */
    pthread_mutex_t lock; /* guards the cached arena */
    void *arena;
    size_t arena_bytes;
};

static float *dup_f32(const float *src, int64_t n) {
    float *p = (float *)hf_alloc((size_t)n * sizeof(float));
    if (p && src) memcpy(p, src, (size_t)n * sizeof(float));
    return p;
}

/* The ops of the description this build does not run: HF_ENOTIMPL naming the op (engine.py turns it into
 * NotImplementedError); values outside the enums are HF_EINVAL. */
static int check_desc_ops(const hf_engine_model_desc *d) {
    if (d->norm != HF_NORM_POST && d->norm != HF_NORM_PRE)
        return hf_fail(HF_EINVAL, "engine_create: unknown norm position %d", d->norm);
    if (d->activation < 0 || d->activation >= HF_ACT_COUNT)
        return hf_fail(HF_EINVAL, "engine_create: unknown activation %d", d->activation);
    if (d->position < 0 || d->position >= HF_POS_COUNT)
        return hf_fail(HF_EINVAL, "engine_create: unknown position encoding %d", d->position);
    if (d->attn_bias < 0 || d->attn_bias >= HF_ATTN_BIAS_COUNT)
        return hf_fail(HF_EINVAL, "engine_create: unknown attention bias %d", d->attn_bias);
    if (d->linear_bias & ~(uint32_t)HF_BIAS_ALL)
        return hf_fail(HF_EINVAL, "engine_create: unknown linear_bias bits 0x%x", (unsigned)d->linear_bias);
    if (d->embed_proj != 0 && d->embed_proj != 1)
        return hf_fail(HF_EINVAL, "engine_create: embed_proj must be 0 or 1, got %d", d->embed_proj);
    static const char *const acts[HF_ACT_COUNT] = {"gelu", "gelu-tanh", "geglu", "swiglu"};
    if (d->activation != HF_ACT_GELU && d->activation != HF_ACT_GEGLU)
        return hf_fail(HF_ENOTIMPL, "engine_create: op '%s' (FFN activation) is not implemented by this engine; it "
                       "runs the exact (erf) GELU and GeGLU", acts[d->activation]);
    if (d->position == HF_POS_ROTARY) {
        if (!d->rope_theta) return hf_fail(HF_EINVAL, "engine_create: rotary positions need rope_theta[layers]");
        for (int64_t i = 0; i < d->layers; i++)
            if (!(d->rope_theta[i] > 0.f) || !isfinite(d->rope_theta[i]))
                return hf_fail(HF_EINVAL, "engine_create: layer %lld rope_theta %g must be finite and > 0",
                               (long long)i, (double)d->rope_theta[i]);
        if (d->heads > 0 && (d->hidden / d->heads) % 2)
            return hf_fail(HF_EINVAL, "engine_create: rotary positions need an even head size, got %lld",
                           (long long)(d->hidden / d->heads));
    }
    if (d->attn_bias == HF_ATTN_BIAS_RELATIVE &&
        (d->rel_buckets < 4 || d->rel_buckets > 4096 || d->rel_max_distance <= d->rel_buckets / 4))
        return hf_fail(HF_EINVAL, "engine_create: relative attention bias with %d buckets and max_distance %lld (need "
                       "4 to 4096 buckets and max_distance > buckets / 4)", d->rel_buckets,
                       (long long)d->rel_max_distance);
    for (int64_t i = 0; d->attn_window && i < d->layers; i++) {
        if (d->attn_window[i] < 0)
            return hf_fail(HF_EINVAL, "engine_create: layer %lld attention window %lld < 0", (long long)i,
                           (long long)d->attn_window[i]);
        if (d->attn_window[i] > 0 && d->attn_bias != HF_ATTN_BIAS_NONE)
            return hf_fail(HF_ENOTIMPL, "engine_create: op 'sliding-window-attention' with a relative attention bias "
                           "(layer %lld) is not implemented by this engine", (long long)i);
    }
    return HF_OK;
}

int hf_engine_create(const hf_engine_model_desc *d, hf_engine **out) {
    int rc, isa;
    hf_engine *e;
    if (!out) return hf_fail(HF_EINVAL, "engine_create: out is NULL");
    *out = NULL;
    if (!d) return hf_fail(HF_EINVAL, "engine_create: desc is NULL");
    if (d->size != sizeof(hf_engine_model_desc) || d->version != HF_ENGINE_DESC_VERSION)
        return hf_fail(HF_EINVAL, "engine_create: model description of size %u version %u, this library takes size "
                       "%u version %u (the Python side and the native library are from different builds: rebuild)",
                       (unsigned)d->size, (unsigned)d->version, (unsigned)sizeof(hf_engine_model_desc),
                       (unsigned)HF_ENGINE_DESC_VERSION);
    const int64_t hidden = d->hidden, heads = d->heads, ffn = d->ffn, layers = d->layers, vocab = d->vocab;
    const int64_t max_pos = d->max_pos, type_vocab = d->type_vocab;
    const int64_t E = d->embedding_size ? d->embedding_size : hidden;
    if (hidden <= 0 || heads <= 0 || ffn <= 0 || layers <= 0 || vocab <= 0 || max_pos <= 0 || type_vocab < 0 || E <= 0)
        return hf_fail(HF_EINVAL, "engine_create: dimensions must be positive (hidden=%lld heads=%lld ffn=%lld "
                       "layers=%lld vocab=%lld max_pos=%lld embedding_size=%lld)", (long long)hidden, (long long)heads,
                       (long long)ffn, (long long)layers, (long long)vocab, (long long)max_pos, (long long)E);
    if (hidden % heads) return hf_fail(HF_EINVAL, "engine_create: hidden=%lld not divisible by heads=%lld",
                                       (long long)hidden, (long long)heads);
    if (hidden > HF_MAX_K || ffn > HF_MAX_K || E > HF_MAX_K || layers > 4096 || vocab > (1LL << 31) ||
        max_pos > (1 << 20))
        return hf_fail(HF_EINVAL, "engine_create: dimensions too large");
    if ((rc = hf_resolve_isa(d->isa, &isa)) != HF_OK) return rc;
    if ((rc = check_desc_ops(d)) != HF_OK) return rc;
    if (!d->embed_proj && E != hidden)
        return hf_fail(HF_EINVAL, "engine_create: embedding_size %lld != hidden %lld needs the embeddings projection "
                       "(embed_proj)", (long long)E, (long long)hidden);
    e = (hf_engine *)hf_alloc(sizeof *e);
    if (!e) return hf_fail(HF_ENOMEM, "engine_create: out of memory");
    memset(e, 0, sizeof *e);
    e->isa = isa;
    e->H = hidden, e->heads = heads, e->F = ffn, e->L = layers, e->vocab = vocab, e->max_pos = max_pos;
    e->type_vocab = type_vocab;
    e->E = E, e->embed_proj = d->embed_proj;
    e->attn_bias = d->attn_bias, e->rel_buckets = d->rel_buckets, e->rel_max_distance = d->rel_max_distance;
    e->norm = d->norm, e->activation = d->activation, e->position = d->position;
    e->window = (int64_t *)hf_alloc((size_t)layers * sizeof(int64_t));
    e->theta_idx = (int32_t *)hf_alloc((size_t)layers * sizeof(int32_t));
    e->thetas = (float *)hf_alloc((size_t)layers * sizeof(float));
    if (!e->window || !e->theta_idx || !e->thetas) {
        hf_free(e->window), hf_free(e->theta_idx), hf_free(e->thetas), hf_free(e);
        return hf_fail(HF_ENOMEM, "engine_create: out of memory");
    }
    for (int64_t i = 0; i < layers; i++) {
        e->window[i] = d->attn_window ? d->attn_window[i] : 0;
        e->theta_idx[i] = -1;
        if (d->position != HF_POS_ROTARY) continue;
        int k = 0;
        while (k < e->n_theta && e->thetas[k] != d->rope_theta[i]) k++;
        if (k == e->n_theta) e->thetas[e->n_theta++] = d->rope_theta[i];
        e->theta_idx[i] = k;
    }
    e->layers = (hf_layer *)hf_alloc((size_t)layers * sizeof(hf_layer));
    if (!e->layers) {
        hf_free(e->window), hf_free(e->theta_idx), hf_free(e->thetas), hf_free(e);
        return hf_fail(HF_ENOMEM, "engine_create: out of memory");
    }
    memset(e->layers, 0, (size_t)layers * sizeof(hf_layer));
    pthread_mutex_init(&e->lock, NULL);
    *out = e;
    return HF_OK;
}

void hf_engine_free(hf_engine *e) {
    if (!e) return;
    hf_free(e->word), hf_free(e->pos), hf_free(e->type), hf_free(e->eln_g), hf_free(e->eln_b);
    hf_free(e->proj_w), hf_free(e->proj_b), hf_free(e->rel_table);
    hf_free(e->window), hf_free(e->theta_idx), hf_free(e->thetas), hf_free(e->fln_g), hf_free(e->fln_b);
    for (int64_t i = 0; i < e->L; i++) {
        hf_layer *l = &e->layers[i];
        hf_free(l->ln1_g), hf_free(l->ln1_b), hf_free(l->ln2_g), hf_free(l->ln2_b);
        hf_free(l->qkv_m), hf_free(l->o_m), hf_free(l->i_m), hf_free(l->f_m);
    }
    for (int i = 0; i < e->n_head; i++) hf_free(e->head[i].W), hf_free(e->head[i].b);
    hf_free(e->layers);
    hf_free(e->arena);
    pthread_mutex_destroy(&e->lock);
    hf_free(e);
}

int hf_engine_set_embeddings(hf_engine *e, const float *word, const float *pos, const float *type,
                             const float *ln_g, const float *ln_b, float eps) {
    if (!e || !word || !ln_g || !ln_b) return hf_fail(HF_EINVAL, "engine_set_embeddings: NULL argument");
    if (!pos && e->position != HF_POS_ROTARY)
        return hf_fail(HF_EINVAL, "engine_set_embeddings: position table missing");
    if (pos && e->position == HF_POS_ROTARY)
        return hf_fail(HF_EINVAL, "engine_set_embeddings: rotary positions take no position table");
    if (e->type_vocab > 0 && !type) return hf_fail(HF_EINVAL, "engine_set_embeddings: token type table missing");
    if (!(eps > 0.f)) return hf_fail(HF_EINVAL, "engine_set_embeddings: eps must be > 0");
    const int64_t E = e->E;
    hf_free(e->word), hf_free(e->pos), hf_free(e->type), hf_free(e->eln_g), hf_free(e->eln_b);
    e->word = dup_f32(word, e->vocab * E);
    e->pos = pos ? dup_f32(pos, e->max_pos * E) : NULL;
    e->type = e->type_vocab > 0 ? dup_f32(type, e->type_vocab * E) : NULL;
    e->eln_g = dup_f32(ln_g, E);
    e->eln_b = dup_f32(ln_b, E);
    e->eln_eps = eps;
    if (!e->word || (pos && !e->pos) || (e->type_vocab > 0 && !e->type) || !e->eln_g || !e->eln_b)
        return hf_fail(HF_ENOMEM, "engine_set_embeddings: out of memory");
    return HF_OK;
}

int hf_engine_set_embeddings_project(hf_engine *e, const float *W, const float *b) {
    if (!e || !W) return hf_fail(HF_EINVAL, "engine_set_embeddings_project: NULL argument");
    if (!e->embed_proj)
        return hf_fail(HF_EINVAL, "engine_set_embeddings_project: the engine was created without embed_proj");
    for (int64_t k = 0; k < e->H * e->E; k++)
        if (!isfinite(W[k])) return hf_fail(HF_EINVAL, "engine_set_embeddings_project: weight %lld is not finite",
                                            (long long)k);
    hf_free(e->proj_w), hf_free(e->proj_b);
    e->proj_w = dup_f32(W, e->H * e->E);
    e->proj_b = dup_f32(b, e->H);
    if (e->proj_b && !b) memset(e->proj_b, 0, (size_t)e->H * sizeof(float));
    if (!e->proj_w || !e->proj_b) return hf_fail(HF_ENOMEM, "engine_set_embeddings_project: out of memory");
    return HF_OK;
}

/* The reduced-precision attentions an engine can be set to: each one kernel per ISA and head size for the layers that
 * would run fp32 attention, and where it has one (bf16) a variant kernel for the layers with a relative bias or a
 * sliding window; without one those layers keep their fp32 kernels, and a relative-bias engine is refused. */
typedef struct {
    int precision;
    const char *name, *needs; /* for messages: "bf16", "AVX512_BF16" */
    hf_attention_head_fn (*kernel_for)(int isa, int64_t d);
    int64_t (*scratch_floats)(int64_t S, int64_t d);
    hf_attention_bf16x_fn (*xkernel_for)(int isa, int64_t d); /* relative bias / window variant, or NULL: none */
    int64_t (*xscratch_floats)(int64_t S, int64_t window, int64_t d);
} reduced_attention;

static const reduced_attention REDUCED_ATTENTION[] = {
    {HF_ATTN_BF16, "bf16", "AVX512_BF16", hf_attention_bf16_kernel_for, hf_attention_bf16_scratch_floats,
     hf_attention_bf16x_kernel_for, hf_attention_bf16x_scratch_floats},
    {HF_ATTN_INT8_DYNAMIC, "dynamic int8", "AVX-512 VNNI", hf_attention_dq8_kernel_for, hf_attention_dq8_scratch_floats,
     NULL, NULL},
};

static const reduced_attention *reduced_attention_for(int precision) {
    for (size_t i = 0; i < sizeof REDUCED_ATTENTION / sizeof REDUCED_ATTENTION[0]; i++)
        if (REDUCED_ATTENTION[i].precision == precision) return &REDUCED_ATTENTION[i];
    return NULL; /* HF_ATTN_FP32 */
}

int hf_engine_set_attention_precision(hf_engine *e, int precision) {
    if (!e) return hf_fail(HF_EINVAL, "engine_set_attention_precision: NULL engine");
    if (precision != HF_ATTN_FP32 && !reduced_attention_for(precision))
        return hf_fail(HF_EINVAL, "engine_set_attention_precision: unknown precision %d", precision);
    const reduced_attention *r = reduced_attention_for(precision);
    if (r) {
        const int64_t d = e->H / e->heads;
        if (!r->kernel_for(e->isa, d))
            return hf_fail(HF_EUNSUPPORTED, "engine_set_attention_precision: ISA '%s' has no %s attention kernel "
                           "for head size %lld on this CPU (needs %s and d %% 16 == 0); the engine runs fp32 "
                           "attention", hf_isa_name(e->isa), r->name, (long long)d, r->needs);
        /* (a window layer without a variant kernel keeps fp32; a relative-bias engine is refused) */
        if (e->attn_bias != HF_ATTN_BIAS_NONE && !(r->xkernel_for && r->xkernel_for(e->isa, d)))
            return hf_fail(HF_EUNSUPPORTED, "engine_set_attention_precision: %s attention does not take a relative "
                           "attention bias on ISA '%s'; the engine runs fp32 attention", r->name, hf_isa_name(e->isa));
    }
    e->attn_prec = precision;
    return HF_OK;
}

int hf_engine_attention_precision(const hf_engine *e) { return e ? e->attn_prec : -1; }

int hf_engine_set_attention_bias(hf_engine *e, const float *table) {
    if (!e || !table) return hf_fail(HF_EINVAL, "engine_set_attention_bias: NULL argument");
    if (e->attn_bias != HF_ATTN_BIAS_RELATIVE)
        return hf_fail(HF_EINVAL, "engine_set_attention_bias: the engine was created without a relative attention bias");
    const int64_t n = (int64_t)e->rel_buckets * e->heads;
    for (int64_t k = 0; k < n; k++)
        if (!isfinite(table[k]))
            return hf_fail(HF_EINVAL, "engine_set_attention_bias: table value %lld is not finite", (long long)k);
    hf_free(e->rel_table);
    if (!(e->rel_table = dup_f32(table, n))) return hf_fail(HF_ENOMEM, "engine_set_attention_bias: out of memory");
    return HF_OK;
}

int hf_engine_set_final_norm(hf_engine *e, const float *g, const float *b, float eps) {
    if (!e || !g || !b) return hf_fail(HF_EINVAL, "engine_set_final_norm: NULL argument");
    if (e->norm != HF_NORM_PRE)
        return hf_fail(HF_EINVAL, "engine_set_final_norm: only a pre-LN engine (norm=pre) has a final LayerNorm");
    if (!(eps > 0.f)) return hf_fail(HF_EINVAL, "engine_set_final_norm: eps must be > 0");
    hf_free(e->fln_g), hf_free(e->fln_b);
    e->fln_g = dup_f32(g, e->H), e->fln_b = dup_f32(b, e->H), e->fln_eps = eps;
    if (!e->fln_g || !e->fln_b) return hf_fail(HF_ENOMEM, "engine_set_final_norm: out of memory");
    return HF_OK;
}

static int check_lin(const hf_linear *l, int64_t N, int64_t K, const char *what, int64_t i) {
    int64_t n = 0, k = 0;
    if (!l) return hf_fail(HF_EINVAL, "layer %lld: %s is NULL", (long long)i, what);
    hf_linear_info(l, NULL, &n, &k, NULL, NULL, NULL, NULL);
    if (hf_linear_is_geglu(l) && strcmp(what, "ffn_in") != 0) /* ffn_in's GeGLU case: hf_engine_set_layer */
        return hf_fail(HF_EINVAL, "layer %lld: %s is packed for GeGLU (hf_linear_pack_geglu); only a GeGLU layer's "
                                  "ffn_in can be", (long long)i, what);
    if (n != N || k != K)
        return hf_fail(HF_EINVAL, "layer %lld: %s is %lldx%lld, expected %lldx%lld", (long long)i, what,
                       (long long)n, (long long)k, (long long)N, (long long)K);
    return HF_OK;
}

static int check_q(float s, int zp, const char *what, int64_t i) {
    if (!(s > 0.f) || !isfinite(s) || zp < 0 || zp > 255)
        return hf_fail(HF_EINVAL, "layer %lld: %s activation scale %g / zero point %d invalid", (long long)i, what,
                       (double)s, zp);
    return HF_OK;
}

/* A multiplier vector must be finite: the C side does not trust the plan's checks alone. */
static int check_mul(const float *m, int64_t n, const char *what, int64_t i) {
    for (int64_t k = 0; m && k < n; k++)
        if (!isfinite(m[k]))
            return hf_fail(HF_EINVAL, "layer %lld: %s multiplier[%lld] = %g is not finite", (long long)i, what,
                           (long long)k, (double)m[k]);
    return HF_OK;
}

/* dup of an optional vector: *dst = NULL for NULL, else a copy (0 on out of memory) */
static int dup_opt(float **dst, const float *src, int64_t n) {
    *dst = src ? dup_f32(src, n) : NULL;
    return !src || *dst;
}

int hf_engine_set_layer(hf_engine *e, int64_t i, const hf_engine_layer_desc *d) {
    int rc;
    if (!e || !d) return hf_fail(HF_EINVAL, "engine_set_layer: NULL argument");
    if (i < 0 || i >= e->L) return hf_fail(HF_EINVAL, "engine_set_layer: layer %lld out of range", (long long)i);
    if ((rc = check_lin(d->qkv, 3 * e->H, e->H, "qkv", i)) || (rc = check_lin(d->attn_out, e->H, e->H, "attn_out", i)) ||
        (rc = check_lin(d->ffn_in, e->activation == HF_ACT_GEGLU ? 2 * e->F : e->F, e->H, "ffn_in", i)) || (rc = check_lin(d->ffn_out, e->H, e->F, "ffn_out", i)))
        return rc;
    if (hf_linear_is_geglu(d->ffn_in) && e->activation != HF_ACT_GEGLU)
        return hf_fail(HF_EINVAL, "layer %lld: ffn_in is packed for GeGLU but the model's activation is not GeGLU",
                       (long long)i);
    if ((rc = check_q(d->qkv_scale, d->qkv_zp, "qkv", i)) || (rc = check_q(d->o_scale, d->o_zp, "attn_out", i)) ||
        (rc = check_q(d->i_scale, d->i_zp, "ffn_in", i)) || (rc = check_q(d->f_scale, d->f_zp, "ffn_out", i)))
        return rc;
    /* pre-LN: ln1 NULL (gamma and beta) is no attention LayerNorm (ModernBERT's layer 0 has an Identity there) */
    const int ln1_identity = e->norm == HF_NORM_PRE && !d->ln1_g && !d->ln1_b;
    if ((!ln1_identity && (!d->ln1_g || !d->ln1_b || !(d->ln1_eps > 0.f))) || !d->ln2_g || !d->ln2_b ||
        !(d->ln2_eps > 0.f))
        return hf_fail(HF_EINVAL, "engine_set_layer: layer %lld LayerNorm parameters missing", (long long)i);
    if (e->norm == HF_NORM_PRE && (d->in_fq || d->mid_fq))
        return hf_fail(HF_EINVAL, "engine_set_layer: layer %lld: fake-quantized residuals are a post-LN graph's; a "
                       "pre-LN residual reads the unnormalized stream", (long long)i);
    if (d->attn_q && (e->position == HF_POS_ROTARY || e->window[i] > 0))
        return hf_fail(HF_ENOTIMPL, "engine_set_layer: layer %lld: op 'int8-attention' with rotary positions or a "
                       "sliding window is not implemented by this engine; it runs them in fp32", (long long)i);
    if (!isfinite(d->att_scale) || d->att_scale <= 0.f)
        return hf_fail(HF_EINVAL, "engine_set_layer: layer %lld attention scale invalid", (long long)i);
    if ((rc = check_mul(d->qkv_mul, e->H, "qkv", i)) || (rc = check_mul(d->o_mul, e->H, "attn_out", i)) ||
        (rc = check_mul(d->i_mul, e->H, "ffn_in", i)) || (rc = check_mul(d->f_mul, e->F, "ffn_out", i)))
        return rc;
    if (d->attn_q && (rc = hf_check_attn_quant(d->attn_q, "engine_set_layer")) != HF_OK) return rc;
    /* a fake-quantized residual would be dequant(quant(x * mul)): not the tensor the graph's Add reads */
    if ((d->in_fq && d->qkv_mul) || (d->mid_fq && d->i_mul))
        return hf_fail(HF_EINVAL, "engine_set_layer: layer %lld combines a fake-quantized residual with a smoothing "
                       "multiplier", (long long)i);
    hf_layer *l = &e->layers[i];
    hf_free(l->ln1_g), hf_free(l->ln1_b), hf_free(l->ln2_g), hf_free(l->ln2_b);
    hf_free(l->qkv_m), hf_free(l->o_m), hf_free(l->i_m), hf_free(l->f_m);
    l->qkv = d->qkv, l->attn_out = d->attn_out, l->ffn_in = d->ffn_in, l->ffn_out = d->ffn_out;
    l->qkv_s = d->qkv_scale, l->qkv_zp = d->qkv_zp, l->o_s = d->o_scale, l->o_zp = d->o_zp;
    l->i_s = d->i_scale, l->i_zp = d->i_zp, l->f_s = d->f_scale, l->f_zp = d->f_zp;
    l->att_scale = d->att_scale;
    l->in_fq = d->in_fq != 0, l->mid_fq = d->mid_fq != 0;
    l->attn_q8 = d->attn_q != NULL;
    if (d->attn_q) l->aq = *d->attn_q;
    l->ln1_g = ln1_identity ? NULL : dup_f32(d->ln1_g, e->H);
    l->ln1_b = ln1_identity ? NULL : dup_f32(d->ln1_b, e->H), l->ln1_eps = d->ln1_eps;
    l->ln2_g = dup_f32(d->ln2_g, e->H), l->ln2_b = dup_f32(d->ln2_b, e->H), l->ln2_eps = d->ln2_eps;
    l->qkv_m = l->o_m = l->i_m = l->f_m = NULL;
    if ((!ln1_identity && (!l->ln1_g || !l->ln1_b)) || !l->ln2_g || !l->ln2_b || !dup_opt(&l->qkv_m, d->qkv_mul, e->H) ||
        !dup_opt(&l->o_m, d->o_mul, e->H) || !dup_opt(&l->i_m, d->i_mul, e->H) || !dup_opt(&l->f_m, d->f_mul, e->F))
        return hf_fail(HF_ENOMEM, "engine_set_layer: out of memory");
    e->n_layers_set++;
    return HF_OK;
}

static int head_is_pool(int kind) {
    return kind == HF_HEAD_POOL_MEAN || kind == HF_HEAD_POOL_MAX || kind == HF_HEAD_POOL_MEAN_SQRT_LEN;
}

/* sentence-transformers' Pooling over the tokens mask keeps (NULL: all), scalar: sequence b is rows
 * [off[b], off[b] + len[b]) of x (mask indexed like x's rows) -> [B][w] */
static void head_pool(int kind, int64_t B, const int64_t *off, const int64_t *len, int64_t w, const int64_t *mask,
                      const float *x, float *dst) {
    for (int64_t b = 0; b < B; b++) {
        float *o = dst + b * w;
        int64_t n = 0;
        for (int64_t k = 0; k < w; k++) o[k] = kind == HF_HEAD_POOL_MAX ? -1e9f : 0.f;
        for (int64_t s = 0; s < len[b]; s++) {
            if (mask && !mask[off[b] + s]) continue;
            const float *r = x + (off[b] + s) * w;
            n++;
            if (kind == HF_HEAD_POOL_MAX)
                for (int64_t k = 0; k < w; k++) o[k] = r[k] > o[k] ? r[k] : o[k];
            else
                for (int64_t k = 0; k < w; k++) o[k] += r[k];
        }
        if (kind == HF_HEAD_POOL_MAX) continue;
        float den = (float)n > 1e-9f ? (float)n : 1e-9f;
        if (kind == HF_HEAD_POOL_MEAN_SQRT_LEN) den = sqrtf(den);
        for (int64_t k = 0; k < w; k++) o[k] /= den;
    }
}

static void head_l2norm(int64_t rows, int64_t w, const float *x, float *dst) {
    for (int64_t r = 0; r < rows; r++) {
        double ss = 0.0;
        for (int64_t k = 0; k < w; k++) ss += (double)x[r * w + k] * x[r * w + k];
        float nrm = (float)sqrt(ss);
        if (nrm < 1e-12f) nrm = 1e-12f;
        for (int64_t k = 0; k < w; k++) dst[r * w + k] = x[r * w + k] / nrm;
    }
}

int hf_engine_add_head_op(hf_engine *e, int kind, int64_t N, int64_t K, const float *W, const float *b) {
    if (!e) return hf_fail(HF_EINVAL, "engine_add_head_op: NULL engine");
    if (e->n_head >= HF_ENGINE_MAX_HEAD_OPS) return hf_fail(HF_EINVAL, "engine_add_head_op: too many head ops");
    if ((kind < HF_HEAD_CLS || kind > HF_HEAD_GELU) && !head_is_pool(kind) && kind != HF_HEAD_L2NORM) return hf_fail(HF_EINVAL, "engine_add_head_op: unknown kind %d", kind);
    if (head_is_pool(kind) || kind == HF_HEAD_CLS)
        for (int i = 0; i < e->n_head; i++)
            if (head_is_pool(e->head[i].kind) || e->head[i].kind == HF_HEAD_CLS)
                return hf_fail(HF_EINVAL, "engine_add_head_op: a second token selection or pooling op");
    int64_t width = e->H;
    for (int i = 0; i < e->n_head; i++)
        if (e->head[i].kind == HF_HEAD_LINEAR) width = e->head[i].N;
    hf_head_op *op = &e->head[e->n_head];
    memset(op, 0, sizeof *op);
    op->kind = kind;
    if (kind == HF_HEAD_LINEAR) {
        if (!W || N <= 0 || K != width)
            return hf_fail(HF_EINVAL, "engine_add_head_op: linear %lldx%lld does not follow width %lld", (long long)N,
                           (long long)K, (long long)width);
        if (N > ((int64_t)1 << 32) / K) return hf_fail(HF_EINVAL, "engine_add_head_op: linear %lldx%lld too large",
                                                       (long long)N, (long long)K);
        op->N = N, op->K = K;
        op->W = dup_f32(W, N * K);
        op->b = dup_f32(b, N);
        if (!b && op->b) memset(op->b, 0, (size_t)N * sizeof(float));
        if (!op->W || !op->b) return hf_fail(HF_ENOMEM, "engine_add_head_op: out of memory");
    }
    e->n_head++;
    return HF_OK;
}

int hf_engine_add_head_layernorm(hf_engine *e, const float *gamma, const float *beta, float eps) {
    if (!e || !gamma) return hf_fail(HF_EINVAL, "engine_add_head_layernorm: NULL argument");
    if (e->n_head >= HF_ENGINE_MAX_HEAD_OPS) return hf_fail(HF_EINVAL, "engine_add_head_layernorm: too many head ops");
    if (!(eps > 0.f) || !isfinite(eps)) return hf_fail(HF_EINVAL, "engine_add_head_layernorm: eps must be > 0");
    const int64_t width = hf_engine_output_width(e);
    hf_head_op *op = &e->head[e->n_head];
    memset(op, 0, sizeof *op);
    op->kind = HF_HEAD_LAYERNORM, op->K = width, op->eps = eps;
    op->W = dup_f32(gamma, width);
    op->b = dup_f32(beta, width);
    if (!beta && op->b) memset(op->b, 0, (size_t)width * sizeof(float));
    if (!op->W || !op->b) return hf_fail(HF_ENOMEM, "engine_add_head_layernorm: out of memory");
    e->n_head++;
    return HF_OK;
}

int64_t hf_engine_output_width(const hf_engine *e) {
    int64_t width = e ? e->H : 0;
    for (int i = 0; e && i < e->n_head; i++)
        if (e->head[i].kind == HF_HEAD_LINEAR) width = e->head[i].N;
    return width;
}

int hf_engine_isa(const hf_engine *e) { return e ? e->isa : -1; }

int hf_engine_token_level(const hf_engine *e) {
    for (int i = 0; e && i < e->n_head; i++)
        if (e->head[i].kind == HF_HEAD_CLS || head_is_pool(e->head[i].kind)) return 0;
    return 1;
}

/* ------------------------------------------------------------------ run */
typedef struct {
    float *x;      /* [T][H] hidden states */
    float *big;    /* [T][3H] fp32 q, k, v (fp32 attention; see arena_carve) */
    float *ctx;    /* [T][H] attention context */
    uint8_t *xq;   /* [T][H] quantized activations (input of qkv, attn_out, ffn_in) */
    uint8_t *hq;   /* quantized GELU output (input of ffn_out), written by ffn_in's epilogue: [T][F] or packed */
    uint8_t *qkv8; /* [T][3H] Q(q), Q(k), Q(v) of the int8 attention, written by qkv's epilogue */
    float *bias;   /* [B][S] additive key mask */
    float *head_a, *head_b; /* head ping-pong [rows][max width] */
    float *emb;    /* [T][E] embeddings LayerNorm output, the projection's input (embed_proj only) */
    float *rel;    /* [heads][2S - 1] relative-position bias of this sequence length (HF_ATTN_BIAS_RELATIVE only) */
    float *gate;   /* [T][2F] fp32 ffn_in output of a GeGLU layer, before the gate */
    float *rope;   /* [n_theta][S * d] cos / sin tables of each distinct rope_theta (HF_POS_ROTARY only) */
    int64_t *pos;  /* [T] position of each token (its row of the position table) */
    int64_t *off, *len; /* [B] first row and token count of each sequence in the [T] rows (padded: b * S, S) */
} arena_t;

#define ARENA_SKEW 256 /* bytes between consecutive arena buffers (see arena_carve) */

/* Carves the run's buffers out of mem and returns the bytes they take; mem == NULL only measures (arena_size). Each
 * buffer starts ARENA_SKEW bytes further (mod 4096) than a plain carve would put it: with T * H * 4 a multiple of
 * 4096, the residual (x) and the output (ctx) of attn_out / ffn_out sat at the same 4 KB offset and the epilogue's
 * residual loads stalled behind its stores to rows 4 tokens back (4K aliasing); C harness, 128 x 768 fp32 + residual
 * epilogue: 2.93 -> 2.13 ns per 16 outputs with the output 256 bytes off. big (fp32 q, k, v) exists only when a layer
 * runs fp32 attention or has a hidden size the segmented uint8 epilogue does not take; qkv8 only with int8 attention. */
static size_t arena_carve(const hf_engine *e, void *mem, int64_t B, int64_t T, int64_t S, int64_t hw, arena_t *a) {
    const int64_t H3 = 3 * e->H; /* T tokens of B sequences of at most S tokens */
    int f32_qkv = 0, u8_qkv = 0;
    int64_t hq_bytes = 0; /* ffn_in's output: [T][F], or ffn_out's packed activations (hf_linear_chain) */
    for (int64_t i = 0; i < e->L; i++) {
        const int64_t hb = hf_linear_chain_scratch_bytes(e->layers[i].ffn_in, e->layers[i].ffn_out, T);
        f32_qkv |= !e->layers[i].attn_q8 || e->H % 16;
        u8_qkv |= e->layers[i].attn_q8;
        hq_bytes = hb > hq_bytes ? hb : hq_bytes;
    }
    if (e->activation == HF_ACT_GEGLU && T * e->F > hq_bytes) hq_bytes = T * e->F; /* GeGLU writes [T][F] */
    int unfused_geglu = 0; /* a GeGLU layer whose ffn_in is not packed for the fused epilogue needs a->gate */
    for (int64_t i = 0; i < e->L; i++) unfused_geglu |= e->activation == HF_ACT_GEGLU && !hf_linear_is_geglu(e->layers[i].ffn_in);
    size_t off = 0;
#define TAKE(ptr, type, n)                                                      \
    do {                                                                        \
        ptr = mem ? (type *)((char *)mem + off) : NULL;                         \
        off += ((((size_t)(n) * sizeof(type)) + 63) & ~(size_t)63) + ARENA_SKEW; \
    } while (0)
    TAKE(a->x, float, T * e->H);
    TAKE(a->big, float, f32_qkv ? T * H3 : 0);
    TAKE(a->ctx, float, T * e->H);
    TAKE(a->bias, float, T);
    TAKE(a->head_a, float, T * hw);
    TAKE(a->head_b, float, T * hw);
    TAKE(a->xq, uint8_t, T * e->H);
    TAKE(a->hq, uint8_t, hq_bytes);
    TAKE(a->qkv8, uint8_t, u8_qkv ? T * H3 : 0);
    if (e->embed_proj) TAKE(a->emb, float, T * e->E); /* last: the buffers above sit where they always did */
    if (e->attn_bias == HF_ATTN_BIAS_RELATIVE) TAKE(a->rel, float, e->heads * (2 * S - 1));
    if (unfused_geglu) TAKE(a->gate, float, T * 2 * e->F);
    if (e->position == HF_POS_ROTARY) TAKE(a->rope, float, e->n_theta * S * (e->H / e->heads));
    TAKE(a->pos, int64_t, T);
    TAKE(a->off, int64_t, B);
    TAKE(a->len, int64_t, B);
#undef TAKE
    return off;
}

static size_t arena_size(const hf_engine *e, int64_t B, int64_t T, int64_t S, int64_t hw) {
    arena_t a;
    return arena_carve(e, NULL, B, T, S, hw, &a);
}


typedef struct {
    const hf_engine *e;
    const hf_f32_ops *ops;
    const arena_t *a;
    int64_t B, S, d;
    float scale;
    float q_scale; /* the context is quantized per head for attn_out (while it is in L1) */
    int32_t q_zp;
    const float *q_mul; /* [H] smoothing multiplier of attn_out's input, or NULL */
    const hf_linear_ops *lops;
    const hf_attn_quant *aq; /* int8 attention (NULL: fp32) */
    hf_attention_head_rb_fn rb_kernel; /* fp32 attention with the relative bias a->rel (NULL: none) */
    hf_attention_q8_head_rb_fn rb_q8_kernel; /* int8 attention with it (NULL: none) */
    atomic_long next; /* next (sequence, head) pair to claim */
    atomic_int failed;
    const float *rope;                       /* this layer's cos / sin table [S][d] (NULL: no rotary) */
    int64_t window;                          /* > 0: sliding-window attention over |i - j| <= window */
    const hf_encoder_ops *enc;
    const reduced_attention *reduced; /* the engine's reduced-precision attention for this layer, or NULL (fp32) */
    hf_attention_head_fn reduced_kernel;
    hf_attention_bf16x_fn reduced_x; /* its relative-bias / window variant for this layer (then reduced_kernel unused) */
} attn_job;

/* (sequence, head) pairs claimed from an atomic counter by whichever pool threads join; scratch is
 * per thread (slot 3). */
static void attn_task(void *arg, int tid, int nth) {
    attn_job *j = (attn_job *)arg;
    const hf_engine *e = j->e;
    const int64_t H3 = 3 * e->H, n = j->B * e->heads;
    (void)tid, (void)nth;
    const int64_t win = j->window > 0 ? j->window : -1;
    const size_t need = j->aq            ? (size_t)hf_attention_q8_scratch_bytes(j->S, j->d)
                        : j->reduced_x  ? (size_t)j->reduced->xscratch_floats(j->S, win, j->d) * sizeof(float)
                        : j->window > 0 ? (size_t)hf_attention_window_scratch_floats(j->S, j->window, j->d) * sizeof(float)
                        : j->reduced    ? (size_t)j->reduced->scratch_floats(j->S, j->d) * sizeof(float)
                                        : (size_t)hf_attention_scratch_floats(j->S, j->d) * sizeof(float);
    float *scr = (float *)hf_scratch(HF_SCRATCH_ATTENTION, need);
    if (!scr) {
        atomic_store(&j->failed, 1);
        return;
    }
    for (int64_t idx; (idx = atomic_fetch_add(&j->next, 1)) < n;) {
        const int64_t b = idx / e->heads, h = idx % e->heads;
        const int64_t t0 = j->a->off[b], S = j->a->len[b]; /* this sequence's rows; j->S: the longest (rel, scratch) */
        const float *base = j->a->big + t0 * H3 + h * j->d;
        float *ctx = j->a->ctx + t0 * e->H + h * j->d;
        uint8_t *xq = j->a->xq + t0 * e->H + h * j->d;
        if (j->aq) { /* the kernel quantizes its context for attn_out itself, while it is in registers */
            const uint8_t *b8 = j->a->qkv8 + t0 * H3 + h * j->d;
            const hf_ctx_quant oq = {xq, e->H, j->q_scale, j->q_zp, j->q_mul ? j->q_mul + h * j->d : NULL};
            if (j->rb_q8_kernel)
                j->rb_q8_kernel(S, j->d, b8, b8 + e->H, b8 + 2 * e->H, H3, j->a->bias + t0,
                                j->a->rel + h * (2 * j->S - 1) + j->S - 1, -1, j->scale, j->aq, NULL, e->H, &oq, scr);
            else
                j->ops->attention_q8_head(S, j->d, b8, b8 + e->H, b8 + 2 * e->H, H3, j->a->bias + t0, j->scale,
                                          j->aq, NULL, e->H, &oq, scr);
            continue;
        }
        if (j->rope) { /* this (sequence, head) owns its q and k columns: rotate them in place first, each row by its
                        * own position (a packed sequence may start past 0; the table is one [cos | sin] block each) */
            const int64_t *pos = j->a->pos + t0;
            for (int64_t s = 0; s < S; s++)
                j->enc->rotary(1, j->d, (float *)base + s * H3, (float *)base + e->H + s * H3, H3,
                               j->rope + pos[s] * j->d);
        }
        if (j->reduced_x) /* bf16 with the relative bias (row i adds rel[h][j - i + S - 1]) and / or the window */
            j->reduced_x(S, j->d, base, base + e->H, base + 2 * e->H, H3, j->a->bias + t0,
                         j->rb_kernel ? j->a->rel + h * (2 * j->S - 1) + j->S - 1 : NULL, -1, win, j->scale, ctx, e->H,
                         scr);
        else if (j->window > 0)
            j->enc->attention_window(S, j->d, base, base + e->H, base + 2 * e->H, H3, j->a->bias + t0,
                                     j->window, j->scale, ctx, e->H, scr);
        else if (j->reduced)
            j->reduced_kernel(S, j->d, base, base + e->H, base + 2 * e->H, H3, j->a->bias + t0, j->scale, ctx, e->H,
                              scr);
        else if (j->rb_kernel) /* row i adds rel[h][j - i + S - 1] */
            j->rb_kernel(S, j->d, base, base + e->H, base + 2 * e->H, H3, j->a->bias + t0,
                         j->a->rel + h * (2 * j->S - 1) + j->S - 1, -1, j->scale, ctx, e->H, scr);
        else
            j->ops->attention_head(S, j->d, base, base + e->H, base + 2 * e->H, H3, j->a->bias + t0, j->scale,
                                   ctx, e->H, scr);
        if (j->q_mul) {
            const float *m = j->q_mul + h * j->d;
            for (int64_t s = 0; s < S; s++)
                j->lops->quantize_mul(j->d, ctx + s * e->H, m, j->q_scale, j->q_zp, xq + s * e->H);
        } else {
            for (int64_t s = 0; s < S; s++) j->lops->quantize(j->d, ctx + s * e->H, j->q_scale, j->q_zp, xq + s * e->H);
        }
    }
}

/* Row blocks of: [embeddings ->] LayerNorm [-> quantize], claimed by whichever pool threads join. */
#define ROWS_PER_UNIT 8
typedef struct {
    const hf_engine *e;
    const hf_f32_ops *ops;
    const hf_linear_ops *lops;
    int64_t T;
    const int64_t *pos;         /* embed: [T] row of the position table of each token */
    int64_t W;                  /* row width of y: H, or E for the embeddings of an engine with embed_proj */
    const int64_t *ids, *types; /* embed: ids != NULL */
    const float *x;             /* LayerNorm input [T][W] (ignored when embedding) */
    float *y;                   /* LayerNorm output [T][W] */
    const float *g, *b;
    float eps;
    uint8_t *q; /* quantized copy of y (NULL: none) */
    float q_scale;
    int32_t q_zp;
    int fq;     /* y := dequant(q): downstream (the residual) reads the fake-quantized tensor */
    const float *q_mul; /* [H]: q = Q(y * q_mul) (SmoothQuant), y itself unchanged; NULL = Q(y) */
    int nr;
    hf_range units[HF_MAX_RANGES]; /* row blocks of ROWS_PER_UNIT, split with affinity (hf_ranges_claim) */
    /* the embeddings projection in place of the LayerNorm: y[T][W] = x[T][pk] pw^T + pb (pw NULL: LayerNorm) */
    const float *pw, *pb;
    int64_t pk;
} rows_job;

static void rows_task(void *arg, int tid, int nth) {
    rows_job *j = (rows_job *)arg;
    const hf_engine *e = j->e;
    const int64_t H = j->W;
    (void)nth;
    for (int64_t u; hf_ranges_claim(j->units, j->nr, tid, &u);) {
        const int64_t t0 = u * ROWS_PER_UNIT;
        const int64_t n = j->T - t0 < ROWS_PER_UNIT ? j->T - t0 : ROWS_PER_UNIT;
        const float *x = j->x ? j->x + t0 * (j->pw ? j->pk : H) : j->y + t0 * H;
        if (j->ids) {
            /* the unit's word rows, random 3 KB rows of a ~90 MB table, requested all at once before they are summed
             * (the gather was ~1.5% of a 1x384 call at 80% sparsity, each row's loads stalled on DRAM) */
            for (int64_t t = t0; t < t0 + n; t++)
                for (int64_t i = 0; i < H; i += 16) __builtin_prefetch(e->word + j->ids[t] * H + i);
            for (int64_t t = t0; t < t0 + n; t++) {
                const float *w = e->word + j->ids[t] * H, *p = e->pos ? e->pos + j->pos[t] * H : NULL; /* rotary */
                const float *ty = e->type ? e->type + (j->types ? j->types[t] : 0) * H : NULL;
                float *xt = j->y + t * H;
                for (int64_t i = 0; i < H; i++) xt[i] = w[i] + (p ? p[i] : 0.f) + (ty ? ty[i] : 0.f);
            }
        }
        if (j->pw)
            hf_head_linear_for(e->isa)(H, j->pk, j->pw, j->pb, n, x, j->y + t0 * H);
        else
            j->ops->layernorm(n, H, x, NULL, j->g, j->b, j->eps, j->y + t0 * H);
        if (j->q && j->q_mul) { /* never with fq (hf_engine_set_layer) */
            for (int64_t t = t0; t < t0 + n; t++)
                j->lops->quantize_mul(H, j->y + t * H, j->q_mul, j->q_scale, j->q_zp, j->q + t * H);
        } else if (j->q) {
            j->lops->quantize(n * H, j->y + t0 * H, j->q_scale, j->q_zp, j->q + t0 * H);
            if (j->fq) { /* DequantizeLinear: (q - zp) * scale in fp32 */
                float *y = j->y + t0 * H;
                const uint8_t *q = j->q + t0 * H;
                for (int64_t i = 0; i < n * H; i++) y[i] = (float)((int32_t)q[i] - j->q_zp) * j->q_scale;
            }
        }
    }
}

static void rows_run(rows_job *j) {
    const int64_t units = (j->T + ROWS_PER_UNIT - 1) / ROWS_PER_UNIT;
    j->nr = hf_ranges_init(j->units, hf_get_num_threads(), units);
    hf_parallel(rows_task, j, (int)(units < 256 ? units : 256));
}

#define HF_TOKENS_PER_PASS 512

/* qkv GEMM [+ rotary] + attention of layer li on a->xq = Q(x) into a->xq = Q(ctx) (each head quantizes its context). */
static int attention_phase(const hf_engine *e, int64_t li, const arena_t *ap, int64_t B, int64_t T, int64_t S) {
    int rc = HF_OK;
    const arena_t a = *ap;
    const hf_layer *l = &e->layers[li];
    const int64_t H = e->H, d = H / e->heads, H3 = 3 * H;
    const hf_linear_ops *lops = hf_linear_ops_for(e->isa);

    /* a.xq holds Q(x) for qkv */
    if (l->attn_q8) { /* q, k, v straight to uint8 in the epilogue: a quarter of the bytes, no quantizer pass */
        const float ss[3] = {l->aq.q_scale, l->aq.k_scale, l->aq.v_scale};
        const int32_t zz[3] = {l->aq.q_zp, l->aq.k_zp, l->aq.v_zp};
        if (H % 16 == 0) {
            rc = hf_linear_forward_u8_seg(l->qkv, T, a.xq, H, l->qkv_s, l->qkv_zp, a.qkv8, H3, H, ss, zz);
        } else if ((rc = hf_linear_forward(l->qkv, T, a.xq, H, l->qkv_s, l->qkv_zp, a.big, H3, 0, NULL, 0)) == HF_OK) {
            for (int64_t t = 0; t < T; t++)
                for (int i = 0; i < 3; i++) lops->quantize(H, a.big + t * H3 + i * H, ss[i], zz[i], a.qkv8 + t * H3 + i * H);
        }
        if (rc != HF_OK) return rc;
    } else if ((rc = hf_linear_forward(l->qkv, T, a.xq, H, l->qkv_s, l->qkv_zp, a.big, H3, 0, NULL, 0)) != HF_OK) {
        return rc;
    }
    /* the attention kernel for this head size (dispatch.c: the reference for sizes the SIMD kernels do not take) */
    attn_job job = {e, hf_attention_ops_for(e->isa, d, l->attn_q8), &a, B, S, d, l->att_scale, l->o_s, l->o_zp,
                    l->o_m, lops, l->attn_q8 ? &l->aq : NULL,
                    e->attn_bias == HF_ATTN_BIAS_RELATIVE ? hf_attention_rb_kernel_for(e->isa, d) : NULL,
                    e->attn_bias == HF_ATTN_BIAS_RELATIVE ? hf_attention_q8_rb_kernel_for(e->isa, d) : NULL, 0, 0,
                    e->position == HF_POS_ROTARY ? a.rope + e->theta_idx[li] * S * d : NULL, e->window[li],
                    hf_encoder_ops_for(e->isa)};
    /* bf16 or dynamic int8 q.k^T / p.v for the fp32 layers of an engine set to one; a layer with a relative bias or a
     * window runs the precision's variant kernel (bf16), or keeps the fp32 kernels where it has none (dynamic int8) */
    const reduced_attention *r = reduced_attention_for(e->attn_prec);
    if (r && !l->attn_q8) {
        if (e->attn_bias != HF_ATTN_BIAS_RELATIVE && e->window[li] <= 0) {
            if ((job.reduced_kernel = r->kernel_for(e->isa, d)) != NULL) job.reduced = r;
        } else if (r->xkernel_for && (job.reduced_x = r->xkernel_for(e->isa, d)) != NULL) {
            job.reduced = r;
        }
    }
    hf_parallel(attn_task, &job, (int)(B * e->heads));
    if (atomic_load(&job.failed)) {
        return hf_fail(HF_ENOMEM, "engine_run: out of memory for attention scratch");
    }
    return rc;
}

/* The FFN on a->xq = Q(LN(x)): out = Linear_2(Q(act(Linear_1(.)))) + residual; GELU fused in ffn_in's epilogue
 * (hf_linear_chain), GeGLU too when ffn_in was packed with hf_linear_pack_geglu (the gate applied in the epilogue,
 * no fp32 [T][2F]); otherwise GeGLU runs as ffn_in's fp32 [T][2F] output then one pass of GELU(a) * g + quantizer
 * (rows split over the pool) into ffn_out's uint8 input, the same bytes. */
typedef struct {
    const hf_encoder_ops *enc;
    const float *gate;
    int64_t F, T;
    const float *mul;
    float scale;
    int32_t zp;
    uint8_t *out;
    atomic_long next;
} geglu_job;

static void geglu_task(void *arg, int tid, int nth) {
    geglu_job *j = (geglu_job *)arg;
    (void)tid, (void)nth;
    for (int64_t u; (u = atomic_fetch_add(&j->next, 1)) * ROWS_PER_UNIT < j->T;)
        for (int64_t t = u * ROWS_PER_UNIT; t < j->T && t < (u + 1) * ROWS_PER_UNIT; t++)
            j->enc->geglu(j->F, j->gate + t * 2 * j->F, j->gate + t * 2 * j->F + j->F, j->mul, j->scale, j->zp,
                          j->out + t * j->F);
}

static int ffn_phase(const hf_engine *e, const hf_layer *l, const arena_t *a, int64_t T, const float *residual,
                     float *out) {
    const int64_t H = e->H, F = e->F;
    int rc;
    if (e->activation != HF_ACT_GEGLU || hf_linear_is_geglu(l->ffn_in))
        return hf_linear_chain(l->ffn_in, l->ffn_out, T, a->xq, H, l->i_s, l->i_zp,
                               e->activation == HF_ACT_GEGLU ? 0 : HF_LINEAR_GELU, l->f_s, l->f_zp, l->f_m, a->hq, out,
                               H, residual, H);
    if ((rc = hf_linear_forward(l->ffn_in, T, a->xq, H, l->i_s, l->i_zp, a->gate, 2 * F, 0, NULL, 0)) != HF_OK)
        return rc;
    geglu_job gj = {hf_encoder_ops_for(e->isa), a->gate, F, T, l->f_m, l->f_s, l->f_zp, a->hq, 0};
    const int64_t units = (T + ROWS_PER_UNIT - 1) / ROWS_PER_UNIT;
    hf_parallel(geglu_task, &gj, (int)(units < 256 ? units : 256));
    return hf_linear_forward(l->ffn_out, T, a->hq, F, l->f_s, l->f_zp, out, H, 0, residual, H);
}

/* Pre-LN layers (ModernBERT): x = x + attn(LN1(x)); x = x + ffn(LN2(x)); then the final LayerNorm. a->x holds the
 * embeddings; a->xq holds Q(x) already when layer 0 has no attention LayerNorm. The sums land in a->ctx, which
 * then becomes x (the two [T][H] buffers swap). */
static int run_layers_pre(const hf_engine *e, arena_t *a, int64_t B, int64_t T, int64_t S) {
    int rc = HF_OK;
    const int64_t H = e->H;
    const hf_f32_ops *ops = hf_f32_ops_for(e->isa);
    const hf_linear_ops *lops = hf_linear_ops_for(e->isa);
    for (int64_t li = 0; li < e->L && rc == HF_OK; li++) {
        const hf_layer *l = &e->layers[li];
        float *tmp;
        if (l->ln1_g) {
            rows_job rj = {e, ops, lops, T, a->pos, H, NULL, NULL, a->x, a->ctx, l->ln1_g, l->ln1_b, l->ln1_eps, a->xq,
                           l->qkv_s, l->qkv_zp, 0, l->qkv_m};
            rows_run(&rj);
        } else if (li > 0) { /* no attention LayerNorm: Q(x) itself (layer 0's came with the embeddings) */
            for (int64_t t = 0; t < T; t++)
                if (l->qkv_m) lops->quantize_mul(H, a->x + t * H, l->qkv_m, l->qkv_s, l->qkv_zp, a->xq + t * H);
                else lops->quantize(H, a->x + t * H, l->qkv_s, l->qkv_zp, a->xq + t * H);
        }
        if ((rc = attention_phase(e, li, a, B, T, S)) != HF_OK) break;
        if ((rc = hf_linear_forward(l->attn_out, T, a->xq, H, l->o_s, l->o_zp, a->ctx, H, 0, a->x, H)) != HF_OK) break;
        tmp = a->x, a->x = a->ctx, a->ctx = tmp;
        {
            rows_job rj = {e, ops, lops, T, a->pos, H, NULL, NULL, a->x, a->ctx, l->ln2_g, l->ln2_b, l->ln2_eps, a->xq,
                           l->i_s, l->i_zp, 0, l->i_m};
            rows_run(&rj);
        }
        if ((rc = ffn_phase(e, l, a, T, a->x, a->ctx)) != HF_OK) break;
        tmp = a->x, a->x = a->ctx, a->ctx = tmp;
    }
    if (rc == HF_OK) { /* the final LayerNorm, in place */
        rows_job rj = {e, ops, lops, T, a->pos, H, NULL, NULL, NULL, a->x, e->fln_g, e->fln_b, e->fln_eps, NULL};
        rows_run(&rj);
    }
    return rc;
}

/* The forward pass of B sequences, T tokens in all, whose buffers are carved in a (hf_engine_run and
 * hf_engine_run_packed split the batch): sequence b is rows [a.off[b], a.off[b] + a.len[b]) of every [T] buffer, at
 * most S tokens, and token t reads row a.pos[t] of the position table. mask ([T], NULL = all real) masks keys of the
 * padded layout; the packed layout has no pad rows. Every Linear, LayerNorm and GELU runs on the T rows. */
static int run_group(const hf_engine *e, const arena_t *ap, int64_t B, int64_t T, int64_t S, const int64_t *ids,
                     const int64_t *mask, const int64_t *types, float *out) {
    int rc = HF_OK;
    arena_t a = *ap;
    const int64_t H = e->H, d = H / e->heads;
    const hf_f32_ops *ops = hf_f32_ops_for(e->isa);
    const hf_linear_ops *lops = hf_linear_ops_for(e->isa);

    /* embeddings + LayerNorm [+ projection] + quantize for the first qkv, in parallel row blocks */
    for (int64_t t = 0; t < T; t++) a.bias[t] = (!mask || mask[t]) ? 0.f : -INFINITY;
    if (e->attn_bias == HF_ATTN_BIAS_RELATIVE &&
        (rc = hf_relative_position_bias(S, e->heads, e->rel_table, e->rel_buckets, e->rel_max_distance, a.rel)) != HF_OK)
        return rc;
    if (e->embed_proj) { /* LayerNorm over E into a.emb, then the projection to H and the quantizer */
        rows_job ej = {e, ops, lops, T, a.pos, e->E, ids, types, NULL, a.emb, e->eln_g, e->eln_b, e->eln_eps, NULL};
        rows_run(&ej);
        rows_job pj = {e, ops, lops, T, a.pos, H, NULL, NULL, a.emb, a.x, NULL, NULL, 0.f, a.xq, e->layers[0].qkv_s,
                       e->layers[0].qkv_zp, e->layers[0].in_fq, e->layers[0].qkv_m};
        pj.pw = e->proj_w, pj.pb = e->proj_b, pj.pk = e->E;
        rows_run(&pj);
    } else {
        rows_job rj = {e, ops, lops, T, a.pos, H, ids, types, NULL, a.x, e->eln_g, e->eln_b, e->eln_eps, a.xq,
                       e->layers[0].qkv_s, e->layers[0].qkv_zp, e->layers[0].in_fq, e->layers[0].qkv_m};
        rows_run(&rj);
    }

    if (e->position == HF_POS_ROTARY) { /* positions 0..S-1, as one [cos d/2 | sin d/2] block per position */
        float *tmp = (float *)hf_alloc((size_t)(S * d) * sizeof(float));
        if (!tmp) return hf_fail(HF_ENOMEM, "engine_run: out of memory for the rotary table");
        const int64_t h = d / 2;
        for (int k = 0; k < e->n_theta; k++) {
            float *tab = a.rope + k * S * d;
            hf_rope_table(S, d, e->thetas[k], tmp); /* [cos S][h], then [sin S][h] */
            for (int64_t t = 0; t < S; t++) {
                memcpy(tab + t * d, tmp + t * h, (size_t)h * sizeof(float));
                memcpy(tab + t * d + h, tmp + S * h + t * h, (size_t)h * sizeof(float));
            }
        }
        hf_free(tmp);
    }
    if (e->norm == HF_NORM_PRE) {
        rc = run_layers_pre(e, &a, B, T, S);
    } else {
    for (int64_t li = 0; li < e->L && rc == HF_OK; li++) {
        const hf_layer *l = &e->layers[li], *next = li + 1 < e->L ? &e->layers[li + 1] : NULL;
        if ((rc = attention_phase(e, li, &a, B, T, S)) != HF_OK) break;
        /* a.xq = Q(ctx), written per head by the attention task */
        if ((rc = hf_linear_forward(l->attn_out, T, a.xq, H, l->o_s, l->o_zp, a.ctx, H, 0, a.x, H)) != HF_OK) break;
        {
            rows_job rj = {e, ops, lops, T, a.pos, H, NULL, NULL, a.ctx, a.x, l->ln1_g, l->ln1_b, l->ln1_eps, a.xq,
                           l->i_s, l->i_zp, l->mid_fq, l->i_m};
            rows_run(&rj);
        }
        /* GELU and the quantization for ffn_out run in ffn_in's epilogue: u8 into a.hq, in ffn_out's packed
         * activation layout when both are 4x1 VNNI (hf_linear_chain) */
        if ((rc = ffn_phase(e, l, &a, T, a.x, a.ctx)) != HF_OK) break;
        {
            rows_job rj = {e, ops, lops, T, a.pos, H, NULL, NULL, a.ctx, a.x, l->ln2_g, l->ln2_b, l->ln2_eps,
                           next ? a.xq : NULL, next ? next->qkv_s : 1.f, next ? next->qkv_zp : 0,
                           next ? next->in_fq : 0, next ? next->qkv_m : NULL};
            rows_run(&rj);
        }
    }
    }
    if (rc == HF_OK) {
        /* head program */
        const float *cur = a.x;
        int64_t rows = T, width = H;
        float *bufs[2] = {a.head_a, a.head_b};
        int which = 0;
        for (int i = 0; i < e->n_head; i++) {
            const hf_head_op *op = &e->head[i];
            float *dst = bufs[which];
            if (op->kind == HF_HEAD_CLS) {
                for (int64_t b = 0; b < B; b++)
                    memcpy(dst + b * width, cur + a.off[b] * width, (size_t)width * sizeof(float));
                rows = B;
            } else if (head_is_pool(op->kind)) {
                head_pool(op->kind, B, a.off, a.len, width, mask, cur, dst);
                rows = B;
            } else if (op->kind == HF_HEAD_L2NORM) {
                head_l2norm(rows, width, cur, dst);
            } else if (op->kind == HF_HEAD_LINEAR) {
                hf_head_linear_for(e->isa)(op->N, op->K, op->W, op->b, rows, cur, dst);
                width = op->N;
            } else if (op->kind == HF_HEAD_GELU) {
                lops->gelu(rows * width, cur, dst);
            } else if (op->kind == HF_HEAD_LAYERNORM) {
                ops->layernorm(rows, width, cur, NULL, op->W, op->b, op->eps, dst);
            } else {
                for (int64_t k = 0; k < rows * width; k++)
                    dst[k] = op->kind == HF_HEAD_TANH ? tanhf(cur[k]) : (cur[k] > 0.f ? cur[k] : 0.f);
            }
            cur = dst;
            which ^= 1;
        }
        memcpy(out, cur, (size_t)(rows * width) * sizeof(float));
    }
    return rc;
}

/* Checks shared by both entry points: a built engine, ids and token types in range. */
static int check_run(const hf_engine *e, const int64_t *ids, const int64_t *types, int64_t T, const char *fn) {
    if (!e->word || e->n_layers_set < e->L || (e->embed_proj && !e->proj_w) ||
        (e->attn_bias == HF_ATTN_BIAS_RELATIVE && !e->rel_table) || (e->norm == HF_NORM_PRE && !e->fln_g))
        return hf_fail(HF_EFORMAT, "%s: engine is not fully built", fn);
    for (int64_t i = 0; i < T; i++) {
        if (ids[i] < 0 || ids[i] >= e->vocab)
            return hf_fail(HF_EINVAL, "%s: token id %lld at position %lld is outside the vocabulary [0, %lld)", fn,
                           (long long)ids[i], (long long)i, (long long)e->vocab);
        if (types && (types[i] < 0 || types[i] >= (e->type_vocab > 0 ? e->type_vocab : 1)))
            return hf_fail(HF_EINVAL, "%s: token type id %lld at position %lld out of range", fn, (long long)types[i],
                           (long long)i);
    }
    return HF_OK;
}

/* head buffers hold the widest head activation: an intermediate linear may be wider than both H and the output */
static int64_t head_width(const hf_engine *e) {
    int64_t hw = e->H;
    for (int i = 0; i < e->n_head; i++)
        if (e->head[i].kind == HF_HEAD_LINEAR && e->head[i].N > hw) hw = e->head[i].N;
    return hw;
}

static void arena_unlock(hf_engine *e) {
    pthread_mutex_unlock(&e->lock);
    hf_fork_gate_exit();
}

/* The cached arena, grown to `need` bytes and locked, fork gate entered (the caller unlocks and exits the gate, see
 * arena_unlock); NULL when out of memory (unlocked). */
static void *arena_lock(hf_engine *e, size_t need) {
    hf_fork_gate_enter(); /* before e->lock: a fork waits until it is released (see threadpool.c) */
    pthread_mutex_lock(&e->lock);
    if (e->arena_bytes < need) {
        hf_free(e->arena);
        e->arena = hf_alloc(need);
        e->arena_bytes = e->arena ? need : 0;
    }
    if (!e->arena) arena_unlock(e);
    return e->arena;
}

int hf_engine_run(hf_engine *e, int64_t B, int64_t S, const int64_t *ids, const int64_t *mask, const int64_t *types,
                  float *out, int64_t out_len) {
    int rc = HF_OK;
    void *mem;
    arena_t a;
    if (!e || !ids || !out) return hf_fail(HF_EINVAL, "engine_run: NULL argument");
    if (B <= 0 || S <= 0) return hf_fail(HF_EINVAL, "engine_run: batch=%lld and sequence=%lld must be > 0",
                                         (long long)B, (long long)S);
    if (S > e->max_pos) return hf_fail(HF_EINVAL, "engine_run: sequence length %lld exceeds max positions %lld",
                                       (long long)S, (long long)e->max_pos);
    if (B > (1LL << 20) || B * S > (1LL << 24)) return hf_fail(HF_EINVAL, "engine_run: batch too large");
    const int64_t T = B * S, hw = head_width(e);
    const int token_level = hf_engine_token_level(e);
    const int64_t width = hf_engine_output_width(e), want = (token_level ? T : B) * width;
    if (out_len != want)
        return hf_fail(HF_EINVAL, "engine_run: output buffer holds %lld floats, expected %lld", (long long)out_len,
                       (long long)want);
    if ((rc = check_run(e, ids, types, T, "engine_run")) != HF_OK) return rc;
    /* the batch runs in passes of Bg sequences, ~HF_TOKENS_PER_PASS tokens: with all 1024 tokens of 8 x 128 at once,
     * the layer intermediates (qkv: 9.4 MB fp32) left L2 and 8 x 128 took 48-50 ms against 42-44 ms in passes of
     * 128-512 tokens (1 thread; 2 threads: 25-27 against 23-24 ms); sequences are independent, so the
     * results do not change */
    int64_t Bg = HF_TOKENS_PER_PASS / S;
    if (Bg < 1) Bg = 1;
    if (Bg > B) Bg = B;
    const size_t need = arena_size(e, Bg, Bg * S, S, hw);
    if (!(mem = arena_lock(e, need))) return hf_fail(HF_ENOMEM, "engine_run: out of memory for %zu bytes", need);
    /* the cached arena stays locked during the run; concurrent callers wait (results stay identical) */
    arena_carve(e, mem, Bg, Bg * S, S, hw, &a);
    for (int64_t b = 0; b < Bg; b++) a.off[b] = b * S, a.len[b] = S;
    for (int64_t t = 0; t < Bg * S; t++) a.pos[t] = t % S;
    for (int64_t b0 = 0; b0 < B && rc == HF_OK; b0 += Bg) {
        const int64_t nb = B - b0 < Bg ? B - b0 : Bg;
        rc = run_group(e, &a, nb, nb * S, S, ids + b0 * S, mask ? mask + b0 * S : NULL, types ? types + b0 * S : NULL,
                       out + (token_level ? b0 * S : b0) * width);
    }
    arena_unlock(e);
    return rc;
}

/* The sequences [s0, s1) that make the next pass: whole sequences up to ~HF_TOKENS_PER_PASS tokens, at least one. */
static int64_t next_pass(const int64_t *lens, int64_t n, int64_t s0) {
    int64_t s1 = s0 + 1, t = lens[s0];
    while (s1 < n && t + lens[s1] <= HF_TOKENS_PER_PASS) t += lens[s1++];
    return s1;
}

int hf_engine_run_packed(hf_engine *e, int64_t n, const int64_t *lens, const int64_t *pos0, const int64_t *ids,
                         const int64_t *types, float *out, int64_t out_len) {
    int rc = HF_OK;
    void *mem;
    arena_t a;
    if (!e || !lens || !ids || !out) return hf_fail(HF_EINVAL, "engine_run_packed: NULL argument");
    if (n <= 0 || n > (1LL << 20))
        return hf_fail(HF_EINVAL, "engine_run_packed: %lld sequences (need 1 to 2^20)", (long long)n);
    int64_t T = 0, Smax = 0;
    for (int64_t b = 0; b < n; b++) {
        const int64_t p = pos0 ? pos0[b] : 0;
        if (lens[b] <= 0)
            return hf_fail(HF_EINVAL, "engine_run_packed: sequence %lld has %lld tokens (an all-padding row has no "
                           "tokens to run; every sequence needs at least one)", (long long)b, (long long)lens[b]);
        if (p < 0 || lens[b] > e->max_pos || p > e->max_pos - lens[b])
            return hf_fail(HF_EINVAL, "engine_run_packed: sequence %lld (%lld tokens from position %lld) exceeds max "
                           "positions %lld", (long long)b, (long long)lens[b], (long long)p, (long long)e->max_pos);
        T += lens[b];
        Smax = p + lens[b] > Smax ? p + lens[b] : Smax; /* the rotary table covers every position */
        if (T > (1LL << 24)) return hf_fail(HF_EINVAL, "engine_run_packed: batch too large");
    }
    const int64_t hw = head_width(e);
    const int token_level = hf_engine_token_level(e);
    const int64_t width = hf_engine_output_width(e), want = (token_level ? T : n) * width;
    if (out_len != want)
        return hf_fail(HF_EINVAL, "engine_run_packed: output buffer holds %lld floats, expected %lld",
                       (long long)out_len, (long long)want);
    if ((rc = check_run(e, ids, types, T, "engine_run_packed")) != HF_OK) return rc;
    /* passes of whole sequences, ~HF_TOKENS_PER_PASS tokens each (see hf_engine_run): the arena holds the largest */
    int64_t Tg = 0, Bg = 0;
    for (int64_t s0 = 0, s1; s0 < n; s0 = s1) {
        int64_t t = 0;
        s1 = next_pass(lens, n, s0);
        for (int64_t b = s0; b < s1; b++) t += lens[b];
        Tg = t > Tg ? t : Tg, Bg = s1 - s0 > Bg ? s1 - s0 : Bg;
    }
    const size_t need = arena_size(e, Bg, Tg, Smax, hw);
    if (!(mem = arena_lock(e, need)))
        return hf_fail(HF_ENOMEM, "engine_run_packed: out of memory for %zu bytes", need);
    arena_carve(e, mem, Bg, Tg, Smax, hw, &a);
    int64_t t0 = 0;
    for (int64_t s0 = 0, s1; s0 < n && rc == HF_OK; s0 = s1) {
        int64_t t = 0, S = 0;
        s1 = next_pass(lens, n, s0);
        for (int64_t b = s0; b < s1; b++) {
            a.off[b - s0] = t, a.len[b - s0] = lens[b];
            for (int64_t i = 0; i < lens[b]; i++) a.pos[t + i] = (pos0 ? pos0[b] : 0) + i;
            t += lens[b];
            S = (pos0 ? pos0[b] : 0) + lens[b] > S ? (pos0 ? pos0[b] : 0) + lens[b] : S;
        }
        /* no pad rows: the key mask is all zeros (run_group's mask NULL) */
        rc = run_group(e, &a, s1 - s0, t, S, ids + t0, NULL, types ? types + t0 : NULL,
                       out + (token_level ? t0 : s0) * width);
        t0 += t;
    }
    arena_unlock(e);
    return rc;
}
