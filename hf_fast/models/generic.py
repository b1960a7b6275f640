"""Encoders of a model type the registry has no module for (DeBERTa-v2, ALBERT, ...): what hf-fast can still do.

They export to the same int8 artifact and run in ONNX Runtime (the native engine runs registry families only), and
FastTrainer prunes them. One rule replaces a family's ``prunable_linears`` / ``onnx_layer`` regexes:

    the encoder Linears are the ``nn.Linear`` modules inside the layer stacks (``nn.ModuleList``s) of the base
    model's ``encoder`` (``model.base_model.encoder``): attention projections and FFN, never the embeddings,
    an embeddings projection outside the stack (ALBERT's ``embedding_hidden_mapping_in``) or the task head.

The exporter quantizes exactly the MatMuls of those Linears (`onnx_linear_matmuls`) and the trainer prunes exactly
them (`encoder_linears`), so a pruned zero block is an int8 zero block in the artifact. Importing this module is
cheap: torch is needed only by the functions that take a model.
"""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Any

# where transformers configs of any family keep the canonical keys (spec.CONFIG_KEYS), first found wins
CONFIG_NAMES: dict[str, tuple[str, ...]] = {
    "num_layers": ("num_hidden_layers", "n_layers", "num_layers", "n_layer"),
    "hidden_size": ("hidden_size", "dim", "d_model", "n_embd"),
    "num_heads": ("num_attention_heads", "n_heads", "n_head"),
    "intermediate_size": ("intermediate_size", "hidden_dim", "ffn_dim", "d_ff"),
}
ENCODER_NAMES = ("encoder", "transformer", "layers")  # the base model's layer-stack module (DistilBERT: transformer;
# ModernBERT keeps its nn.ModuleList of layers on the base model itself)


def engine_reason(model_type: str | None) -> str:
    """Why the native engine does not run ``model_type``: fast_config "native_engine" and the fallback warning."""
    from hf_fast.models import registry

    return (f"model_type {model_type!r} is not a family of the native engine (it runs "
            f"{', '.join(registry.supported())}; hf_fast/models/README.md says how to add one)")


def _encoder(model: Any) -> tuple[str, Any] | None:
    """(module path, module) of the base model's encoder, None when the model has none."""
    base = getattr(model, "base_model", None)
    if base is None:
        return None
    prefix = "" if base is model else f"{getattr(model, 'base_model_prefix', '')}."
    for name in ENCODER_NAMES:
        enc = getattr(base, name, None)
        if enc is not None and hasattr(enc, "named_modules"):
            return f"{prefix}{name}".lstrip("."), enc
    return None


def encoder_linears(model: Any) -> dict[str, Any]:
    """Module path -> nn.Linear of every Linear inside a layer stack (a ModuleList index in its path) of the base
    model's encoder; {} when the model has no such encoder (a decoder such as GPT-2, a bare nn.Module)."""
    from torch import nn

    found = _encoder(model)
    if found is None:
        return {}
    prefix, enc = found
    out = {}
    for name, mod in enc.named_modules():
        # a digit path segment = an index into an nn.ModuleList / nn.Sequential: a layer of a stack
        if isinstance(mod, nn.Linear) and any(p.isdigit() for p in name.split(".")):
            out[f"{prefix}.{name}"] = mod
    return out


# Linears that stack several projections along their output axis, by the last segment of their module path: ModernBERT's
# fused Wqkv (q, k, v) and GeGLU Wi (the GELU input, then the gate its output multiplies). A pruning block must never
# straddle two parts: the block rows must divide each part (training/masks.py check_blocks_divide).
FUSED_OUTPUTS: dict[str, tuple[str, ...]] = {"Wqkv": ("q", "k", "v"), "Wi": ("input", "gate")}


def fused_parts(path: str) -> tuple[str, ...] | None:
    """The parts a fused Linear's output rows stack (FUSED_OUTPUTS), None for a Linear of one projection."""
    return FUSED_OUTPUTS.get(path.rsplit(".", 1)[-1])


def _canonical(path: str) -> str:
    """The module path of a repeated call: the tracer names the second use of a shared module (ALBERT's layers,
    DeBERTa's relative-position projections) "query_1"; drop that suffix from each path segment."""
    return ".".join(re.sub(r"_\d+$", "", p) for p in path.split("."))


def onnx_linear_matmuls(model_proto, linear_paths) -> list[str]:
    """MatMul nodes of an exported graph that run one of ``linear_paths`` (encoder_linears) on per-token activations:
    weight a 2-D float initializer, node named after the module (onnx_export names them so), first input computed
    from the graph inputs. That last test leaves out MatMuls of constants only (DeBERTa's projections of its
    relative-position table), which ONNX Runtime folds at load time anyway."""
    from hf_fast.export.onnx_export import module_path

    g = model_proto.graph
    inits = {i.name: i for i in g.initializer}
    paths = set(linear_paths)
    live = {i.name for i in g.input}
    out = []
    for n in g.node:  # ONNX nodes are topologically sorted
        if any(i in live for i in n.input):
            live.update(n.output)
        if n.op_type != "MatMul" or len(n.input) < 2 or n.input[0] not in live:
            continue
        w = inits.get(n.input[1])
        if w is None or len(w.dims) != 2 or w.data_type != 1:  # FLOAT
            continue
        p = module_path(n.name)
        # a bare encoder (task feature-extraction) is traced inside a wrapper that keeps it under its
        # base_model_prefix (onnx_export._last_hidden_state), so its nodes carry a first segment its paths lack
        if any(c in paths for c in (p, _canonical(p), p.split(".", 1)[-1], _canonical(p).split(".", 1)[-1])):
            out.append(n.name)
    return out


@dataclass(frozen=True)
class GenericFamily:
    """The exporter's view of an encoder the registry does not know (the fields of spec.Family it reads)."""

    model_type: str
    description: str
    inputs: tuple[str, ...]
    position_offset: int            # first position id (RoBERTa-style tables start at pad_token_id + 1)
    linear_paths: tuple[str, ...]   # encoder_linears
    engine = None                   # no native engine layer: ONNX Runtime runs the artifact

    @property
    def has_token_type_input(self) -> bool:
        return "token_type_ids" in self.inputs

    def config_value(self, cfg: Any, key: str, default: Any = None) -> Any:
        for name in CONFIG_NAMES[key]:
            v = getattr(cfg, name, None)
            if v is not None:
                return v
        return default

    def normalize_config(self, cfg: Any) -> dict[str, int | None]:
        """CONFIG_KEYS -> int, None where the config has none of the usual names (fast_config allows null)."""
        return {k: (None if (v := self.config_value(cfg, k)) is None else int(v)) for k in CONFIG_NAMES}

    def max_sequence_length(self, cfg: Any) -> int:
        return int(cfg.max_position_embeddings) - self.position_offset

    def dynamic_axes(self, outputs: list[str], token_level: bool) -> dict[str, dict[int, str]]:
        dyn = {k: {0: "batch", 1: "sequence"} for k in self.inputs}
        for o in outputs:
            dyn[o] = {0: "batch", 1: "sequence"} if token_level else {0: "batch"}
        return dyn

    def onnx_linear_matmuls(self, model_proto) -> list[str]:
        return onnx_linear_matmuls(model_proto, self.linear_paths)


def for_model(model: Any) -> GenericFamily:
    """The GenericFamily of a transformers encoder with a task head; ValueError naming what is missing for a model
    that is not one (no encoder layer stack, no attention_mask input, no position table size)."""
    from hf_fast.models import registry

    cfg = model.config
    model_type = getattr(cfg, "model_type", None)
    supported = ", ".join(registry.supported())
    linears = encoder_linears(model)
    if not linears:
        raise ValueError(f"unsupported architecture {model_type!r}: {type(model).__name__} has no encoder layer stack "
                         f"with Linear layers (base_model.{' / base_model.'.join(ENCODER_NAMES)}); hf-fast exports "
                         f"encoders: {supported} natively, other encoders through ONNX Runtime")
    params = inspect.signature(model.forward).parameters
    if "attention_mask" not in params:
        raise ValueError(f"unsupported architecture {model_type!r}: {type(model).__name__}.forward takes no "
                         "attention_mask")
    if not isinstance(getattr(cfg, "max_position_embeddings", None), int):
        raise ValueError(f"unsupported architecture {model_type!r}: its config has no max_position_embeddings, so "
                         "the artifact cannot bound the sequence length")
    inputs = ("input_ids", "attention_mask")
    if "token_type_ids" in params and int(getattr(cfg, "type_vocab_size", 0) or 0) > 0:
        inputs += ("token_type_ids",)
    pos = getattr(getattr(getattr(model.base_model, "embeddings", None), "position_embeddings", None),
                  "padding_idx", None)
    return GenericFamily(model_type=str(model_type), description=type(model.base_model).__name__.removesuffix("Model"),
                         inputs=inputs, position_offset=0 if pos is None else int(pos) + 1,
                         linear_paths=tuple(linears))
