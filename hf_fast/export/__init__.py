"""hf_fast.export: BERT-family encoder + task head -> sparse int8 ONNX "fast artifact".

    from hf_fast.export import export
    export(model, tokenizer, "out/fast", calibration_dataset=texts, task="text-classification", block="4x1")
    hf_fast.export(model, tokenizer, "out/fast", ...)        # the same function

Modules, one job each: exporter (the export function), tasks (the registry's task/architecture view),
onnx_export (PyTorch -> fp32 ONNX), calibration (samples -> feeds), smooth (SmoothQuant), quantize (static QDQ
int8), artifact (fast_config, model card, atomic save, load/verify), inplace (exporting into the model's folder).
The graph contract the engine relies on is in README.md next to this file. This file only hands names on.
"""
from __future__ import annotations

import sys as _sys
import types as _types

from hf_fast.export.artifact import (
    FAST_CONFIG_NAME,
    FORMAT_VERSION,
    MODEL_FP32_NAME,
    MODEL_NAME,
    ArtifactError,
    load_fast_config,
)
from hf_fast.export.exporter import DEFAULT_SMOOTH_QUANT, export, load_model_for_task
from hf_fast.export.tasks import ARCHITECTURES, TASKS, normalize_task

__all__ = ["export", "load_model_for_task", "ArtifactError", "load_fast_config", "TASKS", "ARCHITECTURES",
           "FORMAT_VERSION", "FAST_CONFIG_NAME", "MODEL_NAME", "MODEL_FP32_NAME", "DEFAULT_SMOOTH_QUANT",
           "normalize_task"]


class _ExportPackage(_types.ModuleType):
    """`hf_fast.export` is both this package and its function: once any `hf_fast.export.<module>` is imported,
    Python binds the package, not the function, to `hf_fast.export`, so the package forwards calls
    (`hf_fast.export(model, tok, dir)`) to `exporter.export`. Setting a module's __class__ to a ModuleType
    subclass is the customisation the Python reference documents (Data model, "Customizing module attribute
    access"); attributes such as `hf_fast.export.load_model_for_task` and `hf_fast.export.artifact` stay plain."""

    def __call__(self, *args, **kwargs):
        return export(*args, **kwargs)


_sys.modules[__name__].__class__ = _ExportPackage
