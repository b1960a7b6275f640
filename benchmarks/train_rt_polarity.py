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
    a = ap.parse_args(argv)

    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer

    from hf_fast.blocks import block_sparsity
    from hf_fast.training import FastTrainer
    from hf_fast.training.data import classification_datasets
    from hf_fast.training.metrics import accuracy
    from hf_fast.training.recipe import load_recipe

    ov = {"data": {}, "training_args": {}, "teacher_training_args": {}, "fast_config": {}}
    if a.max_steps:
        ov["training_args"]["max_steps"] = a.max_steps
        ov["teacher_training_args"]["max_steps"] = a.max_steps
        ov["training_args"].update(eval_strategy="no", save_strategy="no", logging_steps=max(1, a.max_steps // 4))
        ov["teacher_training_args"].update(eval_strategy="no", save_strategy="no")
    if a.out:
        ov["training_args"]["output_dir"] = str(Path(a.out) / "student")
        ov["teacher_training_args"]["output_dir"] = str(Path(a.out) / "teacher")
    if a.train_limit:
        ov["data"]["train_limit"] = a.train_limit
    if a.eval_limit:
        ov["data"]["eval_limit"] = a.eval_limit
    if a.block:
        ov["fast_config"]["block"] = a.block
    r = load_recipe(a.recipe, overrides=ov, base_dir=REPO)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    tok = AutoTokenizer.from_pretrained(r.student)
    train_ds, eval_ds = classification_datasets(r.data, tok)
    print(f"[data] train {len(train_ds)} eval {len(eval_ds)} max_length {r.data.get('max_length')}", flush=True)

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
                     compute_metrics=compute_metrics)
        tr.train()
        tdir = str(Path(targs.output_dir) / "final")
        tr.save_model(tdir)
        tok.save_pretrained(tdir)
    ev = Trainer(model=teacher, args=r.training_args, eval_dataset=eval_ds, compute_metrics=compute_metrics).evaluate()
    results["runs"]["teacher_dense"] = {"accuracy": ev["eval_accuracy"], "dir": tdir, "time_s": time.time() - t0}
    print(f"[teacher] dense accuracy {ev['eval_accuracy']:.4f}", flush=True)

    # 2./3. pruned students (initialised from the teacher), with and without distillation
    variants = [("student_distilled", True)] + ([] if a.skip_no_distill else [("student_no_distill", False)])
    for name, distil in variants:
        t1 = time.time()
        student = AutoModelForSequenceClassification.from_pretrained(tdir)
        args = r.training_args
        args.output_dir = str(Path(r.training_args.output_dir).parent / name)
        ft = FastTrainer(model=student, teacher=teacher if distil else None, args=args, fast_config=r.fast_config,
                         train_dataset=train_ds, eval_dataset=eval_ds, compute_metrics=compute_metrics)
        ft.train()
        ev = ft.evaluate()
        cb = ft.pruning_callback
        sp = {n: block_sparsity(m.weight, cb.block) for n, m in cb._layers.items()}
        ft.save_model(str(Path(args.output_dir) / "final"))
        results["runs"][name] = {"accuracy": ev["eval_accuracy"], "block": cb.block,
                                 "sparsity_overall": float(np.mean(list(sp.values()))),
                                 "sparsity_min_layer": min(sp.values()), "time_s": time.time() - t1,
                                 "steps": ft.state.global_step}
        print(f"[{name}] accuracy {ev['eval_accuracy']:.4f} sparsity {results['runs'][name]['sparsity_overall']:.3f} "
              f"block {cb.block}", flush=True)

    out = Path(r.training_args.output_dir).parent / "results.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print("\n| run | accuracy | sparsity | block |\n|---|---|---|---|")
    for k, v in results["runs"].items():
        print(f"| {k} | {v['accuracy']:.4f} | {v.get('sparsity_overall', 0.0):.3f} | {v.get('block', 'dense')} |")
    print(f"results: {out}")
    return results


if __name__ == "__main__":
    main()
