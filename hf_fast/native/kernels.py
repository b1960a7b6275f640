"""The kernels on numpy arrays: dense and block-sparse int8 GEMMs, packed Linear layers (fused epilogue, chains),
the quantizer, GELU, LayerNorm and attention (fp32 and int8). Each call checks its arguments, then the C side's
status through _check."""
from __future__ import annotations

import numpy as np

from hf_fast.native._loader import ISA_NAMES, _check, ffi, isa_id, lib

# block shapes the sparse kernels take ("4x1" = 4 output rows x 1 input column of W[out, in])
BLOCK_SHAPES = ("4x1", "1x4")


# ---------------------------------------------------------------- dense GEMM
def _as_2d(x: np.ndarray, dtype, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype).name}, got {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {x.shape}")
    return np.ascontiguousarray(x)


def _out_int32(out, m: int, n: int) -> np.ndarray:
    """The int32 [m, n] result array: `out` when given (checked), else a new one."""
    if out is None:
        return np.empty((m, n), dtype=np.int32)
    if not isinstance(out, np.ndarray) or out.dtype != np.int32 or out.shape != (m, n) or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous int32 array of shape {(m, n)}")
    return out


def int8_peak_probe(iters: int, isa: str = "auto") -> int:
    """Runs `iters` steps of the int8 peak loop (x86: 12 vpdpbusd zmm per step) and returns the MACs it did; the
    caller times it (benchmarks interleave it with their kernels, so both see the same machine)."""
    if iters <= 0:
        raise ValueError(f"iters must be > 0, got {iters}")
    macs = ffi.new("int64_t *")
    _check(lib.hf_int8_peak_probe(isa_id(isa), int(iters), macs), "int8_peak_probe")
    return int(macs[0])


def int8_peak_gmacs(isa: str = "auto", seconds: float = 0.2) -> float:
    """One core's int8 dot-product peak in GMAC/s on `isa` (x86: a vpdpbusd zmm throughput loop in C), timed with this
    thread's CPU time, so time the machine gives other processes does not count; the best of a few runs of about
    `seconds` / 4. Raises UnsupportedISAError where the ISA has no probe (ref, avx2, aarch64)."""
    import time

    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    macs = ffi.new("int64_t *")
    iters, best = 1 << 16, 0.0
    deadline = time.perf_counter() + seconds
    while True:
        t0 = time.thread_time()
        _check(lib.hf_int8_peak_probe(isa_id(isa), iters, macs), "int8_peak_probe")
        dt = time.thread_time() - t0
        if dt < seconds / 16:  # too short to time: grow the loop
            iters *= 4
            continue
        best = max(best, macs[0] / dt / 1e9)
        if time.perf_counter() > deadline:
            return best


class DenseWeight:
    """An int8 weight W[N, K] (PyTorch layout) packed for one ISA's dense kernel."""

    def __init__(self, w: np.ndarray, isa: str = "auto"):
        w = _as_2d(w, np.int8, "weight")
        if 0 in w.shape:
            raise ValueError(f"weight must be non-empty, got shape {w.shape}")
        n, k = w.shape
        out = ffi.new("hf_dense_w **")
        _check(lib.hf_dense_pack(isa_id(isa), n, k, ffi.cast("const int8_t *", w.ctypes.data), k, out),
               "dense_pack")
        self._w = ffi.gc(out[0], lib.hf_dense_free)
        self.shape = (n, k)
        self.isa = ISA_NAMES[lib.hf_dense_isa(self._w)]
        # kernel variant: "ref", "avx2-s16", "avx2-s7" (7-bit weights in [-64, 64]) or "avx512vnni"
        self.kernel = ffi.string(lib.hf_dense_kernel_name(self._w)).decode()
        self.nbytes = int(lib.hf_dense_nbytes(self._w))

    def matmul(self, a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """C[M, N] = A[M, K] (uint8) @ W.T, exact int32 (into `out`, a C-contiguous int32 [M, N], if given)."""
        a = _as_2d(a, np.uint8, "activations")
        n, k = self.shape
        if a.shape[1] != k:
            raise ValueError(f"activations have {a.shape[1]} columns, weight expects K={k}")
        c = _out_int32(out, a.shape[0], n)
        _check(lib.hf_dense_gemm(self._w, a.shape[0], ffi.cast("const uint8_t *", a.ctypes.data), k,
                                 ffi.cast("int32_t *", c.ctypes.data), n), "dense_gemm")
        return c


def gemm_u8s8s32(a: np.ndarray, w: np.ndarray, isa: str = "auto") -> np.ndarray:
    """Exact ``a @ w.T`` for uint8 ``a`` [M, K] and int8 ``w`` [N, K], on the chosen ISA's kernel."""
    return DenseWeight(w, isa=isa).matmul(a)


# ---------------------------------------------------------------- block-sparse GEMM and Linear
def _block_rc(block) -> tuple[int, int]:
    if block in ("dense", None):
        return 0, 0
    if isinstance(block, str):
        b = block.strip().lower()
        if b not in BLOCK_SHAPES:
            raise ValueError(f"block {block!r} is not supported by the sparse kernels; use one of "
                             f"{', '.join(BLOCK_SHAPES)} (or 'dense' for a PackedLinear)")
        return (4, 1) if b == "4x1" else (1, 4)
    if tuple(block) in ((4, 1), (1, 4)):
        return tuple(block)
    raise ValueError(f"block {block!r} is not supported; use '4x1' or '1x4'")


class SparseWeight:
    """An int8 weight W[N, K] (PyTorch layout) packed block-sparse ("4x1" or "1x4") for one ISA.

    All-zero blocks of ``w`` are found at pack time and skipped by the kernel; any weight is valid
    (a dense one simply keeps every block). ``nbytes`` counts values and indices.
    """

    def __init__(self, w: np.ndarray, block: str = "4x1", isa: str = "auto"):
        w = _as_2d(w, np.int8, "weight")
        if 0 in w.shape:
            raise ValueError(f"weight must be non-empty, got shape {w.shape}")
        br, bc = _block_rc(block)
        if br == 0:
            raise ValueError("SparseWeight needs a block shape '4x1' or '1x4'")
        n, k = w.shape
        out = ffi.new("hf_sparse_w **")
        _check(lib.hf_sparse_pack(isa_id(isa), br, bc, n, k, ffi.cast("const int8_t *", w.ctypes.data), k, out),
               "sparse_pack")
        self._w = ffi.gc(out[0], lib.hf_sparse_free)
        self.shape = (n, k)
        self.block = f"{br}x{bc}"
        self.isa = ISA_NAMES[lib.hf_sparse_isa(self._w)]
        # kernel variant: "ref", "avx2-s16", "avx2-s7" (7-bit weights in [-64, 64]) or "avx512vnni"
        self.kernel = ffi.string(lib.hf_sparse_kernel_name(self._w)).decode()
        self.nbytes = int(lib.hf_sparse_nbytes(self._w))
        # 4x1 groups run as pre-interleaved 4x4 tiles (AVX-512 VNNI: no unpack in the loop); 0 elsewhere
        self.quad_groups = int(lib.hf_sparse_quad_groups(self._w))
        kept, total = ffi.new("int64_t *"), ffi.new("int64_t *")
        _check(lib.hf_sparse_info(self._w, kept, total, ffi.NULL, ffi.NULL), "sparse_info")
        self.kept_blocks, self.total_blocks = int(kept[0]), int(total[0])

    @property
    def sparsity(self) -> float:
        """Fraction of blocks skipped."""
        return 1.0 - self.kept_blocks / self.total_blocks

    def matmul(self, a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """C[M, N] = A[M, K] (uint8) @ W.T, exact int32 (into `out`, a C-contiguous int32 [M, N], if given:
        no allocation, which keeps page faults out of timings)."""
        a = _as_2d(a, np.uint8, "activations")
        n, k = self.shape
        if a.shape[1] != k:
            raise ValueError(f"activations have {a.shape[1]} columns, weight expects K={k}")
        c = _out_int32(out, a.shape[0], n)
        _check(lib.hf_sparse_gemm(self._w, a.shape[0], ffi.cast("const uint8_t *", a.ctypes.data), k,
                                  ffi.cast("int32_t *", c.ctypes.data), n), "sparse_gemm")
        return c


def sparse_gemm_u8s8s32(a: np.ndarray, w: np.ndarray, block: str = "4x1", isa: str = "auto") -> np.ndarray:
    """Exact ``a @ w.T`` through the block-sparse kernel (zero blocks of ``w`` are skipped)."""
    return SparseWeight(w, block=block, isa=isa).matmul(a)


class PackedLinear:
    """An int8 Linear layer packed for the native engine, with the fused epilogue.

    ``forward(a, a_scale, a_zp)`` returns float32
    ``(a @ W.T - a_zp * W.sum(1)) * a_scale * w_scale + bias`` [then GELU] [then + residual].
    ``block`` is "4x1" / "1x4" (block-sparse kernels) or "dense".
    ``geglu=True`` (GeGLU's Linear, ModernBERT's Wi: rows [0, N/2) the GELU inputs, [N/2, N) the gates, N/2 a multiple
    of 4) packs it for the gated epilogue (hf_linear_pack_geglu): ``forward`` then takes ``out_quant`` and returns
    uint8 [M, N/2] = quantize_u8(GELU(y[:, :N/2]) * y[:, N/2:] [* mul]), y the float Linear output, bit for bit
    ``encoder_kernels.geglu_u8`` of that output on the same ISA; the fp32 [M, N] is never written.
    """

    def __init__(self, w: np.ndarray, w_scale, bias=None, block: str = "4x1", isa: str = "auto",
                 geglu: bool = False):
        w = _as_2d(w, np.int8, "weight")
        if 0 in w.shape:
            raise ValueError(f"weight must be non-empty, got shape {w.shape}")
        n, k = w.shape
        if geglu and n % 8:
            raise ValueError(f"geglu: the weight has {n} rows; GeGLU's Linear needs 2F rows with F a multiple of 4")
        w_scale = np.ascontiguousarray(np.broadcast_to(np.asarray(w_scale, dtype=np.float32), (n,)))
        if bias is not None:
            bias = np.asarray(bias, dtype=np.float32)
            if bias.shape != (n,):
                raise ValueError(f"bias must have shape ({n},), got {bias.shape}")
            bias = np.ascontiguousarray(bias)
        br, bc = _block_rc(block)
        out = ffi.new("hf_linear **")
        pack = lib.hf_linear_pack_geglu if geglu else lib.hf_linear_pack
        _check(pack(isa_id(isa), br, bc, n, k, ffi.cast("const int8_t *", w.ctypes.data), k, _fptr(w_scale),
                    _fptr(bias), out), "linear_pack")
        self._adopt(out[0])

    def _adopt(self, ptr) -> None:
        self._l = ffi.gc(ptr, lib.hf_linear_free)
        isa_out, br, bc = ffi.new("int *"), ffi.new("int *"), ffi.new("int *")
        n, k, kept, total = (ffi.new("int64_t *") for _ in range(4))
        _check(lib.hf_linear_info(self._l, isa_out, n, k, br, bc, kept, total), "linear_info")
        self.shape = (int(n[0]), int(k[0]))
        self.block = "dense" if br[0] == 0 else f"{br[0]}x{bc[0]}"
        self.isa = ISA_NAMES[isa_out[0]]
        # kernel variant: "ref", "avx2-s16", "avx2-s7" (7-bit weights in [-64, 64]) or "avx512vnni"
        self.kernel = ffi.string(lib.hf_linear_kernel_name(self._l)).decode()
        self.kept_blocks, self.total_blocks = int(kept[0]), int(total[0])
        self.nbytes = int(lib.hf_linear_nbytes(self._l))
        self.geglu = bool(lib.hf_linear_is_geglu(self._l))
        # 4x1 groups run as pre-interleaved 4x4 tiles (AVX-512 VNNI); 0 elsewhere and when dense
        self.quad_groups = int(lib.hf_linear_quad_groups(self._l))
        self.alternative, self.sparse_rows = None, None

    def set_alternative(self, alt: PackedLinear | None, rows: int) -> None:
        """`alt`: the same Linear packed for the other kernel (one of the two block-sparse, the other dense); calls of
        at least `rows` tokens run the block-sparse one, shorter calls the dense one (hf_linear_set_alternative).
        Outputs are the same bit for bit; this object keeps `alt` alive."""
        _check(lib.hf_linear_set_alternative(self._l, alt._l if alt is not None else ffi.NULL, int(rows)),
               "linear_set_alternative")
        self.alternative, self.sparse_rows = alt, (int(rows) if alt is not None else None)

    @property
    def nbytes_with_alternative(self) -> int:
        """Packed bytes of this Linear and of its alternative packing, if it has one."""
        return self.nbytes + (self.alternative.nbytes if self.alternative is not None else 0)

    def runs_sparse(self, tokens: int) -> bool:
        """Whether a call of `tokens` rows runs the block-sparse kernel (this packing's or its alternative's)."""
        return bool(lib.hf_linear_runs_sparse(self._l, int(tokens)))

    def to_bytes(self) -> bytes:
        """The packed layer as bytes for `from_bytes` (this library build and ISA only: see pack_cache.py)."""
        size = int(lib.hf_linear_serialized_size(self._l))
        buf = bytearray(size)
        _check(lib.hf_linear_serialize(self._l, ffi.from_buffer(buf), size), "linear_serialize")
        return bytes(buf)

    @classmethod
    def from_bytes(cls, data) -> PackedLinear:
        """Restore `to_bytes` output without packing again; a malformed buffer raises NativeError (HF_EFORMAT)."""
        out = ffi.new("hf_linear **")
        _check(lib.hf_linear_deserialize(ffi.from_buffer(data), len(data), out), "linear_deserialize")
        self = cls.__new__(cls)
        self._adopt(out[0])
        return self

    def forward(self, a: np.ndarray, a_scale: float, a_zp: int, gelu: bool = False,
                residual: np.ndarray | None = None, out_quant: tuple | None = None) -> np.ndarray:
        """float32 [M, N]; with ``out_quant=(scale, zero_point)`` the result is quantized to uint8 in the
        epilogue, bit for bit ``quantize_u8(forward(...), scale, zero_point)``; with ``out_quant=(scale,
        zero_point, mul)`` (mul float32 [N], SmoothQuant's 1/s) bit for bit ``quantize_u8(forward(...), scale,
        zero_point, mul=mul)``."""
        a = _as_2d(a, np.uint8, "activations")
        n, k = self.shape
        if a.shape[1] != k:
            raise ValueError(f"activations have {a.shape[1]} columns, weight expects K={k}")
        m = a.shape[0]
        if residual is not None:
            residual = _f32(residual, "residual", 2)
            if residual.shape != (m, n):
                raise ValueError(f"residual must have shape ({m}, {n}), got {residual.shape}")
        _check_act_zp(a_zp)
        flags = lib.HF_LINEAR_GELU if gelu else 0
        if self.geglu and (out_quant is None or gelu or residual is not None):
            raise ValueError("a Linear packed with geglu=True gives uint8 gated channels: pass out_quant, and no "
                             "gelu or residual")
        if out_quant is not None:
            width = n // 2 if self.geglu else n
            y_scale, y_zp, y_mul = _out_quant(out_quant, width, "out_quant")
            y = np.empty((m, width), dtype=np.uint8)
            _check(lib.hf_linear_forward_u8(self._l, m, ffi.cast("const uint8_t *", a.ctypes.data), k, float(a_scale),
                                            int(a_zp), ffi.cast("uint8_t *", y.ctypes.data), width, flags,
                                            _fptr(residual), n, float(y_scale), int(y_zp), _fptr(y_mul)),
                   "linear_forward_u8")
            return y
        y = np.empty((m, n), dtype=np.float32)
        _check(lib.hf_linear_forward(self._l, m, ffi.cast("const uint8_t *", a.ctypes.data), k, float(a_scale),
                                     int(a_zp), _fptr(y), n, flags, _fptr(residual), n), "linear_forward")
        return y

    __call__ = forward

    def forward_u8_segments(self, a: np.ndarray, a_scale: float, a_zp: int, segments) -> np.ndarray:
        """uint8 [M, N] with one output quantizer per equal segment of the N channels (``segments``: a list of
        (scale, zero point); N / len(segments) must be a multiple of 16): bit for bit ``quantize_u8`` of each
        segment of ``forward(a, a_scale, a_zp)``. The engine writes q, k and v from one qkv GEMM this way."""
        a = _as_2d(a, np.uint8, "activations")
        n, k = self.shape
        if a.shape[1] != k:
            raise ValueError(f"activations have {a.shape[1]} columns, weight expects K={k}")
        if not isinstance(a_zp, (int, np.integer)) or isinstance(a_zp, bool) or not 0 <= a_zp <= 255:
            raise ValueError(f"a_zp must be an int in [0, 255], got {a_zp!r}")
        segments = list(segments)
        if not segments or n % len(segments):
            raise ValueError(f"{len(segments)} segments do not split N={n} evenly")
        scales = np.ascontiguousarray([float(sc) for sc, _ in segments], dtype=np.float32)
        zps = np.ascontiguousarray([int(z) for _, z in segments], dtype=np.int32)
        m = a.shape[0]
        y = np.empty((m, n), dtype=np.uint8)
        _check(lib.hf_linear_forward_u8_seg(self._l, m, ffi.cast("const uint8_t *", a.ctypes.data), k, float(a_scale),
                                            int(a_zp), ffi.cast("uint8_t *", y.ctypes.data), n, n // len(segments),
                                            _fptr(scales), ffi.cast("const int32_t *", zps.ctypes.data)),
               "linear_forward_u8_seg")
        return y


def linear_chain(first: PackedLinear, second: PackedLinear, a: np.ndarray, a_scale: float, a_zp: int,
                 h_quant: tuple, gelu: bool = False, residual: np.ndarray | None = None) -> np.ndarray:
    """float32 ``second(Q(first(a)))`` [+ residual], Q = ``h_quant`` = (scale, zero point[, mul]) (hf_linear_chain:
    the engine's FFN). Bit for bit ``second.forward(first.forward(a, ..., out_quant=h_quant), scale, zero point,
    residual=residual)``; when both are 4x1 on AVX-512 VNNI the intermediate never exists row-major."""
    a = _as_2d(a, np.uint8, "activations")
    (n1, k1), (n2, k2) = first.shape, second.shape
    n1 = n1 // 2 if first.geglu else n1  # GeGLU's Linear gives N/2 gated channels
    if n1 != k2:
        raise ValueError(f"the first linear gives {n1} channels, the second takes K={k2}")
    if a.shape[1] != k1:
        raise ValueError(f"activations have {a.shape[1]} columns, the first linear expects K={k1}")
    _check_act_zp(a_zp)
    h_scale, h_zp, h_mul = _out_quant(h_quant, n1, "h_quant")
    m = a.shape[0]
    if residual is not None:
        residual = _f32(residual, "residual", 2)
        if residual.shape != (m, n2):
            raise ValueError(f"residual must have shape ({m}, {n2}), got {residual.shape}")
    nbytes = max(1, int(lib.hf_linear_chain_scratch_bytes(first._l, second._l, m)))
    raw = np.empty(nbytes + 64, np.uint8)
    hbuf = raw[(-raw.ctypes.data) % 64:][:nbytes]  # 64-byte aligned, as the packed activations need
    y = np.empty((m, n2), np.float32)
    _check(lib.hf_linear_chain(first._l, second._l, m, ffi.cast("const uint8_t *", a.ctypes.data), k1, float(a_scale),
                               int(a_zp), lib.HF_LINEAR_GELU if gelu else 0, float(h_scale), int(h_zp), _fptr(h_mul),
                               ffi.cast("uint8_t *", hbuf.ctypes.data), _fptr(y), n2, _fptr(residual), n2),
           "linear_chain")
    return y


def _check_act_zp(a_zp) -> None:
    if not isinstance(a_zp, (int, np.integer)) or isinstance(a_zp, bool):
        raise TypeError(f"a_zp must be an int, got {type(a_zp).__name__}")
    if not 0 <= a_zp <= 255:
        raise ValueError(f"a_zp must lie in [0, 255] (uint8 activations), got {a_zp}")


def _out_quant(q, n: int, what: str):
    """(scale, zero point[, mul]) of a uint8 output quantizer -> (scale, int zero point, float32 [n] mul or None);
    the scale and the zero point's range are checked by the C side."""
    scale, zp, mul = (tuple(q) + (None,))[:3]
    if not isinstance(zp, (int, np.integer)) or isinstance(zp, bool):
        raise TypeError(f"{what} zero point must be an int, got {type(zp).__name__}")
    return scale, zp, None if mul is None else _mul_vector(mul, n)


def _mul_vector(mul, n: int) -> np.ndarray:
    mul = np.asarray(mul)
    if mul.dtype != np.float32 or mul.shape != (n,):
        raise ValueError(f"mul must be a float32 vector of shape ({n},), got {mul.dtype} {mul.shape}")
    return np.ascontiguousarray(mul)


def quantize_u8(x: np.ndarray, scale: float, zero_point: int, isa: str = "auto", mul=None) -> np.ndarray:
    """ONNX QuantizeLinear to uint8: saturate(round_half_even(x / scale) + zero_point). With ``mul`` (float32
    [x.shape[-1]], SmoothQuant's 1/s) the input is first ``x * mul`` in float32, as an ONNX Mul before the
    QuantizeLinear."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32:
        raise TypeError("x must be a float32 numpy array")
    if not isinstance(zero_point, (int, np.integer)) or isinstance(zero_point, bool):
        raise TypeError(f"zero_point must be an int, got {type(zero_point).__name__}")
    if not 0 <= zero_point <= 255:
        raise ValueError(f"zero_point must lie in [0, 255], got {zero_point}")
    xc = np.ascontiguousarray(x)
    y = np.empty(x.shape, dtype=np.uint8)
    if mul is not None:
        if xc.ndim == 0:
            raise ValueError("mul needs x with a last (channel) axis")
        n = xc.shape[-1]
        mul = _mul_vector(mul, n)
        _check(lib.hf_quantize_u8_mul(isa_id(isa), xc.size // n if n else 0, n, _fptr(xc), _fptr(mul), float(scale),
                                      int(zero_point), ffi.cast("uint8_t *", y.ctypes.data)), "quantize_u8_mul")
        return y
    _check(lib.hf_quantize_u8(isa_id(isa), xc.size, _fptr(xc), float(scale), int(zero_point),
                              ffi.cast("uint8_t *", y.ctypes.data)), "quantize_u8")
    return y


def gelu(x: np.ndarray, isa: str = "auto") -> np.ndarray:
    """0.5 x (1 + erf(x / sqrt 2)) on float32."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32:
        raise TypeError("x must be a float32 numpy array")
    xc = np.ascontiguousarray(x)
    y = np.empty_like(xc)
    _check(lib.hf_gelu(isa_id(isa), xc.size, _fptr(xc), _fptr(y)), "gelu")
    return y.reshape(x.shape)  # ascontiguousarray turns a 0-d array into 1-d


# ---------------------------------------------------------------- fp32 transformer ops
def _f32(x, name: str, ndim: int) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.dtype != np.float32:
        raise TypeError(f"{name} must be a float32 numpy array")
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")
    return np.ascontiguousarray(x)


def _fptr(x):
    return ffi.cast("float *", x.ctypes.data) if x is not None else ffi.NULL


def layernorm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-12,
              residual: np.ndarray | None = None, isa: str = "auto") -> np.ndarray:
    """LayerNorm(x + residual) * gamma + beta over the last axis of a [T, H] float32 array."""
    x = _f32(x, "x", 2)
    t, h = x.shape
    gamma, beta = _f32(gamma, "gamma", 1), _f32(beta, "beta", 1)
    if gamma.shape != (h,) or beta.shape != (h,):
        raise ValueError(f"gamma/beta must have shape ({h},)")
    if residual is not None:
        residual = _f32(residual, "residual", 2)
        if residual.shape != x.shape:
            raise ValueError(f"residual shape {residual.shape} != x shape {x.shape}")
    y = np.empty_like(x)
    _check(lib.hf_layernorm(isa_id(isa), t, h, _fptr(x), _fptr(residual), _fptr(gamma), _fptr(beta),
                            float(eps), _fptr(y)), "layernorm")
    return y


def _attention_args(q, k, v, heads: int, mask, dtype=np.float32):
    """Checked q/k/v [S, heads*d] (float32, or uint8 with dtype=np.uint8), (S, hidden, d) and the int64 key mask
    (or None)."""
    if dtype == np.float32:
        q, k, v = (_f32(a, n, 2) for a, n in ((q, "q"), (k, "k"), (v, "v")))
    else:
        q, k, v = (_as_2d(a, dtype, n) for a, n in ((q, "q"), (k, "k"), (v, "v")))
    if not (q.shape == k.shape == v.shape):
        raise ValueError(f"q/k/v shapes differ: {q.shape}, {k.shape}, {v.shape}")
    s, hd = q.shape
    if heads <= 0 or hd % heads:
        raise ValueError(f"hidden size {hd} is not divisible by heads={heads}")
    return q, k, v, (s, hd, hd // heads), _key_mask(mask, s)


def _key_mask(mask, s: int):
    """The int64 key mask [S] (nonzero = attend), or None."""
    if mask is None:
        return None
    mask = np.ascontiguousarray(mask, dtype=np.int64)
    if mask.shape != (s,):
        raise ValueError(f"mask must have shape ({s},), got {mask.shape}")
    return mask


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int, mask: np.ndarray | None = None,
              scale: float | None = None, isa: str = "auto") -> np.ndarray:
    """softmax(q k^T * scale + mask) v per head for one sequence; q/k/v are [S, heads*d] float32."""
    return _run_attention(lib.hf_attention, "attention", q, k, v, heads, mask, scale, isa)


def _run_attention(c_fn, name: str, q, k, v, heads, mask, scale, isa) -> np.ndarray:
    """One of the C attention entry points (hf_attention, _bf16, _dq8: the same arguments) on checked inputs."""
    q, k, v, (s, hd, d), mask = _attention_args(q, k, v, heads, mask)
    out = np.empty_like(q)
    _check(c_fn(isa_id(isa), s, heads, d, _fptr(q), _fptr(k), _fptr(v), hd,
                ffi.cast("int64_t *", mask.ctypes.data) if mask is not None else ffi.NULL,
                float(1.0 / np.sqrt(d) if scale is None else scale), _fptr(out), hd), name)
    return out


def attention_bf16_kernel(head_dim: int, isa: str = "auto") -> str:
    """The bf16 attention kernel `isa` runs for head size `head_dim`: "avx512bf16" (CPUs with AVX512_BF16), "ref",
    or "" where there is none (AVX2, or a CPU without AVX512_BF16: the engine runs fp32 attention)."""
    return ffi.string(lib.hf_attention_bf16_kernel(isa_id(isa), int(head_dim))).decode()


def bf16_attention_isa(head_dim: int = 64) -> str | None:
    """The ISA whose SIMD bf16 attention kernel this CPU runs for `head_dim` (AVX512_BF16), whatever HF_FAST_ISA
    holds the engine to; None where there is none."""
    from hf_fast.native._loader import supported_isas

    return next((n for n in supported_isas() if n != "ref" and attention_bf16_kernel(head_dim, n) not in ("", "ref")),
                None)


def bf16_attention_hardware(head_dim: int = 64) -> bool:
    """Whether this CPU has a SIMD bf16 attention kernel for `head_dim` (AVX512_BF16); attention="auto" also asks
    that it be the faster one (bf16_attention_pays)."""
    return bf16_attention_isa(head_dim) is not None


def attention_dq8_kernel(head_dim: int, isa: str = "auto") -> str:
    """The dynamic int8 attention kernel `isa` runs for head size `head_dim`: "avx512vnni" (d % 16 == 0), "ref", or
    "" where there is none (AVX2: the engine refuses attention="int8-dynamic")."""
    return ffi.string(lib.hf_attention_dq8_kernel(isa_id(isa), int(head_dim))).decode()


def attention_dq8(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int, mask: np.ndarray | None = None,
                  scale: float | None = None, isa: str = "auto") -> np.ndarray:
    """`attention` with dynamic int8 scales (hf_attention_dq8): q, k int8 per token, v int8 per channel, exact int32
    q k^T, fp32 softmax, int16 weights, exact int32 p v. NativeError (unsupported) where `attention_dq8_kernel` is
    ""."""
    return _run_attention(lib.hf_attention_dq8, "attention_dq8", q, k, v, heads, mask, scale, isa)


def attention_bf16(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int, mask: np.ndarray | None = None,
                   scale: float | None = None, isa: str = "auto") -> np.ndarray:
    """`attention` with bf16 products (q, k, v and the probabilities rounded to bf16 for q k^T and p v, fp32 sums,
    fp32 softmax; hf_attention_bf16). NativeError (unsupported) where `attention_bf16_kernel` is ""."""
    return _run_attention(lib.hf_attention_bf16, "attention_bf16", q, k, v, heads, mask, scale, isa)


def attention_bf16_ex(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int, mask: np.ndarray | None = None,
                      rel: np.ndarray | None = None, window: int | None = None, scale: float | None = None,
                      isa: str = "auto") -> np.ndarray:
    """`attention_bf16` with MPNet's relative-position bias (``rel`` as `relative_position_bias` returns it,
    [heads, 2S - 1], added as `attention_relbias` does) and / or ModernBERT's sliding window (``window`` >= 0: keys
    |i - j| <= window only, as `attention_window`; hf_attention_bf16_ex). NativeError (unsupported) where
    `attention_bf16_kernel` is ""."""
    q, k, v, (s, hd, d), mask = _attention_args(q, k, v, heads, mask)
    if rel is not None:
        rel = _f32(rel, "rel", 2)
        if rel.shape != (heads, 2 * s - 1):
            raise ValueError(f"rel must have shape ({heads}, {2 * s - 1}), got {rel.shape}")
    if window is not None and (isinstance(window, bool) or int(window) != window or window < 0):
        raise ValueError(f"window must be a non-negative int or None, got {window!r}")
    out = np.empty_like(q)
    _check(lib.hf_attention_bf16_ex(isa_id(isa), s, heads, d, _fptr(q), _fptr(k), _fptr(v), hd,
                                    ffi.cast("int64_t *", mask.ctypes.data) if mask is not None else ffi.NULL,
                                    _fptr(rel) if rel is not None else ffi.NULL, -1 if window is None else int(window),
                                    float(1.0 / np.sqrt(d) if scale is None else scale), _fptr(out), hd),
           "attention_bf16_ex")
    return out


def relative_position_bias(seq_len: int, table: np.ndarray, max_distance: int) -> np.ndarray:
    """MPNet / T5 relative-position bias of one sequence length: [heads, 2 * seq_len - 1] float32, entry r + S - 1 the
    table row of the bucket of key - query offset r (table: [buckets, heads]; hf_relative_position_bias)."""
    table = _f32(table, "table", 2)
    buckets, heads = table.shape
    out = np.empty((heads, 2 * int(seq_len) - 1), np.float32)
    _check(lib.hf_relative_position_bias(int(seq_len), heads, _fptr(table), buckets, int(max_distance), _fptr(out)),
           "relative_position_bias")
    return out


def attention_relbias(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int, rel: np.ndarray,
                      mask: np.ndarray | None = None, scale: float | None = None, isa: str = "auto") -> np.ndarray:
    """`attention` with a relative-position bias: score (i, j) of head h gets rel[h, j - i + S - 1] (rel as
    `relative_position_bias` returns it, [heads, 2S - 1])."""
    q, k, v, (s, hd, d), mask = _attention_args(q, k, v, heads, mask)
    rel = _f32(rel, "rel", 2)
    if rel.shape != (heads, 2 * s - 1):
        raise ValueError(f"rel must have shape ({heads}, {2 * s - 1}), got {rel.shape}")
    out = np.empty_like(q)
    _check(lib.hf_attention_relbias(isa_id(isa), s, heads, d, _fptr(q), _fptr(k), _fptr(v), hd,
                                    ffi.cast("int64_t *", mask.ctypes.data) if mask is not None else ffi.NULL,
                                    _fptr(rel), float(1.0 / np.sqrt(d) if scale is None else scale), _fptr(out), hd),
           "attention_relbias")
    return out


def attention_q8(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int, quant, mask: np.ndarray | None = None,
                 scale: float | None = None, isa: str = "auto", out_quant: tuple | None = None,
                 rel: np.ndarray | None = None) -> np.ndarray:
    """The int8 attention of a QDQ graph (q k^T and p v on uint8 values, exact int32 sums; hf_attention_q8 in
    native/include/hf_fast.h) per head for one sequence. `quant` maps "q", "k", "p", "v" to (scale, zero point).
    q/k/v are float32 [S, heads*d], quantized here with those parameters, or uint8 arrays already quantized
    (hf_attention_q8_u8: what the engine runs on its qkv GEMM's uint8 output). With uint8 inputs,
    ``out_quant=(scale, zero_point[, mul])`` returns the context as uint8, bit for bit ``quantize_u8(attention_q8(...),
    scale, zero_point, mul=mul)`` (hf_attention_q8_u8_quant: how the engine feeds attn_out). ``rel`` (uint8 inputs,
    float output): the relative-position bias of `attention_relbias` (hf_attention_q8_u8_relbias)."""
    if set(quant) != {"q", "k", "p", "v"}:
        raise ValueError(f"quant must give (scale, zero point) for q, k, p and v, got keys {sorted(quant)}")
    aq = attn_quant_struct(quant)
    dtypes = {np.asarray(a).dtype for a in (q, k, v)}
    if np.dtype(np.uint8) in dtypes and len(dtypes) > 1:
        raise TypeError(f"q, k and v must all be float32 or all uint8, got {sorted(str(d) for d in dtypes)}")
    u8 = dtypes == {np.dtype(np.uint8)}
    if out_quant is not None and not u8:
        raise TypeError("out_quant needs uint8 q, k and v (the engine's path)")
    q, k, v, (s, hd, d), mask = _attention_args(q, k, v, heads, mask, np.uint8 if u8 else np.float32)
    head = (hd, ffi.cast("int64_t *", mask.ctypes.data) if mask is not None else ffi.NULL,
            float(1.0 / np.sqrt(d) if scale is None else scale), aq)
    if out_quant is not None:
        o_scale, o_zp, o_mul = _out_quant(out_quant, hd, "out_quant")
        out8 = np.empty((s, hd), np.uint8)
        u8p = (ffi.cast("const uint8_t *", a.ctypes.data) for a in (q, k, v))
        _check(lib.hf_attention_q8_u8_quant(isa_id(isa), s, heads, d, *u8p, *head, float(o_scale), int(o_zp),
                                            _fptr(o_mul), ffi.cast("uint8_t *", out8.ctypes.data), hd),
               "attention_q8_u8_quant")
        return out8
    out = np.empty((s, hd), np.float32)
    tail = head + (_fptr(out), hd)
    if rel is not None:
        rel = _f32(rel, "rel", 2)
        if not u8 or out_quant is not None or rel.shape != (heads, 2 * s - 1):
            raise ValueError(f"rel needs uint8 q, k, v, a float output and shape ({heads}, {2 * s - 1}), got "
                             f"{rel.shape}")
        u8p = (ffi.cast("const uint8_t *", a.ctypes.data) for a in (q, k, v))
        _check(lib.hf_attention_q8_u8_relbias(isa_id(isa), s, heads, d, *u8p, head[0], head[1], _fptr(rel),
                                              *head[2:], *tail[4:]), "attention_q8_u8_relbias")
        return out
    if u8:
        u8p = (ffi.cast("const uint8_t *", a.ctypes.data) for a in (q, k, v))
        _check(lib.hf_attention_q8_u8(isa_id(isa), s, heads, d, *u8p, *tail), "attention_q8_u8")
    else:
        _check(lib.hf_attention_q8(isa_id(isa), s, heads, d, _fptr(q), _fptr(k), _fptr(v), *tail), "attention_q8")
    return out


def attn_quant_struct(quant):
    """A new hf_attn_quant from {"q" | "k" | "p" | "v": (scale, zero point)} (checked by the C side)."""
    aq = ffi.new("hf_attn_quant *")
    for name in "qkpv":
        sc, zp = quant[name]
        setattr(aq, f"{name}_scale", float(sc))
        setattr(aq, f"{name}_zp", int(zp))
    return aq
