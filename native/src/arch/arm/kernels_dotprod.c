/* aarch64 with the dot product extension (ARMv8.2-A+dotprod: Neoverse N1 / Graviton2 and later): SDOT by element on
 * activations shifted to s8 (a ^ 0x80), the 128 * row sum added back. */
#pragma GCC target("arch=armv8.2-a+dotprod")
#include <arm_neon.h>

#define LVL dotprod
#define ARM_XOR 0x80
#define DOT_AFULL(acc, a, w, lane) vdotq_laneq_s32(acc, vreinterpretq_s8_u8(a), w, lane)
#define DOT_WFULL(acc, w, a, lane) vdotq_laneq_s32(acc, w, vreinterpretq_s8_u8(a), lane)
#include "gemm_arm.h"
