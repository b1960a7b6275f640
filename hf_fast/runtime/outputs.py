"""Model outputs with or without torch.

With torch installed, FastModel returns transformers' own ``SequenceClassifierOutput`` & co. holding float32 torch
tensors (what pipelines and Trainer expect). A runtime-only install (no torch: ``transformers.modeling_outputs``
imports torch) gets same-named ``ModelOutput`` dataclasses with the same fields, holding numpy arrays. They are
defined on first use only: defining a ModelOutput subclass registers it with torch, which would import torch.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from hf_fast._deps import torch_or_none


@functools.cache
def _numpy_outputs() -> dict[str, type]:
    from transformers.utils import ModelOutput

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

    @dataclass
    class BaseModelOutput(ModelOutput):
        last_hidden_state: Any = None
        hidden_states: Any = None
        attentions: Any = None

    @dataclass
    class BaseModelOutputWithPooling(ModelOutput):
        last_hidden_state: Any = None
        pooler_output: Any = None
        hidden_states: Any = None
        attentions: Any = None

    return {c.__name__: c for c in (SequenceClassifierOutput, TokenClassifierOutput, QuestionAnsweringModelOutput,
                                    BaseModelOutput, BaseModelOutputWithPooling)}


def output_class(name: str):
    """transformers.modeling_outputs.<name> when torch is installed, else its numpy twin."""
    if torch_or_none() is None:
        return _numpy_outputs()[name]
    import transformers.modeling_outputs as mo

    return getattr(mo, name)


def to_tensors(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """float32 torch tensors (sharing memory) when torch is installed, else float32 numpy arrays."""
    out = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}
    torch = torch_or_none()
    return out if torch is None else {k: torch.from_numpy(v) for k, v in out.items()}
