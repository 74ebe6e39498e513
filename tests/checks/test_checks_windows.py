"""One-sided crops confirmed as pixel windows (brainclust.checks.windows)."""

from __future__ import annotations

import numpy as np
import pytest
from checks_planting import head_slice, save

from brainclust.checks import nearcode
from brainclust.checks.flags import Thresholds
from brainclust.checks.stage import check_folder
from brainclust.checks.windows import COARSE, fits, match
from brainclust.errors import ParameterError


def test_sizes_allow_a_window_only_when_one_image_fits_inside_the_other():
    sizes = np.array([[200, 200], [188, 200], [200, 200], [150, 200], [210, 190], [188, 190]])
    pairs = np.array([[0, 1], [1, 0], [0, 2], [0, 3], [0, 4], [0, 5]])
    # a smaller one; either order; the same size; too much cut; larger on one side; smaller on both
    assert fits(pairs, sizes).tolist() == [True, True, False, False, False, True]


def test_a_window_and_its_flips_match_the_original_and_another_head_does_not():
    a = head_slice(3, 200)
    window = a[5:197, 12:200]
    assert match(a, window) > 0.999
    assert match(a, window[:, ::-1]) > 0.999  # a flipped crop
    assert not match(head_slice(4, 200), window) >= 0.9  # NaN: dropped at the coarse scale


@pytest.mark.parametrize("top, left", [(31, 0), (0, 163), (7, 5)])
def test_a_window_of_a_large_image_at_any_offset_scores_1(top, left):
    """The final score is taken at full resolution: a window at an offset that is not a multiple of the
    coarse scale's factor (here 19) scored 0.93-0.99 when the last level was block-averaged."""
    from scipy.ndimage import zoom

    a = zoom(head_slice(5, 300).astype(float), 4, order=3)  # 1,200 px of smooth upscaled anatomy
    window = a[top:1200 - 40 + top, left:1200 - 170 + left]
    assert max(a.shape) > 16 * COARSE
    assert match(a, window) > 0.999


def test_intensities_far_from_zero_keep_the_score_within_one():
    a, b = 1e7 + head_slice(3, 60).astype(float), 1e7 + head_slice(4, 60).astype(float)
    assert not match(a, b[:, 5:]) >= 0.9  # two heads (was 24.06 in float32)
    c = 60000 + 2 * head_slice(3, 60).astype(float)  # 16-bit values
    assert 0.999 < match(c, c[:, 5:]) <= 1.0


@pytest.mark.parametrize("box", [(6, 0, 0, 0), (0, 8, 0, 0)])
def test_a_one_sided_crop_the_codes_miss_is_a_near_duplicate_of_its_original(tmp_path, box):
    a = head_slice(3, 200)
    left, top, right, bottom = box
    crop = a[top:200 - bottom, left:200 - right]
    save(tmp_path / "a.png", a)
    save(tmp_path / "crop.png", crop)
    save(tmp_path / "other.png", head_slice(4, 200)[0:190, 6:200])
    res = check_folder(tmp_path, progress=False)
    codes = nearcode.pair_similarity(res.descriptors.thumbs, np.array([0]), np.array([1]))[0][0]
    assert codes < Thresholds().near_similarity  # the codes alone miss it
    flags = dict(zip(res.paths, res.flags))
    assert "near_duplicate" in flags["crop.png"]
    assert dict(zip(res.paths, res.duplicate_of))["crop.png"] == "a.png"
    assert "near_duplicate" not in flags["other.png"]
    assert res.duplicates.similarity[res.paths.index("crop.png")] >= Thresholds().window_similarity


def test_the_window_threshold_is_validated():
    with pytest.raises(ParameterError, match="window_similarity"):
        Thresholds(window_similarity=1.5)
    assert Thresholds.from_text("window_similarity=0.995").window_similarity == 0.995


def test_an_image_that_cannot_be_read_again_is_not_compared(tmp_path):
    from brainclust.checks.windows import window_similarity
    from brainclust.io.scan import scan

    a = head_slice(3, 200)
    save(tmp_path / "a.png", a)
    save(tmp_path / "crop.png", a[0:200, 6:200])
    records = scan(tmp_path).records
    sizes = np.array([[200, 200], [194, 200]])
    pairs = np.array([[0, 1]])
    assert window_similarity(records, sizes, pairs, progress=False)[0] > 0.999
    save(tmp_path / "crop.png", head_slice(4, 200)[0:200, 6:200])  # changed since the scan
    assert np.isnan(window_similarity(records, sizes, pairs, progress=False)[0])


def test_a_strip_and_nan_pixels_are_compared_without_error():
    """A 33 x 2,200 strip: its coarse scale had no rows and match_template raised, stopping the whole check."""
    rng = np.random.default_rng(0)
    strip = np.repeat(head_slice(7, 66)[::2], 34, axis=1)[:, :2200].astype(float) + rng.normal(0, 1, (33, 2200))
    assert match(strip, strip[2:32, 30:2180]) > 0.999
    with_nan = head_slice(3, 120).astype(float)
    with_nan[5, 5] = np.nan
    assert match(with_nan, with_nan[:, 6:]) > 0.99


def test_pairs_are_not_cached_while_an_image_cannot_be_read_again(tmp_path):
    """A passing read error (here: a file changed since the scan) must not be remembered with the pairs."""
    from brainclust.checks import store
    from brainclust.io.scan import scan

    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    a = head_slice(3, 200)
    save(data / "a.png", a)
    save(data / "crop.png", a[0:200, 6:200])
    descriptors = check_folder(data, progress=False).descriptors
    records = scan(data).records
    save(data / "crop.png", head_slice(4, 200)[0:200, 6:200])
    pairs, _, cached = store.cached_near_pairs(cache, descriptors, np.arange(2), Thresholds(), records=records)
    assert len(pairs) == 0 and not cached and not list(cache.rglob("*.npz"))
    save(data / "crop.png", a[0:200, 6:200])  # readable again: compared, and now stored
    pairs, sims, cached = store.cached_near_pairs(cache, descriptors, np.arange(2), Thresholds(), records=records)
    assert pairs.tolist() == [[0, 1]] and sims[0] > 0.999 and not cached and len(list(cache.rglob("*.npz"))) == 1
    assert store.cached_near_pairs(cache, descriptors, np.arange(2), Thresholds(), records=records)[2]
