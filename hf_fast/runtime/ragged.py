"""Padding-free ragged batches: which padded [batch, sequence] inputs the engine can run packed, and how.

The tokenizer pads a batch of mixed lengths to its longest row. `hf_engine_run_packed` runs only the real tokens:
every Linear, LayerNorm and GELU on the sum(lengths) real rows, attention per sequence over its own tokens. This
module reads the attention mask into per-sequence lengths and first positions (`layout`), packs the ids
(`pack`) and scatters token-level outputs back to [batch, sequence, width] (`unpack`), with zeros at the pad
positions: what a padded run computes there is the output of a token nobody attends to, which no task reads (QA
spans, token labels and pooling all skip masked positions).

A row packs when its real tokens are one contiguous run (right or left padding); its tokens keep their positions
(a left-padded row starts at its pad count, as in the padded run). The padded run stays in use where packing would
change an output: a row with holes in its mask, a CLS head on left-padded rows (the padded run reads column 0, a
pad token there), and an all-padding row (no tokens to run) unless ragged=True asks for packing, which refuses it.
HF_FAST_RAGGED=0 turns packing off (the padded run for every batch).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np


def enabled(ragged: bool | None) -> bool | None:
    """ragged: True (pack, or raise why not), False (padded run), None (pack when it helps; HF_FAST_RAGGED=0: never)."""
    if ragged is None and os.environ.get("HF_FAST_RAGGED", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return ragged


@dataclass
class Layout:
    keep: np.ndarray  # bool [B, S]: the real tokens
    lens: np.ndarray  # int64 [B]
    pos0: np.ndarray  # int64 [B]: position of each row's first real token


def layout(mask: np.ndarray | None, *, cls_head: bool, force: bool) -> Layout | None:
    """The packed layout of a batch, or None when the padded run is the one to use. force (ragged=True) raises a
    ValueError naming the row instead of returning None for a batch that cannot be packed."""
    if mask is None or mask.all():
        return None  # nothing to skip: packing would only copy
    keep = mask != 0
    lens = keep.sum(axis=1).astype(np.int64)
    pos0 = np.argmax(keep, axis=1).astype(np.int64)
    cols = np.arange(mask.shape[1])[None, :]
    contiguous = (cols >= pos0[:, None]) & (cols < (pos0 + lens)[:, None])

    def refuse(msg: str) -> None:
        if force:
            raise ValueError(f"ragged=True: {msg}")

    if (lens == 0).any():
        refuse(f"row {int(np.argmin(lens))} of attention_mask is all padding: a packed batch needs at least one real "
               "token per row (drop the row, or run it padded with ragged=False)")
        return None
    if not np.array_equal(keep, contiguous):
        bad = int(np.nonzero((keep != contiguous).any(axis=1))[0][0])
        refuse(f"row {bad} of attention_mask is not one contiguous run of real tokens")
        return None
    if cls_head and (pos0 > 0).any():
        refuse(f"row {int(np.argmax(pos0 > 0))} is left-padded and the head reads token 0 ([CLS]), a pad token in the "
               "padded layout; pad on the right")
        return None
    return Layout(keep, lens, pos0)


def pack(x: np.ndarray | None, lay: Layout) -> np.ndarray | None:
    """[B, S] -> the real tokens of every row back to back (row-major order keeps each row's tokens in order)."""
    return None if x is None else np.ascontiguousarray(x[lay.keep], dtype=np.int64)


def unpack(out: np.ndarray, lay: Layout) -> np.ndarray:
    """Token-level [sum lens, width] -> [B, S, width] with zeros at the pad positions."""
    full = np.zeros(lay.keep.shape + out.shape[1:], out.dtype)
    full[lay.keep] = out
    return full
