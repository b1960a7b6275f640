"""`FastModelFor*.explain()` and `hf-fast info DIR`: which kernel runs each Linear of a loaded model, and why.

Answers "why is my pruned model not faster": per encoder layer, every Linear's zero-block fraction and the kernel it
runs on (block-sparse or dense, with the reason the engine gave when it packed the weight: engine.choose_kernel),
the attention path (fp32 or int8) and its kernel, the ISA the engine was created for (read back from the C engine)
and the kernel each op runs on it (native.op_kernel, the C dispatcher's own answer). On ONNX Runtime it says why
the model runs there, whether the engine could plan the graph, and that ONNX Runtime's int8 MatMul skips no zero
blocks. Nothing here re-derives a decision: the records quote the objects that made them.
"""
from __future__ import annotations

import re
from typing import Any

# engine Linear -> what it computes (the Q, K, V projections run as one stacked GEMM)
_LINEAR_ROLE = {"qkv": "query+key+value", "attn_out": "attention output", "ffn_in": "intermediate (GELU)",
                "ffn_out": "FFN output"}
# the ops the engine runs besides the Linears, in the order a layer runs them (native.KERNEL_OPS keys)
_ENGINE_OPS = ("quantize_u8", "linear_epilogue", "layernorm", "gelu")


def _module_path(node_name: str) -> str:
    """"/bert/encoder/layer.0/attention/self/qkv/MatMul" -> "bert.encoder.layer.0.attention.self.qkv"."""
    return node_name.strip("/").removesuffix("/MatMul").replace("/", ".")


def explain_native(model) -> dict[str, Any]:
    from hf_fast import native
    from hf_fast.runtime.engine import SPARSE_FROM_TOKENS_BY_ISA

    backend = model.backend
    eng = backend.engine
    isa = eng.isa
    choices = backend.kernel_choices()
    head_size = eng.plan.hidden // eng.plan.heads
    layers = []
    for i, layer in enumerate(eng.plan.layers):
        rows = []
        for name in ("qkv", "attn_out", "ffn_in", "ffn_out"):
            key = f"layers.{i}.{name}"
            pl, ch = eng.packed[key], choices[key]
            lp = layer.q if name == "qkv" else getattr(layer, name)
            path = _module_path(lp.name.replace("query", "qkv") if name == "qkv" else lp.name)
            sparse = pl.block != "dense"
            rows.append({
                "linear": name, "module": path, "role": _LINEAR_ROLE[name], "shape": list(pl.shape),
                # the packed weight's own count when sparse (kept / total blocks, from the C side), else the fraction
                # the decision measured
                "zero_blocks": round(1.0 - pl.kept_blocks / pl.total_blocks, 6) if sparse else ch.zero_blocks,
                "block": ch.measured_block if not sparse else pl.block,
                "kernel": (f"sparse {pl.block}" if sparse else "dense")
                + (f", dense < {pl.sparse_rows} tokens" if pl.alternative is not None else ""),
                # calls of at least this many tokens run block-sparse, shorter ones dense (None: one kernel for all)
                "sparse_from_tokens": pl.sparse_rows,
                # groups of 4 output channels the VNNI kernel reads as pre-interleaved 4x4 tiles
                "kernel_impl": pl.kernel + (f" (4x4 tiles: {pl.quad_groups}/{(pl.shape[0] + 3) // 4} groups)"
                                            if pl.quad_groups else ""),
                "quad_groups": pl.quad_groups, "isa": pl.isa, "reason": ch.reason,
                "packed_bytes": pl.nbytes_with_alternative,
            })
        q8 = layer.attn_quant is not None
        bf16 = not q8 and getattr(eng, "attention", "fp32") == "bf16"
        # dynamic int8 has no sliding-window variant: those layers keep fp32 (bf16 has one: engine.c)
        dq8 = (not q8 and getattr(eng, "attention", "fp32") == "int8-dynamic"
               and int(getattr(layer, "window", 0)) <= 0)
        op = "attention_int8" if q8 else "attention_f32"
        layers.append({"layer": i, "linears": rows,
                       "attention": "int8" if q8 else "bf16" if bf16 else "int8-dynamic" if dq8 else "fp32",
                       # ModernBERT: keys within this distance (0: global), the rotary base (None: no rotary)
                       "attention_window": int(getattr(layer, "window", 0)),
                       "rope_theta": getattr(layer, "rope_theta", None),
                       "attention_kernel": native.attention_bf16_kernel(head_size, isa) if bf16
                       else native.attention_dq8_kernel(head_size, isa) if dq8
                       else native.op_kernel(op, isa, head_size)})
    return {
        "backend": "native", "fallback_reason": None, "isa": isa,
        "isa_forced_by_env": native.native_info()["isa_forced_by_env"],
        "crossover": next(iter(choices.values())).crossover,  # the one every choice of this engine compared with
        # [(zero-block fraction, tokens a call)]: below the crossover, sparse in calls that long (SPARSE_FROM_TOKENS)
        "crossover_by_tokens": [list(x) for x in SPARSE_FROM_TOKENS_BY_ISA.get(isa, ())],
        "kernels": {op: native.op_kernel(op, isa, head_size) for op in _ENGINE_OPS},
        "pack_cache": getattr(backend, "pack_cache", None),
        "packed_bytes": eng.packed_bytes, "dense_int8_bytes": eng.dense_int8_bytes,
        "layers": layers,
    }


def explain_onnxruntime(model) -> dict[str, Any]:
    """ONNX Runtime runs every Linear on its dense int8 MatMul: the artifact's zero blocks are multiplied too."""
    fc = model.fast_config
    reason = getattr(model.backend, "fallback_reason", None) or (
        "backend='onnxruntime' was asked for (from_pretrained(backend=...) or HF_FAST_BACKEND)")
    engine = _engine_verdict(model)
    per_layer: dict[int | str, list] = {}
    for path, frac in (fc.get("sparsity") or {}).items():
        if path == "overall":
            continue
        m = re.search(r"\.layer\.(\d+)\.", path)
        # a layer stack named otherwise (an encoder exported by the generic rule, e.g. ALBERT's shared layer): "-"
        per_layer.setdefault(int(m.group(1)) if m else "-", []).append({
            "linear": path.rsplit(".layer." + m.group(1) + ".", 1)[-1] if m else path, "module": path,
            "zero_blocks": frac,
            "block": fc.get("block"), "kernel": "dense (ONNX Runtime)", "kernel_impl": "onnxruntime",
            "reason": "ONNX Runtime's int8 MatMul has no block-sparse kernel: zero blocks are computed like others"})
    q = fc.get("quantization") or {}
    q8 = bool(q.get("quantize_attention"))
    chosen = q.get("attention_per_layer")  # quantize_attention="auto": the export's choice per layer

    def attention(i):
        return chosen[i] if chosen is not None and isinstance(i, int) and i < len(chosen) else "int8" if q8 else "fp32"

    layers = [{"layer": i, "linears": rows, "attention": attention(i), "attention_kernel": "onnxruntime"}
              for i, rows in sorted(per_layer.items(), key=lambda kv: (isinstance(kv[0], str), str(kv[0]).zfill(9)))]
    return {"backend": "onnxruntime", "fallback_reason": reason, "native_engine": engine, "isa": None,
            "layers": layers}


def _engine_verdict(model) -> str:
    """Whether the native engine can plan this artifact's graph, and if not, the plan's own error."""
    if model.path is None:
        return "unknown (no artifact folder)"
    import onnx

    from hf_fast.runtime.fallback import engine_refusal
    from hf_fast.runtime.graph import GraphMatchError
    from hf_fast.runtime.plan import build_plan

    fc = model.fast_config
    path = model.path / "model.onnx"
    try:
        build_plan(onnx.load(str(path), load_external_data=False), int(fc.get("num_heads") or 1),
                   fc.get("model_type"), fc.get("task"))
    except GraphMatchError as exc:
        return f"cannot run this graph: {engine_refusal(fc, exc, path)}"
    except ValueError as exc:  # an unreadable graph
        return f"cannot run this graph: {exc}"
    return "can run this graph: load it with backend='native' for the hf-fast kernels"


def explain(model) -> dict[str, Any]:
    """The records `FastModel.explain(as_dict=True)` returns."""
    fc = model.fast_config
    name = getattr(model.backend, "name", type(model.backend).__name__)
    rec = explain_native(model) if name == "native" else explain_onnxruntime(model)
    sp = fc.get("sparsity") or {}
    return {"path": model.name_or_path, "model_type": fc.get("model_type"), "task": fc.get("task"),
            "artifact_block": fc.get("block"), "artifact_sparsity": sp.get("overall"),
            "isa_tuned_for": fc.get("isa_tuned_for"), **rec}


def _pct(x) -> str:
    return "-" if x is None else f"{x:.0%}"


def format_explain(rec: dict[str, Any]) -> str:
    """The table `FastModel.explain()` returns and `hf-fast info DIR` prints."""
    lines = [f"{rec['path'] or 'model'}: {rec['model_type']} {rec['task']}, artifact block {rec['artifact_block']}, "
             f"{_pct(rec['artifact_sparsity'])} zero blocks overall"]
    if rec["backend"] == "native":
        forced = f" (forced by HF_FAST_ISA={rec['isa_forced_by_env']})" if rec["isa_forced_by_env"] else ""
        lines.append(f"backend: native hf-fast engine, ISA {rec['isa']}{forced}; a Linear runs block-sparse from "
                     f"{_pct(rec['crossover'])} zero blocks on {rec['isa']} (the sparse/dense crossover)"
                     + "".join(f", from {_pct(f)} in calls of >= {n} tokens" for f, n in rec.get("crossover_by_tokens")
                               or () if n > 1))
        lines.append("kernels: " + ", ".join(f"{k}={v}" for k, v in rec["kernels"].items())
                     + f"; packed weights {rec['packed_bytes']} bytes (dense int8: {rec['dense_int8_bytes']})")
    else:
        lines.append(f"backend: ONNX Runtime, because {rec['fallback_reason']}")
        lines.append(f"native engine: {rec['native_engine']}")
    table = [("layer", "linear", "shape", "zero blocks", "kernel", "impl", "why")]
    for layer in rec["layers"]:
        i = str(layer["layer"])
        for r in layer["linears"]:
            zb = _pct(r["zero_blocks"]) + (f" ({r['block']})" if r.get("block") and r["zero_blocks"] is not None
                                           else "")
            shape = "x".join(map(str, r["shape"])) if "shape" in r else "-"
            table.append((i, r["linear"], shape, zb, r["kernel"], r["kernel_impl"], r["reason"]))
        table.append((i, "attention", "-", "-", layer["attention"], layer["attention_kernel"],
                      "int8 q.k^T and p.v (artifact exported with quantize_attention)" if layer["attention"] == "int8"
                      else "bf16 q.k^T and p.v, fp32 softmax (attention='auto' where it is faster, or 'bf16')"
                      if layer["attention"] == "bf16"
                      else "int8 q.k^T (per-token scales) and int16 p.v (per-channel v), run-time scales, fp32 "
                           "softmax (attention='int8-dynamic')"
                      if layer["attention"] == "int8-dynamic"
                      else "fp32 (the artifact quantizes no attention MatMul of this layer)"))
    widths = [max(len(row[c]) for row in table) for c in range(len(table[0]) - 1)]
    lines.append("")
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
              for row in table]
    return "\n".join(lines)
