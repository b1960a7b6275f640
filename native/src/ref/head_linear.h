/* The fp32 head Linear's body, compiled once per ISA (ref/ref.c, arch/x86/head_linear_x86.c).
 * 16 partial sums per dot product so the compiler vectorizes it (a single running sum cannot be reordered): the
 * scalar loop was ~2% of a 1x128 call at 80% sparsity. With -std=c11 no multiply-add is contracted, and each partial
 * sum adds the same products in the same order at every vector width, so every ISA gives identical results. */
#ifndef HF_REF_HEAD_LINEAR_H
#define HF_REF_HEAD_LINEAR_H

#include <stdint.h>

static inline __attribute__((always_inline)) void hf_head_linear_body(int64_t N, int64_t K, const float *W,
                                                                      const float *b, int64_t rows, const float *in,
                                                                      float *out) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t n = 0; n < N; n++) {
            const float *w = W + n * K, *x = in + r * K;
            float part[16] = {0.f}, acc = 0.f;
            int64_t k = 0;
            for (; k + 16 <= K; k += 16)
                for (int j = 0; j < 16; j++) part[j] += w[k + j] * x[k + j];
            for (; k < K; k++) acc += w[k] * x[k];
            for (int j = 0; j < 16; j++) acc += part[j];
            out[r * N + n] = acc + b[n];
        }
}

#endif
