"""hf_fast.training: FastTrainer = transformers.Trainer + block pruning + distillation (+ optional QAT).

Public API: FastTrainer, FastConfig, DistillConfig, PruningCallback, DistillationLoss, EmbeddingDistillationLoss,
QATCallback, SparsitySchedule, load_recipe. Only ``config`` and ``schedule`` import without torch; the rest load lazily.
"""
from hf_fast.training.config import DistillConfig, FastConfig
from hf_fast.training.schedule import SparsitySchedule

_LAZY = {
    "FastTrainer": "hf_fast.training.trainer",
    "PruningCallback": "hf_fast.training.pruning",
    "DistillationLoss": "hf_fast.training.distillation",
    "EmbeddingDistillationLoss": "hf_fast.training.embed_distill",
    "QATCallback": "hf_fast.training.quantization",
    "load_recipe": "hf_fast.training.recipe",
    "Recipe": "hf_fast.training.recipe",
}

__all__ = ["FastConfig", "DistillConfig", "SparsitySchedule", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        from hf_fast._deps import require_train

        require_train(f"hf_fast.training.{name}")

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hf_fast.training' has no attribute {name!r}")
