"""benchmarks/squad_curve.py (issue 17's table and plot): rows read from train_squad.py results, the fp32 paired
difference computed from per_question_f1.json, and the learning-curve panel drawn from fp32-only runs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from _script_loader import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def sc():
    return load_script(BENCH / "squad_curve.py")


def _run(tmp: Path, name: str, share: float | None, teacher: list[float], student: list[float], int8: bool,
         command: str = "train_squad.py --sparsity 0.8"):
    d = tmp / name
    d.mkdir()
    ids = [f"q{i}" for i in range(len(teacher))]
    runs = {"teacher_dense": {"f1": 100 * sum(teacher) / len(teacher), "sparsity_overall": 0.0},
            "student_distilled": {"f1": 100 * sum(student) / len(student), "sparsity_overall": 0.8, "steps": 10}}
    if int8:
        runs["student_distilled"].update(int8_native_f1=50.0, int8_native_f1_paired_vs_teacher_fp32=[-7.0, 0.5])
    (d / "results.json").write_text(json.dumps({"data": {"train_fraction": share}, "runs": runs,
                                                "eval_questions": len(ids), "command": command}))
    pq = {"teacher_dense/fp32": dict(zip(ids, teacher, strict=True)),
          "student_distilled/fp32": dict(zip(ids, student, strict=True))}
    (d / "per_question_f1.json").write_text(json.dumps(pq))
    return d / "results.json"


def test_fp32_paired_difference_and_learning_curve(sc, tmp_path):
    full = _run(tmp_path, "full", None, [1.0, 0.5, 0.0, 1.0], [0.5, 0.5, 0.0, 0.0], int8=True)
    quarter = _run(tmp_path, "quarter", 0.25, [1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0], int8=False)
    rs = sc.rows([full, quarter])
    st = {r["file"]: r for r in rs if r["run"] == "student_distilled"}
    # per-question differences -0.5, 0, 0, -1 -> mean -37.5 F1 points; SE = sd / sqrt(4)
    assert st[str(full)]["diff32"] == pytest.approx(-37.5)
    assert st[str(full)]["se32"] == pytest.approx(100 * (((0.125 ** 2 + 0.375 ** 2 * 2 + 0.625 ** 2) / 3) / 4) ** 0.5)
    assert st[str(full)]["diff"] == -7.0 and st[str(quarter)]["int8_f1"] is None
    assert st[str(quarter)]["share"] == 0.25 and st[str(full)]["share"] == 1.0
    text = sc.table(rs)
    assert "-37.50 +- " in text and "-7.00 +- 0.50" in text and "| 25% |" in text
    png = sc.plot(rs, tmp_path / "curve.png")
    assert png.stat().st_size > 1000


def test_learning_curve_uses_one_eval_set_and_the_plain_recipe(sc, tmp_path):
    """A run on a smaller dev subset (a higher teacher F1) and a capped run at the same share must not set the curve's
    points: the 100% point is the full-set plain run's, and repeated teachers are averaged, not maximised."""
    full = _run(tmp_path, "full", None, [1.0, 0.5, 0.0, 1.0], [0.5, 0.5, 0.0, 0.0], int8=True)
    capped = _run(tmp_path, "capped", None, [1.0, 0.5, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0], int8=True,
                  command="train_squad.py --sparsity 0.8 --max-layer-sparsity 0.9")
    quarter = _run(tmp_path, "quarter", 0.25, [1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0], int8=False)
    subset = _run(tmp_path, "subset", None, [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], int8=True)  # 3 questions, F1 100
    lc = sc.learning_curve(sc.rows([full, capped, quarter, subset]))
    assert lc["teacher_dense"] == ([0.25, 1.0], [50.0, 62.5])
    assert lc["student_distilled"] == ([0.25, 1.0], [25.0, 25.0])  # the capped student's 50.0 is left out
    kept, n = sc.largest_eval_set(sc.rows([full, subset]))
    assert n == 4 and {Path(r["file"]).parent.name for r in kept} == {"full"}
