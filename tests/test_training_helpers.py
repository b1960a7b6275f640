"""Shared helpers for the tests/test_training_*.py files: tiny random models and data (no downloads)."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

VOCAB = 128


def tiny_bert(task: str = "seq", num_labels: int = 2, seed: int = 0, hidden: int = 32, layers: int = 2,
              vocab: int = VOCAB, **kw):
    from transformers import (
        BertConfig,
        BertForQuestionAnswering,
        BertForSequenceClassification,
        BertForTokenClassification,
    )

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=2 * hidden, max_position_embeddings=64, num_labels=num_labels, **kw)
    cls = {"seq": BertForSequenceClassification, "qa": BertForQuestionAnswering,
           "tok": BertForTokenClassification}[task]
    return cls(cfg)


def tiny_distilbert(task: str = "seq", num_labels: int = 2, seed: int = 0, dim: int = 32, layers: int = 2,
                    vocab: int = VOCAB, **kw):
    from transformers import (
        DistilBertConfig,
        DistilBertForQuestionAnswering,
        DistilBertForSequenceClassification,
        DistilBertForTokenClassification,
    )

    torch.manual_seed(seed)
    cfg = DistilBertConfig(vocab_size=vocab, dim=dim, n_layers=layers, n_heads=2, hidden_dim=2 * dim,
                           max_position_embeddings=64, num_labels=num_labels, **kw)
    cls = {"seq": DistilBertForSequenceClassification, "qa": DistilBertForQuestionAnswering,
           "tok": DistilBertForTokenClassification}[task]
    return cls(cfg)


class ToyDataset(torch.utils.data.Dataset):
    """Sequence classification: label = whether token 5 appears more often than token 6."""

    def __init__(self, n: int = 64, seq: int = 16, seed: int = 0, vocab: int = VOCAB):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, vocab, (n, seq), generator=g)
        self.labels = ((self.ids == 5).sum(1) >= (self.ids == 6).sum(1)).long()

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]), "labels": self.labels[i]}


def train_args(out, max_steps: int = 10, **kw):
    from transformers import TrainingArguments

    base = dict(output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=8, learning_rate=1e-3,
                report_to="none", save_strategy="no", logging_steps=5, use_cpu=True, seed=0, disable_tqdm=True,
                dataloader_num_workers=0, weight_decay=0.01)
    base.update(kw)
    return TrainingArguments(**base)


def masks_equal(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_helpers_build_models():
    assert tiny_bert().config.hidden_size == 32
    assert tiny_distilbert("qa").config.dim == 32
    assert len(ToyDataset(8)) == 8
