"""Saving into the folder the model was loaded from, without losing what is there.

``hf-fast export -m out -o out`` (or ``save_fast`` of a model loaded from ``out`` back into ``out``) builds the new
folder next to ``out`` as every save does. Before the atomic swap, every file of ``out`` that the new save did not
write is hard-linked (copied where links fail) into it: the transformers weights, generation config, user files.
The swap then replaces the folder in one rename, so it is the old folder or the new one, never a mix.

What the save regenerates is not carried: ``model.onnx``, ``model_fp32.onnx`` (written only with ``keep_fp32``),
``fast_config.json``, ``README.md`` and, when the save writes weights, the old weight files. The metrics recorded
in the old ``fast_config.json`` (those the card shows: accuracy, sparsity) and the card's metadata (base_model,
datasets, license) carry over when the folder's weights are exactly the model's; figures measured on the old
``model.onnx`` only (int8 accuracy or speed written into the card afterwards) describe a graph that is replaced, so
they do not.

Refused before any work, with what to do instead:
- ``export`` (which writes no weights) into its source folder when the model in memory differs from the folder's
  weights: keeping them would put two different models in one folder, dropping them would lose them.
- a save that would replace a folder holding the model's source folder (``-m out/ck -o out``).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_fast._atomic import carry_entries
from hf_fast.export.artifact import FAST_CONFIG_NAME, MODEL_FP32_NAME, MODEL_NAME, same_dir

logger = logging.getLogger(__name__)

REGENERATED = frozenset({MODEL_NAME, MODEL_FP32_NAME, FAST_CONFIG_NAME, "README.md", ".README.md.tmp"})
SAFETENSORS_WEIGHTS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
CARD_KEYS = ("base_model", "datasets", "license")


def _is_weight_file(name: str) -> bool:
    return (name.startswith("model") and name.endswith(".safetensors")) or name == SAFETENSORS_INDEX or (
        name.startswith("pytorch_model") and (name.endswith(".bin") or name == "pytorch_model.bin.index.json"))


def model_source_dir(model: Any) -> Path | None:
    """The local folder ``model`` was loaded from (``config._name_or_path``), None if it was not loaded from one."""
    nop = str(getattr(getattr(model, "config", None), "_name_or_path", "") or "")
    if not nop:
        return None
    p = Path(nop).expanduser()
    return p if p.is_dir() else None


def _inside(child: Path, parent: Path) -> bool:
    try:
        return Path(os.path.realpath(child)).is_relative_to(os.path.realpath(parent))
    except OSError:
        return False


def weights_match(model: Any, folder: Path) -> bool | None:
    """Whether the safetensors weights in ``folder`` are exactly ``model``'s parameters and buffers (None: the
    folder holds no safetensors weights). Keys missing from the file must be tied to one that is there."""
    import json

    import torch
    from safetensors import safe_open

    if (folder / SAFETENSORS_WEIGHTS).is_file():
        files = [folder / SAFETENSORS_WEIGHTS]
    elif (folder / SAFETENSORS_INDEX).is_file():
        index = json.loads((folder / SAFETENSORS_INDEX).read_text(encoding="utf-8"))
        files = [folder / f for f in sorted(set(index.get("weight_map", {}).values()))]
    else:
        return None
    sd = model.state_dict()
    seen: set[str] = set()
    try:
        for f in files:
            with safe_open(str(f), framework="pt") as h:
                for k in h.keys():
                    t = sd.get(k)
                    if t is None:
                        return False
                    v = h.get_tensor(k)
                    if v.shape != t.shape or v.dtype != t.dtype or not torch.equal(v, t.detach().cpu()):
                        return False
                    seen.add(k)
    except (OSError, ValueError, RuntimeError) as exc:  # a missing shard, a truncated file
        logger.warning("cannot read the weights in %s (%s): treating them as different", folder, exc)
        return False
    stored = {sd[k].data_ptr() for k in seen}
    return all(k in seen or sd[k].data_ptr() in stored for k in sd)


@dataclass
class InPlace:
    """What a save into the model's own folder keeps from it (see the module docstring)."""

    folder: Path
    weights_same: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)

    def merge_metrics(self, metrics: Mapping[str, Any] | None) -> dict[str, Any]:
        """The old folder's metrics, updated with the new ones (a new value wins)."""
        return {**self.metrics, **dict(metrics or {})}

    def carry_into(self, tmp: Path) -> list[str]:
        """Hard-link (or copy) into ``tmp`` every entry of the old folder that the new save did not write.
        Returns the names carried."""
        wrote_weights = any(_is_weight_file(p.name) for p in tmp.iterdir())
        return carry_entries(self.folder, tmp, drop=lambda name: name in REGENERATED or (
            wrote_weights and _is_weight_file(name)))


def plan(model: Any, out_dir: Path, *, writes_weights: bool) -> InPlace | None:
    """Check a save of ``model`` into ``out_dir`` before any work. Returns an ``InPlace`` when ``out_dir`` is the
    folder the model was loaded from, None for any other folder; raises ValueError when it cannot be done safely."""
    src = model_source_dir(model)
    out_dir = Path(out_dir)
    if src is None or not out_dir.is_dir():
        return None
    if not same_dir(src, out_dir):
        if _inside(src, out_dir):
            raise ValueError(f"the model was loaded from {str(src)!r}, inside {str(out_dir)!r}, which this save would "
                             f"replace with a new folder: save to a folder outside it (or move the model out first)")
        return None
    same = weights_match(model, out_dir)
    has_weights = same is not None or any(_is_weight_file(p.name) for p in out_dir.iterdir())
    if has_weights and not same and not writes_weights:
        raise ValueError(
            f"the model in memory differs from the weights in {str(out_dir)!r}, the folder it was loaded from (or "
            "they cannot be compared): an export writes no weights, so the folder would hold two different models. "
            "Save the model with hf_fast.save_fast(model, tokenizer, folder, calibration_dataset) (weights + int8 "
            "artifact), or export into another folder")
    keep = InPlace(out_dir, weights_same=bool(same))
    old = _old_fast_config(out_dir)
    if keep.weights_same:
        keep.metrics = dict(old.get("metrics") or {})
        keep.card = _card_metadata(out_dir)
    elif old.get("metrics"):
        why = "differ from the folder's" if has_weights else "cannot be checked against the folder (it holds none)"
        logger.warning("%s: the weights being saved %s, so its recorded metrics (%s) are not carried over",
                       out_dir, why, ", ".join(old["metrics"]))
    return keep


def _old_fast_config(folder: Path) -> dict[str, Any]:
    import json

    try:
        fc = json.loads((folder / FAST_CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(fc, dict) or not isinstance(fc.get("metrics", {}), dict):
        return {}
    return fc


def _card_metadata(folder: Path) -> dict[str, Any]:
    """base_model / datasets / license from the front matter of the folder's model card."""
    card = folder / "README.md"
    if not card.is_file():
        return {}
    try:
        from huggingface_hub import metadata_load

        meta = metadata_load(card) or {}
    except Exception as exc:  # a hand-edited card with broken YAML: keep the rest, say so
        logger.warning("cannot read the front matter of %s (%s): its metadata is not carried over", card, exc)
        return {}
    out = {k: meta[k] for k in CARD_KEYS if meta.get(k)}
    if isinstance(out.get("datasets"), str):
        out["datasets"] = [out["datasets"]]
    return out
