"""A full disk in one folder, for tests of writers: a file opened for writing there is created (or truncated) and the
write then fails with ENOSPC, as it does when the disk fills. Patches ``io.open`` (pathlib) and ``builtins.open``."""
from __future__ import annotations

import builtins
import errno
import io
import os
from pathlib import Path


def fill_disk(monkeypatch, folder: Path) -> None:
    real_open, folder = io.open, Path(folder).resolve()

    def open_on_full_disk(file, mode="r", *args, **kwargs):
        if not isinstance(file, int) and any(c in mode for c in "wax+") and \
                Path(os.path.abspath(os.fspath(file))).parent == folder:
            real_open(file, mode, *args, **kwargs).close()
            raise OSError(errno.ENOSPC, "No space left on device", os.fspath(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(io, "open", open_on_full_disk)
    monkeypatch.setattr(builtins, "open", open_on_full_disk)
