"""Augmented views: shape, range, reproducibility and the exact geometry of the rotations."""

from __future__ import annotations

import numpy as np
import pytest

from brainclust.features import augment
from brainclust.errors import ParameterError

RANDOM_VIEWS = ["crop", "affine", "gamma", "contrast", "bias", "noise", "intensity", "strong", "tight_crop"]


@pytest.fixture
def img():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:48, 0:48]
    blob = np.exp(-((x - 20) ** 2 + (y - 26) ** 2) / 120.0)
    return np.clip(blob + 0.05 * rng.random((48, 48)), 0, 1).astype(np.float32)


@pytest.mark.parametrize("view", sorted(augment.VIEWS))
def test_every_view_keeps_shape_dtype_and_range(view, img):
    out = augment.apply(view, img, key="k", seed=0)
    assert out.shape == img.shape and out.dtype == np.float32 and out.flags.c_contiguous
    assert np.all(np.isfinite(out)) and out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("view", RANDOM_VIEWS)
def test_random_views_are_reproducible_and_depend_on_key_and_seed(view, img):
    a = augment.apply(view, img, key="k", seed=0)
    assert np.array_equal(a, augment.apply(view, img, key="k", seed=0))
    assert not np.array_equal(a, augment.apply(view, img, key="k", seed=1))
    assert not np.array_equal(a, augment.apply(view, img, key="other", seed=0))
    assert not np.array_equal(a, img)


def test_rotations_and_flips_are_exact(img):
    assert np.array_equal(augment.apply("identity", img, "k"), img)
    for name, quarter in augment.ROTATIONS.items():
        assert np.array_equal(augment.apply(name, img, "k"), np.rot90(img, quarter))
    assert np.array_equal(augment.apply("hflip", img, "k"), img[:, ::-1])
    assert np.array_equal(augment.apply("vflip", img, "k"), img[::-1])


def test_intensity_views_keep_geometry(img):
    """Intensity jitter changes values, not where the anatomy is: the brightest pixel stays close."""
    peak = np.unravel_index(np.argmax(img), img.shape)
    for view in ("gamma", "contrast", "bias", "noise"):
        out = augment.apply(view, img, "k", seed=3)
        p = np.unravel_index(np.argmax(out), out.shape)
        assert abs(p[0] - peak[0]) <= 6 and abs(p[1] - peak[1]) <= 6, view
        assert np.corrcoef(out.ravel(), img.ravel())[0, 1] > 0.8, view


def test_gamma_is_monotone_and_bias_is_smooth(img):
    rng = np.random.default_rng(0)
    ramp = np.tile(np.linspace(0, 1, 32, dtype=np.float32), (32, 1))
    g = augment.gamma(ramp, rng)
    assert np.all(np.diff(g, axis=1) >= 0)
    flat = np.full((32, 32), 0.5, np.float32)
    b = augment.bias(flat, np.random.default_rng(1))
    assert np.abs(np.diff(b, axis=1)).max() < 0.05  # a smooth field, no speckle


def test_unknown_view_is_a_parameter_error(img):
    with pytest.raises(ParameterError, match="unknown augmentation 'blur'"):
        augment.apply("blur", img, "k")


def test_tight_crop_removes_the_air_and_keeps_the_aspect():
    """A 20 x 10 object on black fills the frame's width after the crop (no air column left); its height
    stays about half the width (0-10 % cut per side); an image without content comes back unchanged."""
    img = np.zeros((40, 40), np.float32)
    img[12:22, 5:25] = np.linspace(0.3, 0.9, 20, dtype=np.float32)
    out = augment.apply("tight_crop", img, "k")
    cols = np.flatnonzero(out.max(axis=0) > 0.1)
    rows = np.flatnonzero(out.max(axis=1) > 0.1)
    assert cols[0] == 0 and cols[-1] == 39
    assert 0.4 <= len(rows) / len(cols) <= 0.65
    assert out.max() <= 0.9 + 1e-6 and out[rows[0]:rows[-1] + 1].min() >= 0.25
    empty = np.full((40, 40), 0.05, np.float32)
    assert np.array_equal(augment.apply("tight_crop", empty, "k"), empty)
