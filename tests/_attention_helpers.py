"""Shared inputs of the attention-kernel tests (fp32 / bf16 / dynamic int8): random q, k, v with the mask patterns
the kernels must handle, and a tiny default-export (fp32-attention) BERT with head size 16 run in the engine."""
import json

import numpy as np
import onnx
from _export_helpers import calibration_for, tiny_model

from hf_fast.runtime.engine import NativeEngine


def attention_inputs(s, heads, d, mask, seed, scale=1.0):
    """q, k, v [s, heads * d] and a key mask: None, "random" (first key kept), "all" (every key masked), "tail"
    (the last third masked) or "middle" (keys 5-19 masked)."""
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((s, heads * d)).astype(np.float32) * scale for _ in range(3))
    m = None
    if mask == "random":
        m = (rng.random(s) > 0.3).astype(np.int64)
        m[0] = 1
    elif mask == "all":
        m = np.zeros(s, np.int64)
    elif mask == "tail":
        m = np.ones(s, np.int64)
        m[s - s // 3:] = 0
    elif mask == "middle":
        m = np.ones(s, np.int64)
        m[5:20] = 0
    return q, k, v, m


def fp32_attention_artifact(directory, tok):
    """a tiny BERT (2 layers, hidden 64, 4 heads of 16: the AVX-512 kernels' smallest head) exported by default"""
    from hf_fast.export import export

    m = tiny_model("bert", "text-classification", tok.vocab_size, seed=2, layers=2, hidden=64, heads=4, ffn=128,
                   max_pos=64)
    export(m, tok, directory, calibration_dataset=calibration_for("text-classification"), progress=False,
           smooth_quant=None)
    return directory


def engine_feeds(rng, b=3, s=20):
    """a batch of random ids with one padded row"""
    ids = rng.integers(1000, 30000, size=(b, s)).astype(np.int64)
    mask = np.ones((b, s), np.int64)
    mask[1, s - 6:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros((b, s), np.int64)}


def engine_for(d, **kw):
    fc = json.loads((d / "fast_config.json").read_text())
    return NativeEngine.from_onnx(onnx.load(str(d / "model.onnx")), fc["num_heads"], block="4x1", **kw)
