"""The native backend: build the C engine from an artifact's ONNX graph and run it.

`NativeEngine.from_onnx(model, num_heads)` matches the encoder (plan.py), packs every encoder
Linear as block-sparse or dense int8 for this CPU's kernels, and hands the plan to the C engine.
`run(input_ids, attention_mask, token_type_ids)` returns {output name: float32 array}, the same
contract as the ONNX Runtime backend.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hf_fast import native
from hf_fast.models import registry, spec
from hf_fast.native import ffi, lib
from hf_fast.runtime import ragged as ragged_mod
from hf_fast.runtime.plan import EncoderPlan, GraphMatchError, LinearPlan, build_plan, check_plan, with_pooling

if TYPE_CHECKING:  # onnx is imported only to parse model.onnx, not on a pack-cache hit
    import onnx

_HEAD_KIND = {"cls": lib.HF_HEAD_CLS, "linear": lib.HF_HEAD_LINEAR, "tanh": lib.HF_HEAD_TANH, "relu": lib.HF_HEAD_RELU,
              "gelu": lib.HF_HEAD_GELU}
# sentence-embedding ops (plan.with_pooling)
_HEAD_KIND.update({"mean": lib.HF_HEAD_POOL_MEAN, "max": lib.HF_HEAD_POOL_MAX,
                   "mean_sqrt_len": lib.HF_HEAD_POOL_MEAN_SQRT_LEN, "l2norm": lib.HF_HEAD_L2NORM})


def engine_layer(plan: EncoderPlan) -> spec.EngineLayer:
    """The layer description of the plan's family (registry), with the position rule the plan matched; a plan of an
    unknown model type (an old artifact) runs the default post-LN BERT layer."""
    fam = registry.find(plan.model_type)
    layer = fam.engine if fam is not None else spec.EngineLayer()
    if plan.embeddings.padding_idx is not None and layer.position != "padding-offset":
        layer = dataclasses.replace(layer, position="padding-offset")
    return layer


def model_desc(layer: spec.EngineLayer, *, isa: str | int = "auto", hidden: int, heads: int, ffn: int, layers: int,
               vocab: int, max_pos: int, type_vocab: int = 0, embedding_size: int = 0, embed_proj: bool = False,
               attn_window=None, rope_theta=None):
    """The C engine's hf_engine_model_desc for ``layer`` (spec.EngineLayer: each value names its C constant) and the
    dimensions; returns (desc, keep), keep holding the arrays the desc points to until hf_engine_create copies them.
    ``isa``: a name, or an HF_ISA_* id as is (the C side refuses an unknown one). Per-layer values a config decides
    (ModernBERT: local / global layers): ``attn_window`` [layers] (0 = global; else layer.attention_window in every
    layer) and ``rope_theta`` [layers] (position="rotary")."""
    d = ffi.new("hf_engine_model_desc *")
    d.size, d.version = ffi.sizeof("hf_engine_model_desc"), lib.HF_ENGINE_DESC_VERSION
    d.isa = native.isa_id(isa) if isinstance(isa, str) else int(isa)
    d.norm = getattr(lib, spec.NORM_POSITIONS[layer.norm])
    d.activation = getattr(lib, spec.ACTIVATIONS[layer.activation])
    d.position = getattr(lib, spec.POSITION_RULES[layer.position])
    d.attn_bias = getattr(lib, spec.ATTENTION_BIASES[layer.attention_bias])
    d.linear_bias = sum(getattr(lib, spec.BIAS_PARTS[p]) for p in layer.bias_parts)
    d.hidden, d.heads, d.ffn, d.layers, d.vocab = hidden, heads, ffn, layers, vocab
    d.max_pos, d.type_vocab, d.embedding_size, d.embed_proj = max_pos, type_vocab, embedding_size, int(embed_proj)
    d.rel_buckets, d.rel_max_distance = layer.relative_buckets, layer.relative_max_distance
    keep = []
    if attn_window is not None or layer.attention_window:
        wins = [int(w) for w in attn_window] if attn_window is not None else [layer.attention_window] * layers
        if len(wins) != layers:
            raise ValueError(f"attn_window has {len(wins)} values for {layers} layers")
        win = ffi.new("int64_t[]", wins)
        keep.append(win)
        d.attn_window = win
    if rope_theta is not None:
        if len(rope_theta) != layers:
            raise ValueError(f"rope_theta has {len(rope_theta)} values for {layers} layers")
        th = ffi.new("float[]", [float(t) for t in rope_theta])
        keep.append(th)
        d.rope_theta = th
    return d, keep


def _unread_op(layer: spec.EngineLayer, plan: EncoderPlan) -> str | None:
    """An op the family's engine layer declares that the plan did not read from the graph (the engine would run it on
    a graph that does not compute it), or None."""
    acts = {lp.activation for lp in plan.layers}
    if layer.norm == "pre" and plan.final_norm is None:
        return "pre-LN"
    if layer.activation == "geglu" and acts != {"geglu"}:
        return "geglu"
    if layer.position == "rotary" and plan.embeddings.position is not None:
        return "rotary"
    if layer.attention_window and not any(lp.window for lp in plan.layers):
        return "sliding-window-attention"
    return None


def _create(desc) -> object:
    """hf_engine_create; an op the engine does not run yet is NotImplementedError naming it."""
    out = ffi.new("hf_engine **")
    rc = lib.hf_engine_create(desc, out)
    if rc == lib.HF_ENOTIMPL:
        msg = ffi.string(lib.hf_last_error()).decode("utf-8", "replace")
        raise NotImplementedError(f"{msg} (run the model with backend='onnxruntime')")
    native._check(rc, "engine_create")
    return ffi.gc(out[0], lib.hf_engine_free)


def _stack_qkv(q: LinearPlan, k: LinearPlan, v: LinearPlan) -> LinearPlan:
    """Q, K and V read the same quantized tensor, so they run as one GEMM with N = 3H."""
    same_mul = all((a.in_mul is None) == (q.in_mul is None) and (a.in_mul is None or np.array_equal(a.in_mul, q.in_mul))
                   for a in (k, v))
    if not (q.in_quant == k.in_quant == v.in_quant) or not same_mul:
        raise GraphMatchError(f"{q.name}: Q, K and V inputs are quantized (or smoothed) differently; the engine "
                              "fuses them")
    return LinearPlan(q.name.replace("query", "qkv"), np.concatenate([q.weight, k.weight, v.weight]),
                      np.concatenate([q.w_scale, k.w_scale, v.w_scale]), np.concatenate([q.bias, k.bias, v.bias]),
                      q.in_quant, in_mul=q.in_mul)


# Below this fraction of zero blocks the dense kernel is faster than skipping blocks (see
# benchmarks/RESULTS.md, "Kernels" and "Engine end to end"); above it the block-sparse kernel wins.
SPARSE_MIN_FRACTION = 0.3
SPARSE_MIN_FRACTION_BY_ISA = {"avx512vnni": 0.6}  # calls of any length (see the table below)

# Where the crossover also depends on the call's token count M (the rows of the GEMM). On AVX-512 VNNI the dense
# kernel runs near the vpdpbusd peak at any M, while the 4x1 kernel pays a gather per 4 kept columns and per-record
# work that only long calls amortise: in the engine, a MiniLM-L6 student with 38-64% zero blocks per Linear runs
# 1.3-1.4x faster all-sparse than all-dense at 128-512 tokens a call, ~1.15x at 32-64, and slower below ~24
# (benchmarks/kernel_crossover.py; RESULTS, "sparse or dense by call length"). So a Linear with a zero-block fraction
# in this table's range is packed for both kernels (hf_linear_set_alternative): calls of at least `tokens` rows run
# block-sparse, shorter ones dense, as every call did before; the outputs are the same bit for bit.
# ((fraction from, tokens from), ...), densest first: from the first fraction on, sparse only; below the last, dense.
SPARSE_FROM_TOKENS_BY_ISA = {"avx512vnni": ((0.6, 1), (0.25, 32))}


def _isa_name(isa: str | None) -> str:
    return native.active_isa() if isa in (None, "auto") else isa


def _sparse_min_fraction(isa: str | None, tokens: int | None = None) -> float:
    """The zero-block fraction from which a Linear runs on the sparse kernel: in calls of `tokens` rows where the
    crossover depends on the call (SPARSE_FROM_TOKENS_BY_ISA), else in calls of any length."""
    name = _isa_name(isa)
    table = SPARSE_FROM_TOKENS_BY_ISA.get(name)
    if not table:
        return SPARSE_MIN_FRACTION_BY_ISA.get(name, SPARSE_MIN_FRACTION)
    if tokens is None:
        return table[0][0]
    return min(frac for frac, rows in table if tokens >= rows or frac == table[0][0])


def sparse_from_tokens(zero_fraction: float, isa: str | None) -> int | None:
    """Calls of at least this many tokens run a Linear with `zero_fraction` zero blocks block-sparse, shorter ones
    dense (1: always sparse); None where its kernel does not depend on the call (dense, or an ISA without a table)."""
    for frac, rows in SPARSE_FROM_TOKENS_BY_ISA.get(_isa_name(isa), ()):
        if zero_fraction >= frac - 1e-9:
            return None if rows <= 1 else rows
    return None


@dataclass(frozen=True)
class KernelChoice:
    """Why a Linear runs on the block-sparse or the dense kernel: made once, by `choose_kernel`, when the engine
    packs the weight, and kept (NativeEngine.kernel_choices) so `explain()` reports the decision itself."""

    block: str                     # "dense", "4x1" or "1x4": the kernel the weight is packed for
    zero_blocks: float | None      # zero-block fraction of the best kernel block shape (None: not measured)
    measured_block: str | None     # the block shape zero_blocks was measured with
    crossover: float               # zero-block fraction from which the sparse kernel wins on `isa`
    isa: str
    reason: str
    sparse_from_tokens: int | None = None  # also packed dense: calls shorter than this run the dense kernel


def choose_kernel(weight: np.ndarray, block: str | None, isa: str | None = "auto") -> KernelChoice:
    """The artifact's block shape if this layer is sparse enough for the sparse kernel, else dense."""
    crossover = _sparse_min_fraction(isa)
    name = _isa_name(isa)
    if block in (None, "dense"):
        return KernelChoice("dense", None, None, crossover, name,
                            f"the artifact is dense (fast_config block {block!r}): no zero blocks to skip")
    from hf_fast.blocks import TILE_TOLERANCE, block_sparsity, parse_block

    # the kernels run 4x1 and 1x4; any other shape the artifact names (1x1 unstructured, 32x32, ...) uses the
    # kernel block that finds the most zero blocks (exact either way: only all-zero blocks are skipped)
    cands = [block] if block in native.BLOCK_SHAPES else list(native.BLOCK_SHAPES)
    table = SPARSE_FROM_TOKENS_BY_ISA.get(name)
    threshold = table[-1][0] if table else crossover  # sparse in long enough calls from there
    seen: dict[str, float] = {}
    for cand in cands:
        r, c = parse_block(cand)
        if weight.shape[0] % r or weight.shape[1] % c:
            continue
        seen[cand] = block_sparsity(weight, (r, c))
    # equal zero fractions (a weight pruned in 4x4 tiles, or any shape made of them): 4x1 on VNNI, whose kernel reads
    # such tiles pre-interleaved (no unpack in its loop); elsewhere 1x4, as before
    tie = "4x1" if name == "avx512vnni" else "1x4"
    fits = {cand: f for cand, f in seen.items() if f >= threshold}
    best = max(fits, key=fits.get) if fits else "dense"
    if tie in fits and fits[tie] >= fits[best] - TILE_TOLERANCE:
        best = tie
    best_frac = fits[best] if fits else threshold
    if not seen:
        return KernelChoice("dense", None, None, crossover, name,
                            f"no kernel block shape ({', '.join(cands)}) divides the weight {tuple(weight.shape)}")
    top = max(seen, key=seen.get)
    if best == "dense":
        return KernelChoice("dense", round(seen[top], 6), top, crossover, name,
                            f"below the sparse/dense crossover: {seen[top]:.0%} zero {top} blocks < {best_frac:.0%} "
                            f"on {name}")
    via = "" if best == block else f" (artifact block {block} runs on the {best} kernel)"
    rows = sparse_from_tokens(best_frac, name)
    if rows is not None:
        return KernelChoice(best, round(best_frac, 6), best, crossover, name,
                            f"{best_frac:.0%} zero {best} blocks: calls of >= {rows} tokens run block-sparse, shorter "
                            f"ones dense (below the {crossover:.0%} sparse/dense crossover on {name}, the faster "
                            f"kernel depends on the call's length){via}", rows)
    return KernelChoice(best, round(best_frac, 6), best, crossover, name,
                        f"{best_frac:.0%} zero {best} blocks >= the {crossover:.0%} sparse/dense crossover on "
                        f"{name}{via}")


def _restore_packed(blob) -> native.PackedLinear:
    """A PackedLinear from the pack cache: its bytes, or (bytes, the other kernel's bytes, tokens) for a Linear packed
    for both kernels (pack_cache.save)."""
    if not isinstance(blob, tuple):
        return native.PackedLinear.from_bytes(blob)
    data, alt, rows = blob
    pl = native.PackedLinear.from_bytes(data)
    pl.set_alternative(native.PackedLinear.from_bytes(alt), rows)
    return pl


def _check_packed(plan: EncoderPlan, packed) -> None:
    """Restored Linears must have the shapes the plan's layers need (the C engine checks them again)."""
    H, F = plan.hidden, plan.ffn
    f_in = 2 * F if plan.layers and plan.layers[0].activation == "geglu" else F
    want = {"qkv": (3 * H, H), "attn_out": (H, H), "ffn_in": (f_in, H), "ffn_out": (H, F)}
    for i in range(len(plan.layers)):
        for name, shape in want.items():
            p = packed.get(f"layers.{i}.{name}")
            if p is None or tuple(p.shape) != shape:
                raise GraphMatchError(f"packed layers.{i}.{name}: expected shape {shape}, got "
                                      f"{None if p is None else p.shape}")


LINEARS = ("qkv", "attn_out", "ffn_in", "ffn_out")
# NativeEngine(leave_out=...): ops a mutation test may drop from a plan's engine to show that its parity needs them
LEAVE_OUT_OPS = ("rotary", "window", "gate")
# NativeEngine(attention=...): the precision of the attention layers that are not int8 ("fp32" by default)
ATTENTION_PRECISIONS = ("fp32", "bf16", "auto", "int8-dynamic")
# the precisions other than fp32: the kernel lookup, its name and CPU needs in messages, the C engine's constant, and
# whether it has a variant for MPNet's relative bias and ModernBERT's sliding window (engine.c REDUCED_ATTENTION;
# without one, window layers keep fp32 attention and a relative-bias model is refused)
_REDUCED_ATTENTION = {
    "bf16": (native.attention_bf16_kernel, "bf16", "AVX512_BF16", "HF_ATTN_BF16", True),
    "int8-dynamic": (native.attention_dq8_kernel, "dynamic int8", "AVX-512 VNNI", "HF_ATTN_INT8_DYNAMIC", False),
}

# The attention precision when the caller names none. Sentence embeddings: bf16 where the CPU has it and it is the
# faster kernel there ("auto"), since a pooled, normalised embedding moves by a cosine of ~5e-4 on average, 2e-3 at
# most (dense all-MiniLM-L6-v2 on SQuAD dev: recall@10 91.67 vs 91.55; benchmarks/RESULTS.md, issue 19) while
# paragraphs embed ~1.1x faster on Zen 5. Task heads keep fp32: on the flat-logit SQuAD teacher bf16 moved more
# answers away from ONNX Runtime's than fp32 does (benchmarks/HISTORY.md), so it stays opt-in there.
DEFAULT_ATTENTION_BY_TASK = {"feature-extraction": "auto"}


class NativeEngine:
    """``packed``: {"layers.<i>.<qkv|attn_out|ffn_in|ffn_out>": PackedLinear} restored from the pack cache (the
    plan's Linear weights may then be None); otherwise every Linear is packed here. ``self.packed`` holds them.
    ``keep_arrays``: leave the plan's arrays in place (to write the cache); `release_arrays()` drops them."""

    def __init__(self, plan: EncoderPlan, block: str | None = None, isa: str = "auto",
                 packed: dict[str, native.PackedLinear] | None = None, keep_arrays: bool = False,
                 attention: str = "fp32", leave_out: tuple[str, ...] = ()):
        """leave_out: LEAVE_OUT_OPS to drop from a rotary / windowed / GeGLU plan's engine (mutation tests only):
        "rotary" runs no position encoding, "window" global attention in every layer, "gate" GELU(a) without g."""
        check_plan(plan, weights_packed=packed is not None)  # the C side trusts these shapes
        if packed is not None:
            _check_packed(plan, packed)
        bad = set(leave_out) - set(LEAVE_OUT_OPS)
        if bad or (leave_out and packed is not None):
            raise ValueError(f"leave_out {sorted(leave_out)}: ops of {LEAVE_OUT_OPS}, on a plan packed here")
        self.plan = plan
        emb = plan.embeddings
        H = plan.hidden
        rotary = emb.position is None
        vocab = emb.word.shape[0]
        max_pos = plan.max_positions if rotary else emb.position.shape[0]
        type_vocab = 0 if emb.token_type is None else emb.token_type.shape[0]
        self.layer_desc = engine_layer(plan)
        op = _unread_op(self.layer_desc, plan)
        if op is not None:
            raise NotImplementedError(f"engine_create: op '{op}' is declared by the {plan.model_type} engine layer, "
                                      "but the graph's plan (runtime/plan.py) does not compute it: never run as "
                                      "another layer (run the model with backend='onnxruntime')")
        extra = [name for name, has, declared in (
            ("a final LayerNorm", plan.final_norm is not None, self.layer_desc.norm == "pre"),
            ("rotary positions", rotary, self.layer_desc.position == "rotary"),
            ("GeGLU", bool(plan.layers) and plan.layers[0].activation == "geglu",
             self.layer_desc.activation == "geglu")) if has and not declared]
        if extra:
            raise GraphMatchError(f"the plan computes {', '.join(extra)}, which the {plan.model_type} engine layer "
                                  "does not declare")
        pos_table = emb.position
        if "rotary" in leave_out:  # positions of a zero table: no position information at all
            self.layer_desc = dataclasses.replace(self.layer_desc, position="absolute")
            pos_table = np.zeros((max_pos, H), np.float32)
        if "gate" in leave_out:
            self.layer_desc = dataclasses.replace(self.layer_desc, activation="gelu")
        windows = [0 if "window" in leave_out else int(layer.window) for layer in plan.layers]
        self.windows = windows
        self.rope_theta = [layer.rope_theta for layer in plan.layers] if rotary else None
        desc, _keep = model_desc(self.layer_desc, isa=isa, hidden=H, heads=plan.heads, ffn=plan.ffn,
                                 layers=len(plan.layers), vocab=vocab, max_pos=max_pos, type_vocab=type_vocab,
                                 embedding_size=emb.word.shape[1], embed_proj=emb.project_weight is not None,
                                 attn_window=windows if any(windows) else None,
                                 rope_theta=self.rope_theta if self.layer_desc.position == "rotary" else None)
        self._e = _create(desc)
        self.isa = native.ISA_NAMES[lib.hf_engine_isa(self._e)]  # "auto" resolved by the C side
        self.artifact_block = block
        self.vocab, self.max_positions, self.type_vocab = vocab, max_pos, type_vocab
        self._keep = []  # packed linears and arrays the engine borrows
        f = lambda a: ffi.cast("float *", a.ctypes.data)  # noqa: E731
        arrs = [np.ascontiguousarray(a, np.float32) if a is not None else None for a in (emb.word, pos_table)]
        tt = None if emb.token_type is None else np.ascontiguousarray(emb.token_type, np.float32)
        native._check(lib.hf_engine_set_embeddings(self._e, f(arrs[0]), f(arrs[1]) if arrs[1] is not None else ffi.NULL,
                                                   f(tt) if tt is not None else ffi.NULL,
                                                   f(emb.ln.gamma), f(emb.ln.beta), emb.ln.eps),
                      "engine_set_embeddings")
        if emb.project_weight is not None:
            pw, pb = (np.ascontiguousarray(a, np.float32) for a in (emb.project_weight, emb.project_bias))
            native._check(lib.hf_engine_set_embeddings_project(self._e, f(pw), f(pb)), "engine_set_embeddings_project")
        if (plan.attention_bias is not None) != (self.layer_desc.attention_bias == "relative"):
            raise GraphMatchError(f"the plan {'has' if plan.attention_bias is not None else 'lacks'} a relative "
                                  f"attention bias table, the {plan.model_type} engine layer has attention_bias="
                                  f"{self.layer_desc.attention_bias!r}")
        if plan.attention_bias is not None:
            ab = plan.attention_bias
            if (ab.buckets, ab.max_distance) != (self.layer_desc.relative_buckets,
                                                 self.layer_desc.relative_max_distance):
                raise GraphMatchError(f"relative attention bias of {ab.buckets} buckets / max distance "
                                      f"{ab.max_distance}, the family's bucketing is {self.layer_desc.relative_buckets}"
                                      f" / {self.layer_desc.relative_max_distance}")
            tb = np.ascontiguousarray(ab.table, np.float32)
            native._check(lib.hf_engine_set_attention_bias(self._e, f(tb)), "engine_set_attention_bias")
        self.packed_bytes = 0
        self.dense_int8_bytes = 0
        self.packed = {}
        # {"layers.<i>.<linear>": KernelChoice} of the Linears packed here; empty when restored from the pack cache
        self.kernel_choices: dict[str, KernelChoice] = {}
        for i, layer in enumerate(plan.layers):
            lins = {}
            for name in LINEARS:
                key = f"layers.{i}.{name}"
                lp = layer.q if name == "qkv" else getattr(layer, name)  # Q, K, V share the input quantizer
                if packed is not None:
                    pl = packed[key]
                else:
                    if name == "qkv":
                        lp = _stack_qkv(layer.q, layer.k, layer.v)
                    if name == "ffn_in" and "gate" in leave_out:  # the GELU input rows alone, no gate
                        lp = dataclasses.replace(lp, weight=lp.weight[:plan.ffn], w_scale=lp.w_scale[:plan.ffn],
                                                 bias=lp.bias[:plan.ffn])
                    choice = choose_kernel(lp.weight, block, isa)
                    self.kernel_choices[key] = choice
                    pl = native.PackedLinear(lp.weight, lp.w_scale, lp.bias, block=choice.block, isa=isa)
                    if choice.sparse_from_tokens is not None:  # short calls run the dense packing
                        pl.set_alternative(native.PackedLinear(lp.weight, lp.w_scale, lp.bias, block="dense",
                                                               isa=isa), choice.sparse_from_tokens)
                self.packed[key] = pl
                self._keep.append(pl)
                self.packed_bytes += pl.nbytes_with_alternative
                self.dense_int8_bytes += pl.shape[0] * pl.shape[1]
                lins[name] = (pl, lp.in_quant, lp.in_mul)
            d = ffi.new("hf_engine_layer_desc *")
            d.qkv, d.attn_out = lins["qkv"][0]._l, lins["attn_out"][0]._l
            d.ffn_in, d.ffn_out = lins["ffn_in"][0]._l, lins["ffn_out"][0]._l
            d.qkv_scale, d.qkv_zp = lins["qkv"][1].scale, lins["qkv"][1].zero_point
            d.o_scale, d.o_zp = lins["attn_out"][1].scale, lins["attn_out"][1].zero_point
            d.i_scale, d.i_zp = lins["ffn_in"][1].scale, lins["ffn_in"][1].zero_point
            d.f_scale, d.f_zp = lins["ffn_out"][1].scale, lins["ffn_out"][1].zero_point
            d.att_scale = layer.scale
            d.in_fq, d.mid_fq = int(layer.in_fq), int(layer.mid_fq)
            # SmoothQuant multipliers (copied by the C side, like the LayerNorm vectors)
            d.qkv_mul, d.o_mul, d.i_mul, d.f_mul = (f(lins[n][2]) if lins[n][2] is not None else ffi.NULL
                                                    for n in ("qkv", "attn_out", "ffn_in", "ffn_out"))
            if layer.ln1 is not None:  # a pre-LN layer may have no attention LayerNorm (ModernBERT's layer 0)
                d.ln1_g, d.ln1_b, d.ln1_eps = f(layer.ln1.gamma), f(layer.ln1.beta), layer.ln1.eps
            d.ln2_g, d.ln2_b, d.ln2_eps = f(layer.ln2.gamma), f(layer.ln2.beta), layer.ln2.eps
            aq = layer.attn_quant
            if aq is not None:  # int8 attention; the struct is copied by the C side (kept alive until then)
                aqs = native.attn_quant_struct({n: (getattr(aq, n).scale, getattr(aq, n).zero_point) for n in "qkpv"})
                d.attn_q = aqs
            native._check(lib.hf_engine_set_layer(self._e, i, d), "engine_set_layer")
        if plan.final_norm is not None:
            fn = plan.final_norm
            native._check(lib.hf_engine_set_final_norm(self._e, f(fn.gamma), f(fn.beta), fn.eps),
                          "engine_set_final_norm")
        for op in plan.head:
            if op.kind == "layernorm":
                g_, b_ = (np.ascontiguousarray(a, np.float32) for a in (op.weight, op.bias))
                native._check(lib.hf_engine_add_head_layernorm(self._e, f(g_), f(b_), op.eps),
                              "engine_add_head_layernorm")
            elif op.kind == "linear":
                w = np.ascontiguousarray(op.weight, np.float32)
                b = np.ascontiguousarray(op.bias, np.float32)
                native._check(lib.hf_engine_add_head_op(self._e, _HEAD_KIND["linear"], w.shape[0], w.shape[1],
                                                        f(w), f(b)), "engine_add_head_op")
            else:
                native._check(lib.hf_engine_add_head_op(self._e, _HEAD_KIND[op.kind], 0, 0, ffi.NULL, ffi.NULL),
                              "engine_add_head_op")
        self.width = int(lib.hf_engine_output_width(self._e))
        self.token_level = bool(lib.hf_engine_token_level(self._e))
        self._cls_head = any(op.kind == "cls" for op in plan.head)  # reads token 0 (ragged.layout)
        self.attention = self._set_attention(attention)
        if not keep_arrays:
            self.release_arrays()

    def _set_attention(self, attention: str) -> str:
        """The precision of the fp32-attention layers (int8-attention layers keep theirs): "bf16" runs q k^T and p v
        on bf16 pairs (vdpbf16ps; fp32 softmax), "fp32" the fp32 kernels, "auto" bf16 where the CPU has AVX512_BF16
        and its bf16 kernel measures faster than fp32 here (native.bf16_attention_pays: yes on a Zen 5 EPYC, no on
        an Emerald Rapids Xeon) and the engine's ISA has a bf16 kernel (HF_FAST_ISA=ref: the scalar model of it;
        avx2: none, fp32), else fp32. Returns the precision that runs."""
        if attention not in ATTENTION_PRECISIONS:
            raise ValueError(f"attention={attention!r}: expected one of {', '.join(map(repr, ATTENTION_PRECISIONS))}")
        d = self.plan.hidden // self.plan.heads
        if attention == "fp32":
            return "fp32"
        precision = "bf16" if attention == "auto" else attention
        kernel_for, label, needs, code, variants = _REDUCED_ATTENTION[precision]
        why = ("a relative attention bias" if self.layer_desc.attention_bias != "none" and not variants else
               "" if kernel_for(d, self.isa) else
               f"no {label} attention kernel on ISA {self.isa!r} for head size {d} (needs {needs} and d % 16 == 0)")
        if attention == "auto" and (why or not native.bf16_attention_pays(d)):  # no kernel here: no probe either
            return "fp32"
        if why:
            alt = "'fp32' or 'auto'" if attention == "bf16" else "'fp32'"
            raise ValueError(f"attention={attention!r} is not available: {why}; use attention={alt}")
        native._check(lib.hf_engine_set_attention_precision(self._e, getattr(lib, code)),
                      "engine_set_attention_precision")
        return precision

    def release_arrays(self) -> None:
        """The C engine holds its own copies (tables, LayerNorms, head) and the packed weights: drop the plan's
        large arrays so the model is not resident twice (the plan keeps its shapes and flags)."""
        plan = self.plan
        emb = plan.embeddings
        emb.word = emb.position = emb.token_type = emb.project_weight = emb.project_bias = None
        for layer in plan.layers:
            for lp in (layer.q, layer.k, layer.v, layer.attn_out, layer.ffn_in, layer.ffn_out):
                lp.weight = None
        for op in plan.head:
            op.weight = op.bias = None

    @classmethod
    def from_onnx(cls, model: onnx.ModelProto, num_heads: int, block: str | None = None,
                  isa: str = "auto", model_type: str | None = None, task: str | None = None,
                  attention: str = "fp32", max_positions: int | None = None,
                  leave_out: tuple[str, ...] = ()) -> NativeEngine:
        """model_type / task (fast_config.json): checked against the registry family's rules (plan.build_plan);
        max_positions (fast_config.json max_sequence_length): the longest sequence of a rotary family."""
        return cls(build_plan(model, num_heads, model_type, task, max_positions), block=block, isa=isa,
                   attention=attention, leave_out=leave_out)

    @staticmethod
    def _ids(x, name: str, shape=None) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{name} must be a numpy array (or torch tensor), got {type(x).__name__}")
        if x.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integers, got dtype {x.dtype}")
        if x.ndim != 2:
            raise ValueError(f"{name} must be 2-D [batch, sequence], got shape {x.shape}")
        if shape is not None and x.shape != shape:
            raise ValueError(f"{name} has shape {x.shape}, expected {shape} like input_ids")
        return np.ascontiguousarray(x, dtype=np.int64)

    def _check_right_padded(self, ids: np.ndarray, mask: np.ndarray | None) -> None:
        """RoBERTa positions count real tokens; the engine's table offset is exact when every row is
        its real tokens followed by pad tokens that the attention mask hides (what tokenizers emit)."""
        real = ids != self.plan.embeddings.padding_idx
        n = real.sum(axis=1, keepdims=True)
        prefix = np.arange(ids.shape[1])[None, :] < n
        if not np.array_equal(real, prefix) or (mask is not None and np.any(mask[~real] != 0)):
            raise ValueError("this RoBERTa-style model runs in the native engine only on right-padded batches whose "
                             f"pad tokens (id {self.plan.embeddings.padding_idx}) are masked out; use "
                             "backend='onnxruntime' for other layouts")

    def run(self, input_ids, attention_mask=None, token_type_ids=None, ragged: bool | None = None
            ) -> dict[str, np.ndarray]:
        """ragged (runtime/ragged.py): None runs a padded batch packed, its real tokens only, where that gives the
        padded run's outputs (token-level outputs are then zero at pad positions); True packs or raises why it
        cannot; False runs every position."""
        ids = self._ids(input_ids, "input_ids")
        b, s = ids.shape
        if b == 0 or s == 0:
            raise ValueError(f"input_ids is empty (shape {ids.shape})")
        if s > self.max_positions:
            raise ValueError(f"sequence length {s} exceeds the model's maximum of {self.max_positions} positions")
        mask = None if attention_mask is None else self._ids(attention_mask, "attention_mask", ids.shape)
        if self.plan.embeddings.padding_idx is not None:
            self._check_right_padded(ids, mask)
        types = None if token_type_ids is None else self._ids(token_type_ids, "token_type_ids", ids.shape)
        p = lambda a: ffi.cast("int64_t *", a.ctypes.data) if a is not None else ffi.NULL  # noqa: E731
        force = ragged_mod.enabled(ragged)
        lay = None if force is False else ragged_mod.layout(mask, cls_head=self._cls_head, force=bool(force))
        if lay is not None:
            pids, ptypes = ragged_mod.pack(ids, lay), ragged_mod.pack(types, lay)
            out = np.empty((len(pids) if self.token_level else b, self.width), np.float32)
            rc = lib.hf_engine_run_packed(self._e, b, p(lay.lens), p(lay.pos0), p(pids), p(ptypes),
                                          ffi.cast("float *", out.ctypes.data), out.size)
            native._check(rc, "engine_run_packed")
            out = ragged_mod.unpack(out, lay) if self.token_level else out
        else:
            out = np.empty((b * s if self.token_level else b, self.width), np.float32)
            rc = lib.hf_engine_run(self._e, b, s, p(ids), p(mask), p(types), ffi.cast("float *", out.ctypes.data),
                                   out.size)
            native._check(rc, "engine_run")
        out = out.reshape((b, s, self.width) if self.token_level else (b, self.width))
        return {name: (out[..., lo:hi] if hi - lo > 1 or len(self.plan.outputs) == 1 else out[..., lo])
                for name, (lo, hi) in self.plan.outputs.items()}


def _pooled(plan: EncoderPlan, fast_config) -> EncoderPlan:
    """A feature-extraction artifact loaded for sentence embeddings (FastModelForFeatureExtraction passes outputs
    ["sentence_embedding"]): fast_config.json's pooling and normalisation run in the engine's head program."""
    if list(fast_config.get("outputs") or []) != ["sentence_embedding"]:
        return plan
    from hf_fast.pooling import check_pooling

    try:
        pool = check_pooling(fast_config.get("pooling"))
    except ValueError as exc:
        raise ValueError(f"fast_config.json: {exc}") from exc
    return with_pooling(plan, pool["mode"], pool["normalize"])


class NativeBackend:
    """The hf-fast engine behind the FastModelFor* classes (backend="native", the default).

    The block shape comes from the artifact (fast_config.json "block"), never guessed; layers whose
    zero-block fraction is too low for the sparse kernel run on the dense int8 kernel.
    """

    name = "native"

    def __init__(self, model_path, fast_config, num_threads: int | None = None, isa: str = "auto",
                 pack_cache: bool | None = None, attention: str | None = None):
        """pack_cache: reuse / write the packed weights in the on-disk cache (runtime/pack_cache.py; default on,
        env HF_FAST_PACK_CACHE=0 turns it off). `self.pack_cache` says what happened: "off", "hit", "miss"
        (built and written), "rebuilt" (an unusable entry was replaced) or "unwritable".
        attention: "fp32", "bf16" (q k^T and p v on bf16 pairs, fp32 softmax; AVX512_BF16 CPUs and HF_FAST_ISA=ref
        only, else ValueError), "auto" (bf16 where the CPU has AVX512_BF16, a kernel fits and it measures faster
        than fp32 here, else fp32) or
        "int8-dynamic" (q, k int8 per token and v per channel with run-time scales, int16 softmax weights; AVX-512 VNNI
        and HF_FAST_ISA=ref only, else ValueError). None (the default): the task's choice, DEFAULT_ATTENTION_BY_TASK
        ("auto" for sentence embeddings, "fp32" for task heads). Layers exported with int8 attention keep it.
        `self.engine.attention` says which runs."""
        if num_threads is not None:
            if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)) or num_threads < 0:
                raise ValueError(f"num_threads must be a non-negative int (0 = all cores), got {num_threads!r}")
            if num_threads > 0:
                native.set_num_threads(int(num_threads))
        heads = fast_config.get("num_heads")
        if not isinstance(heads, int) or heads <= 0:
            raise ValueError(f"fast_config.json: num_heads must be a positive int, got {heads!r}")
        block = fast_config.get("block")
        self.model_path, self.num_heads = model_path, heads
        self.attention = DEFAULT_ATTENTION_BY_TASK.get(fast_config.get("task"), "fp32") if attention is None \
            else attention
        self.engine = self._build(model_path, heads, block, isa, pack_cache, fast_config)
        self.input_names = [i for i in self.engine.plan.inputs]
        self.output_names = list(self.engine.plan.outputs)
        if fast_config.get("outputs") and list(fast_config["outputs"]) != self.output_names:
            raise GraphMatchError(f"fast_config.json lists outputs {fast_config['outputs']} but the graph produces "
                                  f"{self.output_names}")

    def _build(self, model_path, heads: int, block, isa: str, use_cache: bool | None, fast_config) -> NativeEngine:
        import logging
        from pathlib import Path

        from hf_fast.export.artifact import sha256_file
        from hf_fast.runtime import pack_cache

        self.pack_cache = "off"
        key = None
        if pack_cache.enabled(use_cache):
            resolved = native.active_isa() if isa in (None, "auto") else isa
            key = pack_cache.make_key(sha256_file(Path(model_path)), resolved, block, heads)
            try:
                hit = pack_cache.load(key)
            except pack_cache.CacheError as exc:
                logging.getLogger(__name__).warning("hf-fast: rebuilding the packed-weight cache: %s", exc)
                hit, self.pack_cache = None, "rebuilt"
            if hit is not None:
                plan, blobs = hit
                try:
                    packed = {n: _restore_packed(b) for n, b in blobs.items()}
                    self.pack_cache = "hit"
                    return NativeEngine(_pooled(plan, fast_config), block=block, isa=isa, packed=packed,
                                        attention=self.attention)
                except (native.NativeError, GraphMatchError, ValueError) as exc:  # checksummed, but checked again
                    logging.getLogger(__name__).warning("hf-fast: rebuilding the packed-weight cache: %s", exc)
                    self.pack_cache = "rebuilt"
        import onnx

        try:
            model = onnx.load(str(Path(model_path)), load_external_data=False)  # one self-contained file
        except Exception as exc:  # protobuf DecodeError and friends
            raise ValueError(f"cannot parse {model_path} as ONNX: {exc}") from exc
        plan = build_plan(model, heads, fast_config.get("model_type"), fast_config.get("task"),  # registry family
                          fast_config.get("max_sequence_length"))
        engine = NativeEngine(_pooled(plan, fast_config), block=block, isa=isa, keep_arrays=key is not None,
                              attention=self.attention)
        if key is not None:
            written = pack_cache.save(key, plan, engine.packed)  # the graph's plan: pooling is fast_config's
            if self.pack_cache == "off":
                self.pack_cache = "miss" if written else "unwritable"
            engine.release_arrays()
        return engine

    def kernel_choices(self) -> dict[str, KernelChoice]:
        """{"layers.<i>.<linear>": KernelChoice}: the sparse/dense decision of every packed Linear. Kept from packing;
        after a pack-cache hit (weights restored packed, never re-read) `choose_kernel` is run again on the weights of
        model.onnx, for this diagnostic only: same function, same inputs, so the same decision."""
        eng = self.engine
        if len(eng.kernel_choices) < len(eng.packed):
            import onnx

            plan = build_plan(onnx.load(str(self.model_path), load_external_data=False), self.num_heads,
                              eng.plan.model_type, None, eng.plan.max_positions)  # the family's layer pattern
            for i, layer in enumerate(plan.layers):
                for name in LINEARS:
                    lp = _stack_qkv(layer.q, layer.k, layer.v) if name == "qkv" else getattr(layer, name)
                    eng.kernel_choices[f"layers.{i}.{name}"] = choose_kernel(lp.weight, eng.artifact_block, eng.isa)
        return dict(eng.kernel_choices)

    def run(self, input_ids, attention_mask, token_type_ids=None):
        if "token_type_ids" not in self.input_names:
            token_type_ids = None
        return self.engine.run(input_ids, attention_mask, token_type_ids)
