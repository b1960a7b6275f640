"""benchmarks/latency_vs_scope.py's matching logic (issue 20, item 4): the uniform sparsity interpolated on measured
engine latencies, the +-3% pair report, and the exact McNemar test."""
from __future__ import annotations

from pathlib import Path

import pytest
from _script_loader import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def lvs():
    return load_script(BENCH / "latency_vs_scope.py")


def test_sparsity_at_ms_interpolates_between_the_bracketing_points(lvs):
    # latency falls with sparsity; 5.0 ms lies a quarter of the way from 5.2 (at 0.78) to 4.4 (at 0.82)
    assert lvs.sparsity_at_ms([0.78, 0.80, 0.82], [5.2, 4.8, 4.4], 5.1) == pytest.approx(0.785)
    assert lvs.sparsity_at_ms([0.82, 0.78, 0.80], [4.4, 5.2, 4.8], 4.6) == pytest.approx(0.81)  # unsorted input


def test_sparsity_at_ms_extrapolates_from_the_nearest_pair(lvs):
    assert lvs.sparsity_at_ms([0.78, 0.80, 0.82], [5.2, 4.8, 4.4], 5.4) == pytest.approx(0.77)
    assert lvs.sparsity_at_ms([0.78, 0.80, 0.82], [5.2, 4.8, 4.4], 4.2) == pytest.approx(0.83)


def test_sparsity_at_ms_tolerates_a_noisy_non_monotone_point(lvs):
    # a noisy median (0.80 slower than 0.78) must not send the answer outside the points that bracket the target
    s = lvs.sparsity_at_ms([0.76, 0.78, 0.80, 0.82], [5.6, 5.0, 5.1, 4.4], 4.75)
    assert 0.80 <= s <= 0.82


def test_sparsity_at_ms_rejects_too_few_points(lvs):
    with pytest.raises(ValueError, match=">= 2"):
        lvs.sparsity_at_ms([0.8], [5.0], 5.0)


def test_match_report_flags_each_pair_against_the_reference(lvs):
    rep = lvs.match_report({"latency": 5.0, "layer": 4.9, "global": 4.84}, "latency")
    assert set(rep) == {"layer", "global"}
    assert rep["layer"]["vs_ref"] == pytest.approx(-0.02) and rep["layer"]["within"]
    assert rep["global"]["vs_ref"] == pytest.approx(-0.032) and not rep["global"]["within"]


def test_mcnemar_exact_counts_discordant_items(lvs):
    a = [1, 1, 1, 0, 0, 1]
    b = [1, 0, 0, 1, 0, 1]
    t = lvs.mcnemar_exact(a, b)
    assert (t["only_first_right"], t["only_second_right"]) == (2, 1)
    assert t["p_value"] == pytest.approx(1.0)
    t = lvs.mcnemar_exact([1] * 10, [0] * 10)
    assert t["p_value"] == pytest.approx(2 * 0.5 ** 10)


def _seed_result(seed, acc, discordant, within=True):
    """a latency_vs_scope.py results.json reduced to what latency_vs_scope_seeds.py reads"""
    runs = {m: {"int8_native_accuracy": a, "fp32_accuracy": a, "sparsity_reached": 0.8} for m, a in acc.items()}
    mc = {}
    for other, (b, c) in discordant.items():
        for kind in ("int8_native", "fp32"):
            mc[f"latency_vs_{other}_{kind}"] = {"only_first_right": b, "only_second_right": c}
    return {"seed": seed, "runs": runs, "mcnemar": mc,
            "timing": {"pairs_vs_latency": {"global": {"within": within}, "layer": {"within": True}}}}


def test_seeds_summary_pools_the_discordant_counts():
    seeds = load_script(BENCH / "latency_vs_scope_seeds.py")
    res = [_seed_result(42, {"latency": 0.76, "global": 0.75, "layer": 0.73}, {"layer": (10, 2), "global": (6, 5)}),
           _seed_result(43, {"latency": 0.74, "global": 0.75, "layer": 0.72}, {"layer": (9, 3), "global": (4, 6)},
                        within=False)]
    s = seeds.summarize(res)
    assert s["seeds"] == [42, 43] and s["matched_within_3pct"] == [True, False]
    assert s["accuracy"]["latency"]["mean"] == pytest.approx(0.75)
    assert s["accuracy"]["latency"]["sd"] == pytest.approx(0.0141421, rel=1e-4)
    lay, glo = s["latency_vs_layer"], s["latency_vs_global"]
    assert (lay["only_latency_right"], lay["only_layer_right"]) == (19, 5)
    assert (glo["only_latency_right"], glo["only_global_right"]) == (10, 11)
    assert lay["p_value"] < 0.01 < glo["p_value"]  # 19 vs 5 is significant; 10 vs 11 is not
    md = seeds.markdown(s)
    assert "| latency | 76.00% (80.0% sparse) | 74.00% (80.0% sparse) | 75.00 +- 1.41 |" in md
    with pytest.raises(ValueError, match="no results"):
        seeds.summarize([])
