"""ModernBERT as a registry family (hf_fast/models/modernbert.py) end to end: FastTrainer prunes (fused Wqkv and
GeGLU Wi included) and distils a tiny ModernBERT for each task, save_fast exports it, and
FastModelFor*.from_pretrained runs the
artifact in the native engine (backend="auto"): the walker reads pre-LN, the fused qkv split, rotary (a theta per
layer), the local / global attention pattern, GeGLU, the final LayerNorm and the dense -> GELU -> LayerNorm head.

The model: global_attn_every_n_layers=2 (layers 0 and 2 global, layer 1 local), local_attention=8 (window 4 each
side) on real sentences of 10-60 tokens, and peaked attention (test_family_modernbert.tiny_modernbert's scaled q / k
rows), so that each op moves the outputs far beyond the int8 error. Parity: the engine against ONNX Runtime on the
same file (argmax agreement and logits) and against PyTorch fp32 (relative L2 error over the compared rows).
Mutation: the tests fail when rotary, the window or the gate is dropped from the plan's engine."""
import copy
import json

import numpy as np
import onnx
import pytest
import torch
from _export_helpers import calibration_for, encode
from _family_parity import FAST, argmax_agreement, logits_rel_errors, real_sentences, rel

from hf_fast.runtime.engine import NativeEngine

transformers = pytest.importorskip("transformers")

TASKS = ("text-classification", "question-answering", "token-classification", "feature-extraction")
AUTO = {"text-classification": "ModernBertForSequenceClassification",
        "question-answering": "ModernBertForQuestionAnswering",
        "token-classification": "ModernBertForTokenClassification", "feature-extraction": "ModernBertModel"}
H, HEADS, MAX_POS, QK_GAIN = 64, 4, 512, 4.0
# relative L2 error of the int8 engine against PyTorch fp32 over the compared rows. Measured on this model: logits
# 0.01-0.05, last_hidden_state 0.01. Dropping rotary / the window / the gate moves it by 0.27 / 0.20 / 0.34.
TOL_LOGITS = 0.10
TOL_HIDDEN = 0.05


def peaked_modernbert(task: str, vocab: int, seed: int = 0):
    cfg = transformers.ModernBertConfig(
        vocab_size=vocab, hidden_size=H, num_hidden_layers=3, num_attention_heads=HEADS, intermediate_size=96,
        max_position_embeddings=MAX_POS, global_attn_every_n_layers=2, local_attention=8, pad_token_id=0,
        bos_token_id=101, eos_token_id=102, cls_token_id=101, sep_token_id=102, attn_implementation="eager",
        initializer_range=0.1, num_labels=2 if task == "question-answering" else 3)
    torch.manual_seed(seed)
    m = getattr(transformers, AUTO[task])(cfg).eval()
    base = m if task == "feature-extraction" else m.model
    with torch.no_grad():
        for layer in base.layers:
            layer.attn.Wqkv.weight[: 2 * H] *= QK_GAIN  # peaked attention (q and k rows)
    return m


def _dataset(task, tok, sentences):
    """Tokenized training rows for the task's head: class labels, per-token labels or answer spans."""
    from datasets import Dataset

    n = len(sentences)
    if task == "question-answering":
        enc = tok(sentences, sentences[::-1], truncation=True, max_length=48, padding="max_length")
        lens = [sum(m) for m in enc["attention_mask"]]
        enc["start_positions"] = [1 + i % max(1, ln - 2) for i, ln in enumerate(lens)]
        enc["end_positions"] = [min(ln - 1, s + 2) for s, ln in zip(enc["start_positions"], lens, strict=True)]
    else:
        enc = tok(sentences, truncation=True, max_length=48, padding="max_length")
        if task == "token-classification":
            enc["labels"] = [[t % 3 if m else -100 for t, m in zip(ids, mask, strict=True)]
                             for ids, mask in zip(enc["input_ids"], enc["attention_mask"], strict=True)]
        else:
            enc["labels"] = [i % 3 for i in range(n)]
    enc.pop("token_type_ids", None)
    return Dataset.from_dict(dict(enc))


def _train(task, tok, sentences, out):
    """FastTrainer: 75% of the 4x1 blocks of every Wqkv / Wo / Wi / Wo pruned, distilled from the unpruned copy."""
    from test_training_helpers import train_args

    from hf_fast.training import FastConfig, FastTrainer

    student = peaked_modernbert(task, tok.vocab_size)
    teacher = copy.deepcopy(student).eval()
    tr = FastTrainer(model=student, teacher=teacher, args=train_args(out, max_steps=6, learning_rate=3e-4),
                     train_dataset=_dataset(task, tok, sentences[:48]), processing_class=tok,
                     fast_config=FastConfig(sparsity=0.75, block="4x1", score="magnitude", scope="layer", end_step=4,
                                            frequency=1))
    tr.train()
    return tr


@pytest.fixture(scope="module")
def sentences():
    return real_sentences()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tok, sentences):
    """{task: (trained PyTorch model, save_fast folder, trainer)}: FastTrainer per head task; feature-extraction is the
    pruned encoder of the text classifier (model.model) saved bare."""
    import hf_fast

    root = tmp_path_factory.mktemp("modernbert_fast")
    out = {}
    for task in TASKS[:3]:
        tr = _train(task, tok, sentences, root / f"run-{task}")
        m = tr.model.eval()
        out[task] = m, hf_fast.save_fast(m, tok, root / task, calibration_for(task, sentences[:64]), progress=False), tr
    enc = out["text-classification"][0].model
    out["feature-extraction"] = enc, hf_fast.save_fast(enc, tok, root / "feature-extraction",
                                                       calibration_for("feature-extraction", sentences[:64]),
                                                       task="feature-extraction", progress=False), None
    return out


@pytest.fixture(scope="module")
def peaked(tmp_path_factory, tok, sentences):
    """(PyTorch encoder, artifact) of the peaked model unpruned: 75% pruning leaves the trained students' attention
    nearly flat, where positions barely matter (dropping rotary moved them by 0.2%), so the mutation tests run here."""
    import hf_fast

    m = peaked_modernbert("feature-extraction", tok.vocab_size)
    return m, hf_fast.export(m, tok, tmp_path_factory.mktemp("modernbert_peaked") / "fe",
                             calibration_dataset=calibration_for("feature-extraction", sentences[:64]), progress=False)


def _feeds(tok, task, sentences, max_length=64):
    return {k: v.numpy() for k, v in encode(tok, task, "modernbert", sentences, max_length=max_length).items()}


def _plan_engine(path, task, leave_out=(), **kw):
    fc = json.loads((path / "fast_config.json").read_text())
    return NativeEngine.from_onnx(onnx.load(str(path / "model.onnx")), fc["num_heads"], model_type="modernbert",
                                  task=task, max_positions=fc["max_sequence_length"], leave_out=leave_out, **kw)


def test_fasttrainer_prunes_the_fused_linears(trained):
    """Exactly the four Linears of every layer are pruned (fused Wqkv and Wi included, 4-row blocks inside each of
    their parts); the heads stay dense; the artifact records the family and its sparsity."""
    from hf_fast.blocks import block_sparsity

    m, path, tr = trained["text-classification"]
    pruned = tr.pruning_callback._layers
    assert sorted(pruned) == sorted(f"model.layers.{i}.{n}" for i in range(3)
                                    for n in ("attn.Wqkv", "attn.Wo", "mlp.Wi", "mlp.Wo"))
    for name, mod in pruned.items():
        assert block_sparsity(mod.weight.detach(), "4x1") == pytest.approx(0.75), name
    assert (m.head.dense.weight != 0).all() and (m.classifier.weight != 0).all()
    fc = json.loads((path / "fast_config.json").read_text())
    assert fc["model_type"] == "modernbert" and fc["sparsity"]["overall"] > 0.7
    assert fc["quantization"]["num_quantized_matmuls"] == 12


@pytest.mark.parametrize("task", TASKS)
def test_the_engine_runs_the_artifact_at_parity_with_onnxruntime(trained, tok, sentences, task):
    """backend="auto" picks the native engine (no fallback); explain() says so; the plan has the family's ops; the
    engine agrees with ONNX Runtime on the same file."""
    import warnings

    _, path, _ = trained[task]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback to ONNX Runtime would warn
        nat = (FAST[task] if task in FAST else _fe_model_cls()).from_pretrained(path, pack_cache=False)
    assert nat.backend.name == "native"
    info = nat.explain(as_dict=True)
    assert info["backend"] == "native", info
    assert [r["attention_window"] for r in info["layers"]] == [0, 4, 0]
    assert info["layers"][0]["linears"][0]["module"].endswith("layers.0.attn.Wqkv")
    eng = nat.backend.engine
    assert eng.windows == [0, 4, 0] and eng.rope_theta == [160000.0, 10000.0, 160000.0]
    assert eng.layer_desc.norm == "pre" and eng.layer_desc.activation == "geglu" and eng.plan.final_norm is not None
    assert eng.plan.layers[0].ln1 is None and eng.plan.layers[1].ln1 is not None
    assert any(c.block == "4x1" for c in eng.kernel_choices.values())  # the pruned Linears run sparse
    if task in ("text-classification", "question-answering", "token-classification"):
        assert [op.kind for op in eng.plan.head][-4:] == ["linear", "gelu", "layernorm", "linear"]
    ort = (FAST[task] if task in FAST else _fe_model_cls()).from_pretrained(path, backend="onnxruntime")
    x = _feeds(tok, task, sentences[:96])
    assert x["attention_mask"].sum(1).max() > 9  # longer than a local window (4 each side)
    a, b = nat(**x), ort(**x)
    if task == "feature-extraction":
        valid = x["attention_mask"].astype(bool)
        got, want = np.asarray(a.last_hidden_state)[valid], np.asarray(b.last_hidden_state)[valid]
        assert rel(got, want) < 0.01, rel(got, want)
        return
    agree, n = argmax_agreement(task, a, b, x)
    assert agree / n >= 0.99, f"{task}: argmax agreement {agree}/{n}"
    for k in nat.output_names:
        ga, gb = np.asarray(getattr(a, k)), np.asarray(getattr(b, k))
        if ga.shape[:2] == x["attention_mask"].shape:
            ga, gb = ga[x["attention_mask"].astype(bool)], gb[x["attention_mask"].astype(bool)]
        assert rel(ga, gb) < 0.02, (k, rel(ga, gb))


def _fe_model_cls():
    from hf_fast.runtime.modeling import FastModelForFeatureExtraction

    return FastModelForFeatureExtraction


def _hidden(m, x):
    with torch.no_grad():
        return m(**{k: torch.from_numpy(v) for k, v in x.items()}).last_hidden_state.numpy()


@pytest.mark.parametrize("task", TASKS)
def test_the_engine_matches_pytorch(trained, tok, sentences, task):
    m, path, _ = trained[task]
    x = _feeds(tok, task, sentences[:32])
    if task == "feature-extraction":
        got = _plan_engine(path, task).run(x["input_ids"], x["attention_mask"])["last_hidden_state"]
        valid = x["attention_mask"].astype(bool)
        err = rel(got[valid], _hidden(m, x)[valid])
        assert err <= TOL_HIDDEN, f"last_hidden_state: relative error {err:.4f} > {TOL_HIDDEN}"
        return
    nat = FAST[task].from_pretrained(path, pack_cache=False)
    for k, err in logits_rel_errors(task, nat(**x), m, x).items():
        assert err <= TOL_LOGITS, f"{task} {k}: relative error {err:.4f} > {TOL_LOGITS}"


@pytest.mark.parametrize("op", ["rotary", "window", "gate"])
def test_dropping_an_op_from_the_plan_breaks_parity(peaked, tok, sentences, op):
    """Mutation: the plan's engine without rotary (no positions), the window (global attention in layer 1) or the gate
    (GELU(a) alone) is far outside the tolerance the full plan meets, against PyTorch and against the full plan."""
    m, path = peaked
    x = _feeds(tok, "feature-extraction", sentences[:32])
    valid = x["attention_mask"].astype(bool)
    ref = _hidden(m, x)[valid]
    full = _plan_engine(path, "feature-extraction").run(x["input_ids"], x["attention_mask"])["last_hidden_state"]
    cut = _plan_engine(path, "feature-extraction", leave_out=(op,)).run(x["input_ids"],
                                                                          x["attention_mask"])["last_hidden_state"]
    err = rel(full[valid], ref)
    assert err <= TOL_HIDDEN
    # the parity tolerance catches the mutation with room to spare: measured full 0.010; without rotary 0.27, the
    # window 0.20 (one local layer of three), the gate 0.34
    assert rel(cut[valid], ref) > max(3 * TOL_HIDDEN, 5 * err), (op, rel(cut[valid], ref), err)
    assert rel(cut[valid], full[valid]) > 3 * TOL_HIDDEN


def test_bf16_attention_runs_the_artifact_with_its_window(peaked, tok, sentences):
    """attention="bf16" on the artifact: rotary q / k, the local layer on the bf16 sliding-window kernel, the global
    ones on the bf16 kernel; within the parity tolerance of PyTorch, nonzero and < TOL_HIDDEN / 2 (relative L2) from the
    fp32-attention engine, on the reference ISA and the AVX-512 BF16 kernels where the CPU has them; without the window
    (global attention in layer 1) far outside, as with fp32"""
    from hf_fast import native

    m, path = peaked
    x = _feeds(tok, "feature-extraction", sentences[:32])
    valid = x["attention_mask"].astype(bool)
    ref = _hidden(m, x)[valid]
    run = lambda e: e.run(x["input_ids"], x["attention_mask"])["last_hidden_state"][valid]  # noqa: E731
    for isa in ["ref"] + (["avx512vnni"] if native.bf16_attention_hardware(16) else []):
        eng = _plan_engine(path, "feature-extraction", isa=isa, attention="bf16")
        assert eng.attention == "bf16"
        got, fp32 = run(eng), run(_plan_engine(path, "feature-extraction", isa=isa))
        assert rel(got, ref) <= TOL_HIDDEN
        assert 0 < rel(got, fp32) < TOL_HIDDEN / 2, rel(got, fp32)
    cut = run(_plan_engine(path, "feature-extraction", leave_out=("window",), isa="ref", attention="bf16"))
    assert rel(cut, ref) > 3 * TOL_HIDDEN


def test_packed_batches_rotate_each_row_by_its_own_position(trained, tok, sentences):
    """Regression: a packed (ragged) batch rotated every sequence with the table of the longest one (the cos / sin
    halves of a [cos S][sin S] table read at the wrong offset for a shorter row) and from position 0 for left-padded
    rows. Packed and padded runs now agree, right- and left-padded, for token outputs and a CLS head."""
    _, path, _ = trained["feature-extraction"]
    eng = _plan_engine(path, "feature-extraction")
    x = _feeds(tok, "feature-extraction", sentences[:16])
    ids, mask = x["input_ids"], x["attention_mask"]
    assert len(set(mask.sum(1))) > 2
    right_pad = eng.run(ids, mask, ragged=False)["last_hidden_state"]
    packed = eng.run(ids, mask, ragged=True)["last_hidden_state"]
    valid = mask.astype(bool)
    np.testing.assert_allclose(packed[valid], right_pad[valid], rtol=0, atol=1e-4)
    # left padding: the same real tokens at positions pad..S-1 in both layouts
    n = mask.sum(1)
    lids, lmask = np.zeros_like(ids), np.zeros_like(mask)
    for b in range(len(ids)):
        lids[b, ids.shape[1] - n[b]:], lmask[b, ids.shape[1] - n[b]:] = ids[b, :n[b]], 1
    left = eng.run(lids, lmask, ragged=False)["last_hidden_state"]
    left_packed = eng.run(lids, lmask, ragged=True)["last_hidden_state"]
    np.testing.assert_allclose(left_packed[lmask.astype(bool)], left[lmask.astype(bool)], rtol=0, atol=1e-4)
    cls_model = FAST["text-classification"].from_pretrained(trained["text-classification"][1], pack_cache=False)
    e2 = cls_model.backend.engine
    np.testing.assert_allclose(e2.run(ids, mask, ragged=True)["logits"], e2.run(ids, mask, ragged=False)["logits"],
                               rtol=0, atol=1e-4)


def test_pack_cache_restores_the_modernbert_plan(trained, tok, sentences):
    _, path, _ = trained["question-answering"]
    x = _feeds(tok, "question-answering", sentences[:8])
    first = FAST["question-answering"].from_pretrained(path)
    second = FAST["question-answering"].from_pretrained(path)
    assert second.backend.pack_cache == "hit" and second.backend.engine.windows == [0, 4, 0]
    for k in ("start_logits", "end_logits"):
        assert np.array_equal(np.asarray(getattr(first(**x), k)), np.asarray(getattr(second(**x), k))), k


def test_sequences_over_the_maximum_are_refused_naming_the_limit(trained):
    _, path, _ = trained["text-classification"]
    fm = FAST["text-classification"].from_pretrained(path, pack_cache=False)
    ids = np.full((1, MAX_POS + 1), 5, np.int64)
    with pytest.raises(ValueError, match=f"sequence length {MAX_POS + 1} exceeds the model's maximum of {MAX_POS} "
                                         "positions"):
        fm.backend.engine.run(ids, np.ones_like(ids))
    with pytest.raises(ValueError, match=f"{MAX_POS}"):
        fm(input_ids=ids, attention_mask=np.ones_like(ids))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        fm.backend.engine.run(np.full((1, 4), 10**6, np.int64))


@pytest.fixture(scope="module")
def peaked_classifier(tmp_path_factory, tok, sentences):
    import hf_fast

    m = peaked_modernbert("text-classification", tok.vocab_size)
    return m, hf_fast.export(m, tok, tmp_path_factory.mktemp("modernbert_cls") / "cls",
                             calibration_dataset=calibration_for("text-classification", sentences[:64]), progress=False)


def test_head_layernorm_runs_alike_on_every_isa_and_refuses_bad_input(peaked_classifier, tok, sentences):
    """The head's LayerNorm op (hf_engine_add_head_layernorm) runs the engine's LayerNorm kernel of each ISA: logits
    agree with the scalar reference's far inside the int8 error, and match PyTorch; bad arguments are refused."""
    from hf_fast import native
    from hf_fast.native import ffi, lib

    m, path = peaked_classifier
    x = _feeds(tok, "text-classification", sentences[:32])
    fc = json.loads((path / "fast_config.json").read_text())

    def run(isa):
        eng = NativeEngine.from_onnx(onnx.load(str(path / "model.onnx")), fc["num_heads"], isa=isa,
                                     model_type="modernbert", task="text-classification", max_positions=MAX_POS)
        return eng, eng.run(x["input_ids"], x["attention_mask"])["logits"]

    eng0, ref = run("ref")
    with torch.no_grad():
        pt = m(**{k: torch.from_numpy(v) for k, v in x.items()}).logits.numpy()
    assert rel(ref, pt) <= TOL_LOGITS
    for isa in (i for i in native.BUILT_ISA_NAMES if i not in ("auto", "ref")):
        _, got = run(isa)
        np.testing.assert_allclose(got, ref, rtol=0, atol=2e-3 * max(1.0, float(np.abs(ref).max())))
    g = np.ones(H, np.float32)
    p = ffi.cast("float *", g.ctypes.data)
    assert lib.hf_engine_add_head_layernorm(eng0._e, p, ffi.NULL, 0.0) == lib.HF_EINVAL
    assert "eps must be > 0" in ffi.string(lib.hf_last_error()).decode()
    assert lib.hf_engine_add_head_layernorm(eng0._e, ffi.NULL, p, 1e-5) == lib.HF_EINVAL


def test_int8_attention_is_refused_at_export_and_auto_keeps_fp32(tmp_path, tok, sentences):
    """The engine cannot run int8 attention in pre-LN / rotary layers (it would quantize q and k before rotating them):
    quantize_attention=True is refused by name before any work instead of writing a file the engine then refuses, and
    "auto" (int8 only where safe) warns and writes the default export, which the engine runs."""
    import hf_fast

    m = peaked_modernbert("feature-extraction", tok.vocab_size)
    cal = calibration_for("feature-extraction", sentences[:16])
    with pytest.raises(ValueError, match="pre-LN / rotary"):
        hf_fast.export(m, tok, tmp_path / "q8", calibration_dataset=cal, progress=False, quantize_attention=True)
    assert not (tmp_path / "q8").exists()
    with pytest.warns(UserWarning, match="every layer keeps fp32 attention"):
        out = hf_fast.export(m, tok, tmp_path / "auto", calibration_dataset=cal, progress=False,
                             quantize_attention="auto")
    fc = json.loads((out / "fast_config.json").read_text())
    assert not fc.get("quantize_attention")
    _plan_engine(out, "feature-extraction")  # the engine accepts the file
