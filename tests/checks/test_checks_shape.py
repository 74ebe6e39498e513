"""The shape cues' fast parts give what the straightforward formulas give.

`checks.shape` replaces scipy's binary morphology (closing, opening, hole filling) by shifted
boolean operations, and the mirror symmetry's shift-by-shift correlations by sums over one matrix
of column products. These tests hold the straightforward versions and compare, on random masks of
every small shape (borders matter most there) and on smooth ones.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from brainclust.checks import shape


def _masks(seed: int, n: int):
    rng = np.random.default_rng(seed)
    for t in range(n):
        h, w = (int(v) for v in rng.integers(1, 48, 2))
        if t % 3 == 0:
            yield ndi.gaussian_filter(rng.random((h, w)), 2) > 0.5
        else:
            yield rng.random((h, w)) < rng.uniform(0.05, 0.95)


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_closing_and_opening_equal_scipy(iterations):
    for m in _masks(iterations, 400):
        assert np.array_equal(shape.closing(m, iterations),
                              ndi.binary_closing(m, iterations=iterations, border_value=1))
        assert np.array_equal(shape.opening(m, iterations), ndi.binary_opening(m, iterations=iterations))


def test_fill_holes_equals_scipy():
    for m in _masks(7, 600):
        assert np.array_equal(shape.fill_holes(m), ndi.binary_fill_holes(m))
    ring = np.ones((9, 9), bool)
    ring[3:6, 3:6] = False  # one hole: filled
    assert shape.fill_holes(ring).all()


def _symmetry_loop(s: np.ndarray) -> float:
    """The plain definition: Pearson correlation with the mirror, overlapping columns, shift by shift."""
    side, shift = shape.SYM_SIDE, shape.SYM_SHIFT
    t = np.asarray(Image.fromarray(np.asarray(s, np.float32), "F").resize((side, side), Image.BOX), np.float64)
    m = t[:, ::-1]
    best = -1.0
    for dx in range(-shift, shift + 1):
        a = t[:, max(0, dx):side + min(0, dx)]
        b = m[:, max(0, -dx):side + min(0, -dx)]
        a, b = a - a.mean(), b - b.mean()
        den = float(np.sqrt((a * a).sum() * (b * b).sum()))
        if den > 0:
            best = max(best, float((a * b).sum()) / den)
    return best


def test_symmetry_equals_the_shift_by_shift_correlation():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:120, :100]
    head = (((yy - 60) / 50.0) ** 2 + ((xx - 47) / 40.0) ** 2 < 1).astype(float)
    cases = [head, head + 0.3 * rng.random(head.shape), rng.random((80, 64)), np.fliplr(head) * xx / 100.0]
    for s in cases:
        assert shape.symmetry(s) == pytest.approx(_symmetry_loop(s), abs=1e-9)
    assert shape.symmetry(head) > 0.95 > shape.symmetry(cases[2])
    flat = np.zeros((30, 30))
    flat[:, :5] = 1.0  # one column band: some shifts have a constant side, skipped in both
    assert shape.symmetry(flat) == pytest.approx(_symmetry_loop(flat), abs=1e-9)


def test_the_caller_s_percentiles_are_used_only_when_nothing_is_stripped():
    rng = np.random.default_rng(5)
    x = rng.random((64, 64)) * 200.0
    lo, hi = np.percentile(x, [0.5, 99.5])
    assert shape.shape_cues(x, 255.0, (lo, hi)) == shape.shape_cues(x, 255.0)
    padded = np.pad(x, 6, constant_values=250.0)  # a uniform bright frame: stripped, its own percentiles
    plo, phi = np.percentile(padded, [0.5, 99.5])
    assert shape.shape_cues(padded, 255.0, (plo, phi)) == shape.shape_cues(padded, 255.0)



def test_the_unit_histogram_equals_numpy_s():
    from brainclust.checks.descriptors import unit_histogram

    rng = np.random.default_rng(11)
    edges = np.arange(65) / 64.0
    s = np.concatenate([rng.random(5000), edges, np.nextafter(edges[1:], 0), np.nextafter(edges[:-1], 1)])
    assert np.array_equal(unit_histogram(s), np.histogram(s, bins=64, range=(0.0, 1.0))[0])
    grid = s[:4900].reshape(-1, 7)  # a 2-D picture, as describe passes it
    assert np.array_equal(unit_histogram(grid), np.histogram(grid, bins=64, range=(0, 1))[0])


def test_main_object_is_the_largest_objects_share_of_them_all():
    """One disc on black (a head): 1. Sixteen equal squares on black (a star field, letters): 1/16. A disc
    and a square of a quarter of its area: 0.8 (within the morphology's rounding)."""
    main = shape.CUE_NAMES.index("main_object")
    yy, xx = np.mgrid[:200, :200]
    disc = ((yy - 100) ** 2 + (xx - 100) ** 2 < 60 ** 2).astype(float)
    assert shape.shape_cues(disc, 1.0)[main] == pytest.approx(1.0)
    stars = np.zeros((200, 200))
    for y in range(30, 170, 40):
        for x in range(30, 170, 40):
            stars[y:y + 12, x:x + 12] = 1.0
    assert shape.shape_cues(stars, 1.0)[main] == pytest.approx(1 / 16, rel=0.05)
    pair = np.zeros((200, 200))
    pair[40:120, 20:100] = 1.0  # 80 x 80
    pair[60:100, 140:180] = 1.0  # 40 x 40: a quarter
    assert shape.shape_cues(pair, 1.0)[main] == pytest.approx(0.8, abs=0.02)
    assert shape.shape_cues(np.zeros((64, 64)), 1.0)[main] == 1.0  # nothing to split: neutral


def test_strokes_is_the_share_of_the_non_air_pixels_in_thin_parts():
    """A solid disc on black (a head): 0. Lines two pixels wide on black (text strokes, plot lines): 1. A disc
    with a line drawn out of it: the line's share of the pixels. The same lines at 2 of 255 (a slice stored with
    three grey levels, stretched): 0, as ``two_level``."""
    strokes = shape.CUE_NAMES.index("strokes")
    yy, xx = np.mgrid[:200, :200]
    disc = ((yy - 100) ** 2 + (xx - 100) ** 2 < 60 ** 2).astype(float)
    assert shape.shape_cues(disc, 1.0)[strokes] < 0.01
    lines = np.zeros((200, 200))
    for y in range(20, 180, 12):
        lines[y:y + 2, 20:180] = 1.0
    assert shape.shape_cues(lines, 1.0)[strokes] == pytest.approx(1.0)
    both = disc.copy()
    both[20:22, 10:190] = 1.0  # 180 x 2 pixels outside the disc (the rows hold no disc)
    expected = 360 / both.sum()
    assert shape.shape_cues(both, 1.0)[strokes] == pytest.approx(expected, abs=0.01)
    assert shape.shape_cues(lines * 2, 255.0)[strokes] == 0.0
    assert shape.shape_cues(lines * 255, 255.0)[strokes] == pytest.approx(1.0)


def test_box_edge_is_the_share_of_the_bounding_box_outline_the_main_object_covers():
    """A textured rectangle on black (a photograph pasted on a dark slide): 1. A disc (a head): the few pixels
    where it touches its box. The rectangle at 2 of 255 (three grey levels, stretched): 0, as ``strokes``."""
    box = shape.CUE_NAMES.index("box_edge")
    rng = np.random.default_rng(0)
    photo = np.zeros((200, 200))
    photo[50:150, 30:170] = 0.3 + 0.7 * rng.random((100, 140))
    assert shape.shape_cues(photo, 1.0)[box] == pytest.approx(1.0)  # its rounded corners left out
    small = np.zeros((200, 200))
    small[90:110, 80:110] = photo[50:70, 30:60]  # 20 x 30 pixels: the corners are a larger share
    assert shape.shape_cues(small, 1.0)[box] == pytest.approx(1.0)
    yy, xx = np.mgrid[:200, :200]
    disc = ((yy - 100) ** 2 + (xx - 100) ** 2 < 60 ** 2).astype(float)
    assert shape.shape_cues(disc, 1.0)[box] < 0.25
    assert shape.shape_cues(np.round(photo * 2), 255.0)[box] == 0.0
    assert shape.shape_cues(np.zeros((64, 64)), 1.0)[box] == 0.0
