"""Import a repository script (benchmarks/, tools/, native/) that is not part of the package, as a module."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


def load_script(path: Path, name: str | None = None):
    """The module run from `path` (its folder goes on sys.path first, so it can import its siblings)."""
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
