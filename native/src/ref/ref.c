/* The scalar reference table: every architecture has it, and every other ISA's kernels match it (bit for bit on the
 * integer paths). */
#include "internal.h"
#include "ref/head_linear.h"

static void head_linear_ref(int64_t N, int64_t K, const float *W, const float *b, int64_t rows, const float *in,
                            float *out) {
    hf_head_linear_body(N, K, W, b, rows, in, out);
}

static const hf_linear_ops linear_ref = {hf_epilogue_rows_ref, hf_gelu_ref, hf_quantize_ref, hf_quantize_mul_ref};
static const hf_f32_ops f32_ref = {hf_layernorm_ref, hf_attention_head_ref, hf_attention_q8_head_ref,
                                   hf_attention_head_rb_ref, hf_attention_q8_head_rb_ref};

const hf_isa_table hf_table_ref = {
    .isa = HF_ISA_REF,
    .dense = &hf_dense_ref,
    .dense_s7 = NULL,
    .sparse = &hf_sparse_ref,
    .linear = &linear_ref,
    .f32 = &f32_ref,
    .head_linear = head_linear_ref,
    .attn_step = 1,
    .attn_q8_step = 1,
    .attention_bf16 = hf_attention_head_bf16_ref,
    .attention_bf16x = hf_attention_bf16x_ref,
    .attn_bf16_step = 1,
    .attention_dq8 = hf_attention_head_dq8_ref,
    .attn_dq8_step = 1,
    .op_names = {"ref", "ref", "ref", "ref", "ref", "ref", "ref", "ref", "ref", "ref"},
};
