"""Full and read-only file systems: one-line OutputError naming the path, the previous output intact.

On a real tmpfs of 256 KiB when this process may mount one (root on Linux),
and with monkeypatched writes everywhere else.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from brainclust.errors import BrainclustError, OutputError
from brainclust.features.cache import FeatureCache
from brainclust.io import atomic


@pytest.fixture
def tmpfs(tmp_path):
    """A 256 KiB tmpfs mounted at a fresh folder (skipped where it cannot be mounted)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(mnt: Path) -> None:
    """Fill the file system to the last block."""
    with open(mnt / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def _remount_ro(mnt: Path) -> None:
    r = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot remount the tmpfs read-only")


def test_full_disk_keeps_the_old_file_and_names_the_path(tmpfs):
    target = tmpfs / "metrics.json"
    atomic.atomic_write_json(target, {"v": 1})
    _fill(tmpfs)
    with pytest.raises(OutputError) as err:
        atomic.atomic_write_bytes(target, b"x" * 200_000)
    msg = str(err.value)
    assert str(target) in msg and "ENOSPC" in msg and "\n" not in msg
    assert isinstance(err.value, BrainclustError) and err.value.errno == errno.ENOSPC
    assert target.read_text() == '{\n  "v": 1\n}\n'
    assert sorted(p.name for p in tmpfs.iterdir()) == ["filler", "metrics.json"]  # no temporary file left


def test_read_only_file_system(tmpfs):
    run = tmpfs / "run"
    run.mkdir()
    atomic.atomic_write_text(run / "a.txt", "old")
    _remount_ro(tmpfs)
    with pytest.raises(OutputError, match="EROFS") as err:
        atomic.atomic_write_text(run / "a.txt", "new")
    assert str(run / "a.txt") in str(err.value)
    with pytest.raises(OutputError, match="EROFS"):
        atomic.sibling_temp_dir(run)
    assert (run / "a.txt").read_text() == "old"
    # the feature store still degrades to "no cache" on a read-only folder (OutputError is an OSError)
    store = FeatureCache(tmpfs / "cache", {"x": 1})
    assert not store.usable
    store.put_many(["k"], np.ones((1, 3), np.float32))  # a no-op, no exception


def test_output_errors_turns_library_writes_into_one_line(tmpfs):
    """What a publish layer wraps around writers it does not own (matplotlib, pyarrow)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _fill(tmpfs)
    with pytest.raises(OutputError, match="ENOSPC") as err:
        with atomic.output_errors(tmpfs / "run"):
            pq.write_table(pa.table({"x": np.arange(100_000)}), tmpfs / "e.parquet")
    assert str(tmpfs / "run") in str(err.value)


@pytest.mark.parametrize("code, word", [(errno.ENOSPC, "ENOSPC"), (errno.EROFS, "EROFS"),
                                        (errno.EDQUOT, "EDQUOT"), (errno.EACCES, "EACCES")])
def test_monkeypatched_write_errors(tmp_path, monkeypatch, code, word):
    target = tmp_path / "out.csv"
    target.write_text("old")
    real_fdopen = os.fdopen

    class Failing:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: Failing(real_fdopen(fd, *a, **k)))
    with pytest.raises(OutputError, match=word):
        atomic.atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_other_os_errors_pass_through(tmp_path):
    with pytest.raises(OSError) as err:
        with atomic.output_errors(tmp_path):
            raise OSError(errno.EIO, "I/O error")
    assert not isinstance(err.value, OutputError)
