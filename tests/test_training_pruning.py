"""PruningCallback through FastTrainer on tiny random models: sparsity reached, exact zeros that survive
the optimizer (Adam moments and weight decay), dense embeddings/heads, logs."""
import json

import pytest
import torch
from test_training_helpers import ToyDataset, tiny_bert, tiny_distilbert, train_args

from hf_fast.blocks import block_nonzero_mask, block_sparsity
from hf_fast.training import FastConfig, FastTrainer, PruningCallback
from hf_fast.training.pruning import SPARSITY_LOG_FILE, _unwrap_optimizer


def _run(tmp_path, model, steps=24, **fc):
    """Per-layer magnitude pruning unless the test says otherwise (the tests below check exact per-layer counts;
    the default recipe, global first-order, has its own tests in test_training_defaults.py)."""
    fc.setdefault("block", "4x1")
    fc.setdefault("score", "magnitude")
    fc.setdefault("scope", "layer")
    fc.setdefault("end_step", 12)
    fc.setdefault("frequency", 3)
    tr = FastTrainer(model=model, args=train_args(tmp_path, max_steps=steps, weight_decay=0.1),
                     fast_config=FastConfig(**fc), train_dataset=ToyDataset(64))
    tr.train()
    return tr


@pytest.mark.parametrize("block", ["4x1", "1x4", "4x16"])
def test_bert_reaches_target_with_exact_blocks(tmp_path, block):
    model = tiny_bert()
    emb = model.bert.embeddings.word_embeddings.weight.detach().clone()
    tr = _run(tmp_path, model, sparsity=0.75, block=block, allow_any_block=block == "4x16")
    cb = tr.pruning_callback
    assert cb.block == block
    for name, mod in cb._layers.items():
        w = mod.weight.detach()
        assert block_sparsity(w, block) == pytest.approx(0.75), name
        assert torch.equal(torch.from_numpy(block_nonzero_mask(w, block)), cb.masks[name])
    # embeddings, classifier, LayerNorms stay dense (and embeddings still train)
    assert (model.classifier.weight != 0).all()
    assert (model.bert.embeddings.word_embeddings.weight != 0).float().mean() > 0.99
    assert not torch.equal(emb, model.bert.embeddings.word_embeddings.weight.detach())
    assert model.config.hf_fast["block"] == block and model.config.hf_fast["sparsity_reached"] == pytest.approx(0.75)
    assert model.hf_fast_config is model.config.hf_fast


def test_pruned_weights_and_adam_state_stay_zero(tmp_path):
    tr = _run(tmp_path, tiny_distilbert(), steps=40, sparsity=0.5, end_step=6, frequency=2)
    cb = tr.pruning_callback
    opt = _unwrap_optimizer(tr.optimizer)
    for name, mod in cb._layers.items():
        em = ~torch.repeat_interleave(cb.masks[name], 4, dim=0)
        assert (mod.weight.detach()[em] == 0).all(), name           # exactly zero after 34 more steps
        st = opt.state[mod.weight]
        assert (st["exp_avg"][em] == 0).all() and (st["exp_avg_sq"][em] == 0).all()
        assert (mod.weight.detach()[~em] != 0).all()                 # kept weights are trained, not zeroed


def test_masks_fixed_after_end_step(tmp_path):
    seen = {}

    class Spy(PruningCallback.__mro__[1]):  # a plain TrainerCallback recording masks per step
        def on_step_end(self, args, state, control, **kw):
            cb = [c for c in trainer.callback_handler.callbacks if isinstance(c, PruningCallback)][0]
            if cb.masks is not None:
                seen[state.global_step] = {k: v.clone() for k, v in cb.masks.items()}

    trainer = FastTrainer(model=tiny_bert(), args=train_args(tmp_path, max_steps=20),
                          fast_config=FastConfig(sparsity=0.6, block="1x4", end_step=0.5, frequency=2,
                                                 score="magnitude", scope="layer"),
                          train_dataset=ToyDataset(64), callbacks=[Spy()])
    trainer.train()
    sched = trainer.pruning_callback.schedule
    assert (sched.start, sched.end, sched.frequency) == (0, 10, 2)
    steps = sorted(seen)
    sp = {t: 1 - torch.cat([m.flatten().float() for m in seen[t].values()]).mean().item() for t in steps}
    assert sp[2] < sp[6] < sp[10] == pytest.approx(0.6, abs=2e-3)  # round(0.6 * blocks) per layer
    for t in steps[steps.index(10):]:
        assert all(torch.equal(seen[t][k], seen[10][k]) for k in seen[10])
    for a, b in zip(steps, steps[1:], strict=False):  # monotone: once pruned, pruned
        assert all(((~seen[a][k]) <= (~seen[b][k])).all() for k in seen[a])


def test_movement_score_and_global_scope(tmp_path):
    tr = _run(tmp_path, tiny_bert(), sparsity=0.8, score="movement", scope="global", min_layer_sparsity=None)
    cb = tr.pruning_callback
    total = sum(m.numel() for m in cb.masks.values())
    pruned = sum(int((~m).sum()) for m in cb.masks.values())
    assert pruned == round(0.8 * total)
    per_layer = [1 - m.float().mean().item() for m in cb.masks.values()]
    assert max(per_layer) - min(per_layer) > 0  # a global threshold gives uneven layers


def test_sparsity_logged(tmp_path, capsys):
    """One compact numeric summary per log line; the per-layer figures go to a JSON lines file."""
    tr = _run(tmp_path, tiny_bert(), steps=10, end_step=5, sparsity=0.5, scope="global", score="movement",
              min_layer_sparsity=0.3)
    logs = [h for h in tr.state.log_history if "loss" in h]
    assert len(logs) == 2
    last = logs[-1]
    assert last["sparsity"] == pytest.approx(0.5, abs=1e-3) and last["sparsity_target"] == pytest.approx(0.5)
    assert 0.3 - 1e-3 <= last["sparsity_min_layer"] <= last["sparsity"] <= last["sparsity_max_layer"] <= 1.0
    assert not any(k.startswith("sparsity/") for h in tr.state.log_history for k in h)
    assert all(isinstance(v, (int, float)) for k, v in last.items() if k.startswith("sparsity"))
    lines = [json.loads(x) for x in (tmp_path / SPARSITY_LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in lines] == [5, 10]
    per = lines[-1]["layers"]
    assert len(per) == 12 and "layer.0.attention.self.query" in per
    assert min(per.values()) == pytest.approx(last["sparsity_min_layer"], abs=1e-4)
    assert max(per.values()) == pytest.approx(last["sparsity_max_layer"], abs=1e-4)
    out = capsys.readouterr().out
    assert out.count("[hf-fast] step 10/10 block 4x1 sparsity 0.500") == 1  # not again for the final summary


def test_progress_line_is_not_glued_to_the_progress_bar(tmp_path):
    """With tqdm's bar on (stdout and stderr on one terminal), each [hf-fast] line starts its own visible line."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        tr = FastTrainer(model=tiny_bert(), args=train_args(tmp_path, max_steps=6, logging_steps=2, disable_tqdm=False),
                         fast_config=FastConfig(block="4x1", sparsity=0.5, end_step=4, frequency=2),
                         train_dataset=ToyDataset(64))
        tr.train()
    text = buf.getvalue()
    assert "%|" in text  # the bar was drawn into the same stream
    shown = [ln.split("\r")[-1] for ln in text.split("\n") if "[hf-fast]" in ln]
    assert len(shown) == 3, shown
    assert all(ln.startswith("[hf-fast] step ") for ln in shown), shown


def test_callback_with_plain_trainer(tmp_path):
    from transformers import Trainer

    model = tiny_bert()
    tr = Trainer(model=model, args=train_args(tmp_path, max_steps=8), train_dataset=ToyDataset(32),
                 callbacks=[PruningCallback(FastConfig(sparsity=0.5, block="4x1", end_step=4, frequency=1,
                                                       score="magnitude", scope="layer"),
                                            verbose=False)])
    tr.train()
    w = model.bert.encoder.layer[0].intermediate.dense.weight
    assert block_sparsity(w, "4x1") == pytest.approx(0.5)
    assert tr.state.log_history[-2]["sparsity"] == pytest.approx(0.5)
    assert tr.state.log_history[-2]["sparsity_min_layer"] == pytest.approx(0.5)


def test_global_cap_bounds_every_layer_along_the_schedule(tmp_path):
    """max_layer_sparsity: no layer goes past the cap (scaled along the schedule like the floor), the overall
    target is still met. Without the cap this global movement run takes some layer past 0.6 at step 10."""
    free = _run(tmp_path / "free", tiny_bert(), steps=10, end_step=5, sparsity=0.5, scope="global",
                score="movement", min_layer_sparsity=None)
    assert max(h["sparsity_max_layer"] for h in free.state.log_history if "sparsity_max_layer" in h) > 0.6
    tr = _run(tmp_path / "cap", tiny_bert(), steps=10, end_step=5, sparsity=0.5, scope="global", score="movement",
              min_layer_sparsity=None, max_layer_sparsity=0.6)
    logs = [h for h in tr.state.log_history if "sparsity_max_layer" in h]
    assert logs and all(h["sparsity_max_layer"] <= 0.6 + 1e-3 for h in logs)
    assert logs[-1]["sparsity"] == pytest.approx(0.5, abs=1e-3)


def test_trimming_the_sparsity_log_on_a_full_disk_keeps_it(tmp_path, monkeypatch):
    """A resumed run trims the per-layer log to its resume step by rewriting it: a rewrite that fails (disk full)
    must leave the log as it was, not truncated."""
    from types import SimpleNamespace

    from _disk_full import fill_disk

    log = tmp_path / SPARSITY_LOG_FILE
    log.write_text("".join(json.dumps({"step": s, "sparsity": s / 100}) + "\n" for s in (5, 10, 15)))
    before = log.read_bytes()
    args = SimpleNamespace(output_dir=str(tmp_path), should_save=True)
    with monkeypatch.context() as m:
        fill_disk(m, tmp_path)
        with pytest.raises(OSError, match="No space left"):
            PruningCallback._trim_layer_log(args, 10)
    assert log.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [SPARSITY_LOG_FILE]
    PruningCallback._trim_layer_log(args, 10)  # with room on the disk: the lines after step 10 go
    assert [json.loads(x)["step"] for x in log.read_text().splitlines()] == [5, 10]
