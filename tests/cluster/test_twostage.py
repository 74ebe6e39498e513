"""Two-stage average-cosine tree (brainclust.cluster.twostage) against scipy's exact tree."""

import numpy as np
import pytest
from scipy.cluster.hierarchy import cut_tree, linkage
from scipy.spatial.distance import cdist
from sklearn.metrics import adjusted_rand_score

from brainclust.cluster.methods import Clusterer, cut_levels
from brainclust.cluster.twostage import (average_cosine_distances, cluster_sums, two_stage_tree, unit_rows,
                                         weighted_average_linkage)


def _blobs(n_per=40, k=5, d=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(k, d)).repeat(n_per, 0) * 2 + rng.normal(size=(k * n_per, d))


def test_singleton_groups_equal_scipy_average_cosine():
    X = _blobs()
    exact = linkage(X, method="average", metric="cosine")
    U = unit_rows(X)
    ours = weighted_average_linkage(U, np.ones(len(U)))
    assert ours.shape == exact.shape
    np.testing.assert_allclose(ours[:, 2], exact[:, 2], atol=1e-12)
    for k in (2, 3, 4, 5, 7, 10, 25):
        a, b = cut_tree(exact, k)[:, 0], cut_tree(ours, k)[:, 0]
        assert adjusted_rand_score(a, b) == 1.0, k


def test_cluster_sum_distance_is_mean_pairwise_cosine():
    rng = np.random.default_rng(1)
    A, B = rng.normal(size=(3, 4)), rng.normal(size=(5, 4))
    U = unit_rows(np.vstack([A, B]))
    S, sizes = cluster_sums(U, np.array([0] * 3 + [1] * 5), 2)
    D = average_cosine_distances(S, sizes)
    assert D[0, 1] == pytest.approx(cdist(A, B, metric="cosine").mean(), abs=1e-12)
    assert np.isinf(D[0, 0])


def test_groups_merge_with_size_weights():
    """Three groups: the Lance-Williams update with sizes equals the mean over all point pairs."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(12, 5))
    g = np.array([0] * 2 + [1] * 7 + [2] * 3)
    U = unit_rows(X)
    Z = weighted_average_linkage(*cluster_sums(U, g, 3))
    first = {int(Z[0, 0]), int(Z[0, 1])}
    other = ({0, 1, 2} - first).pop()
    merged = np.isin(g, list(first))
    want = cdist(X[merged], X[g == other], metric="cosine").mean()
    assert Z[1, 2] == pytest.approx(want, abs=1e-12)


def test_clusterer_two_stage_with_every_point_a_micro_cluster_matches_exact():
    X = _blobs(n_per=30)
    exact = Clusterer(n_clusters=5).fit(X)
    two = Clusterer(n_clusters=5, exact_max=50, n_micro=len(X), random_state=0).fit(X)
    assert two.micro_centers_ is not None and len(two.micro_centers_) == len(X)
    for L in range(10):
        assert adjusted_rand_score(exact.levels_[:, L], two.levels_[:, L]) == 1.0, L + 1
    assert adjusted_rand_score(exact.labels_, two.labels_) == 1.0


def test_two_stage_predict_save_load(tmp_path):
    X = _blobs(n_per=100, k=4)
    model = Clusterer(n_clusters=4, exact_max=100, n_micro=40, random_state=0).fit(X)
    assert model.tree_.shape == (len(model.micro_centers_) - 1, 4)
    assert np.array_equal(model.predict(X), model.labels_)
    assert np.array_equal(model.predict_levels(X), model.levels_)
    model.save(tmp_path / "c.npz")
    back = Clusterer.load(tmp_path / "c.npz")
    assert np.array_equal(back.predict(X[:30]), model.labels_[:30])
    assert np.array_equal(back.predict_levels(X[:30]), model.levels_[:30])
    # the saved tree cuts like the fitted one
    assert cut_levels(back.tree_, [4])[4].max() == 3


def test_two_stage_is_seeded():
    X = _blobs(n_per=100, k=4)
    a = Clusterer(n_clusters=4, exact_max=100, n_micro=30, random_state=3).fit(X)
    b = Clusterer(n_clusters=4, exact_max=100, n_micro=30, random_state=3).fit(X)
    assert np.array_equal(a.levels_, b.levels_)


def test_two_stage_tree_function_shapes():
    X = _blobs(n_per=20, k=3)
    tree, centres, assign = two_stage_tree(X, m=15, random_state=0)
    assert centres.shape[0] == 15 and tree.shape == (14, 4)
    assert assign.shape == (len(X),) and set(np.unique(assign)) == set(range(15))


def test_report_dendrogram_draws_a_tree_over_micro_clusters():
    pytest.importorskip("matplotlib")
    from brainclust.report.figures import dendrogram_figure

    X = _blobs(n_per=100, k=4)
    model = Clusterer(n_clusters=4, exact_max=100, n_micro=40, random_state=0).fit(X)
    fig = dendrogram_figure(model.tree_, model.labels_, 4, {c: "#1f77b4" for c in range(4)})
    assert len(fig.axes[0].lines) == 1  # the cut line at k = 4
