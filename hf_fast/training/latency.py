"""Latency-aware block allocation (``FastConfig(scope="latency")``): per-layer sparsities chosen so that the engine's
predicted latency meets a time target, losing as little block score as possible.

The engine runs Q, K and V of a layer as one fused Linear and picks the dense or the sparse kernel per Linear, so
the unit of allocation is an engine Linear (a *group*: the qkv of a layer, or one of attn_out, ffn_in, ffn_out).
Its time at sparsity s comes from the cost curves (hf_fast/cost_curves.py); pruning its n lowest-scoring blocks
loses the sum of their scores. The allocation solves

    minimise  sum_g lost_g(n_g)   subject to   fixed + sum_g time_g(n_g / N_g) <= target

by Lagrangian relaxation: for a price lambda each group independently picks the n_g minimising
lost_g(n_g) + lambda * time_g(n_g / N_g) (exactly, over a grid of sparsities, so the dense/sparse kernel step of
the engine is handled), and lambda is bisected to the smallest price whose choices meet the target. Groups that
save the most time per point of score lost are pruned hardest. Blocks pruned earlier stay pruned.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from hf_fast.cost_curves import ROLES, CostCurves, engine_shapes, model_key

GRID_STEP = 0.005  # sparsity resolution of each group's choice


@dataclass
class Group:
    key: tuple[int, str]        # (layer, engine role)
    names: list[str]            # the pruned Linears it fuses (q, k, v for "qkv"), in order


def engine_groups(names: list[str], model) -> list[Group]:
    """The engine Linears of ``names`` (prunable Linear module paths) through the registry family's roles;
    ValueError when a name is not an engine Linear or a group is incomplete (the engine times the fused qkv)."""
    from hf_fast.models import registry

    fam = registry.find(getattr(getattr(model, "config", None), "model_type", None))
    if fam is None:
        raise ValueError(f"scope='latency' needs a model the native engine runs (model types "
                         f"{', '.join(registry.supported())}); got {getattr(model.config, 'model_type', None)!r}")
    groups: dict[tuple[int, str], dict[str, str]] = {}
    for n in names:
        lr = fam.linear_role(n)
        if lr is None:
            raise ValueError(f"scope='latency': {n} is not an encoder Linear the engine runs")
        i, role = lr
        groups.setdefault((i, "qkv" if role in ("q", "k", "v") else role), {})[role] = n
    out = []
    for (i, role), members in sorted(groups.items(), key=lambda kv: (kv[0][0], ROLES.index(kv[0][1]))):
        want = ("q", "k", "v") if role == "qkv" and "qkv" not in members else (role,)  # "qkv": a fused Linear
        if set(members) != set(want):
            raise ValueError(f"scope='latency': layer {i} prunes {sorted(members)} of its fused qkv Linear; the "
                             "engine runs Q, K and V as one GEMM, so exclude all three or none")
        out.append(Group((i, role), [members[r] for r in want]))
    return out


class LatencyModel:
    """The engine latency of one model as a function of its groups' sparsities, from a cost file."""

    def __init__(self, curves: CostCurves, dims: tuple[int, int, int, int], block: str, groups: list[Group]):
        curves.check_model(*dims, block)
        self.curves, self.dims, self.block, self.groups = curves, dims, block, groups
        self.role_curves = curves.role_curves(*dims, block)
        hidden, _, ffn, layers = dims
        self.shapes = engine_shapes(hidden, ffn)
        present = {g.key for g in groups}
        # engine Linears not pruned (exclude=) run dense: constant time
        self.const_ms = curves.models[model_key(*dims)]["fixed_ms"] + sum(
            float(curves.linear_ms(self.role_curves, r, 0.0)) for i in range(layers) for r in ROLES
            if (i, r) not in present)
        self.max_sparsity = curves.max_sparsity()

    def group_ms(self, group: Group, sparsity) -> np.ndarray:
        return self.curves.linear_ms(self.role_curves, group.key[1], sparsity)

    def predict_ms(self, sparsity: Mapping[tuple[int, str], float]) -> float:
        """Predicted latency with ``sparsity[group key]`` (missing groups: dense; all dense: the measured dense
        engine, since a dense Linear among sparse ones costs more than in a dense model)."""
        if all(sparsity.get(g.key, 0.0) < self.curves.crossover - 1e-9 for g in self.groups):
            return self.dense_ms()
        return self.const_ms + sum(float(self.group_ms(g, sparsity.get(g.key, 0.0))) for g in self.groups)

    def dense_ms(self) -> float:
        """The measured latency of the dense model: the baseline of ``target_speedup``."""
        return self.curves.models[model_key(*self.dims)]["dense_ms"]

    def min_ms(self) -> float:
        """The fastest the allocation can make the model: every group at the highest measured sparsity."""
        return self.predict_ms({g.key: self.max_sparsity for g in self.groups})


def resolve_target_ms(lm: LatencyModel, target_speedup: float | None, target_latency_ms: float | None) -> float:
    """The final latency target in ms; ValueError when the cost curves say it cannot be reached."""
    dense = lm.dense_ms()
    target = dense / target_speedup if target_speedup is not None else float(target_latency_ms)
    fastest = lm.min_ms()
    if target < fastest - 1e-9:
        what = (f"target_speedup={target_speedup} ({target:.3f} ms)" if target_speedup is not None
                else f"target_latency_ms={target_latency_ms}")
        raise ValueError(f"{what} cannot be reached: on the cost curves ({lm.curves.path or 'probe'}) the model runs "
                         f"{dense:.3f} ms dense and {fastest:.3f} ms ({dense / fastest:.2f}x) with every Linear at "
                         f"{lm.max_sparsity:.0%}, the most they were measured at")
    return target


def allocate(lm: LatencyModel, scores: Mapping[str, torch.Tensor], target_ms: float,
             previous: Mapping[str, torch.Tensor] | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Block masks (True = kept) of every pruned Linear meeting ``target_ms`` on ``lm`` at the least lost score.

    ``scores``: block scores per Linear name (higher = more important); blocks pruned in ``previous`` stay pruned.
    Returns (masks, info) with info = {"predicted_ms", "target_ms", "group_sparsity": {key: s}, "lambda"}."""
    opts = []  # per group: candidate pruned counts, their lost score and time
    for g in lm.groups:
        sc = [scores[n].detach().double().cpu().flatten() for n in g.names]
        s = torch.cat(sc)
        forced = torch.zeros_like(s, dtype=torch.bool)
        if previous is not None:
            forced = torch.cat([~previous[n].cpu().flatten() for n in g.names])
        total = s.numel()
        # no Linear of the group beyond the highest measured sparsity either (a fully pruned query would make
        # every attention score equal): each member's best-scoring blocks are out of reach
        reserved = torch.zeros_like(forced)
        off = 0
        for x in sc:
            top = int(np.ceil((1.0 - lm.max_sparsity) * x.numel() - 1e-9))
            if top:
                reserved[off + torch.topk(x, top).indices] = True
            off += x.numel()
        reserved &= ~forced
        key = torch.where(forced, torch.full_like(s, float("-inf")), s)
        key = torch.where(reserved, torch.full_like(s, float("inf")), key)
        order = torch.sort(key, stable=True).indices
        sorted_sc = torch.where(forced[order], torch.zeros_like(s), s[order].clamp_min(0.0))
        lost = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(sorted_sc, 0)]).numpy()
        p = int(forced.sum())
        n_max = max(p, min(int(np.floor(lm.max_sparsity * total + 1e-9)), total - int(reserved.sum())))
        cross = np.ceil(lm.curves.crossover * total - 1e-9)  # the fewest pruned blocks the engine runs sparse
        cand = np.unique(np.concatenate([[p, n_max, cross], np.round(np.arange(0.0, 1.0 + 1e-9, GRID_STEP) * total)]))
        cand = cand[(cand >= p) & (cand <= n_max)].astype(np.int64)
        opts.append((g, order, total, cand, lost[cand], lm.group_ms(g, cand / total)))

    cross_frac = lm.curves.crossover - 1e-9

    def choose(lam: float):
        # lam = inf: the fastest option, the least lost score among equally fast ones
        picks = [int(np.argmin(lost + lam * t)) if np.isfinite(lam) else int(np.lexsort((lost, t))[0])
                 for (_, _, _, _, lost, t) in opts]
        if not any(o[2] and o[3][i] >= cross_frac * o[2] for o, i in zip(opts, picks, strict=True)):
            return picks, lm.dense_ms()  # nothing runs sparse: the dense engine
        time = lm.const_ms + sum(float(o[5][i]) for o, i in zip(opts, picks, strict=True))
        return picks, time

    picks, t = choose(0.0)
    lam = 0.0
    if t > target_ms:
        picks, t = choose(float("inf"))
        if t <= target_ms:  # bisect the price between an infeasible and a feasible one (geometric)
            lo, hi = 0.0, 1.0
            while choose(hi)[1] > target_ms and hi < 1e300:
                lo, hi = hi, hi * 16.0
            for _ in range(200):
                mid = np.sqrt(lo * hi) if lo > 0 else hi / 16.0
                if choose(mid)[1] <= target_ms:
                    hi = mid
                else:
                    lo = mid
                if lo > 0 and hi / lo < 1 + 1e-9:
                    break
            lam = hi
            picks, t = choose(hi)
    picks, t = _give_back(opts, picks, t, target_ms)
    masks, group_sp = {}, {}
    for (g, order, total, cand, _, _), i in zip(opts, picks, strict=True):
        n = int(cand[i])
        keep = torch.ones(total, dtype=torch.bool)
        keep[order[:n]] = False
        group_sp[g.key] = n / total
        off = 0
        for name in g.names:
            m = scores[name].numel()
            masks[name] = keep[off:off + m].reshape(scores[name].shape)
            off += m
    return masks, {"predicted_ms": t, "target_ms": float(target_ms), "group_sparsity": group_sp, "lambda": lam}


def _give_back(opts, picks: list[int], time: float, target_ms: float) -> tuple[list[int], float]:
    """Spend the slack the Lagrangian choice leaves under the target (the engine's dense/sparse step makes its time
    jump) on un-pruning: repeatedly take the move to fewer pruned blocks in one group that recovers the most score
    and still meets the target."""
    picks = list(picks)
    for _ in range(10_000):
        best = None
        for gi, (_, _, _, _, lost, t) in enumerate(opts):
            i = picks[gi]
            ok = np.nonzero((np.arange(len(t)) < i) & (time + (t - t[i]) <= target_ms + 1e-12))[0]
            if ok.size:
                j = int(ok[np.argmin(lost[ok])])
                gain = float(lost[i] - lost[j])
                if gain > 0 and (best is None or gain > best[0]):
                    best = (gain, gi, j)
        if best is None:
            break
        _, gi, j = best
        t = opts[gi][5]
        time += float(t[j] - t[picks[gi]])
        picks[gi] = j
    return picks, time


_PROBES: dict[tuple, CostCurves] = {}


def probe_curves(dims: tuple[int, int, int, int], block: str, target_shape: tuple[int, int],
                 threads: int = 1) -> CostCurves:
    """A quick profile of this machine for one model (memoised per process): the fallback without a cost file."""
    key = (dims, block, tuple(target_shape), threads)
    if key not in _PROBES:
        from hf_fast.profile import profile_costs

        sp = [0.0] + [round(x, 2) for x in np.arange(0.3, 0.951, 0.05)]
        _PROBES[key] = profile_costs(models=[dims], target_shape=target_shape, threads=threads, blocks=[block],
                                     sparsities=sp, budget_s=0.15)
    return _PROBES[key]


def load_curves(cost_file: str | None, dims, block: str, target_shape) -> CostCurves:
    """The cost file's curves, checked against the model (CostFileError naming what is missing), or a probe of this
    machine without one."""
    if cost_file is None:
        return probe_curves(dims, block, target_shape or (1, 128))
    curves = CostCurves.load(cost_file)
    curves.check_model(*dims, block)
    return curves
