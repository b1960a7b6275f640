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
