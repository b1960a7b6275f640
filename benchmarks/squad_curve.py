"""Table and plot of SQuAD runs (benchmarks/train_squad.py results.json files): F1 against sparsity and against the
share of training questions, each int8 engine student with its paired difference to its own teacher.

    python benchmarks/squad_curve.py benchmarks/out/squad17*/results.json --out benchmarks/squad_curve.png

Prints a markdown table (one row per run: data share, augmentation, sparsity, steps, teacher fp32 F1, fp32 F1 and
its paired difference to the teacher, int8 engine F1 and its paired difference, engine vs ONNX Runtime same answers)
and draws two panels: int8 engine F1 against overall sparsity (teacher rows at 0), and teacher / student fp32 F1
against the share of training questions (learning-curve runs score fp32 only: at 100% the int8 engine is within 0.1
F1 of fp32). Scores come from the files as they are; the fp32 paired difference is computed from the
per_question_f1.json written beside each results.json.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hf_fast.training.metrics import paired_difference


def rows(paths: list[Path]) -> list[dict]:
    out = []
    for p in paths:
        res = json.loads(p.read_text(encoding="utf-8"))
        runs = res.get("runs", {})
        teacher = runs.get("teacher_dense", {})
        share = (res.get("data") or {}).get("train_fraction") or 1.0
        aug = res.get("distillation_features") or {}
        aug_s = "+".join(k for k in aug if k != "original") or "none"
        pq_path = p.parent / "per_question_f1.json"
        pq = json.loads(pq_path.read_text(encoding="utf-8")) if pq_path.exists() else {}
        for name, r in runs.items():
            d = r.get("int8_native_f1_paired_vs_teacher_fp32")
            d32 = None
            if name != "teacher_dense" and f"{name}/fp32" in pq and "teacher_dense/fp32" in pq:
                m, se = paired_difference(pq[f"{name}/fp32"], pq["teacher_dense/fp32"])
                d32 = (100 * m, 100 * se)
            out.append({"file": str(p), "run": name, "share": float(share), "augment": aug_s if name != "teacher_dense"
                        else "-", "sparsity": float(r.get("sparsity_overall") or 0.0), "steps": r.get("steps"),
                        "teacher_f1": teacher.get("f1"), "fp32_f1": r.get("f1"), "int8_f1": r.get("int8_native_f1"),
                        "diff": d[0] if d else None, "se": d[1] if d else None,
                        "diff32": d32[0] if d32 else None, "se32": d32[1] if d32 else None,
                        "agree": r.get("engine_vs_ort_answer_agreement"), "eval_questions": res.get("eval_questions"),
                        "capped": "--max-layer-sparsity" in str(res.get("command", ""))})
    return out


def table(rs: list[dict]) -> str:
    def f(x, fmt):
        return "-" if x is None else format(x, fmt)

    def pm(m, se):
        return "-" if m is None else f"{m:+.2f} +- {se:.2f}"

    lines = ["| run | train share | augmentation | sparsity | steps | teacher fp32 F1 | fp32 F1 | "
             "fp32 - teacher fp32 (paired) | int8 engine F1 | int8 engine - teacher fp32 (paired) | "
             "engine vs ORT answers | eval questions |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rs:
        lines.append(f"| {r['run']} ({Path(r['file']).parent.name}) | {r['share']:.0%} | {r['augment']} | "
                     f"{r['sparsity']:.3f} | {f(r['steps'], 'd')} | {f(r['teacher_f1'], '.2f')} | "
                     f"{f(r['fp32_f1'], '.2f')} | {pm(r['diff32'], r['se32'])} | {f(r['int8_f1'], '.2f')} | "
                     f"{pm(r['diff'], r['se'])} | {f(r['agree'], '.2f') + ('%' if r['agree'] is not None else '')} | "
                     f"{f(r['eval_questions'], 'd')} |")
    return "\n".join(lines)


def largest_eval_set(rs: list[dict]) -> tuple[list[dict], int]:
    """The rows scored on the largest evaluation set the files hold, and its size: F1 on 696 questions and on 10,570
    do not compare, so a plot shows one set."""
    n = max((r["eval_questions"] or 0) for r in rs)
    return [r for r in rs if (r["eval_questions"] or 0) == n], n


def learning_curve(rs: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """{"teacher_dense" | "student_distilled": (shares, fp32 F1)} on the largest evaluation set: the plain recipe's 80%
    students (no augmentation, no per-layer cap) and their teachers, fp32 (those runs skip int8 scoring); runs that
    repeat a point (the queue's shared teacher) are averaged, never the best one taken."""
    rs, _ = largest_eval_set(rs)
    lc = [r for r in rs if r["fp32_f1"] is not None and r["augment"] in ("none", "-") and not r["capped"]
          and (r["run"] == "teacher_dense" or abs(r["sparsity"] - 0.8) < 0.02)]
    out = {}
    for kind in ("teacher_dense", "student_distilled"):
        xs = sorted({r["share"] for r in lc if r["run"] == kind})
        out[kind] = (xs, [float(np.mean([r["fp32_f1"] for r in lc if r["run"] == kind and r["share"] == x]))
                          for x in xs])
    return out


def plot(rs: list[dict], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.4))
    rs, n_eval = largest_eval_set(rs)
    pts = [r for r in rs if r["int8_f1"] is not None]
    for r in pts:
        err = r["se"] if r["run"] != "teacher_dense" else None
        a.errorbar(r["sparsity"], r["int8_f1"], yerr=err, fmt="o" if r["run"] == "teacher_dense" else "s",
                   color="#37c" if r["run"] == "teacher_dense" else "#c63", capsize=3)
        label = "teacher" if r["run"] == "teacher_dense" else Path(r["file"]).parent.name.replace("squad17_", "")
        a.annotate(label, (r["sparsity"], r["int8_f1"]), fontsize=6,
                   xytext=(3, 3), textcoords="offset points")
    a.set_xlabel("overall block sparsity of the encoder Linears")
    a.set_ylabel("SQuAD F1, int8 in the engine")
    a.set_title(f"F1 against sparsity, {n_eval:,} dev questions (error bar: paired SE vs the teacher)", fontsize=9)
    for kind, color in (("teacher_dense", "#37c"), ("student_distilled", "#c63")):
        xs, ys = learning_curve(rs)[kind]
        b.plot([100 * x for x in xs], ys, "o-", color=color, label=kind.replace("_", " ").replace("distilled",
                                                                                               "distilled, 80%"))
    b.set_xlabel("% of the stored training questions")
    b.set_ylabel("SQuAD F1, fp32")
    b.set_title(f"learning curve, 80% student ({n_eval:,} dev questions)", fontsize=9)
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", type=Path, help="train_squad.py results.json files")
    ap.add_argument("--out", type=Path, default=None, help="write the plot here (PNG)")
    a = ap.parse_args(argv)
    rs = rows(a.results)
    print(table(rs))
    if a.out:
        print(f"plot: {plot(rs, a.out)}")
    return rs


if __name__ == "__main__":
    main()
