"""PyTorch -> fp32 ONNX for BERT-family encoders with a task head.

Uses the TorchScript exporter (`torch.onnx.export(..., dynamo=False)`, opset 17) with eager attention,
so every layer is explicit MatMul/Softmax/LayerNormalization and ONNX Runtime can fuse it. After
export the graph is normalised (see hf_fast/export/README.md, "graph contract"):

* initializers the tracer de-duplicated behind `Identity` nodes get their own copy again, so every
  Linear MatMul reads its weight directly from an initializer;
* the weight of every Linear MatMul is renamed ``<module path>.weight_t`` (e.g.
  ``bert.encoder.layer.0.attention.self.query.weight_t``; it is W transposed, [in, out]).

The result is checked against PyTorch on a second input shape through ONNX Runtime.
"""
from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OPSET = 17


@dataclass
class OnnxExportInfo:
    input_names: list[str]
    output_names: list[str]
    max_abs_diff: float          # |ONNX fp32 - PyTorch| on the self-check input
    linear_weights: dict[str, str]  # MatMul node name -> renamed weight initializer


def module_path(node_name: str) -> str:
    """'/bert/encoder/layer.0/attention/self/query/MatMul' -> 'bert.encoder.layer.0.attention.self.query'."""
    parts = [p for p in node_name.split("/") if p]
    if parts and re.match(r"^(MatMul|Gemm)(_\d+)?$", parts[-1]):
        parts = parts[:-1]
    return ".".join(parts)


@contextlib.contextmanager
def _export_mode(model):
    """Eval mode + eager attention for the export; the caller's model is restored afterwards."""
    was_training = model.training
    old_attn = getattr(model.config, "_attn_implementation", None)
    model.eval()
    try:
        if old_attn != "eager":
            model.set_attn_implementation("eager")
        yield model
    finally:
        if old_attn not in (None, "eager"):
            try:
                model.set_attn_implementation(old_attn)
            except Exception:  # pragma: no cover - best effort restore
                pass
        model.train(was_training)


def _dummy_inputs(config, input_names, batch: int, seq: int, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    vocab = int(config.vocab_size)
    ids = torch.randint(0, vocab, (batch, seq), generator=g, dtype=torch.long)
    mask = torch.ones(batch, seq, dtype=torch.long)
    if batch > 1:
        mask[-1, seq // 2:] = 0  # one padded row keeps the mask path general
    out = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in input_names:
        tt = torch.zeros(batch, seq, dtype=torch.long)
        if getattr(config, "type_vocab_size", 1) > 1:
            tt[:, seq // 2:] = 1
        out["token_type_ids"] = tt
    return {k: out[k] for k in input_names}


def _normalise_graph(model_proto) -> dict[str, str]:
    """Undo Identity-shared initializers and give Linear weights readable names. Returns node -> weight."""
    import onnx

    g = model_proto.graph
    inits = {i.name: i for i in g.initializer}
    # 1. Identity(initializer) -> its own initializer
    keep = []
    for n in g.node:
        if n.op_type == "Identity" and n.input[0] in inits and n.output[0] not in {o.name for o in g.output}:
            t = onnx.TensorProto()
            t.CopyFrom(inits[n.input[0]])
            t.name = n.output[0]
            g.initializer.append(t)
            # append() stores a copy: keep the graph's own message, which step 2 may rename (a local
            # reference was renamed alone and left the MatMul pointing at a missing name)
            inits[t.name] = g.initializer[-1]
        else:
            keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    # 2. rename Linear weights
    consumers: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    renamed: dict[str, str] = {}
    taken = set(inits)
    for n in g.node:
        if n.op_type != "MatMul" or len(n.input) < 2 or n.input[1] not in inits:
            continue
        w = inits[n.input[1]]
        if len(w.dims) != 2:
            continue
        new = module_path(n.name) + ".weight_t"
        if new in taken or consumers.get(n.input[1], 0) != 1:
            # shared or clashing: give this node its own uniquely named copy
            base, k = new, 1
            while new in taken:
                new, k = f"{base}_{k}", k + 1
            t = onnx.TensorProto()
            t.CopyFrom(w)
            t.name = new
            g.initializer.append(t)
        else:
            w.name = new
        taken.add(new)
        n.input[1] = new
        renamed[n.name] = new
    # drop initializers nobody reads any more
    used = {i for n in g.node for i in n.input}
    kept = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    return renamed


def export_fp32(model, path: Path, input_names: list[str], output_names: list[str], opset: int = OPSET,
                check_tol: float = 1e-3, progress: bool = False,
                dynamic_axes: dict[str, dict[int, str]] | None = None, fusions: tuple[str, ...] = ()) -> OnnxExportInfo:
    """Trace `model` to `path` (fp32 ONNX, dynamic batch and sequence axes) and self-check it; ``progress``
    shows the step and its elapsed time (it takes 15 s and more for a BERT-base). ``dynamic_axes``: the family's
    (hf_fast.models Family.dynamic_axes); None derives them from the output names and the model's class.
    ``fusions``: the family's Family.onnx_fusions, applied before the self-check (which then checks them too)."""
    from hf_fast.export.progress import step

    if dynamic_axes is None:
        token_level = output_names != ["logits"] or _is_token_level(model)
        dynamic_axes = {k: {0: "batch", 1: "sequence"} for k in input_names}
        for o in output_names:
            dynamic_axes[o] = {0: "batch", 1: "sequence"} if token_level else {0: "batch"}
    with step("ONNX trace (fp32)", enabled=progress):
        return _export_fp32(model, path, input_names, output_names, opset, check_tol, dynamic_axes, fusions)


def _fuse(proto, fusions: tuple[str, ...]) -> None:
    """Rewrite op sequences that a family's PyTorch code spells out into the one op the runtime plan matches
    ("layernorm": ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add -> LayerNormalization, with onnxruntime's own
    fusion). Refuses an unknown name; a graph in which nothing fuses is left for the plan to refuse by name."""
    unknown = [f for f in fusions if f != "layernorm"]
    if unknown:
        raise ValueError(f"unknown ONNX fusion(s) {unknown}; known: layernorm")
    if not fusions:
        return
    from onnxruntime.transformers.fusion_layernorm import FusionLayerNormalization
    from onnxruntime.transformers.onnx_model import OnnxModel

    om = OnnxModel(proto)
    FusionLayerNormalization(om).apply()
    om.prune_graph()
    om.topological_sort()


def _export_fp32(model, path: Path, input_names: list[str], output_names: list[str], opset: int,
                 check_tol: float, dyn: dict[str, dict[int, str]], fusions: tuple[str, ...] = ()) -> OnnxExportInfo:
    import onnx
    import torch

    with _export_mode(model), torch.no_grad():
        dummy = _dummy_inputs(model.config, input_names, batch=2, seq=16, seed=0)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about Python-side shape checks
            traced = _last_hidden_state(model) if output_names == ["last_hidden_state"] else model
            torch.onnx.export(traced, (), str(path), kwargs=dummy, input_names=input_names,
                              output_names=output_names, dynamic_axes=dyn, opset_version=opset,
                              dynamo=False, do_constant_folding=True)
        check = _dummy_inputs(model.config, input_names, batch=3, seq=11, seed=1)
        ref = model(**check)
        ref = {o: getattr(ref, o).detach().float().numpy() for o in output_names}
    proto = onnx.load(str(path))
    renamed = _normalise_graph(proto)
    _fuse(proto, fusions)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    got = run_onnx(path, {k: v.numpy() for k, v in check.items()}, output_names)
    diff = max(float(np.max(np.abs(got[o] - ref[o]))) for o in output_names)
    if not np.isfinite(diff) or diff > check_tol:
        raise RuntimeError(f"the exported fp32 ONNX graph differs from PyTorch by {diff:.3g} (> {check_tol}) "
                           "on a batch-3 / sequence-11 input: dynamic axes were not traced correctly")
    return OnnxExportInfo(list(input_names), list(output_names), diff, renamed)


def _last_hidden_state(model):
    """A bare encoder (AutoModel, task feature-extraction) traced for its token states alone: its forward takes many
    optional arguments the tracer cannot pass by name, and it returns the pooler output too. The encoder sits under
    its ``base_model_prefix`` (the attribute the task models keep it under), so node and weight names are theirs."""
    import torch

    class LastHiddenState(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.prefix = str(getattr(m, "base_model_prefix", "") or "model")
            self.add_module(self.prefix, m)

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            kw = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            out = getattr(self, self.prefix)(input_ids=input_ids, attention_mask=attention_mask, **kw)
            return out.last_hidden_state

    return LastHiddenState(model).eval()


def _is_token_level(model) -> bool:
    return type(model).__name__.endswith(("ForTokenClassification", "ForQuestionAnswering"))


def run_onnx(path, feeds, output_names=None, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = output_names or [o.name for o in sess.get_outputs()]
    feeds = {k: np.asarray(v, np.int64) for k, v in feeds.items()}
    return dict(zip(names, sess.run(names, feeds), strict=False))
