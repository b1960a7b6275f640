"""Paired comparison of classifiers on the 2,000 rt-polarity eval sentences: is one *measurably* better?

For each model: fp32 accuracy with a 95% Wilson interval. For each pair (A, B): the sentences only A gets right
and only B gets right, and the exact two-sided McNemar p-value (binomial test on the discordant pairs), which is
the right test for two models scored on the same sentences; accuracy intervals alone overlap far too easily.

Run: python benchmarks/compare_students.py NAME=DIR [NAME=DIR ...] [--json OUT]
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def predictions(model_dir: str, texts, max_length: int = 64, threads: int = 1) -> np.ndarray:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), 128):
            enc = tok(texts[i:i + 128], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            out.append(model(**enc).logits.argmax(-1).numpy())
    return np.concatenate(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="NAME=DIR")
    ap.add_argument("--data", default=str(REPO.parent / "shared/data/rt-polarity"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    from hf_fast.training.data import read_rt_polarity
    from hf_fast.training.metrics import mcnemar_exact, wilson_interval

    _, ev = read_rt_polarity(a.data)
    labels = np.asarray(ev["label"])
    correct = {}
    for spec in a.models:
        name, _, d = spec.partition("=")
        if not d:
            raise SystemExit(f"expected NAME=DIR, got {spec!r}")
        correct[name] = predictions(d, ev["text"], threads=a.threads) == labels
    n = len(labels)
    res = {"n": n, "models": {}, "pairs": []}
    print("| model | accuracy | 95% interval |\n|---|---|---|")
    for name, c in correct.items():
        lo, hi = wilson_interval(int(c.sum()), n)
        res["models"][name] = {"accuracy": float(c.mean()), "ci95": [lo, hi]}
        print(f"| {name} | {c.mean() * 100:.2f}% | {lo * 100:.1f}-{hi * 100:.1f}% |")
    print("\n| A | B | only A right | only B right | McNemar exact p |\n|---|---|---|---|---|")
    for x, y in itertools.combinations(correct, 2):
        b = int((correct[x] & ~correct[y]).sum())
        c = int((~correct[x] & correct[y]).sum())
        p = mcnemar_exact(b, c)
        res["pairs"].append({"a": x, "b": y, "only_a": b, "only_b": c, "p": p})
        print(f"| {x} | {y} | {b} | {c} | {p:.3g} |")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
