/* Front end of the ModernBERT-style encoder ops (rotary, GeGLU, sliding-window attention): argument checks and
 * dispatch, for tests and callers outside the engine (the engine calls the hf_encoder_ops table itself). */
#include <math.h>
#include <string.h>

#include "internal.h"

int hf_rotary(int isa, int64_t S, int64_t heads, int64_t d, float *q, float *k, int64_t ld, float theta) {
    int rc;
    if (S <= 0 || heads <= 0 || d <= 0 || d % 2)
        return hf_fail(HF_EINVAL, "rotary: S=%lld, heads=%lld must be > 0 and d=%lld even and > 0", (long long)S,
                       (long long)heads, (long long)d);
    if (ld < heads * d) return hf_fail(HF_EINVAL, "rotary: row stride %lld shorter than heads*d", (long long)ld);
    if (!q || !k) return hf_fail(HF_EINVAL, "rotary: NULL pointer");
    if (!(theta > 0.f) || !isfinite(theta)) return hf_fail(HF_EINVAL, "rotary: theta %g must be finite and > 0",
                                                            (double)theta);
    if ((rc = hf_resolve_isa(isa, &isa)) != HF_OK) return rc;
    float *cs = (float *)hf_alloc((size_t)(S * d) * sizeof(float));
    if (!cs) return hf_fail(HF_ENOMEM, "rotary: out of memory");
    hf_rope_table(S, d, theta, cs);
    const hf_encoder_ops *ops = hf_encoder_ops_for(isa);
    for (int64_t h = 0; h < heads; h++) ops->rotary(S, d, q + h * d, k + h * d, ld, cs);
    hf_free(cs);
    return HF_OK;
}

int hf_geglu_u8(int isa, int64_t rows, int64_t F, const float *x, int64_t ldx, const float *mul, float scale,
                int32_t zp, uint8_t *y, int64_t ldy) {
    int rc;
    if (rows < 0 || F <= 0 || ldx < 2 * F || ldy < F)
        return hf_fail(HF_EINVAL, "geglu: rows=%lld F=%lld ldx=%lld ldy=%lld (need ldx >= 2F, ldy >= F)",
                       (long long)rows, (long long)F, (long long)ldx, (long long)ldy);
    if (!x || !y) return hf_fail(HF_EINVAL, "geglu: NULL pointer");
    if (!(scale > 0.f) || !isfinite(scale) || zp < 0 || zp > 255)
        return hf_fail(HF_EINVAL, "geglu: scale %g / zero point %d invalid", (double)scale, zp);
    if ((rc = hf_resolve_isa(isa, &isa)) != HF_OK) return rc;
    const hf_encoder_ops *ops = hf_encoder_ops_for(isa);
    for (int64_t r = 0; r < rows; r++) ops->geglu(F, x + r * ldx, x + r * ldx + F, mul, scale, zp, y + r * ldy);
    return HF_OK;
}

int hf_attention_window(int isa, int64_t S, int64_t heads, int64_t d, const float *q, const float *k, const float *v,
                        int64_t ld, const int64_t *key_mask, int64_t window, float scale, float *ctx, int64_t ldo) {
    int rc;
    if (S <= 0 || heads <= 0 || d <= 0 || window < 0)
        return hf_fail(HF_EINVAL, "attention_window: S=%lld, heads=%lld, d=%lld must be > 0 and window=%lld >= 0",
                       (long long)S, (long long)heads, (long long)d, (long long)window);
    if (ld < heads * d || ldo < heads * d)
        return hf_fail(HF_EINVAL, "attention_window: row strides shorter than heads*d");
    if (!q || !k || !v || !ctx) return hf_fail(HF_EINVAL, "attention_window: NULL pointer");
    if ((rc = hf_resolve_isa(isa, &isa)) != HF_OK) return rc;
    const size_t sbytes = (size_t)hf_attention_window_scratch_floats(S, window, d) * sizeof(float);
    char *mem = (char *)hf_alloc(sbytes + (size_t)S * sizeof(float));
    if (!mem) return hf_fail(HF_ENOMEM, "attention_window: out of memory");
    float *bias = NULL;
    if (key_mask) {
        bias = (float *)(mem + sbytes);
        for (int64_t j = 0; j < S; j++) bias[j] = key_mask[j] ? 0.f : -INFINITY;
    }
    const hf_encoder_ops *ops = hf_encoder_ops_for(isa);
    for (int64_t h = 0; h < heads; h++)
        ops->attention_window(S, d, q + h * d, k + h * d, v + h * d, ld, bias, window, scale, ctx + h * d, ldo,
                              (float *)mem);
    hf_free(mem);
    return HF_OK;
}
