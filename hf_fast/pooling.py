"""Sentence-embedding pooling: what fast_config.json "pooling" records, where it is read from, and the numpy
reference the ONNX Runtime backend runs (the native engine fuses the same ops into its head program).

    {"mode": "mean" | "cls" | "max" | "mean_sqrt_len", "normalize": true | false, "source": "1_Pooling/config.json"}

The modes are sentence-transformers' ``Pooling`` modes (``pooling_mode_mean_tokens`` & co.) over the tokens the
attention mask keeps; ``normalize`` is its ``Normalize`` module (L2). They are read from a sentence-transformers
folder (``modules.json`` -> the Pooling module's ``config.json``, a Normalize module) or from a loaded
``SentenceTransformer``; a plain transformers checkpoint gets sentence-transformers' own default (mean, no
normalisation). Pure Python + numpy: no torch.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len")
# sentence-transformers Pooling config key -> our mode name
_ST_KEYS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
            "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len"}
_ST_UNSUPPORTED = ("pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")
# the engine's head ops (models/spec.py HEAD_OPS + POOLING_HEAD_OPS) for each mode
ENGINE_OPS = {"mean": "mean", "cls": "cls", "max": "max", "mean_sqrt_len": "mean_sqrt_len"}
DEFAULT = {"mode": "mean", "normalize": False, "source": "default (sentence-transformers' mean pooling)"}


def check_pooling(pooling: Any) -> dict[str, Any]:
    """A fast_config "pooling" record, validated (ValueError naming the field)."""
    if not isinstance(pooling, Mapping):
        raise ValueError(f"pooling must be a mapping with 'mode' and 'normalize', got {type(pooling).__name__}")
    mode, norm = pooling.get("mode"), pooling.get("normalize")
    if mode not in POOLING_MODES:
        raise ValueError(f"pooling mode {mode!r}: hf-fast pools with one of {', '.join(POOLING_MODES)}")
    if not isinstance(norm, bool):
        raise ValueError(f"pooling normalize must be true or false, got {norm!r}")
    out = {"mode": mode, "normalize": norm, "source": str(pooling.get("source") or "")}
    msl = pooling.get("max_seq_length")
    if msl is not None:
        if isinstance(msl, bool) or not isinstance(msl, int) or msl <= 0:
            raise ValueError(f"pooling max_seq_length must be a positive int, got {msl!r}")
        out["max_seq_length"] = msl
    return out


def _mode_from_st_config(cfg: Mapping[str, Any], where: str) -> str:
    """Our mode from a Pooling config: sentence-transformers 5+ writes ``pooling_mode`` ("mean", ...,
    "mean_sqrt_len_tokens", or a list of them), older versions one ``pooling_mode_<x>`` flag per mode."""
    if "pooling_mode" in cfg:
        raw = cfg["pooling_mode"]
        modes = [raw] if isinstance(raw, str) else list(raw or [])
    else:
        modes = [k for k in (*_ST_KEYS, *_ST_UNSUPPORTED) if cfg.get(k)]
    named = [_ST_KEYS.get(m, _ST_KEYS.get(f"pooling_mode_{m}", m)) for m in modes]
    named = ["mean_sqrt_len" if m == "mean_sqrt_len_tokens" else m for m in named]
    if len(named) != 1 or named[0] not in POOLING_MODES:
        raise ValueError(f"{where}: pooling {modes or 'none'} is not supported: hf-fast pools with exactly one of "
                         f"{', '.join(POOLING_MODES)}")
    return named[0]


def from_folder(folder: str | Path) -> dict[str, Any] | None:
    """The pooling of a sentence-transformers folder (modules.json), None for a folder without one. Modules hf-fast
    cannot run after the pooling (Dense, ...) raise ValueError rather than being dropped silently."""
    root = Path(folder)
    mods_file = root / "modules.json"
    if not mods_file.is_file():
        return None
    try:
        mods = json.loads(mods_file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{mods_file}: not valid JSON ({exc})") from exc
    mode, normalize, source = None, False, None
    for m in mods:
        kind = str(m.get("type", "")).rsplit(".", 1)[-1]
        if kind == "Transformer" and mode is None:
            continue
        if kind == "Pooling" and mode is None:
            cfg_file = root / str(m.get("path", "")) / "config.json"
            try:
                cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ValueError(f"{cfg_file}: cannot read the Pooling config ({exc})") from exc
            mode = _mode_from_st_config(cfg, str(cfg_file))
            source = f"{m.get('path')}/config.json"
        elif kind == "Normalize" and mode is not None:
            normalize = True
        else:
            raise ValueError(f"{mods_file}: module {m.get('type')!r} ({m.get('path')!r}) is not one hf-fast runs: "
                             "it exports Transformer -> Pooling -> optional Normalize")
    if mode is None:
        raise ValueError(f"{mods_file} lists no Pooling module")
    rec = {"mode": mode, "normalize": normalize, "source": source}
    try:  # the length sentence-transformers truncates to (256 for all-MiniLM-L6-v2)
        msl = json.loads((root / "sentence_bert_config.json").read_text(encoding="utf-8")).get("max_seq_length")
    except (OSError, ValueError, AttributeError):
        msl = None
    if isinstance(msl, int) and msl > 0:
        rec["max_seq_length"] = msl
    return rec


def from_sentence_transformer(st_model) -> dict[str, Any]:
    """The pooling of a loaded ``sentence_transformers.SentenceTransformer`` (its modules, in order)."""
    mods = list(st_model)
    mode, normalize = None, False
    for i, m in enumerate(mods):
        kind = type(m).__name__
        if i == 0 and hasattr(m, "auto_model"):
            continue
        if kind == "Pooling" and mode is None:
            mode = _mode_from_st_config(m.get_config_dict(), "SentenceTransformer Pooling module")
        elif kind == "Normalize" and mode is not None:
            normalize = True
        else:
            raise ValueError(f"SentenceTransformer module {i} ({kind}) is not one hf-fast runs: it exports "
                             "Transformer -> Pooling -> optional Normalize")
    if mode is None:
        raise ValueError("the SentenceTransformer has no Pooling module")
    return {"mode": mode, "normalize": normalize, "source": "SentenceTransformer modules"}


def is_sentence_transformer(obj: Any) -> bool:
    """A ``sentence_transformers.SentenceTransformer`` (checked by class name: no import of the library)."""
    return any(c.__name__ == "SentenceTransformer" and c.__module__.startswith("sentence_transformers")
               for c in type(obj).__mro__)


def unwrap_sentence_transformer(st_model) -> tuple[Any, Any, dict[str, Any]]:
    """(the transformers model of its Transformer module, its tokenizer, its pooling record)."""
    first = st_model[0] if len(st_model) else None
    hf_model = getattr(first, "auto_model", None)
    if hf_model is None or not hasattr(hf_model, "config"):
        raise ValueError("the SentenceTransformer's first module is not a transformers Transformer module; hf-fast "
                         "exports Transformer -> Pooling -> optional Normalize")
    rec = from_sentence_transformer(st_model)
    msl = getattr(st_model, "max_seq_length", None)
    if isinstance(msl, int) and msl > 0:
        rec["max_seq_length"] = msl
    return hf_model, getattr(st_model, "tokenizer", None), rec


def pool(hidden: np.ndarray, attention_mask: np.ndarray | None, mode: str, normalize: bool) -> np.ndarray:
    """numpy reference of sentence-transformers' Pooling (+ Normalize): [B, S, H] token states -> [B, H] float32."""
    x = np.asarray(hidden, np.float32)
    m = np.ones(x.shape[:2], np.float32) if attention_mask is None else np.asarray(attention_mask, np.float32)
    if mode == "cls":
        out = x[:, 0]
    elif mode == "max":
        out = np.where(m[..., None] > 0, x, np.float32(-1e9)).max(axis=1)
    elif mode in ("mean", "mean_sqrt_len"):
        s = (x * m[..., None]).sum(axis=1)
        n = np.maximum(m.sum(axis=1, keepdims=True), 1e-9)
        out = s / (np.sqrt(n) if mode == "mean_sqrt_len" else n)
    else:
        raise ValueError(f"pooling mode {mode!r}: one of {', '.join(POOLING_MODES)}")
    out = out.astype(np.float32)
    if normalize:
        out = normalize_rows(out)
    return np.ascontiguousarray(out)


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation as torch.nn.functional.normalize (norm clamped at 1e-12)."""
    x = np.asarray(x, np.float32)
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)
