"""Cubic sparsity schedule (Zhu & Gupta 2017)."""
import pytest

from hf_fast.training.schedule import SparsitySchedule


def test_cubic_values():
    s = SparsitySchedule(final=0.8, start=10, end=20, frequency=2)
    assert s.sparsity(0) == 0.0 and s.sparsity(9) == 0.0
    assert s.sparsity(10) == 0.0
    assert s.sparsity(15) == pytest.approx(0.8 - 0.8 * 0.5 ** 3)  # 0.7
    assert s.sparsity(12) == pytest.approx(0.8 * (1 - 0.8 ** 3))
    assert s.sparsity(20) == pytest.approx(0.8) and s.sparsity(1000) == pytest.approx(0.8)
    vals = [s.sparsity(t) for t in range(10, 21)]
    assert all(a <= b for a, b in zip(vals, vals[1:], strict=False))  # monotone


def test_initial_sparsity():
    s = SparsitySchedule(final=0.9, start=0, end=10, initial=0.5)
    assert s.sparsity(0) == pytest.approx(0.5)
    assert s.sparsity(5) == pytest.approx(0.9 - 0.4 * 0.125)


def test_update_steps():
    s = SparsitySchedule(final=0.8, start=2, end=11, frequency=3)
    assert [t for t in range(0, 20) if s.is_update_step(t)] == [2, 5, 8, 11]
    s = SparsitySchedule(final=0.8, start=0, end=10, frequency=3)
    assert [t for t in range(0, 20) if s.is_update_step(t)] == [0, 3, 6, 9, 10]


def test_oneshot():
    s = SparsitySchedule(final=0.6, start=4, end=4, kind="oneshot")
    assert s.sparsity(3) == 0.0 and s.sparsity(4) == 0.6
    assert [t for t in range(10) if s.is_update_step(t)] == [4]


def test_bad_schedule():
    with pytest.raises(ValueError):
        SparsitySchedule(final=1.0, start=0, end=1)
    with pytest.raises(ValueError):
        SparsitySchedule(final=0.5, start=5, end=1)
