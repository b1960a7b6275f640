"""benchmarks/block_shape_accuracy.py's summary: accuracy per block over seeds, the speed-up per seed, and the
stratified exact McNemar test of each shape against the first."""
from __future__ import annotations

from pathlib import Path

import pytest
from _script_loader import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bsa():
    return load_script(BENCH / "block_shape_accuracy.py")


def _run(right, sparsity=0.8):
    return {"int8_native_right": right, "fp32_right": right, "int8_native_accuracy": sum(right) / len(right),
            "fp32_accuracy": sum(right) / len(right), "sparsity_reached": sparsity}


def test_stratified_mcnemar_sums_the_discordant_counts(bsa):
    # stratum 1: 3 only-first, 1 only-second; stratum 2: 2 and 0 -> 5 vs 1, p = 2 * P(X <= 1 | 6, 1/2) = 14/64
    t = bsa.stratified_mcnemar([([1, 1, 1, 0, 1], [0, 0, 0, 1, 1]), ([1, 1, 0], [0, 0, 0])])
    assert (t["only_first_right"], t["only_second_right"]) == (5, 1)
    assert t["p_value"] == pytest.approx(14 / 64)
    assert bsa.stratified_mcnemar([([1, 0], [1, 0])])["p_value"] == 1.0  # no discordant pair


def test_summary_and_table(bsa):
    res = {"runs": {"s1_4x1": _run([1, 1, 0, 0]), "s1_4x4": _run([1, 0, 0, 0]),
                    "s2_4x1": _run([1, 1, 1, 0]), "s2_4x4": _run([1, 1, 1, 1])},
           "timing": {"s1_4x1": {"cpu_ms": 10.0}, "s1_4x4": {"cpu_ms": 8.0},
                      "s2_4x1": {"cpu_ms": 12.0}, "s2_4x4": {"cpu_ms": 10.0}}}
    s = bsa.summarize(res, ["4x1", "4x4"], [1, 2])
    assert s["4x1"]["int8_native"]["per_seed"] == [0.5, 0.75]
    assert s["4x4"]["int8_native"]["mean"] == pytest.approx(0.625)
    assert "mcnemar_vs_first" not in s["4x1"]
    mc = s["4x4"]["mcnemar_vs_first"]["int8_native"]
    assert (mc["only_first_right"], mc["only_second_right"]) == (1, 1)  # 4x4 right where 4x1 is not, and back
    table = bsa.markdown(s, ["4x1", "4x4"])
    assert "| 4x4 | 62.50 +- 53.03 (25.00, 100.00)" in table
    assert "1.25x / 1.20x" in table  # per-seed speed-up of 4x4 over 4x1
    with pytest.raises(KeyError):
        bsa.summarize(res, ["4x1", "4x4"], [1, 3])  # a seed that did not run


def test_a_variant_names_its_own_sparsity(bsa):
    assert bsa.variant("4x4", 0.8) == ("4x4", 0.8)
    assert bsa.variant("4x4:0.77", 0.8) == ("4x4", 0.77)
    assert bsa.run_name(42, "4x1") == "s42_4x1"  # the names of runs without an own sparsity are unchanged
    assert bsa.run_name(42, "4x4:0.77") == "s42_4x4_s0.77"
    res = {"runs": {"s1_4x1": _run([1, 0]), "s1_4x4_s0.77": _run([1, 1])}}
    s = bsa.summarize(res, ["4x1", "4x4:0.77"], [1])
    assert s["4x4:0.77"]["int8_native"]["mean"] == 1.0
