"""Thumbnails for ``brainclust view``: made on demand from the original files, cached on disk.

The cache folder is ``$BRAINCLUST_CACHE/view`` (default
``~/.cache/brainclust/view``, the feature cache's parent folder), one
sub-folder per run (:func:`brainclust.report.viewdata.run_key`: the run's real
path and the size and time of its ``assignments.csv``, so a new run never sees
an old run's thumbnails). The run folder itself is never written (it may be
read-only). When the cache folder cannot be created, a temporary folder is
used and removed when the server stops.

Bounds: at most :data:`DECODERS` images are decoded at once (an original can
be a 2,000-pixel JPEG or a NIfTI volume), and the whole view cache is pruned to
``max_bytes`` (oldest files first) when the server starts.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

from brainclust.io.atomic import atomic_write_bytes
from brainclust.report.thumbnails import jpeg_bytes, load_image, placeholder, resize, still_shown

log = logging.getLogger(__name__)

#: Thumbnail sizes the server makes (longer side, px).
SIZES = (64, 128, 256, 512, 768)
#: Images decoded at the same time.
DECODERS = 4
#: Default size of the whole view cache (bytes).
MAX_BYTES = 2 * 1024 ** 3


def view_cache_dir(cache_dir=None) -> Path:
    """``cache_dir`` or ``$BRAINCLUST_CACHE``/``$XDG_CACHE_HOME/brainclust``/``~/.cache/brainclust``, plus ``view``."""
    from brainclust.features.cache import default_cache_dir

    return Path(cache_dir) if cache_dir is not None else default_cache_dir() / "view"


_THUMB_NAME = re.compile(r"[0-9]+-[0-9]+\.jpg")


def prune(folder: Path, max_bytes: int) -> int:
    """Delete the oldest thumbnails under ``folder`` until they take at most ``max_bytes``; return bytes freed.

    Only what ``view`` writes is counted and deleted: regular files named ``ROW-PX.jpg`` directly in a
    ``thumbs-*`` folder of ``folder``. Anything else there (a user's files, when ``--cache-dir`` names a
    folder in use) is left alone, and links are never followed.
    """
    files = []
    try:
        subs = [e for e in os.scandir(folder) if e.name.startswith("thumbs-") and e.is_dir(follow_symlinks=False)]
    except OSError:
        return 0
    for sub in subs:
        try:
            entries = list(os.scandir(sub.path))
        except OSError:
            continue
        for e in entries:
            if _THUMB_NAME.fullmatch(e.name) and e.is_file(follow_symlinks=False):
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                files.append((st.st_mtime, st.st_size, e.path))
    total = sum(f[1] for f in files)
    freed = 0
    for _, size, p in sorted(files):
        if total - freed <= max_bytes:
            break
        try:
            os.remove(p)
            freed += size
        except OSError:
            pass
    return freed


class ThumbCache:
    """JPEG thumbnails of a run's images by row index, on disk.

    Parameters
    ----------
    data : ViewData
        The run (rows and data folder).
    folder : Path
        The view cache folder (:func:`view_cache_dir`).
    max_bytes : int
        Size the view cache is pruned to when this object is made.
    """

    def __init__(self, data, folder: Path, max_bytes: int = MAX_BYTES):
        self.data = data
        self._temp = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            freed = prune(folder, max_bytes)
            if freed:
                log.info("view: pruned %.1f MB of old thumbnails from %s", freed / 1e6, folder)
            self.dir = folder / f"thumbs-{data.key}"
            self.dir.mkdir(exist_ok=True)
        except OSError as exc:
            self._temp = tempfile.mkdtemp(prefix="brainclust-view-")
            self.dir = Path(self._temp)
            log.warning("view: cannot use the cache folder %s (%s); thumbnails go to %s until the server stops",
                        folder, exc, self.dir)
        self._decode = threading.BoundedSemaphore(DECODERS)

    def get(self, i: int, px: int) -> tuple[bytes | None, str]:
        """``(jpeg, status)`` of row ``i`` at ``px``: status ``"ok"``; ``"missing"`` (unreadable: the JPEG is a
        placeholder); ``"refused"`` (its path leaves the data folder, or its bytes are not the run's: the JPEG
        is a placeholder); or ``"withheld"`` (a DICOM image that may show patient text in its pixels: the JPEG
        is a placeholder). A cached thumbnail is served only while its file holds the run's bytes."""
        path = self.dir / f"{i}-{px}.jpg"
        row, sha256 = self.data.image_of(i)
        if path.exists():
            with self._decode:  # the check hashes the file (once per version of it): as many at once as decoders
                shown = still_shown(self.data.root, row, sha256)
            if shown:
                try:
                    return path.read_bytes(), "ok"
                except OSError:
                    pass
        refused: set[int] = set()
        withheld: set[int] = set()
        with self._decode:
            arr = load_image(self.data.root, row, sha256, refused, i, withheld)
            if refused or withheld:
                return jpeg_bytes(placeholder(min(px, 128))), "refused" if refused else "withheld"
            if arr is None:
                return jpeg_bytes(placeholder(min(px, 128))), "missing"
            data = jpeg_bytes(resize(arr, min(px, max(arr.shape))), quality=80)
        try:
            atomic_write_bytes(path, data)
        except OSError as exc:
            log.debug("view: thumbnail not cached (%s)", exc)
        return data, "ok"

    def close(self) -> None:
        if self._temp:
            shutil.rmtree(self._temp, ignore_errors=True)
