"""native/ per CPU architecture: which sources each machine compiles, that ISA-specific code stays in its arch folder,
and that the dispatcher is the one place that knows the ISAs (an unknown ISA id is an error, never a default table).
`make native-aarch64-compile` (run by `make test`) cross-compiles and links the aarch64 selection; `make test-aarch64`
runs its kernels under qemu."""
import re
from pathlib import Path

import numpy as np
import pytest
from _script_loader import load_script

from hf_fast import native
from hf_fast.models.spec import EngineLayer
from hf_fast.native import ffi, lib
from hf_fast.runtime.engine import model_desc

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "native" / "src"


def _build_native():
    return load_script(REPO / "native" / "build_native.py", "_build_native_h10")


@pytest.fixture(scope="module")
def bn():
    return _build_native()


def test_each_machine_compiles_its_arch_folder_and_the_shared_sources(bn):
    x86, arm, other = set(bn.sources("x86_64")), set(bn.sources("aarch64")), set(bn.sources("riscv64"))
    assert bn.sources("AMD64") == bn.sources("x86_64")
    assert bn.sources("arm64") == bn.sources("aarch64")
    shared = {str(p.relative_to(REPO)) for p in [*SRC.glob("*.c"), *(SRC / "ref").glob("*.c")]}
    assert shared and shared <= x86 and shared <= arm and shared <= other
    assert x86 - shared == {str(p.relative_to(REPO)) for p in (SRC / "arch" / "x86").glob("*.c")}
    assert arm - shared == {str(p.relative_to(REPO)) for p in (SRC / "arch" / "arm").glob("*.c")}
    assert other - shared == {str(p.relative_to(REPO)) for p in (SRC / "arch" / "generic").glob("*.c")}
    # every C file belongs to one of the selections: none is silently left out of every build
    assert x86 | arm | other == {str(p.relative_to(REPO)) for p in SRC.rglob("*.c")}


def _code(path: Path) -> str:
    return re.sub(r"/\*.*?\*/", "", path.read_text(), flags=re.S)


def test_x86_code_lives_in_arch_x86():
    """cpuid / xgetbv, x86 intrinsics and target(...) attributes only under arch/x86/ (immintrin.h elsewhere only
    behind an x86 #if): what lets the other files compile on aarch64."""
    bad = []
    for f in SRC.rglob("*.[ch]"):
        if (SRC / "arch" / "x86") in f.parents:
            continue
        # the branch of an `#if defined(__x86_64__) ...` up to its #elif / #else / #endif is x86's own
        code = re.sub(r"#if defined\(__x86_64__\).*?\n(?=#(elif|else|endif))", "", _code(f), flags=re.S)
        for pat in (r"cpuid", r"xgetbv", r"__attribute__\(\(target", r"_mm\d*_\w+\(", r"__m\d+i?\b", r"immintrin"):
            if re.search(pat, code):
                bad.append(f"{f.relative_to(SRC)}: {pat}")
    assert not bad, bad


def test_isa_names_are_spelled_only_in_the_dispatcher():
    """Outside dispatch.c and the architecture folders no C file names an ISA or an x86 kernel, and the Python side
    takes the names from the dispatcher."""
    bad = []
    for f in SRC.rglob("*.c"):
        if f.name == "dispatch.c" or (SRC / "arch") in f.parents:
            continue
        code = _code(f)
        for pat in (r'"(avx2|avx512\w*)"', r"HF_ISA_AVX", r"hf_\w+_avx\w*"):
            if re.search(pat, code):
                bad.append(f"{f.relative_to(SRC)}: {re.search(pat, code).group(0)}")
    assert not bad, bad
    assert native.ISA_NAMES == tuple(ffi.string(lib.hf_isa_name(i)).decode() for i in range(lib.HF_ISA_COUNT))


@pytest.mark.parametrize("isa", [lib.HF_ISA_COUNT, 7, -5])
def test_unknown_isa_id_is_an_error_from_the_dispatcher(isa):
    assert lib.hf_isa_supported(isa) == 0
    assert ffi.string(lib.hf_isa_name(isa)).decode() == "unknown"
    assert ffi.string(lib.hf_op_kernel(lib.HF_OP_LAYERNORM, isa, 64)).decode() == ""
    w = np.ones((8, 8), np.int8)
    wp = ffi.cast("const int8_t *", w.ctypes.data)
    x = np.ones((2, 8), np.float32)
    xp = ffi.cast("float *", x.ctypes.data)
    calls = {
        "set_isa": lambda: lib.hf_set_isa(isa),
        "dense_pack": lambda: lib.hf_dense_pack(isa, 8, 8, wp, 8, ffi.new("hf_dense_w **")),
        "sparse_pack": lambda: lib.hf_sparse_pack(isa, 4, 1, 8, 8, wp, 8, ffi.new("hf_sparse_w **")),
        "linear_pack": lambda: lib.hf_linear_pack(isa, 0, 0, 8, 8, wp, 8, xp, ffi.NULL, ffi.new("hf_linear **")),
        "layernorm": lambda: lib.hf_layernorm(isa, 2, 8, xp, ffi.NULL, xp, xp, 1e-5, xp),
        "gelu": lambda: lib.hf_gelu(isa, 16, xp, xp),
        "engine_create": lambda: lib.hf_engine_create(model_desc(EngineLayer(), isa=isa, hidden=32, heads=4, ffn=64,
                                                                 layers=1, vocab=100, max_pos=64, type_vocab=2)[0],
                                                      ffi.new("hf_engine **")),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match=f"unknown ISA id {isa}"):
            native._check(call(), name)
    assert native.active_isa() in native.supported_isas()  # a refused id leaves the choice alone


def test_built_isas_are_this_architectures():
    """Tests parametrize over the ISAs this build has kernels for: ref plus its own architecture's, never another's."""
    import platform

    built = native.BUILT_ISA_NAMES
    assert built[0] == "ref" and set(built) <= set(native.ISA_NAMES)
    assert set(native.supported_isas()) <= set(built)
    for i, name in enumerate(native.ISA_NAMES):
        assert bool(lib.hf_isa_built(i)) == (name in built)
    if platform.machine() in ("x86_64", "AMD64"):
        assert not {"neon", "dotprod", "i8mm"} & set(built) and {"avx2", "avx512vnni"} <= set(built)
    assert lib.hf_isa_built(lib.HF_ISA_COUNT) == 0 and lib.hf_isa_built(-1) == 0
