"""Checkpoints: masks + schedule state saved (safetensors + JSON, no pickle) and restored exactly on resume."""
import json
import logging
import os
import shutil
from pathlib import Path

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


# ------------------------------------------------------------------ half-written checkpoints (issue 16, bug 3)
@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """An uninterrupted 20-step run saving every 5 steps (mask updates at 2, 6, 10, 14, 16)."""
    out = tmp_path_factory.mktemp("full") / "run"
    t = _trainer(out)
    t.train()
    return out, t


def _killed_copy(full_run, dst, keep_up_to):
    """The output folder as a run killed after writing checkpoint-<keep_up_to> would leave it."""
    out, _ = full_run
    shutil.copytree(out, dst)
    for ck in dst.glob("checkpoint-*"):
        if int(ck.name.split("-")[1]) > keep_up_to:
            shutil.rmtree(ck)
    return dst


def _same_as_full(full_run, resumed):
    _, full = full_run
    assert masks_equal(full.pruning_callback.masks, resumed.pruning_callback.masks)
    for (n1, p1), (n2, p2) in zip(full.model.named_parameters(), resumed.model.named_parameters(), strict=True):
        assert n1 == n2
        torch.testing.assert_close(p1, p2, rtol=0, atol=1e-6, msg=n1)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# kill points in checkpoint-10: after the Trainer's files, before the masks (a plain Trainer's on_save order); while
# writing the masks (a partial file under the final name, as a non-atomic writer leaves it, plus a temp file); after
# the masks FastTrainer now writes first, before the Trainer's state
KILLS = {
    "before_masks": lambda ck: os.remove(ck / MASKS_FILE),
    "while_writing_masks": lambda ck: (_truncate(ck / MASKS_FILE),
                                       (ck / f"{MASKS_FILE}.tmp-123").write_bytes(b"partial")),
    "before_trainer_state": lambda ck: os.remove(ck / "trainer_state.json"),
}


@pytest.mark.parametrize("kill", sorted(KILLS))
def test_resume_true_skips_a_half_written_checkpoint(full_run, tmp_path, kill, caplog):
    out = _killed_copy(full_run, tmp_path / "run", keep_up_to=10)
    KILLS[kill](out / "checkpoint-10")
    resumed = _trainer(out, seed_model=3)
    with caplog.at_level(logging.WARNING, logger="hf_fast.training.trainer"):
        resumed.train(resume_from_checkpoint=True)
    assert "checkpoint-10" in caplog.text and "checkpoint-5" in caplog.text
    assert resumed.state.global_step == 20
    _same_as_full(full_run, resumed)  # the newest complete checkpoint (5) resumes exactly


@pytest.mark.parametrize("kill", ["before_masks", "while_writing_masks"])
def test_damaged_masks_are_recovered_from_the_weights(full_run, tmp_path, kill, caplog):
    """The only checkpoint left (save_total_limit=1) or the one named explicitly has no usable masks file: the masks
    come back from the zero blocks of its weights (exact here: step 10 is a mask update, no movement scores pending)."""
    out = _killed_copy(full_run, tmp_path / "run", keep_up_to=10)
    shutil.rmtree(out / "checkpoint-5")
    KILLS[kill](out / "checkpoint-10")
    resumed = _trainer(out, seed_model=3)
    with caplog.at_level(logging.WARNING):
        resumed.train(resume_from_checkpoint=True)
    assert "recovered from the zero blocks" in caplog.text
    _same_as_full(full_run, resumed)
    explicit = _trainer(out, seed_model=3)
    explicit.train(resume_from_checkpoint=str(out / "checkpoint-10"))
    _same_as_full(full_run, explicit)


def test_recovered_masks_equal_the_saved_ones(full_run):
    """Mid-window (step 5, movement scores half accumulated) the recovered masks are still the saved masks."""
    from safetensors.torch import load_file

    out, _ = full_run
    for step in (5, 10, 15, 20):
        ck = out / f"checkpoint-{step}"
        t = _trainer(out / "unused", seed_model=3)
        t.model.load_state_dict(load_file(ck / "model.safetensors"), strict=False)
        cb = t.pruning_callback
        saved, _ = cb.read_masks_file(str(ck))
        cb.recover_masks()
        assert masks_equal({n: m.bool() for n, m in saved.items()}, cb.masks), step


def test_explicit_checkpoint_without_trainer_state_says_what_to_do(full_run, tmp_path):
    out = _killed_copy(full_run, tmp_path / "run", keep_up_to=10)
    os.remove(out / "checkpoint-10" / "trainer_state.json")
    with pytest.raises(ValueError, match="resume_from_checkpoint=True"):
        _trainer(out).train(resume_from_checkpoint=str(out / "checkpoint-10"))


def test_masks_are_in_the_checkpoint_before_the_trainer_state(tmp_path, monkeypatch):
    """FastTrainer writes the masks first: a checkpoint whose Trainer state exists always has its masks."""
    from transformers.trainer_callback import TrainerState

    seen = {}
    real = TrainerState.save_to_json

    def spy(self, path):
        seen[os.path.basename(os.path.dirname(path))] = os.path.isfile(os.path.join(os.path.dirname(path), MASKS_FILE))
        return real(self, path)

    monkeypatch.setattr(TrainerState, "save_to_json", spy)
    t = _trainer(tmp_path / "r")
    t.args.max_steps = 10
    t.train()
    assert seen == {"checkpoint-5": True, "checkpoint-10": True}


def test_masks_file_write_is_atomic(tmp_path, monkeypatch):
    import safetensors.torch

    from hf_fast.training.pruning import MasksFileError, PruningCallback

    cb = PruningCallback(FastConfig(**FC), verbose=False)
    cb.bind(tiny_bert())
    cb.update_masks(0.5)
    path = cb.save_masks(str(tmp_path))
    before = open(path, "rb").read()
    real = safetensors.torch.save_file

    def killed(tensors, filename, metadata=None):  # dies halfway through writing
        real(tensors, filename, metadata=metadata)
        _truncate(Path(filename))
        raise KeyboardInterrupt

    cb.update_masks(0.6)
    monkeypatch.setattr(safetensors.torch, "save_file", killed)
    with pytest.raises(KeyboardInterrupt):
        cb.save_masks(str(tmp_path))
    assert open(path, "rb").read() == before and os.listdir(tmp_path) == [MASKS_FILE]
    _truncate(Path(path))  # a partial file under the final name is refused, never half read
    with pytest.raises(MasksFileError, match="truncated"):
        cb.read_masks_file(str(tmp_path))
