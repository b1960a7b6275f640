"""Label-free sentence-embedding distillation (issue 19 item 3): FastTrainer with feature-extraction models and
distill.loss = embedding-*, the torch pooling against the numpy reference, the sentence-transformers folder the
students are written as, the text data of embedding recipes, PruningCallback inside SentenceTransformerTrainer, and
the validation messages. Tiny random BERTs: seconds."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from test_training_helpers import VOCAB, train_args

from hf_fast import _atomic
from hf_fast import pooling as pooling_mod
from hf_fast.training import DistillConfig, FastConfig, FastTrainer
from hf_fast.training.embed_distill import EmbeddingDistillationLoss, pool_torch, resolve_pooling


def tiny_encoder(seed: int = 0, hidden: int = 32, dropout: float = 0.0):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    return BertModel(BertConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=2 * hidden, max_position_embeddings=64,
                                hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout),
                     add_pooling_layer=False)


class TextIds(torch.utils.data.Dataset):
    """Token ids of 'sentences' of 4..16 tokens, right-padded to 16 (no labels: label-free distillation)."""

    def __init__(self, n: int = 64, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(5, VOCAB, (n, 16), generator=g)
        lens = torch.randint(4, 17, (n,), generator=g)
        self.mask = (torch.arange(16)[None] < lens[:, None]).long()
        self.ids = self.ids * self.mask

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i]}


def embeddings(model, ds, mode: str = "mean") -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        h = model(input_ids=ds.ids, attention_mask=ds.mask).last_hidden_state
    return torch.nn.functional.normalize(pool_torch(h, ds.mask, mode), dim=-1)


def mean_cos(a, b) -> float:
    return float((a * b).sum(-1).mean())


@pytest.mark.parametrize("mode", pooling_mod.POOLING_MODES)
def test_torch_pooling_matches_numpy_reference(mode):
    g = torch.Generator().manual_seed(3)
    h = torch.randn(3, 7, 5, generator=g)
    mask = torch.tensor([[1] * 7, [1, 1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0]])
    ref = pooling_mod.pool(h.numpy(), mask.numpy(), mode, normalize=False)
    np.testing.assert_allclose(pool_torch(h, mask, mode).numpy(), ref, rtol=1e-5, atol=1e-6)


def test_embedding_loss_values():
    s = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])  # second token is padding: left out by the mean
    t = torch.tensor([[[0.0, 2.0], [5.0, 5.0]]])
    inputs = {"attention_mask": torch.tensor([[1, 0]])}
    out = lambda h: {"last_hidden_state": h}  # noqa: E731  (a tiny model output)
    cos = EmbeddingDistillationLoss(DistillConfig(loss="embedding-cosine"))
    mse = EmbeddingDistillationLoss(DistillConfig(loss="embedding-mse"))
    both = EmbeddingDistillationLoss(DistillConfig(loss="embedding-mse+cosine"))
    # unit vectors (1, 0) and (0, 1): cos 0 -> 1 - cos = 1; MSE over the 2 dims = (1 + 1) / 2 = 1
    assert cos(out(s), out(t), inputs)[0].item() == pytest.approx(1.0)
    assert mse(out(s), out(t), inputs)[0].item() == pytest.approx(1.0)
    assert both(out(s), out(t), inputs)[0].item() == pytest.approx(2.0)
    # the padded token counts when there is no mask: the teacher's mean turns to (2.5, 3.5)
    assert cos(out(s), out(t), None)[0].item() == pytest.approx(1 - 2.5 / np.hypot(2.5, 3.5), rel=1e-5)


def test_relation_term_values_and_anchor_queue(monkeypatch):
    import hf_fast.training.embed_distill as ed

    monkeypatch.setattr(ed, "RELATION_ANCHORS", 3)
    out = lambda h: {"last_hidden_state": h[:, None, :]}  # noqa: E731  (one token a text: pooled = itself)
    g = torch.Generator().manual_seed(0)
    t = torch.nn.functional.normalize(torch.randn(2, 4, generator=g), dim=-1)
    rel = EmbeddingDistillationLoss(DistillConfig(loss="embedding-cosine", relation_weight=2.0,
                                                  relation_temperature=0.5))
    loss, parts = rel(out(t), out(t), None)  # the student is the teacher: both terms are 0
    assert loss.item() == pytest.approx(0.0, abs=1e-6) and parts["relation"].item() == pytest.approx(0.0, abs=1e-6)
    # a student that swaps the two texts: the anchors are the teacher's two embeddings (this batch) + the queue
    s = t.flip(0)
    loss, parts = rel(out(s), out(t), None)
    anchors = torch.cat([t, t])  # this batch, then the queue (the first batch's two)
    own = torch.tensor([[True, False, False, False], [False, True, False, False]])  # a text's own anchor is left out
    lp, lq = [torch.log_softmax((x @ anchors.T / 0.5).masked_fill(own, -1e4), -1) for x in (t, s)]
    kl = float((lp.exp() * (lp - lq)).sum(-1).mean())
    assert parts["relation"].item() == pytest.approx(kl, rel=1e-5) and kl > 0.01
    assert loss.item() == pytest.approx(parts["kd"].item() + 2.0 * kl, rel=1e-5)
    assert rel._anchors.shape == (3, 4)  # newest first, cut to RELATION_ANCHORS
    with torch.no_grad():  # an evaluation step scores against the queue but leaves it as it is
        rel(out(s[:1] * 0 + 1), out(t[:1]), None)
    assert rel._anchors.shape == (3, 4) and torch.equal(rel._anchors, torch.cat([t, t])[:3])
    plain = EmbeddingDistillationLoss(DistillConfig(loss="embedding-cosine"))
    assert "relation" not in plain(out(s), out(t), None)[1]


def test_trainer_prunes_to_target_and_moves_student_to_teacher(tmp_path):
    teacher = tiny_encoder(seed=1)
    student = tiny_encoder(seed=2)  # another random model: far from the teacher, so there is something to learn
    held_out = TextIds(48, seed=9)
    before = mean_cos(embeddings(student, held_out), embeddings(teacher, held_out))
    fc = FastConfig(sparsity=0.5, block="4x1", scope="layer", end_step=0.5, frequency=1,
                    distill={"loss": "embedding-cosine", "hidden_weight": 0.0})
    ft = FastTrainer(model=student, teacher=teacher, args=train_args(tmp_path, max_steps=24, logging_steps=4),
                     fast_config=fc, train_dataset=TextIds(192))
    ft.train()
    rep = ft.pruning_callback.sparsity_report()
    assert rep["sparsity"] == pytest.approx(0.5, abs=0.02)
    layers = dict(student.named_modules())
    for name in ft.pruning_callback.masks:  # every Linear at the target, in all-zero 4x1 blocks
        w = layers[name].weight.detach()
        blocks = w.reshape(w.shape[0] // 4, 4, w.shape[1]).abs().sum(1)
        assert float((blocks == 0).float().mean()) == pytest.approx(0.5, abs=0.05), name
    losses = [e["loss"] for e in ft.state.log_history if "loss" in e]
    assert losses[-1] < 0.7 * losses[0]
    after = mean_cos(embeddings(student, held_out), embeddings(teacher, held_out))
    assert after > before + 0.1, (before, after)
    assert student.config.hf_fast["sparsity_reached"] == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("term, weight", [("hidden", 1.0), ("relation", 0.5)])
def test_extra_terms_are_added_in_training(tmp_path, term, weight):
    teacher, student = tiny_encoder(seed=1), tiny_encoder(seed=2)
    fc = FastConfig(sparsity=0.25, block="4x1", distill={"loss": "embedding-mse", f"{term}_weight": weight})
    ft = FastTrainer(model=student, teacher=teacher, args=train_args(tmp_path, max_steps=3, logging_steps=1),
                     fast_config=fc, train_dataset=TextIds(48))
    ft.train()
    logged = [e for e in ft.state.log_history if f"distill/{term}" in e and "loss" in e]
    assert len(logged) == 3 and all(e[f"distill/{term}"] > 0 for e in logged)
    assert all(e["loss"] == pytest.approx(e["distill/kd"] + weight * e[f"distill/{term}"], rel=1e-3) for e in logged)


def test_writing_the_folder_keeps_what_else_it_holds(tmp_path, tok):
    """Rewriting a sentence-transformers folder replaces its own files only: a trainer's checkpoints and the user's
    files beside them survive (session 14 lost a run's checkpoints to a writer that swapped the whole folder)."""
    from hf_fast.training.run_embed import write_sentence_transformer_folder

    model = tiny_encoder(seed=4, hidden=32)
    model.resize_token_embeddings(tok.vocab_size)
    out = tmp_path / "st"
    (out / "trainer" / "checkpoint-20").mkdir(parents=True)
    (out / "trainer" / "checkpoint-20" / "optimizer.pt").write_bytes(b"state")
    (out / "notes.txt").write_text("mine")
    (out / "modules.json").write_text(json.dumps([{"idx": 2, "name": "2", "path": "2_Normalize", "type": "N"}]))
    (out / "2_Normalize").mkdir()  # the old model's module folder (its modules.json names it): dropped
    (out / "model.onnx").write_bytes(b"int8 graph of the old weights")  # would load silently beside the new ones
    (out / "fast_config.json").write_text("{}")
    write_sentence_transformer_folder(model, tok, out, {"mode": "mean", "normalize": False})
    assert not [n for n in ("2_Normalize", "model.onnx", "fast_config.json") if (out / n).exists()]
    assert (out / "trainer" / "checkpoint-20" / "optimizer.pt").read_bytes() == b"state"
    assert (out / "notes.txt").read_text() == "mine"
    assert [m["type"].rsplit(".", 1)[1] for m in json.loads((out / "modules.json").read_text())] == [
        "Transformer", "Pooling"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".st.")]  # no temporary folders left behind


def test_a_failed_rewrite_leaves_the_folder_whole(tmp_path, tok, monkeypatch):
    """A rewrite that fails while swapping the new folder in leaves the old folder as it was: the checkpoints and
    user files it keeps are linked into the new folder, not moved (moved ones were deleted with it)."""
    from hf_fast.training.run_embed import write_sentence_transformer_folder

    model = tiny_encoder(seed=4, hidden=32)
    model.resize_token_embeddings(tok.vocab_size)
    out = write_sentence_transformer_folder(model, tok, tmp_path / "st", {"mode": "mean", "normalize": False})
    (out / "checkpoint-20").mkdir()
    (out / "checkpoint-20" / "optimizer.pt").write_bytes(b"state")
    (out / "notes.txt").write_text("mine")
    before = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    real_rename, real_replace = os.rename, os.replace

    def fail_on_out(rename):
        def flaky(src, dst, **kw):
            if os.path.realpath(src) == os.path.realpath(out):
                raise OSError("simulated failure while swapping the folder")
            return rename(src, dst, **kw)
        return flaky

    monkeypatch.setattr(os, "rename", fail_on_out(real_rename))
    monkeypatch.setattr(os, "replace", fail_on_out(real_replace))
    monkeypatch.setattr(_atomic, "_exchange", lambda a, b: False)  # the two-rename swap, whose first rename fails
    with pytest.raises(OSError, match="simulated failure"):
        write_sentence_transformer_folder(model, tok, out, {"mode": "cls", "normalize": True})
    monkeypatch.undo()
    assert {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["st"]  # no temporary folders left behind


def test_pooling_comes_from_the_teacher_folder(tmp_path, tok):
    from hf_fast.training.run_embed import encode_torch, pooling_record, write_sentence_transformer_folder

    model = tiny_encoder(seed=4, hidden=32)
    model.resize_token_embeddings(tok.vocab_size)
    model.config.max_position_embeddings = 64
    folder = write_sentence_transformer_folder(model, tok, tmp_path / "st",
                                               {"mode": "cls", "normalize": True, "max_seq_length": 32})
    assert json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"] == 32
    assert pooling_record(folder) == {"mode": "cls", "normalize": True, "source": "1_Pooling/config.json",
                                      "max_seq_length": 32}
    from transformers import AutoModel

    loaded = AutoModel.from_pretrained(folder)
    assert resolve_pooling(DistillConfig(loss="embedding-cosine"), loaded, None) == "cls"
    assert resolve_pooling(DistillConfig(loss="embedding-cosine", pooling="max"), loaded, None) == "max"
    assert resolve_pooling(DistillConfig(loss="embedding-cosine"), tiny_encoder(), None) == "mean"
    st = pytest.importorskip("sentence_transformers")
    texts = ["a fine film", "the plot is thin but the cast is great", "no"]
    ref = st.SentenceTransformer(str(folder), device="cpu").encode(texts)
    ours = encode_torch(loaded, tok, texts, pooling_record(folder), max_length=32)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_pruning_callback_inside_sentence_transformer_trainer(tmp_path, tok):
    """The documented sentence-transformers route: MSELoss on the teacher's embeddings + PruningCallback."""
    st = pytest.importorskip("sentence_transformers")
    from datasets import Dataset

    try:
        from sentence_transformers.sentence_transformer.losses import MSELoss
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.losses import MSELoss

    from hf_fast.training import PruningCallback
    from hf_fast.training.run_embed import write_sentence_transformer_folder

    model = tiny_encoder(seed=5)
    model.resize_token_embeddings(tok.vocab_size)
    folder = write_sentence_transformer_folder(model, tok, tmp_path / "st", {"mode": "mean", "normalize": True})
    teacher = st.SentenceTransformer(str(folder), device="cpu")
    student = st.SentenceTransformer(str(folder), device="cpu")
    texts = [f"sentence number {i} about {w}" for i, w in enumerate(["films", "rivers", "songs", "cars"] * 8)]
    ds = Dataset.from_dict({"sentence": texts, "label": teacher.encode(texts).tolist()})
    args = st.SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "out"), max_steps=8,
                                                   per_device_train_batch_size=8, learning_rate=1e-3,
                                                   report_to="none", save_strategy="no", use_cpu=True,
                                                   disable_tqdm=True)
    cb = PruningCallback(FastConfig(sparsity=0.5, block="4x1", scope="layer", end_step=0.5, score="magnitude"))
    trainer = st.SentenceTransformerTrainer(model=student, args=args, train_dataset=ds,
                                            loss=MSELoss(student), callbacks=[cb])
    trainer.train()
    assert cb.sparsity_report()["sparsity"] == pytest.approx(0.5, abs=0.02)
    assert student[0].auto_model.config.hf_fast["sparsity_reached"] == pytest.approx(0.5, abs=0.02)


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize("kw, match", [
    ({"loss": "cosine"}, "distill.loss must be one of"),
    ({"loss": "embedding-cosine", "pooling": "weighted"}, "distill.pooling must be"),
    ({"pooling": "mean"}, "distill.pooling applies to the embedding losses"),
    ({"relation_weight": 1.0}, "distill.relation_weight ranks sentence embeddings"),
    ({"loss": "embedding-cosine", "relation_weight": -1}, "distill.relation_weight must be >= 0"),
    ({"loss": "embedding-cosine", "relation_temperature": 0}, "distill.relation_temperature must be > 0"),
])
def test_distill_config_rejects(kw, match):
    with pytest.raises(ValueError, match=match):
        DistillConfig(**kw)


def test_trainer_rejects_mismatched_models_and_losses(tmp_path):
    from test_training_helpers import tiny_bert

    args = train_args(tmp_path, max_steps=1)
    emb = FastConfig(sparsity=0.5, block="4x1", distill={"loss": "embedding-cosine"})
    with pytest.raises(ValueError, match="has a task head"):
        FastTrainer(model=tiny_bert(), teacher=tiny_bert(seed=1), args=args, fast_config=emb,
                    train_dataset=TextIds(8))
    with pytest.raises(ValueError, match="feature-extraction model .* distill.loss one of"):
        FastTrainer(model=tiny_encoder(), teacher=tiny_encoder(1), args=args,
                    fast_config=FastConfig(sparsity=0.5, block="4x1"), train_dataset=TextIds(8))
    with pytest.raises(ValueError, match="pass FastTrainer\\(teacher=...\\)"):
        FastTrainer(model=tiny_encoder(), args=args, fast_config=emb, train_dataset=TextIds(8))


def _recipe(tmp_path, task="feature-extraction", fmt="text", loss="embedding-cosine", **data):
    import yaml

    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump({"task": task, "model": {"student": "x"},
                                 "data": {"format": fmt, "rt_polarity": "rt", **data},
                                 "training_args": {"output_dir": "o", "use_cpu": True},
                                 "fast_config": {"block": "4x1", "distill": {"loss": loss}}}))
    return p


def test_recipe_validation(tmp_path):
    from hf_fast.training.recipe import load_recipe

    r = load_recipe(_recipe(tmp_path), base_dir=tmp_path, resolve_models=False)
    assert r.data["rt_polarity"] == str((tmp_path / "rt").resolve())
    with pytest.raises(ValueError, match="distils sentence embeddings"):
        load_recipe(_recipe(tmp_path, loss="kl"), base_dir=tmp_path, resolve_models=False)
    with pytest.raises(ValueError, match="format 'text' goes with task 'feature-extraction'"):
        load_recipe(_recipe(tmp_path, task="sequence-classification"), base_dir=tmp_path, resolve_models=False)
    with pytest.raises(ValueError, match="format 'text' goes with task 'feature-extraction'"):
        load_recipe(_recipe(tmp_path, fmt="rt-polarity"), base_dir=tmp_path, resolve_models=False)


def test_text_data(tmp_path, tok):
    from hf_fast.training.embed_data import embedding_texts, sentence_windows, split_sentences

    assert split_sentences("It rained. Then it stopped! Why? 3 dogs ran.") == \
        ["It rained.", "Then it stopped!", "Why?", "3 dogs ran."]
    assert sentence_windows(["a", "b", "c", "d"], [3, 3, 3, 9], 6) == ["a b", "c", "d"]
    rt = tmp_path / "rt"
    rt.mkdir()
    for name, word in (("rt-polarity.neg", "bad"), ("rt-polarity.pos", "good")):
        (rt / name).write_text("".join(f"{word} line {i}\n" for i in range(5)), encoding="latin-1")
    squad = tmp_path / "s.json"
    squad.write_text(json.dumps({"data": [{"paragraphs": [{
        "context": "The river is long. It flows north.", "qas": [{"question": "Where does it flow?"}]}]}]}))
    train, ev = embedding_texts({"format": "text", "squad_json": str(squad), "rt_polarity": str(rt),
                                 "eval_per_class": 2}, tok)
    assert ev == ["bad line 3", "bad line 4", "good line 3", "good line 4"]  # the last lines of each file
    assert not set(ev) & set(train)
    assert {"The river is long.", "It flows north.", "The river is long. It flows north.",
            "Where does it flow?", "bad line 0", "good line 2"} <= set(train)
    # windows of several sizes: each size packs its own windows (the whole paragraph fits the larger one)
    long = tmp_path / "long.json"
    sents = [f"Sentence number {w} is here." for w in ("one", "two", "three", "four", "five", "six")]
    long.write_text(json.dumps({"data": [{"paragraphs": [{"context": " ".join(sents), "qas": []}]}]}))
    n = [len(tok(x, add_special_tokens=False)["input_ids"]) for x in sents]
    small = max(n[0] + n[1], n[2] + n[3], n[4] + n[5]) + 2  # two sentences a window
    one, both = ({t for part in embedding_texts({"format": "text", "squad_json": str(long), "max_length": 128,
                                                 "window_tokens": w}, tok) for t in part}  # train + held out
                 for w in ([small], [small, 128]))
    assert " ".join(sents[:2]) in one and " ".join(sents) not in one
    assert both == one | {" ".join(sents)}
    for bad in ([256], [4], "128", [True]):
        with pytest.raises(ValueError, match="data.window_tokens must be"):
            embedding_texts({"format": "text", "squad_json": str(long), "window_tokens": bad}, tok)
    with pytest.raises(ValueError, match="names no text"):
        embedding_texts({"format": "text"}, tok)
    with pytest.raises(ValueError, match="unknown key"):
        embedding_texts({"format": "text", "rt_polarity": str(rt), "path": "x"}, tok)
    with pytest.raises(ValueError, match="not more than eval_per_class"):
        embedding_texts({"format": "text", "rt_polarity": str(rt), "eval_per_class": 5}, tok)
