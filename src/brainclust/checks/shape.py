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
- ``main_object``: the largest non-air object's share of all of them (area): close to 1 for a slice (one
  head), small for many objects on a dark ground (a star field, letters of a logo);
- ``strokes``: the share of the non-air pixels that an opening (two steps of the 3x3 cross) removes: the
  parts thinner than about 5 pixels of the working copy. Close to 0 for a slice (the head is solid: 0.48 at
  most on the shared data's 9,871 images and volume slices), close to 1 for text, line plots and line art on
  a dark ground (0.76-1.0); 0, like ``two_level``, below a quarter of the nominal full scale (a slice stored
  with three grey levels of 255, or a JPEG re-save of one, is scattered specks once stretched: up to 1.0);
- ``flat_air``: the share of the air's pixels within 0.02 of its median level (0 when there is no air): the
  ground of a rendered page or chart is one level (0.94 and more). Many exported slices have flat air too (half
  the 4-class slices reach 0.9), so it tells nothing alone; it keeps ``strokes`` from reading the specks of noisy
  air, or the dark tissue a steep window puts among the air, as text (they are not one level);
- ``box_edge``: the share of the outline of the largest non-air object's bounding box that the object covers,
  2 pixels at each end of every side left out (the opening rounds a rectangle's corners): close to 1 for a
  rectangle (a photograph or a screen pasted on a dark ground), small for a head, which touches its box at a
  few points (on the shared data's slices with air around one object: 0.39 at most on the 4-class set, 0.26
  on slices cut from its volumes); 0, like ``strokes``, below a quarter of the nominal full scale;
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
left: padding is not content. These cues are cheap: the binary morphology (closing, opening, hole
filling with the 3x3 cross) is done with shifted boolean operations on at most 256x256 pixels, the
same masks as scipy's ``binary_closing``/``binary_opening``/``binary_fill_holes`` in a fraction of
their time on such small images (closing: 0.24 ms against 3.5 ms on 240x256;
``tests/checks/test_checks_shape.py`` compares them).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

#: The names of :func:`shape_cues`, in order.
CUE_NAMES = ("air_border", "object_touch", "gap_ratio", "extreme_fraction", "two_level", "symmetry", "main_object",
             "strokes", "flat_air", "box_edge")
#: Side of the picture the symmetry is measured on, and the largest shift tried.
SYM_SIDE = 64
SYM_SHIFT = 6
#: Dark level of air on the image's own scale.
AIR_LEVEL = 0.1
#: How far from the air's median level a pixel of flat air may be (``flat_air``).
FLAT_TOLERANCE = 0.02
#: Pixels left out at each end of every side of the bounding box (``box_edge``).
CORNER = 2
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
    """The parts of ``mask`` connected to the frame (4-connected, as ``ndimage.label``'s default)."""
    lab, n = ndi.label(mask)
    if n == 0:
        return np.zeros_like(mask)
    keep = np.zeros(n + 1, bool)
    keep[lab[0]] = keep[lab[-1]] = keep[lab[:, 0]] = keep[lab[:, -1]] = True
    keep[0] = False
    return keep[lab]


def _step(mask: np.ndarray, border: bool, grow: bool) -> np.ndarray:
    """One dilation (``grow``) or erosion of ``mask`` by the 3x3 cross, pixels outside the frame being
    ``border``: the same as ``ndimage.binary_dilation``/``binary_erosion`` with their default structure
    (``tests/checks/test_checks_shape.py`` compares them), ~15x faster on these small masks."""
    h, w = mask.shape
    pad = np.full((h + 2, w + 2), border, bool)
    pad[1:-1, 1:-1] = mask
    op = np.logical_or if grow else np.logical_and
    out = mask.copy()
    for part in (pad[:h, 1:-1], pad[2:, 1:-1], pad[1:-1, :w], pad[1:-1, 2:]):
        op(out, part, out=out)
    return out


def _steps(mask: np.ndarray, iterations: int, border: bool, grow_first: bool) -> np.ndarray:
    for grow in (grow_first, not grow_first):
        for _ in range(iterations):
            mask = _step(mask, border, grow)
    return mask


def closing(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``ndimage.binary_closing(mask, iterations=iterations, border_value=1)``: dilations, then erosions."""
    return _steps(mask, iterations, True, True)


def opening(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``ndimage.binary_opening(mask, iterations=iterations)`` (border 0): erosions, then dilations."""
    return _steps(mask, iterations, False, False)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_fill_holes(mask)``: every background region not connected to the frame filled."""
    return ~_touching(~mask)


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
    """Best Pearson correlation of ``s`` (resampled to 64x64) with its left-right mirror, over shifts.

    Each shift's sums come from the column sums and one matrix of column products (the same values
    as correlating the overlapping columns shift by shift, up to float64 rounding)."""
    from PIL import Image

    t = np.asarray(Image.fromarray(np.asarray(s, np.float32), "F").resize((SYM_SIDE, SYM_SIDE), Image.BOX),
                   np.float64)
    rows = t.shape[0]
    col, sq = t.sum(0), (t * t).sum(0)
    prod = t.T @ t[:, ::-1]  # prod[c, d] = column c of t . column d of the mirror
    best = -1.0
    for dx in range(-SYM_SHIFT, SYM_SHIFT + 1):
        a0, a1 = max(0, dx), SYM_SIDE + min(0, dx)   # columns of t
        b0, b1 = max(0, -dx), SYM_SIDE + min(0, -dx)  # columns of the mirror: column d is t's 63 - d
        n = rows * (a1 - a0)
        sa, qa = col[a0:a1].sum(), sq[a0:a1].sum()
        sb, qb = col[SYM_SIDE - b1:SYM_SIDE - b0].sum(), sq[SYM_SIDE - b1:SYM_SIDE - b0].sum()
        sab = float(np.trace(prod[a0:a1, b0:b1]))
        va, vb = qa - sa * sa / n, qb - sb * sb / n
        if va > 0 and vb > 0:
            best = max(best, (sab - sa * sb / n) / float(np.sqrt(va * vb)))
    return best


def shape_cues(x: np.ndarray, full_scale: float, scale: tuple[float, float] | None = None) -> tuple[float, ...]:
    """:data:`CUE_NAMES` of an image ``x`` in its own units (``full_scale``: the nominal white level).

    ``scale``: the 0.5 and 99.5 percentiles of ``x`` when the caller has them (used when no padding
    is stripped: they are then the same numbers)."""
    x = np.asarray(x, np.float64)
    whole = x.shape
    x = strip_padding(x)
    lo, hi = scale if scale is not None and x.shape == whole else np.percentile(x, [0.5, 99.5])
    if not hi > lo:
        lo, hi = float(x.min()), float(x.max())
    if not hi > lo:
        return 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0
    s = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    low5 = float((s < 0.05).mean())
    gap = float(((s >= 0.08) & (s < 0.2)).mean())
    gap_ratio = gap / max(low5, 1e-3)
    bottom, top = float((s < 0.02).mean()), float((s > 0.98).mean())
    extreme = bottom + top
    wide = (hi - lo) >= 0.25 * full_scale
    two_level = min(bottom, top) if wide else 0.0
    sym = symmetry(s)
    h, w = s.shape
    iy, ix = int(round(INSET * h)), int(round(INSET * w))
    if h - 2 * iy < 8 or w - 2 * ix < 8:
        return 0.0, 1.0, gap_ratio, extreme, two_level, sym, 1.0, 0.0, 0.0, 0.0
    s = s[iy:h - iy, ix:w - ix]
    h, w = s.shape
    dark = s < AIR_LEVEL
    air = _touching(closing(dark, 2)) & dark
    ring = _ring(h, w)
    air_border = float(air[ring].mean())
    opened = opening(~air, 2)
    n_content = int((~air).sum())
    strokes = 1.0 - int(opened.sum()) / n_content if n_content and wide else 0.0
    ground = s[air]
    flat = float((np.abs(ground - np.median(ground)) <= FLAT_TOLERANCE).mean()) if ground.size else 0.0
    obj = fill_holes(opened)
    lab, n = ndi.label(obj)
    if n:
        sizes = np.bincount(lab.ravel())[1:]
        main = lab == (int(sizes.argmax()) + 1)
        touch, share = float(main[ring].mean()), float(sizes.max() / sizes.sum())
        box = _box_edge(main) if wide else 0.0
    else:
        touch, share, box = 0.0, 1.0, 0.0
    return air_border, touch, gap_ratio, extreme, two_level, sym, share, strokes, flat, box


def _box_edge(mask: np.ndarray) -> float:
    """The share of the outline of ``mask``'s bounding box (its first and last rows and columns, less
    :data:`CORNER` pixels at each end: the opening rounds corners) that lies in ``mask``."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    cy = CORNER if box.shape[0] > 4 * CORNER else 0
    cx = CORNER if box.shape[1] > 4 * CORNER else 0
    sides = [box[0, cx:box.shape[1] - cx], box[-1, cx:box.shape[1] - cx],
             box[cy:box.shape[0] - cy, 0], box[cy:box.shape[0] - cy, -1]]
    return float(np.concatenate(sides).mean())
