"""What does pruning in 4x4 tiles cost in accuracy, and what does it buy in the engine, against the paper's 4x1 blocks?

The 4x1 VNNI kernel interleaves each record's 4 activation rows in its inner loop (8 byte/word unpacks per 16
vpdpbusd). On Intel cores those unpacks share port 5 with half the vpdpbusd, which bounds the loop near 2/3 of the VNNI
peak (benchmarks/record_loop_harness.c). A weight pruned in 4x4 tiles (4 outputs x 4 consecutive inputs, or any shape
made of them) has its kept channels in aligned quads, and the kernel then reads them pre-interleaved, once per token
tile: no unpack in the loop. This benchmark measures both sides on trained students, per seed:

  1. the dense rt-polarity MiniLM-L6 teacher (--teacher, e.g. one of latency_vs_scope.py's), shared by every student
  2. for each --blocks shape, a student pruned to --sparsity with the default FastConfig allocation (global, movement
     scores, cubic schedule) while distilling (T=2, alpha 0.9, hidden-state MSE 1.0): the same initial weights, data
     order, steps and learning-rate schedule for every shape; int8 export (the default export; the engine packs every
     shape as 4x1 and finds the quads itself)
  3. accuracy per sentence on the 2,000 held-out sentences, int8 in the engine and fp32 in PyTorch
  4. every student's engine timed in one interleaved run at --shape (process CPU time, 1 thread)
  5. an exact McNemar test of each shape against the first, per seed and stratified over the seeds (discordant counts
     summed; each seed is a stratum of the same sentences)

Every stage is resumable (<out>/s<seed>_<block>/final and <out>/results.json are reused).

    python benchmarks/block_shape_accuracy.py --teacher benchmarks/out/lvs17_s42/teacher/final --seeds 42 43 44 \
        --out benchmarks/out/block_shape
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def stratified_mcnemar(pairs: list[tuple[list[int], list[int]]]) -> dict:
    """Exact McNemar over strata: (a_right, b_right) per stratum, discordant counts summed, two-sided binomial."""
    from scipy.stats import binomtest

    b = c = 0
    for a_right, b_right in pairs:
        b += sum(1 for x, y in zip(a_right, b_right, strict=True) if x and not y)
        c += sum(1 for x, y in zip(a_right, b_right, strict=True) if y and not x)
    return {"only_first_right": b, "only_second_right": c,
            "p_value": float(binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0}


def variant(v: str, default_sparsity: float) -> tuple[str, float]:
    """"4x4" -> ("4x4", default); "4x4:0.77" -> ("4x4", 0.77): a shape at its own sparsity (e.g. the one that runs as
    fast as the baseline)."""
    blk, _, sp = v.partition(":")
    return blk, float(sp) if sp else default_sparsity


def run_name(seed: int, v: str) -> str:
    blk, _, sp = v.partition(":")
    return f"s{seed}_{blk}" + (f"_s{sp}" if sp else "")


def summarize(res: dict, blocks: list[str], seeds: list[int]) -> dict:
    """Per variant (block[:sparsity]): accuracy mean +- sd over seeds (int8 engine, fp32), median CPU ms, and McNemar
    against blocks[0]."""
    out = {}
    for blk in blocks:
        runs = [res["runs"][run_name(s, blk)] for s in seeds]
        row = {}
        for kind in ("int8_native", "fp32"):
            v = [r[f"{kind}_accuracy"] for r in runs]
            row[kind] = {"per_seed": v, "mean": statistics.fmean(v), "sd": statistics.stdev(v) if len(v) > 1 else 0.0}
        row["sparsity"] = [r["sparsity_reached"] for r in runs]
        if "timing" in res:
            row["cpu_ms"] = [res["timing"][run_name(s, blk)]["cpu_ms"] for s in seeds]
        if blk != blocks[0]:
            row["mcnemar_vs_first"] = {
                kind: stratified_mcnemar([(res["runs"][run_name(s, blk)][f"{kind}_right"],
                                           res["runs"][run_name(s, blocks[0])][f"{kind}_right"]) for s in seeds])
                for kind in ("int8_native", "fp32")}
        out[blk] = row
    return out


def markdown(summary: dict, blocks: list[str]) -> str:
    lines = ["| block | int8 engine accuracy, mean +- sd (per seed) | fp32 | engine CPU ms (per seed) | "
             f"vs {blocks[0]}: speed-up | McNemar vs {blocks[0]} (int8): only this right / only {blocks[0]} / p |",
             "|---|---|---|---|---|---|"]
    base = summary[blocks[0]]
    for blk in blocks:
        r = summary[blk]
        i8, f = r["int8_native"], r["fp32"]
        ms = r.get("cpu_ms")
        sp = ""
        if ms and base.get("cpu_ms"):
            sp = " / ".join(f"{b / m:.2f}x" for b, m in zip(base["cpu_ms"], ms, strict=True))
        mc = r.get("mcnemar_vs_first", {}).get("int8_native")
        seeds = ", ".join(f"{100 * v:.2f}" for v in i8["per_seed"])
        lines.append(
            f"| {blk} | {100 * i8['mean']:.2f} +- {100 * i8['sd']:.2f} ({seeds}) "
            f"| {100 * f['mean']:.2f} +- {100 * f['sd']:.2f} | {' / '.join(f'{m:.2f}' for m in ms) if ms else '-'} | "
            f"{sp or '-'} | " + (f"{mc['only_first_right']} / {mc['only_second_right']} / p = {mc['p_value']:.3g}"
                                 if mc else "-") + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", required=True, help="a fine-tuned rt-polarity MiniLM-L6 folder (the dense teacher)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "block_shape"))
    ap.add_argument("--blocks", nargs="+", default=["4x1", "4x4"],
                    help="block shapes, each optionally at its own sparsity (4x4:0.77); the first is the baseline")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    ap.add_argument("--sparsity", type=float, default=0.8)
    ap.add_argument("--steps", type=int, default=112)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--end-step", type=float, default=0.6, help="pruning window end (fraction of --steps)")
    ap.add_argument("--shape", default="1x128", help="BATCHxSEQ of the timing run")
    ap.add_argument("--seconds", type=float, default=60.0, help="interleaved timing run, seconds (0: no timing)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)

    import numpy as np
    import torch
    from latency_target import interleaved
    from train_rt_polarity import int8_scores, student_data
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainingArguments

    from hf_fast import _atomic, native
    from hf_fast.runtime import load_fast_model
    from hf_fast.training import FastConfig, FastTrainer

    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res_path = out / "results.json"
    res = json.loads(res_path.read_text()) if res_path.is_file() else {"runs": {}}
    tdir = Path(a.teacher)
    if not (tdir / "config.json").is_file():
        raise FileNotFoundError(f"--teacher {tdir}: no config.json there")
    res.update(teacher=str(tdir), blocks=a.blocks, seeds=a.seeds, sparsity=a.sparsity, steps=a.steps,
               batch_size=a.batch_size, threads=a.threads, isa=native.native_info().get("isa"))

    def save():
        _atomic.write_text(res_path, json.dumps(res, indent=2, default=str))

    tok = AutoTokenizer.from_pretrained(tdir)
    train_ds, collator, ev_np, labels, calib = student_data(tok)
    teacher = AutoModelForSequenceClassification.from_pretrained(tdir).eval()
    bsz, seq = (int(v) for v in a.shape.split("x"))

    for seed in a.seeds:
        for v in a.blocks:
            blk, sparsity = variant(v, a.sparsity)
            name = run_name(seed, v)
            final, art = out / name / "final", out / f"{name}_int8"
            if name not in res["runs"] or not (final / "config.json").is_file():
                t0 = time.time()
                torch.manual_seed(seed)
                student = AutoModelForSequenceClassification.from_pretrained(tdir)
                args = TrainingArguments(output_dir=str(out / name), max_steps=a.steps,
                                         per_device_train_batch_size=a.batch_size, learning_rate=1e-4,
                                         warmup_steps=int(0.05 * a.steps), weight_decay=0.01,
                                         lr_scheduler_type="linear", logging_steps=max(1, a.steps // 6),
                                         save_strategy="no", report_to="none", use_cpu=True, seed=seed,
                                         dataloader_num_workers=0, disable_tqdm=True)
                fc = FastConfig(scope="global", sparsity=sparsity, block=blk, score="movement", schedule="cubic",
                                end_step=a.end_step, distill={"temperature": 2.0, "alpha": 0.9, "hidden_weight": 1.0})
                FastTrainer(model=student, teacher=teacher, args=args, fast_config=fc, train_dataset=train_ds,
                            data_collator=collator).train()
                student.save_pretrained(final)
                tok.save_pretrained(final)
                res["runs"][name] = {"block": blk, "sparsity": sparsity, "seed": seed,
                                     "train_time_s": round(time.time() - t0, 1),
                                     "sparsity_reached": student.config.hf_fast["sparsity_reached"]}
                save()
            run = res["runs"][name]
            if "int8_native_right" not in run or not (art / "config.json").is_file():
                model = AutoModelForSequenceClassification.from_pretrained(final).eval()
                run.update(int8_scores(model, tok, art, ev_np, labels, calib, seq, a.threads))
                save()
            print(f"[{name}] sparsity {run['sparsity_reached']:.3f}: accuracy fp32 {run['fp32_accuracy']:.4f}, "
                  f"int8 engine {run['int8_native_accuracy']:.4f}", flush=True)

    if a.seconds > 0:
        rng = np.random.default_rng(0)
        ids = rng.integers(1000, teacher.config.vocab_size, size=(bsz, seq), dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        runners = {}
        for seed in a.seeds:
            for v in a.blocks:
                eng = load_fast_model(out / f"{run_name(seed, v)}_int8", backend="native", num_threads=a.threads)
                runners[run_name(seed, v)] = (lambda e=eng: e.run(**feeds))
        with native.num_threads(a.threads):
            res["timing"] = {"clock": "process CPU time (1 thread), median", "shape": a.shape,
                             "load_average": os.getloadavg(), **interleaved(runners, a.seconds, warm_calls=3)}
        save()
    summary = summarize(res, a.blocks, a.seeds)
    res["summary"] = summary
    save()
    print(markdown(summary, a.blocks))
    print(f"wrote {res_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
