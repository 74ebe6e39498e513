"""Stage 2: aspect-preserving resize, padding, min-max rescale (eqs 1-4), model input."""

from __future__ import annotations

import numpy as np
import pytest

from brainclust.errors import ParameterError
from brainclust.features.preprocess import (PreprocessConfig, pad_to_square, preprocess, rescale, resize_keep_aspect,
                                   to_model_input)


# -- resize (eqs 1-2) -----------------------------------------------------------------
@pytest.mark.parametrize("hw, size, expected", [
    ((50, 100), 224, (112, 224)),   # 100 wide x 50 high -> 224 x 112
    ((100, 50), 224, (224, 112)),   # portrait
    ((64, 64), 32, (32, 32)),       # square, downscale
    ((30, 90), 60, (20, 60)),
    ((7, 300), 224, (5, 224)),      # 5.23 -> 5
])
def test_resize_keeps_aspect(hw, size, expected):
    rng = np.random.default_rng(0)
    img = rng.random(hw).astype(np.float32)
    out = resize_keep_aspect(img, size)
    assert out.shape == expected
    assert out.dtype == np.float32
    assert max(out.shape) == size
    # aspect ratio kept up to rounding of the shorter side
    h, w = hw
    assert abs(out.shape[0] / out.shape[1] - h / w) <= 1.0 / min(out.shape) + 1e-9


def test_resize_same_size_is_identity():
    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = resize_keep_aspect(img, 4)
    np.testing.assert_array_equal(out, img)


def test_resize_of_constant_stays_constant():
    img = np.full((10, 30), 7.5, np.float32)
    out = resize_keep_aspect(img, 90)
    assert out.shape == (30, 90)
    np.testing.assert_allclose(out, 7.5, rtol=1e-6)


def test_resize_preserves_high_dynamic_range():
    img = np.full((4, 8), 40000.0, np.float32)
    img[:, :4] = 0.0
    out = resize_keep_aspect(img, 16)
    assert out.max() == pytest.approx(40000.0)
    assert out.min() == pytest.approx(0.0)


# -- pad ----------------------------------------------------------------------------
def test_pad_to_square_centres_image():
    img = np.ones((2, 4), np.float32)
    out = pad_to_square(img, 6, value=-1.0)
    assert out.shape == (6, 6) and out.dtype == np.float32
    expected = np.full((6, 6), -1.0, np.float32)
    expected[2:4, 1:5] = 1.0
    np.testing.assert_array_equal(out, expected)


def test_pad_to_square_odd_margin():
    img = np.ones((3, 5), np.float32)
    out = pad_to_square(img, 5, value=0.25)
    # (5 - 3) // 2 = 1 row on top, 1 below
    np.testing.assert_array_equal(out[1:4, :], 1.0)
    np.testing.assert_array_equal(out[0], 0.25)
    np.testing.assert_array_equal(out[4], 0.25)


def test_preprocess_pads_with_new_min_and_never_stretches():
    rng = np.random.default_rng(1)
    img = rng.random((50, 100)).astype(np.float32) + 10.0
    cfg = PreprocessConfig(size=64, clip_percentiles=None, new_min=-2.0, new_max=3.0)
    out = preprocess(img, cfg)
    assert out.shape == (64, 64) and out.dtype == np.float32
    # content is 32 rows high (100x50 -> 64x32), centred: rows 16..47
    np.testing.assert_array_equal(out[:16], -2.0)
    np.testing.assert_array_equal(out[48:], -2.0)
    content = out[16:48]
    assert content.min() == pytest.approx(-2.0)
    assert content.max() == pytest.approx(3.0)
    # every content row has real (non-padding) variation
    assert (content.std(axis=1) > 0.1).all()


# -- rescale (eqs 3-4) ----------------------------------------------------------------
def test_rescale_eq3_hand_computed():
    img = np.array([[2.0, 4.0], [6.0, 10.0]])
    # (x - min) / (max - min) with min 2, max 10
    expected = np.array([[0.0, 0.25], [0.5, 1.0]], np.float32)
    out = rescale(img)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-7)


def test_rescale_eq4_new_range():
    img = np.array([[2.0, 4.0], [6.0, 10.0]])
    # new_min + (x - min) / (max - min) * (new_max - new_min) with range [-1, 3]
    expected = np.array([[-1.0, 0.0], [1.0, 3.0]], np.float32)
    np.testing.assert_allclose(rescale(img, -1.0, 3.0), expected, atol=1e-6)


def test_rescale_with_explicit_bounds_clips():
    img = np.array([[0.0, 5.0], [10.0, 20.0]])
    out = rescale(img, 0.0, 1.0, lo=5.0, hi=15.0)
    np.testing.assert_allclose(out, [[0.0, 0.0], [0.5, 1.0]], atol=1e-7)


@pytest.mark.parametrize("new_min, new_max", [(0.0, 1.0), (-1.0, 1.0), (0.2, 0.7)])
def test_constant_image_maps_to_new_min(new_min, new_max):
    img = np.full((5, 7), 123.0, np.float32)
    out = rescale(img, new_min, new_max)
    assert not np.isnan(out).any()
    np.testing.assert_array_equal(out, np.float32(new_min))
    cfg = PreprocessConfig(size=16, new_min=new_min, new_max=new_max)
    out2 = preprocess(img, cfg)
    assert out2.shape == (16, 16)
    assert not np.isnan(out2).any()
    np.testing.assert_allclose(out2, new_min, atol=1e-6)


def test_percentile_clip_removes_outlier_influence():
    rng = np.random.default_rng(2)
    img = rng.uniform(0.0, 100.0, (64, 64)).astype(np.float32)
    img[10, 10] = 1e6  # one very bright pixel
    no_clip = preprocess(img, PreprocessConfig(size=64, clip_percentiles=None))
    clip = preprocess(img, PreprocessConfig(size=64, clip_percentiles=(0.5, 99.5)))
    mask = np.ones(img.shape, bool)
    mask[10, 10] = False
    # without the clip the rest of the image is squashed near 0
    assert no_clip[mask].max() < 0.01
    # with the clip it still spans (nearly) the whole range
    assert clip[mask].min() < 0.05
    assert clip[mask].max() > 0.95
    assert np.percentile(clip[mask], 90) - np.percentile(clip[mask], 10) > 0.5


def test_nan_and_inf_input_give_finite_output():
    rng = np.random.default_rng(3)
    img = rng.random((20, 30)).astype(np.float32)
    img[0, 0] = np.nan
    img[5, 5] = np.inf
    img[6, 6] = -np.inf
    for clip in (None, (0.5, 99.5)):
        out = preprocess(img, PreprocessConfig(size=32, clip_percentiles=clip))
        assert np.isfinite(out).all()
        assert out.min() >= 0.0 and out.max() <= 1.0


def test_all_nan_image_gives_new_min():
    img = np.full((10, 10), np.nan, np.float32)
    out = preprocess(img, PreprocessConfig(size=16, new_min=0.1, new_max=0.9))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, 0.1, atol=1e-6)


def test_preprocess_output_range_and_dtype():
    rng = np.random.default_rng(4)
    img = (rng.random((40, 40)) * 65535).astype(np.float32)
    out = preprocess(img, PreprocessConfig(size=32))
    assert out.shape == (32, 32) and out.dtype == np.float32
    assert out.min() == pytest.approx(0.0) and out.max() == pytest.approx(1.0)


# -- model input ---------------------------------------------------------------------------
def test_to_model_input_three_equal_channels_normalised():
    rng = np.random.default_rng(5)
    img = rng.random((8, 6)).astype(np.float32)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    out = np.asarray(to_model_input(img, mean, std))
    assert out.shape == (3, 8, 6)
    assert out.dtype == np.float32
    for c in range(3):
        np.testing.assert_allclose(out[c], (img - mean[c]) / std[c], rtol=1e-5, atol=1e-6)
        # undoing the normalisation gives the same grey image in every channel
        np.testing.assert_allclose(out[c] * std[c] + mean[c], img, atol=1e-5)


def test_to_model_input_identity_normalisation():
    img = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    out = to_model_input(img, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert out.shape == (3, 3, 4)
    for c in range(3):
        np.testing.assert_array_equal(out[c], img)


# -- config ----------------------------------------------------------------------------------
def test_default_config_is_valid():
    PreprocessConfig().validate()
    PreprocessConfig(size=8, clip_percentiles=None, new_min=-1.0, new_max=1.0).validate()
    PreprocessConfig(clip_percentiles=(0.0, 100.0)).validate()


@pytest.mark.parametrize("kwargs", [
    {"size": 0},
    {"size": 7},
    {"size": -224},
    {"size": 224.0},
    {"size": "224"},
    {"clip_percentiles": (99.5, 0.5)},
    {"clip_percentiles": (5.0, 5.0)},
    {"clip_percentiles": (-1.0, 99.0)},
    {"clip_percentiles": (1.0, 101.0)},
    {"new_min": 1.0, "new_max": 1.0},
    {"new_min": 1.0, "new_max": 0.0},
    {"new_min": float("nan")},
    {"intensity_window": (255.0, 0.0)},
    {"intensity_window": (0.0, float("inf"))},
])
def test_config_validate_rejects_bad_values(kwargs):
    with pytest.raises(ParameterError):
        PreprocessConfig(**kwargs).validate()


def test_config_as_dict_is_json_ready():
    import json

    d = PreprocessConfig(size=64, clip_percentiles=(1.0, 99.0)).as_dict()
    assert d == {"size": 64, "clip_percentiles": [1.0, 99.0], "new_min": 0.0, "new_max": 1.0}
    json.dumps(d)
    assert PreprocessConfig(clip_percentiles=None).as_dict()["clip_percentiles"] is None


def test_intensity_window_keeps_absolute_grey_levels():
    dark = np.full((8, 8), 50.0)
    dark[2:6, 2:6] = 100.0
    bright = dark * 2  # the same picture, twice as bright
    per_image = PreprocessConfig(size=8, clip_percentiles=None)
    assert np.allclose(preprocess(dark, per_image), preprocess(bright, per_image))  # min-max removes brightness
    fixed = PreprocessConfig(size=8, clip_percentiles=(0.5, 99.5), intensity_window=(0.0, 255.0))
    a, b = preprocess(dark, fixed), preprocess(bright, fixed)
    np.testing.assert_allclose(a[0, 0], 50 / 255, rtol=1e-6)
    np.testing.assert_allclose(b[3, 3], 200 / 255, rtol=1e-6)
    np.testing.assert_allclose(preprocess(dark * 4, fixed).max(), 1.0)  # 400 is clipped to the window
    d = fixed.as_dict()
    assert d["intensity_window"] == [0.0, 255.0]
    assert "intensity_window" not in per_image.as_dict()  # unset: cache keys as before the option existed
