"""Pipelines over fast models: hf_fast.pipeline(task, model=dir) and transformers.pipeline(task, model=fast_model)
for text classification, token classification and (hf-fast's own, transformers 5 removed it) question answering."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from _export_helpers import SENTENCES, calibration_for, tiny_model  # noqa: E402

import hf_fast  # noqa: E402
from hf_fast.pipelines import QuestionAnsweringPipeline, best_spans  # noqa: E402
from hf_fast.runtime.modeling import load_fast_model  # noqa: E402


@pytest.fixture(scope="module")
def arts(tmp_path_factory, tok):
    root = tmp_path_factory.mktemp("pipe")
    out = {}
    for arch, task in (("bert", "text-classification"), ("distilbert", "token-classification"),
                       ("bert", "question-answering")):
        m = tiny_model(arch, task, tok.vocab_size, max_pos=128)
        if task != "question-answering":
            labels = ["neg", "pos", "mixed"] if task == "text-classification" else ["O", "B-X", "I-X"]
            m.config.id2label = dict(enumerate(labels))
            m.config.label2id = {v: k for k, v in m.config.id2label.items()}
        out[task] = (hf_fast.export(m, tok, root / task, calibration_dataset=calibration_for(task), progress=False), m)
    return out


def test_text_classification(arts, tok):
    p, model = arts["text-classification"]
    pipe = hf_fast.pipeline("text-classification", model=str(p))
    out = pipe(SENTENCES[:4])
    want = model(**tok(SENTENCES[:4], padding=True, return_tensors="pt")).logits.argmax(-1)
    assert [o["label"] for o in out] == [model.config.id2label[int(i)] for i in want]
    plain = transformers.pipeline("text-classification", model=load_fast_model(p), tokenizer=tok)
    assert [o["label"] for o in plain(SENTENCES[:4])] == [o["label"] for o in out]
    assert len(pipe(SENTENCES[0], top_k=None)) == 3
    with pytest.raises(ValueError, match="is a 'text-classification' model"):
        hf_fast.pipeline("ner", model=str(p))


def test_token_classification(arts, tok):
    p, _ = arts["token-classification"]
    pipe = hf_fast.pipeline("token-classification", model=p, backend="onnxruntime")
    ents = pipe(SENTENCES[0])
    assert ents and all(e["entity"] in ("O", "B-X", "I-X") for e in ents)
    plain = transformers.pipeline("token-classification", model=load_fast_model(p, backend="onnxruntime"),
                                  tokenizer=tok)
    assert [e["entity"] for e in plain(SENTENCES[0])] == [e["entity"] for e in ents]
    grouped = hf_fast.pipeline(model=p, aggregation_strategy="simple")(SENTENCES[:2])
    assert len(grouped) == 2


def test_best_spans():
    s = np.array([0, 5, 1, 0, 9], np.float32)
    e = np.array([0, 1, 6, 0, 9], np.float32)
    ctx = np.array([0, 1, 1, 1, 0], bool)  # token 4 is not context: never picked
    (score, a, b), = best_spans(s, e, ctx, top_k=1)
    assert (a, b) == (1, 2) and 0 < score <= 1
    assert all(a2 <= b2 < a2 + 1 for _, a2, b2 in best_spans(s, e, ctx, top_k=3, max_answer_len=1))


def test_question_answering(arts, tok):
    p, model = arts["question-answering"]
    context = " ".join(SENTENCES)
    qa = hf_fast.pipeline("question-answering", model=p)
    assert isinstance(qa, QuestionAnsweringPipeline)
    out = qa(question="which film is terrific?", context=context)
    assert set(out) == {"score", "start", "end", "answer"}
    assert out["answer"] == context[out["start"]:out["end"]] and out["answer"]
    # the same pipeline over the PyTorch model picks the same span (int8 vs fp32, tiny random model)
    ref = QuestionAnsweringPipeline(model, tok)(question="which film is terrific?", context=context)
    assert (ref["start"], ref["end"]) == (out["start"], out["end"])
    # long contexts: overlapping windows, top_k, batches of questions, dict inputs
    many = qa(question=["who is terrific?", "what is dull?"], context=context * 3, max_seq_len=48, doc_stride=16,
              top_k=2)
    assert len(many) == 2 and all(len(m) == 2 and m[0]["score"] >= m[1]["score"] for m in many)
    assert qa({"question": "dull?", "context": context})["answer"]
    with pytest.raises(ValueError, match="non-empty"):
        qa(question="", context=context)
    with pytest.raises(ValueError, match="question= and context="):
        qa(question="x")
