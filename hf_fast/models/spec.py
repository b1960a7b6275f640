"""What hf-fast knows about one model family, as data: the `Family` record each family module fills in.

Pure Python (no torch, no onnx), so the runtime and the CLI can read it on a runtime-only install.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hf_fast.models.patterns import POST_LN, LayerPattern

# canonical config key -> what it means; each family says under which attribute names its config holds it
CONFIG_KEYS = ("num_layers", "hidden_size", "num_heads", "intermediate_size")

# The engine's layer description (native/include/hf_fast.h, hf_engine_model_desc): each value -> its C constant.
# The vocabulary covers the encoder families to come (rotary, GeGLU, pre-LN, relative bias, sliding window); a value
# the engine does not run yet is refused when the engine is created (NotImplementedError naming the op), so a family
# may declare it and fall back to ONNX Runtime until the kernel exists.
NORM_POSITIONS = {"post": "HF_NORM_POST", "pre": "HF_NORM_PRE"}
ACTIVATIONS = {"gelu": "HF_ACT_GELU", "gelu-tanh": "HF_ACT_GELU_TANH", "geglu": "HF_ACT_GEGLU",
               "swiglu": "HF_ACT_SWIGLU"}
POSITION_RULES = {"absolute": "HF_POS_ABSOLUTE", "padding-offset": "HF_POS_PADDING_OFFSET",
                  "rotary": "HF_POS_ROTARY"}
ATTENTION_BIASES = {"none": "HF_ATTN_BIAS_NONE", "relative": "HF_ATTN_BIAS_RELATIVE"}
BIAS_PARTS = {"qkv": "HF_BIAS_QKV", "attn_out": "HF_BIAS_ATTN_OUT", "ffn_in": "HF_BIAS_FFN_IN",
              "ffn_out": "HF_BIAS_FFN_OUT", "layernorm": "HF_BIAS_LAYERNORM"}
LINEAR_ROLES = ("q", "k", "v", "attn_out", "ffn_in", "ffn_out")
# a family whose q, k, v projections are one fused Linear (ModernBERT's Wqkv: rows q, then k, then v) names it "qkv"
FUSED_QKV_ROLES = ("qkv", "attn_out", "ffn_in", "ffn_out")
# the engine's head program (runtime/plan.py HeadOp kinds)
HEAD_OPS = ("cls", "linear", "tanh", "relu", "gelu", "layernorm")
ONNX_FUSIONS = ("layernorm",)  # what export/onnx_export.py can fuse
# sentence-embedding ops (task feature-extraction): not matched in the graph, whose output is the token states, but
# added from fast_config.json "pooling" (hf_fast/pooling.py) when the engine returns sentence embeddings
POOLING_HEAD_OPS = ("mean", "max", "mean_sqrt_len", "l2norm")


@dataclass(frozen=True)
class EngineLayer:
    """The encoder the native engine must run for this family: the Python mirror of the C engine's
    hf_engine_model_desc (runtime/engine.py fills it from this and the matched plan; runtime/plan.py checks the graph
    against position, token_types and embeddings_project)."""

    norm: str = "post"               # "post": LayerNorm after each residual Add; "pre": before each block
    # which parts have a bias: True (all), False (none) or a tuple of BIAS_PARTS keys (a missing one runs as zero)
    linear_bias: bool | tuple[str, ...] = True
    activation: str = "gelu"         # FFN activation (ACTIVATIONS; "gelu" is the exact erf GELU)
    position: str = "absolute"       # "absolute": row t of the table; "padding-offset": RoBERTa's pad + 1 + t
    token_types: bool = True         # a token-type embedding table is added (an all-zero row when not an input)
    attention_bias: str = "none"     # an additive bias on the attention scores (ATTENTION_BIASES)
    # attention_bias="relative": T5 / MPNet bucketing of key - query into relative_buckets buckets (half per
    # direction, exact up to a quarter of them, log-spaced up to relative_max_distance); a [buckets, heads] table
    relative_buckets: int = 0
    relative_max_distance: int = 0
    attention_window: int = 0        # keys within this many tokens of the query in every layer; 0 = global
    # the model may project the embeddings (embedding width -> hidden) with a Linear after their LayerNorm: ELECTRA
    # when embedding_size != hidden_size. The plan refuses a projection a family without this flag would show.
    embeddings_project: bool = False

    def __post_init__(self):
        for value, allowed, what in ((self.norm, NORM_POSITIONS, "norm"), (self.activation, ACTIVATIONS, "activation"),
                                     (self.position, POSITION_RULES, "position"),
                                     (self.attention_bias, ATTENTION_BIASES, "attention_bias")):
            if value not in allowed:
                raise ValueError(f"EngineLayer.{what}={value!r}: the engine description knows {', '.join(allowed)}")
        if not isinstance(self.linear_bias, bool) and (
                not isinstance(self.linear_bias, tuple) or not set(self.linear_bias) <= set(BIAS_PARTS)):
            raise ValueError(f"EngineLayer.linear_bias={self.linear_bias!r}: True, False or a tuple of "
                             f"{', '.join(BIAS_PARTS)}")
        if self.attention_bias == "relative" and (self.relative_buckets < 4 or self.relative_buckets % 4
                                                  or self.relative_max_distance <= self.relative_buckets // 4):
            raise ValueError(f"EngineLayer: attention_bias='relative' needs relative_buckets a multiple of 4 (>= 4) "
                             f"and relative_max_distance > relative_buckets / 4, got {self.relative_buckets}, "
                             f"{self.relative_max_distance}")
        if isinstance(self.attention_window, bool) or not isinstance(self.attention_window, int) \
                or self.attention_window < 0:
            raise ValueError(f"EngineLayer.attention_window={self.attention_window!r}: an int >= 0 (0 = global)")

    @property
    def bias_parts(self) -> tuple[str, ...]:
        if isinstance(self.linear_bias, bool):
            return tuple(BIAS_PARTS) if self.linear_bias else ()
        return self.linear_bias


@dataclass(frozen=True)
class HeadLayout:
    """A task head as the transformers class builds it: its module paths (relative to the model) in order,
    and the op program the engine runs for it (runtime/plan.py matches the graph against ``ops``)."""

    modules: tuple[str, ...]
    ops: tuple[str, ...]

    def __post_init__(self):
        bad = [o for o in self.ops if o not in HEAD_OPS]
        if bad:
            raise ValueError(f"HeadLayout.ops {bad}: the engine's head ops are {', '.join(HEAD_OPS)}")


# task feature-extraction: the graph ends at the encoder's token states; pooling comes from fast_config.json
FEATURE_EXTRACTION_HEAD = HeadLayout((), ())


def default_layer_map(n_student: int, n_teacher: int) -> dict[int, int]:
    """Student layer i -> teacher layer (i + 1) * Lt // Ls - 1 (the last layers always match)."""
    return {i: (i + 1) * n_teacher // n_student - 1 for i in range(n_student)}


@dataclass(frozen=True)
class Family:
    """Everything hf-fast needs to know about one transformers model type (see README.md next to this file)."""

    model_type: str                          # transformers' config.model_type
    description: str                         # for messages and the README table
    inputs: tuple[str, ...]                  # ONNX graph inputs, in order
    config_names: Mapping[str, tuple[str, ...]]  # CONFIG_KEYS -> config attribute names, first found wins
    prunable_linears: str                    # regex over module paths: group 1 = layer index, group 2 = Linear
    linear_roles: Mapping[str, str]          # group 2 of prunable_linears -> LINEAR_ROLES
    # regex over the exported ONNX node names of the encoder layers. No longer read: the graph walker matches
    # ``layer`` instead. Kept only so that family modules written against it still load; to be removed.
    onnx_layer: str
    heads: Mapping[str, HeadLayout]          # task -> head layout
    engine: EngineLayer = field(default_factory=EngineLayer)
    # the ops of one encoder layer (models/patterns.py), matched by runtime/walker.py: the exporter quantizes the
    # Linears it finds, the runtime plan reads them
    layer: LayerPattern = POST_LN
    # model types whose transformers modelling code is this family's (e.g. camembert -> roberta). Listed for
    # the family work to come; NOT supported until tested (registry.get refuses them).
    code_aliases: tuple[str, ...] = ()
    # config attribute -> the value the family's graph needs (I-BERT's integer-only quant_mode, ERNIE's task-type
    # table): a config with another value computes another graph, and export refuses it by name (check_config)
    config_requirements: Mapping[str, Any] = field(default_factory=dict)
    # ONNX rewrites the exporter applies after tracing (export/onnx_export.py _fuse): "layernorm" when the family's
    # code spells LayerNorm out in elementwise ops (I-BERT's float mode) and the plan needs one LayerNormalization
    onnx_fusions: tuple[str, ...] = ()
    # class names of the prunable modules besides torch's nn.Linear: I-BERT's QuantLinear (F.linear in float mode)
    linear_classes: tuple[str, ...] = ()

    def __post_init__(self):
        missing = [k for k in CONFIG_KEYS if k not in self.config_names]
        if missing:
            raise ValueError(f"{self.model_type}: config_names lacks {missing}")
        if "input_ids" not in self.inputs or "attention_mask" not in self.inputs:
            raise ValueError(f"{self.model_type}: graph inputs must include input_ids and attention_mask")
        roles = set(self.linear_roles.values())
        want = FUSED_QKV_ROLES if "qkv" in roles else LINEAR_ROLES
        bad = sorted(roles ^ set(want))
        if bad or len(self.linear_roles) != len(want):
            raise ValueError(f"{self.model_type}: linear_roles must name each of {LINEAR_ROLES} (or {FUSED_QKV_ROLES} "
                             f"with a fused qkv Linear) once ({bad})")
        re.compile(self.prunable_linears)
        re.compile(self.onnx_layer)
        got = sorted(ln.name for ln in self.layer.linears)
        if got != sorted(want):
            raise ValueError(f"{self.model_type}: layer pattern {self.layer.name!r} has Linears {got}, "
                             f"expected {sorted(want)}")
        bad = [f for f in self.onnx_fusions if f not in ONNX_FUSIONS]
        if bad:
            raise ValueError(f"{self.model_type}: onnx_fusions {bad}; the exporter fuses {', '.join(ONNX_FUSIONS)}")
        if "feature-extraction" not in self.heads:  # every encoder's bare form: the token states, no head modules
            object.__setattr__(self, "heads", {**self.heads, "feature-extraction": FEATURE_EXTRACTION_HEAD})

    # ---------------------------------------------------------------- config
    def config_value(self, cfg: Any, key: str, default: Any = None) -> Any:
        """The value of canonical ``key`` (CONFIG_KEYS) in a transformers config (``n_layers`` for DistilBERT's
        ``num_layers``, ...); ``default`` when the config has none of its names."""
        for name in self.config_names[key]:
            v = getattr(cfg, name, None)
            if v is not None:
                return v
        return default

    def check_config(self, cfg: Any) -> None:
        """ValueError naming the first config attribute whose value gives a graph other than this family's."""
        for name, want in self.config_requirements.items():
            got = getattr(cfg, name, want)
            if got != want:
                raise ValueError(f"{self.description} with {name}={got!r} computes another graph than hf-fast "
                                 f"runs; only {name}={want!r} is supported")

    def derive(self, model_type: str, description: str, **changes: Any) -> Family:
        """This family under another model type whose transformers code builds the same modules (CamemBERT,
        XLM-RoBERTa from RoBERTa's code): same graph, inputs, names and heads unless ``changes`` say otherwise."""
        return dataclasses.replace(self, model_type=model_type, description=description,
                                   code_aliases=changes.pop("code_aliases", ()), **changes)

    def normalize_config(self, cfg: Any) -> dict[str, int]:
        """CONFIG_KEYS -> int, read under this family's names."""
        out = {}
        for k in CONFIG_KEYS:
            v = self.config_value(cfg, k)
            if v is None:
                raise ValueError(f"{self.model_type} config has none of {self.config_names[k]} ({k})")
            out[k] = int(v)
        return out

    def max_sequence_length(self, cfg: Any) -> int:
        """Longest input the position table allows (padding-offset positions start at pad_token_id + 1)."""
        max_pos = int(cfg.max_position_embeddings)  # rotary: no table, the longest sequence the model was built for
        if self.engine.position == "padding-offset":
            return max_pos - (int(cfg.pad_token_id) + 1)
        return max_pos

    # ---------------------------------------------------------------- graph
    @property
    def has_token_type_input(self) -> bool:
        return "token_type_ids" in self.inputs

    def dynamic_axes(self, outputs: list[str], token_level: bool) -> dict[str, dict[int, str]]:
        """torch.onnx.export dynamic_axes: batch and sequence on every input; outputs per token or per sequence."""
        dyn = {k: {0: "batch", 1: "sequence"} for k in self.inputs}
        for o in outputs:
            dyn[o] = {0: "batch", 1: "sequence"} if token_level else {0: "batch"}
        return dyn

    # ---------------------------------------------------------------- training
    def linear_role(self, module_path: str) -> tuple[int, str] | None:
        """(layer index, role) of a prunable encoder Linear's module path, None for any other module."""
        m = re.search(self.prunable_linears, module_path)
        return (int(m.group(1)), self.linear_roles[m.group(2)]) if m else None

    def layer_map(self, n_student: int, n_teacher: int) -> dict[int, int]:
        """Which teacher layer each student layer distils from (hidden states / attention)."""
        return default_layer_map(n_student, n_teacher)
