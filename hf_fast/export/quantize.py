"""Static int8 post-training quantization of the encoder Linear layers, in QDQ form.

By default only the MatMuls of the encoder layers whose second input is a weight initializer are quantized
(Q, K, V, attention output, FFN in, FFN out of every layer). Activation x activation MatMuls (attention
scores q.k^T and context softmax(p).v), embeddings, LayerNorms and the task head stay fp32.
With ``quantize_attention=True`` the two attention MatMuls of every layer are quantized too: each of their
inputs (q, k^T, the softmax probabilities, v) gets its own uint8 per-tensor Q/DQ pair, calibrated like the
Linear inputs; the scale Mul, mask Add and Softmax between them stay fp32.

* weights: int8, symmetric, per output channel (zero point exactly 0, so a zero weight stays 0);
* activations: uint8, asymmetric, per tensor, calibrated on the caller's samples
  (MinMax by default; Percentile or Entropy on request);
* no QuantizeLinear/DequantizeLinear on the MatMul outputs: bias Add and everything after stay fp32.

Done with `onnxruntime.quantization.quantize_static`, so the file is standard ONNX that ONNX Runtime
fuses into int8 kernels, and the same file feeds the hf-fast engine.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from hf_fast.export.onnx_export import module_path
from hf_fast.models import registry
from hf_fast.runtime import walker
from hf_fast.runtime.graph import GraphMatchError, LogicalGraph, QuantWeight

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


def _graph(model_proto) -> LogicalGraph:
    return model_proto if isinstance(model_proto, LogicalGraph) else LogicalGraph(model_proto)


def encoder_matmuls(model_proto) -> tuple[list[str], list[str]]:
    """(Linear MatMuls, attention MatMuls) of the encoder layers, each list in graph order, as the graph walker
    (runtime/walker.py) finds them with the first registry layer pattern that matches: Q, K, V, attention output,
    FFN in and FFN out of every layer, then the two activation x activation MatMuls (scores q.k^T and context
    probs.v). The same names come back from the fp32 graph and from its QDQ-quantized copy."""
    g, layers = find_layers(model_proto)
    order = {id(n): k for k, n in enumerate(g.nodes)}

    def names(nodes):
        return [n.name for n in sorted(nodes, key=lambda n: order[id(n)])]

    return (names([mm for m in layers for mm in m.linears.values()]),
            names([n for m in layers for a in m.attention.values() for n in (a.scores, a.context)]))


def find_layers(model_proto) -> tuple[LogicalGraph, list]:
    """(the graph, its encoder layers' walker.LayerMatch list) with the first registry layer pattern that matches."""
    g = _graph(model_proto)
    layers, first_error = [], None
    for p in registry.layer_patterns():
        try:  # a layer of another family's shape may differ inside a step (MPNet's bias Add for BERT's pattern)
            layers = walker.find_layers(g, p)
        except walker.PatternMismatch as e:
            first_error = first_error or e
            continue
        if layers:
            break
    if not layers and first_error is not None:
        raise first_error
    return g, layers


def encoder_linear_matmuls(model_proto) -> list[str]:
    """Names of the MatMul nodes of the encoder-layer Linears (``encoder_matmuls``)."""
    return encoder_matmuls(model_proto)[0]


def attention_matmuls(model_proto) -> list[str]:
    """Names of the activation x activation MatMul nodes of the encoder layers: the attention scores
    q.k^T and context probs.v of every layer (e.g. ``/bert/encoder/layer.0/attention/self/MatMul`` and
    ``.../MatMul_1``, ``/distilbert/transformer/layer.0/attention/MatMul`` and ``.../MatMul_1``)."""
    return encoder_matmuls(model_proto)[1]


class FeedReader(CalibrationDataReader):
    """onnxruntime CalibrationDataReader over a list of feeds (dicts of int64 arrays), with a tqdm bar."""

    def __init__(self, feeds: list[dict[str, np.ndarray]], progress: bool = True, desc: str = "calibration"):
        if not feeds:
            raise ValueError("the calibration set is empty: static int8 quantization needs at least one sample")
        self._feeds = feeds
        self._progress = progress
        self._desc = desc
        self._it = None
        self._bar = None

    def __len__(self):
        return len(self._feeds)

    def get_next(self):
        if self._it is None:
            self._it = iter(self._feeds)
            if self._progress:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=len(self._feeds), desc=self._desc, unit="batch", leave=False)
        item = next(self._it, None)
        if self._bar is not None:
            if item is None:
                self._bar.close()
                self._bar = None
            else:
                self._bar.update(1)
        return item

    def rewind(self):
        self._it = None

    def __iter__(self):
        return iter(self._feeds)


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    m = str(name).lower()
    if m not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration method {name!r}: use one of {', '.join(CALIBRATION_METHODS)}")
    return {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy}[m]


def quantize_qdq(fp32_path: Path, out_path: Path, feeds: list[dict[str, np.ndarray]], method: str = "minmax",
                 percentile: float = 99.999, progress: bool = True, nodes: Iterable[str] | None = None,
                 reduce_range: bool = False, quantize_residuals: bool = False,
                 module_ranges: dict[str, Iterable[float]] | None = None,
                 tensor_ranges: dict[str, tuple] | None = None, quantize_attention: bool = False) -> list[str]:
    """Quantize `fp32_path` into `out_path`. Returns the names of the quantized MatMul nodes (the Linear
    MatMuls, then with quantize_attention the attention MatMuls).

    quantize_residuals=False gives each quantized MatMul its own Q/DQ pair, so the residual Adds that
    read the same LayerNorm output keep it in fp32; True shares one pair between every consumer (ONNX
    Runtime's default), so the residual stream is rounded to the uint8 grid too (measured on the fine-tuned
    MiniLM-L6 rt-polarity teacher: 97.85% argmax agreement with fp32 shared vs 98.15% dedicated).

    module_ranges: ``{linear module name: (lo, hi)}`` activation ranges learned by quantization-aware
    fine-tuning (``model.config.hf_fast["qat"]["activation_ranges"]``); they replace the calibrated ranges of
    those layers' inputs, so the file quantizes exactly as the fake-quant the model was trained with.
    tensor_ranges: ``{activation tensor name: (lo, hi)}`` set directly (benchmarks/quant_ablation.py).

    quantize_attention: also quantize the two activation x activation MatMuls of every encoder layer
    (``attention_matmuls``: scores = q.k^T and context = probs.v), both inputs through their own uint8
    per-tensor Q/DQ pair, calibrated on the same samples (module_ranges only cover the Linear inputs); the
    result is checked and a RuntimeError names any attention MatMul left without them."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    cal = _method(method)
    reader = FeedReader(feeds, progress=progress)
    proto = onnx.load(str(fp32_path))
    if nodes is not None and not quantize_attention:
        # the caller names the Linears (models/generic.py for encoders outside the registry, whose layers the
        # registry's patterns need not match): the walker has nothing to add
        found_linear, found_attention = list(nodes), []
    else:
        found_linear, found_attention = encoder_matmuls(proto)
    nodes = list(nodes) if nodes is not None else found_linear
    if not nodes:
        raise ValueError("no encoder Linear MatMul found in the exported graph: nothing to quantize "
                         "(is this a BERT-family encoder exported by hf_fast?)")
    linear = set(nodes)
    attention = [n for n in found_attention if n not in linear] if quantize_attention else []
    if quantize_attention and not attention:
        raise ValueError("quantize_attention=True but the graph has no attention (activation x activation) "
                         "MatMul in its encoder layers")
    extra = {
        "WeightSymmetric": True,                       # int8 weights, zero point 0
        "ActivationSymmetric": False,                  # uint8 activations with a zero point
        "MatMulConstBOnly": not attention,            # attention MatMuls have an activation as 2nd input
        "OpTypesToExcludeOutputQuantization": ["MatMul"],
        "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},  # [in, out] weight: channel = output axis
        "DedicatedQDQPair": not quantize_residuals,    # one pair per MatMul: the residual Add reads fp32
    }
    ranges = activation_ranges(proto, nodes, module_ranges) if module_ranges else {}
    ranges.update(tensor_ranges or {})
    if ranges:
        extra["TensorQuantOverrides"] = {t: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}]
                                         for t, (lo, hi) in ranges.items()}
    if cal.name == "Percentile":
        extra["CalibPercentile"] = float(percentile)
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.ERROR)  # quantize_static warns about pre-processing on every call
    from hf_fast.export.progress import step

    try:
        with step("int8 calibration + quantization", enabled=progress):  # the batches' own bar shows below
            quantize_static(str(fp32_path), str(out_path), reader, quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=["MatMul"], per_channel=True, reduce_range=bool(reduce_range),
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_quantize=nodes + attention, calibrate_method=cal, extra_options=extra)
    finally:
        root.setLevel(old)
    qproto = onnx.load(str(out_path))
    qgraph = LogicalGraph(qproto)  # its nodes are qproto's own: rewiring one rewires the file
    if not quantize_residuals and _unquantize_residuals(qgraph):
        onnx.save(qproto, str(out_path))
    if attention:
        check_attention_qdq(qgraph, attention)
    return nodes + attention


def check_attention_qdq(model_proto, names: Iterable[str]) -> None:
    """Raise RuntimeError unless every MatMul in `names` reads both inputs as DequantizeLinear(QuantizeLinear(x))
    with one constant per-tensor scale and uint8 zero point, the same on both nodes (what the runtime's
    LogicalGraph folds into a fake-quant point)."""
    g = _graph(model_proto)
    by_name = {n.name: n for n in g.nodes}
    for name in names:
        mm = by_name.get(name)
        if mm is None or mm.op_type != "MatMul":
            raise RuntimeError(f"attention MatMul {name!r} is missing from the quantized graph")
        for i in (0, 1):
            try:
                fq = g.fake_quant_of(mm.input[i])
            except GraphMatchError as e:
                raise RuntimeError(f"attention MatMul {name!r}, input {i}: {e}") from e
            if fq is None:
                raise RuntimeError(f"attention MatMul {name!r}: input {i} ({mm.input[i]!r}) is not read through "
                                   "a QuantizeLinear -> DequantizeLinear pair: the attention was not quantized")


def activation_ranges(proto, nodes: Iterable[str], module_ranges: dict[str, Iterable[float]]) -> dict[str, tuple]:
    """``{MatMul input tensor: (lo, hi)}`` from per-module ranges; a tensor read by several layers (Q, K, V)
    gets the union of their ranges, always containing 0 (uint8 with a zero point). Every quantized node
    must have a range: a partial set would mix two calibrations silently."""
    wanted = set(nodes)
    out: dict[str, tuple] = {}
    missing = []
    for n in proto.graph.node:
        if n.name not in wanted:
            continue
        r = module_ranges.get(module_path(n.name))
        if r is None:
            missing.append(module_path(n.name))
            continue
        lo, hi = (float(v) for v in r)
        if not (np.isfinite(lo) and np.isfinite(hi)) or hi < lo:
            raise ValueError(f"activation range of {module_path(n.name)} is not a valid interval: {r!r}")
        old = out.get(n.input[0], (0.0, 0.0))
        out[n.input[0]] = (min(old[0], lo), max(old[1], hi))
    if missing:
        raise ValueError(f"the model's QAT activation ranges miss {len(missing)} quantized layers "
                         f"(e.g. {missing[0]}); export with use_qat_ranges=False to calibrate instead")
    return out


def _unquantize_residuals(g: LogicalGraph) -> int:
    """Point every non-MatMul consumer of an activation's DequantizeLinear back at the fp32 tensor (in place, in the
    graph's ModelProto); returns how many inputs changed.

    ONNX Runtime's quantizer makes a dedicated Q/DQ pair only where several MatMuls share an input; a
    LayerNorm output read by one MatMul and by the residual Add still hands the Add the uint8-rounded copy.
    """
    changed = 0
    for n in g.nodes:
        if n.op_type in ("MatMul", "QuantizeLinear", "DequantizeLinear"):
            continue
        for i, name in enumerate(n.input):
            fq = g.fake_quant_of(name) if name else None
            if fq is not None:
                n.input[i] = fq[0]
                changed += 1
    return changed


def int8_linear_weights(model_proto) -> dict[str, np.ndarray]:
    """{module path: int8 weight in PyTorch layout [out, in]} for every DequantizeLinear'd MatMul weight."""
    g = _graph(model_proto)
    out = {}
    for n in g.nodes:
        w = g.weight(n.input[1]) if n.op_type == "MatMul" and len(n.input) > 1 else None
        if isinstance(w, QuantWeight) and w.q.ndim == 2:
            out[module_path(n.name)] = np.ascontiguousarray(w.q.T)
    return out
