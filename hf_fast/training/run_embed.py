"""Run a sentence-embedding recipe (``task: feature-extraction``): a sparse student of a sentence-transformers model
pruned block-wise while it learns the teacher's pooled, normalised embeddings (label-free, FastTrainer with
``distill.loss: embedding-*``), then written as a sentence-transformers folder and exported to a fast folder.

    from hf_fast.training.run_embed import run_embed_recipe
    results = run_embed_recipe("recipes/minilm_embed.yaml", max_steps=20, train_limit=640)

``hf-fast train recipes/minilm_embed.yaml`` calls it. Without ``model.teacher`` the dense ``model.student`` teaches
its own pruned copy. Writes under ``root`` (the parent of ``training_args.output_dir``): ``<name>/`` (the trained
student: transformers weights + tokenizer + sentence-transformers files), ``<name>_fast/`` (hf_fast.save_fast,
task feature-extraction), ``results.json``. Quality = mean cosine between student and teacher embeddings of the
held-out texts (fp32 PyTorch, and int8 in the engine).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hf_fast import _atomic
from hf_fast import pooling as pooling_mod
from hf_fast.training.teacher_cache import INDEX_COLUMN

_ST_MODULE = "sentence_transformers.models"


def pooling_record(model_dir: str | os.PathLike | None, mode: str | None = None) -> dict[str, Any]:
    """Pooling mode / normalize / max_seq_length of a sentence-transformers folder (``mode`` overrides the mode);
    sentence-transformers' defaults (mean, no normalisation) for a plain checkpoint."""
    own = pooling_mod.from_folder(model_dir) if model_dir and Path(model_dir).is_dir() else None
    rec = {**pooling_mod.DEFAULT, **(own or {})}
    if mode is not None:
        rec["mode"] = mode
    return pooling_mod.check_pooling(rec)


def write_sentence_transformer_folder(model, tokenizer, out: str | os.PathLike, pooling: dict[str, Any]) -> Path:
    """``model.save_pretrained`` + tokenizer + the sentence-transformers module files (modules.json, Pooling config,
    Normalize, sentence_bert_config.json), so ``SentenceTransformer(out)``, ``hf_fast.save_fast`` and
    ``hf-fast export --task feature-extraction`` load it. Written to a temporary folder and swapped in; whatever
    else an existing ``out`` holds (a trainer's checkpoints, the user's own files) is hard-linked across first, so
    nothing but the old model's files (``hf_fast.export.artifact.is_model_file``) is replaced, and a failure leaves
    ``out`` whole."""
    out = Path(out)
    pooling = pooling_mod.check_pooling(pooling)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output path {str(out)!r} exists and is a file, not a directory")
    real = Path(os.path.realpath(out))  # a symlinked folder is written through, the link stays
    real.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{real.name}.tmp-", dir=real.parent))
    try:
        os.chmod(tmp, 0o777 & ~_atomic._umask())  # mkdtemp's 0700 would make the folder private
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        dim = int(model.config.hidden_size)
        flags = {f"pooling_mode_{k}": pooling["mode"] == v for k, v in
                 (("cls_token", "cls"), ("mean_tokens", "mean"), ("max_tokens", "max"),
                  ("mean_sqrt_len_tokens", "mean_sqrt_len"))}
        (tmp / "1_Pooling").mkdir()
        (tmp / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": dim, **flags},
                                                                  indent=2) + "\n")
        mods = [{"idx": 0, "name": "0", "path": "", "type": f"{_ST_MODULE}.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": f"{_ST_MODULE}.Pooling"}]
        if pooling["normalize"]:
            (tmp / "2_Normalize").mkdir()
            mods.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": f"{_ST_MODULE}.Normalize"})
        (tmp / "modules.json").write_text(json.dumps(mods, indent=2) + "\n")
        msl = pooling.get("max_seq_length") or int(getattr(model.config, "max_position_embeddings", 512))
        (tmp / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": msl, "do_lower_case": False},
                                                                  indent=2) + "\n")
        (tmp / "config_sentence_transformers.json").write_text(json.dumps(
            {"prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"}, indent=2) + "\n")
        # keep what is not the old model's; drop the old model's own files (an int8 model.onnx of the old weights
        # would load silently beside the new weights)
        from hf_fast.export.artifact import replace_model_folder

        replace_model_folder(tmp, real)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def encode_torch(model, tokenizer, texts: Sequence[str], pooling: dict[str, Any], max_length: int = 256,
                 batch_size: int = 64) -> np.ndarray:
    """fp32 sentence embeddings of a transformers feature-extraction model (pooling record applied)."""
    import torch

    from hf_fast.training.embed_distill import pool_torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(list(texts[i:i + batch_size]), padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            h = model(**enc).last_hidden_state
            e = pool_torch(h.float(), enc["attention_mask"], pooling["mode"])
            if pooling["normalize"]:
                e = torch.nn.functional.normalize(e, dim=-1)
            out.append(e.numpy())
    return np.concatenate(out).astype(np.float32)


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean row-wise cosine similarity of two [n, d] arrays."""
    a, b = pooling_mod.normalize_rows(a), pooling_mod.normalize_rows(b)
    return float((a * b).sum(-1).mean())


def export_student(folder: Path, tokenizer, out: Path, calibration: list[dict], progress: bool = True,
                   max_length: int = 128, metrics: dict[str, Any] | None = None) -> Path:
    """hf_fast.save_fast of the student's sentence-transformers folder: as a ``SentenceTransformer`` where the
    library is installed (its files go along), else the transformers model with the folder's pooling."""
    from hf_fast.save import save_fast

    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        SentenceTransformer = None
    if SentenceTransformer is not None:
        model = SentenceTransformer(str(folder), device="cpu")
        return save_fast(model, tokenizer, out, calibration, task="feature-extraction", progress=progress,
                         max_length=max_length, metrics=metrics)
    from transformers import AutoModel

    rec = pooling_record(folder)
    return save_fast(AutoModel.from_pretrained(folder), tokenizer, out, calibration, task="feature-extraction",
                     pooling=rec["mode"], normalize=rec["normalize"], progress=progress, max_length=max_length,
                     metrics=metrics)


def _calibration(ds, n: int = 256) -> list[dict]:
    cols = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in ds.column_names]
    step = max(1, len(ds) // n)
    return [{c: ds[i][c] for c in cols} for i in range(0, len(ds), step)][:n]


def open_teacher_cache(folder, train_ds, tokenizer, student, teacher, distill, pooling: str, teacher_name: str):
    """The TeacherCache of this run's texts and loss: the teacher layers the hidden-state term reads (none without
    it); refused for an attention term (attention maps are not kept) and for left padding."""
    from hf_fast.training.distillation import check_teacher_compatible
    from hf_fast.training.teacher_cache import TeacherCache, texts_fingerprint

    if distill.attention_weight > 0:
        raise ValueError("teacher_cache keeps embeddings and hidden states, not attention maps: set "
                         "distill.attention_weight=0 or run without a teacher cache")
    if getattr(tokenizer, "padding_side", "right") != "right":
        raise ValueError("teacher_cache reads each text's tokens from the left of its padded row: the tokenizer "
                         f"pads on the {tokenizer.padding_side}")
    lmap = check_teacher_compatible(student, teacher, distill)
    layers = sorted({t + 1 for t in lmap.values()}) if distill.hidden_weight > 0 else []
    ids = train_ds["input_ids"]
    return TeacherCache(folder, [len(x) for x in ids], texts_fingerprint(ids), int(teacher.config.hidden_size),
                        layers, pooling, teacher_name)


def run_embed_recipe(recipe, *, overrides: dict[str, Any] | None = None, base_dir: str | Path | None = None,
                     teacher: str | None = None, max_steps: int | None = None, out: str | Path | None = None,
                     train_limit: int | None = None, eval_limit: int | None = None, block: str | None = None,
                     sparsity: float | None = None, name: str = "student", skip_export: bool = False,
                     backends: Sequence[str] = ("native",), progress: bool = True,
                     resume: bool = False, teacher_cache: str | os.PathLike | None = None,
                     log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train, save, export and score one sparse student of an embedding recipe (a path or a loaded Recipe).
    ``resume``: continue from the newest ``checkpoint-*`` of ``<root>/<name>/trainer`` (saved per
    ``training_args.save_steps``) when there is one, so a stopped run loses at most ``save_steps`` steps.
    ``teacher_cache``: a folder keeping the frozen teacher's targets per training text
    (hf_fast.training.teacher_cache: each text's teacher forward runs once, over all runs that share the folder;
    the hidden-state term then compares real tokens only)."""
    from transformers import AutoModel, AutoTokenizer, DataCollatorWithPadding
    from transformers.trainer_utils import IntervalStrategy, get_last_checkpoint

    from hf_fast.training.embed_data import embedding_texts, text_dataset
    from hf_fast.training.recipe import Recipe, _merge, load_recipe
    from hf_fast.training.run_recipe import recipe_overrides
    from hf_fast.training.trainer import FastTrainer

    if isinstance(recipe, Recipe):
        r = recipe
    else:
        ov = _merge(recipe_overrides(max_steps, out, train_limit, eval_limit, block, sparsity), overrides or {})
        r = load_recipe(recipe, overrides=ov, base_dir=base_dir)
    if r.task != "feature-extraction":
        raise ValueError(f"run_embed_recipe runs task 'feature-extraction' recipes, not {r.task!r}")
    r.training_args.eval_strategy = IntervalStrategy.NO  # scored here: cosine to the teacher, every runtime
    r.training_args.load_best_model_at_end = False
    root = Path(r.training_args.output_dir).parent
    root.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    tdir = teacher or r.teacher or r.student
    tok = AutoTokenizer.from_pretrained(r.student)
    max_len = int(r.data.get("max_length", 128))
    train_texts, eval_texts = embedding_texts(r.data, tok)
    train_ds = text_dataset(train_texts, tok, max_len)
    log(f"[data] train {len(train_texts)} texts, eval {len(eval_texts)} texts (max_length {max_len})")
    teacher_model = AutoModel.from_pretrained(tdir)
    pool_rec = pooling_record(tdir, r.fast_config.distill.pooling)
    t_emb = encode_torch(teacher_model, tok, eval_texts, pool_rec)

    student = AutoModel.from_pretrained(r.student)
    args = r.training_args
    args.output_dir = str(root / name / "trainer")
    cache = None
    if teacher_cache is not None:
        cache = open_teacher_cache(teacher_cache, train_ds, tok, student, teacher_model, r.fast_config.distill,
                                   pool_rec["mode"], str(tdir))
        train_ds = train_ds.add_column(INDEX_COLUMN, list(range(len(train_ds))))
        log(f"[cache] {teacher_cache}: {cache.n_filled} of {len(train_ds)} texts' teacher targets already kept")
    ft = FastTrainer(model=student, teacher=teacher_model, args=args, fast_config=r.fast_config,
                     train_dataset=train_ds, data_collator=DataCollatorWithPadding(tok), processing_class=tok,
                     teacher_cache=cache)
    t1 = time.time()
    ckpt = get_last_checkpoint(args.output_dir) if resume and os.path.isdir(args.output_dir) else None
    if ckpt:
        log(f"[{name}] resuming from {ckpt}")
    ft.train(resume_from_checkpoint=ckpt)
    train_s = time.time() - t1
    cb = ft.pruning_callback
    rep = cb.sparsity_report()
    losses = [e["loss"] for e in ft.state.log_history if "loss" in e]
    run: dict[str, Any] = {
        "teacher": str(tdir), "pooling": pool_rec, "fast_config": r.fast_config.to_dict(),
        "block": cb.block, "target_sparsity": r.fast_config.sparsity, "sparsity": round(float(rep["sparsity"]), 4),
        "sparsity_per_linear": {k: round(float(v), 4) for k, v in cb.layer_sparsity().items()},
        "steps": ft.state.global_step, "train_time_s": round(train_s, 1),
        "steps_per_s": round(ft.state.global_step / max(train_s, 1e-9), 4),
        "batch_size": args.per_device_train_batch_size, "train_texts": len(train_texts),
        "eval_texts": len(eval_texts), "max_length": max_len,
        "train_loss_first_logged": losses[0] if losses else None,
        "train_loss_last_logged": losses[-1] if losses else None,
        "train_loss_mean": next((e["train_loss"] for e in reversed(ft.state.log_history) if "train_loss" in e), None),
        "loss_log": [{k: e[k] for k in e if k in ("step", "loss") or k.startswith("distill/")}
                     for e in ft.state.log_history if "loss" in e],
    }
    if cache is not None:
        run["teacher_cache"] = {"folder": str(teacher_cache), "texts_read": cache.hits, "texts_computed": cache.misses,
                                "filled": cache.n_filled}
    run["mean_cosine_fp32"] = mean_cosine(encode_torch(student, tok, eval_texts, pool_rec), t_emb)
    log(f"[{name}] sparsity {run['sparsity']:.3f} ({cb.block}), {run['steps']} steps in {train_s:.0f}s, "
        f"mean cosine to the teacher (fp32) {run['mean_cosine_fp32']:.4f}")
    folder = write_sentence_transformer_folder(student, tok, root / name, pool_rec)
    shutil.rmtree(root / name / "trainer", ignore_errors=True)  # checkpoints: the folder above is the model
    run["folder"] = str(folder)
    if not skip_export:
        fast_dir = export_student(folder, tok, root / f"{name}_fast", _calibration(train_ds), progress=progress,
                                  max_length=max_len,
                                  metrics={"fp32_mean_cosine_to_teacher": run["mean_cosine_fp32"]})
        run["fast_folder"] = str(fast_dir)
        from hf_fast.sentence_transformer import FastSentenceTransformer

        for be in backends:
            fst = FastSentenceTransformer.from_pretrained(fast_dir, backend=be)
            emb = fst.encode(list(eval_texts), batch_size=64)
            run[f"mean_cosine_int8_{be}"] = mean_cosine(emb, t_emb)
            log(f"[{name}] mean cosine to the teacher, int8 {be}: {run[f'mean_cosine_int8_{be}']:.4f}")
    run["time_s"] = round(time.time() - t_all, 1)
    results = {"recipe": r.name, "task": r.task, "root": str(root), "data": dict(r.data),
               "fast_config": r.fast_config.to_dict(), "training_args": {
                   k: getattr(args, k) for k in ("max_steps", "num_train_epochs", "per_device_train_batch_size",
                                                 "learning_rate", "warmup_steps", "weight_decay", "seed")},
               "runs": {name: run}}
    path = root / "results.json"
    prev = json.loads(path.read_text()) if path.is_file() else {}
    if prev.get("recipe") == r.name and isinstance(prev.get("runs"), dict):  # several students, one file
        results["runs"] = {**prev["runs"], **results["runs"]}
    _atomic.write_text(path, json.dumps(results, indent=2, default=str))  # it holds earlier students' results too
    head = "| student | sparsity | block | steps | mean cosine to teacher fp32 | " + \
        " | ".join(f"int8 {b}" for b in backends) + " |"
    lines = [f"# {r.name} (feature-extraction)", "", head, "|" + "---|" * (5 + len(backends))]
    for k, v in results["runs"].items():
        cells = " | ".join(f"{v[f'mean_cosine_int8_{b}']:.4f}" if f"mean_cosine_int8_{b}" in v else "-"
                           for b in backends)
        lines.append(f"| {k} | {v['sparsity']:.3f} | {v['block']} | {v['steps']} | {v['mean_cosine_fp32']:.4f} | "
                     f"{cells} |")
    _atomic.write_text(root / "report.md", "\n".join(lines) + "\n")
    return results
