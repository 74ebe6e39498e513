"""Hierarchical predict: an image the model was fitted on keeps its fitted cluster and levels."""

from __future__ import annotations

import numpy as np

from brainclust.cluster.hierarchical import TWIN_DISTANCE, HierarchicalClusterer, mean_distance_assign


def overlapping_blobs(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(0, 1, (150, 10)) + 1.0, rng.normal(0, 1, (150, 10)) - 0.3]) + 2


def rule(h: HierarchicalClusterer, X: np.ndarray) -> np.ndarray:
    """The mean-distance rule alone (no fitted rows kept)."""
    return mean_distance_assign(X, h.X_fit_, h.labels_, "cosine")


def test_fitted_rows_keep_their_cluster_and_levels():
    X = overlapping_blobs(0)
    h = HierarchicalClusterer(n_clusters=3).fit(X)
    assert (rule(h, X) != h.labels_).sum() > 0  # the rule alone moves some fitted rows
    assert np.array_equal(h.predict(X), h.labels_)
    assert np.array_equal(h.predict_levels(X), h.levels_)
    assert np.array_equal(h.predict(X[::-1] * 3.0), h.labels_[::-1])  # the same direction at another scale


def test_a_row_near_but_not_at_a_fitted_row_follows_the_rule():
    X = overlapping_blobs(1)
    h = HierarchicalClusterer(n_clusters=3).fit(X)
    moved = np.flatnonzero(rule(h, X) != h.labels_)
    assert len(moved)
    Y = X[moved] + np.random.default_rng(2).normal(0, 1e-3, X[moved].shape)  # close, but another image
    cos = np.sum(Y * X[moved], 1) / np.linalg.norm(Y, axis=1) / np.linalg.norm(X[moved], axis=1)
    assert np.all(1 - cos > TWIN_DISTANCE)
    assert np.array_equal(h.predict(Y), rule(h, Y))


def test_with_a_metric_that_sees_the_scale_a_twin_is_the_same_point_not_the_same_direction():
    X = overlapping_blobs(0)
    h = HierarchicalClusterer(n_clusters=3, linkage="average", metric="euclidean").fit(X)
    assert np.array_equal(h.predict(X), h.labels_)
    far = X * 3.0  # the same directions, other points
    assert np.array_equal(h.predict(far), mean_distance_assign(far, h.X_fit_, h.labels_, "euclidean"))
