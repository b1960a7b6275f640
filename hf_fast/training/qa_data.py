"""Extractive question answering data (SQuAD v1.1 format), offline: the Hugging Face ``run_qa.py`` recipe.

    examples = read_squad_json("squad_v1.1_dev.json", articles=4)          # list of question dicts
    train = prepare_train_features(train_examples, tokenizer, max_length=384, doc_stride=128)
    feats = prepare_eval_features(examples, tokenizer, max_length=384, doc_stride=128)
    preds = postprocess_qa_predictions(examples, feats, start_logits, end_logits)   # {id: answer text}
    squad_metric(*squad_predictions_and_references(examples, preds))               # {"exact_match", "f1"}

* Each question becomes one or more *features*: ``question [SEP] context-window`` pairs, the context
  truncated ``only_second`` to ``max_length`` tokens and split into overlapping windows (``doc_stride`` tokens
  of overlap, the tokenizer's ``stride``) when it is longer.
* Train features carry ``start_positions``/``end_positions`` (token indices found from the offset mapping);
  a window that does not contain the whole first gold answer points both at the CLS token (index 0).
* Eval features carry ``example_id`` and an ``offset_mapping`` in which every non-context token is ``None``
  (so postprocessing can only pick context spans).
* Postprocessing: per question, over all its features, the ``n_best`` highest start and end logits are
  paired; spans with end < start, longer than ``max_answer_length`` tokens or outside the context are
  dropped; the best ``start_logit + end_logit`` span's character slice of the context is the answer.

Padding is to ``max_length`` (rectangular arrays, the same for PyTorch, the native engine and ONNX Runtime).
"""
from __future__ import annotations

import collections
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


# ------------------------------------------------------------------------------------------------ reading
def read_squad_json(path: str | Path, articles: int | Sequence[str] | None = None,
                    exclude_articles: Sequence[str] = (), questions: int | None = None) -> list[dict[str, Any]]:
    """SQuAD JSON (``data/paragraphs/qas/answers``) -> a flat list of examples in file order:
    ``{"id", "title", "context", "question", "answers": {"text": [...], "answer_start": [...]}}``.

    articles: an int keeps the first N articles, a list of titles keeps those (in file order).
    exclude_articles: titles to drop. questions: keep at most the first N questions (after the article
    selection). Questions without answers (SQuAD v2 ``is_impossible``) are kept with empty answers.
    """
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    data = raw["data"] if isinstance(raw, dict) else raw
    if isinstance(articles, int):
        data = data[:articles]
    elif articles is not None:
        wanted = set(articles)
        missing = wanted - {a["title"] for a in data}
        if missing:
            raise ValueError(f"{path}: no article(s) titled {sorted(missing)}")
        data = [a for a in data if a["title"] in wanted]
    drop = set(exclude_articles or ())
    out: list[dict[str, Any]] = []
    for art in data:
        if art.get("title") in drop:
            continue
        for para in art["paragraphs"]:
            ctx = para["context"]
            for qa in para["qas"]:
                ans = qa.get("answers") or []
                out.append({"id": str(qa["id"]), "title": art.get("title", ""), "context": ctx,
                            "question": qa["question"],
                            "answers": {"text": [a["text"] for a in ans],
                                        "answer_start": [int(a["answer_start"]) for a in ans]}})
                if questions is not None and len(out) >= questions:
                    return out
    return out


def _columns(examples: Sequence[Mapping] | Mapping[str, Sequence]) -> dict[str, list]:
    """A list of example dicts, a columnar dict or a datasets.Dataset -> a columnar dict."""
    if isinstance(examples, Mapping):
        return {k: list(v) for k, v in examples.items()}
    if hasattr(examples, "column_names") and hasattr(examples, "to_dict"):  # datasets.Dataset
        return examples.to_dict()
    rows = list(examples)
    keys = rows[0].keys() if rows else ("id", "context", "question", "answers")
    return {k: [r[k] for r in rows] for k in keys}


def _rows(examples) -> list[Mapping]:
    if isinstance(examples, Mapping):
        n = len(next(iter(examples.values()))) if examples else 0
        return [{k: v[i] for k, v in examples.items()} for i in range(n)]
    return list(examples)


def _check_tokenizer(tokenizer) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("question answering preprocessing needs a fast tokenizer (offset mappings)")
    if getattr(tokenizer, "padding_side", "right") != "right":
        raise ValueError("question answering preprocessing expects padding_side='right' (question first)")


def _tokenize(tokenizer, questions, contexts, max_length: int, doc_stride: int, pad: bool = True):
    if doc_stride >= max_length:
        raise ValueError(f"doc_stride ({doc_stride}) must be smaller than max_length ({max_length})")
    return tokenizer([q.lstrip() for q in questions], list(contexts), truncation="only_second",
                     max_length=max_length, stride=doc_stride, return_overflowing_tokens=True,
                     return_offsets_mapping=True, padding="max_length" if pad else False)


# ------------------------------------------------------------------------------------------------ features
def prepare_train_features(examples, tokenizer, max_length: int = 384, doc_stride: int = 128,
                           pad: bool = True) -> dict[str, list]:
    """Examples (dicts with question/context/answers, or a columnar batch) -> train features with
    ``start_positions``/``end_positions`` (CLS index 0 when the window does not hold the answer).
    pad=False leaves each feature at its own length (pad per batch with ``DataCollatorWithPadding``)."""
    _check_tokenizer(tokenizer)
    ex = _columns(examples)
    enc = _tokenize(tokenizer, ex["question"], ex["context"], max_length, doc_stride, pad)
    sample_map = enc.pop("overflow_to_sample_mapping")
    offsets = enc.pop("offset_mapping")
    starts, ends = [], []
    for i, offs in enumerate(offsets):
        ids = enc["input_ids"][i]
        cls = ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0
        seq_ids = enc.sequence_ids(i)
        ans = ex["answers"][sample_map[i]]
        if not ans["answer_start"]:
            starts.append(cls)
            ends.append(cls)
            continue
        s_char = ans["answer_start"][0]
        e_char = s_char + len(ans["text"][0])
        ts = 0
        while seq_ids[ts] != 1:
            ts += 1
        te = len(ids) - 1
        while seq_ids[te] != 1:
            te -= 1
        if not (offs[ts][0] <= s_char and offs[te][1] >= e_char):
            starts.append(cls)
            ends.append(cls)
            continue
        c0, c1 = ts, te  # the context window's first and last token
        while ts <= c1 and offs[ts][0] <= s_char:
            ts += 1
        while te >= c0 and offs[te][1] >= e_char:
            te -= 1
        starts.append(ts - 1)
        ends.append(te + 1)
    out = {k: enc[k] for k in MODEL_INPUTS if k in enc}
    out["start_positions"] = starts
    out["end_positions"] = ends
    return out


def prepare_eval_features(examples, tokenizer, max_length: int = 384, doc_stride: int = 128,
                          pad: bool = True) -> dict[str, list]:
    """Examples -> eval features with ``example_id`` and an ``offset_mapping`` that is None off the context."""
    _check_tokenizer(tokenizer)
    ex = _columns(examples)
    enc = _tokenize(tokenizer, ex["question"], ex["context"], max_length, doc_stride, pad)
    sample_map = enc.pop("overflow_to_sample_mapping")
    offsets = enc.pop("offset_mapping")
    out = {k: enc[k] for k in MODEL_INPUTS if k in enc}
    out["example_id"] = [ex["id"][s] for s in sample_map]
    out["offset_mapping"] = [[tuple(o) if seq_ids == 1 else None
                              for o, seq_ids in zip(offs, enc.sequence_ids(i), strict=False)]
                             for i, offs in enumerate(offsets)]
    return out


def feature_arrays(features, columns: Iterable[str] = MODEL_INPUTS) -> dict[str, np.ndarray]:
    """Model input columns of a feature dict / Dataset -> int64 numpy arrays [n_features, max_length]."""
    cols = features.column_names if hasattr(features, "column_names") else list(features)
    return {c: np.asarray(features[c], dtype=np.int64) for c in columns if c in cols}


# ------------------------------------------------------------------------------------------------ datasets
def qa_train_dataset(examples, tokenizer, max_length: int = 384, doc_stride: int = 128, pad: bool = True):
    """``datasets.Dataset`` of train features (model inputs + start/end positions) for ``Trainer``."""
    from datasets import Dataset

    return Dataset.from_dict(prepare_train_features(examples, tokenizer, max_length, doc_stride, pad))


def qa_eval_dataset(examples, tokenizer, max_length: int = 384, doc_stride: int = 128):
    """``datasets.Dataset`` of eval features (model inputs + example_id + offset_mapping)."""
    from datasets import Dataset

    f = prepare_eval_features(examples, tokenizer, max_length, doc_stride)
    # Arrow cannot mix None and pairs in one list column cleanly: store (-1, -1) and restore None on read.
    f["offset_mapping"] = [[list(o) if o is not None else [-1, -1] for o in offs] for offs in f["offset_mapping"]]
    return Dataset.from_dict(f)


def squad_datasets(spec: Mapping[str, Any], tokenizer, *, eval_articles: int | Sequence[str] | None = None,
                   eval_questions: int | None = None, quick: bool = False, pad_train: bool = True):
    """A recipe ``data`` section of format ``squad-json`` -> (train_examples, train_ds, eval_examples, eval_ds).

    spec keys: train_path, eval_path, max_length (384), doc_stride (128), train_limit (first N questions),
    train_fraction (a random share of the questions, in file order, seeded by train_fraction_seed),
    quick_eval_articles (with ``quick=True``: these articles of the train file evaluate, the rest train).
    eval_articles/eval_questions select a prefix of the eval file (see ``read_squad_json``).
    pad_train=False: train features keep their own lengths (dynamic padding in the collator).
    """
    if spec.get("format", "squad-json") != "squad-json":
        raise ValueError(f"data format {spec.get('format')!r} is not squad-json")
    ml = int(spec.get("max_length", 384))
    stride = int(spec.get("doc_stride", 128))
    held = list(spec.get("quick_eval_articles") or [])
    if quick:
        if not held:
            raise ValueError("quick=True needs data.quick_eval_articles")
        tr = read_squad_json(spec["train_path"], exclude_articles=held)
        ev = read_squad_json(spec["train_path"], articles=held, questions=eval_questions)
    else:
        tr = read_squad_json(spec["train_path"])
        ev = read_squad_json(spec["eval_path"], articles=eval_articles, questions=eval_questions)
    if spec.get("train_limit"):
        tr = tr[: int(spec["train_limit"])]
    if spec.get("train_fraction") is not None:  # a learning-curve point: a seeded random share of the questions
        frac = float(spec["train_fraction"])
        if not 0.0 < frac <= 1.0:
            raise ValueError(f"data.train_fraction must lie in (0, 1], got {spec['train_fraction']!r}")
        keep = sorted(np.random.default_rng(int(spec.get("train_fraction_seed", 0)))
                      .choice(len(tr), size=max(1, round(frac * len(tr))), replace=False))
        tr = [tr[i] for i in keep]
    return tr, qa_train_dataset(tr, tokenizer, ml, stride, pad_train), ev, qa_eval_dataset(ev, tokenizer, ml, stride)


# ------------------------------------------------------------------------------------------------ postprocessing
def _offsets(features) -> list[list[tuple[int, int] | None]]:
    offs = features["offset_mapping"]
    return [[None if o is None or o[0] < 0 else (int(o[0]), int(o[1])) for o in f] for f in offs]


def postprocess_qa_predictions(examples, features, start_logits, end_logits, n_best: int = 20,
                               max_answer_length: int = 30) -> dict[str, str]:
    """Feature-level start/end logits ([n_features, seq]) -> ``{example id: best answer text}``.

    The best span over all features of a question maximises ``start_logit + end_logit`` among the
    ``n_best`` x ``n_best`` candidate pairs that lie in the context, with start <= end and at most
    ``max_answer_length`` tokens. Questions with no valid span get "".
    """
    start_logits = np.asarray(start_logits, dtype=np.float32)
    end_logits = np.asarray(end_logits, dtype=np.float32)
    ids = list(features["example_id"])
    if start_logits.shape != end_logits.shape or start_logits.shape[0] != len(ids):
        raise ValueError(f"logits {start_logits.shape}/{end_logits.shape} do not match {len(ids)} features")
    offsets = _offsets(features)
    by_example: dict[str, list[int]] = collections.defaultdict(list)
    for i, eid in enumerate(ids):
        by_example[eid].append(i)
    preds: dict[str, str] = {}
    for ex in _rows(examples):
        eid, ctx = ex["id"], ex["context"]
        best, best_score = "", -np.inf
        for fi in by_example.get(eid, []):
            sl, el, offs = start_logits[fi], end_logits[fi], offsets[fi]
            n = min(len(offs), sl.shape[0])
            # stable sort: among equal logits the lower index comes first, so results are deterministic
            s_idx = np.argsort(-sl[:n], kind="stable")[:n_best]
            e_idx = np.argsort(-el[:n], kind="stable")[:n_best]
            for s in s_idx:
                if offs[s] is None:
                    continue
                for e in e_idx:
                    if offs[e] is None or e < s or e - s + 1 > max_answer_length:
                        continue
                    score = float(sl[s]) + float(el[e])
                    if score > best_score:
                        best_score = score
                        best = ctx[offs[s][0]: offs[e][1]]
        preds[eid] = best
    return preds


def squad_predictions_and_references(examples, predictions: Mapping[str, str]):
    """(examples, {id: text}) -> (predictions, references) in the format of ``metrics.squad_metric``."""
    rows = _rows(examples)
    preds = [{"id": ex["id"], "prediction_text": predictions.get(ex["id"], "")} for ex in rows]
    refs = [{"id": ex["id"], "answers": {"text": list(ex["answers"]["text"]),
                                         "answer_start": list(ex["answers"]["answer_start"])}} for ex in rows]
    return preds, refs


def answer_agreement(a: Mapping[str, str], b: Mapping[str, str]) -> float:
    """Share (0..1) of question ids whose predicted answer texts are identical in ``a`` and ``b``."""
    keys = set(a) | set(b)
    if not keys:
        return 1.0
    return sum(int(a.get(k) == b.get(k)) for k in keys) / len(keys)
