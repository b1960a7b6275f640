"""Start logits of a QA artifact in the engine, in ONNX Runtime, and in ONNX Runtime with graph optimisations
off (the exact arithmetic of the QDQ file), on the first question of the first 8 paragraphs of SQuAD dev:

    python benchmarks/qa_exact_parity.py benchmarks/out/squad_parity/teacher_dense_int8
"""
import json
import os
import sys
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("HF_FAST_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def main(art: str) -> None:
    from transformers import AutoTokenizer

    from hf_fast.runtime.modeling import load_fast_model

    tok = AutoTokenizer.from_pretrained(art)
    paras = json.loads((DATA / "squad" / "squad_v1.1_dev.json").read_text())["data"][0]["paragraphs"][:8]
    enc = tok([p["qas"][0]["question"] for p in paras], [p["context"] for p in paras], truncation="only_second",
              max_length=384, padding=True, return_tensors="np")
    runs = {"native": ("native", {}), "ort": ("onnxruntime", {}),
            "exact": ("onnxruntime", {"graph_optimization_level": "ORT_DISABLE_ALL"})}
    out = {k: load_fast_model(art, backend=b, num_threads=1, **kw)(**enc).start_logits.numpy()
           for k, (b, kw) in runs.items()}
    m = enc["attention_mask"].astype(bool)
    for a, b in (("native", "exact"), ("ort", "exact"), ("native", "ort")):
        d = np.abs(out[a] - out[b])[m]
        print(f"{a} vs {b}: max {d.max():.4f} mean {d.mean():.5f}")


if __name__ == "__main__":
    main(sys.argv[1])
