"""The self-supervised gate keeps an SSL embedding only if a label-free check passes."""

from __future__ import annotations

import numpy as np

from brainclust.selfsup.gate import check, knn_agreement, subsample_stability


def planted(seed=0, n_per=50, dim=30, spread=1.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (4, dim))
    return np.concatenate([c + rng.normal(0, spread, (n_per, dim)) for c in centres]), np.repeat(np.arange(4), n_per)


def test_gate_rejects_an_embedding_that_destroys_planted_clusters():
    X, _ = planted()
    destroyed = np.random.default_rng(1).normal(size=(len(X), 16))  # no structure left
    dec = check(X, destroyed, k=4, pca=10, seed=0)
    assert not dec.kept
    assert dec.frozen["knn_agreement"] > dec.ssl["knn_agreement"] + 0.3
    assert dec.as_dict()["kept"] is False


def test_gate_ties_go_to_the_frozen_features():
    X, _ = planted()
    dec = check(X, X.copy(), k=4, pca=10, seed=0)
    assert not dec.kept  # equal evidence: the stage steps aside


def test_criteria_on_planted_structure():
    X, y = planted()
    assert subsample_stability(X, y, 4, 0) > 0.95
    assert knn_agreement(X, y) > 0.95
    noise = np.random.default_rng(2).permutation(y)
    assert knn_agreement(X, noise) < 0.5
