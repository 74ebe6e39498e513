"""The geometry of the demo's slices: which slices cut through brain, display orientation, square crops, resizing."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PIL import Image

# Fraction of the brain volume cut off at each end when choosing slice positions
# (0.15 -> slices come from the central 70 % of brain tissue along that axis).
EDGE_FRACTION = 0.15
# Margin around the brain's bounding box, as a fraction of its larger side.
CROP_MARGIN = 0.08


def slice_range(brain3d: NDArray[np.bool_], axis: int) -> tuple[int, int]:
    """Range of slice indices that cut through substantial brain.

    The range spans the central ``1 - 2 * EDGE_FRACTION`` of the brain
    *volume* along ``axis`` (quantiles of the cumulative tissue count), not of
    its extent: the template's brainstem runs down to the bottom of the field
    of view, so an extent-based range would include many small low axial
    slices of cerebellum and temporal poles.

    Parameters
    ----------
    brain3d : numpy.ndarray
        Boolean 3-D brain mask.
    axis : int
        Voxel axis normal to the slicing plane.

    Returns
    -------
    tuple of int
        ``(first, last)``, both inclusive.
    """
    area = brain3d.sum(axis=tuple(a for a in range(3) if a != axis)).astype(np.float64)
    cumulative = np.cumsum(area) / area.sum()
    first, last = np.searchsorted(cumulative, [EDGE_FRACTION, 1.0 - EDGE_FRACTION])
    return int(first), int(last)


def orient(slice2d: NDArray[np.float32]) -> NDArray[np.float32]:
    """Turn a voxel-space slice into radiology display orientation.

    The two in-plane voxel axes of every plane are (first, second) =
    axial (R, A), coronal (R, S), sagittal (A, S).  Transposing and reversing
    both axes puts anterior (axial) or superior (coronal, sagittal) at the top,
    the patient's right on the image's left (radiological convention) and,
    for sagittal slices, the face on the left.

    Parameters
    ----------
    slice2d : numpy.ndarray
        2-D slice indexed by the two remaining voxel axes in RAS order.

    Returns
    -------
    numpy.ndarray
        The re-oriented slice (rows top to bottom, columns left to right).
    """
    return np.ascontiguousarray(slice2d.T[::-1, ::-1])


def crop_box(mask2d: NDArray[np.bool_]) -> tuple[int, int, int]:
    """Square crop window around a 2-D brain footprint.

    Parameters
    ----------
    mask2d : numpy.ndarray
        Boolean footprint of the brain in display orientation.

    Returns
    -------
    tuple of int
        ``(row0, col0, side)``: top-left corner (may be negative) and side of a
        square window centred on the footprint's bounding box with a margin.
    """
    rows = np.flatnonzero(mask2d.any(axis=1))
    cols = np.flatnonzero(mask2d.any(axis=0))
    height = rows[-1] - rows[0] + 1
    width = cols[-1] - cols[0] + 1
    side = int(np.ceil(max(height, width) * (1.0 + 2.0 * CROP_MARGIN)))
    row0 = int((rows[0] + rows[-1] + 1) // 2 - side // 2)
    col0 = int((cols[0] + cols[-1] + 1) // 2 - side // 2)
    return row0, col0, side


def crop_square(image: NDArray[np.float32], box: tuple[int, int, int]) -> NDArray[np.float32]:
    """Cut a square window out of ``image``, zero-padding where it overhangs.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image.
    box : tuple of int
        ``(row0, col0, side)`` as returned by :func:`crop_box`.

    Returns
    -------
    numpy.ndarray
        Array of shape ``(side, side)``.
    """
    row0, col0, side = box
    out = np.zeros((side, side), dtype=np.float32)
    r_lo, c_lo = max(row0, 0), max(col0, 0)
    r_hi = min(row0 + side, image.shape[0])
    c_hi = min(col0 + side, image.shape[1])
    out[r_lo - row0 : r_hi - row0, c_lo - col0 : c_hi - col0] = image[r_lo:r_hi, c_lo:c_hi]
    return out


def resize(image: NDArray[np.float32], size: int) -> NDArray[np.float32]:
    """Resize a square float image to ``size`` x ``size`` (antialiased bilinear).

    Parameters
    ----------
    image : numpy.ndarray
        Square 2-D float image.
    size : int
        Output side length in pixels.

    Returns
    -------
    numpy.ndarray
        Resized float32 image.
    """
    pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F")
    return np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
