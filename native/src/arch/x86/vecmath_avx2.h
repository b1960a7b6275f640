/* Shared AVX2 fp32 helpers (exp, horizontal reductions, transposes) for the fp32 kernels. Header-only, each
 * function carries its own target attribute so includers need no special flags. */
#ifndef HF_VECMATH_AVX2_H
#define HF_VECMATH_AVX2_H
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#define HF_AVX2 __attribute__((target("avx2,fma"), always_inline)) static inline

/* exp(x) without range clamps, for x already inside [-87.3, 88.7]. Range reduction x = n ln2 + r,
 * |r| <= ln2/2, degree-6 polynomial: relative error ~2e-7 (about 1 ulp of float). */
HF_AVX2 __m256 hf_exp256_unclamped(__m256 x) {
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* exp(x) for x in [-87.3, 88.7] (clamped above); below it returns 0. */
HF_AVX2 __m256 hf_exp256(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.3365478515625f), hi = _mm256_set1_ps(88.7228317260742f);
    const __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    return _mm256_andnot_ps(under, hf_exp256_unclamped(_mm256_min_ps(_mm256_max_ps(x, lo), hi)));
}

HF_AVX2 float hf_hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

HF_AVX2 float hf_hmax256(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* In-register transpose of an 8x8 float block. */
HF_AVX2 void hf_transpose8_ps(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* Mask of the first n (0..8) lanes, for tails. */
HF_AVX2 __m256i hf_tailmask256(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* K^T into kt[d][sp] for the attention kernels: 8x8 register transposes, zero columns past S. */
__attribute__((target("avx2,fma"))) static inline void hf_transpose_keys(int64_t S, int64_t d, const float *k,
                                                                         int64_t ld, float *kt, int64_t sp) {
    int64_t j = 0;
    for (; j + 8 <= S; j += 8)
        for (int64_t c = 0; c < d; c += 8) {
            __m256 t[8];
            for (int i = 0; i < 8; i++) t[i] = _mm256_loadu_ps(k + (j + i) * ld + c);
            hf_transpose8_ps(t);
            for (int i = 0; i < 8; i++) _mm256_storeu_ps(kt + (c + i) * sp + j, t[i]);
        }
    for (int64_t c = 0; c < d; c++) {
        for (int64_t jj = j; jj < S; jj++) kt[c * sp + jj] = k[jj * ld + c];
        for (int64_t jj = S; jj < sp; jj++) kt[c * sp + jj] = 0.f;
    }
}

/* rint(x / scale) + zp clamped to [0, 255] (NaN -> 0) as int32 lanes: hf_quantize_ref1 bit for bit. */
HF_AVX2 __m256i hf_quant8(__m256 x, __m256 scale, __m256 zp) {
    __m256 r = _mm256_add_ps(_mm256_round_ps(_mm256_div_ps(x, scale), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), zp);
    r = _mm256_max_ps(r, _mm256_setzero_ps()); /* NaN -> 0 (maxps returns the second operand) */
    r = _mm256_min_ps(r, _mm256_set1_ps(255.f));
    return _mm256_cvtps_epi32(r);
}

/* hf_quant8 as bytes: the 8 quantized lanes in bytes 0-7 (and again in 8-15) */
HF_AVX2 __m128i hf_quant8_u8(__m256 x, __m256 scale, __m256 zp) {
    const __m256i q = hf_quant8(x, scale, zp);
    const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    return _mm_packus_epi16(w, w);
}

/* Softmax numerators of one score row over keys [0, ne) in place; returns 1/sum. A row with no
 * finite score (every key masked) becomes uniform over [0, ne). */
__attribute__((target("avx2,fma"))) static inline float hf_softmax_row8(float *p, int64_t ne) {
    int64_t j = 0;
    __m256 vm = _mm256_set1_ps(-INFINITY);
    for (; j + 8 <= ne; j += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(p + j));
    float mx = hf_hmax256(vm);
    for (; j < ne; j++) mx = p[j] > mx ? p[j] : mx;
    if (mx == -INFINITY) {
        for (j = 0; j < ne; j++) p[j] = 1.f;
        return 1.0f / (float)ne;
    }
    const __m256 vmx = _mm256_set1_ps(mx);
    __m256 vs = _mm256_setzero_ps();
    for (j = 0; j + 8 <= ne; j += 8) {
        const __m256 e = hf_exp256(_mm256_sub_ps(_mm256_loadu_ps(p + j), vmx));
        _mm256_storeu_ps(p + j, e);
        vs = _mm256_add_ps(vs, e);
    }
    float sum = hf_hsum256(vs);
    for (; j < ne; j++) {
        p[j] = expf(p[j] - mx);
        sum += p[j];
    }
    return 1.0f / sum;
}

#endif
