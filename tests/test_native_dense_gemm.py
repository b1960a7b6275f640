"""Dense u8 x s8 -> s32 GEMM: every ISA path bit-exact against numpy and the scalar reference."""
import numpy as np
import pytest

from hf_fast import native

ISAS = native.BUILT_ISA_NAMES  # every ISA of this build: the ones this CPU lacks skip visibly (conftest.py)
SHAPES = [(1, 1, 1), (1, 16, 4), (3, 5, 7), (8, 32, 64), (9, 33, 65), (17, 31, 1), (1, 1, 1000),
          (13, 100, 3), (64, 768, 768), (5, 17, 130), (2, 3072, 20)]


def _ref(a, w):
    return a.astype(np.int64) @ w.astype(np.int64).T


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_random_matches_numpy(isa, m, n, k):
    rng = np.random.default_rng(m * 1000003 + n * 1009 + k)
    a = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    w = rng.integers(-128, 128, size=(n, k), dtype=np.int8)
    c = native.gemm_u8s8s32(a, w, isa=isa)
    assert c.dtype == np.int32 and c.shape == (m, n)
    np.testing.assert_array_equal(c.astype(np.int64), _ref(a, w))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("wval", [-128, 127])
def test_saturating_extremes_are_exact(isa, wval):
    # 255 * -128 pairs would saturate vpmaddubsw's int16 sums; every path must stay exact
    m, n, k = 7, 19, 4099
    a = np.full((m, k), 255, dtype=np.uint8)
    w = np.full((n, k), wval, dtype=np.int8)
    c = native.gemm_u8s8s32(a, w, isa=isa)
    np.testing.assert_array_equal(c, np.full((m, n), 255 * wval * k, dtype=np.int64))


@pytest.mark.parametrize("isa", ISAS)
def test_fast_paths_match_reference_bit_exactly(isa):
    rng = np.random.default_rng(7)
    a = rng.integers(0, 256, size=(37, 301), dtype=np.uint8)
    w = rng.integers(-128, 128, size=(45, 301), dtype=np.int8)
    np.testing.assert_array_equal(native.gemm_u8s8s32(a, w, isa=isa), native.gemm_u8s8s32(a, w, isa="ref"))


@pytest.mark.parametrize("isa", ISAS)
def test_packed_weight_reused_and_strided_input(isa):
    rng = np.random.default_rng(3)
    w = rng.integers(-128, 128, size=(24, 50), dtype=np.int8)
    packed = native.DenseWeight(w, isa=isa)
    assert packed.isa == isa and packed.shape == (24, 50) and packed.nbytes >= 24 * 50
    big = rng.integers(0, 256, size=(6, 100), dtype=np.uint8)
    a = big[:, ::2]  # non-contiguous view: copied, not misread
    for _ in range(2):
        np.testing.assert_array_equal(packed.matmul(a).astype(np.int64), _ref(a, w))
    assert packed.matmul(np.zeros((0, 50), np.uint8)).shape == (0, 24)


def test_bad_inputs_raise_clear_errors():
    w = np.ones((4, 8), np.int8)
    with pytest.raises(TypeError, match="dtype int8"):
        native.gemm_u8s8s32(np.ones((2, 8), np.uint8), w.astype(np.int16))
    with pytest.raises(TypeError, match="dtype uint8"):
        native.gemm_u8s8s32(np.ones((2, 8), np.int8), w)
    with pytest.raises(ValueError, match="K=8"):
        native.gemm_u8s8s32(np.ones((2, 9), np.uint8), w)
    with pytest.raises(ValueError, match="2-D"):
        native.gemm_u8s8s32(np.ones((2, 2, 8), np.uint8), w)
    with pytest.raises(ValueError, match="non-empty"):
        native.DenseWeight(np.ones((0, 8), np.int8))
    with pytest.raises(ValueError, match="exceeds"):
        native.DenseWeight(np.ones((1, 70000), np.int8))
    with pytest.raises(ValueError, match="unknown ISA"):
        native.DenseWeight(w, isa="sse9")


def test_unsupported_isa_is_refused_not_crashed():
    missing = [i for i in native.BUILT_ISA_NAMES if i not in native.supported_isas()]
    if not missing:
        pytest.skip("this CPU supports every ISA")
    with pytest.raises(native.UnsupportedISAError, match="not supported"):
        native.DenseWeight(np.ones((4, 8), np.int8), isa=missing[0])


# ---- 7-bit weights (reduce_range): on AVX2 they take the exact vpmaddubsw kernel "avx2-s7" ----
def _expected_kernel(isa, w):
    if isa != "avx2":
        return isa
    return "avx2-s7" if w.min() >= -64 and w.max() <= 64 else "avx2-s16"


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_7bit_random_matches_numpy_and_reference(isa, m, n, k):
    rng = np.random.default_rng(m * 7 + n * 1009 + k)
    a = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    w = rng.integers(-64, 64, size=(n, k), dtype=np.int8)
    d = native.DenseWeight(w, isa=isa)
    assert d.kernel == _expected_kernel(isa, w)
    c = d.matmul(a)
    np.testing.assert_array_equal(c.astype(np.int64), _ref(a, w))
    np.testing.assert_array_equal(c, native.gemm_u8s8s32(a, w, isa="ref"))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("wval", [-64, 63, 64])
def test_7bit_extremes_are_exact(isa, wval):
    m, n, k = 7, 19, 4099
    a = np.full((m, k), 255, dtype=np.uint8)
    w = np.full((n, k), wval, dtype=np.int8)
    d = native.DenseWeight(w, isa=isa)
    assert d.kernel == _expected_kernel(isa, w)
    np.testing.assert_array_equal(d.matmul(a), np.full((m, n), 255 * wval * k, dtype=np.int64))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("outlier", [-65, 65])
def test_one_8bit_weight_forces_the_int16_kernel(isa, outlier):
    m, n, k = 5, 11, 4099
    a = np.full((m, k), 255, dtype=np.uint8)
    w = np.full((n, k), -64 if outlier < 0 else 63, dtype=np.int8)
    w[10, 4098] = outlier
    d = native.DenseWeight(w, isa=isa)
    assert d.kernel == ("avx2-s16" if isa == "avx2" else isa)
    np.testing.assert_array_equal(d.matmul(a).astype(np.int64), _ref(a, w))


@pytest.mark.parametrize("isa", ISAS)
def test_matmul_into_preallocated_out(isa):
    rng = np.random.default_rng(3)
    w = rng.integers(-128, 128, size=(37, 50), dtype=np.int8)
    a = rng.integers(0, 256, size=(9, 50), dtype=np.uint8)
    dw = native.DenseWeight(w, isa)
    out = np.zeros((9, 37), np.int32)
    assert dw.matmul(a, out) is out
    np.testing.assert_array_equal(out, a.astype(np.int64) @ w.astype(np.int64).T)
    with pytest.raises(ValueError, match="out must be"):
        dw.matmul(a, np.zeros((9, 36), np.int32))
