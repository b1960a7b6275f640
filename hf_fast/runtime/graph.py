"""A read-only view of a QDQ ONNX graph with the quantization folded away.

The engine does not execute ONNX nodes; it recognises the encoder in the graph (plan.py) and runs
its own fused kernels. Matching is easier on the fp32 *logical* graph: a QuantizeLinear ->
DequantizeLinear pair on an activation becomes a "fake-quant point" (scale, zero point) of the
tensor it wraps, and a DequantizeLinear of an int8 initializer becomes a quantized constant.
Only ONNX protobuf data is read (no pickle, no custom ops, nothing executed).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # onnx loads only to parse a graph: a load from the pack cache never imports it (~1 s)
    import onnx


class GraphMatchError(ValueError):
    """The ONNX graph does not have the structure the native engine knows how to run."""


@dataclass
class FakeQuant:
    """Per-tensor uint8 activation quantization: q = clamp(round(x / scale) + zero_point, 0, 255)."""
    scale: float
    zero_point: int


@dataclass
class QuantWeight:
    """A constant held as int8 with per-channel (or per-tensor) scales, as DequantizeLinear gives it."""
    q: np.ndarray            # int8, the initializer's own layout
    scale: np.ndarray        # float32, per-axis or scalar
    zero_point: np.ndarray   # int8, same shape as scale
    axis: int

    def dequantize(self) -> np.ndarray:
        s, z = self.scale, self.zero_point.astype(np.float32)
        if s.ndim == 1 and s.size > 1:
            shape = [1] * self.q.ndim
            shape[self.axis] = s.size
            s, z = s.reshape(shape), z.reshape(shape)
        return ((self.q.astype(np.float32) - z) * s).astype(np.float32)


def _attr(node: onnx.NodeProto, name: str, default=None):
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _to_array(t: onnx.TensorProto) -> np.ndarray:
    """An initializer as numpy; a tensor whose dims, data type or data disagree is a GraphMatchError."""
    import onnx
    from onnx import numpy_helper

    if not isinstance(t, onnx.TensorProto):  # e.g. a Constant whose 'value' attribute is a graph or a sparse tensor
        raise GraphMatchError(f"expected a dense tensor constant, got {type(t).__name__}")
    if t.data_location == onnx.TensorProto.EXTERNAL:
        raise GraphMatchError(f"initializer {t.name!r} keeps its data in an external file; fast artifacts are one "
                              "self-contained model.onnx")
    if any(d < 0 for d in t.dims) or int(np.prod([max(d, 0) for d in t.dims], dtype=object)) > 2**34:
        raise GraphMatchError(f"initializer {t.name!r} has invalid dims {list(t.dims)}")
    try:
        return numpy_helper.to_array(t)
    except Exception as exc:  # KeyError (unknown data type), ValueError (data does not fill dims), ...
        raise GraphMatchError(f"initializer {t.name!r} (dims {list(t.dims)}, data_type {t.data_type}) is "
                              f"malformed: {type(exc).__name__}: {exc}") from exc


class LogicalGraph:
    def __init__(self, model: onnx.ModelProto):
        g = model.graph
        self.model = model
        self.nodes: list[onnx.NodeProto] = list(g.node)
        self.inputs = [i.name for i in g.input]
        self.outputs = [o.name for o in g.output]
        self.consts: dict[str, np.ndarray] = {i.name: _to_array(i) for i in g.initializer}
        for n in self.nodes:
            if n.op_type == "Constant" and n.output:
                t = _attr(n, "value")
                if t is not None:
                    self.consts[n.output[0]] = _to_array(t)
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in self.nodes:
            for o in n.output:
                self.producer[o] = n
            for i in n.input:
                if i:
                    self.consumers.setdefault(i, []).append(n)

    # ------------------------------------------------------------ quantization folding
    def _scalar_const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name)

    def fake_quant_of(self, dq_out: str):
        """If `dq_out` is DQ(Q(x)) with constant per-tensor params, return (x, FakeQuant)."""
        dq = self.producer.get(dq_out)
        if dq is None or dq.op_type != "DequantizeLinear":
            return None
        q = self.producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            return None
        scale = self.consts.get(q.input[1])
        zp = self.consts.get(q.input[2]) if len(q.input) > 2 and q.input[2] else np.array(0, np.uint8)
        if scale is None or zp is None or scale.size != 1 or zp.size != 1:
            raise GraphMatchError(f"activation quantization at {q.name!r} must be per-tensor with constant "
                                  "scale and zero point")
        if zp.dtype != np.uint8:
            raise GraphMatchError(f"activation quantization at {q.name!r} uses {zp.dtype}; the engine "
                                  "expects uint8 activations")
        s = float(scale.reshape(()))
        if not np.isfinite(s) or s <= 0:
            raise GraphMatchError(f"activation scale {s} at {q.name!r} is not a positive finite number")
        # the engine dequantizes with the QuantizeLinear's parameters: a pair that disagrees is another function
        dq_scale = self.consts.get(dq.input[1]) if len(dq.input) > 1 and dq.input[1] else None
        dq_zp = self.consts.get(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else np.array(0, np.uint8)
        if (dq_scale is None or dq_zp is None or dq_scale.size != 1 or dq_zp.size != 1 or dq_zp.dtype != zp.dtype
                or float(dq_scale.reshape(())) != s or int(dq_zp.reshape(())) != int(zp.reshape(()))):
            raise GraphMatchError(f"QuantizeLinear {q.name!r} and DequantizeLinear {dq.name!r} do not share one "
                                  "constant per-tensor scale and zero point")
        return q.input[0], FakeQuant(s, int(zp.reshape(())))

    def resolve(self, name: str):
        """Follow DQ(Q(x)) chains back to the fp32 tensor: returns (x, FakeQuant or None)."""
        fq = None
        while True:
            r = self.fake_quant_of(name)
            if r is None:
                return name, fq
            name, fq = r

    def weight(self, name: str):
        """A constant input: QuantWeight for DQ(int8 initializer), float ndarray, or None."""
        seen = set()
        dq = self.producer.get(name)
        # torch shares equal initializers via Identity; a malformed or cyclic chain is a graph error, not a crash
        while name not in self.consts and dq is not None and dq.op_type == "Identity":
            if name in seen:
                raise GraphMatchError(f"Identity nodes form a cycle at {name!r}")
            if len(dq.input) != 1 or not dq.input[0]:
                raise GraphMatchError(f"Identity {dq.name!r} does not read one tensor (inputs {list(dq.input)})")
            seen.add(name)
            name = dq.input[0]
            dq = self.producer.get(name)
        if name in self.consts:
            return self.consts[name]
        if dq is not None and dq.op_type == "DequantizeLinear" and len(dq.input) >= 2 and dq.input[0] in self.consts:
            q = self.consts[dq.input[0]]
            scale = self.consts.get(dq.input[1])
            has_zp = len(dq.input) > 2 and dq.input[2]
            zp = self.consts.get(dq.input[2]) if has_zp else np.zeros(np.shape(scale), np.int8)
            if scale is None or zp is None:
                raise GraphMatchError(f"DequantizeLinear {dq.name!r} has a non-constant scale or zero point")
            if q.dtype != np.int8:
                raise GraphMatchError(f"weight {dq.input[0]!r} is {q.dtype}; the engine expects int8 weights")
            return QuantWeight(q, scale.astype(np.float32), zp.astype(np.int8), int(_attr(dq, "axis", 1)))
        return None

    def float_weight(self, name: str) -> np.ndarray | None:
        w = self.weight(name)
        if isinstance(w, QuantWeight):
            return w.dequantize()
        return None if w is None else np.asarray(w, dtype=np.float32)

    def users(self, name: str) -> list[onnx.NodeProto]:
        """Consumers of a tensor, looking through fake-quant (Q -> DQ) pairs and Identity/Dropout."""
        out = []
        for n in self.consumers.get(name, []):
            if n.op_type == "QuantizeLinear":
                for dq in self.consumers.get(n.output[0], []):
                    if dq.op_type == "DequantizeLinear":
                        out.extend(self.users(dq.output[0]))
            elif n.op_type in ("Identity", "Dropout"):
                out.extend(self.users(n.output[0]))
            else:
                out.append(n)
        return out

    def src(self, node: onnx.NodeProto, i: int) -> str:
        """Input i of a node as its fp32 logical tensor (fake quant folded)."""
        name, _ = self.resolve(node.input[i])
        p = self.producer.get(name)
        while p is not None and p.op_type in ("Identity", "Dropout"):
            name, _ = self.resolve(p.input[0])
            p = self.producer.get(name)
        return name

    def prod(self, name: str) -> onnx.NodeProto | None:
        return self.producer.get(name)

    def depends_on_input(self, name: str, graph_input: str) -> bool:
        """True if the values (not just the shape) of tensor `name` are computed from `graph_input`. An iterative walk:
        the recursive one exceeded Python's recursion limit on a 12-layer MPNet-base export."""
        stack, seen = [name], set()
        while stack:
            t = stack.pop()
            if t == graph_input:
                return True
            if t in seen or t in self.consts:
                continue
            seen.add(t)
            p = self.producer.get(t)
            if p is not None and p.op_type != "Shape":
                stack.extend(i for i in p.input if i)
        return False

    attr = staticmethod(_attr)
