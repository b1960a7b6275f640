/* aarch64 CPU feature detection: the kernel's HWCAP bits (getauxval), which also say the OS supports them. */
#include <sys/auxv.h>

#include "arm.h"

/* <asm/hwcap.h> values, for older headers */
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#ifndef HWCAP_SVE
#define HWCAP_SVE (1 << 22)
#endif
#ifndef HWCAP2_SVE2
#define HWCAP2_SVE2 (1 << 1)
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1 << 13)
#endif
#ifndef HWCAP2_BF16
#define HWCAP2_BF16 (1 << 14)
#endif

int hf_arm_features(void) {
    const unsigned long h = getauxval(AT_HWCAP), h2 = getauxval(AT_HWCAP2);
    int f = 0;
    if (h & HWCAP_ASIMD) f |= HF_ARM_ASIMD;
    if (h & HWCAP_ASIMDDP) f |= HF_ARM_DOTPROD;
    if (h & HWCAP_SVE) f |= HF_ARM_SVE;
    if (h2 & HWCAP2_SVE2) f |= HF_ARM_SVE2;
    if (h2 & HWCAP2_I8MM) f |= HF_ARM_I8MM;
    if (h2 & HWCAP2_BF16) f |= HF_ARM_BF16;
    return f;
}

void hf_arch_detect(int supported[HF_ISA_COUNT]) {
    const int f = hf_arm_features();
    supported[HF_ISA_NEON] = (f & HF_ARM_ASIMD) != 0;
    supported[HF_ISA_DOTPROD] = supported[HF_ISA_NEON] && (f & HF_ARM_DOTPROD);
    /* the i8mm kernels also use SDOT-free USDOT / SUDOT only, but every i8mm core has dot product */
    supported[HF_ISA_I8MM] = supported[HF_ISA_DOTPROD] && (f & HF_ARM_I8MM);
}
