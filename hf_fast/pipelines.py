"""``hf_fast.pipeline(task, model=dir_or_repo)``: transformers pipelines over fast models.

    clf = hf_fast.pipeline("text-classification", model="out/fast")          # or "user/repo" on the Hub
    clf(["a fine film"])                        -> [{"label": "pos", "score": 0.97}]
    ner = hf_fast.pipeline("token-classification", model=..., aggregation_strategy="simple")
    qa = hf_fast.pipeline("question-answering", model=...)
    qa(question="who?", context="...")          -> {"score", "start", "end", "answer"}

Text and token classification are transformers' own pipelines (``transformers.pipeline(task, model=fast_model,
tokenizer=tok)`` works as well). transformers 5 removed the extractive question-answering pipeline, so
``QuestionAnsweringPipeline`` here carries it: question/context pairs, long contexts split into overlapping
windows (``doc_stride``), the best span ``start <= end < start + max_answer_len`` inside the context by
p(start) * p(end), character offsets from the fast tokenizer. It works with any model returning
``start_logits`` / ``end_logits`` (a FastModelForQuestionAnswering or a transformers QA model).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hf_fast.export.tasks import normalize_task


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max()
    e = np.exp(x)
    return e / e.sum()


def best_spans(start_logits: np.ndarray, end_logits: np.ndarray, context_mask: np.ndarray, top_k: int = 1,
               max_answer_len: int = 15):
    """Top-k (score, start_token, end_token) of one window: softmax over the context tokens,
    score = p(start) * p(end), start <= end < start + max_answer_len."""
    big_neg = -1e9
    s = np.where(context_mask, start_logits, big_neg).astype(np.float64)
    e = np.where(context_mask, end_logits, big_neg).astype(np.float64)
    ps, pe = _softmax(s), _softmax(e)
    outer = np.triu(np.outer(ps, pe))
    outer = np.tril(outer, max_answer_len - 1)
    outer = outer * np.outer(context_mask, context_mask)
    flat = outer.ravel()
    k = min(int(top_k), int(np.count_nonzero(flat > 0)) or 1)
    idx = np.argpartition(-flat, k - 1)[:k] if k < flat.size else np.arange(flat.size)
    idx = idx[np.argsort(-flat[idx])][:k]
    n = outer.shape[1]
    return [(float(flat[i]), int(i // n), int(i % n)) for i in idx]


class QuestionAnsweringPipeline:
    """Extractive QA over a model with ``start_logits`` / ``end_logits`` and a fast tokenizer."""

    task = "question-answering"

    def __init__(self, model, tokenizer, batch_size: int = 8, max_seq_len: int = 384, doc_stride: int = 128,
                 max_question_len: int = 64, max_answer_len: int = 15, top_k: int = 1):
        if tokenizer is None or not getattr(tokenizer, "is_fast", False):
            raise ValueError("question answering needs a fast tokenizer (character offsets): "
                             "AutoTokenizer.from_pretrained(path) with use_fast=True")
        self.model, self.tokenizer = model, tokenizer
        limit = getattr(model, "max_length", None)
        self.defaults = dict(batch_size=batch_size, max_seq_len=min(max_seq_len, limit) if limit else max_seq_len,
                             doc_stride=doc_stride, max_question_len=max_question_len,
                             max_answer_len=max_answer_len, top_k=top_k)
        self.input_names = list(getattr(model, "input_names", None)
                                or ["input_ids", "attention_mask", "token_type_ids"])

    def _forward(self, feeds: dict[str, np.ndarray]):
        out = self.model(**feeds) if getattr(self.model, "_is_hf_fast", False) else self._torch_forward(feeds)
        return np.asarray(out.start_logits, np.float32), np.asarray(out.end_logits, np.float32)

    def _torch_forward(self, feeds):
        import torch

        with torch.inference_mode():
            out = self.model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
        return type("O", (), {"start_logits": out.start_logits.float().numpy(),
                              "end_logits": out.end_logits.float().numpy()})

    def __call__(self, question: str | Sequence[str] | None = None, context: str | Sequence[str] | None = None,
                 **kwargs):
        """question/context (strings or equal-length lists), or a dict / list of dicts with those keys."""
        opts = {**self.defaults, **kwargs}
        if question is not None and context is None and isinstance(question, (dict, list)):
            items = [question] if isinstance(question, dict) else list(question)
            if not all(isinstance(i, dict) and "question" in i and "context" in i for i in items):
                raise ValueError("pass question= and context=, or dicts with 'question' and 'context'")
            qs, cs, single = [i["question"] for i in items], [i["context"] for i in items], isinstance(question, dict)
        else:
            if question is None or context is None:
                raise ValueError("question answering needs question= and context=")
            single = isinstance(question, str)
            qs = [question] if single else list(question)
            cs = [context] * len(qs) if isinstance(context, str) else list(context)
            if len(qs) != len(cs):
                raise ValueError(f"{len(qs)} questions for {len(cs)} contexts")
        for q, c in zip(qs, cs, strict=False):
            if not isinstance(q, str) or not isinstance(c, str) or not q.strip() or not c.strip():
                raise ValueError("question and context must be non-empty strings")
        results = [self._answer_one(q, c, opts) for q, c in zip(qs, cs, strict=False)]
        if opts["top_k"] == 1:
            results = [r[0] for r in results]
        return results[0] if single else results

    def _answer_one(self, question: str, context: str, o) -> list[dict[str, Any]]:
        tok = self.tokenizer
        q_ids = tok(question, add_special_tokens=False)["input_ids"]
        if len(q_ids) > o["max_question_len"]:  # keep room for the context
            question = tok.decode(q_ids[: o["max_question_len"]])
        pad_right = tok.padding_side == "right"
        enc = tok(question if pad_right else context, context if pad_right else question,
                  truncation="only_second" if pad_right else "only_first", max_length=o["max_seq_len"],
                  stride=min(o["doc_stride"], o["max_seq_len"] // 2), return_overflowing_tokens=True,
                  return_offsets_mapping=True, padding="longest", return_tensors="np")
        ctx_id = 1 if pad_right else 0
        n = enc["input_ids"].shape[0]
        seq_ids = [enc.sequence_ids(i) for i in range(n)]
        cands = []
        for b0 in range(0, n, o["batch_size"]):
            feeds = {k: np.asarray(enc[k][b0:b0 + o["batch_size"]], np.int64) for k in self.input_names if k in enc}
            if "token_type_ids" in self.input_names and "token_type_ids" not in feeds:
                feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
            start, end = self._forward(feeds)
            for j in range(start.shape[0]):
                i = b0 + j
                cmask = np.array([s == ctx_id for s in seq_ids[i]], bool)
                if not cmask.any():
                    continue
                offsets = enc["offset_mapping"][i]
                for score, s, e in best_spans(start[j], end[j], cmask, o["top_k"], o["max_answer_len"]):
                    cs, ce = int(offsets[s][0]), int(offsets[e][1])
                    cands.append({"score": score, "start": cs, "end": ce, "answer": context[cs:ce]})
        if not cands:
            return [{"score": 0.0, "start": 0, "end": 0, "answer": ""}]
        best, seen = [], set()
        for c in sorted(cands, key=lambda c: -c["score"]):
            if (c["start"], c["end"]) not in seen:
                seen.add((c["start"], c["end"]))
                best.append(c)
        return best[: o["top_k"]]


def _load(model, tokenizer, backend, hub_kw, model_kwargs):
    from hf_fast.hub import resolve_artifact
    from hf_fast.runtime.modeling import load_fast_model

    if isinstance(model, (str, Path)):
        path = resolve_artifact(model, **hub_kw)
        fm = load_fast_model(path, backend=backend, **model_kwargs)
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(path))
        return fm, tokenizer
    if model is None:
        raise ValueError("hf_fast.pipeline needs model= (a fast folder, a Hub repo id or a FastModel)")
    if tokenizer is None and getattr(model, "path", None) is not None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(model.path))
    return model, tokenizer


def _qa_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """transformers.pipeline's device/dtype arguments checked (a CPU device is the only one), then the options of
    QuestionAnsweringPipeline; anything else is a TypeError that names hf_fast.pipeline."""
    import inspect

    from hf_fast.runtime.load_options import check_cpu_device

    kwargs = dict(kwargs)
    check_cpu_device("hf_fast.pipeline", "device", kwargs.pop("device", None), "AutoModelForQuestionAnswering")
    check_cpu_device("hf_fast.pipeline", "device_map", kwargs.pop("device_map", None), "AutoModelForQuestionAnswering")
    for k in ("dtype", "torch_dtype", "trust_remote_code"):
        if kwargs.pop(k, None) not in (None, False, "auto", "float32"):
            import warnings

            warnings.warn(f"hf_fast.pipeline: {k} ignored: the fast model computes in int8 on the CPU", UserWarning,
                          stacklevel=3)
    takes = [n for n in inspect.signature(QuestionAnsweringPipeline.__init__).parameters
             if n not in ("self", "model", "tokenizer")]
    unknown = sorted(set(kwargs) - set(takes))
    if unknown:
        raise TypeError(f"hf_fast.pipeline('question-answering') got unexpected keyword argument(s) "
                        f"{', '.join(map(repr, unknown))}; it takes {', '.join(takes)}")
    return kwargs


def pipeline(task: str | None = None, model: Any = None, tokenizer: Any = None, *, backend: str | None = None,
             revision: str | None = None, cache_dir=None, token=None, local_files_only: bool | None = None,
             model_kwargs: dict[str, Any] | None = None, **pipeline_kwargs):
    """A pipeline over a fast model. ``model``: a fast folder, a Hub repo id (downloaded with the Hub cache;
    revision/cache_dir/token/local_files_only) or a loaded FastModel. ``task`` defaults to the artifact's.
    ``tokenizer`` defaults to the one saved in the folder. ``model_kwargs`` go to from_pretrained (num_threads...).
    Other keyword arguments go to the pipeline (e.g. ``aggregation_strategy``, ``top_k``)."""
    hub_kw = dict(revision=revision, cache_dir=cache_dir, token=token, local_files_only=local_files_only)
    fm, tok = _load(model, tokenizer, backend, hub_kw, dict(model_kwargs or {}))
    own = fm.fast_config["task"] if hasattr(fm, "fast_config") else None
    task = normalize_task(task) if task is not None else own
    if task is None:
        raise ValueError("pass task= (the model is not an hf-fast model)")
    if own is not None and own != task:
        raise ValueError(f"the model is a {own!r} model, not {task!r}")
    if task == "question-answering":
        return QuestionAnsweringPipeline(fm, tok, **_qa_kwargs(pipeline_kwargs))
    from hf_fast._deps import missing

    if missing(("torch",)):  # transformers' pipelines run on torch tensors; hf-fast's own QA pipeline does not
        raise ImportError(f"transformers' {task} pipeline needs torch, which a runtime-only install of hf-fast does "
                          "not include: pip install torch (or 'hf-fast[train]'), or call the model directly: "
                          "model(**tokenizer(texts, padding=True, return_tensors='np')).logits", name="torch")
    import transformers

    return transformers.pipeline(task, model=fm, tokenizer=tok, **pipeline_kwargs)
