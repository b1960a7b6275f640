"""DistillationLoss: KL on temperature-softened logits (x T^2) mixed with the hard-label loss, plus optional
hidden-state / attention MSE over a layer map.

    loss = alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) * hard
           + hidden_weight * mean_l MSE(h_s[l], h_t[map[l]]) + attention_weight * mean_l MSE(a_s[l], a_t[map[l]])

(the means over layers weighted by ``layer_weights`` when it is set: layer-wise distillation).

The KL is summed over classes and averaged over examples (classification), over examples for each of the
start/end distributions (padding left out) and then over the two (question answering), or over labelled tokens (token
classification; tokens with label -100, else padding, are left out). ``hard`` is the student's own loss
(``outputs.loss``); without labels the KL term gets the whole weight.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hf_fast.models import registry
from hf_fast.models.spec import default_layer_map
from hf_fast.training.config import DistillConfig

HEAD_SUFFIXES = ("ForSequenceClassification", "ForQuestionAnswering", "ForTokenClassification", "ForMaskedLM",
                 "ForMultipleChoice")


def _get(o, k):
    if isinstance(o, Mapping):
        return o.get(k)
    return getattr(o, k, None)


def head_kind(model) -> str | None:
    name = type(model).__name__
    for s in HEAD_SUFFIXES:
        if name.endswith(s):
            return s
    return None


def _n_layers(cfg) -> int | None:
    return registry.config_value(cfg, "num_layers")


def _hidden(cfg) -> int | None:
    return registry.config_value(cfg, "hidden_size")


def _heads(cfg) -> int | None:
    return registry.config_value(cfg, "num_heads")


def _layer_map(student_cfg, n_student: int, n_teacher: int) -> dict[int, int]:
    """The student family's teacher layer map (registry), the default one for a model type it does not know."""
    fam = registry.find(getattr(student_cfg, "model_type", None))
    return fam.layer_map(n_student, n_teacher) if fam is not None else default_layer_map(n_student, n_teacher)


def check_teacher_compatible(student, teacher, config: DistillConfig) -> dict[int, int]:
    """Raise ValueError when the teacher cannot teach this student; return the resolved layer map."""
    sc, tc = student.config, teacher.config
    if getattr(sc, "vocab_size", None) != getattr(tc, "vocab_size", None):
        raise ValueError(f"teacher and student vocabularies differ (student vocab_size={sc.vocab_size}, teacher "
                         f"vocab_size={tc.vocab_size}): they must share the tokenizer")
    ks, kt = head_kind(student), head_kind(teacher)
    if ks != kt:
        raise ValueError(f"teacher and student heads do not match: student {type(student).__name__} ({ks}) vs "
                         f"teacher {type(teacher).__name__} ({kt})")
    if ks in ("ForSequenceClassification", "ForTokenClassification") and sc.num_labels != tc.num_labels:
        raise ValueError(f"teacher and student heads do not match: student num_labels={sc.num_labels}, "
                         f"teacher num_labels={tc.num_labels}")
    ls, lt = _n_layers(sc), _n_layers(tc)
    lmap = config.layer_map or (_layer_map(sc, ls, lt) if ls and lt else {})
    if config.hidden_weight > 0 or config.attention_weight > 0:
        bad = {s: t for s, t in lmap.items() if not (0 <= s < ls and 0 <= t < lt)}
        if bad:
            raise ValueError(f"distill.layer_map entries {bad} are out of range (student has {ls} layers, "
                             f"teacher {lt})")
        if config.layer_weights is not None:
            extra = sorted(k for k in config.layer_weights if k >= ls)
            if extra:
                raise ValueError(f"distill.layer_weights names student layers {extra}, but the student has {ls} "
                                 f"layers (0-{ls - 1})")
            if not any(config.layer_weights.get(s, 1.0) > 0 for s in lmap):
                raise ValueError(f"distill.layer_weights {config.layer_weights} give weight 0 to every mapped "
                                 f"student layer {sorted(lmap)}")
    if config.hidden_weight > 0 and _hidden(sc) != _hidden(tc):
        raise ValueError(f"hidden-state distillation needs equal hidden sizes (student {_hidden(sc)}, teacher "
                         f"{_hidden(tc)}); set distill.hidden_weight=0")
    if config.attention_weight > 0 and _heads(sc) != _heads(tc):
        raise ValueError(f"attention distillation needs equal head counts (student {_heads(sc)}, teacher "
                         f"{_heads(tc)}); set distill.attention_weight=0")
    return lmap


def _kl_rows(s: torch.Tensor, t: torch.Tensor, T: float) -> torch.Tensor:
    """KL(softmax(t/T) || softmax(s/T)) summed over the last dim: one value per row."""
    return F.kl_div(F.log_softmax(s / T, dim=-1), F.log_softmax(t / T, dim=-1), reduction="none",
                    log_target=True).sum(-1)


class DistillationLoss(nn.Module):
    """Distillation loss for classification, question answering and token classification outputs.

    Args:
        config: a DistillConfig (temperature, alpha, hidden/attention weights, layer map).
        layer_map: resolved ``{student_layer: teacher_layer}`` (see ``check_teacher_compatible``); needed only
            for the MSE terms.

    ``forward(student_outputs, teacher_outputs, inputs=None)`` returns ``(loss, parts)`` where ``parts`` holds
    the detached ``kd``, ``hard``, ``hidden`` and ``attention`` terms.
    """

    def __init__(self, config: DistillConfig | None = None, layer_map: dict[int, int] | None = None):
        super().__init__()
        self.config = config or DistillConfig()
        self.layer_map = layer_map if layer_map is not None else (self.config.layer_map or {})

    @property
    def needs_hidden_states(self) -> bool:
        return self.config.hidden_weight > 0

    @property
    def needs_attentions(self) -> bool:
        return self.config.attention_weight > 0

    def kd_term(self, student_outputs, teacher_outputs, inputs: Mapping[str, Any] | None = None) -> torch.Tensor:
        T = float(self.config.temperature)
        s_start, t_start = _get(student_outputs, "start_logits"), _get(teacher_outputs, "start_logits")
        if s_start is not None or t_start is not None:
            if s_start is None or t_start is None:
                raise ValueError("teacher and student heads do not match: only one returns start/end logits")
            terms = []
            mask = inputs.get("attention_mask") if inputs is not None else None
            for k in ("start_logits", "end_logits"):
                s, t = _get(student_outputs, k), _get(teacher_outputs, k)
                if s.shape != t.shape:
                    raise ValueError(f"teacher and student {k} shapes differ: {tuple(s.shape)} vs {tuple(t.shape)}")
                if mask is not None and mask.shape == s.shape:
                    # padding is never an answer: its logits (which depend on how far a batch was padded) stay
                    # out of both distributions
                    pad = mask == 0
                    s, t = s.float().masked_fill(pad, -1e4), t.float().masked_fill(pad, -1e4)
                terms.append(_kl_rows(s, t, T).mean())
            return (terms[0] + terms[1]) / 2 * T * T
        s, t = _get(student_outputs, "logits"), _get(teacher_outputs, "logits")
        if s is None or t is None:
            raise ValueError("distillation needs `logits` (or start/end logits) from both models")
        if s.shape != t.shape:
            raise ValueError(f"teacher and student heads do not match: logits {tuple(s.shape)} vs {tuple(t.shape)}")
        if s.shape[-1] == 1:  # regression head: match the teacher's prediction
            return F.mse_loss(s, t)
        rows = _kl_rows(s, t, T)
        if s.dim() == 3:  # token classification: average over labelled (else unpadded) tokens
            valid = None
            if inputs is not None:
                labels = inputs.get("labels")
                if labels is not None and labels.shape == rows.shape:
                    valid = labels != -100
                elif inputs.get("attention_mask") is not None:
                    valid = inputs["attention_mask"].bool()
            if valid is not None:
                n = valid.sum().clamp_min(1)
                return (rows * valid).sum() / n * T * T
        return rows.mean() * T * T

    def _mse_over_map(self, s_seq, t_seq, offset: int, token_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean over the layer map of each pair's MSE (weighted by ``layer_weights`` when set); with ``token_mask``
        [B, S] (cached hidden-state targets, hf_fast.training.teacher_cache) over the masked-in tokens only."""
        pairs = [(sl, tl) for sl, tl in self.layer_map.items()]
        if s_seq is None or t_seq is None or any(
                sl + offset >= len(s_seq) or tl + offset >= len(t_seq) or s_seq[sl + offset] is None
                or t_seq[tl + offset] is None for sl, tl in pairs):
            raise ValueError("hidden-state/attention distillation needs them from both models (attentions need "
                             "attn_implementation='eager')")
        weights = self.config.layer_weights or {}
        losses, ws = [], []
        for sl, tl in pairs:
            w = weights.get(sl, 1.0)
            if w == 0:  # layer-wise distillation: this layer is left out
                continue
            a, b = s_seq[sl + offset], t_seq[tl + offset]
            if a.shape != b.shape:
                raise ValueError(f"cannot match student layer {sl} {tuple(a.shape)} to teacher layer {tl} "
                                 f"{tuple(b.shape)}")
            if token_mask is None:
                losses.append(F.mse_loss(a, b))
            else:
                m = token_mask.to(a.device, torch.float32)[..., None]
                d = (a.float() - b.float()) ** 2 * m
                losses.append(d.sum() / (m.sum() * a.shape[-1]).clamp_min(1.0))
            ws.append(w)
        if not weights:
            return torch.stack(losses).mean()
        w = torch.tensor(ws, dtype=losses[0].dtype, device=losses[0].device)
        return (torch.stack(losses) * w).sum() / w.sum()

    def forward(self, student_outputs, teacher_outputs, inputs: Mapping[str, Any] | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.config
        kd = self.kd_term(student_outputs, teacher_outputs, inputs)
        hard = _get(student_outputs, "loss")
        loss = kd if hard is None else c.alpha * kd + (1.0 - c.alpha) * hard
        parts = {"kd": kd.detach()}
        if hard is not None:
            parts["hard"] = hard.detach()
        if c.hidden_weight > 0:
            h = self._mse_over_map(_get(student_outputs, "hidden_states"), _get(teacher_outputs, "hidden_states"), 1,
                                   _get(teacher_outputs, "token_mask"))
            loss = loss + c.hidden_weight * h
            parts["hidden"] = h.detach()
        if c.attention_weight > 0:
            a = self._mse_over_map(_get(student_outputs, "attentions"), _get(teacher_outputs, "attentions"), 0)
            loss = loss + c.attention_weight * a
            parts["attention"] = a.detach()
        return loss, parts
