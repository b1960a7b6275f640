"""Packed int8 Linear with the fused epilogue, GELU and the u8 activation quantizer."""
import numpy as np
import pytest

from hf_fast import native

ISAS = native.BUILT_ISA_NAMES  # every ISA of this build: the ones this CPU lacks skip visibly (conftest.py)
KINDS = ["4x1", "1x4", "dense"]


def _weight(rng, n, k, block, sparsity=0.7):
    w = rng.integers(-128, 128, size=(n, k), dtype=np.int8)
    if block == "dense":
        return w
    r, c = (4, 1) if block == "4x1" else (1, 4)
    keep = rng.random(((n + r - 1) // r, (k + c - 1) // c)) >= sparsity
    return w * np.repeat(np.repeat(keep, r, 0), c, 1)[:n, :k].astype(np.int8)


def _gelu64(x):
    import math
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def _expected(a, w, a_scale, a_zp, w_scale, bias, gelu=False, residual=None):
    acc = (a.astype(np.int64) - a_zp) @ w.astype(np.int64).T
    y = acc * (np.float64(np.float32(a_scale)) * w_scale.astype(np.float64)) + (0 if bias is None else bias)
    if gelu:
        y = _gelu64(y)
    if residual is not None:
        y = y + residual
    return y


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("block", KINDS)
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (7, 13, 30), (33, 45, 301), (128, 96, 768)])
@pytest.mark.parametrize("gelu,res,use_bias", [(False, False, True), (True, False, True), (False, True, False),
                                               (True, True, True)])
def test_forward_matches_float64(isa, block, m, n, k, gelu, res, use_bias):
    rng = np.random.default_rng(m * 7919 + n * 31 + k + 2 * gelu + res)
    w = _weight(rng, n, k, block)
    w_scale = rng.uniform(1e-3, 2e-2, n).astype(np.float32)
    bias = rng.normal(0, 1, n).astype(np.float32) if use_bias else None
    a = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    a_scale, a_zp = 0.0123, int(rng.integers(0, 256))
    # keep y around O(1) so GELU is exercised on both sides
    w_scale = (w_scale * 3.0 / np.sqrt(k * 1e4 * a_scale ** 2 + 1)).astype(np.float32)
    residual = rng.normal(0, 1, (m, n)).astype(np.float32) if res else None
    lin = native.PackedLinear(w, w_scale, bias, block=block, isa=isa)
    assert lin.isa == isa and lin.block == block
    y = lin.forward(a, a_scale, a_zp, gelu=gelu, residual=residual)
    exp = _expected(a, w, a_scale, a_zp, w_scale, bias, gelu, residual)
    assert y.dtype == np.float32 and y.shape == (m, n)
    scale = np.abs(exp).max() + 1.0
    np.testing.assert_allclose(y, exp, rtol=2e-6, atol=2e-6 * scale)


@pytest.mark.parametrize("isa", ISAS)
def test_extreme_zero_point_correction_is_exact(isa):
    # acc and a_zp * colsum both near the int32 limit (255 * 128 * 65536 ~ 2^31); the difference is exact
    n, k = 5, 65536
    w = np.full((n, k), -128, np.int8)
    a = np.zeros((3, k), np.uint8)
    a[1] = 255
    for block in KINDS:
        lin = native.PackedLinear(w, np.ones(n, np.float32), block=block, isa=isa)
        y = lin.forward(a, 1.0, 255)
        exp = _expected(a, w, 1.0, 255, np.ones(n, np.float32), None)
        np.testing.assert_allclose(y, exp, rtol=1e-7)


@pytest.mark.parametrize("block", KINDS)
def test_one_and_two_threads_identical(block):
    rng = np.random.default_rng(3)
    w = _weight(rng, 100, 64, block)
    lin = native.PackedLinear(w, np.full(100, 0.01, np.float32), np.zeros(100, np.float32), block=block)
    a = rng.integers(0, 256, size=(50, 64), dtype=np.uint8)
    r = rng.normal(size=(50, 100)).astype(np.float32)
    with native.num_threads(1):
        y1 = lin.forward(a, 0.05, 128, gelu=True, residual=r)
    with native.num_threads(2):
        y2 = lin.forward(a, 0.05, 128, gelu=True, residual=r)
    np.testing.assert_array_equal(y1, y2)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,n", [(1, 200), (5, 1536), (16, 130), (16, 64), (17, 300)])
def test_short_dense_calls_split_over_channels_at_two_threads(isa, m, n):
    """A dense call of <= 16 rows is one 16-row unit: at 2 threads its output channels are split in runs of whole
    panels (linear.c dense_cols_task) instead; the float, u8 and residual outputs stay those of 1 thread and of
    float64."""
    rng = np.random.default_rng(m * 7 + n)
    w = _weight(rng, n, 96, "dense")
    scale, bias = rng.uniform(0.001, 0.01, n).astype(np.float32), rng.normal(0, 1, n).astype(np.float32)
    lin = native.PackedLinear(w, scale, bias, block="dense", isa=isa)
    a = rng.integers(0, 256, size=(m, 96), dtype=np.uint8)
    r = rng.normal(size=(m, n)).astype(np.float32)
    out = {}
    for th in (1, 2):
        with native.num_threads(th):
            out[th] = (lin.forward(a, 0.05, 7, gelu=True, residual=r), lin.forward(a, 0.05, 7, out_quant=(0.03, 9)))
    for y1, y2 in zip(out[1], out[2], strict=True):
        np.testing.assert_array_equal(y1, y2)
    np.testing.assert_allclose(out[2][0], _expected(a, w, 0.05, 7, scale, bias, gelu=True, residual=r), rtol=1e-4,
                               atol=1e-3)


@pytest.mark.parametrize("isa", ISAS)
def test_gelu_matches_torch_erf_gelu(isa):
    torch = pytest.importorskip("torch")
    x = np.concatenate([np.linspace(-12, 12, 20001), [0.0, -0.0, 1e-30, -1e-30, 1e-8, 40, -40, 100, -100]])
    x = x.astype(np.float32)
    y = native.gelu(x, isa=isa)
    exp64 = torch.nn.functional.gelu(torch.from_numpy(x.astype(np.float64))).numpy()
    exp32 = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    # relative to the float64 truth, with an absolute floor of ~1 float32 ulp at |x| (where
    # torch's own float32 gelu sits: 1 + erf(x) loses the negative tail)
    err = np.abs(y.astype(np.float64) - exp64)
    assert np.all(err <= 1e-6 * np.abs(exp64) + 1e-7 * np.maximum(np.abs(x), 1e-6)), err.max()
    assert np.abs(y - exp32).max() <= 1e-6 * 12


@pytest.mark.parametrize("isa", ISAS)
def test_quantize_matches_numpy_rint_exactly(isa):
    rng = np.random.default_rng(0)
    scale = np.float32(0.037)
    x = np.concatenate([rng.normal(0, 3, 10007).astype(np.float32),
                        (np.arange(-300, 300, dtype=np.float32) + 0.5) * scale,  # exact .5 ties
                        np.array([0, -0.0, 1e30, -1e30, np.inf, -np.inf], np.float32)])
    for zp in (0, 3, 128, 255):
        q = native.quantize_u8(x, float(scale), zp, isa=isa)
        exp = np.clip(np.rint(x / scale) + zp, 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(q, exp)
    assert native.quantize_u8(np.array([np.nan], np.float32), 0.1, 7, isa=isa)[0] == 0
    assert native.quantize_u8(np.zeros((0,), np.float32), 0.1, 7, isa=isa).shape == (0,)


@pytest.mark.parametrize("isa", ISAS)
def test_quantize_near_rounding_boundaries_is_exact(isa):
    """Ties and their float neighbours (k + 0.5 +- a few ulps), the saturation edge and scales whose
    reciprocal is not a normal float: any shortcut around the division (x * (1/scale)) fails here."""
    rng = np.random.default_rng(7)
    k = np.arange(-600, 600, dtype=np.float32) + np.float32(0.5)
    for scale in np.float32([0.037, 0.0213, 1.0, 3.0, 0.1, 1e-3, 7.3e-5, 1.7e-38, 3e-39, 1e-44, 2e37, 3e38]):
        base = (k * scale).astype(np.float32)
        near = [np.nextafter(base, np.float32(np.inf)), np.nextafter(base, np.float32(-np.inf)), base]
        for _ in range(4):
            near.append(np.nextafter(near[-3], np.float32(np.inf)))
            near.append(np.nextafter(near[-3], np.float32(-np.inf)))
        x = np.concatenate(near + [rng.normal(0, 300, 4001).astype(np.float32) * scale,
                                   (np.float32([1023.5, 1024.5, -1023.5, -1024.5, 4e6 + 0.5])
                                    * np.float64(scale)).astype(np.float32),
                                   np.float32([0, -0.0, 1e30, -1e30, np.inf, -np.inf, 1e-40, -1e-40])])
        x = x[np.isfinite(x) | np.isinf(x)].astype(np.float32)
        rng.shuffle(x)
        with np.errstate(all="ignore"):
            q = x / scale
        for zp in (0, 1, 128, 255):
            exp = np.clip(np.nan_to_num(np.rint(q), nan=-1.0) + zp, 0, 255).astype(np.uint8)
            np.testing.assert_array_equal(native.quantize_u8(x, float(scale), zp, isa=isa), exp,
                                          err_msg=f"scale={scale} zp={zp}")


def test_quantize_matches_onnxruntime_quantizelinear():
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    scale, zp = np.float32(0.0213), np.uint8(117)
    x = np.concatenate([rng.normal(0, 2, 4099), (np.arange(-200, 200) + 0.5) * 0.0213]).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])], "q",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [x.size])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [x.size])],
        [numpy_helper.from_array(np.array(scale), "s"), numpy_helper.from_array(np.array(zp), "z")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    exp = sess.run(None, {"x": x})[0]
    for isa in native.supported_isas():
        np.testing.assert_array_equal(native.quantize_u8(x, float(scale), int(zp), isa=isa), exp)


def test_bad_inputs_raise_clear_errors():
    w = np.ones((4, 8), np.int8)
    s = np.ones(4, np.float32)
    lin = native.PackedLinear(w, s)
    a = np.ones((2, 8), np.uint8)
    with pytest.raises(ValueError, match="a_zp"):
        lin.forward(a, 0.1, 300)
    with pytest.raises(ValueError, match="a_scale"):
        lin.forward(a, 0.0, 0)
    with pytest.raises(ValueError, match="a_scale"):
        lin.forward(a, float("nan"), 0)
    with pytest.raises(ValueError, match="residual"):
        lin.forward(a, 0.1, 0, residual=np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match="K=8"):
        lin.forward(np.ones((2, 9), np.uint8), 0.1, 0)
    with pytest.raises(ValueError, match="bias"):
        native.PackedLinear(w, s, bias=np.ones(3, np.float32))
    with pytest.raises(ValueError, match="not finite"):
        native.PackedLinear(w, np.array([1, np.inf, 1, 1], np.float32))
    with pytest.raises(ValueError, match="not supported"):
        native.PackedLinear(w, s, block="2x2")
    with pytest.raises(ValueError, match="scale"):
        native.quantize_u8(np.ones(3, np.float32), -1.0, 0)
    with pytest.raises(ValueError, match="zero.point"):
        native.quantize_u8(np.ones(3, np.float32), 1.0, 256)
    with pytest.raises(TypeError, match="float32"):
        native.quantize_u8(np.ones(3), 1.0, 0)
    with pytest.raises(TypeError, match="float32"):
        native.gelu(np.ones(3))


# ---- 7-bit weights (reduce_range): on AVX2 they take the exact vpmaddubsw kernel "avx2-s7" ----
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("block", KINDS)
def test_7bit_forward_matches_float64_and_reference(isa, block):
    rng = np.random.default_rng(23)
    m, n, k = 37, 45, 301
    w = (_weight(rng, n, k, block) // 2).astype(np.int8)  # [-64, 63]
    w_scale = rng.uniform(1e-4, 1e-3, n).astype(np.float32)
    bias = rng.normal(0, 1, n).astype(np.float32)
    a = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    lin = native.PackedLinear(w, w_scale, bias, block=block, isa=isa)
    assert lin.kernel == ("avx2-s7" if isa == "avx2" else isa)
    y = lin.forward(a, 0.02, 77, gelu=True)
    exp = _expected(a, w, 0.02, 77, w_scale, bias, gelu=True)
    np.testing.assert_allclose(y, exp, rtol=2e-6, atol=2e-6 * (np.abs(exp).max() + 1.0))
    ref = native.PackedLinear(w, w_scale, bias, block=block, isa="ref").forward(a, 0.02, 77, gelu=True)
    if isa != "ref":
        np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6 * (np.abs(exp).max() + 1.0))
    w[3, 5] = 65  # one 8-bit weight: the exact int16 kernel
    lin16 = native.PackedLinear(w, w_scale, bias, block=block, isa=isa)
    assert lin16.kernel == ("avx2-s16" if isa == "avx2" else isa)


@pytest.mark.parametrize("isa", ISAS)
def test_7bit_extreme_zero_point_correction_is_exact(isa):
    n, k = 5, 65536
    w = np.full((n, k), -64, np.int8)
    a = np.zeros((3, k), np.uint8)
    a[1] = 255
    for block in KINDS:
        lin = native.PackedLinear(w, np.ones(n, np.float32), block=block, isa=isa)
        y = lin.forward(a, 1.0, 255)
        np.testing.assert_allclose(y, _expected(a, w, 1.0, 255, np.ones(n, np.float32), None), rtol=1e-7)


@pytest.mark.parametrize("block", KINDS)
def test_7bit_one_and_two_threads_identical(block):
    rng = np.random.default_rng(29)
    w = (_weight(rng, 100, 64, block) // 2).astype(np.int8)
    lin = native.PackedLinear(w, np.full(100, 0.01, np.float32), np.zeros(100, np.float32), block=block)
    a = rng.integers(0, 256, size=(50, 64), dtype=np.uint8)
    with native.num_threads(1):
        y1 = lin.forward(a, 0.05, 128, gelu=True)
    with native.num_threads(2):
        y2 = lin.forward(a, 0.05, 128, gelu=True)
    np.testing.assert_array_equal(y1, y2)


# ---- u8 output: the epilogue quantizes the result for the next Linear (no float round trip) ----
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("block", KINDS)
@pytest.mark.parametrize("m,n,k", [(1, 3, 5), (17, 45, 301), (128, 96, 768)])
@pytest.mark.parametrize("gelu,res", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("bits", [8, 7])
def test_u8_output_is_bit_exact_quantize_of_float_output(isa, block, m, n, k, gelu, res, bits):
    rng = np.random.default_rng(m + n + k + 2 * gelu + res + bits)
    w = _weight(rng, n, k, block)
    if bits == 7:
        w = (w // 2).astype(np.int8)
    w_scale = (rng.uniform(1e-3, 2e-2, n) * 3.0 / np.sqrt(k * 1e4 * 0.0123 ** 2 + 1)).astype(np.float32)
    bias = rng.normal(0, 1, n).astype(np.float32)
    a = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    residual = rng.normal(0, 1, (m, n)).astype(np.float32) if res else None
    lin = native.PackedLinear(w, w_scale, bias, block=block, isa=isa)
    y = lin.forward(a, 0.0123, 101, gelu=gelu, residual=residual)
    for scale, zp in ((0.011, 0), (0.02, 128), (0.003, 255)):  # saturation on both ends too
        q = lin.forward(a, 0.0123, 101, gelu=gelu, residual=residual, out_quant=(scale, zp))
        assert q.dtype == np.uint8 and q.shape == (m, n)
        np.testing.assert_array_equal(q, native.quantize_u8(y, scale, zp, isa=isa))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("block", KINDS)
@pytest.mark.parametrize("m,n,k", [(1, 48, 5), (17, 96, 301), (70, 192, 768)])
def test_u8_segment_output_is_bit_exact_quantize_of_each_segment(isa, block, m, n, k):
    """The qkv GEMM's epilogue: three equal segments of channels, each with its own quantizer (saturation on both
    ends included), bit for bit the quantizer of the float output's segment."""
    rng = np.random.default_rng(m + n + k)
    w = _weight(rng, n, k, block)
    w_scale = (rng.uniform(1e-3, 2e-2, n) * 3.0 / np.sqrt(k * 1e4 * 0.0123 ** 2 + 1)).astype(np.float32)
    bias = rng.normal(0, 1, n).astype(np.float32)
    a = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    lin = native.PackedLinear(w, w_scale, bias, block=block, isa=isa)
    y = lin.forward(a, 0.0123, 101)
    segs = [(0.011, 0), (0.02, 128), (0.003, 255)]
    q = lin.forward_u8_segments(a, 0.0123, 101, segs)
    third = n // 3
    for i, (scale, zp) in enumerate(segs):
        cols = slice(i * third, (i + 1) * third)
        np.testing.assert_array_equal(q[:, cols], native.quantize_u8(np.ascontiguousarray(y[:, cols]), scale, zp,
                                                                     isa=isa))
    assert len(np.unique(q)) > 3


def test_u8_segment_output_bad_arguments_raise():
    lin = native.PackedLinear(np.ones((48, 4), np.int8), np.ones(48, np.float32), block="dense")
    a = np.zeros((2, 4), np.uint8)
    with pytest.raises((ValueError, native.NativeError), match="multiple of 16"):
        lin.forward_u8_segments(a, 1.0, 0, [(1.0, 0)] * 2)  # 24-channel segments
    with pytest.raises((ValueError, native.NativeError), match="segment 1"):
        lin.forward_u8_segments(a, 1.0, 0, [(1.0, 0), (0.0, 0), (1.0, 0)])
    with pytest.raises(ValueError, match="evenly"):
        lin.forward_u8_segments(a, 1.0, 0, [(1.0, 0)] * 5)


def test_u8_output_bad_quantization_raises():
    lin = native.PackedLinear(np.ones((4, 4), np.int8), np.ones(4, np.float32), block="dense")
    a = np.zeros((2, 4), np.uint8)
    for bad in ((0.0, 0), (float("nan"), 0), (1.0, 256), (1.0, -1)):
        with pytest.raises((ValueError, native.NativeError), match="output scale"):
            lin.forward(a, 1.0, 0, out_quant=bad)


@pytest.mark.parametrize("isa", [i for i in ISAS if i != "ref"])
def test_fast_gelu_matches_reference_kernel(isa):
    """AVX2 (8 lanes, vrcpps) and AVX-512 (16 lanes, vrcp14ps) GELU against the scalar reference, with
    lengths that leave every vector tail."""
    x = np.concatenate([np.linspace(-14, 14, 40001), [0.0, -0.0, 1e-30, -1e-30, 3e38, -3e38]]).astype(np.float32)
    ref = native.gelu(x, isa="ref").astype(np.float64)
    for n in (len(x), 1, 7, 15, 17, 33):
        y = native.gelu(x[:n], isa=isa).astype(np.float64)
        tol = 1e-6 * np.abs(ref[:n]) + 1e-7 * np.maximum(np.abs(x[:n].astype(np.float64)), 1e-6)
        assert np.all(np.abs(y - ref[:n]) <= tol)


@pytest.mark.parametrize("isa", ISAS)
def test_gelu_at_table_interval_edges(isa):
    """The AVX-512 GELU switches polynomial every 0.375 of |x| on [0, 6] (gelu_table.h): both sides of every
    switch, one float apart and of either sign, stay within tolerance of the float64 erf GELU; NaN stays NaN
    and +inf stays +inf (the clamp of |x| at 6 also holds in the product, so it is not inf - inf)."""
    torch = pytest.importorskip("torch")
    edges = np.arange(-6.0, 6.01, 0.375, dtype=np.float32)
    x = np.concatenate([edges, np.nextafter(edges, np.float32(-np.inf)), np.nextafter(edges, np.float32(np.inf)),
                        edges + np.float32(1e-3), edges - np.float32(1e-3)]).astype(np.float32)
    y = native.gelu(x, isa=isa).astype(np.float64)
    exp64 = torch.nn.functional.gelu(torch.from_numpy(x.astype(np.float64))).numpy()
    tol = 1e-6 * np.abs(exp64) + 1e-7 * np.maximum(np.abs(x.astype(np.float64)), 1e-6)
    assert np.all(np.abs(y - exp64) <= tol), np.max(np.abs(y - exp64) / tol)
    special = native.gelu(np.array([np.nan, np.inf, 1.0], np.float32), isa=isa)
    assert np.isnan(special[0]) and special[1] == np.inf


# ---- SmoothQuant: a per-channel multiplier (1/s) before the quantizer, as ONNX Mul -> QuantizeLinear ----
def _smooth_vector(rng, n):
    mul = np.exp(rng.normal(0, 1.2, n)).astype(np.float32)
    mul[:3] = np.float32([1.0, 0.0, -0.5])[: min(3, n)]  # identity, a dead channel, a sign flip: all finite
    return mul


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", [1, 7, 8, 15, 16, 17, 33, 384])
def test_quantize_with_multiplier_is_mul_then_quantize(isa, n):
    """fp32 x * mul rounded first, then the exact QuantizeLinear: every ISA equals the reference and numpy."""
    rng = np.random.default_rng(n)
    mul = _smooth_vector(rng, n)
    x = rng.normal(0, 4, (5, n)).astype(np.float32)
    x[0, : min(n, 4)] = np.float32([np.nan, np.inf, -np.inf, 1e30])[: min(n, 4)]
    for scale, zp in ((0.037, 0), (0.0213, 128), (0.003, 255)):
        q = native.quantize_u8(x, scale, zp, isa=isa, mul=mul)
        exp = native.quantize_u8((x * mul).astype(np.float32), scale, zp, isa="ref")
        np.testing.assert_array_equal(q, exp)
        np.testing.assert_array_equal(q, native.quantize_u8(x, scale, zp, isa="ref", mul=mul))
    assert native.quantize_u8(np.zeros((0, n), np.float32), 0.1, 7, isa=isa, mul=mul).shape == (0, n)
    with pytest.raises(ValueError, match="mul"):
        native.quantize_u8(x, 0.1, 7, isa=isa, mul=mul[:-1] if n > 1 else np.ones(2, np.float32))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("block", KINDS)
@pytest.mark.parametrize("m,n,k", [(1, 3, 5), (17, 45, 301), (70, 96, 128)])
@pytest.mark.parametrize("gelu,res", [(True, False), (False, True)])
def test_u8_output_with_multiplier_equals_reference_quantizer(isa, block, m, n, k, gelu, res):
    """Every fast epilogue (AVX2 tile / rows, AVX-512 strip / rows) multiplies the float result by mul[n] before
    quantizing: bit for bit the reference quantizer of this ISA's own float output."""
    rng = np.random.default_rng(3 * m + n + k + gelu)
    w = _weight(rng, n, k, block)
    w_scale = (rng.uniform(1e-3, 2e-2, n) / np.sqrt(k)).astype(np.float32)
    bias = rng.normal(0, 1, n).astype(np.float32)
    a = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    residual = rng.normal(0, 1, (m, n)).astype(np.float32) if res else None
    mul = _smooth_vector(rng, n)
    lin = native.PackedLinear(w, w_scale, bias, block=block, isa=isa)
    y = lin.forward(a, 0.0123, 101, gelu=gelu, residual=residual)
    for scale, zp in ((0.011, 0), (0.02, 128)):
        q = lin.forward(a, 0.0123, 101, gelu=gelu, residual=residual, out_quant=(scale, zp, mul))
        np.testing.assert_array_equal(q, native.quantize_u8(y, scale, zp, isa="ref", mul=mul))
    # no multiplier: unchanged behaviour
    np.testing.assert_array_equal(lin.forward(a, 0.0123, 101, gelu=gelu, residual=residual, out_quant=(0.02, 128)),
                                  native.quantize_u8(y, 0.02, 128, isa="ref"))
    with pytest.raises(ValueError, match="mul"):
        lin.forward(a, 0.0123, 101, out_quant=(0.02, 128, np.ones(n + 1, np.float32)))


# ---- two Linears chained through a uint8 intermediate (the engine's FFN) ----
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("block", KINDS)
@pytest.mark.parametrize("m,k,f,n", [(1, 32, 48, 16), (17, 48, 40, 24), (64, 64, 96, 32), (130, 96, 200, 40),
                                     (200, 32, 64, 16)])
@pytest.mark.parametrize("with_mul", [False, True])
def test_linear_chain_equals_two_calls(isa, block, m, k, f, n, with_mul):
    """hf_linear_chain (on 4x1 VNNI: the first epilogue writes the second's packed activations, partial token tiles
    and channel counts that are not multiples of 16 included) equals forward_u8 then forward, bit for bit."""
    rng = np.random.default_rng(m * 31 + k + f + n)
    w1, w2 = _weight(rng, f, k, block, 0.8), _weight(rng, n, f, block, 0.8)
    l1 = native.PackedLinear(w1, rng.uniform(0.001, 0.01, f).astype(np.float32), rng.normal(0, 1, f).astype(np.float32),
                             block=block, isa=isa)
    l2 = native.PackedLinear(w2, rng.uniform(0.001, 0.01, n).astype(np.float32), rng.normal(0, 1, n).astype(np.float32),
                             block=block, isa=isa)
    a = rng.integers(0, 256, (m, k), dtype=np.uint8)
    res = rng.normal(0, 1, (m, n)).astype(np.float32)
    mul = np.exp(rng.normal(0, 0.5, f)).astype(np.float32) if with_mul else None
    h = (0.02, 7, mul) if with_mul else (0.02, 7)
    got = native.linear_chain(l1, l2, a, 0.05, 9, h, gelu=True, residual=res)
    hq = l1.forward(a, 0.05, 9, gelu=True, out_quant=h)
    assert 5 < len(np.unique(hq)) and hq.max() == 255  # a real spread, clamp reached
    np.testing.assert_array_equal(got, l2.forward(hq, 0.02, 7, residual=res))
    np.testing.assert_array_equal(native.linear_chain(l1, l2, a, 0.05, 9, h, gelu=False),
                                  l2.forward(l1.forward(a, 0.05, 9, out_quant=h), 0.02, 7))
    with pytest.raises(ValueError, match="channels"):
        native.linear_chain(l2, l2, rng.integers(0, 256, (m, f), dtype=np.uint8), 0.05, 9, (0.02, 7)) if n != f else \
            native.linear_chain(l1, l1, a, 0.05, 9, (0.02, 7))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m", [1, 64, 130])
def test_linear_chain_of_4x4_tiles_equals_two_calls(isa, m):
    """Both Linears pruned in 4x4 tiles, packed 4x1: on AVX-512 VNNI the second reads quads interleaved from the
    activations the first's epilogue packed (quadify of packed input), equal to the unchained calls and to the
    reference ISA bit for bit."""
    rng = np.random.default_rng(m)
    k, f, n = 96, 200, 40

    def tiles(rows, cols):
        keep = rng.random((rows // 4, cols // 4)) >= 0.7
        w = rng.integers(-128, 128, size=(rows, cols), dtype=np.int8) | 1
        return w * np.repeat(np.repeat(keep, 4, 0), 4, 1).astype(np.int8)

    w1, w2 = tiles(f, k), tiles(n, f)
    s1, b1 = rng.uniform(0.001, 0.01, f).astype(np.float32), rng.normal(0, 1, f).astype(np.float32)
    s2, b2 = rng.uniform(0.001, 0.01, n).astype(np.float32), rng.normal(0, 1, n).astype(np.float32)
    a = rng.integers(0, 256, (m, k), dtype=np.uint8)
    res = rng.normal(0, 1, (m, n)).astype(np.float32)
    outs = {}
    for i in (isa, "ref"):
        l1 = native.PackedLinear(w1, s1, b1, block="4x1", isa=i)
        l2 = native.PackedLinear(w2, s2, b2, block="4x1", isa=i)
        got = native.linear_chain(l1, l2, a, 0.05, 9, (0.02, 7), gelu=True, residual=res)
        np.testing.assert_array_equal(got, l2.forward(l1.forward(a, 0.05, 9, gelu=True, out_quant=(0.02, 7)), 0.02, 7,
                                                      residual=res))
        outs[i] = got
    np.testing.assert_array_equal(outs[isa], outs["ref"])
