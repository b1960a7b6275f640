"""Runtime-only installs: the serving modules import without torch, outputs fall back to numpy, and the training /
export entry points name the extra to install. (`make wheel-smoke` checks the same in a real venv without torch.)"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hf_fast import _deps

REPO = Path(__file__).resolve().parents[1]


def test_serving_modules_do_not_import_torch_or_onnx():
    code = ("import sys\n"
            "import hf_fast, hf_fast.native, hf_fast.hub, hf_fast.pipelines, hf_fast.cli\n"
            "import hf_fast.runtime.modeling, hf_fast.runtime.engine, hf_fast.runtime.pack_cache\n"
            "print(sorted(m for m in ('torch', 'accelerate', 'datasets', 'onnx') if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert r.stdout.strip() == "[]", r.stdout


def _hide_train_deps(monkeypatch):
    """find_spec reports torch & co. missing, as in a runtime-only install."""
    real = importlib.util.find_spec
    hidden = ("torch", "accelerate", "datasets")
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name.split(".")[0] in hidden else real(name, *a, **k))
    monkeypatch.setattr(_deps, "_HAS_TORCH", None)


@pytest.fixture()
def no_torch(monkeypatch):
    _hide_train_deps(monkeypatch)


@pytest.mark.parametrize("entry", ["FastTrainer", "training.FastTrainer", "export", "export.load_model_for_task"])
def test_training_entry_points_name_the_extra(no_torch, entry):
    import hf_fast
    import hf_fast.export
    import hf_fast.training

    calls = {"FastTrainer": lambda: hf_fast.FastTrainer,
             "training.FastTrainer": lambda: hf_fast.training.FastTrainer,
             "export": lambda: hf_fast.export(None, None, "unused"),
             "export.load_model_for_task": lambda: hf_fast.export.load_model_for_task(".")}
    with pytest.raises(ImportError, match=r"needs torch.*pip install 'hf-fast\[train\]'") as e:
        calls[entry]()
    assert e.value.name == "torch"


def test_cli_export_without_torch_says_what_to_install(no_torch, tmp_path, capsys):
    from hf_fast.cli import main

    calib = tmp_path / "c.txt"
    calib.write_text("a film\n")
    assert main(["export", "-m", str(tmp_path), "-o", str(tmp_path / "o"), "--calibration", str(calib)]) == 1
    assert "hf-fast[train]" in capsys.readouterr().err


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    from _export_helpers import SENTENCES, tiny_model, tokenizer

    from hf_fast.export import export

    tok = tokenizer()
    out = tmp_path_factory.mktemp("packaging") / "art"
    export(tiny_model("bert", "question-answering", tok.vocab_size, seed=5), tok, out,
           calibration_dataset=[(a, b) for a, b in zip(SENTENCES, SENTENCES[::-1], strict=True)],
           task="question-answering", progress=False)
    return out


def test_outputs_are_numpy_without_torch(artifact, monkeypatch):
    import torch

    from hf_fast.runtime.modeling import FastModelForQuestionAnswering

    ids = np.array([[101, 2023, 2143, 102, 2307, 102]])
    m = FastModelForQuestionAnswering.from_pretrained(artifact)
    with_torch = m(input_ids=ids)
    assert isinstance(with_torch.start_logits, torch.Tensor)
    with monkeypatch.context() as mp:
        _hide_train_deps(mp)
        out = m(input_ids=ids)
        assert type(out).__name__ == "QuestionAnsweringModelOutput"
        assert type(out).__module__ == "hf_fast.runtime.outputs"
        for name in ("start_logits", "end_logits"):
            a = getattr(out, name)
            assert isinstance(a, np.ndarray) and a.dtype == np.float32
            assert np.array_equal(a, getattr(with_torch, name).numpy())
        assert out.to_tuple()[0] is out.start_logits  # ModelOutput behaviour kept
        assert m.device == "cpu" and m.to("cpu") is m
        with pytest.raises(ValueError, match="CPU"):
            m.to("cuda:0")
