"""Padding-free ragged batches (hf_engine_run_packed, hf_fast/runtime/ragged.py): a padded batch run packed, its real
tokens only, gives the padded run's outputs at every real token, for every task head, right- and left-padded, with a
sequence of length 1 and batches of several passes; pad positions of token-level outputs are zeros; what cannot be
packed runs padded (auto) or is refused with a message naming the row (ragged=True)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")

from _fuzz_helpers import VOCAB, micro_artifact  # noqa: E402

from hf_fast.native import ffi, lib  # noqa: E402
from hf_fast.runtime.modeling import FastModel, FastModelForFeatureExtraction  # noqa: E402

KINDS = [("bert", "text-classification"), ("distilbert", "question-answering"), ("electra", "token-classification"),
         ("roberta", "token-classification"), ("bert", "feature-extraction"), ("mpnet", "feature-extraction")]
# rows of their real tokens only after pad tokens: positions count real tokens, the engine takes right padding only
RIGHT_ONLY = {"roberta", "mpnet"}
LENS = [9, 1, 5, 12, 3]
S = 12


@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ragged")
    return {(a, t): micro_artifact(root / f"{a}-{t}", a, t) for a, t in KINDS}


def _batch(lens, s, side, seed=0, pad_id=0):
    rng = np.random.default_rng(seed)
    ids = np.full((len(lens), s), pad_id, np.int64)
    mask = np.zeros((len(lens), s), np.int64)
    for i, n in enumerate(lens):
        sl = slice(0, n) if side == "right" else slice(s - n, s)
        ids[i, sl] = rng.integers(3, VOCAB, n)
        mask[i, sl] = 1
    return ids, mask


def _engine(art):
    fm = FastModel.from_pretrained(art, backend="native")
    return fm, fm.backend.engine


def _types(fm, ids):
    return np.zeros_like(ids) if "token_type_ids" in fm.backend.input_names else None


def _at_real(out: dict, mask: np.ndarray) -> dict:
    return {k: (v[mask == 1] if v.shape[:2] == mask.shape else v) for k, v in out.items()}


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: "-".join(k))
def test_packed_equals_padded_at_real_tokens(arts, kind, side):
    if side == "left" and kind[0] in RIGHT_ONLY:
        pytest.skip("this family runs right-padded batches only (positions count real tokens)")
    fm, eng = _engine(arts[kind])
    ids, mask = _batch(LENS, S, side)
    tt = _types(fm, ids)
    if side == "left" and eng._cls_head:
        # the padded run's head reads column 0, a pad token: packing would change the output, so auto stays padded
        with pytest.raises(ValueError, match="left-padded and the head reads token 0"):
            eng.run(ids, mask, tt, ragged=True)
        auto, padded = eng.run(ids, mask, tt), eng.run(ids, mask, tt, ragged=False)
        for k in padded:
            np.testing.assert_array_equal(auto[k], padded[k])
        return
    padded, packed = eng.run(ids, mask, tt, ragged=False), eng.run(ids, mask, tt, ragged=True)
    auto = eng.run(ids, mask, tt)
    assert padded.keys() == packed.keys()
    for k in padded:
        assert packed[k].shape == padded[k].shape
        np.testing.assert_array_equal(auto[k], packed[k])  # the default packs a padded batch
        if eng.token_level:  # zeros at pad positions, where the padded run has the state of a token nobody reads
            assert not packed[k][mask == 0].any() and padded[k][mask == 0].any()
    a, b = _at_real(padded, mask), _at_real(packed, mask)
    for k in a:
        # same kernels on the same rows: bit for bit here (head size 8); left padding shifts the keys of each row,
        # which may reorder a SIMD sum on wider heads, hence the tolerance in general
        np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-6 * (np.abs(a[k]).max() + 1))
        if side == "right":
            np.testing.assert_array_equal(b[k], a[k])


@pytest.mark.parametrize("mode", ["mean", "max", "cls"])
def test_pooled_sentence_embeddings_packed(arts, tmp_path, mode):
    """feature-extraction with pooling (+ normalisation) in the engine's head: per sequence over its own rows."""
    src = arts[("bert", "feature-extraction")]
    dst = tmp_path / "pooled"
    shutil.copytree(src, dst)
    fc = json.loads((dst / "fast_config.json").read_text())
    fc["pooling"] = {"mode": mode, "normalize": True, "source": "test"}
    (dst / "fast_config.json").write_text(json.dumps(fc))
    fm = FastModelForFeatureExtraction.from_pretrained(dst, backend="native", output="sentence_embedding")
    eng = fm.backend.engine
    ids, mask = _batch(LENS, S, "right", seed=3)
    tt = np.zeros_like(ids)
    padded, packed = eng.run(ids, mask, tt, ragged=False), eng.run(ids, mask, tt, ragged=True)
    (k,) = padded
    assert packed[k].shape == (len(LENS), 16)
    np.testing.assert_array_equal(packed[k], padded[k])
    # the public path (FastModel.__call__) gives the same embeddings
    np.testing.assert_array_equal(fm(input_ids=ids, attention_mask=mask, token_type_ids=tt).pooler_output.numpy(),
                                  padded[k])


def test_many_sequences_run_in_several_passes(arts):
    """~800 tokens: hf_engine_run_packed splits them into passes of whole sequences (~512 tokens each)."""
    fm, eng = _engine(arts[("distilbert", "question-answering")])
    lens = np.random.default_rng(5).integers(1, 17, size=100)
    ids, mask = _batch(lens, 16, "right", seed=5)
    assert lens.sum() > 512  # two passes at least
    padded, packed = eng.run(ids, mask, ragged=False), eng.run(ids, mask, ragged=True)
    for k in padded:
        np.testing.assert_array_equal(packed[k][mask == 1], padded[k][mask == 1])


def test_unpackable_batches(arts, monkeypatch):
    fm, eng = _engine(arts[("distilbert", "question-answering")])
    ids, mask = _batch(LENS, S, "right")
    # an all-padding row: nothing to run for it; auto keeps today's padded run, ragged=True names the row
    m0 = mask.copy()
    m0[2] = 0
    with pytest.raises(ValueError, match="row 2 of attention_mask is all padding"):
        eng.run(ids, m0, ragged=True)
    for k, v in eng.run(ids, m0, ragged=False).items():
        np.testing.assert_array_equal(eng.run(ids, m0)[k], v)
    # a hole in a row's mask: not one run of tokens
    m1 = mask.copy()
    m1[0, 3] = 0
    with pytest.raises(ValueError, match="row 0 of attention_mask is not one contiguous run"):
        eng.run(ids, m1, ragged=True)
    for k, v in eng.run(ids, m1, ragged=False).items():
        np.testing.assert_array_equal(eng.run(ids, m1)[k], v)
    # HF_FAST_RAGGED=0: the padded run for every batch
    monkeypatch.setenv("HF_FAST_RAGGED", "0")
    off = eng.run(ids, mask)
    assert off["start_logits"][mask == 0].any()
    monkeypatch.delenv("HF_FAST_RAGGED")
    assert not eng.run(ids, mask)["start_logits"][mask == 0].any()


def test_c_entry_point_checks_lengths(arts):
    """hf_engine_run_packed itself refuses a zero length, positions past the table and a wrong output size."""
    fm, eng = _engine(arts[("distilbert", "question-answering")])
    p = lambda a: ffi.cast("int64_t *", a.ctypes.data)  # noqa: E731
    ids = np.arange(3, 9, dtype=np.int64)
    out = np.empty((6, eng.width), np.float32)
    f = ffi.cast("float *", out.ctypes.data)

    def run(lens, pos0=None, size=out.size):
        lens = np.asarray(lens, np.int64)
        return lib.hf_engine_run_packed(eng._e, len(lens), p(lens), p(np.asarray(pos0, np.int64)) if pos0 else ffi.NULL,
                                        p(ids), ffi.NULL, f, size)

    assert run([4, 2]) == lib.HF_OK
    assert run([4, 0, 2]) == lib.HF_EINVAL
    assert "sequence 1 has 0 tokens" in ffi.string(lib.hf_last_error()).decode()
    assert run([4, 2], pos0=[0, 15]) == lib.HF_EINVAL
    assert "exceeds max positions 16" in ffi.string(lib.hf_last_error()).decode()
    assert run([4, 2], size=out.size - 1) == lib.HF_EINVAL
    assert "output buffer holds" in ffi.string(lib.hf_last_error()).decode()


@pytest.mark.parametrize("isa", ["ref", "avx2", "avx512vnni"])
def test_packed_equals_padded_on_every_isa(arts, isa):
    """The packed path on each ISA's kernels (attention, LayerNorm, epilogues), left-padded rows (keys shifted)."""
    import onnx

    from hf_fast.runtime.engine import NativeEngine

    art = arts[("distilbert", "question-answering")]
    fc = json.loads((art / "fast_config.json").read_text())
    eng = NativeEngine.from_onnx(onnx.load(str(art / "model.onnx")), fc["num_heads"], block=fc.get("block"), isa=isa)
    assert eng.isa == isa
    ids, mask = _batch(LENS, S, "left", seed=7)
    padded, packed = eng.run(ids, mask, ragged=False), eng.run(ids, mask, ragged=True)
    for k in padded:
        np.testing.assert_allclose(packed[k][mask == 1], padded[k][mask == 1], rtol=1e-5, atol=1e-6)
        assert not packed[k][mask == 0].any()
