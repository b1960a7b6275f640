/* x86 CPU feature detection: cpuid for the instructions, xgetbv for the OS saving the vector registers. */
#include <cpuid.h>

#include "x86.h"

static unsigned long long xgetbv0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

void hf_arch_detect(int supported[HF_ISA_COUNT]) {
    unsigned int a, b, c, d;
    int osxsave = 0, avx2 = 0, fma = 0, avx512 = 0;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        osxsave = (c >> 27) & 1;
        fma = (c >> 12) & 1;
    }
    if (osxsave && __get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        unsigned long long xcr0 = xgetbv0();
        int ymm_os = (xcr0 & 0x6) == 0x6;
        int zmm_os = (xcr0 & 0xe6) == 0xe6;
        avx2 = ymm_os && ((b >> 5) & 1) && fma;
        /* AVX512F (b16), AVX512BW (b30), AVX512VL (b31), AVX512_VNNI (c11) */
        avx512 = zmm_os && ((b >> 16) & 1) && ((b >> 30) & 1) && ((b >> 31) & 1) && ((c >> 11) & 1);
    }
    supported[HF_ISA_AVX2] = avx2;
    supported[HF_ISA_AVX512VNNI] = avx512;
}

/* AVX512_BF16 (CPUID leaf 7 subleaf 1, EAX bit 5) on a CPU whose AVX-512 state the OS saves: the bf16 attention
 * kernel (attention_bf16_avx512.c); without it the engine runs the fp32 attention. */
int hf_x86_has_avx512bf16(void) {
    static int cached = -1;
    if (cached < 0) {
        unsigned int a, b, c, d;
        int ok = 0;
        if (__get_cpuid(1, &a, &b, &c, &d) && ((c >> 27) & 1) && (xgetbv0() & 0xe6) == 0xe6 &&
            __get_cpuid_count(7, 0, &a, &b, &c, &d) && ((b >> 16) & 1) && ((b >> 30) & 1) && a >= 1 &&
            __get_cpuid_count(7, 1, &a, &b, &c, &d))
            ok = (a >> 5) & 1;
        cached = ok;
    }
    return cached;
}
