/* aarch64 with i8mm (ARMv8.6-A: Neoverse V1 / Graviton3, N2, V2): u8 x s8 natively, so no shift and no correction.
 * Sparse: USDOT by element (u8 activations, s8 weight lane). Dense: USMMLA, a 2x8 by 8x2 matrix multiply per
 * instruction (twice the MACs of a dot), on its own packed layout (arm.h: hf_arm_mmla_*). */
#pragma GCC target("arch=armv8.2-a+dotprod+i8mm")
#include <arm_neon.h>

#define LVL i8mm
#define ARM_XOR 0
#define DOT_AFULL(acc, a, w, lane) vusdotq_laneq_s32(acc, a, w, lane)
#define ARM_NO_DOT_DENSE
#include "gemm_arm.h"

/* dense: 8 tokens (4 pairs) x 8 channels (4 pairs) per step, 16 USMMLA accumulators of 2 tokens x 2 channels */
int hf_dense_gemm_i8mm(const struct hf_dense_w *w, int64_t M, const uint8_t *A, int64_t lda, int32_t *C, int64_t ldc) {
    const int64_t N = w->N, K = w->K, KB = (K + 7) / 8, NT = (N + 7) / 8, rs = KB * 8;
    const int8_t *Wp = (const int8_t *)w->data;
    uint8_t *buf = (uint8_t *)hf_scratch(HF_SCRATCH_DENSE_A, (size_t)(8 * rs));
    if (!buf) return hf_fail(HF_ENOMEM, "dense_gemm(i8mm): out of memory");
    for (int64_t m0 = 0; m0 < M; m0 += 8) {
        const int mt = M - m0 < 8 ? (int)(M - m0) : 8;
        memset(buf, 0, (size_t)(8 * rs));
        for (int t = 0; t < mt; t++) memcpy(buf + t * rs, A + (m0 + t) * lda, (size_t)K);
        for (int64_t nt = 0; nt < NT; nt++) {
            const int8_t *wp = Wp + nt * KB * 64;
            int32x4_t acc[4][4];
            for (int q = 0; q < 4; q++)
                for (int p = 0; p < 4; p++) acc[q][p] = vdupq_n_s32(0);
            for (int64_t kb = 0; kb < KB; kb++, wp += 64) {
                const int8x16_t w0 = vld1q_s8(wp), w1 = vld1q_s8(wp + 16), w2 = vld1q_s8(wp + 32),
                                w3 = vld1q_s8(wp + 48);
                for (int q = 0; q < 4; q++) {
                    const uint8x16_t a =
                        vcombine_u8(vld1_u8(buf + 2 * q * rs + kb * 8), vld1_u8(buf + (2 * q + 1) * rs + kb * 8));
                    acc[q][0] = vusmmlaq_s32(acc[q][0], a, w0);
                    acc[q][1] = vusmmlaq_s32(acc[q][1], a, w1);
                    acc[q][2] = vusmmlaq_s32(acc[q][2], a, w2);
                    acc[q][3] = vusmmlaq_s32(acc[q][3], a, w3);
                }
            }
            /* acc[q][p] = [t2q n2p, t2q n2p+1, t2q+1 n2p, t2q+1 n2p+1] */
            const int64_t n0 = nt * 8;
            for (int t = 0; t < mt; t++) {
                const int q = t / 2;
                int32x4_t lo, hi;
                if (t % 2 == 0) {
                    lo = vcombine_s32(vget_low_s32(acc[q][0]), vget_low_s32(acc[q][1]));
                    hi = vcombine_s32(vget_low_s32(acc[q][2]), vget_low_s32(acc[q][3]));
                } else {
                    lo = vcombine_s32(vget_high_s32(acc[q][0]), vget_high_s32(acc[q][1]));
                    hi = vcombine_s32(vget_high_s32(acc[q][2]), vget_high_s32(acc[q][3]));
                }
                int32_t *c = C + (m0 + t) * ldc + n0;
                if (n0 + 8 <= N) {
                    vst1q_s32(c, lo);
                    vst1q_s32(c + 4, hi);
                } else {
                    int32_t tmp[8];
                    vst1q_s32(tmp, lo);
                    vst1q_s32(tmp + 4, hi);
                    for (int64_t n = 0; n0 + n < N; n++) c[n] = tmp[n];
                }
            }
        }
    }
    return HF_OK;
}
