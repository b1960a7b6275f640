/* The fp32 head Linear (ref/head_linear.h) compiled for AVX2 and AVX-512 (SSE2 was still ~1% of the call:
 * DistilBERT's 768 x 768 pre-classifier); identical results to the reference. */
#include "x86.h"
#include "ref/head_linear.h"

__attribute__((target("avx512f"))) void hf_head_linear_avx512(int64_t N, int64_t K, const float *W, const float *b,
                                                               int64_t rows, const float *in, float *out) {
    hf_head_linear_body(N, K, W, b, rows, in, out);
}
__attribute__((target("avx2"))) void hf_head_linear_avx2(int64_t N, int64_t K, const float *W, const float *b,
                                                         int64_t rows, const float *in, float *out) {
    hf_head_linear_body(N, K, W, b, rows, in, out);
}
