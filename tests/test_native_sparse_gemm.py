"""Block-sparse u8 x s8 -> s32 GEMM: every ISA path and block shape bit-exact against numpy and the
scalar reference. The AVX-512 VNNI path is only exercised on CPUs that have it (skipped on AVX2-only
machines such as the AMD EPYC CI runners)."""
import numpy as np
import pytest

from hf_fast import native

ISAS = native.BUILT_ISA_NAMES  # every ISA of this build: the ones this CPU lacks skip visibly (conftest.py)
BLOCKS = ["4x1", "1x4"]
SHAPES = [(1, 1, 1), (1, 4, 4), (3, 5, 7), (16, 8, 16), (17, 9, 33), (33, 31, 65), (1, 1, 1000), (13, 100, 3),
          (64, 768, 768), (5, 17, 130), (2, 3072, 20), (40, 12, 2), (130, 37, 200), (100, 33, 70)]


def _ref(a, w):
    return a.astype(np.int64) @ w.astype(np.int64).T


def _sparse_weight(rng, n, k, block, sparsity, lo=-128, hi=128):
    r, c = (4, 1) if block == "4x1" else (1, 4)
    keep = rng.random(((n + r - 1) // r, (k + c - 1) // c)) >= sparsity
    w = rng.integers(lo, hi, size=(n, k), dtype=np.int8)
    return w * np.repeat(np.repeat(keep, r, 0), c, 1)[:n, :k].astype(np.int8)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_random_matches_numpy(isa, block, m, n, k):
    rng = np.random.default_rng(m * 1000003 + n * 1009 + k)
    for sparsity in (0.0, 0.5, 0.8):
        w = _sparse_weight(rng, n, k, block, sparsity)
        a = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
        c = native.sparse_gemm_u8s8s32(a, w, block=block, isa=isa)
        assert c.dtype == np.int32 and c.shape == (m, n)
        np.testing.assert_array_equal(c.astype(np.int64), _ref(a, w))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("wval", [-128, 127])
def test_saturating_extremes_are_exact(isa, block, wval):
    # 255 * -128 pairs would saturate vpmaddubsw's int16 sums; every path must stay exact
    m, n, k = 19, 21, 4099
    a = np.full((m, k), 255, dtype=np.uint8)
    w = np.full((n, k), wval, dtype=np.int8)
    c = native.sparse_gemm_u8s8s32(a, w, block=block, isa=isa)
    np.testing.assert_array_equal(c, np.full((m, n), 255 * wval * k, dtype=np.int64))
    # the same with most blocks pruned
    w2 = _sparse_weight(np.random.default_rng(1), n, k, block, 0.9, wval, wval + 1)
    np.testing.assert_array_equal(native.sparse_gemm_u8s8s32(a, w2, block=block, isa=isa), _ref(a, w2))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("block", BLOCKS)
def test_fully_sparse_and_zero_rows(isa, block):
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, size=(23, 37), dtype=np.uint8)
    zero = np.zeros((13, 37), np.int8)
    sw = native.SparseWeight(zero, block, isa)
    assert sw.kept_blocks == 0 and sw.sparsity == 1.0
    np.testing.assert_array_equal(sw.matmul(a), np.zeros((23, 13), np.int32))
    w = rng.integers(-128, 128, size=(13, 37), dtype=np.int8)
    w[[0, 3, 4, 5, 6, 12]] = 0  # whole output rows pruned (and a whole 4-row group)
    w[:, [1, 2, 3, 36]] = 0     # whole input columns pruned
    np.testing.assert_array_equal(native.sparse_gemm_u8s8s32(a, w, block=block, isa=isa), _ref(a, w))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("block", BLOCKS)
def test_fast_paths_match_reference_bit_exactly(isa, block):
    rng = np.random.default_rng(7)
    w = _sparse_weight(rng, 45, 301, block, 0.7)
    a = rng.integers(0, 256, size=(37, 301), dtype=np.uint8)
    np.testing.assert_array_equal(native.sparse_gemm_u8s8s32(a, w, block, isa),
                                  native.sparse_gemm_u8s8s32(a, w, block, "ref"))


@pytest.mark.parametrize("block", BLOCKS)
def test_kept_blocks_and_packed_size(block):
    rng = np.random.default_rng(11)
    n, k = 768, 768
    w = _sparse_weight(rng, n, k, block, 0.8)
    r, c = (4, 1) if block == "4x1" else (1, 4)
    nz = (w.reshape(n // r, r, k // c, c) != 0).any(axis=(1, 3))
    for isa in native.supported_isas():
        sw = native.SparseWeight(w, block, isa)
        assert sw.kept_blocks == int(nz.sum()) and sw.total_blocks == nz.size
        assert abs(sw.sparsity - (1 - nz.mean())) < 1e-12
        # values (int8 for ref/VNNI, int16 pairs for exact AVX2) + indices: well under dense int8
        assert sw.nbytes < 0.8 * n * k, (isa, sw.nbytes)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("block", BLOCKS)
def test_one_and_two_threads_identical(isa, block):
    rng = np.random.default_rng(13)
    w = _sparse_weight(rng, 200, 96, block, 0.6)
    a = rng.integers(0, 256, size=(70, 96), dtype=np.uint8)
    sw = native.SparseWeight(w, block, isa)
    with native.num_threads(1):
        c1 = sw.matmul(a)
    with native.num_threads(2):
        c2 = sw.matmul(a)
        c2b = sw.matmul(a[:3])
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(c2b, c1[:3])
    np.testing.assert_array_equal(c1.astype(np.int64), _ref(a, w))


def test_packed_weight_reused_and_strided_input():
    rng = np.random.default_rng(3)
    w = _sparse_weight(rng, 24, 50, "1x4", 0.5)
    sw = native.SparseWeight(w, "1x4")
    big = rng.integers(0, 256, size=(6, 100), dtype=np.uint8)
    a = big[:, ::2]
    for _ in range(2):
        np.testing.assert_array_equal(sw.matmul(a).astype(np.int64), _ref(a, w))
    assert sw.matmul(np.zeros((0, 50), np.uint8)).shape == (0, 24)


def test_thread_setting():
    prev = native.get_num_threads()
    assert prev >= 1 and native.native_info()["threads"] == prev
    with native.num_threads(1):
        assert native.get_num_threads() == 1
    assert native.get_num_threads() == prev
    with pytest.raises(ValueError, match="set_num_threads"):
        native.set_num_threads(0)
    with pytest.raises(TypeError):
        native.set_num_threads(1.5)


def test_bad_inputs_raise_clear_errors():
    w = np.ones((4, 8), np.int8)
    with pytest.raises(ValueError, match="not supported"):
        native.SparseWeight(w, block="4x16")
    with pytest.raises(ValueError, match="needs a block shape"):
        native.SparseWeight(w, block="dense")
    with pytest.raises(TypeError, match="dtype int8"):
        native.SparseWeight(w.astype(np.int16))
    with pytest.raises(TypeError, match="dtype uint8"):
        native.SparseWeight(w).matmul(np.ones((2, 8), np.int8))
    with pytest.raises(ValueError, match="K=8"):
        native.SparseWeight(w).matmul(np.ones((2, 9), np.uint8))
    with pytest.raises(ValueError, match="non-empty"):
        native.SparseWeight(np.ones((0, 8), np.int8))
    with pytest.raises(ValueError, match="exceeds"):
        native.SparseWeight(np.ones((1, 70000), np.int8))
    with pytest.raises(ValueError, match="unknown ISA"):
        native.SparseWeight(w, isa="sse9")
    missing = [i for i in native.BUILT_ISA_NAMES if i not in native.supported_isas()]
    if missing:
        with pytest.raises(native.UnsupportedISAError, match="not supported"):
            native.SparseWeight(w, isa=missing[0])


def test_preferred_block(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_FAST_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("HF_FAST_BLOCK", raising=False)
    native._pref_memo.clear()
    b = native.preferred_block()
    assert b in ("4x1", "1x4")
    cache = (tmp_path / "preferred_block.json").read_text()
    assert b in cache and native.active_isa() in cache
    native._pref_memo.clear()
    assert native.preferred_block() == b  # from the file
    monkeypatch.setenv("HF_FAST_BLOCK", "1x4")
    assert native.preferred_block() == "1x4"
    monkeypatch.setenv("HF_FAST_BLOCK", "2x2")
    with pytest.raises(ValueError, match="HF_FAST_BLOCK"):
        native.preferred_block()


# ---- 7-bit weights (reduce_range): on AVX2 they take the exact vpmaddubsw kernel "avx2-s7" ----
def _expected_kernel(isa, w):
    if isa != "avx2":
        return isa
    return "avx2-s7" if w.min() >= -64 and w.max() <= 64 else "avx2-s16"


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (3, 5, 7), (17, 9, 33), (33, 31, 65), (13, 100, 3), (64, 768, 768),
                                   (5, 17, 130), (2, 3072, 20)])
def test_7bit_random_matches_numpy_and_reference(isa, block, m, n, k):
    rng = np.random.default_rng(m * 7 + n * 1009 + k)
    a = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    for sparsity in (0.0, 0.5, 0.8):
        w = _sparse_weight(rng, n, k, block, sparsity, -64, 64)
        sw = native.SparseWeight(w, block, isa)
        assert sw.kernel == _expected_kernel(isa, w)
        c = sw.matmul(a)
        np.testing.assert_array_equal(c.astype(np.int64), _ref(a, w))
        np.testing.assert_array_equal(c, native.sparse_gemm_u8s8s32(a, w, block, "ref"))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("wval", [-64, 63, 64])
def test_7bit_extremes_are_exact(isa, block, wval):
    # 255 * -64 * 2 = -32640: the largest vpmaddubsw pair sum 7-bit weights allow, still exact
    m, n, k = 19, 21, 4099
    a = np.full((m, k), 255, dtype=np.uint8)
    w = np.full((n, k), wval, dtype=np.int8)
    sw = native.SparseWeight(w, block, isa)
    assert sw.kernel == _expected_kernel(isa, w)
    np.testing.assert_array_equal(sw.matmul(a), np.full((m, n), 255 * wval * k, dtype=np.int64))
    w2 = _sparse_weight(np.random.default_rng(2), n, k, block, 0.9, wval, wval + 1)
    np.testing.assert_array_equal(native.sparse_gemm_u8s8s32(a, w2, block=block, isa=isa), _ref(a, w2))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("outlier", [-65, 65])
def test_one_8bit_weight_forces_the_int16_kernel(isa, block, outlier):
    m, n, k = 9, 13, 4099
    a = np.full((m, k), 255, dtype=np.uint8)
    w = np.full((n, k), -64 if outlier < 0 else 63, dtype=np.int8)
    w[7, 2049] = outlier
    sw = native.SparseWeight(w, block, isa)
    assert sw.kernel == ("avx2-s16" if isa == "avx2" else isa)
    np.testing.assert_array_equal(sw.matmul(a).astype(np.int64), _ref(a, w))


@pytest.mark.parametrize("block", BLOCKS)
def test_7bit_packed_size_near_kept_fraction(block):
    rng = np.random.default_rng(17)
    n, k = 768, 768
    w = _sparse_weight(rng, n, k, block, 0.8, -64, 64)
    sw = native.SparseWeight(w, block)
    if sw.kernel == "avx2-s7":
        # 1.5 bytes per kept weight (int8 values + uint16 indices) + padding + row pointers
        assert sw.nbytes < 0.36 * n * k, sw.nbytes


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("block", BLOCKS)
def test_7bit_one_and_two_threads_identical(isa, block):
    rng = np.random.default_rng(19)
    w = _sparse_weight(rng, 200, 96, block, 0.6, -64, 64)
    a = rng.integers(0, 256, size=(70, 96), dtype=np.uint8)
    sw = native.SparseWeight(w, block, isa)
    with native.num_threads(1):
        c1 = sw.matmul(a)
    with native.num_threads(2):
        c2 = sw.matmul(a)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(c1.astype(np.int64), _ref(a, w))


def test_matmul_into_preallocated_out():
    rng = np.random.default_rng(5)
    w = _sparse_weight(rng, 33, 70, "4x1", 0.8)
    a = rng.integers(0, 256, size=(100, 70), dtype=np.uint8)
    sw = native.SparseWeight(w, "4x1")
    out = np.full((100, 33), -1, dtype=np.int32)
    assert sw.matmul(a, out=out) is out
    np.testing.assert_array_equal(out.astype(np.int64), _ref(a, w))
    with pytest.raises(ValueError):
        sw.matmul(a, out=np.empty((100, 33), dtype=np.int64))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m", [1, 70])
def test_4x1_wide_gaps_between_kept_channels(isa, m):
    """The VNNI 4x1 records store input channels as uint8 deltas; gaps over 255 take filler records. Gaps of
    exactly 255 / 256 / 510 / 511, a group whose first kept channel is past 255, one entirely pruned group and one
    that keeps only the last channel, in every position of a record."""
    k = 3000
    rng = np.random.default_rng(m)
    cols_of = [[0, 255, 511, 767, 1022, 1999, 2999], [300, 301, 1800], [], [2999], [256, 510, 1021, 1276, 1277, 2532],
               list(range(5, 3000, 256)), list(range(0, 3000, 300))]
    w = np.zeros((4 * len(cols_of), k), np.int8)
    for g, cols in enumerate(cols_of):
        for c in cols:
            w[4 * g:4 * g + 4, c] = rng.integers(-128, 128, 4, dtype=np.int8) | 1  # never all zero
    a = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    c = native.sparse_gemm_u8s8s32(a, w, block="4x1", isa=isa)
    np.testing.assert_array_equal(c.astype(np.int64), _ref(a, w))


def test_preferred_block_on_arm_is_the_documented_default(tmp_path, monkeypatch):
    """aarch64: no ARM CPU has been timed, so block="auto" is the stated ARM_DEFAULT_BLOCK, not a measurement (and
    nothing is cached); HF_FAST_BLOCK still overrides."""
    import platform

    from hf_fast.native import autotune

    monkeypatch.setenv("HF_FAST_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("HF_FAST_BLOCK", raising=False)
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(autotune, "_measure_block", lambda *a, **k: pytest.fail("measured on ARM"))
    native._pref_memo.clear()
    assert native.preferred_block() == autotune.ARM_DEFAULT_BLOCK == "4x1"
    assert not (tmp_path / "preferred_block.json").exists()
    monkeypatch.setenv("HF_FAST_BLOCK", "1x4")
    assert native.preferred_block() == "1x4"


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("aligned", [True, False])
def test_large_int32_output_streamed_is_exact(isa, aligned):
    # M * N * 4 >= 2 MB: the 4x1 VNNI kernel writes full aligned 64-byte rows with non-temporal stores, the rest
    # (unaligned rows, the M tail 600 % 64) with ordinary ones; every path must give the same sums
    rng = np.random.default_rng(11)
    m, n, k = 600, 1008, 70
    w = _sparse_weight(rng, n, k, "4x1", 0.8)
    a = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    buf = np.full(m * n + 32, -1, np.int32)
    off = (-buf.ctypes.data % 64) // 4 + (0 if aligned else 1)
    out = buf[off:off + m * n].reshape(m, n)
    native.SparseWeight(w, "4x1", isa).matmul(a, out)
    np.testing.assert_array_equal(out.astype(np.int64), _ref(a, w))
    assert (buf[:off] == -1).all() and (buf[off + m * n:] == -1).all()  # nothing written outside C


def test_int8_peak_probe():
    # explicit ISAs: under a forced HF_FAST_ISA=avx2 / ref the active ISA has no probe
    for isa in ("ref", "avx2"):
        if isa in native.supported_isas():
            with pytest.raises(native.UnsupportedISAError, match=f"no peak probe for '{isa}'"):
                native.int8_peak_probe(10, isa)
    if "avx512vnni" not in native.supported_isas():
        pytest.skip("no AVX-512 VNNI on this CPU")
    assert native.int8_peak_probe(1000, "avx512vnni") == 1000 * 12 * 64  # 12 vpdpbusd zmm of 64 MACs per step
    with pytest.raises(ValueError, match="iters"):
        native.int8_peak_probe(0, "avx512vnni")
    peak = native.int8_peak_gmacs("avx512vnni", seconds=0.05)
    assert 10 < peak < 10_000  # GMAC/s of one core: 64 MACs per vpdpbusd zmm at about 1-2 per cycle
    with pytest.raises(ValueError, match="seconds"):
        native.int8_peak_gmacs("avx512vnni", seconds=0)



@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m", [1, 63, 65, 700])
def test_one_thread_chunked_pack_matches_two_threads(isa, m):
    # one thread packs each chunk of 64-token tiles just before computing it (4x1 VNNI); K = 1000 (not a multiple of
    # 16: zero-padded tiles), N = 90 (a 16-channel strip tail and a 4-row group tail), M with tile tails
    rng = np.random.default_rng(m)
    w = _sparse_weight(rng, 90, 1000, "4x1", 0.7)
    a = rng.integers(0, 256, size=(m, 1000), dtype=np.uint8)
    sw = native.SparseWeight(w, "4x1", isa)
    with native.num_threads(1):
        one = sw.matmul(a)
    with native.num_threads(2):
        two = sw.matmul(a)
    np.testing.assert_array_equal(one.astype(np.int64), _ref(a, w))
    np.testing.assert_array_equal(one, two)


# ---- 4x4 tiles: the VNNI 4x1 kernel reads quad-structured groups pre-interleaved ----
def _tile_weight(rng, n, k, sparsity):
    """W[n, k] pruned in 4x4 tiles (kept tiles hold no zero weight, so every kept group is quad-structured)."""
    keep = rng.random(((n + 3) // 4, (k + 3) // 4)) >= sparsity
    w = rng.integers(-128, 128, size=(n, k), dtype=np.int8) | 1
    return w * np.repeat(np.repeat(keep, 4, 0), 4, 1)[:n, :k].astype(np.int8)


def _quad_groups_expected(isa, w):
    """The groups the VNNI 4x1 pack runs as quads: some kept channels, all in whole aligned quads."""
    if isa != "avx512vnni":
        return 0
    n = 0
    for g in range(0, w.shape[0], 4):
        cols = np.flatnonzero(np.any(w[g:g + 4] != 0, axis=0))
        n += bool(cols.size) and cols.size % 4 == 0 and all(
            cols[j] % 4 == 0 and np.array_equal(cols[j:j + 4], cols[j] + np.arange(4)) for j in range(0, cols.size, 4))
    return n


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,n,k,sparsity", [(1, 4, 4, 0.0), (15, 38, 100, 0.5), (64, 64, 64, 0.8),
                                            (65, 768, 768, 0.8), (130, 40, 2048, 0.97), (200, 16, 48, 0.3)])
def test_4x4_tiles_are_exact_and_run_as_quads(isa, m, n, k, sparsity):
    """Weights pruned in 4x4 tiles: exact on every ISA, one and two threads; on AVX-512 VNNI every kept group runs
    as quads (K not a multiple of 16, a 16-channel strip tail and a 2-row last group, partial token tiles, gaps over
    255 at 97%)."""
    rng = np.random.default_rng(m * 7 + n + k)
    w = _tile_weight(rng, n, k, sparsity)
    a = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    sw = native.SparseWeight(w, "4x1", isa)
    assert sw.quad_groups == _quad_groups_expected(isa, w)
    if isa == "avx512vnni":  # every group that keeps anything
        assert sw.quad_groups == sum(bool(np.any(w[g:g + 4])) for g in range(0, n, 4)) > 0
    for th in (1, 2):
        with native.num_threads(th):
            np.testing.assert_array_equal(sw.matmul(a).astype(np.int64), _ref(a, w))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m", [1, 64, 100])
def test_quad_and_general_groups_mixed(isa, m):
    """One weight with quad groups (gaps of 256 / 512 / 1020 between quads: fillers; the last quad at K - 4) beside
    general ones (random 4x1, a quad plus one lone channel, a misaligned run of 4, an empty group)."""
    k = 3000
    rng = np.random.default_rng(m)
    cols_of = [[0, 1, 2, 3, 256, 257, 258, 259], list(range(2996, 3000)), [512, 513, 514, 515, 1536, 1537, 1538, 1539],
               list(rng.choice(k, 40, replace=False)), [8, 9, 10, 11, 40], [5, 6, 7, 8], [],
               list(range(1000, 1064)), [i for q in range(0, 3000, 1020) for i in range(q, q + 4)]]
    w = np.zeros((4 * len(cols_of) + 2, k), np.int8)  # + 2 rows: a partial last group (general: random)
    for g, cols in enumerate(cols_of):
        for c in cols:
            w[4 * g:4 * g + 4, c] = rng.integers(-128, 128, 4, dtype=np.int8) | 1
    w[-2:] = _sparse_weight(rng, 2, k, "4x1", 0.9)
    sw = native.SparseWeight(w, "4x1", isa)
    assert sw.quad_groups == _quad_groups_expected(isa, w) == (5 if isa == "avx512vnni" else 0)
    a = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    for th in (1, 2):
        with native.num_threads(th):
            np.testing.assert_array_equal(sw.matmul(a).astype(np.int64), _ref(a, w))


def test_random_4x1_weights_have_no_quad_groups():
    """A 4x1-pruned weight (kept channels scattered) keeps the general records; a 1x4 pack never has quads."""
    rng = np.random.default_rng(0)
    w = _sparse_weight(rng, 768, 768, "4x1", 0.8)
    assert native.SparseWeight(w, "4x1").quad_groups == 0
    assert native.SparseWeight(_tile_weight(rng, 64, 64, 0.5), "1x4").quad_groups == 0
