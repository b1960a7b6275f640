"""hf-fast: block-sparse int8 BERT-family models on CPUs.

train (FastTrainer: block pruning + distillation) -> export (sparse int8 ONNX fast artifact)
-> run (native block-sparse int8 engine, ONNX Runtime as the baseline).
Heavy modules (torch, transformers) load lazily, so ``import hf_fast`` stays cheap.
"""
from hf_fast.native import NativeError, UnsupportedISAError, native_info

__version__ = "0.1.0"
__all__ = ["native_info", "NativeError", "UnsupportedISAError", "__version__"]
