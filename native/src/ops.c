/* fp32 transformer ops front end: argument checks and dispatch (used directly by tests; the engine
 * calls the kernel tables itself to avoid per-call checks and allocation). */
#include <math.h>

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

int hf_attention(int isa, int64_t S, int64_t heads, int64_t d, const float *q, const float *k, const float *v,
                 int64_t ld, const int64_t *key_mask, float scale, float *ctx, int64_t ldo) {
    int rc;
    float *scratch, *bias = NULL;
    if (S <= 0 || heads <= 0 || d <= 0)
        return hf_fail(HF_EINVAL, "attention: S=%lld, heads=%lld, d=%lld must be > 0", (long long)S,
                       (long long)heads, (long long)d);
    if (ld < heads * d || ldo < heads * d) return hf_fail(HF_EINVAL, "attention: row strides shorter than heads*d");
    if (!q || !k || !v || !ctx) return hf_fail(HF_EINVAL, "attention: NULL pointer");
    if ((rc = hf_resolve_isa(isa, &isa)) != HF_OK) return rc;
    const hf_f32_ops *ops = (d % 8 == 0) ? hf_f32_ops_for(isa) : hf_f32_ops_for(HF_ISA_REF);
    scratch = (float *)hf_alloc((size_t)(hf_attention_scratch_floats(S, d) + S) * sizeof(float));
    if (!scratch) return hf_fail(HF_ENOMEM, "attention: out of memory");
    if (key_mask) {
        bias = scratch + hf_attention_scratch_floats(S, d);
        for (int64_t j = 0; j < S; j++) bias[j] = key_mask[j] ? 0.f : -INFINITY;
    }
    for (int64_t h = 0; h < heads; h++)
        ops->attention_head(S, d, q + h * d, k + h * d, v + h * d, ld, bias, scale, ctx + h * d, ldo, scratch);
    hf_free(scratch);
    return HF_OK;
}
