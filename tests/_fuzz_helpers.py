"""Shared pieces of the reliability suite (issue 7): micro artifacts, the exceptions a bad artifact or a
bad input may raise, fuzz budgets, a hang watchdog and the replayable corpus in tests/fuzz_corpus/.

Budgets: `make test` runs a bounded pass (HF_FAST_FUZZ_EXAMPLES, default 25 per property, each property
also capped in wall time); `make fuzz` sets HF_FAST_FUZZ=long for thousands of cases per property.
"""
from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CORPUS = Path(__file__).resolve().parent / "fuzz_corpus"
LONG = os.environ.get("HF_FAST_FUZZ") == "long"
EXAMPLES = int(os.environ.get("HF_FAST_FUZZ_EXAMPLES", 2000 if LONG else 25))
# a single case (load + run of a micro model) takes milliseconds; anything near this is a hang
CASE_TIMEOUT_S = 60.0

MICRO = dict(layers=1, hidden=16, heads=2, ffn=32, max_pos=16)
VOCAB = 64


def acceptable_errors():
    """What loading a bad artifact or running bad inputs may raise: clear, typed Python errors."""
    from hf_fast.native import NativeError

    return (ValueError, TypeError, OSError, MemoryError, NativeError)


def micro_calibration(arch: str, n: int = 4, seq: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        d = {"input_ids": rng.integers(3, VOCAB, size=seq).tolist(), "attention_mask": [1] * seq}
        if arch == "bert":
            d["token_type_ids"] = [0] * (seq // 2) + [1] * (seq - seq // 2)
        out.append(d)
    return out


def micro_artifact(out_dir, arch: str, task: str, seed: int = 0, **export_kw) -> Path:
    """A ~50 KB artifact: 1 layer, hidden 16, vocab 64, 16 positions; exported without a tokenizer
    (export_kw: more exporter options, e.g. smooth_quant=0.8)."""
    from _export_helpers import tiny_model

    from hf_fast.export import export

    m = tiny_model(arch, task, VOCAB, seed=seed, **MICRO)
    return export(m, None, out_dir, calibration_dataset=micro_calibration(arch), task=task, progress=False,
                  **export_kw)


MICRO_KINDS = [("bert", "text-classification"), ("distilbert", "question-answering"),
               ("roberta", "token-classification")]


def valid_inputs(arch: str, b: int = 2, s: int = 6, seed: int = 1):
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, VOCAB, size=(b, s)).astype(np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones((b, s), np.int64)}
    if arch == "bert":
        feeds["token_type_ids"] = np.zeros((b, s), np.int64)
    return feeds


def copy_artifact(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


def refresh_sha(d: Path) -> None:
    """Record model.onnx's current sha256 so verify=True lets a (deliberately) changed graph through."""
    from hf_fast.export.artifact import file_entry

    p = d / "fast_config.json"
    fc = json.loads(p.read_text())
    fc["files"]["model.onnx"] = file_entry(d / "model.onnx")
    p.write_text(json.dumps(fc))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextlib.contextmanager
def watchdog(seconds: float = CASE_TIMEOUT_S):
    """A hang (C loop, deadlock) dumps every thread's stack and kills the process instead of stalling CI."""
    faulthandler.dump_traceback_later(seconds, exit=True, file=sys.__stderr__)  # the real fd 2, even under capture
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def corpus_cases(kind: str):
    """Replayable regression cases tests/fuzz_corpus/<kind>-*.json (each found by fuzzing, or a seed)."""
    return sorted(CORPUS.glob(f"{kind}-*.json"))
