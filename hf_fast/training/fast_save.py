"""What FastTrainer lends the saving of the model it trains (hf_fast.save.SaveDefaults): its tokenizer, calibration
samples from its train dataset, its block shape, and the sparsity and evaluation of the weights it holds.

hf_fast/save.py writes folders and knows nothing of training; this module knows the trainer.
"""
from __future__ import annotations

import weakref
from typing import Any

from hf_fast.save import _default_block
from hf_fast.training.masks import mask_sparsity

CALIBRATION_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "text", "sentence", "text_pair", "question",
                       "context", "tokens")


class TrainerSaveDefaults:
    """save_fast / push_to_hub defaults from a FastTrainer. The trainer is held weakly (the model, which keeps these
    defaults through its save_fast, must not keep the trainer alive); tokenizer and train dataset strongly."""

    def __init__(self, trainer):
        self._trainer = weakref.ref(trainer)
        self.tokenizer = getattr(trainer, "processing_class", None) or getattr(trainer, "tokenizer", None)
        self.train_dataset = getattr(trainer, "train_dataset", None)

    @property
    def trainer(self):
        return self._trainer()

    def _pruning(self):
        """The trainer's live PruningCallback; None once the trainer is gone or the callback was removed."""
        t = self.trainer
        if t is None:
            return None
        try:
            return t.pruning_callback
        except RuntimeError:  # FastTrainer.pruning_callback: "the PruningCallback was removed from this trainer"
            return None

    def block(self, model) -> str | None:
        cb = self._pruning()
        return cb.block if cb is not None else _default_block(model)

    def calibration(self, n: int) -> list[dict[str, Any]]:
        ds = self.train_dataset
        if ds is None:
            raise ValueError("this FastTrainer has no train_dataset to calibrate from: pass calibration_dataset=")
        n = min(int(n), len(ds))
        rows = ds.select(range(n)) if hasattr(ds, "select") else [ds[i] for i in range(n)]
        return [{k: v for k, v in dict(r).items() if k in CALIBRATION_COLUMNS} for r in rows]

    def metrics(self) -> dict[str, Any]:
        t = self.trainer
        if t is None:
            return {}
        out: dict[str, Any] = {}
        cb = self._pruning()
        if cb is not None:
            if cb.masks is not None:
                out["sparsity_reached"] = round(float(mask_sparsity(cb.masks)), 4)
            if cb.final_sparsity_target() is not None:
                out["sparsity_target"] = cb.final_sparsity_target()
        out.update(t.model_metrics())  # those of the weights held (load_best_model_at_end: the best checkpoint's)
        return out
