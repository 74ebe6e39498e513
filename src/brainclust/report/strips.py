"""A unit (volume, series, subject) shown as a strip of its slices, for runs with ``--unit`` above ``slice``.

Such a run's ``assignments.csv`` has one row per unit (``path`` = the unit id, not a file);
``slices.csv`` lists every slice of every unit (``unit``, ``path``, ``type``...). The report reads
both (untrusted input: every slice path passes :func:`brainclust.report.thumbnails.image_record`).

* the explorer (map preview, galleries, the detail view) shows a unit as a row of up to
  :data:`STRIP_SLICES` slice thumbnails, evenly spaced through the unit's slices in the order of
  the scan (for a volume cut with ``--slices axial:8``: bottom to top), each fitted in a square;
* the montages and the paper figures show the unit's middle slice (one square tile).

The explorer's budget logic measures the strips themselves, so a run of many units gets smaller
strips or a sample, as with single images.
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np

from brainclust.io.slicefile import read_slices
from brainclust.report.thumbnails import Thumbnails, jpeg_bytes, placeholder

#: Slices shown per unit in the explorer.
STRIP_SLICES = 8


def strip_members(n: int, k: int = STRIP_SLICES) -> list[int]:
    """Up to ``k`` of ``n`` positions, evenly spaced from the first to the last."""
    if n <= k:
        return list(range(n))
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, k)})


def _square(arr: np.ndarray, px: int) -> np.ndarray:
    """``arr`` (longer side ``px``) centred on a black ``px`` x ``px`` square."""
    out = np.zeros((px, px), np.uint8)
    h, w = arr.shape[:2]
    y, x = (px - h) // 2, (px - w) // 2
    out[y:y + h, x:x + w] = arr[:px, :px]
    return out


class UnitThumbnails(Thumbnails):
    """Thumbnails of unit rows: the middle slice (:meth:`array`), and a strip of slices (:meth:`explorer_uri`).

    Parameters
    ----------
    root : Path or None
        The data folder.
    rows : list of dict
        ``assignments.csv`` rows (``unit`` names the unit).
    slices : dict
        :func:`brainclust.io.slicefile.read_slices` of the run.
    """

    def __init__(self, root: Path | None, rows, slices: dict[str, list[dict]], quality: int = 70, memo: int = 1024):
        super().__init__(root, rows, None, quality, memo)
        flat: list[dict] = []
        self.members: list[list[int]] = []
        for r in rows:
            mine = slices.get(str(r.get("unit") or r.get("path") or ""), [])
            self.members.append(list(range(len(flat), len(flat) + len(mine))))
            flat.extend(mine)
        self.slices = Thumbnails(root, flat, [s.get("sha256", "") for s in flat], quality, memo)

    @property
    def n_missing(self) -> int:
        return self.slices.n_missing + sum(1 for m in self.members if not m)

    @property
    def n_refused(self) -> int:
        return self.slices.n_refused

    @property
    def n_withheld(self) -> int:
        return self.slices.n_withheld

    def array(self, i: int) -> np.ndarray | None:
        """The unit's middle slice (``None`` when it has none or it cannot be read)."""
        m = self.members[i]
        return self.slices.array(m[len(m) // 2]) if m else None

    def strip(self, i: int, px: int) -> np.ndarray:
        """Up to :data:`STRIP_SLICES` slices of unit ``i``, each in a ``px`` square, side by side."""
        m = self.members[i]
        tiles = [_square(self.slices.small(m[j], px), px) for j in strip_members(len(m))] or [placeholder(px)]
        return np.hstack(tiles)

    def explorer_uri(self, i: int, px: int) -> str:
        return "data:image/jpeg;base64," + base64.b64encode(jpeg_bytes(self.strip(i, px), self.quality)).decode("ascii")



def run_thumbnails(run) -> Thumbnails:
    """The thumbnails of a run read back (:class:`brainclust.report.run.RunOutputs`): a unit run with its
    ``slices.csv`` gets :class:`UnitThumbnails`, any other run plain :class:`Thumbnails`."""
    slices = read_slices(run.folder.slices) if run.rows and "unit" in run.rows[0] else None
    if slices is None:
        return Thumbnails(run.input_root, run.rows, run.hashes)
    return UnitThumbnails(run.input_root, run.rows, slices)
