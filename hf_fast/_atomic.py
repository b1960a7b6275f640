"""Atomic single-file writes: a temporary file in the destination's folder, flushed and fsynced, then renamed over
the destination. A kill mid-write leaves the previous file (or none), never a partial one under the final name.
Folders are built beside the destination and swapped in (``swap_dir``), keeping what the new folder does not
write (``carry_entries``): ``hf_fast.export.artifact.atomic_dir`` and the sentence-transformers folder writer."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that takes a file name (``safetensors.save_file``, ...);
    on success it is fsynced and renamed over ``path`` with the usual file mode (mkstemp's is 0600), on any error
    removed. A symlink at ``path`` is replaced by the file; what it pointed to (a Hub cache blob) is left alone."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


# ------------------------------------------------------------------ folders
def link_or_copy(src, dst) -> None:
    """A hard link costs no space or time for multi-GB weights; another filesystem or no link support: copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def carry_entries(old: Path, new: Path, drop: Callable[[str], bool] | None = None) -> list[str]:
    """Hard-link (copy where links fail) into ``new`` every entry of ``old`` that ``new`` lacks and ``drop`` does
    not name; folders are linked file by file, symlinks stay symlinks. ``old`` is left whole (nothing is moved), so
    a save that fails after this still leaves the user's folder as it was. Returns the names carried."""
    carried = []
    for entry in sorted(Path(old).iterdir()):
        name = entry.name
        if os.path.lexists(new / name) or (drop is not None and drop(name)):
            continue
        if entry.is_symlink():
            os.symlink(os.readlink(entry), new / name)
        elif entry.is_dir():
            shutil.copytree(entry, new / name, symlinks=True, copy_function=link_or_copy)
        else:
            link_or_copy(entry, new / name)
        carried.append(name)
    return carried


_RENAME_EXCHANGE = 2  # linux/fs.h


def _exchange(a: Path, b: Path) -> bool:
    """Swap the two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``), so no moment has neither at ``b``.
    False where the OS, C library or filesystem has no such call (the caller then renames twice)."""
    import ctypes
    import errno
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # glibc < 2.28, musl
        return False
    at_fdcwd = -100
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(b))


def swap_dir(new: Path, dest: Path) -> None:
    """Put the folder ``new`` at ``dest`` (a sibling on the same filesystem), then delete the old ``dest``. Linux swaps
    the two in one step (a kill at any moment leaves the old folder or the new one at ``dest``); elsewhere the old one
    is renamed aside first (renamed back if the second rename fails). A process whose working directory was inside
    ``dest`` is moved into the new folder, not left in the deleted one."""
    new, dest = Path(new), Path(dest)
    try:
        cwd = os.getcwd()
    except OSError:  # already in a deleted folder
        cwd = None
    rel = None
    if cwd is not None and dest.exists():
        with contextlib.suppress(ValueError):
            rel = Path(cwd).relative_to(os.path.realpath(dest))
    old = None
    if dest.is_dir() and not dest.is_symlink() and _exchange(new, dest):
        old = new  # the old folder now lies where the new one was built
    else:
        if dest.exists() or dest.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            old.rmdir()
            os.rename(dest, old)
        try:
            os.rename(new, dest)
        except BaseException:
            if old is not None:
                os.rename(old, dest)
            raise
    if rel is not None:
        target = dest / rel
        os.chdir(target if target.is_dir() else dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
