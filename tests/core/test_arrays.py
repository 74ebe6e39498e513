"""The array helpers every stage uses: one zero-row rule, seeded samples, exact cosine k-NN, one silhouette."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist, pdist
from sklearn.metrics import silhouette_samples, silhouette_score
from sklearn.metrics.pairwise import cosine_distances

from brainclust.cluster.scores import score
from brainclust.core.arrays import (cosine_cdist, cosine_knn, cosine_pdist, mean_silhouette, seeded_sample,
                                    silhouette_rows, silhouette_values, stratified_sample, unit_rows)
from brainclust.report.geometry import silhouette_per_image


def _data(n=30, d=5, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)) + 0.5


def test_unit_rows_zero_rule_and_bits_of_ordinary_rows():
    X = _data()
    X[3] = 0.0
    X[7] = 1e-14  # below the zero norm: no direction either
    U = unit_rows(X)
    np.testing.assert_array_equal(U[3], 0.0)
    np.testing.assert_array_equal(U[7], 0.0)
    ok = np.ones(len(X), bool)
    ok[[3, 7]] = False
    np.testing.assert_array_equal(U[ok], X[ok] / np.linalg.norm(X[ok], axis=1, keepdims=True))  # same bits
    assert unit_rows(X.astype(np.float32)).dtype == np.float32  # the precision is kept


def test_cosine_distances_follow_scipy_and_the_zero_row_rule():
    X = _data()
    np.testing.assert_array_equal(cosine_pdist(X), pdist(X, "cosine"))  # no zero row: scipy's own values
    np.testing.assert_array_equal(cosine_cdist(X[:4], X), cdist(X[:4], X, "cosine"))
    X[2] = 0.0
    D = cosine_cdist(X, X)
    assert np.all(np.isfinite(D)) and np.all(D[2, np.arange(len(X)) != 2] == 1.0) and np.all(D[:, 2][:2] == 1.0)
    # scikit-learn's convention (the silhouette's): the same distances to the zero row
    np.testing.assert_allclose(np.delete(D, 2, 1), np.delete(cosine_distances(X, X), 2, 1), atol=1e-12)
    P = cosine_pdist(X)
    assert np.all(np.isfinite(P)) and P.shape == (len(X) * (len(X) - 1) // 2,)


def test_seeded_sample_is_sorted_distinct_and_continues_a_generator():
    a = seeded_sample(100, 10, 3)
    assert np.array_equal(a, np.sort(a)) and len(set(a.tolist())) == 10
    assert np.array_equal(a, seeded_sample(100, 10, 3))
    rng = np.random.default_rng(5)
    first = seeded_sample(50, 5, rng)
    follow = rng.integers(0, 1000, 3)
    ref = np.random.default_rng(5)
    assert np.array_equal(first, np.sort(ref.choice(50, 5, replace=False)))
    assert np.array_equal(follow, ref.integers(0, 1000, 3))  # the caller's stream goes on as before


def test_stratified_sample_has_the_budget_and_every_cluster():
    clusters = np.repeat([0, 1, 2, 3], [500, 300, 15, 1])
    for cap in (50, 100, 400):
        s = stratified_sample(clusters, cap, random_state=0)
        assert len(s) == cap and set(clusters[s].tolist()) == {0, 1, 2, 3}
        assert np.array_equal(s, np.sort(s)) and np.array_equal(s, stratified_sample(clusters, cap, 0))


@pytest.mark.parametrize("exclude_self", [False, True])
def test_cosine_knn_equals_brute_force(exclude_self):
    X = _data(40, 6, seed=2)
    idx, dist = cosine_knn(X, 5, exclude_self=exclude_self, chunk=7)
    D = cosine_distances(X)
    if exclude_self:
        np.fill_diagonal(D, np.inf)
    else:
        np.fill_diagonal(D, -1.0)
    want = np.argsort(D, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(idx, want)
    assert np.all(np.diff(dist, axis=1) >= 0) and (exclude_self or np.all(dist[:, 0] == 0))
    assert not exclude_self or not np.any(idx == np.arange(len(X))[:, None])


def test_silhouette_is_scikit_learns_below_the_budget():
    X = _data(60)
    y = np.repeat([0, 1, 2], 20)
    value, sample = mean_silhouette(X, y)
    # scikit-learn's computation (in other row blocks, so equal up to the last bits on some CPUs)
    assert sample is None and value == pytest.approx(silhouette_score(X, y, metric="cosine"), rel=1e-12)
    np.testing.assert_allclose(silhouette_values(X, y), silhouette_samples(X, y, metric="cosine"), rtol=1e-12,
                               atol=1e-15)
    assert silhouette_rows(np.zeros(5, int)) is None and mean_silhouette(X[:3], [0, 1, 2]) == (None, None)


def test_one_budget_metrics_and_the_report_agree_above_it():
    X = _data(300, 4, seed=4)
    y = np.repeat([0, 1, 2, 3], [150, 100, 45, 5])
    y[:3] = -1  # noise / outliers count nowhere
    m = score(X, y, silhouette_max=80)
    per_image = silhouette_per_image(X, y, max_images=80)
    kept = per_image[np.isfinite(per_image)]
    assert m["silhouette_sample"] == len(kept) == 80
    assert m["silhouette"] == float(np.mean(kept))  # the same rows, the same mean: the report shows metrics' value
    assert set(y[np.isfinite(per_image)].tolist()) == {0, 1, 2, 3}
