"""Real-data QA experiment (offline): MiniLM-L6 on the stored part of SQuAD v1.1 (recipes/minilm_squad_part.yaml).

  1. dense teacher: MiniLM fine-tuned on the 11 train articles (or --teacher DIR to reuse one)
  2. student = a copy of the teacher pruned to 80% in 4x1 blocks while distilling from it (FastTrainer)
  3. the same student without distillation (FastTrainer, teacher=None; --skip-no-distill drops it)
  4. each model exported to a sparse int8 fast artifact and run in the native engine and in ONNX Runtime
     (the same model.onnx), on the same features as the PyTorch fp32 evaluation
and reports SQuAD EM/F1 (hf_fast.training.metrics.squad_metric = the official v1.1 script) on a stated prefix
of the dev set, the engine-vs-ONNX Runtime answer agreement (% of questions whose predicted answer text is
identical) and the largest start/end logit difference between them (over real, unpadded tokens).
Writes <out>/results.json and prints a markdown table.

Features follow HF run_qa.py (hf_fast.training.qa_data): max_length/doc_stride windows (truncation
only_second), n_best 20, max_answer_length 30. Training pads per batch and groups features of similar length.

Smoke test (minutes): python benchmarks/train_squad.py --max-steps 3 --train-limit 64 --eval-questions 24 \
                          --out benchmarks/out/squad_smoke
Bounded run (49 min on 2 shared cores, benchmarks/HISTORY.md "SQuAD part"):
    nice -n 5 python benchmarks/train_squad.py --teacher-max-steps 100 --max-steps 60 --eval-articles 3 \
        --out benchmarks/out/squad_run
--ort-exact adds ONNX Runtime with graph optimisations off (the file's exact QDQ arithmetic) as a third backend.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def predict_logits(run_batch, arrays, batch_size: int = 32):
    """Run every feature through ``run_batch(dict of int64 [b, s]) -> (start, end)`` in batches of similar
    length, each trimmed to its longest real sequence (right padding). Returns full [n, max_length] arrays
    (-1e4 where a batch was trimmed: padding, never a candidate) and the wall time."""
    import numpy as np

    mask = arrays["attention_mask"]
    n, L = mask.shape
    lengths = mask.sum(1)
    order = np.argsort(-lengths, kind="stable")
    start = np.full((n, L), -1e4, np.float32)
    end = np.full((n, L), -1e4, np.float32)
    t = time.perf_counter()
    for i in range(0, n, batch_size):
        idx = order[i:i + batch_size]
        s = int(lengths[idx].max())
        feed = {k: np.ascontiguousarray(v[idx, :s]) for k, v in arrays.items()}
        a, b = run_batch(feed)
        start[idx, :s] = a
        end[idx, :s] = b
    return start, end, time.perf_counter() - t


def cached_logits(cache_dir: Path | None, parts: list, compute):
    """``compute() -> (start, end, seconds)``, memoised in ``cache_dir/<sha256 of parts>.npz`` (parts: byte strings
    and file paths, hashed by content). The queue's runs share one teacher: its fp32 and int8 dev logits are computed
    once, and anything that changes them (weights, artifact, native library, ONNX Runtime, eval features) changes
    the key. ``cache_dir=None``: no cache."""
    import hashlib

    import numpy as np

    from hf_fast import _atomic

    if cache_dir is None:
        return compute()
    h = hashlib.sha256()
    for x in parts:
        if isinstance(x, Path):
            with open(x, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        else:
            h.update(x if isinstance(x, bytes) else str(x).encode())
        h.update(b"\0")
    path = cache_dir / f"{h.hexdigest()[:32]}.npz"
    if path.is_file():
        with np.load(path) as z:
            log(f"  (logits from the cache {path})")
            return z["start"], z["end"], float(z["seconds"])
    st, en, sec = compute()
    with _atomic.atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez(path) appends .npz
        np.savez(f, start=st, end=en, seconds=sec)
    return st, en, sec


def has_checkpoint(output_dir) -> bool:
    return any(Path(output_dir).glob("checkpoint-*"))


def max_logit_diff(a, b, mask) -> float:
    import numpy as np

    m = mask.astype(bool)
    return float(max(np.abs(a[0] - b[0])[m].max(), np.abs(a[1] - b[1])[m].max())) if m.any() else 0.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default=str(REPO / "recipes" / "minilm_squad_part.yaml"))
    ap.add_argument("--out", default=None, help="output root (default: the recipe's output dirs)")
    ap.add_argument("--teacher", default=None, help="reuse a fine-tuned teacher directory")
    ap.add_argument("--max-steps", type=int, default=None, help="cap the student runs (and the teacher, unless "
                                                                 "--teacher-max-steps)")
    ap.add_argument("--teacher-max-steps", type=int, default=None)
    ap.add_argument("--epochs", type=float, default=None, help="student epochs (recipe: training_args)")
    ap.add_argument("--teacher-epochs", type=float, default=None)
    ap.add_argument("--train-limit", type=int, default=None, help="first N train questions")
    ap.add_argument("--train-fraction", type=float, default=None,
                    help="a seeded random share of the train questions (learning curve; teacher and students)")
    ap.add_argument("--sparsity", type=float, default=None, help="override fast_config.sparsity")
    ap.add_argument("--eval-articles", type=int, default=None, help="first N dev articles (file order)")
    ap.add_argument("--eval-questions", type=int, default=None, help="first N dev questions (after --eval-articles)")
    ap.add_argument("--quick", action="store_true", help="evaluate on the train file's quick_eval_articles "
                                                          "(held out of training) instead of the dev set")
    ap.add_argument("--max-length", type=int, default=None)
    ap.add_argument("--doc-stride", type=int, default=None)
    ap.add_argument("--block", default=None, help="override fast_config.block")
    ap.add_argument("--skip-no-distill", action="store_true")
    ap.add_argument("--skip-distilled", action="store_true", help="train only the student without distillation")
    ap.add_argument("--resume", action="store_true", help="a teacher or student whose output folder holds "
                    "checkpoint-* resumes from the newest complete one (a stopped run goes on where it was)")
    ap.add_argument("--reuse-students", action="store_true",
                    help="students whose <out>/<name>/final exists are scored again instead of retrained (their "
                         "training figures are kept from <out>/results.json); with --teacher <out>/teacher/final the "
                         "teacher's too")
    ap.add_argument("--skip-export", action="store_true", help="do not export/evaluate the int8 artifacts")
    ap.add_argument("--reduce-range", action="store_true", help="export 7-bit weights (see hf_fast.export.export)")
    ap.add_argument("--quantize-attention", action="store_true",
                    help="export with int8 attention (QDQ on q.k^T and p.v; artifacts named *_int8_qa)")
    ap.add_argument("--ort-exact", action="store_true", help="also run ONNX Runtime with graph optimisations off "
                    "(ORT_DISABLE_ALL: the exact QDQ arithmetic of the file) and report the engine against it")
    ap.add_argument("--augment-qa", default=None, metavar="JSON",
                    help='data.augment_qa for the distilled student (hf_fast.training.qa_augment), e.g. '
                         '\'{"other_paragraphs": 1, "strides": [[192, 64]]}\'; "{}" turns the recipe\'s off')
    ap.add_argument("--alpha", type=float, default=None, help="fast_config.distill.alpha (KL weight; an augmented "
                    "run is KL only whatever this says: its features have no labels)")
    ap.add_argument("--calibration-size", type=int, default=128)
    ap.add_argument("--eval-batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="torch / engine / ORT threads (default: all cores)")
    ap.add_argument("--bf16", action="store_true", help="train teacher and students under bf16 autocast (fp32 master "
                    "weights; 1.4-1.7x faster steps on CPUs with AVX512_BF16/AMX)")
    from hf_fast.training.run_recipe import add_pruning_arguments, pruning_overrides

    add_pruning_arguments(ap)
    a = ap.parse_args(argv)

    import numpy as np
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, DataCollatorWithPadding, Trainer

    from hf_fast.blocks import overall_sparsity
    from hf_fast.training import FastTrainer
    from hf_fast.training.masks import find_prunable_linears
    from hf_fast.training.metrics import paired_difference, squad_metric, squad_scores
    from hf_fast.training.qa_data import (
        answer_agreement,
        feature_arrays,
        postprocess_qa_predictions,
        squad_datasets,
        squad_predictions_and_references,
    )
    from hf_fast.training.recipe import load_recipe

    t_start = time.time()
    ov = {"data": {}, "training_args": {}, "teacher_training_args": {}, "fast_config": {}}
    if a.max_steps:
        ov["training_args"]["max_steps"] = a.max_steps
        ov["teacher_training_args"]["max_steps"] = a.max_steps
    if a.teacher_max_steps:
        ov["teacher_training_args"]["max_steps"] = a.teacher_max_steps
    if a.max_steps or a.teacher_max_steps:
        for k in ("training_args", "teacher_training_args"):
            ov[k].update(save_strategy="no", eval_strategy="no")
            ov[k]["logging_steps"] = max(1, min(25, (a.max_steps or a.teacher_max_steps) // 4))
    if a.bf16:
        ov["training_args"]["bf16"] = ov["teacher_training_args"]["bf16"] = True
    if a.epochs is not None:
        ov["training_args"]["num_train_epochs"] = a.epochs
    if a.teacher_epochs is not None:
        ov["teacher_training_args"]["num_train_epochs"] = a.teacher_epochs
    if a.out:
        ov["training_args"]["output_dir"] = str(Path(a.out) / "student")
        ov["teacher_training_args"]["output_dir"] = str(Path(a.out) / "teacher")
    if a.train_limit:
        ov["data"]["train_limit"] = a.train_limit
    if a.max_length:
        ov["data"]["max_length"] = a.max_length
    if a.doc_stride:
        ov["data"]["doc_stride"] = a.doc_stride
    if a.train_fraction is not None:
        ov["data"]["train_fraction"] = a.train_fraction
    if a.block:
        ov["fast_config"]["block"] = a.block
    if a.sparsity is not None:
        ov["fast_config"]["sparsity"] = a.sparsity
    ov["fast_config"].update(pruning_overrides(a))
    if a.augment_qa is not None:
        ov["data"]["augment_qa"] = json.loads(a.augment_qa)
    if a.alpha is not None:
        ov["fast_config"].setdefault("distill", {})["alpha"] = a.alpha
    r = load_recipe(a.recipe, overrides=ov, base_dir=REPO)
    if r.task != "question-answering":
        raise SystemExit(f"{a.recipe}: task is {r.task!r}, this script runs question-answering recipes")
    threads = a.threads or max(1, os.cpu_count() or 1)
    torch.set_num_threads(threads)
    root = Path(r.training_args.output_dir).parent
    root.mkdir(parents=True, exist_ok=True)

    tok = AutoTokenizer.from_pretrained(r.student)
    ml, stride = int(r.data.get("max_length", 384)), int(r.data.get("doc_stride", 128))
    tr_ex, train_ds, ev_ex, eval_ds = squad_datasets(r.data, tok, eval_articles=a.eval_articles,
                                                     eval_questions=a.eval_questions, quick=a.quick,
                                                     pad_train=False)
    ev_arr = feature_arrays(eval_ds)
    ev_mask = ev_arr["attention_mask"]
    eval_set = (f"squad_v1.1_train_part.json held-out articles {r.data.get('quick_eval_articles')}" if a.quick else
                "squad_v1.1_dev.json " + (f"first {a.eval_articles} articles" if a.eval_articles else "all articles")
                + (f", first {a.eval_questions} questions" if a.eval_questions else ""))
    titles = sorted({e["title"] for e in ev_ex})
    log(f"[data] train {len(tr_ex)} questions -> {len(train_ds)} features; eval {len(ev_ex)} questions -> "
        f"{len(eval_ds)} features ({eval_set}: {titles}); max_length {ml} doc_stride {stride}")
    collator = DataCollatorWithPadding(tok)
    from hf_fast.training.qa_augment import distillation_dataset

    t_aug = time.time()
    distill_ds, aug_counts = distillation_dataset(r.data.get("augment_qa"), tr_ex, train_ds, tok, ml, stride)
    if distill_ds is not train_ds:
        log(f"[augment] distillation set {len(distill_ds)} features {aug_counts} ({time.time() - t_aug:.0f}s)")
        a.skip_no_distill = True  # augmented features carry no labels: only the distilled student can use them

    per_question = {}  # (run, "fp32" | backend) -> {question id: F1 in [0, 1]}, for paired differences

    def score(start, end, key=None):
        preds = postprocess_qa_predictions(ev_ex, eval_ds, start, end, n_best=20, max_answer_length=30)
        pr = squad_predictions_and_references(ev_ex, preds)
        if key is not None:
            per_question[key] = {k: f for k, (_, f) in squad_scores(*pr).items()}
        return preds, squad_metric(*pr)

    def paired_vs(key, ref_key):
        """100 x (mean, standard error) of the per-question F1 difference key - ref_key (None if either is missing)."""
        if key not in per_question or ref_key not in per_question:
            return None
        m, se = paired_difference(per_question[key], per_question[ref_key])
        return [100 * m, 100 * se]

    def torch_runner(model):
        model.eval()

        def run(feed):
            with torch.no_grad():
                o = model(**{k: torch.from_numpy(v) for k, v in feed.items()})
            return o.start_logits.float().numpy(), o.end_logits.float().numpy()
        return run

    results = {"recipe": r.name, "command": " ".join([Path(sys.executable).name] + sys.argv),
               "data": {**{k: v for k, v in r.data.items()}, "max_length": ml, "doc_stride": stride},
               "eval_set": eval_set, "eval_articles": titles, "eval_questions": len(ev_ex),
               "eval_features": len(eval_ds), "train_questions": len(tr_ex), "train_features": len(train_ds),
               "distillation_features": aug_counts,
               "postprocess": {"n_best": 20, "max_answer_length": 30},
               "machine": {"cpus": os.cpu_count(), "threads": threads, "platform": platform.platform(),
                           "loadavg_start": os.getloadavg()},
               "runs": {}}
    out_json = root / "results.json"
    prev_runs = json.loads(out_json.read_text()).get("runs", {}) if a.reuse_students and out_json.is_file() else {}
    if a.quantize_attention:  # the int8-attention scores go beside the default export's, not over them
        out_json = root / "results_qa.json"

    def save():
        # per-question F1 of every scored (run, backend): later paired comparisons between runs of different files
        (root / "per_question_f1.json").write_text(json.dumps({f"{k[0]}/{k[1]}": v for k, v in per_question.items()}))
        results["wall_s"] = time.time() - t_start
        results["machine"]["loadavg_end"] = os.getloadavg()
        out_json.write_text(json.dumps(results, indent=2, default=str))

    # 1. teacher
    preds_fp32 = {}
    t0 = time.time()
    targs = r.teacher_training_args or r.training_args
    if a.teacher or r.teacher:
        tdir = a.teacher or r.teacher
        teacher = AutoModelForQuestionAnswering.from_pretrained(tdir)
        tsteps = None
        t_lr = None
    else:
        teacher = AutoModelForQuestionAnswering.from_pretrained(r.student)
        t_lr = targs.learning_rate  # read before training (the Trainer may change the arguments object)
        tr = Trainer(model=teacher, args=targs, train_dataset=train_ds, data_collator=collator)
        tr.train(resume_from_checkpoint=a.resume and has_checkpoint(targs.output_dir))
        tsteps = tr.state.global_step
        tdir = str(Path(targs.output_dir) / "final")
        tr.save_model(tdir)
        tok.save_pretrained(tdir)
    t_train = time.time() - t0
    ev_key = [ev_arr[k].tobytes() for k in sorted(ev_arr)]
    teacher_cache = Path(tdir) / ".eval_cache" if a.teacher or r.teacher else None
    st, en, t_eval = cached_logits(teacher_cache, ["fp32", torch.__version__, Path(tdir) / "model.safetensors",
                                                   *ev_key], lambda: predict_logits(torch_runner(teacher), ev_arr,
                                                                                    a.eval_batch))
    preds_fp32["teacher_dense"], m = score(st, en, ("teacher_dense", "fp32"))
    old = prev_runs.get("teacher_dense", {}) if tsteps is None else {}
    old = old if old.get("dir") and Path(old["dir"]).resolve() == Path(tdir).resolve() else {}
    results["runs"]["teacher_dense"] = {**old, "exact_match": m["exact_match"], "f1": m["f1"], "dir": tdir,
                                        "fp32_eval_s": t_eval, "block": None, "sparsity_overall": 0.0}
    if not old:
        results["runs"]["teacher_dense"].update(steps=tsteps, epochs=targs.num_train_epochs,
                                                max_steps=targs.max_steps, lr=t_lr,
                                                batch=targs.per_device_train_batch_size, train_s=t_train)
    log(f"[teacher_dense] fp32 EM {m['exact_match']:.2f} F1 {m['f1']:.2f} (steps {tsteps}, train {t_train:.0f}s, "
        f"eval {t_eval:.0f}s)")
    save()

    # 2./3. pruned students (initialised from the teacher), with and without distillation
    variants = (([] if a.skip_distilled else [("student_distilled", True)]) +
                ([] if a.skip_no_distill else [("student_no_distill", False)]))
    for name, distil in variants:
        t1 = time.time()
        fdir = str(root / name / "final")
        if a.reuse_students and (Path(fdir) / "config.json").is_file():
            student = AutoModelForQuestionAnswering.from_pretrained(fdir)
            block = a.block or r.fast_config.block
            overall, sp = overall_sparsity(find_prunable_linears(student), block)
            st, en, t_eval = predict_logits(torch_runner(student), ev_arr, a.eval_batch)
            preds_fp32[name], m = score(st, en, (name, "fp32"))
            results["runs"][name] = {**prev_runs.get(name, {}), "exact_match": m["exact_match"], "f1": m["f1"],
                                     "dir": fdir, "block": block, "distillation": distil,
                                     "sparsity_overall": overall,
                                     "sparsity_min_layer": min(sp.values()), "fp32_eval_s": t_eval, "reused": True}
            log(f"[{name}] (reused {fdir}) fp32 EM {m['exact_match']:.2f} F1 {m['f1']:.2f}")
            save()
            continue
        student = AutoModelForQuestionAnswering.from_pretrained(tdir)
        args = r.training_args
        args.output_dir = str(root / name)
        s_lr = args.learning_rate
        ft = FastTrainer(model=student, teacher=teacher if distil else None, args=args, fast_config=r.fast_config,
                         train_dataset=distill_ds if distil else train_ds, data_collator=collator)
        ft.train(resume_from_checkpoint=a.resume and has_checkpoint(args.output_dir))
        t_train = time.time() - t1
        cb = ft.pruning_callback
        overall, sp = overall_sparsity(cb._layers, cb.block)
        ft.save_model(fdir)
        tok.save_pretrained(fdir)
        st, en, t_eval = predict_logits(torch_runner(student), ev_arr, a.eval_batch)
        preds_fp32[name], m = score(st, en, (name, "fp32"))
        results["runs"][name] = {"exact_match": m["exact_match"], "f1": m["f1"], "dir": fdir, "block": cb.block,
                                 "distillation": distil, "sparsity_overall": overall,
                                 "sparsity_min_layer": min(sp.values()), "sparsity_per_linear": sp,
                                 "steps": ft.state.global_step,
                                 "epochs": args.num_train_epochs, "max_steps": args.max_steps,
                                 "lr": s_lr, "batch": args.per_device_train_batch_size,
                                 "train_s": t_train, "fp32_eval_s": t_eval}
        log(f"[{name}] fp32 EM {m['exact_match']:.2f} F1 {m['f1']:.2f} sparsity "
            f"{results['runs'][name]['sparsity_overall']:.3f} block {cb.block} (steps {ft.state.global_step}, "
            f"train {t_train:.0f}s, eval {t_eval:.0f}s)")
        del ft
        save()

    # 4. int8 export of each model, run in the native engine and in ONNX Runtime (same file, same features)
    if not a.skip_export:
        import onnxruntime

        from hf_fast.export import export
        from hf_fast.native import _loader  # noqa: F401  (loads hf_fast._native, or HF_FAST_NATIVE_DIR's build)
        from hf_fast.runtime import FastModelForQuestionAnswering

        ort_version = onnxruntime.__version__
        native_lib = Path(sys.modules["hf_fast._native"].__file__)  # the build _loader loaded

        cols = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in train_ds.column_names]
        rng = np.random.default_rng(0)
        calib_idx = rng.choice(len(train_ds), size=min(a.calibration_size, len(train_ds)), replace=False)
        calib = [{c: train_ds[int(i)][c] for c in cols} for i in calib_idx]
        for name, run in list(results["runs"].items()):
            t2 = time.time()
            model = AutoModelForQuestionAnswering.from_pretrained(run["dir"]).eval()
            art = root / f"{name}_int8{'_qa' if a.quantize_attention else ''}"
            export(model, tok, art, calibration_dataset=calib, task="question-answering", block=run.get("block"),
                   progress=False, max_length=ml, reduce_range=a.reduce_range, quantize_attention=a.quantize_attention)
            run["artifact"] = str(art)
            run["export_s"] = time.time() - t2
            run["artifact_mb"] = (art / "model.onnx").stat().st_size / 2 ** 20
            logits, preds = {}, {}
            backends = [("native", "native", {}), ("onnxruntime", "onnxruntime", {})]
            if a.ort_exact:
                backends.append(("onnxruntime_exact", "onnxruntime", {"graph_optimization_level": "ORT_DISABLE_ALL"}))
            for backend, kind, opts in backends:
                fm = FastModelForQuestionAnswering.from_pretrained(art, backend=kind, num_threads=threads, **opts)

                def run_fast(feed, fm=fm):
                    o = fm(**feed)
                    return o.start_logits.numpy(), o.end_logits.numpy()
                # the teacher's int8 logits: cached by artifact, native library and ONNX Runtime build
                key = [backend, json.dumps(opts, sort_keys=True), ort_version, Path(art) / "model.onnx",
                       native_lib, *ev_key]
                st, en, t_eval = cached_logits(teacher_cache if name == "teacher_dense" else None, key,
                                               lambda run_fast=run_fast: predict_logits(run_fast, ev_arr,
                                                                                        a.eval_batch))
                logits[backend] = (st, en)
                preds[backend], m = score(st, en, (name, backend))
                run[f"int8_{backend}_f1_paired_vs_teacher_fp32"] = paired_vs((name, backend), ("teacher_dense", "fp32"))
                run[f"int8_{backend}_f1_paired_vs_teacher_int8"] = paired_vs((name, backend),
                                                                             ("teacher_dense", backend))
                run[f"int8_{backend}_exact_match"] = m["exact_match"]
                run[f"int8_{backend}_f1"] = m["f1"]
                run[f"int8_{backend}_eval_s"] = t_eval
                run[f"int8_{backend}_agreement_with_fp32"] = 100 * answer_agreement(preds[backend], preds_fp32[name])
                log(f"[{name}] int8 {backend} EM {m['exact_match']:.2f} F1 {m['f1']:.2f} (eval {t_eval:.0f}s)")
                del fm
            run["engine_vs_ort_answer_agreement"] = 100 * answer_agreement(preds["native"], preds["onnxruntime"])
            run["engine_vs_ort_max_logit_diff"] = max_logit_diff(logits["native"], logits["onnxruntime"], ev_mask)
            if a.ort_exact:
                run["engine_vs_ort_exact_answer_agreement"] = 100 * answer_agreement(preds["native"],
                                                                                     preds["onnxruntime_exact"])
                run["engine_vs_ort_exact_max_logit_diff"] = max_logit_diff(logits["native"],
                                                                           logits["onnxruntime_exact"], ev_mask)
                run["ort_vs_ort_exact_answer_agreement"] = 100 * answer_agreement(preds["onnxruntime"],
                                                                                  preds["onnxruntime_exact"])
                log(f"[{name}] engine vs ORT exact QDQ: {run['engine_vs_ort_exact_answer_agreement']:.2f}% "
                    f"(max diff {run['engine_vs_ort_exact_max_logit_diff']:.4g}); ORT vs ORT exact "
                    f"{run['ort_vs_ort_exact_answer_agreement']:.2f}%")
            run["engine_vs_ort_disagreeing_ids"] = sorted(k for k in preds["native"]
                                                          if preds["native"][k] != preds["onnxruntime"][k])[:50]
            log(f"[{name}] engine vs ORT: answer agreement {run['engine_vs_ort_answer_agreement']:.2f}% "
                f"max |logit diff| {run['engine_vs_ort_max_logit_diff']:.4g}")
            save()

    save()
    nan = float("nan")
    print("\n| model | sparsity (block) | steps | fp32 EM / F1 | int8 native EM / F1 | int8 ORT EM / F1 | "
          "engine vs ORT answers | max logit diff |\n|---|---|---|---|---|---|---|---|")
    for k, v in results["runs"].items():
        print(f"| {k} | {v.get('sparsity_overall', 0.0):.3f} ({v.get('block') or 'dense'}) | {v.get('steps')} | "
              f"{v['exact_match']:.2f} / {v['f1']:.2f} | "
              f"{v.get('int8_native_exact_match', nan):.2f} / {v.get('int8_native_f1', nan):.2f} | "
              f"{v.get('int8_onnxruntime_exact_match', nan):.2f} / {v.get('int8_onnxruntime_f1', nan):.2f} | "
              f"{v.get('engine_vs_ort_answer_agreement', nan):.2f}% | "
              f"{v.get('engine_vs_ort_max_logit_diff', nan):.3g} |")
    for k, v in results["runs"].items():
        d = v.get("int8_native_f1_paired_vs_teacher_fp32")
        if d and k != "teacher_dense":
            print(f"- {k}: int8 engine F1 - teacher fp32 F1 = {d[0]:+.2f} +- {d[1]:.2f} (paired, per question)")
    print(f"\n{len(ev_ex)} questions ({len(eval_ds)} features) of {eval_set}; train {len(tr_ex)} questions "
          f"({len(train_ds)} features); max_length {ml}, doc_stride {stride}; wall {results['wall_s'] / 60:.1f} min")
    print(f"results: {out_json}")
    return results


if __name__ == "__main__":
    main()
