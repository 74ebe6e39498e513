"""Small grayscale thumbnails of a run's images for the report, read from ``manifest["input"] / path``."""

from __future__ import annotations

import base64
import io
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class Thumbnails:
    """Small grayscale JPEG thumbnails of a run's images, read on demand and memoised.

    Intensities are clipped to the 0.5-99.5 percentiles, like the
    pre-processing. An image that cannot be read becomes a placeholder.
    """

    def __init__(self, root: Path | None, rows: list[dict], quality: int = 70):
        self.root = root
        self.rows = rows
        self.quality = quality
        self._arrays: dict[int, np.ndarray | None] = {}
        self.n_missing = 0

    def array(self, i: int) -> np.ndarray | None:
        """The image as uint8 2-D array (``None`` when it cannot be read)."""
        if i not in self._arrays:
            from brainclust.io.scan import load_record
            from brainclust.report.export import record_of_row

            arr = None
            if self.root is not None:
                try:
                    a = np.asarray(load_record(record_of_row(self.root, self.rows[i])), dtype=np.float64)
                    lo, hi = np.percentile(a, [0.5, 99.5])
                    arr = (np.clip((a - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8) if hi > lo else \
                        np.zeros(a.shape, np.uint8)
                except Exception as exc:  # noqa: BLE001 - any unreadable image becomes a placeholder
                    log.debug("report: no thumbnail for %s (%s)", self.rows[i].get("path"), exc)
                    arr = None
            if arr is None:
                self.n_missing += 1
            self._arrays[i] = arr
        return self._arrays[i]

    def small(self, i: int, px: int) -> np.ndarray:
        """uint8 thumbnail whose longer side is ``px`` (a grey cross when the image is gone)."""
        from PIL import Image

        arr = self.array(i)
        if arr is None:
            ph = np.full((px, px), 200, np.uint8)
            d = np.arange(px)
            ph[d, d] = ph[d, px - 1 - d] = 120
            return ph
        im = Image.fromarray(arr)
        im.thumbnail((px, px), Image.Resampling.LANCZOS if max(im.size) > px else Image.Resampling.BICUBIC)
        if max(im.size) < px:
            scale = px / max(im.size)
            im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                           Image.Resampling.BICUBIC)
        return np.asarray(im)

    def data_uri(self, i: int, px: int) -> str:
        """The thumbnail as a JPEG ``data:`` URI."""
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(self.small(i, px)).save(buf, format="JPEG", quality=self.quality, optimize=True)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
