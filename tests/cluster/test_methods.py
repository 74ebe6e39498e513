"""Stage 5: the five clustering methods, the hierarchy levels, persistence, prediction."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

from brainclust.cluster.methods import METHODS, N_LEVELS, Clusterer, knee_eps, relabel
from brainclust.errors import ModelFileError, ParameterError

pytestmark = pytest.mark.filterwarnings("ignore:Graph is not fully connected:UserWarning")

CENTERS = np.array([[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]])
# points whose direction is far from every blob (cosine outliers)
OUTLIERS = np.array([[10.0, 10.0, 10.0], [-10.0, 5.0, 5.0], [5.0, -10.0, 5.0]])


@pytest.fixture(scope="module")
def blobs():
    """Three blobs, well separated both in Euclidean and in cosine distance."""
    X, y = make_blobs(n_samples=90, centers=CENTERS, cluster_std=0.6, random_state=0)
    return X, y


def _fit(method, X, k=3, seed=0, **kw):
    return Clusterer(method=method, n_clusters=k, random_state=seed, **kw).fit(X)


# -- recovery -------------------------------------------------------------------------
@pytest.mark.parametrize("method", [m for m in METHODS if m != "dbscan"])
def test_methods_recover_blobs(blobs, method):
    X, y = blobs
    c = _fit(method, X)
    assert c.labels_.shape == (len(X),)
    assert adjusted_rand_score(y, c.labels_) > 0.95
    assert c.n_clusters_ == 3
    assert set(c.labels_.tolist()) == {0, 1, 2}


def test_dbscan_recovers_blobs_and_flags_outliers(blobs):
    X, y = blobs
    Xo = np.vstack([X, OUTLIERS])
    c = _fit("dbscan", Xo)
    lab = c.labels_[: len(X)]
    assert c.eps_ is not None and c.eps_ > 0
    assert c.n_clusters_ == 3
    assert adjusted_rand_score(y, lab) > 0.95
    assert (lab == -1).sum() <= 3  # few blob points called noise
    assert (c.labels_[len(X):] == -1).all()  # the three outliers are noise


def test_dbscan_ignores_n_clusters(blobs):
    X, _ = blobs
    a = _fit("dbscan", X, k=2)
    b = _fit("dbscan", X, k=7)
    np.testing.assert_array_equal(a.labels_, b.labels_)


# -- hierarchy levels ---------------------------------------------------------------------
def _random_data(n, d=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) + rng.normal(size=d)




@pytest.mark.parametrize("n", [40, 11, 7, 2])
def test_levels_shape_and_counts(n):
    X = _random_data(n, seed=n)
    c = Clusterer("hierarchical", n_clusters=2).fit(X)
    assert c.levels_.shape == (n, N_LEVELS) == (n, 10)
    assert c.tree_.shape == (n - 1, 4)
    np.testing.assert_array_equal(c.levels_[:, 0], 0)  # level 1: one cluster
    for L in range(1, N_LEVELS + 1):
        col = c.levels_[:, L - 1]
        assert len(np.unique(col)) == min(L, n), f"level {L}"
        # canonical ids: 0..k-1 by first appearance
        np.testing.assert_array_equal(col, relabel(col))


@pytest.mark.parametrize("k", [1, 2, 3, 5, 10])
def test_level_k_equals_labels(k):
    X = _random_data(30, seed=1)
    c = Clusterer("hierarchical", n_clusters=k).fit(X)
    np.testing.assert_array_equal(c.levels_[:, k - 1], c.labels_)
    assert c.n_clusters_ == k


def test_k_equal_to_n_gives_singletons():
    X = _random_data(4, seed=5)
    c = Clusterer("hierarchical", n_clusters=4).fit(X)
    np.testing.assert_array_equal(c.labels_, [0, 1, 2, 3])


def test_labels_beyond_ten_levels():
    X = _random_data(30, seed=2)
    c = Clusterer("hierarchical", n_clusters=13).fit(X)
    assert c.n_clusters_ == 13
    # the flat cut at 13 refines level 10
    for cid in np.unique(c.labels_):
        assert len(np.unique(c.levels_[c.labels_ == cid, 9])) == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_levels_are_nested(seed):
    X = _random_data(50, seed=seed)
    c = Clusterer("hierarchical", n_clusters=4).fit(X)
    for L in range(1, N_LEVELS):
        coarse, fine = c.levels_[:, L - 1], c.levels_[:, L]
        for cid in np.unique(fine):
            parents = np.unique(coarse[fine == cid])
            assert len(parents) == 1, f"a level-{L + 1} cluster straddles level-{L} clusters"


def test_hierarchical_uses_cosine_distance():
    # Two rays from the origin, 20 degrees apart, radii 1..20. Euclidean
    # clustering splits near vs far; cosine clustering splits by direction.
    rng = np.random.default_rng(0)
    radii = np.linspace(1.0, 20.0, 20)
    angles = np.concatenate([np.zeros(20), np.full(20, np.deg2rad(20.0))])
    angles = angles + rng.normal(scale=1e-3, size=40)
    r = np.concatenate([radii, radii])
    X = np.stack([r * np.cos(angles), r * np.sin(angles)], axis=1)
    ray = np.repeat([0, 1], 20)
    c = Clusterer("hierarchical", n_clusters=2).fit(X)
    assert adjusted_rand_score(ray, c.labels_) == 1.0
    # sanity check of the construction: Euclidean k-means does not follow the rays
    km = Clusterer("kmeans", n_clusters=2, random_state=0).fit(X)
    assert adjusted_rand_score(ray, km.labels_) < 0.5


def test_hierarchical_handles_zero_vectors():
    X = _random_data(10, seed=3)
    X[0] = 0.0
    c = Clusterer("hierarchical", n_clusters=3).fit(X)
    assert np.isfinite(c.tree_).all()
    assert c.n_clusters_ == 3


# -- relabel ------------------------------------------------------------------------------
def test_relabel_first_appearance_order():
    out = relabel(np.array([5, 5, 2, -1, 7, 2, 5, -1]))
    np.testing.assert_array_equal(out, [0, 0, 1, -1, 2, 1, 0, -1])
    assert out.dtype == np.int64
    np.testing.assert_array_equal(relabel([3, 1, 2]), [0, 1, 2])
    np.testing.assert_array_equal(relabel([-1, -1]), [-1, -1])


@pytest.mark.parametrize("method", METHODS)
def test_labels_are_canonical(blobs, method):
    X, _ = blobs
    # shuffle so that the blob order of first appearance varies
    perm = np.random.default_rng(1).permutation(len(X))
    c = _fit(method, X[perm])
    np.testing.assert_array_equal(c.labels_, relabel(c.labels_))
    assert c.labels_[0] in (0, -1)


# -- determinism and validation -------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_deterministic_with_same_random_state(method):
    X, _ = make_blobs(n_samples=60, centers=CENTERS, cluster_std=3.0, random_state=4)
    a = _fit(method, X, seed=7)
    b = _fit(method, X, seed=7)
    np.testing.assert_array_equal(a.labels_, b.labels_)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "dbscan"])
def test_k_larger_than_n_raises(method):
    X = _random_data(5)
    with pytest.raises(ParameterError):
        Clusterer(method, n_clusters=6).fit(X)


@pytest.mark.parametrize("k", [0, -1, 2.5, "3", True, None])
def test_bad_k_raises(k):
    with pytest.raises(ParameterError):
        Clusterer("kmeans", n_clusters=k).fit(_random_data(10))


def test_unknown_method_raises():
    with pytest.raises(ParameterError):
        Clusterer("ward", n_clusters=2).fit(_random_data(10))


def test_too_few_points_or_bad_features_raise():
    with pytest.raises(ParameterError):
        Clusterer("kmeans", n_clusters=1).fit(_random_data(1))
    X = _random_data(10)
    X[3, 2] = np.nan
    with pytest.raises(ParameterError):
        Clusterer("kmeans", n_clusters=2).fit(X)
    with pytest.raises(ParameterError):
        Clusterer("kmeans", n_clusters=2).fit(np.zeros(10))


def test_predict_with_wrong_width_raises(blobs):
    X, _ = blobs
    c = _fit("kmeans", X)
    with pytest.raises(ParameterError):
        c.predict(np.zeros((2, 5)))


# -- persistence and prediction ---------------------------------------------------------------
@pytest.mark.parametrize("method, min_agree", [("kmeans", 1.0), ("gmm", 1.0), ("hierarchical", 0.95),
                                               ("spectral", 0.90), ("dbscan", 1.0)])
def test_save_load_predict_on_training_points(tmp_path, blobs, method, min_agree):
    X, _ = blobs
    c = _fit(method, X)
    path = tmp_path / f"{method}.npz"
    c.save(path)
    with np.load(path, allow_pickle=False) as z:  # readable without pickle
        assert "labels" in z.files
    loaded = Clusterer.load(path)
    assert loaded.get_params() == c.get_params()
    np.testing.assert_array_equal(loaded.labels_, c.labels_)
    assert loaded.n_clusters_ == c.n_clusters_
    pred = loaded.predict(X)
    assert pred.shape == (len(X),)
    if method == "dbscan":
        core = loaded.core_
        assert core.any()
        np.testing.assert_array_equal(pred[core], c.labels_[core])
    else:
        assert np.mean(pred == c.labels_) >= min_agree
    # the loaded model predicts exactly like the in-memory one
    rng = np.random.default_rng(5)
    Y = X[rng.choice(len(X), 10)] + rng.normal(scale=0.3, size=(10, X.shape[1]))
    np.testing.assert_array_equal(loaded.predict(Y), c.predict(Y))


def test_hierarchical_save_load_keeps_levels(tmp_path, blobs):
    X, _ = blobs
    c = _fit("hierarchical", X)
    c.save(tmp_path / "h.npz")
    loaded = Clusterer.load(tmp_path / "h.npz")
    np.testing.assert_array_equal(loaded.levels_, c.levels_)
    np.testing.assert_array_equal(loaded.tree_, c.tree_)
    lv = loaded.predict_levels(X)
    assert lv.shape == (len(X), N_LEVELS)
    np.testing.assert_array_equal(lv[:, 0], 0)
    np.testing.assert_array_equal(lv[:, 2], c.labels_)  # level 3 = the 3 blobs


def test_predict_levels_none_for_flat_methods(blobs):
    X, _ = blobs
    assert _fit("kmeans", X).predict_levels(X) is None


def test_predict_new_points_go_to_nearest_blob(blobs):
    X, y = blobs
    for method in ("kmeans", "gmm", "hierarchical", "spectral", "dbscan"):
        c = _fit(method, X)
        # map true blob -> cluster id via the training labels
        blob_to_id = {b: np.bincount(c.labels_[y == b][c.labels_[y == b] >= 0]).argmax() for b in range(3)}
        pred = c.predict(CENTERS)
        assert [int(p) for p in pred] == [blob_to_id[b] for b in range(3)], method


def test_dbscan_predict_far_outlier_is_noise(blobs):
    X, _ = blobs
    c = _fit("dbscan", X)
    pred = c.predict(np.array([[-10.0, -10.0, -10.0], [10.0, 10.0, 10.0]]))
    np.testing.assert_array_equal(pred, [-1, -1])


def test_load_missing_or_damaged_raises(tmp_path):
    with pytest.raises(ModelFileError):
        Clusterer.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    with pytest.raises(ModelFileError):
        Clusterer.load(bad)


# -- knee eps -----------------------------------------------------------------------------------
@pytest.mark.parametrize("min_samples", [3, 5, 10])
def test_knee_eps_between_min_and_max_k_distance(blobs, min_samples):
    X, _ = blobs
    Xo = np.vstack([X, OUTLIERS])
    eps = knee_eps(Xo, min_samples)
    assert isinstance(eps, float)
    assert eps > 0
    nn = NearestNeighbors(n_neighbors=min_samples + 1, metric="cosine").fit(Xo)
    kd = nn.kneighbors(Xo)[0][:, -1]
    assert kd.min() - 1e-12 <= eps <= kd.max() + 1e-12
    # the outliers' k-distances lie above the knee
    assert (kd[len(X):] > eps).all()


def test_knee_eps_constant_distances_is_positive():
    # points on a regular polygon: all k-distances are equal
    t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    X = np.stack([np.cos(t), np.sin(t)], axis=1)
    eps = knee_eps(X, 2)
    assert eps > 0


def test_cut_levels_matches_scipy_cut_tree_and_replays_merges_in_order():
    from scipy.cluster.hierarchy import cut_tree, linkage

    from brainclust.cluster.methods import cut_levels, relabel

    rng = np.random.default_rng(0)
    for n, metric in ((2, "cosine"), (7, "euclidean"), (300, "cosine"), (300, "euclidean")):
        Z = linkage(rng.normal(size=(n, 5)), "average", metric=metric)
        ks = [*range(1, 11), n, n + 5]
        got = cut_levels(Z, ks)
        for k in ks:
            assert np.array_equal(got[k], relabel(cut_tree(Z, n_clusters=[min(k, n)])[:, 0]))
    # under tied heights the k-cut is the partition after the first n - k rows of the tree
    Z = linkage(np.repeat(np.eye(2), 3, axis=0), "average")
    assert np.array_equal(cut_levels(Z, [2])[2], [0, 0, 0, 1, 1, 1])
    assert [len(set(cut_levels(Z, [k])[k].tolist())) for k in range(1, 7)] == [1, 2, 3, 4, 5, 6]


def test_a_clusterers_k_names_n_clusters_and_where_auto_works():
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ParameterError, match=r"^--k \(n_clusters\): must be a positive integer, got 'auto'; "
                                             r"'auto' chooses k only in brainclust\.run\(k='auto'\) / "
                                             r"brainclust run --k auto$"):
        Clusterer(method="hierarchical", n_clusters="auto").fit(X)
    with pytest.raises(ParameterError, match=r"^--k \(n_clusters\): must be a positive integer, got 0$"):
        Clusterer(method="kmeans", n_clusters=0).fit(X)


def test_spectral_on_as_many_rows_as_dimensions_is_not_taken_for_an_affinity_matrix():
    """scikit-learn warned "The spectral clustering API has changed" whenever the data after PCA was square (12
    images, PCA capped at 12 dimensions): the kNN graph is now built here and passed as precomputed."""
    import warnings

    from sklearn.cluster import SpectralClustering

    X, y = make_blobs(n_samples=30, centers=np.eye(30)[:3] * 10, cluster_std=0.6, random_state=0)  # (30, 30)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        labels = _fit("spectral", X).labels_
    assert not [w for w in seen if "API has changed" in str(w.message)]
    assert adjusted_rand_score(y, labels) == 1.0
    X, y = make_blobs(n_samples=90, centers=CENTERS, cluster_std=3.0, random_state=1)  # overlapping: as sklearn's
    norm = X / np.linalg.norm(X, axis=1, keepdims=True)
    ref = SpectralClustering(3, affinity="nearest_neighbors", n_neighbors=10, random_state=0).fit(norm).labels_
    assert adjusted_rand_score(ref, _fit("spectral", X).labels_) == 1.0


def test_the_declared_methods_are_the_clusterers():
    """``--method``'s values are declared in core.choices (importable without the stages, for an instant --help);
    the clusterer classes declare their ``method`` names: the two must stay the same, in the same order."""
    from brainclust.cluster.methods import CLUSTERERS
    from brainclust.core.choices import METHODS

    assert tuple(CLUSTERERS) == METHODS


@pytest.mark.parametrize("method", METHODS)
def test_one_row_or_text_for_features_is_one_line_saying_what_is_expected(blobs, method):
    X, _ = blobs
    model = _fit(method, X)
    d = X.shape[1]
    with pytest.raises(ParameterError, match=rf"^features must be a 2-D array of shape \(n, {d}\), got shape "
                                             rf"\({d},\) \(one image: X.reshape\(1, -1\)\)$"):
        model.predict(X[0])  # was "features have 3 dimensions (1-D); the model was fitted on 3"
    with pytest.raises(ParameterError, match=rf"^features have {d + 1} dimensions; the model was fitted on {d} "):
        model.predict(np.hstack([X, X[:, :1]]))
    with pytest.raises(ParameterError, match=r"^features must be an array of numbers, got str \(could not convert"):
        Clusterer(method=method).fit("abc")  # was ValueError: could not convert string to float: 'abc'
    with pytest.raises(ParameterError, match=r"^features must be an array of numbers, got list"):
        model.predict([["a", "b"]])


@pytest.mark.parametrize("method", METHODS)
def test_n_features_in_is_set_by_fit_and_by_load(blobs, method, tmp_path):
    X, _ = blobs
    model = _fit(method, X)
    assert model.n_features_in_ == X.shape[1]  # scikit-learn's convention; was AttributeError
    model.save(tmp_path / "c.npz")
    assert Clusterer.load(tmp_path / "c.npz").n_features_in_ == X.shape[1]


def test_a_nan_row_in_fit_says_how_many_rows_and_the_first(blobs):
    X = blobs[0].copy()
    X[5, 1] = np.inf
    with pytest.raises(ParameterError, match=r"^the features of 1 of 90 rows are not finite \(NaN or infinite; "
                                             r"first: row 5\)"):
        Clusterer(method="kmeans", n_clusters=3).fit(X)  # was "features must be a finite 2-D array"


@pytest.mark.parametrize("method", METHODS)
def test_editing_the_callers_array_after_fit_leaves_predict_unchanged(blobs, method):
    """gmm, spectral, dbscan (and hierarchical) predicted from the caller's array itself: X[:] = ... after fit moved
    their assignments of new points."""
    X = blobs[0].copy()
    model = Clusterer(method="dbscan").fit(X) if method == "dbscan" else _fit(method, X)
    new = blobs[0][::9] + 0.1
    before = model.predict(new)
    X[:] = np.random.default_rng(1).normal(size=X.shape) * 100
    np.testing.assert_array_equal(model.predict(new), before)
    assert not np.shares_memory(model.X_fit_, X)
    X32 = blobs[0].astype(np.float32)  # already converted to a new float64 array: kept as it is
    assert Clusterer(method=method).fit(X32).X_fit_.dtype == np.float64


@pytest.mark.parametrize("method", [m for m in METHODS if m != "dbscan"])
@pytest.mark.parametrize("kind", ["Generator", "RandomState"])
def test_random_state_takes_a_numpy_generator_drawing_one_seed_per_fit(blobs, method, kind, tmp_path):
    """A Generator or RandomState was refused (``--seed: must be an integer``); scikit-learn takes a RandomState."""
    X = blobs[0]
    make = {"Generator": np.random.default_rng, "RandomState": np.random.RandomState}[kind]
    seed = int(make(5).integers(2**32) if kind == "Generator" else make(5).randint(2**32))
    rng = make(5)
    model = _fit(method, X, seed=rng)
    assert model.seed_ == seed and model.random_state is rng
    np.testing.assert_array_equal(model.labels_, _fit(method, X, seed=seed).labels_)
    assert _fit(method, X, seed=rng).seed_ != seed  # the generator moved on: the next fit draws another seed
    model.save(tmp_path / "c.npz")
    assert Clusterer.load(tmp_path / "c.npz").random_state == seed  # the seed of the fit, which a clone refits with
    with pytest.raises(ParameterError, match=r"^--seed \(random_state\): must be .*a numpy Generator or RandomState"):
        _fit(method, X, seed="7")
