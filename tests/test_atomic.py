"""hf_fast._atomic: the one single-file atomic writer (pack cache, masks, autotune cache, HISTORY notebook)."""
import os
import stat

import pytest

from hf_fast import _atomic


def test_write_replaces_whole_file_with_usual_mode(tmp_path):
    p = tmp_path / "sub" / "f.json"
    _atomic.write_text(p, "old")
    _atomic.write_text(p, "new")
    assert p.read_text() == "new"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0600
    assert [x.name for x in p.parent.iterdir()] == ["f.json"]  # no temporary left behind


def test_failing_writer_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="disk full"), _atomic.atomic_path(p) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")
    assert p.read_bytes() == b"previous"
    assert [x.name for x in tmp_path.iterdir()] == ["f.bin"]


@pytest.mark.parametrize("one_step", [True, False], ids=["exchange", "two-renames"])
def test_swap_dir_replaces_the_folder_and_moves_the_working_directory_along(tmp_path, monkeypatch, one_step):
    """Both ways of swapping (Linux's one-step exchange, two renames elsewhere) leave the new folder at dest, delete
    the old one, and move a process that stood inside the old folder into the new one."""
    if not one_step:
        monkeypatch.setattr(_atomic, "_exchange", lambda a, b: False)
    dest, new = tmp_path / "out", tmp_path / ".out.tmp"
    (dest / "sub").mkdir(parents=True)
    (dest / "f").write_text("old")
    (new / "sub").mkdir(parents=True)
    (new / "f").write_text("new")
    monkeypatch.chdir(dest / "sub")
    _atomic.swap_dir(new, dest)
    assert (dest / "f").read_text() == "new"
    assert os.getcwd() == str((dest / "sub").resolve()) and open("../f").read() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
