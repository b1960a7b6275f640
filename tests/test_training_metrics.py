"""Offline SQuAD EM/F1 (official v1.1 rules) and accuracy against hand-computed values."""
import pytest

from hf_fast.training.metrics import accuracy, f1_score, normalize_answer, squad_metric


def test_normalize():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert normalize_answer("An apple a day") == "apple day"


def test_f1_by_hand():
    # pred tokens [denver, broncos, team], gold [denver, broncos]: P=2/3, R=1 -> F1=0.8
    assert f1_score("the Denver Broncos team", "Denver Broncos") == pytest.approx(0.8)
    assert f1_score("nothing", "Denver") == 0.0


def test_squad_metric_matches_official_example():
    preds = [{"id": "1", "prediction_text": "Denver Broncos"},
             {"id": "2", "prediction_text": "in 1990"},
             {"id": "3", "prediction_text": "blue"}]
    refs = [{"id": "1", "answers": {"text": ["Denver Broncos", "The Denver Broncos"], "answer_start": [0, 0]}},
            {"id": "2", "answers": {"text": ["1990", "the year 1990"], "answer_start": [0, 0]}},
            {"id": "3", "answers": {"text": ["red"], "answer_start": [0]}}]
    r = squad_metric(preds, refs)
    # EM: 1 + 0 + 0; F1: 1 + max(2*0.5*1/1.5, 2*(1/2)*(1/2)/1) = 2/3 + 0
    assert r["exact_match"] == pytest.approx(100 / 3)
    assert r["f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)


def test_accuracy():
    assert accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == {"accuracy": 0.5}
    with pytest.raises(ValueError):
        accuracy([1], [1, 0])


def test_paired_statistics():
    from hf_fast.training.metrics import mcnemar_exact, wilson_interval

    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(10, 0) == pytest.approx(2 / 1024)        # all 10 discordant pairs favour A
    assert mcnemar_exact(3, 7) == mcnemar_exact(7, 3) == pytest.approx(2 * 176 / 1024)  # C(10,0..3) = 176
    assert mcnemar_exact(50, 50) == 1.0
    lo, hi = wilson_interval(1600, 2000)
    assert lo < 0.8 < hi and hi - lo == pytest.approx(0.035, abs=0.001)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_squad_scores_and_paired_difference():
    from hf_fast.training.metrics import paired_difference, squad_scores

    preds = [{"id": "1", "prediction_text": "Denver Broncos"}, {"id": "2", "prediction_text": "in 1990"}]
    refs = [{"id": "1", "answers": {"text": ["Denver Broncos"], "answer_start": [0]}},
            {"id": "2", "answers": {"text": ["1990", "the year 1990"], "answer_start": [0, 0]}}]
    s = squad_scores(preds, refs)
    assert s == {"1": (1.0, 1.0), "2": (0.0, pytest.approx(2 / 3))}
    # differences 0.5, -0.5, 0.3: mean 0.1, sample sd sqrt(((.4)^2 + (.6)^2 + (.2)^2) / 2) = sqrt(0.28)
    m, se = paired_difference({"a": 1.0, "b": 0.0, "c": 0.8, "only_a": 9.0}, {"a": 0.5, "b": 0.5, "c": 0.5})
    assert m == pytest.approx(0.1) and se == pytest.approx((0.28 ** 0.5) / 3 ** 0.5)
    with pytest.raises(ValueError, match="shared keys"):
        paired_difference({"a": 1.0}, {"a": 0.0})
