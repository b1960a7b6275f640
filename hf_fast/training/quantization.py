"""Quantization-aware fine-tuning (``FastConfig(quantization="qat")``): fake-quant matching the int8 exporter.

Scheme (the exporter's, one source of truth: ``WEIGHT_SCHEME`` / ``ACTIVATION_SCHEME`` below):
  * weights of the encoder Linear layers: int8, symmetric, per output channel,
    ``scale = max|w_row| / 127``, ``q = clamp(round(w / scale), -127, 127)``;
  * inputs of those layers: uint8, asymmetric, per tensor, range [min, max] (always containing 0) tracked
    as an exponential moving average of batch min/max while training,
    ``scale = (max - min) / 255``, ``zero_point = clamp(round(-min / scale), 0, 255)``.
Gradients pass straight through (STE). Pruned weights are 0 and stay exactly 0 after fake-quant.

``QATCallback`` switches the fake-quant on at ``start_step`` and keeps the activation ranges in its
``ExportableState`` (JSON), so a resumed run continues with the same ranges. On train end the float forward
is restored and the ranges are recorded in ``model.config.hf_fast["qat"]`` for the exporter.
"""
from __future__ import annotations

import types
from collections.abc import Sequence

import torch
from torch import nn
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from hf_fast.training.config import StepLike, resolve_step
from hf_fast.training.masks import find_prunable_linears

WEIGHT_SCHEME = {"dtype": "int8", "symmetric": True, "granularity": "per_channel", "axis": 0, "qmin": -127,
                 "qmax": 127}
ACTIVATION_SCHEME = {"dtype": "uint8", "symmetric": False, "granularity": "per_tensor", "qmin": 0, "qmax": 255}


def fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric int8 fake-quant with a straight-through gradient."""
    absmax = w.detach().abs().amax(dim=1, keepdim=True)
    scale = torch.where(absmax > 0, absmax / 127.0, torch.ones_like(absmax))
    q = torch.clamp(torch.round(w.detach() / scale), -127, 127) * scale
    return w + (q - w).detach()


def activation_qparams(lo: float, hi: float):
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = (hi - lo) / 255.0 if hi > lo else 1.0
    zp = int(min(255, max(0, round(-lo / scale))))
    return scale, zp


def fake_quant_activation(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Per-tensor asymmetric uint8 fake-quant with a straight-through gradient."""
    scale, zp = activation_qparams(lo, hi)
    q = (torch.clamp(torch.round(x.detach() / scale) + zp, 0, 255) - zp) * scale
    return x + (q - x).detach()


class _Observer:
    """EMA of batch min/max (torch's MovingAverageMinMaxObserver rule), plain floats: not in state_dict."""

    def __init__(self, momentum: float = 0.01, lo: float | None = None, hi: float | None = None):
        self.momentum, self.lo, self.hi = momentum, lo, hi

    def update(self, x: torch.Tensor) -> None:
        lo, hi = float(x.detach().min()), float(x.detach().max())
        if self.lo is None:
            self.lo, self.hi = lo, hi
        else:
            self.lo += self.momentum * (lo - self.lo)
            self.hi += self.momentum * (hi - self.hi)


def _qat_forward(self, x):
    obs = self._hf_fast_qat
    if self.training or obs.lo is None:
        obs.update(x)
    xq = fake_quant_activation(x, obs.lo, obs.hi)
    return nn.functional.linear(xq, fake_quant_weight(self.weight), self.bias)


def enable_qat(layers: dict[str, nn.Linear], ranges: dict[str, list[float]] | None = None,
               momentum: float = 0.01) -> None:
    for n, mod in layers.items():
        lo, hi = (ranges or {}).get(n, (None, None))
        mod._hf_fast_qat = _Observer(momentum, lo, hi)
        mod.forward = types.MethodType(_qat_forward, mod)


def disable_qat(layers: dict[str, nn.Linear]) -> dict[str, list[float]]:
    """Restore the float forward; return the observed activation ranges."""
    ranges = {}
    for n, mod in layers.items():
        obs = getattr(mod, "_hf_fast_qat", None)
        if obs is not None:
            if obs.lo is not None:
                ranges[n] = [obs.lo, obs.hi]
            del mod._hf_fast_qat
        if "forward" in mod.__dict__:
            del mod.forward
    return ranges


def current_ranges(layers: dict[str, nn.Linear]) -> dict[str, list[float]]:
    return {n: [m._hf_fast_qat.lo, m._hf_fast_qat.hi] for n, m in layers.items()
            if getattr(m, "_hf_fast_qat", None) is not None and m._hf_fast_qat.lo is not None}


class QATCallback(TrainerCallback, ExportableState):
    """Fake-quant fine-tuning of the encoder Linear layers from ``start_step`` to the end of training.

    Args:
        start_step: int optimizer step or float fraction of max_steps.
        include, exclude: module-name regexes, as in FastConfig.
        momentum: EMA factor of the activation range observers.
    """

    def __init__(self, start_step: StepLike = 0, include: Sequence[str] = (), exclude: Sequence[str] = (),
                 momentum: float = 0.01):
        if not (0.0 < momentum <= 1.0):
            raise ValueError(f"momentum must lie in (0, 1], got {momentum}")
        self.start_step, self.include, self.exclude, self.momentum = start_step, list(include), list(exclude), momentum
        self.ranges: dict[str, list[float]] = {}
        self.active = False
        self._layers = None
        self._start = None

    def state(self) -> dict:
        if self._layers is not None and self.active:
            self.ranges = current_ranges(self._layers)
        return {"args": {"start_step": self.start_step, "include": self.include, "exclude": self.exclude,
                         "momentum": self.momentum},
                "attributes": {"ranges": self.ranges}}

    def _enable(self):
        enable_qat(self._layers, self.ranges, self.momentum)
        self.active = True

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._layers = find_prunable_linears(model, self.include, self.exclude)
        self._start = resolve_step(self.start_step, state.max_steps)
        saved = (state.stateful_callbacks or {}).get(type(self).__name__) if state.global_step > 0 else None
        if isinstance(saved, list):
            saved = saved[0] if saved else None
        if saved:
            self.ranges = dict(saved.get("attributes", {}).get("ranges") or {})
        if state.global_step >= self._start:
            self._enable()

    def on_step_end(self, args, state, control, **kwargs):
        if not self.active and self._layers is not None and state.global_step >= self._start:
            self._enable()

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self._layers is None:
            return
        if self.active:
            self.ranges = disable_qat(self._layers)
            self.active = False
        if model is not None and getattr(model, "config", None) is not None:
            rec = dict(getattr(model.config, "hf_fast", None) or {})
            rec["qat"] = {"weights": WEIGHT_SCHEME, "activations": ACTIVATION_SCHEME, "activation_ranges": self.ranges}
            model.config.hf_fast = rec
            model.hf_fast_config = rec
