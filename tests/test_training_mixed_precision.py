"""Mixed precision: bf16 autocast keeps the masks exact in the fp32 master weights, and a step the fp16 GradScaler
skips (inf/nan gradients) neither feeds the first-order scores nor advances the pruning schedule."""
import pytest
import torch
from test_training_helpers import ToyDataset, tiny_bert, train_args
from transformers import TrainerCallback

from hf_fast.blocks import block_nonzero_mask
from hf_fast.training import FastConfig, FastTrainer

FC = dict(sparsity=0.5, block="4x1", end_step=8, frequency=2)  # updates after optimizer steps 2, 4, 6, 8


def _assert_exact(cb):
    for n, mod in cb._layers.items():
        w = mod.weight.detach()
        assert w.dtype == torch.float32 and torch.isfinite(w).all(), n
        assert torch.equal(torch.from_numpy(block_nonzero_mask(w, cb.block)), cb.masks[n]), n


class Record(TrainerCallback):
    """Global step -> (last mask update, counted in optimizer steps taken; target sparsity)."""

    def __init__(self, trainer):
        self.trainer, self.seen = trainer, {}

    def on_step_end(self, args, state, control, **kw):
        cb = self.trainer.pruning_callback
        self.seen[state.global_step] = (cb.last_update_step, cb.target_sparsity)


def test_bf16_autocast_keeps_masks_exact(tmp_path):
    model = tiny_bert()
    dtypes = set()
    model.bert.encoder.layer[0].intermediate.dense.register_forward_hook(
        lambda m, i, o: dtypes.add(o.dtype) if m.training else None)
    tr = FastTrainer(model=model, args=train_args(tmp_path, max_steps=14, bf16=True),
                     fast_config=FastConfig(**FC), train_dataset=ToyDataset(64))
    tr.train()
    assert tr.accelerator.mixed_precision == "bf16" and dtypes == {torch.bfloat16}  # autocast was on
    cb = tr.pruning_callback
    assert cb.skipped_steps == 0 and cb.last_update_step == 8
    _assert_exact(cb)
    total = sum(m.numel() for m in cb.masks.values())
    assert sum(int((~m).sum()) for m in cb.masks.values()) == round(0.5 * total)


class InfLossAt(FastTrainer):
    """Makes the loss of one optimizer step infinite, so its gradients overflow as in fp16 training."""

    inf_at: int = -1

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        return loss * float("inf") if self.state.global_step == self.inf_at else loss


def _fp16_run(tmp_path, inf_at, max_grad_norm=1.0):
    """fp16 autocast with a real torch.amp.GradScaler: accelerate only creates one on GPUs, so the test gives the
    CPU Accelerator one before the optimizer is wrapped (accelerate's own scaled backward/step paths run)."""
    model = tiny_bert(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    tr = InfLossAt(model=model, args=train_args(tmp_path, max_steps=12, fp16=True, max_grad_norm=max_grad_norm),
                   fast_config=FastConfig(**FC), train_dataset=ToyDataset(64))
    tr.inf_at = inf_at
    tr.accelerator.scaler = torch.amp.GradScaler("cpu")
    rec = Record(tr)
    tr.add_callback(rec)
    cb, compute = tr.pruning_callback, tr.pruning_callback._compute_scores
    tr.scores_at_updates = []

    def spy():  # the first-order scores each mask update ranks
        tr.scores_at_updates.append({n: s.clone() for n, s in cb.scores.items()})
        return compute()

    cb._compute_scores = spy
    tr.train()
    return tr, rec.seen


@pytest.mark.parametrize("max_grad_norm", [1.0, 0.0])  # 0: the Trainer does not unscale, the callback does
def test_skipped_fp16_step_does_not_advance_the_schedule(tmp_path, max_grad_norm):
    ref, ref_seen = _fp16_run(tmp_path / "ref", inf_at=-1, max_grad_norm=max_grad_norm)
    tr, seen = _fp16_run(tmp_path / "skip", inf_at=3, max_grad_norm=max_grad_norm)  # the 4th step: an update step
    cb = tr.pruning_callback
    assert ref.pruning_callback.skipped_steps == 0 and cb.skipped_steps == 1
    assert tr.accelerator.scaler.get_scale() < ref.accelerator.scaler.get_scale()  # the scaler did back off
    # reference: updates after steps 2, 4, 6, 8; with step 4 skipped they come one global step later
    assert [s for s in sorted(ref_seen) if ref_seen[s][0] == s] == [2, 4, 6, 8]
    moved = sorted({g for g, (u, _) in seen.items() if u > 0 and (g == 1 or seen.get(g - 1, (0,))[0] != u)})
    assert moved == [2, 5, 7, 9]
    assert seen[4] == seen[3] == seen[2]  # the skipped step changed neither masks nor target
    for g in (5, 7, 9):  # the target is the schedule's at the real step count
        assert seen[g] == ref_seen[g - 1]
    _assert_exact(cb)
    total = sum(m.numel() for m in cb.masks.values())
    assert sum(int((~m).sum()) for m in cb.masks.values()) == round(0.5 * total)
    assert len(tr.scores_at_updates) == 4
    for scores in tr.scores_at_updates:  # the skipped step's inf/nan gradients never reached them
        assert scores.keys() == cb._layers.keys() and all(torch.isfinite(s).all() for s in scores.values())
