/* AVX-512 fused Linear epilogue for AVX-512 VNNI machines: GELU on 16 lanes. The expressions are those
 * of linear_avx2.c (same scale/bias fma, same quantizer) except GELU, which is a table of polynomials
 * here (gelu16) instead of the erfc fit: results agree with the reference to GELU's ~1e-6 tolerance,
 * and the int32 / no-GELU paths are bit for bit (the u8 quantizer too: hf_quant16 in vecmath_avx512.h).
 * hf_strip_store_avx512 is the 4x1 VNNI kernel's store: a channel-major [16][64] int32 tile (the sums already less
 * a_zp * colsum: the kernel starts its accumulators there), transposed 16x16 in registers, then the 16-lane row
 * epilogue per token. */
#include <immintrin.h>
#include <string.h>

#include "x86.h"
#include "gelu_table.h"
#include "vecmath_avx512.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))
#define INL static inline __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma"), always_inline))

/* GELU(x) = x Phi(x) = relu(x) - a R(a), a = |x|, R(a) = Phi(-a) from a table of polynomials (gelu_table.h, made
 * by native/tools/gen_gelu_table.py): 16 intervals of [0, 6], degree 5 in t = a - c_i, the coefficients picked per
 * lane with vpermps from one zmm each. ~20 operations instead of the ~40 of an erfc + exp evaluation (the epilogue
 * of ffn_in was a tenth of a dense forward pass). Error against the float64 erf GELU: at most 0.11 of the tests'
 * tolerance (1e-6 |gelu| + 1e-7 |x|). R is small where |x| is large, so the subtraction loses nothing.
 * The interval index is rint(u), u = a / H - 1/2, read from the low mantissa bits of u + 1.5 * 2^23 (vpermps uses
 * the low 4 bits of each index): 3 operations instead of floor + min + cvt. a is clamped just inside 6 (in the
 * product too, so that +-inf gives relu(x) - 6 R(6), not inf - inf): u stays in [-0.5, 15.5) despite the rounding
 * of 1/H; near an interval edge rint may pick the neighbour, whose polynomial is as accurate there. relu is
 * max(0, x), which returns x when x is NaN, so NaN propagates. Standalone, ns per 16 outputs (C harness): x Phi(x)
 * on 32 intervals of [-6, 6] with vpermt2ps 2.11, this form 1.7. */
INL void gelu16xn(__m512 *x, const int n) {
    const float lim = HF_GELU_A1 * (1.0f - 0x1p-20f);
    __m512 a[4], t[4], p[4];
    __m512i idx[4];
    for (int i = 0; i < n; i++) {
        a[i] = _mm512_min_ps(_mm512_abs_ps(x[i]), _mm512_set1_ps(lim));
        const __m512 u = _mm512_fmadd_ps(a[i], _mm512_set1_ps(1.0f / HF_GELU_H), _mm512_set1_ps(-0.5f));
        const __m512 v = _mm512_add_ps(u, _mm512_set1_ps(0x1.8p23f)); /* 1.5 * 2^23 + rint(u), exactly */
        const __m512 fi = _mm512_sub_ps(v, _mm512_set1_ps(0x1.8p23f));
        idx[i] = _mm512_castps_si512(v);
        /* the interval centre fi * H + H/2 is exact (a multiple of 1/16), so is t */
        t[i] = _mm512_sub_ps(a[i], _mm512_fmadd_ps(fi, _mm512_set1_ps(HF_GELU_H), _mm512_set1_ps(0.5f * HF_GELU_H)));
    }
#define CF(d, i) _mm512_permutexvar_ps(idx[i], _mm512_load_ps(hf_gelu_coef[d]))
    for (int i = 0; i < n; i++) p[i] = CF(HF_GELU_DEG, i);
    for (int d = HF_GELU_DEG - 1; d >= 0; d--)
        for (int i = 0; i < n; i++) p[i] = _mm512_fmadd_ps(p[i], t[i], CF(d, i));
#undef CF
    for (int i = 0; i < n; i++) x[i] = _mm512_fnmadd_ps(a[i], p[i], _mm512_max_ps(_mm512_setzero_ps(), x[i]));
}

INL __m512 gelu16(__m512 x) {
    gelu16xn(&x, 1);
    return x;
}

/* ---- GeGLU (ep->glu): GELU(y_a) * y_g [* q_mul] and the quantizer, hf_geglu_avx512's expressions (gelu16, then
 * the two products, hf_quant16) on the fp32 epilogue's values: the fused bytes equal the unfused fp32 output +
 * hf_geglu_avx512 bit for bit. ---- */

/* Per-channel scale and bias of channel n (the tile store's zc is subtracted by the caller where needed). */
INL void chan1(const hf_epilogue *ep, int64_t n, __m512 *s, __m512 *b) {
    *s = _mm512_set1_ps(ep->a_scale * ep->w_scale[n]);
    *b = _mm512_set1_ps(ep->bias ? ep->bias[n] : 0.f);
}

/* 4 gated channels of 16 tokens: ya[i], yg[i] the fp32 epilogue values of channel j0 + i's input and gate. */
INL void glu4(const hf_epilogue *ep, __m512 *ya, const __m512 *yg, int64_t j0, __m128i *q) {
    gelu16xn(ya, 4);
    for (int i = 0; i < 4; i++) {
        __m512 v = _mm512_mul_ps(ya[i], yg[i]);
        if (ep->q_mul) v = _mm512_mul_ps(v, _mm512_set1_ps(ep->q_mul[j0 + i]));
        q[i] = hf_quant16(v, ep->q_scale, ep->q_zp);
    }
}

/* 8 channels' bytes (q[i]: 16 tokens of gated channel j0 + i) into C[m0 + t][j0 .. j0 + 7], t < nt */
INL void glu_scatter8(const __m128i *q, int nt, int64_t m0, int64_t j0, uint8_t *C, int64_t ldc) {
    __m128i a[4], b[4];
    for (int p = 0; p < 4; p++) { /* byte pairs (2p, 2p + 1): tokens 0-7, 8-15 */
        a[p] = _mm_unpacklo_epi8(q[2 * p], q[2 * p + 1]);
        b[p] = _mm_unpackhi_epi8(q[2 * p], q[2 * p + 1]);
    }
    uint64_t d[16] __attribute__((aligned(16)));
    for (int h = 0; h < 2; h++) {
        const __m128i *x = h ? b : a; /* tokens 8h .. 8h + 7 */
        const __m128i l01 = _mm_unpacklo_epi16(x[0], x[1]), h01 = _mm_unpackhi_epi16(x[0], x[1]); /* ch 0-3 */
        const __m128i l23 = _mm_unpacklo_epi16(x[2], x[3]), h23 = _mm_unpackhi_epi16(x[2], x[3]); /* ch 4-7 */
        _mm_store_si128((__m128i *)(d + 8 * h), _mm_unpacklo_epi32(l01, l23));
        _mm_store_si128((__m128i *)(d + 8 * h + 2), _mm_unpackhi_epi32(l01, l23));
        _mm_store_si128((__m128i *)(d + 8 * h + 4), _mm_unpacklo_epi32(h01, h23));
        _mm_store_si128((__m128i *)(d + 8 * h + 6), _mm_unpackhi_epi32(h01, h23));
    }
    for (int t = 0; t < nt; t++) memcpy(C + (m0 + t) * ldc + j0, d + t, 8);
}

/* The 1x4 kernel's 8-channel tile [8][16] (raw sums): one group. */
INL void glu_tile16(const hf_epilogue *ep, const int32_t *tile, int nt, int64_t m0, int64_t n0, void *C, int64_t ldc) {
    __m512 ya[4], yg[4];
    for (int i = 0; i < 8; i++) {
        const int64_t n = n0 + i;
        __m512 s, b;
        chan1(ep, n, &s, &b);
        const __m512i zc = _mm512_set1_epi32((int32_t)((uint32_t)ep->a_zp * (uint32_t)ep->colsum[n]));
        const __m512 y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_load_si512((const void *)(tile + i * 16)), zc)), s, b);
        if (i < 4) ya[i] = y;
        else yg[i - 4] = y;
    }
    __m128i q[4];
    glu4(ep, ya, yg, n0 / 2, q);
    hf_glu_scatter4(q, nt, m0, n0 / 2, (uint8_t *)C, ldc);
}

TGT void hf_tile_store_avx512(const hf_epilogue *ep, const int32_t *tile, int nr, int nt, int64_t m0, int64_t n0,
                              void *C, int64_t ldc) {
    if (ep->glu) { /* nr == 8: N is a multiple of 8 and tiles start at multiples of 8 */
        glu_tile16(ep, tile, nt, m0, n0, C, ldc);
        return;
    }
    if (ep->f32 == HF_EPI_S32 || !ep->gelu) {
        hf_tile_store_avx2(ep, tile, nr, nt, m0, n0, C, ldc);
        return;
    }
    /* channel-major: tile row i = channel n0 + i over 16 tokens, one zmm */
    float ytile[8 * 16] __attribute__((aligned(64)));
    for (int i = 0; i < 8; i++) {
        if (i >= nr) {
            _mm512_store_ps(ytile + i * 16, _mm512_setzero_ps());
            continue;
        }
        const int64_t n = n0 + i;
        const int32_t zc = (int32_t)((uint32_t)ep->a_zp * (uint32_t)ep->colsum[n]);
        const float s = ep->a_scale * ep->w_scale[n], b = ep->bias ? ep->bias[n] : 0.f;
        const __m512i v = _mm512_sub_epi32(_mm512_load_si512((const void *)(tile + i * 16)), _mm512_set1_epi32(zc));
        const __m512 y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), _mm512_set1_ps(s), _mm512_set1_ps(b));
        _mm512_store_ps(ytile + i * 16, gelu16(y));
    }
    hf_tile_store_f32_avx2(ep, ytile, nr, nt, m0, n0, C, ldc);
}

/* Per-channel constants of 16 channels n0.. (k = valid lanes): zp * colsum, a_scale * w_scale, bias. */
typedef struct {
    __m512i zc;
    __m512 s, b;
    __m512 qm; /* HF_EPI_U8 multiplier before the quantizer (ep->q_mul; unused when NULL) */
} chan16;

INL chan16 load_chan16(const hf_epilogue *ep, int64_t n0, __mmask16 k) {
    chan16 c;
    c.zc = _mm512_mullo_epi32(_mm512_set1_epi32(ep->a_zp), _mm512_maskz_loadu_epi32(k, ep->colsum + n0));
    c.s = _mm512_mul_ps(_mm512_set1_ps(ep->a_scale), _mm512_maskz_loadu_ps(k, ep->w_scale + n0));
    c.b = ep->bias ? _mm512_maskz_loadu_ps(k, ep->bias + n0) : _mm512_setzero_ps();
    c.qm = ep->q_mul ? _mm512_maskz_loadu_ps(k, ep->q_mul + n0) : _mm512_set1_ps(1.0f);
    return c;
}

/* The epilogue of one output row's 16 channels (token-major): the same per-element expressions as the
 * reference (fma, GELU, + residual, quantizer), so everything but GELU is bit for bit. m indexes the
 * residual (global row), mc the row of C. */
INL void row16(const hf_epilogue *ep, __m512i v, const chan16 *c, int64_t m, int64_t mc, int64_t n0, __mmask16 k,
               void *C, int64_t ldc) {
    if (ep->f32 == HF_EPI_S32) {
        _mm512_mask_storeu_epi32((int32_t *)C + mc * ldc + n0, k, v);
        return;
    }
    __m512 y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(v, c->zc)), c->s, c->b);
    if (ep->gelu) y = gelu16(y);
    if (ep->residual) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(k, ep->residual + m * ep->ldr + n0));
    if (ep->f32 == HF_EPI_U8 && ep->q_mul) y = _mm512_mul_ps(y, c->qm);
    if (ep->f32 == HF_EPI_U8) _mm_mask_storeu_epi8((uint8_t *)C + mc * ldc + n0, k, hf_quant16(y, hf_epi_qscale(ep, n0), hf_epi_qzp(ep, n0)));
    else _mm512_mask_storeu_ps((float *)C + mc * ldc + n0, k, y);
}

/* n (1 or 4) consecutive rows of r through the epilogue, each step for the n rows side by side. */
INL void row_block(const __m512i *r, const chan16 *c, int64_t m0, int64_t n0, __mmask16 k, void *C,
                   int64_t ldc, const int mode, const int gelu, const int res, const int n, const int full, float qs,
                   int32_t qz, int qmul, const float *resid, int64_t ldr, const int stream) {
    if (mode == HF_EPI_S32) {
        for (int i = 0; i < n; i++) {
            int32_t *d = (int32_t *)C + (m0 + i) * ldc + n0;
            if (full && stream && !((uintptr_t)d & 63)) _mm512_stream_si512((void *)d, r[i]);
            else if (full) _mm512_storeu_si512((void *)d, r[i]);
            else _mm512_mask_storeu_epi32(d, k, r[i]);
        }
        return;
    }
    __m512 y[4];
    for (int i = 0; i < n; i++) y[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(r[i]), c->s, c->b); /* r: acc - a_zp colsum */
    if (gelu) gelu16xn(y, n);
    if (res)
        for (int i = 0; i < n; i++) {
            const float *rp = resid + (m0 + i) * ldr + n0;
            y[i] = _mm512_add_ps(y[i], full ? _mm512_loadu_ps(rp) : _mm512_maskz_loadu_ps(k, rp));
        }
    for (int i = 0; i < n; i++) {
        if (mode == HF_EPI_U8) {
            uint8_t *d = (uint8_t *)C + (m0 + i) * ldc + n0;
            const __m128i q = hf_quant16(qmul ? _mm512_mul_ps(y[i], c->qm) : y[i], qs, qz);
            if (full) _mm_storeu_si128((__m128i *)d, q);
            else _mm_mask_storeu_epi8(d, k, q);
        } else {
            float *d = (float *)C + (m0 + i) * ldc + n0;
            if (full) _mm512_storeu_ps(d, y[i]);
            else _mm512_mask_storeu_ps(d, k, y[i]);
        }
    }
}

/* nt rows of r[] (token-major int32, 16 channels each) through the epilogue, with the mode as
 * compile-time constants (hoisted out of the token loop; ep's fields are read once, not after every
 * store through C, which the compiler must assume may alias them). */
INL void rows16_mode(const hf_epilogue *ep, const __m512i *r, int cnt, const chan16 *c, int64_t m0, int64_t n0,
                     __mmask16 k, void *C, int64_t ldc, const int mode, const int gelu, const int res) {
    const int full = k == 0xFFFF;
    const float *resid = ep->residual;
    const int64_t ldr = ep->ldr;
    const float qs = hf_epi_qscale(ep, n0);
    const int32_t qz = hf_epi_qzp(ep, n0);
    const int qmul = ep->q_mul != NULL; /* loop-invariant: the unsmoothed path runs as before */
    const int stream = mode == HF_EPI_S32 && ep->stream;
    /* GELU: rows in lockstep blocks of 4, each step for the 4 rows side by side. One row's chain (GELU + quantizer)
     * is ~75 cycles of latency, too long for the out-of-order window to overlap rows written one after the other
     * (GELU + u8 epilogue of ffn_in, 128 x 3072, C harness: 4.4-4.5 -> 3.8-3.9 ns per 16 outputs). Without GELU the
     * chains are short and the plain loop is faster (fp32 + residual: 1.9 ns against 2.2 in lockstep). */
    int t = 0;
    if (gelu)
        for (; t + 4 <= cnt; t += 4) row_block(r + t, c, m0 + t, n0, k, C, ldc, mode, gelu, res, 4, full, qs, qz, qmul, resid, ldr, stream);
#pragma GCC unroll 4
    for (; t < cnt; t++) row_block(r + t, c, m0 + t, n0, k, C, ldc, mode, gelu, res, 1, full, qs, qz, qmul, resid, ldr, stream);
}

INL void rows16(const hf_epilogue *ep, const __m512i *r, int cnt, const chan16 *c, int64_t m0, int64_t n0,
                __mmask16 k, void *C, int64_t ldc) {
    const int res = ep->residual != NULL;
    switch (ep->f32) {
    case HF_EPI_S32: rows16_mode(ep, r, cnt, c, m0, n0, k, C, ldc, HF_EPI_S32, 0, 0); break;
    case HF_EPI_U8:
        if (ep->gelu) res ? rows16_mode(ep, r, cnt, c, m0, n0, k, C, ldc, HF_EPI_U8, 1, 1)
                          : rows16_mode(ep, r, cnt, c, m0, n0, k, C, ldc, HF_EPI_U8, 1, 0);
        else res ? rows16_mode(ep, r, cnt, c, m0, n0, k, C, ldc, HF_EPI_U8, 0, 1)
                 : rows16_mode(ep, r, cnt, c, m0, n0, k, C, ldc, HF_EPI_U8, 0, 0);
        break;
    default:
        if (ep->gelu) res ? rows16_mode(ep, r, cnt, c, m0, n0, k, C, ldc, HF_EPI_F32, 1, 1)
                          : rows16_mode(ep, r, cnt, c, m0, n0, k, C, ldc, HF_EPI_F32, 1, 0);
        else res ? rows16_mode(ep, r, cnt, c, m0, n0, k, C, ldc, HF_EPI_F32, 0, 1)
                 : rows16_mode(ep, r, cnt, c, m0, n0, k, C, ldc, HF_EPI_F32, 0, 0);
    }
}

/* The 4x1 kernel's strip [16][ldt] (sums less a_zp colsum): nr / 8 groups, 16 tokens at a time. */
INL void glu_strip(const hf_epilogue *ep, const int32_t *tile, int64_t ldt, int nr, int nt, int64_t m0, int64_t n0,
                   void *C, int64_t ldc) {
    const int G = nr / 8; /* 2, or 1 for the last strip when F % 8 == 4 */
    __m512 s[16], b[16];
    for (int i = 0; i < 8 * G; i++) chan1(ep, n0 + i, &s[i], &b[i]);
    for (int t0 = 0; t0 < nt; t0 += 16) {
        __m128i q[8];
        for (int g = 0; g < G; g++) {
            __m512 ya[4], yg[4];
            for (int i = 0; i < 4; i++) {
                const int ca = 8 * g + i, cg = ca + 4;
                ya[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512((const void *)(tile + ca * ldt + t0))), s[ca], b[ca]);
                yg[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512((const void *)(tile + cg * ldt + t0))), s[cg], b[cg]);
            }
            glu4(ep, ya, yg, n0 / 2 + 4 * g, q + 4 * g);
        }
        const int cnt = nt - t0 < 16 ? nt - t0 : 16;
        if (G == 2) glu_scatter8(q, cnt, m0 + t0, n0 / 2, (uint8_t *)C, ldc);
        else hf_glu_scatter4(q, cnt, m0 + t0, n0 / 2, (uint8_t *)C, ldc);
    }
}

TGT void hf_strip_store_avx512(const hf_epilogue *ep, const int32_t *tile, int64_t ldt, int nr, int nt, int64_t m0,
                               int64_t n0, void *C, int64_t ldc) {
    if (ep->glu) {
        glu_strip(ep, tile, ldt, nr, nt, m0, n0, C, ldc);
        return;
    }
    const __mmask16 k = (__mmask16)(nr >= 16 ? 0xFFFFu : (1u << nr) - 1u);
    chan16 c;
    if (ep->f32) c = load_chan16(ep, n0, k);
    else memset(&c, 0, sizeof c);
    for (int j = 0; j * 16 < nt; j++) {
        __m512i r[16];
        for (int i = 0; i < 16; i++) r[i] = _mm512_load_si512((const void *)(tile + i * ldt + j * 16));
        hf_transpose16_epi32(r);
        rows16(ep, r, nt - j * 16 < 16 ? nt - j * 16 : 16, &c, m0 + j * 16, n0, k, C, ldc);
    }
}

/* One channel (4 zmm of 16 tokens) at a time, straight from the channel-major tile: the scale/bias/GELU/quantizer
 * expressions of row_block, so the bytes equal hf_strip_store_avx512's, only placed as the 4x1 VNNI kernel packs its
 * activations (pack64: position 16 a + 4 b + i of a row holds token 16 b + 4 a + i), i.e. a 4 x 4 dword transpose of
 * the 4 quantized xmm. ffn_in's epilogue (GELU + uint8 + multiplier), 128 x 3072, C harness: 3.33 ns per 16 outputs
 * against 3.92 for the transposing store, and ffn_out packs nothing. Tokens past nt are written as 0: never read into
 * a valid output, but the buffer then holds no stale bytes. */
TGT void hf_strip_store_packed_avx512(const hf_epilogue *ep, const int32_t *tile, int64_t ldt, int nr, int nt, int64_t n0,
                                      uint8_t *X) {
    const __m512i perm = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const float qs = hf_epi_qscale(ep, n0);
    const int32_t qz = hf_epi_qzp(ep, n0);
    /* bytes of tokens past nt are zeroed, as pack64 zero-pads a partial tile */
    const __mmask64 valid = nt >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << nt) - 1);
    if (ep->glu) { /* gated channel n0 / 2 + 4 g + i from channels n0 + 8 g + i (input) and + 4 (gate) */
        for (int g = 0; g < nr / 8; g++)
            for (int i = 0; i < 4; i++) {
                const int64_t na = n0 + 8 * g + i, j = n0 / 2 + 4 * g + i;
                __m512 sa, ba, sg, bg, ya[4], yg[4];
                chan1(ep, na, &sa, &ba);
                chan1(ep, na + 4, &sg, &bg);
                for (int t = 0; t < 4; t++) {
                    ya[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512((const void *)(tile + (na - n0) * ldt + 16 * t))), sa, ba);
                    yg[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512((const void *)(tile + (na + 4 - n0) * ldt + 16 * t))), sg, bg);
                }
                gelu16xn(ya, 4);
                const __m512 qm = _mm512_set1_ps(ep->q_mul ? ep->q_mul[j] : 1.f);
                __m128i qb[4];
                for (int t = 0; t < 4; t++) {
                    __m512 v = _mm512_mul_ps(ya[t], yg[t]);
                    if (ep->q_mul) v = _mm512_mul_ps(v, qm);
                    qb[t] = hf_quant16(v, qs, qz);
                }
                __m512i row = _mm512_zextsi128_si512(qb[0]); /* immediate lane indices: -O2 does not unroll */
                row = _mm512_inserti32x4(row, qb[1], 1);
                row = _mm512_inserti32x4(row, qb[2], 2);
                row = _mm512_inserti32x4(row, qb[3], 3);
                row = _mm512_maskz_mov_epi8(valid, row);
                _mm512_store_si512((void *)(X + j * 64), _mm512_permutexvar_epi32(perm, row));
            }
        return;
    }
    for (int i = 0; i < nr; i++) {
        const int64_t n = n0 + i;
        const __m512 s = _mm512_mul_ps(_mm512_set1_ps(ep->a_scale), _mm512_set1_ps(ep->w_scale[n]));
        const __m512 b = _mm512_set1_ps(ep->bias ? ep->bias[n] : 0.f);
        __m512 y[4];
        for (int j = 0; j < 4; j++) /* the tile holds acc - a_zp colsum */
            y[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512((const void *)(tile + i * ldt + 16 * j))), s, b);
        if (ep->gelu) gelu16xn(y, 4);
        if (ep->q_mul) {
            const __m512 qm = _mm512_set1_ps(ep->q_mul[n]);
            for (int j = 0; j < 4; j++) y[j] = _mm512_mul_ps(y[j], qm);
        }
        __m512i row = _mm512_zextsi128_si512(hf_quant16(y[0], qs, qz));
        row = _mm512_inserti32x4(row, hf_quant16(y[1], qs, qz), 1);
        row = _mm512_inserti32x4(row, hf_quant16(y[2], qs, qz), 2);
        row = _mm512_inserti32x4(row, hf_quant16(y[3], qs, qz), 3);
        row = _mm512_maskz_mov_epi8(valid, row);
        _mm512_store_si512((void *)(X + n * 64), _mm512_permutexvar_epi32(perm, row));
    }
}

TGT void hf_epilogue_rows_avx512(const hf_epilogue *ep, int64_t m0, int64_t M, int64_t N, const int32_t *acc,
                                 int64_t lda, void *C, int64_t ldc) {
    if (ep->f32 == HF_EPI_S32) {
        hf_epilogue_rows_avx2(ep, m0, M, N, acc, lda, C, ldc);
        return;
    }
    if (ep->glu) { /* 32 channels (4 groups) -> 16 gated outputs per step */
        const __m512i ia = _mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
        const __m512i ig = _mm512_add_epi32(ia, _mm512_set1_epi32(4));
        for (int64_t n0 = 0; n0 < N; n0 += 32) {
            const int64_t left = N - n0;
            const __mmask16 k0 = hf_tail16(left), k1 = hf_tail16(left - 16), ko = hf_tail16(left / 2);
            const chan16 c0 = load_chan16(ep, n0, k0), c1 = load_chan16(ep, n0 + 16, k1);
            const __m512 qm = ep->q_mul ? _mm512_maskz_loadu_ps(ko, ep->q_mul + n0 / 2) : _mm512_set1_ps(1.f);
            for (int64_t m = 0; m < M; m++) {
                const int32_t *a = acc + m * lda + n0;
                const __m512 y0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_maskz_loadu_epi32(k0, a), c0.zc)), c0.s, c0.b);
                const __m512 y1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_maskz_loadu_epi32(k1, a + 16), c1.zc)), c1.s, c1.b);
                __m512 v = _mm512_mul_ps(gelu16(_mm512_permutex2var_ps(y0, ia, y1)), _mm512_permutex2var_ps(y0, ig, y1));
                if (ep->q_mul) v = _mm512_mul_ps(v, qm);
                _mm_mask_storeu_epi8((uint8_t *)C + m * ldc + n0 / 2, ko, hf_quant16(v, ep->q_scale, ep->q_zp));
            }
        }
        return;
    }
    for (int64_t n0 = 0; n0 < N; n0 += 16) {
        const int nr = N - n0 < 16 ? (int)(N - n0) : 16;
        const __mmask16 k = (__mmask16)(nr == 16 ? 0xFFFFu : (1u << nr) - 1u);
        const chan16 c = load_chan16(ep, n0, k);
        for (int64_t m = 0; m < M; m++)
            row16(ep, _mm512_maskz_loadu_epi32(k, acc + m * lda + n0), &c, m0 + m, m, n0, k, C, ldc);
    }
}

TGT void hf_gelu_avx512(int64_t n, const float *x, float *y) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, gelu16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(y + i, k, gelu16(_mm512_maskz_loadu_ps(k, x + i)));
    }
}

/* The activation quantizer on 16 lanes (the division is as cheap as a multiply-and-check on Zen 5). */
TGT void hf_quantize_avx512(int64_t n, const float *x, float scale, int32_t zp, uint8_t *y) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm_storeu_si128((__m128i *)(y + i), hf_quant16(_mm512_loadu_ps(x + i), scale, zp));
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        _mm_mask_storeu_epi8(y + i, k, hf_quant16(_mm512_maskz_loadu_ps(k, x + i), scale, zp));
    }
}

TGT void hf_quantize_mul_avx512(int64_t n, const float *x, const float *mul, float scale, int32_t zp, uint8_t *y) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm_storeu_si128((__m128i *)(y + i), hf_quant16(_mm512_mul_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(mul + i)),
                                                     scale, zp));
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), _mm512_maskz_loadu_ps(k, mul + i));
        _mm_mask_storeu_epi8(y + i, k, hf_quant16(v, scale, zp));
    }
}
