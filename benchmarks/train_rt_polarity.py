"""Real-data experiment (offline): MiniLM-L6 on rt-polarity.

  1. dense teacher: MiniLM fine-tuned on the task (or --teacher DIR to reuse one)
  2. student = a copy of the teacher pruned to the recipe's sparsity (80%) with distillation (FastTrainer)
  3. the same student without distillation (FastTrainer, teacher=None)
and prints eval accuracies (2,000 held-out sentences) and reached sparsity; writes <out>/results.json.

Full run (~1.5-2 h on 2 cores): python benchmarks/train_rt_polarity.py
Smoke test:                     python benchmarks/train_rt_polarity.py --max-steps 20 --train-limit 640 --eval-limit 200
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "rt-polarity"


def calibration_rows(train_ds, cols, n: int = 256):
    """n training rows spread over the split (it lists the negatives first), as feeds of `cols`."""
    step = max(1, len(train_ds) // n)
    return [{c: train_ds[i][c] for c in cols} for i in range(0, len(train_ds), step)][:n]


def held_out_set(model_dir, threads: int = 1):
    """The recipe's held-out rt-polarity sentences for the classifier in `model_dir`: (recipe, tokenizer, its fp32
    PyTorch model in eval mode, the training split, the input columns, the eval inputs as int64 arrays, the labels).
    Shared by the benchmarks that compare exports of one classifier on the same 2,000 sentences."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_fast.training.data import classification_datasets
    from hf_fast.training.recipe import load_recipe

    torch.set_num_threads(threads)
    r = load_recipe(str(REPO / "recipes" / "minilm_rt_polarity.yaml"), base_dir=REPO)
    tok = AutoTokenizer.from_pretrained(model_dir)
    train_ds, eval_ds = classification_datasets(r.data, tok)
    cols = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in eval_ds.column_names]
    ev = {c: np.asarray(eval_ds[c], dtype=np.int64) for c in cols}
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    return r, tok, model, train_ds, cols, ev, np.asarray(eval_ds["labels"])


def student_data(tok):
    """rt-polarity as the student comparisons (latency_vs_scope.py, block_shape_accuracy.py) train and score on it:
    (train split, collator, eval inputs as int64 arrays, labels, calibration rows). The conventional split (2,000
    held-out sentences, $HF_FAST_RT_POLARITY or ../shared/data), max_length 64, dynamic padding."""
    import numpy as np
    from transformers import DataCollatorWithPadding

    from hf_fast.training.data import classification_datasets

    spec = {"format": "rt-polarity", "path": str(Path(os.environ.get("HF_FAST_RT_POLARITY", DATA))),
            "eval_per_class": 1000, "max_length": 64, "train_padding": "dynamic"}
    train_ds, eval_ds = classification_datasets(spec, tok)
    cols = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in eval_ds.column_names]
    ev = {c: np.asarray(eval_ds[c], dtype=np.int64) for c in cols}
    return train_ds, DataCollatorWithPadding(tok), ev, np.asarray(eval_ds["labels"]), calibration_rows(train_ds, cols)


def int8_scores(model, tok, art, ev, labels, calib, max_length: int, threads: int = 1, block=None) -> dict:
    """Exports `model` (torch, eval mode) int8 to `art` (hf_fast.export, the default settings) and scores it per
    held-out sentence in fp32 PyTorch and in the native engine: {fp32_right, int8_native_right (0/1 lists),
    fp32_accuracy, int8_native_accuracy}."""
    import numpy as np
    import torch

    from hf_fast.export import export
    from hf_fast.runtime import load_fast_model

    export(model, tok, art, calibration_dataset=calib, block=block, progress=False, max_length=max_length)
    with torch.no_grad():
        ref = batched_logits(model, {c: torch.from_numpy(v) for c, v in ev.items()})
    lg = batched_logits(load_fast_model(art, backend="native", num_threads=threads), ev)
    out = {"fp32_right": (ref.argmax(-1) == labels).astype(int).tolist(),
           "int8_native_right": (lg.argmax(-1) == labels).astype(int).tolist()}
    out.update(fp32_accuracy=float(np.mean(out["fp32_right"])),
               int8_native_accuracy=float(np.mean(out["int8_native_right"])))
    return out


def batched_logits(call, feeds, batch: int = 64):
    """Logits of `call(**rows)` (numpy arrays, or torch tensors for a torch model) over `feeds` in batches."""
    import numpy as np
    import torch

    n = len(next(iter(feeds.values())))
    out = []
    for i in range(0, n, batch):
        lg = call(**{c: v[i:i + batch] for c, v in feeds.items()}).logits
        out.append(lg.detach().numpy() if isinstance(lg, torch.Tensor) else np.asarray(lg))
    return np.concatenate(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default=str(REPO / "recipes" / "minilm_rt_polarity.yaml"))
    ap.add_argument("--out", default=None, help="output root (default: the recipe's output dirs)")
    ap.add_argument("--teacher", default=None, help="reuse a fine-tuned teacher directory")
    ap.add_argument("--max-steps", type=int, default=None, help="cap every run (smoke tests)")
    ap.add_argument("--train-limit", type=int, default=None)
    ap.add_argument("--eval-limit", type=int, default=None)
    ap.add_argument("--block", default=None, help="override fast_config.block (e.g. 4x1 when 'auto' is unavailable)")
    ap.add_argument("--skip-no-distill", action="store_true")
    ap.add_argument("--variants", default="distilled,no_distill",
                    help="students to train: distilled,no_distill,distilled_qat,dense_qat (the last: the teacher "
                         "itself fine-tuned with fake-quant from step 0, distilled from its fp32 self; run them as "
                         "processes with --teacher to train both at once)")
    ap.add_argument("--reuse-students", action="store_true",
                    help="students whose <out>/<variant>/final exists are scored again instead of retrained")
    ap.add_argument("--student-epochs", type=float, default=None, help="override the recipe's student epochs")
    ap.add_argument("--augment-copies", type=int, default=None,
                    help="data.augment.copies: perturbed copies of each training sentence (hf_fast.training.augment)")
    ap.add_argument("--skip-export", action="store_true", help="do not export/evaluate the int8 artifacts")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores; 1 on a busy machine)")
    from hf_fast.training.run_recipe import add_pruning_arguments, pruning_overrides, recipe_overrides

    add_pruning_arguments(ap)
    a = ap.parse_args(argv)

    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer

    from hf_fast.blocks import overall_sparsity
    from hf_fast.training import FastTrainer
    from hf_fast.training.data import classification_datasets
    from hf_fast.training.masks import find_prunable_linears
    from hf_fast.training.metrics import accuracy
    from hf_fast.training.recipe import load_recipe

    ov = recipe_overrides(max_steps=a.max_steps, out=a.out, train_limit=a.train_limit, eval_limit=a.eval_limit,
                          block=a.block)
    if a.student_epochs:
        ov["training_args"]["num_train_epochs"] = a.student_epochs
    if a.augment_copies:
        ov["data"]["augment"] = {"copies": a.augment_copies}
    ov.setdefault("fast_config", {}).update(pruning_overrides(a))
    r = load_recipe(a.recipe, overrides=ov, base_dir=REPO)
    torch.set_num_threads(a.threads or max(1, os.cpu_count() or 1))
    tok = AutoTokenizer.from_pretrained(r.student)
    train_ds, eval_ds = classification_datasets(r.data, tok)
    print(f"[data] train {len(train_ds)} eval {len(eval_ds)} max_length {r.data.get('max_length')}", flush=True)
    from transformers import DataCollatorWithPadding

    collator = DataCollatorWithPadding(tok)  # pads each batch to its longest row (recipe data.train_padding)

    def compute_metrics(p):
        return accuracy(np.argmax(p.predictions, -1).tolist(), p.label_ids.tolist())

    results = {"recipe": r.name, "data": {k: v for k, v in r.data.items()}, "runs": {}}
    t0 = time.time()
    # 1. teacher
    if a.teacher or r.teacher:
        tdir = a.teacher or r.teacher
        teacher = AutoModelForSequenceClassification.from_pretrained(tdir)
    else:
        targs = r.teacher_training_args or r.training_args
        teacher = AutoModelForSequenceClassification.from_pretrained(r.student, num_labels=r.model.get("num_labels", 2))
        tr = Trainer(model=teacher, args=targs, train_dataset=train_ds, eval_dataset=eval_ds,
                     compute_metrics=compute_metrics, data_collator=collator)
        tr.train()
        tdir = str(Path(targs.output_dir) / "final")
        tr.save_model(tdir)
        tok.save_pretrained(tdir)
    ev = Trainer(model=teacher, args=r.training_args, eval_dataset=eval_ds, compute_metrics=compute_metrics).evaluate()
    results["runs"]["teacher_dense"] = {"accuracy": ev["eval_accuracy"], "dir": tdir, "time_s": time.time() - t0}
    print(f"[teacher] dense accuracy {ev['eval_accuracy']:.4f}", flush=True)

    # 2./3. pruned students (initialised from the teacher), with and without distillation
    wanted = {v.strip() for v in a.variants.split(",") if v.strip()} - ({"no_distill"} if a.skip_no_distill else set())
    # distilled_qat: the distilled student with fake-quant fine-tuning after pruning ends (FastConfig.quantization)
    variants = [(f"student_{v}", v != "no_distill") for v in ("distilled", "no_distill", "distilled_qat", "dense_qat")
                if v in wanted]
    for name, distil in variants:
        t1 = time.time()
        args = r.training_args
        args.output_dir = str(Path(r.training_args.output_dir).parent / name)
        final = Path(args.output_dir) / "final"
        if a.reuse_students and (final / "config.json").is_file():
            # a finished student of an earlier run: score it again and go on to export/int8 evaluation
            student = AutoModelForSequenceClassification.from_pretrained(str(final))
            ev = Trainer(model=student, args=args, eval_dataset=eval_ds, compute_metrics=compute_metrics).evaluate()
            block = a.block or r.fast_config.block
            overall, sp = overall_sparsity(find_prunable_linears(student), block)
            prev = Path(args.output_dir).parent / "results.json"
            old = json.loads(prev.read_text())["runs"].get(name, {}) if prev.is_file() else {}
            results["runs"][name] = {**old, "accuracy": ev["eval_accuracy"], "block": block,
                                     "sparsity_overall": overall, "sparsity_min_layer": min(sp.values()),
                                     "sparsity_max_layer": max(sp.values()), "reused": str(final)}
            print(f"[{name}] (reused {final}) accuracy {ev['eval_accuracy']:.4f} sparsity "
                  f"{results['runs'][name]['sparsity_overall']:.3f}", flush=True)
            continue
        student = AutoModelForSequenceClassification.from_pretrained(tdir)
        fcfg = r.fast_config
        if name.endswith("_qat"):
            import dataclasses

            fcfg = dataclasses.replace(fcfg, quantization="qat")
            if name == "student_dense_qat":  # no pruning: quantization-aware fine-tuning of the dense teacher
                fcfg = dataclasses.replace(fcfg, sparsity=0.0, min_layer_sparsity=None, qat_start_step=0)
        ft = FastTrainer(model=student, teacher=teacher if distil else None, args=args, fast_config=fcfg,
                         train_dataset=train_ds, eval_dataset=eval_ds, compute_metrics=compute_metrics,
                         data_collator=collator)
        ft.train()
        ev = ft.evaluate()
        cb = ft.pruning_callback
        overall, sp = overall_sparsity(cb._layers, cb.block)
        ft.save_model(str(Path(args.output_dir) / "final"))
        tok.save_pretrained(str(Path(args.output_dir) / "final"))
        results["runs"][name] = {"accuracy": ev["eval_accuracy"], "block": cb.block,
                                 "sparsity_overall": overall,
                                 "sparsity_per_layer": sp, "sparsity_min_layer": min(sp.values()),
                                 "sparsity_max_layer": max(sp.values()), "time_s": time.time() - t1,
                                 "steps": ft.state.global_step}
        print(f"[{name}] accuracy {ev['eval_accuracy']:.4f} sparsity {results['runs'][name]['sparsity_overall']:.3f} "
              f"block {cb.block}", flush=True)

    # 4. int8 export of each model, run in the native engine and in ONNX Runtime (same file)
    if not a.skip_export:
        from hf_fast.export import export
        from hf_fast.runtime import load_fast_model

        # the exact token ids the fp32 evaluation saw (the text column is gone after tokenization)
        cols = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in eval_ds.column_names]
        calib = calibration_rows(train_ds, cols)
        ev_np = {c: np.asarray(eval_ds[c], dtype=np.int64) for c in cols}
        labels = list(eval_ds["labels"])
        for name, run in list(results["runs"].items()):
            out_root = Path(r.training_args.output_dir).parent
            mdir = run["dir"] if name == "teacher_dense" else str(out_root / name / "final")
            model = AutoModelForSequenceClassification.from_pretrained(mdir).eval()
            art = Path(r.training_args.output_dir).parent / f"{name}_int8"
            export(model, tok, art, calibration_dataset=calib, block=run.get("block"), progress=False,
                   max_length=r.data.get("max_length", 128))
            with torch.no_grad():  # the fp32 model's own predictions: int8 vs fp32 argmax agreement
                ref = batched_logits(model, {c: torch.from_numpy(v) for c, v in ev_np.items()})
            for backend in ("native", "onnxruntime"):
                fm = load_fast_model(art, backend=backend)
                lg = batched_logits(fm, ev_np)
                acc = accuracy(lg.argmax(-1).tolist(), labels)["accuracy"]
                run[f"int8_{backend}_accuracy"] = acc
                run[f"int8_{backend}_agreement_vs_fp32"] = float((lg.argmax(-1) == ref.argmax(-1)).mean())
                run[f"int8_{backend}_max_logit_diff_vs_fp32"] = float(np.abs(lg - ref).max())
                print(f"[{name}] int8 {backend} accuracy {acc:.4f} agreement with fp32 "
                      f"{run[f'int8_{backend}_agreement_vs_fp32']:.4f}", flush=True)

    out = Path(r.training_args.output_dir).parent / "results.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print("\n| run | fp32 accuracy | int8 native | int8 onnxruntime | sparsity | block |\n|---|---|---|---|---|---|")
    for k, v in results["runs"].items():
        print(f"| {k} | {v['accuracy']:.4f} | {v.get('int8_native_accuracy', float('nan')):.4f} | "
              f"{v.get('int8_onnxruntime_accuracy', float('nan')):.4f} | {v.get('sparsity_overall', 0.0):.3f} | "
              f"{v.get('block', 'dense')} |")
    print(f"results: {out}")
    return results


if __name__ == "__main__":
    main()
