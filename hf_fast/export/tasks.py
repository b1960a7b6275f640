"""The exporter's view of tasks and architectures, read from the model registry (hf_fast.models).

Kept as an import path: the task table lives in hf_fast/models/tasks.py, the families in hf_fast/models/*.py.
"""
from __future__ import annotations

from hf_fast.models import registry
from hf_fast.models.tasks import (
    TASK_ALIASES,
    TASKS,
    normalize_task,
    task_from_architectures,
    task_from_class_name,
)

__all__ = ["TASKS", "TASK_ALIASES", "ARCHITECTURES", "normalize_task", "task_from_class_name",
           "task_from_architectures", "check_architecture", "io_names"]

# model_type -> {"inputs": graph inputs in order}: a read-only view of the registry for older callers
ARCHITECTURES: dict[str, dict[str, object]] = {t: {"inputs": list(f.inputs)} for t, f in registry.families().items()}


def check_architecture(model_type: str | None) -> str:
    """``model_type`` when hf-fast supports it; ValueError naming the supported ones otherwise."""
    return registry.get(model_type).model_type


def io_names(model_type: str, task: str) -> tuple[list[str], list[str]]:
    return list(registry.get(model_type).inputs), list(TASKS[normalize_task(task)]["outputs"])
