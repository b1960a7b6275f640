/* The aarch64 dispatch tables: NEON, dot product (SDOT) and i8mm (USDOT sparse, USMMLA dense). The GEMMs have ARM kernels; the
 * epilogue, GELU, the quantizer, LayerNorm and the attention (fp32: head sizes d % 4 == 0, int8: d % 8 == 0; others:
 * the reference) have a NEON kernel shared by the three levels (hf_op_kernel reports "neon"). */
#include "arm.h"

static const hf_dense_kernel dense_neon = {hf_arm_dense_packed_size, hf_arm_dense_pack, hf_dense_gemm_neon};
static const hf_dense_kernel dense_dotprod = {hf_arm_dense_packed_size, hf_arm_dense_pack, hf_dense_gemm_dotprod};
static const hf_dense_kernel dense_i8mm = {hf_arm_mmla_packed_size, hf_arm_mmla_pack, hf_dense_gemm_i8mm}; /* USMMLA */
static const hf_sparse_kernel sparse_neon = {hf_arm_sparse_pack, hf_sparse_gemm_neon, NULL};
static const hf_sparse_kernel sparse_dotprod = {hf_arm_sparse_pack, hf_sparse_gemm_dotprod, NULL};
static const hf_sparse_kernel sparse_i8mm = {hf_arm_sparse_pack, hf_sparse_gemm_i8mm, NULL};
static const hf_linear_ops linear_arm = {hf_epilogue_rows_neon, hf_gelu_neon, hf_quantize_neon, hf_quantize_mul_neon};
static const hf_f32_ops f32_arm = {hf_layernorm_neon, hf_attention_head_neon, hf_attention_q8_head_neon};

#define ARM_TABLE(id, lvl)                                                                                           \
    {                                                                                                                \
        .isa = id, .dense = &dense_##lvl, .dense_s7 = NULL, .sparse = &sparse_##lvl, .linear = &linear_arm,          \
        .f32 = &f32_arm, .head_linear = hf_head_linear_arm, .attn_step = 4, .attn_q8_step = 8,                       \
        .attn_fallback = &hf_table_ref, .attn_q8_fallback = &hf_table_ref,                                           \
        .op_names = {[HF_OP_DENSE_GEMM] = #lvl, [HF_OP_DENSE_GEMM_7BIT] = #lvl, [HF_OP_SPARSE_GEMM] = #lvl,          \
                     [HF_OP_SPARSE_GEMM_7BIT] = #lvl, [HF_OP_LINEAR_EPILOGUE] = "neon", [HF_OP_QUANTIZE] = "neon",     \
                     [HF_OP_GELU] = "neon", [HF_OP_LAYERNORM] = "neon", [HF_OP_ATTENTION] = "neon",                     \
                     [HF_OP_ATTENTION_Q8] = "neon"},                                                                  \
    }

static const hf_isa_table table_neon = ARM_TABLE(HF_ISA_NEON, neon);
static const hf_isa_table table_dotprod = ARM_TABLE(HF_ISA_DOTPROD, dotprod);
static const hf_isa_table table_i8mm = ARM_TABLE(HF_ISA_I8MM, i8mm);

const hf_isa_table *hf_arch_table(int isa) {
    switch (isa) {
    case HF_ISA_NEON: return &table_neon;
    case HF_ISA_DOTPROD: return &table_dotprod;
    case HF_ISA_I8MM: return &table_i8mm;
    default: return NULL;
    }
}
