/* AVX2 fused Linear epilogue (int32 accumulators -> fp32 with scale, bias, GELU, residual), the
 * transposing tile store used by the sparse kernels, GELU and the u8 activation quantizer.
 * Same expressions as linear_ref.c (fma where the reference uses fmaf), except GELU's reciprocal and
 * clamp (see gelu8); the u8 output matches hf_quantize_avx2 bit for bit. */
#include <immintrin.h>
#include <string.h>

#include "x86.h"
#include "vecmath_avx2.h"

#define TGT __attribute__((target("avx2,fma")))
#define INL static inline __attribute__((target("avx2,fma"), always_inline))

/* GELU(x) = 0.5 x (1 + erf(x/sqrt2)), written with h = erfc(|x|/sqrt2)/2 as x (1 - h) for x >= 0 and x h
 * for x < 0, so the negative tail keeps its relative accuracy. erfc is the reference's Chebyshev fit
 * (hf_gelu_ref1) with two cheaper steps: 1/(1 + z/2) by vrcpps + one Newton step (~1 ulp) instead of
 * a division, and z clamped to 9 (erfc(9) < 1e-36 is below the resolution of either branch), which keeps
 * exp's argument in [-83, 0] so it needs no range checks. Matches erf-GELU to ~1e-6 relative (tests). */
INL __m256 gelu8(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    __m256 z = _mm256_mul_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), x), _mm256_set1_ps(0.70710678118654752f));
    z = _mm256_min_ps(z, _mm256_set1_ps(9.0f)); /* NaN -> 9: x NaN still yields NaN below */
    const __m256 d = _mm256_fmadd_ps(half, z, one);
    __m256 t = _mm256_rcp_ps(d);
    t = _mm256_mul_ps(t, _mm256_fnmadd_ps(d, t, _mm256_set1_ps(2.0f)));
    __m256 p = _mm256_set1_ps(0.17087277f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.82215223f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.48851587f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.13520398f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.27886807f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.18628806f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.09678418f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.37409196f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.00002368f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.26551223f));
    /* gelu8 bounds the argument of exp, so the unclamped form is exact here */
    const __m256 h = _mm256_mul_ps(_mm256_mul_ps(half, t), hf_exp256_unclamped(_mm256_fnmadd_ps(z, z, p)));
    /* sign bit of x selects h (x < 0, also -0) over 1 - h */
    return _mm256_mul_ps(x, _mm256_blendv_ps(_mm256_sub_ps(one, h), h, x));
}

/* Per-channel constants of 8 channels (masked past N): zp * colsum and a_scale * w_scale folded. */
typedef struct {
    __m256i zc;
    __m256 s, bias;
} chan8;

INL chan8 load_chan(const hf_epilogue *ep, int64_t n0, __m256i mask) {
    chan8 c;
    const __m256i colsum = _mm256_maskload_epi32((const int *)(ep->colsum + n0), mask);
    c.zc = _mm256_mullo_epi32(_mm256_set1_epi32(ep->a_zp), colsum);
    c.s = _mm256_mul_ps(_mm256_set1_ps(ep->a_scale), _mm256_maskload_ps(ep->w_scale + n0, mask));
    c.bias = ep->bias ? _mm256_maskload_ps(ep->bias + n0, mask) : _mm256_setzero_ps();
    return c;
}

INL void epi8_post(const hf_epilogue *ep, __m256 y, int64_t m, int64_t n0, __m256i mask, int nr, void *C, int64_t ldc);

/* Epilogue of one token's 8 channels (nr valid), stored at row m of C (int32, float or u8). */
INL void epi8_store(const hf_epilogue *ep, __m256i acc, const chan8 *c, int64_t m, int64_t n0, __m256i mask, int nr,
                    void *C, int64_t ldc) {
    const int full = nr == 8;
    if (ep->f32 == HF_EPI_S32) {
        int32_t *d = (int32_t *)C + m * ldc + n0;
        if (full) _mm256_storeu_si256((__m256i *)d, acc);
        else _mm256_maskstore_epi32((int *)d, mask, acc);
        return;
    }
    __m256 y = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc, c->zc)), c->s, c->bias);
    if (ep->gelu) y = gelu8(y);
    epi8_post(ep, y, m, n0, mask, nr, C, ldc);
}

/* Residual add and the float / u8 store of one token's 8 channels. */
INL void epi8_post(const hf_epilogue *ep, __m256 y, int64_t m, int64_t n0, __m256i mask, int nr, void *C, int64_t ldc) {
    const int full = nr == 8;
    if (ep->residual) {
        const float *r = ep->residual + m * ep->ldr + n0;
        y = _mm256_add_ps(y, full ? _mm256_loadu_ps(r) : _mm256_maskload_ps(r, mask));
    }
    if (ep->f32 == HF_EPI_U8) {
        if (ep->q_mul) y = _mm256_mul_ps(y, full ? _mm256_loadu_ps(ep->q_mul + n0) : _mm256_maskload_ps(ep->q_mul + n0, mask));
        const __m128i b = hf_quant8_u8(y, _mm256_set1_ps(hf_epi_qscale(ep, n0)), _mm256_set1_ps((float)hf_epi_qzp(ep, n0)));
        uint8_t *d = (uint8_t *)C + m * ldc + n0;
        if (full) {
            _mm_storel_epi64((__m128i *)d, b);
        } else {
            uint8_t tmp[16];
            _mm_storeu_si128((__m128i *)tmp, b);
            memcpy(d, tmp, (size_t)nr);
        }
        return;
    }
    float *d = (float *)C + m * ldc + n0;
    if (full) _mm256_storeu_ps(d, y);
    else _mm256_maskstore_ps(d, mask, y);
}

/* ---- GeGLU (ep->glu): GELU(y_a) * y_g [* q_mul] and the quantizer, hf_geglu_avx2's expressions on the fp32
 * epilogue's values, so the fused bytes equal the unfused fp32 output + hf_geglu_avx2 bit for bit. ---- */

/* q[i]: 16 tokens' bytes of gated channel j0 + i; writes C[m0 + t][j0 .. j0 + 3] for t < nt (a 4 x 16 byte
 * transpose). */
TGT void hf_glu_scatter4(const __m128i q[4], int nt, int64_t m0, int64_t j0, uint8_t *C, int64_t ldc) {
    const __m128i lo01 = _mm_unpacklo_epi8(q[0], q[1]), hi01 = _mm_unpackhi_epi8(q[0], q[1]);
    const __m128i lo23 = _mm_unpacklo_epi8(q[2], q[3]), hi23 = _mm_unpackhi_epi8(q[2], q[3]);
    uint32_t d[16] __attribute__((aligned(16)));
    _mm_store_si128((__m128i *)d, _mm_unpacklo_epi16(lo01, lo23));
    _mm_store_si128((__m128i *)(d + 4), _mm_unpackhi_epi16(lo01, lo23));
    _mm_store_si128((__m128i *)(d + 8), _mm_unpacklo_epi16(hi01, hi23));
    _mm_store_si128((__m128i *)(d + 12), _mm_unpackhi_epi16(hi01, hi23));
    for (int t = 0; t < nt; t++) memcpy(C + (m0 + t) * ldc + j0, d + t, 4);
}

/* One token's 8 gated channels from y0 / y1, the fp32 epilogue of two groups (a0-3 g0-3, a4-7 g4-7) */
INL __m128i glu8(const hf_epilogue *ep, __m256 y0, __m256 y1, int64_t j0, __m256 vs, __m256 vz) {
    const __m256 a = _mm256_permute2f128_ps(y0, y1, 0x20), g = _mm256_permute2f128_ps(y0, y1, 0x31);
    __m256 v = _mm256_mul_ps(gelu8(a), g);
    if (ep->q_mul) v = _mm256_mul_ps(v, _mm256_loadu_ps(ep->q_mul + j0));
    return hf_quant8_u8(v, vs, vz);
}

/* The 8-channel tile (one group: 4 GELU inputs, 4 gates) of the sparse kernels, channel-major [8][16] int32. */
INL void glu_tile(const hf_epilogue *ep, const int32_t *tile, int nt, int64_t m0, int64_t n0, void *C, int64_t ldc) {
    const __m256 vs = _mm256_set1_ps(ep->q_scale), vz = _mm256_set1_ps((float)ep->q_zp);
    __m128i q[4];
    for (int i = 0; i < 4; i++) {
        __m256 y[2][2]; /* [a / g][token half] */
        for (int h = 0; h < 2; h++) {
            const int64_t n = n0 + 4 * h + i;
            const __m256i zc = _mm256_set1_epi32((int32_t)((uint32_t)ep->a_zp * (uint32_t)ep->colsum[n]));
            const __m256 sc = _mm256_set1_ps(ep->a_scale * ep->w_scale[n]), b = _mm256_set1_ps(ep->bias ? ep->bias[n] : 0.f);
            for (int t = 0; t < 2; t++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(tile + (4 * h + i) * 16 + 8 * t));
                y[h][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(v, zc)), sc, b);
            }
        }
        const int64_t j = n0 / 2 + i;
        const __m256 m = ep->q_mul ? _mm256_set1_ps(ep->q_mul[j]) : _mm256_set1_ps(1.f);
        __m128i b8[2];
        for (int t = 0; t < 2; t++) {
            __m256 v = _mm256_mul_ps(gelu8(y[0][t]), y[1][t]);
            if (ep->q_mul) v = _mm256_mul_ps(v, m);
            b8[t] = hf_quant8_u8(v, vs, vz);
        }
        q[i] = _mm_unpacklo_epi64(b8[0], b8[1]);
    }
    hf_glu_scatter4(q, nt, m0, n0 / 2, (uint8_t *)C, ldc);
}

/* Dense rows: 16 channels (two groups, 8 gated outputs) per step; a last single group (F % 8 == 4) through
 * the reference's expressions in AVX2 form. */
INL void glu_rows(const hf_epilogue *ep, int64_t M, int64_t N, const int32_t *acc, int64_t lda, void *C, int64_t ldc) {
    const __m256 vs = _mm256_set1_ps(ep->q_scale), vz = _mm256_set1_ps((float)ep->q_zp);
    const __m256i full = hf_tailmask256(8);
    for (int64_t n0 = 0; n0 < N; n0 += 16) {
        const int two = N - n0 >= 16;
        const chan8 c0 = load_chan(ep, n0, full), c1 = two ? load_chan(ep, n0 + 8, full) : c0;
        for (int64_t m = 0; m < M; m++) {
            const int32_t *a = acc + m * lda + n0;
            const __m256 y0 = _mm256_fmadd_ps(
                _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)a), c0.zc)), c0.s, c0.bias);
            const __m256 y1 = two ? _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_loadu_si256(
                                                        (const __m256i *)(a + 8)), c1.zc)), c1.s, c1.bias)
                                  : y0;
            uint8_t *d = (uint8_t *)C + m * ldc + n0 / 2;
            if (two) {
                _mm_storel_epi64((__m128i *)d, glu8(ep, y0, y1, n0 / 2, vs, vz));
            } else { /* one group: 4 outputs (the multiplier read for those 4 only) */
                const __m256 a = _mm256_permute2f128_ps(y0, y0, 0x00), g = _mm256_permute2f128_ps(y0, y0, 0x11);
                __m256 v = _mm256_mul_ps(gelu8(a), g);
                if (ep->q_mul) v = _mm256_mul_ps(v, _mm256_castps128_ps256(_mm_loadu_ps(ep->q_mul + n0 / 2)));
                const __m128i q = hf_quant8_u8(v, vs, vz);
                const uint32_t w = (uint32_t)_mm_cvtsi128_si32(q);
                memcpy(d, &w, 4);
            }
        }
    }
}

TGT void hf_tile_store_avx2(const hf_epilogue *ep, const int32_t *tile, int nr, int nt, int64_t m0, int64_t n0,
                            void *C, int64_t ldc) {
    if (ep->glu) { /* nr == 8: N is a multiple of 8 and tiles start at multiples of 8 */
        glu_tile(ep, tile, nt, m0, n0, C, ldc);
        return;
    }
    const __m256i mask = hf_tailmask256(nr);
    chan8 c;
    if (ep->f32) c = load_chan(ep, n0, mask);
    else memset(&c, 0, sizeof c);
    for (int h = 0; h < 2 && h * 8 < nt; h++) {
        __m256 r[8];
        for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps((const float *)(tile + i * 16 + h * 8));
        hf_transpose8_ps(r);
        const int cnt = nt - h * 8 < 8 ? nt - h * 8 : 8;
        for (int j = 0; j < cnt; j++)
            epi8_store(ep, _mm256_castps_si256(r[j]), &c, m0 + h * 8 + j, n0, mask, nr, C, ldc);
    }
}

TGT void hf_tile_store_f32_avx2(const hf_epilogue *ep, const float *ytile, int nr, int nt, int64_t m0, int64_t n0,
                                void *C, int64_t ldc) {
    const __m256i mask = hf_tailmask256(nr);
    for (int h = 0; h < 2 && h * 8 < nt; h++) {
        __m256 r[8];
        for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(ytile + i * 16 + h * 8);
        hf_transpose8_ps(r);
        const int cnt = nt - h * 8 < 8 ? nt - h * 8 : 8;
        for (int j = 0; j < cnt; j++) epi8_post(ep, r[j], m0 + h * 8 + j, n0, mask, nr, C, ldc);
    }
}

TGT void hf_epilogue_rows_avx2(const hf_epilogue *ep, int64_t m0, int64_t M, int64_t N, const int32_t *acc,
                               int64_t lda, void *C, int64_t ldc) {
    if (ep->glu) {
        glu_rows(ep, M, N, acc, lda, C, ldc);
        return;
    }
    /* the residual is indexed with the global row m0 + m; C with the local one */
    hf_epilogue e2 = *ep;
    if (ep->residual) e2.residual = ep->residual + m0 * ep->ldr;
    for (int64_t n0 = 0; n0 < N; n0 += 8) {
        const int nr = N - n0 < 8 ? (int)(N - n0) : 8;
        const __m256i mask = hf_tailmask256(nr);
        chan8 c;
        if (ep->f32) c = load_chan(ep, n0, mask);
        else memset(&c, 0, sizeof c);
        for (int64_t m = 0; m < M; m++) {
            const int32_t *a = acc + m * lda + n0;
            const __m256i v = nr == 8 ? _mm256_loadu_si256((const __m256i *)a) : _mm256_maskload_epi32((const int *)a, mask);
            epi8_store(&e2, v, &c, m, n0, mask, nr, C, ldc);
        }
    }
}

TGT void hf_gelu_avx2(int64_t n, const float *x, float *y) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) { /* four independent chains in flight */
        const __m256 a = gelu8(_mm256_loadu_ps(x + i)), b = gelu8(_mm256_loadu_ps(x + i + 8));
        const __m256 c = gelu8(_mm256_loadu_ps(x + i + 16)), d = gelu8(_mm256_loadu_ps(x + i + 24));
        _mm256_storeu_ps(y + i, a), _mm256_storeu_ps(y + i + 8, b), _mm256_storeu_ps(y + i + 16, c), _mm256_storeu_ps(y + i + 24, d);
    }
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, gelu8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        const __m256i mask = hf_tailmask256((int)(n - i));
        _mm256_maskstore_ps(y + i, mask, gelu8(_mm256_maskload_ps(x + i, mask)));
    }
}

TGT void hf_quantize_avx2(int64_t n, const float *x, float scale, int32_t zp, uint8_t *y) {
    const __m256 vs = _mm256_set1_ps(scale), vz = _mm256_set1_ps((float)zp);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i a = hf_quant8(_mm256_loadu_ps(x + i), vs, vz), b = hf_quant8(_mm256_loadu_ps(x + i + 8), vs, vz);
        __m256i c = hf_quant8(_mm256_loadu_ps(x + i + 16), vs, vz), d = hf_quant8(_mm256_loadu_ps(x + i + 24), vs, vz);
        __m256i ab = _mm256_packus_epi32(a, b), cd = _mm256_packus_epi32(c, d); /* in-lane interleave */
        __m256i p = _mm256_packus_epi16(ab, cd);
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(y + i), p);
    }
    if (i < n) hf_quantize_ref(n - i, x + i, scale, zp, y + i);
}

/* 8 quantized lanes (x * mul) packed into the low 8 bytes */
INL __m128i quant_mul8(const float *x, const float *mul, __m256 vs, __m256 vz) {
    return hf_quant8_u8(_mm256_mul_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(mul)), vs, vz);
}

TGT void hf_quantize_mul_avx2(int64_t n, const float *x, const float *mul, float scale, int32_t zp, uint8_t *y) {
    const __m256 vs = _mm256_set1_ps(scale), vz = _mm256_set1_ps((float)zp);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m128i a = quant_mul8(x + i, mul + i, vs, vz), b = quant_mul8(x + i + 8, mul + i + 8, vs, vz);
        _mm_storeu_si128((__m128i *)(y + i), _mm_unpacklo_epi64(a, b));
    }
    if (i < n) hf_quantize_mul_ref(n - i, x + i, mul + i, scale, zp, y + i);
}
