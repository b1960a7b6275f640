"""Sparsity schedules: the target sparsity after optimizer step t.

Cubic (Zhu & Gupta, "To prune, or not to prune", 2017):

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0)) ** 3     for t0 <= t <= t1

s_i before t0, s_f after t1. Masks are updated every ``frequency`` steps inside [t0, t1] and at t1.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SparsitySchedule:
    """Resolved schedule (all steps are optimizer steps, counted from 1 = after the first update).

    Args:
        final: final sparsity s_f in [0, 1).
        start: t0, first step of the pruning window.
        end: t1, last step of the window (masks fixed afterwards).
        frequency: steps between mask updates.
        initial: s_i, sparsity at t0.
        kind: ``"cubic"`` or ``"oneshot"`` (``final`` from ``start`` on).
    """

    final: float
    start: int
    end: int
    frequency: int = 1
    initial: float = 0.0
    kind: str = "cubic"

    def __post_init__(self):
        if not (0.0 <= self.initial <= self.final < 1.0):
            raise ValueError(f"need 0 <= initial ({self.initial}) <= final ({self.final}) < 1")
        if self.start < 0 or self.end < self.start:
            raise ValueError(f"need 0 <= start ({self.start}) <= end ({self.end})")
        if self.frequency < 1:
            raise ValueError(f"frequency must be >= 1, got {self.frequency}")
        if self.kind not in ("cubic", "oneshot"):
            raise ValueError(f"unknown schedule {self.kind!r}")

    def sparsity(self, step: int) -> float:
        """Target sparsity at ``step`` (continuous in step; masks follow it only at update steps)."""
        if self.kind == "oneshot":
            return self.final if step >= self.start else 0.0
        if step < self.start:
            return 0.0
        if step >= self.end:
            return self.final
        frac = (step - self.start) / (self.end - self.start)
        return self.final + (self.initial - self.final) * (1.0 - frac) ** 3

    def fraction(self, step: int) -> float:
        """How far the schedule has ramped at ``step``, in [0, 1]: 0 before ``start``, 1 from ``end`` on, the cubic
        ``1 - (1 - frac) ** 3`` between (oneshot: 1 from ``start``). The latency-aware scope ramps its time target
        with it, as the sparsity ramps from ``initial`` to ``final``."""
        if self.kind == "oneshot":
            return 1.0 if step >= self.start else 0.0
        if step < self.start:
            return 0.0
        if step >= self.end:
            return 1.0
        return 1.0 - (1.0 - (step - self.start) / (self.end - self.start)) ** 3

    def is_update_step(self, step: int) -> bool:
        """Whether the masks are recomputed after optimizer step ``step``."""
        if self.kind == "oneshot":
            return step == max(self.start, 1)
        if step < self.start or step > self.end:
            return False
        return step == self.end or (step - self.start) % self.frequency == 0

    def update_steps(self) -> list[int]:
        """The optimizer steps (>= 1) at which the masks are recomputed."""
        if self.kind == "oneshot":
            return [max(self.start, 1)]
        steps = set(range(self.start, self.end + 1, self.frequency)) | {self.end}
        return sorted(t for t in steps if t >= 1)

    def max_jump(self) -> float:
        """The largest rise of the target sparsity from one mask update to the next (the first from
        ``initial``): how abruptly the weights lose blocks."""
        prev, worst = self.initial, 0.0
        for t in self.update_steps():
            s = self.sparsity(t)
            worst, prev = max(worst, s - prev), s
        return worst

    @staticmethod
    def default_frequency(start: int, end: int, updates: int = 20) -> int:
        return max(1, (end - start) // updates)
