"""Shared checks of the per-family parity tests (tests/test_family_*.py): one exported file per task, the engine
against ONNX Runtime (argmax agreement) and against PyTorch fp32 (relative L2 error over the compared rows)."""
from __future__ import annotations

import numpy as np
import torch

from hf_fast.runtime import modeling

TASKS = ("text-classification", "question-answering", "token-classification")
FAST = {"text-classification": modeling.FastModelForSequenceClassification,
        "question-answering": modeling.FastModelForQuestionAnswering,
        "token-classification": modeling.FastModelForTokenClassification}


def real_sentences(n_per_class: int = 100) -> list[str]:
    """rt-polarity sentences, alternating classes, from ../shared/data; without it the package's shipped sample of
    the same corpus (hf_fast.demo_data), never a short hand-written list."""
    from conftest import SHARED_DATA

    d = SHARED_DATA / "rt-polarity"
    if not d.is_dir():
        from hf_fast.demo_data import sample_sentences

        return sample_sentences()[: 2 * n_per_class]
    pos = (d / "rt-polarity.pos").read_text(encoding="latin-1").splitlines()
    neg = (d / "rt-polarity.neg").read_text(encoding="latin-1").splitlines()
    return [s for pair in zip(pos[:n_per_class], neg[:n_per_class], strict=True) for s in pair]


def np_(x):
    return np.asarray(x.detach() if hasattr(x, "detach") else x)


def outputs(task):
    return ("start_logits", "end_logits") if task == "question-answering" else ("logits",)


def rel(got, want) -> float:
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def valid(task, x):
    """Rows compared: every sequence (text-classification) or every real token."""
    return None if task == "text-classification" else x["attention_mask"].astype(bool)


def argmax_agreement(task, a, b, x) -> tuple[int, int]:
    """(agreeing, compared) argmaxes of two runs' outputs: per sequence, per real token, or (question answering)
    the start / end position over the real tokens of each sequence."""
    ok, n = valid(task, x), 0
    agree = 0
    for k in outputs(task):
        ga, gb = np_(getattr(a, k)), np_(getattr(b, k))
        if task == "question-answering":
            am, bm = np.where(ok, ga, -np.inf).argmax(-1), np.where(ok, gb, -np.inf).argmax(-1)
        else:
            am, bm = ga.argmax(-1), gb.argmax(-1)
            if ok is not None:
                am, bm = am[ok], bm[ok]
        agree += int((am == bm).sum())
        n += am.size
    return agree, n


def logits_rel_errors(task, got, model, x) -> dict[str, float]:
    """{output: relative L2 error of the engine's output against the PyTorch model's} over the compared rows."""
    with torch.no_grad():
        ref = model(**{k: torch.from_numpy(v) for k, v in x.items()})
    ok = valid(task, x)
    out = {}
    for k in outputs(task):
        g, r = np_(getattr(got, k)), getattr(ref, k).numpy()
        if ok is not None:
            g, r = g[ok], r[ok]
        out[k] = rel(g, r)
    return out


def pruned_export_matches_onnxruntime(model, tok, path, sentences, feeds, atol_of_range: float):
    """Export a pruned text classifier to ``path``; the engine must run sparse kernels on it and agree with ONNX
    Runtime on the same file: argmax >= 99.5%, logits within ``atol_of_range`` of their largest magnitude (MPNet:
    2e-3, a u8 requantisation that rounds the other way moved a logit by ~1.6e-4 of its range in one CI run)."""
    from _export_helpers import calibration_for

    import hf_fast

    art = hf_fast.export(model, tok, path, calibration_dataset=calibration_for("text-classification", sentences[:32]),
                         progress=False)
    nat = FAST["text-classification"].from_pretrained(art, backend="native", pack_cache=False)
    assert any(c.block == "4x1" for c in nat.backend.engine.kernel_choices.values())  # sparse kernels run
    ort = FAST["text-classification"].from_pretrained(art, backend="onnxruntime")
    x = feeds(tok, "text-classification", sentences[:64])
    a, b = np_(nat(**x).logits), np_(ort(**x).logits)
    assert (a.argmax(-1) == b.argmax(-1)).mean() >= 0.995
    np.testing.assert_allclose(a, b, rtol=0, atol=atol_of_range * max(1.0, float(np.abs(b).max())))
