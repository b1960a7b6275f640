"""Text augmentation for distillation on small classification sets (a recipe's ``data.augment``).

A pruned student recovers by matching its teacher; on a few thousand sentences it runs out of examples to match
long before it runs out of capacity. Perturbed copies of the training sentences give the teacher more inputs to
label (TinyBERT's data augmentation, here with no extra model: word dropout and adjacent swaps). The copies keep
their sentence's label, so ``1 - alpha`` of the loss still sees it, but with ``alpha`` = 0.9 the teacher's soft
labels carry them. Only the training split is augmented; evaluation never is.
"""
from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

DEFAULTS = {"copies": 0, "word_dropout": 0.1, "swap": 0.1, "seed": 0}


def check_augment(spec: Mapping[str, Any]) -> dict[str, Any]:
    bad = set(spec) - set(DEFAULTS)
    if bad:
        raise ValueError(f"data.augment has unknown keys {sorted(bad)}: use {sorted(DEFAULTS)}")
    cfg = {**DEFAULTS, **spec}
    if not isinstance(cfg["copies"], int) or isinstance(cfg["copies"], bool) or cfg["copies"] < 0:
        raise ValueError(f"data.augment.copies must be an int >= 0, got {cfg['copies']!r}")
    for k in ("word_dropout", "swap"):
        if not 0.0 <= float(cfg[k]) < 1.0:
            raise ValueError(f"data.augment.{k} must lie in [0, 1), got {cfg[k]!r}")
    return cfg


def perturb(words: list[str], rng: random.Random, word_dropout: float, swap: float) -> list[str]:
    kept = [w for w in words if rng.random() >= word_dropout] or [rng.choice(words)]  # never empty
    for i in range(len(kept) - 1):
        if rng.random() < swap:
            kept[i], kept[i + 1] = kept[i + 1], kept[i]
    return kept


def augment_split(split: Mapping[str, list], spec: Mapping[str, Any]) -> dict[str, list]:
    """``{"text": [...], "label": [...]}`` -> the originals followed by ``copies`` perturbed copies of each
    (deterministic for a seed; a copy equal to its original is kept: short sentences have few variants)."""
    cfg = check_augment(spec)
    rng = random.Random(cfg["seed"])
    text, label = list(split["text"]), list(split["label"])
    for _ in range(cfg["copies"]):
        for t, y in zip(split["text"], split["label"], strict=False):
            words = t.split()
            if words:
                text.append(" ".join(perturb(words, rng, float(cfg["word_dropout"]), float(cfg["swap"]))))
                label.append(y)
    return {"text": text, "label": label}
