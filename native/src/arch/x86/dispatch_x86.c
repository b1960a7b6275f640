/* The x86 dispatch tables: AVX2 and AVX-512 VNNI (the reference table is ref/ref.c). */
#include "x86.h"

static const hf_linear_ops linear_avx2 = {hf_epilogue_rows_avx2, hf_gelu_avx2, hf_quantize_avx2,
                                          hf_quantize_mul_avx2};
static const hf_linear_ops linear_avx512 = {hf_epilogue_rows_avx512, hf_gelu_avx512, hf_quantize_avx512,
                                            hf_quantize_mul_avx512};
static const hf_f32_ops f32_avx2 = {hf_layernorm_avx2, hf_attention_head_avx2, hf_attention_q8_head_avx2,
                                    hf_attention_head_rb_avx2, hf_attention_q8_head_rb_avx2};
static const hf_f32_ops f32_avx512 = {hf_layernorm_avx512, hf_attention_head_avx512,
                                      hf_attention_q8_head_avx512vnni, hf_attention_head_rb_avx512,
                                      hf_attention_q8_head_rb_avx512vnni};

static const hf_encoder_ops encoder_avx2 = {hf_rotary_avx2, hf_geglu_avx2, hf_attention_window_avx2};
static const hf_encoder_ops encoder_avx512 = {hf_rotary_avx512, hf_geglu_avx512, hf_attention_window_avx512};

static const hf_isa_table table_avx2 = {
    .isa = HF_ISA_AVX2,
    .dense = &hf_dense_avx2, /* exact int16 vpmaddwd */
    .dense_s7 = &hf_dense_avx2_s7, /* u8 x s8 vpmaddubsw, exact for weights in [-64, 64] */
    .sparse = &hf_sparse_avx2, /* packs 7-bit weights for its vpmaddubsw path itself */
    .linear = &linear_avx2,
    .f32 = &f32_avx2,
    .head_linear = hf_head_linear_avx2,
    .encoder = &encoder_avx2,
    .attn_step = 8,
    .attn_q8_step = 16,
    .attn_fallback = &hf_table_ref,
    .attn_q8_fallback = &hf_table_ref,
    .glu_tile_stores = 1,
    .op_names = {[HF_OP_DENSE_GEMM] = "avx2-s16", [HF_OP_DENSE_GEMM_7BIT] = "avx2-s7",
                 [HF_OP_SPARSE_GEMM] = "avx2-s16", [HF_OP_SPARSE_GEMM_7BIT] = "avx2-s7",
                 [HF_OP_LINEAR_EPILOGUE] = "avx2", [HF_OP_QUANTIZE] = "avx2", [HF_OP_GELU] = "avx2",
                 [HF_OP_LAYERNORM] = "avx2", [HF_OP_ATTENTION] = "avx2", [HF_OP_ATTENTION_Q8] = "avx2"},
};

static const hf_isa_table table_avx512vnni = {
    .isa = HF_ISA_AVX512VNNI,
    .dense = &hf_dense_avx512vnni,
    .dense_s7 = NULL,
    .sparse = &hf_sparse_avx512vnni,
    .linear = &linear_avx512,
    .f32 = &f32_avx512,
    .head_linear = hf_head_linear_avx512,
    .encoder = &encoder_avx512,
    .attn_step = 16, /* d % 16 == 8: the AVX2 kernel */
    .attn_q8_step = 16,
    .attn_fallback = &table_avx2,
    .attn_q8_fallback = &hf_table_ref,
    .attention_bf16 = hf_attention_head_bf16_avx512, /* AVX512_BF16 CPUs (Cooper Lake+, Zen 4+) */
    .attention_bf16x = hf_attention_bf16x_avx512,
    .attn_bf16_step = 16,
    .attn_bf16_cpu = hf_x86_has_avx512bf16,
    .attention_dq8 = hf_attention_head_dq8_avx512vnni,
    .attn_dq8_step = 16,
    .int8_peak = hf_int8_peak_avx512vnni,
    .glu_tile_stores = 1,
    .op_names = {[HF_OP_DENSE_GEMM] = "avx512vnni", [HF_OP_DENSE_GEMM_7BIT] = "avx512vnni",
                 [HF_OP_SPARSE_GEMM] = "avx512vnni", [HF_OP_SPARSE_GEMM_7BIT] = "avx512vnni",
                 [HF_OP_LINEAR_EPILOGUE] = "avx512", [HF_OP_QUANTIZE] = "avx512", [HF_OP_GELU] = "avx512",
                 [HF_OP_LAYERNORM] = "avx512", [HF_OP_ATTENTION] = "avx512", [HF_OP_ATTENTION_Q8] = "avx512vnni"},
};

const hf_isa_table *hf_arch_table(int isa) {
    switch (isa) {
    case HF_ISA_AVX2: return &table_avx2;
    case HF_ISA_AVX512VNNI: return &table_avx512vnni;
    default: return NULL;
    }
}
