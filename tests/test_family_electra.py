"""ELECTRA (hf_fast/models/electra.py) end to end: export, FastTrainer pruning, runtime plan and native engine for the
three tasks, with embedding_size != hidden_size (the engine runs `embeddings_project`) and the GELU classification head.

Parity on one exported file per task: argmax agreement with ONNX Runtime >= 99.5% on real sentences, and the engine's
last_hidden_state / logits against PyTorch fp32 within a stated relative tolerance. Tiny random weights attend almost
uniformly, so the model here has peaked attention (q/k scaled: the mean top attention probability is ~0.5 against ~0.07
for the default init) and every encoder Linear and the projection at unit gain, so each layer and the projection move
the output. Mutation: the tests fail when the projection is dropped from the engine plan."""
import math

import numpy as np
import onnx
import pytest
import torch
from _export_helpers import calibration_for, encode, tiny_model
from _family_parity import (
    FAST,
    TASKS,
    argmax_agreement,
    logits_rel_errors,
    pruned_export_matches_onnxruntime,
    real_sentences,
)
from _family_parity import np_ as _np
from _family_parity import outputs as _outputs
from _family_parity import rel as _rel

import hf_fast
from hf_fast.runtime.engine import NativeEngine
from hf_fast.runtime.graph import GraphMatchError
from hf_fast.runtime.plan import build_plan

H, E, HEADS = 64, 32, 4  # embedding_size != hidden_size: the model has electra.embeddings_project
QK_GAIN = 2.0
# relative L2 error over the valid tokens of the int8 engine against PyTorch fp32 (measured: last_hidden_state
# 0.020; logits 0.013 (text-classification) to 0.034 (question-answering start_logits))
TOL_HIDDEN = 0.05
TOL_LOGITS = 0.08


def peaked_electra(task: str, vocab: int, seed: int = 0):
    m = tiny_model("electra", task, vocab, seed=seed, layers=2, hidden=H, heads=HEADS, ffn=2 * H, max_pos=64,
                   embedding_size=E)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, lin in m.named_modules():
            if isinstance(lin, torch.nn.Linear) and ("encoder." in name or "embeddings_project" in name):
                gain = QK_GAIN if name.endswith(("query", "key")) else 1.0
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * gain / math.sqrt(lin.in_features))
                lin.bias.copy_(0.1 * torch.randn(lin.out_features, generator=g))
    return m


@pytest.fixture(scope="module")
def sentences():
    return real_sentences()


@pytest.fixture(scope="module")
def electra(tmp_path_factory, tok, sentences):
    """{task: (PyTorch model, artifact folder)}, each exported once."""
    root = tmp_path_factory.mktemp("electra")
    out = {}
    for task in TASKS:
        m = peaked_electra(task, tok.vocab_size)
        assert m.config.embedding_size != m.config.hidden_size and hasattr(m.electra, "embeddings_project")
        out[task] = m, hf_fast.export(m, tok, root / task, calibration_dataset=calibration_for(task, sentences[:64]),
                                      progress=False)
    return out


def _feeds(tok, task, sentences):
    return {k: v.numpy() for k, v in encode(tok, task, "electra", sentences, max_length=64).items()}








def _hidden_plan(path, task="token-classification"):
    """The artifact's plan with the head dropped: the engine then returns last_hidden_state."""
    plan = build_plan(onnx.load(str(path / "model.onnx")), HEADS, "electra", task)
    plan.head, plan.outputs = [], {"last_hidden_state": (0, None)}
    return plan




@pytest.mark.parametrize("task", TASKS)
def test_engine_agrees_with_onnxruntime_on_the_same_file(electra, tok, sentences, task):
    _, path = electra[task]
    nat = FAST[task].from_pretrained(path, backend="native", pack_cache=False)
    ort = FAST[task].from_pretrained(path, backend="onnxruntime")
    assert nat.backend.name == "native" and nat.backend.engine.layer_desc.embeddings_project
    x = _feeds(tok, task, sentences)
    agree, n = argmax_agreement(task, nat(**x), ort(**x), x)
    assert n >= (200 if len(sentences) >= 200 else len(sentences))
    assert agree / n >= 0.995, f"{task}: argmax agreement {agree}/{n}"


@pytest.mark.parametrize("task", TASKS)
def test_engine_logits_match_pytorch(electra, tok, sentences, task):
    m, path = electra[task]
    nat = FAST[task].from_pretrained(path, backend="native", pack_cache=False)
    x = _feeds(tok, task, sentences[:32])
    for k, err in logits_rel_errors(task, nat(**x), m, x).items():
        assert err <= TOL_LOGITS, f"{task} {k}: relative error {err:.4f} > {TOL_LOGITS}"


def test_last_hidden_state_matches_pytorch(electra, tok, sentences):
    m, path = electra["token-classification"]
    x = _feeds(tok, "token-classification", sentences[:32])
    got = NativeEngine(_hidden_plan(path)).run(x["input_ids"], x["attention_mask"], x["token_type_ids"])
    with torch.no_grad():
        ref = m.electra(**{k: torch.from_numpy(v) for k, v in x.items()}).last_hidden_state.numpy()
    valid = x["attention_mask"].astype(bool)
    rel = _rel(got["last_hidden_state"][valid], ref[valid])
    assert rel <= TOL_HIDDEN, f"last_hidden_state: relative error {rel:.4f} > {TOL_HIDDEN}"


def test_dropping_the_embeddings_projection_is_caught(electra, tok, sentences):
    """Mutations of the engine plan: without the projection the engine refuses the E-wide tables; with the
    projection replaced by what an engine ignoring it would compute (the embeddings zero-padded to H) the output is
    far outside the parity tolerance; and a family that has no projection refuses the graph."""
    m, path = electra["token-classification"]
    x = _feeds(tok, "token-classification", sentences[:32])
    valid = x["attention_mask"].astype(bool)
    with torch.no_grad():
        ref = m.electra(**{k: torch.from_numpy(v) for k, v in x.items()}).last_hidden_state.numpy()[valid]

    plan = _hidden_plan(path)
    plan.embeddings.project_weight = plan.embeddings.project_bias = None
    with pytest.raises(GraphMatchError, match=f"word embedding table has shape .*{E}.*expected .*{H}"):
        NativeEngine(plan)

    plan = _hidden_plan(path)
    plan.embeddings.project_weight = np.eye(H, E, dtype=np.float32)
    plan.embeddings.project_bias = np.zeros(H, np.float32)
    got = NativeEngine(plan).run(x["input_ids"], x["attention_mask"], x["token_type_ids"])["last_hidden_state"]
    assert _rel(got[valid], ref) > 10 * TOL_HIDDEN

    with pytest.raises(GraphMatchError, match="BERT / MiniLM has no embeddings projection"):
        build_plan(onnx.load(str(path / "model.onnx")), HEADS, "bert", "token-classification")


def test_c_engine_refuses_embedding_tables_without_the_projection():
    """The C side checks it too (a plan that skipped check_plan): E != H without embed_proj is refused at create."""
    from hf_fast import native
    from hf_fast.models import registry
    from hf_fast.native import ffi, lib
    from hf_fast.runtime.engine import model_desc

    d, _ = model_desc(registry.get("electra").engine, hidden=H, heads=HEADS, ffn=2 * H, layers=1, vocab=10,
                      max_pos=8, embedding_size=E, embed_proj=False)
    with pytest.raises(ValueError, match=f"embedding_size {E} != hidden {H} needs the embeddings projection"):
        native._check(lib.hf_engine_create(d, ffi.new("hf_engine **")), "create")


def test_classification_head_is_gelu_not_the_pooler(electra, tok, sentences):
    """ElectraClassificationHead: [CLS] -> dense -> GELU -> out_proj; the GELU really runs (tanh in its place, as a
    BERT pooler would, changes the logits)."""
    _, path = electra["text-classification"]
    proto = onnx.load(str(path / "model.onnx"))
    plan = build_plan(proto, HEADS, "electra", "text-classification")
    assert [op.kind for op in plan.head] == ["cls", "linear", "gelu", "linear"]
    x = _feeds(tok, "text-classification", sentences[:32])
    ref = NativeEngine(plan).run(x["input_ids"], x["attention_mask"], x["token_type_ids"])["logits"]
    plan = build_plan(proto, HEADS, "electra", "text-classification")
    plan.head[2].kind = "tanh"
    got = NativeEngine(plan).run(x["input_ids"], x["attention_mask"], x["token_type_ids"])["logits"]
    assert _rel(got, ref) > 0.05


def test_fasttrainer_prunes_electra_and_the_engine_runs_the_pruned_export(tmp_path, tok, sentences):
    from test_training_helpers import ToyDataset, train_args

    from hf_fast.blocks import block_sparsity
    from hf_fast.training import FastConfig, FastTrainer

    model = peaked_electra("text-classification", tok.vocab_size, seed=1)
    tr = FastTrainer(model=model, args=train_args(tmp_path / "run", max_steps=12),
                     fast_config=FastConfig(sparsity=0.75, block="4x1", score="magnitude", scope="layer", end_step=8,
                                            frequency=1),
                     train_dataset=ToyDataset(32, vocab=tok.vocab_size))
    tr.train()
    pruned = tr.pruning_callback._layers
    # exactly the encoder Linears (6 per layer); the embeddings projection and the head stay dense
    assert sorted(pruned) == sorted(n for n, mod in model.named_modules() if ".encoder.layer." in n
                                    and isinstance(mod, torch.nn.Linear))
    assert len(pruned) == 12
    for name, mod in pruned.items():
        assert block_sparsity(mod.weight.detach(), "4x1") == pytest.approx(0.75), name
    assert (model.electra.embeddings_project.weight != 0).all() and (model.classifier.dense.weight != 0).all()
    pruned_export_matches_onnxruntime(model, tok, tmp_path / "art", sentences, _feeds, atol_of_range=1e-4)


def test_pack_cache_keeps_the_projection_and_explain_runs(electra, tok, sentences):
    """A second load restores the plan (projection and family included) from the pack cache: same logits."""
    _, path = electra["question-answering"]
    x = _feeds(tok, "question-answering", sentences[:16])
    first = FAST["question-answering"].from_pretrained(path, backend="native")
    second = FAST["question-answering"].from_pretrained(path, backend="native")
    assert first.backend.pack_cache in ("miss", "hit") and second.backend.pack_cache == "hit"
    assert second.backend.engine.plan.model_type == "electra" and second.backend.engine.layer_desc.embeddings_project
    a, b = first(**x), second(**x)
    for k in _outputs("question-answering"):
        assert np.array_equal(_np(getattr(a, k)), _np(getattr(b, k))), k
    assert len(second.explain(as_dict=True)["layers"]) == 2  # explain() reads the restored plan
