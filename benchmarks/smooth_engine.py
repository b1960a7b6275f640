"""The native engine on a SmoothQuant artifact: agreement with ONNX Runtime (same file) and PyTorch fp32, and the
engine's latency on the smoothed vs the unsmoothed artifact of the same model and calibration.

Exports MODEL twice into OUT (smooth_<alpha>/ and plain/, 256 training sentences spread over the training file
as calibration, max_length 64), evaluates the 2,000 rt-polarity eval sentences (padding "max_length" 64) and times
the engine at 1 thread (median of --runs calls) for batch 1 x seq 64 and batch 8 x seq 64.

Run: python benchmarks/smooth_engine.py --model benchmarks/out/rt_full/teacher/final --alpha 0.8 --out /tmp/smooth
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def calibration(train_texts, n=256):
    step = max(1, len(train_texts) // n)
    return [train_texts[i] for i in range(0, len(train_texts), step)][:n]


def logits_of(fn, feeds, batch=200):
    n = len(feeds["input_ids"])
    return np.concatenate([fn({k: v[i:i + batch] for k, v in feeds.items()}) for i in range(0, n, batch)])


def median_ms(fn, runs):
    for _ in range(3):
        fn()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1e3 * float(np.median(ts))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--alpha", type=float, default=0.8)
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--data", default=str(REPO.parent / "shared/data/rt-polarity"))
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_fast import native
    from hf_fast.export import export
    from hf_fast.runtime import load_fast_model
    from hf_fast.training.data import read_rt_polarity

    torch.set_num_threads(1)
    native.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model).eval()
    tr, ev = read_rt_polarity(args.data)
    enc = tok(ev["text"], truncation=True, max_length=64, padding="max_length", return_tensors="np")
    feeds = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        fp32 = logits_of(lambda f: model(**{k: torch.from_numpy(v) for k, v in f.items()}).logits.numpy(), feeds)
    calib = calibration(tr["text"])
    print(f"model {args.model}; {len(calib)} calibration sentences; {len(fp32)} eval sentences; "
          f"ISA {native.active_isa()}", flush=True)
    for name, alpha in ((f"smooth_{args.alpha}", args.alpha), ("plain", None)):
        art = Path(args.out) / name
        if not (art / "model.onnx").exists():
            export(model, tok, art, calibration_dataset=calib, progress=False, max_length=64, smooth_quant=alpha)
        eng = load_fast_model(art, backend="native", num_threads=1)
        ort = load_fast_model(art, backend="onnxruntime", num_threads=1)
        lg_e = logits_of(lambda f, eng=eng: eng(**f).logits, feeds)
        lg_o = logits_of(lambda f, ort=ort: ort(**f).logits, feeds)
        agree = lambda a, b: 100.0 * float((a.argmax(1) == b.argmax(1)).mean())  # noqa: E731
        print(f"{name:10s} engine vs ORT: agree {agree(lg_e, lg_o):.2f}% max|diff| {np.abs(lg_e - lg_o).max():.4f}; "
              f"engine vs fp32: agree {agree(lg_e, fp32):.2f}% max|diff| {np.abs(lg_e - fp32).max():.4f}; "
              f"ORT vs fp32: agree {agree(lg_o, fp32):.2f}% max|diff| {np.abs(lg_o - fp32).max():.4f}", flush=True)
        for b in (1, 8):
            f = {k: v[:b] for k, v in feeds.items()}
            ms = median_ms(lambda eng=eng, f=f: eng(**f), args.runs)
            print(f"{name:10s} engine latency b{b} s64, 1 thread: {ms:.3f} ms (median of {args.runs})", flush=True)


if __name__ == "__main__":
    main()
