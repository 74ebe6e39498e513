"""Atomic file writing: write to a temporary file, then rename.

A reader never sees a half-written output, even when the process is killed.
Whole folders (a run folder, an export) are written the same way: built in a
temporary sibling folder (:func:`sibling_temp_dir`), then swapped in place by
:func:`swap_folder` while :func:`folder_lock` is held. Temporary names stay
within NAME_MAX (255 bytes) however long the final name is.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from brainclust.errors import ModelFileError


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


#: Longest file name a temporary name is built from; longer names are replaced by a hash.
_MAX_STEM = 120


def temp_prefix(name: str) -> str:
    """``.NAME.`` for a temporary file next to ``NAME``; a long name becomes a 16-hex-digit hash.

    The result plus a random part and a suffix stays far below NAME_MAX (255 bytes).
    """
    raw = os.fsencode(name)
    if len(raw) > _MAX_STEM:
        return f".{hashlib.sha1(raw).hexdigest()[:16]}."
    return f".{name}."


def sibling_temp_dir(path: str | os.PathLike, tag: str = "tmp") -> Path:
    """Create an empty folder next to ``path``: ``.NAME.TAG-<pid>-<random>`` (mode per the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f"{temp_prefix(path.name)}{tag}-{os.getpid()}-"))
    os.chmod(tmp, 0o777 & ~_UMASK)
    return tmp


def swap_folder(staging: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Put the finished folder ``staging`` at ``dest``; the old ``dest`` (if any) is moved aside, then deleted.

    ``staging`` must be a sibling of ``dest`` (same file system). A reader sees
    either the old folder or the new one, never a mix; only a kill between the
    two renames leaves ``dest`` missing (the old folder is then still beside it).
    """
    staging, dest = Path(staging), Path(dest)
    if not (dest.exists() or dest.is_symlink()):
        os.rename(staging, dest)
        return dest
    old = dest.parent / f"{temp_prefix(dest.name)}old-{os.getpid()}-{secrets.token_hex(4)}"
    os.rename(dest, old)
    try:
        os.rename(staging, dest)
    except BaseException:
        os.rename(old, dest)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)
    return dest


def remove_tree(path: str | os.PathLike) -> None:
    """Delete a (temporary) folder and everything in it; a missing folder is fine."""
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def folder_lock(path: str | os.PathLike, on_wait=None) -> Iterator[None]:
    """Hold an exclusive lock for writing the folder ``path`` (an ``flock`` on its parent folder).

    A second writer of the same folder (or of a sibling) waits until the first
    has finished; ``on_wait()`` is called once before waiting. No lock file is
    left behind. Where ``flock`` is unavailable the lock is a no-op.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    parent = Path(path).parent
    parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(parent, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name), suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs follow the umask
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks (hex digest)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return obj.as_posix()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON (stable bytes for equal input)."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=json_default, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def atomic_write_csv(path: str | os.PathLike, header: Sequence[str],
                     rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write dict rows as CSV with a fixed column order."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(header), lineterminator="\n")
    # with lineterminator "\n" a field holding a bare "\r" would not be quoted and a reader would split
    # the row there: such rows are written with every field quoted (still standard CSV)
    quoted = csv.DictWriter(buf, fieldnames=list(header), lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writeheader()
    for row in rows:
        values = {k: row.get(k, "") for k in header}
        cr = any("\r" in v for v in values.values() if isinstance(v, str))
        (quoted if cr else writer).writerow(values)
    return atomic_write_text(path, buf.getvalue())


def atomic_write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Save arrays to an ``.npz`` file atomically (loadable with ``allow_pickle=False``)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def read_npz(path: str | os.PathLike, what: str) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (``allow_pickle=False``); a missing or damaged file is a
    :class:`~brainclust.errors.ModelFileError` that names ``what`` and the path."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, KeyError, ValueError, TypeError, EOFError) as exc:
        raise ModelFileError(f"{what} '{path}' is missing or damaged ({exc})") from None

