/* GeGLU (ModernBERT's MLP): the gated GELU of ffn_in's two halves, quantized for ffn_out, scalar reference. */
#include "internal.h"

void hf_geglu_ref(int64_t n, const float *a, const float *g, const float *mul, float scale, int32_t zp, uint8_t *y) {
    for (int64_t i = 0; i < n; i++) {
        float v = hf_gelu_ref1(a[i]) * g[i];
        if (mul) v *= mul[i]; /* SmoothQuant's Mul before the QuantizeLinear: its own rounding, as ONNX Runtime */
        y[i] = hf_quantize_ref1(v, scale, zp);
    }
}
