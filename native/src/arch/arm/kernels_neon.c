/* aarch64 baseline (ARMv8-A Advanced SIMD, no dot product): the dot of 4 bytes by widening multiplies
 * (|u8 * s8| <= 32640 fits int16) and pairwise adds; for cores such as Cortex-A72 (Graviton1). */
#include <arm_neon.h>

static inline int32x4_t hf_dot16_neon(int32x4_t acc, uint8x16_t a, int8x16_t w) {
    const int16x8_t p0 = vmulq_s16(vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(a))), vmovl_s8(vget_low_s8(w)));
    const int16x8_t p1 = vmulq_s16(vreinterpretq_s16_u16(vmovl_high_u8(a)), vmovl_high_s8(w));
    return vaddq_s32(acc, vpaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1)));
}

#define LVL neon
#define ARM_XOR 0
#define DOT_AFULL(acc, a, w, lane) \
    hf_dot16_neon(acc, a, vreinterpretq_s8_s32(vdupq_laneq_s32(vreinterpretq_s32_s8(w), lane)))
#define DOT_WFULL(acc, w, a, lane) \
    hf_dot16_neon(acc, vreinterpretq_u8_u32(vdupq_laneq_u32(vreinterpretq_u32_u8(a), lane)), w)
#include "gemm_arm.h"
