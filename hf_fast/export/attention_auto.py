"""``quantize_attention="auto"``: int8 attention only in the encoder layers where it stays accurate.

The exporter quantizes a probe file with every layer's attention MatMuls int8 (q.k^T and p.v, quantize.quantize_qdq),
calibrated without the last quarter of the calibration batches, then measures each layer alone on those held-back
batches: the probe with int8 attention in that layer only against the probe with fp32 attention everywhere, both in
ONNX Runtime, on the layer's output tensor (real tokens only). Earlier layers run fp32 attention in both, so a
layer is judged on its own rounding, not on what it inherits. Layers whose relative error

    ||y_int8 - y_fp32||_F / ||y_fp32||_F   (over every real token of the held-back samples)

is at most the tolerance keep int8 attention. The artifact itself is calibrated on every batch (as without "auto", so
a layer left in fp32 computes exactly what the default export computes: a smaller calibration set alone cost the
SQuAD teacher ~1 F1); the layers over the tolerance get their attention Q/DQ pairs removed (the MatMuls read the fp32
tensors again), so ONNX Runtime and the hf-fast engine run the same per-layer mix from the one model.onnx.
A peaked or ill-conditioned layer (large score range: uint8 q / k rounding moves the argmax of a sharp softmax, or
probabilities that need more than 256 levels) is the kind this keeps in fp32.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# relative Frobenius error of one layer's output allowed for int8 attention. Measured (benchmarks/attention_auto.py
# prints the errors): random-weight DistilBERT 0.2%, the fine-tuned MiniLM-L6 SQuAD teacher 2.5-5.5% per layer.
DEFAULT_TOLERANCE: float = 0.005
# fraction of the calibration batches held back to measure the choice (the rest calibrate the ranges)
HELD_BACK_FRACTION: float = 0.25


@dataclass
class LayerAttention:
    """One encoder layer's attention MatMuls and output tensor in the exported graph."""
    scores: str
    context: str
    output: str


def check_tolerance(tolerance) -> float:
    """The tolerance as a float, or ValueError naming what is wrong."""
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) \
            or not 0 < tolerance < 1:
        raise ValueError(f"attention_tolerance must be a number in (0, 1) (the relative error of a layer's output "
                         f"that int8 attention may add), got {tolerance!r}")
    return float(tolerance)


def split_feeds(feeds: list) -> tuple[list, list]:
    """(calibration feeds, held-back feeds): the last HELD_BACK_FRACTION of the batches, at least one, is held back."""
    if len(feeds) < 2:
        raise ValueError("quantize_attention='auto' holds back part of the calibration set to measure each layer's "
                         f"int8 attention error, so it needs at least 2 calibration batches; got {len(feeds)}")
    n_held = max(1, int(round(len(feeds) * HELD_BACK_FRACTION)))
    return feeds[:-n_held], feeds[-n_held:]


def layers_of(proto) -> list[LayerAttention]:
    """Every encoder layer's attention MatMuls and output, in graph order (the registry patterns, as
    quantize.encoder_matmuls finds them)."""
    from hf_fast.export.quantize import find_layers

    g, layers = find_layers(proto)
    out = []
    for m in layers:
        if len(m.attention) != 1 or not m.output:
            raise ValueError("quantize_attention='auto' needs one self-attention and an output tensor per layer")
        a = next(iter(m.attention.values()))
        out.append(LayerAttention(a.scores.name, a.context.name, m.output))
    return out


def strip_attention_qdq(proto, matmuls) -> None:
    """Point the named attention MatMuls' inputs back at the fp32 tensors behind their Q/DQ pairs and drop the pairs
    (and their constants) that nothing reads any more. In place."""
    from hf_fast.runtime.graph import LogicalGraph

    g = LogicalGraph(proto)  # its nodes are proto's own: rewiring one rewires the model
    wanted = set(matmuls)
    for n in g.nodes:
        if n.name in wanted:
            for i in (0, 1):
                r = g.fake_quant_of(n.input[i])
                if r is not None:
                    n.input[i] = r[0]
    _drop_dead_qdq(proto)


def _drop_dead_qdq(proto) -> None:
    graph = proto.graph
    while True:
        read = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in read for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    read = {i for n in graph.node for i in n.input}
    for init in [t for t in graph.initializer if t.name not in read]:
        graph.initializer.remove(init)


def _session(proto, outputs: list[str]):
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    del m.graph.output[:]
    m.graph.output.extend(onnx.helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None) for o in outputs)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _run(sess, feeds: list) -> list[list[np.ndarray]]:
    names = {i.name for i in sess.get_inputs()}
    return [sess.run(None, {k: v for k, v in f.items() if k in names}) for f in feeds]


def layer_errors(proto, feeds: list, layers: list[LayerAttention] | None = None) -> list[float]:
    """Relative output error of int8 attention in each layer alone (see the module docstring), on `feeds`; `proto`
    is the graph with every layer's attention quantized (not modified)."""
    import onnx

    layers = layers if layers is not None else layers_of(proto)
    every = [n for la in layers for n in (la.scores, la.context)]
    base = onnx.ModelProto()
    base.CopyFrom(proto)
    strip_attention_qdq(base, every)
    ref = _run(_session(base, [la.output for la in layers]), feeds)
    masks = [f.get("attention_mask") for f in feeds]
    errors = []
    for k, la in enumerate(layers):
        one = onnx.ModelProto()
        one.CopyFrom(proto)
        strip_attention_qdq(one, [n for n in every if n not in (la.scores, la.context)])
        got = _run(_session(one, [la.output]), feeds)
        num = den = 0.0
        for r, g, mask in zip(ref, got, masks, strict=True):
            y, yq = r[k], g[0]
            if mask is not None and y.ndim == 3 and y.shape[:2] == mask.shape:  # real tokens only
                y, yq = y[mask.astype(bool)], yq[mask.astype(bool)]
            num += float(np.sum((yq.astype(np.float64) - y) ** 2))
            den += float(np.sum(y.astype(np.float64) ** 2))
        errors.append(math.sqrt(num / den) if den > 0 else (0.0 if num == 0 else math.inf))
    return errors


def strip_file(path, matmuls) -> None:
    """strip_attention_qdq on the ONNX file at `path` (rewritten only when there is something to strip)."""
    import onnx

    if matmuls:
        proto = onnx.load(str(path))
        strip_attention_qdq(proto, matmuls)
        onnx.save(proto, str(path))


def measure(probe, held: list, tolerance: float) -> dict:
    """Measure every layer of the all-int8-attention file `probe` (calibrated without `held`) on the held-back feeds
    and return the record for fast_config.json; its "stripped" entry names the attention MatMuls of the layers over
    `tolerance` (node names are the same in every quantization of one fp32 graph)."""
    import onnx

    proto = onnx.load(str(probe))
    layers = layers_of(proto)
    errors = layer_errors(proto, held, layers)
    keep = [e <= tolerance for e in errors]
    drop = [n for la, k in zip(layers, keep, strict=True) if not k for n in (la.scores, la.context)]
    return {
        "mode": "auto",
        "tolerance": tolerance,
        "metric": "relative Frobenius error of the layer output, int8 attention in that layer alone vs fp32 "
                  "attention everywhere (ONNX Runtime, real tokens of the held-back calibration samples)",
        "held_back_samples": int(sum(int(f["input_ids"].shape[0]) for f in held)),
        "layers": ["int8" if k else "fp32" for k in keep],
        "errors": [float(e) for e in errors],
        "stripped": drop,
    }
