"""CPU detection, the HF_FAST_ISA override and which kernel each op runs.

Each ISA is forced through HF_FAST_ISA in a fresh process: the kernel the C dispatcher reports for every op
(hf_op_kernel, derived from the function it picks) must be that ISA's, and every op's result on that process's
default kernels must equal the scalar reference's, bit for bit on the integer paths."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _dispatch_cases import F32_HEADS, run_ops

from hf_fast import native

TESTS = Path(__file__).resolve().parent

# what each forced ISA must run (native_info()["kernels"]: the GEMMs for 8-bit and for 7-bit weights, attention
# for head size 64)
OPS_GEMM = ("dense_u8s8s32_gemm", "sparse_u8s8s32_gemm")
OPS_VECTOR = ("linear_epilogue", "quantize_u8", "gelu", "layernorm", "attention_f32")
EXPECTED = {
    "ref": dict.fromkeys(native.KERNEL_OPS, "ref"),
    "avx2": {**{op: "avx2-s16" for op in OPS_GEMM}, **{f"{op}_7bit": "avx2-s7" for op in OPS_GEMM},
             **dict.fromkeys(OPS_VECTOR, "avx2"), "attention_int8": "avx2"},
    "avx512vnni": {**{op: "avx512vnni" for op in OPS_GEMM}, **{f"{op}_7bit": "avx512vnni" for op in OPS_GEMM},
                   **dict.fromkeys(OPS_VECTOR, "avx512"), "attention_int8": "avx512vnni"},
}
# head sizes the SIMD kernels do not take: fp32 d % 8 -> the reference, d % 16 == 8 on AVX-512 -> the AVX2 kernel;
# int8 d % 16 -> the reference
EXPECTED_BY_HEAD = {
    "ref": {d: ("ref", "ref") for d in F32_HEADS},
    "avx2": {64: ("avx2", "avx2"), 16: ("avx2", "avx2"), 24: ("avx2", "ref"), 20: ("ref", "ref")},
    "avx512vnni": {64: ("avx512", "avx512vnni"), 16: ("avx512", "avx512vnni"), 24: ("avx2", "ref"),
                   20: ("ref", "ref")},
}
# the results of run_ops that need not be bit-exact: vector exp / erf / rsqrt approximations (GELU inside the
# Linear's epilogue included); everything else (GEMMs, the epilogue's single fmaf, the quantizers, int8 attention
# on probabilities that cannot round differently) must be
APPROX = {"gelu", "layernorm", *(f"attention_f32_d{d}" for d in F32_HEADS)}

_CHILD = """
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
from _dispatch_cases import F32_HEADS, run_ops
from hf_fast import native
out, kernels = run_ops()
np.savez({npz!r}, **out)
by_head = {{d: (native.op_kernel("attention_f32", head_size=d), native.op_kernel("attention_int8", head_size=d))
           for d in F32_HEADS}}
print(json.dumps({{"info": native.native_info(), "weights": kernels, "by_head": by_head}}))
"""


def _run_forced(isa: str, tmp_path: Path) -> tuple[dict, dict]:
    npz = tmp_path / "out.npz"
    env = dict(os.environ, HF_FAST_ISA=isa)
    r = subprocess.run([sys.executable, "-c", _CHILD.format(tests=str(TESTS), npz=str(npz))], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    with np.load(npz) as z:
        return json.loads(r.stdout.strip().splitlines()[-1]), dict(z)


@pytest.fixture(scope="module")
def reference():
    return run_ops("ref")


@pytest.mark.parametrize("isa", native.BUILT_ISA_NAMES)
def test_forced_isa_runs_its_kernels_and_matches_the_reference(isa, reference, tmp_path):
    report, got = _run_forced(isa, tmp_path)
    info = report["info"]
    assert info["isa"] == isa and info["isa_forced_by_env"] == isa
    assert info["kernels"] == EXPECTED[isa]
    assert {int(d): tuple(v) for d, v in report["by_head"].items()} == EXPECTED_BY_HEAD[isa]
    # the kernel each packed weight runs: 7-bit weights take AVX2's vpmaddubsw kernel
    ref_out, _ = reference
    for name, kernel in report["weights"].items():
        assert kernel == EXPECTED[isa]["dense_u8s8s32_gemm_7bit" if "7bit" in name else "dense_u8s8s32_gemm"], name
    assert set(got) == set(ref_out)
    for name, want in ref_out.items():
        if name == "attention_q8_random_step":
            continue
        if name == "attention_q8_random":  # the int sums are exact; a probability at a rounding boundary may not be
            err = np.abs(got[name].astype(np.float64) - want)
            assert err.max() <= 2 * float(ref_out["attention_q8_random_step"]), name
            assert np.mean(err == 0) > 0.99, name
        elif name in APPROX or name.endswith("_gelu_f32"):
            np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=2e-6, err_msg=name)
        else:
            assert got[name].dtype == want.dtype, name
            np.testing.assert_array_equal(got[name], want, err_msg=name)


def test_cases_are_not_trivial(reference):
    """The bit-exact comparisons above compare real spreads of values, not constants."""
    out, _ = reference
    for name, v in out.items():
        if v.ndim:
            assert len(np.unique(v)) > 20, name
    assert out["linear_dense_8bit_u8"].max() == 255 and out["linear_dense_8bit_u8"].min() == 0  # clamps reached


def test_auto_picks_the_best_supported_isa():
    with native.use_isa("auto"):
        assert native.active_isa() == native.supported_isas()[-1]
        assert native.op_kernel("layernorm") == native.op_kernel("layernorm", isa=native.supported_isas()[-1])


def test_op_kernel_bad_arguments():
    with pytest.raises(ValueError, match="unknown op"):
        native.op_kernel("conv2d")
    with pytest.raises(ValueError, match="unknown ISA"):
        native.op_kernel("gelu", isa="sse9")
    missing = [i for i in native.BUILT_ISA_NAMES if i not in native.supported_isas()]
    if missing:
        with pytest.raises(native.UnsupportedISAError):
            native.op_kernel("gelu", isa=missing[0])


def _info_with_env(value):
    env = dict(os.environ, HF_FAST_ISA=value)
    code = "import json, hf_fast; print(json.dumps(hf_fast.native_info()))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


def test_env_var_with_unknown_name_fails_clearly():
    r = _info_with_env("sse9")
    assert r.returncode != 0
    assert "HF_FAST_ISA='sse9'" in r.stderr


def test_env_var_with_an_unsupported_isa_fails_clearly():
    missing = [i for i in native.BUILT_ISA_NAMES if i not in native.supported_isas()]
    if not missing:
        pytest.skip("this CPU supports every ISA")
    r = _info_with_env(missing[0])
    assert r.returncode != 0
    assert f"HF_FAST_ISA='{missing[0]}' but this CPU does not support it" in r.stderr


def test_use_isa_restores_previous_choice():
    before = native.active_isa()
    with native.use_isa("ref"):
        assert native.active_isa() == "ref"
        assert native.op_kernel("attention_int8") == "ref"
    assert native.active_isa() == before
