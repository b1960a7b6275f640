/* The AVX-512 GEMM epilogues alone, in C (no GEMM, no Python): the strip stores of the 4x1 VNNI kernel on one
 * [16 channels][64 tokens] int32 tile, over 128 tokens x N channels, best of 200 repeats; and the standalone GELU.
 * The "C harness" figures of benchmarks/RESULTS.md (sessions 6-7) come from this procedure.
 *
 *   mkdir -p build && gcc -O3 -std=gnu11 -fno-strict-aliasing -Inative/include -Inative/src \
 *       benchmarks/epilogue_harness.c $(find native/src -name '*.c') -lm -lpthread -o build/epilogue_harness
 *   build/epilogue_harness gelu_u8      # ffn_in: GELU + uint8 + SmoothQuant multiplier, row-major (transposing) store
 *   build/epilogue_harness gelu_packed  # the same into ffn_out's packed activations (hf_linear_chain's store)
 *   build/epilogue_harness f32_res      # attn_out / ffn_out: fp32 + residual, 768 channels
 *   build/epilogue_harness u8           # qkv-like: uint8 without GELU, 2304 channels
 *   build/epilogue_harness gelu         # hf_gelu_avx512 on 4096 floats
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int gelu_only(void) {
    static float x[4096] __attribute__((aligned(64))), y[4096] __attribute__((aligned(64)));
    for (int i = 0; i < 4096; i++) x[i] = (i % 1200) * 0.01f - 6.f;
    double best = 1e9;
    for (int r = 0; r < 2000; r++) {
        const double t = now();
        hf_gelu_avx512(4096, x, y);
        const double dt = now() - t;
        if (dt < best) best = dt;
    }
    printf("gelu: %.2f ns per 16 (check %g)\n", best * 1e9 / 256, (double)y[100]);
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "gelu_u8";
    if (!strcmp(mode, "gelu")) return gelu_only();
    const int M = 128, NMAX = 3072;
    int32_t *colsum = malloc(4 * NMAX);
    float *ws = malloc(4 * NMAX), *b = malloc(4 * NMAX), *qm = malloc(4 * NMAX);
    for (int n = 0; n < NMAX; n++) {
        colsum[n] = (n * 37) % 1000 - 500;
        ws[n] = 0.001f + n * 1e-7f;
        b[n] = (n % 13) * 0.1f - 0.6f;
        qm[n] = 0.8f + (n % 7) * 0.05f;
    }
    int32_t *tile = aligned_alloc(64, 4 * 16 * 64);
    for (int i = 0; i < 16 * 64; i++) tile[i] = (int32_t)((i * 7919) % 20000) - 10000;
    uint8_t *C8 = aligned_alloc(64, (size_t)M * NMAX);
    float *R = aligned_alloc(64, 4 * (size_t)M * 768), *Cf = aligned_alloc(64, 4 * (size_t)M * 768);
    for (int i = 0; i < M * 768; i++) R[i] = (i % 100) * 0.01f;
    hf_epilogue ep;
    memset(&ep, 0, sizeof ep);
    ep.f32 = HF_EPI_U8, ep.gelu = 1, ep.a_zp = 3, ep.a_scale = 0.5f, ep.colsum = colsum, ep.w_scale = ws, ep.bias = b;
    ep.q_scale = 0.03f, ep.q_zp = 20, ep.q_mul = qm;
    int N = NMAX;
    void *out = C8;
    int64_t ldc = NMAX;
    if (!strcmp(mode, "gelu_packed")) {
        ep.pack_ld = (int64_t)NMAX * 64;
    } else if (!strcmp(mode, "u8")) {
        ep.gelu = 0, ep.q_mul = NULL, N = 2304;
    } else if (!strcmp(mode, "f32_res")) {
        ep.f32 = HF_EPI_F32, ep.gelu = 0, ep.residual = R, ep.ldr = 768, ep.q_mul = NULL, N = 768, out = Cf, ldc = 768;
    } else if (strcmp(mode, "gelu_u8")) {
        fprintf(stderr, "unknown mode %s (gelu_u8, gelu_packed, f32_res, u8, gelu)\n", mode);
        return 2;
    }
    double best = 1e9;
    for (int rep = 0; rep < 200; rep++) {
        const double t = now();
        for (int n0 = 0; n0 < N; n0 += 16)
            for (int m0 = 0; m0 < M; m0 += 64) {
                if (ep.pack_ld) hf_strip_store_packed_avx512(&ep, tile, 64, 16, 64, n0, C8 + (m0 / 64) * ep.pack_ld);
                else hf_strip_store_avx512(&ep, tile, 64, 16, 64, m0, n0, out, ldc);
            }
        const double dt = now() - t;
        if (dt < best) best = dt;
    }
    printf("%s: %.1f us per %d x %d, %.2f ns per 16 outputs\n", mode, best * 1e6, M, N, best * 1e9 / (M * N / 16.0));
    return 0;
}
