/* Scalar reference of the bf16 attention of one (sequence, head): hf_attention_head_fn's softmax(q k^T * scale +
 * key_bias) v with q, k, v rounded to bf16 (round to nearest even) and both products summed as vdpbf16ps does
 * (pairs of consecutive elements, the odd one first, fp32 FMAs; ref/bf16_scalar.h). The softmax stays fp32: the
 * scores are fp32, exp is hf_exp512xn's polynomial lane by lane, and the probabilities are rounded to bf16 for p v,
 * normalised by the sum of the rounded values (added per lane (j - first key) % 16 in key order, then lane 0..15), so
 * the weights of a row sum to 1. This is the AVX-512 BF16 kernel's arithmetic, operation for operation: the two agree
 * bit for bit. Keys past the last unmasked one are skipped (probability exactly 0); a row whose keys are all masked
 * gets uniform weights.
 * The variants (hf_attention_bf16x_fn): a per-row bias rb (MPNet's relative positions) added as the fp32 kernels do,
 * (s * scale + rb) + key_bias; a window w >= 0 (ModernBERT's local layers): row i scores, normalises and sums the keys
 * |i - j| <= w only (no key trimming: as hf_attention_window_ref, a row whose window keys are all masked is uniform
 * over its window), p v over the key pairs (2t, 2t + 1) that reach the window, probability 0 outside it. */
#include <math.h>

#include "internal.h"
#include "ref/bf16_scalar.h"

int64_t hf_attention_bf16x_scratch_floats(int64_t S, int64_t window, int64_t d) {
    /* the AVX-512 kernel: K^T pairs [d/2][sp], q [S][d/2], v pairs [sp/2][d], 12 fp32 score rows of scs and their
     * bf16 probabilities [12][scs/2] (sp = S rounded up to 32, + 32 with a window for its key blocks' reads past S;
     * scs = sp, or with a window the union of 12 rows' windows rounded up to 32, + 32); the reference uses S + 16 */
    const int64_t sp = ((S + 31) & ~(int64_t)31) + (window >= 0 ? 32 : 0), dp = (d + 1) / 2;
    const int64_t nmax = window >= 0 && 2 * window + 14 < S ? 2 * window + 14 : S;
    const int64_t scs = window >= 0 ? ((nmax + 31) & ~(int64_t)31) + 32 : sp;
    return dp * sp + S * dp + (sp / 2) * d + 12 * scs + 6 * scs + 64;
}

int64_t hf_attention_bf16_scratch_floats(int64_t S, int64_t d) { return hf_attention_bf16x_scratch_floats(S, -1, d); }

void hf_attention_bf16x_ref(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                            const float *key_bias, const float *rb, int64_t rb_step, int64_t window, float scale,
                            float *ctx, int64_t ldo, float *scratch) {
    const int64_t ne = window >= 0 ? S : hf_attended_keys(S, key_bias), pairs = (d + 1) / 2;
    float *p = scratch; /* [keys of the row] bf16-rounded probabilities, as floats */
#define B16(x) hf_bf16_from_f32(x)
    for (int64_t i = 0; i < S; i++) {
        const int64_t lo = window >= 0 && i - window > 0 ? i - window : 0;
        const int64_t hi = window >= 0 && i + window < ne - 1 ? i + window : ne - 1;
        float mx = -INFINITY;
        for (int64_t j = lo; j <= hi; j++) {
            float acc = 0.f;
            for (int64_t t = 0; t < pairs; t++) {
                const int64_t c = 2 * t;
                const int odd_ok = c + 1 < d;
                acc = hf_bf16_dot2(acc, B16(q[i * ld + c]), odd_ok ? B16(q[i * ld + c + 1]) : 0,
                                   B16(k[j * ld + c]), odd_ok ? B16(k[j * ld + c + 1]) : 0);
            }
            const float kb = key_bias ? key_bias[j] : 0.f;
            float s = acc * scale;
            s = rb ? (s + rb[i * rb_step + j]) + kb : s + kb;
            p[j - lo] = s;
            if (s > mx) mx = s;
        }
        float lanes[16] = {0};
        for (int64_t j = lo; j <= hi; j++) {
            p[j - lo] = hf_f32_from_bf16(B16(mx == -INFINITY ? 1.f : hf_exp512_lane(p[j - lo] - mx)));
            lanes[(j - lo) % 16] += p[j - lo];
        }
        float sum = 0.f;
        for (int l = 0; l < 16; l++) sum += lanes[l];
        const float inv = 1.0f / sum;
        for (int64_t c = 0; c < d; c++) {
            float acc = 0.f;
            for (int64_t j = lo & ~(int64_t)1; j <= hi; j += 2) { /* key pairs (j, j + 1), j even */
                const float p0 = j >= lo ? p[j - lo] : 0.f, p1 = j + 1 <= hi ? p[j + 1 - lo] : 0.f;
                acc = hf_bf16_dot2(acc, B16(p0), B16(p1), B16(v[j * ld + c]), j + 1 < ne ? B16(v[(j + 1) * ld + c]) : 0);
            }
            ctx[i * ldo + c] = acc * inv;
        }
    }
#undef B16
}

void hf_attention_head_bf16_ref(int64_t S, int64_t d, const float *q, const float *k, const float *v, int64_t ld,
                                const float *key_bias, float scale, float *ctx, int64_t ldo, float *scratch) {
    hf_attention_bf16x_ref(S, d, q, k, v, ld, key_bias, NULL, 0, -1, scale, ctx, ldo, scratch);
}
