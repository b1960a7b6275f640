"""cffi (API mode, out-of-line) builder for hf_fast._native.

The C declarations cffi sees are read from native/include/hf_fast.h, the one ABI, so the two can
never drift apart. Vector kernels carry their own `target(...)` attributes, so the library is
built for baseline x86-64 and still runs (on the reference path) on any CPU.

Sources: native/src/ and native/src/ref/ (the scalar references) on every architecture, plus the folder of the target
architecture, native/src/arch/<arch>/ (x86/ or arm/: its kernels, CPU feature detection and dispatch tables), or
native/src/arch/generic/ (reference only) where there is none. `python native/build_native.py --sources [MACHINE]`
prints that list (MACHINE as platform.machine() names it; `make native-aarch64-compile` uses it).
"""
import os
import platform
import re
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
INCLUDE = HERE / "include"
# platform.machine() -> folder of native/src/arch/
ARCH_DIRS = {"x86_64": "x86", "amd64": "x86", "i386": "x86", "i686": "x86", "aarch64": "arm", "arm64": "arm"}


def arch_dir(machine: str | None = None) -> str:
    return ARCH_DIRS.get((machine or platform.machine()).lower(), "generic")


def sources(machine: str | None = None) -> list[str]:
    """The C files of the library for `machine` (default: this one), relative to the repository root."""
    src = HERE / "src"
    files = [*src.glob("*.c"), *(src / "ref").glob("*.c"), *(src / "arch" / arch_dir(machine)).glob("*.c")]
    return sorted(str(p.relative_to(HERE.parent)) for p in files)


if __name__ == "__main__" and sys.argv[1:2] == ["--sources"]:
    print(" ".join(sources(sys.argv[2] if len(sys.argv) > 2 else None)))
    sys.exit(0)

SOURCES = sources()


def _cdef_from_header(text: str) -> str:
    """Keep what cffi's cdef understands: #define integer constants, typedefs and prototypes."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out = []
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("//"):
            continue
        m = re.match(r"#define\s+(HF_[A-Z0-9_]+)\s+(-?\d+)\s*$", s)
        if m:
            out.append(f"#define {m.group(1)} {m.group(2)}")
            continue
        if s.startswith("#") or s.startswith("extern \"C\"") or s == "}":
            continue
        out.append(line)
    return "\n".join(out)


ffibuilder = FFI()
ffibuilder.cdef(_cdef_from_header((INCLUDE / "hf_fast.h").read_text()))

extra_compile_args = ["-O3", "-std=c11", "-fno-strict-aliasing", "-Wall", "-Wno-unused-function",
                      "-fvisibility=hidden", "-pthread"]
extra_link_args = ["-pthread"]
if os.environ.get("HF_FAST_SANITIZE"):
    # make sanitize: ASan + UBSan build of the same sources
    extra_compile_args += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1", "-g"]
    extra_link_args += ["-fsanitize=address,undefined"]

ffibuilder.set_source(
    "hf_fast._native",
    '#include "hf_fast.h"',
    sources=SOURCES,
    include_dirs=[str(INCLUDE), str(HERE / "src")],
    extra_compile_args=extra_compile_args,
    extra_link_args=extra_link_args,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
