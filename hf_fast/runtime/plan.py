"""Recognise a BERT-family encoder in a (QDQ int8) ONNX graph and turn it into an engine plan.

The plan is plain numpy: int8 weights in PyTorch layout [out, in] with per-channel scales, the
activation quantization (scale, zero point) in front of every encoder Linear, LayerNorm and
embedding tables, and a small fp32 head program. Anything the engine cannot run exactly raises
GraphMatchError naming the node or pattern: the engine never guesses.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from hf_fast.models import patterns, registry
from hf_fast.models.spec import POOLING_HEAD_OPS
from hf_fast.runtime import walker
from hf_fast.runtime.graph import FakeQuant, GraphMatchError, LogicalGraph, QuantWeight
from hf_fast.runtime.walker import PASS_OPS as _PASS
from hf_fast.runtime.walker import find_downstream as _find_downstream

if TYPE_CHECKING:  # annotations only (see graph.py)
    import onnx

    from hf_fast.models.spec import Family

# the inputs the matchers index without further checks, per op (at least this many, all named)
_ARITY = {"MatMul": 2, "Mul": 2, "Add": 2, "Div": 2, "Sub": 2, "Gather": 2, "Gemm": 2, "Slice": 3, "Where": 3,
          "QuantizeLinear": 2, "DequantizeLinear": 2, "LayerNormalization": 2}

@dataclass
class LinearPlan:
    name: str
    weight: np.ndarray             # int8 [N, K] (PyTorch layout)
    w_scale: np.ndarray            # float32 [N]
    bias: np.ndarray               # float32 [N]
    in_quant: FakeQuant            # quantization of the input activations
    out_quant: FakeQuant | None = None  # fake-quant point on the MatMul output (before bias), if any
    # SmoothQuant (hf_fast.export.smooth): float32 [K] 1/s the input is multiplied by, in fp32, right before
    # in_quant (a Mul by a constant vector in front of the QuantizeLinear); None when the graph has none
    in_mul: np.ndarray | None = None


@dataclass
class LayerNormPlan:
    gamma: np.ndarray
    beta: np.ndarray
    eps: float


@dataclass
class AttentionQuant:
    """Fake-quant points on the inputs of the attention MatMuls (an artifact exported with quantize_attention):
    the engine then runs q k^T and p v on uint8 values with exact int32 sums (hf_attention_q8)."""
    q: FakeQuant
    k: FakeQuant
    p: FakeQuant  # the softmax probabilities
    v: FakeQuant


@dataclass
class AttentionBiasPlan:
    """MPNet's relative-position attention bias: one [buckets, heads] table shared by every layer, indexed by the
    bucket of key - query (spec.EngineLayer relative_buckets / relative_max_distance) and added to the scaled
    scores. The engine builds the [heads, 2S - 1] bias of each sequence length from it (hf_relative_position_bias)."""
    table: np.ndarray              # float32 [buckets, heads]
    buckets: int
    max_distance: int


@dataclass
class LayerPlan:
    q: LinearPlan
    k: LinearPlan
    v: LinearPlan
    attn_out: LinearPlan
    ln1: LayerNormPlan
    ffn_in: LinearPlan
    ffn_out: LinearPlan
    ln2: LayerNormPlan
    scale: float                   # attention score scale (1/sqrt(d) in BERT)
    activation: str = "gelu"      # "geglu": ffn_in has 2F rows (the GELU input, then the gate)
    # the residual Adds read the fake-quantized tensor (a Q/DQ pair shared with the MatMul, as ONNX
    # Runtime's QDQ quantizer writes it): in_fq for the layer input, mid_fq for the attention LN output
    in_fq: bool = False
    mid_fq: bool = False
    attn_quant: AttentionQuant | None = None  # None: fp32 attention
    bias_table: str | None = None  # the initializer of the relative-position bias this layer adds (None: none)
    # pre-LN families (ModernBERT): ln1 is the attention LayerNorm (None: the layer has none), ln2 the FFN's; q / k / v
    # are the row blocks of the fused Wqkv (one input quantizer)
    window: int = 0                # sliding-window attention: keys with |i - j| <= window (0: global)
    rope_theta: float | None = None  # rotary q / k with this base (None: no rotary)


@dataclass
class EmbeddingPlan:
    word: np.ndarray               # [vocab, H]
    position: np.ndarray | None    # [max_pos, H]; None: rotary positions (no table)
    token_type: np.ndarray | None  # [type_vocab, H] or None
    ln: LayerNormPlan
    # RoBERTa: position ids = padding_idx + 1 + t for the (right-padded) real tokens; `position`
    # then holds the table from row padding_idx + 1 on, and pad tokens must be masked out.
    padding_idx: int | None = None
    # ELECTRA's embeddings_project: fp32 [H, E] and [H] after the LayerNorm (the tables are E wide); None: none
    project_weight: np.ndarray | None = None
    project_bias: np.ndarray | None = None


@dataclass
class HeadOp:
    kind: str                      # "cls" | "linear" | "tanh" | "relu" | "gelu" | "layernorm" | POOLING_HEAD_OPS
    weight: np.ndarray | None = None  # fp32 [N, K]; "layernorm": gamma [width]
    bias: np.ndarray | None = None    # "layernorm": beta [width]
    eps: float = 0.0                  # "layernorm"


@dataclass
class EncoderPlan:
    hidden: int
    heads: int
    embeddings: EmbeddingPlan
    layers: list[LayerPlan]
    head: list[HeadOp]
    outputs: dict[str, tuple[int, int]]  # graph output -> column range of the head's last output
    token_level: bool                    # head output per token ([B, S, n]) or per sequence ([B, n])
    inputs: list[str] = field(default_factory=list)
    model_type: str | None = None        # the registry family it was matched for (its EngineLayer); None: detected
    attention_bias: AttentionBiasPlan | None = None  # the relative-position bias every layer adds (MPNet)
    final_norm: LayerNormPlan | None = None  # pre-LN families: the LayerNorm after the last layer
    # the longest sequence, when no position table bounds it (rotary positions: fast_config max_sequence_length)
    max_positions: int | None = None

    @property
    def ffn(self) -> int:
        """F: the FFN width (ffn_in has 2F rows with GeGLU)."""
        if not self.layers:
            return 0
        w = self.layers[0].ffn_in.weight  # None once a NativeEngine holds the packed copy; bias is [F] too
        rows = (w if w is not None else self.layers[0].ffn_in.bias).shape[0]
        return rows // 2 if self.layers[0].activation == "geglu" else rows


# ------------------------------------------------------------------ helpers
def _feeds_quantized_matmul(g: LogicalGraph, t: str) -> bool:
    """t -> QuantizeLinear -> DequantizeLinear -> weight MatMul."""
    for q in g.consumers.get(t, []):
        if q.op_type != "QuantizeLinear":
            continue
        for dq in g.consumers.get(q.output[0], []):
            if dq.op_type == "DequantizeLinear" and any(walker.is_weight_matmul(g, m) for m in g.users(dq.output[0])):
                return True
    return False


def _check_quant_inputs(g: LogicalGraph, t: str, where: str) -> None:
    """The engine quantizes t itself, optionally times a smoothing vector: any other op between t and the
    QuantizeLinear of an encoder Linear would be silently skipped, so it is refused by name."""
    for u in g.users(t):
        if u.op_type == "MatMul" or walker.smooth_mul(g, u) is not None:
            continue
        if any(_feeds_quantized_matmul(g, o) for o in u.output):
            raise GraphMatchError(f"{where}: unsupported {u.op_type} {u.name!r} between {t!r} and the QuantizeLinear "
                                  "of an encoder Linear; the engine runs only a Mul by a constant per-channel vector "
                                  "(SmoothQuant) there")


def _linear_from_matmul(g: LogicalGraph, mm: onnx.NodeProto) -> tuple[LinearPlan, str]:
    """A weight MatMul (+ bias Add) -> LinearPlan and the fp32 tensor after the bias."""
    w = g.weight(mm.input[1])
    if not isinstance(w, QuantWeight):
        raise GraphMatchError(f"MatMul {mm.name!r} has a float weight: the engine runs int8 (QDQ) artifacts; "
                              "export with hf_fast.export to quantize the encoder Linear layers")
    if w.q.ndim != 2:
        raise GraphMatchError(f"MatMul {mm.name!r}: weight must be 2-D, got {w.q.shape}")
    if np.any(w.zero_point != 0):
        raise GraphMatchError(f"MatMul {mm.name!r}: weight zero point must be 0 (symmetric int8)")
    k_in, n_out = w.q.shape
    scale = w.scale.reshape(-1)
    if scale.size == 1:
        scale = np.full(n_out, float(scale[0]), np.float32)
    elif w.axis not in (1, -1) or scale.size != n_out:
        raise GraphMatchError(f"MatMul {mm.name!r}: per-channel scales must run along the output axis")
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise GraphMatchError(f"MatMul {mm.name!r}: weight scales must be positive and finite")
    x_in, in_q = g.resolve(mm.input[0])
    if in_q is None:
        raise GraphMatchError(f"MatMul {mm.name!r}: its input is not quantized (no QuantizeLinear/DequantizeLinear)")
    p = g.prod(x_in)
    smooth = walker.smooth_mul(g, p)
    # no producer of a quantized Linear input applies a constant tensor, except SmoothQuant's Mul
    if smooth is None and p is not None and p.op_type in ("Mul", "Add", "Sub", "Div") and any(
            c is not None and c.size > 1 for c in (g.float_weight(i) for i in p.input)):
        raise GraphMatchError(f"MatMul {mm.name!r}: unsupported {p.op_type} {p.name!r} by a constant tensor before its "
                              "QuantizeLinear; the engine runs only a Mul by a constant per-channel vector "
                              "(SmoothQuant) there")
    out = mm.output[0]
    out_q = None
    # the quantizer may put a fake-quant point right on the MatMul output
    for u in g.consumers.get(out, []):
        if u.op_type == "QuantizeLinear":
            for dq in g.consumers.get(u.output[0], []):
                r = g.fake_quant_of(dq.output[0]) if dq.op_type == "DequantizeLinear" else None
                if r is not None:
                    out_q = r[1]
    bias = np.zeros(n_out, np.float32)
    add = walker.bias_add(g, out, n_out)
    if add is not None:
        c = g.float_weight(next(i for i in add.input if g.resolve(i)[0] != out))
        bias = c.reshape(-1).astype(np.float32)
        out = add.output[0]
    plan = LinearPlan(mm.name, np.ascontiguousarray(w.q.T), scale.astype(np.float32), bias, in_q, out_q,
                      None if smooth is None else smooth[1])
    return plan, out


def _ln_plan(g: LogicalGraph, ln: onnx.NodeProto) -> LayerNormPlan:
    axis = g.attr(ln, "axis", -1)
    if axis != -1 and axis != 2:
        raise GraphMatchError(f"LayerNormalization {ln.name!r} normalises axis {axis}, expected the last axis")
    gamma = g.float_weight(ln.input[1])
    beta = g.float_weight(ln.input[2]) if len(ln.input) > 2 and ln.input[2] else None
    if gamma is None:
        raise GraphMatchError(f"LayerNormalization {ln.name!r}: scale is not a constant")
    if beta is None:
        beta = np.zeros_like(gamma)
    return LayerNormPlan(gamma.reshape(-1).copy(), beta.reshape(-1).copy(), float(g.attr(ln, "epsilon", 1e-5)))


# ------------------------------------------------------------------ embeddings
def _match_embeddings(g: LogicalGraph, input_ids: str, family: Family | None = None) -> tuple[EmbeddingPlan, str]:
    """The embedding sum and its LayerNorm. ``family`` (the registry entry of fast_config.json "model_type") says
    whether positions are absolute or padding-offset; without it (an artifact of an unknown model type) a position
    table whose ids are computed from input_ids is taken for RoBERTa's padding offset."""
    gathers = [n for n in g.nodes if n.op_type == "Gather" and len(n.input) == 2 and n.input[0] in g.consts
               and g.consts[n.input[0]].ndim == 2
               and np.issubdtype(g.consts[n.input[0]].dtype, np.floating)]
    word = next((n for n in gathers if g.src(n, 1) == input_ids or g.depends_on_input(n.input[1], input_ids)), None)
    if word is None:
        raise GraphMatchError("no embedding Gather reads input_ids: not a BERT-family encoder")
    lns = _find_downstream(g, [word.output[0]], "LayerNormalization")
    if not lns:
        raise GraphMatchError("embeddings: expected LayerNormalization after the embedding sum")
    ln = lns[0]
    # every Gather feeding the LayerNorm's Add tree
    tables = {}
    stack, seen = [g.src(ln, 0)], set()
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        p = g.prod(t)
        if p is None:
            continue
        if p.op_type == "Add":
            stack.extend(g.src(p, i) for i in range(2))
        elif p.op_type in _PASS:
            stack.append(g.src(p, 0))
        elif p in gathers:
            tables[p.name] = p
        else:
            raise GraphMatchError(f"embeddings: unexpected {p.op_type} node {p.name!r} in the embedding sum")
    position = token_type = padding_idx = None
    tt_input = "token_type_ids" if "token_type_ids" in g.inputs else None
    rule = family.engine.position if family is not None else None
    for n in tables.values():
        if n is word:
            continue
        table = g.consts[n.input[0]]
        from_ids = g.depends_on_input(n.input[1], input_ids)
        if tt_input and g.depends_on_input(n.input[1], tt_input):
            token_type = table
        elif rule is None and from_ids and "position" in n.input[0]:  # unknown family: detected
            padding_idx = _roberta_padding_idx(g, input_ids)
            position = table[padding_idx + 1:]
        elif "token_type" in n.input[0]:
            token_type = table  # buffered all-zero token types: the engine uses type 0
        elif rule == "padding-offset":
            if not from_ids:
                raise GraphMatchError(f"embeddings: {family.description} positions count real tokens (padding "
                                      f"offset), but the ids of position table {n.input[0]!r} do not depend on "
                                      "input_ids")
            padding_idx = _roberta_padding_idx(g, input_ids)
            position = table[padding_idx + 1:]
        elif rule == "absolute" and from_ids:
            raise GraphMatchError(f"embeddings: {family.description} has absolute positions, but the ids of table "
                                  f"{n.input[0]!r} are computed from input_ids")
        else:
            position = table
    if position is None and rule != "rotary":
        raise GraphMatchError("embeddings: no position embedding table found")
    if position is not None and rule == "rotary":
        raise GraphMatchError(f"embeddings: {family.description} has rotary positions, the graph adds a position "
                              f"table")
    if family is not None and (token_type is not None) != family.engine.token_types:
        want, got = ("a", "no") if family.engine.token_types else ("no", "a")
        raise GraphMatchError(f"embeddings: {family.description} adds {want} token-type embedding, the graph {got}")
    wt = g.consts[word.input[0]].astype(np.float32)
    return EmbeddingPlan(wt, None if position is None else position.astype(np.float32),
                         None if token_type is None else token_type.astype(np.float32), _ln_plan(g, ln),
                         padding_idx), ln.output[0]


def _roberta_padding_idx(g: LogicalGraph, input_ids: str) -> int:
    """padding_idx of RoBERTa's position ids (input_ids != pad).cumsum() * mask + pad, read from the
    Equal/NotEqual that compares input_ids with a constant; refuse any other position computation."""
    for n in g.nodes:
        if n.op_type in ("Equal", "NotEqual") and input_ids in n.input:
            other = n.input[1] if n.input[0] == input_ids else n.input[0]
            c = g.consts.get(other)
            if c is not None and c.size == 1:
                return int(c.reshape(()))
    raise GraphMatchError("embeddings: position ids are computed from input_ids but not by the RoBERTa "
                          "padding-offset pattern (input_ids != padding_idx) the engine knows")


def _match_embeddings_project(g: LogicalGraph, x: str, emb: EmbeddingPlan, family: Family | None) -> str:
    """ELECTRA's embeddings_project: the embeddings LayerNorm output feeds one fp32 MatMul (+ bias Add) from the
    embedding width to the hidden size. Fills emb.project_*; returns the tensor the encoder reads."""
    us = [u for u in g.users(x) if u.op_type != "Shape"]
    if len(us) != 1 or us[0].op_type != "MatMul" or g.src(us[0], 0) != x:
        return x
    mm = us[0]
    w = g.weight(mm.input[1])
    if isinstance(w, QuantWeight):
        raise GraphMatchError(f"embeddings: the projection MatMul {mm.name!r} is quantized; the engine runs it in fp32 "
                              "(export with hf_fast.export, which leaves it float)")
    w = g.float_weight(mm.input[1])
    if w is None or w.ndim != 2 or w.shape[0] != emb.word.shape[1]:
        return x  # not a projection of the embeddings: the layer matcher names what it finds
    if family is not None and not family.engine.embeddings_project:
        raise GraphMatchError(f"embeddings: {family.description} has no embeddings projection, the graph projects "
                              f"the embeddings with {mm.name!r}")
    b, out = np.zeros(w.shape[1], np.float32), mm.output[0]
    nxt = [v for v in g.users(out) if v.op_type != "Shape"]
    if len(nxt) == 1 and nxt[0].op_type == "Add":
        other = [i for i in nxt[0].input if g.resolve(i)[0] != out]
        c = g.float_weight(other[0]) if other else None
        if c is not None and c.size == w.shape[1]:
            b, out = c.reshape(-1).astype(np.float32), nxt[0].output[0]
    emb.project_weight = np.ascontiguousarray(w.T, dtype=np.float32)
    emb.project_bias = np.ascontiguousarray(b, dtype=np.float32)
    return out


# ------------------------------------------------------------------ encoder layers
def _match_layer(g: LogicalGraph, x: str, idx: int, heads: int,
                 pattern: patterns.LayerPattern = patterns.POST_LN) -> tuple[LayerPlan, str]:
    """One encoder layer: the walker matches ``pattern`` (the family's registry entry) from ``x``, then the
    weights and quantization of the matched nodes are read and checked against what the engine runs."""
    where = f"encoder layer {idx}"
    m = walker.match_layer(g, x, pattern, where, lambda t, w: _check_quant_inputs(g, t, w))
    return _layer_plan(g, m, pattern, where, heads), m.output


def _split_qkv(qkv: LinearPlan, where: str) -> tuple[LinearPlan, LinearPlan, LinearPlan]:
    """The fused Wqkv as three LinearPlans of its row blocks q, k, v (one input quantizer: the engine stacks them back
    into one GEMM, engine._stack_qkv)."""
    import dataclasses

    n = qkv.weight.shape[0]
    if n % 3 or qkv.out_quant is not None:
        raise GraphMatchError(f"{where}: fused qkv {qkv.name!r} has {n} rows (not 3 x hidden) or a fake-quantized "
                              "output")
    h = n // 3
    return tuple(dataclasses.replace(qkv, weight=qkv.weight[k * h:(k + 1) * h], w_scale=qkv.w_scale[k * h:(k + 1) * h],
                                     bias=qkv.bias[k * h:(k + 1) * h]) for k in range(3))


def _attention_checks(g: LogicalGraph, att: walker.AttentionMatch, where: str) -> AttentionQuant | None:
    """fp32 scores; the fake-quant points of an int8-attention artifact (None: fp32 attention)."""
    if g.resolve(att.softmax.input[0])[1] is not None:
        raise GraphMatchError(f"{where}: the Softmax input is fake-quantized; the engine runs the scores in fp32")
    for p in att.between:
        if p.op_type in ("Mul", "Div") and any(g.resolve(i)[1] is not None for i in p.input
                                               if g.float_weight(i) is None):
            raise GraphMatchError(f"{where}: the attention scores are fake-quantized at {p.name!r}; the engine "
                                  "runs them in fp32")
    attn_quant = _attention_quant(g, att.scores, att.context, where)
    if attn_quant is not None and att.pre_scale:
        raise GraphMatchError(f"{where}: q or k is scaled before its QuantizeLinear; the engine's int8 attention "
                              "quantizes the projection outputs and scales the scores")
    return attn_quant


def _attention_scale(att: walker.AttentionMatch, q_rows: int, heads: int, where: str) -> float:
    factors = att.scale_factors + att.pre_scale  # in today's order: the float product is bit-for-bit the same
    att_scale = float(np.prod(factors)) if factors else 1.0
    d = q_rows // heads
    if q_rows % heads or abs(att_scale * np.sqrt(d) - 1.0) > 1e-3:
        raise GraphMatchError(f"{where}: attention scale {att_scale:.6g} does not match heads={heads} "
                              f"(head size {d}): the config does not match the graph")
    return att_scale


def _pre_ln_layer_plan(g: LogicalGraph, m: walker.LayerMatch, pattern: patterns.LayerPattern, where: str,
                       heads: int) -> LayerPlan:
    """A pre-LN layer (ModernBERT): LN1 (or none) -> fused qkv [rotary] -> attention [window] -> attn_out -> + x;
    LN2 -> ffn_in -> GeGLU / GELU -> ffn_out -> + h."""
    lin = {role: _linear_from_matmul(g, mm)[0] for role, mm in m.linears.items()}
    if set(lin) != {"qkv", "attn_out", "ffn_in", "ffn_out"} or set(m.pre_norms) != {"ln1", "ln2"} \
            or len(m.attention) != 1 or len(m.residuals) != 2:
        raise GraphMatchError(f"{where}: the engine runs a pre-LN layer (Linears qkv, attn_out, ffn_in, ffn_out; "
                              f"norms ln1, ln2; one attention); {pattern.name} gives {sorted(lin)}, "
                              f"{sorted(m.pre_norms)}")
    if m.pre_norms["ln2"] is None:
        raise GraphMatchError(f"{where}: the FFN has no LayerNorm")
    for name, (add, r) in m.residuals.items():
        if g.resolve(add.input[r])[1] is not None or g.resolve(add.input[1 - r])[1] is not None:
            raise GraphMatchError(f"{where} {name}: the residual Add reads a fake-quantized tensor; the engine's "
                                  "pre-LN residuals are fp32")
    att = next(iter(m.attention.values()))
    if _attention_checks(g, att, where) is not None:
        raise GraphMatchError(f"{where}: int8 attention (quantize_attention) with a pre-LN / rotary layer; the engine "
                              "quantizes q / k before it could rotate them, so it runs these layers' attention in fp32 "
                              "only (export without quantize_attention)")
    q, k, v = _split_qkv(lin["qkv"], where)
    act = next(s.kind for s in pattern.steps if isinstance(s, patterns.Activation))
    ln1 = m.pre_norms["ln1"]
    return LayerPlan(q, k, v, lin["attn_out"], None if ln1 is None else _ln_plan(g, ln1), lin["ffn_in"],
                     lin["ffn_out"], _ln_plan(g, m.pre_norms["ln2"]), _attention_scale(att, q.weight.shape[0], heads,
                                                                                         where),
                     activation=act, window=att.window, rope_theta=att.rope_theta)


def _layer_plan(g: LogicalGraph, m: walker.LayerMatch, pattern: patterns.LayerPattern, where: str,
                heads: int) -> LayerPlan:
    if any(isinstance(s, patterns.Norm) for s in pattern.steps):
        return _pre_ln_layer_plan(g, m, pattern, where, heads)
    lin = {role: _linear_from_matmul(g, mm)[0] for role, mm in m.linears.items()}
    missing = [r for r in ("q", "k", "v", "attn_out", "ffn_in", "ffn_out") if r not in lin]
    if missing or set(m.norms) != {"ln1", "ln2"} or len(m.attention) != 1:
        raise GraphMatchError(f"{where}: the engine runs a post-LN layer (Linears q, k, v, attn_out, ffn_in, "
                              f"ffn_out; norms ln1, ln2; one attention); {pattern.name} gives {sorted(lin)}, "
                              f"{sorted(m.norms)}")
    att = next(iter(m.attention.values()))
    attn_quant = _attention_checks(g, att, where)
    att_scale = _attention_scale(att, lin["q"].weight.shape[0], heads, where)
    # a residual Add may read its input through the Q/DQ pair of the Linear that reads the same tensor
    first_reader = {}
    for s in pattern.linears:
        first_reader.setdefault(s.src, s.name)
    norms, fq = {}, {}
    for s in pattern.steps:
        if isinstance(s, patterns.ResidualNorm):
            nm = m.norms[s.name]
            reader = first_reader.get(s.residual)
            norms[s.name], fq[s.name] = _residual_norm_plan(g, nm, f"{where} {s.name}",
                                                            lin[reader].in_quant if reader else None)
    return LayerPlan(lin["q"], lin["k"], lin["v"], lin["attn_out"], norms["ln1"], lin["ffn_in"], lin["ffn_out"],
                     norms["ln2"], att_scale, in_fq=fq["ln1"], mid_fq=fq["ln2"], attn_quant=attn_quant,
                     bias_table=att.bias_table)


def _residual_norm_plan(g: LogicalGraph, nm: walker.NormMatch, where: str,
                        residual_quant: FakeQuant | None) -> tuple[LayerNormPlan, bool]:
    """The LayerNorm after a residual Add, and whether the Add reads the residual through a Q/DQ pair (which must
    then be `residual_quant`, the one the engine applies to the input of the Linear reading the same tensor)."""
    _, fq = g.resolve(nm.add.input[nm.residual_input])
    if fq is not None and (residual_quant is None or fq.scale != residual_quant.scale
                           or fq.zero_point != residual_quant.zero_point):
        raise GraphMatchError(f"{where}: the residual is fake-quantized with (scale {fq.scale}, zero point "
                              f"{fq.zero_point}), not like the input of the next Linear; the engine cannot "
                              "reproduce that graph")
    return _ln_plan(g, nm.norm), fq is not None


def _attention_quant(g: LogicalGraph, score: onnx.NodeProto, ctx: onnx.NodeProto, where: str) -> AttentionQuant | None:
    """The fake-quant points on the four attention MatMul inputs: all four (int8 attention) or none (fp32). Any
    other mix is a graph the engine cannot reproduce, and so is a fake-quant point on either MatMul's output."""
    fqs = {name: g.resolve(node.input[i])[1]
           for name, node, i in (("q", score, 0), ("k", score, 1), ("p", ctx, 0), ("v", ctx, 1))}
    got = [n for n, fq in fqs.items() if fq is not None]
    for mm in (score, ctx):
        if any(u.op_type == "QuantizeLinear" for u in g.consumers.get(mm.output[0], [])):
            raise GraphMatchError(f"{where}: the output of attention MatMul {mm.name!r} is fake-quantized; the engine "
                                  "keeps it in fp32")
    if not got:
        return None
    if len(got) != 4:
        raise GraphMatchError(f"{where}: the attention MatMuls quantize only {', '.join(got)} of q, k, p, v; "
                              "the engine runs int8 attention with all four quantized or none")
    return AttentionQuant(**fqs)


# ------------------------------------------------------------------ task head
_head_gelu = walker.erf_gelu_output  # ELECTRA's and ModernBERT's classification heads


def _match_head(g: LogicalGraph, x: str) -> tuple[list[HeadOp], dict[str, tuple[int, int]], bool]:
    ops: list[HeadOp] = []
    token_level = True
    t = x
    width = None
    for _ in range(32):
        if t in g.outputs:
            return ops, {t: (0, width)}, token_level
        gelu_out = _head_gelu(g, t)
        if gelu_out is not None:
            ops.append(HeadOp("gelu"))
            t = gelu_out
            continue
        us = [u for u in g.users(t) if u.op_type != "Shape"]
        if len(us) != 1:
            raise GraphMatchError(f"task head: tensor {t!r} has {len(us)} consumers; expected a single chain")
        u = us[0]
        if u.op_type == "Gather":
            idx = g.float_weight(u.input[1])
            if g.attr(u, "axis", 0) != 1 or idx is None or idx.size != 1 or int(idx.reshape(())) != 0:
                raise GraphMatchError(f"task head: Gather {u.name!r} is not the [CLS] token selection")
            ops.append(HeadOp("cls"))
            token_level = False
            t = u.output[0]
        elif u.op_type == "Slice":
            starts, ends = g.float_weight(u.input[1]), g.float_weight(u.input[2])
            axes = g.float_weight(u.input[3]) if len(u.input) > 3 and u.input[3] else None
            if axes is None or list(axes.astype(int).reshape(-1)) != [1] or int(starts.reshape(-1)[0]) != 0 \
                    or int(ends.reshape(-1)[0]) != 1:
                raise GraphMatchError(f"task head: Slice {u.name!r} is not the [CLS] token selection")
            ops.append(HeadOp("cls"))
            token_level = False
            t = u.output[0]
        elif u.op_type in _PASS:
            t = u.output[0]
        elif u.op_type in ("MatMul", "Gemm"):
            w = g.float_weight(u.input[1])
            if w is None or w.ndim != 2:
                raise GraphMatchError(f"task head: {u.op_type} {u.name!r} has a non-constant or non-2-D weight")
            if u.op_type == "Gemm":
                if g.attr(u, "alpha", 1.0) != 1.0 or g.attr(u, "beta", 1.0) != 1.0 or g.attr(u, "transA", 0):
                    raise GraphMatchError(f"task head: Gemm {u.name!r} with alpha/beta/transA is not supported")
                w = w if g.attr(u, "transB", 0) else w.T
                b = g.float_weight(u.input[2]) if len(u.input) > 2 and u.input[2] else None
                t = u.output[0]
            else:
                w = w.T
                b, t = None, u.output[0]
                nxt = [v for v in g.users(t) if v.op_type != "Shape"]
                if len(nxt) == 1 and nxt[0].op_type == "Add":
                    other = [i for i in nxt[0].input if g.resolve(i)[0] != t]
                    c = g.float_weight(other[0]) if other else None
                    if c is not None and c.size == w.shape[0]:
                        b, t = c, nxt[0].output[0]
            b = np.zeros(w.shape[0], np.float32) if b is None else b.reshape(-1).astype(np.float32)
            ops.append(HeadOp("linear", np.ascontiguousarray(w, dtype=np.float32), b))
            width = w.shape[0]
        elif u.op_type in ("Tanh", "Relu"):
            ops.append(HeadOp(u.op_type.lower()))
            t = u.output[0]
        elif u.op_type == "LayerNormalization":  # ModernBERT's head.norm
            ln = _ln_plan(g, u)
            ops.append(HeadOp("layernorm", ln.gamma.astype(np.float32), ln.beta.astype(np.float32), ln.eps))
            t = u.output[0]
        elif u.op_type == "Split":
            outs = {}
            axis = g.attr(u, "axis", 0)
            if axis not in (-1, 2) or width is None:
                raise GraphMatchError(f"task head: Split {u.name!r} must split the last axis of a linear output")
            sizes = g.float_weight(u.input[1]) if len(u.input) > 1 and u.input[1] else None
            n = len(u.output)
            sizes = [width // n] * n if sizes is None else [int(s) for s in sizes.reshape(-1)]
            start = 0
            for o, s in zip(u.output, sizes, strict=False):
                end_t = o
                for _ in range(4):
                    if end_t in g.outputs:
                        break
                    vs = [v for v in g.users(end_t) if v.op_type in _PASS]
                    if len(vs) != 1:
                        break
                    end_t = vs[0].output[0]
                if end_t not in g.outputs:
                    raise GraphMatchError(f"task head: Split output {o!r} does not reach a graph output")
                outs[end_t] = (start, start + s)
                start += s
            return ops, outs, token_level
        else:
            raise GraphMatchError(f"task head: unsupported op {u.op_type} ({u.name!r})")
    raise GraphMatchError("task head: graph output not reached")


def build_plan(model: onnx.ModelProto, num_heads: int, model_type: str | None = None,
               task: str | None = None, max_positions: int | None = None) -> EncoderPlan:
    """Match the whole graph; raises GraphMatchError naming the first thing that does not fit.

    ``model_type`` / ``task`` (fast_config.json): the registry family's position rule and token types, and its head
    program for the task, are checked against what the graph computes. An artifact without them, or of a model type
    the registry does not know, is matched by detection alone. ``max_positions`` (fast_config.json
    max_sequence_length): the longest sequence of a family with rotary positions, which has no table to bound it."""
    family = registry.find(model_type)
    g = LogicalGraph(model)
    if "input_ids" not in g.inputs:
        raise GraphMatchError(f"graph inputs {g.inputs} lack 'input_ids'")
    unknown = [i for i in g.inputs if i not in ("input_ids", "attention_mask", "token_type_ids")]
    if unknown:
        raise GraphMatchError(f"unsupported graph inputs {unknown}")
    bad = next((n for n in g.nodes if n.op_type in _ARITY and (len(n.input) < _ARITY[n.op_type]
                                                                 or not all(n.input[:_ARITY[n.op_type]]))), None)
    if bad is not None:  # a rewired node: refused here rather than misread by the matchers below
        raise GraphMatchError(f"{bad.op_type} {bad.name!r} has inputs {list(bad.input)}, expected at least "
                              f"{_ARITY[bad.op_type]}")
    emb, x = _match_embeddings(g, "input_ids", family)
    x = _match_embeddings_project(g, x, emb, family)
    hidden = emb.word.shape[1] if emb.project_weight is None else emb.project_weight.shape[0]
    if hidden % num_heads:
        raise GraphMatchError(f"hidden size {hidden} is not divisible by num_heads={num_heads}")
    pattern = family.layer if family is not None else patterns.POST_LN
    pre_ln = any(isinstance(s, patterns.Norm) for s in pattern.steps)
    if emb.position is None and (not isinstance(max_positions, int) or isinstance(max_positions, bool)
                                 or max_positions < 1):
        raise GraphMatchError(f"rotary positions: the plan needs the longest sequence (fast_config.json "
                              f"max_sequence_length), got {max_positions!r}")
    layers = []
    while True:
        if not pre_ln:  # a pre-LN layer's input feeds its LayerNorm: the walker checks each Linear's input instead
            _check_quant_inputs(g, x, f"layer {len(layers)} input")
        try:
            layer, x = _match_layer(g, x, len(layers), num_heads, pattern)
        except walker.PatternMismatch as e:
            if e.step != 0:  # x starts a layer that then differs from the pattern
                raise
            if not layers:
                raise GraphMatchError(f"no encoder layer found after the embeddings ({e})") from e
            stop = e  # x does not start another layer: the task head follows
            break
        layers.append(layer)
    final_norm = None
    if pre_ln:
        x, final_norm = _match_final_norm(g, x, len(layers))
    try:
        head, outputs, token_level = _match_head(g, x)
    except GraphMatchError as e:  # also say why the layers ended there: a broken layer reads as a strange head
        raise GraphMatchError(f"{e} (after {len(layers)} encoder layers; another does not start there: {stop})") from e
    want = family.heads.get(task) if family is not None and task else None
    if want is not None and tuple(op.kind for op in head) != want.ops:
        raise GraphMatchError(f"task head: {family.description}'s {task} head is {'/'.join(want.ops)} "
                              f"({', '.join(want.modules)}), the graph computes {'/'.join(op.kind for op in head)}")
    missing = [o for o in g.outputs if o not in outputs]
    if missing:
        raise GraphMatchError(f"graph outputs {missing} are not produced by a recognised task head")
    plan = EncoderPlan(hidden, num_heads, emb, layers, head, outputs, token_level, list(g.inputs),
                       family.model_type if family is not None else None,
                       _attention_bias(g, layers, family, num_heads), final_norm,
                       max_positions if emb.position is None else None)
    check_plan(plan)
    return plan


def _match_final_norm(g: LogicalGraph, x: str, n_layers: int) -> tuple[str, LayerNormPlan]:
    """A pre-LN encoder ends in one LayerNormalization of the last layer's output (ModernBERT's final_norm)."""
    us = [u for u in g.users(x) if u.op_type != "Shape"]
    if len(us) != 1 or us[0].op_type != "LayerNormalization" or g.src(us[0], 0) != x:
        raise GraphMatchError(f"pre-LN encoder: expected the final LayerNormalization of the output of layer "
                              f"{n_layers - 1} ({x!r}), found {', '.join(f'{u.op_type} {u.name!r}' for u in us)}")
    return us[0].output[0], _ln_plan(g, us[0])


def _attention_bias(g: LogicalGraph, layers: list[LayerPlan], family: Family | None,
                    heads: int) -> AttentionBiasPlan | None:
    """The relative-position bias table the layers add (MPNet): one table shared by every layer, [R, heads] with R at
    least the family's bucket count (MPNet's bucketing uses 32 buckets whatever relative_attention_num_buckets)."""
    names = {layer.bias_table for layer in layers}
    if names == {None}:
        return None
    eng = family.engine if family is not None else None
    if eng is None or eng.attention_bias != "relative":
        raise GraphMatchError("the attention scores get a relative-position bias the family does not declare")
    if len(names) != 1:
        raise GraphMatchError(f"the layers add different relative-position bias tables {sorted(map(str, names))}; the "
                              "engine runs one table shared by every layer")
    name = names.pop()
    table = g.consts[name]
    if table.ndim != 2 or table.shape[1] != heads or table.shape[0] < eng.relative_buckets:
        raise GraphMatchError(f"relative-position bias table {name!r} has shape {table.shape}, expected "
                              f"[>= {eng.relative_buckets} buckets, {heads} heads]")
    return AttentionBiasPlan(np.ascontiguousarray(table[:eng.relative_buckets], dtype=np.float32),
                             eng.relative_buckets, eng.relative_max_distance)


def check_plan(plan: EncoderPlan, weights_packed: bool = False) -> None:
    """Every array the C engine will read has exactly the shape it assumes (the C side sees only pointers and
    the dimensions of the plan, so a table or LayerNorm vector of another length would be read out of bounds).
    weights_packed: the Linear weights come packed from the pack cache (None here; engine.py checks those)."""
    H, emb = plan.hidden, plan.embeddings

    def shape(a, want, what):
        if not isinstance(a, np.ndarray) or a.shape != tuple(want):
            got = getattr(a, "shape", type(a).__name__)
            raise GraphMatchError(f"{what} has shape {got}, expected {tuple(want)} (hidden size {H})")

    def eps(v, what):
        if not (np.isfinite(v) and v > 0):
            raise GraphMatchError(f"{what}: LayerNorm epsilon {v} must be a positive finite number")

    if H <= 0 or plan.heads <= 0 or H % plan.heads:
        raise GraphMatchError(f"hidden size {H} is not divisible by num_heads={plan.heads}")
    if emb.word.ndim != 2 or emb.word.shape[0] < 1:
        raise GraphMatchError(f"word embedding table has shape {emb.word.shape}")
    E = H  # the embedding width: H, or the input width of the embeddings projection
    if emb.project_weight is not None:
        if not isinstance(emb.project_weight, np.ndarray) or emb.project_weight.ndim != 2:
            raise GraphMatchError(f"embeddings projection has shape {getattr(emb.project_weight, 'shape', None)}")
        E = emb.project_weight.shape[1]
        shape(emb.project_weight, (H, E), "embeddings projection weight")
        shape(emb.project_bias, (H,), "embeddings projection bias")
        if not (np.all(np.isfinite(emb.project_weight)) and np.all(np.isfinite(emb.project_bias))):
            raise GraphMatchError("embeddings projection: weights must be finite")
    shape(emb.word, (emb.word.shape[0], E), "word embedding table")
    if emb.position is None:  # rotary positions: max_positions bounds the sequence
        mp = plan.max_positions
        if not isinstance(mp, (int, np.integer)) or isinstance(mp, bool) or mp < 1:
            raise GraphMatchError(f"no position table and no max_positions ({mp!r})")
    elif emb.position.ndim != 2 or emb.position.shape[0] < 1:
        raise GraphMatchError(f"position embedding table has shape {emb.position.shape} "
                              f"(padding_idx {emb.padding_idx})")
    else:
        shape(emb.position, (emb.position.shape[0], E), "position embedding table")
    if emb.token_type is not None:
        if emb.token_type.ndim != 2 or emb.token_type.shape[0] < 1:
            raise GraphMatchError(f"token type embedding table has shape {emb.token_type.shape}")
        shape(emb.token_type, (emb.token_type.shape[0], E), "token type embedding table")
    for a, what in ((emb.ln.gamma, "embedding LayerNorm scale"), (emb.ln.beta, "embedding LayerNorm bias")):
        shape(a, (E,), what)
    eps(emb.ln.eps, "embedding LayerNorm")
    F = plan.ffn
    acts = {layer.activation for layer in plan.layers}
    if not acts <= {"gelu", "geglu"} or len(acts) > 1:
        raise GraphMatchError(f"layer activations {sorted(map(str, acts))}: the engine runs one of gelu, geglu")
    F_in = 2 * F if acts == {"geglu"} else F
    for i, layer in enumerate(plan.layers):
        if isinstance(layer.window, bool) or not isinstance(layer.window, (int, np.integer)) or layer.window < 0:
            raise GraphMatchError(f"layer {i}: attention window {layer.window!r}")
        rt = layer.rope_theta
        if (rt is None) != (emb.position is not None) or (rt is not None and not (np.isfinite(rt) and rt > 0)):
            raise GraphMatchError(f"layer {i}: rope theta {rt!r} with {'a' if emb.position is not None else 'no'} "
                                  "position table")
        for lp, (n, k) in ((layer.q, (H, H)), (layer.k, (H, H)), (layer.v, (H, H)), (layer.attn_out, (H, H)),
                           (layer.ffn_in, (F_in, H)), (layer.ffn_out, (H, F))):
            if not weights_packed:
                shape(lp.weight, (n, k), f"layer {i} {lp.name!r} weight")
            shape(lp.w_scale, (n,), f"layer {i} {lp.name!r} weight scales")
            shape(lp.bias, (n,), f"layer {i} {lp.name!r} bias")
            q = lp.in_quant
            if not (np.isfinite(q.scale) and q.scale > 0) or not 0 <= q.zero_point <= 255:
                raise GraphMatchError(f"layer {i} {lp.name!r}: activation scale {q.scale} / zero point "
                                      f"{q.zero_point} invalid")
            if lp.in_mul is not None:
                shape(lp.in_mul, (k,), f"layer {i} {lp.name!r} input smoothing vector")
                if lp.in_mul.dtype != np.float32 or not np.all(np.isfinite(lp.in_mul)):
                    raise GraphMatchError(f"layer {i} {lp.name!r}: input smoothing vector must be finite float32")
        if (layer.in_fq and layer.q.in_mul is not None) or (layer.mid_fq and layer.ffn_in.in_mul is not None):
            raise GraphMatchError(f"layer {i}: a residual read through Q/DQ and a smoothed Linear input do not "
                                  "combine (the residual Add reads the unsmoothed tensor)")
        for ln, what in ((layer.ln1, "attention LayerNorm"), (layer.ln2, "FFN LayerNorm")):
            if ln is None and what == "attention LayerNorm" and plan.final_norm is not None:
                continue  # a pre-LN layer without an attention LayerNorm (ModernBERT's layer 0)
            if ln is None:
                raise GraphMatchError(f"layer {i}: no {what}")
            shape(ln.gamma, (H,), f"layer {i} {what} scale")
            shape(ln.beta, (H,), f"layer {i} {what} bias")
            eps(ln.eps, f"layer {i} {what}")
        if not (np.isfinite(layer.scale) and layer.scale > 0):
            raise GraphMatchError(f"layer {i}: attention scale {layer.scale} must be a positive finite number")
    ab = plan.attention_bias
    if ab is not None:
        if not isinstance(ab.buckets, (int, np.integer)) or ab.buckets < 4:
            raise GraphMatchError(f"relative attention bias: {ab.buckets!r} buckets")
        if not isinstance(ab.table, np.ndarray) or ab.table.shape != (ab.buckets, plan.heads) \
                or ab.table.dtype != np.float32 or not np.all(np.isfinite(ab.table)):
            raise GraphMatchError(f"relative attention bias table has shape {getattr(ab.table, 'shape', None)}, "
                                  f"expected finite float32 {(ab.buckets, plan.heads)}")
    if plan.final_norm is not None:
        shape(plan.final_norm.gamma, (H,), "final LayerNorm scale")
        shape(plan.final_norm.beta, (H,), "final LayerNorm bias")
        eps(plan.final_norm.eps, "final LayerNorm")
    width = H
    for op in plan.head:
        if op.kind == "linear":
            if op.weight is None or op.weight.ndim != 2:
                raise GraphMatchError(f"task head: linear weight has shape {getattr(op.weight, 'shape', None)}")
            shape(op.weight, (op.weight.shape[0], width), "task head linear weight")
            if op.weight.shape[0] < 1:
                raise GraphMatchError("task head: linear layer with no outputs")
            shape(op.bias, (op.weight.shape[0],), "task head linear bias")
            width = op.weight.shape[0]
        elif op.kind == "layernorm":
            shape(op.weight, (width,), "task head LayerNorm scale")
            shape(op.bias, (width,), "task head LayerNorm bias")
            eps(op.eps, "task head LayerNorm")
        elif op.kind not in ("cls", "tanh", "relu", "gelu", "layernorm", *POOLING_HEAD_OPS):
            raise GraphMatchError(f"task head: unknown op {op.kind!r}")
    for name, (lo, hi) in list(plan.outputs.items()):
        if hi is None:  # a head without a linear layer outputs the hidden states themselves
            hi = width
            plan.outputs[name] = (lo, hi)
        if not (isinstance(lo, (int, np.integer)) and isinstance(hi, (int, np.integer)) and 0 <= lo < hi <= width):
            raise GraphMatchError(f"graph output {name!r} takes columns [{lo}, {hi}) of a head {width} wide")


def with_pooling(plan: EncoderPlan, mode: str, normalize: bool) -> EncoderPlan:
    """The plan of a feature-extraction graph (its head outputs the token states) with sentence-transformers'
    pooling and L2 normalisation appended to the head program, so the engine returns ``sentence_embedding``
    [batch, hidden]. A copy: the plan itself (the one the pack cache stores) is left as it is."""
    import dataclasses

    from hf_fast.pooling import ENGINE_OPS

    if plan.head or not plan.token_level or list(plan.outputs) != ["last_hidden_state"]:
        raise GraphMatchError(f"sentence pooling needs a graph that outputs last_hidden_state alone, not "
                              f"{list(plan.outputs)} after head ops {[op.kind for op in plan.head]}")
    if mode not in ENGINE_OPS:
        raise GraphMatchError(f"pooling mode {mode!r}: the engine pools with {', '.join(ENGINE_OPS)}")
    head = [HeadOp(ENGINE_OPS[mode])] + ([HeadOp("l2norm")] if normalize else [])
    return dataclasses.replace(plan, head=head, outputs={"sentence_embedding": (0, plan.hidden)}, token_level=False)
