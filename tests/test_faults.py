"""Faults (issue 7): a FastTrainer run SIGKILLed mid-way and resumed from its last checkpoint ends with the
same masks, sparsity and metrics as an uninterrupted run; an export SIGKILLed mid-way into an existing
artifact folder leaves the old artifact or the new one (or, where the swap takes two renames, between them, none),
never a mix."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

WORKER = textwrap.dedent('''
    import json, os, signal, sys
    sys.path.insert(0, {tests!r})
    mode, out = sys.argv[1], sys.argv[2]

    def die():
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    if mode == "train":
        kill_at, resume = int(sys.argv[3]), sys.argv[4] == "resume"
        when = sys.argv[5] if len(sys.argv) > 5 else "step"
        import torch
        import safetensors.torch
        from transformers import TrainerCallback
        from hf_fast.training import FastConfig, FastTrainer
        from test_training_helpers import ToyDataset, tiny_bert, train_args

        class Killer(TrainerCallback):  # runs before the PruningCallback FastTrainer appends
            def on_step_end(self, args, state, control, **kw):
                if when == "step" and state.global_step == kill_at:
                    die()

            def on_save(self, args, state, control, **kw):
                if when == "on_save" and state.global_step == kill_at:
                    die()  # the Trainer wrote checkpoint-N; PruningCallback.on_save has not run

        if when == "masks_write":
            real_save = safetensors.torch.save_file
            def save_file(tensors, filename, metadata=None):
                real_save(tensors, filename, metadata=metadata)
                if f"checkpoint-{kill_at}" in str(filename):
                    with open(filename, "r+b") as f:
                        f.truncate(os.path.getsize(filename) // 2)
                    die()  # killed halfway through writing the masks file
            safetensors.torch.save_file = save_file

        model = tiny_bert(seed=0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        teacher = tiny_bert(seed=7)
        args = train_args(out, max_steps=20, save_strategy="steps", save_steps=5, logging_steps=5)
        t = FastTrainer(model=model, teacher=teacher, args=args,
                        fast_config=FastConfig(sparsity=0.7, block="4x1", score="movement", start_step=2,
                                               end_step=16, frequency=4),
                        train_dataset=ToyDataset(48), eval_dataset=ToyDataset(32, seed=1),
                        callbacks=[Killer()] if kill_at else None)
        t.train(resume_from_checkpoint=True if resume else None)
        cb = t.pruning_callback
        metrics = t.evaluate()
        cb.save_masks(os.path.join(out, "final"))
        json.dump({"metrics": {k: v for k, v in metrics.items() if k.endswith("loss") or k.endswith("accuracy")},
                   "sparsity": {**cb.sparsity_report(), **cb.layer_sparsity()}, "step": t.state.global_step},
                  open(os.path.join(out, "result.json"), "w"))
    elif mode == "export":
        where = sys.argv[3]
        import numpy as np
        from _fuzz_helpers import micro_artifact
        import hf_fast.export.artifact as artifact
        import hf_fast.export.quantize as quantize
        if where == "quantize":
            real = quantize.quantize_qdq
            def q(*a, **k):
                n = real(*a, **k)
                die()  # model.onnx written into the temporary folder, nothing else yet
            quantize.quantize_qdq = q
        elif where == "fast_config":
            real_w = artifact.write_json
            def w(path, obj):
                with open(path, "w") as f:
                    f.write(json.dumps(obj)[:40])  # half a fast_config.json
                die()
            artifact.write_json = w
        elif where in ("swap1", "swap2", "swap2_renames"):
            import hf_fast._atomic as atomic
            real_r, real_x = os.rename, atomic._exchange
            calls = []
            def r(a, b):
                calls.append(1)
                if where == "swap1" or len(calls) == 2:
                    die()  # swap1: before any rename; swap2*: old moved aside, new not yet in place
                real_r(a, b)
            def x(a, b):
                if where == "swap1":
                    die()  # before the swap
                if where == "swap2_renames":
                    return False  # no one-step exchange here (not Linux, an old C library): two renames
                done = real_x(a, b)
                if done:
                    die()  # swapped in one step; the old folder not deleted yet
                return done
            artifact.os.rename = r
            atomic._exchange = x
        micro_artifact(out, "bert", "text-classification", seed=int(sys.argv[4]))
        print("finished")
''')


def _worker(tmp_path, *args, timeout=600):
    script = tmp_path / "fault_worker.py"
    script.write_text(WORKER.replace("{tests!r}", repr(str(TESTS))))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               HF_FAST_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    return subprocess.run([sys.executable, str(script), *map(str, args)], cwd=str(REPO), env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    d = tmp_path_factory.mktemp("faults")
    r = _worker(d, "train", d / "full", 0, "fresh")
    assert r.returncode == 0, r.stderr[-3000:]
    return d / "full"


# step: killed between checkpoints (after 10, before 15). on_save: killed after the Trainer wrote checkpoint-10 and
# before PruningCallback.on_save (issue 16 bug 3: FastTrainer now writes the masks first, so checkpoint-10 is whole).
# masks_write: killed halfway through writing checkpoint-10's masks (before the Trainer's files: resume falls back to 5)
@pytest.mark.parametrize("kill_at,when,left", [(13, "step", ["checkpoint-10", "checkpoint-5"]),
                                               (10, "on_save", ["checkpoint-10", "checkpoint-5"]),
                                               (10, "masks_write", ["checkpoint-10", "checkpoint-5"])])
def test_sigkill_mid_training_then_resume_matches_uninterrupted(tmp_path, uninterrupted, kill_at, when, left):
    from safetensors.torch import load_file

    from hf_fast.training.pruning import MASKS_FILE

    full, broken = uninterrupted, tmp_path / "broken"
    r = _worker(tmp_path, "train", broken, kill_at, "fresh", when)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-3000:])
    assert not (broken / "result.json").exists()
    assert sorted(p.name for p in broken.glob("checkpoint-*")) == left
    r = _worker(tmp_path, "train", broken, 0, "resume")
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = (json.loads((d / "result.json").read_text()) for d in (full, broken))
    assert a["step"] == b["step"] == 20
    assert a["sparsity"] == b["sparsity"]
    assert a["sparsity"]["sparsity"] > 0.6
    for k, v in a["metrics"].items():
        assert b["metrics"][k] == pytest.approx(v, rel=0, abs=1e-6), k
    ma, mb = load_file(str(full / "final" / MASKS_FILE)), load_file(str(broken / "final" / MASKS_FILE))
    assert ma.keys() == mb.keys() and all((ma[k] == mb[k]).all() for k in ma)


@pytest.fixture(scope="module")
def old_artifact(micro_artifacts):
    d = micro_artifacts["bert"]  # seed 0; copied before each export over it
    return d, {p.name: p.read_bytes() for p in d.iterdir()}


@pytest.mark.parametrize("where", ["quantize", "fast_config", "swap1", "swap2", "swap2_renames"])
def test_sigkill_mid_export_leaves_old_artifact_or_none(tmp_path, old_artifact, where):
    import shutil

    from hf_fast.export import load_fast_config
    from hf_fast.runtime.modeling import load_fast_model

    src, files = old_artifact
    d = tmp_path / "art"
    shutil.copytree(src, d)
    r = _worker(tmp_path, "export", d, where, 1)  # a different seed: the new artifact differs from the old
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stdout[-500:], r.stderr[-3000:])
    if where == "swap2":
        # Linux swaps the folders in one step: killed right after, out_dir is the new artifact, whole; the old one
        # is left beside it (it was being deleted). Before the one-step swap, out_dir did not exist at this moment.
        assert d.is_dir() and {p.name: p.read_bytes() for p in d.iterdir()} != files
        load_fast_config(d, verify=True)
        load_fast_model(d).run(input_ids=[[5, 6, 7]])
        (old,) = tmp_path.glob(".art.tmp-*")
        assert {p.name: p.read_bytes() for p in old.iterdir()} == files
        return
    if where == "swap2_renames":
        # without the one-step swap, killed between "old -> backup" and "new -> out_dir": no artifact at out_dir
        # (never a mix); both complete folders are left beside it for recovery
        assert not d.exists()
        leftovers = sorted(p.name.split("-")[0] for p in tmp_path.glob(".art.*"))
        assert leftovers == [".art.old", ".art.tmp"], leftovers
        return
    assert {p.name: p.read_bytes() for p in d.iterdir()} == files, "the old artifact was modified"
    load_fast_config(d, verify=True)
    load_fast_model(d).run(input_ids=[[5, 6, 7]])
