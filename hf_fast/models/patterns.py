"""Encoder layer patterns: which ops make one encoder layer, as data the graph walker (runtime/walker.py) matches.

A pattern is a list of steps over named tensors. ``"x"`` is the layer input; each step reads tensors named by earlier
steps and names its own output (a Linear's output is its role, ``Attention`` names ``out``, a ``ResidualNorm`` its
``name``). The walker has one matcher per step kind, so a family with a new layer shape (pre-LN, GeGLU, rotary) adds
a pattern here, and a step kind only for an op the walker does not know yet.

Pure Python (no onnx, no numpy): the registry and the runtime read it on a runtime-only install.
"""
from __future__ import annotations

from dataclasses import dataclass

ATTENTION_BIASES = ("none", "relative")
# "gelu": the exact erf GELU, x * (1 + erf(x / sqrt 2)) * 0.5, or one Gelu op; "geglu": GELU(a) * g over the two
# halves (a, g) of the source Linear's output (ModernBERT's Wi, chunk(2) exported as two Slices of the last axis)
ACTIVATIONS = ("gelu", "geglu")


@dataclass(frozen=True)
class Linear:
    """A weight MatMul (int8 through DequantizeLinear, or an fp32 initializer) reading ``src``, with an optional bias
    Add. Linears reading the same tensor (Q, K, V) are told apart by the step that consumes them."""

    name: str   # the Linear's role (spec.LINEAR_ROLES); also the name of its output (after the bias)
    src: str


@dataclass(frozen=True)
class Attention:
    """Multi-head self-attention: softmax(q k^T * scale [+ bias] + mask) v, with the mask an Add or Where of a tensor
    computed from attention_mask only, and the scale a scalar Mul/Div of the scores or of q and k. ``out`` names the
    context tensor the output projection reads (after the heads are merged back). ``bias``: "none", or "relative":
    one Add of a per-head bias computed from the sequence positions only (a Gather of a [buckets, heads] table,
    MPNet's relative_attention_bias) between the scale and the mask."""

    q: str
    k: str
    v: str
    out: str = "ctx"
    bias: str = "none"
    # q and k rotated by rotary position embeddings (x * cos + rotate_half(x) * sin, the tables computed from the
    # positions and one inv_freq constant, whose base is the layer's rope theta) between the projection and the scores
    rotary: bool = False
    # the mask may restrict each query to the keys within a fixed distance (|i - j| <= w, ModernBERT's local layers):
    # the walker reads w per layer; False refuses such a mask
    window: bool = False

    def __post_init__(self):
        if self.bias not in ATTENTION_BIASES:
            raise ValueError(f"Attention bias {self.bias!r}: the walker knows {', '.join(ATTENTION_BIASES)}")


@dataclass(frozen=True)
class Activation:
    """An elementwise activation between two Linears (``kind`` in ACTIVATIONS); ``out`` names its output."""

    kind: str
    src: str
    out: str

    def __post_init__(self):
        if self.kind not in ACTIVATIONS:
            raise ValueError(f"Activation kind {self.kind!r}: the walker knows {', '.join(ACTIVATIONS)}")


@dataclass(frozen=True)
class ResidualNorm:
    """LayerNormalization(Add(src, residual)): a post-LN residual block end; the output is named ``name``."""

    name: str
    src: str
    residual: str


@dataclass(frozen=True)
class Norm:
    """A LayerNormalization of ``src`` (a pre-LN block start); ``optional``: the layer may have none (ModernBERT's
    layer 0 attn_norm is an Identity), ``name`` then names ``src`` itself."""

    name: str
    src: str
    optional: bool = False


@dataclass(frozen=True)
class Residual:
    """Add(src, residual) with no LayerNorm after it (a pre-LN block end); the sum is named ``name``."""

    name: str
    src: str
    residual: str


@dataclass(frozen=True)
class LayerPattern:
    """One encoder layer: ``steps`` in the order the walker matches them, from input ``"x"`` to ``output``."""

    name: str
    steps: tuple
    output: str

    def __post_init__(self):
        known = {"x"}
        for step in self.steps:
            reads = {Linear: ("src",), Attention: ("q", "k", "v"), Activation: ("src",),
                     ResidualNorm: ("src", "residual"), Norm: ("src",), Residual: ("src", "residual")}.get(type(step))
            if reads is None:
                raise ValueError(f"pattern {self.name}: unknown step {step!r}")
            missing = [getattr(step, r) for r in reads if getattr(step, r) not in known]
            if missing:
                raise ValueError(f"pattern {self.name}: {step!r} reads {missing} before any step names them")
            wrote = step.out if isinstance(step, (Attention, Activation)) else step.name
            if wrote in known:
                raise ValueError(f"pattern {self.name}: {wrote!r} is named twice")
            known.add(wrote)
        if self.output not in known:
            raise ValueError(f"pattern {self.name}: output {self.output!r} is not named by any step")

    @property
    def linears(self) -> tuple[Linear, ...]:
        return tuple(s for s in self.steps if isinstance(s, Linear))


# BERT's encoder layer (also DistilBERT's and RoBERTa's): post-LN, Q/K/V with biases, GELU feed-forward
POST_LN = LayerPattern(
    name="post-LN encoder layer (BERT)",
    steps=(
        Linear("q", "x"), Linear("k", "x"), Linear("v", "x"),
        Attention("q", "k", "v", out="ctx"),
        Linear("attn_out", "ctx"),
        ResidualNorm("ln1", "attn_out", residual="x"),
        Linear("ffn_in", "ln1"),
        Activation("gelu", "ffn_in", out="act"),
        Linear("ffn_out", "act"),
        ResidualNorm("ln2", "ffn_out", residual="ln1"),
    ),
    output="ln2",
)

# MPNet's layer: BERT's, with the relative-position bias Add on the attention scores
MPNET_LAYER = LayerPattern(
    name="post-LN encoder layer with a relative attention bias (MPNet)",
    steps=tuple(Attention("q", "k", "v", out="ctx", bias="relative") if isinstance(s, Attention) else s
                for s in POST_LN.steps),
    output="ln2",
)

# ModernBERT's layer: pre-LN without biases (layer 0 has no attention LayerNorm), one fused Wqkv whose output is split
# into q, k, v (rotary on q and k), sliding-window attention in the local layers, GeGLU in Wi, two residual Adds
MODERNBERT_LAYER = LayerPattern(
    name="pre-LN encoder layer with rotary attention and GeGLU (ModernBERT)",
    steps=(
        Norm("ln1", "x", optional=True),
        Linear("qkv", "ln1"),
        Attention("qkv", "qkv", "qkv", out="ctx", rotary=True, window=True),
        Linear("attn_out", "ctx"),
        Residual("h", "attn_out", residual="x"),
        Norm("ln2", "h"),
        Linear("ffn_in", "ln2"),
        Activation("geglu", "ffn_in", out="act"),
        Linear("ffn_out", "act"),
        Residual("y", "ffn_out", residual="h"),
    ),
    output="y",
)
