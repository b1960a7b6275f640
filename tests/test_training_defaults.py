"""FastConfig() is the measured best recipe (global first-order scores + a per-layer floor), it runs for a user who
only swaps Trainer for FastTrainer (no teacher, gradient accumulation), and too short a pruning window warns."""
import warnings

import pytest
import torch
from test_training_helpers import ToyDataset, tiny_bert, train_args

from hf_fast.training import FastConfig, FastTrainer, PruningCallback
from hf_fast.training.config import AUTO_FLOOR_SHARE


def test_defaults_are_the_measured_recipe():
    c = FastConfig()
    assert (c.score, c.scope, c.min_layer_sparsity) == ("movement", "global", "auto")
    assert c.layer_floor() == pytest.approx(0.6)  # the 60% floor of the best rt-polarity run at 80%
    assert FastConfig(sparsity=0.9).layer_floor() == pytest.approx(AUTO_FLOOR_SHARE * 0.9)
    assert FastConfig(sparsity=0.0).layer_floor() == 0.0
    assert FastConfig(scope="layer").layer_floor() is None  # "auto" means no floor when every layer hits the target
    assert FastConfig(min_layer_sparsity=None).layer_floor() is None
    assert FastConfig(min_layer_sparsity=0.5).layer_floor() == 0.5
    assert FastConfig.from_dict(FastConfig().to_dict()) == FastConfig()
    with pytest.raises(ValueError, match="min_layer_sparsity must be 'auto'"):
        FastConfig(min_layer_sparsity="high")
    with pytest.raises(ValueError, match="scope='global'"):
        FastConfig(scope="layer", min_layer_sparsity=0.5)


def test_swapping_trainer_for_fast_trainer_gets_the_recipe(tmp_path, monkeypatch):
    """No fast_config, no teacher, gradient accumulation: first-order scores from the accumulated gradients at
    every mask update, 80% overall, every layer at least at the 60% floor, layers uneven."""
    monkeypatch.setenv("HF_FAST_BLOCK", "4x1")  # block="auto" without timing the kernels here
    model = tiny_bert()
    tr = FastTrainer(model=model, args=train_args(tmp_path, max_steps=30, gradient_accumulation_steps=2,
                                                  per_device_train_batch_size=4, logging_steps=10),
                     train_dataset=ToyDataset(64))
    cb = tr.pruning_callback
    assert cb.config == FastConfig() and cb.block == "4x1"
    used = []
    compute = cb._compute_scores

    def spy():
        used.append({n: n in cb.scores and bool(torch.isfinite(cb.scores[n]).all()) for n in cb._layers})
        return compute()

    monkeypatch.setattr(cb, "_compute_scores", spy)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="the pruning window")  # 21 steps, 1 update each: no big jumps
        tr.train()
    assert len(used) == 21 and all(all(u.values()) for u in used)  # first-order scores for every layer, every time
    total = sum(m.numel() for m in cb.masks.values())
    assert sum(int((~m).sum()) for m in cb.masks.values()) == round(0.8 * total)
    per = {n: 1 - m.float().mean().item() for n, m in cb.masks.items()}
    assert min(per.values()) >= 0.6 - 1e-6 and max(per.values()) > min(per.values())
    for n, mod in cb._layers.items():
        pruned = ~cb.masks[n].repeat_interleave(4, dim=0)
        assert (mod.weight.detach()[pruned] == 0).all(), n


def _cb(**kw):
    return PruningCallback(FastConfig(block="4x1", **kw), verbose=False)


@pytest.mark.parametrize("max_steps, kw", [
    (10, {}),                                   # 7-step window, an update per step: +30 points at the first
    (1000, dict(frequency=100)),                # a long window, but only 7 updates: +30 points at the first
    (100, dict(end_step=0.1, frequency=1)),     # the window is 10 steps of 100
])
def test_short_window_warns(max_steps, kw):
    with pytest.warns(UserWarning, match=r"raises the sparsity by \d+% between two mask updates") as rec:
        _cb(**kw).resolve_schedule(max_steps)
    assert len(rec) == 1
    assert ("frequency=1" in str(rec[0].message)) == ("frequency" in kw and kw["frequency"] > 1)


@pytest.mark.parametrize("max_steps, kw", [
    (1000, {}),                                 # 700-step window, 20 updates: +11 points at most
    (40, dict(frequency=1)),                    # 28 updates: +8 points at most
    (10, dict(schedule="oneshot")),             # oneshot jumps by choice
    (10, dict(sparsity=0.15)),                  # a small target never jumps far
])
def test_long_enough_window_is_silent(max_steps, kw):
    cb = _cb(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cb.resolve_schedule(max_steps)
        cb.resolve_schedule(max_steps)  # resolved once


def test_warns_once_per_run():
    cb = _cb()
    with pytest.warns(UserWarning) as rec:
        cb.resolve_schedule(10)
        cb.resolve_schedule(10)
        _ = cb.schedule
    assert len(rec) == 1
