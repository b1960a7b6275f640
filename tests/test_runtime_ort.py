"""hf_fast.runtime over ONNX Runtime: ModelOutputs, input validation, artifact checks, pipelines."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from _export_helpers import SENTENCES, calibration_for, encode, tiny_model  # noqa: E402

from hf_fast.export import ArtifactError, export  # noqa: E402
from hf_fast.runtime import (  # noqa: E402
    FastModelForQuestionAnswering,
    FastModelForSequenceClassification,
    FastModelForTokenClassification,
)
from hf_fast.runtime.modeling import load_fast_model  # noqa: E402


@pytest.fixture(scope="module")
def arts(tmp_path_factory, tok):
    root = tmp_path_factory.mktemp("arts")
    out = {}
    for arch, task in (("bert", "text-classification"), ("distilbert", "question-answering"),
                       ("bert", "token-classification"), ("distilbert", "text-classification")):
        model = tiny_model(arch, task, tok.vocab_size)
        if task == "token-classification":
            model.config.id2label = {0: "O", 1: "B-X", 2: "I-X"}
            model.config.label2id = {v: k for k, v in model.config.id2label.items()}
        if task == "text-classification":
            model.config.id2label = {0: "neg", 1: "pos", 2: "mixed"}
            model.config.label2id = {v: k for k, v in model.config.id2label.items()}
        p = export(model, tok, root / f"{arch}-{task}", calibration_dataset=calibration_for(task), progress=False)
        out[(arch, task)] = (p, model)
    return out


def test_sequence_classification_outputs(arts, tok):
    p, model = arts[("bert", "text-classification")]
    fm = FastModelForSequenceClassification.from_pretrained(p)
    enc = encode(tok, "text-classification", "bert")
    out = fm(**enc)
    assert isinstance(out, transformers.modeling_outputs.SequenceClassifierOutput)
    assert isinstance(out.logits, torch.Tensor) and out.logits.shape == (8, 3) and out.logits.dtype == torch.float32
    with torch.no_grad():
        ref = model(**enc).logits
    assert (out.logits - ref).abs().max().item() < 0.05
    # numpy in, lists in, 1-D in, tuple out: same numbers
    np_out = fm(**{k: v.numpy() for k, v in enc.items()}).logits
    assert torch.equal(np_out, out.logits)
    one = fm(input_ids=enc["input_ids"][0].tolist(), attention_mask=enc["attention_mask"][0].tolist(),
             token_type_ids=enc["token_type_ids"][0].tolist()).logits
    assert torch.allclose(one[0], out.logits[0], atol=1e-5)
    assert torch.equal(fm(**enc, return_dict=False)[0], out.logits)
    # missing attention_mask / token_type_ids default to ones / zeros
    unpadded = tok(SENTENCES[0], return_tensors="pt")
    assert torch.allclose(fm(input_ids=unpadded["input_ids"]).logits, fm(**unpadded).logits, atol=1e-6)


def test_question_answering_outputs(arts, tok):
    p, model = arts[("distilbert", "question-answering")]
    fm = FastModelForQuestionAnswering.from_pretrained(p, num_threads=1)
    enc = encode(tok, "question-answering", "distilbert")
    out = fm(**enc)
    assert isinstance(out, transformers.modeling_outputs.QuestionAnsweringModelOutput)
    assert out.start_logits.shape == enc["input_ids"].shape == out.end_logits.shape
    with torch.no_grad():
        ref = model(**enc)
    m = enc["attention_mask"].bool()
    assert (out.start_logits - ref.start_logits).abs()[m].max().item() < 0.05
    assert (out.end_logits - ref.end_logits).abs()[m].max().item() < 0.05
    # a BERT-style tokenizer output with all-zero token types is accepted by DistilBERT
    enc2 = tok(SENTENCES[:2], SENTENCES[2:4], padding=True, return_tensors="pt")
    enc2["token_type_ids"] = torch.zeros_like(enc2["input_ids"])
    assert fm(**enc2).start_logits.shape == enc2["input_ids"].shape


def test_token_classification_outputs(arts, tok):
    p, model = arts[("bert", "token-classification")]
    fm = FastModelForTokenClassification.from_pretrained(p)
    enc = encode(tok, "token-classification", "bert")
    out = fm(**enc)
    assert isinstance(out, transformers.modeling_outputs.TokenClassifierOutput)
    assert out.logits.shape == (*enc["input_ids"].shape, 3)


def test_wrong_class_backend_and_task(arts):
    p, _ = arts[("bert", "text-classification")]
    with pytest.raises(ValueError, match="load it with FastModelForSequenceClassification"):
        FastModelForQuestionAnswering.from_pretrained(p)
    assert FastModelForSequenceClassification.from_pretrained(p, backend="native").backend.name == "native"
    with pytest.raises(ValueError, match="unknown backend"):
        FastModelForSequenceClassification.from_pretrained(p, backend="tensorrt")
    with pytest.raises(ValueError, match="num_threads"):
        FastModelForSequenceClassification.from_pretrained(p, num_threads=-1)
    assert isinstance(load_fast_model(p), FastModelForSequenceClassification)


@pytest.mark.parametrize("kwargs, match", [
    (dict(input_ids=np.zeros((1, 4), np.float32)), "must hold integers"),
    (dict(input_ids=np.zeros((1, 4), bool)), "must hold integers"),
    (dict(input_ids=np.zeros((1, 2, 4), np.int64)), "2-D"),
    (dict(input_ids=np.zeros((1, 0), np.int64)), "empty"),
    (dict(input_ids=np.zeros((1, 65), np.int64)), "exceeds the model's 64 positions"),
    (dict(input_ids=np.full((1, 4), 10**6)), r"must lie in \[0, 30522\)"),
    (dict(input_ids=np.full((1, 4), -1)), r"must lie in \[0, 30522\)"),
    (dict(input_ids=np.ones((2, 4), np.int64), attention_mask=np.ones((2, 5), np.int64)), "attention_mask shape"),
    (dict(input_ids=np.ones((1, 4), np.int64), attention_mask=np.full((1, 4), 2)), "only 0 and 1"),
    (dict(input_ids=np.ones((1, 4), np.int64), token_type_ids=np.full((1, 4), 2)),
     r"token_type_ids must lie in \[0, 2\)"),
    (dict(input_ids=[[1, 2], [3]]), "ragged"),
    (dict(attention_mask=np.ones((1, 4), np.int64)), "input_ids is required"),
])
def test_input_validation(arts, kwargs, match):
    fm = FastModelForSequenceClassification.from_pretrained(arts[("bert", "text-classification")][0])
    with pytest.raises(ValueError, match=match):
        fm(**kwargs)


def test_distilbert_rejects_segment_ids_and_unknown_kwargs(arts):
    fm = FastModelForSequenceClassification.from_pretrained(arts[("distilbert", "text-classification")][0])
    with pytest.raises(ValueError, match="takes no token_type_ids"):
        fm(input_ids=np.ones((1, 4), np.int64), token_type_ids=np.ones((1, 4), np.int64))
    with pytest.raises(ValueError, match="position_ids is not supported"):
        fm(input_ids=np.ones((1, 4), np.int64), position_ids=np.zeros((1, 4), np.int64))
    with pytest.raises(TypeError, match="unexpected arguments"):
        fm(input_ids=np.ones((1, 4), np.int64), pixel_values=np.zeros(3))


def test_corrupted_or_truncated_model_is_detected(arts, tmp_path):
    src, _ = arts[("bert", "text-classification")]
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    data = bytearray((bad / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="corrupted or truncated"):
        FastModelForSequenceClassification.from_pretrained(bad)
    (bad / "model.onnx").write_bytes(bytes(data[:1000]))
    with pytest.raises(ValueError, match="corrupted or truncated"):
        FastModelForSequenceClassification.from_pretrained(bad)
    with pytest.raises(ValueError, match="ONNX Runtime cannot load"):  # verify=False: ORT's own error, wrapped
        FastModelForSequenceClassification.from_pretrained(bad, verify=False, backend="onnxruntime")
    with pytest.raises(ValueError, match="cannot parse .* as ONNX"):  # the engine's own parse error
        FastModelForSequenceClassification.from_pretrained(bad, verify=False, backend="native")
    with pytest.raises(FileNotFoundError):
        FastModelForSequenceClassification.from_pretrained(tmp_path / "missing")
    fc = json.loads((bad / "fast_config.json").read_text())
    fc["library"] = "someone-else"
    (bad / "fast_config.json").write_text(json.dumps(fc))
    with pytest.raises(ArtifactError, match="not written by hf-fast"):
        FastModelForSequenceClassification.from_pretrained(bad)


def test_graph_whose_output_is_not_one_row_per_sequence_is_refused(arts, tmp_path):
    """A graph rewired so that `logits` is no longer [batch, labels] (here transposed; the fuzzer found a MatMul fed
    the wrong tensor) still runs in ONNX Runtime: the backend names the output instead of returning it."""
    import onnx
    from onnx import helper

    src, _ = arts[("bert", "text-classification")]
    bad = tmp_path / "lying"
    shutil.copytree(src, bad)
    model = onnx.load(str(bad / "model.onnx"))
    for node in model.graph.node:
        node.output[:] = ["logits_raw" if o == "logits" else o for o in node.output]
    model.graph.node.append(helper.make_node("Transpose", ["logits_raw"], ["logits"], perm=[1, 0]))
    del model.graph.output[0].type.tensor_type.shape.dim[:]
    onnx.save(model, str(bad / "model.onnx"))
    fc = json.loads((bad / "fast_config.json").read_text())
    from hf_fast.export.artifact import file_entry
    fc["files"]["model.onnx"] = file_entry(bad / "model.onnx")
    (bad / "fast_config.json").write_text(json.dumps(fc))
    fm = FastModelForSequenceClassification.from_pretrained(bad, backend="onnxruntime")
    with pytest.raises(ValueError, match="output 'logits' .* shape \\(3, 2\\) for a batch of 2"):
        fm(input_ids=np.array([[101, 7, 102], [101, 8, 102]]))


def test_pipelines(arts, tok):
    fm = FastModelForSequenceClassification.from_pretrained(arts[("bert", "text-classification")][0])
    assert fm.device.type == "cpu" and fm.to("cpu") is fm and not fm.can_generate()
    with pytest.raises(ValueError, match="CPU"):
        fm.to("cuda")
    pipe = transformers.pipeline("text-classification", model=fm, tokenizer=tok)
    res = pipe(SENTENCES[:3])
    enc = tok(SENTENCES[:3], padding=True, return_tensors="pt")
    probs = torch.softmax(fm(**enc).logits, -1)
    assert [r["label"] for r in res] == [["neg", "pos", "mixed"][i] for i in probs.argmax(-1).tolist()]
    assert [r["score"] for r in res] == pytest.approx(probs.max(-1).values.tolist(), abs=1e-5)
    fmt = FastModelForTokenClassification.from_pretrained(arts[("bert", "token-classification")][0])
    tpipe = transformers.pipeline("token-classification", model=fmt, tokenizer=tok)
    ents = tpipe("the cast is terrific")
    assert isinstance(ents, list) and all(e["entity"] in ("B-X", "I-X") for e in ents)
    n_words = len(tok("the cast is terrific")["input_ids"]) - 2
    enc = tok("the cast is terrific", return_tensors="pt")
    labels = fmt(**enc).logits[0, 1:-1].argmax(-1).tolist()
    assert len(ents) == sum(1 for i in labels if i != 0) <= n_words
