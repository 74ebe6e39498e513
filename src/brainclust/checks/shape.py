"""Shape and histogram cues of a grey medical slice: air around one object, an air spike at the floor.

An MRI slice is one object (the head) surrounded by air, and air is dark in every sequence: on the
image's own percentile scale a large, border-connected region sits at the floor, separated from
the tissue by a histogram gap. A photograph of a scene has no such region; its dark pixels are
shadows spread over the whole frame and the histogram is continuous. The cues here measure that,
on the working copy that :func:`brainclust.checks.descriptors.describe` already holds (longer side
at most 256 pixels, values clipped to [0, 1] on the 0.5-99.5 percentile scale):

- ``air_border``: the fraction of a ring just inside the frame (4 % of the shorter side wide,
  after an inset of 3 % per side, so that a thin frame line drawn at the very edge does not count)
  that belongs to the *air*: the dark pixels (< 0.1) of regions connected to the frame (thin bright
  marks such as text or ruler ticks in the air are closed over first);
- ``object_touch``: the fraction of that ring covered by the largest non-air object (the head of a
  tightly cropped slice touches the frame; a scene covers almost all of it);
- ``gap_ratio``: pixels in the band [0.08, 0.2) over pixels below 0.05: small when the dark pixels
  form a spike at the floor (air), large when they are the tail of a continuous histogram;
- ``extreme_fraction``: pixels below 0.02 or above 0.98: close to 1 for two-level graphics
  (silhouettes, masks, checkerboards, line art);
- ``symmetry``: the best correlation of the 64x64 picture with its left-right mirror over
  horizontal shifts of up to 6 pixels (axial and coronal slices are close to symmetric; most
  scenes are not);
- ``two_level``: the smaller of the fractions below 0.02 and above 0.98, when the image spans at
  least a quarter of its nominal full scale (else 0: a slice stored with three grey levels of 255
  is not a graphic).

Uniform padding (edge rows or columns of one level above the image's dark level, e.g. a white or
grey frame added around a slice) is stripped first, and the percentile scale is taken on what is
left: padding is not content. These cues are cheap (a few binary morphology passes on at most
256x256 pixels).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

#: The names of :func:`shape_cues`, in order.
CUE_NAMES = ("air_border", "object_touch", "gap_ratio", "extreme_fraction", "two_level", "symmetry")
#: Side of the picture the symmetry is measured on, and the largest shift tried.
SYM_SIDE = 64
SYM_SHIFT = 6
#: Dark level of air on the image's own scale.
AIR_LEVEL = 0.1
#: Inset of the ring from the frame, and its width, as fractions of the shorter side.
INSET = 0.03
RING = 0.04


def _ring(h: int, w: int) -> np.ndarray:
    b = max(1, round(RING * min(h, w)))
    ring = np.zeros((h, w), bool)
    ring[:b] = ring[-b:] = True
    ring[:, :b] = ring[:, -b:] = True
    return ring


def _touching(mask: np.ndarray) -> np.ndarray:
    """The parts of ``mask`` connected to the frame."""
    lab, n = ndi.label(mask)
    if n == 0:
        return np.zeros_like(mask)
    edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    return np.isin(lab, edge[edge > 0])


def strip_padding(x: np.ndarray, max_share: float = 0.25) -> np.ndarray:
    """``x`` without its uniform edge rows and columns (peak-to-peak under 3 % of the range) whose level
    is above the image's dark level (10 % of the range); at most ``max_share`` of each side."""
    lo, hi = float(x.min()), float(x.max())
    span = hi - lo
    if not span > 0:
        return x
    tol, dark = 0.03 * span, lo + AIR_LEVEL * span
    top, bottom, left, right = 0, x.shape[0], 0, x.shape[1]
    limit_y, limit_x = int(max_share * x.shape[0]), int(max_share * x.shape[1])

    def uniform(v: np.ndarray) -> bool:
        return float(v.max() - v.min()) < tol and float(v.mean()) > dark

    while top < limit_y and uniform(x[top, left:right]):
        top += 1
    while x.shape[0] - bottom < limit_y and uniform(x[bottom - 1, left:right]):
        bottom -= 1
    while left < limit_x and uniform(x[top:bottom, left]):
        left += 1
    while x.shape[1] - right < limit_x and uniform(x[top:bottom, right - 1]):
        right -= 1
    return x[top:bottom, left:right]


def symmetry(s: np.ndarray) -> float:
    """Best Pearson correlation of ``s`` (resampled to 64x64) with its left-right mirror, over shifts."""
    from PIL import Image

    t = np.asarray(Image.fromarray(np.asarray(s, np.float32), "F").resize((SYM_SIDE, SYM_SIDE), Image.BOX),
                   np.float64)
    m = t[:, ::-1]
    best = -1.0
    for dx in range(-SYM_SHIFT, SYM_SHIFT + 1):
        a = t[:, max(0, dx):SYM_SIDE + min(0, dx)]
        b = m[:, max(0, -dx):SYM_SIDE + min(0, -dx)]
        a = a - a.mean()
        b = b - b.mean()
        den = float(np.sqrt((a * a).sum() * (b * b).sum()))
        if den > 0:
            best = max(best, float((a * b).sum()) / den)
    return best


def shape_cues(x: np.ndarray, full_scale: float) -> tuple[float, ...]:
    """:data:`CUE_NAMES` of an image ``x`` in its own units (``full_scale``: the nominal white level)."""
    x = strip_padding(np.asarray(x, np.float64))
    lo, hi = np.percentile(x, [0.5, 99.5])
    if not hi > lo:
        lo, hi = float(x.min()), float(x.max())
    if not hi > lo:
        return 0.0, 1.0, 0.0, 1.0, 0.0, 1.0
    s = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    low5 = float((s < 0.05).mean())
    gap = float(((s >= 0.08) & (s < 0.2)).mean())
    gap_ratio = gap / max(low5, 1e-3)
    bottom, top = float((s < 0.02).mean()), float((s > 0.98).mean())
    extreme = bottom + top
    two_level = min(bottom, top) if (hi - lo) >= 0.25 * full_scale else 0.0
    sym = symmetry(s)
    h, w = s.shape
    iy, ix = int(round(INSET * h)), int(round(INSET * w))
    if h - 2 * iy < 8 or w - 2 * ix < 8:
        return 0.0, 1.0, gap_ratio, extreme, two_level, sym
    s = s[iy:h - iy, ix:w - ix]
    h, w = s.shape
    dark = s < AIR_LEVEL
    closed = ndi.binary_closing(dark, iterations=2, border_value=1)
    air = _touching(closed) & dark
    ring = _ring(h, w)
    air_border = float(air[ring].mean())
    obj = ndi.binary_fill_holes(ndi.binary_opening(~air, iterations=2))
    lab, n = ndi.label(obj)
    if n:
        sizes = np.bincount(lab.ravel())[1:]
        main = lab == (int(sizes.argmax()) + 1)
        touch = float(main[ring].mean())
    else:
        touch = 0.0
    return air_border, touch, gap_ratio, extreme, two_level, sym
