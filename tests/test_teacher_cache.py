"""The teacher cache of label-free embedding distillation (hf_fast.training.teacher_cache): cached targets equal the
frozen teacher's outputs whatever the batch and its padding, each text's teacher forward runs once, the length-grouped
sampler hands every text over exactly once per epoch, the loss from cached targets equals the uncached one where no
token is padding, and a cache built for other texts is refused. Tiny random BERTs: seconds."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_training_embed import tiny_encoder
from test_training_helpers import VOCAB, train_args

from hf_fast.training import DistillConfig, FastConfig, FastTrainer
from hf_fast.training.embed_distill import EmbeddingDistillationLoss, sentence_embeddings
from hf_fast.training.run_embed import open_teacher_cache
from hf_fast.training.teacher_cache import INDEX_COLUMN, TeacherCache

RIGHT = SimpleNamespace(padding_side="right")


def texts(n: int = 40, seed: int = 0):
    """A datasets.Dataset of unpadded token ids, 3..20 tokens long."""
    from datasets import Dataset

    g = np.random.default_rng(seed)
    ids = [[1, *g.integers(5, VOCAB, int(g.integers(1, 19))).tolist(), 2] for _ in range(n)]
    return Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids]})


def batch(ds, rows, pad_to: int | None = None):
    """Rows of ds right-padded to the longest (or pad_to) tokens."""
    n = pad_to or max(len(ds[r]["input_ids"]) for r in rows)
    ids = torch.zeros(len(rows), n, dtype=torch.long)
    mask = torch.zeros(len(rows), n, dtype=torch.long)
    for i, r in enumerate(rows):
        x = ds[r]["input_ids"]
        ids[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def hidden_cfg(weight: float = 1.0) -> DistillConfig:
    return DistillConfig(loss="embedding-mse+cosine", hidden_weight=weight)


def open_cache(tmp_path, ds, teacher, cfg=None, name="cache"):
    cfg = cfg or hidden_cfg()
    return open_teacher_cache(tmp_path / name, ds, RIGHT, tiny_encoder(seed=5), teacher, cfg, "mean", "tiny-teacher")


def test_cached_targets_equal_the_teachers_outputs_under_any_padding(tmp_path):
    teacher, ds = tiny_encoder(seed=1).eval(), texts()
    cache = open_cache(tmp_path, ds, teacher)
    assert cache.layers == [1, 2]  # the default layer map of a 2-layer student on a 2-layer teacher
    calls = []

    def targets(rows, pad_to=None):
        inp = batch(ds, rows, pad_to)

        def forward():
            calls.append(rows)
            return teacher(**inp, output_hidden_states=True)

        return inp, cache.targets(rows, inp, forward, lambda o: sentence_embeddings(o, inp["attention_mask"], "mean"))

    targets([0, 1, 2, 3])  # fills 4 texts (one teacher forward)
    targets([4, 5, 6, 7])
    for rows, pad in (([3, 0, 6], None), ([5, 1], 24)):  # other batch mates, other padding: read back, no forward
        n_calls = len(calls)
        inp, got = targets(rows, pad)
        assert len(calls) == n_calls
        with torch.no_grad():
            ref = teacher(**inp, output_hidden_states=True)
        mask = inp["attention_mask"].bool()
        torch.testing.assert_close(got["sentence_embedding"], sentence_embeddings(ref, mask.long(), "mean"),
                                   atol=1e-5, rtol=1e-5)
        assert torch.equal(got["token_mask"], mask)
        for li in (1, 2):
            h = got["hidden_states"][li]
            torch.testing.assert_close(h[mask], ref.hidden_states[li][mask], atol=1e-5, rtol=1e-5)
            assert float(h[~mask].abs().sum()) == 0.0
        assert got["hidden_states"][0] is None  # the embeddings output is not a target
    # a batch with one new text runs the teacher once more and keeps every row
    targets([0, 8])
    assert len(calls) == 3 and cache.n_filled == 9
    assert (cache.hits, cache.misses) == (3 + 2 + 1, 9)


def test_cache_is_reused_and_refused_for_other_texts(tmp_path):
    teacher, ds = tiny_encoder(seed=1).eval(), texts()
    cache = open_cache(tmp_path, ds, teacher)
    inp = batch(ds, [0, 1])
    with torch.no_grad():
        out = teacher(**inp, output_hidden_states=True)
    cache.store([0, 1], sentence_embeddings(out, inp["attention_mask"], "mean"), out.hidden_states,
                inp["attention_mask"])
    again = open_cache(tmp_path, ds, teacher)  # a resumed run: the rows are there
    assert again.n_filled == 2
    np.testing.assert_array_equal(again.embedding[:2], cache.embedding[:2])
    with pytest.raises(ValueError, match="built for another run .*fingerprint"):
        open_cache(tmp_path, texts(seed=1), teacher)
    with pytest.raises(ValueError, match="layers"):  # the cache holds no hidden states of this loss's layers
        open_cache(tmp_path, ds, teacher, hidden_cfg(0.0))
    other = next(k for k in range(len(ds)) if len(ds[k]["input_ids"]) != len(ds[0]["input_ids"]))
    with pytest.raises(ValueError, match="tokens, the cache expects"):  # a row that is not this text
        cache.store([other], torch.zeros(1, 32), [h[:1] for h in out.hidden_states], inp["attention_mask"][:1])
    with pytest.raises(ValueError, match="attention maps"):
        open_cache(tmp_path, ds, teacher, DistillConfig(loss="embedding-mse", attention_weight=1.0), name="att")
    with pytest.raises(ValueError, match="pads on the left"):
        open_teacher_cache(tmp_path / "left", ds, SimpleNamespace(padding_side="left"), tiny_encoder(seed=5),
                           teacher, hidden_cfg(), "mean", "t")
    with pytest.raises(ValueError, match="positive token count"):
        TeacherCache(tmp_path / "bad", [3, 0], "f", 32, [], "mean", "t")


def test_loss_from_cached_targets_equals_uncached_without_padding(tmp_path):
    teacher, student, ds = tiny_encoder(seed=1).eval(), tiny_encoder(seed=2).eval(), texts()
    cache = open_cache(tmp_path, ds, teacher)
    same_len = [i for i in range(len(ds)) if len(ds[i]["input_ids"]) == len(ds[0]["input_ids"])]
    loss = EmbeddingDistillationLoss(hidden_cfg(), {0: 0, 1: 1}, "mean")
    for rows, padded in ((same_len[:3], False), ([0, 1, 2, 3], True)):
        inp = batch(ds, rows)
        with torch.no_grad():
            t_out = teacher(**inp, output_hidden_states=True)
            s_out = student(**inp, output_hidden_states=True)
            cached = cache.targets(rows, inp, lambda o=t_out: o,
                                   lambda o, m=inp["attention_mask"]: sentence_embeddings(o, m, "mean"))
        ref, ref_parts = loss(s_out, t_out, inp)
        got, parts = loss(s_out, cached, inp)
        torch.testing.assert_close(parts["kd"], ref_parts["kd"], atol=1e-6, rtol=1e-5)
        if not padded:  # the same numbers: no padded position for the two to differ on
            torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-5)
        else:  # padded: the cached hidden term is the mean over real tokens only
            m = inp["attention_mask"].bool()
            want = torch.stack([((s_out.hidden_states[i][m] - t_out.hidden_states[i][m]) ** 2).mean()
                                for i in (1, 2)]).mean()
            torch.testing.assert_close(parts["hidden"], want, atol=1e-6, rtol=1e-5)


def test_trainer_runs_the_teacher_once_per_text_with_length_grouping(tmp_path, tok):
    from transformers import DataCollatorWithPadding

    teacher, student, ds = tiny_encoder(seed=1), tiny_encoder(seed=2), texts(40)
    cfg = hidden_cfg()
    cache = open_cache(tmp_path, ds, teacher, cfg)
    seen: list[list[int]] = []
    inner = cache.targets
    cache.targets = lambda idx, *a: (seen.append(list(idx)), inner(idx, *a))[1]
    fc = FastConfig(sparsity=0.25, block="4x1", end_step=0.5, frequency=1, distill=cfg.to_dict())
    args = train_args(tmp_path / "out", max_steps=10, train_sampling_strategy="group_by_length")  # 2 epochs of 5
    ft = FastTrainer(model=student, teacher=teacher, args=args, fast_config=fc, teacher_cache=cache,
                     train_dataset=ds.add_column(INDEX_COLUMN, list(range(len(ds)))),
                     data_collator=DataCollatorWithPadding(tok))
    ft.train()
    assert len(seen) == 10
    for epoch in (seen[:5], seen[5:]):  # every text exactly once per epoch
        assert sorted(k for b in epoch for k in b) == list(range(len(ds)))
    assert cache.n_filled == len(ds) and (cache.misses, cache.hits) == (len(ds), len(ds))
    logged = [e for e in ft.state.log_history if "distill/hidden" in e and "loss" in e]
    assert len(logged) == 2 and all(np.isfinite(e["loss"]) and e["distill/hidden"] > 0 for e in logged)


def test_trainer_refuses_a_cache_without_an_embedding_teacher(tmp_path):
    ds = texts(8)
    cache = open_cache(tmp_path, ds, tiny_encoder(seed=1), hidden_cfg(0.0))
    with pytest.raises(ValueError, match="teacher_cache keeps"):
        FastTrainer(model=tiny_encoder(seed=2), args=train_args(tmp_path / "o"), teacher_cache=cache,
                    fast_config=FastConfig(sparsity=0.25, block="4x1"), train_dataset=ds)
