"""One folder for every runtime: the fast artifact (model.onnx int8 + fast_config.json) *and* the transformers
checkpoint (model.safetensors + config.json) + tokenizer + model card.

    hf_fast.save_fast(model, tokenizer, "out/fast", calibration_dataset=texts)
    trainer = FastTrainer(...); trainer.train()
    trainer.model.save_fast("out/fast")          # tokenizer, calibration (train set) and block from the trainer
    trainer.model.push_to_hub("user/repo")       # the same folder, uploaded
    trainer.push_to_hub()                        # repo from args.hub_model_id (or output_dir's name)
    # a pruned checkpoint reloaded in a new process is a plain transformers model (no .save_fast): block, sparsity
    # and the checkpoint's evaluation come from its config.json (hf_fast record) and trainer_state.json
    model = AutoModelForSequenceClassification.from_pretrained("out/run/checkpoint-500")
    hf_fast.save_fast(model, tok, "out/fast", calibration_dataset=texts)

    transformers.AutoModelForSequenceClassification.from_pretrained("out/fast")   # fp32, pruned weights
    onnxruntime.InferenceSession("out/fast/model.onnx")                             # int8 graph
    hf_fast.FastModelForSequenceClassification.from_pretrained("out/fast")          # native engine

The folder is written atomically (temporary folder next to it, then renames): it is the old folder or the
new one, never a mix. No pickle: safetensors, ONNX, JSON and tokenizer text files only.
"""
from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def _default_block(model) -> str | None:
    rec = getattr(model, "hf_fast_config", None) or getattr(getattr(model, "config", None), "hf_fast", None) or {}
    b = rec.get("block") if isinstance(rec, Mapping) else None
    return b if isinstance(b, str) and b not in ("auto",) else None


def _sparsity_metrics(model) -> dict[str, Any]:
    """Sparsity from what FastTrainer recorded in ``config.hf_fast`` (saved in config.json, so a model reloaded with
    ``AutoModelFor<Task>.from_pretrained(checkpoint)`` has it): the target, and the zero-block fraction of the
    recorded pruned layers measured on the weights as loaded (the record's own figure dates from when the
    checkpoint's config was written, which can be before its last mask update)."""
    rec = getattr(model, "hf_fast_config", None) or getattr(getattr(model, "config", None), "hf_fast", None) or {}
    out: dict[str, Any] = {}
    if not isinstance(rec, Mapping):
        return out
    if isinstance(rec.get("sparsity_target"), (int, float)):
        out["sparsity_target"] = rec["sparsity_target"]
    block, names = _default_block(model), rec.get("pruned_layers")
    if block and isinstance(names, list) and names and hasattr(model, "named_modules"):
        from hf_fast.blocks import overall_sparsity

        mods = dict(model.named_modules())
        layers = {n: mods[n] for n in names if hasattr(mods.get(n), "weight")}
        if len(layers) == len(names):
            try:
                out["sparsity_reached"] = round(overall_sparsity(layers, block)[0], 4)
            except ValueError:  # the block does not divide these weights: the record is not this model's
                pass
    return out


def _checkpoint_eval_metrics(model) -> dict[str, Any]:
    """A reloaded Trainer checkpoint's own evaluation: the ``eval_*`` entries of its trainer_state.json logged at
    the checkpoint's step (an evaluation of other weights would not describe these)."""
    import json

    src = str(getattr(getattr(model, "config", None), "_name_or_path", "") or "")
    state = Path(src) / "trainer_state.json" if src else None
    if state is None or not state.is_file():
        return {}
    try:
        st = json.loads(state.read_text(encoding="utf-8"))
        step, history = st.get("global_step"), st.get("log_history") or []
    except (OSError, ValueError, AttributeError):
        return {}
    out: dict[str, Any] = {}
    for entry in history:
        if isinstance(entry, Mapping) and entry.get("step") == step:
            out.update({k: v for k, v in entry.items() if k.startswith("eval_") and isinstance(v, (int, float))
                        and not k.endswith(("_runtime", "_per_second"))})
    return out


def save_fast(model, tokenizer, save_directory: str | os.PathLike, calibration_dataset: Any = None, *,
              task: str | None = None, block: str | None = None, metrics: Mapping[str, Any] | None = None,
              measure_speed: bool = False, overwrite: bool = True, progress: bool = True,
              base_model: str | None = None, datasets=(), eval_dataset: str | None = None, **export_kwargs) -> Path:
    """Write ``save_directory`` = fast artifact (``hf_fast.export``) + ``model.save_pretrained`` files + tokenizer
    + a Hub model card (front matter with the ``hf-fast`` tag, sparsity/accuracy/speed table). ``model``: a
    transformers model, or a ``sentence_transformers.SentenceTransformer`` (task feature-extraction: its pooling and
    normalisation are recorded, and its own files are written too, so sentence-transformers loads the folder).

    Args are those of ``hf_fast.export`` (calibration_dataset is required: static int8 calibrates on real
    samples), plus ``metrics`` (accuracy figures for the card, as model-index), ``measure_speed`` (time the
    engine and ONNX Runtime on the saved folder for the card: hf_fast.bench.quick_speed, off unless asked for),
    ``base_model``/``datasets``/``eval_dataset`` (card metadata; eval_dataset names the set the metrics come from).
    ``block`` defaults to the one FastTrainer recorded on the model. Returns the folder's path.
    """
    from hf_fast.export import artifact, export, inplace
    from hf_fast.pooling import is_sentence_transformer

    # a SentenceTransformer: its transformers model is what gets checked and described; the folder gets the
    # SentenceTransformer's own files (modules.json, Pooling, Normalize), so sentence-transformers loads it too
    hf_model = model[0].auto_model if is_sentence_transformer(model) else model
    if block is None:
        block = _default_block(hf_model)
    out = artifact.check_out_dir(Path(save_directory), overwrite)
    keep = inplace.plan(hf_model, out, writes_weights=True)  # saving back into the model's own folder
    metrics = {**(keep.metrics if keep else {}), **_checkpoint_eval_metrics(hf_model), **_sparsity_metrics(hf_model),
               **dict(metrics or {})}
    with artifact.atomic_dir(out, overwrite) as tmp:
        art = export(model, tokenizer, tmp / "artifact", calibration_dataset, task=task, block=block, metrics=metrics,
                     progress=progress, **export_kwargs)
        for entry in list(art.iterdir()):
            os.replace(entry, tmp / entry.name)
        art.rmdir()
        model.save_pretrained(str(tmp))  # model.safetensors + config.json (+ generation config if any)
        bad = [p.name for p in tmp.iterdir() if p.suffix in PICKLE_SUFFIXES]
        if bad:
            raise RuntimeError(f"save_pretrained wrote pickle files {bad}: hf-fast folders hold no pickle")
        _follow_umask(tmp)
        speed = None
        if measure_speed:
            from hf_fast.bench import quick_speed

            speed = quick_speed(tmp)
        from hf_fast.hub import write_model_card

        card = {}
        if keep is not None:
            keep.carry_into(tmp)  # files this save did not write (user files, generation config, ...)
            card = keep.card
        if base_model is None:
            nop = str(getattr(getattr(hf_model, "config", None), "_name_or_path", "") or "")
            base_model = nop if nop and not os.path.exists(nop) else card.get("base_model")
        write_model_card(tmp, metrics=metrics, speed=speed, base_model=base_model,
                         datasets=datasets or card.get("datasets", ()), license=card.get("license"),
                         eval_dataset=eval_dataset)
    return out


def _follow_umask(folder: Path) -> None:
    """safetensors (0.8) writes weight files 0600 through a private temp file; give them the mode every other file
    of the folder has (0666 minus the umask), so whoever may read the folder may load the weights too."""
    probe = folder / ".umask-probe"
    os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    mode = stat.S_IMODE(probe.stat().st_mode)
    probe.unlink()
    for p in folder.glob("*.safetensors"):
        os.chmod(p, mode)


# ------------------------------------------------------------------ defaults lent by a trainer
class SaveDefaults(Protocol):
    """What ``save_fast`` / ``push_to_hub`` can take from whoever trains the model when the caller leaves it out
    (hf_fast.training.fast_save.TrainerSaveDefaults is FastTrainer's)."""

    tokenizer: Any

    def block(self, model) -> str | None: ...

    def calibration(self, n: int) -> list: ...

    def metrics(self) -> dict[str, Any]: ...


def save_fast_with(model, defaults: SaveDefaults, save_directory, calibration_dataset=None, *,
                   num_calibration: int = 256, **kwargs) -> Path:
    """``save_fast`` with the tokenizer, ``num_calibration`` calibration samples, block shape and metrics of
    ``defaults`` wherever the call leaves them out (explicit metrics win over the defaults')."""
    tokenizer = kwargs.pop("tokenizer", None) or defaults.tokenizer
    if calibration_dataset is None:
        calibration_dataset = defaults.calibration(num_calibration)
    kwargs.setdefault("block", defaults.block(model))
    kwargs["metrics"] = {**defaults.metrics(), **dict(kwargs.get("metrics") or {})}
    return save_fast(model, tokenizer, save_directory, calibration_dataset, **kwargs)


def push_to_hub_with(model, defaults: SaveDefaults, repo_id: str, *, commit_message: str | None = None,
                     private: bool | None = None, token: str | bool | None = None, revision: str | None = None,
                     create_pr: bool = False, calibration_dataset=None, measure_speed: bool = False, **save_kwargs):
    """``save_fast_with`` into a temporary folder, then upload it (weights, fast artifact, tokenizer, card).
    Returns huggingface_hub's CommitInfo."""
    from hf_fast.hub import push_fast_folder

    with tempfile.TemporaryDirectory(prefix="hf-fast-push-") as d:
        folder = save_fast_with(model, defaults, Path(d) / "fast", calibration_dataset, measure_speed=measure_speed,
                                **save_kwargs)
        return push_fast_folder(folder, repo_id, token=token, private=private, revision=revision,
                                commit_message=commit_message, create_pr=create_pr)


def bind_fast_methods(model, defaults: SaveDefaults) -> None:
    """Give this ``model`` instance ``save_fast(dir)`` and ``push_to_hub(repo_id)`` over ``defaults`` (what
    FastTrainer does for the model it trains, so ``trainer.model.save_fast("out/")`` needs no tokenizer or samples).

    They are ordinary instance attributes: the class is untouched, and for this instance ``push_to_hub`` uploads the
    whole fast folder (the transformers checkpoint is part of it) rather than the checkpoint alone;
    ``type(model).push_to_hub(model, ...)`` still uploads the checkpoint alone."""
    def save_fast_(save_directory, calibration_dataset=None, **kwargs) -> Path:
        return save_fast_with(model, defaults, save_directory, calibration_dataset, **kwargs)

    def push_to_hub_(repo_id: str, **kwargs):
        return push_to_hub_with(model, defaults, repo_id, **kwargs)

    save_fast_.__doc__ = save_fast_with.__doc__
    push_to_hub_.__doc__ = push_to_hub_with.__doc__
    model.save_fast = save_fast_
    model.push_to_hub = push_to_hub_


def push_to_hub(model, tokenizer, repo_id: str, calibration_dataset: Any = None, *, token=None,
                private: bool | None = None, revision: str | None = None, commit_message: str | None = None,
                create_pr: bool = False, measure_speed: bool = False, **save_kwargs):
    """``hf_fast.push_to_hub(model, tok, "user/repo", calibration_dataset=...)``: save_fast + upload."""
    from hf_fast.hub import push_fast_folder

    with tempfile.TemporaryDirectory(prefix="hf-fast-push-") as d:
        folder = save_fast(model, tokenizer, Path(d) / "fast", calibration_dataset, measure_speed=measure_speed,
                           **save_kwargs)
        return push_fast_folder(folder, repo_id, token=token, private=private, revision=revision,
                                commit_message=commit_message, create_pr=create_pr)
