"""save_fast: one folder that loads in transformers, ONNX Runtime and hf-fast; atomic; no pickle; FastTrainer's
model.save_fast / model.push_to_hub / trainer.push_to_hub (uploads go to the local Hub server of hub_server.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from _export_helpers import SENTENCES, encode, tiny_model  # noqa: E402
from hub_server import TOKEN  # noqa: E402

import hf_fast  # noqa: E402
from hf_fast.export.artifact import sha256_file  # noqa: E402
from hf_fast.runtime import FastModelForSequenceClassification, FastModelForTokenClassification  # noqa: E402


def _no_pickle(folder: Path):
    for p in folder.rglob("*"):
        assert p.suffix not in (".bin", ".pt", ".pth", ".pkl", ".pickle"), p
        if p.is_file() and p.suffix in (".json", ".safetensors", ".onnx", ".txt", ".md"):
            assert not p.read_bytes().startswith(b"\x80"), f"{p} looks like a pickle"


def test_save_fast_loads_everywhere(tmp_path, tok):
    import onnxruntime as ort

    model = tiny_model("distilbert", "token-classification", tok.vocab_size)
    out = hf_fast.save_fast(model, tok, tmp_path / "fast", SENTENCES, progress=False, metrics={"eval_f1": 0.5})
    names = {p.name for p in out.iterdir()}
    assert {"model.onnx", "fast_config.json", "config.json", "model.safetensors", "README.md",
            "tokenizer.json", "tokenizer_config.json"} <= names
    assert not any(n.startswith(".") for n in names) and not list(tmp_path.glob(".fast.*"))  # temp dirs cleaned
    _no_pickle(out)
    enc = encode(tok, "token-classification", "distilbert")
    with torch.no_grad():
        ref = model(**enc).logits
    # transformers (fp32 weights), ONNX Runtime (the int8 file as it is), hf-fast (native engine)
    tm = transformers.AutoModelForTokenClassification.from_pretrained(out)
    with torch.no_grad():
        assert torch.allclose(tm(**enc).logits, ref)
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    ort_logits = sess.run(["logits"], {k: v.numpy() for k, v in enc.items()})[0]
    assert np.abs(ort_logits - ref.numpy()).max() < 0.05
    fm = FastModelForTokenClassification.from_pretrained(out)
    got, real = fm(**enc).logits, enc["attention_mask"].bool()
    assert not real.all()  # the batch is ragged
    # the engine runs the real tokens packed (hf_fast/runtime/ragged.py): those match PyTorch, pad positions are 0
    # (as transformers' ModernBERT returns its unpadded outputs)
    assert (got[real] - ref[real]).abs().max().item() < 0.05
    assert (got[~real] == 0).all()
    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "token-classification"
    assert "hf-fast" in card.data.tags
    assert [(r.metric_type, r.metric_value) for r in card.data.eval_results] == [("f1", 0.5)]
    assert "| f1 | 0.5 |" in card.text and "AutoModelForTokenClassification" in card.text
    assert "Speed: not measured" in card.text  # measure_speed is off unless asked for


def _fixed_rounds(native, onnxruntime):
    """Stands in for hf_fast.bench.interleaved_rounds: fixed per-round medians (ms), after one run of each runner."""
    def time_rounds(runners, rounds, iterations):
        for run in runners.values():
            run()
        return {"native": list(native), "onnxruntime": list(onnxruntime)}
    return time_rounds


def test_save_fast_speed_only_when_asked(tmp_path, tok, monkeypatch):
    """measure_speed=True puts the interleaved-rounds figures on the card, with threads, shape and machine;
    rounds that disagree by more than 10% leave them off with a note."""
    from huggingface_hub import ModelCard

    import hf_fast.bench

    model = tiny_model("bert", "text-classification", tok.vocab_size)
    monkeypatch.setattr(hf_fast.bench, "interleaved_rounds", _fixed_rounds([2.0] * 5, [5.0, 5.1, 4.9, 5.0, 5.0]))
    out = hf_fast.save_fast(model, tok, tmp_path / "a", SENTENCES[:4], progress=False, measure_speed=True)
    text = ModelCard.load(out / "README.md").text
    info = hf_fast.native_info()
    assert f"{info['threads']} thread(s), {info['cpu']} ({info['isa']})" in text and "batch 1 x sequence 64" in text
    assert "| hf-fast engine (default) | 2.0 | 2.50x |" in text and "Speed: not" not in text
    monkeypatch.setattr(hf_fast.bench, "interleaved_rounds", _fixed_rounds([2.0, 2.0, 2.0, 2.0, 60.0], [5.0] * 5))
    out = hf_fast.save_fast(model, tok, tmp_path / "b", SENTENCES[:4], progress=False, measure_speed=True)
    text = ModelCard.load(out / "README.md").text
    assert "Speed: not shown" in text and "varied by" in text and "0.08x" not in text and "latency (ms)" not in text


def test_save_fast_is_atomic(tmp_path, tok):
    model = tiny_model("bert", "text-classification", tok.vocab_size)
    out = hf_fast.save_fast(model, tok, tmp_path / "fast", SENTENCES[:4], progress=False)
    before = {p.name: sha256_file(p) for p in out.iterdir()}
    with pytest.raises(ValueError, match="calibration set is empty"):
        hf_fast.save_fast(model, tok, out, [], progress=False)
    assert {p.name: sha256_file(p) for p in out.iterdir()} == before  # the old folder, untouched
    with pytest.raises(FileExistsError):
        hf_fast.save_fast(model, tok, out, SENTENCES[:4], progress=False, overwrite=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="refusing to replace unrelated files"):
        hf_fast.save_fast(model, tok, other, SENTENCES[:4], progress=False)
    assert (other / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fast", "other"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tok):
    """A tiny BERT pruned to 50% 4x1 blocks by FastTrainer with distillation, on tokenized sentences."""
    from datasets import Dataset
    from transformers import TrainingArguments

    from hf_fast.training import FastConfig, FastTrainer

    root = tmp_path_factory.mktemp("trained")
    texts = SENTENCES * 2
    ds = Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(len(texts))]})
    ds = ds.map(lambda b: tok(b["text"], truncation=True, max_length=24, padding="max_length"), batched=True,
                remove_columns=["text"]).rename_column("label", "labels")
    student = tiny_model("bert", "text-classification", tok.vocab_size, num_labels=2)
    teacher = tiny_model("bert", "text-classification", tok.vocab_size, seed=1, num_labels=2)
    args = TrainingArguments(output_dir=str(root / "run"), max_steps=4, per_device_train_batch_size=8,
                             report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True,
                             dataloader_num_workers=0, learning_rate=1e-3, hub_model_id="tester/trained-fast")
    trainer = FastTrainer(model=student, teacher=teacher, args=args, train_dataset=ds, eval_dataset=ds,
                          processing_class=tok, compute_metrics=lambda p: {"accuracy": float(
                              (p.predictions.argmax(-1) == p.label_ids).mean())},
                          fast_config=FastConfig(sparsity=0.5, block="4x1", end_step=0.5, frequency=1))
    trainer.train()
    trainer.evaluate()
    return trainer


def test_trained_model_save_fast(trained, tmp_path, tok):
    model = trained.model
    out = model.save_fast(tmp_path / "fast", progress=False)  # tokenizer, calibration, block from the trainer
    fc = json.loads((out / "fast_config.json").read_text())
    assert fc["block"] == "4x1" and fc["sparsity"]["overall"] >= 0.45
    assert fc["quantization"]["calibration_size"] == len(trained.train_dataset)
    assert "eval_accuracy" in fc["metrics"] and fc["metrics"]["sparsity_target"] == 0.5
    _no_pickle(out)
    # the pruned fp32 weights round-trip through model.safetensors (zero blocks included)
    tm = transformers.AutoModelForSequenceClassification.from_pretrained(out)
    w0 = model.bert.encoder.layer[0].intermediate.dense.weight
    assert torch.equal(tm.bert.encoder.layer[0].intermediate.dense.weight, w0.detach().cpu())
    assert tm.config.hf_fast["block"] == "4x1"
    enc = encode(tok, "text-classification", "bert")
    fm = FastModelForSequenceClassification.from_pretrained(out)
    with torch.no_grad():
        assert (fm(**enc).logits - tm(**enc).logits).abs().max().item() < 0.05
    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "README.md")
    assert "| sparsity_reached |" in card.text and "| sparsity_target | 50.00% |" in card.text
    assert "accuracy" in {r.metric_type for r in card.data.eval_results}  # the trainer's eval_accuracy
    out2 = trained.save_fast(str(tmp_path / "fast2"), progress=False)  # the trainer-level spelling
    assert (Path(out2) / "model.safetensors").is_file()


def test_trained_model_push_to_hub(hub, trained, tmp_path, tok):
    info = trained.model.push_to_hub("tester/model-push", token=TOKEN, progress=False)
    files = hub.files("tester/model-push")
    assert info.oid == hub.repos["tester/model-push"].branches["main"]
    assert {"model.onnx", "model.safetensors", "fast_config.json", "README.md", "tokenizer.json"} <= set(files)
    card = files["README.md"].decode()
    assert "- hf-fast" in card and "Speed: not measured" in card  # no timing unless asked for
    assert "speed-up vs ONNX Runtime" not in card
    # trainer.push_to_hub: repo from args.hub_model_id, token from the call
    trained.push_to_hub(token=TOKEN, progress=False)
    assert "Speed: not measured" in hub.files("tester/trained-fast")["README.md"].decode()
    import inspect

    assert inspect.signature(hf_fast.push_to_hub).parameters["measure_speed"].default is False
    assert "fast_config.json" in hub.files("tester/trained-fast")
    fm = hf_fast.pipeline("text-classification", model="tester/trained-fast", cache_dir=tmp_path / "c")
    assert len(fm(SENTENCES[:2])) == 2


def test_save_module_knows_nothing_of_training():
    """save.py writes folders; what a trainer lends (tokenizer, samples, block, metrics) comes in through
    SaveDefaults (hf_fast/training/fast_save.py), so the saving layer never imports the training layer."""
    import ast

    tree = ast.parse((Path(hf_fast.__file__).parent / "save.py").read_text(encoding="utf-8"))
    mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in mods if m and m.startswith("hf_fast.training")}, mods


def test_trainer_lends_its_defaults_and_methods_to_the_model(tmp_path, tok, monkeypatch):
    from transformers import TrainingArguments

    from hf_fast.training import FastConfig, FastTrainer, PruningCallback

    model = tiny_model("bert", "text-classification", tok.vocab_size, num_labels=2)
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=1, report_to="none", use_cpu=True)
    tr = FastTrainer(model=model, args=args, processing_class=tok,
                     fast_config=FastConfig(sparsity=0.5, block="4x1", end_step=1, frequency=1))
    # instance methods over the trainer's defaults; the class keeps transformers' push_to_hub
    assert {"save_fast", "push_to_hub"} <= set(vars(model))
    assert type(model).push_to_hub is transformers.PreTrainedModel.push_to_hub
    d = tr.save_defaults
    assert d.tokenizer is tok and d.block(model) == "4x1"
    with pytest.raises(ValueError, match="no train_dataset to calibrate from"):
        model.save_fast(tmp_path / "fast", progress=False)
    # a bug in the pruning state is not swallowed any more (it used to be, by `except Exception: pass`)
    cb = tr.pruning_callback
    monkeypatch.setattr(type(cb), "masks", property(lambda self: {}["boom"]), raising=False)
    with pytest.raises(KeyError, match="boom"):
        d.metrics()
    monkeypatch.undo()
    # without its PruningCallback the trainer lends the block the model recorded
    tr.remove_callback(PruningCallback)
    assert d.block(model) == model.config.hf_fast["block"] == "4x1"
