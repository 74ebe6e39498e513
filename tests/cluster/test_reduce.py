"""Stage 4: PCA (METHOD.md eqs 5-9) checked against a hand-written eigendecomposition."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from brainclust.errors import ModelFileError, ParameterError
from brainclust.cluster.reduce import PCAReducer


def _data(n=12, d=5, seed=0):
    rng = np.random.default_rng(seed)
    # distinct variances per direction so the eigenvalues are well separated
    scales = np.array([5.0, 3.0, 2.0, 1.0, 0.5, 0.25, 0.1, 0.05][:d])
    basis, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (rng.normal(size=(n, d)) * scales) @ basis.T + rng.normal(size=d) * 10


def _pca_by_hand(X, k):
    mu = X.mean(axis=0)                               # eq 5: mean
    Xc = X - mu
    C = Xc.T @ Xc / (len(X) - 1)                      # eq 6: covariance
    w, V = np.linalg.eigh(C)                          # eq 7: eigendecomposition
    order = np.argsort(w)[::-1]
    w, V = w[order], V[:, order]
    W = V[:, :k]                                      # eq 8: top-k eigenvectors
    return mu, w, W, Xc @ W                           # eq 9: projection


@pytest.mark.parametrize("k", [1, 2, 3])
def test_pca_matches_hand_computation(k):
    X = _data()
    mu, w, W, Z = _pca_by_hand(X, k)
    red = PCAReducer(n_components=k).fit(X)
    assert red.n_components_ == k
    np.testing.assert_allclose(red.mean_, mu, rtol=1e-10, atol=1e-10)
    assert red.components_.shape == (k, X.shape[1])
    # components are the eigenvectors, up to sign
    np.testing.assert_allclose(np.abs(red.components_), np.abs(W.T), atol=1e-8)
    np.testing.assert_allclose(red.explained_variance_ratio_, w[:k] / w.sum(), rtol=1e-8)
    out = red.transform(X)
    assert out.shape == (len(X), k)
    # projection equals the hand projection up to the sign of each component
    for j in range(k):
        sign = np.sign(out[:, j] @ Z[:, j])
        assert sign != 0
        np.testing.assert_allclose(out[:, j] * sign, Z[:, j], atol=1e-8)


def test_transform_of_new_points_uses_training_mean():
    X = _data(seed=1)
    red = PCAReducer(n_components=2).fit(X)
    rng = np.random.default_rng(2)
    Y = rng.normal(size=(4, X.shape[1]))
    np.testing.assert_allclose(red.transform(Y), (Y - X.mean(0)) @ red.components_.T, atol=1e-10)


def test_fit_transform_matches_fit_then_transform():
    X = _data(seed=3)
    a = PCAReducer(n_components=3).fit_transform(X)
    b = PCAReducer(n_components=3).fit(X).transform(X)
    np.testing.assert_allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("frac", [0.5, 0.8, 0.95, 0.99])
def test_variance_fraction_picks_minimal_components(frac):
    X = _data(n=40, d=8, seed=4)
    _mu, w, _W, _Z = _pca_by_hand(X, 8)
    cum = np.cumsum(w) / w.sum()
    assert not np.any(np.isclose(cum, frac))  # no tie at the threshold
    expected = int(np.argmax(cum >= frac)) + 1
    red = PCAReducer(n_components=frac).fit(X)
    assert red.n_components_ == expected
    assert red.explained_variance_ratio_.sum() >= frac
    if expected > 1:
        assert red.explained_variance_ratio_[:-1].sum() < frac
    assert red.transform(X).shape == (40, expected)


def test_zero_is_identity():
    X = _data(seed=5)
    red = PCAReducer(n_components=0).fit(X)
    assert red.components_ is None
    assert red.n_components_ == X.shape[1]
    np.testing.assert_array_equal(red.transform(X), X)


def test_n_larger_than_data_is_capped(caplog):
    X = _data(n=6, d=5, seed=6)
    with caplog.at_level(logging.DEBUG, logger="brainclust.cluster.reduce"):
        red = PCAReducer(n_components=50).fit(X)
    assert red.n_components_ == 5
    assert red.transform(X).shape == (6, 5)
    assert any("50" in rec.getMessage() for rec in caplog.records)  # said (as debug: the default, see below)
    # fewer samples than features: cap at n_samples
    X2 = _data(n=4, d=8, seed=7)
    red2 = PCAReducer(n_components=50).fit(X2)
    assert red2.n_components_ == 4
    assert red2.transform(X2).shape == (4, 4)


def test_integer_valued_float_is_a_count():
    X = _data(seed=8)
    assert PCAReducer(n_components=2.0).fit(X).n_components_ == 2


@pytest.mark.parametrize("bad", [-1, 1.5, "x", True, False, None, -0.5, float("nan"), float("inf")])
def test_invalid_n_components_raise(bad):
    with pytest.raises(ParameterError):
        PCAReducer(n_components=bad).fit(_data())


def test_transform_with_wrong_width_raises():
    red = PCAReducer(n_components=2).fit(_data())
    with pytest.raises(ParameterError):
        red.transform(np.zeros((3, 7)))


@pytest.mark.parametrize("n", [3, 0.9, 0])
def test_save_load_roundtrip(tmp_path, n):
    X = _data(n=20, d=6, seed=9)
    red = PCAReducer(n_components=n).fit(X)
    path = tmp_path / "pca.npz"
    red.save(path)
    with np.load(path, allow_pickle=False) as z:  # no pickled objects inside
        assert "mean" in z.files
    loaded = PCAReducer.load(path)
    assert loaded.n_components_ == red.n_components_
    assert loaded.n_features_in_ == red.n_features_in_
    rng = np.random.default_rng(10)
    Y = rng.normal(size=(5, 6))
    # the arithmetic on reloaded arrays may differ in the last bits from CPU to CPU (alignment, kernels)
    np.testing.assert_allclose(loaded.transform(X), red.transform(X), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(loaded.transform(Y), red.transform(Y), rtol=1e-10, atol=1e-10)
    if red.components_ is None:
        assert loaded.components_ is None
    else:
        np.testing.assert_array_equal(loaded.explained_variance_ratio_, red.explained_variance_ratio_)


def test_load_missing_or_damaged_raises_model_file_error(tmp_path):
    with pytest.raises(ModelFileError):
        PCAReducer.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ModelFileError):
        PCAReducer.load(bad)
    incomplete = tmp_path / "incomplete.npz"
    np.savez(incomplete, components=np.zeros((2, 3)))
    with pytest.raises(ModelFileError):
        PCAReducer.load(incomplete)


def test_the_default_pca_is_capped_quietly_and_a_given_one_with_a_warning(caplog):
    """A small set (a TEMI head's 40 rows, 20 volumes) or narrow features (--backbone histogram: 32) are no mistake
    of the user's: the default 50 is capped with a debug line; a value the user chose above what the data allow is
    capped with a warning; either names what limits it, the images or the features."""
    X = np.random.default_rng(0).normal(size=(20, 30))
    wide = np.random.default_rng(1).normal(size=(100, 32))
    with caplog.at_level(logging.DEBUG, logger="brainclust"):
        assert PCAReducer(50).fit(X).n_components_ == 20
        assert PCAReducer(60).fit(X).n_components_ == 20
        assert PCAReducer(50).fit(wide).n_components_ == 32
        assert PCAReducer(50, warn_cap=True).fit(wide).n_components_ == 32  # --pca 50 given on the command line
        assert PCAReducer(60, warn_cap=False).fit(wide).n_components_ == 32
    said = [(r.levelname, r.getMessage()) for r in caplog.records if "more than" in r.getMessage()]
    assert said == [("DEBUG", "--pca 50 is more than the 20 images allow; using 20"),
                    ("WARNING", "--pca 60 is more than the 20 images allow; using 20"),
                    ("DEBUG", "--pca 50 is more than the 32 features allow; using 32"),
                    ("WARNING", "--pca 50 is more than the 32 features allow; using 32"),
                    ("DEBUG", "--pca 60 is more than the 32 features allow; using 32")]


def test_text_or_ragged_rows_are_one_line_not_a_numpy_error():
    with pytest.raises(ParameterError, match=r"^PCA: features must be an array of numbers, got list \("):
        PCAReducer(2).fit([["a", "b"], ["c", "d"], ["e", "f"]])  # was TypeError: ufunc 'isfinite' not supported
    with pytest.raises(ParameterError, match=r"^PCA: features must be an array of numbers, got list \(setting an"):
        PCAReducer(2).fit([[1.0, 2.0], [3.0]])  # was ValueError: ... inhomogeneous shape
    with pytest.raises(ParameterError, match=r"^PCA: features must be an array of numbers, got list \(could not"):
        PCAReducer(2).fit(np.eye(3)).transform([["a", "b", "c"]])


def test_a_nan_row_in_fit_says_how_many_rows_and_the_first():
    X = _data(n=20, d=6, seed=1)
    X[[4, 7]] = np.nan  # the rows of two images FeatureExtractor.transform could not read
    with pytest.raises(ParameterError, match=r"^PCA: the features of 2 of 20 rows are not finite \(NaN or infinite; "
                                             r"first: row 4\): an image that failed to decode\? "):
        PCAReducer(3).fit(X)  # was "PCA: features must be a finite 2-D array"


@pytest.mark.parametrize("kind", ["Generator", "RandomState"])
def test_random_state_takes_a_numpy_generator_drawing_one_seed_per_fit(kind):
    """A Generator or RandomState was refused (``--seed: must be an integer``)."""
    X = _data(n=40, d=8, seed=3)
    make = {"Generator": np.random.default_rng, "RandomState": np.random.RandomState}[kind]
    seed = int(make(2).integers(2**32) if kind == "Generator" else make(2).randint(2**32))
    red = PCAReducer(3, random_state=make(2), svd_solver="randomized").fit(X)
    assert red.seed_ == seed
    same = PCAReducer(3, random_state=seed, svd_solver="randomized").fit(X)
    np.testing.assert_allclose(red.transform(X), same.transform(X), rtol=1e-10, atol=1e-10)


def test_feature_names_out_follow_scikit_learn():
    """PCAReducer had no get_feature_names_out (scikit-learn's PCA names its columns pca0, pca1...)."""
    X = _data(n=20, d=6)
    red = PCAReducer(3).fit(X)
    assert red.get_feature_names_out().tolist() == ["pca0", "pca1", "pca2"]
    off = PCAReducer(0).fit(X)  # the identity keeps the input's columns
    assert off.get_feature_names_out().tolist() == [f"x{i}" for i in range(6)]
    assert off.get_feature_names_out(list("abcdef")).tolist() == list("abcdef")
    with pytest.raises(ParameterError, match=r"^input_features: 2 names for the 6 features"):
        off.get_feature_names_out(["a", "b"])
    assert red.transform(X.astype(np.float32)).dtype == np.float64  # as its docstring says (the model's clusterings)


def test_save_load_keeps_the_parameters(tmp_path):
    """A standalone save kept only the arrays: load gave n_components=<fitted count>, random_state=None..."""
    X = _data(n=20, d=6, seed=4)
    red = PCAReducer(0.9, random_state=7, svd_solver="randomized", warn_cap=True).fit(X)
    red.save(tmp_path / "pca.npz")
    back = PCAReducer.load(tmp_path / "pca.npz")
    assert back.get_params() == red.get_params()
    np.testing.assert_allclose(back.transform(X), red.transform(X), rtol=1e-10, atol=1e-10)
    drawn = PCAReducer(2, random_state=np.random.default_rng(0)).fit(X)
    drawn.save(tmp_path / "drawn.npz")  # a generator is recorded as the seed drawn from it
    assert PCAReducer.load(tmp_path / "drawn.npz").random_state == drawn.seed_


@pytest.mark.parametrize("params, message", [
    ("{x", r"field 'params' is not valid JSON"),
    ("[]", r"field 'params' must be a JSON object"),
    ('{"n_components": 1, "random_state": 3}', r"field 'params': n_components is 1 but 'pca.npz' holds 3 components"),
    ('{"n_components": 3, "svd_solver": "magic"}', r"field 'params': svd_solver: must be one of auto"),
])
def test_a_damaged_params_field_names_the_file_and_the_field(tmp_path, params, message):
    path = tmp_path / "pca.npz"
    PCAReducer(3).fit(_data(n=20, d=6)).save(path)
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    data["params"] = np.asarray(params)
    np.savez(path, **data)
    with pytest.raises(ModelFileError, match=rf"^PCA file '.*pca\.npz': {message}"):
        PCAReducer.load(path)
