"""Text for label-free embedding distillation (recipes with ``task: feature-extraction``, ``data.format: text``).

    data:
      format: text
      squad_json: data/squad/train.json                              # SQuAD-format JSON: questions, sentences,
                                                                     # paragraph windows
      rt_polarity: data/rt-polarity                                  # rt-polarity.pos/.neg: training lines (not the
                                                                     # last eval_per_class)
      text_files: [my_corpus.txt]                                    # one text per line (optional)
      eval_per_class: 1000                                           # held-out rt-polarity lines of each file
      max_length: 128                                                # tokens per training text
      window_tokens: [128, 256]                                      # SQuAD windows of each size (default:
                                                                     # [max_length]; none may exceed it)
      train_limit: null

recipes/minilm_embed.yaml points these at the project's stored data. Only texts: the student learns the teacher's
embeddings of them, no labels and no pairs. A SQuAD file gives its
questions, each paragraph's sentences, and windows of consecutive sentences of at most ``max_length`` tokens (the
paragraph-length inputs retrieval embeds; ``window_tokens`` packs windows of several sizes, e.g. whole paragraphs
up to 256 tokens besides the 128-token windows, so a student also learns the lengths a retrieval corpus has). The
held-out set is the last ``eval_per_class`` lines of each rt-polarity file (the project's fixed split), else the
last 5% of the texts.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
DATA_KEYS = {"format", "squad_json", "rt_polarity", "text_files", "eval_per_class", "max_length", "window_tokens",
             "train_limit", "eval_limit"}


def split_sentences(paragraph: str) -> list[str]:
    """Sentences of a paragraph (split after . ! ? before a capital or digit): good enough for training text."""
    return [s.strip() for s in _SENTENCE_END.split(paragraph) if s.strip()]


def sentence_windows(sentences: list[str], n_tokens: list[int], max_tokens: int) -> list[str]:
    """Consecutive sentences packed greedily into windows of at most ``max_tokens`` tokens (a longer sentence
    stands alone; the tokenizer truncates it)."""
    out, cur, size = [], [], 0
    for s, n in zip(sentences, n_tokens, strict=True):
        if cur and size + n > max_tokens:
            out.append(" ".join(cur))
            cur, size = [], 0
        cur.append(s)
        size += n
    if cur:
        out.append(" ".join(cur))
    return out


def squad_texts(path: str | Path, tokenizer, max_tokens: int | Sequence[int]) -> list[str]:
    """Questions, sentences and sentence windows of at most ``max_tokens`` tokens (each size, when a list) of a
    SQuAD-format JSON file (distinct, in order)."""
    sizes = [max_tokens] if isinstance(max_tokens, int) else list(max_tokens)
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(doc, Mapping) or not isinstance(doc.get("data"), list):
        raise ValueError(f"{path}: not a SQuAD JSON file (no top-level 'data' list)")
    texts: list[str] = []
    for art in doc["data"]:
        for para in art.get("paragraphs", []):
            sents = split_sentences(para["context"])
            lens = [len(ids) for ids in tokenizer(sents, add_special_tokens=False)["input_ids"]] if sents else []
            texts += sents
            for size in sizes:
                texts += [w for w in sentence_windows(sents, lens, size - 2) if w not in sents]
            texts += [q["question"].strip() for q in para.get("qas", []) if q.get("question", "").strip()]
    return list(dict.fromkeys(texts))


def rt_polarity_texts(folder: str | Path, eval_per_class: int) -> tuple[list[str], list[str]]:
    """(training lines, eval lines) of rt-polarity: the last ``eval_per_class`` lines of each file evaluate."""
    train, ev = [], []
    for name in ("rt-polarity.neg", "rt-polarity.pos"):
        f = Path(folder) / name
        if not f.is_file():
            raise FileNotFoundError(f"{f} does not exist (data.rt_polarity names the rt-polarity folder)")
        lines = [ln.strip() for ln in f.read_text(encoding="latin-1").splitlines() if ln.strip()]
        if len(lines) <= eval_per_class:
            raise ValueError(f"{f} has {len(lines)} lines, not more than eval_per_class={eval_per_class}")
        train += lines[:-eval_per_class]
        ev += lines[-eval_per_class:]
    return train, ev


def embedding_texts(spec: Mapping[str, Any], tokenizer) -> tuple[list[str], list[str]]:
    """(training texts, held-out texts) of a ``format: text`` data section (see module doc)."""
    unknown = sorted(set(spec) - DATA_KEYS)
    if unknown:
        raise ValueError(f"data: unknown key(s) {unknown} for format 'text'; known: {sorted(DATA_KEYS)}")
    if not any(spec.get(k) for k in ("squad_json", "rt_polarity", "text_files")):
        raise ValueError("data (format 'text') names no text: set squad_json, rt_polarity and/or text_files")
    max_len = int(spec.get("max_length", 128))
    windows = spec.get("window_tokens") or [max_len]
    if not isinstance(windows, (list, tuple)) or not all(
            isinstance(w, int) and not isinstance(w, bool) and 8 <= w <= max_len for w in windows):
        raise ValueError(f"data.window_tokens must be a list of window sizes in tokens, each in [8, max_length="
                         f"{max_len}] (longer windows would be truncated), got {windows!r}")
    train: list[str] = []
    ev: list[str] = []
    if spec.get("squad_json"):
        train += squad_texts(spec["squad_json"], tokenizer, windows)
    for f in spec.get("text_files") or []:
        train += [ln.strip() for ln in Path(f).read_text(encoding="utf-8").splitlines() if ln.strip()]
    if spec.get("rt_polarity"):
        rt_train, ev = rt_polarity_texts(spec["rt_polarity"], int(spec.get("eval_per_class", 1000)))
        train += rt_train
    if not ev:  # no fixed split: hold out the last 5% (at least one text)
        k = max(1, len(train) // 20)
        train, ev = train[:-k], train[-k:]
    if spec.get("train_limit"):
        train = train[: int(spec["train_limit"])]
    if spec.get("eval_limit"):
        ev = ev[: int(spec["eval_limit"])]
    return train, ev


def text_dataset(texts: list[str], tokenizer, max_length: int):
    """A ``datasets.Dataset`` of the tokenized texts (unpadded: pad per batch with DataCollatorWithPadding)."""
    from datasets import Dataset

    enc = tokenizer(texts, truncation=True, max_length=max_length)
    return Dataset.from_dict(dict(enc))
