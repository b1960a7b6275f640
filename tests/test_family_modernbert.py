"""ModernBERT in the native engine (issue 21): pre-LN without biases, the fused Wqkv with rotary q / k (a theta per
layer type), GeGLU in Wi, sliding-window attention in the local layers and global attention every n-th layer, built
from the PyTorch model (runtime/torch_engine.py) and checked against transformers' last_hidden_state on every ISA.

Random tiny models barely use their layers (init std 0.02: dropping the window or RoPE moves the output by ~1e-3 of
its range) and have flat attention, so the model here is initialised with std 0.1 and its q / k projections scaled by
4 (peaked attention): then each op moves the output by ~40% of its range, ~20x the engine's int8 error."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from hf_fast import native
from hf_fast.native import ffi, lib
from hf_fast.runtime.torch_engine import ModernBertEngine, calibrate

transformers = pytest.importorskip("transformers")

TOL = 0.05  # engine (int8 weights and activations) vs PyTorch fp32: max |diff| / max |ref| over real tokens


def tiny_modernbert(seed=0, max_pos=512, hidden=64, heads=4, layers=3, local_attention=8, qk_gain=4.0):
    cfg = transformers.ModernBertConfig(
        vocab_size=100, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=3 * hidden // 2, max_position_embeddings=max_pos, global_attn_every_n_layers=3,
        local_attention=local_attention, pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1,
        sep_token_id=2, attn_implementation="eager", initializer_range=0.1,
        global_rope_theta=160000.0, local_rope_theta=10000.0)
    torch.manual_seed(seed)
    m = transformers.ModernBertModel(cfg).eval()
    with torch.no_grad():
        for layer in m.layers:
            layer.attn.Wqkv.weight[: 2 * hidden] *= qk_gain  # peaked attention
    return m


def batch(b=3, s=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 100, (b, s), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 30:] = 0  # a right-padded row
    ids[1, 30:] = 0
    return ids, mask


@pytest.fixture(scope="module")
def model():
    return modernbert_case()


def modernbert_case():
    """(model, its calibration, ids, mask, PyTorch last_hidden_state) of the tiny ModernBERT on the test batch."""
    m = tiny_modernbert()
    types = m.config.layer_types
    # the paths under test: global layer 0, local layers 1-2 whose window (4 each side) is shorter than the sequence
    assert types == ["full_attention", "sliding_attention", "sliding_attention"] and m.config.sliding_window == 4
    ids, mask = batch()
    with torch.no_grad():
        ref = m(input_ids=ids, attention_mask=mask).last_hidden_state.numpy()
    return m, calibrate(m, [(ids, mask)]), ids.numpy(), mask.numpy(), ref


def rel_err(out, ref, mask):
    keep = mask.astype(bool)
    return float(np.abs(out - ref)[keep].max() / np.abs(ref[keep]).max())


@pytest.mark.parametrize("isa", native.BUILT_ISA_NAMES)
def test_modernbert_matches_pytorch(model, isa):
    m, quant, ids, mask, ref = model
    eng = ModernBertEngine(m, quant, isa=isa)
    assert eng.isa == isa and eng.windows == [0, 4, 4] and eng.rope_theta == [160000.0, 10000.0, 10000.0]
    out = eng.run(ids, mask)
    assert out.shape == ref.shape
    assert rel_err(out, ref, mask) < TOL
    # the ISAs agree far closer than the quantization error (only GELU's and exp's approximations differ)
    np.testing.assert_allclose(out, ModernBertEngine(m, quant, isa="ref").run(ids, mask), rtol=0, atol=2e-3)


@pytest.mark.parametrize("op", ["rotary", "window", "gate"])
def test_dropping_an_op_from_the_engine_breaks_parity(model, op):
    """Mutation test: the engine without RoPE (absolute zero positions), without the local window (global attention
    everywhere) or without the gate (GELU(a) alone) is far outside the tolerance the full engine meets."""
    m, quant, ids, mask, ref = model
    assert rel_err(ModernBertEngine(m, quant, leave_out=(op,)).run(ids, mask), ref, mask) > 4 * TOL


def test_sparse_modernbert_matches_pytorch_with_the_same_zeros(model):
    """4x1 blocks of Wqkv (3H rows) and Wi (2F rows) never straddle the q / k / v or gate / up split (H, F multiples
    of 4); the block-sparse kernels run the pruned model like PyTorch does."""
    m0, _, ids, mask, _ = model
    m = tiny_modernbert()
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for layer in m.layers:
            for lin in (layer.attn.Wqkv, layer.attn.Wo, layer.mlp.Wi, layer.mlp.Wo):
                n, k = lin.weight.shape
                keep = torch.from_numpy(rng.random((n // 4, k)) > 0.8).repeat_interleave(4, 0)  # 80% of 4x1 blocks
                lin.weight.mul_(keep)
        ref = m(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()
    quant = calibrate(m, [(torch.from_numpy(ids), torch.from_numpy(mask))])
    eng = ModernBertEngine(m, quant, block="4x1")
    dense = ModernBertEngine(m, quant, block="dense")
    assert eng.packed_bytes < 0.5 * dense.packed_bytes  # the zero blocks are skipped, not stored
    out = eng.run(ids, mask)
    assert rel_err(out, ref, mask) < TOL
    np.testing.assert_allclose(out, dense.run(ids, mask), rtol=0, atol=1e-5)  # exact int32 sums either way


def test_sequence_over_the_maximum_is_refused_naming_the_limit(model):
    m, quant, *_ = model
    eng = ModernBertEngine(m, quant)
    ids = np.full((1, 513), 5, np.int64)
    with pytest.raises(ValueError, match="513 exceeds the model's maximum of 512 positions"):
        eng.run(ids)
    out = np.empty(513 * 64, np.float32)  # the C engine refuses it too
    rc = lib.hf_engine_run(eng._e, 1, 513, ffi.cast("int64_t *", ids.ctypes.data), ffi.NULL, ffi.NULL,
                           ffi.cast("float *", out.ctypes.data), out.size)
    assert rc == lib.HF_EINVAL and "exceeds max positions 512" in ffi.string(lib.hf_last_error()).decode()
    with pytest.raises(ValueError, match="attention_mask has shape"):
        eng.run(ids[:, :10], np.ones((1, 9), np.int64))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        eng.run(np.full((1, 4), 100, np.int64))


def test_int8_attention_with_rotary_is_refused_by_name(model):
    """The int8 attention reads q / k quantized in the qkv epilogue, before RoPE could rotate them: a rotary engine
    refuses it by name instead of running attention on unrotated keys."""
    m, quant, *_ = model
    eng = ModernBertEngine(m, quant)
    H, F = 64, 96
    lins = [native.PackedLinear(np.zeros(shape, np.int8), 1.0, block="dense")
            for shape in ((3 * H, H), (H, H), (2 * F, H), (H, F))]
    g = np.ones(H, np.float32)
    d = ffi.new("hf_engine_layer_desc *")
    d.qkv, d.attn_out, d.ffn_in, d.ffn_out = (pl._l for pl in lins)
    d.qkv_scale = d.o_scale = d.i_scale = d.f_scale = 0.1
    d.att_scale = 0.25
    d.ln2_g = d.ln2_b = ffi.cast("float *", g.ctypes.data)
    d.ln2_eps = 1e-5
    assert lib.hf_engine_set_layer(eng._e, 1, d) == lib.HF_OK, ffi.string(lib.hf_last_error()).decode()
    d.attn_q = native.attn_quant_struct({n: (0.1, 128) for n in "qkpv"})
    assert lib.hf_engine_set_layer(eng._e, 1, d) == lib.HF_ENOTIMPL
    assert "op 'int8-attention'" in ffi.string(lib.hf_last_error()).decode()


# ModernBERT at seq 8192: the local layers' attention is O(S x window) and no buffer of the engine is S x S. One
# fp32 S x S score matrix would be 8192^2 * 4 = 256 MiB; the run's resident growth must stay under MEM_BOUND_MIB.
MEM_BOUND_MIB = 64

_LONG = textwrap.dedent("""
    import resource, sys, time
    import numpy as np, torch
    sys.path.insert(0, {tests!r})
    from test_family_modernbert import tiny_modernbert, batch
    from hf_fast.runtime.torch_engine import ModernBertEngine, calibrate
    m = tiny_modernbert(max_pos=8192, hidden=32, heads=2, layers=3, local_attention=128)
    ids, mask = batch(b=2, s=64)
    eng = ModernBertEngine(m, calibrate(m, [(ids, mask)]))
    eng.run(np.full((1, 64), 5, np.int64))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ids = np.random.default_rng(0).integers(3, 100, (1, 8192))
    t = time.perf_counter()
    out = eng.run(ids)
    dt = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert out.shape == (1, 8192, 32) and np.isfinite(out).all()
    print((after - before) / 1024.0, dt)
""")


def test_seq_8192_runs_without_a_seq_by_seq_buffer():
    env = {**os.environ, "HF_FAST_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", _LONG.format(tests=os.path.dirname(__file__))], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    grown_mib, seconds = map(float, r.stdout.split()[-2:])
    assert grown_mib < MEM_BOUND_MIB, f"seq 8192 grew the resident set by {grown_mib:.1f} MiB"


# ---- pruning and export (models/modernbert.py: the four Linears of base_model.layers) ----
EXPORT_TASKS = ("text-classification", "question-answering", "token-classification", "feature-extraction")
AUTO = {"text-classification": "ModernBertForSequenceClassification",
        "question-answering": "ModernBertForQuestionAnswering",
        "token-classification": "ModernBertForTokenClassification", "feature-extraction": "ModernBertModel"}


def tiny_task_model(task, vocab, seed=0):
    cfg = transformers.ModernBertConfig(
        vocab_size=vocab, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96,
        max_position_embeddings=512, global_attn_every_n_layers=3, local_attention=8, pad_token_id=0,
        bos_token_id=101, eos_token_id=102, cls_token_id=101, sep_token_id=102, attn_implementation="eager",
        initializer_range=0.1, num_labels=2 if task == "question-answering" else 3)
    torch.manual_seed(seed)
    return getattr(transformers, AUTO[task])(cfg).eval()


def test_prunable_linears_include_the_fused_wqkv_and_wi():
    from hf_fast.training.masks import check_blocks_divide, find_prunable_linears

    m = tiny_task_model("text-classification", 100)
    found = find_prunable_linears(m)
    assert list(found) == [f"model.layers.{i}.{n}" for i in range(3)
                           for n in ("attn.Wqkv", "attn.Wo", "mlp.Wi", "mlp.Wo")]
    check_blocks_divide(found, "32x32")  # 32 divides H = 64 and F = 96: no block straddles a split
    check_blocks_divide(found, "4x1")
    # 64-row blocks tile Wi's 192 rows but cut across its GELU-input / gate split at row 96
    with pytest.raises(ValueError, match="block 64x1 straddles the input / gate split of model.layers.0.mlp.Wi"):
        check_blocks_divide(found, "64x1")
    # 48-row blocks tile Wqkv's 192 rows but not its q / k / v parts of 64
    with pytest.raises(ValueError, match="straddles the q / k / v split of model.layers.0.attn.Wqkv"):
        check_blocks_divide({k: v for k, v in found.items() if k.endswith("Wqkv")}, "48x1")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tok):
    from _export_helpers import calibration_for

    from hf_fast.export import export

    root = tmp_path_factory.mktemp("modernbert")
    out = {}
    for task in EXPORT_TASKS:
        m = tiny_task_model(task, tok.vocab_size)
        if task == "text-classification":  # 80% of Wqkv / Wo / Wi / Wo's 4x1 blocks pruned: a sparse int8 artifact
            rng = np.random.default_rng(0)
            with torch.no_grad():
                for layer in m.model.layers:
                    for lin in (layer.attn.Wqkv, layer.attn.Wo, layer.mlp.Wi, layer.mlp.Wo):
                        n, k = lin.weight.shape
                        lin.weight.mul_(torch.from_numpy(rng.random((n // 4, k)) > 0.8).repeat_interleave(4, 0))
        cal = calibration_for("text-classification" if task == "feature-extraction" else task)
        out[task] = (export(m, tok, root / task, task=task, calibration_dataset=cal, progress=False), m)
    return out


@pytest.mark.parametrize("task", EXPORT_TASKS)
def test_export_runs_in_the_engine_and_matches_pytorch(exported, tok, task):
    """The int8 artifact (every encoder Linear int8; the pruned one with its zero blocks) runs in the native engine
    under backend="auto" (models/modernbert.py: the plan reads ModernBERT's graph) and matches PyTorch; ONNX Runtime
    runs the same file too."""
    import json
    import warnings

    from _export_helpers import SENTENCES, assert_matches_pytorch, encode

    from hf_fast.runtime.modeling import load_fast_model

    d, m = exported[task]
    fc = json.loads((d / "fast_config.json").read_text())
    assert fc["model_type"] == "modernbert" and fc["quantization"]["num_quantized_matmuls"] == 12
    if task == "text-classification":
        assert fc["sparsity"]["overall"] > 0.75
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning
        fm = load_fast_model(d)
    assert fm.backend.name == "native"
    enc = encode(tok, "question-answering" if task == "question-answering" else "text-classification", "modernbert",
                 SENTENCES[:8])
    assert_matches_pytorch(fm, m, enc, 0.10)
    assert_matches_pytorch(load_fast_model(d, backend="onnxruntime"), m, enc, 0.10)
