"""C engine bounds (issue 7), run under ASan/UBSan by `make sanitize`: a task head whose intermediate linear is
wider than both the hidden size and the output (found by fuzzing: heap-buffer-overflow in head_linear) and
head linears too large to size safely."""
import numpy as np
import pytest

from hf_fast import native
from hf_fast.models.spec import EngineLayer
from hf_fast.native import ffi, lib
from hf_fast.runtime.engine import model_desc


def _create(hidden, heads, ffn, layers, vocab, max_pos, type_vocab, out):
    d, _ = model_desc(EngineLayer(), hidden=hidden, heads=heads, ffn=ffn, layers=layers, vocab=vocab, max_pos=max_pos,
                      type_vocab=type_vocab)
    return lib.hf_engine_create(d, out)


def _engine(H=8, heads=2, F=16, vocab=10, max_pos=8):
    out = ffi.new("hf_engine **")
    native._check(_create(H, heads, F, 1, vocab, max_pos, 0, out), "create")
    e = ffi.gc(out[0], lib.hf_engine_free)
    f = lambda a: ffi.cast("float *", a.ctypes.data)  # noqa: E731
    keep = [np.ones((vocab, H), np.float32), np.ones((max_pos, H), np.float32), np.ones(H, np.float32),
            np.zeros(H, np.float32)]
    native._check(lib.hf_engine_set_embeddings(e, f(keep[0]), f(keep[1]), ffi.NULL, f(keep[2]), f(keep[3]), 1e-5),
                  "emb")
    rng = np.random.default_rng(0)
    lins = [native.PackedLinear(rng.integers(-5, 5, size=s, dtype=np.int8), 0.01, None, block="dense")
            for s in [(3 * H, H), (H, H), (F, H), (H, F)]]
    d = ffi.new("hf_engine_layer_desc *")
    d.qkv, d.attn_out, d.ffn_in, d.ffn_out = [x._l for x in lins]
    d.qkv_scale = d.o_scale = d.i_scale = d.f_scale = 0.1
    d.qkv_zp = d.o_zp = d.i_zp = d.f_zp = 128
    d.att_scale = 0.5
    d.ln1_g, d.ln1_b, d.ln2_g, d.ln2_b = f(keep[2]), f(keep[3]), f(keep[2]), f(keep[3])
    d.ln1_eps = d.ln2_eps = 1e-5
    native._check(lib.hf_engine_set_layer(e, 0, d), "layer")
    return e, f, keep + lins


def test_wide_intermediate_head_linear_fits_the_head_buffers():
    e, f, keep = _engine()
    rng = np.random.default_rng(1)
    w1, b1 = rng.standard_normal((1000, 8)).astype(np.float32), np.zeros(1000, np.float32)
    w2, b2 = rng.standard_normal((2, 1000)).astype(np.float32), np.zeros(2, np.float32)
    native._check(lib.hf_engine_add_head_op(e, lib.HF_HEAD_LINEAR, 1000, 8, f(w1), f(b1)), "h1")
    native._check(lib.hf_engine_add_head_op(e, lib.HF_HEAD_RELU, 0, 0, ffi.NULL, ffi.NULL), "relu")
    native._check(lib.hf_engine_add_head_op(e, lib.HF_HEAD_LINEAR, 2, 1000, f(w2), f(b2)), "h2")
    ids = np.arange(8, dtype=np.int64).reshape(2, 4) % 10
    out = np.empty((8, 2), np.float32)
    native._check(lib.hf_engine_run(e, 2, 4, ffi.cast("int64_t *", ids.ctypes.data), ffi.NULL, ffi.NULL, f(out),
                                    out.size), "run")
    assert np.isfinite(out).all()


def test_head_linear_too_large_is_refused():
    e, f, keep = _engine()
    w = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match="too large"):
        native._check(lib.hf_engine_add_head_op(e, lib.HF_HEAD_LINEAR, 2**40, 8, f(w), f(w)), "h")


@pytest.mark.parametrize("dims", [(0, 2, 16, 1, 10, 8, 0), (8, 3, 16, 1, 10, 8, 0), (8, 2, 16, 1, 10, 8, -1),
                                  (2**20, 2, 16, 1, 10, 8, 0), (8, 2, 16, 1, 2**40, 8, 0), (-8, 2, 16, 1, 10, 8, 0)])
def test_engine_create_refuses_bad_dims(dims):
    out = ffi.new("hf_engine **")
    with pytest.raises(ValueError):
        native._check(_create(*dims, out), "create")
    assert out[0] == ffi.NULL
