"""Small grayscale thumbnails of a run's images, read from ``manifest["input"] / path``.

A run folder is untrusted input: :func:`image_record` refuses a ``path`` that is
absolute, climbs out of the data folder (``..``) or whose real location (symbolic
links followed) is outside it, whatever the CSV says
(:func:`brainclust.io.atomic.safe_join`), or for which the run recorded no content
hash; the report and ``brainclust view`` draw such a row as a placeholder and never
open its file. An image is shown only when its bytes hash to the recorded SHA-256
(:func:`brainclust.io.scan.load_checked`), so an edited ``input`` folder in the
manifest cannot bring other files into a report.
"""

from __future__ import annotations

import base64
import io
import logging
import os
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path, PurePosixPath

import numpy as np

from brainclust.errors import ImageReadError, UnsafePathError
from brainclust.io.outputs import unescape_name

log = logging.getLogger(__name__)

#: Longer side of the decoded images kept in memory (thumbnails are made from these).
BASE_PX = 256


def is_safe_relpath(path: str) -> bool:
    """Whether an (unescaped) relative path stays inside the folder it is relative to (lexically)."""
    if not path or "\x00" in path:
        return False
    p = PurePosixPath(path)
    return not p.is_absolute() and ".." not in p.parts


def image_record(root: Path, row: dict, sha256):
    """The :class:`~brainclust.io.scan.ImageRecord` of an ``assignments.csv`` row, or ``None`` if refused.

    Refused: a ``path`` that is absolute, holds ``..`` or a NUL byte, or whose file's real path
    (links followed) is outside ``root``. ``sha256`` is the hash the run recorded for the file.
    """
    from brainclust.report.export import record_of_row

    path = str(row.get("path", ""))
    if not is_safe_relpath(unescape_name(path)):
        log.debug("refused image path outside the data folder: %r", path)
        return None
    try:
        return record_of_row(root, row, sha256)
    except UnsafePathError as exc:
        log.debug("refused image: %s", exc)
        return None


def to_uint8(a: np.ndarray) -> np.ndarray:
    """Intensities clipped to the 0.5-99.5 percentiles (like the pre-processing) and scaled to uint8. An image of
    one level is mid-grey: its level alone cannot say white from black here (8-bit, 16-bit and float images come
    in their own units), and black read as an image that is dark, not flat."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 3:  # colour decoded by a format reader: average the channels
        a = a.mean(axis=2)
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros(a.shape, np.uint8)
    lo, hi = np.percentile(a[finite], [0.5, 99.5])
    if not hi > lo:
        return np.full(a.shape, 128, np.uint8)
    return (np.clip((np.where(finite, a, lo) - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def resize(arr: np.ndarray, px: int) -> np.ndarray:
    """uint8 image whose longer side is ``px`` (shrunk with Lanczos, enlarged with bicubic)."""
    from PIL import Image

    im = Image.fromarray(arr)
    if max(im.size) > px:
        im.thumbnail((px, px), Image.Resampling.LANCZOS)
    elif max(im.size) < px:
        scale = px / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                       Image.Resampling.BICUBIC)
    return np.asarray(im)


def placeholder(px: int) -> np.ndarray:
    """A light grey square with a darker cross: an image that could not be read."""
    ph = np.full((px, px), 200, np.uint8)
    d = np.arange(px)
    ph[d, d] = ph[d, px - 1 - d] = 120
    return ph


def jpeg_bytes(arr: np.ndarray, quality: int = 70) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def _is_recorded(path: str, sha256: str) -> bool:
    """Whether the file at ``path`` now holds the bytes whose SHA-256 is ``sha256`` (streamed, remembered
    per path, size and modification time, so the slices of one volume hash it once)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    try:
        return _file_sha256(path, st.st_size, st.st_mtime_ns) == sha256
    except ImageReadError:
        return False


def still_shown(root: Path | None, row: dict, sha256) -> bool:
    """Whether a row's file still holds the run's bytes and may be shown: what serving a thumbnail made of it
    earlier (a disk cache) needs, so a changed, deleted or withheld image is never shown from the cache."""
    rec = None if root is None else image_record(root, row, sha256)
    return rec is not None and bool(rec.sha256) and _is_recorded(rec.abspath, rec.sha256) and not (
        rec.type == "dicom" and _shows_text(rec.abspath))


def _shows_text(path: str) -> bool:
    """Whether the DICOM file at ``path`` may show patient text in its pixels
    (:func:`brainclust.checks.rules.burned_in_text`), remembered per path, size and modification time (the
    frames of one file are read once)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return _burned_in(path, st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=4096)
def _burned_in(path: str, size: int, mtime_ns: int) -> bool:
    from brainclust.checks.decode import dicom_header
    from brainclust.checks.rules import burned_in_text

    return burned_in_text(dicom_header(path))


@lru_cache(maxsize=4096)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """The SHA-256 of a file's bytes, remembered per path, size and modification time; a read error is raised,
    not remembered (a passing one must not hide the file until it changes)."""
    from brainclust.io.content import content_sha256

    return content_sha256(path)


def load_image(root: Path | None, row: dict, sha256, refused: set | None = None, key=None,
               withheld: set | None = None) -> np.ndarray | None:
    """A row's image as uint8 2-D array, or ``None`` when it is refused (``key`` is then added to
    ``refused``: see :func:`image_record`, or its bytes do not hash to ``sha256``), withheld (a DICOM image that
    may show patient text: :func:`brainclust.checks.rules.burned_in_text`; ``key`` added to ``withheld``) or
    cannot be read."""
    from brainclust.io.content import CHANGED_REASON
    from brainclust.io.scan import load_checked

    if root is None:
        return None
    rec = image_record(root, row, sha256)
    if rec is not None and not os.path.lexists(rec.abspath):
        return None  # gone: missing, not refused
    # no recorded hash: refused unopened; else the bytes are checked before any decoder parses them
    if rec is not None and rec.sha256 and _is_recorded(rec.abspath, rec.sha256):
        if rec.type == "dicom" and _shows_text(rec.abspath):  # read only once its bytes are the run's
            if withheld is not None:
                withheld.add(key)
            return None
        try:
            return to_uint8(load_checked(rec, warn=False))
        except ImageReadError as exc:
            log.debug("no thumbnail for %s (%s)", row.get("path"), exc.reason)
            if exc.reason != CHANGED_REASON:
                return None
        except Exception as exc:  # noqa: BLE001 - any unreadable image becomes a placeholder
            log.debug("no thumbnail for %s (%s)", row.get("path"), exc)
            return None
    if refused is not None:
        refused.add(key)
    return None


class Thumbnails:
    """Grayscale JPEG thumbnails of a run's images, read on demand.

    The decoded images are kept in memory shrunk to :data:`BASE_PX` and at most
    ``memo`` of them (least recently used dropped), so memory stays bounded on
    large runs. An image that cannot be read (or is refused, see
    :func:`image_record`) becomes a placeholder and is counted in ``n_missing``
    (a refused one also in ``n_refused``).

    Parameters
    ----------
    root : Path or None
        The data folder (``manifest["input"]``).
    rows : sequence of dict
        ``assignments.csv`` rows (``path`` and ``type`` are used).
    hashes : sequence or None
        The SHA-256 the run recorded for each row's file
        (:func:`brainclust.io.runfolder.recorded_hashes`); ``None``: every image is refused.
    """

    def __init__(self, root: Path | None, rows, hashes=None, quality: int = 70, memo: int = 1024):
        self.root = root
        self.rows = rows
        self.hashes = hashes
        self.quality = quality
        self.memo = memo
        self._arrays: OrderedDict[int, np.ndarray | None] = OrderedDict()
        self._missing: set[int] = set()
        self._refused: set[int] = set()
        self._withheld: set[int] = set()

    @property
    def n_missing(self) -> int:
        return len(self._missing)

    @property
    def n_withheld(self) -> int:
        """DICOM images drawn as placeholders because they may show patient text (see :func:`load_image`)."""
        return len(self._withheld)

    @property
    def n_refused(self) -> int:
        """Images refused: a ``path`` leading outside the data folder, or bytes that are not those the run
        recorded (see :func:`load_image`)."""
        return len(self._refused)

    def array(self, i: int) -> np.ndarray | None:
        """The image as uint8 2-D array, longer side at most :data:`BASE_PX` (``None`` when unreadable)."""
        if i in self._arrays:
            self._arrays.move_to_end(i)
            return self._arrays[i]
        arr = load_image(self.root, self.rows[i], None if self.hashes is None else self.hashes[i], self._refused, i,
                         self._withheld)
        if arr is None:
            if i not in self._withheld:
                self._missing.add(i)
        elif max(arr.shape) > BASE_PX:
            arr = resize(arr, BASE_PX)
        if self.memo > 0:
            self._arrays[i] = arr
            while len(self._arrays) > self.memo:
                self._arrays.popitem(last=False)
        return arr

    def small(self, i: int, px: int) -> np.ndarray:
        """uint8 thumbnail whose longer side is ``px`` (a grey cross when the image is gone)."""
        arr = self.array(i)
        return placeholder(px) if arr is None else resize(arr, px)

    def jpeg(self, i: int, px: int) -> bytes:
        """The thumbnail as JPEG bytes."""
        return jpeg_bytes(self.small(i, px), self.quality)

    def data_uri(self, i: int, px: int) -> str:
        """The thumbnail as a JPEG ``data:`` URI."""
        return "data:image/jpeg;base64," + base64.b64encode(self.jpeg(i, px)).decode("ascii")

    def explorer_uri(self, i: int, px: int) -> str:
        """What the explorer shows for row ``i`` (map preview, galleries, detail): the thumbnail here; a unit's
        strip of slices in :class:`brainclust.report.strips.UnitThumbnails`."""
        return self.data_uri(i, px)
