"""PCA at scale: solver choice, the seeded randomized path, sampling, chunked transform; the --pca 1.0 rule."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from brainclust.cluster import reduce
from brainclust.cluster.reduce import PCAReducer, distinct_rows
from brainclust.errors import InputError, ModelFileError, ParameterError
from brainclust.pipeline import RunConfig


def _low_rank(n=400, d=300, r=8, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    scales = 10.0 * 0.6 ** np.arange(r)
    X = (rng.standard_normal((n, r)) * scales) @ np.linalg.qr(rng.standard_normal((d, r)))[0].T
    return (X + 0.01 * rng.standard_normal((n, d))).astype(dtype)


def _abs_corr(a, b):
    return np.array([abs(np.corrcoef(a[:, j], b[:, j])[0, 1]) for j in range(a.shape[1])])


def test_small_data_uses_the_exact_solver_and_matches_it_bit_for_bit():
    X = _low_rank(n=120, d=1280)
    auto = PCAReducer(50, random_state=0).fit(X)
    full = PCAReducer(50, random_state=0, svd_solver="full").fit(X)
    assert auto.solver_ == "full" and auto.fit_rows_ == 120
    np.testing.assert_array_equal(auto.components_, full.components_)
    np.testing.assert_array_equal(auto.transform(X), full.transform(X))


def test_auto_switches_to_randomized_above_the_cost_threshold(monkeypatch):
    X = _low_rank()
    monkeypatch.setattr(reduce, "EXACT_MAX_COST", 300 ** 2 * 400 - 1)
    assert PCAReducer(5, random_state=0).fit(X).solver_ == "randomized"
    monkeypatch.setattr(reduce, "EXACT_MAX_COST", 300 ** 2 * 400)
    assert PCAReducer(5, random_state=0).fit(X).solver_ == "full"


def test_randomized_is_deterministic_under_the_seed_and_agrees_with_full():
    X = _low_rank()
    a = PCAReducer(6, random_state=3, svd_solver="randomized").fit(X)
    b = PCAReducer(6, random_state=3, svd_solver="randomized").fit(X)
    np.testing.assert_array_equal(a.components_, b.components_)
    full = PCAReducer(6, svd_solver="full").fit(X)
    assert _abs_corr(a.transform(X), full.transform(X)).min() > 0.999
    np.testing.assert_allclose(a.explained_variance_ratio_, full.explained_variance_ratio_, rtol=1e-4)


@pytest.mark.parametrize("frac", [0.5, 0.9, 0.99])
def test_randomized_variance_fraction_picks_the_same_count_as_full(frac):
    X = _low_rank(r=12)
    full = PCAReducer(frac, svd_solver="full").fit(X)
    rnd = PCAReducer(frac, random_state=0, svd_solver="randomized").fit(X)
    assert rnd.n_components_ == full.n_components_
    assert rnd.explained_variance_ratio_.sum() >= frac
    assert rnd.transform(X).shape == (len(X), full.n_components_)


@pytest.mark.slow
def test_randomized_fraction_grows_its_block_when_needed(monkeypatch):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 200))  # flat spectrum: 0.99 needs far more than the first block of 64
    rnd = PCAReducer(0.99, random_state=0, svd_solver="randomized").fit(X)
    full = PCAReducer(0.99, svd_solver="full").fit(X)
    assert rnd.n_components_ > 64
    assert abs(rnd.n_components_ - full.n_components_) <= 2


def test_randomized_fits_on_a_seeded_sample(monkeypatch):
    monkeypatch.setattr(reduce, "MAX_FIT_ROWS", 150)
    X = _low_rank(n=400)
    a = PCAReducer(4, random_state=0, svd_solver="randomized").fit(X)
    b = PCAReducer(4, random_state=0, svd_solver="randomized").fit(X)
    c = PCAReducer(4, random_state=1, svd_solver="randomized").fit(X)
    assert a.fit_rows_ == 150
    np.testing.assert_array_equal(a.mean_, b.mean_)
    assert not np.array_equal(a.mean_, c.mean_)  # another seed, another sample
    full = PCAReducer(4, svd_solver="full").fit(X)
    cosines = np.linalg.svd(a.components_ @ full.components_.T, compute_uv=False)  # principal angles
    assert cosines.min() > 0.99


def test_float32_input_stays_float32_for_the_fit_and_gives_float64_output():
    X = _low_rank(dtype=np.float32)
    red = PCAReducer(5, random_state=0, svd_solver="randomized").fit(X)
    assert red.transform(X).dtype == np.float64


def test_chunked_transform_equals_one_product(monkeypatch):
    X = _low_rank(n=1000, d=50)
    red = PCAReducer(5, svd_solver="full").fit(X)
    whole = (X - red.mean_) @ red.components_.T
    monkeypatch.setattr(reduce, "CHUNK_ROWS", 4)  # 1000 x 50 > 4 * 8192 values: chunked
    np.testing.assert_allclose(red.transform(X), whole, rtol=0, atol=1e-10)


def test_solver_and_fit_rows_survive_save_load(tmp_path):
    red = PCAReducer(4, random_state=0, svd_solver="randomized").fit(_low_rank())
    red.save(tmp_path / "pca.npz")
    back = PCAReducer.load(tmp_path / "pca.npz")
    assert (back.solver_, back.fit_rows_) == ("randomized", 400)
    for name in ("mean_", "components_", "explained_variance_ratio_"):  # stored bytes: exact
        np.testing.assert_array_equal(getattr(back, name), getattr(red, name))
    X = _low_rank(seed=5)  # arithmetic on reloaded (differently aligned) arrays may differ in the last bits
    np.testing.assert_allclose(back.transform(X), red.transform(X), rtol=1e-10, atol=1e-10)


def test_load_of_a_file_without_the_solver_fields_still_works(tmp_path):
    red = PCAReducer(3).fit(_low_rank())
    np.savez(tmp_path / "old.npz", mean=red.mean_, n_features_in=np.asarray(300), components=red.components_,
             explained_variance_ratio=red.explained_variance_ratio_)
    back = PCAReducer.load(tmp_path / "old.npz")
    assert back.solver_ is None and back.n_components_ == 3


def test_load_refuses_a_wrong_explained_variance_shape(tmp_path):
    red = PCAReducer(3).fit(_low_rank())
    np.savez(tmp_path / "bad.npz", mean=red.mean_, n_features_in=np.asarray(300), components=red.components_,
             explained_variance_ratio=np.ones(5))
    with pytest.raises(ModelFileError, match="explained_variance_ratio"):
        PCAReducer.load(tmp_path / "bad.npz")


def test_unknown_solver_is_a_parameter_error():
    with pytest.raises(ParameterError, match="svd_solver"):
        PCAReducer(5, svd_solver="arpack").fit(_low_rank())


# -- degenerate data ------------------------------------------------------------------------------
@pytest.mark.parametrize("n_components", [5, 0.9, 0])
def test_identical_rows_are_an_input_error(n_components):
    X = np.tile(np.arange(6.0), (4, 1))
    with pytest.raises(InputError, match="all 4 images have identical features"):
        PCAReducer(n_components).fit(X)


def test_distinct_rows_counts_duplicates_once():
    X = np.array([[1.0, 2.0], [1.0, 2.0], [0.0, 2.0], [1.0, 2.0]])
    assert distinct_rows(X) == 2
    assert PCAReducer(1).fit(X).n_distinct_ == 2


def test_explained_variance_is_finite_for_two_images():
    red = PCAReducer(50).fit(np.array([[0.0, 1.0, 2.0], [1.0, 1.0, 0.0]]))
    assert np.all(np.isfinite(red.explained_variance_ratio_))


# -- the --pca rule: integers are counts, floats in (0, 1) fractions, 1.0 refused ----------------------
def test_one_is_one_component_and_one_point_zero_is_refused():
    X = _low_rank()
    assert PCAReducer(1).fit(X).n_components_ == 1
    assert PCAReducer(np.int64(1)).fit(X).n_components_ == 1
    for bad in (1.0, np.float64(1.0)):
        with pytest.raises(ParameterError, match="write 1 for one component"):
            PCAReducer(bad).check_params()
    with pytest.raises(ParameterError, match="write 1"):
        RunConfig(pca=1.0).validate()


def _cli(*args, tmp_path):
    return subprocess.run([sys.executable, "-m", "brainclust", *args], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)


@pytest.mark.slow
def test_cli_pca_one_point_zero_exits_2_and_one_is_accepted(tmp_path, make_image):
    rng = np.random.default_rng(0)
    for i in range(4):
        make_image(tmp_path / "d" / f"{i}.png", rng.integers(0, 256, (16, 16), dtype=np.uint8))
    bad = _cli("run", "d", "--out", "o1", "--backbone", "pixels@16", "--k", "2", "--pca", "1.0",
               "--cache-dir", "c", "--no-report", tmp_path=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "write 1 for one component" in bad.stderr
    assert not (tmp_path / "o1").exists()
    ok = _cli("run", "d", "--out", "o2", "--backbone", "pixels@16", "--k", "2", "--pca", "1",
              "--cache-dir", "c", "--no-report", tmp_path=tmp_path)
    assert ok.returncode == 0, ok.stderr
    import json

    manifest = json.loads((tmp_path / "o2" / "manifest.json").read_text())
    assert manifest["pca"]["n_components"] == 1 and manifest["settings"]["pca"] == 1
