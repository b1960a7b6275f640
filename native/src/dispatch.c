/* CPU feature detection and the single place that chooses which kernels run. */
#include <cpuid.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define HF_VERSION_STRING "0.1.0"

static int g_supported[HF_ISA_COUNT];
static int g_active = -1;
static int g_detected = 0;

static unsigned long long xgetbv0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

static void detect(void) {
    unsigned int a, b, c, d;
    int osxsave = 0, avx2 = 0, fma = 0, avx512 = 0;
    g_supported[HF_ISA_REF] = 1;
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
    g_supported[HF_ISA_AVX2] = avx2;
    g_supported[HF_ISA_AVX512VNNI] = avx512;
    g_detected = 1;
}

static int best_isa(void) {
    if (g_supported[HF_ISA_AVX512VNNI]) return HF_ISA_AVX512VNNI;
    if (g_supported[HF_ISA_AVX2]) return HF_ISA_AVX2;
    return HF_ISA_REF;
}

static const char *const isa_names[HF_ISA_COUNT] = {"ref", "avx2", "avx512vnni"};

const char *hf_isa_name(int isa) {
    if (isa == HF_ISA_AUTO) return "auto";
    if (isa < 0 || isa >= HF_ISA_COUNT) return "unknown";
    return isa_names[isa];
}

int hf_isa_from_name(const char *name) {
    if (!name || !*name || strcmp(name, "auto") == 0) return HF_ISA_AUTO;
    for (int i = 0; i < HF_ISA_COUNT; i++)
        if (strcmp(name, isa_names[i]) == 0) return i;
    return -2;
}

int hf_isa_supported(int isa) {
    if (!g_detected) detect();
    if (isa < 0 || isa >= HF_ISA_COUNT) return 0;
    return g_supported[isa];
}

int hf_set_isa(int isa) {
    if (!g_detected) detect();
    if (isa == HF_ISA_AUTO) {
        g_active = best_isa();
        return HF_OK;
    }
    if (isa < 0 || isa >= HF_ISA_COUNT) return hf_fail(HF_EINVAL, "unknown ISA id %d", isa);
    if (!g_supported[isa])
        return hf_fail(HF_EUNSUPPORTED, "ISA '%s' is not supported by this CPU", isa_names[isa]);
    g_active = isa;
    return HF_OK;
}

int hf_init(void) {
    const char *env = getenv("HF_FAST_ISA");
    int isa;
    if (!g_detected) detect();
    isa = hf_isa_from_name(env);
    if (isa == -2) {
        g_active = best_isa();
        return hf_fail(HF_EINVAL, "HF_FAST_ISA='%s' is not one of ref, avx2, avx512vnni, auto", env);
    }
    if (isa != HF_ISA_AUTO && !g_supported[isa]) {
        g_active = best_isa();
        return hf_fail(HF_EUNSUPPORTED, "HF_FAST_ISA='%s' but this CPU does not support it", env);
    }
    return hf_set_isa(isa);
}

int hf_isa_active(void) {
    if (g_active < 0) hf_set_isa(HF_ISA_AUTO);
    return g_active;
}

int hf_resolve_isa(int isa, int *out) {
    if (isa == HF_ISA_AUTO) isa = hf_isa_active();
    if (isa < 0 || isa >= HF_ISA_COUNT) return hf_fail(HF_EINVAL, "unknown ISA id %d", isa);
    if (!hf_isa_supported(isa))
        return hf_fail(HF_EUNSUPPORTED, "ISA '%s' is not supported by this CPU", isa_names[isa]);
    *out = isa;
    return HF_OK;
}

const hf_dense_kernel *hf_dense_kernel_for(int isa) {
    if (!hf_isa_supported(isa)) return NULL;
    switch (isa) {
    case HF_ISA_REF: return &hf_dense_ref;
    case HF_ISA_AVX2: return &hf_dense_avx2;
    case HF_ISA_AVX512VNNI: return &hf_dense_avx512vnni;
    default: return NULL;
    }
}

const hf_dense_kernel *hf_dense_kernel_for_variant(int isa, int variant) {
    if (isa == HF_ISA_AVX2 && variant == HF_VARIANT_S7) return hf_isa_supported(isa) ? &hf_dense_avx2_s7 : NULL;
    return hf_dense_kernel_for(isa);
}

int hf_weights_fit_s7(int64_t N, int64_t K, const int8_t *W, int64_t ldw) {
    for (int64_t n = 0; n < N; n++) {
        const int8_t *w = W + n * ldw;
        int bad = 0;
        for (int64_t k = 0; k < K; k++) bad |= (w[k] < -64) | (w[k] > 64); /* vectorizes */
        if (bad) return 0;
    }
    return 1;
}

const char *hf_kernel_variant_name(int isa, int variant) {
    switch (isa) {
    case HF_ISA_REF: return "ref";
    case HF_ISA_AVX2: return variant == HF_VARIANT_S7 ? "avx2-s7" : "avx2-s16";
    case HF_ISA_AVX512VNNI: return "avx512vnni";
    default: return "unknown";
    }
}

static const hf_f32_ops f32_ref = {hf_layernorm_ref, hf_attention_head_ref, hf_attention_q8_head_ref};
static const hf_f32_ops f32_avx2 = {hf_layernorm_avx2, hf_attention_head_avx2, hf_attention_q8_head_avx2};
static const hf_f32_ops f32_avx512 = {hf_layernorm_avx512, hf_attention_head_avx512,
                                       hf_attention_q8_head_avx512vnni};

const hf_f32_ops *hf_f32_ops_for(int isa) {
    if (!hf_isa_supported(isa)) return NULL;
    return isa == HF_ISA_REF ? &f32_ref : isa == HF_ISA_AVX2 ? &f32_avx2 : &f32_avx512;
}

const hf_f32_ops *hf_attention_ops_for(int isa, int64_t d, int int8) {
    if (int8 ? d % 16 : d % 8) return hf_f32_ops_for(HF_ISA_REF);
    if (!int8 && isa == HF_ISA_AVX512VNNI && d % 16) return hf_f32_ops_for(HF_ISA_AVX2);
    return hf_f32_ops_for(isa);
}

const hf_sparse_kernel *hf_sparse_kernel_for(int isa) {
    if (!hf_isa_supported(isa)) return NULL;
    switch (isa) {
    case HF_ISA_REF: return &hf_sparse_ref;
    case HF_ISA_AVX2: return &hf_sparse_avx2;
    case HF_ISA_AVX512VNNI: return &hf_sparse_avx512vnni;
    default: return NULL;
    }
}

static const hf_linear_ops linear_ref = {hf_epilogue_rows_ref, hf_gelu_ref, hf_quantize_ref, hf_quantize_mul_ref};
static const hf_linear_ops linear_avx2 = {hf_epilogue_rows_avx2, hf_gelu_avx2, hf_quantize_avx2,
                                        hf_quantize_mul_avx2};
static const hf_linear_ops linear_avx512 = {hf_epilogue_rows_avx512, hf_gelu_avx512, hf_quantize_avx512,
                                          hf_quantize_mul_avx512};

const hf_linear_ops *hf_linear_ops_for(int isa) {
    if (!hf_isa_supported(isa)) return NULL;
    return isa == HF_ISA_REF ? &linear_ref : isa == HF_ISA_AVX2 ? &linear_avx2 : &linear_avx512;
}

/* The name of the kernel behind a function pointer or table that the functions above return: derived from what
 * they pick, so hf_op_kernel cannot drift from the dispatch itself. */
#define PICK(p, ref, avx2, avx512, n512) \
    ((p) == (ref) ? "ref" : (p) == (avx2) ? "avx2" : (p) == (avx512) ? (n512) : "unknown")

const char *hf_op_kernel(int op, int isa, int64_t arg) {
    if (isa == HF_ISA_AUTO) isa = hf_isa_active();
    if (!hf_isa_supported(isa)) return "";
    const hf_linear_ops *lo = hf_linear_ops_for(isa);
    const hf_dense_kernel *dk;
    const hf_sparse_kernel *sk;
    switch (op) {
    case HF_OP_DENSE_GEMM:
    case HF_OP_DENSE_GEMM_7BIT:
        dk = hf_dense_kernel_for_variant(isa, op == HF_OP_DENSE_GEMM_7BIT ? HF_VARIANT_S7 : HF_VARIANT_DEFAULT);
        return dk == &hf_dense_ref ? "ref" : dk == &hf_dense_avx2 ? "avx2-s16" : dk == &hf_dense_avx2_s7 ? "avx2-s7"
             : dk == &hf_dense_avx512vnni ? "avx512vnni" : "unknown";
    case HF_OP_SPARSE_GEMM:
    case HF_OP_SPARSE_GEMM_7BIT: /* the AVX2 family packs 7-bit weights for its vpmaddubsw path itself */
        sk = hf_sparse_kernel_for(isa);
        return sk == &hf_sparse_ref ? "ref" : sk == &hf_sparse_avx2 ? (op == HF_OP_SPARSE_GEMM ? "avx2-s16" : "avx2-s7")
             : sk == &hf_sparse_avx512vnni ? "avx512vnni" : "unknown";
    case HF_OP_LINEAR_EPILOGUE:
        return PICK(lo->epilogue_rows, hf_epilogue_rows_ref, hf_epilogue_rows_avx2, hf_epilogue_rows_avx512, "avx512");
    case HF_OP_QUANTIZE: return PICK(lo->quantize, hf_quantize_ref, hf_quantize_avx2, hf_quantize_avx512, "avx512");
    case HF_OP_GELU: return PICK(lo->gelu, hf_gelu_ref, hf_gelu_avx2, hf_gelu_avx512, "avx512");
    case HF_OP_LAYERNORM:
        return PICK(hf_f32_ops_for(isa)->layernorm, hf_layernorm_ref, hf_layernorm_avx2, hf_layernorm_avx512,
                    "avx512");
    case HF_OP_ATTENTION:
        if (arg <= 0) return "";
        return PICK(hf_attention_ops_for(isa, arg, 0)->attention_head, hf_attention_head_ref, hf_attention_head_avx2,
                    hf_attention_head_avx512, "avx512");
    case HF_OP_ATTENTION_Q8:
        if (arg <= 0) return "";
        return PICK(hf_attention_ops_for(isa, arg, 1)->attention_q8_head, hf_attention_q8_head_ref,
                    hf_attention_q8_head_avx2, hf_attention_q8_head_avx512vnni, "avx512vnni");
    default: return "";
    }
}

const char *hf_version(void) { return HF_VERSION_STRING; }
