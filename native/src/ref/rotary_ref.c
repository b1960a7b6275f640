/* Rotary position embedding (ModernBERT, RoFormer-style rotate_half): the scalar reference and the cos / sin tables
 * every ISA's kernel reads. */
#include <math.h>

#include "internal.h"

/* transformers: inv_freq = 1.0 / (theta ** (arange(0, d, 2).float() / d)) in fp32, freqs = t.float() * inv_freq in fp32,
 * then cos / sin of that fp32 angle; pow, cos and sin are evaluated in double and rounded (torch's fp32 functions are
 * within an ulp of that). */
void hf_rope_table(int64_t S, int64_t d, float theta, float *cs) {
    const int64_t h = d / 2;
    float *c = cs, *s = cs + S * h;
    for (int64_t i = 0; i < h; i++) {
        const float e = (float)(2 * i) / (float)d;
        const float inv = 1.0f / (float)pow((double)theta, (double)e);
        for (int64_t t = 0; t < S; t++) {
            const float a = (float)t * inv;
            c[t * h + i] = (float)cos((double)a);
            s[t * h + i] = (float)sin((double)a);
        }
    }
}

static void rotate_rows(int64_t S, int64_t d, float *x, int64_t ld, const float *cs) {
    const int64_t h = d / 2;
    const float *c = cs, *s = cs + S * h;
    for (int64_t t = 0; t < S; t++) {
        float *r = x + t * ld;
        for (int64_t i = 0; i < h; i++) {
            const float x1 = r[i], x2 = r[i + h], co = c[t * h + i], si = s[t * h + i];
            r[i] = x1 * co - x2 * si;
            r[i + h] = x2 * co + x1 * si;
        }
    }
}

void hf_rotary_ref(int64_t S, int64_t d, float *q, float *k, int64_t ld, const float *cs) {
    rotate_rows(S, d, q, ld, cs);
    rotate_rows(S, d, k, ld, cs);
}
