"""Offline metrics. ``evaluate.load("squad")`` / ``evaluate.load("accuracy")`` need the Hub (their scripts
are fetched at run time) and fail here, so this module carries the official SQuAD v1.1 EM/F1 computation
(``evaluate-v1.1.py``: lower-case, strip punctuation and articles a/an/the, collapse whitespace; max over
gold answers; averaged x100) and accuracy. Same input format as evaluate's ``squad`` metric."""
from __future__ import annotations

import collections
import re
import string
from typing import Dict, Iterable, List, Mapping, Sequence

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


def squad_metric(predictions: Sequence[Mapping], references: Sequence[Mapping]) -> Dict[str, float]:
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


def accuracy(predictions: Iterable[int], references: Iterable[int]) -> Dict[str, float]:
    p, r = list(predictions), list(references)
    if len(p) != len(r):
        raise ValueError(f"{len(p)} predictions for {len(r)} references")
    return {"accuracy": sum(int(a == b) for a, b in zip(p, r)) / len(p) if p else 0.0}
