"""benchmarks/bench_embed.py (issue 19 item 4): its retrieval metrics on hand-made cases, and a smoke run of the
whole benchmark on a tiny random sentence-transformers model and the first SQuAD dev paragraphs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _script_loader import load_script

from hf_fast import native

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    return load_script(BENCH / f"{name}.py")  # bench_embed imports its sibling embed_runners


@pytest.fixture(scope="module")
def be():
    return _load("bench_embed")


def test_retrieval_metrics_on_a_hand_made_case(be):
    # 4 paragraphs on the axes; each question's gold paragraph lands at rank 1, 2 and 4
    p = np.eye(4, dtype=np.float32)
    q = np.array([[0.9, 0.1, 0.0, 0.0],     # gold 0: best -> rank 1
                  [0.0, 0.5, 0.8, 0.1],     # gold 1: paragraph 2 above it -> rank 2
                  [0.4, 0.3, 0.2, 0.1]],    # gold 3: everything above it -> rank 4
                 np.float32)
    m = be.retrieval_metrics(q, p, np.array([0, 1, 3]), ks=(1, 2, 4))
    assert m["recall@1"] == pytest.approx(1 / 3)
    assert m["recall@2"] == pytest.approx(2 / 3)
    assert m["recall@4"] == pytest.approx(1.0)
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 4) / 3)
    # scale does not matter (cosine), chunking does not change the result
    m2 = be.retrieval_metrics(q * 7, p * 3, np.array([0, 1, 3]), ks=(1, 2, 4), chunk=1)
    assert m2 == pytest.approx(m)
    # a paragraph tying the gold score does not push it down
    tie = be.retrieval_metrics(np.array([[1.0, 1.0]]), np.eye(2), np.array([1]), ks=(1,))
    assert tie == {"recall@1": 1.0, "mrr": 1.0}
    with pytest.raises(ValueError, match="gold"):
        be.retrieval_metrics(q, p, np.array([0, 1, 4]))
    with pytest.raises(ValueError, match="gold"):
        be.retrieval_metrics(q, p, np.array([0, 1]))


def test_mean_cosine_and_subsets(be):
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    assert be.mean_cosine(a, a * 5) == pytest.approx(1.0)
    assert be.mean_cosine(a, np.array([[0.0, 1.0], [0.0, 1.0]])) == pytest.approx(0.5)
    assert be.evenly(list(range(10)), 3) == [0, 4, 9]  # 4.5 rounds to even
    assert be.evenly([1, 2], 5) == [1, 2]


def test_load_squad_gold_is_each_questions_own_paragraph(be, tmp_path):
    data = {"data": [{"paragraphs": [{"context": "c0", "qas": [{"question": "q0"}, {"question": "q1"}]},
                                     {"context": "c1", "qas": [{"question": "q2"}]}]},
                     {"paragraphs": [{"context": "c2", "qas": [{"question": "q3"}]}]}]}
    f = tmp_path / "s.json"
    f.write_text(json.dumps(data))
    paras, qs, gold = be.load_squad(f)
    assert paras == ["c0", "c1", "c2"] and qs == ["q0", "q1", "q2", "q3"] and gold.tolist() == [0, 0, 1, 2]
    paras, qs, gold = be.load_squad(f, max_paragraphs=2)
    assert paras == ["c0", "c1"] and gold.tolist() == [0, 0, 1]


def _tiny_st(folder: Path):
    """A tiny random BERT with the real uncased tokenizer, saved as a sentence-transformers folder
    (Transformer -> mean Pooling -> Normalize, max_seq_length 64)."""
    import torch
    import transformers
    from _export_helpers import tokenizer
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules.normalize import Normalize
    from sentence_transformers.base.modules.transformer import Transformer
    from sentence_transformers.sentence_transformer.modules.pooling import Pooling

    torch.manual_seed(0)
    tok = tokenizer()
    cfg = transformers.BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    src = folder / "hf"
    transformers.AutoModel.from_config(cfg).eval().save_pretrained(str(src))
    tok.save_pretrained(str(src))
    st = SentenceTransformer(modules=[Transformer(str(src), max_seq_length=64), Pooling(32, pooling_mode="mean"),
                                      Normalize()], device="cpu")
    st.save(str(folder / "st"))
    return folder / "st"


@pytest.mark.slow  # ~20 s of CPU (two worker processes, two exports); minutes of wall time on a loaded machine
def test_smoke_run_on_a_tiny_model(be, tmp_path, shared_data):
    pytest.importorskip("sentence_transformers")
    teacher = _tiny_st(tmp_path)
    out = tmp_path / "embed.json"
    rc = be.main(["--teacher", str(teacher), "--data", str(shared_data), "--paragraphs", "3", "--threads", "1",
                  "--rounds", "1", "--rt-lines", "8", "--calibration", "8", "--timed-paragraphs", "4",
                  "--timed-questions", "3",
                  "--runtimes", "engine", "ort-int8-dyn", "--workdir", str(tmp_path / "work"), "--out", str(out),
                  "--plot", str(tmp_path / "p.png")])
    assert rc == 0
    res = json.loads(out.read_text())
    assert [r["runtime"] for r in res["quality"]] == ["torch-fp32", "engine", "ort-int8-dyn"]
    n_q = res["data"]["questions"]
    assert res["data"]["paragraphs"] == 3 and n_q > 3
    for r in res["quality"]:
        assert 0 <= r["recall@1"] <= r["recall@10"] <= 1 and 0 < r["mrr"] <= 1
        # recall values are fractions of the n_q questions
        assert abs(r["recall@1"] * n_q - round(r["recall@1"] * n_q)) < 1e-6
    assert res["quality"][1]["recall@10"] == 1.0  # 3 paragraphs: every gold is in the top 10
    for r in res["quality"][1:]:
        assert set(r["cosine_to_fp32"]) == {"questions", "paragraphs", "rt-polarity"}
        assert r["cosine_to_fp32"]["rt-polarity"] > 0.9, r  # int8 of the same random weights
    assert {(r["runtime"], r["threads"]) for r in res["speed"]} == {("engine", 1), ("ort-int8-dyn", 1)}
    for r in res["speed"]:
        assert r["paragraphs_b32"]["n"] == 3 and r["questions_b1"]["n"] == 3
        assert r["paragraphs_b32"]["sent_per_s"] > 0 and len(r["questions_b1"]["rounds_s"]) == 1
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    eng = next(r for r in res["speed"] if r["runtime"] == "engine")
    assert eng["attention"] in ("fp32", "bf16")  # what the engine chose by default is recorded and printed
    assert f"| engine ({eng['attention']} attention) | 1 |" in out.with_suffix(".md").read_text()

    # the shared runner's encode is FastSentenceTransformer.encode: same tokenizer call, same batching
    from embed_runners import EngineRunner, encode

    import hf_fast

    dense = tmp_path / "work" / "dense"
    fc = json.loads((dense / "fast_config.json").read_text())
    fast = hf_fast.FastSentenceTransformer.from_pretrained(dense)
    runner = EngineRunner(dense, 1, tokenizer=fast.tokenizer, max_seq_length=fast.max_seq_length,
                          pooling=fc["pooling"])
    texts = ["a short one", "a much longer sentence about the river and its bridges", "mid length text", "x"]
    np.testing.assert_array_equal(encode(runner, texts, 3), fast.encode(texts, batch_size=3))
    # --attention reaches the engine worker's runner (bench_embed's spec -> make_runner) and the row records it
    from embed_runners import make_runner

    spec = {"kind": "engine", "path": str(dense), "threads": 1, "tokenizer": str(dense),
            "max_seq_length": fast.max_seq_length, "pooling": fc["pooling"], "attention": "fp32"}
    assert make_runner(spec).info["attention"] == "fp32"
    if native.bf16_attention_hardware(fc["hidden_size"] // fc["num_heads"]):
        assert make_runner({**spec, "attention": "bf16"}).info["attention"] == "bf16"


def _q(runtime, r10):
    return {"model": runtime, "runtime": runtime, "recall@1": 0.5, "recall@10": r10, "mrr": 0.6}


def test_student_targets(be):
    quality = [_q("torch-fp32", 0.9172), _q("engine-s80", 0.8980), _q("engine-s70", 0.8960), _q("engine-s50", 0.91)]
    speed = [{"runtime": n, "threads": 1, "paragraphs_b32": {"vs_ort_int8": v}}
             for n, v in (("engine-s80", 3.2), ("engine-s70", 3.5), ("engine-s50", 2.4))]
    t = be.student_targets(quality, speed)
    assert t["engine-s80"]["recall10_gap_points"] == pytest.approx(-1.92)
    assert t["engine-s80"]["met"]                           # -1.92 points and 3.2x: both
    assert not t["engine-s70"]["recall10_met"] and not t["engine-s70"]["met"]   # -2.12 points
    assert t["engine-s50"]["recall10_met"] and not t["engine-s50"]["speedup_met"]
    assert "engine-s50" in be.markdown({"quality": quality, "speed": [], "student_targets": t,
                                        "machine": {"cpu": "x", "isa": "y", "cores": 2, "loadavg_start": [1],
                                                    "loadavg_end": [1]},
                                        "data": {"questions": 1, "paragraphs": 1, "timed_paragraphs": 1,
                                                 "timed_questions": 1}})


def test_dense_quality_rows_from_an_earlier_run(be, tmp_path):
    prev = {"data": {"questions": 10, "paragraphs": 4},
            "quality": [_q("torch-fp32", 0.9), _q("engine", 0.89), _q("engine-s80", 0.5)]}
    f = tmp_path / "embed.json"
    f.write_text(json.dumps(prev))
    rows = be.dense_quality_rows(f, 10, 4)
    assert [r["runtime"] for r in rows] == ["torch-fp32", "engine"]   # an old student row is not reused
    assert all(r["from"] == str(f) for r in rows)
    with pytest.raises(SystemExit, match="not comparable"):
        be.dense_quality_rows(f, 10, 5)
    prev["quality"] = prev["quality"][1:]
    f.write_text(json.dumps(prev))
    with pytest.raises(SystemExit, match="no torch-fp32"):
        be.dense_quality_rows(f, 10, 4)
