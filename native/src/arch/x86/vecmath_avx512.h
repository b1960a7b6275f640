/* Shared AVX-512 helpers (exp, tail masks, the u8 quantizer, the softmax of a score row) for the fp32
 * and int8 attention kernels and the Linear epilogue. Header-only; each function carries its own
 * target attribute, so includers need no special flags (and may add features such as VNNI). */
#ifndef HF_VECMATH_AVX512_H
#define HF_VECMATH_AVX512_H
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#define HF_LOG2E 1.44269504088896341f
#define HF_AVX512 static inline __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma"), always_inline))

/* exp(x) for the softmax's x = s - max <= 0, 16 lanes: hf_exp256's reduction and polynomial, with the power of 2
 * applied by vscalefps (which also flushes x < -103 to 0 and gives IEEE denormals in between) instead of
 * clamp + under-mask + cvt + add + shift + mul: 14 operations instead of 19; the softmax pass of the int8 attention
 * at S=384 ran ~30% of its kernel. Equal to the old form for x >= -87.3 (both multiply p by an exact 2^n); below
 * that, where the old form returned 0, values under 1.2e-38. NaN gives 0. Not for x > 88 (no upper clamp).
 * hf_exp512xn takes n (<= 4) vectors side by side, each step for all of them: one exp is a ~50-cycle dependency
 * chain, and rows of them one after the other kept too few in flight (the lockstep form of the GELU epilogue's fix). */
HF_AVX512 void hf_exp512xn(__m512 *v, const int n) {
    __m512 x[4], nn[4], r[4], p[4];
    for (int i = 0; i < n; i++) {
        x[i] = _mm512_max_ps(v[i], _mm512_set1_ps(-104.0f)); /* NaN -> -104 (vmaxps returns the second operand) */
        nn[i] = _mm512_roundscale_ps(_mm512_mul_ps(x[i], _mm512_set1_ps(HF_LOG2E)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    }
    for (int i = 0; i < n; i++) r[i] = _mm512_fnmadd_ps(nn[i], _mm512_set1_ps(0.693359375f), x[i]);
    for (int i = 0; i < n; i++) r[i] = _mm512_fnmadd_ps(nn[i], _mm512_set1_ps(-2.12194440e-4f), r[i]);
    for (int i = 0; i < n; i++) p[i] = _mm512_fmadd_ps(_mm512_set1_ps(1.9875691500e-4f), r[i], _mm512_set1_ps(1.3981999507e-3f));
    for (int i = 0; i < n; i++) p[i] = _mm512_fmadd_ps(p[i], r[i], _mm512_set1_ps(8.3334519073e-3f));
    for (int i = 0; i < n; i++) p[i] = _mm512_fmadd_ps(p[i], r[i], _mm512_set1_ps(4.1665795894e-2f));
    for (int i = 0; i < n; i++) p[i] = _mm512_fmadd_ps(p[i], r[i], _mm512_set1_ps(1.6666665459e-1f));
    for (int i = 0; i < n; i++) p[i] = _mm512_fmadd_ps(p[i], r[i], _mm512_set1_ps(5.0000001201e-1f));
    for (int i = 0; i < n; i++) p[i] = _mm512_fmadd_ps(p[i], _mm512_mul_ps(r[i], r[i]), _mm512_add_ps(r[i], _mm512_set1_ps(1.0f)));
    for (int i = 0; i < n; i++) v[i] = _mm512_scalef_ps(p[i], nn[i]);
}

/* 2^x for finite x <= 0, n (<= 4) vectors in lockstep: n = rint(x), r = x - n (exact, |r| <= 1/2), 2^r by a
 * degree-5 polynomial with c0 = 1 (relative error 1.7e-7, ~3 ulp; fitted by native/tools/gen_exp2_poly.py), scaled
 * by vscalefps (exact; 0 below 2^-149, so x = -1e30 gives 0). 9 operations against hf_exp512xn's 14: the int8
 * attention folds log2(e) into its scores' scale, so neither the multiply by log2(e) nor the two-step
 * Cody-Waite reduction is needed. Not for NaN or infinite x (r would be NaN): callers keep their scores finite. */
HF_AVX512 void hf_exp2_512xn(__m512 *v, const int n) {
    __m512 nn[4], r[4], p[4];
    for (int i = 0; i < n; i++) nn[i] = _mm512_roundscale_ps(v[i], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    for (int i = 0; i < n; i++) r[i] = _mm512_sub_ps(v[i], nn[i]);
    for (int i = 0; i < n; i++) p[i] = _mm512_fmadd_ps(_mm512_set1_ps(1.3264563167e-3f), r[i], _mm512_set1_ps(9.6714636311e-3f));
    for (int i = 0; i < n; i++) p[i] = _mm512_fmadd_ps(p[i], r[i], _mm512_set1_ps(5.5507335812e-2f));
    for (int i = 0; i < n; i++) p[i] = _mm512_fmadd_ps(p[i], r[i], _mm512_set1_ps(2.4022242427e-1f));
    for (int i = 0; i < n; i++) p[i] = _mm512_fmadd_ps(p[i], r[i], _mm512_set1_ps(6.9314700365e-1f));
    for (int i = 0; i < n; i++) p[i] = _mm512_fmadd_ps(p[i], r[i], _mm512_set1_ps(1.0f));
    for (int i = 0; i < n; i++) v[i] = _mm512_scalef_ps(p[i], nn[i]);
}

/* lanes [0, left) of 16 */
static inline __mmask16 hf_tail16(int64_t left) {
    return left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1u);
}

/* hf_quantize_ref1 bit for bit, as 16 bytes: rint(y / scale) + zp, the quotient converted with round-to-nearest-even
 * (embedded rounding, = rint for |q| < 2^31, clamped at 2^30 first; NaN and -inf convert to INT_MIN, which the
 * clamp at 0 catches), the upper clamp being the unsigned saturation of the narrowing. The division is as cheap as a
 * multiply-and-check on Zen 5. */
HF_AVX512 __m128i hf_quant16(__m512 y, float scale, int32_t zp) {
    const __m512 q = _mm512_min_ps(_mm512_set1_ps(0x1p30f), _mm512_div_ps(y, _mm512_set1_ps(scale))); /* NaN stays NaN */
    const __m512i r = _mm512_add_epi32(_mm512_cvt_roundps_epi32(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                                       _mm512_set1_epi32(zp));
    return _mm512_cvtusepi32_epi8(_mm512_max_epi32(r, _mm512_setzero_si512()));
}

/* 16x16 int32 transpose: r[i] lane j -> r[j] lane i. */
HF_AVX512 void hf_transpose16_epi32(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        r[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    /* r[4i + c] lane L = rows 4i..4i+3 of column 4L + c */
    for (int c = 0; c < 4; c++) {
        const __m512i u0 = _mm512_shuffle_i32x4(r[c], r[4 + c], 0x88), u1 = _mm512_shuffle_i32x4(r[c], r[4 + c], 0xdd);
        const __m512i u2 = _mm512_shuffle_i32x4(r[8 + c], r[12 + c], 0x88),
                      u3 = _mm512_shuffle_i32x4(r[8 + c], r[12 + c], 0xdd);
        t[c] = _mm512_shuffle_i32x4(u0, u2, 0x88);
        t[8 + c] = _mm512_shuffle_i32x4(u0, u2, 0xdd);
        t[4 + c] = _mm512_shuffle_i32x4(u1, u3, 0x88);
        t[12 + c] = _mm512_shuffle_i32x4(u1, u3, 0xdd);
    }
    for (int i = 0; i < 16; i++) r[i] = t[i];
}

/* e = exp(p - shift) (base2: 2^(p - shift), hf_exp2_512xn) over keys [0, ne) of one score row, in place, 4 vectors in
 * lockstep (one exp is a long dependency chain); returns the sum, added vector by vector in key order. */
static inline __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma"), always_inline)) float
hf_exp_row16(float *p, int64_t ne, float shift, const int base2) {
    const __m512 vs0 = _mm512_set1_ps(shift);
    __m512 vs = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 64 <= ne; j += 64) {
        __m512 e[4];
        for (int i = 0; i < 4; i++) e[i] = _mm512_sub_ps(_mm512_loadu_ps(p + j + 16 * i), vs0);
        if (base2) hf_exp2_512xn(e, 4);
        else hf_exp512xn(e, 4);
        for (int i = 0; i < 4; i++) {
            _mm512_storeu_ps(p + j + 16 * i, e[i]);
            vs = _mm512_add_ps(vs, e[i]);
        }
    }
    for (; j < ne; j += 16) {
        const __mmask16 k = hf_tail16(ne - j);
        __m512 e = _mm512_sub_ps(_mm512_maskz_loadu_ps(k, p + j), vs0);
        if (base2) hf_exp2_512xn(&e, 1);
        else hf_exp512xn(&e, 1);
        e = _mm512_maskz_mov_ps(k, e);
        _mm512_mask_storeu_ps(p + j, k, e);
        vs = _mm512_add_ps(vs, e);
    }
    return _mm512_reduce_add_ps(vs);
}

/* Softmax numerators of one score row over keys [0, ne) in place, given the row max mx; returns 1/sum. Every key
 * masked (mx = -inf): 1 everywhere and 1/ne, i.e. uniform weights. */
static inline __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma"))) float
hf_softmax_exp16(float *p, int64_t ne, float mx) {
    if (mx == -INFINITY) {
        for (int64_t j = 0; j < ne; j++) p[j] = 1.f;
        return 1.0f / (float)ne;
    }
    return 1.0f / hf_exp_row16(p, ne, mx, 0);
}

/* The same with the max pass first (the fp32 attention; the int8 kernel takes the max in its scores epilogue). */
static inline __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma"))) float
hf_softmax_row16(float *p, int64_t ne) {
    __m512 vm = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < ne; j += 16)
        vm = _mm512_max_ps(vm, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), hf_tail16(ne - j), p + j));
    return hf_softmax_exp16(p, ne, _mm512_reduce_max_ps(vm));
}
#endif
