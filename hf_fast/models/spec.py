"""What hf-fast knows about one model family, as data: the `Family` record each family module fills in.

Pure Python (no torch, no onnx), so the runtime and the CLI can read it on a runtime-only install.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# canonical config key -> what it means; each family says under which attribute names its config holds it
CONFIG_KEYS = ("num_layers", "hidden_size", "num_heads", "intermediate_size")

POSITION_RULES = ("absolute", "padding-offset")
NORM_POSITIONS = ("post",)  # "pre" comes with the engine's layer description (issue 18 item 6)
ACTIVATIONS = ("gelu",)
LINEAR_ROLES = ("q", "k", "v", "attn_out", "ffn_in", "ffn_out")
HEAD_OPS = ("cls", "linear", "tanh", "relu")  # the engine's head program (runtime/plan.py HeadOp kinds)
# sentence-embedding ops (task feature-extraction): not matched in the graph, whose output is the token states, but
# added from fast_config.json "pooling" (hf_fast/pooling.py) when the engine returns sentence embeddings
POOLING_HEAD_OPS = ("mean", "max", "mean_sqrt_len", "l2norm")


@dataclass(frozen=True)
class EngineLayer:
    """The encoder layer the native engine must run for this family (data for now: the C interface still
    takes a fixed post-LN BERT layer; the plan checks that the graph it matched agrees with this)."""

    norm: str = "post"               # LayerNorm after each residual Add
    linear_bias: bool = True         # every encoder Linear has a bias
    activation: str = "gelu"         # FFN activation (exact erf GELU)
    position: str = "absolute"       # "absolute": row t of the table; "padding-offset": RoBERTa's pad + 1 + t
    token_types: bool = True         # a token-type embedding table is added (an all-zero row when not an input)

    def __post_init__(self):
        for value, allowed, what in ((self.norm, NORM_POSITIONS, "norm"), (self.activation, ACTIVATIONS, "activation"),
                                     (self.position, POSITION_RULES, "position")):
            if value not in allowed:
                raise ValueError(f"EngineLayer.{what}={value!r}: the engine knows {', '.join(allowed)}")


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
    onnx_layer: str                          # regex over exported ONNX node names of the encoder layers
    heads: Mapping[str, HeadLayout]          # task -> head layout
    engine: EngineLayer = field(default_factory=EngineLayer)
    # model types whose transformers modelling code is this family's (e.g. camembert -> roberta). Listed for
    # the family work to come; NOT supported until tested (registry.get refuses them).
    code_aliases: tuple[str, ...] = ()

    def __post_init__(self):
        missing = [k for k in CONFIG_KEYS if k not in self.config_names]
        if missing:
            raise ValueError(f"{self.model_type}: config_names lacks {missing}")
        if "input_ids" not in self.inputs or "attention_mask" not in self.inputs:
            raise ValueError(f"{self.model_type}: graph inputs must include input_ids and attention_mask")
        bad = sorted(set(self.linear_roles.values()) ^ set(LINEAR_ROLES))
        if bad:
            raise ValueError(f"{self.model_type}: linear_roles must name each of {LINEAR_ROLES} once ({bad})")
        re.compile(self.prunable_linears)
        re.compile(self.onnx_layer)
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
        max_pos = int(cfg.max_position_embeddings)
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
