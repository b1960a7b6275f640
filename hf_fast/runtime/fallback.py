"""backend="auto" and backend="native" at the plan's boundary: which backend runs an artifact, and why not the engine.

The native engine runs the registry's families (hf_fast/models) when its plan (plan.py) matches the graph; every
other artifact (an encoder exported through models/generic.py, a graph the plan refuses) runs in ONNX Runtime.
"auto" says so in one warning line and keeps the reason in ``OnnxRuntimeBackend.fallback_reason`` (explain() prints
it); "native" raises a GraphMatchError naming the family, the plan's error and the ops no engine family's graph has.
Only the plan's refusal (GraphMatchError) and the engine's refusal of an op it has no kernel for (NotImplementedError,
from hf_engine_create) fall back: any other error is raised as it is.
"""
from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hf_fast.models import generic, registry
from hf_fast.runtime.graph import GraphMatchError

# ONNX op types of the graphs the engine's families export (every task, with and without quantize_attention;
# tests/test_fallback.py checks it against the registry's exports). An op outside it is one the engine has no
# counterpart for (DeBERTa-v2's relative-position Log/Sign/Clip, ALBERT's tanh-GELU Pow).
ENGINE_GRAPH_OPS = frozenset({
    "Add", "And", "Cast", "Concat", "Constant", "ConstantOfShape", "CumSum", "DequantizeLinear", "Div", "Equal",
    "Erf", "Expand", "Flatten", "Gather", "GatherElements", "Gemm", "GreaterOrEqual", "LayerNormalization", "MatMul",
    "Mul", "Not", "QuantizeLinear", "Range", "Relu", "Reshape", "Shape", "Slice", "Softmax", "Split", "Squeeze",
    "Tanh", "Transpose", "Unsqueeze", "Where"})

_OPS_SHOWN = 4  # ops named with their first node; the rest by type only


def foreign_ops(model_proto) -> dict[str, str]:
    """{op type: its first node's name} for the ops of the graph outside ENGINE_GRAPH_OPS, in graph order."""
    out: dict[str, str] = {}
    for n in model_proto.graph.node:
        if n.op_type not in ENGINE_GRAPH_OPS and n.op_type not in out:
            out[n.op_type] = n.name
    return out


def _ops_note(model_path) -> str:
    import onnx

    try:
        ops = foreign_ops(onnx.load(str(model_path), load_external_data=False))
    except (OSError, ValueError) as exc:  # onnx's DecodeError is a ValueError
        return f"; the graph could not be read for its ops ({exc})"
    if not ops:
        return ""
    shown = [f"{op} ({name})" for op, name in list(ops.items())[:_OPS_SHOWN]]
    more = f" and {len(ops) - _OPS_SHOWN} more ({', '.join(list(ops)[_OPS_SHOWN:])})" if len(ops) > _OPS_SHOWN else ""
    return "; ops no engine family has: " + ", ".join(shown) + more


def engine_refusal(fast_config: Mapping[str, Any], exc: GraphMatchError, model_path=None) -> str:
    """Why the engine cannot run this artifact: the family verdict when the registry has no entry for it, the plan's
    own error, and (with ``model_path``) the ops no engine family's graph has."""
    fam = registry.find(fast_config.get("model_type"))
    head = "" if fam is not None else f"{generic.engine_reason(fast_config.get('model_type'))}; "
    return f"{head}the plan stops at: {exc}" + (_ops_note(model_path) if model_path is not None else "")


def native_backend(model_path, fast_config: Mapping[str, Any], **options):
    """NativeBackend, or GraphMatchError naming the model type, the architecture and what the plan could not match."""
    from hf_fast.runtime.engine import NativeBackend

    try:
        return NativeBackend(model_path, fast_config, **options)
    except GraphMatchError as exc:
        raise GraphMatchError(
            f"this {fast_config.get('model_type')!r} model ({fast_config.get('architecture')}) cannot run in the "
            f"native engine: {engine_refusal(fast_config, exc, model_path)}. Load it with backend='auto' (the "
            "default) or 'onnxruntime' to run it in ONNX Runtime") from exc


def auto_backend(model_path, fast_config: Mapping[str, Any], **options):
    """The native engine when it runs this family and its plan matches the graph; else ONNX Runtime, with one
    warning line, the reason kept in ``fallback_reason``. Each backend gets the options it takes."""
    from hf_fast.runtime.backends import OnnxRuntimeBackend

    model_type = fast_config.get("model_type")
    if registry.find(model_type) is None:
        reason = generic.engine_reason(model_type)
    else:
        from hf_fast.runtime.engine import NativeBackend

        try:
            return NativeBackend(model_path, fast_config, **_options_of("native", options))
        except GraphMatchError as exc:
            reason = f"the native engine's plan does not match the graph: {exc}"
        except NotImplementedError as exc:  # the family declares an op the engine has no kernel for yet (C HF_ENOTIMPL)
            reason = f"the native engine does not run this family yet: {exc}"
    ort_options = _options_of("onnxruntime", options)
    dropped = sorted(set(options) - set(ort_options))
    note = f" (options {', '.join(dropped)} apply to the native engine only)" if dropped else ""
    warnings.warn(f"hf-fast: {Path(model_path).parent} runs in ONNX Runtime, not the native engine: {reason}{note}",
                  UserWarning, stacklevel=_user_stacklevel())
    be = OnnxRuntimeBackend(model_path, **ort_options)
    be.fallback_reason = reason
    return be


def _options_of(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    from hf_fast.runtime.backends import backend_options

    allowed = backend_options(name)
    return dict(options) if allowed is None else {k: v for k, v in options.items() if k in allowed}


def _user_stacklevel() -> int:
    """The warning points at the first frame outside hf_fast (the user's from_pretrained / pipeline call)."""
    f, level = sys._getframe(1), 1
    while f is not None and f.f_globals.get("__name__", "").startswith("hf_fast"):
        f, level = f.f_back, level + 1
    return level
