"""FastTrainer: ``transformers.Trainer`` + block pruning + distillation (+ optional QAT).

    trainer = FastTrainer(model=student, teacher=teacher, args=TrainingArguments(...),
                          fast_config=FastConfig(sparsity=0.8, block="auto"), train_dataset=..., ...)
    trainer.train()

Everything else is the Trainer's: arguments, logging, checkpoints, ``resume_from_checkpoint``, accelerate.
With ``load_best_model_at_end`` only checkpoints at the final sparsity compete for "best": a checkpoint from
inside the pruning window is less sparse than the model the card describes.
The configuration is validated in the constructor (bad sparsity/block/teacher -> ValueError before training).
The resolved configuration is recorded on ``model.config.hf_fast`` (also ``model.hf_fast_config``) so the
exporter can write it into the fast artifact.
"""
from __future__ import annotations

import inspect
import logging
import os
import re
from typing import Any

import torch
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from hf_fast.training.config import FastConfig
from hf_fast.training.distillation import DistillationLoss, check_teacher_compatible
from hf_fast.training.pruning import NO_TRAINER_STATE, PruningCallback, record_on_model
from hf_fast.training.quantization import QATCallback
from hf_fast.training.teacher_cache import INDEX_COLUMN

logger = logging.getLogger(__name__)


class FastTrainer(Trainer):
    """A Trainer that prunes block-wise and distils from a teacher.

    Args:
        teacher: optional frozen teacher (any architecture/size with the same tokenizer and head). Without one
            the loss is the model's own (pruning only).
        fast_config: ``FastConfig`` (or dict, or path to a JSON/YAML file); defaults to ``FastConfig()``.
        *args, **kwargs: exactly those of ``transformers.Trainer``.
    """

    def __init__(self, model=None, args=None, *pos, teacher=None,
                 fast_config: FastConfig | dict[str, Any] | str | os.PathLike | None = None, teacher_cache=None,
                 **kwargs):
        if fast_config is None:
            fast_config = FastConfig()
        elif isinstance(fast_config, dict):
            fast_config = FastConfig.from_dict(fast_config)
        elif isinstance(fast_config, (str, os.PathLike)):
            fast_config = FastConfig.load(fast_config)
        elif not isinstance(fast_config, FastConfig):
            raise ValueError(f"fast_config must be a FastConfig, a dict or a path, got {type(fast_config).__name__}")
        if model is None:
            raise ValueError("FastTrainer needs a model (model_init is not supported)")
        self.fast_config = fast_config
        # Validate everything that can be validated before the (expensive) Trainer set-up.
        pruning = PruningCallback(fast_config)
        pruning.bind(model)
        self.teacher = teacher
        self.distill_loss = None
        if teacher is not None:
            from hf_fast.training.embed_distill import (
                EmbeddingDistillationLoss,
                check_embedding_models,
                resolve_pooling,
            )

            check_embedding_models(model, teacher, fast_config.distill)
            layer_map = check_teacher_compatible(model, teacher, fast_config.distill)
            if fast_config.distill.embedding_loss:  # label-free: the teacher's sentence embeddings
                self.distill_loss = EmbeddingDistillationLoss(fast_config.distill, layer_map,
                                                              resolve_pooling(fast_config.distill, teacher, model))
            else:
                self.distill_loss = DistillationLoss(fast_config.distill, layer_map)
        elif fast_config.distill.embedding_loss:
            raise ValueError(f"distill.loss={fast_config.distill.loss!r} learns a teacher's embeddings: pass "
                             "FastTrainer(teacher=...)")
        if teacher_cache is not None and not (teacher is not None and fast_config.distill.embedding_loss):
            raise ValueError("teacher_cache keeps a teacher's sentence-embedding targets: it needs teacher=... and "
                             "an embedding-* distill.loss")
        self.teacher_cache = teacher_cache
        callbacks = list(kwargs.pop("callbacks", None) or [])
        callbacks.append(pruning)
        if fast_config.quantization == "qat":
            start = fast_config.qat_start_step if fast_config.qat_start_step is not None else fast_config.end_step
            callbacks.append(QATCallback(start, fast_config.include, fast_config.exclude))
        super().__init__(model, args, *pos, callbacks=callbacks, **kwargs)
        record_on_model(model, pruning)
        from hf_fast.save import bind_fast_methods
        from hf_fast.training.fast_save import TrainerSaveDefaults

        self.save_defaults = TrainerSaveDefaults(self)  # tokenizer, calibration, block and metrics of this run
        bind_fast_methods(model, self.save_defaults)  # model.save_fast(dir), model.push_to_hub(repo): the fast folder
        self._hf_fast_resume_dir: str | None = None
        if teacher is not None:
            teacher.eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
            teacher.to(self.args.device)
            self._teacher_params = set(inspect.signature(teacher.forward).parameters)
            self._teacher_takes_kwargs = any(p.kind == inspect.Parameter.VAR_KEYWORD
                                             for p in inspect.signature(teacher.forward).parameters.values())
            # Our loss is a per-batch mean: let the Trainer scale it for gradient accumulation.
            self.loss_is_scaled_for_ga = False

    # -- access ---------------------------------------------------------------------------------------
    @property
    def pruning_callback(self) -> PruningCallback:
        """The live PruningCallback (the Trainer rebuilds it when resuming from a checkpoint)."""
        for cb in self.callback_handler.callbacks:
            if isinstance(cb, PruningCallback):
                return cb
        raise RuntimeError("the PruningCallback was removed from this trainer")

    @property
    def masks(self):
        return self.pruning_callback.masks

    # -- resume -----------------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        if isinstance(resume_from_checkpoint, bool) and resume_from_checkpoint:
            resume_from_checkpoint = self._newest_complete_checkpoint()
        elif resume_from_checkpoint:
            why = self.pruning_callback.checkpoint_problem(os.fspath(resume_from_checkpoint))
            if why == NO_TRAINER_STATE:  # the Trainer cannot resume from it at all
                raise ValueError(f"{os.fspath(resume_from_checkpoint)!r} is not a complete checkpoint ({why}; a run "
                                 "killed while saving it?): pass resume_from_checkpoint=True to resume from the "
                                 "newest complete one")
        self._hf_fast_resume_dir = os.fspath(resume_from_checkpoint) if resume_from_checkpoint else None
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _newest_complete_checkpoint(self) -> str:
        """``resume_from_checkpoint=True``: the newest checkpoint whose Trainer state and masks are both whole (a run
        killed while saving leaves a newer, incomplete one: skipped with a warning). If only masks are damaged
        everywhere, the newest checkpoint with a Trainer state (its masks are then recovered from its weights)."""
        out = self.args.output_dir
        steps = []
        for name in os.listdir(out) if os.path.isdir(out) else []:
            m = re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", name)
            if m and os.path.isdir(os.path.join(out, name)):
                steps.append((int(m.group(1)), os.path.join(out, name)))
        if not steps:
            raise ValueError(f"No valid checkpoint found in output directory ({out})")
        skipped, fallback = [], None
        for _, path in sorted(steps, reverse=True):
            why = self.pruning_callback.checkpoint_problem(path)
            if why is None:
                if skipped:
                    logger.warning("resuming from %s, the newest complete checkpoint; skipped the incomplete %s",
                                   path, "; ".join(skipped))
                return path
            skipped.append(f"{os.path.basename(path)} ({why})")
            if fallback is None and why != NO_TRAINER_STATE:
                fallback = path
        if fallback is None:
            raise ValueError(f"No complete checkpoint in output directory ({out}): {'; '.join(skipped)}")
        logger.warning("no complete checkpoint in %s (%s): resuming from %s", out, "; ".join(skipped), fallback)
        return fallback

    def _save_checkpoint(self, model, trial):
        # The masks go first, atomically: once the Trainer's state is in the checkpoint, its masks are too.
        cb = self.pruning_callback
        if self.args.should_save and cb.masks is not None:
            cb.save_masks(os.path.join(self._get_output_dir(trial=trial),
                                       f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"))
        super()._save_checkpoint(model, trial)

    def _load_callback_state(self) -> None:
        super()._load_callback_state()
        for cb in self.callback_handler.callbacks:
            if isinstance(cb, PruningCallback):
                cb.resume_dir = self._hf_fast_resume_dir

    # -- best model ---------------------------------------------------------------------------------------
    def _determine_best_metric(self, metrics, trial) -> bool:
        """The Trainer's choice of the best checkpoint, among those at the final sparsity only."""
        if not self.pruning_callback.at_final_sparsity():
            return False
        return super()._determine_best_metric(metrics, trial)

    def model_metrics(self) -> dict[str, float]:
        """The ``eval_*`` metrics of the weights the model holds now: the latest evaluation, or with
        ``load_best_model_at_end`` the reloaded checkpoint's and any evaluation run after training."""
        cb = self.pruning_callback
        step, at_end = cb.loaded_checkpoint_step, cb.history_len_at_end
        out: dict[str, float] = {}
        for i, entry in enumerate(self.state.log_history):
            if step is not None and i < at_end and entry.get("step") != step:
                continue  # logged during training by weights other than the reloaded checkpoint's
            for k, v in entry.items():
                if k.startswith("eval_") and isinstance(v, (int, float)) and not k.endswith(
                        ("_runtime", "_per_second")):
                    out[k] = v  # the latest wins
        return out

    # -- logging ------------------------------------------------------------------------------------------
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if not any(k.startswith(("eval_", "test_")) for k in logs):
            cb = self.pruning_callback
            if cb._layers is not None:
                logs.update(cb.sparsity_report())
            parts = getattr(self, "_last_distill_parts", None)
            if parts:
                logs.update({f"distill/{k}": round(float(v), 6) for k, v in parts.items()})
        super().log(logs, start_time)

    # -- save / Hub ---------------------------------------------------------------------------------------
    def save_fast(self, save_directory: str | None = None, calibration_dataset=None, **kwargs):
        """Fast artifact + ``save_pretrained`` files + tokenizer + card in one folder (default
        ``<output_dir>/fast``); calibration from the train dataset, block and metrics from this run."""
        from hf_fast.save import save_fast_with

        record_on_model(self.model, self.pruning_callback)
        out = save_directory or os.path.join(self.args.output_dir, "fast")
        return save_fast_with(self.model, self.save_defaults, out, calibration_dataset, **kwargs)

    def push_to_hub(self, commit_message: str | None = "End of training", blocking: bool = True,
                    token: str | None = None, revision: str | None = None, private: bool | None = None,
                    repo_id: str | None = None, calibration_dataset=None, measure_speed: bool = False, **kwargs):
        """Upload the fast folder (weights + int8 ONNX artifact + tokenizer + card with sparsity, accuracy and,
        with measure_speed=True, speed) to ``repo_id`` (default ``args.hub_model_id``, else the name of
        ``output_dir``). Returns the CommitInfo. ``blocking`` is accepted for signature compatibility; the upload
        is always synchronous."""
        from hf_fast.save import push_to_hub_with

        record_on_model(self.model, self.pruning_callback)
        repo_id = repo_id or self.args.hub_model_id or os.path.basename(os.path.abspath(self.args.output_dir))
        if self.args.hub_private_repo is not None and private is None:
            private = self.args.hub_private_repo
        return push_to_hub_with(self.model, self.save_defaults, repo_id, commit_message=commit_message,
                                private=private, token=token or self.args.hub_token,
                                revision=revision or self.args.hub_revision, calibration_dataset=calibration_dataset,
                                measure_speed=measure_speed, **kwargs)

    # -- loss ---------------------------------------------------------------------------------------------
    def _teacher_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        drop = {"labels", "start_positions", "end_positions", "num_items_in_batch"}
        return {k: v for k, v in inputs.items()
                if k not in drop and (self._teacher_takes_kwargs or k in self._teacher_params)
                and (k != "token_type_ids" or "token_type_ids" in self._teacher_params)}

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if self.teacher_cache is not None and INDEX_COLUMN not in self._signature_columns:
            self._signature_columns.append(INDEX_COLUMN)  # the cache's key: kept by remove_unused_columns

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        idx = inputs.pop(INDEX_COLUMN, None) if self.teacher_cache is not None else None
        if self.teacher is None or not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        dl = self.distill_loss
        extra = {}
        if dl.needs_hidden_states:
            extra["output_hidden_states"] = True
        if dl.needs_attentions:
            extra["output_attentions"] = True
        outputs = model(**inputs, **extra)
        if idx is not None:  # the frozen teacher's targets, computed once per text
            from hf_fast.training.embed_distill import sentence_embeddings

            t_out = self.teacher_cache.targets(
                idx.tolist(), inputs, lambda: self.teacher(**self._teacher_inputs(inputs), **extra),
                lambda o: sentence_embeddings(o, inputs.get("attention_mask"), dl.pooling))
        else:
            with torch.no_grad():
                t_out = self.teacher(**self._teacher_inputs(inputs), **extra)
        loss, parts = dl(outputs, t_out, inputs)
        self._last_distill_parts = parts
        return (loss, outputs) if return_outputs else loss
