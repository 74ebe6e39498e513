"""agreement(): cosine of paired feature rows and ARI of the two runs' partitions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from brainclust.analysis.agreement import agreement, row_cosine
from brainclust.errors import ParameterError


def blobs(seed=0):
    X, _ = make_blobs(n_samples=120, centers=3, n_features=20, cluster_std=0.5, center_box=(-10, 10),
                      random_state=seed)
    return X.astype(np.float32) + 20.0  # positive, like pooled CNN features


def test_identical_features_agree_fully():
    X = blobs()
    out = agreement(X, X.copy(), k=3, seed=0, pca=5)
    assert out["n"] == 120 and out["cosine_mean"] == pytest.approx(1.0) and out["cosine_min"] == pytest.approx(1.0)
    assert out["ari_hierarchical"] == pytest.approx(1.0) and out["ari_kmeans"] == pytest.approx(1.0)


def test_small_noise_keeps_separated_clusters_and_shuffled_rows_do_not():
    X = blobs(1)
    rng = np.random.default_rng(0)
    noisy = X + rng.normal(0, 0.01, X.shape).astype(np.float32)
    out = agreement(X, noisy, k=3, seed=0, pca=5)
    assert 0.999 < out["cosine_mean"] <= 1.0 and out["ari_kmeans"] == pytest.approx(1.0)
    shuffled = agreement(X, X[rng.permutation(len(X))], k=3, seed=0, pca=5, methods=("kmeans",))
    assert shuffled["ari_kmeans"] < 0.5 and "ari_hierarchical" not in shuffled


def test_rows_not_finite_are_left_out_and_shapes_checked():
    X = blobs(2)
    Y = X.copy()
    Y[5] = np.nan
    assert agreement(X, Y, k=3, pca=5, methods=("kmeans",))["n"] == 119
    with pytest.raises(ParameterError, match="same"):
        agreement(X, X[:, :10], k=3)


def test_row_cosine_hand_computed():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    b = np.array([[0.0, 2.0], [2.0, 2.0], [0.0, 0.0]])
    np.testing.assert_allclose(row_cosine(a, b), [0.0, 1.0, 1.0])
