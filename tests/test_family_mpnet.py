"""MPNet (hf_fast/models/mpnet.py) end to end: its relative-position attention bias in the C engine (bucketing, the
biased attention kernels against their scalar reference), export, FastTrainer pruning, runtime plan and native engine
for the three tasks.

Parity on one exported file per task: argmax agreement with ONNX Runtime >= 99.5% on real sentences, and the engine's
last_hidden_state / logits against PyTorch fp32 within a stated relative tolerance, on sequences longer than the
bucket range (max_distance 128) in one test. Tiny random weights attend almost uniformly (leaving MPNet's bias out
moves the default-init logits by ~2e-5), so the model here has peaked attention (q/k weights scaled) and a scaled bias
table. Mutation: the tests fail when the bias is dropped from the engine plan."""
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
from hf_fast import native
from hf_fast.runtime.engine import NativeEngine
from hf_fast.runtime.graph import GraphMatchError
from hf_fast.runtime.plan import build_plan

H, HEADS, MAX_POS = 64, 4, 320
QK_GAIN = 2.0
BIAS_GAIN = 3.0  # std of the relative bias table (default init: 0.02)
# relative L2 error over the valid tokens of the int8 engine against PyTorch fp32 (measured: last_hidden_state 0.032 on
# sentences, 0.036 on 276-token texts; logits 0.033 (token-classification) to 0.039 (question-answering start_logits)).
# PyTorch itself without the bias table moves the logits by 0.70 to 0.81 on this model.
TOL_HIDDEN = 0.05
TOL_LOGITS = 0.08
ISAS = [i for i in native.BUILT_ISA_NAMES if i != "auto"]


def peaked_mpnet(task: str, vocab: int, seed: int = 0):
    m = tiny_model("mpnet", task, vocab, seed=seed, layers=2, hidden=H, heads=HEADS, ffn=2 * H, max_pos=MAX_POS)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, lin in m.named_modules():
            if isinstance(lin, torch.nn.Linear) and "encoder." in name:
                gain = QK_GAIN if name.endswith(("attn.q", "attn.k")) else 1.0
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * gain / math.sqrt(lin.in_features))
                lin.bias.copy_(0.1 * torch.randn(lin.out_features, generator=g))
        rel = m.mpnet.encoder.relative_attention_bias.weight
        rel.copy_(BIAS_GAIN * torch.randn(rel.shape, generator=g))
    return m


@pytest.fixture(scope="module")
def sentences():
    return real_sentences()


@pytest.fixture(scope="module")
def mpnet(tmp_path_factory, tok, sentences):
    """{task: (PyTorch model, artifact folder)}, each exported once."""
    root = tmp_path_factory.mktemp("mpnet")
    out = {}
    for task in TASKS:
        m = peaked_mpnet(task, tok.vocab_size)
        out[task] = m, hf_fast.export(m, tok, root / task, calibration_dataset=calibration_for(task, sentences[:64]),
                                      progress=False)
    return out


def _feeds(tok, task, sentences, max_length=64):
    return {k: v.numpy() for k, v in encode(tok, task, "mpnet", sentences, max_length=max_length).items()}


def _long_texts(sentences, n=6, words=170):
    """n texts of consecutive sentences (cycling through the list), each grown to at least `words` words: 150 to 250
    tokens, longer than the bucket range (max_distance 128), whether the real data or the short fallback list."""
    out, k = [], 0
    for _ in range(n):
        parts: list[str] = []
        while sum(len(p.split()) for p in parts) < words:
            parts.append(sentences[k % len(sentences)])
            k += 1
        out.append(" ".join(parts))
    return out








def _hidden_plan(path, task="token-classification"):
    """The artifact's plan with the head dropped: the engine then returns last_hidden_state."""
    plan = build_plan(onnx.load(str(path / "model.onnx")), HEADS, "mpnet", task)
    plan.head, plan.outputs = [], {"last_hidden_state": (0, None)}
    return plan




# ------------------------------------------------------------------ the C op
def test_bucketing_matches_transformers_for_every_offset():
    """hf_relative_position_bias picks the bucket transformers' relative_position_bucket computes (fp32 log and a
    truncation: the boundaries at |offset| 16, 32, 64 are exact only in that arithmetic), for every offset up to 4096
    either way; a one-head table whose row b holds b reads the bucket back."""
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    s = 4096
    table = np.arange(32, dtype=np.float32).reshape(32, 1)
    got = native.relative_position_bias(s, table, 128)[0].astype(np.int64)  # index r + S - 1
    want = MPNetEncoder.relative_position_bucket(torch.arange(-(s - 1), s)).numpy()
    np.testing.assert_array_equal(got, want)
    assert set(np.unique(got)) == set(range(32)) - {16}  # 16 would be offset 0 looking right: that is bucket 0


def test_relative_bias_matches_mpnet_compute_position_bias():
    """[heads, 2S - 1] per offset == MPNetEncoder.compute_position_bias's [heads, S, S] at (i, j) -> j - i + S - 1, on
    S = 300 (past max_distance)."""
    from transformers import MPNetConfig
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    enc = MPNetEncoder(MPNetConfig(hidden_size=16, num_attention_heads=4, num_hidden_layers=1, intermediate_size=16))
    torch.nn.init.normal_(enc.relative_attention_bias.weight)
    s = 300
    with torch.no_grad():
        want = enc.compute_position_bias(torch.zeros(1, s, 16))[0].numpy()  # [heads, S, S]
    rel = native.relative_position_bias(s, enc.relative_attention_bias.weight.detach().numpy(), 128)
    i, j = np.meshgrid(np.arange(s), np.arange(s), indexing="ij")
    np.testing.assert_array_equal(rel[:, j - i + s - 1], want)


def _torch_attention(q, k, v, heads, rel, mask):
    s, hd = q.shape
    d = hd // heads
    qh, kh, vh = (torch.from_numpy(a).view(s, heads, d).transpose(0, 1) for a in (q, k, v))
    i, j = np.meshgrid(np.arange(s), np.arange(s), indexing="ij")
    bias = torch.from_numpy(rel[:, j - i + s - 1])
    scores = qh @ kh.transpose(1, 2) / math.sqrt(d) + bias
    if mask is not None:
        scores = scores + torch.from_numpy(np.where(mask.astype(bool), 0.0, -1e30).astype(np.float32))
    return (torch.softmax(scores, -1) @ vh).transpose(0, 1).reshape(s, hd).numpy()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("s,heads,d", [(1, 1, 8), (7, 2, 24), (17, 3, 40), (130, 2, 64), (45, 3, 16), (9, 2, 5),
                                       (23, 1, 16)])
@pytest.mark.parametrize("mask_kind", ["none", "right_pad", "holes", "all"])
def test_biased_attention_kernel_matches_reference_and_torch(isa, s, heads, d, mask_kind):
    """The AVX2 / AVX-512 biased kernels against the scalar reference on odd shapes (tails of the 6/12-row and
    16/32-key blocks, d % 16 == 8, head sizes the SIMD kernels hand to the reference) and masks (right-padded keys are
    skipped), with the tolerances of the unbiased kernels (tests/test_native_f32_ops.py); the reference against
    torch."""
    rng = np.random.default_rng(s * 31 + d + len(mask_kind))
    q, k, v = (rng.standard_normal((s, heads * d), dtype=np.float32) * 2 for _ in range(3))
    rel = native.relative_position_bias(s, rng.standard_normal((32, heads), dtype=np.float32) * 3, 128)
    mask = {"none": None,
            "right_pad": (np.arange(s) < max(1, (2 * s) // 3)).astype(np.int64),
            "holes": (rng.random(s) > 0.4).astype(np.int64),
            "all": np.zeros(s, np.int64)}[mask_kind]
    out = native.attention_relbias(q, k, v, heads, rel, mask=mask, isa=isa)
    ref = native.attention_relbias(q, k, v, heads, rel, mask=mask, isa="ref")
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=2e-5)
    if mask is None or mask.any():
        np.testing.assert_allclose(ref, _torch_attention(q, k, v, heads, rel, mask), rtol=2e-4, atol=2e-5)
    if s > 1 and (mask is None or mask.sum() > 1):  # the bias really enters: without it the result differs
        assert np.abs(native.attention(q, k, v, heads, mask=mask, isa=isa) - out).max() > 1e-3
    # a zero bias is the unbiased kernel bit for bit ((s * scale + 0) + mask)
    zero = native.attention_relbias(q, k, v, heads, np.zeros_like(rel), mask=mask, isa=isa)
    assert np.array_equal(zero, native.attention(q, k, v, heads, mask=mask, isa=isa))


def test_relative_bias_bad_input():
    with pytest.raises(ValueError, match="buckets"):
        native.relative_position_bias(8, np.zeros((32, 2), np.float32), 8)  # max_distance <= buckets / 4
    q = np.zeros((5, 8), np.float32)
    with pytest.raises(ValueError, match=r"rel must have shape \(2, 9\)"):
        native.attention_relbias(q, q, q, 2, np.zeros((2, 5), np.float32))


# ------------------------------------------------------------------ the family end to end
@pytest.mark.parametrize("task", TASKS)
def test_engine_agrees_with_onnxruntime_on_the_same_file(mpnet, tok, sentences, task):
    _, path = mpnet[task]
    nat = FAST[task].from_pretrained(path, backend="native", pack_cache=False)
    ort = FAST[task].from_pretrained(path, backend="onnxruntime")
    assert nat.backend.name == "native" and nat.backend.engine.layer_desc.attention_bias == "relative"
    assert nat.backend.engine.plan.attention_bias.table.shape == (32, HEADS)
    x = _feeds(tok, task, sentences)
    agree, n = argmax_agreement(task, nat(**x), ort(**x), x)
    assert n >= (200 if len(sentences) >= 200 else len(sentences))
    assert agree / n >= 0.995, f"{task}: argmax agreement {agree}/{n}"


@pytest.mark.parametrize("task", TASKS)
def test_engine_logits_match_pytorch(mpnet, tok, sentences, task):
    m, path = mpnet[task]
    nat = FAST[task].from_pretrained(path, backend="native", pack_cache=False)
    x = _feeds(tok, task, sentences[:32])
    for k, err in logits_rel_errors(task, nat(**x), m, x).items():
        assert err <= TOL_LOGITS, f"{task} {k}: relative error {err:.4f} > {TOL_LOGITS}"


def _hidden(m, x):
    with torch.no_grad():
        return m.mpnet(**{k: torch.from_numpy(v) for k, v in x.items()}).last_hidden_state.numpy()


@pytest.mark.parametrize("long", [False, True])
def test_last_hidden_state_matches_pytorch(mpnet, tok, sentences, long):
    """Short sentences, and texts of 150-250 tokens: offsets past max_distance share the last buckets."""
    m, path = mpnet["token-classification"]
    texts = _long_texts(sentences) if long else sentences[:32]
    x = _feeds(tok, "token-classification", texts, max_length=MAX_POS if long else 64)
    if long:
        assert x["input_ids"].shape[1] > 150 and x["attention_mask"].sum(1).min() > 128
    got = NativeEngine(_hidden_plan(path)).run(x["input_ids"], x["attention_mask"])["last_hidden_state"]
    valid = x["attention_mask"].astype(bool)
    rel = _rel(got[valid], _hidden(m, x)[valid])
    assert rel <= TOL_HIDDEN, f"last_hidden_state: relative error {rel:.4f} > {TOL_HIDDEN}"


def test_dropping_the_relative_bias_is_caught(mpnet, tok, sentences):
    """Mutations of the engine plan: the bias table zeroed (what an engine ignoring the bias computes) puts
    last_hidden_state far outside the parity tolerance, on short and long sequences; a plan without the bias is
    refused for the MPNet engine layer; BERT's layer pattern (an artifact of unknown model type) refuses the graph's
    bias Add by name."""
    m, path = mpnet["token-classification"]
    for texts, max_length in ((sentences[:32], 64), (_long_texts(sentences), MAX_POS)):
        x = _feeds(tok, "token-classification", texts, max_length=max_length)
        valid = x["attention_mask"].astype(bool)
        ref = _hidden(m, x)[valid]
        plan = _hidden_plan(path)
        plan.attention_bias.table = np.zeros_like(plan.attention_bias.table)
        got = NativeEngine(plan).run(x["input_ids"], x["attention_mask"])["last_hidden_state"][valid]
        assert _rel(got, ref) > 5 * TOL_HIDDEN, _rel(got, ref)

    plan = _hidden_plan(path)
    plan.attention_bias = None
    with pytest.raises(GraphMatchError, match="lacks a relative attention bias table"):
        NativeEngine(plan)
    with pytest.raises(GraphMatchError, match="adds a relative-position bias .* the post-LN encoder layer \\(BERT\\) "
                                              "has none"):  # an artifact without model_type: never run as BERT
        build_plan(onnx.load(str(path / "model.onnx")), HEADS, None, "token-classification")


def _q8_relbias_ref(q8, k8, v8, heads, mask, quant, rel):
    """The QDQ graph in numpy with the bias: exact integer products, (s * scale + rel) + mask, float64 softmax,
    probabilities rounded to uint8."""
    s, hd = q8.shape
    d = hd // heads
    (sq, zq), (sk, zk), (sp, zp), (sv, zv) = (quant[n] for n in "qkpv")
    bias = np.where(mask != 0, 0.0, -np.inf) if mask is not None else np.zeros(s)
    i, j = np.meshgrid(np.arange(s), np.arange(s), indexing="ij")
    out = np.empty((s, hd))
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        acc = (q8[:, sl].astype(np.int64) - zq) @ (k8[:, sl].astype(np.int64) - zk).T
        sc = acc * (np.float32(sq) * np.float32(sk)) / np.sqrt(d) + rel[h][j - i + s - 1] + bias
        e = np.exp(sc - sc.max(1, keepdims=True))
        p8 = np.clip(np.rint(e / e.sum(1, keepdims=True) / sp) + zp, 0, 255).astype(np.int64)
        out[:, sl] = ((p8 - zp) @ (v8[:, sl].astype(np.int64) - zv)) * (np.float32(sp) * np.float32(sv))
    return out


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("s,heads,d", [(1, 1, 16), (17, 3, 16), (130, 2, 64), (45, 2, 48), (9, 2, 8), (29, 1, 32)])
@pytest.mark.parametrize("masked", [False, True])
def test_biased_int8_attention_kernel_matches_reference_and_the_qdq_graph(isa, s, heads, d, masked):
    """The int8 attention (uint8 q, k, v: the engine's path) with the bias: AVX2 / AVX-512 VNNI against the scalar
    reference within the unbiased kernels' tolerance (tests/test_native_f32_ops.py: a probability may round the other
    way), the reference against the QDQ graph in numpy; a zero bias is the unbiased kernel bit for bit."""
    rng = np.random.default_rng(s * 7 + d)
    quant = {"q": (np.float32(0.03), 120), "k": (np.float32(0.03), 131), "v": (np.float32(0.02), 127),
             "p": (np.float32(1 / 255), 0)}
    q8, k8, v8 = (rng.integers(0, 256, (s, heads * d), dtype=np.uint8) for _ in range(3))
    rel = native.relative_position_bias(s, rng.standard_normal((32, heads), dtype=np.float32) * 3, 128)
    mask = (np.arange(s) < max(1, s - s // 3)).astype(np.int64) if masked else None
    out = native.attention_q8(q8, k8, v8, heads, quant, mask=mask, isa=isa, rel=rel)
    ref = native.attention_q8(q8, k8, v8, heads, quant, mask=mask, isa="ref", rel=rel)
    step = float(quant["p"][0]) * float(quant["v"][0]) * 255
    assert np.abs(out - ref).max() <= 2 * step
    assert np.mean(np.abs(out - ref) <= 1e-6 * (1 + np.abs(ref))) > 0.97
    assert np.abs(ref - _q8_relbias_ref(q8, k8, v8, heads, mask, quant, rel)).max() <= 2 * step
    zero = native.attention_q8(q8, k8, v8, heads, quant, mask=mask, isa=isa, rel=np.zeros_like(rel))
    assert np.array_equal(zero, native.attention_q8(q8, k8, v8, heads, quant, mask=mask, isa=isa))
    if s > 2 and (mask is None or mask.sum() > 2):
        assert np.abs(zero - out).max() > 4 * step  # the bias really enters


def test_fasttrainer_prunes_mpnet_and_the_engine_runs_the_pruned_export(tmp_path, tok, sentences):
    from test_training_helpers import ToyDataset, train_args

    from hf_fast.blocks import block_sparsity
    from hf_fast.training import FastConfig, FastTrainer

    model = peaked_mpnet("text-classification", tok.vocab_size, seed=1)
    table = model.mpnet.encoder.relative_attention_bias.weight.detach().clone()
    tr = FastTrainer(model=model, args=train_args(tmp_path / "run", max_steps=12),
                     fast_config=FastConfig(sparsity=0.75, block="4x1", score="magnitude", scope="layer", end_step=8,
                                            frequency=1),
                     train_dataset=ToyDataset(32, vocab=tok.vocab_size))
    tr.train()
    pruned = tr.pruning_callback._layers
    # exactly the encoder Linears (q, k, v, o, intermediate, output per layer); the head stays dense
    assert sorted(pruned) == sorted(n for n, mod in model.named_modules() if ".encoder.layer." in n
                                    and isinstance(mod, torch.nn.Linear))
    assert len(pruned) == 12 and any(n.endswith("attention.attn.o") for n in pruned)
    for name, mod in pruned.items():
        assert block_sparsity(mod.weight.detach(), "4x1") == pytest.approx(0.75), name
    assert (model.classifier.dense.weight != 0).all()
    assert not torch.equal(table, model.mpnet.encoder.relative_attention_bias.weight.detach())  # trained, not pruned
    pruned_export_matches_onnxruntime(model, tok, tmp_path / "art", sentences, _feeds, atol_of_range=2e-3)


def test_pack_cache_keeps_the_bias(mpnet, tok, sentences):
    """A second load restores the plan (bias table included) from the pack cache: same logits."""
    _, path = mpnet["question-answering"]
    x = _feeds(tok, "question-answering", sentences[:16])
    first = FAST["question-answering"].from_pretrained(path, backend="native")
    second = FAST["question-answering"].from_pretrained(path, backend="native")
    assert first.backend.pack_cache in ("miss", "hit") and second.backend.pack_cache == "hit"
    assert second.backend.engine.plan.attention_bias.table.shape == (32, HEADS)
    a, b = first(**x), second(**x)
    for k in _outputs("question-answering"):
        assert np.array_equal(_np(getattr(a, k)), _np(getattr(b, k))), k
    # explain() after a hit re-reads model.onnx for the kernel choices: with MPNet's layer pattern, not BERT's
    assert len(second.explain(as_dict=True)["layers"]) == 2


def test_int8_attention_export_runs_in_the_engine_at_parity(tmp_path, tok, sentences):
    """An MPNet artifact exported with quantize_attention (the walker finds the attention MatMuls behind the bias
    Add): the engine runs its int8 attention with the bias, at parity with ONNX Runtime on the same file, and the bias
    enters (zeroed, the logits move far away)."""
    m = peaked_mpnet("text-classification", tok.vocab_size, seed=2)
    path = hf_fast.export(m, tok, tmp_path / "q8", calibration_dataset=calibration_for("text-classification",
                                                                                         sentences[:64]),
                          progress=False, quantize_attention=True)
    nat = FAST["text-classification"].from_pretrained(path, backend="native", pack_cache=False)
    assert all(layer.attn_quant is not None for layer in nat.backend.engine.plan.layers)
    ort = FAST["text-classification"].from_pretrained(path, backend="onnxruntime")
    x = _feeds(tok, "text-classification", sentences)
    a, b = _np(nat(**x).logits), _np(ort(**x).logits)
    assert (a.argmax(-1) == b.argmax(-1)).mean() >= 0.995
    with torch.no_grad():
        ref = m(**{k: torch.from_numpy(v) for k, v in x.items()}).logits.numpy()
    assert _rel(a, ref) <= TOL_LOGITS, _rel(a, ref)
    plan = build_plan(onnx.load(str(path / "model.onnx")), HEADS, "mpnet", "text-classification")
    plan.attention_bias.table = np.zeros_like(plan.attention_bias.table)
    got = NativeEngine(plan).run(x["input_ids"], x["attention_mask"])["logits"]
    assert _rel(got, ref) > 5 * TOL_LOGITS
