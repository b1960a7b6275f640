"""Sparse sentence-embedding students of all-MiniLM-L6-v2, label-free (recipes/minilm_embed.yaml).

For each target sparsity: a copy of the dense model is pruned block-wise (FastTrainer + PruningCallback) while it
learns the dense model's pooled, normalised embeddings of real text (SQuAD train-part questions, sentences and
<=128-token paragraph windows; rt-polarity training lines), then written as a sentence-transformers folder
<out>/s<pct>/ and exported with save_fast (task feature-extraction) to <out>/s<pct>_fast/. results.json: steps,
wall time, sparsity per Linear, training loss, mean cosine to the teacher on the held-out rt-polarity lines (the last
1,000 of each file) in fp32 PyTorch and int8 in the engine.

  python benchmarks/train_embed.py --sparsities 0.8 --max-steps 900 --threads 1
  smoke: python benchmarks/train_embed.py --sparsities 0.8 --max-steps 4 --train-limit 256 --eval-limit 64
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default=str(REPO / "recipes" / "minilm_embed.yaml"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "embed"), help="output root")
    ap.add_argument("--sparsities", default="0.8", help="comma-separated targets, trained one after the other")
    ap.add_argument("--max-steps", type=int, default=None, help="optimizer steps per student (the time budget)")
    ap.add_argument("--train-limit", type=int, default=None)
    ap.add_argument("--eval-limit", type=int, default=None)
    ap.add_argument("--block", default=None, help="override fast_config.block")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (and the engine's)")
    ap.add_argument("--loss", default=None, help="override fast_config.distill.loss")
    ap.add_argument("--budget-note", default=None, help="how the step budget was sized (recorded in results.json)")
    ap.add_argument("--copy-to", default=None,
                    help="also copy each student folder + results.json to <copy-to>/embed_s<pct>/")
    ap.add_argument("--skip-export", action="store_true")
    ap.add_argument("--student", default=None,
                    help="initial weights (model.student): e.g. the previous, less sparse student of a cascade")
    ap.add_argument("--teacher", default=None, help="model.teacher (default: the recipe's; pkg:... or a folder)")
    ap.add_argument("--initial-sparsity", type=float, default=None,
                    help="fast_config.initial_sparsity: where the schedule starts (a cascade's previous target)")
    ap.add_argument("--lr", type=float, default=None, help="training_args.learning_rate")
    ap.add_argument("--seed", type=int, default=None,
                    help="training_args.seed: a continued student given a new seed sees texts in a new order "
                         "(with the recipe's seed every stage of a cascade starts on the same texts)")
    ap.add_argument("--save-steps", type=int, default=None,
                    help="checkpoint every N steps (the newest kept) so that --resume can continue a stopped run")
    ap.add_argument("--resume", action="store_true", help="continue from the newest checkpoint of <out>/<name>")
    ap.add_argument("--cascade", action="store_true",
                    help="each student after the first starts from the previous one (its weights and zero blocks) "
                         "and its schedule from the previous target: 0.5,0.7,0.8 -> dense->50%%, 50->70%%, 70->80%%")
    ap.add_argument("--max-layer-margin", type=float, default=None,
                    help="per student, max_layer_sparsity = min(1, sparsity + margin) (global scope's per-layer cap)")
    ap.add_argument("--bf16", action="store_true",
                    help="the student trains under bf16 autocast (fp32 master weights; the teacher stays fp32): "
                         "~1.5x less CPU per student forward+backward on an AVX-512 BF16 CPU")
    ap.add_argument("--optim", default=None,
                    help="training_args.optim (the recipe's: adamw_torch_fused, the same AdamW update in one "
                         "kernel; adamw_torch is the per-tensor loop, ~7x the CPU time on 22.7M parameters)")
    ap.add_argument("--teacher-cache", default=None, metavar="DIR",
                    help="keep the frozen teacher's targets per training text in DIR (memory-mapped, ~4.5 GB for "
                         "the recipe's texts with the hidden-state term): each text's teacher forward runs once, "
                         "and a resumed run reuses them; the hidden-state term then compares real tokens only")
    ap.add_argument("--base-dir", default=str(REPO), help="where the recipe's relative paths resolve (repo root)")
    ap.add_argument("--max-length", type=int, default=None, help="data.max_length (tokens per training text)")
    ap.add_argument("--window-tokens", default=None, metavar="N,N",
                    help="data.window_tokens: SQuAD window sizes, e.g. 128,256 (each <= --max-length)")
    from hf_fast.training.run_recipe import add_pruning_arguments, pruning_overrides

    add_pruning_arguments(ap)  # --scope --score --min-layer-sparsity --end-step --hidden-weight
    a = ap.parse_args(argv)

    if a.threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
        os.environ.setdefault("HF_FAST_NUM_THREADS", str(a.threads))
        import torch

        torch.set_num_threads(a.threads)
    from hf_fast.training.run_embed import run_embed_recipe

    results = None
    prev_folder, prev_sp = a.student, a.initial_sparsity
    for sp in (float(x) for x in a.sparsities.split(",")):
        name = f"s{round(sp * 100)}"
        ov: dict = {"training_args": {"output_dir": str(Path(a.out) / "student")}, "fast_config": pruning_overrides(a)}
        if a.max_layer_margin is not None:
            ov["fast_config"]["max_layer_sparsity"] = min(1.0, round(sp + a.max_layer_margin, 4))
        student, initial = (prev_folder, prev_sp) if a.cascade else (a.student, a.initial_sparsity)
        if a.max_steps:
            ov["training_args"]["max_steps"] = a.max_steps
            ov["training_args"]["logging_steps"] = max(1, min(25, a.max_steps // 4))
        if a.loss:
            ov["fast_config"].setdefault("distill", {})["loss"] = a.loss
        if a.max_length:
            ov.setdefault("data", {})["max_length"] = a.max_length
        if a.window_tokens:
            ov.setdefault("data", {})["window_tokens"] = [int(x) for x in a.window_tokens.split(",")]
        if student or a.teacher or a.cascade:
            # a student that starts pruned still learns from the dense model (the recipe's teacher, else its student)
            ov["model"] = {k: v for k, v in (("student", student), ("teacher", a.teacher)) if v}
            if not a.teacher:
                from hf_fast.training.recipe import load_recipe

                rec = load_recipe(a.recipe, base_dir=a.base_dir, resolve_models=False)
                ov["model"]["teacher"] = rec.teacher or rec.student
        if initial is not None:
            ov["fast_config"]["initial_sparsity"] = initial
        if a.lr is not None:
            ov["training_args"]["learning_rate"] = a.lr
        if a.seed is not None:
            ov["training_args"]["seed"] = a.seed
        if a.bf16:
            ov["training_args"]["bf16"] = True
        if a.optim:
            ov["training_args"]["optim"] = a.optim
        if a.save_steps:
            ov["training_args"].update(save_strategy="steps", save_steps=a.save_steps, save_total_limit=1)
        results = run_embed_recipe(a.recipe, overrides=ov, base_dir=a.base_dir, sparsity=sp, block=a.block,
                                   train_limit=a.train_limit, eval_limit=a.eval_limit, name=name,
                                   skip_export=a.skip_export, progress=False, resume=a.resume,
                                   teacher_cache=a.teacher_cache)
        run = results["runs"][name]
        prev_folder, prev_sp = run["folder"], sp
        run["torch_threads"] = a.threads
        run["budget_note"] = a.budget_note
        res_path = Path(results["root"]) / "results.json"
        tmp = res_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(results, indent=2, default=str))
        os.replace(tmp, res_path)
        print(json.dumps({k: v for k, v in run.items() if k not in ("sparsity_per_linear", "loss_log")}, indent=2,
                         default=str), flush=True)
        if a.copy_to:
            dest = Path(a.copy_to) / f"embed_{name}"
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(run["folder"], dest / name)
            if run.get("fast_folder"):
                shutil.copytree(run["fast_folder"], dest / f"{name}_fast")
            shutil.copy2(res_path, dest / "results.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
