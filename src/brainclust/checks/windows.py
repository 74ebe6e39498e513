"""Crops confirmed in pixels: a near-miss pair whose smaller image is a window of the larger.

A crop of one side moves the whole picture within the frame, so the near-duplicate codes
(:mod:`brainclust.checks.nearcode`, centred crops only) of an image and its one-sided crop can
fall short of ``near_similarity``. The crop's pixels, though, are unchanged: they are a window
of the original's. So a candidate pair that the search found (its code similarity within the
search margin) and whose sizes allow it is looked at in pixels: the smaller image is slid over
every offset inside the larger (:func:`skimage.feature.match_template`, the normalised
cross-correlation), through its 4 flips, on the decoded grey pixels. The best correlation is the
pair's *window similarity*; at ``Thresholds.window_similarity`` or above the pair is a near
duplicate.

Sizes that allow it: the smaller image is no larger than the larger one on either side, smaller
on at least one, and keeps at least :data:`MIN_FRACTION` of each side (a crop of up to 8 % of
both ends). Images of one size (slices of one scanner, of one exported set) are never compared
so, and neither are pictures resized after the crop: those rest on the codes.

Images with a side above :data:`MAX_SIDE` are compared at a common reduced scale (both block-averaged
by the same integer factor); a window offset that is not a multiple of the factor then scores
a little below 1.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from brainclust.checks.decode import decode
from brainclust.errors import ImageReadError
from brainclust.io.scan import ImageRecord
from brainclust.progress import bar

#: The smaller image keeps at least this fraction of each side of the larger.
MIN_FRACTION = 0.84
#: Above this side (pixels), both images are block-averaged by the same factor before matching.
MAX_SIDE = 512
#: Every offset and flip is tried at a scale whose larger side is at most this (pixels)...
COARSE = 64
#: ... and the best is refined to :data:`MAX_SIDE` when its correlation there reaches this.
COARSE_FLOOR = 0.93
#: Pixels of the decoded images held while the pairs (in image order) are matched (256 MB of float32).
HELD_PIXELS = 2 ** 26


def fits(pairs: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Mask of ``pairs`` (m, 2) whose sizes ``sizes`` (n, 2: width, height) allow one image to be a window
    of the other (module docstring)."""
    a, b = sizes[pairs[:, 0]], sizes[pairs[:, 1]]
    big = np.where((a.prod(1) >= b.prod(1))[:, None], a, b)
    small = np.where((a.prod(1) >= b.prod(1))[:, None], b, a)
    return ((small <= big).all(1) & (small < big).any(1) & (small >= MIN_FRACTION * big).all(1)
            & (small > 0).all(1))


def _reduce(img: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return img
    h, w = (img.shape[0] // factor) * factor, (img.shape[1] // factor) * factor
    return img[:h, :w].reshape(h // factor, factor, w // factor, factor).mean((1, 3))


def _best(big: np.ndarray, small: np.ndarray) -> tuple[int, int, float]:
    """Offset (row, column) and score of the best normalised cross-correlation of ``small`` inside ``big``."""
    from skimage.feature import match_template

    res = np.nan_to_num(match_template(big, small), nan=-1.0)
    at = np.unravel_index(int(np.argmax(res)), res.shape)
    return int(at[0]), int(at[1]), float(res[at])


def _level(img: np.ndarray, factor: int, final: bool) -> np.ndarray:
    """``img`` at ``1 / factor`` scale (block means); then, unless it is the scale scored, blurred by one of its
    pixels, so that a window whose offset is not a multiple of ``factor`` still scores close to 1."""
    img = _reduce(img, factor)
    if final or factor == 1:
        return img
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(img, 1.0)


def _near(big: np.ndarray, small: np.ndarray, cy: int, cx: int, r: int) -> tuple[int, int, float]:
    """Like :func:`_best`, over the offsets within ``r`` of ``(cy, cx)`` only: a few dot products instead of a
    transform of the whole image (the refinement's last step, at full resolution)."""
    h, w = small.shape
    s = small.astype(np.float64) - small.mean()
    s_norm = float(np.sqrt((s * s).sum()))
    best = (cy, cx, float("nan"))
    for y in range(max(0, cy - r), min(big.shape[0] - h, cy + r) + 1):
        for x in range(max(0, cx - r), min(big.shape[1] - w, cx + r) + 1):
            win = big[y:y + h, x:x + w].astype(np.float64)
            den = float(np.sqrt(((win - win.mean()) ** 2).sum())) * s_norm
            score = float((win * s).sum()) / den if den > 0 else float("nan")
            if score == score and not best[2] >= score:
                best = (y, x, score)
    return best


def _refine(big: np.ndarray, small: np.ndarray, factor: int, fine: int, oy: int, ox: int) -> float:
    """Follow the offset ``(oy, ox)`` found at ``factor`` down to ``fine``, a level (twice the resolution) at a
    time, trying the offsets next to it; the correlation at ``fine``."""
    score = float("nan")
    while factor > fine:
        finer = max(fine, math.ceil(factor / 2))
        b, s = _level(big, finer, finer == fine), _level(small, finer, finer == fine)
        step = factor / finer
        oy, ox, score = _near(b, s, round(oy * step), round(ox * step), math.ceil(step))
        factor = finer
    return score


def match(big: np.ndarray, small: np.ndarray) -> float:
    """Best normalised cross-correlation of ``small`` (or a flip of it) at any offset inside ``big``, both 2-D
    grey arrays with ``small`` no larger on either side.

    Coarse to fine: every offset of each flip at a scale where the larger side is at most :data:`COARSE`
    pixels (both blurred, then block-averaged); each flip whose best reaches :data:`COARSE_FLOOR` there
    is refined (:func:`_refine`) to the scale scored (:data:`MAX_SIDE`). When none does, the best coarse
    score is returned.
    """
    big, small = np.asarray(big, np.float32), np.asarray(small, np.float32)
    top = max(big.shape)
    fine = max(1, math.ceil(top / MAX_SIDE))
    factor = max(fine, math.ceil(top / COARSE))
    b = _level(big, factor, factor == fine)
    best = float("nan")
    for fy, fx in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
        flip = np.ascontiguousarray(small[::fy, ::fx])
        s = _level(flip, factor, factor == fine)
        if s.shape[0] > b.shape[0] or s.shape[1] > b.shape[1] or min(s.shape) < 2:
            return float("nan")
        oy, ox, score = _best(b, s)
        if score >= COARSE_FLOOR and factor > fine:
            score = _refine(big, flip, factor, fine, oy, ox)
        if score == score and not best >= score:  # NaN: not compared
            best = score
    return float(best)


def window_similarity(records: Sequence[ImageRecord], sizes: np.ndarray, pairs: np.ndarray,
                      progress: bool | None = None) -> np.ndarray:
    """The window similarity of each pair of image indices (``records`` and ``sizes`` rows); NaN where the
    sizes do not allow a window or an image can no longer be decoded."""
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    out = np.full(len(pairs), np.nan, np.float32)
    todo = np.nonzero(fits(pairs, np.asarray(sizes)))[0]
    if len(todo) == 0:
        return out
    held: OrderedDict[int, np.ndarray | None] = OrderedDict()

    def grey(i: int) -> np.ndarray | None:
        if i not in held:
            try:
                held[i] = decode(records[i]).gray
            except ImageReadError:
                held[i] = None
            while len(held) > 2 and sum(g.size for g in held.values() if g is not None) > HELD_PIXELS:
                held.popitem(last=False)
        held.move_to_end(i)
        return held[i]

    todo = todo[np.lexsort((pairs[todo, 1], pairs[todo, 0]))]
    pbar = bar(len(todo), "near-duplicate crops", progress, unit="pair")
    for p in todo:
        a, b = grey(int(pairs[p, 0])), grey(int(pairs[p, 1]))
        if a is not None and b is not None:
            big, small = (a, b) if a.size >= b.size else (b, a)
            out[p] = match(big, small)
        pbar.update(1)
    pbar.close()
    return out

