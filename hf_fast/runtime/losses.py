"""The loss a transformers model computes from its logits, for ``FastModel.forward(labels=...)``.

transformers' own loss functions (``transformers.loss.loss_utils``) are used, so a fast model's loss is the one
its PyTorch model reports on the same logits: sequence classification by ``config.problem_type`` (regression for
one label, single- or multi-label otherwise, inferred from the labels' dtype and recorded on the config as
transformers does), token classification with -100 ignored, question answering from start/end positions.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def _as_tensor(x: Any, name: str, batch: int):
    import torch

    if not isinstance(x, torch.Tensor):
        a = np.asarray(x)
        if a.dtype == object:
            raise ValueError(f"{name} is ragged or holds non-numbers: pad it like input_ids")
        x = torch.from_numpy(np.ascontiguousarray(a))
    if x.ndim == 0:
        x = x.reshape(1)
    if x.shape[0] != batch:
        raise ValueError(f"{name} has {x.shape[0]} rows for a batch of {batch}")
    if x.is_floating_point():
        x = x.float()  # float64 labels (numpy, lists) would not mix with float32 logits
    elif x.dtype == torch.bool:
        raise ValueError(f"{name} must hold class ids or floats, got bool")
    return x


def task_loss(task: str, config, outputs: dict[str, Any], *, labels=None, start_positions=None, end_positions=None,
              num_items_in_batch=None):
    """The transformers loss of ``task`` for ``outputs`` (torch float32 logits by output name)."""
    from transformers.loss.loss_utils import LOSS_MAPPING

    kw = {"num_items_in_batch": num_items_in_batch} if num_items_in_batch is not None else {}
    if task == "question-answering":
        if start_positions is None or end_positions is None:
            raise ValueError("the question-answering loss needs both start_positions and end_positions")
        start, end = outputs["start_logits"], outputs["end_logits"]
        b = start.shape[0]
        sp, ep = _as_tensor(start_positions, "start_positions", b), _as_tensor(end_positions, "end_positions", b)
        if sp.is_floating_point() or ep.is_floating_point():
            raise ValueError("start_positions and end_positions must be token indices (integers)")
        return LOSS_MAPPING["ForQuestionAnswering"](start, end, sp.long(), ep.long(), **kw)
    logits = outputs["logits"]
    y = _as_tensor(labels, "labels", logits.shape[0])
    if task == "token-classification":
        if tuple(y.shape) != tuple(logits.shape[:2]):
            raise ValueError(f"labels of shape {tuple(y.shape)} for logits of shape {tuple(logits.shape)}: "
                             "token classification takes one label per token (-100 where none)")
        if y.is_floating_point():
            raise ValueError("token classification labels must be class ids (integers, -100 to ignore)")
        return LOSS_MAPPING["ForTokenClassification"](logits, y.long(), config, **kw)
    if task == "text-classification":
        return LOSS_MAPPING["ForSequenceClassification"](y, logits, config, **kw)
    raise ValueError(f"no loss for task {task!r}")
