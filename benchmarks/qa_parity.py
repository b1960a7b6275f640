"""Engine vs ONNX Runtime on existing QA fast artifacts, no training: SQuAD v1.1 dev (a stated prefix), the same
features and post-processing as train_squad.py, the same model.onnx in both runtimes. Prints EM / F1 of each
runtime, the % of questions with the identical answer text, and the largest start/end logit difference.

    python benchmarks/qa_parity.py benchmarks/out/squad_s4_gm/teacher_dense_int8 \\
        benchmarks/out/squad_s4_gm/teacher_dense_int8_qa --eval-articles 3

Use it to re-check issue 4's >= 98% same-answers target after a kernel change without retraining.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from train_squad import log, max_logit_diff, predict_logits  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifacts", nargs="+", help="QA fast artifact directories")
    ap.add_argument("--recipe", default=str(REPO / "recipes" / "minilm_squad_part.yaml"), help="data settings")
    ap.add_argument("--eval-articles", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--eval-batch", type=int, default=32)
    a = ap.parse_args(argv)

    from transformers import AutoTokenizer

    from hf_fast.runtime import FastModelForQuestionAnswering
    from hf_fast.training.metrics import squad_metric
    from hf_fast.training.qa_data import (
        answer_agreement,
        feature_arrays,
        postprocess_qa_predictions,
        squad_datasets,
        squad_predictions_and_references,
    )
    from hf_fast.training.recipe import load_recipe

    r = load_recipe(a.recipe, base_dir=REPO)
    threads = a.threads or max(1, os.cpu_count() or 1)
    rows = []
    for art in a.artifacts:
        tok = AutoTokenizer.from_pretrained(art)
        _, _, ev_ex, eval_ds = squad_datasets(r.data, tok, eval_articles=a.eval_articles, pad_train=False)
        arr = feature_arrays(eval_ds)
        preds, logits, metrics = {}, {}, {}
        for backend in ("native", "onnxruntime"):
            fm = FastModelForQuestionAnswering.from_pretrained(art, backend=backend, num_threads=threads)

            def run(feed, fm=fm):
                o = fm(**feed)
                return o.start_logits.numpy(), o.end_logits.numpy()

            st, en, t = predict_logits(run, arr, a.eval_batch)
            logits[backend] = (st, en)
            preds[backend] = postprocess_qa_predictions(ev_ex, eval_ds, st, en, n_best=20, max_answer_length=30)
            metrics[backend] = squad_metric(*squad_predictions_and_references(ev_ex, preds[backend]))
            m = metrics[backend]
            log(f"{art} {backend}: EM {m['exact_match']:.2f} F1 {m['f1']:.2f} ({t:.0f} s)")
        agree = 100 * answer_agreement(preds["native"], preds["onnxruntime"])
        diff = max_logit_diff(logits["native"], logits["onnxruntime"], arr["attention_mask"])
        rows.append((art, len(ev_ex), metrics, agree, diff))
    print("\n| artifact | questions | engine EM / F1 | ORT EM / F1 | engine vs ORT same answer | max logit diff |")
    print("|---|---|---|---|---|---|")
    for art, n, m, agree, diff in rows:
        print(f"| {art} | {n} | {m['native']['exact_match']:.2f} / {m['native']['f1']:.2f} | "
              f"{m['onnxruntime']['exact_match']:.2f} / {m['onnxruntime']['f1']:.2f} | {agree:.2f}% | {diff:.4g} |")


if __name__ == "__main__":
    main()
