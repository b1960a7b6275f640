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
    return int(getattr(w, "q", w).shape[-1])


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
        q_out = walk_back(g, g.src(score, 0), stop, pre)
        k_out = walk_back(g, g.src(score, 1), stop, pre)
        ctx = next((u for u in g.users(sm.output[0]) if u.op_type == "MatMul"), None)
        if ctx is None:
            self.fail(f"no MatMul consumes the attention probabilities of Softmax {sm.name!r}", i, sm.name)
        v_out = walk_back(g, g.src(ctx, 1), stop, [])
        if None in (q_out, k_out, v_out) or len({q_out, k_out, v_out}) != 3:
            self.fail("could not tell the Q, K and V projections apart (walking back from the attention MatMuls "
                      f"{score.name!r} and {ctx.name!r})", i, score.name)
        for role, out in ((s.q, q_out), (s.k, k_out), (s.v, v_out)):
            if role not in self.m.tensors:
                self.assign(role, out, i)
            elif self.m.tensors[role] != out:
                self.fail(f"the attention reads {out!r} where the pattern has {role}", i)
        # the context: follow the head merge (Transpose/Reshape) to the tensor the output projection reads
        t = ctx.output[0]
        for _ in range(8):
            if weight_matmuls(g, t):
                break
            passes = [u for u in g.users(t) if u.op_type in PASS_OPS]
            if len(passes) != 1:
                break
            t = passes[0].output[0]
        self.m.attention[s.out] = AttentionMatch(score, sm, ctx, list(between), factors, pre, bias_add, bias_table)
        self.m.tensors[s.out] = t

    def activation(self, s: P.Activation, i: int) -> None:
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
                 P.ResidualNorm: self.residual_norm}
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
