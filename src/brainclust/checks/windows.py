"""Crops confirmed in pixels: a near-miss pair whose smaller image is a window of the larger.

A crop of one side moves the whole picture within the frame, so the near-duplicate codes
(:mod:`brainclust.checks.nearcode`, centred crops only) of an image and its one-sided crop can
fall short of ``near_similarity``. The crop's pixels, though, are unchanged: they are a window
of the original's. So a candidate pair that the search found (its code similarity within the
search margin) and whose sizes allow it is looked at in pixels, on the decoded grey images, for
each of the smaller image's 4 flips:

1. *where*: the smaller image is slid over every offset inside the larger
   (:func:`skimage.feature.match_template`, the normalised cross-correlation) at a scale where the
   larger side is at most :data:`COARSE` pixels (block means, blurred by one pixel, the smaller
   image's blurred border left out). The offsets of the :data:`REFINED` best flips are followed a
   level at a time, each twice the resolution, over the offsets next to them, down to the full
   resolution (:func:`_refine`), as long as they correlate at :data:`COARSE_FLOOR` or more;
2. *how alike*: at that offset, the correlation of the two images' *detail* (each minus its
   Gaussian blur of :data:`DETAIL_SIGMA` pixels, the border left out). Pixels copied unchanged
   give 1, a JPEG re-save of the crop 0.97 or more at quality 90 (0.89-0.99 at 75); two
   neighbouring slices of one volume, whose outlines correlate at 0.97-0.998, differ in their detail
   (noise, small structures: 0.958 at most over 660 pairs 1 voxel apart).

The best over the flips is the pair's *window similarity* (NaN when no flip gets to the full resolution);
at ``Thresholds.window_similarity`` or above the pair is a near duplicate.

Sizes that allow it: the smaller image is no larger than the larger one on either side, smaller
on at least one, and keeps at least :data:`MIN_FRACTION` of each side (a crop of up to 8 % of
both ends). Images of one size (slices of one scanner, of one exported set) are never compared
so, and neither are pictures resized after the crop: those rest on the codes.

Both images are taken in float64 and centred first, so that 16-bit or offset intensities keep the
correlations within [-1, 1]. A pair whose image cannot be read again gets NaN, and its index is
added to the caller's ``unread`` set, so that a passing read error is not stored with the pairs.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from brainclust.checks.decode import decode
from brainclust.errors import ImageReadError
from brainclust.io.scan import ImageRecord
from brainclust.progress import bar

#: The smaller image keeps at least this fraction of each side of the larger.
MIN_FRACTION = 0.84
#: Every offset and flip is tried at a scale whose larger side is at most this (pixels)...
COARSE = 64
#: ... and the best :data:`REFINED` flips are followed to the full resolution while their correlation on each
#: reduced level reaches this.
COARSE_FLOOR = 0.85
REFINED = 2
#: Pixels of a blurred level left out at each side of the smaller image (its blur reflects at its border).
TRIM = 2
#: The detail compared at the full resolution: the image minus its Gaussian blur of this sigma (pixels).
DETAIL_SIGMA = 1.5
#: Pixels of the decoded images held while the pairs (in image order) are matched (256 MB of float32).
HELD_PIXELS = 2 ** 26


def fits(pairs: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Mask of ``pairs`` (m, 2) whose sizes ``sizes`` (n, 2: width, height) allow one image to be a window
    of the other (module docstring)."""
    a, b = sizes[pairs[:, 0]], sizes[pairs[:, 1]]
    first_big = (a.prod(1) >= b.prod(1))[:, None]
    big, small = np.where(first_big, a, b), np.where(first_big, b, a)
    return ((small <= big).all(1) & (small < big).any(1) & (small >= MIN_FRACTION * big).all(1)
            & (small > 0).all(1))


def _reduce(img: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return img
    h, w = (img.shape[0] // factor) * factor, (img.shape[1] // factor) * factor
    return img[:h, :w].reshape(h // factor, factor, w // factor, factor).mean((1, 3))


def _level(img: np.ndarray, factor: int) -> np.ndarray:
    """``img`` at ``1 / factor`` scale (block means), blurred by one of its pixels when reduced, so that a window
    whose offset is not a multiple of ``factor`` still scores close to 1."""
    if factor == 1:
        return img
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(_reduce(img, factor), 1.0)


def _trimmed(small: np.ndarray, factor: int) -> tuple[np.ndarray, int]:
    """The smaller image's level at ``factor`` without its blurred border (when it is large enough), and the
    pixels left out on each side."""
    s = _level(small, factor)
    t = TRIM if factor > 1 and min(s.shape) > 4 * TRIM + 2 else 0
    return (s[t:s.shape[0] - t, t:s.shape[1] - t] if t else s), t


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return min(1.0, max(-1.0, float((a * b).sum()) / den)) if den > 0 else float("nan")


def _best(big: np.ndarray, small: np.ndarray) -> tuple[int, int, float]:
    """Offset (row, column) and score of the best normalised cross-correlation of ``small`` inside ``big``."""
    from skimage.feature import match_template

    res = np.nan_to_num(match_template(big, small), nan=-1.0)
    at = np.unravel_index(int(np.argmax(res)), res.shape)
    return int(at[0]), int(at[1]), min(1.0, float(res[at]))


def _near(big: np.ndarray, small: np.ndarray, cy: int, cx: int, r: int) -> tuple[int, int, float]:
    """Like :func:`_best`, over the offsets within ``r`` of ``(cy, cx)`` only: a few dot products instead of a
    transform of the whole image."""
    h, w = small.shape
    cy, cx = min(max(cy, 0), big.shape[0] - h), min(max(cx, 0), big.shape[1] - w)
    s = small - small.mean()
    s_sq = float((s * s).sum())
    best = (cy, cx, float("nan"))
    for y in range(max(0, cy - r), min(big.shape[0] - h, cy + r) + 1):
        for x in range(max(0, cx - r), min(big.shape[1] - w, cx + r) + 1):
            win = big[y:y + h, x:x + w]
            total = float(win.sum())
            den = math.sqrt(max(0.0, float((win * win).sum()) - total * total / win.size) * s_sq)
            score = min(1.0, float((win * s).sum()) / den) if den > 0 else float("nan")
            if score == score and not best[2] >= score:
                best = (y, x, score)
    return best


def _refine(big_at: Callable[[int], np.ndarray], small: np.ndarray, factor: int, oy: int,
            ox: int) -> tuple[int, int] | None:
    """Follow the offset ``(oy, ox)`` of ``small`` found at ``factor`` to the full resolution, a level (twice the
    resolution) at a time, over the offsets within a step of it; the offset at full resolution, or ``None`` when
    a reduced level on the way scores below :data:`COARSE_FLOOR`."""
    while factor > 1:
        finer = math.ceil(factor / 2)
        s, t = _trimmed(small, finer)
        step = factor / finer
        # a level places the offset to about one of its pixels; from factor 2, the next pixel on each side is
        # enough at the full resolution
        r = 1 if finer == 1 and factor == 2 else math.ceil(step)
        y, x, score = _near(big_at(finer), s, round(oy * step) + t, round(ox * step) + t, r)
        if finer > 1 and not score >= COARSE_FLOOR:
            return None
        oy, ox, factor = y - t, x - t, finer
    return oy, ox


def _detail(big: np.ndarray, small: np.ndarray, y: int, x: int) -> float:
    """Correlation of the detail of ``small`` and of the window of ``big`` at ``(y, x)``, their borders left out."""
    from scipy.ndimage import gaussian_filter

    h, w = small.shape
    m = math.ceil(3 * DETAIL_SIGMA)
    y0, x0 = max(0, y - m), max(0, x - m)
    region = big[y0:y + h + m, x0:x + w + m]
    window = (region - gaussian_filter(region, DETAIL_SIGMA))[y - y0:y - y0 + h, x - x0:x - x0 + w]
    own = small - gaussian_filter(small, DETAIL_SIGMA)
    inner = (slice(m, h - m), slice(m, w - m)) if min(h, w) > 4 * m else (slice(None), slice(None))
    return _ncc(window[inner], own[inner])


def match(big: np.ndarray, small: np.ndarray) -> float:
    """The window similarity of ``small`` (or a flip of it) inside ``big``, both 2-D grey arrays with ``small`` no
    larger on either side (module docstring)."""
    big, small = np.asarray(big, np.float64), np.asarray(small, np.float64)
    if small.shape[0] > big.shape[0] or small.shape[1] > big.shape[1] or min(small.shape) < 2:
        return float("nan")
    big, small = np.nan_to_num(big - np.nanmean(big)), np.nan_to_num(small - np.nanmean(small))
    # at most COARSE pixels on the longer side, at least 8 on the smaller image's shorter one (a strip)
    factor = max(1, min(math.ceil(max(big.shape) / COARSE), min(small.shape) // 8))
    levels: dict[int, np.ndarray] = {}

    def big_at(f: int) -> np.ndarray:
        if f not in levels:
            levels[f] = _level(big, f)
        return levels[f]

    tried = []
    for fy, fx in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
        flip = np.ascontiguousarray(small[::fy, ::fx])
        s, t = _trimmed(flip, factor)
        oy, ox, coarse = _best(big_at(factor), s)
        tried.append((coarse, flip, oy - t, ox - t))
    best = float("nan")
    # the best two flips: on a near-symmetric slice the mirror image can score above the true flip at this scale
    for coarse, flip, oy, ox in sorted(tried, key=lambda c: -c[0])[:REFINED]:
        found = _refine(big_at, flip, factor, oy, ox) if coarse >= COARSE_FLOOR else None
        score = float("nan") if found is None else _detail(big, flip, *found)
        if score == score and not best >= score:  # NaN: not compared
            best = score
    return float(best)


def library_versions() -> str:
    """The versions of the libraries that compute a window similarity (part of the cached pairs' key)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"scikit-image {version('scikit-image')}, scipy {version('scipy')}"
    except PackageNotFoundError:
        return "unknown"


def window_similarity(records: Sequence[ImageRecord], sizes: np.ndarray, pairs: np.ndarray,
                      progress: bool | None = None, unread: set | None = None) -> np.ndarray:
    """The window similarity of each pair of image indices (``records`` and ``sizes`` rows); NaN where the
    sizes do not allow a window or an image can no longer be decoded (its index then goes into ``unread``)."""
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
                if unread is not None:
                    unread.add(i)
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

