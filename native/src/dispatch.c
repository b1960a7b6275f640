/* The single place that chooses which kernels run: the ISA names, HF_FAST_ISA, and the table of the chosen ISA.
 * The CPU features and the tables come from the target architecture's folder (hf_arch_detect, hf_arch_table). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define HF_VERSION_STRING "0.1.0"

static int g_supported[HF_ISA_COUNT];
static int g_active = -1;
static int g_detected = 0;

static const char *const isa_names[HF_ISA_COUNT] = {"ref", "avx2", "avx512vnni", "neon", "dotprod", "i8mm"};

static void detect(void) {
    hf_arch_detect(g_supported);
    g_supported[HF_ISA_REF] = 1;
    for (int i = 1; i < HF_ISA_COUNT; i++) g_supported[i] = g_supported[i] && hf_arch_table(i) != NULL;
    g_detected = 1;
}

static int best_isa(void) {
    for (int i = HF_ISA_COUNT - 1; i > HF_ISA_REF; i--)
        if (g_supported[i]) return i;
    return HF_ISA_REF;
}

/* The table of isa whether or not this CPU runs it (NULL for an ISA of another architecture or an unknown id). */
static const hf_isa_table *any_table(int isa) {
    if (isa == HF_ISA_REF) return &hf_table_ref;
    return isa > HF_ISA_REF && isa < HF_ISA_COUNT ? hf_arch_table(isa) : NULL;
}

/* The table of a supported isa; NULL for one this CPU cannot run and for an unknown id (never a default). */
static const hf_isa_table *table_for(int isa) { return hf_isa_supported(isa) ? any_table(isa) : NULL; }

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

int hf_isa_built(int isa) { return any_table(isa) != NULL; }

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
        char names[128] = "";
        for (int i = 0; i < HF_ISA_COUNT; i++) {
            strncat(names, isa_names[i], sizeof names - strlen(names) - 1);
            strncat(names, ", ", sizeof names - strlen(names) - 1);
        }
        g_active = best_isa();
        return hf_fail(HF_EINVAL, "HF_FAST_ISA='%s' is not one of %sauto", env, names);
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

int hf_int8_peak_probe(int isa, int64_t iters, int64_t *macs) {
    const hf_isa_table *t;
    int rc;
    if (!macs) return hf_fail(HF_EINVAL, "int8_peak_probe: macs is NULL");
    *macs = 0;
    if (iters <= 0) return hf_fail(HF_EINVAL, "int8_peak_probe: iters=%lld must be > 0", (long long)iters);
    if ((rc = hf_resolve_isa(isa, &isa)) != HF_OK) return rc;
    t = table_for(isa);
    if (!t || !t->int8_peak)
        return hf_fail(HF_EUNSUPPORTED, "int8_peak_probe: no peak probe for '%s'", isa_names[isa]);
    *macs = t->int8_peak(iters);
    return *macs < 0 ? hf_fail(HF_EINVAL, "int8_peak_probe: the loop's sums are wrong") : HF_OK;
}

const hf_dense_kernel *hf_dense_kernel_for(int isa) {
    const hf_isa_table *t = table_for(isa);
    return t ? t->dense : NULL;
}

const hf_dense_kernel *hf_dense_kernel_for_variant(int isa, int variant) {
    const hf_isa_table *t = table_for(isa);
    if (!t) return NULL;
    return variant == HF_VARIANT_S7 && t->dense_s7 ? t->dense_s7 : t->dense;
}

int hf_dense_variant_for(int isa, int64_t N, int64_t K, const int8_t *W, int64_t ldw) {
    const hf_isa_table *t = table_for(isa);
    return t && t->dense_s7 && hf_weights_fit_s7(N, K, W, ldw) ? HF_VARIANT_S7 : HF_VARIANT_DEFAULT;
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
    const hf_isa_table *t = any_table(isa);
    if (!t) return "unknown";
    return t->op_names[variant == HF_VARIANT_S7 ? HF_OP_DENSE_GEMM_7BIT : HF_OP_DENSE_GEMM];
}

const hf_f32_ops *hf_f32_ops_for(int isa) {
    const hf_isa_table *t = table_for(isa);
    return t ? t->f32 : NULL;
}

/* The table whose attention kernel takes head size d: isa's, or the first of its fallbacks that takes d. */
static const hf_isa_table *attention_table(const hf_isa_table *t, int64_t d, int int8) {
    while (t && d % (int8 ? t->attn_q8_step : t->attn_step))
        t = int8 ? t->attn_q8_fallback : t->attn_fallback;
    return t;
}

const hf_f32_ops *hf_attention_ops_for(int isa, int64_t d, int int8) {
    const hf_isa_table *t = attention_table(table_for(isa), d, int8);
    return t ? t->f32 : NULL;
}

hf_attention_head_rb_fn hf_attention_rb_kernel_for(int isa, int64_t d) {
    const hf_isa_table *t = attention_table(table_for(isa), d, 0);
    return t && t->f32->attention_head_rb ? t->f32->attention_head_rb : hf_attention_head_rb_ref;
}

hf_attention_q8_head_rb_fn hf_attention_q8_rb_kernel_for(int isa, int64_t d) {
    const hf_isa_table *t = attention_table(table_for(isa), d, 1);
    return t && t->f32->attention_q8_head_rb ? t->f32->attention_q8_head_rb : hf_attention_q8_head_rb_ref;
}

const hf_encoder_ops *hf_encoder_ops_for(int isa) {
    const hf_isa_table *t = table_for(isa);
    return t && t->encoder ? t->encoder : &hf_encoder_ops_ref;
}

hf_attention_head_fn hf_attention_bf16_kernel_for(int isa, int64_t d) {
    const hf_isa_table *t = table_for(isa);
    if (!t || !t->attention_bf16 || d <= 0 || d % t->attn_bf16_step || (t->attn_bf16_cpu && !t->attn_bf16_cpu()))
        return NULL;
    return t->attention_bf16;
}

hf_attention_bf16x_fn hf_attention_bf16x_kernel_for(int isa, int64_t d) {
    return hf_attention_bf16_kernel_for(isa, d) ? table_for(isa)->attention_bf16x : NULL;
}

const char *hf_attention_bf16_kernel(int isa, int64_t d) {
    if (isa == HF_ISA_AUTO) isa = hf_isa_active();
    if (!hf_attention_bf16_kernel_for(isa, d)) return "";
    return isa == HF_ISA_REF ? "ref" : isa == HF_ISA_AVX512VNNI ? "avx512bf16" : hf_isa_name(isa);
}

hf_attention_head_fn hf_attention_dq8_kernel_for(int isa, int64_t d) {
    const hf_isa_table *t = table_for(isa);
    if (!t || !t->attention_dq8 || d <= 0 || d % t->attn_dq8_step) return NULL;
    return t->attention_dq8;
}

const char *hf_attention_dq8_kernel(int isa, int64_t d) {
    if (isa == HF_ISA_AUTO) isa = hf_isa_active();
    if (!hf_attention_dq8_kernel_for(isa, d)) return "";
    return hf_isa_name(isa);
}

const hf_sparse_kernel *hf_sparse_kernel_for(int isa) {
    const hf_isa_table *t = table_for(isa);
    return t ? t->sparse : NULL;
}

int hf_glu_tile_stores(int isa) {
    const hf_isa_table *t = table_for(isa);
    return t ? t->glu_tile_stores : 0;
}

const hf_linear_ops *hf_linear_ops_for(int isa) {
    const hf_isa_table *t = table_for(isa);
    return t ? t->linear : NULL;
}

hf_head_linear_fn hf_head_linear_for(int isa) {
    const hf_isa_table *t = table_for(isa);
    return t ? t->head_linear : NULL;
}

/* The kernel a table runs op on (its own, before any head-size fallback), as an address to compare. */
static uintptr_t op_kernel_addr(const hf_isa_table *t, int op) {
    switch (op) {
    case HF_OP_DENSE_GEMM: return (uintptr_t)t->dense;
    case HF_OP_DENSE_GEMM_7BIT: return (uintptr_t)(t->dense_s7 ? t->dense_s7 : t->dense);
    case HF_OP_SPARSE_GEMM:
    case HF_OP_SPARSE_GEMM_7BIT: return (uintptr_t)t->sparse;
    case HF_OP_LINEAR_EPILOGUE: return (uintptr_t)t->linear->epilogue_rows;
    case HF_OP_QUANTIZE: return (uintptr_t)t->linear->quantize;
    case HF_OP_GELU: return (uintptr_t)t->linear->gelu;
    case HF_OP_LAYERNORM: return (uintptr_t)t->f32->layernorm;
    case HF_OP_ATTENTION: return (uintptr_t)t->f32->attention_head;
    case HF_OP_ATTENTION_Q8: return (uintptr_t)t->f32->attention_q8_head;
    default: return 0;
    }
}

/* The name of the kernel the functions above pick: that of the table owning it (the first holding it, by ISA id),
 * derived from the pick itself, so hf_op_kernel cannot drift from the dispatch. */
const char *hf_op_kernel(int op, int isa, int64_t arg) {
    const hf_isa_table *t;
    uintptr_t k;
    if (isa == HF_ISA_AUTO) isa = hf_isa_active();
    if (!(t = table_for(isa)) || op < 0 || op >= HF_OP_COUNT) return "";
    if (op == HF_OP_ATTENTION || op == HF_OP_ATTENTION_Q8) {
        if (arg <= 0) return "";
        t = attention_table(t, arg, op == HF_OP_ATTENTION_Q8);
    }
    k = op_kernel_addr(t, op);
    for (int i = 0; i < HF_ISA_COUNT; i++) {
        const hf_isa_table *o = any_table(i);
        if (o && op_kernel_addr(o, op) == k) return o->op_names[op];
    }
    return "unknown";
}

const char *hf_version(void) { return HF_VERSION_STRING; }
