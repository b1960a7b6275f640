"""model_type -> Family: the one place hf-fast looks up what an architecture is.

Every module of this package that defines ``FAMILY`` (a spec.Family) is a supported family; adding one is adding
a module (README.md). The exporter, the trainer's mask selection, the runtime plan and the benchmarks ask here.
"""
from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import Any

from hf_fast.models.patterns import LayerPattern
from hf_fast.models.spec import Family

_NOT_FAMILIES = {"spec", "registry", "tasks"}


@functools.cache
def families() -> dict[str, Family]:
    """Supported model types -> Family, in name order."""
    import hf_fast.models as pkg

    out: dict[str, Family] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name in _NOT_FAMILIES or info.name.startswith("_"):
            continue
        fam = getattr(importlib.import_module(f"{pkg.__name__}.{info.name}"), "FAMILY", None)
        if not isinstance(fam, Family):
            continue
        if fam.model_type in out:
            raise RuntimeError(f"two registry modules claim model_type {fam.model_type!r}")
        out[fam.model_type] = fam
    return out


def supported() -> tuple[str, ...]:
    return tuple(families())


def find(model_type: str | None) -> Family | None:
    """The Family of ``model_type``, None when hf-fast does not support it (code aliases included)."""
    return families().get(model_type) if isinstance(model_type, str) else None


def code_alias_of(model_type: str | None) -> Family | None:
    """The family whose transformers code ``model_type`` shares (listed, not supported yet), or None."""
    return next((f for f in families().values() if model_type in f.code_aliases), None)


def get(model_type: str | None) -> Family:
    """The Family of ``model_type``; ValueError naming the supported ones otherwise."""
    fam = find(model_type)
    if fam is not None:
        return fam
    alias = code_alias_of(model_type)
    hint = (f"; {model_type!r} shares {alias.description}'s transformers code but is not tested with hf-fast yet"
            if alias is not None else "")
    raise ValueError(f"unsupported architecture {model_type!r}: hf-fast exports BERT-family encoders "
                     f"({', '.join(families())}; MiniLM checkpoints are 'bert'){hint}")


def for_config(cfg: Any) -> Family:
    """The Family of a transformers config; ValueError when the type, or a setting that changes its graph
    (Family.config_requirements), is not supported."""
    fam = get(getattr(cfg, "model_type", None))
    fam.check_config(cfg)
    return fam


def config_value(cfg: Any, key: str, default: Any = None) -> Any:
    """Canonical config ``key`` (spec.CONFIG_KEYS) of any config: under its own family's names when the model type
    is supported, else the first of all families' names it has (a teacher of another architecture)."""
    fam = find(getattr(cfg, "model_type", None))
    if fam is not None:
        return fam.config_value(cfg, key, default)
    for f in families().values():
        v = f.config_value(cfg, key)
        if v is not None:
            return v
    return default


def prunable_patterns() -> dict[str, str]:
    """model_type -> regex over module paths of its prunable encoder Linears."""
    return {t: f.prunable_linears for t, f in families().items()}


def layer_patterns() -> tuple[LayerPattern, ...]:
    """Every family's encoder layer pattern (models/patterns.py), each once, in family name order."""
    return tuple(dict.fromkeys(f.layer for f in families().values()))


def markdown_table() -> str:
    """README.md's table of the supported families x stages, from the registry: tests/test_models_registry.py keeps
    the README equal to it (print it with ``registry.markdown_table()``).
    Every entry exports and prunes (its prunable Linears) for its tasks, and runs in the native engine and in
    ONNX Runtime; tests/test_families.py and the engine tests check each one at parity."""
    from hf_fast.models.tasks import TASKS

    short = {"text-classification": "seq-cls", "question-answering": "QA", "token-classification": "token-cls",
             "feature-extraction": "embeddings"}
    rows = ["| family | `model_type` | positions | token types | export (tasks) | prune (FastTrainer) | native engine "
            "| ONNX Runtime |", "|---|---|---|---|---|---|---|---|"]
    for t, f in families().items():
        e = f.engine
        types = "graph input" if f.has_token_type_input else ("buffered zero row" if e.token_types else "none")
        tasks = ", ".join(short.get(k, k) for k in TASKS if k in f.heads)
        engine = "yes (right-padded batches)" if e.position == "padding-offset" else "yes"
        rows.append(f"| {f.description} | `{t}` | {e.position} | {types} | yes ({tasks}) | yes ({len(f.linear_roles)} "
                    f"Linears a layer) | {engine} | yes |")
    return "\n".join(rows) + "\n"

