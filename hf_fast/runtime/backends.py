"""Backends that execute a fast artifact. The whole interface is::

    backend.input_names   # graph inputs, e.g. ["input_ids", "attention_mask", "token_type_ids"]
    backend.output_names  # ["logits"] or ["start_logits", "end_logits"]
    backend.run(input_ids, attention_mask, token_type_ids) -> {output name: float32 numpy array}

Inputs arrive validated: int64 numpy arrays of shape [batch, sequence]; token_type_ids is None when
the graph has no such input. `create_backend(name, artifact_dir, fast_config, **options)` builds one
by name: "native" (the hf-fast engine, engine.py), "onnxruntime" (the baseline) or "auto" (the default): the engine
when it runs the artifact's family and its plan matches the graph, else ONNX Runtime with one warning saying why
(`OnnxRuntimeBackend.fallback_reason` keeps it for explain()).
"""
from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np


class OnnxRuntimeBackend:
    """ONNX Runtime CPU session over the artifact's model.onnx (the baseline of every speed figure)."""

    name = "onnxruntime"
    # why the model runs here rather than in the hf-fast engine, for explain(): None = asked for by name; a caller
    # that picks ONNX Runtime in the engine's place (a graph the engine cannot plan) sets its reason
    fallback_reason: str | None = None

    def __init__(self, model_path, num_threads: int | None = None, session_options=None,
                 providers: list[str] | None = None, graph_optimization_level: str | None = None):
        import onnxruntime as ort

        so = session_options or ort.SessionOptions()
        if num_threads is not None:
            if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)) or num_threads < 0:
                raise ValueError("num_threads must be a non-negative int (0 = ONNX Runtime default), "
                                 f"got {num_threads!r}")
            so.intra_op_num_threads = int(num_threads)
        if graph_optimization_level is not None:
            so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, graph_optimization_level)
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(model_path), so, providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ValueError(f"ONNX Runtime cannot load {model_path}: {exc}") from exc
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray,
            token_type_ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        feeds = {}
        for n in self.input_names:
            v = given.get(n)
            if v is None:
                if n == "token_type_ids":
                    v = np.zeros_like(input_ids)
                else:
                    raise ValueError(f"the model needs input {n!r}")
            feeds[n] = v
        try:
            outs = self.session.run(self.output_names, feeds)
        except Exception as exc:  # onnxruntime's own Fail / InvalidArgument / RuntimeException types
            if not type(exc).__module__.startswith("onnxruntime"):
                raise
            raise ValueError(f"ONNX Runtime cannot run this model on these inputs: {exc}") from exc
        batch = np.shape(input_ids)[0]
        for name, out in zip(self.output_names, outs, strict=False):
            # a graph rewired to read the wrong tensor still runs, with outputs that are not one row per sequence
            if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.ndim < 1 or out.shape[0] != batch:
                raise ValueError(f"the graph's output {name!r} is {getattr(out, 'dtype', type(out))} of shape "
                                 f"{np.shape(out)} for a batch of {batch}: model.onnx does not match its inputs")
        return dict(zip(self.output_names, outs, strict=False))


def _native_backend(model_path, fast_config: Mapping[str, Any], **options):
    from .fallback import native_backend  # imported late: it loads the cffi library

    return native_backend(model_path, fast_config, **options)


def _auto_backend(model_path, fast_config: Mapping[str, Any], **options):
    from .fallback import auto_backend

    return auto_backend(model_path, fast_config, **options)


def _native_class():
    from .engine import NativeBackend

    return NativeBackend


BACKENDS: dict[str, Callable[..., Any]] = {
    "auto": _auto_backend,
    "onnxruntime": lambda model_path, fast_config, **kw: OnnxRuntimeBackend(model_path, **kw),
    "native": _native_backend,
}
# the class whose constructor takes a backend's options (backend_options reads its signature)
_BACKEND_TYPES: dict[str, Callable[[], type]] = {"onnxruntime": lambda: OnnxRuntimeBackend, "native": _native_class}
DEFAULT_BACKEND = os.environ.get("HF_FAST_BACKEND", "auto")


def backend_name(name: str | None) -> str:
    """The canonical name of a backend ("ort" and "onnx" mean "onnxruntime"; None: the default)."""
    name = name or DEFAULT_BACKEND
    if name in ("ort", "onnx"):
        name = "onnxruntime"
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    return name


def backend_options(name: str | None) -> tuple[str, ...] | None:
    """The keyword options a backend takes (e.g. num_threads), read from its constructor; None: any."""
    name = backend_name(name)
    if name == "auto":  # whichever it picks: the options of both (each gets its own, auto_backend)
        both = [backend_options(n) for n in ("native", "onnxruntime")]
        return None if None in both else tuple(dict.fromkeys(o for opts in both for o in opts))
    get = _BACKEND_TYPES.get(name)
    target = get().__init__ if get is not None else BACKENDS[name]
    params = list(inspect.signature(target).parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return tuple(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                 and p.name not in ("self", "model_path", "fast_config"))


def create_backend(name: str | None, artifact_dir, fast_config: Mapping[str, Any], **options):
    name = backend_name(name)
    allowed = backend_options(name)
    bad = sorted(set(options) - set(allowed)) if allowed is not None else []
    if bad:  # named here, so a constructor's own TypeError (an internal class name) never reaches the user
        raise TypeError(f"the {name} backend takes no option {', '.join(map(repr, bad))}; "
                        f"its options: {', '.join(allowed) or 'none'}")
    return BACKENDS[name](Path(artifact_dir) / "model.onnx", fast_config, **options)
