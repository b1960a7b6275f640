/* The int8 dot-product peak of one core: a vpdpbusd zmm throughput loop (12 independent accumulators, no loads), so
 * benchmarks can state a GEMM's fraction of it from the same process (hf_int8_peak_probe). One asm block per
 * iteration keeps the accumulators in registers: with an array of them GCC stored each one back every step and the
 * loop ran at half rate. */
#include <immintrin.h>

#include "x86.h"

#define TGT __attribute__((target("avx512f,avx512vnni")))

TGT int64_t hf_int8_peak_avx512vnni(int64_t iters) {
    __m512i x = _mm512_set1_epi32(0x01010101), w = _mm512_set1_epi32(0x01010101);
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0,
            a9 = a0, a10 = a0, a11 = a0;
    for (int64_t it = 0; it < iters; it++)
        __asm__ volatile("vpdpbusd %12, %13, %0\n\tvpdpbusd %12, %13, %1\n\tvpdpbusd %12, %13, %2\n\t"
                         "vpdpbusd %12, %13, %3\n\tvpdpbusd %12, %13, %4\n\tvpdpbusd %12, %13, %5\n\t"
                         "vpdpbusd %12, %13, %6\n\tvpdpbusd %12, %13, %7\n\tvpdpbusd %12, %13, %8\n\t"
                         "vpdpbusd %12, %13, %9\n\tvpdpbusd %12, %13, %10\n\tvpdpbusd %12, %13, %11"
                         : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7), "+v"(a8),
                           "+v"(a9), "+v"(a10), "+v"(a11)
                         : "v"(x), "v"(w));
    /* every lane of every accumulator gained 4 per instruction: the sum checks that the loop ran */
    a0 = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)),
                          _mm512_add_epi32(_mm512_add_epi32(a4, a5), _mm512_add_epi32(a6, a7)));
    a0 = _mm512_add_epi32(a0, _mm512_add_epi32(_mm512_add_epi32(a8, a9), _mm512_add_epi32(a10, a11)));
    const int64_t lane = (int64_t)(uint32_t)_mm_cvtsi128_si32(_mm512_castsi512_si128(a0));
    return lane == (int64_t)(uint32_t)(iters * 48) ? iters * 12 * 64 : -1;
}
