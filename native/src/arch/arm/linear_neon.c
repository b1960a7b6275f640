/* aarch64 fused Linear epilogue, GELU and u8 quantizer (baseline Advanced SIMD, every level): the reference's expressions
 * four channels at a time, so the results are the reference's bit for bit: one fused multiply-add (vfmaq) where it
 * uses fmaf, x / scale by a true division, vrndnq (round half to even, nearbyintf in the default mode), vmaxnmq
 * (NaN -> 0, as `!(r >= 0)`). GELU (hf_gelu4) differs from the reference by its exp only (~1 ulp): an output
 * with GELU is within the GELU tolerance, and its u8 quantization may move by 1 where y sits on a rounding tie. */
#include <arm_neon.h>

#include "arm.h"
#include "vecmath_neon.h"

static inline uint32x4_t quant4(float32x4_t y, float32x4_t scale, float32x4_t zp) {
    float32x4_t r = vaddq_f32(vrndnq_f32(vdivq_f32(y, scale)), zp);
    r = vminq_f32(vmaxnmq_f32(r, vdupq_n_f32(0.f)), vdupq_n_f32(255.f));
    return vcvtq_u32_f32(r);
}

static inline void store_u8x4(uint8_t *d, uint32x4_t q) {
    d[0] = (uint8_t)vgetq_lane_u32(q, 0);
    d[1] = (uint8_t)vgetq_lane_u32(q, 1);
    d[2] = (uint8_t)vgetq_lane_u32(q, 2);
    d[3] = (uint8_t)vgetq_lane_u32(q, 3);
}

void hf_quantize_neon(int64_t n, const float *x, float scale, int32_t zp, uint8_t *y) {
    const float32x4_t s = vdupq_n_f32(scale), z = vdupq_n_f32((float)zp);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const uint16x8_t lo = vcombine_u16(vmovn_u32(quant4(vld1q_f32(x + i), s, z)),
                                           vmovn_u32(quant4(vld1q_f32(x + i + 4), s, z)));
        const uint16x8_t hi = vcombine_u16(vmovn_u32(quant4(vld1q_f32(x + i + 8), s, z)),
                                           vmovn_u32(quant4(vld1q_f32(x + i + 12), s, z)));
        vst1q_u8(y + i, vcombine_u8(vmovn_u16(lo), vmovn_u16(hi)));
    }
    for (; i < n; i++) y[i] = hf_quantize_ref1(x[i], scale, zp);
}

void hf_quantize_mul_neon(int64_t n, const float *x, const float *mul, float scale, int32_t zp, uint8_t *y) {
    const float32x4_t s = vdupq_n_f32(scale), z = vdupq_n_f32((float)zp);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) store_u8x4(y + i, quant4(vmulq_f32(vld1q_f32(x + i), vld1q_f32(mul + i)), s, z));
    for (; i < n; i++) y[i] = hf_quantize_ref1(x[i] * mul[i], scale, zp);
}

/* The epilogue of 4 channels n..n+3 of one token: acc the raw sums, res that token's residual at channel n (or NULL),
 * d the output at (token, n) in C's element type. */
static inline void epi4(const hf_epilogue *ep, int32x4_t acc, const float *res, int64_t n, void *d) {
    if (ep->f32 == HF_EPI_S32) {
        vst1q_s32((int32_t *)d, acc);
        return;
    }
    const int32x4_t v = vsubq_s32(acc, vmulq_s32(vdupq_n_s32(ep->a_zp), vld1q_s32(ep->colsum + n)));
    const float32x4_t s = vmulq_n_f32(vld1q_f32(ep->w_scale + n), ep->a_scale);
    float32x4_t y = vfmaq_f32(ep->bias ? vld1q_f32(ep->bias + n) : vdupq_n_f32(0.f), vcvtq_f32_s32(v), s);
    if (ep->gelu) y = hf_gelu4(y);
    if (res) y = vaddq_f32(y, vld1q_f32(res));
    if (ep->f32 == HF_EPI_F32) {
        vst1q_f32((float *)d, y);
    } else {
        if (ep->q_mul) y = vmulq_f32(y, vld1q_f32(ep->q_mul + n));
        /* a 4-channel group never straddles two q_seg segments (q_seg is a multiple of 16) */
        store_u8x4((uint8_t *)d, quant4(y, vdupq_n_f32(hf_epi_qscale(ep, n)), vdupq_n_f32((float)hf_epi_qzp(ep, n))));
    }
}

static inline void *elem(const hf_epilogue *ep, void *C, int64_t i) {
    return ep->f32 == HF_EPI_U8 ? (void *)((uint8_t *)C + i) : (void *)((int32_t *)C + i); /* int32 / float: 4 bytes */
}

void hf_epilogue_rows_neon(const hf_epilogue *ep, int64_t m0, int64_t M, int64_t N, const int32_t *acc, int64_t lda,
                           void *C, int64_t ldc) {
    hf_epilogue e2 = *ep; /* residual rows are global (m0 + m), C rows local */
    if (ep->residual) e2.residual = ep->residual + m0 * ep->ldr;
    for (int64_t m = 0; m < M; m++) {
        const int32_t *a = acc + m * lda;
        int64_t n = 0;
        for (; n + 4 <= N; n += 4)
            epi4(ep, vld1q_s32(a + n), e2.residual ? e2.residual + m * ep->ldr + n : NULL, n, elem(ep, C, m * ldc + n));
        for (; n < N; n++) hf_epi_store_ref1(&e2, a[n], m, n, C, ldc);
    }
}

void hf_arm_epi_tile(const hf_epilogue *ep, const int32_t *tile, int nt, int64_t m0, int64_t n0, int nc, void *C,
                     int64_t ldc) {
    for (int t = 0; t < nt; t++) {
        const int64_t m = m0 + t;
        if (nc == 4)
            epi4(ep, vld1q_s32(tile + 4 * t), ep->residual ? ep->residual + m * ep->ldr + n0 : NULL, n0,
                 elem(ep, C, m * ldc + n0));
        else
            for (int c = 0; c < nc; c++) hf_epi_store_ref1(ep, tile[4 * t + c], m, n0 + c, C, ldc);
    }
}

void hf_gelu_neon(int64_t n, const float *x, float *y) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, hf_gelu4(vld1q_f32(x + i)));
    if (i < n) { /* the tail through the same vector code */
        float t[4] = {0.f, 0.f, 0.f, 0.f};
        for (int64_t j = i; j < n; j++) t[j - i] = x[j];
        vst1q_f32(t, hf_gelu4(vld1q_f32(t)));
        for (int64_t j = i; j < n; j++) y[j] = t[j - i];
    }
}
