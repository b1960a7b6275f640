"""Append a dated run to the lab notebook, benchmarks/HISTORY.md (RESULTS.md holds only the current figures).

Entries are only ever added: at the end of their '## ' section (created at the end of the file if absent), written
to a temporary file and renamed over the notebook, so an interrupted write leaves the old notebook whole.
"""
from __future__ import annotations

from pathlib import Path

from hf_fast import _atomic

HISTORY = Path(__file__).resolve().parent / "HISTORY.md"


def append_entry(section: str, entry: str, path: Path = HISTORY) -> Path:
    """Put ``entry`` (markdown, starting with its own '### date — ...' heading) at the end of ``section``."""
    if not section.startswith("## "):
        raise ValueError(f"section must be a '## ' heading, got {section!r}")
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark history (lab notebook)\n"
    lines = text.split("\n")
    if section not in lines:
        text = text.rstrip("\n") + f"\n\n{section}\n"
        lines = text.split("\n")
    start = lines.index(section) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    body = "\n".join(lines[:end]).rstrip("\n")
    rest = "\n".join(lines[end:])
    new = body + "\n\n" + entry.strip("\n") + "\n" + ("\n" + rest if rest else "")
    return _atomic.write_text(path, new)

