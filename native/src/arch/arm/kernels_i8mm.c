/* aarch64 with i8mm (ARMv8.6-A: Neoverse V1 / Graviton3, N2, V2): the mixed-sign dots USDOT (u8 activations, s8
 * weight lane) and SUDOT (s8 weights, u8 activation lane), so no shift and no correction. */
#pragma GCC target("arch=armv8.2-a+dotprod+i8mm")
#include <arm_neon.h>

#define LVL i8mm
#define ARM_XOR 0
#define DOT_AFULL(acc, a, w, lane) vusdotq_laneq_s32(acc, a, w, lane)
#define DOT_WFULL(acc, w, a, lane) vsudotq_laneq_s32(acc, w, a, lane)
#include "gemm_arm.h"
