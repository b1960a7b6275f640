#define _POSIX_C_SOURCE 200809L
/* make test-aarch64: the aarch64 kernels against the scalar reference, run under qemu-aarch64 at each -cpu level.
 * Integer paths (dense / block-sparse GEMMs, u8-quantized Linear output without GELU, quantizers, int8 attention)
 * must match bit for bit; fp32 paths within the stated tolerances (FP32_TOL: the Linear with GELU and residual;
 * GELU against float64; LN_*: LayerNorm; ATT_*: fp32 attention); a u8 output after GELU may move by one step on a
 * rounding tie (at most 1% of the values). Prints the kernel chosen per op; with --expect ISA fails unless that ISA
 * is the default and every op with an ARM kernel (GEMMs, epilogue, GELU, quantizer, LayerNorm, fp32 and int8
 * attention at d = 64) runs one there. A core that lacks an instruction a kernel uses dies of SIGILL, which fails
 * the run. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf_fast.h"

/* fp32 Linear output with GELU and residual: the NEON GELU's exp differs from the reference's by ~1 ulp */
#define FP32_TOL 2e-6f
/* LayerNorm: float sums against the double reference (the x86 tests' tolerance) */
#define LN_RTOL 1e-4f
#define LN_ATOL 2e-5f
#define ATT_RTOL 2e-4f
#define ATT_ATOL 2e-5f

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static int failures = 0;
#define CHECK(cond, ...)                                                                                             \
    do {                                                                                                             \
        if (!(cond)) {                                                                                               \
            failures++;                                                                                              \
            printf("FAIL: " __VA_ARGS__);                                                                            \
            printf(" [%s]\n", hf_last_error());                                                                      \
        }                                                                                                            \
    } while (0)

/* W[N][K] s8 over the full range; with br > 0, whole br x bc blocks zeroed with probability ~zero_pct % */
static void fill_w(int8_t *W, int64_t N, int64_t K, int br, int bc, int zero_pct) {
    for (int64_t i = 0; i < N * K; i++) W[i] = (int8_t)(rnd() & 0xff);
    if (!br) return;
    for (int64_t n0 = 0; n0 < N; n0 += br)
        for (int64_t k0 = 0; k0 < K; k0 += bc)
            if ((int)(rnd() % 100) < zero_pct)
                for (int r = 0; r < br && n0 + r < N; r++)
                    for (int c = 0; c < bc && k0 + c < K; c++) W[(n0 + r) * K + k0 + c] = 0;
}

/* M, N, K: partial 4/8/16-token and 4/8-channel tiles, odd K, K past one 16-byte block, a BERT-like K */
static const int64_t shapes[][3] = {{1, 1, 1},     {3, 5, 7},   {4, 8, 16},   {5, 9, 17},   {16, 16, 64},    {17, 33, 31},
                                    {7, 13, 100}, {33, 40, 129}, {2, 3, 300}, {20, 64, 96}, {70, 100, 768}};
#define NSHAPES (int)(sizeof shapes / sizeof shapes[0])

static void check_isa(int isa) {
    const char *name = hf_isa_name(isa);
    int checked = 0;
    for (int s = 0; s < NSHAPES; s++) {
        const int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], lda = K + 3, ldc = N + 1;
        uint8_t *A = malloc((size_t)(M * lda));
        int8_t *W = malloc((size_t)(N * K));
        int32_t *C0 = malloc((size_t)(M * ldc) * 4), *C1 = malloc((size_t)(M * ldc) * 4);
        float *ws = malloc((size_t)N * 4), *bias = malloc((size_t)N * 4), *res = malloc((size_t)(M * N) * 4);
        float *Y0 = malloc((size_t)(M * N) * 4), *Y1 = malloc((size_t)(M * N) * 4);
        uint8_t *U0 = malloc((size_t)(M * N)), *U1 = malloc((size_t)(M * N));
        for (int64_t i = 0; i < M * lda; i++) A[i] = (uint8_t)rnd();
        for (int64_t n = 0; n < N; n++) {
            ws[n] = 1e-3f * (float)(1 + rnd() % 50);
            bias[n] = (float)((int)(rnd() % 200) - 100) / 16.f;
        }
        for (int64_t i = 0; i < M * N; i++) res[i] = (float)((int)(rnd() % 200) - 100) / 8.f;
        /* shape 0: dense; then 4x1 and 1x4 */
        static const int blocks[3][2] = {{0, 0}, {4, 1}, {1, 4}};
        for (int bi = 0; bi < 3; bi++) {
            const int br = blocks[bi][0], bc = blocks[bi][1];
            fill_w(W, N, K, br, bc, s % 3 == 2 ? 100 : 70); /* every third shape: all blocks zero */
            memset(C0, 0, (size_t)(M * ldc) * 4);
            memset(C1, 0x55, (size_t)(M * ldc) * 4);
            if (!br) {
                hf_dense_w *w0 = NULL, *w1 = NULL;
                CHECK(hf_dense_pack(HF_ISA_REF, N, K, W, K, &w0) == HF_OK, "dense_pack ref");
                CHECK(hf_dense_pack(isa, N, K, W, K, &w1) == HF_OK, "dense_pack %s", name);
                CHECK(hf_dense_gemm(w0, M, A, lda, C0, ldc) == HF_OK, "dense_gemm ref");
                CHECK(hf_dense_gemm(w1, M, A, lda, C1, ldc) == HF_OK, "dense_gemm %s", name);
                CHECK(strcmp(hf_dense_kernel_name(w1), name) == 0, "dense kernel %s on %s", hf_dense_kernel_name(w1),
                      name);
                hf_dense_free(w0);
                hf_dense_free(w1);
            } else {
                hf_sparse_w *w0 = NULL, *w1 = NULL;
                CHECK(hf_sparse_pack(HF_ISA_REF, br, bc, N, K, W, K, &w0) == HF_OK, "sparse_pack ref");
                CHECK(hf_sparse_pack(isa, br, bc, N, K, W, K, &w1) == HF_OK, "sparse_pack %s", name);
                CHECK(hf_sparse_gemm(w0, M, A, lda, C0, ldc) == HF_OK, "sparse_gemm ref");
                CHECK(hf_sparse_gemm(w1, M, A, lda, C1, ldc) == HF_OK, "sparse_gemm %s", name);
                CHECK(strcmp(hf_sparse_kernel_name(w1), name) == 0, "sparse kernel %s", hf_sparse_kernel_name(w1));
                hf_sparse_free(w0);
                hf_sparse_free(w1);
            }
            for (int64_t m = 0; m < M; m++)
                for (int64_t n = 0; n < N; n++)
                    if (C0[m * ldc + n] != C1[m * ldc + n]) {
                        CHECK(0, "%s gemm %dx%d M=%lld N=%lld K=%lld at [%lld][%lld]: %d != ref %d", name, br, bc,
                              (long long)M, (long long)N, (long long)K, (long long)m, (long long)n, C1[m * ldc + n],
                              C0[m * ldc + n]);
                        m = M;
                        break;
                    }
            /* the Linear with its fused epilogue: fp32 (GELU + residual) and u8 outputs */
            hf_linear *l0 = NULL, *l1 = NULL;
            CHECK(hf_linear_pack(HF_ISA_REF, br, bc, N, K, W, K, ws, bias, &l0) == HF_OK, "linear_pack ref");
            CHECK(hf_linear_pack(isa, br, bc, N, K, W, K, ws, bias, &l1) == HF_OK, "linear_pack %s", name);
            CHECK(hf_linear_forward(l0, M, A, lda, 0.02f, 131, Y0, N, HF_LINEAR_GELU, res, N) == HF_OK, "fwd ref");
            CHECK(hf_linear_forward(l1, M, A, lda, 0.02f, 131, Y1, N, HF_LINEAR_GELU, res, N) == HF_OK, "fwd %s",
                  name);
            for (int64_t i = 0; i < M * N; i++) {
                const float d = Y1[i] - Y0[i],
                            tol = FP32_TOL * ((Y0[i] < 0 ? -Y0[i] : Y0[i]) + (res[i] < 0 ? -res[i] : res[i])) + 1e-6f;
                if (!(d <= tol && -d <= tol)) {
                    CHECK(0, "%s linear f32 %dx%d M=%lld N=%lld K=%lld [%lld]: %g != ref %g", name, br, bc,
                          (long long)M, (long long)N, (long long)K, (long long)i, Y1[i], Y0[i]);
                    break;
                }
            }
            CHECK(hf_linear_forward_u8(l0, M, A, lda, 0.02f, 131, U0, N, 0, NULL, 0, 0.05f, 128, NULL) == HF_OK,
                  "fwd_u8 ref");
            CHECK(hf_linear_forward_u8(l1, M, A, lda, 0.02f, 131, U1, N, 0, NULL, 0, 0.05f, 128, NULL) == HF_OK,
                  "fwd_u8 %s", name);
            CHECK(memcmp(U0, U1, (size_t)(M * N)) == 0, "%s linear u8 %dx%d M=%lld N=%lld K=%lld differs", name, br,
                  bc, (long long)M, (long long)N, (long long)K);
            {   /* SmoothQuant multiplier, and one quantizer per 16-channel segment (the engine's qkv) */
                float *mul = malloc((size_t)N * 4), segs[8];
                int32_t segz[8];
                for (int64_t n = 0; n < N; n++) mul[n] = 0.5f + (float)(rnd() % 100) / 50.f;
                CHECK(hf_linear_forward_u8(l0, M, A, lda, 0.02f, 131, U0, N, HF_LINEAR_GELU, res, N, 0.05f, 128, mul) ==
                          HF_OK, "fwd_u8 mul ref");
                CHECK(hf_linear_forward_u8(l1, M, A, lda, 0.02f, 131, U1, N, HF_LINEAR_GELU, res, N, 0.05f, 128, mul) ==
                          HF_OK, "fwd_u8 mul %s", name);
                /* GELU: a value on a rounding tie may move by one step, nothing more */
                int64_t off1 = 0, worse = 0;
                for (int64_t i = 0; i < M * N; i++) {
                    const int d = (int)U1[i] - (int)U0[i];
                    off1 += d == 1 || d == -1;
                    worse += d > 1 || d < -1;
                }
                CHECK(worse == 0 && off1 * 100 <= M * N, "%s linear u8 (GELU, residual, mul) %dx%d M=%lld N=%lld K=%lld: "
                      "%lld off by 1, %lld by more", name, br, bc, (long long)M, (long long)N, (long long)K,
                      (long long)off1, (long long)worse);
                if (N % 16 == 0 && N / 16 <= 8) {
                    for (int i = 0; i < 8; i++) segs[i] = 0.02f + 0.01f * (float)i, segz[i] = 100 + 10 * i;
                    CHECK(hf_linear_forward_u8_seg(l0, M, A, lda, 0.02f, 131, U0, N, 16, segs, segz) == HF_OK, "seg ref");
                    CHECK(hf_linear_forward_u8_seg(l1, M, A, lda, 0.02f, 131, U1, N, 16, segs, segz) == HF_OK, "seg %s",
                          name);
                    CHECK(memcmp(U0, U1, (size_t)(M * N)) == 0, "%s linear u8 seg %dx%d N=%lld differs", name, br, bc,
                          (long long)N);
                }
                free(mul);
            }
            hf_linear_free(l0);
            hf_linear_free(l1);
            checked++;
        }
        free(A), free(W), free(C0), free(C1), free(ws), free(bias), free(res), free(Y0), free(Y1), free(U0), free(U1);
    }
    {   /* the u8 quantizer: random values, ties (k + 0.5 steps), NaN, infinities, out-of-range */
        enum { NQ = 1000 };
        static float x[NQ], mul[NQ];
        static uint8_t q0[NQ], q1[NQ];
        const float special[] = {0.f, -0.f, 0.5f, 1.5f, 2.5f, -0.5f, 1e30f, -1e30f, __builtin_inff(), -__builtin_inff(),
                                 __builtin_nanf(""), 127.5f, 128.5f, 12.75f};
        for (int i = 0; i < NQ; i++) {
            x[i] = i < 14 ? special[i] * 0.1f : (i % 3 ? (float)((int)(rnd() % 4000) - 2000) * 0.05f
                                                       : (float)((int)(rnd() % 600) - 300) / 10.f);
            mul[i] = 0.25f + (float)(rnd() % 100) / 40.f;
        }
        for (int n = 1; n <= NQ; n += n < 40 ? 1 : 480) {
            CHECK(hf_quantize_u8(HF_ISA_REF, n, x, 0.1f, 128, q0) == HF_OK, "quantize ref");
            CHECK(hf_quantize_u8(isa, n, x, 0.1f, 128, q1) == HF_OK, "quantize %s", name);
            CHECK(memcmp(q0, q1, (size_t)n) == 0, "%s quantize n=%d differs", name, n);
            CHECK(hf_quantize_u8_mul(HF_ISA_REF, 1, n, x, mul, 0.1f, 128, q0) == HF_OK, "quantize_mul ref");
            CHECK(hf_quantize_u8_mul(isa, 1, n, x, mul, 0.1f, 128, q1) == HF_OK, "quantize_mul %s", name);
            CHECK(memcmp(q0, q1, (size_t)n) == 0, "%s quantize_mul n=%d differs", name, n);
        }
    }
    {   /* fp32 attention (key mask with padding, all-masked rows, head sizes the kernel takes and those it does not)
         * within ATT_RTOL / ATT_ATOL of the reference (the x86 tests' tolerance) */
        static const int64_t cfg[][3] = {{1, 1, 4}, {7, 2, 8}, {13, 3, 12}, {33, 2, 64}, {9, 2, 6}, {5, 1, 3}};
        for (size_t ci = 0; ci < sizeof cfg / sizeof cfg[0]; ci++) {
            const int64_t S = cfg[ci][0], hh = cfg[ci][1], d = cfg[ci][2], ld = hh * d + 2;
            float *qkv[3], *o0 = malloc((size_t)(S * hh * d) * 4), *o1 = malloc((size_t)(S * hh * d) * 4);
            int64_t *mask = malloc((size_t)S * 8);
            for (int t = 0; t < 3; t++) {
                qkv[t] = malloc((size_t)(S * ld) * 4);
                for (int64_t i = 0; i < S * ld; i++) qkv[t][i] = (float)((int)(rnd() % 2000) - 1000) / 250.f;
            }
            for (int mode = 0; mode < 3; mode++) { /* no mask, right padding, all masked */
                for (int64_t j = 0; j < S; j++) mask[j] = mode == 0 ? 1 : mode == 1 ? (j < (S + 1) / 2 || j == 0) : 0;
                CHECK(hf_attention(HF_ISA_REF, S, hh, d, qkv[0], qkv[1], qkv[2], ld, mode ? mask : NULL, 0.3f, o0,
                                   hh * d) == HF_OK, "attention ref");
                CHECK(hf_attention(isa, S, hh, d, qkv[0], qkv[1], qkv[2], ld, mode ? mask : NULL, 0.3f, o1, hh * d) ==
                          HF_OK, "attention %s", name);
                for (int64_t i = 0; i < S * hh * d; i++) {
                    const float df = o1[i] - o0[i], tol = ATT_RTOL * (o0[i] < 0 ? -o0[i] : o0[i]) + ATT_ATOL;
                    if (!(df <= tol && -df <= tol)) {
                        CHECK(0, "%s attention S=%lld d=%lld mask %d [%lld]: %g != ref %g", name, (long long)S,
                              (long long)d, mode, (long long)i, o1[i], o0[i]);
                        break;
                    }
                }
            }
            for (int t = 0; t < 3; t++) free(qkv[t]);
            free(o0), free(o1), free(mask);
        }
    }
    {   /* int8 attention on uint8 q, k, v: bit for bit the reference (float and uint8 context), head sizes the kernel
         * takes (d % 8 == 0) and those it leaves to the reference */
        static const int64_t cfg[][3] = {{1, 1, 8}, {7, 2, 8}, {17, 3, 16}, {33, 2, 64}, {9, 2, 12}};
        const hf_attn_quant aq = {0.04f, 0.05f, 1.f / 255.f, 0.03f, 120, 131, 0, 125};
        for (size_t ci = 0; ci < sizeof cfg / sizeof cfg[0]; ci++) {
            const int64_t S = cfg[ci][0], hh = cfg[ci][1], d = cfg[ci][2], ld = 3 * hh * d, n = S * hh * d;
            uint8_t *qkv = malloc((size_t)(S * ld)), *u0 = malloc((size_t)n), *u1 = malloc((size_t)n);
            float *o0 = malloc((size_t)n * 4), *o1 = malloc((size_t)n * 4), *mul = malloc((size_t)(hh * d) * 4);
            int64_t *mask = malloc((size_t)S * 8);
            for (int64_t i = 0; i < S * ld; i++) qkv[i] = (uint8_t)rnd();
            for (int64_t i = 0; i < hh * d; i++) mul[i] = 0.5f + (float)(rnd() % 100) / 100.f;
            for (int mode = 0; mode < 3; mode++) {
                for (int64_t j = 0; j < S; j++) mask[j] = mode == 0 ? 1 : mode == 1 ? (j < (S + 1) / 2 || j == 0) : 0;
                const int64_t *m = mode ? mask : NULL;
                CHECK(hf_attention_q8_u8(HF_ISA_REF, S, hh, d, qkv, qkv + hh * d, qkv + 2 * hh * d, ld, m, 0.25f, &aq,
                                         o0, hh * d) == HF_OK, "attention_q8 ref");
                CHECK(hf_attention_q8_u8(isa, S, hh, d, qkv, qkv + hh * d, qkv + 2 * hh * d, ld, m, 0.25f, &aq, o1,
                                         hh * d) == HF_OK, "attention_q8 %s", name);
                CHECK(memcmp(o0, o1, (size_t)n * 4) == 0, "%s attention_q8 S=%lld d=%lld mask %d differs", name,
                      (long long)S, (long long)d, mode);
                CHECK(hf_attention_q8_u8_quant(HF_ISA_REF, S, hh, d, qkv, qkv + hh * d, qkv + 2 * hh * d, ld, m, 0.25f,
                                               &aq, 0.02f, 128, mul, u0, hh * d) == HF_OK, "attention_q8_quant ref");
                CHECK(hf_attention_q8_u8_quant(isa, S, hh, d, qkv, qkv + hh * d, qkv + 2 * hh * d, ld, m, 0.25f, &aq,
                                               0.02f, 128, mul, u1, hh * d) == HF_OK, "attention_q8_quant %s", name);
                CHECK(memcmp(u0, u1, (size_t)n) == 0, "%s attention_q8 u8 context S=%lld d=%lld mask %d differs", name,
                      (long long)S, (long long)d, mode);
            }
            free(qkv), free(u0), free(u1), free(o0), free(o1), free(mul), free(mask);
        }
    }
    {   /* GELU against the float64 erf form: the x86 tests' bound, 1e-6 relative + ~1 ulp of x */
        enum { NG = 2411 };
        static float x[NG], y[NG];
        const float special[] = {0.f, -0.f, 1e-30f, -1e-30f, 1e-8f, 40.f, -40.f, 100.f, -100.f, 9.5f, -9.5f};
        for (int i = 0; i < NG; i++) x[i] = i < 11 ? special[i] : -12.f + 24.f * (float)(i - 11) / (float)(NG - 12);
        for (int n = NG; n >= NG - 3; n--) { /* and the vector tail */
            CHECK(hf_gelu(isa, n, x, y) == HF_OK, "gelu %s", name);
            for (int i = 0; i < n; i++) {
                const double t = 0.5 * (double)x[i] * erfc(-(double)x[i] / sqrt(2.0)), e = fabs((double)y[i] - t);
                const double ax = fabs((double)x[i]) > 1e-6 ? fabs((double)x[i]) : 1e-6;
                if (!(e <= 1e-6 * fabs(t) + 1e-7 * ax)) {
                    CHECK(0, "%s gelu(%g) = %.9g, float64 %.9g", name, x[i], y[i], t);
                    break;
                }
            }
        }
    }
    {   /* LayerNorm (with and without the residual) within LN_RTOL / LN_ATOL of the (double) reference */
        static const int64_t hs[] = {1, 3, 4, 7, 32, 33, 384};
        for (size_t h = 0; h < sizeof hs / sizeof hs[0]; h++) {
            const int64_t T = 5, Hn = hs[h];
            float *x = malloc((size_t)(T * Hn) * 4), *r = malloc((size_t)(T * Hn) * 4), *g = malloc((size_t)Hn * 4),
                  *b = malloc((size_t)Hn * 4), *y0 = malloc((size_t)(T * Hn) * 4), *y1 = malloc((size_t)(T * Hn) * 4);
            for (int64_t i = 0; i < T * Hn; i++) x[i] = (float)((int)(rnd() % 2000) - 1000) / 100.f,
                                                 r[i] = (float)((int)(rnd() % 2000) - 1000) / 300.f;
            for (int64_t i = 0; i < Hn; i++) g[i] = 0.5f + (float)(rnd() % 100) / 100.f, b[i] = (float)(rnd() % 100) / 200.f;
            for (int withr = 0; withr < 2; withr++) {
                CHECK(hf_layernorm(HF_ISA_REF, T, Hn, x, withr ? r : NULL, g, b, 1e-5f, y0) == HF_OK, "ln ref");
                CHECK(hf_layernorm(isa, T, Hn, x, withr ? r : NULL, g, b, 1e-5f, y1) == HF_OK, "ln %s", name);
                for (int64_t i = 0; i < T * Hn; i++) {
                    const float d = y1[i] - y0[i], tol = LN_RTOL * (y0[i] < 0 ? -y0[i] : y0[i]) + LN_ATOL;
                    if (!(d <= tol && -d <= tol)) {
                        CHECK(0, "%s layernorm H=%lld [%lld]: %g != ref %g", name, (long long)Hn, (long long)i, y1[i],
                              y0[i]);
                        break;
                    }
                }
            }
            free(x), free(r), free(g), free(b), free(y0), free(y1);
        }
    }
    printf("  %-8s %d GEMM cases (dense, 4x1, 1x4; GEMM, fp32 and u8 Linear, mul, seg) + quantizers, GELU, LayerNorm, both attentions\n", name, checked);
}

static const char *const op_names[HF_OP_COUNT] = {"dense_gemm", "dense_gemm_7bit", "sparse_gemm", "sparse_gemm_7bit",
                                                  "linear_epilogue", "quantize", "gelu", "layernorm", "attention",
                                                  "attention_q8"};
/* the ops with an aarch64 kernel: no level may run them on the reference */
static const int arm_ops[] = {HF_OP_DENSE_GEMM, HF_OP_DENSE_GEMM_7BIT, HF_OP_SPARSE_GEMM, HF_OP_SPARSE_GEMM_7BIT,
                              HF_OP_LINEAR_EPILOGUE, HF_OP_QUANTIZE, HF_OP_GELU, HF_OP_LAYERNORM,
                              HF_OP_ATTENTION, HF_OP_ATTENTION_Q8};

int main(int argc, char **argv) {
    const char *expect = argc > 2 && strcmp(argv[1], "--expect") == 0 ? argv[2] : NULL;
    const int arm_isas[] = {HF_ISA_NEON, HF_ISA_DOTPROD, HF_ISA_I8MM};
    int rc = hf_init();
    CHECK(rc == HF_OK, "hf_init");
    printf("supported:");
    for (int i = 0; i < HF_ISA_COUNT; i++)
        if (hf_isa_supported(i)) printf(" %s", hf_isa_name(i));
    printf("; default %s\n", hf_isa_name(hf_isa_active()));
    for (int op = 0; op < HF_OP_COUNT; op++)
        printf("  %-17s %s\n", op_names[op], hf_op_kernel(op, HF_ISA_AUTO, 64));
    if (expect) {
        CHECK(strcmp(hf_isa_name(hf_isa_active()), expect) == 0, "default ISA %s, expected %s",
              hf_isa_name(hf_isa_active()), expect);
        for (size_t i = 0; i < sizeof arm_ops / sizeof arm_ops[0]; i++)
            CHECK(strcmp(hf_op_kernel(arm_ops[i], HF_ISA_AUTO, 64), "ref") != 0, "%s runs the reference on %s",
                  op_names[arm_ops[i]], expect);
    }
    /* HF_FAST_ISA: accepted exactly when the CPU has the level */
    for (int i = 0; i < 3; i++) {
        const int isa = arm_isas[i];
        setenv("HF_FAST_ISA", hf_isa_name(isa), 1);
        rc = hf_init();
        if (hf_isa_supported(isa)) CHECK(rc == HF_OK && hf_isa_active() == isa, "HF_FAST_ISA=%s", hf_isa_name(isa));
        else CHECK(rc == HF_EUNSUPPORTED, "HF_FAST_ISA=%s accepted without the feature", hf_isa_name(isa));
    }
    unsetenv("HF_FAST_ISA");
    hf_init();
    for (int i = 0; i < 3; i++)
        if (hf_isa_supported(arm_isas[i])) check_isa(arm_isas[i]);
    for (int nt = 1; nt <= 3; nt += 2) { /* the sparse kernels split token tiles over threads */
        hf_set_num_threads(nt);
        check_isa(hf_isa_active());
    }
    printf(failures ? "aarch64 check: %d FAILED\n" : "aarch64 check: all passed\n", failures);
    return failures != 0;
}
