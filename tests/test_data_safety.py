"""No lost data: saving or exporting into the folder a model comes from keeps what is there (issue 16, bug 1), and
output folders follow the umask (bug 4)."""
from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from _export_helpers import SENTENCES, tiny_model, tokenizer  # noqa: E402

import hf_fast  # noqa: E402
from hf_fast import _atomic  # noqa: E402
from hf_fast.cli import main  # noqa: E402
from hf_fast.export import export, load_fast_config  # noqa: E402
from hf_fast.export.artifact import sha256_file  # noqa: E402

METRICS = {"eval_accuracy": 0.875, "eval_loss": 0.3125}


@pytest.fixture(scope="module")
def tok():
    return tokenizer()


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tok):
    """A folder written by save_fast: weights + config + tokenizer + model.onnx + fast_config + card with metrics."""
    model = tiny_model("bert", "text-classification", tok.vocab_size)
    out = hf_fast.save_fast(model, tok, tmp_path_factory.mktemp("saved") / "out", SENTENCES, progress=False,
                            metrics=METRICS, base_model="google-bert/bert-base-uncased", datasets=["glue"])
    return out


def _failing_exchange(a, b):
    raise OSError("simulated failure while swapping in the new folder")


def _fail_the_swap(mp) -> None:
    """Make the swap of a new artifact folder into place fail (both the one-step exchange and the renames)."""
    from hf_fast.export import artifact

    real_rename = os.rename

    def flaky(src, dst):
        if Path(src).name.startswith(".out.tmp-"):
            raise OSError("simulated failure while swapping in the new folder")
        return real_rename(src, dst)

    mp.setattr(artifact.os, "rename", flaky)
    mp.setattr(_atomic, "_exchange", _failing_exchange)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def _copy(saved: Path, dst: Path) -> Path:
    shutil.copytree(saved, dst)
    (dst / "notes.txt").write_text("my notes")  # a user's file that no save writes
    return dst


def _assert_weights_and_metrics_kept(folder: Path, saved: Path):
    assert sha256_file(folder / "model.safetensors") == sha256_file(saved / "model.safetensors")
    assert (folder / "notes.txt").read_text() == "my notes"
    m = transformers.AutoModelForSequenceClassification.from_pretrained(folder)
    ref = transformers.AutoModelForSequenceClassification.from_pretrained(saved)
    for (n, a), (_, b) in zip(m.state_dict().items(), ref.state_dict().items(), strict=True):
        assert torch.equal(a, b), n
    fc = load_fast_config(folder)
    assert fc["metrics"]["eval_accuracy"] == METRICS["eval_accuracy"]
    card = (folder / "README.md").read_text()
    assert "library_name: transformers" in card
    from huggingface_hub import ModelCard

    got = {r.metric_type: r.metric_value for r in ModelCard.load(folder / "README.md").data.eval_results}
    assert got.get("accuracy") == METRICS["eval_accuracy"]  # the card's model-index kept the old metric
    assert "base_model: google-bert/bert-base-uncased" in card and "- glue" in card
    assert not [p.name for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp folders left


# ------------------------------------------------------------------ bug 1: in-place re-export
@pytest.mark.parametrize("via", ["same", "symlinked_model", "symlinked_out"])
def test_cli_export_in_place_keeps_weights_and_metrics(saved, tmp_path, via, capsys):
    """The issue's repro: cp -r out inplace; hf-fast export -m inplace -o inplace --quantize-attention. The same
    folder may also be named through a symlink, on either side (a symlinked output is written through)."""
    folder = _copy(saved, tmp_path / "inplace")
    link = tmp_path / "link"
    link.symlink_to(folder, target_is_directory=True)
    src, dst = {"same": (folder, folder), "symlinked_model": (link, folder), "symlinked_out": (folder, link)}[via]
    cal = tmp_path / "texts.txt"
    cal.write_text("\n".join(SENTENCES) + "\n")
    old_onnx = sha256_file(folder / "model.onnx")
    args = ["export", "-m", str(src), "-o", str(dst), "--quantize-attention", "--calibration", str(cal), "-q"]
    # the CLI replaces no existing artifact without --overwrite: refused before any work, the folder untouched
    before = {p.name: sha256_file(p) for p in folder.iterdir() if p.is_file()}
    assert main(args) != 0 and "--overwrite" in capsys.readouterr().err
    assert {p.name: sha256_file(p) for p in folder.iterdir() if p.is_file()} == before
    rc = main(args + ["--overwrite"])
    assert rc == 0, capsys.readouterr().err
    _assert_weights_and_metrics_kept(folder, saved)
    fc = load_fast_config(folder)
    assert fc["quantization"]["quantize_attention"] is True and sha256_file(folder / "model.onnx") != old_onnx
    assert link.is_symlink() and link.resolve() == folder.resolve()


def test_save_fast_into_its_own_folder(saved, tmp_path, tok):
    folder = _copy(saved, tmp_path / "out")
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(folder))
    hf_fast.save_fast(model, tok, folder, SENTENCES[:4], progress=False, metrics={"eval_f1": 0.5})
    _assert_weights_and_metrics_kept(folder, saved)
    assert load_fast_config(folder)["metrics"]["eval_f1"] == 0.5  # new metrics join the old ones


def test_save_fast_changed_weights_into_own_folder_drops_stale_metrics(saved, tmp_path, tok):
    folder = _copy(saved, tmp_path / "out")
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(folder))
    with torch.no_grad():
        model.classifier.weight.add_(1.0)  # trained further after loading
    hf_fast.save_fast(model, tok, folder, SENTENCES[:4], progress=False)
    reloaded = transformers.AutoModelForSequenceClassification.from_pretrained(folder)
    assert torch.equal(reloaded.classifier.weight, model.classifier.weight)  # the new weights were saved
    assert "eval_accuracy" not in load_fast_config(folder)["metrics"]  # they described the old weights
    assert (folder / "notes.txt").read_text() == "my notes"


def test_export_in_place_refuses_changed_weights(saved, tmp_path, tok):
    folder = _copy(saved, tmp_path / "out")
    before = _digest(folder)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(folder))
    with torch.no_grad():
        model.classifier.weight.add_(1.0)
    with pytest.raises(ValueError, match="differs from the weights.*hf_fast.save_fast"):
        export(model, tok, folder, calibration_dataset=SENTENCES[:4], progress=False)
    assert _digest(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_export_refuses_to_replace_the_folder_holding_the_model(saved, tmp_path, tok):
    folder = _copy(saved, tmp_path / "out")
    shutil.copytree(saved, folder / "ck")  # the model to export lives inside the artifact it would replace
    before = _digest(folder)
    with pytest.raises(ValueError, match="inside"):
        export(str(folder / "ck"), tok, folder, calibration_dataset=SENTENCES[:4], progress=False)
    assert _digest(folder) == before


def test_export_into_another_artifact_replaces_its_model_files_only(saved, tmp_path, tok):
    """A different model exported over an existing artifact replaces the old model's files (its weights would be
    another model's) and keeps the rest: the user's notes, a Hub clone's .git (the old swap deleted them)."""
    folder = _copy(saved, tmp_path / "out")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (folder / "2024_runs").mkdir()  # named like a sentence-transformers module folder, but modules.json has none
    (folder / "2024_runs" / "log.txt").write_text("run")
    (folder / "adapter_model.safetensors").write_bytes(b"adapter")
    other = tiny_model("bert", "text-classification", tok.vocab_size, seed=1)
    export(other, tok, folder, calibration_dataset=SENTENCES[:4], progress=False)
    names = {p.name for p in folder.iterdir()}
    assert "model.safetensors" not in names
    assert (folder / "notes.txt").read_text() == "my notes"
    assert (folder / "2024_runs" / "log.txt").read_text() == "run"
    assert (folder / "adapter_model.safetensors").read_bytes() == b"adapter"
    assert (folder / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert load_fast_config(folder)["metrics"] == {}


def test_save_fast_over_an_artifact_keeps_a_trainers_checkpoints(saved, tmp_path, tok, monkeypatch):
    """A run trained into the artifact's folder, then saved there again: its checkpoints stay, and a save that fails
    at the swap leaves the folder whole (the kept entries are linked, not moved)."""

    folder = _copy(saved, tmp_path / "out")
    ck = folder / "checkpoint-10"
    ck.mkdir()
    (ck / "trainer_state.json").write_text('{"global_step": 10}')
    (ck / "model.safetensors").write_bytes((saved / "model.safetensors").read_bytes())
    other = tiny_model("bert", "text-classification", tok.vocab_size, seed=1)
    before = _digest(folder)
    with monkeypatch.context() as m:
        _fail_the_swap(m)
        with pytest.raises(OSError, match="simulated failure"):
            hf_fast.save_fast(other, tok, folder, SENTENCES[:4], progress=False)
    assert _digest(folder) == before
    hf_fast.save_fast(other, tok, folder, SENTENCES[:4], progress=False)
    assert {k: v for k, v in _digest(folder).items() if k.startswith(("checkpoint-10", "notes"))} == {
        k: v for k, v in before.items() if k.startswith(("checkpoint-10", "notes"))}
    got = transformers.AutoModelForSequenceClassification.from_pretrained(folder).state_dict()
    for n, t in other.state_dict().items():
        assert torch.equal(got[n], t), n
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_saving_into_the_working_directory_leaves_it_usable(saved, tmp_path, tok, monkeypatch):
    """save_fast(model, tok, ".") from inside the folder: the process's working directory is the new folder after
    the swap, not the deleted old one (os.getcwd() and relative paths kept failing with FileNotFoundError)."""
    folder = _copy(saved, tmp_path / "out")
    (folder / "sub").mkdir()
    model = transformers.AutoModelForSequenceClassification.from_pretrained(saved)
    monkeypatch.chdir(folder / "sub")
    hf_fast.save_fast(model, tok, "..", SENTENCES[:4], progress=False)
    assert os.getcwd() == str((folder / "sub").resolve())
    assert Path("../notes.txt").read_text() == "my notes"
    monkeypatch.chdir(folder)
    export(model, tok, ".", calibration_dataset=SENTENCES[:4], progress=False)
    assert os.getcwd() == str(folder.resolve())
    assert load_fast_config(".")["task"] == "text-classification"


def test_in_place_export_failure_leaves_folder_intact(saved, tmp_path, tok, monkeypatch):

    folder = _copy(saved, tmp_path / "out")
    before = _digest(folder)
    _fail_the_swap(monkeypatch)
    with pytest.raises(OSError, match="simulated failure"):
        export(str(folder), tok, folder, calibration_dataset=SENTENCES[:4], progress=False)
    assert _digest(folder) == before  # the kept files were linked, not moved: the old folder is whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# ------------------------------------------------------------------ bug 4: folder modes follow the umask
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_output_folders_follow_umask(tmp_path, tok, umask):
    model = tiny_model("distilbert", "text-classification", tok.vocab_size)
    old = os.umask(umask)
    try:
        art = export(model, tok, tmp_path / "art", calibration_dataset=SENTENCES[:4], progress=False)
        fast = hf_fast.save_fast(model, tok, tmp_path / "fast", SENTENCES[:4], progress=False)
        ref = tmp_path / "ref"
        model.save_pretrained(ref)  # what transformers does under the same umask
    finally:
        os.umask(old)
    want = stat.S_IMODE(ref.stat().st_mode)
    assert want == 0o777 & ~umask
    for folder in (art, fast):
        assert stat.S_IMODE(folder.stat().st_mode) == want, folder
        for f in folder.iterdir():
            assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask, f
    assert json.loads((fast / "fast_config.json").read_text())["task"] == "text-classification"


def test_replacing_a_sentence_transformers_artifact_drops_its_module_folders(tmp_path):
    """The module folders the old modules.json names are the old model's (dropped with it); a folder named alike
    that it does not name is the user's (kept)."""
    from hf_fast.export.artifact import atomic_dir

    out = tmp_path / "out"
    (out / "1_Pooling").mkdir(parents=True)
    (out / "1_Pooling" / "config.json").write_text("{}")
    (out / "3_Results").mkdir()
    (out / "3_Results" / "scores.csv").write_text("1,2")
    (out / "fast_config.json").write_text("{}")
    (out / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "", "type": "T"},
                                                  {"idx": 1, "name": "1", "path": "1_Pooling", "type": "P"}]))
    with atomic_dir(out) as tmp:
        (tmp / "fast_config.json").write_text('{"new": 1}')
    assert sorted(p.name for p in out.iterdir()) == ["3_Results", "fast_config.json"]
    assert (out / "3_Results" / "scores.csv").read_text() == "1,2"
