"""The native engine built straight from a PyTorch ModernBERT (transformers' ModernBertModel): pre-LN layers without
biases, the fused Wqkv with rotary q / k (a theta per layer type), GeGLU in Wi, sliding-window attention in the local
layers and global attention every ``global_attn_every_n_layers``-th layer.

Artifacts (save_fast / export) run in the engine through the ONNX plan (runtime/plan.py reads ModernBERT's graph:
models/modernbert.py); this builder checks the engine's ModernBERT ops against PyTorch without an export and times them:
weights are quantized per output channel (symmetric int8, what the exporter writes), each Linear's uint8 input
scale / zero point comes from the min / max of its input over calibration batches (``calibrate``).
"""
from __future__ import annotations

import numpy as np

from hf_fast import native
from hf_fast.models import modernbert
from hf_fast.models.spec import EngineLayer
from hf_fast.native import ffi, lib
from hf_fast.runtime import engine as engine_mod

MODERNBERT_LAYER = modernbert.FAMILY.engine  # the engine description of ModernBERT's encoder layer
_LINEARS = ("attn.Wqkv", "attn.Wo", "mlp.Wi", "mlp.Wo")


def _quant_weight(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel int8: (int8 weight, fp32 scale per row)."""
    amax = np.abs(w).max(axis=1)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def _act_quant(lo: float, hi: float) -> tuple[float, int]:
    """uint8 asymmetric scale / zero point covering [min(lo, 0), max(hi, 0)] (onnxruntime's MinMax calibration)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0 if hi > lo else 1.0
    return float(scale), int(np.clip(np.rint(-lo / scale), 0, 255))


def calibrate(model, batches) -> dict[str, tuple[float, int]]:
    """{"layers.<i>.<Linear>": (scale, zero point)} of each encoder Linear's input over ``batches`` (iterable of
    (input_ids, attention_mask) int tensors) run through the PyTorch ``model`` (a ModernBertModel)."""
    import torch

    ranges: dict[str, list[float]] = {}
    hooks = []
    for i, layer in enumerate(model.layers):
        for name in _LINEARS:
            key = f"layers.{i}.{name}"

            def hook(_mod, inp, key=key):
                x = inp[0].detach()
                r = ranges.setdefault(key, [np.inf, -np.inf])
                r[0], r[1] = min(r[0], float(x.min())), max(r[1], float(x.max()))

            hooks.append(layer.get_submodule(name).register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            for ids, mask in batches:
                model(input_ids=ids, attention_mask=mask)
    finally:
        for h in hooks:
            h.remove()
    return {k: _act_quant(*v) for k, v in ranges.items()}


class ModernBertEngine:
    """ModernBertModel's last_hidden_state from the native engine. ``quant``: calibrate()'s output. ``block``:
    "dense" or a kernel block shape ("4x1", "1x4") for pruned weights. ``leave_out``: ops to drop from the engine's
    description ("rotary", "window", "gate"), for the mutation tests that show each one is needed. ``unfused_geglu``:
    pack Wi plainly, so GeGLU runs as the separate pass after an fp32 [T][2F] output (the fused epilogue's baseline).
    ``attention``: "fp32" (default) or "bf16" (hf_engine_set_attention_precision: the bf16 kernels, the sliding-window
    variant in the local layers; NativeError where the ISA has no bf16 kernel)."""

    def __init__(self, model, quant: dict[str, tuple[float, int]], isa: str = "auto", block: str = "dense",
                 leave_out: tuple[str, ...] = (), unfused_geglu: bool = False, attention: str = "fp32"):
        if attention not in ("fp32", "bf16"):
            raise ValueError(f"attention={attention!r}: expected 'fp32' or 'bf16'")
        bad = set(leave_out) - {"rotary", "window", "gate"}
        if bad:
            raise ValueError(f"leave_out: unknown ops {sorted(bad)} (rotary, window, gate)")
        cfg = model.config
        H, heads, F, L = cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, cfg.num_hidden_layers
        if getattr(cfg, "hidden_activation", "gelu") != "gelu":
            raise NotImplementedError(f"ModernBERT with hidden_activation={cfg.hidden_activation!r}: the engine's "
                                      "GeGLU is the exact (erf) GELU's")
        self.max_positions = int(cfg.max_position_embeddings)
        types = list(cfg.layer_types)
        windows = [int(cfg.sliding_window) if t == "sliding_attention" else 0 for t in types]
        thetas = [float(cfg.rope_parameters[t]["rope_theta"]) for t in types]
        layer = MODERNBERT_LAYER
        if "rotary" in leave_out:
            layer = EngineLayer(norm="pre", linear_bias=False, activation="geglu", position="absolute",
                                token_types=False)
        if "gate" in leave_out:
            layer = EngineLayer(norm="pre", linear_bias=False, activation="gelu", position=layer.position,
                                token_types=False)
        if "window" in leave_out:
            windows = [0] * L
        self.windows, self.rope_theta = windows, thetas
        desc, _keep = engine_mod.model_desc(
            layer, isa=isa, hidden=H, heads=heads, ffn=F, layers=L, vocab=cfg.vocab_size, max_pos=self.max_positions,
            attn_window=windows, rope_theta=thetas if layer.position == "rotary" else None)
        self._e = engine_mod._create(desc)
        self.isa = native.ISA_NAMES[lib.hf_engine_isa(self._e)]
        self._keep = []
        f = self._f32
        emb = model.embeddings
        word = f(emb.tok_embeddings.weight)
        pos = np.zeros((self.max_positions, H), np.float32) if layer.position != "rotary" else None
        g, b = self._ln(emb.norm, H)
        native._check(lib.hf_engine_set_embeddings(self._e, self._p(word), self._p(pos), ffi.NULL, self._p(g),
                                                   self._p(b), float(emb.norm.eps)), "engine_set_embeddings")
        self.packed_bytes = 0
        for i, lyr in enumerate(model.layers):
            d = ffi.new("hf_engine_layer_desc *")
            lins = {}
            for name in _LINEARS:
                w = f(lyr.get_submodule(name).weight)
                bias = lyr.get_submodule(name).bias
                if name == "mlp.Wi" and "gate" in leave_out:  # GELU(a) without the gate: Wi's first half only
                    w = w[:F]
                qw, ws = _quant_weight(w)
                # Wi with its gate: packed for the gated epilogue (no fp32 [T][2F]) where F allows (a multiple of 4)
                glu = name == "mlp.Wi" and "gate" not in leave_out and F % 4 == 0 and not unfused_geglu
                pl = native.PackedLinear(qw, ws, None if bias is None else f(bias)[: w.shape[0]],
                                         block=block, isa=isa, geglu=glu)
                self._keep.append(pl)
                self.packed_bytes += pl.nbytes
                lins[name] = (pl, quant[f"layers.{i}.{name}"])
            d.qkv, d.attn_out, d.ffn_in, d.ffn_out = (lins[n][0]._l for n in _LINEARS)
            (d.qkv_scale, d.qkv_zp), (d.o_scale, d.o_zp) = lins["attn.Wqkv"][1], lins["attn.Wo"][1]
            (d.i_scale, d.i_zp), (d.f_scale, d.f_zp) = lins["mlp.Wi"][1], lins["mlp.Wo"][1]
            d.att_scale = float((H // heads) ** -0.5)
            if hasattr(lyr.attn_norm, "weight"):  # layer 0's attn_norm is an Identity: ln1 stays NULL
                g1, b1 = self._ln(lyr.attn_norm, H)
                d.ln1_g, d.ln1_b, d.ln1_eps = self._p(g1), self._p(b1), float(lyr.attn_norm.eps)
            g2, b2 = self._ln(lyr.mlp_norm, H)
            d.ln2_g, d.ln2_b, d.ln2_eps = self._p(g2), self._p(b2), float(lyr.mlp_norm.eps)
            native._check(lib.hf_engine_set_layer(self._e, i, d), "engine_set_layer")
        g, b = self._ln(model.final_norm, H)
        native._check(lib.hf_engine_set_final_norm(self._e, self._p(g), self._p(b), float(model.final_norm.eps)),
                      "engine_set_final_norm")
        self.width = int(lib.hf_engine_output_width(self._e))
        if attention == "bf16":
            native._check(lib.hf_engine_set_attention_precision(self._e, lib.HF_ATTN_BF16),
                          "engine_set_attention_precision")
        self.attention = attention

    def _f32(self, t) -> np.ndarray:
        a = np.ascontiguousarray(t.detach().float().numpy(), np.float32)
        self._keep.append(a)
        return a

    def _ln(self, ln, H: int) -> tuple[np.ndarray, np.ndarray]:
        g = self._f32(ln.weight)
        b = self._f32(ln.bias) if ln.bias is not None else np.zeros(H, np.float32)  # norm_bias=False
        self._keep.append(b)
        return g, b

    @staticmethod
    def _p(a):
        return ffi.cast("float *", a.ctypes.data) if a is not None else ffi.NULL

    def run(self, input_ids, attention_mask=None) -> np.ndarray:
        """last_hidden_state [B, S, H] float32 for int arrays input_ids / attention_mask [B, S]."""
        ids = np.ascontiguousarray(np.asarray(input_ids), np.int64)
        if ids.ndim != 2 or ids.size == 0:
            raise ValueError(f"input_ids must be a non-empty 2-D [batch, sequence] array, got shape {ids.shape}")
        b, s = ids.shape
        if s > self.max_positions:
            raise ValueError(f"sequence length {s} exceeds the model's maximum of {self.max_positions} positions "
                             "(max_position_embeddings)")
        mask = None
        if attention_mask is not None:
            mask = np.ascontiguousarray(np.asarray(attention_mask), np.int64)
            if mask.shape != ids.shape:
                raise ValueError(f"attention_mask has shape {mask.shape}, expected {ids.shape} like input_ids")
        out = np.empty((b * s, self.width), np.float32)
        ptr = lambda a: ffi.cast("int64_t *", a.ctypes.data) if a is not None else ffi.NULL  # noqa: E731
        native._check(lib.hf_engine_run(self._e, b, s, ptr(ids), ptr(mask), ffi.NULL,
                                        ffi.cast("float *", out.ctypes.data), out.size), "engine_run")
        return out.reshape(b, s, self.width)
