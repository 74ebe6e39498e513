"""The brain's support in a volume, robust to intensity noise (used by :mod:`.nifti` to choose slices).

See "Which slices contain brain" in :mod:`brainclust.io.formats.nifti` for the rule. Arrays are
canonical (RAS+) volumes: axis 0 is sagittal, 1 coronal, 2 axial.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Gaussian smoothing (voxels of the analysed grid) before the threshold.
MASK_SIGMA = 1.0
#: Volumes with more voxels are analysed at half resolution (2x2x2 block means).
MASK_FULL_RES_VOXELS = 2 ** 21
#: A slice contains brain when its count reaches this fraction of the largest count along its axis.
BRAIN_SLICE_FRACTION = 0.05
#: Array axis of each plane's slice index.
AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}


def _block_mean(vol: np.ndarray) -> np.ndarray:
    """2x2x2 block means (a trailing odd slice of an axis is dropped)."""
    n = [d // 2 for d in vol.shape]
    out = np.zeros(n, np.float32)
    for i in (0, 1):
        for j in (0, 1):
            for k in (0, 1):
                out += vol[i:2 * n[0]:2, j:2 * n[1]:2, k:2 * n[2]:2]
    return out / 8


def _upsample(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A coarse mask back on the full grid (each voxel to 2x2x2; an odd trailing slice copies its neighbour)."""
    n = mask.shape
    fine = np.broadcast_to(mask[:, None, :, None, :, None], (n[0], 2, n[1], 2, n[2], 2))
    fine = fine.reshape(2 * n[0], 2 * n[1], 2 * n[2])
    pad = [(0, s - f) for s, f in zip(shape, fine.shape)]
    return np.pad(fine, pad, mode="edge") if any(p[1] for p in pad) else fine


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``values`` (the bin edge that maximises the between-class variance)."""
    hist, edges = np.histogram(values, bins=bins)
    hist = hist.astype(np.float64)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mean0 = m0 / np.maximum(w0, 1)
    mean1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mean0 - mean1) ** 2
    return float(edges[1:][int(np.argmax(between[:-1]))])


@dataclass(frozen=True)
class BrainMask:
    """The brain's support (see "Which slices contain brain"): a box of the volume and the mask inside it.

    ``box`` is a tuple of three slices of the full volume; ``support`` the boolean mask of
    that box; ``threshold`` Otsu's threshold of the smoothed volume.
    """

    box: tuple[slice, slice, slice]
    support: np.ndarray
    threshold: float


def brain_mask(vol: np.ndarray) -> BrainMask:
    """The support of the brain: the largest connected component of the smoothed volume above
    Otsu's threshold, dilated by one analysed voxel (see "Which slices contain brain")."""
    from scipy import ndimage

    whole = tuple(slice(0, n) for n in vol.shape)
    coarse = vol.size > MASK_FULL_RES_VOXELS and min(vol.shape) >= 4
    grid = _block_mean(vol) if coarse else vol.astype(np.float32, copy=False)
    smooth = ndimage.gaussian_filter(grid, MASK_SIGMA, mode="nearest")
    lo, hi = float(smooth.min()), float(smooth.max())
    if not hi > lo:
        return BrainMask(whole, np.ones(vol.shape, bool), lo)
    t = _otsu(smooth)
    labels, n = ndimage.label(smooth > t)
    if n == 0:
        return BrainMask(whole, np.ones(vol.shape, bool), t)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    support = ndimage.binary_dilation(labels == int(np.argmax(sizes)))
    cbox = ndimage.find_objects(support.astype(np.uint8))[0]
    support = support[cbox]
    if not coarse:
        return BrainMask(cbox, support, t)
    # the box on the full grid; an odd trailing slice of an axis goes with the last coarse slice
    box = tuple(slice(2 * b.start, 2 * b.stop if b.stop < g else n)
                for b, g, n in zip(cbox, grid.shape, vol.shape))
    return BrainMask(box, _upsample(support, tuple(b.stop - b.start for b in box)), t)


def slice_counts(vol: np.ndarray, mask: BrainMask | None = None) -> dict[str, np.ndarray]:
    """Per plane, each slice's count of brain voxels (voxels above the threshold inside the support)."""
    m = brain_mask(vol) if mask is None else mask
    fg = np.greater(vol[m.box], m.threshold)
    fg &= m.support
    fg = fg.view(np.uint8)
    yz = fg.sum(axis=0, dtype=np.int64)
    inner = {"sagittal": fg.sum(axis=(1, 2), dtype=np.int64), "coronal": yz.sum(axis=1), "axial": yz.sum(axis=0)}
    out = {}
    for plane, axis in AXIS.items():
        c = np.zeros(vol.shape[axis], np.int64)
        c[m.box[axis]] = inner[plane]
        out[plane] = c
    return out
