/* Scalar reference LayerNorm with optional fused residual add: y = LN(x + r) * gamma + beta. */
#include <math.h>

#include "internal.h"

void hf_layernorm_ref(int64_t T, int64_t H, const float *x, const float *r, const float *gamma,
                      const float *beta, float eps, float *y) {
    for (int64_t t = 0; t < T; t++) {
        const float *xt = x + t * H, *rt = r ? r + t * H : NULL;
        float *yt = y + t * H;
        double mean = 0.0, var = 0.0;
        for (int64_t i = 0; i < H; i++) {
            float v = rt ? xt[i] + rt[i] : xt[i];
            yt[i] = v;
            mean += v;
        }
        mean /= (double)H;
        for (int64_t i = 0; i < H; i++) var += ((double)yt[i] - mean) * ((double)yt[i] - mean);
        var /= (double)H;
        const float inv = (float)(1.0 / sqrt(var + (double)eps)), mu = (float)mean;
        for (int64_t i = 0; i < H; i++) yt[i] = (yt[i] - mu) * inv * gamma[i] + beta[i];
    }
}
