"""`make wheel-smoke`, step 1, in a clean venv holding only the built wheel with its [train] extra, run from a temporary
folder (no source tree on sys.path, no compiler on PATH): native_info(), export a tiny BERT classifier, run it on the
native engine and check it against ONNX Runtime on the same file. Writes the artifact and its native logits
(expected.npy) for smoke_serve.py, which loads them in a venv without torch.

    python smoke_export.py OUT_DIR
"""
import os
import sys
import sysconfig
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SENTENCES = ["a gripping, beautifully acted film", "the plot is thin and the jokes fall flat",
             "an unexpected delight from start to finish", "tedious, overlong and badly edited",
             "the cast is terrific", "i wanted my two hours back", "a warm and funny story", "dull"]


def installed_not_source(mod) -> Path:
    """The module must come from this venv's site-packages, not a source checkout."""
    f = Path(mod.__file__).resolve()
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    assert site in f.parents, f"{mod.__name__} imported from {f}, not from {site}"
    assert not (f.parents[1] / "native" / "build_native.py").exists(), f"{f} sits in a source tree"
    return f


def tiny_tokenizer(folder: Path):
    from transformers import BertTokenizerFast

    words = sorted({w.strip(",.") for s in SENTENCES for w in s.split()})
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    return BertTokenizerFast(vocab_file=str(vocab))


def main(out: Path) -> int:
    import numpy as np
    import torch
    import transformers

    import hf_fast
    from hf_fast.runtime import FastModelForSequenceClassification

    where = installed_not_source(hf_fast)
    info = hf_fast.native_info()
    print(f"hf_fast {hf_fast.__version__} from {where.parent}; native {info['version']} isa={info['isa']} "
          f"supported={info['supported_isas']} cpu={info['cpu']}")
    assert info["isa"] in info["supported_isas"]

    work = out.parent / "tok"
    work.mkdir(parents=True, exist_ok=True)
    tok = tiny_tokenizer(work)
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=64, max_position_embeddings=64, num_labels=2)
    model = transformers.BertForSequenceClassification(cfg).eval()
    # save_fast = hf_fast.export + model.safetensors (so `hf-fast bench` has a PyTorch column to skip without torch)
    hf_fast.save_fast(model, tok, out, calibration_dataset=SENTENCES, task="text-classification", progress=False)

    enc = tok(SENTENCES, padding=True, return_tensors="np")
    native = FastModelForSequenceClassification.from_pretrained(out)  # backend="native"
    ort = FastModelForSequenceClassification.from_pretrained(out, backend="onnxruntime")
    a = native.run(**enc)["logits"]
    b = ort.run(**enc)["logits"]
    print(f"native vs ONNX Runtime on the exported int8 file: max |diff| {np.abs(a - b).max():.2e}")
    assert a.shape == (len(SENTENCES), 2) and np.allclose(a, b, atol=1e-3), (a, b)
    with torch.inference_mode():
        ref = model(**tok(SENTENCES, padding=True, return_tensors="pt")).logits.numpy()
    print(f"native int8 vs PyTorch fp32: max |diff| {np.abs(a - ref).max():.2e}")
    assert np.allclose(a, ref, atol=0.05)
    np.save(out / "expected.npy", a, allow_pickle=False)
    print(f"smoke_export: ok -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]).resolve()))
