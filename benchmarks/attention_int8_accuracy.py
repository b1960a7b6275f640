"""Int8 attention on real models: what export(quantize_attention=True) costs in accuracy, and whether the engine
still gives ONNX Runtime's answers on such a file.

For each fine-tuned rt-polarity classifier (a Hugging Face checkpoint directory) the script exports two artifacts
from the same fp32 weights and the same 256 calibration sentences (those benchmarks/train_rt_polarity.py uses):
fp32 attention (the default) and int8 attention. It scores the 2,000 eval sentences with the fp32 model, with the
hf-fast engine and with ONNX Runtime on each file, and reports accuracy, the engine-vs-ONNX Runtime argmax
agreement and max logit difference on the same file, agreement with fp32, and the exact McNemar p-value of int8
attention against the default export (engine predictions, paired on the same sentences).

Run: python benchmarks/attention_int8_accuracy.py NAME=DIR [NAME=DIR ...] --out benchmarks/out/attn_q8_rt [--json F]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="NAME=DIR (fine-tuned checkpoints)")
    ap.add_argument("--out", type=Path, required=True, help="where the artifacts go")
    ap.add_argument("--recipe", default=str(REPO / "recipes" / "minilm_rt_polarity.yaml"), help="data settings")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)

    import torch
    from train_rt_polarity import batched_logits, calibration_rows  # the same calibration rows and batching
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_fast.export import export
    from hf_fast.runtime import load_fast_model
    from hf_fast.training.data import classification_datasets
    from hf_fast.training.metrics import mcnemar_exact
    from hf_fast.training.recipe import load_recipe

    torch.set_num_threads(a.threads)
    r = load_recipe(a.recipe, base_dir=REPO)
    res = {"recipe": r.name, "models": {}}
    rows = []
    for spec in a.models:
        name, _, mdir = spec.partition("=")
        if not mdir:
            raise SystemExit(f"expected NAME=DIR, got {spec!r}")
        tok = AutoTokenizer.from_pretrained(mdir)
        train_ds, eval_ds = classification_datasets(r.data, tok)
        cols = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in eval_ds.column_names]
        calib = calibration_rows(train_ds, cols)
        ev = {c: np.asarray(eval_ds[c], dtype=np.int64) for c in cols}
        labels = np.asarray(eval_ds["labels"])
        model = AutoModelForSequenceClassification.from_pretrained(mdir).eval()
        with torch.no_grad():
            ref = batched_logits(model, {c: torch.from_numpy(v) for c, v in ev.items()})
        entry = {"fp32_accuracy": float((ref.argmax(-1) == labels).mean())}
        correct = {}
        for qa in (False, True):
            art = a.out / f"{name}_int8{'_qa' if qa else ''}"
            export(model, tok, art, calibration_dataset=calib, progress=False, max_length=r.data.get("max_length", 128),
                   quantize_attention=qa)
            lg = {b: batched_logits(load_fast_model(art, backend=b, num_threads=a.threads), ev)
                  for b in ("native", "onnxruntime")}
            tag = "int8_attention" if qa else "fp32_attention"
            correct[tag] = lg["native"].argmax(-1) == labels
            entry[tag] = {
                "engine_accuracy": float(correct[tag].mean()),
                "ort_accuracy": float((lg["onnxruntime"].argmax(-1) == labels).mean()),
                "engine_vs_ort_agreement": float((lg["native"].argmax(-1) == lg["onnxruntime"].argmax(-1)).mean()),
                "engine_vs_ort_max_logit_diff": float(np.abs(lg["native"] - lg["onnxruntime"]).max()),
                "engine_vs_fp32_agreement": float((lg["native"].argmax(-1) == ref.argmax(-1)).mean()),
            }
            rows.append((name, tag, entry["fp32_accuracy"], entry[tag]))
        b = int((correct["fp32_attention"] & ~correct["int8_attention"]).sum())
        c = int((~correct["fp32_attention"] & correct["int8_attention"]).sum())
        entry["mcnemar"] = {"only_fp32_attention_right": b, "only_int8_attention_right": c, "p": mcnemar_exact(b, c)}
        res["models"][name] = entry
    print("| model | attention | fp32 accuracy | int8 engine | int8 ORT | engine vs ORT argmax | engine vs ORT max "
          "logit diff | engine vs fp32 argmax |\n|---|---|---|---|---|---|---|---|")
    for name, tag, facc, e in rows:
        print(f"| {name} | {tag.split('_')[0]} | {facc * 100:.2f}% | {e['engine_accuracy'] * 100:.2f}% | "
              f"{e['ort_accuracy'] * 100:.2f}% | {e['engine_vs_ort_agreement'] * 100:.2f}% | "
              f"{e['engine_vs_ort_max_logit_diff']:.4f} | {e['engine_vs_fp32_agreement'] * 100:.2f}% |")
    for name, e in res["models"].items():
        m = e["mcnemar"]
        print(f"- {name}: int8 vs fp32 attention (engine): only fp32-attention right {m['only_fp32_attention_right']}, "
              f"only int8-attention right {m['only_int8_attention_right']}, McNemar exact p = {m['p']:.3g}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
