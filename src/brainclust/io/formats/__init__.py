"""Medical image formats: DICOM (:mod:`.dicom`) and NIfTI (:mod:`.nifti`, read by :mod:`.niftiread`).

:func:`detect` tells a file's kind from its content, never from its name alone:
DICOM by the ``DICM`` marker at byte 128, NIfTI by the header magic (also inside
gzip). Everything else is left to Pillow. :mod:`brainclust.io.scan` dispatches on
the result; pydicom and nibabel are imported only when such a file is met.
"""

from __future__ import annotations

import os

from brainclust.io.formats import dicom, nifti, niftiread

__all__ = ["detect", "dicom", "nifti"]


def detect(path: str | os.PathLike) -> str:
    """``"dicom"``, ``"nifti"`` or ``"image"`` (anything else: Pillow decides) from the file's content."""
    if dicom.has_preamble(path):
        return "dicom"
    if niftiread.is_nifti(path):
        return "nifti"
    return "image"
