"""Issue 20, item 4 over several seeds: reads the results.json of `latency_vs_scope.py` runs that differ only in
--seed, and reports each mode's accuracy per seed and its mean +- sd, whether every seed matched latency within
+-3%, and a stratified exact McNemar test of the latency student against per-layer and against global: the
discordant counts of every seed summed (each seed is its own stratum of the same 2,000 sentences), two-sided
binomial at 1/2.

    python benchmarks/latency_vs_scope_seeds.py benchmarks/out/lvs17_s42 benchmarks/out/lvs17_s43 \
        benchmarks/out/lvs17_s44
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

MODES = ("latency", "global", "layer")


def summarize(results: list[dict], kind: str = "int8_native") -> dict:
    """results: latency_vs_scope.py's results.json of each seed. kind: "int8_native" or "fp32"."""
    from scipy.stats import binomtest

    if not results:
        raise ValueError("no results to summarize")
    acc = {m: [r["runs"][m][f"{kind}_accuracy"] for r in results] for m in MODES}
    out = {"seeds": [r.get("seed") for r in results], "kind": kind,
           "accuracy": {m: {"per_seed": v, "mean": statistics.fmean(v),
                            "sd": statistics.stdev(v) if len(v) > 1 else 0.0} for m, v in acc.items()},
           "sparsity": {m: [r["runs"][m]["sparsity_reached"] for r in results] for m in MODES},
           "matched_within_3pct": [all(p["within"] for p in r["timing"]["pairs_vs_latency"].values()) for r in results]}
    for other in ("layer", "global"):
        tests = [r["mcnemar"][f"latency_vs_{other}_{kind}"] for r in results]
        b = sum(t["only_first_right"] for t in tests)
        c = sum(t["only_second_right"] for t in tests)
        out[f"latency_vs_{other}"] = {"only_latency_right": b, f"only_{other}_right": c,
                                      "p_value": float(binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0}
    return out


def markdown(s: dict) -> str:
    lines = [f"| mode | {' | '.join(f'seed {x}' for x in s['seeds'])} | mean +- sd ({s['kind']}) |",
             "|---|" + "---|" * (len(s["seeds"]) + 1)]
    for m in MODES:
        a = s["accuracy"][m]
        cells = " | ".join(f"{x * 100:.2f}% ({sp * 100:.1f}% sparse)" for x, sp in zip(a["per_seed"], s["sparsity"][m],
                                                                                    strict=True))
        lines.append(f"| {m} | {cells} | {a['mean'] * 100:.2f} +- {a['sd'] * 100:.2f} |")
    lines.append("")
    for other in ("layer", "global"):
        t = s[f"latency_vs_{other}"]
        lines.append(f"latency vs {other}, stratified McNemar: only latency right {t['only_latency_right']}, only "
                     f"{other} right {t[f'only_{other}_right']}, p = {t['p_value']:.3g}")
    lines.append(f"every mode within +-3% of the latency student's measured latency, per seed: "
                 f"{s['matched_within_3pct']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="latency_vs_scope.py --out folders (one per seed)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    results = [json.loads((d / "results.json").read_text()) for d in a.runs]
    summary = {k: summarize(results, k) for k in ("int8_native", "fp32")}
    for s in summary.values():
        print(markdown(s) + "\n")
    if a.json:
        a.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
