"""The real rt-polarity sample shipped inside the package (gzipped TSV), so the demo needs nothing outside it.

hf_fast/data/rt_polarity_sample.tsv.gz: 7,000 training sentences and the 2,000 held-out evaluation sentences of
benchmarks/RESULTS.md (the last 1,000 lines of each class), disjoint; provenance in the file's ``#`` lines.
"""
from __future__ import annotations

import gzip
from functools import lru_cache
from importlib import resources

SAMPLE = "data/rt_polarity_sample.tsv.gz"


@lru_cache(maxsize=1)
def _rows() -> tuple[tuple[str, int, str], ...]:
    raw = gzip.decompress(resources.files("hf_fast").joinpath(SAMPLE).read_bytes()).decode("utf-8")
    lines = [ln for ln in raw.splitlines() if ln and not ln.startswith("#")]
    if lines[0] != "sentence\tlabel\tsplit":
        raise ValueError(f"{SAMPLE}: unexpected header {lines[0]!r}")
    rows = []
    for ln in lines[1:]:
        sentence, label, split = ln.split("\t")
        rows.append((sentence, int(label), split))
    return tuple(rows)


def rt_polarity_sample() -> dict[str, dict[str, list]]:
    """{"train": {"text": [...], "label": [...]}, "eval": {...}}, classes interleaved in each split."""
    out = {"train": {"text": [], "label": []}, "eval": {"text": [], "label": []}}
    for sentence, label, split in _rows():
        out[split]["text"].append(sentence)
        out[split]["label"].append(label)
    return out


def sample_sentences() -> list[str]:
    return rt_polarity_sample()["train"]["text"]
