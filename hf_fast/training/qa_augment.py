"""More question-answering inputs for distillation: the teacher as a data source (a recipe's ``data.augment_qa``).

A pruned QA student recovers by matching its teacher's start/end distributions, and the stored SQuAD part has only
~3,800 labelled questions. The teacher can label any (question, context) pair, so these routes build new pairs from
the *training* articles only (never the evaluation file) and the student distils on all of them:

* ``other_paragraphs``: each question asked of ``k`` other paragraphs of its own article (the answer is usually
  absent: the teacher's soft targets then say where a near-answer would be, or that no span is good);
* ``cross_article``: each question asked of ``k`` paragraphs of other articles (mostly "no good span");
* ``word_replace``: TinyBERT-style perturbed copies of question and context: each word is replaced, with
  probability ``p``, by a training-corpus word of the same shape (capitalised, numeric, lower case), dropped with
  ``dropout`` or swapped with its neighbour with ``swap`` (no MLM model is available offline, so replacements
  come from the corpus' own word distribution);
* ``strides``: the original questions windowed again at other ``[max_length, doc_stride]`` pairs, so the answer
  sits at other offsets or outside the window.

Augmented features carry no labels (only the teacher labels them), so a run that augments distils with
``alpha = 1`` (KL only) on every feature; the originals are included once, unlabelled too.
"""
from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

ROUTES = ("other_paragraphs", "cross_article", "word_replace", "strides")
DEFAULTS: dict[str, Any] = {
    "other_paragraphs": 0,        # k other paragraphs of the same article per question
    "cross_article": 0,           # k paragraphs of other articles per question
    "word_replace": 0,            # perturbed copies per question
    "replace_p": 0.15, "dropout": 0.05, "swap": 0.05,
    "strides": [],                # [[max_length, doc_stride], ...]
    "seed": 0,
}
_WORD = re.compile(r"\S+")


def check_augment_qa(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate a ``data.augment_qa`` mapping and fill in the defaults."""
    spec = dict(spec or {})
    bad = set(spec) - set(DEFAULTS)
    if bad:
        raise ValueError(f"data.augment_qa has unknown keys {sorted(bad)}: use {sorted(DEFAULTS)}")
    cfg = {**DEFAULTS, **spec}
    for k in ("other_paragraphs", "cross_article", "word_replace", "seed"):
        v = cfg[k]
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"data.augment_qa.{k} must be an int >= 0, got {v!r}")
    for k in ("replace_p", "dropout", "swap"):
        if not 0.0 <= float(cfg[k]) < 1.0:
            raise ValueError(f"data.augment_qa.{k} must lie in [0, 1), got {cfg[k]!r}")
    strides = []
    for pair in cfg["strides"] or []:
        if not (isinstance(pair, Sequence) and len(pair) == 2 and all(isinstance(x, int) for x in pair)
                and 0 < pair[1] < pair[0]):
            raise ValueError(f"data.augment_qa.strides entries must be [max_length, doc_stride] with "
                             f"0 < doc_stride < max_length, got {pair!r}")
        strides.append((int(pair[0]), int(pair[1])))
    cfg["strides"] = strides
    return cfg


def is_active(cfg: Mapping[str, Any]) -> bool:
    return bool(cfg["other_paragraphs"] or cfg["cross_article"] or cfg["word_replace"] or cfg["strides"])


_PUNCT = ".,;:!?\"'()[]"


def _split(word: str) -> tuple[str, str, str]:
    """``'(Paris,'`` -> ``('(', 'Paris', ',')``: replacements swap the core and keep the punctuation around it."""
    core = word.strip(_PUNCT)
    if not core:
        return word, "", ""
    i = word.index(core)
    return word[:i], core, word[i + len(core):]


def _shape(core: str) -> str:
    if any(c.isdigit() for c in core):
        return "num"
    return "cap" if core[0].isupper() else "low"


class WordReplacer:
    """Replace words by corpus words of the same shape (unigram-frequency sampling), drop or swap some."""

    def __init__(self, texts: Sequence[str], rng: random.Random):
        counts: dict[str, Counter] = defaultdict(Counter)
        for t in texts:
            for w in _WORD.findall(t):
                core = _split(w)[1]
                if core:
                    counts[_shape(core)][core] += 1
        self.rng = rng
        self.pool = {s: (list(c), list(c.values())) for s, c in counts.items()}

    def __call__(self, text: str, p: float, dropout: float, swap: float) -> str:
        words = _WORD.findall(text)
        out = []
        for w in words:
            r = self.rng.random()
            if r < dropout:
                continue
            pre, core, post = _split(w)
            if r < dropout + p and core:
                vocab, weights = self.pool[_shape(core)]
                w = pre + self.rng.choices(vocab, weights)[0] + post
            out.append(w)
        out = out or words[:1]
        for i in range(len(out) - 1):
            if self.rng.random() < swap:
                out[i], out[i + 1] = out[i + 1], out[i]
        return " ".join(out)


def augment_pairs(examples: Sequence[Mapping[str, Any]], spec: Mapping[str, Any] | None
                  ) -> dict[str, list[dict[str, str]]]:
    """Training examples (``read_squad_json`` rows) -> ``{route: [{"id", "question", "context"}, ...]}`` for the
    pair routes (every route but ``strides``, which re-windows the originals). Deterministic for a seed."""
    cfg = check_augment_qa(spec)
    rng = random.Random(cfg["seed"])
    by_title: dict[str, list[str]] = defaultdict(list)
    for ex in examples:
        paras = by_title[ex.get("title", "")]
        if ex["context"] not in paras:  # examples come grouped by paragraph; keep each paragraph once
            paras.append(ex["context"])
    titles = sorted(by_title)
    out: dict[str, list[dict[str, str]]] = {}
    if cfg["other_paragraphs"]:
        rows = []
        for ex in examples:
            others = [c for c in by_title[ex.get("title", "")] if c != ex["context"]]
            for j, ctx in enumerate(rng.sample(others, min(cfg["other_paragraphs"], len(others)))):
                rows.append({"id": f"{ex['id']}#op{j}", "question": ex["question"], "context": ctx})
        out["other_paragraphs"] = rows
    if cfg["cross_article"]:
        if len(titles) < 2:
            raise ValueError("data.augment_qa.cross_article needs training examples from at least two articles")
        rows = []
        for ex in examples:
            for j in range(cfg["cross_article"]):
                t = rng.choice([t for t in titles if t != ex.get("title", "")])
                rows.append({"id": f"{ex['id']}#ca{j}", "question": ex["question"],
                             "context": rng.choice(by_title[t])})
        out["cross_article"] = rows
    if cfg["word_replace"]:
        rep = WordReplacer([c for t in titles for c in by_title[t]] + [ex["question"] for ex in examples], rng)
        rows = []
        for ex in examples:
            for j in range(cfg["word_replace"]):
                rows.append({"id": f"{ex['id']}#wr{j}",
                             "question": rep(ex["question"], cfg["replace_p"], cfg["dropout"], cfg["swap"]),
                             "context": rep(ex["context"], cfg["replace_p"], cfg["dropout"], cfg["swap"])})
        out["word_replace"] = rows
    return out


def augmented_features(examples: Sequence[Mapping[str, Any]], tokenizer, spec: Mapping[str, Any] | None,
                       max_length: int = 384, doc_stride: int = 128) -> dict[str, dict[str, list]]:
    """``{route: unpadded, unlabelled features}`` (input_ids / attention_mask / token_type_ids) of every active
    route. Pair routes are windowed like the originals; ``strides`` windows the originals at each listed
    ``(max_length, doc_stride)``."""
    from hf_fast.training.qa_data import MODEL_INPUTS, _check_tokenizer, _tokenize

    _check_tokenizer(tokenizer)
    cfg = check_augment_qa(spec)
    out: dict[str, dict[str, list]] = {}

    def feats(questions, contexts, ml, stride):
        enc = _tokenize(tokenizer, questions, contexts, ml, stride, pad=False)
        return {k: list(enc[k]) for k in MODEL_INPUTS if k in enc}

    for route, rows in augment_pairs(examples, cfg).items():
        out[route] = feats([r["question"] for r in rows], [r["context"] for r in rows], max_length, doc_stride)
    if cfg["strides"]:
        parts = [feats([e["question"] for e in examples], [e["context"] for e in examples], ml, st)
                 for ml, st in cfg["strides"]]
        out["strides"] = {k: [x for p in parts for x in p[k]] for k in parts[0]}
    return out


def distillation_train_dataset(train_ds, augmented: Mapping[str, Mapping[str, list]]):
    """The original train features without their labels, followed by every augmented route's features:
    one ``datasets.Dataset`` for a KL-only distillation run."""
    import datasets

    cols = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in train_ds.column_names]
    merged = {c: list(train_ds[c]) for c in cols}
    for route, f in augmented.items():
        if set(f) != set(cols):
            raise ValueError(f"augmented route {route!r} has columns {sorted(f)}, the train features {cols}")
        for c in cols:
            merged[c].extend(f[c])
    return datasets.Dataset.from_dict(merged)


def distillation_dataset(spec: Mapping[str, Any] | None, train_examples, train_ds, tokenizer,
                         max_length: int = 384, doc_stride: int = 128):
    """The student's training set for a recipe's ``data.augment_qa``: ``(dataset, counts)``.

    Without an active spec it is ``train_ds`` itself (labelled, ``alpha`` as configured); with one, the unlabelled
    originals plus every route's features (``counts``: features per route, the originals under ``"original"``)."""
    cfg = check_augment_qa(spec)
    if not is_active(cfg):
        return train_ds, {"original": len(train_ds)}
    aug = augmented_features(train_examples, tokenizer, cfg, max_length, doc_stride)
    counts = {"original": len(train_ds), **{k: len(v["input_ids"]) for k, v in aug.items()}}
    return distillation_train_dataset(train_ds, aug), counts
