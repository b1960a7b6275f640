"""``FastSentenceTransformer``: sentence embeddings from a feature-extraction artifact, with
``sentence_transformers.SentenceTransformer``'s ``encode`` / ``similarity``.

    from hf_fast import FastSentenceTransformer
    model = FastSentenceTransformer.from_pretrained("out/minilm-fast")      # or a Hub repo id
    emb = model.encode(["a fine film", "a dull one"])                       # numpy [2, 384]
    model.similarity(emb, emb)                                              # cosine, [2, 2]
    st = model.to_sentence_transformer()   # a real SentenceTransformer whose forward runs the engine:
    sentence_transformers.util.semantic_search(st.encode(queries, convert_to_tensor=True), corpus_emb)

The engine (backend "native", the default) fuses the artifact's pooling and normalisation into its run
(FastModelForFeatureExtraction(output="sentence_embedding")); ONNX Runtime runs the same file and pools in numpy.
Batching follows sentence-transformers: inputs sorted by length (longest first) so each batch pads little, results
returned in input order. Texts longer than ``max_seq_length`` (the model's sentence-transformers setting, e.g. 256
for all-MiniLM-L6-v2, else its position table) are truncated, as sentence-transformers does; the first truncation
says so in a warning. An iterable that is not a list (a ``datasets`` column, a generator) is streamed in windows of
``stream_window_batches`` batches: memory holds one window of text and the output array.
"""
from __future__ import annotations

import itertools
import sys
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hf_fast._deps import torch_or_none

SIMILARITY_FUNCTIONS = ("cosine", "dot", "euclidean", "manhattan")


class FastSentenceTransformer:
    """A FastModelForFeatureExtraction returning sentence embeddings, plus its tokenizer."""

    #: batches per length-sorted window when ``encode`` streams an iterable (64 x 32 = 2,048 sentences by default):
    #: larger windows pad less, smaller ones hold less text
    stream_window_batches: int = 64

    def __init__(self, model, tokenizer, *, max_seq_length: int | None = None, similarity_fn_name: str = "cosine"):
        if getattr(model, "output", None) != "sentence_embedding":
            raise ValueError("FastSentenceTransformer needs FastModelForFeatureExtraction.from_pretrained(path, "
                             "output='sentence_embedding'); use FastSentenceTransformer.from_pretrained(path)")
        if tokenizer is None:
            raise ValueError("FastSentenceTransformer needs the model's tokenizer")
        self.model, self.tokenizer = model, tokenizer
        pooling = model.fast_config.get("pooling") or {}
        limit = int(model.max_length)
        want = max_seq_length if max_seq_length is not None else pooling.get("max_seq_length", limit)
        if isinstance(want, bool) or not isinstance(want, int) or want <= 0:
            raise ValueError(f"max_seq_length must be a positive int, got {want!r}")
        self.max_seq_length = min(want, limit)
        if similarity_fn_name not in SIMILARITY_FUNCTIONS:
            raise ValueError(f"similarity_fn_name={similarity_fn_name!r}: one of {', '.join(SIMILARITY_FUNCTIONS)}")
        self.similarity_fn_name = similarity_fn_name
        self._warned_truncation = False

    @classmethod
    def from_pretrained(cls, path: str | Path, backend: str | None = None, *, revision: str | None = None,
                        cache_dir=None, token=None, local_files_only: bool | None = None,
                        max_seq_length: int | None = None, similarity_fn_name: str = "cosine", **kwargs):
        """Load a feature-extraction artifact folder (hf_fast.save_fast of a SentenceTransformer, or
        ``hf-fast export --task feature-extraction``) or a Hub repo id. ``backend``/``kwargs``: those of
        FastModelForFeatureExtraction.from_pretrained (``num_threads=``, ...)."""
        from transformers import AutoTokenizer

        from hf_fast.hub import resolve_artifact
        from hf_fast.runtime.modeling import FastModelForFeatureExtraction

        path = resolve_artifact(path, revision=revision, cache_dir=cache_dir, token=token,
                                local_files_only=local_files_only)
        model = FastModelForFeatureExtraction.from_pretrained(path, backend=backend, output="sentence_embedding",
                                                              **kwargs)
        return cls(model, AutoTokenizer.from_pretrained(str(path)), max_seq_length=max_seq_length,
                   similarity_fn_name=similarity_fn_name)

    # ---------------------------------------------------------------- sentence-transformers surface
    def get_sentence_embedding_dimension(self) -> int:
        return int(self.model.fast_config["hidden_size"])

    get_embedding_dimension = get_sentence_embedding_dimension

    def __repr__(self):
        p = self.model.fast_config.get("pooling") or {}
        return (f"FastSentenceTransformer(path={self.model.name_or_path!r}, backend="
                f"{getattr(self.model.backend, 'name', '?')!r}, pooling={p.get('mode')!r}, "
                f"normalize={p.get('normalize')}, max_seq_length={self.max_seq_length})")

    def tokenize(self, texts: list[str]) -> dict[str, np.ndarray]:
        """The model's tokenizer, padded to the batch's longest text, truncated at max_seq_length."""
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_seq_length,
                             return_tensors="np")
        if not self._warned_truncation and enc["input_ids"].shape[1] >= self.max_seq_length:
            full = self.tokenizer(list(texts), truncation=False)["input_ids"]
            if any(len(f) > self.max_seq_length for f in full):
                self._warned_truncation = True
                warnings.warn(f"hf-fast: texts longer than max_seq_length={self.max_seq_length} tokens are truncated "
                              "(as sentence-transformers does); this is said once per model", UserWarning,
                              stacklevel=3)
        return {k: np.asarray(enc[k], np.int64) for k in self.model.input_names if k in enc}

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        """float32 [len(texts), dim] embeddings of one batch, in the given order."""
        return self.model.run(**self.tokenize(texts))["sentence_embedding"]

    def encode(self, sentences: str | Iterable[str], batch_size: int = 32, show_progress_bar: bool | None = None,
               output_value: str = "sentence_embedding", convert_to_numpy: bool = True,
               convert_to_tensor: bool = False, device: str | None = None, normalize_embeddings: bool = False,
               precision: str = "float32", **kwargs):
        """Embed a str (one vector) or a list of str ([n, dim]), like ``SentenceTransformer.encode``: sorted by length
        for batching, returned in input order. numpy by default; ``convert_to_tensor=True`` a torch tensor;
        ``convert_to_numpy=False`` a list of per-sentence tensors. ``normalize_embeddings``: L2-normalise (the
        model's own Normalize, if any, already ran in the engine). An empty list gives [0, dim].

        Any other iterable of str (a ``datasets`` column ``ds["text"]``, a generator, a file's lines) is streamed:
        read ``stream_window_batches * batch_size`` sentences at a time, each window sorted by length on its own,
        so memory holds one window and the output array; results still in input order."""
        if kwargs:
            raise TypeError(f"FastSentenceTransformer.encode() got unexpected keyword argument(s) "
                            f"{', '.join(map(repr, sorted(kwargs)))}")
        if output_value != "sentence_embedding":
            raise ValueError(f"output_value={output_value!r}: FastSentenceTransformer returns sentence embeddings; "
                             "for token states load FastModelForFeatureExtraction.from_pretrained(path, "
                             "output='token_embeddings')")
        if precision != "float32":
            raise ValueError(f"precision={precision!r}: FastSentenceTransformer returns float32 embeddings")
        if device is not None:
            from hf_fast.runtime.load_options import check_cpu_device

            check_cpu_device("FastSentenceTransformer.encode", "device", device, "AutoModel")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        w = self.stream_window_batches
        if isinstance(w, bool) or not isinstance(w, int) or w <= 0:
            raise ValueError(f"stream_window_batches must be a positive int, got {w!r}")
        single = isinstance(sentences, str)
        out = self._embed_windows(*_windows(sentences, batch_size * w), batch_size, show_progress_bar,
                                  normalize_embeddings)
        if single:
            out = out[0]
        torch = torch_or_none()
        if convert_to_tensor:
            if torch is None:
                raise ImportError("convert_to_tensor=True needs torch", name="torch")
            return torch.from_numpy(np.ascontiguousarray(out))
        if convert_to_numpy or torch is None:
            return out
        return torch.from_numpy(out) if single else [torch.from_numpy(r) for r in out]

    def _embed_windows(self, windows: Iterator[list[str]], total: int | None, batch_size: int,
                       show_progress_bar: bool | None, normalize: bool) -> np.ndarray:
        """float32 [n, dim]: each window sorted by length (longest first, as sentence-transformers) into batches,
        rows written in input order (L2-normalised batch by batch when ``normalize``: no second [n, dim] array)."""
        from hf_fast.pooling import normalize_rows

        dim = self.get_sentence_embedding_dimension()
        # known length: allocated once (pages become resident as rows are written); a generator's output grows
        out = np.empty((total if total is not None else _start_rows(dim), dim), np.float32)
        bar = None
        if show_progress_bar:
            from tqdm.auto import tqdm

            bar = tqdm(total=None if total is None else -(-total // batch_size), desc="Batches")
        n = 0
        for texts in windows:
            if n + len(texts) > len(out):
                out = _grow(out, n + len(texts))
            order = np.argsort([-len(t) for t in texts], kind="stable")
            for s in range(0, len(texts), batch_size):
                idx = order[s:s + batch_size]
                emb = self.embed_batch([texts[i] for i in idx])
                out[n + idx] = normalize_rows(emb) if normalize else emb
                if bar is not None:
                    bar.update(1)
            n += len(texts)
        if bar is not None:
            bar.close()
        if n < len(out):  # a generator's spare capacity, never written so never resident, goes back
            out.resize((n, dim), refcheck=False)
        return out

    def similarity(self, embeddings1, embeddings2):
        """[n, m] scores of every pair, with ``similarity_fn_name`` (cosine by default) as sentence-transformers'
        ``SentenceTransformer.similarity``: a torch tensor when torch is installed, else numpy."""
        a, b = _as_2d(embeddings1, "embeddings1"), _as_2d(embeddings2, "embeddings2")
        if a.shape[1] != b.shape[1]:
            raise ValueError(f"embeddings of different widths: {a.shape[1]} and {b.shape[1]}")
        fn = self.similarity_fn_name
        if fn == "cosine":
            from hf_fast.pooling import normalize_rows

            s = normalize_rows(a) @ normalize_rows(b).T
        elif fn == "dot":
            s = a @ b.T
        elif fn == "euclidean":
            s = -np.sqrt(np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0))
        else:
            s = -np.abs(a[:, None, :] - b[None, :, :]).sum(-1)
        s = np.ascontiguousarray(s, np.float32)
        torch = torch_or_none()
        return s if torch is None else torch.from_numpy(s)

    # ---------------------------------------------------------------- inside sentence-transformers
    def to_sentence_transformer(self):
        """A ``sentence_transformers.SentenceTransformer`` whose one module runs this model (tokenizer + engine,
        pooling and normalisation included): its ``encode``, ``similarity``, ``util.semantic_search`` and the rest
        of sentence-transformers work on the fast model. Needs sentence-transformers installed."""
        from hf_fast.st_module import EngineSentenceTransformer, FastEngineModule

        return EngineSentenceTransformer(modules=[FastEngineModule(self)], device="cpu",
                                         similarity_fn_name=self.similarity_fn_name)


def _windows(sentences, window: int):
    """(iterator over lists of str, total or None): the input in the order given, as windows of ``window`` sentences,
    each checked; a list or tuple is one window (sorted as a whole, as sentence-transformers does)."""
    if sentences is None:
        raise ValueError("encode() got None: pass a str, a list of str or an iterable of str")
    if isinstance(sentences, str):
        return iter([[sentences]]), 1
    if isinstance(sentences, (list, tuple)):
        return iter([_checked(sentences, 0)] if sentences else []), len(sentences)
    ds = sys.modules.get("datasets")  # a datasets object can exist only once datasets was imported
    if ds is not None and isinstance(sentences, (ds.Dataset, ds.IterableDataset)):
        raise TypeError(f"encode() takes one column of str, got a whole {type(sentences).__name__}: pass "
                        "dataset['<text column>']")
    if isinstance(sentences, (bytes, dict)) or not hasattr(sentences, "__iter__"):
        raise TypeError(f"encode() takes a str, a list of str or an iterable of str, got {type(sentences).__name__}")
    try:
        total = len(sentences)
    except TypeError:  # a generator: its length is learnt at the end
        total = None
    if ds is not None and isinstance(sentences, ds.arrow_dataset.Column) and isinstance(sentences.source, ds.Dataset):
        # a Dataset column: read window by window from Arrow (slices), not row by row
        chunks = (sentences[i:i + window] for i in range(0, total, window))
    else:
        it = iter(sentences)
        chunks = iter(lambda: list(itertools.islice(it, window)), [])
    return _checked_chunks(chunks), total


def _checked_chunks(chunks):
    start = 0
    for texts in chunks:
        yield _checked(texts, start)
        start += len(texts)


def _checked(texts, start: int) -> list[str]:
    bad = next(((i, t) for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"encode() takes str sentences; item {start + bad[0]} is {type(bad[1]).__name__}")
    return list(texts)


# a generator's output starts at this size (virtual: pages become resident as rows are written). Above glibc's largest
# mmap threshold (32 MiB), so the block is its own mapping and growing it (realloc) remaps pages instead of copying
_START_BYTES = 64 << 20


def _start_rows(dim: int) -> int:
    return max(1, _START_BYTES // (4 * dim))


def _grow(out: np.ndarray, rows: int) -> np.ndarray:
    """``out`` with room for at least ``rows`` rows, capacity doubled in place (ndarray.resize: realloc, an mremap for
    a mapped block: no copy, so a generator's output is the only memory that grows)."""
    out.resize((max(rows, 2 * len(out)), out.shape[1]), refcheck=False)
    return out


def _as_2d(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, np.float32)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"{name} must be [n, dim] embeddings, got shape {a.shape}")
    return a
