"""bf16 attention (q k^T and p v on vdpbf16ps, fp32 softmax; the engine's attention="auto" on AVX512_BF16 CPUs)
against the fp32 attention, on the same default-export model.onnx, and both against ONNX Runtime on that file.

  speed   DistilBERT-base-shaped random weights pruned to --sparsity in 4x1 blocks (bench_engine.py's build), 1
          thread: engine attention="fp32" vs "bf16" vs ONNX Runtime int8 (the faster of the artifact itself and
          quantize_dynamic of its fp32 export), interleaved round by round, medians.
  rt      rt-polarity (2,000 eval sentences, train_rt_polarity.py's 256 calibration rows): argmax agreement of
          each engine attention with PyTorch fp32 and with ONNX Runtime on the same file.
  squad   a QA checkpoint (copied read-only; exported here with train_squad.py's 128 calibration features) over
          SQuAD v1.1 dev (all of it, or --eval-articles N): EM / F1 of engine fp32 / bf16 attention, ONNX Runtime
          (ORT_ENABLE_ALL) and ONNX Runtime ORT_DISABLE_ALL (the QDQ graph op by op), the paired per-question F1
          difference bf16 - fp32, same-answer rates of every pair, and for the questions where the engine and ONNX
          Runtime disagree: the answer-score margin (best span vs the best span with another text) under each
          runtime's own logits and the largest logit difference, to tell near-ties from errors.

    python benchmarks/attention_bf16.py speed --sparsity 0.8 [--attentions fp32 bf16 int8-dynamic]
    python benchmarks/attention_bf16.py kernel
    python benchmarks/attention_bf16.py rt demo=/path/to/checkpoint --out /tmp/bf16_rt
    python benchmarks/attention_bf16.py squad --teacher /path/to/teacher/final --out /tmp/bf16_squad [--eval-articles 3]
"""
from __future__ import annotations

import argparse
import collections
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


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- speed ----

def speed(a):
    import onnxruntime as ort
    from bench_engine import build_models, dynamic_int8, time_interleaved

    from hf_fast.runtime import load_fast_model

    res = {}
    built = {sp: a.workdir / f"distilbert_s{int(sp * 100)}" for sp in a.sparsity}
    if a.reuse and all((d / "model.onnx").exists() and (d / "model_fp32.onnx").exists() for d in built.values()):
        models = {(sp, False): (None, d) for sp, d in built.items()}  # an earlier run's export of the same build
    else:
        models = build_models(a.sparsity, a.workdir, calib=32)
    for (sp, _), (_, art) in models.items():
        eng = {att: load_fast_model(art, backend="native", num_threads=1, attention=att) for att in a.attentions}
        for att, m in eng.items():
            assert m.backend.engine.attention == att, f"this CPU does not run attention={att!r}"
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = {"ort-static": ort.InferenceSession(str(art / "model.onnx"), so, providers=["CPUExecutionProvider"]),
                "ort-dynamic": ort.InferenceSession(str(dynamic_int8(art / "model_fp32.onnx")), so,
                                                    providers=["CPUExecutionProvider"])}
        for shape in a.shapes:
            b, s = map(int, shape.split("x"))
            rng = np.random.default_rng(0)
            feed = {"input_ids": rng.integers(1000, 30000, (b, s)).astype(np.int64),
                    "attention_mask": np.ones((b, s), np.int64)}
            fns = {f"engine-{att}": (lambda m=m, f=feed: m.backend.run(f["input_ids"], f["attention_mask"]))
                   for att, m in eng.items()}
            for name, se in sess.items():
                names = {i.name for i in se.get_inputs()}
                sub = {k: v for k, v in feed.items() if k in names}
                fns[name] = lambda se=se, f=sub: se.run(None, f)
            wall, cpu = time_interleaved(fns, a.budget)
            ort_best = min(wall["ort-static"], wall["ort-dynamic"])
            row = {k: 1e3 * v for k, v in wall.items()}
            ort_cpu = min(cpu["ort-static"], cpu["ort-dynamic"])
            row.update({f"engine-{att}_vs_ort": ort_best / wall[f"engine-{att}"] for att in a.attentions},
                       cpu_ms={k: 1e3 * v for k, v in cpu.items()})
            row.update({f"engine-{att}_vs_ort_cpu": ort_cpu / cpu[f"engine-{att}"] for att in a.attentions})
            res[f"s{int(sp * 100)} {shape}"] = row
            log(f"{sp:.0%} {shape}: " + ", ".join(f"{k} {v * 1e3:.2f} ms ({cpu[k] * 1e3:.2f} CPU ms)"
                                                  for k, v in wall.items()))
    names = [f"engine-{att}" for att in a.attentions]
    print("\n| sparsity, shape | " + " | ".join(f"{n} ms (CPU ms)" for n in names) + " | ORT static ms (CPU) | "
          "ORT dynamic ms (CPU) | " + " | ".join(f"{n} vs ORT wall (CPU)" for n in names) + " |\n"
          + "|---" * (3 + 2 * len(names)) + "|")
    for k, r in res.items():
        c = r["cpu_ms"]
        print(f"| {k} | " + " | ".join(f"{r[n]:.2f} ({c[n]:.2f})" for n in names)
              + f" | {r['ort-static']:.2f} ({c['ort-static']:.2f}) | {r['ort-dynamic']:.2f} ({c['ort-dynamic']:.2f}) | "
              + " | ".join(f"{r[n + '_vs_ort']:.2f}x ({r[n + '_vs_ort_cpu']:.2f}x)" for n in names) + " |")
    return res


# ---- the attention kernels alone ----

def kernel(a):
    """hf_fast.native.attention / attention_bf16 / attention_dq8 on random q, k, v (12 heads), 1 thread, interleaved
    rounds, medians of per-thread CPU time and wall time"""
    from hf_fast import native

    native.set_num_threads(1)
    fns = {"fp32": native.attention, "bf16": native.attention_bf16, "int8-dynamic": native.attention_dq8}
    res = {}
    for shape in a.shapes:
        s, d = map(int, shape.split("x"))
        rng = np.random.default_rng(0)
        q, k, v = (rng.standard_normal((s, 12 * d)).astype(np.float32) for _ in range(3))
        cpu, wall = collections.defaultdict(list), collections.defaultdict(list)
        for _ in range(a.rounds):
            for name, f in fns.items():
                t0, c0 = time.perf_counter(), time.thread_time()
                f(q, k, v, 12)
                cpu[name].append(time.thread_time() - c0)
                wall[name].append(time.perf_counter() - t0)
        res[f"S{s} d{d}"] = {n: {"cpu_ms": 1e3 * float(np.median(cpu[n])), "wall_ms": 1e3 * float(np.median(wall[n]))}
                             for n in fns}
    print("\n| S, d (12 heads) | " + " | ".join(f"{n} CPU ms (wall)" for n in fns) + " | bf16 / fp32 | int8-dynamic / "
          "fp32 (CPU) |\n" + "|---" * (len(fns) + 3) + "|")
    for k, r in res.items():
        f = r["fp32"]["cpu_ms"]
        print(f"| {k} | " + " | ".join(f"{r[n]['cpu_ms']:.3f} ({r[n]['wall_ms']:.3f})" for n in fns)
              + f" | {f / r['bf16']['cpu_ms']:.2f}x | {f / r['int8-dynamic']['cpu_ms']:.2f}x |")
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
            ref = batched_logits(model, {c: torch.from_numpy(v) for c, v in ev.items()})
        art = a.out / f"{name}_int8"
        export(model, tok, art, calibration_dataset=calibration_rows(train_ds, cols), progress=False,
               max_length=r.data.get("max_length", 128))
        lg = {att: batched_logits(load_fast_model(art, backend="native", num_threads=a.threads, attention=att), ev)
              for att in a.attentions}
        lg["ort"] = batched_logits(load_fast_model(art, backend="onnxruntime", num_threads=a.threads), ev)
        am = {k: v.argmax(-1) for k, v in lg.items()}
        e = {"sentences": len(labels), "fp32_accuracy": float((ref.argmax(-1) == labels).mean())}
        for k in lg:
            e[k] = {"accuracy": float((am[k] == labels).mean()),
                    "agreement_with_torch_fp32": float((am[k] == ref.argmax(-1)).mean()),
                    "agreement_with_ort": float((am[k] == am["ort"]).mean()),
                    "max_logit_diff_vs_ort": float(np.abs(lg[k] - lg["ort"]).max())}
        b0 = a.attentions[0]
        for att in a.attentions[1:]:
            e[f"{att}_vs_{b0}_attention_max_logit_diff"] = float(np.abs(lg[att] - lg[b0]).max())
        res[name] = e
        print(f"\n{name} ({len(labels)} sentences, PyTorch fp32 accuracy {e['fp32_accuracy'] * 100:.2f}%)\n"
              "| runtime | accuracy | argmax = PyTorch fp32 | argmax = ORT | max logit diff vs ORT |\n"
              "|---|---|---|---|---|")
        for k in (*a.attentions, "ort"):
            x = e[k]
            print(f"| {'engine ' + k + ' attention' if k != 'ort' else 'ONNX Runtime'} | {x['accuracy'] * 100:.2f}% | "
                  f"{x['agreement_with_torch_fp32'] * 100:.2f}% | {x['agreement_with_ort'] * 100:.2f}% | "
                  f"{x['max_logit_diff_vs_ort']:.4f} |")
    return res


# ---- SQuAD ----

def answer_margins(examples, features, start, end, n_best=20, max_answer_length=30):
    """{example id: (best text, best score, margin over the best span with a different text)}: the selection of
    qa_data.postprocess_qa_predictions, keeping the runner-up."""
    from hf_fast.training.qa_data import _offsets, _rows

    offsets = _offsets(features)
    by_ex = collections.defaultdict(list)
    for i, eid in enumerate(features["example_id"]):
        by_ex[eid].append(i)
    out = {}
    for ex in _rows(examples):
        best = {}  # text -> best score
        for fi in by_ex.get(ex["id"], []):
            sl, el, offs = start[fi], end[fi], offsets[fi]
            n = min(len(offs), sl.shape[0])
            for s in np.argsort(-sl[:n], kind="stable")[:n_best]:
                if offs[s] is None:
                    continue
                for e in np.argsort(-el[:n], kind="stable")[:n_best]:
                    if offs[e] is None or e < s or e - s + 1 > max_answer_length:
                        continue
                    t = ex["context"][offs[s][0]: offs[e][1]]
                    sc = float(sl[s]) + float(el[e])
                    if sc > best.get(t, -np.inf):
                        best[t] = sc
        ranked = sorted(best.items(), key=lambda kv: -kv[1])
        if not ranked:
            out[ex["id"]] = ("", -np.inf, np.inf)
        else:
            out[ex["id"]] = (ranked[0][0], ranked[0][1], ranked[0][1] - ranked[1][1] if len(ranked) > 1 else np.inf)
    return out


def squad(a):
    import shutil

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

    r = load_recipe(str(REPO / "recipes" / "minilm_squad_part.yaml"), base_dir=REPO)
    a.out.mkdir(parents=True, exist_ok=True)
    ckpt = a.out / "teacher_copy"
    if not ckpt.exists():  # the stored teacher is read, never written
        shutil.copytree(a.teacher, ckpt, ignore=shutil.ignore_patterns("training_args.bin"))
    tok = AutoTokenizer.from_pretrained(ckpt)
    _, train_ds, ev_ex, eval_ds = squad_datasets(r.data, tok, eval_articles=a.eval_articles, pad_train=False)
    arr = feature_arrays(eval_ds)
    log(f"eval {len(ev_ex)} questions -> {len(eval_ds)} features")
    art = a.out / "teacher_int8"
    if not (art / "model.onnx").exists():
        cols = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in train_ds.column_names]
        idx = np.random.default_rng(0).choice(len(train_ds), size=min(128, len(train_ds)), replace=False)
        model = AutoModelForQuestionAnswering.from_pretrained(ckpt).eval()
        export(model, tok, art, calibration_dataset=[{c: train_ds[int(i)][c] for c in cols} for i in idx],
               task="question-answering", progress=False, max_length=int(r.data.get("max_length", 384)))
    runs = {f"engine_{att}": ("native", {"attention": att}) for att in a.attentions}
    runs.update({"ort": ("onnxruntime", {}),
            "ort_exact": ("onnxruntime", {"graph_optimization_level": "ORT_DISABLE_ALL"})})
    if a.ref_isa:
        runs["engine_fp32_avx2"] = ("native", {"attention": "fp32", "isa": "avx2"})
    if a.skip_ort_exact:
        del runs["ort_exact"]
    logits, preds, per_q, metrics, secs = {}, {}, {}, {}, {}
    for key, (backend, opts) in runs.items():
        fm = FastModelForQuestionAnswering.from_pretrained(art, backend=backend, num_threads=a.threads, **opts)
        if backend == "native":
            assert fm.backend.engine.attention == opts["attention"], key

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
    base = f"engine_{a.attentions[0]}"
    res = {"questions": len(ev_ex), "features": len(eval_ds), "eval_articles": a.eval_articles, "metrics": metrics,
           "eval_s": secs, "same_answers": {}, "max_logit_diff": {}}
    paired = {}
    for att in a.attentions[1:]:
        m, se = paired_difference(per_q[f"engine_{att}"], per_q[base])
        paired[att] = res[f"f1_{att}_minus_{a.attentions[0]}_paired"] = [100 * m, 100 * se]
    keys = list(runs)
    for i, x in enumerate(keys):
        for y in keys[i + 1:]:
            res["same_answers"][f"{x} vs {y}"] = 100 * answer_agreement(preds[x], preds[y])
            res["max_logit_diff"][f"{x} vs {y}"] = max_logit_diff(logits[x], logits[y], arr["attention_mask"])
    # the disagreements of engine (each attention) and ONNX Runtime: near-ties or errors?
    mg = {k: answer_margins(ev_ex, eval_ds, *logits[k]) for k in runs if k != "engine_fp32_avx2"}
    feats = collections.defaultdict(list)
    for i, eid in enumerate(eval_ds["example_id"]):
        feats[eid].append(i)
    mask = arr["attention_mask"].astype(bool)
    diag = {}
    for eng in (f"engine_{att}" for att in a.attentions):
        for o in [k for k in ("ort", "ort_exact") if k in runs]:
            rows = []
            for eid, fi in feats.items():
                if preds[eng][eid] == preds[o][eid]:
                    continue
                d = max(float(np.abs(logits[eng][j][fi][mask[fi]] - logits[o][j][fi][mask[fi]]).max()) for j in (0, 1))
                # the score gap of the two answers under ORT's logits: ORT's best minus the engine's answer's score
                rows.append({"id": eid, "ort_margin": mg[o][eid][2], "engine_margin": mg[eng][eid][2],
                             "max_logit_diff": d})
            if rows:
                om = np.array([x["ort_margin"] for x in rows])
                ld = np.array([x["max_logit_diff"] for x in rows])
                diag[f"{eng} vs {o}"] = {
                    "disagreements": len(rows), "median_ort_margin": float(np.median(om)),
                    "share_margin_below_2x_logit_diff": float(np.mean(om <= 2 * ld)),
                    "median_max_logit_diff": float(np.median(ld))}
    allm = np.array([v[2] for v in mg["ort"].values() if np.isfinite(v[2])])
    res["disagreement_diagnosis"] = diag
    res["all_questions_median_ort_margin"] = float(np.median(allm))
    res["share_questions_ort_margin_below_0.1"] = float(np.mean(allm < 0.1))
    print(f"\nSQuAD v1.1 dev, {len(ev_ex)} questions ({len(eval_ds)} features), {a.threads} thread(s)\n"
          "| runtime | EM | F1 | s |\n|---|---|---|---|")
    for k in keys:
        print(f"| {k} | {metrics[k]['exact_match']:.2f} | {metrics[k]['f1']:.2f} | {secs[k]:.0f} |")
    for att, (m, se) in paired.items():
        print(f"\nF1 {att} - {a.attentions[0]} attention (paired): {m:+.3f} +- {se:.3f}")
    print("\n| pair | same answers | max logit diff |\n|---|---|---|")
    for k, v in res["same_answers"].items():
        print(f"| {k} | {v:.2f}% | {res['max_logit_diff'][k]:.4f} |")
    print("\n| disagreeing pair | questions | median ORT margin | margin <= 2x logit diff | median logit diff |\n"
          "|---|---|---|---|---|")
    for k, v in diag.items():
        print(f"| {k} | {v['disagreements']} | {v['median_ort_margin']:.4f} | "
              f"{v['share_margin_below_2x_logit_diff'] * 100:.1f}% | {v['median_max_logit_diff']:.4f} |")
    print(f"all questions: median ORT margin {res['all_questions_median_ort_margin']:.4f}, "
          f"{res['share_questions_ort_margin_below_0.1'] * 100:.2f}% below 0.1")
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("speed")
    p.add_argument("--sparsity", type=float, nargs="+", default=[0.8])
    p.add_argument("--shapes", nargs="+", default=["1x128", "8x128", "1x384"])
    p.add_argument("--budget", type=float, default=4.0)
    p.add_argument("--reuse", action="store_true", help="time the exports already in --workdir")
    p.add_argument("--attentions", nargs="+", default=["fp32", "bf16"], help="engine attention= values to time")
    p.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "out" / "engine_models")
    p = sub.add_parser("kernel")
    p.add_argument("--shapes", nargs="+", default=["128x64", "384x64", "384x32"], help="SxD")
    p.add_argument("--rounds", type=int, default=15)
    p = sub.add_parser("rt")
    p.add_argument("--attentions", nargs="+", default=["fp32", "bf16"],
                   help="engine attention= values; the first is the base of the paired figures")
    p.add_argument("models", nargs="+", help="NAME=DIR (fine-tuned rt-polarity checkpoints)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    p = sub.add_parser("squad")
    p.add_argument("--teacher", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--eval-articles", type=int, default=None, help="first N dev articles (default: all 10,570 "
                                                                   "questions)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ref-isa", action="store_true", help="also the engine on AVX2 kernels (fp32 attention)")
    p.add_argument("--skip-ort-exact", action="store_true", help="no ORT_DISABLE_ALL run (the slowest)")
    p.add_argument("--attentions", nargs="+", default=["fp32", "bf16"],
                   help="engine attention= values; the first is the base of the paired F1")
    for p in sub.choices.values():
        p.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    res = {"speed": speed, "kernel": kernel, "rt": rt, "squad": squad}[a.cmd](a)
    res = {"command": " ".join(["python"] + sys.argv), a.cmd: res}
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2, default=float))
    return res


if __name__ == "__main__":
    main()
