"""Turn the caller's calibration samples into ONNX feeds (dicts of int64 numpy arrays).

Accepted forms (``calibration_dataset``):
* a list/tuple of strings (classification, token classification) or of ``(text, text_pair)`` pairs
  (question answering: ``(question, context)``);
* a list of dicts: raw text under ``text``/``sentence`` (+ ``text_pair``), ``question``+``context``,
  pre-split ``tokens`` (token classification), or already tokenized ``input_ids`` (+ mask, types);
* a ``datasets.Dataset`` (or any sized iterable) of such dicts.
Samples are tokenized with truncation to ``max_length`` and grouped into batches of ``batch_size``,
padded to the longest sample of each batch (batch size 1 = no padding, the default).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

_TEXT_KEYS = ("text", "sentence", "sentence1", "content")
_PAIR_KEYS = ("text_pair", "sentence2")


def _as_list(ds: Any) -> list[Any]:
    if ds is None:
        raise ValueError("calibration_dataset is required: static int8 quantization calibrates activation "
                         "ranges on real samples (pass a list of texts, pairs or tokenized dicts)")
    if isinstance(ds, (str, bytes)):
        raise ValueError("calibration_dataset must be a collection of samples, not a single string")
    if isinstance(ds, dict) and ds and all(isinstance(v, (list, tuple, np.ndarray)) for v in ds.values()):
        keys = list(ds)  # columnar dict {"text": [...], ...}
        n = len(ds[keys[0]])
        return [{k: ds[k][i] for k in keys} for i in range(n)]
    try:
        items = list(ds)
    except TypeError as exc:
        raise ValueError(f"calibration_dataset must be iterable, got {type(ds).__name__}") from exc
    return items


def _encode_one(sample: Any, tokenizer, task: str, max_length: int) -> dict[str, list[int]]:
    kw = dict(truncation=True, max_length=max_length)
    if isinstance(sample, str):
        if task == "question-answering":
            raise ValueError("question-answering calibration samples must be (question, context) pairs or "
                             "dicts with 'question' and 'context'")
        return dict(tokenizer(sample, **kw))
    if isinstance(sample, (tuple, list)) and len(sample) == 2 and all(isinstance(s, str) for s in sample):
        return dict(tokenizer(sample[0], sample[1], truncation="only_second" if task == "question-answering"
                              else True, max_length=max_length))
    if isinstance(sample, dict) or hasattr(sample, "keys"):
        d = dict(sample)
        if "input_ids" in d:
            return {k: [int(x) for x in np.asarray(v).reshape(-1)] for k, v in d.items()
                    if k in ("input_ids", "attention_mask", "token_type_ids")}
        if "question" in d and "context" in d:
            return dict(tokenizer(d["question"], d["context"], truncation="only_second", max_length=max_length))
        if "tokens" in d:
            return dict(tokenizer(list(d["tokens"]), is_split_into_words=True, **kw))
        for k in _TEXT_KEYS:
            if k in d and isinstance(d[k], str):
                pair = next((d[p] for p in _PAIR_KEYS if isinstance(d.get(p), str)), None)
                return dict(tokenizer(d[k], pair, **kw) if pair else tokenizer(d[k], **kw))
        raise ValueError(f"calibration sample has none of the keys input_ids, text, sentence, question+context, "
                         f"tokens: {sorted(d)}")
    raise ValueError(f"unsupported calibration sample type {type(sample).__name__}: use str, (str, str) or dict")


def build_feeds(calibration_dataset: Any, tokenizer, task: str, input_names: Iterable[str], max_length: int = 128,
                batch_size: int = 1, limit: int | None = None) -> list[dict[str, np.ndarray]]:
    input_names = list(input_names)
    items = _as_list(calibration_dataset)
    if limit is not None:
        items = items[: int(limit)]
    if not items:
        raise ValueError("the calibration set is empty: static int8 quantization needs at least one sample")
    if batch_size < 1:
        raise ValueError(f"calibration batch_size must be >= 1, got {batch_size}")
    if tokenizer is None and not all(isinstance(s, dict) and "input_ids" in s for s in items):
        raise ValueError("a tokenizer is needed to encode raw-text calibration samples")
    encoded = [_encode_one(s, tokenizer, task, max_length) for s in items]
    for i, e in enumerate(encoded):
        if not e.get("input_ids"):
            raise ValueError(f"calibration sample {i} encodes to no tokens")
    pad_id = int(getattr(tokenizer, "pad_token_id", 0) or 0) if tokenizer is not None else 0
    feeds = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start: start + batch_size]
        seq = max(len(e["input_ids"]) for e in chunk)
        feed = {}
        for name in input_names:
            arr = np.zeros((len(chunk), seq), np.int64)
            if name == "input_ids":
                arr[:] = pad_id
            for r, e in enumerate(chunk):
                n = len(e["input_ids"])
                if name == "attention_mask":
                    vals = e.get("attention_mask") or [1] * n
                elif name == "token_type_ids":
                    vals = e.get("token_type_ids") or [0] * n
                else:
                    vals = e["input_ids"]
                arr[r, :n] = vals
            feed[name] = arr
        feeds.append(feed)
    return feeds


def pad_to_common_length(feeds: list[dict[str, np.ndarray]], pad_id: int = 0) -> list[dict[str, np.ndarray]]:
    """Pad every feed to the longest sequence of the set (histogram calibrators need one shape).

    Padded positions are masked out of attention but still pass through the Linears, so their
    activations join the histograms; MinMax calibration (the default) needs no padding.
    """
    seq = max(f["input_ids"].shape[1] for f in feeds)
    out = []
    for f in feeds:
        n = f["input_ids"].shape[1]
        if n == seq:
            out.append(f)
            continue
        g = {}
        for k, v in f.items():
            fill = pad_id if k == "input_ids" else 0
            g[k] = np.concatenate([v, np.full((v.shape[0], seq - n), fill, v.dtype)], axis=1)
        out.append(g)
    return out
