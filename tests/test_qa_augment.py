"""The teacher as a data source for QA distillation (hf_fast.training.qa_augment) and the QA KL's padding rule."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from hf_fast.training.config import DistillConfig
from hf_fast.training.distillation import DistillationLoss
from hf_fast.training.qa_augment import (
    WordReplacer,
    augment_pairs,
    augmented_features,
    check_augment_qa,
    distillation_dataset,
)
from hf_fast.training.qa_data import qa_train_dataset, read_squad_json
from tests.test_training_qa import SQUAD, squad_file, tok  # noqa: F401  (module fixtures)


def _paragraphs_by_title():
    return {a["title"]: [p["context"] for p in a["paragraphs"]] for a in SQUAD["data"]}


@pytest.mark.parametrize("spec, msg", [
    ({"copies": 1}, "unknown keys"),
    ({"other_paragraphs": -1}, "int >= 0"),
    ({"word_replace": 1.5}, "int >= 0"),
    ({"replace_p": 1.0}, "replace_p"),
    ({"strides": [[64, 64]]}, "doc_stride"),
    ({"strides": [64]}, "max_length, doc_stride"),
])
def test_check_rejects_bad_specs(spec, msg):
    with pytest.raises(ValueError, match=msg):
        check_augment_qa(spec)


def test_pair_routes_draw_from_the_right_paragraphs(squad_file):  # noqa: F811
    ex = read_squad_json(squad_file)
    # a second paragraph in Super_Bowl so "other paragraphs of the same article" exists
    extra = dict(ex[0], id="q1b", context="The halftime show was headlined by Coldplay .")
    ex = ex + [extra]
    by_title = _paragraphs_by_title()
    by_title["Super_Bowl"].append(extra["context"])
    out = augment_pairs(ex, {"other_paragraphs": 1, "cross_article": 2, "seed": 3})
    own = {e["id"]: e for e in ex}
    for row in out["other_paragraphs"]:
        src = own[row["id"].split("#")[0]]
        assert row["question"] == src["question"]
        assert row["context"] != src["context"] and row["context"] in by_title[src["title"]]
    # Paris has one paragraph: its questions have no other paragraph to ask
    assert {r["id"].split("#")[0] for r in out["other_paragraphs"]} == {e["id"] for e in ex
                                                                        if e["title"] == "Super_Bowl"}
    assert len(out["cross_article"]) == 2 * len(ex)
    for row in out["cross_article"]:
        src = own[row["id"].split("#")[0]]
        other = [c for t, cs in by_title.items() if t != src["title"] for c in cs]
        assert row["context"] in other
    assert augment_pairs(ex, {"other_paragraphs": 1, "cross_article": 2, "seed": 3}) == out  # deterministic


def test_word_replacer_keeps_punctuation_and_shape():
    rng = random.Random(0)
    rep = WordReplacer(["Alpha beta gamma 12 Delta , (epsilon)", "zeta Eta 7"], rng)
    assert rep("Alpha beta (gamma), 12", 0.0, 0.0, 0.0) == "Alpha beta (gamma), 12"  # nothing asked, nothing done
    changed = 0
    for _ in range(50):
        out = rep("Alpha beta (gamma), 12", 0.9, 0.0, 0.0).split()
        assert len(out) == 4
        assert out[0][0].isupper() and out[1].islower()
        assert out[2].startswith("(") and out[2].endswith("),")
        assert any(c.isdigit() for c in out[3])
        changed += out != ["Alpha", "beta", "(gamma),", "12"]
    assert changed > 25


def test_features_and_the_distillation_set(squad_file, tok):  # noqa: F811
    ex = read_squad_json(squad_file)
    tr = qa_train_dataset(ex, tok, 48, 16, pad=False)
    spec = {"cross_article": 1, "word_replace": 1, "strides": [[24, 8]]}
    feats = augmented_features(ex, tok, spec, 48, 16)
    assert set(feats) == {"cross_article", "word_replace", "strides"}
    assert max(len(x) for x in feats["strides"]["input_ids"]) <= 24
    assert len(feats["strides"]["input_ids"]) > len(ex)  # the 24-token windows split the long context
    ds, counts = distillation_dataset(spec, ex, tr, tok, 48, 16)
    assert counts["original"] == len(tr)
    assert len(ds) == sum(counts.values())
    assert "start_positions" not in ds.column_names and "end_positions" not in ds.column_names
    assert ds["input_ids"][: len(tr)] == tr["input_ids"]  # the originals first, unchanged
    same, counts0 = distillation_dataset({}, ex, tr, tok, 48, 16)
    assert same is tr and counts0 == {"original": len(tr)}


def test_qa_kl_ignores_padding():
    """Pad logits depend on how far a batch was padded: they must not move the QA distillation loss."""
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 10, generator=g), torch.randn(3, 10, generator=g)
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[0, 6:] = 0
    mask[2, 8:] = 0
    loss = DistillationLoss(DistillConfig(temperature=2.0, alpha=1.0))

    def kd(s_, t_):
        out = loss.kd_term({"start_logits": s_, "end_logits": s_}, {"start_logits": t_, "end_logits": t_},
                           {"attention_mask": mask})
        return float(out)

    t2 = t.clone()
    t2[0, 6:] += 5.0  # different padding logits, same real tokens
    t2[2, 8:] -= 3.0
    assert kd(s, t) == pytest.approx(kd(s, t2), rel=1e-6)
    # and the real tokens still count: the loss is the KL over the unpadded prefix
    ref = np.mean([float(torch.nn.functional.kl_div(torch.log_softmax(s[i, : int(mask[i].sum())] / 2, -1),
                                                    torch.log_softmax(t[i, : int(mask[i].sum())] / 2, -1),
                                                    log_target=True, reduction="sum")) for i in range(3)]) * 4
    assert kd(s, t) == pytest.approx(ref, rel=1e-4)
