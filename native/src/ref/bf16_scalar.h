/* Scalar models of the AVX512_BF16 instructions and of the 16-lane exp the bf16 attention kernel uses, shared by
 * the reference (ref/attention_bf16_ref.c) and the kernel's scalar tails (arch/x86/attention_bf16_avx512.c), so
 * the two agree bit for bit. Per Intel's pseudocode (checked against Zen 5 on 3.2M random lanes):
 *   vcvtneps2bf16: round to nearest even; fp32 denormals -> signed zero; NaN -> quiet NaN.
 *   vdpbf16ps:     acc += a[2i+1] * b[2i+1], then acc += a[2i] * b[2i], each an FMA rounded to nearest even with
 *                  denormal results flushed to zero (the product of two bf16 values is exact in fp32). */
#ifndef HF_BF16_SCALAR_H
#define HF_BF16_SCALAR_H
#include <math.h>
#include <stdint.h>
#include <string.h>

static inline uint16_t hf_bf16_from_f32(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u);          /* zero, denormal */
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);   /* NaN: quiet */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);                   /* RNE (inf stays inf) */
}

static inline float hf_f32_from_bf16(uint16_t b) {
    const uint32_t u = (uint32_t)b << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static inline float hf_bf16_ftz(float x) { return fabsf(x) < 0x1p-126f ? copysignf(0.f, x) : x; }

/* one vdpbf16ps lane: acc + a_hi * b_hi + a_lo * b_lo in the instruction's order and rounding */
static inline float hf_bf16_dot2(float acc, uint16_t a_lo, uint16_t a_hi, uint16_t b_lo, uint16_t b_hi) {
    acc = hf_bf16_ftz(fmaf(hf_f32_from_bf16(a_hi), hf_f32_from_bf16(b_hi), acc));
    return hf_bf16_ftz(fmaf(hf_f32_from_bf16(a_lo), hf_f32_from_bf16(b_lo), acc));
}

/* one lane of hf_exp512xn (arch/x86/vecmath_avx512.h): the same operations, each rounded once */
static inline float hf_exp512_lane(float v) {
    const float x = v == v ? fmaxf(v, -104.0f) : -104.0f; /* vmaxps(v, -104): NaN -> -104 */
    const float n = rintf(x * 1.44269504088896341f);
    float r = fmaf(-n, 0.693359375f, x);
    r = fmaf(-n, -2.12194440e-4f, r);
    float p = fmaf(1.9875691500e-4f, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p, r * r, r + 1.0f);
    return ldexpf(p, (int)n); /* vscalefps by an integer: exact, IEEE denormals */
}
#endif
