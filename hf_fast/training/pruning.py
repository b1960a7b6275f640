"""PruningCallback: gradual block-wise pruning of the encoder's Linear layers, as a ``TrainerCallback``.

Works with any ``transformers.Trainer`` (``FastTrainer`` adds it for you)::

    trainer = Trainer(..., callbacks=[PruningCallback(FastConfig(sparsity=0.8, block="4x1"))])

Events used:
  on_train_begin         bind to the model's encoder Linear layers, check the block divides them, resolve
                         the schedule against ``max_steps``, restore masks when resuming
  on_pre_optimizer_step  accumulate first-order scores |w * grad| (score="movement"), zero the gradients of
                         pruned weights
  on_optimizer_step      at update steps recompute the block masks from the scores (cubic target); after every
                         step re-apply the masks to the weights and to the optimizer state (Adam moments)
  on_save                write masks and score accumulators to ``<checkpoint>/hf_fast_masks.safetensors``
                         (atomically; FastTrainer writes it before the Trainer's own checkpoint files)
  on_log                 add a compact sparsity summary (overall, least and most sparse layer, target) to the
                         Trainer's logs; per-layer figures to ``<output_dir>/hf_fast_sparsity.jsonl`` and debug
                         logging; one progress line per logging step on the local main process
  on_train_end           with ``load_best_model_at_end``, take the masks, sparsity and step of the checkpoint the
                         Trainer reloaded (and warn if it was saved before the pruning window ended)

The schedule counts optimizer steps that happened: a step the fp16 GradScaler skips (inf/nan gradients) neither
adds to the scores nor advances the schedule.

Checkpointing: the callback is an ``ExportableState``; its small JSON state (config, resolved block,
schedule, last update step) lives in ``trainer_state.json`` (``stateful_callbacks``) and the tensors in the
safetensors file beside it (no pickle). ``resume_from_checkpoint`` rebuilds the callback from that JSON and
``on_train_begin`` reloads the tensors, so a resumed run reaches the same masks as an uninterrupted one.
A masks file that is missing or damaged (a run killed while saving) is never trusted and never fatal: the masks
are recovered from the zero blocks of the checkpoint's weights, with a warning (``recover_masks``), and
``FastTrainer.train(resume_from_checkpoint=True)`` prefers the newest complete checkpoint (``checkpoint_problem``).
Under DDP the masks computed on rank 0 are broadcast, so every rank holds the same masks.
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from hf_fast._atomic import atomic_path, write_text
from hf_fast.blocks import parse_block
from hf_fast.training.config import FastConfig, resolve_block, resolve_step
from hf_fast.training.masks import (
    block_l2,
    block_sum,
    check_blocks_divide,
    element_mask,
    find_prunable_linears,
    layer_label,
    mask_sparsity,
    threshold_masks,
)
from hf_fast.training.schedule import SparsitySchedule

logger = logging.getLogger(__name__)

MASKS_FILE = "hf_fast_masks.safetensors"
MASKS_FORMAT = "hf_fast.masks/1"
NO_TRAINER_STATE = "trainer_state.json missing or unreadable"  # a checkpoint the Trainer itself cannot resume
SPARSITY_LOG_FILE = "hf_fast_sparsity.jsonl"
# Warn when the cubic schedule raises the sparsity by more than this between two mask updates.
MAX_SPARSITY_JUMP = 0.2


class MasksFileError(ValueError):
    """A masks file that is truncated, damaged or does not match the model: it is never trusted."""


def _unwrap_optimizer(opt):
    """accelerate's AcceleratedOptimizer (and similar wrappers) -> the torch optimizer holding the state."""
    for _ in range(5):
        inner = getattr(opt, "optimizer", None)
        if inner is None or inner is opt:
            break
        opt = inner
    return opt


def _grad_scaler(optimizer):
    """The fp16 GradScaler accelerate attached to the Trainer's optimizer, if one is active."""
    scaler = getattr(optimizer, "scaler", None)
    return scaler if scaler is not None and scaler.is_enabled() else None


def _unscale_grads(optimizer) -> float | None:
    """Unscale the gradients before reading them, as torch.amp asks of code that inspects ``.grad`` between
    backward and ``scaler.step`` (the Trainer does it only when it clips). Returns the loss scale before the step,
    or None without a GradScaler."""
    scaler = _grad_scaler(optimizer)
    if scaler is None:
        return None
    try:
        scaler.unscale_(getattr(optimizer, "optimizer", optimizer))
    except RuntimeError:  # already unscaled this step (the Trainer's gradient clipping)
        pass
    return float(scaler.get_scale())


def _step_was_skipped(optimizer, scale_before: float | None) -> bool:
    """Whether the optimizer step just taken was skipped. The GradScaler lowers its scale exactly when it skips
    a step (inf/nan gradients); accelerate's ``step_was_skipped`` misses the skips of fused optimizers (the
    Trainer's default adamw_torch_fused skips inside its kernel), so the scale is the signal we trust."""
    if getattr(optimizer, "step_was_skipped", False) is True:
        return True
    scaler = _grad_scaler(optimizer)
    return scaler is not None and scale_before is not None and float(scaler.get_scale()) < scale_before


def _dist_world():
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist, dist.get_world_size(), dist.get_rank()
    return None, 1, 0


class PruningCallback(TrainerCallback, ExportableState):
    """Block pruning with a sparsity schedule; masks re-applied after every optimizer step.

    Args:
        config: a ``FastConfig`` (or its dict form). Validated here, before training.
        block: the resolved block shape; ``None`` resolves ``config.block`` now (``"auto"`` asks the native
            runtime). Passed explicitly when the Trainer rebuilds the callback from a checkpoint.
        verbose: print a progress line at each logging step (main process only).
    """

    def __init__(self, config: FastConfig | dict[str, Any] | None = None, block: str | None = None,
                 verbose: bool = True):
        if config is None:
            config = FastConfig()
        elif isinstance(config, dict):
            config = FastConfig.from_dict(config)
        elif not isinstance(config, FastConfig):
            raise ValueError(f"config must be a FastConfig or a dict, got {type(config).__name__}")
        self.config = config
        self.block = resolve_block(block if block is not None else config.block)
        self.verbose = verbose
        # JSON-able state (restored by Trainer._load_callback_state through setattr)
        self.schedule_steps: dict[str, int] | None = None
        self.last_update_step: int = -1
        self.target_sparsity: float = 0.0
        self.checkpoint_dir: str | None = None
        self.has_masks: bool = False
        self.skipped_steps: int = 0  # optimizer steps the GradScaler skipped: they do not advance the schedule
        # scope="latency": {"target_ms", "predicted_ms", "final_target_ms", "dense_ms", ...} of the last update
        self.latency: dict[str, Any] = {}
        # runtime only
        self._latency_model = None
        self.resume_dir: str | None = None  # set by FastTrainer on resume_from_checkpoint
        self.masks: dict[str, torch.Tensor] | None = None
        self.scores: dict[str, torch.Tensor] = {}
        self._layers = None
        self._emasks: dict[str, torch.Tensor] = {}
        self._output_dir: str | None = None
        self._global_step = 0
        self._masks_written_to: str | None = None
        self._pending_scores: dict[str, torch.Tensor] = {}
        self._scale_before: float | None = None
        self._progress_step = -1
        self.loaded_checkpoint_step: int | None = None  # set when the Trainer reloads its best checkpoint
        self.history_len_at_end = 0  # len(state.log_history) when training ended

    # -- ExportableState ----------------------------------------------------------------------------
    def state(self) -> dict:
        ckpt = None
        if self._output_dir is not None:
            ckpt = os.path.abspath(os.path.join(self._output_dir, f"checkpoint-{self._global_step}"))
        return {
            "args": {"config": self.config.to_dict(), "block": self.block, "verbose": self.verbose},
            "attributes": {
                "schedule_steps": self.schedule_steps,
                "last_update_step": self.last_update_step,
                "target_sparsity": self.target_sparsity,
                "checkpoint_dir": ckpt,
                "has_masks": self.masks is not None,
                "skipped_steps": self.skipped_steps,
                "latency": self.latency,
            },
        }

    def restore_state(self, state) -> None:
        """Take the JSON state stored in a resumed ``TrainerState.stateful_callbacks`` (the Trainer only restores
        callbacks itself with ``restore_callback_states_from_checkpoint=True``)."""
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        if isinstance(saved, list):
            saved = saved[0] if saved else None
        if not saved:
            return
        blk = saved.get("args", {}).get("block")
        if blk is not None and blk != self.block:
            raise ValueError(f"the checkpoint was pruned with {blk} blocks but this run uses {self.block}")
        for k, v in saved.get("attributes", {}).items():
            if k in ("schedule_steps", "last_update_step", "target_sparsity", "checkpoint_dir", "has_masks",
                     "skipped_steps", "latency"):
                setattr(self, k, v)

    # -- binding ------------------------------------------------------------------------------------
    def bind(self, model) -> dict[str, torch.nn.Linear]:
        """Find the layers to prune in ``model`` and check the block divides each (ValueError if not)."""
        layers = find_prunable_linears(_transformers_model(model), self.config.include, self.config.exclude)
        check_blocks_divide(layers, self.block)
        self._layers = layers
        if self.config.scope == "latency":
            self._bind_latency(model)
        return layers

    def _bind_latency(self, model) -> None:
        """scope="latency": the engine Linears, the cost curves (the cost file, else a probe of this machine) and
        the final time target; ValueError when the file does not describe the model or the target is out of
        reach."""
        from hf_fast.cost_curves import model_dims
        from hf_fast.training.latency import LatencyModel, engine_groups, load_curves, resolve_target_ms

        c = self.config
        dims = model_dims(model.config)
        if c.cost_file is None and self._latency_model is None:
            from hf_fast import native

            info = native.native_info()
            warnings.warn(f"FastConfig(scope='latency') has no cost_file: the cost curves come from a quick probe of "
                          f"THIS machine ({info.get('cpu')}, {info.get('isa')}, 1 thread), not of the CPU the model "
                          "will be deployed to; run `hf-fast profile --model <model> --out costs.json` there and pass "
                          "cost_file='costs.json'", UserWarning, stacklevel=3)
        curves = load_curves(c.cost_file, dims, self.block, c.target_shape)
        lm = LatencyModel(curves, dims, self.block, engine_groups(list(self._layers), model))
        final = resolve_target_ms(lm, c.target_speedup, c.target_latency_ms)
        self._latency_model = lm
        self.latency = {**self.latency, "final_target_ms": round(final, 5), "dense_ms": round(lm.dense_ms(), 5),
                        "target_shape": list(curves.target_shape), "threads": curves.threads,
                        "cost_file": c.cost_file, "cpu": curves.machine.get("cpu"), "isa": curves.machine.get("isa")}

    def resolve_schedule(self, max_steps: int) -> SparsitySchedule:
        c = self.config
        if self.schedule_steps is None:
            start = resolve_step(c.start_step, max_steps)
            end = max(start, resolve_step(c.end_step, max_steps))
            freq = c.frequency or SparsitySchedule.default_frequency(start, end)
            self.schedule_steps = {"start": start, "end": end, "frequency": freq}
            self._warn_if_abrupt(self._make_schedule())
        return self._make_schedule()

    def _make_schedule(self) -> SparsitySchedule:
        c, s = self.config, self.schedule_steps
        return SparsitySchedule(final=c.sparsity, start=s["start"], end=s["end"], frequency=s["frequency"],
                                initial=c.initial_sparsity, kind=c.schedule)

    @staticmethod
    def _warn_if_abrupt(sched: SparsitySchedule) -> None:
        """A window of a few steps prunes in big jumps, which the weights cannot adapt to between updates."""
        if sched.kind != "cubic":
            return  # oneshot jumps by design
        jump = sched.max_jump()
        if jump > MAX_SPARSITY_JUMP:
            fix = ("train longer, end the window later (end_step) or update the masks more often (frequency=1)"
                   if sched.frequency > 1 else "train longer or end the window later (end_step)")
            warnings.warn(f"the pruning window (optimizer steps {sched.start}-{sched.end}, masks updated every "
                          f"{sched.frequency}) is so short that the cubic schedule raises the sparsity by "
                          f"{jump:.0%} between two mask updates (more than {MAX_SPARSITY_JUMP:.0%}); accuracy "
                          f"usually suffers: {fix}", UserWarning, stacklevel=3)

    @property
    def schedule(self) -> SparsitySchedule | None:
        return None if self.schedule_steps is None else self.resolve_schedule(0)

    # -- mask maths ---------------------------------------------------------------------------------
    def _compute_scores(self) -> dict[str, torch.Tensor]:
        out = {}
        for n, mod in self._layers.items():
            if self.config.score == "movement" and n in self.scores:
                out[n] = self.scores[n]
            else:
                out[n] = block_l2(mod.weight, self.block)
        return out

    def update_masks(self, sparsity: float) -> None:
        """Recompute masks reaching ``sparsity`` (never un-pruning a block), share them across ranks, apply.
        With scope="latency", ``sparsity`` is the schedule's ramp fraction in [0, 1] of the time target instead."""
        if self.config.scope == "latency":
            masks = self._latency_masks(sparsity)
        else:
            floor = self.config.layer_floor()
            if floor:  # the floor follows the schedule: same share of the target (FastConfig: 0 < floor <= sparsity)
                floor = min(sparsity, floor * sparsity / self.config.sparsity)
            cap = self.config.max_layer_sparsity if self.config.scope == "global" else None
            if cap is not None:  # the cap follows the schedule the same way (FastConfig: sparsity <= cap <= 1)
                cap = max(sparsity, min(1.0, cap * sparsity / self.config.sparsity)) if self.config.sparsity else 1.0
            masks = threshold_masks(self._compute_scores(), sparsity, self.config.scope, previous=self.masks,
                                    min_layer_sparsity=floor, max_layer_sparsity=cap)
        dist, world, _ = _dist_world()
        if world > 1:
            dev = next(iter(self._layers.values())).weight.device
            for n in sorted(masks):
                t = masks[n].to(device=dev, dtype=torch.uint8)
                dist.broadcast(t, src=0)
                masks[n] = t.cpu().bool()
        self.masks = masks
        self._emasks = {}
        self.scores = {}

    def _latency_masks(self, fraction: float) -> dict[str, torch.Tensor]:
        """Masks meeting the time target ramped ``fraction`` of the way from the dense to the final latency."""
        from hf_fast.training.latency import allocate

        lat = self.latency
        target = lat["dense_ms"] - (lat["dense_ms"] - lat["final_target_ms"]) * fraction
        masks, info = allocate(self._latency_model, self._compute_scores(), target, previous=self.masks)
        self.latency = {**lat, "target_ms": round(info["target_ms"], 5), "predicted_ms": round(info["predicted_ms"], 5),
                        "fraction": round(float(fraction), 6)}
        return masks

    def _element_masks(self) -> dict[str, torch.Tensor]:
        if not self._emasks and self.masks is not None:
            self._emasks = {n: element_mask(m, self.block, self._layers[n].weight)
                            for n, m in self.masks.items()}
        return self._emasks

    @torch.no_grad()
    def apply_masks(self, optimizer=None) -> None:
        """Zero pruned weights, and the optimizer state (e.g. Adam moments) that could resurrect them."""
        if self.masks is None:
            return
        opt = _unwrap_optimizer(optimizer) if optimizer is not None else None
        for n, em in self._element_masks().items():
            p = self._layers[n].weight
            p.mul_(em)
            if opt is not None:
                st = opt.state.get(p, None)
                if st:
                    for v in st.values():
                        if torch.is_tensor(v) and v.shape == p.shape:
                            v.mul_(em.to(v.dtype))

    def layer_sparsity(self) -> dict[str, float]:
        """Sparsity of each pruned layer, by short label (``layer.3.attention.self.query``)."""
        if self.masks is None:
            return {layer_label(n): 0.0 for n in (self._layers or {})}
        return {layer_label(n): 1.0 - float(m.float().mean()) for n, m in self.masks.items()}

    def sparsity_report(self) -> dict[str, float]:
        """The compact summary logged at every logging step: overall (block-weighted), least and most sparse
        layer, and the schedule's current target. Plain numbers, so TensorBoard/W&B plot each."""
        per = self.layer_sparsity().values()
        rep = {"sparsity": round(mask_sparsity(self.masks) if self.masks is not None else 0.0, 4),
               "sparsity_min_layer": round(min(per, default=0.0), 4),
               "sparsity_max_layer": round(max(per, default=0.0), 4),
               "sparsity_target": round(float(self.target_sparsity), 4)}
        if self.config.scope == "latency":  # the engine latency the cost curves predict for these masks
            lat = self.latency
            rep["latency_target_ms"] = round(float(lat.get("target_ms", lat.get("dense_ms", 0.0))), 4)
            rep["latency_predicted_ms"] = round(float(lat.get("predicted_ms", lat.get("dense_ms", 0.0))), 4)
        return rep

    def final_sparsity_target(self) -> float | None:
        """The configured overall sparsity; None with scope="latency" (the time target sets it)."""
        return None if self.config.scope == "latency" else self.config.sparsity

    def at_final_sparsity(self) -> bool:
        """Whether the masks have reached the configured sparsity (the pruning window is over)."""
        if self.config.scope == "latency":
            return self.masks is not None and self.schedule is not None and self.last_update_step >= self.schedule.end
        if self.config.sparsity == 0.0:
            return True
        return self.masks is not None and self.target_sparsity >= self.config.sparsity

    # -- persistence --------------------------------------------------------------------------------
    def save_masks(self, directory: str) -> str:
        """Write ``<directory>/hf_fast_masks.safetensors`` atomically (temp file + fsync + rename): a kill while
        writing leaves the previous file or none, never a partial one under the final name."""
        from safetensors.torch import save_file

        tensors = {f"mask::{n}": m.to(torch.uint8).contiguous() for n, m in (self.masks or {}).items()}
        tensors.update({f"score::{n}": s.contiguous() for n, s in self.scores.items()})
        path = os.path.join(directory, MASKS_FILE)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"block": self.block, "format": MASKS_FORMAT})
        self._masks_written_to = os.path.abspath(directory)
        return path

    def read_masks_file(self, directory: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(masks, scores) from ``<directory>/hf_fast_masks.safetensors``, checked against the bound layers.

        Raises FileNotFoundError (no file), MasksFileError (truncated, foreign or not matching the layers: never
        trusted), ValueError (masks of another block shape: a configuration error, not a damaged file)."""
        from safetensors import SafetensorError, safe_open

        path = os.path.join(directory, MASKS_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"resuming a pruned run needs {path} (written by PruningCallback.on_save)")
        masks, scores = {}, {}
        try:
            with safe_open(path, framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("format") != MASKS_FORMAT:
                    raise MasksFileError(f"{path} is not an hf-fast masks file (format {meta.get('format')!r})")
                if meta.get("block", self.block) != self.block:
                    raise ValueError(f"{path} holds {meta['block']} block masks but this run uses {self.block}")
                for k in f.keys():
                    kind, _, name = k.partition("::")
                    if kind not in ("mask", "score") or not name:
                        raise MasksFileError(f"{path}: unexpected tensor {k!r}")
                    (masks if kind == "mask" else scores)[name] = f.get_tensor(k)
        except (SafetensorError, OSError) as exc:
            raise MasksFileError(f"{path} is truncated or damaged ({exc})") from exc
        if self._layers is not None:
            r, c = parse_block(self.block)
            for n, t in list(masks.items()) + list(scores.items()):
                mod = self._layers.get(n)
                want = None if mod is None else (mod.weight.shape[0] // r, mod.weight.shape[1] // c)
                if want is None or tuple(t.shape) != want:
                    raise MasksFileError(f"{path}: {n} has shape {tuple(t.shape)}, the model's blocks are {want}")
            if masks and set(masks) != set(self._layers):
                raise MasksFileError(f"{path} lacks the masks of {sorted(set(self._layers) - set(masks))}")
        return masks, scores

    def load_masks(self, directory: str) -> None:
        masks, scores = self.read_masks_file(directory)
        self.masks = {n: m.bool() for n, m in masks.items()} or None
        self.scores = scores
        self._emasks = {}

    def recover_masks(self) -> None:
        """Masks from the zero blocks of the (resumed) weights: after every optimizer step the pruned blocks are
        exactly zero, so this is the mask unless a kept block is all zeros, which only a hand-made weight has (it
        is then taken as pruned: the model computes the same, the block just stays zero). The movement scores
        accumulated since the last mask update are not in the weights: they restart from zero."""
        self.masks = {n: block_l2(mod.weight, self.block).cpu() > 0 for n, mod in self._layers.items()}
        self.scores = {}
        self._emasks = {}

    def checkpoint_problem(self, directory: str) -> str | None:
        """Why ``directory`` is not a complete checkpoint of this run (None: complete): the Trainer's state
        missing or unreadable, or the masks it records missing or damaged."""
        import json

        try:
            with open(os.path.join(directory, "trainer_state.json"), encoding="utf-8") as f:
                state = json.load(f)
        except (OSError, ValueError):
            return NO_TRAINER_STATE
        saved = (state.get("stateful_callbacks") or {}).get(type(self).__name__)
        saved = (saved[0] if saved else None) if isinstance(saved, list) else saved
        if not (saved or {}).get("attributes", {}).get("has_masks"):
            return None
        try:
            self.read_masks_file(directory)
        except (FileNotFoundError, MasksFileError) as exc:
            return f"{MASKS_FILE}: {exc}"
        return None

    # -- Trainer events -----------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if model is None:
            raise ValueError("PruningCallback needs the model (it is passed by transformers.Trainer)")
        self.bind(model)
        self._output_dir = args.output_dir
        self._global_step = state.global_step
        self.loaded_checkpoint_step, self._progress_step = None, -1
        self._trim_layer_log(args, state.global_step)
        if state.global_step > 0:  # resuming: restore our JSON state even if the Trainer did not
            self.restore_state(state)
        self.resolve_schedule(state.max_steps)
        src = self.resume_dir or (self.checkpoint_dir if self.has_masks else None)
        if src is not None and state.global_step > 0:
            if self.has_masks or os.path.isfile(os.path.join(src, MASKS_FILE)):
                try:
                    self.load_masks(src)
                except (FileNotFoundError, MasksFileError) as exc:
                    # a checkpoint half written when the run was killed: never trust the file, never fail
                    if self.has_masks:
                        self.recover_masks()
                        logger.warning("%s: masks recovered from the zero blocks of the checkpoint's weights "
                                       "(movement scores since the last mask update restart)", exc)
                    else:
                        logger.warning("%s: ignored (the checkpoint records no masks)", exc)
            self.apply_masks(optimizer)
        record_on_model(_transformers_model(model), self)

    def _next_step(self, state) -> int:
        """1-based index of the optimizer step being taken, counting only steps that were not skipped."""
        return state.global_step - self.skipped_steps + 1

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if self._layers is None:
            return
        self._scale_before = _unscale_grads(optimizer)
        sched = self.schedule
        t = self._next_step(state)
        self._pending_scores = {}
        if self.config.score == "movement" and sched is not None and t <= sched.end:
            for n, mod in self._layers.items():
                g = mod.weight.grad
                if g is not None:  # kept until the step is known not to be skipped (inf/nan gradients)
                    self._pending_scores[n] = block_sum((mod.weight.detach() * g).abs(), self.block).cpu()
        if self.masks is not None:
            for n, em in self._element_masks().items():
                g = self._layers[n].weight.grad
                if g is not None:
                    g.mul_(em)

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if self._layers is None:
            return
        pending, self._pending_scores = self._pending_scores, {}
        if _step_was_skipped(optimizer, self._scale_before):
            self.skipped_steps += 1
            logger.info("optimizer step %d was skipped (inf/nan gradients): the pruning schedule waits for it",
                        state.global_step + 1)
            return  # the weights did not move: the masks still hold, and this step's scores are not finite
        for n, sc in pending.items():
            self.scores[n] = self.scores[n] + sc if n in self.scores else sc
        t = self._next_step(state)
        sched = self.schedule
        if sched.is_update_step(t):
            if self.config.scope == "latency":  # the time target ramps; the sparsity is what reaches it
                self.update_masks(sched.fraction(t))
                self.target_sparsity = mask_sparsity(self.masks)
            else:
                self.target_sparsity = sched.sparsity(t)
                self.update_masks(self.target_sparsity)
            self.last_update_step = t
        self.apply_masks(optimizer)

    def on_step_end(self, args, state, control, **kwargs):
        self._global_step = state.global_step

    def on_save(self, args, state, control, **kwargs):
        if args.should_save and self.masks is not None:
            ck = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            if self._masks_written_to != os.path.abspath(ck):  # FastTrainer wrote them before the checkpoint
                self.save_masks(ck)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or any(k.startswith(("eval_", "test_")) for k in logs) or self._layers is None:
            return
        if "sparsity" not in logs:  # a plain Trainer (FastTrainer.log adds the summary before the log is stored)
            rep = self.sparsity_report()
            logs.update(rep)
            if state.log_history and state.log_history[-1].get("step") == state.global_step:
                state.log_history[-1].update(rep)
        if state.global_step == self._progress_step:
            return  # the end-of-training summary comes at the step of the last log: one line per step
        self._progress_step = state.global_step
        self._log_layers(args, state)
        if self.verbose and state.is_local_process_zero:
            from tqdm.auto import tqdm

            # tqdm.write clears and redraws the Trainer's progress bar, so the line is not glued to it
            if self.config.scope == "latency":
                goal = (f"predicted {logs['latency_predicted_ms']:.3f} ms, target {logs['latency_target_ms']:.3f} ms, "
                        f"final {self.latency.get('final_target_ms', 0.0):.3f} ms")
            else:
                goal = f"target {self.target_sparsity:.3f}, final {self.config.sparsity:.3f}"
            tqdm.write(f"[hf-fast] step {state.global_step}/{state.max_steps} block {self.block} sparsity "
                       f"{logs['sparsity']:.3f} (layers {logs['sparsity_min_layer']:.3f}-"
                       f"{logs['sparsity_max_layer']:.3f}, {goal})")

    def _log_layers(self, args, state) -> None:
        """Per-layer sparsity: debug logging, and one JSON line per logging step in the output folder."""
        per = {k: round(v, 4) for k, v in self.layer_sparsity().items()}
        logger.debug("step %d layer sparsity %s", state.global_step, per)
        if not args.should_save or not args.output_dir:
            return
        rec = {"step": state.global_step, "epoch": state.epoch, "sparsity": round(mask_sparsity(self.masks), 4)
               if self.masks is not None else 0.0, "sparsity_target": round(float(self.target_sparsity), 4),
               "layers": per}
        if self.config.scope == "latency":
            rec["latency"] = {k: self.latency.get(k) for k in ("target_ms", "predicted_ms", "final_target_ms")}
        os.makedirs(args.output_dir, exist_ok=True)
        with open(os.path.join(args.output_dir, SPARSITY_LOG_FILE), "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")

    @staticmethod
    def _trim_layer_log(args, step: int) -> None:
        """Drop the per-layer lines after ``step`` (a previous run in this folder, or the steps a resumed run
        repeats), so the file describes this run once."""
        path = os.path.join(args.output_dir or "", SPARSITY_LOG_FILE)
        if not args.should_save or not os.path.isfile(path):
            return
        keep = []
        with open(path, encoding="utf-8") as f:
            for ln in f:
                try:
                    if json.loads(ln).get("step", 0) <= step:
                        keep.append(ln)
                except (ValueError, AttributeError):
                    pass  # a torn line from a killed run
        write_text(path, "".join(keep))  # atomic: a kill while trimming leaves the old log, not an empty one

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if model is None or self._layers is None:
            return
        self.history_len_at_end = len(state.log_history)
        self._warn_if_window_unfinished(state)
        if args.load_best_model_at_end:
            if state.best_model_checkpoint is not None:  # the Trainer has just reloaded these weights
                self.adopt_checkpoint(state.best_model_checkpoint, model)
            elif args.eval_strategy != "no":
                warnings.warn("load_best_model_at_end: no checkpoint evaluated after the pruning window ended (step "
                              f"{self.schedule.end}) to choose from, so the model is the one of the last step "
                              f"({state.global_step}); evaluate and save after end_step to choose among final "
                              "checkpoints", UserWarning, stacklevel=2)
        record_on_model(_transformers_model(model), self)

    def _warn_if_window_unfinished(self, state) -> None:
        if self.at_final_sparsity():
            return
        why = f" ({self.skipped_steps} optimizer steps were skipped)" if self.skipped_steps else ""
        goal = (f"the latency target of {self.latency.get('final_target_ms', 0.0):.3f} ms"
                if self.config.scope == "latency" else f"the configured {self.config.sparsity:.0%}")
        warnings.warn(f"training ended before the pruning window did{why}: the masks are at "
                      f"{mask_sparsity(self.masks) if self.masks is not None else 0.0:.1%} sparsity, not at "
                      f"{goal}; end the window earlier (end_step)", UserWarning, stacklevel=3)

    def adopt_checkpoint(self, checkpoint: str, model) -> None:
        """Make the masks, target and step those of ``checkpoint``, whose weights ``model`` now holds
        (``load_best_model_at_end``). Warns when the checkpoint was saved inside the pruning window."""
        try:
            with open(os.path.join(checkpoint, "trainer_state.json"), encoding="utf-8") as f:
                ck_state = json.load(f)
        except (OSError, ValueError):  # the weights were loaded; their state file is best effort
            tail = os.path.basename(os.path.normpath(checkpoint)).rsplit("-", 1)[-1]
            ck_state = {"global_step": int(tail) if tail.isdigit() else 0}
        saved = (ck_state.get("stateful_callbacks") or {}).get(type(self).__name__) or {}
        if isinstance(saved, list):
            saved = saved[-1] if saved else {}
        attrs = saved.get("attributes", {})
        if os.path.isfile(os.path.join(checkpoint, MASKS_FILE)):
            self.load_masks(checkpoint)
        elif attrs.get("has_masks", True) and ck_state.get("global_step", 0) > 0:
            # no masks file (an interrupted save): the pruned blocks are the all-zero blocks of the weights
            from hf_fast.blocks import block_nonzero_mask

            logger.warning("%s has no %s: taking its masks from the zero blocks of its weights", checkpoint,
                           MASKS_FILE)
            self.masks = {n: torch.from_numpy(block_nonzero_mask(m.weight.detach(), self.block))
                          for n, m in self._layers.items()}
            self.scores, self._emasks = {}, {}
        else:
            self.masks, self.scores, self._emasks = None, {}, {}
        self.target_sparsity = float(attrs.get("target_sparsity", self.target_sparsity))
        if isinstance(attrs.get("latency"), dict) and attrs["latency"]:
            self.latency = attrs["latency"]
        self.last_update_step = int(attrs.get("last_update_step", self.last_update_step))
        self.loaded_checkpoint_step = int(ck_state.get("global_step", 0))
        self.apply_masks()  # exact zeros by construction; also guards a checkpoint edited by hand
        if not self.at_final_sparsity():
            warnings.warn(f"load_best_model_at_end loaded {checkpoint}, which was saved before the pruning window "
                          f"ended (step {self.loaded_checkpoint_step} of {self.schedule.end}): the model is "
                          f"{mask_sparsity(self.masks) if self.masks is not None else 0.0:.1%} sparse, not "
                          f"{self.config.sparsity:.0%}. FastTrainer lets only checkpoints at the final sparsity "
                          "compete; with a plain Trainer evaluate only after end_step", UserWarning, stacklevel=3)


def _transformers_model(model):
    """The transformers model to prune: ``model`` itself, or the Transformer module's ``auto_model`` of a
    ``sentence_transformers.SentenceTransformer`` (PruningCallback inside ``SentenceTransformerTrainer``)."""
    from hf_fast.pooling import is_sentence_transformer

    if not is_sentence_transformer(model):
        return model
    inner = getattr(model[0], "auto_model", None) if len(model) else None
    if inner is None:
        raise ValueError("the SentenceTransformer's first module is not a transformers Transformer module (no "
                         "auto_model): PruningCallback prunes the encoder Linears of that model")
    return inner


def record_on_model(model, cb: PruningCallback, **extra) -> dict[str, Any]:
    """Store the fast config, the resolved block and the reached sparsity on ``model.config.hf_fast``
    (saved in config.json by ``save_pretrained``; the exporter reads it) and alias it as
    ``model.hf_fast_config``."""
    rec = dict(getattr(getattr(model, "config", None), "hf_fast", None) or {})
    rec.update({
        "fast_config": cb.config.to_dict(),
        "block": cb.block,
        "block_requested": cb.config.block if isinstance(cb.config.block, str) else list(cb.config.block),
        "sparsity_target": cb.final_sparsity_target(),
        "sparsity_reached": mask_sparsity(cb.masks) if cb.masks is not None else 0.0,
        "pruned_layers": sorted(cb._layers) if cb._layers is not None else [],
    })
    if cb.config.scope == "latency" and cb.latency:  # the time target, the prediction and per-layer sparsities
        rec["latency"] = {**cb.latency, "layer_sparsity": {k: round(v, 4) for k, v in cb.layer_sparsity().items()}}
    else:
        rec.pop("latency", None)
    if cb.loaded_checkpoint_step is not None:  # the weights are a reloaded checkpoint's, not the last step's
        rec["checkpoint_step"] = cb.loaded_checkpoint_step
    else:
        rec.pop("checkpoint_step", None)
    rec.update(extra)
    if getattr(model, "config", None) is not None:
        model.config.hf_fast = rec
    model.hf_fast_config = rec
    return rec
