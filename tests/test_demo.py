"""`make demo`: the shipped sample it trains and evaluates on, its statistics, and the QUICK smoke run end to end."""
from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from hf_fast import demo
from hf_fast.demo_data import SAMPLE, rt_polarity_sample, sample_sentences


def test_sample_eval_is_large_balanced_and_disjoint_from_train():
    d = rt_polarity_sample()
    tr, ev = d["train"], d["eval"]
    assert len(ev["text"]) >= 1000  # 200 sentences carry +-2.8 points of standard error
    assert set(tr["text"]).isdisjoint(ev["text"])
    for split in (tr, ev):
        assert len(split["text"]) == len(split["label"])
        assert set(split["label"]) == {0, 1}
        assert sum(split["label"]) * 2 == len(split["label"])  # both classes equally
    # bench_engine.py and the export calibrate on the first sentences: both classes from the start
    assert set(tr["label"][:2]) == {0, 1}
    assert sample_sentences() == tr["text"]


def test_sample_ships_in_the_package_with_its_provenance_and_stays_small():
    f = resources.files("hf_fast").joinpath(SAMPLE)
    raw = f.read_bytes()
    assert len(raw) < 600_000  # a sample, not a data set
    header = [ln for ln in gzip.decompress(raw).decode("utf-8").splitlines() if ln.startswith("#")]
    assert any("Pang & Lee" in ln and "research use" in ln for ln in header)
    assert "../shared" not in Path(demo.__file__).read_text()


def test_stderr_figures():
    assert demo._stderr(0.835, 2000) == pytest.approx(0.0083, abs=1e-4)
    assert demo._stderr(0.835, 200) == pytest.approx(0.0262, abs=1e-4)
    a = np.array([1, 1, 0, 1, 0, 1, 1, 0], bool)
    assert demo._paired_stderr(a, a) == 0.0  # the same predictions: no uncertainty on the difference
    b = np.array([1, 0, 0, 1, 1, 1, 0, 0], bool)
    d = a.astype(float) - b.astype(float)
    assert demo._paired_stderr(a, b) == pytest.approx(d.std(ddof=1) / np.sqrt(len(d)))


@pytest.mark.slow  # the whole pipeline on a few steps (~1-2 min on 2 idle cores)
def test_quick_demo_runs_end_to_end(tmp_path):
    env = {**os.environ, "HF_FAST_DEMO_QUICK": "1", "HF_FAST_DEMO_OUT": str(tmp_path), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    p = subprocess.run([sys.executable, "-m", "hf_fast.demo"], env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout
    for row in ("teacher (PyTorch fp32, dense)", "student int8 in native", "student int8 in onnxruntime"):
        assert re.search(re.escape(row) + r"\s+\d+\.\d\d%", out), out[-3000:]
    assert re.search(r"accuracy on 200 held-out sentences, none of them trained on: standard error ±\d\.\d", out)
    assert out.rstrip().splitlines()[-1].startswith("full recipe")
    assert "hf-fast train recipes/minilm_rt_polarity.yaml" in out
    assert (tmp_path / "minilm-rt-polarity-fast" / "model.onnx").is_file() and (tmp_path / "demo.png").is_file()
