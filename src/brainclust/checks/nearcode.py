"""Near-duplicate codes: the thumbnail seen through a flip and a centred crop, as a unit vector.

A *code* is made from the 64x64 thumbnail of :mod:`brainclust.checks.descriptors`
(the whole frame on the image's own percentile scale): optionally cropped by a
fraction ``crop`` on every side, Gaussian-blurred (sigma 1 pixel of the 64-pixel
thumbnail) and resampled to 32x32, then mean-centred and scaled to unit length.
The dot product of two codes is the Pearson correlation of the two blurred
thumbnails, so it ignores a linear change of intensity; the percentile scale and
blur absorb resizing and recompression.

Blur and resampling are one 32x64 matrix per axis (``R @ T @ R.T`` per image), so
codes of many thumbnails are two large matrix products. ``R`` is mirror-symmetric, so
the code of a flipped thumbnail (``flip`` 0 none, 1 left-right, 2 up-down, 3 both)
is the code flipped (:func:`flipped`).
"""

from __future__ import annotations

import numpy as np

#: Side of a code's grid (the code has SIDE**2 values).
SIDE = 32
#: Gaussian blur of the thumbnail before resampling, in thumbnail pixels.
SIGMA = 1.0
#: Flip variants: 0 none, 1 left-right, 2 up-down, 3 both.
FLIPS = (0, 1, 2, 3)
#: Thumbnails whose codes are made at once.
CHUNK = 256
#: Resampling weights below this are set to zero (they would be subnormal in float32).
TAIL = 1e-30
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
    # the Gaussian's far tail is subnormal in float32: it adds nothing to a sum of pixels, but every
    # product with a subnormal costs a microcode assist (the resampling ran ~14x slower)
    interp[np.abs(interp) < TAIL] = 0.0
    return interp.astype(np.float32)


_CACHE: dict[tuple[int, float], np.ndarray] = {}


def _matrix(n_in: int, crop: float) -> np.ndarray:
    key = (n_in, round(float(crop), 6))
    if key not in _CACHE:
        _CACHE[key] = resample_matrix(n_in, SIDE, crop)
    return _CACHE[key]


def _chunks(thumbs: np.ndarray, chunk: int):
    """``(start, float32 chunk, flat tolerance)`` of thumbnails (n, T, T), ``chunk`` at a time: small
    chunks keep the temporaries in the cache and in memory already mapped."""
    for s in range(0, len(thumbs), chunk):
        t = thumbs[s:s + chunk].astype(np.float32)
        # a flat picture leaves only rounding residue: it has no code (relative tolerance)
        yield s, t, 1e-4 * SIDE * (np.abs(t).reshape(len(t), -1).mean(1, keepdims=True) + 1e-6)


def _unit_codes(t: np.ndarray, crop: float, tol: np.ndarray) -> np.ndarray:
    m, h, w = t.shape
    ry, rx = _matrix(h, crop), _matrix(w, crop)
    u = (t.reshape(m * h, w) @ rx.T).reshape(m, h, SIDE)           # columns: (m, h, SIDE)
    u = ry @ u.transpose(1, 0, 2).reshape(h, m * SIDE)              # rows: (SIDE, m * SIDE)
    c = np.ascontiguousarray(u.reshape(SIDE, m, SIDE).transpose(1, 0, 2)).reshape(m, -1)
    c -= c.mean(1, keepdims=True)
    norm = np.linalg.norm(c, axis=1, keepdims=True)
    flat = norm <= tol
    np.divide(c, norm, out=c, where=~flat)
    c[flat[:, 0]] = 0.0
    return c


def _thumbs3d(thumbs: np.ndarray) -> np.ndarray:
    thumbs = np.asarray(thumbs)
    return thumbs[None] if thumbs.ndim == 2 else thumbs


def codes(thumbs: np.ndarray, crop: float = 0.0, chunk: int = CHUNK) -> np.ndarray:
    """Unit codes (n, SIDE**2) float32 of thumbnails (n, T, T) uint8 or float, cropped by ``crop``
    (flips: :func:`flipped`).

    A constant thumbnail gives the zero vector (it matches nothing).
    """
    thumbs = _thumbs3d(thumbs)
    out = np.empty((len(thumbs), SIDE * SIDE), np.float32)
    for s, t, tol in _chunks(thumbs, chunk):
        out[s:s + len(t)] = _unit_codes(t, crop, tol)
    return out


def flipped(c: np.ndarray, flip: int) -> np.ndarray:
    """Codes (m, SIDE**2) of the flipped thumbnails, from their unflipped codes. The resampling matrices
    are mirror-symmetric, so the code of a flipped thumbnail is the flipped code (to float rounding):
    a flip costs a permutation, not a resampling."""
    if not flip:
        return c
    g = c.reshape(-1, SIDE, SIDE)[:, ::-1 if flip in (2, 3) else 1, ::-1 if flip in (1, 3) else 1]
    return g.reshape(len(c), -1)


def variant_codes(thumbs: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """(n, len(VERIFY_CROPS) + 3, SIDE**2): each thumbnail's unflipped code at every verification crop,
    then its whole code through flips 1, 2 and 3 (:func:`flipped`)."""
    thumbs = _thumbs3d(thumbs)
    n = len(VERIFY_CROPS)
    out = np.empty((len(thumbs), n + len(FLIPS) - 1, SIDE * SIDE), np.float32)
    for s, t, tol in _chunks(thumbs, chunk):
        rows = slice(s, s + len(t))
        for k, crop in enumerate(VERIFY_CROPS):
            out[rows, k] = _unit_codes(t, crop, tol)
        for f in FLIPS[1:]:
            out[rows, n + f - 1] = flipped(out[rows, 0], f)
    return out


def _trial_order() -> tuple[np.ndarray, np.ndarray]:
    """Column of each (flip, crop) trial in ``[i crops x j flips (8 x 4), i flips x j crops (4 x 7)]``,
    in the order :func:`pair_similarity` prefers on ties, and its ``variant`` code."""
    n = len(VERIFY_CROPS)
    cols, variants = [], []
    for f in range(len(FLIPS)):
        cols.append(f)  # i crop 0 (whole) against j whole through flip f
        variants.append(f * 100)
        for k in range(1, n):
            pct = int(round(VERIFY_CROPS[k] * 100))
            cols += [k * len(FLIPS) + f, n * len(FLIPS) + f * (n - 1) + k - 1]
            variants += [f * 100 + pct, f * 100 - pct]
    return np.array(cols), np.array(variants, np.int32)


def variant_similarity(ci: np.ndarray, cj: np.ndarray, at_i: np.ndarray, at_j: np.ndarray,
                       chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Best similarity of pairs (``ci[at_i[p]]``, ``cj[at_j[p]]``) of :func:`variant_codes` over flips
    of the first and crops of either, as :func:`pair_similarity` returns it. Flipping the first image
    against a crop of the second is flipping the second (flips are involutions and commute with
    centred crops), so every trial is a product of stored codes. Codes of any length and float type are
    taken (products in float32): the bound of :func:`brainclust.checks.duplicates.upper_bounds` is this
    on shorter vectors."""
    n = len(VERIFY_CROPS)
    whole = [0, *range(n, n + len(FLIPS) - 1)]  # the whole code through flips 0..3
    cols, variants = _trial_order()
    best = np.empty(len(at_i), np.float32)
    arg = np.empty(len(at_i), np.int32)
    for s in range(0, len(at_i), chunk):
        gi = ci[at_i[s:s + chunk]].astype(np.float32, copy=False)
        gj = cj[at_j[s:s + chunk]].astype(np.float32, copy=False)
        crops_i = np.matmul(gi[:, :n], gj[:, whole].transpose(0, 2, 1))        # (m, n, 4)
        crops_j = np.matmul(gi[:, whole], gj[:, 1:n].transpose(0, 2, 1))       # (m, 4, n - 1)
        trials = np.concatenate([crops_i.reshape(len(gi), -1), crops_j.reshape(len(gi), -1)], axis=1)[:, cols]
        pick = trials.argmax(1)  # the first best in trial order
        best[s:s + chunk] = trials[np.arange(len(gi)), pick]
        arg[s:s + chunk] = variants[pick]
    return best, arg


def pair_similarity(thumbs: np.ndarray, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best code similarity of pairs (i, j) over flips of ``i`` and centred crops of either image.

    Returns ``(similarity, variant)`` with ``variant = flip * 100 + crop percent`` (a negative crop
    percent: ``j`` was the one cropped). Each image's codes are made once, whether it is an ``i`` or a ``j``.
    """
    i, j = np.asarray(i, int), np.asarray(j, int)
    if len(i) == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int32)
    both, at = np.unique(np.concatenate([i, j]), return_inverse=True)
    c = variant_codes(thumbs[both])
    return variant_similarity(c, c, at[:len(i)], at[len(i):])
