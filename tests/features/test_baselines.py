"""Traditional backbones (pixels, HOG) and the multi-layer CNN backbone: shapes, hand-checkable values, caching."""

import numpy as np
import pytest

from brainclust.features import backbones
from brainclust.errors import ParameterError
from brainclust.features.extractor import FeatureExtractor
from brainclust.features.preprocess import PreprocessConfig, preprocess


def _checkerboard(side: int = 64) -> np.ndarray:
    """2 x 2 checkerboard: dark top-left and bottom-right quadrants, bright elsewhere."""
    img = np.zeros((side, side), np.uint8)
    h = side // 2
    img[:h, h:] = 255
    img[h:, :h] = 255
    return img


def test_registry_lists_the_traditional_backbones():
    names = backbones.available()
    assert {"pixels", "hog", "histogram", "efficientnet_lite0_multi"} <= set(names)
    assert not any(backbones.runs_network(n) for n in ("pixels@64", "hog", "histogram@32"))


@pytest.mark.parametrize("name, size, dim", [("pixels", 128, 128 * 128), ("pixels@64", 64, 4096),
                                             ("hog", 128, 1764), ("hog@64", 64, 1764),
                                             ("histogram", 128, 32), ("histogram@64", 64, 32)])
def test_array_backbones_resolve_without_weights(name, size, dim):
    spec, weights = backbones.resolve(name)
    assert spec.name == name  # the name round-trips (predict rebuilds the backbone from it)
    assert (spec.input_size, spec.dim) == (size, dim)
    assert spec.array_fn is not None and dict(spec.params)["size"] == size
    assert weights.path is None and weights.sha256 == "none"


@pytest.mark.parametrize("name, match", [("pixels@abc", "must be an integer"), ("pixels@4", ">= 8"),
                                         ("hog@60", "multiple of 8"), ("sift", "unknown backbone")])
def test_bad_array_backbone_names_are_parameter_errors(name, match):
    with pytest.raises(ParameterError, match=match):
        backbones.resolve(name)


def test_array_backbones_refuse_a_weights_file():
    with pytest.raises(ParameterError, match="has no weights"):
        backbones.resolve("pixels", weights="/some/file.pth")


def test_pixels_of_a_constant_image_are_that_constant():
    img = np.full((8, 8), 0.25, np.float32)
    f = backbones.pixel_features(img)
    assert f.shape == (64,) and f.dtype == np.float32
    np.testing.assert_array_equal(f, 0.25)


def test_pixels_of_a_checkerboard_downsampled_keep_its_quadrants():
    img = preprocess(_checkerboard(64).astype(np.float32), PreprocessConfig(size=8))
    f = backbones.pixel_features(img)
    grid = f.reshape(8, 8)
    assert f.shape == (64,)
    # away from the quadrant borders the values are exactly black (0) and white (1)
    np.testing.assert_allclose(grid[:2, :2], 0.0, atol=1e-6)
    np.testing.assert_allclose(grid[:2, -2:], 1.0, atol=1e-6)
    np.testing.assert_allclose(grid[-2:, :2], 1.0, atol=1e-6)
    np.testing.assert_allclose(grid[-2:, -2:], 0.0, atol=1e-6)
    # the pattern is its own negative when mirrored, so the borders blend symmetrically
    np.testing.assert_allclose(grid + grid[:, ::-1], 1.0, atol=1e-5)
    assert grid.min() >= 0.0 and grid.max() <= 1.0


def test_hog_of_a_constant_image_is_zero():
    f = backbones.hog_features(np.full((64, 64), 0.7, np.float32))
    assert f.shape == (1764,) and f.dtype == np.float32
    np.testing.assert_array_equal(f, 0.0)


@pytest.mark.parametrize("axis, expected_bin", [(1, 0), (0, 4)])
def test_hog_of_an_edge_has_energy_only_in_the_gradient_direction_bin(axis, expected_bin):
    img = np.zeros((64, 64), np.float32)
    if axis == 1:
        img[:, 32:] = 1.0  # vertical edge: horizontal gradient, orientation 0 degrees -> bin 0 (0-20)
    else:
        img[32:, :] = 1.0  # horizontal edge: vertical gradient, 90 degrees -> bin 4 (80-100)
    f = backbones.hog_features(img)
    per_bin = f.reshape(7, 7, 2, 2, 9).sum(axis=(0, 1, 2, 3))
    assert per_bin[expected_bin] > 1.0
    np.testing.assert_allclose(np.delete(per_bin, expected_bin), 0.0, atol=1e-6)


def test_hog_ignores_intensity_scale_but_pixels_do_not():
    rng = np.random.default_rng(0)
    img = rng.random((64, 64)).astype(np.float32)
    np.testing.assert_allclose(backbones.hog_features(img), backbones.hog_features(0.5 * img), atol=1e-5)
    assert not np.allclose(backbones.pixel_features(img), backbones.pixel_features(0.5 * img))


def _two_tissue_slice(bright_inside: bool, shift: int = 0) -> np.ndarray:
    """A dark frame around a disc (the head) holding a smaller disc: two tissues, the inner one the brighter
    or the darker; ``shift`` moves the whole head."""
    yy, xx = np.mgrid[:96, :96]
    head = (yy - 48 - shift) ** 2 + (xx - 48) ** 2 < 36 ** 2
    inner = (yy - 48 - shift) ** 2 + (xx - 48) ** 2 < 20 ** 2
    img = np.zeros((96, 96), np.float32)
    img[head] = 0.4
    img[inner] = 0.9 if bright_inside else 0.1
    return img


def test_histogram_counts_the_foregrounds_grey_levels_not_where_they_are():
    t1_like, t2_like = _two_tissue_slice(True), _two_tissue_slice(False)
    h1 = backbones.histogram_features(t1_like)
    assert h1.shape == (backbones.HIST_BINS,) and h1.dtype == np.float32
    np.testing.assert_allclose(h1.sum(), 1.0, rtol=1e-6)  # the frame's zeros (air) are not counted
    # moved in the frame, brighter overall: the same histogram (the stretch and the floor are relative)
    np.testing.assert_allclose(backbones.histogram_features(1.7 * _two_tissue_slice(True, shift=6)), h1, atol=1e-6)
    # the other contrast of the same anatomy: the two tissues' shares swap bins
    h2 = backbones.histogram_features(t2_like)
    np.testing.assert_allclose(h2[[0, -1]], h1[[-1, 0]], rtol=1e-6)
    assert np.abs(h1 - h2).sum() > 0.5
    # two tissues, two occupied bins: the brighter one's share is the inner disc's area over the head's
    occupied = np.flatnonzero(h1)
    assert len(occupied) == 2 and occupied[-1] == backbones.HIST_BINS - 1
    np.testing.assert_allclose(h1[-1], (t1_like == 0.9).sum() / (t1_like > 0).sum(), rtol=1e-6)


def test_histogram_of_a_constant_image_is_zero():
    assert not backbones.histogram_features(np.full((32, 32), 0.3, np.float32)).any()
    assert not backbones.histogram_features(np.zeros((32, 32), np.float32)).any()


def test_feature_extractor_runs_array_backbones_and_caches_them(tmp_path, make_image):
    paths = [make_image(tmp_path / "img" / "board.png", _checkerboard(32)),
             make_image(tmp_path / "img" / "noise.png", "L", size=(40, 24), seed=3)]
    cache = tmp_path / "cache"
    ex = FeatureExtractor(backbone="pixels@16", cache_dir=str(cache), num_workers=0, progress=False).fit()
    F = (ex_got := ex.extract(paths)).features
    assert F.shape == (2, 256) and np.all(np.isfinite(F))
    expected = preprocess(_checkerboard(32).astype(np.float32), PreprocessConfig(size=16)).ravel()
    np.testing.assert_allclose(F[0], expected, atol=1e-6)
    assert (ex_got.cache_hits, ex_got.cache_misses) == (0, 2)
    ex2 = FeatureExtractor(backbone="pixels@16", cache_dir=str(cache), num_workers=0, progress=False).fit()
    np.testing.assert_array_equal((ex2_got := ex2.extract(paths)).features, F)
    assert (ex2_got.cache_hits, ex2_got.cache_misses) == (2, 0)
    # another size is another cache entry (the size is part of the key)
    ex3 = FeatureExtractor(backbone="pixels@32", cache_dir=str(cache), num_workers=0, progress=False).fit()
    assert (ex3_got := ex3.extract(paths)).features.shape == (2, 1024) and ex3_got.cache_misses == 2
    assert ex3.cache_settings_["backbone_params"] == {"size": 32}
    hog = FeatureExtractor(backbone="hog@32", cache_dir=str(cache), num_workers=0, progress=False).fit()
    H = hog.transform(paths)
    assert H.shape == (2, 1764) and np.all(np.isfinite(H)) and hog.precision_ == "fp32"
    hist = FeatureExtractor(backbone="histogram@32", cache_dir=str(cache), num_workers=0, progress=False).fit()
    got = hist.transform(paths)
    # the board's foreground is one grey level (zeros, as a constant image); the noise spreads over the bins
    assert got.shape == (2, backbones.HIST_BINS) and not got[0].any() and np.isclose(got[1].sum(), 1.0, atol=1e-5)
    assert hist.cache_settings_["backbone_params"]["bins"] == backbones.HIST_BINS


def test_multi_layer_lite0_concatenates_unit_norm_layers():
    import torch

    spec, weights = backbones.resolve("efficientnet_lite0_multi", weights=backbones.RANDOM_WEIGHTS)
    model = backbones.build(spec, weights)
    torch.manual_seed(0)
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 64, 64)).numpy()
    assert out.shape == (2, spec.dim) and spec.dim == 40 + 112 + 320 + 1280
    bounds = np.cumsum([0, 40, 112, 320, 1280])
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        np.testing.assert_allclose(np.linalg.norm(out[:, lo:hi], axis=1), 1.0, rtol=1e-4)


def test_intensity_window_run_records_it_and_predict_reuses_it(tmp_path, make_image):
    import json

    import brainclust

    rng = np.random.default_rng(0)
    for lab, level in (("dark", 40), ("bright", 200)):  # same pattern, different absolute brightness
        for i in range(4):
            img = np.clip(level + 20 * (np.indices((32, 32)).sum(0) % 2) + rng.normal(0, 3, (32, 32)), 0, 255)
            make_image(tmp_path / "data" / lab / f"{lab}{i}.png", img.astype(np.uint8))
    common = dict(backbone="pixels@16", k=2, labels_from_folders=True, cache_dir=str(tmp_path / "c"), workers=0,
                  pca=0, method="kmeans", clip_percentiles=None)
    per_image = brainclust.run(tmp_path / "data", None, **common)
    fixed = brainclust.run(tmp_path / "data", tmp_path / "out", intensity_window=(0.0, 255.0), **common)
    assert fixed.metrics["nmi"] == pytest.approx(1.0)  # absolute grey level separates the two groups
    assert per_image.metrics["nmi"] < 0.5  # per-image min-max makes them look alike
    man = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert man["settings"]["intensity_window"] == [0.0, 255.0]
    pred = brainclust.predict(tmp_path / "out", tmp_path / "data", tmp_path / "pred", cache_dir=str(tmp_path / "c"),
                              workers=0)
    assert pred.labels.tolist() == fixed.labels.tolist()
