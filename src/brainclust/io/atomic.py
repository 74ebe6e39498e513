"""Atomic file writing: write to a temporary file, then rename.

A reader never sees a half-written output, even when the process is killed.
Whole folders (a run folder, an export) are written the same way: built in a
temporary sibling folder (:func:`sibling_temp_dir`), then swapped in place by
:func:`swap_folder` while :func:`folder_lock` is held. Temporary names stay
within NAME_MAX (255 bytes) however long the final name is, and carry the
writer's process id, so that :func:`recover_leftovers` can tell the leftovers of
a killed writer (a dead process) from the folders of a live one.

A full disk, a read-only file system, a quota or a refused permission while
writing is an :class:`~brainclust.errors.OutputError` naming the path (one
line), never a traceback; the previous output is left as it was.

Untrusted run folders are read with :func:`safe_join` (a relative path that
must stay inside a root, symbolic links included) and :func:`walk_entries`
(every entry of a folder, at every depth, links not followed).
"""

from __future__ import annotations

import csv
import ctypes
import errno
import hashlib
import io
import json
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from brainclust.errors import ModelFileError, OutputError, UnsafePathError
from brainclust.io.csvcell import formula_safe
from brainclust.terminal import count_text

log = logging.getLogger(__name__)


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


#: errno -> the words of the one-line :class:`OutputError`; other OS errors are not the user's to fix.
DISK_ERRORS = {errno.ENOSPC: "no space left on the device (ENOSPC)",
               errno.EROFS: "the file system is read-only (EROFS)",
               errno.EDQUOT: "the disk quota is exceeded (EDQUOT)",
               errno.EACCES: "permission denied (EACCES)",
               errno.EPERM: "operation not permitted (EPERM)",
               errno.EFBIG: "the file is too large for the file system (EFBIG)"}


@contextmanager
def output_errors(path: str | os.PathLike, what: str = "cannot write") -> Iterator[None]:
    """Turn an :class:`OSError` of :data:`DISK_ERRORS` raised inside into an :class:`OutputError` naming ``path``.

    Writers here use it; so can any code that writes outputs (a figure, a Parquet file) to give
    the same one-line message. Other OS errors pass through unchanged.
    """
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        if exc.errno not in DISK_ERRORS:
            raise
        raise OutputError(f"{what} '{os.fsdecode(path)}': {DISK_ERRORS[exc.errno]}; nothing already "
                          "there was changed", exc.errno, path) from None


def sibling_temp_dir(path: str | os.PathLike, tag: str = "tmp") -> Path:
    """Create an empty folder next to ``path``: ``.NAME.TAG-<pid>-<random>`` (mode per the umask)."""
    path = Path(path)
    with output_errors(path, "cannot create a folder next to"):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f"{temp_prefix(path.name)}{tag}-{os.getpid()}-"))
        os.chmod(tmp, 0o777 & ~_UMASK)
    return tmp


# -- swapping a folder in place ------------------------------------------------------------------
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100
_NO_EXCHANGE = {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}


def _renameat2():
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _renameat2()


def exchange(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False, having changed nothing, where the system or the file system cannot do it
    (not Linux, an old C library or kernel, a file system without the flag); raises OSError
    for any other failure.
    """
    if _RENAMEAT2 is None:
        return False
    rc = _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in _NO_EXCHANGE:
        return False
    raise OSError(err, os.strerror(err), os.fsdecode(a), None, os.fsdecode(b))


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def swap_folder(staging: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Put the finished folder ``staging`` at ``dest``; the old ``dest`` (if any) is deleted.

    ``staging`` must be a sibling of ``dest`` (same file system); call it under
    :func:`folder_lock`. Leftovers of an earlier, killed writer are dealt with first
    (:func:`recover_leftovers`). On Linux the two folders trade places in one atomic
    step (:func:`exchange`), so ``dest`` always exists: a reader sees the old folder or
    the new one, and a kill at any point leaves ``dest`` whole (the old folder, then
    under ``staging``'s name, is removed by the next writer). Elsewhere the old folder is
    renamed aside to ``.NAME.old-<pid>-<random>`` first; a kill between the two renames
    leaves ``dest`` missing until the next writer restores it from there.
    """
    staging, dest = Path(staging), Path(dest)
    recover_leftovers(dest, keep=(staging,))
    with output_errors(dest, "cannot replace"):
        if not (dest.exists() or dest.is_symlink()):
            os.rename(staging, dest)
            return dest
        if exchange(staging, dest):  # staging now holds the old folder
            _delete(staging)
            return dest
        old = dest.parent / f"{temp_prefix(dest.name)}old-{os.getpid()}-{secrets.token_hex(4)}"
        os.rename(dest, old)
        try:
            os.rename(staging, dest)
        except BaseException:
            os.rename(old, dest)
            raise
        _delete(old)
    return dest


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def leftovers(dest: str | os.PathLike) -> list[tuple[Path, str, int]]:
    """The temporary siblings of ``dest`` its writers leave when killed: ``(path, kind, pid)``.

    ``kind`` is ``tmp`` (a staging folder, or after an exchange the replaced old folder),
    ``old`` (the old folder renamed aside) or ``file`` (an atomic write's temporary file).
    """
    dest = Path(dest)
    prefix = re.escape(temp_prefix(dest.name))
    pattern = re.compile(prefix + r"(?:(tmp|old)-(\d+)-[A-Za-z0-9_]+|(\d+)-[A-Za-z0-9_]+\.tmp)\Z")
    found = []
    try:
        names = sorted(os.listdir(dest.parent))
    except OSError:
        return []
    for name in names:
        m = pattern.match(name)
        if m:
            kind, pid = (m.group(1), m.group(2)) if m.group(1) else ("file", m.group(3))
            found.append((dest.parent / name, kind, int(pid)))
    return found


def recover_leftovers(dest: str | os.PathLike, keep: Sequence[str | os.PathLike] = ()) -> dict:
    """Restore or remove what a killed writer of ``dest`` left beside it; call under :func:`folder_lock`.

    Only leftovers of dead processes are touched (a live writer holds the lock and its pid
    is alive), never this process's own, nor the paths in ``keep``:

    * ``dest`` missing and a ``.NAME.old-*`` folder beside it (a kill between the two renames
      of the fallback swap): the old folder is renamed back to ``dest``;
    * every other ``.NAME.tmp-*`` / ``.NAME.old-*`` folder and temporary file is deleted.

    One warning line says what was done. Returns ``{"restored": path or None, "removed": [paths]}``.
    """
    dest = Path(dest)
    kept = {Path(k) for k in keep}
    me = os.getpid()
    stale = [(p, kind) for p, kind, pid in leftovers(dest) if p not in kept and pid != me and not _pid_alive(pid)]
    done: dict = {"restored": None, "removed": []}
    if not stale:
        return done
    with output_errors(dest, "cannot clean up an interrupted run beside"):
        if not (dest.exists() or dest.is_symlink()):
            olds = sorted((p for p, kind in stale if kind == "old" and p.is_dir() and not p.is_symlink()),
                          key=lambda p: p.stat().st_mtime_ns)  # a planted link is never made the folder
            if olds:
                os.rename(olds[-1], dest)
                done["restored"] = olds[-1]
        for p, _ in stale:
            if p != done["restored"]:
                _delete(p)
                done["removed"].append(p)
    log.warning("'%s': an interrupted brainclust process left %s beside it; %s", dest,
                count_text(len(stale), "temporary item"), f"restored the previous folder from "
                f"'{done['restored'].name}' and removed the rest" if done["restored"] else "removed them")
    return done


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
    with output_errors(parent, "cannot create the folder"):
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
    """Write ``data`` to ``path`` atomically and return the path.

    A full disk, a read-only file system... is an :class:`OutputError` naming ``path``;
    the file keeps its previous content and no temporary file is left.
    """
    path = Path(path)
    with output_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{temp_prefix(path.name)}{os.getpid()}-",
                                   suffix=".tmp")
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
    """Write dict rows as CSV with a fixed column order; every text cell through :func:`formula_safe`."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(header), lineterminator="\n")
    # with lineterminator "\n" a field holding a bare "\r" would not be quoted and a reader would split
    # the row there: such rows are written with every field quoted (still standard CSV)
    quoted = csv.DictWriter(buf, fieldnames=list(header), lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writeheader()
    for row in rows:
        values = {k: formula_safe(row.get(k, "")) for k in header}
        cr = any("\r" in v for v in values.values() if isinstance(v, str))
        (quoted if cr else writer).writerow(values)
    return atomic_write_text(path, buf.getvalue())


def atomic_write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Save arrays to an ``.npz`` file atomically (loadable with ``allow_pickle=False``)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def _check_npz_sizes(path, what: str) -> None:
    """ModelFileError when the arrays an ``.npz`` declares (read from each member's ``.npy`` header, before
    anything is loaded) do not fit its members, or together take more than half this machine's memory
    (a small archive can declare an array of many GiB). brainclust writes members uncompressed; a member
    compressed more than 100 times is a bomb, not data."""
    try:
        budget = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        budget = 8 * 2**30
    total = 0
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, _, dtype = header(fh)
            nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if nbytes > info.file_size or (nbytes > 2**20 and nbytes > 100 * info.compress_size):
                raise ModelFileError(f"{what} '{path}' is damaged (member '{info.filename}' declares {nbytes} "
                                     f"bytes but holds {info.compress_size} compressed, {info.file_size} claimed)")
            total += nbytes
    if total > budget:
        raise ModelFileError(f"{what} '{path}' declares {total / 2**30:.1f} GiB of arrays, more than half of "
                             "this machine's memory: damaged, or not written by brainclust")


def read_npz(path: str | os.PathLike, what: str) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (``allow_pickle=False``); a missing or damaged file is a
    :class:`~brainclust.errors.ModelFileError` that names ``what`` and the path.

    Only a regular file holding a zip archive is opened: anything else (a folder, a FIFO, a text
    file, a link to ``/etc/passwd``) is refused with one line of our own, never numpy's advice
    to load the file with pickling allowed.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ModelFileError(f"{what} '{path}' is missing or unreadable ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ModelFileError(f"{what} '{path}' is not a regular file")
    try:
        if not zipfile.is_zipfile(path):
            raise ModelFileError(f"{what} '{path}' is not an .npz archive written by brainclust")
        _check_npz_sizes(path, what)
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ModelFileError:
        raise
    except ValueError as exc:
        why = "it holds Python objects, which are never loaded" if "pickle" in str(exc) else f"{exc}"
        raise ModelFileError(f"{what} '{path}' is damaged ({why})") from None
    except (OSError, KeyError, TypeError, EOFError, zipfile.BadZipFile, NotImplementedError, RuntimeError,
            MemoryError) as exc:  # unsupported or encrypted members, or too large after all
        raise ModelFileError(f"{what} '{path}' is missing or damaged ({type(exc).__name__}: {exc})") from None


# -- reading untrusted folders -----------------------------------------------------------------
def walk_entries(folder: str | os.PathLike) -> list[str]:
    """Every entry under ``folder`` at every depth, as sorted relative POSIX paths (folders too).

    Symbolic links are listed, never followed (a link to a folder is one entry). Use it to check
    that a folder about to be replaced holds only what a run wrote.
    """
    root = Path(folder)
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel = Path(dirpath).relative_to(root)
        out.extend((rel / n).as_posix() for n in dirnames + filenames)
    return sorted(out)


def safe_join(root: str | os.PathLike, relative: str) -> Path:
    """``root / relative`` resolved, or :class:`~brainclust.errors.UnsafePathError` when it leaves ``root``.

    ``relative`` comes from untrusted input (a run folder's ``path`` column): it must be a non-empty relative
    path without NUL characters or ``..`` parts, and the resolved path (symbolic links followed) must lie
    inside the resolved ``root``. The resolved path is returned, so the caller opens what was checked.
    """
    text = os.fsdecode(relative) if isinstance(relative, bytes) else relative
    if not isinstance(text, str) or not text or "\x00" in text:
        raise UnsafePathError(f"path {text!r:.200} is empty or holds a NUL character; refused")
    rel = Path(text)
    if rel.is_absolute() or ".." in rel.parts:
        raise UnsafePathError(f"path '{text:.200}' must be relative to '{root}' without '..' parts; refused")
    base = Path(root).resolve()
    target = (base / rel).resolve()
    if target != base and base not in target.parents:
        raise UnsafePathError(f"path '{text:.200}' leads outside '{root}' (through a symbolic link); refused: no link "
                              f"out of the input folder is followed ({UnsafePathError.LINKS_OUT_HINT})")
    return target
