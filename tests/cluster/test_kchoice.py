"""Prediction strength (brainclust.cluster.kchoice.StableK) on planted data."""

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from brainclust.cluster.kchoice import StableK, mean_distance_assign, pair_share
from brainclust.errors import ParameterError


@pytest.mark.parametrize("k,method,seed", [(3, "hierarchical", 0), (5, "hierarchical", 1), (4, "kmeans", 2)])
def test_finds_the_planted_number_of_well_separated_groups(k, method, seed):
    X, _ = make_blobs(n_samples=60 * k, centers=k, n_features=8, cluster_std=0.6, center_box=(-10, 10),
                      random_state=seed)
    X += 20  # away from the origin, as pooled features are (cosine geometry)
    sel = StableK(method=method, k_max=7, random_state=seed).fit(X)
    assert sel.k_ == k and sel.passed_
    assert sel.strength_[sel.ks_.index(k)] >= 0.8
    rec = sel.as_dict()
    assert rec["chosen_k"] == k and len(rec["strength"]) == len(rec["ks"]) and rec["passed"] is True


def test_structureless_data_is_flagged():
    X = np.random.default_rng(0).normal(size=(300, 10)) + 5
    sel = StableK(random_state=0).fit(X)
    assert not sel.passed_ or sel.k_ == 2  # no reproducible level beyond a coarse split
    assert all(0.0 <= s <= 1.0 for s in sel.strength_)


def test_pair_share_by_hand():
    test = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([5, 5, 6, 7, 7, 1])
    # cluster 0: pairs (0,1) together, (0,2) (1,2) apart -> 1/3; cluster 1: 1/1; cluster 2 has one member (skipped)
    assert pair_share(test, pred) == pytest.approx(1 / 3)
    assert pair_share(np.array([0, 1]), np.array([0, 0])) == 0.0


def test_mean_distance_assign_picks_the_cluster_of_highest_mean_similarity():
    train = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    train /= np.linalg.norm(train, axis=1, keepdims=True)
    assert list(mean_distance_assign(np.array([[1.0, 0.05], [0.1, 1.0]]), train, np.array([0, 0, 1]))) == [0, 1]


def test_refuses_too_few_images_and_bad_settings():
    with pytest.raises(ParameterError, match="at least 8 images"):
        StableK().fit(np.random.default_rng(0).normal(size=(7, 3)))
    with pytest.raises(ParameterError, match="threshold"):
        StableK(threshold=1.5).fit(np.random.default_rng(0).normal(size=(50, 3)))
    with pytest.raises(ParameterError, match="dbscan"):
        StableK(method="dbscan").fit(np.random.default_rng(0).normal(size=(50, 3)))
