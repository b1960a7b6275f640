/* The inner loops of the AVX-512 VNNI sparse kernels alone, in C (no packing, no epilogue, no Python): what bounds
 * each record format on this core. One 64-token activation tile in L1/L2, N x K weights at 80% in random blocks, every
 * group / row of the weight per pass, best of 7 passes, thread CPU time. Peak = a vpdpbusd zmm loop with 12 independent
 * accumulators, in the same process.
 *
 *   gcc -O2 -std=gnu11 benchmarks/record_loop_harness.c -o build/record_loop_harness
 *   build/record_loop_harness [K] [N]          (default 768 768)
 *
 * Modes, each a copy of its kernel's loop in native/src/arch/x86/sparse_s8_gemm_avx512vnni.c:
 *   4x1        the general record: 4 channels gathered from X[k][64 tokens] and interleaved by 8 byte/word unpacks,
 *              16 vpdpbusd (4 output channels x 64 tokens). On Intel cores the unpacks run on port 5 only, which also
 *              takes half of the vpdpbusd: 24 uops on 2 ports, at best 2/3 of the peak.
 *   4x4 quads  the quad record (a group pruned in 4x4 tiles): the same 16 vpdpbusd on 4 pre-interleaved loads from X4
 *              (quadify, once per tile), no unpack.
 *   1x4        one output channel x 4 consecutive inputs on a 64-token tile: 4 loads + 1 broadcast per 4 vpdpbusd (no
 *              reuse of a loaded activation line across channels: load / L2 bound).
 * Figures: ns per record and GMAC/s on kept MACs (padding included for 4x1: a group's last record may be partial).
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TGT __attribute__((target("avx512f,avx512bw,avx512vnni"), noinline))
#define DPR(acc, x, w) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w))

typedef struct {
    uint8_t dk[4];
    int32_t w[4];
} rec4x1;
typedef struct {
    int32_t off, w;
} rec1x4;

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

#define ACC16                                                                                                          \
    __m512i a00 = _mm512_setzero_si512(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00, \
            a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00
#define DP16(x0, x1, x2, x3, w)                                                                                        \
    do {                                                                                                               \
        const __m512i w0 = _mm512_set1_epi32((w)[0]), w1 = _mm512_set1_epi32((w)[1]);                                 \
        const __m512i w2 = _mm512_set1_epi32((w)[2]), w3 = _mm512_set1_epi32((w)[3]);                                 \
        DPR(a00, x0, w0); DPR(a10, x0, w1); DPR(a20, x0, w2); DPR(a30, x0, w3);                                        \
        DPR(a01, x1, w0); DPR(a11, x1, w1); DPR(a21, x1, w2); DPR(a31, x1, w3);                                        \
        DPR(a02, x2, w0); DPR(a12, x2, w1); DPR(a22, x2, w2); DPR(a32, x2, w3);                                        \
        DPR(a03, x3, w0); DPR(a13, x3, w1); DPR(a23, x3, w2); DPR(a33, x3, w3);                                        \
    } while (0)
#define STORE16(out)                                                                                                   \
    do {                                                                                                               \
        __m512i *o = (__m512i *)(out);                                                                                 \
        o[0] = a00; o[1] = a01; o[2] = a02; o[3] = a03; o[4] = a10; o[5] = a11; o[6] = a12; o[7] = a13;                \
        o[8] = a20; o[9] = a21; o[10] = a22; o[11] = a23; o[12] = a30; o[13] = a31; o[14] = a32; o[15] = a33;          \
    } while (0)

TGT static void group_4x1(const rec4x1 *q, long nq, const char *X, int32_t *out) {
    ACC16;
    size_t k = 0;
    for (long i = 0; i < nq; i++) {
        uint32_t d;
        memcpy(&d, q[i].dk, 4);
        const size_t k0 = k + (d & 255u), k1 = k0 + ((d >> 8) & 255u), k2 = k1 + ((d >> 16) & 255u), k3 = k2 + (d >> 24);
        k = k3;
        const __m512i ka = _mm512_load_si512(X + k0 * 64), kb = _mm512_load_si512(X + k1 * 64);
        const __m512i kc = _mm512_load_si512(X + k2 * 64), kd = _mm512_load_si512(X + k3 * 64);
        const __m512i ab0 = _mm512_unpacklo_epi8(ka, kb), cd0 = _mm512_unpacklo_epi8(kc, kd);
        const __m512i ab1 = _mm512_unpackhi_epi8(ka, kb), cd1 = _mm512_unpackhi_epi8(kc, kd);
        DP16(_mm512_unpacklo_epi16(ab0, cd0), _mm512_unpackhi_epi16(ab0, cd0), _mm512_unpacklo_epi16(ab1, cd1),
             _mm512_unpackhi_epi16(ab1, cd1), q[i].w);
    }
    STORE16(out);
}

TGT static void group_quads(const rec4x1 *q, long nq, const char *X4, int32_t *out) {
    ACC16;
    size_t k = 0;
    for (long i = 0; i < nq; i++) {
        k += q[i].dk[0];
        const char *x = X4 + k * 64;
        DP16(_mm512_load_si512(x), _mm512_load_si512(x + 64), _mm512_load_si512(x + 128), _mm512_load_si512(x + 192),
             q[i].w);
    }
    STORE16(out);
}

TGT static void row_1x4(const rec1x4 *b, long nb, const char *X, int32_t *out) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, c0 = a0, c1 = a0, c2 = a0, c3 = a0;
    long i = 0;
    for (; i + 2 <= nb; i += 2) { /* two accumulator sets: vpdpbusd's latency */
        const char *x = X + b[i].off, *y = X + b[i + 1].off;
        const __m512i w = _mm512_set1_epi32(b[i].w), v = _mm512_set1_epi32(b[i + 1].w);
        DPR(a0, _mm512_load_si512(x), w); DPR(a1, _mm512_load_si512(x + 64), w);
        DPR(a2, _mm512_load_si512(x + 128), w); DPR(a3, _mm512_load_si512(x + 192), w);
        DPR(c0, _mm512_load_si512(y), v); DPR(c1, _mm512_load_si512(y + 64), v);
        DPR(c2, _mm512_load_si512(y + 128), v); DPR(c3, _mm512_load_si512(y + 192), v);
    }
    if (i < nb) {
        const char *x = X + b[i].off;
        const __m512i w = _mm512_set1_epi32(b[i].w);
        DPR(a0, _mm512_load_si512(x), w); DPR(a1, _mm512_load_si512(x + 64), w);
        DPR(a2, _mm512_load_si512(x + 128), w); DPR(a3, _mm512_load_si512(x + 192), w);
    }
    __m512i *o = (__m512i *)out;
    o[0] = _mm512_add_epi32(a0, c0); o[1] = _mm512_add_epi32(a1, c1);
    o[2] = _mm512_add_epi32(a2, c2); o[3] = _mm512_add_epi32(a3, c3);
}

TGT static double peak_gmacs(void) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0,
            a9 = a0, a10 = a0, a11 = a0;
    const __m512i x = _mm512_set1_epi32(0x01020304), w = _mm512_set1_epi32(0x01010101);
    const long iters = 2000000;
    double best = 1e9;
    for (int r = 0; r < 5; r++) {
        const double t0 = cpu_now();
        for (long i = 0; i < iters; i++) {
            DPR(a0, x, w); DPR(a1, x, w); DPR(a2, x, w); DPR(a3, x, w); DPR(a4, x, w); DPR(a5, x, w);
            DPR(a6, x, w); DPR(a7, x, w); DPR(a8, x, w); DPR(a9, x, w); DPR(a10, x, w); DPR(a11, x, w);
        }
        const double t = cpu_now() - t0;
        best = best < t ? best : t;
    }
    int32_t sink[16];
    a0 = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)),
                          _mm512_add_epi32(_mm512_add_epi32(a4, a5), _mm512_add_epi32(a6, a7)));
    a0 = _mm512_add_epi32(a0, _mm512_add_epi32(_mm512_add_epi32(a8, a9), _mm512_add_epi32(a10, a11)));
    _mm512_storeu_si512(sink, a0);
    if (sink[0] == 42) puts("");
    return iters * 12.0 * 64 / best / 1e9;
}

int main(int argc, char **argv) {
    const int K = argc > 1 ? atoi(argv[1]) : 768, N = argc > 2 ? atoi(argv[2]) : 768;
    if (K < 16 || K % 16 || N < 4 || N % 4) {
        fprintf(stderr, "K must be a multiple of 16 and N of 4\n");
        return 2;
    }
    srand(1);
    char *X = aligned_alloc(64, (size_t)K * 64), *X4 = aligned_alloc(64, (size_t)K * 64);
    for (int i = 0; i < K * 64; i++) X[i] = X4[i] = (char)rand();
    const int G = N / 4;
    rec4x1 *gen = calloc((size_t)G * K, sizeof *gen), *quad = calloc((size_t)G * K, sizeof *quad);
    rec1x4 *row = calloc((size_t)N * K / 4, sizeof *row);
    long *pg = malloc(sizeof(long) * (G + 1)), *pq = malloc(sizeof(long) * (G + 1)), *pr = malloc(sizeof(long) * (N + 1));
    long ng = 0, nq = 0, nr = 0, macs_g = 0, macs_q = 0, macs_r = 0;
    int *ks = malloc(sizeof(int) * K);
    for (int g = 0; g < G; g++) { /* 4x1: 20% of the channels of each group, 4 per record (the last padded) */
        int c = 0, prev = 0;
        pg[g] = ng;
        for (int k = 0; k < K; k++)
            if (rand() < 0.2 * RAND_MAX) ks[c++] = k;
        macs_g += 4L * c;
        while (c % 4) ks[c] = ks[c - 1], c++;
        for (int j = 0; j < c; j += 4, ng++)
            for (int e = 0; e < 4; e++) {
                gen[ng].dk[e] = (uint8_t)(ks[j + e] - prev); /* 80%: gaps far below 255, no fillers */
                prev = ks[j + e];
                gen[ng].w[e] = rand();
            }
        pq[g] = nq; /* 4x4: 20% of the aligned quads */
        prev = 0;
        for (int k0 = 0; k0 < K; k0 += 4)
            if (rand() < 0.2 * RAND_MAX) {
                quad[nq].dk[0] = (uint8_t)(k0 - prev);
                prev = k0;
                for (int e = 0; e < 4; e++) quad[nq].w[e] = rand();
                nq++, macs_q += 16;
            }
    }
    pg[G] = ng, pq[G] = nq;
    for (int n = 0; n < N; n++) { /* 1x4: 20% of the 4-input blocks of each row; X read as [k/4][64 tokens][4] */
        pr[n] = nr;
        for (int kb = 0; kb < K / 4; kb++)
            if (rand() < 0.2 * RAND_MAX) row[nr].off = kb * 256, row[nr].w = rand(), nr++, macs_r += 4;
    }
    pr[N] = nr;
    int32_t out[1024] __attribute__((aligned(64)));
    long sink = 0;
    double best[3] = {1e9, 1e9, 1e9};
    for (int pass = 0; pass < 7; pass++)
        for (int m = 0; m < 3; m++) {
            const double t0 = cpu_now();
            for (int rep = 0; rep < 50; rep++) {
                if (m == 0)
                    for (int g = 0; g < G; g++) group_4x1(gen + pg[g], pg[g + 1] - pg[g], X, out), sink += out[g & 1023];
                else if (m == 1)
                    for (int g = 0; g < G; g++) group_quads(quad + pq[g], pq[g + 1] - pq[g], X4, out), sink += out[g & 1023];
                else
                    for (int n = 0; n < N; n++) row_1x4(row + pr[n], pr[n + 1] - pr[n], X, out), sink += out[n & 63];
            }
            const double t = (cpu_now() - t0) / 50;
            best[m] = best[m] < t ? best[m] : t;
        }
    const double peak = peak_gmacs();
    const char *name[3] = {"4x1 (unpacks)", "4x4 quads", "1x4"};
    const long recs[3] = {ng, nq, nr}, macs[3] = {macs_g * 64, macs_q * 64, macs_r * 64};
    printf("K %d N %d, 64-token tile, 80%%; vpdpbusd peak %.0f GMAC/s\n", K, N, peak);
    for (int m = 0; m < 3; m++)
        printf("%-14s %7ld records  %.2f ns/record  %4.0f GMAC/s kept  %3.0f%% of peak\n", name[m], recs[m],
               best[m] / recs[m] * 1e9, macs[m] / best[m] / 1e9, 100 * macs[m] / best[m] / 1e9 / peak);
    return sink == 42;
}
