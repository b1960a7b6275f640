"""load_best_model_at_end: the model the Trainer reloads is the one whose masks, sparsity and metrics are recorded
(issue 16, bug 2), and a checkpoint from inside the pruning window never becomes the "best" model silently."""
import warnings

import pytest
import torch
from test_training_helpers import ToyDataset, tiny_bert, train_args

from hf_fast.blocks import block_nonzero_mask, block_sparsity
from hf_fast.training import FastConfig, FastTrainer, PruningCallback
from hf_fast.training.masks import mask_sparsity

FC = dict(sparsity=0.75, block="4x1", score="magnitude", scope="layer", end_step=12, frequency=2)


def _earliest_is_best():
    """compute_metrics whose ``rank`` grows with each evaluation: with greater_is_better=False the first
    evaluation (step 4, in the middle of the pruning window) is the best one."""
    calls = []

    def compute_metrics(_pred):
        calls.append(1)
        return {"rank": float(len(calls))}

    return compute_metrics


def _args(tmp_path, **kw):
    base = dict(max_steps=20, eval_strategy="steps", eval_steps=4, save_strategy="steps", save_steps=4,
                load_best_model_at_end=True, metric_for_best_model="rank", greater_is_better=False,
                per_device_eval_batch_size=16)
    return train_args(tmp_path, **{**base, **kw})


def _assert_consistent(model, masks, layers, block="4x1"):
    """masks == the weights' zero blocks, and config.json's sparsity is theirs."""
    for name, mod in layers.items():
        nz = torch.from_numpy(block_nonzero_mask(mod.weight.detach(), block))
        assert torch.equal(nz, masks[name]), name
    reached = model.config.hf_fast["sparsity_reached"]
    assert reached == pytest.approx(mask_sparsity(masks))
    w = sum(block_sparsity(m.weight.detach(), block) * m.weight.numel() for m in layers.values())
    assert reached == pytest.approx(w / sum(m.weight.numel() for m in layers.values()), abs=1e-6)


def test_fast_trainer_best_model_is_a_final_sparsity_checkpoint(tmp_path):
    model = tiny_bert()
    tr = FastTrainer(model=model, args=_args(tmp_path), fast_config=FastConfig(**FC),
                     train_dataset=ToyDataset(64), eval_dataset=ToyDataset(16, seed=1),
                     compute_metrics=_earliest_is_best())
    tr.train()
    # checkpoint-4 had the best metric but was 35% sparse: only checkpoints at the final sparsity compete
    assert tr.state.best_model_checkpoint.endswith("checkpoint-12")
    assert tr.state.best_global_step == 12
    cb = tr.pruning_callback
    _assert_consistent(model, cb.masks, cb._layers)
    assert model.config.hf_fast["sparsity_reached"] == pytest.approx(0.75)
    assert model.config.hf_fast["checkpoint_step"] == 12
    # the card's metrics are those of the model held: the evaluation at step 12 (rank 3), not the last one (5)
    assert tr.model_metrics()["eval_rank"] == 3.0
    assert tr.save_defaults.metrics()["eval_rank"] == 3.0  # what model.save_fast's card gets


def test_fast_trainer_stopped_inside_the_window_keeps_last_model_and_says_so(tmp_path):
    """Training stopped (here by a callback, as early stopping would) before the window ended: no checkpoint
    may compete, the Trainer loads none, and both facts are said; the recorded sparsity is the model's."""
    from transformers import TrainerCallback

    class StopAt10(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            control.should_training_stop = state.global_step >= 10

    model = tiny_bert()
    tr = FastTrainer(model=model, args=_args(tmp_path, eval_steps=5, save_steps=5), callbacks=[StopAt10()],
                     fast_config=FastConfig(**FC), train_dataset=ToyDataset(64),
                     eval_dataset=ToyDataset(16, seed=1), compute_metrics=_earliest_is_best())
    with pytest.warns(UserWarning) as rec:
        tr.train()
    said = " | ".join(str(w.message) for w in rec)
    assert "no checkpoint evaluated after the pruning window ended" in said
    assert "training ended before the pruning window did" in said
    assert tr.state.global_step == 10 and tr.state.best_model_checkpoint is None
    cb = tr.pruning_callback
    _assert_consistent(model, cb.masks, cb._layers)
    assert 0.5 < model.config.hf_fast["sparsity_reached"] < 0.75
    assert "checkpoint_step" not in model.config.hf_fast
    assert tr.model_metrics()["eval_rank"] == 2.0  # the latest evaluation (step 10) is of the weights held


def test_plain_trainer_loading_an_early_checkpoint_warns_and_records_it(tmp_path):
    """A plain Trainer picks checkpoint-4 (PruningCallback cannot veto it): a loud warning, and masks, sparsity
    and metrics follow the weights actually loaded."""
    from transformers import Trainer

    model = tiny_bert()
    cb = PruningCallback(FastConfig(**FC), verbose=False)
    tr = Trainer(model=model, args=_args(tmp_path), train_dataset=ToyDataset(64),
                 eval_dataset=ToyDataset(16, seed=1), compute_metrics=_earliest_is_best(), callbacks=[cb])
    with pytest.warns(UserWarning, match="checkpoint-4.*before the pruning window ended"):
        tr.train()
    assert tr.state.best_model_checkpoint.endswith("checkpoint-4")
    _assert_consistent(model, cb.masks, cb._layers)
    assert model.config.hf_fast["sparsity_reached"] < 0.7
    assert model.config.hf_fast["checkpoint_step"] == 4


def test_best_model_at_final_sparsity_is_silent(tmp_path):
    """greater_is_better=True: the last evaluation wins, it is at the final sparsity, nothing to warn about."""
    model = tiny_bert()
    tr = FastTrainer(model=model, args=_args(tmp_path, greater_is_better=True), fast_config=FastConfig(**FC),
                     train_dataset=ToyDataset(64),
                     eval_dataset=ToyDataset(16, seed=1), compute_metrics=_earliest_is_best())
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="(load_best_model_at_end|training ended before)")
        tr.train()
    assert tr.state.best_model_checkpoint.endswith("checkpoint-20")
    _assert_consistent(model, tr.masks, tr.pruning_callback._layers)
