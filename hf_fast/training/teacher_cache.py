"""A frozen teacher's outputs for label-free embedding distillation, computed once per training text and kept on disk.

The teacher of ``distill.loss: embedding-*`` is frozen, so its pooled, normalised embedding of a text (and, with
``distill.hidden_weight > 0``, its hidden states at the text's tokens) are the same every epoch. ``TeacherCache``
fills them lazily: a batch holding a text not seen yet runs the teacher once (fp32, as without a cache) and stores
every row; a batch of seen texts reads them back and skips the teacher forward (~0.23 of ~0.77 CPU s of a
MiniLM-L6 batch-16 step). It lives in a folder, so a run resumed next session reuses it:

    meta.json         what the cache holds (teacher, pooling, layers, texts' fingerprint): a different run is refused
    embedding.npy     [n_texts, hidden] float32
    hidden.npy        [n_tokens, n_layers, hidden] float32, each text's real tokens at offsets[i]:offsets[i + 1]
    filled.npy        [n_texts] uint8, set only after the text's rows are flushed (a killed run recomputes, never
                      reads half-written rows)

Memory is bounded by the page cache: the arrays are memory-mapped ``.npy`` files (no pickle). Size: 4 * hidden bytes
per text plus 4 * hidden * n_layers per token; all-MiniLM-L6-v2 on the recipe's 16,166 texts (~29 tokens each,
6 layers): ~4.5 GB on disk (the embeddings alone: 25 MB).

Padding: the hidden-state term then compares real tokens only (``token_mask`` in the targets). Without a cache it
also compares the padded positions' states, whose number depends on how far each batch was padded (~4% of positions
with the recipe's ``group_by_length``): the one difference in what the student learns.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hf_fast._atomic import write_text

INDEX_COLUMN = "text_idx"  # the dataset column naming each row's text (FastTrainer pops it before the forward)


def texts_fingerprint(input_ids: Sequence[Sequence[int]]) -> str:
    """sha256 of the tokenized texts, in order: a cache is valid only for the texts (and tokenizer) it was built on."""
    h = hashlib.sha256()
    for ids in input_ids:
        h.update(np.asarray(ids, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()


class TeacherCache:
    """Per-text teacher targets on disk (see module doc).

    Args:
        folder: where the arrays live (created; reused when ``meta.json`` matches).
        lengths: token count of each training text (unpadded ``input_ids``), in dataset order.
        fingerprint: ``texts_fingerprint`` of those texts.
        hidden_size: the teacher's hidden size.
        layers: ``hidden_states`` indices to keep (1-based: layer l's output is index l + 1); empty: embeddings only.
        pooling: the embedding loss's pooling mode.
        teacher: the teacher's name or path (recorded, and compared on reuse).
    """

    def __init__(self, folder: str | os.PathLike, lengths: Sequence[int], fingerprint: str, hidden_size: int,
                 layers: Sequence[int], pooling: str, teacher: str):
        self.folder = Path(folder)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if self.lengths.ndim != 1 or len(self.lengths) == 0 or (self.lengths <= 0).any():
            raise ValueError("TeacherCache needs one positive token count per training text")
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.layers = sorted(int(x) for x in layers)
        self.hidden_size = int(hidden_size)
        self.pooling = pooling
        self.meta = {"version": 1, "teacher": str(teacher), "pooling": pooling, "hidden_size": self.hidden_size,
                     "layers": self.layers, "n_texts": len(self.lengths), "n_tokens": int(self.offsets[-1]),
                     "fingerprint": fingerprint, "dtype": "float32"}
        self.folder.mkdir(parents=True, exist_ok=True)
        meta_path = self.folder / "meta.json"
        fresh = not meta_path.is_file()
        if not fresh:
            old = json.loads(meta_path.read_text())
            diff = sorted(k for k in self.meta if old.get(k) != self.meta[k])
            if diff:
                raise ValueError(f"teacher cache {self.folder} was built for another run (differs in "
                                 f"{', '.join(diff)}): give the run a new cache folder, or delete this one")
        n, t, hsz = len(self.lengths), int(self.offsets[-1]), self.hidden_size
        mode = "w+" if fresh else "r+"
        self.embedding = np.lib.format.open_memmap(self.folder / "embedding.npy", mode, np.float32, (n, hsz))
        self.hidden = (np.lib.format.open_memmap(self.folder / "hidden.npy", mode, np.float32,
                                                 (t, len(self.layers), hsz)) if self.layers else None)
        self.filled = np.lib.format.open_memmap(self.folder / "filled.npy", mode, np.uint8, (n,))
        if fresh:  # the arrays exist before meta.json names them
            self._flush()
            write_text(meta_path, json.dumps(self.meta, indent=2) + "\n")
        self.hits = self.misses = 0  # texts read back / computed by this process

    def _flush(self) -> None:
        for a in (self.embedding, self.hidden, self.filled):
            if a is not None:
                a.flush()

    @property
    def n_filled(self) -> int:
        return int(self.filled.sum())

    def store(self, idx: Sequence[int], embedding: torch.Tensor, hidden_states: Sequence[torch.Tensor] | None,
              attention_mask: torch.Tensor) -> None:
        """Keep one batch's teacher outputs: ``embedding`` [B, H] (pooled, normalised), ``hidden_states`` the
        teacher's full tuple (index 0 = embeddings output), rows right-padded to the mask."""
        lens = attention_mask.sum(-1).tolist()
        emb = embedding.detach().float().cpu().numpy()
        hs = None
        if self.layers:
            if hidden_states is None:
                raise ValueError("this teacher cache keeps hidden states: run the teacher with output_hidden_states")
            hs = torch.stack([hidden_states[li].detach().float() for li in self.layers], dim=2).cpu().numpy()
        for row, k in enumerate(idx):
            if int(lens[row]) != int(self.lengths[k]):
                raise ValueError(f"text {k}: the batch has {int(lens[row])} tokens, the cache expects "
                                 f"{int(self.lengths[k])} (another tokenizer or max_length, or left padding?)")
            self.embedding[k] = emb[row]
            if hs is not None:
                self.hidden[self.offsets[k]:self.offsets[k + 1]] = hs[row, : self.lengths[k]]
        self._flush()
        self.filled[list(idx)] = 1  # only after the rows are on disk
        self.filled.flush()

    def load(self, idx: Sequence[int], seq_len: int) -> dict[str, Any]:
        """The targets of filled texts ``idx`` as a batch right-padded to ``seq_len``: ``sentence_embedding``
        [B, H], ``hidden_states`` (a tuple indexed like the teacher's, None where not kept; zeros at padding) and
        ``token_mask`` [B, seq_len]."""
        b, hsz = len(idx), self.hidden_size
        emb = torch.from_numpy(np.stack([self.embedding[k] for k in idx]))
        mask = torch.zeros(b, seq_len, dtype=torch.bool)
        out: dict[str, Any] = {"sentence_embedding": emb, "token_mask": mask}
        hid = torch.zeros(b, seq_len, len(self.layers), hsz) if self.layers else None
        for row, k in enumerate(idx):
            n = int(self.lengths[k])
            mask[row, :n] = True
            if hid is not None:
                hid[row, :n] = torch.from_numpy(np.asarray(self.hidden[self.offsets[k]:self.offsets[k + 1]]))
        if hid is not None:
            seq: list[torch.Tensor | None] = [None] * (max(self.layers) + 1)
            for j, li in enumerate(self.layers):
                seq[li] = hid[:, :, j]
            out["hidden_states"] = tuple(seq)
        return out

    def targets(self, idx: Sequence[int], inputs: Mapping[str, Any],
                teacher_forward: Callable[[], Any], embed: Callable[[Any], torch.Tensor]) -> dict[str, Any]:
        """The batch's targets: read back when every text is filled, else one ``teacher_forward()`` (whose output
        ``embed`` pools) stored first. Either way they come from the cache, so every step sees the same kind."""
        idx = [int(k) for k in idx]
        mask = inputs["attention_mask"]
        missing = [k for k in idx if not self.filled[k]]
        if missing:
            with torch.no_grad():
                out = teacher_forward()
                self.store(idx, embed(out), getattr(out, "hidden_states", None) if self.layers else None, mask)
            self.misses += len(set(missing))
        self.hits += len(idx) - len(missing)
        return self.load(idx, int(mask.shape[1]))
