"""The engine's measured cost curves: how long each encoder Linear takes at each block sparsity, on one CPU.

A cost file (JSON, written by ``hf-fast profile`` = ``hf_fast.profile.profile_costs`` on the CPU a model will be
deployed to) holds, for one target shape (batch, seq) and thread count:

- ``linears``: per Linear shape ``"NxK"`` (the engine fuses Q, K and V into one [3H, H] Linear), the dense kernel's
  time and the block-sparse kernel's time at each of ``sparsities``, per block shape, each timed alone, and
  (optional, ``empty_ms``) the time of the call with every block zero: its overhead besides the kept blocks;
- ``models``: per model dimensions, the engine's own latency dense, uniformly sparse at each of
  ``engine_sparsities`` (per block) and with every block skipped (``fixed_ms``: embeddings, attention, LayerNorms,
  quantizers). These put the Linears' times in the engine's regime (a model larger than the cache streams its
  weights from memory, which a Linear timed alone does not);
- ``crossover``: the zero-block fraction from which the engine runs a Linear on the sparse kernel (below it, the
  dense kernel: runtime/engine.py choose_kernel), so a prediction follows the engine's own choice.

``CostCurves.predict_ms`` turns per-Linear sparsities into a predicted engine latency, exact at the measured uniform
points and with every block skipped (``fixed_ms``, the end of every curve at sparsity 1); the latency-aware pruning
(``FastConfig(scope="latency")``, hf_fast/training/latency.py) chooses the sparsities that meet a target.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hf_fast import _atomic

COST_FORMAT = "hf_fast.cost_curves"
COST_VERSION = 1
ROLES = ("qkv", "attn_out", "ffn_in", "ffn_out")


class CostFileError(ValueError):
    """A cost file that is missing fields, of another version, or does not describe the model."""


def shape_key(n: int, k: int) -> str:
    return f"{int(n)}x{int(k)}"


def engine_shapes(hidden: int, ffn: int) -> dict[str, tuple[int, int]]:
    """The engine's Linear shapes [N, K] of a layer, by role (Q, K, V run as one qkv GEMM)."""
    return {"qkv": (3 * hidden, hidden), "attn_out": (hidden, hidden), "ffn_in": (ffn, hidden),
            "ffn_out": (hidden, ffn)}


def model_key(hidden: int, heads: int, ffn: int, layers: int) -> str:
    """Key of ``fixed_ms``: the dimensions the non-Linear work depends on."""
    return f"h{hidden}-a{heads}-f{ffn}-l{layers}"


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (hf_fast._atomic): a reader sees the old file or the new one."""
    return _atomic.write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")



@dataclass
class CostCurves:
    """A parsed, checked cost file (``CostCurves.load``). Times are milliseconds per forward pass at
    ``target_shape``."""

    target_shape: tuple[int, int]
    threads: int
    sparsities: list[float]
    crossover: float
    linears: dict[str, dict[str, Any]]   # "NxK" -> {"dense_ms": float, "sparse_ms": {block: [ms per sparsity]}}
    models: dict[str, dict[str, Any]]    # model_key -> {"fixed_ms", "dense_ms", "sparse_ms": {block: [ms]}, dims}
    engine_sparsities: list[float]
    machine: dict[str, Any]
    path: str | None = None

    # ------------------------------------------------------------------ file
    @classmethod
    def load(cls, path: str | os.PathLike) -> CostCurves:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"cost file {str(p)!r} does not exist (write one with `hf-fast profile` on the "
                                    "CPU the model will be deployed to)")
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CostFileError(f"cost file {str(p)!r} is not readable JSON ({exc})") from exc
        return cls.from_dict(d, path=str(p))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], path: str | None = None) -> CostCurves:
        where = f"cost file {path!r}" if path else "cost curves"

        def bad(msg):
            return CostFileError(f"{where}: {msg}")

        if not isinstance(d, Mapping) or d.get("format") != COST_FORMAT:
            raise bad(f"not an hf-fast cost file (format {d.get('format') if isinstance(d, Mapping) else d!r}, "
                      f"expected {COST_FORMAT!r})")
        if d.get("version") != COST_VERSION:
            raise bad(f"version {d.get('version')!r} is not supported by this hf-fast (it reads version "
                      f"{COST_VERSION}); profile again with `hf-fast profile`")

        def curves(rec):
            out = {"dense_ms": float(rec["dense_ms"]),
                   "sparse_ms": {str(b): [float(t) for t in ts] for b, ts in rec["sparse_ms"].items()}}
            if rec.get("empty_ms") is not None:  # optional (files of hf-fast before it have none)
                out["empty_ms"] = {str(b): float(t) for b, t in rec["empty_ms"].items()}
            return out

        try:
            shape = tuple(int(x) for x in d["target_shape"])
            sp = [float(x) for x in d["sparsities"]]
            esp = [float(x) for x in d.get("engine_sparsities", [])]
            threads, crossover = int(d["threads"]), float(d["crossover"])
            linears = {str(k): curves(r) for k, r in d["linears"].items()}
            models = {}
            for k, r in (d.get("models") or {}).items():
                models[str(k)] = {**curves(r), "fixed_ms": float(r["fixed_ms"]),
                                  **{n: int(r[n]) for n in ("hidden", "heads", "ffn", "layers")}}
                if r.get("mixed_ms") is not None:  # optional: one role dense among sparse Linears
                    models[str(k)]["mixed_sparsity"] = float(r["mixed_sparsity"])
                    models[str(k)]["mixed_ms"] = {str(b): {str(role): float(t) for role, t in v.items()}
                                                  for b, v in r["mixed_ms"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise bad(f"missing or malformed field ({type(exc).__name__}: {exc})") from exc
        if len(shape) != 2 or min(shape) < 1:
            raise bad(f"target_shape must be (batch, seq) of positive ints, got {d['target_shape']!r}")
        if threads < 1:
            raise bad(f"threads must be >= 1, got {threads}")
        for name, grid in (("sparsities", sp), ("engine_sparsities", esp)):
            if grid and (grid != sorted(set(grid)) or grid[0] < 0.0 or grid[-1] >= 1.0):
                raise bad(f"{name} must rise strictly within [0, 1), got {grid}")
        if len(sp) < 2 or sp[0] != 0.0:
            raise bad(f"sparsities must start at 0 and hold at least two points, got {sp}")
        if models and not esp:
            raise bad("engine_sparsities is empty but models are given")
        for what, recs, grid in (("Linear", linears, sp), ("model", models, esp)):
            for key, rec in recs.items():
                vals = [rec["dense_ms"]] + [t for ts in rec["sparse_ms"].values() for t in ts]
                vals += list(rec.get("empty_ms", {}).values())
                if not all(np.isfinite(v) and v > 0 for v in vals):
                    raise bad(f"{what} {key}: times must be positive finite numbers")
                for b, ts in rec["sparse_ms"].items():
                    if len(ts) != len(grid):
                        raise bad(f"{what} {key} block {b}: {len(ts)} times for {len(grid)} sparsities")
        for key, rec in models.items():
            if not (np.isfinite(rec["fixed_ms"]) and rec["fixed_ms"] >= 0):
                raise bad(f"model {key}: fixed_ms must be a non-negative finite number")
            for b, v in rec.get("mixed_ms", {}).items():
                if set(v) != set(ROLES) or not all(np.isfinite(t) and t > 0 for t in v.values()):
                    raise bad(f"model {key} mixed_ms {b}: a positive time for each of {ROLES}")
                if rec["mixed_sparsity"] not in esp:
                    raise bad(f"model {key}: mixed_sparsity {rec['mixed_sparsity']} is not one of engine_sparsities")
        return cls(shape, threads, sp, crossover, linears, models, esp, dict(d.get("machine") or {}), path)

    def to_dict(self) -> dict[str, Any]:
        return {"format": COST_FORMAT, "version": COST_VERSION, "target_shape": list(self.target_shape),
                "threads": self.threads, "sparsities": self.sparsities, "crossover": self.crossover,
                "linears": self.linears, "models": self.models, "engine_sparsities": self.engine_sparsities,
                "machine": self.machine}

    def save(self, path: str | os.PathLike) -> Path:
        return atomic_write_json(path, self.to_dict())

    # ------------------------------------------------------------------ checks
    def check_model(self, hidden: int, heads: int, ffn: int, layers: int, block: str) -> None:
        """CostFileError unless the file has a curve for every engine Linear shape of the model in ``block`` and
        the engine timings of its dimensions."""
        where = f"cost file {self.path!r}" if self.path else "cost curves"
        shapes = engine_shapes(hidden, ffn)
        missing = [f"{role} {shape_key(*s)}" for role, s in shapes.items() if shape_key(*s) not in self.linears]
        if missing:
            raise CostFileError(f"{where} has no curve for the model's Linear shapes {missing} (it holds "
                                f"{sorted(self.linears)}): profile this model with `hf-fast profile --model ...`")
        mk = model_key(hidden, heads, ffn, layers)
        if mk not in self.models:
            raise CostFileError(f"{where} has no engine timings for a model of {mk} (it holds "
                                f"{sorted(self.models)}): profile this model with `hf-fast profile --model ...`")
        have = set(self.models[mk]["sparse_ms"]).intersection(*(self.linears[shape_key(*s)]["sparse_ms"]
                                                                 for s in shapes.values()))
        if block not in have:
            raise CostFileError(f"{where} has no {block} curves for this model (it holds {sorted(have)}): profile "
                                f"with --blocks {block}")

    # ------------------------------------------------------------------ prediction
    def role_curves(self, hidden: int, heads: int, ffn: int, layers: int, block: str
                    ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """Per role, the engine time of ONE such Linear: (dense ms, ms at each of ``engine_sparsities``). The
        engine's measured Linear time at each uniform point (total minus ``fixed_ms``, per layer) is split over the
        roles in the proportions of their kernels timed alone, less each call's all-blocks-zero time (``empty_ms``:
        the binding's overhead and the epilogue, which the engine's ``fixed_ms`` holds already; left in, it gave
        the small Linears too large a share at high sparsity); each curve is made non-increasing (pruning more
        blocks never costs time: a rise is measurement noise). The dense time is that of a dense Linear among
        sparse ones when the file measured it (``mixed_ms``), else the dense engine's split the same way."""
        m = self.models[model_key(hidden, heads, ffn, layers)]
        shapes = {r: shape_key(*s) for r, s in engine_shapes(hidden, ffn).items()}
        esp = np.asarray(self.engine_sparsities)

        def split(total, alone):
            share = max(total - m["fixed_ms"], 0.0) / layers
            alone = {r: max(t - self.linears[shapes[r]].get("empty_ms", {}).get(block, 0.0), 1e-9)
                     for r, t in alone.items()}
            return {r: share * alone[r] / sum(alone.values()) for r in ROLES}

        dense = split(m["dense_ms"], {r: self.linears[shapes[r]]["dense_ms"] for r in ROLES})
        sparse = {r: np.empty(len(esp)) for r in ROLES}
        for j, s in enumerate(esp):
            alone = {r: float(np.interp(s, self.sparsities, self.linears[shapes[r]]["sparse_ms"][block]))
                     for r in ROLES}
            for r, v in split(m["sparse_ms"][block][j], alone).items():
                sparse[r][j] = v
        sparse = {r: np.minimum.accumulate(v) for r, v in sparse.items()}
        mixed = m.get("mixed_ms", {}).get(block)
        if mixed:  # a dense Linear among sparse ones: the measured rise over the uniform point, per Linear
            j = esp.tolist().index(m["mixed_sparsity"])
            uniform = m["sparse_ms"][block][j]
            dense = {r: max(sparse[r][j], sparse[r][j] + (mixed[r] - uniform) / layers) for r in ROLES}
        return dense, sparse

    def linear_ms(self, curves: tuple[dict[str, float], dict[str, np.ndarray]], role: str,
                  sparsity: float | np.ndarray) -> np.ndarray:
        """Engine time of one ``role`` Linear at block ``sparsity`` (scalar or array), from ``role_curves``: the
        dense time below the crossover (the engine runs the dense kernel there), else the sparse curve linearly
        interpolated, and beyond its last point down to 0 at sparsity 1 (every block skipped: ``fixed_ms``, which
        the profile measured; holding the last point's time there over-predicted the Linears a global allocation
        prunes to 97-100%)."""
        dense, sparse = curves
        s = np.asarray(sparsity, dtype=np.float64)
        t = np.interp(s, [*self.engine_sparsities, 1.0], [*sparse[role], 0.0])
        return np.where(s >= self.crossover - 1e-9, t, dense[role])

    def max_sparsity(self) -> float:
        """The highest measured sparsity: the allocation never prunes a Linear beyond it (no extrapolation)."""
        return self.engine_sparsities[-1] if self.engine_sparsities else self.sparsities[-1]

    def predict_ms(self, hidden: int, heads: int, ffn: int, layers: int, block: str,
                   sparsity: Mapping[tuple[int, str], float] | None = None) -> float:
        """Predicted engine latency with ``sparsity[(layer, role)]`` (roles of ``ROLES``; missing = dense). A
        model with every Linear dense is the measured dense engine."""
        sparsity = sparsity or {}
        if all(v < self.crossover - 1e-9 for v in sparsity.values()):
            return self.models[model_key(hidden, heads, ffn, layers)]["dense_ms"]
        curves = self.role_curves(hidden, heads, ffn, layers, block)
        total = self.models[model_key(hidden, heads, ffn, layers)]["fixed_ms"]
        for i in range(layers):
            for role in ROLES:
                total += float(self.linear_ms(curves, role, sparsity.get((i, role), 0.0)))
        return total


def model_dims(config: Any) -> tuple[int, int, int, int]:
    """(hidden, heads, ffn, layers) of a transformers config, through the registry's canonical names."""
    from hf_fast.models import registry

    def get(key):
        v = registry.config_value(config, key)
        if v is None:
            raise ValueError(f"{type(config).__name__} has no {key!r}: the latency-aware pruning needs the "
                             "encoder's dimensions")
        return int(v)

    return get("hidden_size"), get("num_heads"), get("intermediate_size"), get("num_layers")


def parse_shapes(items: Sequence[str]) -> list[tuple[int, int]]:
    """``["1152x384", "384x384"]`` -> [(1152, 384), (384, 384)]; ValueError naming a bad entry."""
    out = []
    for it in items:
        try:
            n, k = (int(x) for x in str(it).lower().split("x"))
        except ValueError:
            raise ValueError(f"a Linear shape is 'NxK' (out x in, e.g. 1152x384), got {it!r}") from None
        if n < 1 or k < 1:
            raise ValueError(f"Linear shape {it!r} must be positive")
        out.append((n, k))
    return out
