"""Datasets named by a recipe's ``data`` section, read from local files (no Hub):

  rt-polarity  ``<path>/rt-polarity.pos|neg`` (latin-1), fixed split: the last ``eval_per_class`` lines of each
               file evaluate, the rest train; label 1 = positive
  sst2-tsv     ``<path>/train.tsv`` and ``<path>/dev.tsv`` (``sentence<TAB>label`` with a header)
  hub          ``datasets.load_dataset(name, config)`` (needs the Hub or its cache)

``classification_datasets(spec, tokenizer)`` returns tokenized ``datasets.Dataset`` train/eval splits.
(SQuAD ``squad-json``: features, eval offsets and answer postprocessing are in ``hf_fast.training.qa_data``.)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


def read_rt_polarity(path, eval_per_class: int = 1000) -> tuple[dict[str, list], dict[str, list]]:
    p = Path(path)
    train = {"text": [], "label": []}
    ev = {"text": [], "label": []}
    for fname, label in (("rt-polarity.neg", 0), ("rt-polarity.pos", 1)):
        lines = [s.strip() for s in (p / fname).read_bytes().decode("latin-1").splitlines() if s.strip()]
        cut = len(lines) - eval_per_class
        train["text"] += lines[:cut]
        train["label"] += [label] * cut
        ev["text"] += lines[cut:]
        ev["label"] += [label] * (len(lines) - cut)
    return train, ev


def read_sst2_tsv(path) -> tuple[dict[str, list], dict[str, list]]:
    out = []
    for f in ("train.tsv", "dev.tsv"):
        rows = [s.rsplit("\t", 1) for s in (Path(path) / f).read_text().splitlines()[1:] if s.strip()]
        out.append({"text": [r[0] for r in rows], "label": [int(r[1]) for r in rows]})
    return out[0], out[1]


def classification_datasets(spec: dict[str, Any], tokenizer, max_length: int = None):
    from datasets import Dataset

    fmt = spec["format"]
    if fmt == "rt-polarity":
        tr, ev = read_rt_polarity(spec["path"], spec.get("eval_per_class", 1000))
    elif fmt == "sst2-tsv":
        tr, ev = read_sst2_tsv(spec["path"])
    elif fmt == "hub":
        from datasets import load_dataset

        d = load_dataset(spec["name"], spec.get("config"))
        col = spec.get("text_column", "text")
        tr = {"text": d[spec.get("train_split", "train")][col], "label": d[spec.get("train_split", "train")]["label"]}
        es = d[spec.get("eval_split", "validation")]
        ev = {"text": es[col], "label": es["label"]}
    else:
        raise ValueError(f"data format {fmt!r} is not a classification format")
    if spec.get("augment"):
        from hf_fast.training.augment import augment_split

        tr = augment_split(tr, spec["augment"])
    ml = max_length or spec.get("max_length", 128)
    train_padding = spec.get("train_padding", "max_length")
    if train_padding not in ("max_length", "dynamic"):
        raise ValueError(f"data.train_padding must be 'max_length' or 'dynamic', not {train_padding!r}")

    def tok(padding):
        return lambda batch: tokenizer(batch["text"], truncation=True, max_length=ml, padding=padding)

    out = []
    # "dynamic" leaves training rows unpadded (a DataCollatorWithPadding pads each batch to its longest row:
    # rt-polarity averages ~30 tokens of 64); eval rows stay padded so they stack into one array
    for d, lim, pad in ((tr, spec.get("train_limit"), "max_length" if train_padding == "max_length" else False),
                        (ev, spec.get("eval_limit"), "max_length")):
        ds = Dataset.from_dict(d).shuffle(seed=0) if lim else Dataset.from_dict(d)
        if lim:
            ds = ds.select(range(min(lim, len(ds))))
        out.append(ds.map(tok(pad), batched=True, remove_columns=["text"]).rename_column("label", "labels"))
    return out[0], out[1]
