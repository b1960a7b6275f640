"""`make wheel`: check what `python -m build` wrote to DIST and give the wheel an honest platform tag.

- The wheel holds the package and its compiled engine only: no tests, test data, fuzz corpora, benchmarks, C
  sources or paths into ../shared.
- The sdist holds what a build from source needs (the package, native/ sources, build_native.py, README), no tests.
- Platform tag: `auditwheel show` names the manylinux policy the compiled library satisfies (it links only glibc);
  the wheel is retagged to it (`wheel tags`), and `auditwheel show` must accept the retagged wheel.

    python check_dist.py DIST
"""
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

FORBIDDEN = re.compile(r"(^|/)(tests?|benchmarks|recipes|fuzz|fuzz_corpus|shared)(/|$)"
                       r"|\.(c|h|onnx|safetensors|pt|bin)$")


def check_wheel(whl: Path) -> None:
    names = zipfile.ZipFile(whl).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"hf_fast", f"{whl.name.split('-')[0]}-{whl.name.split('-')[1]}.dist-info"}, top
    bad = [n for n in names if FORBIDDEN.search(n)]
    assert not bad, f"the wheel ships test data / sources: {bad}"
    assert any(re.match(r"hf_fast/_native\..*\.so$", n) for n in names), "no compiled engine in the wheel"
    z = zipfile.ZipFile(whl)
    for n in names:
        if n.endswith(".py"):
            text = z.read(n).decode("utf-8")
            assert "../shared" not in text and "shared/data" not in text, f"{n} refers to ../shared"
    print(f"{whl.name}: {len(names)} files, package + engine only")


def check_sdist(sdist: Path) -> None:
    names = [n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n]
    for need in ("setup.py", "setup.cfg", "pyproject.toml", "README.md", "native/build_native.py",
                 "native/include/hf_fast.h", "native/src/internal.h", "native/src/engine.c",
                 "native/src/arch/x86/dispatch_x86.c", "native/src/arch/generic/dispatch_generic.c",
                 "native/src/arch/arm/dispatch_arm.c", "native/src/arch/arm/gemm_arm.h"):
        assert need in names, f"the sdist lacks {need}"
    bad = [n for n in names if re.match(r"(tests|benchmarks|recipes|native/fuzz)/", n)]
    assert not bad, f"the sdist ships {bad[:5]}"
    print(f"{sdist.name}: {len(names)} entries, builds from source")


def retag(dist: Path, whl: Path) -> Path:
    show = subprocess.run([sys.executable, "-m", "auditwheel", "show", str(whl)], capture_output=True, text=True,
                          check=True).stdout
    m = re.search(r'platform tag:\s*"(manylinux_\d+_\d+_x86_64)"', show)
    assert m, f"auditwheel show did not name a manylinux tag:\n{show}"
    if m.group(1) not in whl.name:
        subprocess.run([sys.executable, "-m", "wheel", "tags", "--remove", "--platform-tag", m.group(1), str(whl)],
                       check=True, capture_output=True)
        whl = next(dist.glob(f"*{m.group(1)}.whl"))
    again = subprocess.run([sys.executable, "-m", "auditwheel", "show", str(whl)], capture_output=True, text=True,
                           check=True).stdout
    assert f'"{m.group(1)}"' in again, again
    print(f"{whl.name}: platform tag {m.group(1)} (auditwheel show accepts it)")
    return whl


def main(dist: Path) -> int:
    (sdist,) = dist.glob("*.tar.gz")
    wheels = list(dist.glob("*.whl"))
    assert len(wheels) == 1, wheels
    check_sdist(sdist)
    check_wheel(wheels[0])
    retag(dist, wheels[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
