"""Near-duplicate codes: the thumbnail seen through a flip and a centred crop, as a unit vector.

A *code* is made from the 64x64 thumbnail of :mod:`brainclust.checks.descriptors`
(the whole frame on the image's own percentile scale): optionally flipped
(``flip`` 0 none, 1 left-right, 2 up-down, 3 both), optionally cropped by a
fraction ``crop`` on every side, Gaussian-blurred (sigma 1 pixel of the 64-pixel
thumbnail) and resampled to 32x32, then mean-centred and scaled to unit length.
The dot product of two codes is the Pearson correlation of the two blurred
thumbnails, so it ignores a linear change of intensity; the percentile scale and
blur absorb resizing and recompression.

Blur and resampling are one 32x64 matrix per axis (``R @ T @ R.T`` per image), so
codes of many thumbnails are two large matrix products.
"""

from __future__ import annotations

import numpy as np

#: Side of a code's grid (the code has SIDE**2 values).
SIDE = 32
#: Gaussian blur of the thumbnail before resampling, in thumbnail pixels.
SIGMA = 1.0
#: Flip variants: 0 none, 1 left-right, 2 up-down, 3 both.
FLIPS = (0, 1, 2, 3)
#: Centred crops (fraction removed on every side) that the search queries with.
SEARCH_CROPS = (0.0, 0.02, 0.04, 0.06)
#: The crops searched with above the exact-search size (fewer passes: 8 instead of 16).
SEARCH_CROPS_LARGE = (0.0, 0.04)
#: Centred crops that a candidate pair is verified with (the best one counts).
VERIFY_CROPS = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07)


def resample_matrix(n_in: int, n_out: int = SIDE, crop: float = 0.0, sigma: float = SIGMA) -> np.ndarray:
    """(n_out, n_in) matrix: blur by ``sigma`` (scaled with the crop), then sample ``n_out`` points
    evenly over the central ``1 - 2 crop`` of the axis (linear interpolation)."""
    span = 1.0 - 2.0 * crop
    pos = (crop + (np.arange(n_out) + 0.5) / n_out * span) * n_in - 0.5
    lo = np.floor(pos).astype(int)
    frac = pos - lo
    interp = np.zeros((n_out, n_in))
    for off, wgt in ((0, 1.0 - frac), (1, frac)):
        idx = np.clip(lo + off, 0, n_in - 1)
        np.add.at(interp, (np.arange(n_out), idx), wgt)
    s = sigma * span
    if s > 0:
        x = np.arange(n_in)
        g = np.exp(-0.5 * ((x[:, None] - x[None, :]) / s) ** 2)
        g /= g.sum(0, keepdims=True)  # each input pixel's mass sums to one; edges renormalised below
        blur = g / g.sum(1, keepdims=True)
        interp = interp @ blur
    return interp.astype(np.float32)


_CACHE: dict[tuple[int, float], np.ndarray] = {}


def _matrix(n_in: int, crop: float) -> np.ndarray:
    key = (n_in, round(float(crop), 6))
    if key not in _CACHE:
        _CACHE[key] = resample_matrix(n_in, SIDE, crop)
    return _CACHE[key]


def codes(thumbs: np.ndarray, flip: int = 0, crop: float = 0.0, chunk: int = 4096) -> np.ndarray:
    """Unit codes (n, SIDE**2) float32 of thumbnails (n, T, T) uint8 or float.

    A constant thumbnail gives the zero vector (it matches nothing).
    """
    thumbs = np.asarray(thumbs)
    if thumbs.ndim == 2:
        thumbs = thumbs[None]
    n, h, w = thumbs.shape
    ry, rx = _matrix(h, crop), _matrix(w, crop)
    if flip in (2, 3):
        ry = ry[:, ::-1]
    if flip in (1, 3):
        rx = rx[:, ::-1]
    out = np.empty((n, SIDE * SIDE), np.float32)
    for s in range(0, n, chunk):
        t = thumbs[s:s + chunk].astype(np.float32)
        m = len(t)
        u = (t.reshape(m * h, w) @ rx.T).reshape(m, h, SIDE)           # columns: (m, h, SIDE)
        u = ry @ u.transpose(1, 0, 2).reshape(h, m * SIDE)              # rows: (SIDE, m * SIDE)
        c = np.ascontiguousarray(u.reshape(SIDE, m, SIDE).transpose(1, 0, 2)).reshape(m, -1)
        c -= c.mean(1, keepdims=True)
        norm = np.linalg.norm(c, axis=1, keepdims=True)
        # a flat picture leaves only rounding residue: it has no code (relative tolerance)
        tol = 1e-4 * SIDE * (np.abs(t).reshape(m, -1).mean(1, keepdims=True) + 1e-6)
        flat = norm <= tol
        np.divide(c, norm, out=c, where=~flat)
        c[flat[:, 0]] = 0.0
        out[s:s + chunk] = c
    return out


def pair_similarity(thumbs: np.ndarray, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best code similarity of pairs (i, j) over flips of ``i`` and centred crops of either image.

    Returns ``(similarity, variant)`` with ``variant = flip * 100 + crop percent`` (a negative crop
    percent: ``j`` was the one cropped). Centred crops commute with flips, so cropping ``j`` needs
    no flip of its own.
    """
    i, j = np.asarray(i, int), np.asarray(j, int)
    best = np.full(len(i), -1.0, np.float32)
    arg = np.zeros(len(i), np.int32)
    if len(i) == 0:
        return best, arg
    # each image's codes once (candidate pairs share images), then the pairs' rows of them
    ui, at_i = np.unique(i, return_inverse=True)
    uj, at_j = np.unique(j, return_inverse=True)
    ti, tj = thumbs[ui], thumbs[uj]
    whole_j = codes(tj)
    crops_j = {c: codes(tj, 0, c) for c in VERIFY_CROPS if c > 0}
    for flip in FLIPS:
        whole_i = codes(ti, flip)
        trials = [(whole_i, whole_j, 0)]
        for c in VERIFY_CROPS:
            if c > 0:
                pct = int(round(c * 100))
                trials += [(codes(ti, flip, c), whole_j, pct), (whole_i, crops_j[c], -pct)]
        for a, b, pct in trials:
            s = np.einsum("nd,nd->n", a[at_i], b[at_j])
            better = s > best
            best[better] = s[better]
            arg[better] = flip * 100 + pct
    return best, arg
