"""The faster pre-processing paths give byte-identical features inputs to the straightforward formulas."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from brainclust.features.preprocess import PreprocessConfig, preprocess, to_model_input


def reference_preprocess(img, cfg: PreprocessConfig) -> np.ndarray:
    """The formulas written out, with no shortcut (the version before the fast paths)."""
    img = np.nan_to_num(np.asarray(img, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    h, w = img.shape
    scale = cfg.size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if (nh, nw) != (h, w):
        img = np.asarray(Image.fromarray(img, mode="F").resize((nw, nh), Image.BILINEAR, reducing_gap=None),
                         dtype=np.float32)
    if cfg.intensity_window is not None:
        lo, hi = cfg.intensity_window
    elif cfg.clip_percentiles is not None:
        lo, hi = np.percentile(img, cfg.clip_percentiles)
    else:
        lo, hi = float(img.min()), float(img.max())
    lo, hi = float(lo), float(hi)
    if hi <= lo:
        img = np.full_like(img, cfg.new_min)
    else:
        img = (((np.clip(img, lo, hi) - lo) / (hi - lo)) * (cfg.new_max - cfg.new_min) + cfg.new_min).astype(np.float32)
    out = np.full((cfg.size, cfg.size), cfg.new_min, dtype=np.float32)
    top, left = (cfg.size - img.shape[0]) // 2, (cfg.size - img.shape[1]) // 2
    out[top:top + img.shape[0], left:left + img.shape[1]] = img
    return out


def reference_model_input(img, mean, std) -> np.ndarray:
    m = np.asarray(mean, dtype=np.float32)[:, None, None]
    s = np.asarray(std, dtype=np.float32)[:, None, None]
    return (np.broadcast_to(img, (3, *img.shape)) - m) / s


def images():
    rng = np.random.default_rng(0)
    yield rng.integers(0, 256, (224, 224)).astype(np.float32)  # 8-bit slice at the network's size
    yield rng.integers(0, 256, (240, 200)).astype(np.float32)  # resized, padded
    yield rng.integers(0, 65536, (64, 80)).astype(np.float32)  # 16-bit, upscaled
    yield rng.normal(size=(37, 53)).astype(np.float32)  # negative values
    yield np.full((32, 32), 7.0, np.float32)  # constant
    bad = rng.random((50, 50)).astype(np.float32)
    bad[3, 4], bad[10, 10], bad[20, 1] = np.nan, np.inf, -np.inf
    yield bad


@pytest.mark.parametrize("size", [224, 299, 64])
@pytest.mark.parametrize("kw", [{}, {"clip_percentiles": None}, {"intensity_window": (0.0, 255.0)},
                                {"new_min": -1.0, "new_max": 2.0}])
def test_preprocess_is_byte_identical_to_the_formulas(size, kw):
    cfg = PreprocessConfig(size=size, **kw)
    for img in images():
        got, ref = preprocess(img, cfg), reference_preprocess(img, cfg)
        assert got.dtype == ref.dtype == np.float32 and got.shape == (size, size)
        np.testing.assert_array_equal(got, ref)


def test_model_input_is_byte_identical_and_stacks():
    cfg = PreprocessConfig(size=64)
    for img in images():
        p = preprocess(img, cfg)
        for mean, std in (((0.5,) * 3, (0.5,) * 3), ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))):
            got, ref = to_model_input(p, mean, std), reference_model_input(p, mean, std)
            assert got.shape == ref.shape == (3, 64, 64) and got.dtype == ref.dtype
            np.testing.assert_array_equal(got, ref)
    batch = np.stack([to_model_input(preprocess(i, cfg), (0.5,) * 3, (0.5,) * 3) for i in images()])
    assert batch.flags.c_contiguous and batch.flags.writeable and batch.shape == (6, 3, 64, 64)
