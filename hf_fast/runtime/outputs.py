"""Model outputs with or without torch.

With torch installed, FastModel returns transformers' own ``SequenceClassifierOutput`` & co. holding float32 torch
tensors (what pipelines and Trainer expect). A runtime-only install (no torch: ``transformers.modeling_outputs``
imports torch) gets the same-named ``ModelOutput`` dataclasses below, with the same fields, holding numpy arrays.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from transformers.utils import ModelOutput

from hf_fast._deps import torch_or_none


@dataclass
class SequenceClassifierOutput(ModelOutput):
    loss: Any = None
    logits: Any = None
    hidden_states: Any = None
    attentions: Any = None


@dataclass
class TokenClassifierOutput(ModelOutput):
    loss: Any = None
    logits: Any = None
    hidden_states: Any = None
    attentions: Any = None


@dataclass
class QuestionAnsweringModelOutput(ModelOutput):
    loss: Any = None
    start_logits: Any = None
    end_logits: Any = None
    hidden_states: Any = None
    attentions: Any = None


_NUMPY_OUTPUTS = {c.__name__: c for c in (SequenceClassifierOutput, TokenClassifierOutput,
                                          QuestionAnsweringModelOutput)}


def output_class(name: str):
    """transformers.modeling_outputs.<name> when torch is installed, else the numpy twin above."""
    if torch_or_none() is None:
        return _NUMPY_OUTPUTS[name]
    import transformers.modeling_outputs as mo

    return getattr(mo, name)


def to_tensors(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """float32 torch tensors (sharing memory) when torch is installed, else float32 numpy arrays."""
    out = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}
    torch = torch_or_none()
    return out if torch is None else {k: torch.from_numpy(v) for k, v in out.items()}
