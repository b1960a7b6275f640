"""Run a recipe end to end: teacher -> student pruned with distillation (FastTrainer) -> save_fast (fast artifact +
weights + tokenizer + card) -> evaluate fp32, int8 in the native engine and int8 in ONNX Runtime -> report.

    from hf_fast.training.run_recipe import run_recipe
    results = run_recipe("recipes/minilm_rt_polarity.yaml", max_steps=20, train_limit=640, eval_limit=200)

``hf-fast train RECIPE.yaml`` is this function. Tasks: sequence classification (data formats rt-polarity,
sst2-tsv, hub) and question answering (squad-json, hub ``squad``; features and postprocessing from
``hf_fast.training.qa_data``). Writes ``<root>/results.json`` and ``<root>/report.md``, where ``root`` is the
parent of ``training_args.output_dir`` (or ``out``); the deployable folder is ``<root>/<variant>_fast``.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def recipe_overrides(max_steps: int | None = None, out: str | Path | None = None,
                     train_limit: int | None = None, eval_limit: int | None = None,
                     block: str | None = None, sparsity: float | None = None) -> dict[str, dict[str, Any]]:
    """The overrides the command-line knobs stand for (shared with benchmarks/train_rt_polarity.py)."""
    ov: dict[str, dict[str, Any]] = {"data": {}, "training_args": {}, "teacher_training_args": {}, "fast_config": {}}
    if max_steps:
        for k in ("training_args", "teacher_training_args"):
            ov[k].update(max_steps=int(max_steps), eval_strategy="no", save_strategy="no")
        ov["training_args"]["logging_steps"] = max(1, int(max_steps) // 4)
    if out:
        ov["training_args"]["output_dir"] = str(Path(out) / "student")
        ov["teacher_training_args"]["output_dir"] = str(Path(out) / "teacher")
    if train_limit:
        ov["data"]["train_limit"] = int(train_limit)
    if eval_limit:
        ov["data"]["eval_limit"] = int(eval_limit)
    if block:
        ov["fast_config"]["block"] = block
    if sparsity is not None:
        ov["fast_config"]["sparsity"] = float(sparsity)
    return ov


def target_shape_arg(text: str) -> tuple[int, int]:
    """``--target-shape`` as ``BATCH,SEQ`` (or ``BATCHxSEQ``): two positive ints."""
    import argparse

    parts = text.replace("x", ",").split(",")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 2 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"--target-shape takes BATCH,SEQ (two positive ints, e.g. 1,128), "
                                         f"got {text!r}")
    return shape


LATENCY_FLAGS = {"target_speedup": "--target-speedup", "target_latency_ms": "--target-latency-ms",
                 "target_shape": "--target-shape", "cost_file": "--cost-file"}


def layer_weights_arg(text: str) -> list[float]:
    """argparse type of --layer-weights: comma-separated numbers, one per student layer."""
    import argparse

    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers (one per student layer), got "
                                         f"{text!r}") from None


def add_pruning_arguments(ap) -> None:
    """Command-line knobs over the recipe's FastConfig, shared by ``hf-fast train`` and the training scripts in
    benchmarks/."""
    ap.add_argument("--scope", choices=("layer", "global", "latency"), default=None,
                    help="fast_config.scope: the sparsity target per layer, over all pruned Linears together, or "
                         "each layer's sparsity chosen to meet an engine latency target (with --target-speedup or "
                         "--target-latency-ms, and --cost-file)")
    ap.add_argument("--score", choices=("magnitude", "movement"), default=None, help="fast_config.score")
    ap.add_argument("--min-layer-sparsity", type=float, default=None,
                    help="fast_config.min_layer_sparsity (global scope: the least sparsity of every layer)")
    ap.add_argument("--max-layer-sparsity", type=float, default=None,
                    help="fast_config.max_layer_sparsity (global scope: the most sparsity of any layer)")
    ap.add_argument("--end-step", type=float, default=None,
                    help="fast_config.end_step (fraction of the steps, or a step, when the masks freeze)")
    ap.add_argument("--hidden-weight", type=float, default=None,
                    help="fast_config.distill.hidden_weight (hidden-state MSE of the distilled students)")
    ap.add_argument("--layer-weights", type=layer_weights_arg, default=None, metavar="W0,W1,...",
                    help="fast_config.distill.layer_weights: one weight per student layer for the hidden-state / "
                         "attention MSE (layer-wise distillation), e.g. 1,1,1,2,2,4")
    ap.add_argument("--relation-weight", type=float, default=None,
                    help="fast_config.distill.relation_weight (embedding losses): weight of the label-free ranking "
                         "term, the student's softmax over anchor scores learning the teacher's")
    ap.add_argument("--qat", action="store_true", default=None,
                    help="fast_config.quantization='qat': fake-quant fine-tuning from the end of pruning on, so the "
                         "int8 export matches what the student trained with")
    ap.add_argument("--target-speedup", type=float, default=None,
                    help="--scope latency: engine speedup over the dense model to reach (> 1)")
    ap.add_argument("--target-latency-ms", type=float, default=None,
                    help="--scope latency: engine latency to reach, ms per forward pass of --target-shape")
    ap.add_argument("--target-shape", type=target_shape_arg, default=None, metavar="BATCH,SEQ",
                    help="--scope latency: the (batch, seq) the target is for (default: the cost file's)")
    ap.add_argument("--cost-file", default=None,
                    help="--scope latency: cost file from `hf-fast profile` on the deployment CPU (without one, "
                         "a quick probe of this machine, with a warning)")


def pruning_overrides(args) -> dict[str, Any]:
    """The fast_config overrides of add_pruning_arguments' knobs (those left unset are not overridden).

    Changing the scope to ``layer`` or ``latency`` drops the recipe's own per-layer floor and cap (they apply to
    the global scope only) unless they are given on the command line too, where FastConfig refuses them clearly.
    The latency flags need ``--scope latency`` (or a recipe whose scope is latency: FastConfig checks that)."""
    fc: dict[str, Any] = {k: getattr(args, k) for k in ("scope", "score", "end_step", "min_layer_sparsity",
                                                       "max_layer_sparsity")
                          if getattr(args, k, None) is not None}
    if getattr(args, "hidden_weight", None) is not None:
        fc.setdefault("distill", {})["hidden_weight"] = args.hidden_weight
    if getattr(args, "layer_weights", None) is not None:
        fc.setdefault("distill", {})["layer_weights"] = args.layer_weights
    if getattr(args, "relation_weight", None) is not None:
        fc.setdefault("distill", {})["relation_weight"] = args.relation_weight
    if getattr(args, "qat", None):
        fc["quantization"] = "qat"
    given = {k: getattr(args, k) for k in LATENCY_FLAGS if getattr(args, k, None) is not None}
    scope = fc.get("scope")
    if given and scope not in (None, "latency"):
        raise ValueError(f"{', '.join(LATENCY_FLAGS[k] for k in given)} appl{'y' if len(given) > 1 else 'ies'} to "
                         f"--scope latency, not --scope {scope}")
    if given.get("target_shape") is not None:
        given["target_shape"] = list(given["target_shape"])
    fc.update(given)
    if scope in ("layer", "latency"):
        for k in ("min_layer_sparsity", "max_layer_sparsity"):
            fc.setdefault(k, None)
    return fc


def _auto(task: str):
    import transformers

    return (transformers.AutoModelForQuestionAnswering if task == "question-answering"
            else transformers.AutoModelForSequenceClassification)


# ------------------------------------------------------------------ data
class _Data:
    """Tokenized train/eval sets plus what evaluation needs (labels, or QA examples + features)."""

    def __init__(self, recipe, tok, eval_limit: int | None):
        self.task = recipe.task
        spec = recipe.data
        self.collator = None
        if recipe.task == "question-answering":
            from transformers import DataCollatorWithPadding

            from hf_fast.training import qa_data

            ml, stride = int(spec.get("max_length", 384)), int(spec.get("doc_stride", 128))
            if spec["format"] == "squad-json":
                self.train_ex, self.train_ds, self.eval_ex, self.eval_ds = qa_data.squad_datasets(
                    spec, tok, eval_questions=eval_limit or spec.get("eval_limit"), pad_train=False)
            elif spec["format"] == "hub":
                from datasets import load_dataset

                d = load_dataset(spec["name"], spec.get("config"))
                tr = [dict(r) for r in d[spec.get("train_split", "train")]]
                ev = [dict(r) for r in d[spec.get("eval_split", "validation")]]
                if spec.get("train_limit"):
                    tr = tr[: int(spec["train_limit"])]
                if eval_limit or spec.get("eval_limit"):
                    ev = ev[: int(eval_limit or spec["eval_limit"])]
                self.train_ex, self.eval_ex = tr, ev
                self.train_ds = qa_data.qa_train_dataset(tr, tok, ml, stride, pad=False)
                self.eval_ds = qa_data.qa_eval_dataset(ev, tok, ml, stride)
            else:
                raise ValueError(f"question-answering recipes read squad-json or hub data, not {spec['format']!r}")
            from hf_fast.training.qa_augment import distillation_dataset

            # the distilled student's set: the teacher labels augmented inputs too (data.augment_qa)
            self.distill_train_ds, self.augment_counts = distillation_dataset(
                spec.get("augment_qa"), self.train_ex, self.train_ds, tok, ml, stride)
            self.collator = DataCollatorWithPadding(tok)
            self.eval_arrays = qa_data.feature_arrays(self.eval_ds)
            self.calibration = [{c: self.train_ds[i][c] for c in ("input_ids", "attention_mask", "token_type_ids")
                                 if c in self.train_ds.column_names} for i in range(min(256, len(self.train_ds)))]
        else:
            from hf_fast.training.data import classification_datasets

            if spec.get("augment_qa"):
                raise ValueError("data.augment_qa is for question-answering recipes (classification: data.augment)")

            if eval_limit:
                spec = {**spec, "eval_limit": int(eval_limit)}
            self.train_ds, self.eval_ds = classification_datasets(spec, tok)
            if spec.get("train_padding") == "dynamic":
                from transformers import DataCollatorWithPadding

                self.collator = DataCollatorWithPadding(tok)
            cols = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in self.eval_ds.column_names]
            self.eval_arrays = {c: np.asarray(self.eval_ds[c], dtype=np.int64) for c in cols}
            self.labels = np.asarray(self.eval_ds["labels"])
            self.calibration = [{c: self.train_ds[i][c] for c in cols} for i in range(min(256, len(self.train_ds)))]
            self.distill_train_ds, self.augment_counts = self.train_ds, None

    def __repr__(self):
        aug = f" (distillation set {len(self.distill_train_ds)}: {self.augment_counts})" \
            if self.distill_train_ds is not self.train_ds else ""
        return f"train {len(self.train_ds)}{aug} eval {len(self.eval_ds)} ({self.task})"

    # ---- evaluation of any runner: feed dict of int64 [b, s] -> model output with logits / start+end logits
    def score(self, run: Callable[[dict[str, np.ndarray]], Any], desc: str, batch_size: int = 32,
              progress: bool = True) -> dict[str, float]:
        from tqdm.auto import tqdm

        arr = self.eval_arrays
        n = len(arr["input_ids"])
        outs = []
        for i in tqdm(range(0, n, batch_size), desc=desc, unit="batch", disable=not progress):
            mask = arr["attention_mask"][i:i + batch_size]
            s = max(1, int(mask.sum(1).max()))  # right padding: trim to the longest real sequence
            feed = {k: np.ascontiguousarray(v[i:i + batch_size, :s]) for k, v in arr.items()}
            o = run(feed)
            if self.task == "question-answering":
                st = np.full((len(mask), arr["input_ids"].shape[1]), -1e4, np.float32)
                en = st.copy()
                st[:, :s], en[:, :s] = np.asarray(o.start_logits), np.asarray(o.end_logits)
                outs.append((st, en))
            else:
                outs.append(np.asarray(o.logits))
        if self.task == "question-answering":
            from hf_fast.training import qa_data
            from hf_fast.training.metrics import squad_metric

            st = np.concatenate([a for a, _ in outs])
            en = np.concatenate([b for _, b in outs])
            preds = qa_data.postprocess_qa_predictions(self.eval_ex, self.eval_ds, st, en)
            return squad_metric(*qa_data.squad_predictions_and_references(self.eval_ex, preds))
        from hf_fast.training.metrics import accuracy

        return accuracy(np.concatenate(outs).argmax(-1).tolist(), self.labels.tolist())


def _torch_runner(model):
    import torch

    model.eval()
    names = set(__import__("inspect").signature(model.forward).parameters)

    def run(feed):
        with torch.no_grad():
            o = model(**{k: torch.from_numpy(v) for k, v in feed.items() if k in names})
        return type("O", (), {k: getattr(o, k).float().numpy() for k in ("logits", "start_logits", "end_logits")
                              if getattr(o, k, None) is not None})
    return run


# ------------------------------------------------------------------ the run
def run_recipe(recipe: str | Path, *, overrides: dict[str, Any] | None = None,
               base_dir: str | Path | None = None, teacher: str | None = None,
               max_steps: int | None = None, out: str | Path | None = None,
               train_limit: int | None = None, eval_limit: int | None = None, block: str | None = None,
               sparsity: float | None = None, no_distill_baseline: bool = False, skip_export: bool = False,
               backends: Sequence[str] = ("native", "onnxruntime"), measure_speed: bool = False,
               push_to_hub: str | None = None, token: str | None = None, progress: bool = True,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``recipe`` end to end and return the results (also written to results.json / report.md)."""
    from transformers import AutoTokenizer, Trainer

    from hf_fast.training.recipe import _merge, load_recipe
    from hf_fast.training.trainer import FastTrainer

    ov = _merge(recipe_overrides(max_steps, out, train_limit, eval_limit, block, sparsity), overrides or {})
    r = load_recipe(recipe, overrides=ov, base_dir=base_dir)
    if r.task == "feature-extraction":  # label-free sentence-embedding distillation: its own flow and scores
        from hf_fast.training.run_embed import run_embed_recipe

        if no_distill_baseline or push_to_hub or measure_speed:
            raise ValueError("feature-extraction recipes take no --no-distill-baseline, --push-to-hub or "
                             "--measure-speed (push the folder with `hf-fast push`, time it with benchmarks)")
        return run_embed_recipe(r, teacher=teacher, skip_export=skip_export, progress=progress, log=log)
    from transformers.trainer_utils import IntervalStrategy

    for targs in (r.training_args, r.teacher_training_args):
        if targs is not None:  # evaluation is done here, on every runtime, with the task's own metric
            targs.eval_strategy = IntervalStrategy.NO
            targs.load_best_model_at_end = False
    task = "question-answering" if r.task == "question-answering" else "text-classification"
    if r.task == "token-classification":
        raise NotImplementedError("token-classification recipes have no data reader yet")
    root = Path(r.training_args.output_dir).parent
    root.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    tok = AutoTokenizer.from_pretrained(r.student)
    data = _Data(r, tok, eval_limit)
    log(f"[data] {data}")
    auto = _auto(task)
    head_kw = {} if task == "question-answering" else {"num_labels": int(r.model.get("num_labels", 2))}
    results: dict[str, Any] = {"recipe": r.name, "task": task, "root": str(root), "data": dict(r.data),
                               "fast_config": r.fast_config.to_dict(), "runs": {}}
    metric = "f1" if task == "question-answering" else "accuracy"

    # 1. teacher: given, named by the recipe, or the student checkpoint fine-tuned densely first
    t0 = time.time()
    tdir = teacher or r.teacher
    if tdir:
        teacher_model = auto.from_pretrained(tdir)
        log(f"[teacher] {tdir}")
    else:
        targs = r.teacher_training_args or r.training_args
        teacher_model = auto.from_pretrained(r.student, **head_kw)
        log(f"[teacher] fine-tuning {r.student} densely ({targs.output_dir})")
        tr = Trainer(model=teacher_model, args=targs, train_dataset=data.train_ds, data_collator=data.collator,
                     processing_class=tok)
        tr.train()
        tdir = str(Path(targs.output_dir) / "final")
        tr.save_model(tdir)
        tok.save_pretrained(tdir)
    ev = data.score(_torch_runner(teacher_model), "eval teacher", progress=progress)
    results["runs"]["teacher_dense"] = {**ev, "dir": tdir, "time_s": round(time.time() - t0, 1)}
    log(f"[teacher] {metric} {ev[metric]:.4f}")

    # 2. students: pruned + distilled (and optionally pruned without distillation)
    variants = [("student_distilled", True)] + ([("student_no_distill", False)] if no_distill_baseline else [])
    for name, distil in variants:
        t1 = time.time()
        # fine-tuned from the student checkpoint -> the student starts as a copy of it (the paper's set-up for
        # MiniLM); a separate teacher (e.g. BERT-base for DistilBERT) -> the recipe's student checkpoint
        init = tdir if not (teacher or r.teacher) else r.student
        student = auto.from_pretrained(init, **({} if init == tdir else head_kw))
        args = r.training_args
        args.output_dir = str(root / name)
        ft = FastTrainer(model=student, teacher=teacher_model if distil else None, args=args,
                         fast_config=r.fast_config, train_dataset=data.distill_train_ds if distil else data.train_ds,
                         data_collator=data.collator,
                         processing_class=tok)
        ft.train()
        ev = data.score(_torch_runner(student), f"eval {name}", progress=progress)
        rep = ft.pruning_callback.sparsity_report()
        run = {**ev, "block": ft.pruning_callback.block, "sparsity": round(float(rep["sparsity"]), 4),
               "steps": ft.state.global_step, "time_s": round(time.time() - t1, 1)}
        if "latency_predicted_ms" in rep:  # scope="latency": the engine time the cost curves predict, and its target
            run.update(latency_target_ms=rep["latency_target_ms"], latency_predicted_ms=rep["latency_predicted_ms"])
        results["runs"][name] = run
        log(f"[{name}] fp32 {metric} {ev[metric]:.4f} sparsity {run['sparsity']:.3f} block {run['block']}"
            + (f" predicted engine latency {run['latency_predicted_ms']:.3f} ms (target {run['latency_target_ms']:.3f})"
               if "latency_predicted_ms" in run else ""))
        if skip_export:
            continue
        # 3. one folder for every runtime, calibrated on the train set
        folder = student.save_fast(root / f"{name}_fast", data.calibration, progress=progress,
                                   max_length=int(r.data.get("max_length", 128)),
                                   metrics={f"fp32_{k}": v for k, v in ev.items()})
        run["folder"] = str(folder)
        from hf_fast.runtime.modeling import load_fast_model

        for be in backends:
            fm = load_fast_model(folder, backend=be)
            e8 = data.score(lambda f, fm=fm: fm(**f), f"eval {name} int8 {be}", progress=progress)
            for k, v in e8.items():
                run[f"int8_{be}_{k}"] = v
            log(f"[{name}] int8 {be} {metric} {e8[metric]:.4f}")
        speed = None
        if measure_speed:
            from hf_fast.bench import quick_speed

            speed = quick_speed(folder, sequence_length=int(r.data.get("max_length", 128)))
            if speed["stable"]:  # rounds that disagreed (a busy machine) give no figure, here or on the card
                run["latency_ms"] = speed["latency_ms"]
            else:
                log(f"[{name}] speed not reported: the timing rounds varied by {100 * speed['spread']:.0f}%")
        from hf_fast.hub import write_model_card

        # each figure once: the fp32 scores under the fp32_ names save_fast recorded them with, and no "sparsity"
        # (the card has it as sparsity_reached, from the same masks)
        card_metrics = {(f"fp32_{k}" if k in ev else k): v for k, v in run.items()
                        if isinstance(v, (int, float)) and k not in ("steps", "time_s", "sparsity")}
        write_model_card(folder, metrics=card_metrics, speed=speed)
    results["time_s"] = round(time.time() - t_all, 1)

    # 4. report
    from hf_fast._atomic import write_text

    write_text(root / "results.json", json.dumps(results, indent=2, default=str))
    report = format_report(results, metric, backends)
    write_text(root / "report.md", report)
    log(report)
    if push_to_hub and not skip_export:
        from hf_fast.hub import push_fast_folder

        info = push_fast_folder(results["runs"]["student_distilled"]["folder"], push_to_hub, token=token)
        results["hub_commit"] = getattr(info, "commit_url", str(info))
        log(f"[hub] {results['hub_commit']}")
    return results


def format_report(results: dict[str, Any], metric: str, backends: Sequence[str] = ("native", "onnxruntime")) -> str:
    nan = float("nan")
    head = f"| run | fp32 {metric} | " + " | ".join(f"int8 {b} {metric}" for b in backends) + \
           " | sparsity | block | latency native / onnxruntime (ms) |"
    lines = [f"# {results['recipe']} ({results['task']})", "", head, "|" + "---|" * (5 + len(backends))]
    for k, v in results["runs"].items():
        lat = v.get("latency_ms") or {}
        lat_s = f"{lat.get('native', nan):.2f} / {lat.get('onnxruntime', nan):.2f}" if lat else "-"
        cells = " | ".join(f"{v.get(f'int8_{b}_{metric}', nan):.4f}" for b in backends)
        lines.append(f"| {k} | {v.get(metric, nan):.4f} | {cells} | {v.get('sparsity', 0.0):.3f} | "
                     f"{v.get('block', 'dense')} | {lat_s} |")
    return "\n".join(lines) + "\n"
