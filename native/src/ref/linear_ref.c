/* Scalar reference of the fused Linear epilogue, GELU (erf form) and the u8 activation quantizer. */
#include <math.h>

#include "internal.h"

/* erfc(z) for z >= 0 (Numerical Recipes' Chebyshev fit, fractional error < 1.2e-7), then
 * GELU(x) = 0.5 x (1 + erf(x/sqrt2)) written with erfc so the negative tail keeps its relative accuracy.
 * The AVX2 path evaluates the same expression. */
float hf_gelu_ref1(float x) {
    const float z = fabsf(x) * 0.70710678118654752f;
    const float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = fmaf(p, t, -0.82215223f);
    p = fmaf(p, t, 1.48851587f);
    p = fmaf(p, t, -1.13520398f);
    p = fmaf(p, t, 0.27886807f);
    p = fmaf(p, t, -0.18628806f);
    p = fmaf(p, t, 0.09678418f);
    p = fmaf(p, t, 0.37409196f);
    p = fmaf(p, t, 1.00002368f);
    p = fmaf(p, t, -1.26551223f);
    const float erfc = t * expf(fmaf(-z, z, p));
    return x >= 0.f ? x * fmaf(-0.5f, erfc, 1.0f) : 0.5f * x * erfc;
}

float hf_epi_ref1(const hf_epilogue *ep, int32_t acc, int64_t m, int64_t n) {
    /* wrapping 32-bit arithmetic: the exact value sum (a - zp) * w always fits in int32 */
    const int32_t v = (int32_t)((uint32_t)acc - (uint32_t)ep->a_zp * (uint32_t)ep->colsum[n]);
    const float s = ep->a_scale * ep->w_scale[n];
    float y = fmaf((float)v, s, ep->bias ? ep->bias[n] : 0.f);
    if (ep->gelu) y = hf_gelu_ref1(y);
    if (ep->residual) y += ep->residual[m * ep->ldr + n];
    return y;
}

/* GeGLU (ep->glu): the two fp32 epilogue values, then hf_geglu_ref's expression (GELU(a) * g, the multiplier, the
 * quantizer), so the fused store equals the unfused fp32 output + hf_geglu_ref bit for bit. */
void hf_glu_store_ref1(const hf_epilogue *ep, int32_t acc_a, int32_t acc_g, int64_t m, int64_t j, uint8_t *C,
                       int64_t ldc) {
    const int64_t n = hf_glu_chan(j);
    float v = hf_gelu_ref1(hf_epi_ref1(ep, acc_a, m, n)) * hf_epi_ref1(ep, acc_g, m, n + 4);
    if (ep->q_mul) v *= ep->q_mul[j];
    C[m * ldc + j] = hf_quantize_ref1(v, ep->q_scale, ep->q_zp);
}

void hf_epilogue_rows_ref(const hf_epilogue *ep, int64_t m0, int64_t M, int64_t N, const int32_t *acc, int64_t lda,
                          void *C, int64_t ldc) {
    if (ep->glu) {
        for (int64_t m = 0; m < M; m++)
            for (int64_t j = 0; j < N / 2; j++) {
                const int64_t n = hf_glu_chan(j);
                hf_glu_store_ref1(ep, acc[m * lda + n], acc[m * lda + n + 4], m, j, (uint8_t *)C, ldc);
            }
        return;
    }
    hf_epilogue e2 = *ep; /* residual rows are global (m0 + m), C rows local */
    if (ep->residual) e2.residual = ep->residual + m0 * ep->ldr;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) hf_epi_store_ref1(&e2, acc[m * lda + n], m, n, C, ldc);
}

void hf_gelu_ref(int64_t n, const float *x, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = hf_gelu_ref1(x[i]);
}

/* ONNX QuantizeLinear: saturate(round_half_even(x / scale) + zp); NaN -> 0. */
void hf_quantize_ref(int64_t n, const float *x, float scale, int32_t zp, uint8_t *y) {
    for (int64_t i = 0; i < n; i++) y[i] = hf_quantize_ref1(x[i], scale, zp);
}

void hf_quantize_mul_ref(int64_t n, const float *x, const float *mul, float scale, int32_t zp, uint8_t *y) {
    for (int64_t i = 0; i < n; i++) y[i] = hf_quantize_ref1(x[i] * mul[i], scale, zp);
}
