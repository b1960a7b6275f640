"""Python side of the native runtime: the cffi module hf_fast._native (built from native/) on numpy arrays.

One module per job; this package hands their names on (``from hf_fast import native; native.gemm_u8s8s32(...)``):

- ``_loader``: loads hf_fast._native (or ``HF_FAST_NATIVE_DIR``'s build), raises C status codes as exceptions, the
  ISA choice (``use_isa``, ``op_kernel``), threads and ``native_info()``;
- ``kernels``: the GEMMs, packed Linear layers, quantizer, GELU, LayerNorm and attention;
- ``autotune``: ``preferred_block()``, the block shape measured fastest on this CPU, and its on-disk cache;
  ``bf16_attention_pays()``, whether bf16 attention is the faster kernel here.
"""
from hf_fast.native._loader import (
    BUILT_ISA_NAMES,
    ISA_NAMES,
    KERNEL_OPS,
    NativeError,
    UnsupportedISAError,
    active_isa,
    ffi,
    get_num_threads,
    isa_id,
    lib,
    native_info,
    num_threads,
    op_kernel,
    set_isa,
    set_num_threads,
    supported_isas,
    use_isa,
)
from hf_fast.native._loader import _check as _check  # the status check the engine wrapper shares
from hf_fast.native.autotune import _pref_memo as _pref_memo  # tests clear the in-process memo
from hf_fast.native.autotune import bf16_attention_pays, preferred_block
from hf_fast.native.kernels import (
    BLOCK_SHAPES,
    DenseWeight,
    PackedLinear,
    SparseWeight,
    attention,
    attention_bf16,
    attention_bf16_ex,
    attention_bf16_kernel,
    attention_dq8,
    attention_dq8_kernel,
    attention_q8,
    attention_relbias,
    attn_quant_struct,
    bf16_attention_hardware,
    gelu,
    gemm_u8s8s32,
    int8_peak_gmacs,
    int8_peak_probe,
    layernorm,
    linear_chain,
    quantize_u8,
    relative_position_bias,
    sparse_gemm_u8s8s32,
)

__all__ = [
    "BLOCK_SHAPES", "BUILT_ISA_NAMES", "ISA_NAMES", "KERNEL_OPS", "DenseWeight", "NativeError", "PackedLinear",
    "SparseWeight", "UnsupportedISAError", "active_isa", "attention", "attention_bf16", "attention_bf16_ex",
    "attention_bf16_kernel",
    "attention_dq8", "attention_dq8_kernel",
    "attention_q8", "attention_relbias", "attn_quant_struct", "bf16_attention_hardware", "bf16_attention_pays", "ffi",
    "gelu",
    "gemm_u8s8s32", "get_num_threads", "int8_peak_gmacs", "int8_peak_probe", "isa_id", "layernorm", "lib",
    "linear_chain", "native_info", "num_threads", "op_kernel", "preferred_block", "quantize_u8",
    "relative_position_bias", "set_isa", "set_num_threads", "sparse_gemm_u8s8s32", "supported_isas", "use_isa",
]
