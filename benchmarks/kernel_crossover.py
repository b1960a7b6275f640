"""Sparse or dense by call length: where the block-sparse 4x1 kernel overtakes the dense int8 kernel, as a function of
the zero-block fraction and of the call's token count M (the GEMM's rows). Behind SPARSE_FROM_TOKENS_BY_ISA
(hf_fast/runtime/engine.py): below 60% zero blocks on AVX-512 VNNI the engine packs a Linear for both kernels and
runs calls of >= 32 tokens block-sparse, shorter ones dense.

    python benchmarks/kernel_crossover.py linears      # one Linear at a time (hot cache): dense ms / sparse ms
    python benchmarks/kernel_crossover.py engine DIR   # a whole artifact: per-call CPU ms under each kernel rule
    python benchmarks/kernel_crossover.py encode DIR   # FastSentenceTransformer.encode, SQuAD dev text, old vs new rule

Every figure is a median of process CPU time over interleaved rounds (1 thread by default), so other processes on
the machine cost wall time, not these figures. "linears" keeps each weight hot in cache, which favours the dense
kernel on short calls; "engine" runs the real model, whose weights stream from L3 on every call. The order of the
rules flips every round.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from hf_fast import native  # noqa: E402

DATA = HERE.parent.parent / "shared" / "data"


def cpu_median(fn, rounds: int = 7, min_s: float = 0.03) -> float:
    """Median over `rounds` of the mean CPU seconds of back-to-back calls lasting at least min_s."""
    out = []
    for _ in range(rounds):
        n, c0 = 0, time.process_time()
        while True:
            fn()
            n += 1
            if time.process_time() - c0 > min_s:
                break
        out.append((time.process_time() - c0) / n)
    return float(np.median(out))


def run_linears(args) -> dict:
    from bench_gemm import sparse_weight

    rng = np.random.default_rng(0)
    rows = {}
    for shape in args.shapes:
        n, k = (int(x) for x in shape.split("x"))
        for frac in args.fractions:
            w = sparse_weight(rng, n, k, "4x1", frac)
            scale = np.full(n, 0.01, np.float32)
            sp, dn = (native.PackedLinear(w, scale, block=b) for b in ("4x1", "dense"))
            ratios = {}
            for m in args.tokens:
                a = rng.integers(0, 256, (m, k), dtype=np.uint8)
                ts, td = [], []
                for _ in range(args.rounds):  # interleaved
                    ts.append(cpu_median(lambda sp=sp, a=a: sp.forward(a, 0.02, 128), 3))
                    td.append(cpu_median(lambda dn=dn, a=a: dn.forward(a, 0.02, 128), 3))
                ratios[m] = float(np.median(td) / np.median(ts))
            rows[f"{shape} {frac:.2f}"] = ratios
            print(f"{n}x{k} zero {frac:.0%}: dense ms / sparse ms by tokens: "
                  + "  ".join(f"{m}: {r:.2f}" for m, r in ratios.items()), flush=True)
    return {"linears": rows}


RULES = {  # name: (SPARSE_FROM_TOKENS_BY_ISA["avx512vnni"], SPARSE_MIN_FRACTION_BY_ISA["avx512vnni"])
    "fixed 60% (before)": ((), 0.6),
    "by call length (now)": (None, None),  # the shipped table
    "sparse from 25%": ((), 0.25),
    "dense": ((), 1.01),
}


def load_under(rule: str, load):
    """`load()` with the engine's kernel rule set to RULES[rule] (restored after; no pack cache)."""
    import hf_fast.runtime.engine as E

    table, floor = RULES[rule]
    saved = (E.SPARSE_FROM_TOKENS_BY_ISA.get("avx512vnni"), E.SPARSE_MIN_FRACTION_BY_ISA.get("avx512vnni"))
    try:
        if table is not None:
            E.SPARSE_FROM_TOKENS_BY_ISA["avx512vnni"], E.SPARSE_MIN_FRACTION_BY_ISA["avx512vnni"] = table, floor
        return load()
    finally:
        E.SPARSE_FROM_TOKENS_BY_ISA["avx512vnni"], E.SPARSE_MIN_FRACTION_BY_ISA["avx512vnni"] = saved


def run_engine(args) -> dict:
    from hf_fast.runtime.modeling import FastModel

    models = {r: load_under(r, lambda: FastModel.from_pretrained(args.artifact)) for r in RULES}
    rng = np.random.default_rng(0)
    out = {}
    for shape in args.calls:
        b, s = (int(x) for x in shape.split("x"))
        ids = rng.integers(1000, 2000, (b, s))
        mask = np.ones_like(ids)
        t = {r: [] for r in RULES}
        ref = None
        for i in range(args.rounds):  # the order flips every round: no rule always runs first
            for r, m in (list(models.items()) if i % 2 == 0 else reversed(models.items())):
                t[r].append(cpu_median(lambda m=m, ids=ids, mask=mask: m.backend.run(ids, mask), 3))
        for m in models.values():  # every rule gives the same outputs, bit for bit
            y = m.backend.run(ids, mask)
            y = [np.asarray(v) for v in (y.values() if isinstance(y, dict) else y if isinstance(y, (list, tuple))
                                         else [y])]
            ref = y if ref is None else ref
            assert all(np.array_equal(a, b) for a, b in zip(y, ref, strict=True)), "kernel rules disagree"
        out[shape] = {r: float(np.median(v) * 1e3) for r, v in t.items()}
        print(f"{b}x{s} ({b * s} tokens a call): " + "  ".join(f"{r} {v:.2f} ms" for r, v in out[shape].items()),
              flush=True)
    return {"engine": out}


def run_encode(args) -> dict:
    from hf_fast import FastSentenceTransformer

    dev = json.loads((DATA / "squad" / "squad_v1.1_dev.json").read_text())["data"]
    paragraphs = [p["context"] for a in dev for p in a["paragraphs"]][: args.paragraphs]
    questions = [q["question"] for a in dev for p in a["paragraphs"] for q in p["qas"]][: args.questions]
    rules = ["fixed 60% (before)", "by call length (now)"]
    models = {r: load_under(r, lambda: FastSentenceTransformer.from_pretrained(args.artifact)) for r in rules}
    out = {}
    for name, texts, bs in (("paragraphs, batch 32", paragraphs, 32), ("questions, batch 1", questions, 1)):
        t = {r: [] for r in rules}
        embs = {}
        for i in range(args.rounds):  # the order flips every round: no rule always runs first
            for r, m in (list(models.items()) if i % 2 == 0 else reversed(models.items())):
                c = time.process_time()
                embs[r] = m.encode(texts, batch_size=bs, show_progress_bar=False)
                t[r].append(time.process_time() - c)
        same = np.array_equal(*embs.values())
        med = {r: float(np.median(v)) for r, v in t.items()}
        out[name] = {**med, "speed-up": med[rules[0]] / med[rules[1]], "same embeddings": bool(same)}
        print(f"{name} ({len(texts)} texts): before {med[rules[0]]:.3f} s, now {med[rules[1]]:.3f} s CPU -> "
              f"{out[name]['speed-up']:.2f}x; same embeddings: {same}", flush=True)
    return {"encode": out}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    li = sub.add_parser("linears")
    li.add_argument("--shapes", nargs="+", default=["1152x384", "384x384", "1536x384", "384x1536"])
    li.add_argument("--fractions", type=float, nargs="+", default=[0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    li.add_argument("--tokens", type=int, nargs="+", default=[8, 16, 32, 64, 128, 512])
    en = sub.add_parser("engine")
    en.add_argument("artifact")
    en.add_argument("--calls", nargs="+", default=["1x8", "1x16", "1x32", "1x64", "1x128", "4x128"])
    ec = sub.add_parser("encode")
    ec.add_argument("artifact", help="a feature-extraction artifact (save_fast of a SentenceTransformer)")
    ec.add_argument("--paragraphs", type=int, default=256)
    ec.add_argument("--questions", type=int, default=150)
    for p in (li, en, ec):
        p.add_argument("--rounds", type=int, default=5)
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    os.environ["HF_FAST_PACK_CACHE"] = "0"  # each rule packs its own weights
    info = native.native_info()
    print(f"# ISA {info['isa']}, {args.threads} thread(s), CPU-time medians of {args.rounds} interleaved rounds")
    with native.num_threads(args.threads):
        res = {"linears": run_linears, "engine": run_engine, "encode": run_encode}[args.mode](args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"isa": info["isa"], "threads": args.threads, **res}, indent=1))


if __name__ == "__main__":
    main()
