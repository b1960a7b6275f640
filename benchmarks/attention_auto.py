"""quantize_attention="auto" (int8 attention only in the layers within the exporter's tolerance) against the default
export (fp32 attention) and the all-layers int8-attention export of the same weights.

  speed   DistilBERT-base-shaped random weights pruned to 80% in 4x1 blocks (bench_engine.py's build_models, 32
          calibration sentences; files in --workdir: distilbert_s80, _qa, _qauto), or --student DIR (a trained
          FastTrainer student, bench_engine.py's build_student), 1 thread: the engine on each file and ONNX Runtime
          int8 static on each file plus quantize_dynamic of the fp32 export, interleaved round by round; medians of
          wall and process CPU time. Prints each file's attention per layer.
  rt      rt-polarity (2,000 eval sentences, train_rt_polarity.py's 256 calibration rows): argmax agreement with
          PyTorch fp32 of the engine and ONNX Runtime on the default and the auto export.
  squad   a QA checkpoint (read, never written) over SQuAD v1.1 dev (all 10,570 questions, or --eval-articles N):
          exported twice with train_squad.py's 128 calibration features (default export; auto), EM / F1 of the
          engine on each and of ONNX Runtime on each, the paired per-question F1 difference auto - default (engine;
          ONNX Runtime), and engine vs ONNX Runtime same answers on each file.

    python benchmarks/attention_auto.py speed --workdir benchmarks/out/engine_models_h1
    python benchmarks/attention_auto.py rt demo=/path/to/checkpoint --out /tmp/auto_rt
    python benchmarks/attention_auto.py squad --model /work/notes/models/squad17_teacher_3ep_bf16 --out DIR
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

MODES = {"default": False, "int8": True, "auto": "auto"}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def attention_of(art: Path) -> str:
    q = json.loads((art / "fast_config.json").read_text())["quantization"]
    sel = q.get("attention_selection")
    if sel:
        return f"{sel['layers']} (errors {[round(e, 5) for e in sel['errors']]}, tolerance {sel['tolerance']:g})"
    return "int8 every layer" if q.get("quantize_attention") else "fp32 every layer"


# ---- speed ----

def speed(a):
    import onnxruntime as ort
    import torch
    from bench_engine import build_models, build_student, dynamic_int8, time_interleaved

    from hf_fast import native
    from hf_fast.runtime import load_fast_model

    torch.set_num_threads(1)
    native.set_num_threads(1)
    arts = {}
    for spec in a.artifacts or []:  # exported files (e.g. the squad command's int8_default / int8_auto_tol*)
        name, _, d = spec.partition("=")
        arts[name] = Path(d)
    for name, qa in ({} if a.artifacts else MODES).items():
        suffix = {"default": "", "int8": "_qa", "auto": "_qauto"}[name]
        if a.student:
            d = a.workdir / f"student_{a.student.parent.parent.name if a.student.name == 'final' else a.student.name}"
            d = Path(str(d) + suffix)
            if not (d / "model.onnx").exists():
                d = next(iter(build_student(a.student, a.workdir, 32, qa).values()))[1]
        else:
            d = a.workdir / f"distilbert_s80{suffix}"
            if not (d / "model.onnx").exists():
                d = build_models([0.8], a.workdir, 32, quantize_attention=qa)[(0.8, False)][1]
        arts[name] = d
        log(f"{name}: {d}, attention {attention_of(d)}")
    eng = {k: load_fast_model(d, backend="native", num_threads=1) for k, d in arts.items()}
    for k, m in eng.items():
        per = ["int8" if la.attn_quant is not None else "fp32" for la in m.backend.engine.plan.layers]
        log(f"{k}: engine attention per layer {per}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = {f"ort-{k}": ort.InferenceSession(str(d / "model.onnx"), so, providers=["CPUExecutionProvider"])
            for k, d in arts.items()}
    if (arts["default"] / "model_fp32.onnx").exists():
        sess["ort-dynamic"] = ort.InferenceSession(str(dynamic_int8(arts["default"] / "model_fp32.onnx")), so,
                                                   providers=["CPUExecutionProvider"])
    res = {"files": {k: str(d) for k, d in arts.items()}, "attention": {k: attention_of(d) for k, d in arts.items()},
           "loadavg_start": os.getloadavg(), "shapes": {}}
    for shape in a.shapes:
        b, s = map(int, shape.split("x"))
        rng = np.random.default_rng(0)
        feed = {"input_ids": rng.integers(1000, 30000, (b, s)).astype(np.int64),
                "attention_mask": np.ones((b, s), np.int64), "token_type_ids": np.zeros((b, s), np.int64)}
        fns = {f"engine-{k}": (lambda m=m, f=feed: m.backend.run(f["input_ids"], f["attention_mask"],
                                                                 f["token_type_ids"]))
               for k, m in eng.items()}
        for name, se in sess.items():
            names = {i.name for i in se.get_inputs()}
            sub = {k: v for k, v in feed.items() if k in names}
            fns[name] = lambda se=se, f=sub: se.run(None, f)
        wall, cpu = time_interleaved(fns, a.budget)
        row = {"wall_ms": {k: 1e3 * v for k, v in wall.items()}, "cpu_ms": {k: 1e3 * v for k, v in cpu.items()}}
        for t in ("wall", "cpu"):
            x = wall if t == "wall" else cpu
            for k in arts:
                best = min(x[f"ort-{k}"], x.get("ort-dynamic", np.inf))
                row[f"{k}_vs_best_ort_{t}"] = best / x[f"engine-{k}"]
                row[f"{k}_vs_ort_same_file_{t}"] = x[f"ort-{k}"] / x[f"engine-{k}"]
            row[f"auto_speedup_over_default_{t}"] = x["engine-default"] / x["engine-auto"]
        res["shapes"][shape] = row
        log(f"{shape}: " + ", ".join(f"{k} {v:.2f}" for k, v in row["cpu_ms"].items()) + " CPU ms")
    res["loadavg_end"] = os.getloadavg()
    print("\nCPU-time medians (wall in brackets), 1 thread; best ORT = faster of static on the same file and dynamic\n"
          "| shape | export | engine ms | ORT static same file ms | engine / ORT same file | engine / best ORT |\n"
          "|---|---|---|---|---|---|")
    for shape, r in res["shapes"].items():
        for k in arts:
            print(f"| {shape} | {k} | {r['cpu_ms'][f'engine-{k}']:.2f} ({r['wall_ms'][f'engine-{k}']:.2f}) | "
                  f"{r['cpu_ms'][f'ort-{k}']:.2f} ({r['wall_ms'][f'ort-{k}']:.2f}) | "
                  f"{r[f'{k}_vs_ort_same_file_cpu']:.2f}x ({r[f'{k}_vs_ort_same_file_wall']:.2f}x) | "
                  f"{r[f'{k}_vs_best_ort_cpu']:.2f}x ({r[f'{k}_vs_best_ort_wall']:.2f}x) |")
        dyn = (f"{r['cpu_ms']['ort-dynamic']:.2f} ({r['wall_ms']['ort-dynamic']:.2f})"
               if "ort-dynamic" in r["cpu_ms"] else "-")
        print(f"| {shape} | ORT dynamic | - | {dyn} | | auto / default engine: "
              f"{r['auto_speedup_over_default_cpu']:.3f}x CPU ({r['auto_speedup_over_default_wall']:.3f}x wall) |")
    return res


# ---- rt-polarity ----

def rt(a):
    import torch
    from train_rt_polarity import batched_logits, calibration_rows, held_out_set

    from hf_fast.export import export
    from hf_fast.runtime import load_fast_model

    res = {}
    for spec in a.models:
        name, _, mdir = spec.partition("=")
        r, tok, model, train_ds, cols, ev, labels = held_out_set(mdir, a.threads)
        with torch.no_grad():
            ref = batched_logits(model, {c: torch.from_numpy(v) for c, v in ev.items()}).argmax(-1)
        e = {"sentences": len(labels), "torch_fp32_accuracy": float((ref == labels).mean())}
        for mode in ("default", "auto"):
            art = a.out / f"{name}_{mode}"
            export(model, tok, art, calibration_dataset=calibration_rows(train_ds, cols), progress=False,
                   max_length=r.data.get("max_length", 128), quantize_attention=MODES[mode],
                   attention_tolerance=a.attention_tolerance if mode == "auto" else None)
            am = {b: batched_logits(load_fast_model(art, backend=b, num_threads=a.threads), ev).argmax(-1)
                  for b in ("native", "onnxruntime")}
            e[mode] = {"attention": attention_of(art), **{
                b: {"accuracy": float((x == labels).mean()), "agreement_with_torch_fp32": float((x == ref).mean())}
                for b, x in am.items()}, "engine_vs_ort": float((am["native"] == am["onnxruntime"]).mean())}
            log(f"{name} {mode}: {e[mode]}")
        res[name] = e
        print(f"\n{name} ({len(labels)} sentences, PyTorch fp32 accuracy {e['torch_fp32_accuracy'] * 100:.2f}%)\n"
              "| export | attention | engine acc | engine = PyTorch fp32 | ORT acc | ORT = PyTorch fp32 | "
              "engine = ORT |\n"
              "|---|---|---|---|---|---|---|")
        for mode in ("default", "auto"):
            x = e[mode]
            print(f"| {mode} | {x['attention']} | {x['native']['accuracy'] * 100:.2f}% | "
                  f"{x['native']['agreement_with_torch_fp32'] * 100:.2f}% | "
                  f"{x['onnxruntime']['accuracy'] * 100:.2f}% | "
                  f"{x['onnxruntime']['agreement_with_torch_fp32'] * 100:.2f}% | {x['engine_vs_ort'] * 100:.2f}% |")
    return res


# ---- SQuAD ----

def squad(a):
    import torch
    from train_squad import max_logit_diff, predict_logits
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from hf_fast.export import export
    from hf_fast.runtime import FastModelForQuestionAnswering
    from hf_fast.training.metrics import paired_difference, squad_metric, squad_scores
    from hf_fast.training.qa_data import (
        answer_agreement,
        feature_arrays,
        postprocess_qa_predictions,
        squad_datasets,
        squad_predictions_and_references,
    )
    from hf_fast.training.recipe import load_recipe

    torch.set_num_threads(a.threads)
    r = load_recipe(str(REPO / "recipes" / "minilm_squad_part.yaml"), base_dir=REPO)
    a.out.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(a.model)
    _, train_ds, ev_ex, eval_ds = squad_datasets(r.data, tok, eval_articles=a.eval_articles, pad_train=False)
    arr = feature_arrays(eval_ds)
    log(f"eval {len(ev_ex)} questions -> {len(eval_ds)} features")
    arts = {}
    model = None
    for mode in a.modes:
        art = a.out / (f"int8_{mode}" + (f"_tol{a.attention_tolerance:g}" if mode == "auto" and a.attention_tolerance
                                         else ""))
        if not (art / "model.onnx").exists():
            if model is None:
                model = AutoModelForQuestionAnswering.from_pretrained(a.model).eval()
            cols = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in train_ds.column_names]
            idx = np.random.default_rng(0).choice(len(train_ds), size=min(128, len(train_ds)), replace=False)
            export(model, tok, art, calibration_dataset=[{c: train_ds[int(i)][c] for c in cols} for i in idx],
                   task="question-answering", progress=False, max_length=int(r.data.get("max_length", 384)),
                   quantize_attention=MODES[mode],
                   attention_tolerance=a.attention_tolerance if mode == "auto" else None)
        arts[mode] = art
        log(f"{mode}: {art}, attention {attention_of(art)}")
    logits, preds, per_q, metrics, secs = {}, {}, {}, {}, {}
    if a.reference:  # per-question F1 of earlier runs (an earlier per_question_f1.json), e.g. the default export's
        per_q.update({k: v for k, v in json.loads(Path(a.reference).read_text()).items() if k.startswith("default/")})
    for mode, art in arts.items():
        for backend in a.backends:
            key = f"{mode}/{backend}"
            fm = FastModelForQuestionAnswering.from_pretrained(art, backend=backend, num_threads=a.threads)

            def run(feed, fm=fm):
                o = fm(**feed)
                return o.start_logits.numpy(), o.end_logits.numpy()

            st, en, secs[key] = predict_logits(run, arr, 32)
            logits[key] = (st, en)
            preds[key] = postprocess_qa_predictions(ev_ex, eval_ds, st, en, n_best=20, max_answer_length=30)
            pr = squad_predictions_and_references(ev_ex, preds[key])
            per_q[key] = {k: f for k, (_, f) in squad_scores(*pr).items()}
            metrics[key] = squad_metric(*pr)
            log(f"{key}: EM {metrics[key]['exact_match']:.2f} F1 {metrics[key]['f1']:.2f} ({secs[key]:.0f} s)")
            del fm
    (a.out / f"per_question_f1_{'_'.join(a.modes)}.json").write_text(json.dumps(per_q))
    res = {"model": str(a.model), "questions": len(ev_ex), "features": len(eval_ds), "eval_articles": a.eval_articles,
           "attention": {m: attention_of(d) for m, d in arts.items()}, "metrics": metrics, "eval_s": secs,
           "paired_f1_vs_default": {}, "same_answers": {}, "max_logit_diff": {}}
    for key in per_q:
        mode, backend = key.split("/")
        ref = f"default/{backend}"
        if mode != "default" and ref in per_q:
            m, se = paired_difference(per_q[key], per_q[ref])
            res["paired_f1_vs_default"][key] = [100 * m, 100 * se]
    for mode in arts:
        x, y = f"{mode}/native", f"{mode}/onnxruntime"
        if x in preds and y in preds:
            res["same_answers"][mode] = 100 * answer_agreement(preds[x], preds[y])
            res["max_logit_diff"][mode] = max_logit_diff(logits[x], logits[y], arr["attention_mask"])
    print(f"\nSQuAD v1.1 dev, {len(ev_ex)} questions ({len(eval_ds)} features), {a.model}, {a.threads} thread(s)\n"
          "| export / runtime | EM | F1 | F1 - default export's (paired, same runtime) | s |\n|---|---|---|---|---|")
    for k, v in metrics.items():
        p = res["paired_f1_vs_default"].get(k)
        print(f"| {k} | {v['exact_match']:.2f} | {v['f1']:.2f} | "
              f"{'-' if p is None else f'{p[0]:+.3f} +- {p[1]:.3f}'} | {secs[k]:.0f} |")
    print("\n| export | attention | engine vs ORT same answers | max logit diff |\n|---|---|---|---|")
    for mode, v in res["same_answers"].items():
        print(f"| {mode} | {res['attention'][mode]} | {v:.2f}% | {res['max_logit_diff'][mode]:.4f} |")
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("speed")
    p.add_argument("--shapes", nargs="+", default=["1x128", "8x128", "1x384"])
    p.add_argument("--budget", type=float, default=4.0)
    p.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "out" / "engine_models")
    p.add_argument("--student", type=Path, default=None, help="a trained student folder instead of DistilBERT")
    p.add_argument("--artifacts", nargs="+", default=None, metavar="NAME=DIR",
                   help="time these exported folders instead (names: default, auto, optionally int8)")
    p = sub.add_parser("rt")
    p.add_argument("models", nargs="+", help="NAME=DIR (fine-tuned rt-polarity checkpoints)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    p = sub.add_parser("squad")
    p.add_argument("--model", type=Path, required=True, help="QA checkpoint folder (read only)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--eval-articles", type=int, default=None, help="first N dev articles (default: all 10,570 "
                                                                   "questions)")
    p.add_argument("--modes", nargs="+", default=["default", "auto"], choices=list(MODES))
    p.add_argument("--backends", nargs="+", default=["native", "onnxruntime"], choices=["native", "onnxruntime"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reference", default=None, help="a per_question_f1 json of an earlier run: its default/* "
                                                     "entries pair with this run's (then --modes auto suffices)")
    for p in sub.choices.values():
        p.add_argument("--json", default=None)
        p.add_argument("--attention-tolerance", type=float, default=None,
                       help="the auto export's tolerance (default: the exporter's)")
    a = ap.parse_args(argv)
    res = {"speed": speed, "rt": rt, "squad": squad}[a.cmd](a)
    res = {"command": " ".join(["python"] + sys.argv), a.cmd: res}
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2, default=float))
    return res


if __name__ == "__main__":
    main()
