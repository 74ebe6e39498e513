"""A file's content read once: the bytes an image is decoded from are the bytes that were hashed.

The feature store is keyed by the SHA-256 of a file's bytes. If the hash came
from one read (the scan) and the pixels from another (extraction), a file
rewritten in between would store the new image's features under the old
content's key, and every later run on the old content would silently get
them. So every decoder reads through :func:`read_content`: it opens the file
once, reads it whole, hashes those bytes and decodes from the same buffer.
A file larger than :data:`SINGLE_READ_MAX` is not held in memory: it is
hashed, decoded from its path, and hashed again (:func:`verify_unchanged`); a
change in between is an error, never a mixed result.

Only regular files are read (:func:`check_regular`): a FIFO would block the
reader forever and a link to ``/dev/zero`` would never end; both are refused
before any read, with the reason "not a regular file".
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
from dataclasses import dataclass

from brainclust.errors import ImageReadError
from brainclust.io.outputs import escape_name

log = logging.getLogger(__name__)

#: Files up to this many bytes are read into memory once and decoded from there.
SINGLE_READ_MAX = 256 * 2**20
_CHUNK = 1 << 20
#: Why a record is refused when its file's bytes are no longer those the scan hashed.
CHANGED_REASON = ("the file changed after the scan (its SHA-256 is no longer the scanned one); "
                  "not used in this run, rerun to include its new content")


_warned: set[tuple[str, str]] = set()


def require_scanned(path: str, scanned: str, digest: str, warn: bool = True) -> None:
    """ImageReadError (:data:`CHANGED_REASON`) unless ``digest``, the hash of the bytes just
    decoded, is ``scanned``, the hash the scan recorded; warns once per file and content.

    Whatever is stored under a record's key (features, descriptors, check vectors) passes
    here first, so no store ever holds one content's values under another's hash.
    """
    if digest == scanned:
        return
    if warn and (path, scanned) not in _warned:
        _warned.add((path, scanned))
        log.warning("%s: %s", escape_name(path), CHANGED_REASON)
    raise ImageReadError(CHANGED_REASON)


def _kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_regular(path: str | os.PathLike) -> os.stat_result:
    """``os.stat`` of ``path`` (links followed), or ImageReadError unless it is a regular file."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ImageReadError(f"cannot read file: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ImageReadError(f"not a regular file ({_kind_of(st.st_mode)}); not read")
    return st


@dataclass(frozen=True)
class Content:
    """What :func:`read_content` read: the SHA-256 and, up to :data:`SINGLE_READ_MAX`, the bytes."""

    path: str
    sha256: str
    size: int
    data: bytes | None

    def source(self):
        """What a decoder reads: a binary buffer over the bytes, or the path of a large file."""
        return io.BytesIO(self.data) if self.data is not None else self.path


def _open_regular(path) -> tuple[int, os.stat_result]:
    """A descriptor of ``path``, opened never blocking, and its ``fstat``; ImageReadError unless it is a regular
    file. A device node is never opened (opening some has effects); the ``fstat`` closes the race with a file
    replaced by a FIFO or a device after :func:`check_regular`."""
    check_regular(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
                     | getattr(os, "O_BINARY", 0))  # Windows: no newline translation
    except OSError as exc:
        raise ImageReadError(f"cannot read file: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageReadError(f"not a regular file ({_kind_of(st.st_mode)}); not read")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_head(path, most: int) -> bytes | None:
    """At most ``most`` bytes from the start of ``path``, read under the rules of :func:`read_content` (a FIFO is
    never waited on, a link to ``/dev/zero`` never read); ``None`` when it is not a regular file or cannot be
    read. The reader of the scan's metadata files (JSON sidecars, TSV tables), which are no images: until
    2026-12-07 a FIFO named ``x.json`` in the data folder made the scan wait for ever."""
    try:
        fd, _ = _open_regular(path)
    except ImageReadError:
        return None
    try:
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(most)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_hashed(path, keep_max: int) -> tuple[str, int, bytes | None]:
    """``(SHA-256, size, bytes or None)`` of one read of ``path``: only a regular file is opened (never
    blocking), its bytes are kept when there are at most ``keep_max``, and reading stops, refused, past the
    size the file had when opened (a growing file, or a ``/proc`` file whose size says 0)."""
    fd, st = _open_regular(path)
    try:
        h = hashlib.sha256()
        keep = st.st_size <= keep_max
        parts, total = [], 0
        with os.fdopen(fd, "rb", closefd=False) as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                total += len(chunk)
                if total > st.st_size:
                    raise ImageReadError("the file holds more than its size says (it grew while being read, "
                                         "or is not an ordinary file); not used")
                h.update(chunk)
                if keep:
                    parts.append(chunk)
    except OSError as exc:
        raise ImageReadError(f"cannot read file: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    return h.hexdigest(), total, b"".join(parts) if keep else None


def read_content(path: str | os.PathLike) -> Content:
    """Open ``path`` once (never blocking), refuse anything but a regular file, read and hash it.

    Raises
    ------
    ImageReadError
        Not a regular file, unreadable, or longer than its size.
    """
    digest, size, data = read_hashed(path, SINGLE_READ_MAX)
    return Content(path=os.fsdecode(path), sha256=digest, size=size, data=data)


def content_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a regular file's bytes, streamed under the same rules as :func:`read_content`
    (ImageReadError otherwise): what a file from untrusted input is checked against before any decoder
    parses it."""
    return read_hashed(path, -1)[0]


def verify_unchanged(content: Content) -> None:
    """For a large file decoded from its path: ImageReadError unless its bytes still hash the same."""
    if content.data is not None:
        return  # decoded from the very bytes that were hashed
    h = hashlib.sha256()
    try:
        with open(content.path, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                h.update(chunk)
    except OSError as exc:
        raise ImageReadError(f"cannot read file: {exc.strerror or exc}") from None
    if h.hexdigest() != content.sha256:
        raise ImageReadError("the file changed while it was being read; not used in this run")


def guard_pixels(im, already: int = 0) -> int:
    """Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) as an error, checked on the header whatever
    the warning filters are (Pillow only warns below twice the limit, and turning that warning into an error with
    ``catch_warnings`` changes process-wide filters that a decoding thread may restore meanwhile). ``already``: the
    pixels of the pages held before this one (each is held decoded: the limit is on all of them together, Pillow's
    on the first page only); returns the pixels held with this page."""
    from PIL import Image

    limit, pixels = Image.MAX_IMAGE_PIXELS, im.width * im.height
    if limit is not None and pixels > limit:
        raise Image.DecompressionBombError(f"{im.width}x{im.height} pixels is more than the limit of {limit}")
    if limit is not None and already + pixels > limit:
        raise Image.DecompressionBombError(f"the pages hold more than {limit} pixels")
    return already + pixels
