"""A quick retrieval proxy for embedding students while they train: fp32 PyTorch (sentence-transformers' own
encode, batch 32) on the first N SQuAD v1.1 dev paragraphs and their questions, recall@1 / @10 and MRR as
bench_embed.py computes them (its full set is 2,067 paragraphs and 10,570 questions in the engine; this one runs in
minutes on a loaded core). Not a RESULTS figure: it says whether a run is improving.

  python benchmarks/embed_proxy.py /work/notes/models/embed19_s75b_20261207 benchmarks/out/embed19c/s75
  python benchmarks/embed_proxy.py --paragraphs 400 --threads 1 DIR...   (the default; the teacher: 94.33 @10)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_embed import DATA, load_squad, retrieval_metrics  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="sentence-transformers folders")
    ap.add_argument("--paragraphs", type=int, default=400, help="the first N dev paragraphs and their questions")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(a.threads)
    paras, qs, gold = load_squad(a.data / "squad" / "squad_v1.1_dev.json", a.paragraphs)
    for m in a.models:
        st = SentenceTransformer(m, device="cpu")
        t0, c0 = time.perf_counter(), time.process_time()
        p = st.encode(paras, batch_size=32, convert_to_numpy=True)
        q = st.encode(qs, batch_size=32, convert_to_numpy=True)
        res = {k: round(100 * v, 2) if k != "mrr" else round(v, 4) for k, v in retrieval_metrics(q, p, gold).items()}
        print(json.dumps({"model": m, "paragraphs": len(paras), "questions": len(qs), **res,
                          "wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(time.process_time() - c0, 1)}),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
