"""Image descriptors: what an image looks like, as metadata columns for the association ranking.

The scan already gives every record ``width``, ``height`` (columns of
``assignments.csv``), ``aspect`` (width / height), ``folder`` (first-level
folder) and, where a header or affine says it, ``plane`` (NIfTI: the cut;
DICOM: ImageOrientationPatient). This module adds intensity statistics, which
need the decoded image (:func:`brainclust.io.scan.load_record`), so they cost
one decode per image (a NIfTI volume is decoded once for all its slices):

- ``intensity_mean``, ``intensity_std``: of all pixels;
- ``intensity_p01``, ``intensity_p99``: 1st and 99th percentiles;
- ``foreground_fraction``: fraction of pixels above
  ``min + 0.1 * (p99 - min)`` (how much of the picture is tissue).

Values are in the image's own units as decoded: 0-255 for 8-bit PNG/JPEG,
[0, 1] for DICOM (after its window), the scanner's arbitrary units for NIfTI.
They compare images within one data set, not across formats. An image that
cannot be decoded gets ``None`` (missing).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from brainclust.errors import ImageReadError
from brainclust.io.scan import load_checked
from brainclust.progress import bar
from brainclust.terminal import count_text

log = logging.getLogger(__name__)

#: The columns :func:`intensity_stats` returns.
INTENSITY_COLUMNS = ("intensity_mean", "intensity_std", "intensity_p01", "intensity_p99", "foreground_fraction")
#: Foreground threshold as a fraction of the range from the minimum to the 99th percentile.
FOREGROUND_FRACTION = 0.1


def intensity_stats(image: np.ndarray) -> dict[str, float | None]:
    """The intensity columns of one decoded 2-D image (module docstring); ``None`` values without pixels."""
    x = np.asarray(image, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return dict.fromkeys(INTENSITY_COLUMNS)
    p01, p99 = np.percentile(x, [1, 99])
    lo = float(x.min())
    fg = float(np.mean(x > lo + FOREGROUND_FRACTION * (p99 - lo))) if p99 > lo else 0.0
    return {"intensity_mean": round(float(x.mean()), 6), "intensity_std": round(float(x.std()), 6),
            "intensity_p01": round(float(p01), 6), "intensity_p99": round(float(p99), 6),
            "foreground_fraction": round(fg, 6)}


def describe_records(records: Sequence, progress: bool | None = None) -> dict[str, list]:
    """Intensity columns of every record (one decode each): column -> one value per record."""
    out: dict[str, list] = {c: [] for c in INTENSITY_COLUMNS}
    failed = 0
    pbar = bar(len(records), "describe", progress, unit="image")
    for r in records:
        pbar.update(1)
        try:
            stats = intensity_stats(load_checked(r))
        except ImageReadError:
            failed += 1
            stats = dict.fromkeys(INTENSITY_COLUMNS)
        for c in INTENSITY_COLUMNS:
            out[c].append(stats[c])
    pbar.close()
    if failed:
        log.warning("descriptors: %s could not be decoded (intensity columns left empty)", count_text(failed, "image"))
    return out
