"""Offline metrics. ``evaluate.load("squad")`` / ``evaluate.load("accuracy")`` need the Hub (their scripts
are fetched at run time) and fail here, so this module carries the official SQuAD v1.1 EM/F1 computation
(``evaluate-v1.1.py``: lower-case, strip punctuation and articles a/an/the, collapse whitespace; max over
gold answers; averaged x100) and accuracy. Same input format as evaluate's ``squad`` metric."""
from __future__ import annotations

import collections
import math
import re
import string
from collections.abc import Iterable, Mapping, Sequence

_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match_score(prediction: str, ground_truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def f1_score(prediction: str, ground_truth: str) -> float:
    p, g = normalize_answer(prediction).split(), normalize_answer(ground_truth).split()
    common = collections.Counter(p) & collections.Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def squad_metric(predictions: Sequence[Mapping], references: Sequence[Mapping]) -> dict[str, float]:
    """predictions: [{"id", "prediction_text"}]; references: [{"id", "answers": {"text": [...]}}]
    -> {"exact_match": %, "f1": %} like ``evaluate.load("squad").compute``."""
    gold = {r["id"]: list(r["answers"]["text"]) for r in references}
    em = f1 = 0.0
    for p in predictions:
        if p["id"] not in gold:
            raise ValueError(f"prediction id {p['id']!r} has no reference")
        answers = gold[p["id"]]
        em += max(exact_match_score(p["prediction_text"], a) for a in answers)
        f1 += max(f1_score(p["prediction_text"], a) for a in answers)
    n = len(predictions)
    return {"exact_match": 100.0 * em / n if n else 0.0, "f1": 100.0 * f1 / n if n else 0.0}


def accuracy(predictions: Iterable[int], references: Iterable[int]) -> dict[str, float]:
    p, r = list(predictions), list(references)
    if len(p) != len(r):
        raise ValueError(f"{len(p)} predictions for {len(r)} references")
    return {"accuracy": sum(int(a == b) for a, b in zip(p, r, strict=False)) / len(p) if p else 0.0}


def wilson_interval(k: int, n: int, z: float = 1.96):
    """Wilson score interval of a proportion k/n (95% for z=1.96)."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return c - h, c + h


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value for two classifiers scored on the same examples: only_a / only_b are the
    examples only A / only B gets right (a binomial test of the discordant pairs at p = 1/2)."""
    if only_a < 0 or only_b < 0:
        raise ValueError("discordant counts must be >= 0")
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2 ** n
    return min(1.0, 2 * tail)
