"""A Linear packed for both kernels (hf_linear_set_alternative): calls of at least `rows` tokens run the block-sparse
packing, shorter ones the dense one, with the same outputs bit for bit; and the engine's use of it on AVX-512 VNNI,
where below 60% zero blocks the faster kernel depends on the call's length (SPARSE_FROM_TOKENS_BY_ISA)."""
import numpy as np
import pytest

from hf_fast import native

ISAS = native.BUILT_ISA_NAMES  # every ISA of this build: the ones this CPU lacks skip visibly (conftest.py)
ROWS = 32


def _weight(rng, n, k, zero=0.45):
    w = rng.integers(-128, 128, size=(n, k), dtype=np.int8)
    keep = rng.random((n // 4, k)) >= zero
    return w * np.repeat(keep, 4, 0).astype(np.int8)


def _pair(rng, n, k, isa, primary="4x1", geglu=False):
    """(the Linear with its alternative, its sparse packing alone, its dense packing alone)"""
    w = _weight(rng, n, k)
    s, b = rng.uniform(0.001, 0.01, n).astype(np.float32), rng.normal(0, 1, n).astype(np.float32)
    sp, dn = (native.PackedLinear(w, s, b, block=blk, isa=isa, geglu=geglu) for blk in ("4x1", "dense"))
    lin = native.PackedLinear(w, s, b, block=primary, isa=isa, geglu=geglu)
    lin.set_alternative(native.PackedLinear(w, s, b, block="dense" if primary == "4x1" else "4x1", isa=isa,
                                            geglu=geglu), ROWS)
    return lin, sp, dn


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("primary", ["4x1", "dense"])
def test_the_call_length_picks_the_kernel_and_the_outputs_stay_the_same(isa, primary):
    rng = np.random.default_rng(7)
    lin, sp, dn = _pair(rng, 96, 80, isa, primary)
    assert lin.sparse_rows == ROWS and lin.alternative is not None
    for m in (1, ROWS - 1, ROWS, 100):
        assert lin.runs_sparse(m) == (m >= ROWS)  # fails if the alternative is ignored, for either primary
        a = rng.integers(0, 256, (m, 80), dtype=np.uint8)
        res = rng.normal(0, 1, (m, 96)).astype(np.float32)
        want = sp.forward(a, 0.05, 9, gelu=True, residual=res)
        np.testing.assert_array_equal(dn.forward(a, 0.05, 9, gelu=True, residual=res), want)  # the premise
        np.testing.assert_array_equal(lin.forward(a, 0.05, 9, gelu=True, residual=res), want)
        np.testing.assert_array_equal(lin.forward(a, 0.05, 9, out_quant=(0.02, 7)),
                                      sp.forward(a, 0.05, 9, out_quant=(0.02, 7)))


@pytest.mark.parametrize("isa", ISAS)
def test_geglu_linear_with_an_alternative(isa):
    rng = np.random.default_rng(8)
    lin, sp, _ = _pair(rng, 64, 48, isa, geglu=True)
    for m in (5, ROWS + 3):
        a = rng.integers(0, 256, (m, 48), dtype=np.uint8)
        np.testing.assert_array_equal(lin.forward(a, 0.05, 9, out_quant=(0.02, 7)),
                                      sp.forward(a, 0.05, 9, out_quant=(0.02, 7)))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m", [3, ROWS, 70])
def test_a_chain_of_linears_with_alternatives_equals_two_calls(isa, m):
    """hf_linear_chain fuses two 4x1 Linears through packed activations: with alternatives it must pick each Linear's
    packing for the call first (both dense below ROWS, both sparse from it) and still equal two plain calls."""
    rng = np.random.default_rng(m)
    l1, s1, _ = _pair(rng, 64, 48, isa)
    l2, s2, _ = _pair(rng, 40, 64, isa)
    a = rng.integers(0, 256, (m, 48), dtype=np.uint8)
    res = rng.normal(0, 1, (m, 40)).astype(np.float32)
    got = native.linear_chain(l1, l2, a, 0.05, 9, (0.02, 7), gelu=True, residual=res)
    want = s2.forward(s1.forward(a, 0.05, 9, gelu=True, out_quant=(0.02, 7)), 0.02, 7, residual=res)
    np.testing.assert_array_equal(got, want)


def test_the_alternative_must_be_the_same_linear():
    rng = np.random.default_rng(9)
    w = _weight(rng, 32, 16)
    s, b = np.full(32, 0.01, np.float32), np.zeros(32, np.float32)
    sp = native.PackedLinear(w, s, b, block="4x1")
    with pytest.raises(ValueError, match="one of the two must be block-sparse"):
        sp.set_alternative(native.PackedLinear(w, s, b, block="4x1"), ROWS)
    for other in (native.PackedLinear(w, s * 2, b, block="dense"), native.PackedLinear(w, s, b + 1, block="dense"),
                  native.PackedLinear(w, s, None, block="dense"), native.PackedLinear(w[:, :8], s, b, block="dense"),
                  native.PackedLinear(np.where(w == 0, 1, w).astype(np.int8), s, b, block="dense")):
        with pytest.raises(ValueError, match="not the same Linear"):
            sp.set_alternative(other, ROWS)
    dn = native.PackedLinear(w, s, b, block="dense")
    with pytest.raises(ValueError, match="rows=0 must be >= 1"):
        sp.set_alternative(dn, 0)
    sp.set_alternative(dn, ROWS)
    with pytest.raises(ValueError, match="has an alternative of its own"):
        native.PackedLinear(w, s, b, block="dense").set_alternative(sp, ROWS)
    sp.set_alternative(None, ROWS)
    assert sp.alternative is None and sp.runs_sparse(1)


# ---- the engine: SPARSE_FROM_TOKENS_BY_ISA on the ISA that has a table ----
@pytest.fixture(scope="module")
def half_pruned(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from _export_helpers import tiny_model
    from _fuzz_helpers import micro_calibration

    from hf_fast.export import export

    m = tiny_model("bert", "text-classification", 64, seed=5, layers=2, hidden=32, heads=2, ffn=64, max_pos=64)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, mod in m.named_modules():
            if isinstance(mod, torch.nn.Linear) and ".layer." in name:
                rows, cols = mod.weight.shape[0] // 4, mod.weight.shape[1]
                keep = (torch.rand(rows, cols, generator=g) >= 0.45).float()
                mod.weight.mul_(keep.repeat_interleave(4, 0))
    return export(m, None, tmp_path_factory.mktemp("half") / "a", calibration_dataset=micro_calibration("bert"),
                  task="text-classification", block="4x1", progress=False)


def test_engine_runs_long_calls_sparse_with_the_same_logits(half_pruned, monkeypatch):
    if "avx512vnni" not in native.supported_isas():
        pytest.skip("this CPU has no AVX-512 VNNI (the ISA whose crossover depends on the call)")
    import hf_fast.runtime.engine as E
    from hf_fast.runtime import FastModelForSequenceClassification

    monkeypatch.setenv("HF_FAST_PACK_CACHE", "0")
    both = FastModelForSequenceClassification.from_pretrained(half_pruned, isa="avx512vnni")
    packed = both.backend.engine.packed
    assert all(p.alternative is not None and p.sparse_rows == 32 for p in packed.values())
    monkeypatch.setitem(E.SPARSE_FROM_TOKENS_BY_ISA, "avx512vnni", ())  # one kernel per Linear, as before
    dense = FastModelForSequenceClassification.from_pretrained(half_pruned, isa="avx512vnni")
    assert all(p.block == "dense" and p.alternative is None for p in dense.backend.engine.packed.values())
    rng = np.random.default_rng(0)
    for batch, seq in ((1, 8), (4, 16), (2, 60)):  # 8 and 64 tokens a call: dense, then sparse (120 too)
        ids = rng.integers(5, 64, (batch, seq))
        mask = np.ones_like(ids)
        np.testing.assert_array_equal(both(input_ids=ids, attention_mask=mask).logits,
                                      dense(input_ids=ids, attention_mask=mask).logits)
    assert all(p.runs_sparse(64) and not p.runs_sparse(8) for p in packed.values())
