"""Write a golden artifact of the current format and its expected outputs (tests/test_artifact_compat.py).

    PYTHONPATH=. python tests/golden/make_golden.py format_v1_bert_tc

Run it once per format version, into a NEW folder: a committed golden folder is never regenerated, since its whole
point is that later code must still load what earlier code wrote. What <name>/ holds:
- artifact/: a tiny BERT text classifier (2 layers, hidden 16, 2 heads, FFN 32, 16 positions, a 64-word WordPiece
  vocab), weights scaled to ~0.4 (peaked attention, input-dependent logits), layer 0 pruned to ~80% zero 4x1
  blocks (the block-sparse kernel on every ISA), layer 1 dense, exported with the default options and its tokenizer;
- inputs.json: fixed sentences and the ids the tokenizer gave for them, plus where the recordings were made;
- expected_native_<isa>.npy: the engine's logits on every ISA this CPU runs (np.save, allow_pickle=False);
- expected_onnxruntime.npy: ONNX Runtime's logits with graph optimisations off (the graph's exact QDQ semantics,
  free of the CPU-dependent fused int8 kernels; see hf_fast/export/README.md).
"""
from __future__ import annotations

import json
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/_export_helpers.py

WORDS = ("a the film movie plot cast story is was and but not very too so it this that of to in with good great "
         "fine warm funny smart sharp moving charming stunning bad dull thin flat wooden tedious empty mess long "
         "boring best worst acted edited written jokes dialogue year family tale fall never badly").split()
SENTENCES = ["a great film", "the plot is thin and the jokes fall flat", "smart , sharp and moving",
             "tedious , long and badly edited", "the cast was very good but the story was dull", "dull"]


def build(out: Path) -> None:
    import torch
    from _export_helpers import tiny_model
    from transformers import BertTokenizerFast

    from hf_fast import native
    from hf_fast.export import export
    from hf_fast.runtime import FastModelForSequenceClassification

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ",", *WORDS, "##s", "##ly", "##ed"]
    assert len(vocab) == 64 and len(set(vocab)) == 64, len(vocab)
    with tempfile.TemporaryDirectory() as t:
        (Path(t) / "vocab.txt").write_text("\n".join(vocab) + "\n")
        tok = BertTokenizerFast(vocab=str(Path(t) / "vocab.txt"), do_lower_case=True)
    model = tiny_model("bert", "text-classification", len(vocab), seed=18, layers=2, hidden=16, heads=2, ffn=32,
                       max_pos=16, num_labels=2)
    model.config.id2label, model.config.label2id = {0: "NEGATIVE", 1: "POSITIVE"}, {"NEGATIVE": 0, "POSITIVE": 1}
    g = torch.Generator().manual_seed(18)
    with torch.no_grad():
        # weights well above transformers' 0.02 init: peaked attention and logits that depend on the input, so a
        # loader that drops a position, a token type or a bias moves them far outside any rounding tolerance
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.4 * torch.randn(p.shape, generator=g))
        for name, mod in model.named_modules():
            if ".layer.0." in name and isinstance(mod, torch.nn.Linear):
                keep = (torch.rand(mod.weight.shape[0] // 4, mod.weight.shape[1], generator=g) < 0.2).float()
                mod.weight.mul_(keep.repeat_interleave(4, 0))
    if out.exists():
        raise FileExistsError(f"{out} exists: golden artifacts are written once, never regenerated")
    out.mkdir(parents=True)
    art = out / "artifact"
    export(model, tok, art, calibration_dataset=SENTENCES, task="text-classification", block="4x1", progress=False)
    (art / "model_fp32.onnx").unlink(missing_ok=True)

    enc = tok(SENTENCES, padding=True, return_tensors="np")
    feeds = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
    meta = {"sentences": SENTENCES, **{k: v.tolist() for k, v in feeds.items()},
            "recorded_on": {"machine": platform.machine(), "libc": " ".join(platform.libc_ver()),
                            "cpu": native.native_info()["cpu"]}}
    for isa in native.supported_isas():
        m = FastModelForSequenceClassification.from_pretrained(art, backend="native", isa=isa, pack_cache=False)
        np.save(out / f"expected_native_{isa}.npy", m.run(**feeds)["logits"], allow_pickle=False)
    m = FastModelForSequenceClassification.from_pretrained(art, backend="onnxruntime",
                                                           graph_optimization_level="ORT_DISABLE_ALL")
    np.save(out / "expected_onnxruntime.npy", m.run(**feeds)["logits"], allow_pickle=False)
    # one row of ids per line: readable, and diffs stay small
    text = json.dumps(meta, indent=1)
    for v in feeds.values():
        text = text.replace(json.dumps(v.tolist(), indent=1).replace("\n", "\n "), json.dumps(v.tolist()))
    (out / "inputs.json").write_text(text + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    build(HERE / sys.argv[1])
    shutil.rmtree(HERE / "__pycache__", ignore_errors=True)
