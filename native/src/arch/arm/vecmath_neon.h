/* aarch64 vector math shared by the NEON kernels: exp and the erf-form GELU, 4 lanes. */
#ifndef HF_ARCH_ARM_VECMATH_NEON_H
#define HF_ARCH_ARM_VECMATH_NEON_H

#include <arm_neon.h>

/* exp(x) for x in [-87.3, 0]: x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial (the AVX2 kernel's, relative error
 * ~2e-7); 2^n built in the exponent bits. */
static inline float32x4_t hf_exp4_unclamped(float32x4_t x) {
    const float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

/* GELU(x) = 0.5 x (1 + erf(x/sqrt2)) as the reference (hf_gelu_ref1) writes it: h = erfc(|x|/sqrt2)/2 by the same
 * Chebyshev fit and a true division, x (1 - h) for x >= 0 and x h below; z clamped to 9 (erfc(9) < 1e-36 is below
 * either branch's resolution) keeps exp's argument in [-83, 0]. Only exp differs from the reference (~1 ulp). */
static inline float32x4_t hf_gelu4(float32x4_t x) {
    const float32x4_t one = vdupq_n_f32(1.0f), half = vdupq_n_f32(0.5f);
    float32x4_t z = vmulq_n_f32(vabsq_f32(x), 0.70710678118654752f);
    z = vminnmq_f32(z, vdupq_n_f32(9.0f)); /* NaN -> 9: x NaN still yields NaN below */
    const float32x4_t t = vdivq_f32(one, vfmaq_f32(one, half, z));
    float32x4_t p = vdupq_n_f32(0.17087277f);
    p = vfmaq_f32(vdupq_n_f32(-0.82215223f), p, t);
    p = vfmaq_f32(vdupq_n_f32(1.48851587f), p, t);
    p = vfmaq_f32(vdupq_n_f32(-1.13520398f), p, t);
    p = vfmaq_f32(vdupq_n_f32(0.27886807f), p, t);
    p = vfmaq_f32(vdupq_n_f32(-0.18628806f), p, t);
    p = vfmaq_f32(vdupq_n_f32(0.09678418f), p, t);
    p = vfmaq_f32(vdupq_n_f32(0.37409196f), p, t);
    p = vfmaq_f32(vdupq_n_f32(1.00002368f), p, t);
    p = vfmaq_f32(vdupq_n_f32(-1.26551223f), p, t);
    const float32x4_t erfc = vmulq_f32(t, hf_exp4_unclamped(vfmsq_f32(p, z, z)));
    const float32x4_t pos = vmulq_f32(x, vfmsq_f32(one, half, erfc)), neg = vmulq_f32(vmulq_f32(half, x), erfc);
    return vbslq_f32(vcltzq_f32(x), neg, pos);
}

#endif
