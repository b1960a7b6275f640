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


def squad_scores(predictions: Sequence[Mapping], references: Sequence[Mapping]) -> dict[str, tuple[float, float]]:
    """Per question ``{id: (exact_match, f1)}`` in [0, 1], each the max over the gold answers (for paired
    comparisons of two models on the same questions)."""
    gold = {r["id"]: list(r["answers"]["text"]) for r in references}
    out = {}
    for p in predictions:
        if p["id"] not in gold:
            raise ValueError(f"prediction id {p['id']!r} has no reference")
        answers = gold[p["id"]]
        out[p["id"]] = (max(exact_match_score(p["prediction_text"], a) for a in answers),
                        max(f1_score(p["prediction_text"], a) for a in answers))
    return out


def squad_metric(predictions: Sequence[Mapping], references: Sequence[Mapping]) -> dict[str, float]:
    """predictions: [{"id", "prediction_text"}]; references: [{"id", "answers": {"text": [...]}}]
    -> {"exact_match": %, "f1": %} like ``evaluate.load("squad").compute``."""
    scores = squad_scores(predictions, references).values()
    n = len(scores)
    return {"exact_match": 100.0 * sum(e for e, _ in scores) / n if n else 0.0,
            "f1": 100.0 * sum(f for _, f in scores) / n if n else 0.0}


def paired_difference(a: Mapping[str, float], b: Mapping[str, float]) -> tuple[float, float]:
    """Mean and standard error of ``a[k] - b[k]`` over the keys both share (two models scored on the same
    questions; the standard error is of the paired differences, so question difficulty cancels)."""
    keys = sorted(set(a) & set(b))
    if len(keys) < 2:
        raise ValueError(f"a paired difference needs >= 2 shared keys, got {len(keys)}")
    d = [a[k] - b[k] for k in keys]
    m = sum(d) / len(d)
    var = sum((x - m) ** 2 for x in d) / (len(d) - 1)
    return m, math.sqrt(var / len(d))


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
