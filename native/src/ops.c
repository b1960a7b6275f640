/* fp32 transformer ops front end: argument checks and dispatch (used directly by tests; the engine
 * calls the kernel tables itself to avoid per-call checks and allocation). */
#include <math.h>
#include <stdint.h>

#include "internal.h"

int hf_layernorm(int isa, int64_t T, int64_t H, const float *x, const float *r, const float *gamma,
                 const float *beta, float eps, float *y) {
    int rc;
    if (T < 0 || H <= 0) return hf_fail(HF_EINVAL, "layernorm: T=%lld, H=%lld", (long long)T, (long long)H);
    if (!x || !gamma || !beta || !y) return hf_fail(HF_EINVAL, "layernorm: NULL pointer");
    if (!(eps > 0.f)) return hf_fail(HF_EINVAL, "layernorm: eps must be > 0");
    if ((rc = hf_resolve_isa(isa, &isa)) != HF_OK) return rc;
    hf_f32_ops_for(isa)->layernorm(T, H, x, r, gamma, beta, eps, y);
    return HF_OK;
}

/* The checks both attention entry points make (messages prefixed by `what`), then the ISA resolved. */
static int attention_args(const char *what, int *isa, int64_t S, int64_t heads, int64_t d, const void *q,
                          const void *k, const void *v, int64_t ld, const void *ctx, int64_t ldo) {
    if (S <= 0 || heads <= 0 || d <= 0)
        return hf_fail(HF_EINVAL, "%s: S=%lld, heads=%lld, d=%lld must be > 0", what, (long long)S, (long long)heads,
                       (long long)d);
    if (ld < heads * d || ldo < heads * d) return hf_fail(HF_EINVAL, "%s: row strides shorter than heads*d", what);
    if (!q || !k || !v || !ctx) return hf_fail(HF_EINVAL, "%s: NULL pointer", what);
    return hf_resolve_isa(*isa, isa);
}

/* `bytes` of kernel scratch followed by the additive key bias built from key_mask (*bias = NULL without one). */
static void *scratch_with_bias(size_t bytes, int64_t S, const int64_t *key_mask, float **bias) {
    char *scratch = (char *)hf_alloc(bytes + (size_t)S * sizeof(float));
    *bias = NULL;
    if (scratch && key_mask) {
        *bias = (float *)(scratch + bytes);
        for (int64_t j = 0; j < S; j++) (*bias)[j] = key_mask[j] ? 0.f : -INFINITY;
    }
    return scratch;
}

/* kern over every head of one sequence, the key mask as an additive bias (the three attention entry points below) */
static int attention_heads(const char *name, hf_attention_head_fn kern, int64_t scratch_floats, int64_t S,
                           int64_t heads, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                           const int64_t *key_mask, float scale, float *ctx, int64_t ldo) {
    float *bias;
    float *scratch = (float *)scratch_with_bias((size_t)scratch_floats * sizeof(float), S, key_mask, &bias);
    if (!scratch) return hf_fail(HF_ENOMEM, "%s: out of memory", name);
    for (int64_t h = 0; h < heads; h++) kern(S, d, q + h * d, k + h * d, v + h * d, ld, bias, scale, ctx + h * d, ldo, scratch);
    hf_free(scratch);
    return HF_OK;
}

int hf_attention(int isa, int64_t S, int64_t heads, int64_t d, const float *q, const float *k, const float *v,
                 int64_t ld, const int64_t *key_mask, float scale, float *ctx, int64_t ldo) {
    int rc;
    if ((rc = attention_args("attention", &isa, S, heads, d, q, k, v, ld, ctx, ldo)) != HF_OK) return rc;
    return attention_heads("attention", hf_attention_ops_for(isa, d, 0)->attention_head,
                           hf_attention_scratch_floats(S, d), S, heads, d, q, k, v, ld, key_mask, scale, ctx, ldo);
}

int hf_attention_bf16(int isa, int64_t S, int64_t heads, int64_t d, const float *q, const float *k, const float *v,
                      int64_t ld, const int64_t *key_mask, float scale, float *ctx, int64_t ldo) {
    int rc;
    if ((rc = attention_args("attention_bf16", &isa, S, heads, d, q, k, v, ld, ctx, ldo)) != HF_OK) return rc;
    const hf_attention_head_fn kern = hf_attention_bf16_kernel_for(isa, d);
    if (!kern)
        return hf_fail(HF_EUNSUPPORTED, "attention_bf16: ISA '%s' has no bf16 attention kernel for head size %lld "
                       "on this CPU", hf_isa_name(isa), (long long)d);
    return attention_heads("attention_bf16", kern, hf_attention_bf16_scratch_floats(S, d), S, heads, d, q, k, v, ld,
                           key_mask, scale, ctx, ldo);
}

int hf_attention_bf16_ex(int isa, int64_t S, int64_t heads, int64_t d, const float *q, const float *k,
                         const float *v, int64_t ld, const int64_t *key_mask, const float *rel, int64_t window,
                         float scale, float *ctx, int64_t ldo) {
    int rc;
    float *bias;
    if ((rc = attention_args("attention_bf16_ex", &isa, S, heads, d, q, k, v, ld, ctx, ldo)) != HF_OK) return rc;
    if (window < -1) return hf_fail(HF_EINVAL, "attention_bf16_ex: window %lld < -1", (long long)window);
    const hf_attention_bf16x_fn kern = hf_attention_bf16x_kernel_for(isa, d);
    if (!kern)
        return hf_fail(HF_EUNSUPPORTED, "attention_bf16_ex: ISA '%s' has no bf16 attention kernel for head size %lld "
                       "on this CPU", hf_isa_name(isa), (long long)d);
    float *scratch = (float *)scratch_with_bias((size_t)hf_attention_bf16x_scratch_floats(S, window, d) * sizeof(float),
                                                S, key_mask, &bias);
    if (!scratch) return hf_fail(HF_ENOMEM, "attention_bf16_ex: out of memory");
    for (int64_t h = 0; h < heads; h++)
        kern(S, d, q + h * d, k + h * d, v + h * d, ld, bias, rel ? rel + h * (2 * S - 1) + S - 1 : NULL, -1, window,
             scale, ctx + h * d, ldo, scratch);
    hf_free(scratch);
    return HF_OK;
}

int hf_attention_dq8(int isa, int64_t S, int64_t heads, int64_t d, const float *q, const float *k, const float *v,
                     int64_t ld, const int64_t *key_mask, float scale, float *ctx, int64_t ldo) {
    int rc;
    if ((rc = attention_args("attention_dq8", &isa, S, heads, d, q, k, v, ld, ctx, ldo)) != HF_OK) return rc;
    const hf_attention_head_fn kern = hf_attention_dq8_kernel_for(isa, d);
    if (!kern)
        return hf_fail(HF_EUNSUPPORTED, "attention_dq8: ISA '%s' has no dynamic int8 attention kernel for head size "
                       "%lld", hf_isa_name(isa), (long long)d);
    return attention_heads("attention_dq8", kern, hf_attention_dq8_scratch_floats(S, d), S, heads, d, q, k, v, ld,
                           key_mask, scale, ctx, ldo);
}

/* transformers' relative_position_bucket (MPNet, T5 bidirectional) in its own fp32 arithmetic: n = query - key; the
 * upper half of the buckets for keys after the query; |n| < buckets / 4 exact; beyond, buckets / 4 +
 * trunc(log(|n| / max_exact) / log(max_distance / max_exact) * (buckets / 2 - max_exact)), capped at the last one.
 * The float ops are torch's (a float32 log, divided by the double log rounded to float32, times an int): tested
 * against relative_position_bucket for every offset up to 4096 (tests/test_family_mpnet.py). */
int32_t hf_relative_bucket(int64_t rel, int32_t buckets, int64_t max_distance) {
    const int32_t half = buckets / 2, max_exact = half / 2;
    int64_t n = -rel;
    int32_t ret = n < 0 ? half : 0;
    n = n < 0 ? -n : n;
    if (n < max_exact) return ret + (int32_t)n;
    const float l = logf((float)n / (float)max_exact) / (float)log((double)max_distance / (double)max_exact);
    const float v = l * (float)(half - max_exact);
    int64_t large = max_exact + (v < (float)INT32_MAX ? (int64_t)v : INT32_MAX);
    if (large > half - 1) large = half - 1;
    return ret + (int32_t)large;
}

static int relative_args(const char *what, int64_t S, int64_t heads, const float *table, int32_t buckets,
                         int64_t max_distance) {
    if (S <= 0 || heads <= 0 || S > (1 << 20)) return hf_fail(HF_EINVAL, "%s: S=%lld, heads=%lld", what, (long long)S,
                                                              (long long)heads);
    if (!table) return hf_fail(HF_EINVAL, "%s: NULL table", what);
    if (buckets < 4 || max_distance <= buckets / 4)
        return hf_fail(HF_EINVAL, "%s: %d buckets with max_distance %lld (need >= 4 buckets and max_distance > "
                       "buckets / 4)", what, buckets, (long long)max_distance);
    return HF_OK;
}

int hf_relative_position_bias(int64_t S, int64_t heads, const float *table, int32_t buckets, int64_t max_distance,
                              float *out) {
    int rc;
    if ((rc = relative_args("relative_position_bias", S, heads, table, buckets, max_distance)) != HF_OK) return rc;
    if (!out) return hf_fail(HF_EINVAL, "relative_position_bias: NULL out");
    const int64_t w = 2 * S - 1;
    for (int64_t r = -(S - 1); r <= S - 1; r++) {
        const float *row = table + (int64_t)hf_relative_bucket(r, buckets, max_distance) * heads;
        for (int64_t h = 0; h < heads; h++) out[h * w + r + S - 1] = row[h];
    }
    return HF_OK;
}

int hf_attention_relbias(int isa, int64_t S, int64_t heads, int64_t d, const float *q, const float *k, const float *v,
                         int64_t ld, const int64_t *key_mask, const float *rel, float scale, float *ctx, int64_t ldo) {
    int rc;
    float *bias;
    if ((rc = attention_args("attention_relbias", &isa, S, heads, d, q, k, v, ld, ctx, ldo)) != HF_OK) return rc;
    if (!rel) return hf_fail(HF_EINVAL, "attention_relbias: NULL rel");
    const hf_attention_head_rb_fn kern = hf_attention_rb_kernel_for(isa, d);
    float *scratch = (float *)scratch_with_bias((size_t)hf_attention_scratch_floats(S, d) * sizeof(float), S,
                                                key_mask, &bias);
    if (!scratch) return hf_fail(HF_ENOMEM, "attention_relbias: out of memory");
    for (int64_t h = 0; h < heads; h++)
        kern(S, d, q + h * d, k + h * d, v + h * d, ld, bias, rel + h * (2 * S - 1) + S - 1, -1, scale, ctx + h * d,
             ldo, scratch);
    hf_free(scratch);
    return HF_OK;
}

/* A quantization parameter set must describe a valid uint8 QuantizeLinear. */
int hf_check_attn_quant(const hf_attn_quant *aq, const char *where) {
    const float s[4] = {aq->q_scale, aq->k_scale, aq->p_scale, aq->v_scale};
    const int32_t z[4] = {aq->q_zp, aq->k_zp, aq->p_zp, aq->v_zp};
    static const char *const names[4] = {"q", "k", "p", "v"};
    for (int i = 0; i < 4; i++)
        if (!(s[i] > 0.f) || !isfinite(s[i]) || z[i] < 0 || z[i] > 255)
            return hf_fail(HF_EINVAL, "%s: int8 attention %s scale %g / zero point %d invalid", where, names[i],
                           (double)s[i], z[i]);
    return HF_OK;
}

/* The int8 entry points' checks beyond attention_args. */
static int attention_q8_args(const char *what, int64_t S, int64_t d, const hf_attn_quant *aq) {
    if (S > (1 << 16) || d > 4096) return hf_fail(HF_EINVAL, "%s: S or d too large", what);
    if (!aq) return hf_fail(HF_EINVAL, "%s: NULL pointer", what);
    return hf_check_attn_quant(aq, what);
}

/* Q(q), Q(k), Q(v) of every head ([S][3 heads d] u8, the ISA's exact quantizer), then the uint8 entry point. */
int hf_attention_q8(int isa, int64_t S, int64_t heads, int64_t d, const float *q, const float *k, const float *v,
                    int64_t ld, const int64_t *key_mask, float scale, const hf_attn_quant *aq, float *ctx,
                    int64_t ldo) {
    int rc;
    if ((rc = attention_args("attention_q8", &isa, S, heads, d, q, k, v, ld, ctx, ldo)) != HF_OK ||
        (rc = attention_q8_args("attention_q8", S, d, aq)) != HF_OK)
        return rc;
    const int64_t hd = heads * d;
    uint8_t *qkv8 = (uint8_t *)hf_alloc((size_t)(S * 3 * hd));
    if (!qkv8) return hf_fail(HF_ENOMEM, "attention_q8: out of memory");
    const hf_linear_ops *lops = hf_linear_ops_for(isa);
    for (int64_t t = 0; t < S; t++) {
        lops->quantize(hd, q + t * ld, aq->q_scale, aq->q_zp, qkv8 + t * 3 * hd);
        lops->quantize(hd, k + t * ld, aq->k_scale, aq->k_zp, qkv8 + t * 3 * hd + hd);
        lops->quantize(hd, v + t * ld, aq->v_scale, aq->v_zp, qkv8 + t * 3 * hd + 2 * hd);
    }
    rc = hf_attention_q8_u8(isa, S, heads, d, qkv8, qkv8 + hd, qkv8 + 2 * hd, 3 * hd, key_mask, scale, aq, ctx, ldo);
    hf_free(qkv8);
    return rc;
}

/* The heads of hf_attention_q8_u8 into float ctx, or with oq (its mul spanning all heads) into oq's uint8 rows. */
static int attention_q8_heads(const char *what, int isa, int64_t S, int64_t heads, int64_t d, const uint8_t *q8,
                              const uint8_t *k8, const uint8_t *v8, int64_t ld, const int64_t *key_mask, float scale,
                              const hf_attn_quant *aq, float *ctx, int64_t ldo, const hf_ctx_quant *oq) {
    int rc;
    float *bias;
    if ((rc = attention_args(what, &isa, S, heads, d, q8, k8, v8, ld, oq ? (const void *)oq->out : ctx,
                             oq ? oq->ldo : ldo)) != HF_OK ||
        (rc = attention_q8_args(what, S, d, aq)) != HF_OK)
        return rc;
    void *scratch = scratch_with_bias((size_t)hf_attention_q8_scratch_bytes(S, d), S, key_mask, &bias);
    if (!scratch) return hf_fail(HF_ENOMEM, "%s: out of memory", what);
    const hf_attention_q8_head_fn fn = hf_attention_ops_for(isa, d, 1)->attention_q8_head;
    for (int64_t h = 0; h < heads; h++) {
        hf_ctx_quant hq;
        if (oq) hq = (hf_ctx_quant){oq->out + h * d, oq->ldo, oq->scale, oq->zp, oq->mul ? oq->mul + h * d : NULL};
        fn(S, d, q8 + h * d, k8 + h * d, v8 + h * d, ld, bias, scale, aq, oq ? NULL : ctx + h * d, ldo, oq ? &hq : NULL,
           scratch);
    }
    hf_free(scratch);
    return HF_OK;
}

int hf_attention_q8_u8_relbias(int isa, int64_t S, int64_t heads, int64_t d, const uint8_t *q8, const uint8_t *k8,
                               const uint8_t *v8, int64_t ld, const int64_t *key_mask, const float *rel, float scale,
                               const hf_attn_quant *aq, float *ctx, int64_t ldo) {
    int rc;
    float *bias;
    if ((rc = attention_args("attention_q8_u8_relbias", &isa, S, heads, d, q8, k8, v8, ld, ctx, ldo)) != HF_OK ||
        (rc = attention_q8_args("attention_q8_u8_relbias", S, d, aq)) != HF_OK)
        return rc;
    if (!rel) return hf_fail(HF_EINVAL, "attention_q8_u8_relbias: NULL rel");
    void *scratch = scratch_with_bias((size_t)hf_attention_q8_scratch_bytes(S, d), S, key_mask, &bias);
    if (!scratch) return hf_fail(HF_ENOMEM, "attention_q8_u8_relbias: out of memory");
    const hf_attention_q8_head_rb_fn fn = hf_attention_q8_rb_kernel_for(isa, d);
    for (int64_t h = 0; h < heads; h++)
        fn(S, d, q8 + h * d, k8 + h * d, v8 + h * d, ld, bias, rel + h * (2 * S - 1) + S - 1, -1, scale, aq,
           ctx + h * d, ldo, NULL, scratch);
    hf_free(scratch);
    return HF_OK;
}

int hf_attention_q8_u8(int isa, int64_t S, int64_t heads, int64_t d, const uint8_t *q8, const uint8_t *k8,
                       const uint8_t *v8, int64_t ld, const int64_t *key_mask, float scale, const hf_attn_quant *aq,
                       float *ctx, int64_t ldo) {
    return attention_q8_heads("attention_q8_u8", isa, S, heads, d, q8, k8, v8, ld, key_mask, scale, aq, ctx, ldo, NULL);
}

int hf_attention_q8_u8_quant(int isa, int64_t S, int64_t heads, int64_t d, const uint8_t *q8, const uint8_t *k8,
                             const uint8_t *v8, int64_t ld, const int64_t *key_mask, float scale,
                             const hf_attn_quant *aq, float out_scale, int32_t out_zp, const float *out_mul,
                             uint8_t *out, int64_t ldo) {
    if (!(out_scale > 0.f) || !isfinite(out_scale) || out_zp < 0 || out_zp > 255)
        return hf_fail(HF_EINVAL, "attention_q8_u8_quant: output scale %g / zero point %d invalid", (double)out_scale,
                       out_zp);
    const hf_ctx_quant oq = {out, ldo, out_scale, out_zp, out_mul};
    return attention_q8_heads("attention_q8_u8_quant", isa, S, heads, d, q8, k8, v8, ld, key_mask, scale, aq, NULL, 0,
                              &oq);
}
