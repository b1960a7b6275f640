"""The one ONNX graph walker: structural pattern matching on a LogicalGraph (Q/DQ pairs folded away).

Two layers:
- paths: ``match_parents`` / ``match_children`` follow a list of ``Step`` (op types, optional, repeated, which
  input to follow) from a tensor, skipping data-movement ops; a mismatch is a ``PatternMismatch`` naming the node
  and op found where the step expected another.
- layers: ``match_layer`` matches one encoder layer against a ``hf_fast.models.patterns.LayerPattern`` (the registry
  entry's ``layer``) and returns which node plays which part; ``find_layers`` finds every encoder layer of a graph.

Structure only: the same match runs on the fp32 graph (the exporter's quantizer picks its MatMuls from it) and on the
int8 QDQ graph (runtime/plan.py reads the weights and quantization of the matched nodes). Runtime-only: numpy and
graph.py, no onnxruntime.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from hf_fast.models import patterns as P
from hf_fast.runtime.graph import GraphMatchError, LogicalGraph

if TYPE_CHECKING:  # annotations only (see graph.py)
    import onnx

# ops that only move data around between two pattern anchors
PASS_OPS = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Contiguous", "Cast"})
# the ops of an exported erf GELU: x * (1 + erf(x / sqrt 2)) * 0.5, or the Gelu op (opset 20)
GELU_OPS = frozenset({"Div", "Mul", "Add", "Erf", "Gelu"})


class PatternMismatch(GraphMatchError):
    """The graph differs from a pattern: ``node`` is the node found where the pattern wanted another (None when
    there was none), ``step`` the index of the pattern step that failed."""

    def __init__(self, message: str, node: str | None = None, step: int | None = None):
        super().__init__(message)
        self.node = node
        self.step = step


def _name(node) -> str:
    return f"{node.op_type} {node.name!r}"


# ------------------------------------------------------------------ paths
@dataclass(frozen=True)
class Step:
    """One node of a path. ``follow`` (parents only): the input to walk on to, or a function (graph, node) -> input
    index that raises PatternMismatch when the node is not the expected one; None ends the path at this node.
    ``accept`` (children only): (graph, node, tensor) -> bool, to pick one consumer among several."""

    ops: tuple[str, ...]
    name: str | None = None            # the key the matched node is captured under
    follow: int | Callable | None = 0
    accept: Callable | None = None
    optional: bool = False
    repeat: bool = False               # match the step as often as it fits (0 times if optional)
    what: str | None = None            # for messages ("the residual Add"); default: the op types
    hint: str = ""                     # appended to the mismatch message

    def describe(self) -> str:
        return self.what or "/".join(self.ops)


@dataclass
class PathMatch:
    nodes: list = field(default_factory=list)       # every matched node, in walk order
    named: dict = field(default_factory=dict)       # Step.name -> node (a list for repeated steps)
    end: str = ""                                   # the tensor the walk stopped at

    def __getitem__(self, key):
        return self.named[key]

    def get(self, key, default=None):
        return self.named.get(key, default)


def _capture(m: PathMatch, step: Step, node) -> None:
    m.nodes.append(node)
    if step.name is not None:
        if step.repeat:
            m.named.setdefault(step.name, []).append(node)
        else:
            m.named[step.name] = node


def match_parents(g: LogicalGraph, tensor: str, steps: Sequence[Step], where: str, skip: frozenset = PASS_OPS,
                  limit: int = 64) -> PathMatch:
    """Walk producers from ``tensor`` through ``steps`` (data-movement ops in ``skip`` are stepped over)."""
    m, t, i, n = PathMatch(), tensor, 0, 0  # n: nodes matched by step i so far
    for _ in range(limit):
        if i == len(steps):
            break
        step = steps[i]
        p = g.prod(t)
        if p is not None and p.op_type in skip and p.op_type not in step.ops:
            t = g.src(p, 0)
            continue
        if p is not None and p.op_type in step.ops:
            _capture(m, step, p)
            if step.follow is None:
                m.end = t
                return m
            try:
                t = g.src(p, step.follow(g, p) if callable(step.follow) else step.follow)
            except PatternMismatch as e:
                e.step = i if e.step is None else e.step
                raise
            i, n = (i, n + 1) if step.repeat else (i + 1, 0)
            continue
        if step.optional or (step.repeat and n):
            i, n = i + 1, 0
            continue
        found = "a graph input or constant" if p is None else _name(p)
        raise PatternMismatch(f"{where}: expected {step.describe()} producing {t!r}, found {found}{step.hint}",
                              None if p is None else p.name, i)
    else:
        raise PatternMismatch(f"{where}: path longer than {limit} nodes from {tensor!r}", None, i)
    m.end = t
    return m


def match_children(g: LogicalGraph, tensor: str, steps: Sequence[Step], where: str, skip: frozenset = PASS_OPS,
                   limit: int = 64) -> PathMatch:
    """Walk consumers from ``tensor`` through ``steps``: each step takes the one consumer of its op types that
    ``accept`` agrees to (a tensor read by a single data-movement op is followed through it)."""
    m, t, i, n = PathMatch(), tensor, 0, 0  # n: nodes matched by step i so far
    for _ in range(limit):
        if i == len(steps):
            break
        step = steps[i]
        users = g.users(t)
        hits = [u for u in users if u.op_type in step.ops and (step.accept is None or step.accept(g, u, t))]
        passes = [u for u in users if u.op_type in skip]
        if not hits and len(passes) == 1 and len(users) == 1:
            t = passes[0].output[0]
            continue
        if len(hits) > 1:
            raise PatternMismatch(f"{where}: expected one {step.describe()} reading {t!r}, found "
                                  f"{', '.join(_name(u) for u in hits)}{step.hint}", hits[1].name, i)
        if hits:
            _capture(m, step, hits[0])
            t = hits[0].output[0]
            i, n = (i, n + 1) if step.repeat else (i + 1, 0)
            continue
        if step.optional or (step.repeat and n):
            i, n = i + 1, 0
            continue
        found = ", ".join(_name(u) for u in users) or "no consumer"
        raise PatternMismatch(f"{where}: expected {step.describe()} reading {t!r}, found {found}{step.hint}",
                              users[0].name if users else None, i)
    else:
        raise PatternMismatch(f"{where}: path longer than {limit} nodes from {tensor!r}", None, i)
    m.end = t
    return m


def find_downstream(g: LogicalGraph, starts: list[str], op: str, limit: int = 40) -> list[onnx.NodeProto]:
    """The nearest nodes of type ``op`` below ``starts`` (breadth first; the first level that has one)."""
    seen, frontier, found = set(), list(starts), []
    for _ in range(limit):
        nxt = []
        for t in frontier:
            for u in g.users(t):
                if u.name in seen:
                    continue
                seen.add(u.name)
                if u.op_type == op:
                    found.append(u)
                else:
                    nxt.extend(u.output)
        frontier = nxt
        if found or not frontier:
            break
    return found


# ------------------------------------------------------------------ Linear layers
def smooth_mul(g: LogicalGraph, node: onnx.NodeProto | None) -> tuple[str, np.ndarray] | None:
    """Mul(x, c) in either input order with c a constant per-channel vector (shape [K] or [1, .., K], K > 1):
    SmoothQuant's 1/s in front of a QuantizeLinear. Returns (x, c as float32 [K]) or None. A scalar Mul is not
    one (the exported GELU ends in Mul(., 0.5)); its length is checked against the Linear in plan.check_plan."""
    if node is None or node.op_type != "Mul" or len(node.input) != 2:
        return None
    consts = [g.float_weight(i) for i in node.input]
    ci = [i for i, c in enumerate(consts) if c is not None]
    if len(ci) != 1:
        return None
    c = consts[ci[0]]
    if c.ndim < 1 or c.size < 2 or any(d != 1 for d in c.shape[:-1]):
        return None
    if g.resolve(node.input[1 - ci[0]])[1] is not None:
        return None  # Mul of a fake-quantized tensor: not the engine's Q(x * 1/s)
    return g.src(node, 1 - ci[0]), np.ascontiguousarray(c.reshape(-1), dtype=np.float32)


def is_weight_matmul(g: LogicalGraph, n: onnx.NodeProto) -> bool:
    """A MatMul whose second input is a constant (fp32, or int8 through DequantizeLinear): a Linear layer."""
    return n.op_type == "MatMul" and g.weight(n.input[1]) is not None


def weight_matmuls(g: LogicalGraph, x: str) -> list[onnx.NodeProto]:
    """Weight MatMuls reading x (through their Q/DQ pair), directly or behind a smoothing Mul of x."""
    out = []
    for n in g.users(x):
        if is_weight_matmul(g, n) and g.src(n, 0) == x:
            out.append(n)
        elif (sm := smooth_mul(g, n)) is not None and sm[0] == x:
            out.extend(m for m in g.users(n.output[0]) if is_weight_matmul(g, m) and g.src(m, 0) == n.output[0])
    return out


def weight_width(w) -> int:
    """Output width of a MatMul weight [K, N] (a QuantWeight's int8 array or an fp32 array)."""
    shape = getattr(getattr(w, "q", w), "shape", ())
    if len(shape) != 2:  # a lying graph: a MatMul whose constant operand is no [K, N] matrix
        raise GraphMatchError(f"a Linear's MatMul weight must be a [K, N] matrix, got shape {tuple(shape)}")
    return int(shape[-1])


def bias_add(g: LogicalGraph, out: str, n_out: int) -> onnx.NodeProto | None:
    """The bias Add after a Linear's MatMul output ``out``: its only consumer, adding a constant of n_out values."""
    nxt = g.users(out)
    if len(nxt) == 1 and nxt[0].op_type == "Add":
        other = [i for i in nxt[0].input if g.resolve(i)[0] != out]
        c = g.float_weight(other[0]) if other else None
        if c is not None and c.size == n_out:
            return nxt[0]
    return None


def linear_output(g: LogicalGraph, mm: onnx.NodeProto) -> str:
    """The tensor a Linear hands on: its bias Add's output, or the MatMul's when it has no bias."""
    add = bias_add(g, mm.output[0], weight_width(g.weight(mm.input[1])))
    return (add if add is not None else mm).output[0]


def walk_back(g: LogicalGraph, t: str, stop: dict[str, str], scale: list[float]) -> str | None:
    """Walk producers through data-movement and scalar Mul/Div until a tensor in ``stop`` is met: its value (None if
    none); the scalar factors met are appended to ``scale``."""
    for _ in range(32):
        if t in stop:
            return stop[t]
        p = g.prod(t)
        if p is None:
            return None
        if p.op_type in PASS_OPS:
            t = g.src(p, 0)
        elif p.op_type in ("Mul", "Div"):
            consts = [g.float_weight(i) for i in p.input]
            ci = [i for i, c in enumerate(consts) if c is not None and c.size == 1]
            if len(ci) != 1:
                return None
            c = float(consts[ci[0]].reshape(()))
            scale.append(c if p.op_type == "Mul" else 1.0 / c)
            t = g.src(p, 1 - ci[0])
        else:
            return None
    return None


# ------------------------------------------------------------------ encoder layers
@dataclass
class AttentionMatch:
    scores: onnx.NodeProto            # MatMul(q, k^T)
    softmax: onnx.NodeProto
    context: onnx.NodeProto           # MatMul(probs, v)
    between: list                     # the mask / scale nodes between the scores MatMul and the Softmax
    scale_factors: list[float]        # the scalar factors on the scores, from the Softmax back
    pre_scale: list[float]            # scalar factors on q or k before the scores MatMul
    bias_add: onnx.NodeProto | None = None  # Attention(bias="relative"): the Add of the position bias
    bias_table: str | None = None     # ... and the [buckets, heads] initializer its Gather reads
    rope_theta: float | None = None   # Attention(rotary=True): the rotary base read from the inv_freq constant
    window: int = 0                   # Attention(window=True): keys with |i - j| <= window (0: global)

    @property
    def scale(self) -> float:
        """The score scale in all (1/sqrt(head size) in BERT)."""
        factors = self.scale_factors + self.pre_scale
        return float(np.prod(factors)) if factors else 1.0


@dataclass
class NormMatch:
    add: onnx.NodeProto               # the residual Add
    norm: onnx.NodeProto              # the LayerNormalization after it
    residual_input: int               # which input of the Add is the residual (the block input)


@dataclass
class LayerMatch:
    """Which node plays which part of one encoder layer (keys are the pattern's names)."""

    linears: dict[str, onnx.NodeProto] = field(default_factory=dict)   # role -> weight MatMul
    tensors: dict[str, str] = field(default_factory=dict)              # pattern name -> tensor
    attention: dict[str, AttentionMatch] = field(default_factory=dict)  # Attention.out -> match
    activations: dict[str, set] = field(default_factory=dict)           # Activation.out -> op types met
    norms: dict[str, NormMatch] = field(default_factory=dict)           # ResidualNorm.name -> match
    pre_norms: dict[str, onnx.NodeProto | None] = field(default_factory=dict)  # Norm.name -> its LN (None: none)
    residuals: dict[str, tuple] = field(default_factory=dict)           # Residual.name -> (Add, residual input)
    output: str = ""


def _mask_input(g: LogicalGraph, p: onnx.NodeProto, where: str) -> int:
    """The data input of an attention-mask Add/Where (the scores depend on input_ids, the mask does not), or the
    non-constant input of a scalar Mul/Div (the score scale)."""
    if p.op_type in ("Add", "Where"):
        data = [i for i in range(len(p.input)) if g.depends_on_input(p.input[i], "input_ids")]
        if p.op_type == "Where":
            data = [i for i in data if i > 0]
        if len(data) != 1:
            raise PatternMismatch(f"{where}: attention mask node {p.name!r} is not the standard additive mask", p.name)
        return data[0]
    ci = [i for i, c in enumerate(g.float_weight(i) for i in p.input) if c is not None and c.size == 1]
    if len(ci) != 1:
        raise PatternMismatch(f"{where}: unexpected {p.op_type} {p.name!r} before Softmax (not a scalar scale)",
                              p.name)
    return 1 - ci[0]


# ops between a relative-position bias table's Gather and the scores Add ([S, S, heads] -> [B, heads, S, S])
_BIAS_LAYOUT_OPS = PASS_OPS | {"Expand"}


def relative_bias_table(g: LogicalGraph, t: str) -> str | None:
    """The initializer of the [buckets, heads] table whose Gather (by indices computed from the sequence positions,
    never from the token ids' values) gives tensor ``t`` through layout ops only: MPNet's position_bias. None when
    ``t`` is not one."""
    for _ in range(16):
        p = g.prod(t)
        if p is None:
            return None
        if p.op_type in _BIAS_LAYOUT_OPS:
            t = g.src(p, 0)
            continue
        if p.op_type != "Gather" or len(p.input) != 2 or g.attr(p, "axis", 0) != 0:
            return None
        table = g.consts.get(p.input[0])
        if table is None or table.ndim != 2 or not np.issubdtype(table.dtype, np.floating):
            return None
        # the bucket indices depend on the sequence length only: every path from input_ids goes through a Shape
        return p.input[0] if not g.depends_on_input(p.input[1], "input_ids") else None
    return None


def _scalar_factor(g: LogicalGraph, p: onnx.NodeProto) -> float:
    c = next(c for c in (g.float_weight(i) for i in p.input) if c is not None and c.size == 1)
    c = float(c.reshape(()))
    return c if p.op_type == "Mul" else 1.0 / c



# ------------------------------------------------------------------ ModernBERT's ops: GELU, rotary, fused qkv, window
def _scalar(g: LogicalGraph, t: str) -> float | None:
    c = g.float_weight(t)
    return float(c.reshape(-1)[0]) if c is not None and c.size == 1 else None


def erf_gelu_output(g: LogicalGraph, t: str) -> str | None:
    """The output of an exact (erf) GELU of t, as a Gelu op or as torch exports it (x * (1 + erf(x / sqrt 2)) *
    0.5): ELECTRA's and ModernBERT's heads, ModernBERT's GeGLU. None when t's consumers are not that."""
    us = [u for u in g.users(t) if u.op_type != "Shape"]
    if len(us) == 1 and us[0].op_type == "Gelu":
        approx = g.attr(us[0], "approximate", "none")
        return us[0].output[0] if approx in ("none", b"none") else None
    if len(us) != 2:
        return None

    def const_operand(node, value):  # node = op(other, c) with the scalar constant c == value (either order)
        return len(node.input) == 2 and any(c is not None and abs(c - value) < 1e-4
                                            for c in (_scalar(g, i) for i in node.input))

    def only_user(tensor, op):
        vs = [v for v in g.users(tensor) if v.op_type != "Shape"]
        return vs[0] if len(vs) == 1 and vs[0].op_type == op else None

    div = next((u for u in us if u.op_type == "Div" and g.src(u, 0) == t and const_operand(u, np.sqrt(2.0))), None)
    mul = next((u for u in us if u.op_type == "Mul" and t in (g.src(u, 0), g.src(u, 1))), None)
    erf = only_user(div.output[0], "Erf") if div is not None else None
    add = only_user(erf.output[0], "Add") if erf is not None else None
    if mul is None or add is None or not const_operand(add, 1.0) or add.output[0] not in (g.src(mul, 0), g.src(mul, 1)):
        return None
    half = only_user(mul.output[0], "Mul")
    return half.output[0] if half is not None and const_operand(half, 0.5) else None


def _through(g: LogicalGraph, t: str, ops: frozenset = PASS_OPS) -> str:
    """Walk producers of t through ``ops`` (data movement): the tensor they move."""
    for _ in range(16):
        p = g.prod(t)
        if p is None or p.op_type not in ops:
            return t
        t = g.src(p, 0)
    return t


def _slice_starts_at_zero(g: LogicalGraph, sl: onnx.NodeProto) -> bool:
    c = g.float_weight(sl.input[1]) if len(sl.input) > 1 else None
    return c is not None and c.size == 1 and int(c.reshape(-1)[0]) == 0


def _slice_last_axis(g: LogicalGraph, sl: onnx.NodeProto, rank: int) -> bool:
    c = g.float_weight(sl.input[3]) if len(sl.input) > 3 and sl.input[3] else None
    return c is not None and c.size == 1 and int(c.reshape(-1)[0]) in (-1, rank - 1)


def _rope_table_theta(g: LogicalGraph, t: str, trig: str, where: str) -> tuple[str, float]:
    """cos / sin table t of a rotary embedding: (the frequency tensor it takes the ``trig`` of, the base theta).
    The table is trig(concat(f, f)) times 1.0 (attention_scaling), f = positions (Range 0..S-1) * inv_freq with
    inv_freq = theta ** (-2i / d), what the engine's rope table computes; anything else is refused by name."""
    for _ in range(16):
        p = g.prod(t)
        if p is None:
            break
        if p.op_type in PASS_OPS:
            t = g.src(p, 0)
        elif p.op_type == "Mul" and any(_scalar(g, i) is not None for i in p.input):
            c = next(_scalar(g, i) for i in p.input if _scalar(g, i) is not None)
            if c != 1.0:
                raise PatternMismatch(f"{where}: rotary table scaled by {c} (a rope type with attention scaling); the "
                                      "engine runs default RoPE", p.name)
            t = next(g.src(p, i) for i in range(2) if _scalar(g, p.input[i]) is None)
        else:
            break
    p = g.prod(t)
    if p is None or p.op_type != trig:
        raise PatternMismatch(f"{where}: expected the rotary {trig} table, found "
                              f"{'a graph input or constant' if p is None else _name(p)}", getattr(p, "name", None))
    cat = g.prod(g.src(p, 0)) if p.input else None
    if cat is None or cat.op_type != "Concat" or len(cat.input) != 2 or g.src(cat, 0) != g.src(cat, 1):
        raise PatternMismatch(f"{where}: the rotary angles are not concat(freqs, freqs) (rotate_half layout)",
                              getattr(cat, "name", None))
    freqs = _through(g, g.src(cat, 0))
    mul = g.prod(freqs)
    inv = [g.float_weight(i) for i in mul.input] if mul is not None and mul.op_type == "Mul" else []
    ci = [k for k, c in enumerate(inv) if c is not None and c.size > 1]
    if len(ci) != 1:
        raise PatternMismatch(f"{where}: expected positions * inv_freq (a constant vector) under the rotary table",
                              getattr(mul, "name", None))
    inv_freq = inv[ci[0]].reshape(-1).astype(np.float64)
    rng = g.prod(_through(g, g.src(mul, 1 - ci[0])))
    start, delta = ((_scalar(g, rng.input[0]), _scalar(g, rng.input[2]))
                    if rng is not None and rng.op_type == "Range" and len(rng.input) == 3 else (None, None))
    if start != 0 or delta != 1:
        raise PatternMismatch(f"{where}: the rotary positions are not 0, 1, .., S-1 (a Range from 0 by 1); the engine "
                              "rotates token t by position t", mul.name)
    d = 2 * inv_freq.size
    # inv_freq is fp32: its base comes back to ~1e-7; the configs give round bases (10000, 160000)
    theta = float(f"{inv_freq[1] ** (-d / 2.0):.6g}") if inv_freq.size > 1 and inv_freq[1] > 0 else float("nan")
    want = theta ** (-np.arange(0, d, 2) / d) if np.isfinite(theta) else None
    if want is None or not np.allclose(inv_freq, want, rtol=1e-4, atol=0):
        raise PatternMismatch(f"{where}: inv_freq of the rotary table is not theta ** (-2i / d) for one theta (a rope "
                              "type the engine does not run)", mul.name)
    return g.src(cat, 0), theta


def rotary_source(g: LogicalGraph, t: str, where: str) -> tuple[str, float] | None:
    """t = x * cos + rotate_half(x) * sin (through data movement ops), rotate_half(x) = concat(-x[.., d/2:],
    x[.., :d/2]): (the tensor x, the theta of its tables). None when t is not produced by that Add."""
    add = g.prod(_through(g, t))
    if add is None or add.op_type != "Add":
        return None
    if len(add.input) != 2:
        return None
    muls = [g.prod(g.src(add, i)) for i in range(2)]
    if any(m is None or m.op_type != "Mul" or len(m.input) != 2 for m in muls):
        return None
    x = rot = cos = sin = None
    for m in muls:
        for i in range(2):
            data = _through(g, g.src(m, i))
            cat = g.prod(data)
            if cat is not None and cat.op_type == "Concat" and len(cat.input) == 2:
                neg = g.prod(g.src(cat, 0))
                if neg is not None and neg.op_type == "Neg":
                    rot, sin = cat, g.src(m, 1 - i)
                    break
        else:
            continue
        break
    if rot is None:
        return None
    m_cos = next((m for m in muls if rot.output[0] not in {_through(g, g.src(m, 0)), _through(g, g.src(m, 1))}),
                 None)
    if m_cos is None:
        return None
    srcs = [g.src(m_cos, i) for i in range(2)]
    from_ids = [g.depends_on_input(s, "input_ids") for s in srcs]
    if from_ids.count(True) != 1:
        return None
    x, cos = _through(g, srcs[from_ids.index(True)]), srcs[from_ids.index(False)]
    neg = g.prod(g.src(rot, 0))
    hi = g.prod(g.src(neg, 0)) if neg is not None and neg.input else None  # Neg(Slice(x, d/2:))
    lo = g.prod(g.src(rot, 1))                     # Slice(x, :d/2)
    if (hi is None or lo is None or hi.op_type != "Slice" or lo.op_type != "Slice" or _through(g, g.src(hi, 0)) != x
            or _through(g, g.src(lo, 0)) != x or not _slice_starts_at_zero(g, lo)
            or not all(_slice_last_axis(g, sl, 4) for sl in (hi, lo))):
        raise PatternMismatch(f"{where}: rotary Add {add.name!r}: rotate_half is not concat(-x[.., d/2:], x[.., :d/2]) "
                              "of the rotated tensor", add.name)
    f_cos, theta = _rope_table_theta(g, cos, "Cos", where)
    f_sin, theta_s = _rope_table_theta(g, sin, "Sin", where)
    if f_cos != f_sin:
        raise PatternMismatch(f"{where}: rotary Add {add.name!r}: cos and sin come from different angles", add.name)
    return x, theta


def split_part(g: LogicalGraph, t: str) -> tuple[onnx.NodeProto, int] | None:
    """(the Split, the index of its output) that tensor t is, through data movement ops; None when it is not one."""
    t = _through(g, t)
    p = g.prod(t)
    if p is None or p.op_type != "Split":
        return None
    return p, list(p.output).index(t)


def mask_window(g: LogicalGraph, t: str, where: str) -> int:
    """The sliding window a mask tensor applies: w when it is built from LessOrEqual(Abs(key - query), w)
    (transformers' bidirectional sliding-window mask), 0 when it compares no position distance."""
    seen, stack, found = set(), [t], []
    while stack and len(seen) < 400:
        u = stack.pop()
        if u in seen:
            continue
        seen.add(u)
        p = g.prod(u)
        if p is None:
            continue
        if p.op_type in ("LessOrEqual", "Less", "Greater", "GreaterOrEqual") and len(p.input) == 2:
            a = g.prod(g.src(p, 0))
            if a is not None and a.op_type == "Abs" or any(
                    (q := g.prod(g.src(p, i))) is not None and q.op_type == "Abs" for i in range(len(p.input))):
                w = _scalar(g, p.input[1])
                sub = g.prod(g.src(a, 0)) if a is not None and a.op_type == "Abs" and a.input else None
                if p.op_type != "LessOrEqual" or w is None or sub is None or sub.op_type != "Sub" or w < 0 \
                        or w != int(w):
                    raise PatternMismatch(f"{where}: attention mask compares a position distance with {_name(p)}; the "
                                          "engine runs |key - query| <= window (LessOrEqual of Abs(Sub) and a "
                                          "constant)", p.name)
                if w < 1:
                    raise PatternMismatch(f"{where}: attention mask keeps only |key - query| <= {w}; the engine's "
                                          "windows are >= 1 (0 means global)", p.name)
                found.append(int(w))
        stack.extend(i for i in p.input if i)
    if len(set(found)) > 1:
        raise PatternMismatch(f"{where}: attention mask applies several windows {sorted(set(found))}")
    return found[0] if found else 0


class _LayerWalk:
    """State of one match_layer call: the named tensors so far and the Linears not yet told apart."""

    def __init__(self, g: LogicalGraph, x: str, pattern: P.LayerPattern, where: str, check_input):
        self.g, self.pattern, self.where, self.check_input = g, pattern, where, check_input
        self.m = LayerMatch(tensors={"x": x})
        self.pending: dict[str, dict[str, onnx.NodeProto]] = {}  # src name -> {Linear output tensor: MatMul}

    def fail(self, message: str, step: int, node: str | None = None):
        raise PatternMismatch(f"{self.where}: {message}", node, step)

    # a group of Linears reading one tensor is matched at its first step and assigned roles as they are used
    def linear(self, s: P.Linear, i: int) -> None:
        g = self.g
        if s.src in self.pending:
            return
        roles = [ln.name for ln in self.pattern.linears if ln.src == s.src]
        t = self.m.tensors[s.src]
        if self.check_input is not None:
            self.check_input(t, f"{self.where} {s.src} input")
        mms = weight_matmuls(g, t)
        if len(mms) != len(roles):
            found = f": {', '.join(repr(n.name) for n in mms)}" if mms else ""
            self.fail(f"expected {len(roles)} Linear projection{'s' if len(roles) > 1 else ''} ({', '.join(roles)}) "
                      f"of {s.src} ({t!r}), found {len(mms)}{found}", i, mms[0].name if mms else None)
        if len(mms) == 1:
            self.m.linears[s.name] = mms[0]
            self.m.tensors[s.name] = linear_output(g, mms[0])
        else:
            self.pending[s.src] = {linear_output(g, mm): mm for mm in mms}

    def assign(self, role: str, out: str, step: int) -> None:
        src = next((ln.src for ln in self.pattern.linears if ln.name == role), None)
        if out not in self.pending.get(src, {}):
            self.fail(f"{role} is {out!r}, not the output of a Linear reading {src}", step)
        self.m.linears[role] = self.pending[src].pop(out)
        self.m.tensors[role] = out

    def candidates(self, names: Sequence[str]) -> list[str]:
        """The tensors ``names`` may be: their own when already known, else the outputs of their pending group."""
        out: list[str] = []
        for n in names:
            if n in self.m.tensors:
                out.append(self.m.tensors[n])
            else:
                src = next((ln.src for ln in self.pattern.linears if ln.name == n), None)
                out.extend(self.pending.get(src, {}))
        return list(dict.fromkeys(out))

    def attention(self, s: P.Attention, i: int) -> None:
        g = self.g
        cand = self.candidates((s.q, s.k, s.v))
        softmaxes = find_downstream(g, cand, "Softmax")
        if len(softmaxes) != 1:
            self.fail(f"expected one Softmax in self-attention, found {len(softmaxes)}"
                      + (f": {', '.join(repr(n.name) for n in softmaxes)}" if softmaxes else ""), i,
                      softmaxes[1].name if len(softmaxes) > 1 else None)
        sm = softmaxes[0]
        bias: dict[str, tuple] = {}  # Attention(bias="relative"): the bias Add and its table

        def follow(gg, p):
            if p.op_type == "Add":
                tables = [relative_bias_table(gg, i) for i in p.input]
                hit = [k for k, tb in enumerate(tables) if tb is not None]
                if len(hit) == 1:
                    if s.bias != "relative":
                        raise PatternMismatch(f"{self.where}: Add {p.name!r} adds a relative-position bias (table "
                                              f"{tables[hit[0]]!r}) to the attention scores; the {self.pattern.name} "
                                              "has none", p.name)
                    if bias:
                        raise PatternMismatch(f"{self.where}: two relative-position bias Adds on the attention scores "
                                              f"({bias['add'][0].name!r}, {p.name!r})", p.name)
                    bias["add"] = (p, tables[hit[0]])
                    return 1 - hit[0]
            return _mask_input(gg, p, self.where)

        # Softmax <- [Add/Where mask, Mul/Div scale, in any order] <- MatMul(q, k^T)
        path = match_parents(g, g.src(sm, 0), (
            Step(("Add", "Where", "Mul", "Div"), "between", follow=follow, optional=True, repeat=True),
            Step(("MatMul",), "scores", follow=None, what="the attention scores MatMul(q, k^T)")), self.where)
        between, score = path.get("between", []), path["scores"]
        factors = [_scalar_factor(g, p) for p in between if p.op_type in ("Mul", "Div")]
        bias_add, bias_table = bias.get("add", (None, None))
        if s.bias == "relative":
            if bias_add is None:
                self.fail(f"expected a relative-position bias Add on the attention scores ({self.pattern.name}), found "
                          f"{', '.join(_name(p) for p in between) or 'none'} between the scores and the Softmax", i,
                          score.name)
            # the engine adds the bias to the scaled scores: no scale may come after it (closer to the Softmax)
            after = between[:between.index(bias_add)]
            if any(p.op_type in ("Mul", "Div") for p in after):
                self.fail(f"the scores are scaled after the relative-position bias Add {bias_add.name!r}; the engine "
                          "adds the bias to the scaled scores", i, bias_add.name)
        stop = {t: t for t in cand}
        pre: list[float] = []  # scale factors applied to q or k before the scores MatMul
        t = sm.output[0]  # the probabilities, through data movement (ModernBERT's Casts back to the query dtype)
        for _ in range(8):
            ctx = next((u for u in g.users(t) if u.op_type == "MatMul"), None)
            passes = [u for u in g.users(t) if u.op_type in PASS_OPS]
            if ctx is not None or len(passes) != 1:
                break
            t = passes[0].output[0]
        if ctx is None:
            self.fail(f"no MatMul consumes the attention probabilities of Softmax {sm.name!r}", i, sm.name)
        masks = [p for p in between if p.op_type in ("Add", "Where") and p is not bias_add]
        window = 0
        for p in masks:  # the inputs other than the scores: what the mask is computed from
            data = _mask_input(g, p, self.where)
            for k, inp in enumerate(p.input):
                if k != data and inp:
                    window = max(window, mask_window(g, inp, self.where))
        if window and not s.window:
            self.fail(f"the attention mask is a sliding window of {window}; the {self.pattern.name} attends globally",
                      i, masks[0].name)
        theta = None
        if s.q == s.k == s.v:  # one fused projection: q, k, v are the parts of one Split of its output
            theta = self.fused_qkv(s, score, ctx, i)
            self.m.attention[s.out] = AttentionMatch(score, sm, ctx, list(between), factors, pre, bias_add,
                                                     bias_table, theta, window)
            self.m.tensors[s.out] = self.context_tensor(ctx)
            return
        q_out = walk_back(g, g.src(score, 0), stop, pre)
        k_out = walk_back(g, g.src(score, 1), stop, pre)
        v_out = walk_back(g, g.src(ctx, 1), stop, [])
        if None in (q_out, k_out, v_out) or len({q_out, k_out, v_out}) != 3:
            self.fail("could not tell the Q, K and V projections apart (walking back from the attention MatMuls "
                      f"{score.name!r} and {ctx.name!r})", i, score.name)
        for role, out in ((s.q, q_out), (s.k, k_out), (s.v, v_out)):
            if role not in self.m.tensors:
                self.assign(role, out, i)
            elif self.m.tensors[role] != out:
                self.fail(f"the attention reads {out!r} where the pattern has {role}", i)
        self.m.attention[s.out] = AttentionMatch(score, sm, ctx, list(between), factors, pre, bias_add, bias_table,
                                                 None, window)
        self.m.tensors[s.out] = self.context_tensor(ctx)

    def context_tensor(self, ctx: onnx.NodeProto) -> str:
        """Follow the head merge (Transpose/Reshape) from the context MatMul to the tensor the output projection
        reads."""
        g, t = self.g, ctx.output[0]
        for _ in range(8):
            if weight_matmuls(g, t):
                break
            passes = [u for u in g.users(t) if u.op_type in PASS_OPS]
            if len(passes) != 1:
                break
            t = passes[0].output[0]
        return t

    def fused_qkv(self, s: P.Attention, score: onnx.NodeProto, ctx: onnx.NodeProto, i: int) -> float | None:
        """q, k and v of a fused projection: outputs 0, 1, 2 of one Split of its output (ModernBERT's
        view(.., 3, heads, d).unbind), q and k rotated when the pattern says so (the same theta). Returns it."""
        g = self.g
        qkv = self.m.tensors[s.q]
        thetas, parts = [], []
        for name, t in (("q", g.src(score, 0)), ("k", g.src(score, 1)), ("v", g.src(ctx, 1))):
            rot = rotary_source(g, t, self.where) if name != "v" else None
            if rot is not None:
                if not s.rotary:
                    self.fail(f"{name} is rotated (rotary position embeddings); the {self.pattern.name} has none", i)
                t, theta = rot
                thetas.append(theta)
            elif s.rotary and name != "v":
                p = g.prod(_through(g, t))
                self.fail(f"expected rotary position embeddings on {name} (x * cos + rotate_half(x) * sin), found "
                          f"{'a graph input' if p is None else _name(p)}", i, getattr(p, "name", None))
            part = split_part(g, t)
            if part is None:
                p = g.prod(_through(g, t))
                self.fail(f"{name} of the attention is not a part of the fused projection's Split (found "
                          f"{'a graph input' if p is None else _name(p)})", i, getattr(p, "name", None))
            parts.append(part)
        splits = {id(p[0]) for p in parts}
        sp = parts[0][0]
        axis = g.attr(sp, "axis", 0)
        if len(splits) != 1 or [p[1] for p in parts] != [0, 1, 2] or len(sp.output) != 3 or axis not in (2, -3):
            self.fail(f"q, k, v are not parts 0, 1, 2 of one Split of the fused projection (axis 2 of its [B, S, 3, "
                      f"heads, d] view): Split {sp.name!r} axis {axis}, parts {[p[1] for p in parts]}", i, sp.name)
        if _through(g, g.src(sp, 0)) != qkv:
            self.fail(f"Split {sp.name!r} does not split the output of the fused projection {s.q}", i, sp.name)
        if thetas and len(set(thetas)) != 1:
            self.fail(f"q and k are rotated with different thetas {thetas}", i)
        return thetas[0] if thetas else None

    def activation(self, s: P.Activation, i: int) -> None:
        if s.kind == "geglu":
            return self.geglu(s, i)
        g = self.g
        ops, frontier, nxt_mm, seen = set(), [self.m.tensors[s.src]], None, set()
        while frontier and nxt_mm is None:
            nxt = []
            for t in frontier:
                for u in g.users(t):
                    if u.name in seen:
                        continue
                    seen.add(u.name)
                    if is_weight_matmul(g, u):
                        nxt_mm = u
                        break
                    if u.op_type not in GELU_OPS:
                        self.fail(f"unsupported FFN activation op {u.op_type} ({u.name!r}); the engine runs the "
                                  "exact (erf) GELU", i, u.name)
                    ops.add(u.op_type)
                    nxt.extend(u.output)
            frontier = nxt
        if nxt_mm is None or not ({"Erf"} <= ops or "Gelu" in ops):
            self.fail(f"expected GELU (erf form) between the FFN projections, found {sorted(ops)}", i)
        tail = g.prod(g.src(nxt_mm, 0))
        sm = smooth_mul(g, tail)
        out = sm[0] if sm is not None else g.src(nxt_mm, 0)
        tail = g.prod(out)
        tail_c = [c for c in (g.float_weight(t) for t in tail.input) if c is not None] if tail is not None else []
        # the erf GELU ends in a Mul, by 0.5 when by a constant (torch: x * (1 + erf(x / sqrt 2)) * 0.5)
        if tail is None or tail.op_type not in ("Mul", "Gelu") or any(
                c.size != 1 or float(c.reshape(-1)[0]) != 0.5 for c in tail_c):
            self.fail(f"unsupported {getattr(tail, 'op_type', None)} {getattr(tail, 'name', None)!r} between the "
                      "GELU and the FFN output projection", i, getattr(tail, "name", None))
        self.m.activations[s.out] = ops
        self.m.tensors[s.out] = out

    def geglu(self, s: P.Activation, i: int) -> None:
        """GELU(a) * g over the halves of the source: a = Slice(x, 0, m), g = Slice(x, m, ..) on the last axis (the
        first half is the GELU input, as ModernBertMLP's chunk(2) exports), then one Mul."""
        g = self.g
        t = self.m.tensors[s.src]
        users = [u for u in g.users(t) if u.op_type != "Shape"]
        slices = [u for u in users if u.op_type == "Slice"]
        if len(slices) != 2 or len(users) != 2:
            self.fail(f"expected GeGLU's two Slices of {s.src} ({t!r}), found {', '.join(_name(u) for u in users)}", i,
                      users[0].name if users else None)
        a = next((sl for sl in slices if _slice_starts_at_zero(g, sl)), None)
        b = next((sl for sl in slices if sl is not a), None)
        if a is None or b is None or len(b.input) < 2 or b.input[1] != a.input[2] or not all(
                _slice_last_axis(g, sl, 3) for sl in slices):
            self.fail(f"the Slices of {s.src} are not its two halves along the last axis (the second starting where "
                      "the first ends)", i, slices[0].name)
        act = erf_gelu_output(g, a.output[0])
        if act is None:
            self.fail(f"expected the exact (erf) GELU of the first half of {s.src} (GeGLU); the engine runs that",
                      i, a.name)
        muls = [u for u in g.users(act) if u.op_type == "Mul"]
        mul = next((m for m in muls if {g.src(m, 0), g.src(m, 1)} == {act, b.output[0]}), None)
        if mul is None or len(g.users(act)) != 1:
            self.fail(f"expected GELU(first half) * second half of {s.src} (GeGLU's gate)", i,
                      muls[0].name if muls else None)
        self.m.activations[s.out] = {"Slice", "Erf", "Mul"}
        self.m.tensors[s.out] = mul.output[0]

    def norm(self, s: P.Norm, i: int) -> None:
        """A pre-LN block start: the one LayerNormalization of src whose output the next attention reads (or, when
        optional, src itself). Neither: src starts no layer (the final LayerNorm before a task head)."""
        g = self.g
        t = self.m.tensors[s.src]
        lns = [u for u in g.users(t) if u.op_type == "LayerNormalization"]
        if not any(u.op_type == "Add" for u in g.users(t)):  # a pre-LN block input is also its residual
            self.fail(f"{s.src} ({t!r}) is not read by a residual Add: it starts no pre-LN block", i,
                      lns[0].name if lns else None)
        # a layer's first LayerNorm leads to its attention: the final LayerNorm before a head (also read by a weight
        # MatMul, the head's dense) does not, and there the layers end
        leads = lambda x: bool(weight_matmuls(g, x)) and (i > 0 or bool(find_downstream(g, [x], "Softmax")))  # noqa: E731
        if len(lns) == 1 and leads(lns[0].output[0]):
            self.m.pre_norms[s.name] = lns[0]
            self.m.tensors[s.name] = lns[0].output[0]
        elif s.optional and not lns and leads(t):
            self.m.pre_norms[s.name] = None
            self.m.tensors[s.name] = t
        else:
            found = ", ".join(_name(u) for u in g.users(t)) or "no consumer"
            self.fail(f"expected a LayerNormalization of {s.src} ({t!r}) before the attention, found {found}", i,
                      lns[0].name if lns else None)

    def residual(self, s: P.Residual, i: int) -> None:
        g = self.g
        t, residual = self.m.tensors[s.src], self.m.tensors[s.residual]
        path = match_children(g, t, (
            Step(("Add",), "add", accept=lambda gg, u, _t: {gg.src(u, 0), gg.src(u, 1)} == {t, residual},
                 what=f"a residual Add of {s.src} and {s.residual} ({residual!r})"),), f"{self.where} {s.name}")
        add = path["add"]
        self.m.residuals[s.name] = (add, 0 if g.src(add, 0) == residual else 1)
        self.m.tensors[s.name] = add.output[0]

    def residual_norm(self, s: P.ResidualNorm, i: int) -> None:
        g = self.g
        t, residual = self.m.tensors[s.src], self.m.tensors[s.residual]
        path = match_children(g, t, (
            Step(("Add",), "add", accept=lambda gg, u, _t: {gg.src(u, 0), gg.src(u, 1)} == {t, residual},
                 what=f"a residual Add of {s.src} and {s.residual} ({residual!r})"),
            Step(("LayerNormalization",), "norm", what="LayerNormalization after the residual Add",
                 hint=" (export with opset >= 17 so LayerNorm stays one op)")), f"{self.where} {s.name}")
        add = path["add"]
        self.m.norms[s.name] = NormMatch(add, path["norm"], 0 if g.src(add, 0) == residual else 1)
        self.m.tensors[s.name] = path["norm"].output[0]

    def run(self) -> LayerMatch:
        kinds = {P.Linear: self.linear, P.Attention: self.attention, P.Activation: self.activation,
                 P.ResidualNorm: self.residual_norm, P.Norm: self.norm, P.Residual: self.residual}
        for i, step in enumerate(self.pattern.steps):
            try:
                kinds[type(step)](step, i)
            except PatternMismatch as e:
                e.step = i  # also for a path matched inside step i
                raise
        left = [n.name for group in self.pending.values() for n in group.values()]
        if left:
            self.fail(f"Linear MatMuls {left} are read by no step of the {self.pattern.name}", len(self.pattern.steps))
        self.m.output = self.m.tensors[self.pattern.output]
        return self.m


def match_layer(g: LogicalGraph, x: str, pattern: P.LayerPattern = P.POST_LN, where: str = "encoder layer",
                check_input: Callable[[str, str], None] | None = None) -> LayerMatch:
    """Match one encoder layer whose input is tensor ``x``. ``check_input(tensor, where)`` is called on the input of
    every Linear group before its MatMuls are counted (the plan refuses ops the engine would skip there).
    PatternMismatch.step is 0 when the layer's first step does not fit: ``x`` does not start a layer."""
    return _LayerWalk(g, x, pattern, where, check_input).run()


def match_layers(g: LogicalGraph, x: str, pattern: P.LayerPattern = P.POST_LN,
                 check_input: Callable[[str, str], None] | None = None) -> tuple[list[LayerMatch], str, str]:
    """The chain of encoder layers from ``x``: (matches, the last layer's output, why the chain stopped)."""
    layers: list[LayerMatch] = []
    while True:
        try:
            m = match_layer(g, x, pattern, f"encoder layer {len(layers)}", check_input)
        except PatternMismatch as e:
            if e.step == 0:
                return layers, x, str(e)
            raise
        layers.append(m)
        x = m.output


def find_layers(g: LogicalGraph, pattern: P.LayerPattern = P.POST_LN) -> list[LayerMatch]:
    """Every encoder layer of the graph: the chain from the first tensor that starts a layer (whatever comes before
    it: embeddings, a projection). Empty when no tensor does."""
    for n in g.nodes:
        for t in n.output:
            if t and g.users(t):
                try:
                    first = match_layer(g, t, pattern, "encoder layer 0")
                except PatternMismatch as e:
                    if e.step == 0:
                        continue
                    raise
                rest, _, _ = match_layers(g, first.output, pattern)
                return [first, *rest]
    return []
