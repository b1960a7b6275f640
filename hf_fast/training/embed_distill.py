"""Label-free distillation of sentence embeddings (``distill.loss = "embedding-*"``): the student learns the
teacher's pooled, L2-normalised sentence embeddings, as sentence-transformers' distillation recipe
(``MSELoss`` on the teacher's embeddings) does, plus the optional hidden-state / attention MSE terms of
``DistillationLoss``.

    embedding-mse:         mean over dims of (e_s - e_t)^2        (= (2 - 2 cos) / dim for unit vectors)
    embedding-cosine:      1 - cos(e_s, e_t)
    embedding-mse+cosine:  their sum

averaged over the batch, plus with ``distill.relation_weight`` a ranking term: the KL from the teacher's softmax
over anchor scores ``t_i . a / T`` to the student's ``s_i . a / T``, where the anchors ``a`` are the teacher's
embeddings of the other texts of the batch and of the ``RELATION_ANCHORS`` texts before it (a queue, as MoCo keeps
one). Still label-free: every target is the teacher's. Student and teacher are feature-extraction models (``AutoModel``:
``last_hidden_state``); the pooling is the teacher's own sentence-transformers config
(``hf_fast.pooling.from_folder``) unless ``distill.pooling`` names one.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from hf_fast import pooling as pooling_mod
from hf_fast.training.config import EMBEDDING_LOSSES, DistillConfig
from hf_fast.training.distillation import DistillationLoss, _get, head_kind

# Teacher embeddings kept as anchors of the ranking term. Batches come grouped by length (questions with questions),
# so the queue is what puts paragraphs among a question's anchors; ~60 batches of 16 span several length groups.
RELATION_ANCHORS = 1024


def pool_torch(hidden: torch.Tensor, attention_mask: torch.Tensor | None, mode: str) -> torch.Tensor:
    """sentence-transformers' Pooling over the kept tokens, differentiable: [B, S, H] -> [B, H] (the torch twin of
    ``hf_fast.pooling.pool``)."""
    m = (torch.ones(hidden.shape[:2], device=hidden.device) if attention_mask is None
         else attention_mask.to(hidden.dtype))
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return hidden.masked_fill(m[..., None] <= 0, -1e9).max(dim=1).values
    if mode in ("mean", "mean_sqrt_len"):
        s = (hidden * m[..., None]).sum(dim=1)
        n = m.sum(dim=1, keepdim=True).clamp_min(1e-9)
        return s / (n.sqrt() if mode == "mean_sqrt_len" else n)
    raise ValueError(f"pooling mode {mode!r}: one of {', '.join(pooling_mod.POOLING_MODES)}")


def sentence_embeddings(outputs, attention_mask: torch.Tensor | None, mode: str) -> torch.Tensor:
    """Pooled, L2-normalised sentence embeddings of a feature-extraction model's outputs."""
    h = _get(outputs, "last_hidden_state")
    if h is None:
        raise ValueError("embedding distillation needs `last_hidden_state`: load student and teacher with "
                         "transformers.AutoModel (a feature-extraction model), not a task head")
    return F.normalize(pool_torch(h.float(), attention_mask, mode), dim=-1)


def resolve_pooling(config: DistillConfig, teacher=None, student=None) -> str:
    """The pooling mode of the embedding loss: ``config.pooling``, else the teacher's (then the student's) own
    sentence-transformers folder, else sentence-transformers' default (mean)."""
    if config.pooling is not None:
        return config.pooling
    for m in (teacher, student):
        src = str(getattr(getattr(m, "config", None), "_name_or_path", "") or "")
        if src and os.path.isdir(src):
            rec = pooling_mod.from_folder(src)
            if rec is not None:
                return rec["mode"]
    return pooling_mod.DEFAULT["mode"]


def check_embedding_models(student, teacher, config: DistillConfig) -> None:
    """ValueError when the loss does not fit the models: embedding losses need feature-extraction models (no task
    head), a task head's KL needs heads."""
    heads = {n: head_kind(m) for n, m in (("student", student), ("teacher", teacher))}
    if config.embedding_loss:
        with_head = {n: k for n, k in heads.items() if k is not None}
        if with_head:
            raise ValueError(f"distill.loss={config.loss!r} distils sentence embeddings, but the "
                             f"{' and '.join(with_head)} has a task head ({', '.join(with_head.values())}): load "
                             "both with transformers.AutoModel (feature extraction), or distill.loss='kl' for a head")
    elif all(k is None for k in heads.values()) and type(student).__name__.endswith("Model") \
            and hasattr(student, "config"):
        raise ValueError(f"{type(student).__name__} is a feature-extraction model (no task head, no logits): distil "
                         f"its sentence embeddings with distill.loss one of {EMBEDDING_LOSSES}")


class EmbeddingDistillationLoss(DistillationLoss):
    """DistillationLoss whose main term compares pooled, normalised sentence embeddings (see module doc).

    Args:
        config: a DistillConfig with an ``embedding-*`` loss.
        layer_map: resolved layer map for the hidden/attention MSE terms.
        pooling: the resolved pooling mode (``resolve_pooling``).
    """

    def __init__(self, config: DistillConfig, layer_map: dict[int, int] | None = None, pooling: str = "mean"):
        if not config.embedding_loss:
            raise ValueError(f"EmbeddingDistillationLoss needs distill.loss in {EMBEDDING_LOSSES}, got {config.loss!r}")
        super().__init__(config, layer_map)
        self.pooling = pooling
        self._anchors: torch.Tensor | None = None  # the queue of teacher embeddings (not checkpointed: refills)
        self._pair: tuple[torch.Tensor, torch.Tensor] | None = None  # this step's (student, teacher) embeddings

    def kd_term(self, student_outputs, teacher_outputs, inputs: Mapping[str, Any] | None = None) -> torch.Tensor:
        mask = inputs.get("attention_mask") if inputs is not None else None
        s = sentence_embeddings(student_outputs, mask, self.pooling)
        t = _get(teacher_outputs, "sentence_embedding")  # cached targets (hf_fast.training.teacher_cache)
        if t is None:
            with torch.no_grad():
                t = sentence_embeddings(teacher_outputs, mask, self.pooling)
        t = t.to(s.device, s.dtype)
        if s.shape != t.shape:
            raise ValueError(f"teacher and student embeddings differ in shape: {tuple(s.shape)} vs {tuple(t.shape)}")
        loss = s.new_zeros(())
        if "mse" in self.config.loss:
            loss = loss + F.mse_loss(s, t)
        if "cosine" in self.config.loss:
            loss = loss + (1.0 - (s * t).sum(-1)).mean()
        self._pair = (s, t)
        return loss

    def relation_term(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """KL(teacher || student) of the softmax over anchor scores, averaged over the batch (see module doc); then
        the batch's teacher embeddings join the anchor queue."""
        t = t.detach().float()
        anchors = t if self._anchors is None or self._anchors.shape[1] != t.shape[1] \
            else torch.cat([t, self._anchors.to(t.device)])
        # a text's own teacher embedding is left out of its anchors: it would take nearly all of both softmaxes and
        # leave no signal about how the text ranks among the others, which is what retrieval reads
        own = torch.zeros(t.shape[0], anchors.shape[0], dtype=torch.bool, device=t.device)
        own[:, :t.shape[0]] = torch.eye(t.shape[0], dtype=torch.bool, device=t.device)
        with torch.autocast(s.device.type, enabled=False):  # scores / 0.05: bf16's 3 digits would blur the ranking
            tau = float(self.config.relation_temperature)
            log_q = F.log_softmax((s.float() @ anchors.T / tau).masked_fill(own, -1e4), dim=-1)
            log_p = F.log_softmax((t @ anchors.T / tau).masked_fill(own, -1e4), dim=-1)
            kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean()
        if torch.is_grad_enabled():  # training steps only: an evaluation's held-out texts never become anchors
            self._anchors = anchors[:RELATION_ANCHORS]
        return kl

    def forward(self, student_outputs, teacher_outputs, inputs: Mapping[str, Any] | None = None):
        self._pair = None
        loss, parts = super().forward(student_outputs, teacher_outputs, inputs)
        if self.config.relation_weight > 0 and self._pair is not None:
            r = self.relation_term(*self._pair)
            loss = loss + self.config.relation_weight * r
            parts["relation"] = r.detach()
        self._pair = None
        return loss, parts
