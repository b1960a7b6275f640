"""The small real sample shipped inside the package, so the demo needs nothing outside it."""
from __future__ import annotations

from importlib import resources


def rt_polarity_sample() -> dict[str, dict[str, list]]:
    """{"train": {"text": [...], "label": [...]}, "eval": {...}} from hf_fast/data/rt_polarity_sample.tsv."""
    out = {"train": {"text": [], "label": []}, "eval": {"text": [], "label": []}}
    text = resources.files("hf_fast").joinpath("data/rt_polarity_sample.tsv").read_text(encoding="utf-8")
    for line in text.splitlines()[3:]:
        sentence, label, split = line.split("\t")
        out[split]["text"].append(sentence)
        out[split]["label"].append(int(label))
    return out


def sample_sentences() -> list[str]:
    return rt_polarity_sample()["train"]["text"]
