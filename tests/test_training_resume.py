"""Checkpoints: masks + schedule state saved (safetensors + JSON, no pickle) and restored exactly on resume."""
import json
import os

import pytest
import torch
from test_training_helpers import ToyDataset, masks_equal, tiny_bert, train_args

from hf_fast.training import FastConfig, FastTrainer
from hf_fast.training.pruning import MASKS_FILE

FC = dict(sparsity=0.7, block="4x1", score="movement", start_step=2, end_step=16, frequency=4)


def _trainer(out, seed_model=0):
    model = tiny_bert(seed=seed_model, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    teacher = tiny_bert(seed=7)
    args = train_args(out, max_steps=20, save_strategy="steps", save_steps=5, logging_steps=5)
    return FastTrainer(model=model, teacher=teacher, args=args, fast_config=FastConfig(**FC),
                       train_dataset=ToyDataset(48))


@pytest.mark.parametrize("at", [5, 10])  # 5: movement scores half accumulated (updates at 2, 6, 10, 14, 16)
def test_resume_gives_same_masks_and_weights(tmp_path, at):
    full = _trainer(tmp_path / "full")
    full.train()
    ck = tmp_path / "full" / f"checkpoint-{at}"
    assert (ck / MASKS_FILE).is_file()
    assert not any(p.suffix in (".pkl", ".pickle") for p in ck.iterdir())
    st = json.loads((ck / "trainer_state.json").read_text())["stateful_callbacks"]["PruningCallback"]
    assert st["args"]["block"] == "4x1" and st["attributes"]["last_update_step"] == {5: 2, 10: 10}[at]
    assert st["attributes"]["schedule_steps"] == {"start": 2, "end": 16, "frequency": 4}
    assert st["attributes"]["has_masks"] is True

    # a fresh trainer (new model object, different random init) resumed from the mid checkpoint
    resumed = _trainer(tmp_path / "full", seed_model=3)
    resumed.train(resume_from_checkpoint=str(ck))
    a, b = full.pruning_callback, resumed.pruning_callback
    assert b is not a and b.last_update_step == 16
    assert masks_equal(a.masks, b.masks)
    for (n1, p1), (n2, p2) in zip(full.model.named_parameters(), resumed.model.named_parameters(), strict=False):
        assert n1 == n2
        torch.testing.assert_close(p1, p2, rtol=0, atol=1e-6, msg=n1)


def test_resume_without_masks_file_fails_clearly(tmp_path):
    t = _trainer(tmp_path / "r")
    t.args.max_steps = 10
    t.train()
    ck = tmp_path / "r" / "checkpoint-10"
    os.remove(ck / MASKS_FILE)
    t2 = _trainer(tmp_path / "r")
    with pytest.raises(FileNotFoundError, match=MASKS_FILE):
        t2.train(resume_from_checkpoint=str(ck))
