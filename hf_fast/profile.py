"""``hf-fast profile``: measure the engine's cost curves on this CPU and write them as a cost file
(hf_fast/cost_curves.py).

Each Linear shape is timed through the native bindings (``PackedLinear.forward`` with the uint8 epilogue the
engine's GEMMs end in) on the dense kernel and on the block-sparse kernel at every sparsity of the grid, for each
block shape, at the target shape's ``batch * seq`` rows and the given thread count. The runs of one shape are
interleaved round by round, so load changes on a shared machine hit every point alike; the median is kept.

A Linear timed alone runs with its weight in cache; in the engine, a model whose weights outgrow the cache streams
them from memory each pass (measured here: a dense 6-layer MiniLM took ~6x its 4-layer version). So for a model the
engine itself is also timed, on synthetic plans of its dimensions (random weights: the kernels' time does not
depend on the values; they run what the default export runs: SmoothQuant multipliers, fp32 attention, classifier
head): dense, uniformly sparse at each grid point from the sparse/dense crossover on, with every block skipped (the
fixed cost: embeddings, attention, LayerNorms, quantizers), and with one role dense among sparse Linears (what a
dense Linear costs in a pruned model). These engines are timed in the same rounds, each timed call after untimed
calls of the same engine (warm, as a server running one model). CostCurves.role_curves spreads each measured engine
time over the roles in the proportions of the Linears timed alone.
"""
from __future__ import annotations

import platform
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np

from hf_fast.cost_curves import ROLES, CostCurves, engine_shapes, model_key, shape_key
from hf_fast.models.bert import FAMILY as BERT  # the synthetic engines are BERT-shaped

DEFAULT_SPARSITIES = tuple(round(0.05 * i, 2) for i in range(20))  # 0, 0.05, ..., 0.95
DEFAULT_BLOCKS = ("4x1", "1x4")
_IN_SCALE, _IN_ZP = 0.05, 128  # activation quantizer of the synthetic layers (any valid one: timing only)
MIXED_AT = 0.8  # the sparsity of the other Linears when one role is timed dense among sparse ones
WARM_CALLS = 3  # engine timing: each timed call follows WARM_CALLS - 1 untimed calls of the same engine
# engine timing: at least this many rounds whatever the budget; medians of 5 rounds on a loaded 2-core host were
# up to 11% off the same engine timed later (helper h7's dense point), which set wrong targets and allocations
MIN_ENGINE_ROUNDS = 20


def random_block_weight(rng: np.random.Generator, n: int, k: int, block: str | None, sparsity: float) -> np.ndarray:
    """int8 [n, k] with ``ceil(sparsity * blocks)`` all-zero ``block`` blocks, at random places (``sparsity`` 1: every
    block zero)."""
    w = rng.integers(-127, 128, size=(n, k), dtype=np.int8)
    if block in (None, "dense") or sparsity <= 0:
        return w
    r, c = (4, 1) if block == "4x1" else (1, 4)
    nb = (n // r) * (k // c)
    keep = np.ones(nb, dtype=bool)
    # at least the fraction asked for: rounding down would leave a point on the sparse/dense crossover just under it,
    # where the engine runs the dense kernel (choose_kernel: zero fraction >= crossover), and time the wrong kernel
    keep[rng.permutation(nb)[:min(nb, int(np.ceil(sparsity * nb - 1e-9)))]] = False
    keep = keep.reshape(n // r, k // c)
    return w * np.repeat(np.repeat(keep, r, axis=0), c, axis=1).astype(np.int8)


def clock_for(threads: int) -> Callable[[], float]:
    """The timer of a profile: with one thread the process's CPU time, which equals the wall time on an idle
    machine and leaves out the time other processes hold the core on a shared one; with more threads the wall
    time (CPU time would add the threads up)."""
    return time.process_time if threads == 1 else time.perf_counter


def _interleaved_ms(fns: Sequence[Callable[[], Any]], budget_s: float, min_rounds: int = 5,
                    max_rounds: int = 500, clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Median milliseconds of each function (by ``clock``), timed one call each per round, round after round,
    for about ``budget_s`` of wall time."""
    for f in fns:  # warm-up: scratch buffers, page faults
        f()
    times: list[list[float]] = [[] for _ in fns]
    t_end = time.perf_counter() + budget_s
    rounds = 0
    while rounds < min_rounds or (time.perf_counter() < t_end and rounds < max_rounds):
        for i, f in enumerate(fns):
            t0 = clock()
            f()
            times[i].append(clock() - t0)
        rounds += 1
    return [1e3 * float(np.median(t)) for t in times]


def time_linear_curves(shapes: Sequence[tuple[int, int]], tokens: int, blocks: Sequence[str] = DEFAULT_BLOCKS,
                       sparsities: Sequence[float] = DEFAULT_SPARSITIES, budget_s: float = 1.0,
                       seed: int = 0, clock: Callable[[], float] = time.perf_counter) -> dict[str, dict[str, Any]]:
    """{"NxK": {"dense_ms", "sparse_ms": {block: [ms per sparsity]}, "empty_ms": {block: ms}}} for ``tokens`` rows
    (call inside the thread count to profile). ``empty_ms``: the same call with every block zero, i.e. what a call
    costs besides its kept blocks (the binding's overhead, the epilogue), which the engine's all-blocks-skipped
    ``fixed_ms`` already holds: CostCurves subtracts it before it splits the engine's Linear time over the roles."""
    from hf_fast import native

    rng = np.random.default_rng(seed)
    out = {}
    for n, k in dict.fromkeys((int(n), int(k)) for n, k in shapes):
        a = rng.integers(0, 256, size=(tokens, k), dtype=np.uint8)
        scale = np.full(n, 1e-3, np.float32)
        bias = np.zeros(n, np.float32)
        layers = [native.PackedLinear(random_block_weight(rng, n, k, None, 0.0), scale, bias, block="dense")]
        for b in blocks:
            layers += [native.PackedLinear(random_block_weight(rng, n, k, b, s), scale, bias, block=b)
                       for s in [*sparsities, 1.0]]
        fns = [lambda pl=pl, a=a: pl.forward(a, _IN_SCALE, _IN_ZP, out_quant=(0.05, 128)) for pl in layers]
        ms = _interleaved_ms(fns, budget_s, clock=clock)
        curves, empty, i = {}, {}, 1
        for b in blocks:
            curves[b] = [round(t, 5) for t in ms[i:i + len(sparsities)]]
            empty[b] = round(ms[i + len(sparsities)], 5)
            i += len(sparsities) + 1
        out[shape_key(n, k)] = {"dense_ms": round(ms[0], 5), "sparse_ms": curves, "empty_ms": empty}
    return out


def synthetic_plan(hidden: int, heads: int, ffn: int, layers: int, max_pos: int, block: str | None = None,
                   sparsity: Mapping[tuple[int, str], float] | None = None, seed: int = 0, vocab: int = 1000):
    """A BERT-shaped EncoderPlan of random weights, each Linear with ``sparsity[(layer, role)]`` zero blocks (Q, K
    and V alike), for timing the engine without an exported model. It runs what the default export of a
    text-classification model runs: a SmoothQuant multiplier in front of every Linear's quantizer, fp32 attention,
    and the pooler + classifier head."""
    from hf_fast.runtime.graph import FakeQuant
    from hf_fast.runtime.plan import EmbeddingPlan, EncoderPlan, HeadOp, LayerNormPlan, LayerPlan, LinearPlan

    rng = np.random.default_rng(seed)
    sparsity = sparsity or {}
    fq = FakeQuant(_IN_SCALE, _IN_ZP)
    muls = {k: np.ones(k, np.float32) for k in (hidden, ffn)}  # one array: Q, K and V must share theirs

    def ln(h):
        return LayerNormPlan(np.ones(h, np.float32), np.zeros(h, np.float32), 1e-12)

    def lin(name, n, k, s):
        w = random_block_weight(rng, n, k, block, s)
        return LinearPlan(name, w, np.full(n, 1.0 / (127 * np.sqrt(k)), np.float32), np.zeros(n, np.float32), fq,
                          in_mul=muls[k])

    def dense(n, k):
        return (0.02 * rng.standard_normal((n, k))).astype(np.float32), np.zeros(n, np.float32)

    def table(rows):
        return (0.02 * rng.standard_normal((rows, hidden))).astype(np.float32)

    lps = []
    for i in range(layers):
        s = {r: float(sparsity.get((i, r), 0.0)) for r in ROLES}
        lps.append(LayerPlan(lin(f"l{i}.q", hidden, hidden, s["qkv"]), lin(f"l{i}.k", hidden, hidden, s["qkv"]),
                             lin(f"l{i}.v", hidden, hidden, s["qkv"]),
                             lin(f"l{i}.attn_out", hidden, hidden, s["attn_out"]), ln(hidden),
                             lin(f"l{i}.ffn_in", ffn, hidden, s["ffn_in"]),
                             lin(f"l{i}.ffn_out", hidden, ffn, s["ffn_out"]), ln(hidden),
                             scale=float(1.0 / np.sqrt(hidden // heads))))
    emb = EmbeddingPlan(table(vocab), table(max_pos), table(2), ln(hidden))
    head = [HeadOp("cls"), HeadOp("linear", *dense(hidden, hidden)), HeadOp("tanh"),
            HeadOp("linear", *dense(2, hidden))]
    return EncoderPlan(hidden=hidden, heads=heads, embeddings=emb, layers=lps, head=head, outputs={"logits": (0, 2)},
                       token_level=False, inputs=["input_ids", "attention_mask", "token_type_ids"],
                       model_type=BERT.model_type)


def engine_runner(plan, block: str | None, batch: int, seq: int, seed: int = 0) -> Callable[[], Any]:
    """A no-argument function running the engine of ``plan`` once on random ids of shape (batch, seq)."""
    from hf_fast.runtime.engine import NativeEngine

    eng = NativeEngine(plan, block=block)
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, eng.vocab, size=(batch, seq), dtype=np.int64)
    mask = np.ones_like(ids)
    return lambda: eng.run(ids, mask)


def machine_info(threads: int) -> dict[str, Any]:
    from hf_fast import native

    info = native.native_info()
    return {"cpu": info.get("cpu"), "isa": info.get("isa"), "kernels": info.get("kernels"), "threads": threads,
            "machine": platform.machine(), "hf_fast_native": info.get("version"),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def time_model_engine(dims: tuple[int, int, int, int], batch: int, seq: int, blocks: Sequence[str],
                      engine_sparsities: Sequence[float], budget_s: float = 1.0,
                      log: Callable[[str], None] | None = None,
                      clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """The engine's latency on synthetic plans of ``dims`` = (hidden, heads, ffn, layers): dense, every Linear at
    each of ``engine_sparsities`` per block, every Linear all-zero (``fixed_ms``: what remains when the GEMMs skip
    every block: embeddings, attention, LayerNorms, quantizers, epilogues), and one role dense among Linears
    ``MIXED_AT`` sparse (a dense Linear next to sparse ones costs more than in a dense model: the engine's fused
    FFN chain and activation layouts are the sparse kernels' there).

    All these engines are alive together and timed in the same rounds (a load burst on a shared machine hits every
    point alike, not one); each timed call follows ``WARM_CALLS - 1`` untimed calls of the same engine, so it runs
    on its own weights in cache, as a server running one model does. Rounds go on for ``budget_s`` per engine."""
    hidden, heads, ffn, layers = dims
    log = log or (lambda _m: None)
    ref = min(engine_sparsities, key=lambda s: abs(s - MIXED_AT))
    points: list[tuple[str, str | None, Any]] = [("dense", None, 0.0), ("fixed", blocks[0], 1.0)]
    points += [("sparse", b, s) for b in blocks for s in engine_sparsities]
    points += [("mixed", b, r) for b in blocks for r in ROLES]

    def runner(kind, block, x):
        if kind == "mixed":
            sp = {(i, r): (0.0 if r == x else ref) for i in range(layers) for r in ROLES}
        else:
            sp = dict.fromkeys(((i, r) for i in range(layers) for r in ROLES), x)
        plan = synthetic_plan(hidden, heads, ffn, layers, max_pos=max(512, seq), block=block, sparsity=sp)
        run = engine_runner(plan, block, batch, seq)

        def warm_then_run():
            for _ in range(WARM_CALLS - 1):
                run()
            return run  # the call _interleaved_ms times

        return warm_then_run

    times = _warm_interleaved_ms([runner(*p) for p in points], budget_s * len(points), clock, MIN_ENGINE_ROUNDS)
    res = dict(zip(points, times, strict=True))
    dense, fixed = res[points[0]], res[points[1]]
    sparse = {b: [round(res[("sparse", b, s)], 5) for s in engine_sparsities] for b in blocks}
    mixed = {b: {r: round(res[("mixed", b, r)], 5) for r in ROLES} for b in blocks}
    log(f"model {model_key(*dims)}: engine dense {dense:.3f} ms, all blocks skipped {fixed:.3f} ms, "
        + ", ".join(f"{b} {engine_sparsities[0]:.0%}..{engine_sparsities[-1]:.0%}: {ts[0]:.3f}..{ts[-1]:.3f} ms"
                    for b, ts in sparse.items()))
    return {"hidden": hidden, "heads": heads, "ffn": ffn, "layers": layers, "fixed_ms": round(fixed, 5),
            "dense_ms": round(dense, 5), "sparse_ms": sparse, "mixed_sparsity": ref, "mixed_ms": mixed}


def _warm_interleaved_ms(warmers: Sequence[Callable[[], Callable[[], Any]]], budget_s: float,
                         clock: Callable[[], float], min_rounds: int = 5) -> list[float]:
    """Median ms of each engine's timed call; ``warmers[i]()`` makes the untimed calls and returns the one to
    time."""
    times: list[list[float]] = [[] for _ in warmers]
    t_end = time.perf_counter() + budget_s
    rounds = 0
    while rounds < min_rounds or time.perf_counter() < t_end:
        for i, w in enumerate(warmers):
            f = w()
            t0 = clock()
            f()
            times[i].append(clock() - t0)
        rounds += 1
    return [1e3 * float(np.median(t)) for t in times]


def profile_costs(models: Sequence[tuple[int, int, int, int]] = (), shapes: Sequence[tuple[int, int]] = (),
                  target_shape: tuple[int, int] = (1, 128), threads: int = 1,
                  blocks: Sequence[str] = DEFAULT_BLOCKS, sparsities: Sequence[float] = DEFAULT_SPARSITIES,
                  budget_s: float = 1.0, log: Callable[[str], None] | None = None) -> CostCurves:
    """Measure the cost curves of every engine Linear of ``models`` ((hidden, heads, ffn, layers) each) and of the
    extra ``shapes`` ((N, K) each) at ``target_shape`` = (batch, seq) and ``threads``, and for each model the
    engine itself (``time_model_engine``), which puts the Linears' curves in the engine's cache and memory regime
    (CostCurves.linear_ms). ``budget_s``: seconds of interleaved rounds per Linear shape and per engine point."""
    from hf_fast import native
    from hf_fast.runtime.engine import _sparse_min_fraction

    try:
        batch, seq = (int(x) for x in target_shape)
    except (TypeError, ValueError):
        raise ValueError(f"target_shape must be (batch, seq), got {target_shape!r}") from None
    if batch < 1 or seq < 1:
        raise ValueError(f"target_shape must be (batch, seq) of positive ints, got {target_shape!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    sparsities = sorted(float(s) for s in sparsities)
    if not sparsities or sparsities[0] != 0.0 or sparsities[-1] >= 1.0 or len(set(sparsities)) != len(sparsities):
        raise ValueError(f"sparsities must be distinct, start at 0 and stay below 1, got {sparsities}")
    blocks = list(dict.fromkeys(blocks))
    bad = [b for b in blocks if b not in native.BLOCK_SHAPES]
    if bad or not blocks:
        raise ValueError(f"blocks must be among {native.BLOCK_SHAPES}, got {blocks}")
    models = [tuple(int(x) for x in m) for m in models]
    all_shapes = [s for m in models for s in engine_shapes(m[0], m[2]).values()] + [tuple(s) for s in shapes]
    if not all_shapes:
        raise ValueError("nothing to profile: give a model (--model / --dims) or Linear shapes (--shapes)")
    crossover = float(_sparse_min_fraction(None, tokens=batch * seq))  # in calls of this length
    engine_sp = [s for s in sparsities if s >= crossover - 1e-9]
    if models and not engine_sp:
        raise ValueError(f"no sparsity of {sparsities} reaches the engine's sparse/dense crossover {crossover}")
    log = log or (lambda _m: None)
    clock = clock_for(threads)
    with native.num_threads(threads):
        log(f"timing {len(dict.fromkeys(all_shapes))} Linear shape(s) x {len(blocks)} block(s) x {len(sparsities)} "
            f"sparsities at {batch * seq} tokens, {threads} thread(s)")
        linears = time_linear_curves(all_shapes, batch * seq, blocks, sparsities, budget_s, clock=clock)
        engines = {model_key(*m): time_model_engine(m, batch, seq, blocks, engine_sp, budget_s, log, clock)
                   for m in dict.fromkeys(models)}
    machine = {**machine_info(threads), "clock": clock.__name__}
    return CostCurves(target_shape=(batch, seq), threads=threads, sparsities=sparsities, crossover=crossover,
                      linears=linears, models=engines, engine_sparsities=engine_sp, machine=machine)
