"""benchmarks/squad_curve.py (issue 17's table and plot): rows read from train_squad.py results, the fp32 paired
difference computed from per_question_f1.json, and the learning-curve panel drawn from fp32-only runs."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def sc():
    spec = importlib.util.spec_from_file_location("squad_curve", BENCH / "squad_curve.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(tmp: Path, name: str, share: float | None, teacher: list[float], student: list[float], int8: bool):
    d = tmp / name
    d.mkdir()
    ids = [f"q{i}" for i in range(len(teacher))]
    runs = {"teacher_dense": {"f1": 100 * sum(teacher) / len(teacher), "sparsity_overall": 0.0},
            "student_distilled": {"f1": 100 * sum(student) / len(student), "sparsity_overall": 0.8, "steps": 10}}
    if int8:
        runs["student_distilled"].update(int8_native_f1=50.0, int8_native_f1_paired_vs_teacher_fp32=[-7.0, 0.5])
    (d / "results.json").write_text(json.dumps({"data": {"train_fraction": share}, "runs": runs,
                                                "eval_questions": len(ids)}))
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
