"""Stage 6: scores, checked against scikit-learn and hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics

from brainclust.cluster.scores import clustering_accuracy, score
from brainclust.errors import ParameterError


@pytest.fixture
def example():
    rng = np.random.default_rng(0)
    centres = np.array([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]])
    truth = np.repeat(["axial", "coronal", "sagittal"], 6)
    X = centres[np.repeat([0, 1, 2], 6)] + rng.normal(scale=1.0, size=(18, 3))
    # an imperfect clustering: two points in the wrong cluster
    pred = np.repeat([0, 1, 2], 6)
    pred[0], pred[7] = 1, 2
    return X, pred, truth


# -- agreement with scikit-learn -------------------------------------------------------------
def test_score_matches_sklearn(example):
    X, pred, truth = example
    s = score(X, pred, truth)
    assert s["ari"] == pytest.approx(metrics.adjusted_rand_score(truth, pred))
    assert s["nmi"] == pytest.approx(metrics.normalized_mutual_info_score(truth, pred))
    assert s["fmi"] == pytest.approx(metrics.fowlkes_mallows_score(truth, pred))
    assert s["silhouette"] == pytest.approx(metrics.silhouette_score(X, pred, metric="cosine"))
    # the cosine silhouette differs from the Euclidean one on this data
    assert s["silhouette"] != pytest.approx(metrics.silhouette_score(X, pred), abs=1e-6)
    assert s["acc"] == pytest.approx(16 / 18)
    assert 0 < s["ari"] < 1


def test_score_counts_and_json_ready(example):
    X, pred, truth = example
    s = score(X, pred, truth)
    assert s["n_images"] == 18
    assert s["n_clusters"] == 3
    assert s["n_noise"] == 0
    assert s["n_labelled"] == 18
    assert s["cluster_sizes"] == {"0": 5, "1": 6, "2": 7}
    json.dumps(s, allow_nan=False)
    for key in ("ari", "nmi", "fmi", "acc", "silhouette"):
        assert isinstance(s[key], float)


def test_score_without_labels_has_no_external_scores(example):
    X, pred, _ = example
    s = score(X, pred)
    assert s["silhouette"] is not None
    for key in ("ari", "nmi", "fmi", "acc", "n_labelled"):
        assert key not in s


def test_perfect_clustering_scores_one(example):
    X, _, truth = example
    pred = np.repeat([2, 0, 1], 6)  # perfect up to renaming
    s = score(X, pred, truth)
    for key in ("ari", "nmi", "fmi", "acc"):
        assert s[key] == pytest.approx(1.0)


# -- clustering accuracy --------------------------------------------------------------------------
def test_accuracy_permuted_labels_is_one():
    truth = ["a", "a", "b", "b", "c", "c"]
    assert clustering_accuracy(truth, [2, 2, 0, 0, 1, 1]) == 1.0
    assert clustering_accuracy(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0])) == 1.0


def test_accuracy_known_contingency():
    # contingency (rows truth, columns clusters) = [[2, 1], [0, 3]] -> best diagonal 2 + 3
    truth = [0, 0, 0, 1, 1, 1]
    pred = [0, 0, 1, 1, 1, 1]
    assert clustering_accuracy(truth, pred) == pytest.approx(5 / 6)
    # [[3, 1], [2, 2]]: matching (a->0, b->1) = 5 beats (a->1, b->0) = 3
    truth = list("aaaabbbb")
    pred = [0, 0, 0, 1, 0, 0, 1, 1]
    assert clustering_accuracy(truth, pred) == pytest.approx(5 / 8)


def test_accuracy_more_clusters_than_labels():
    # one label split into two clusters: only one cluster can be matched to it
    assert clustering_accuracy([0, 0, 0, 0], [0, 0, 1, 1]) == pytest.approx(0.5)
    # more labels than clusters
    assert clustering_accuracy(["x", "y", "z", "z"], [0, 0, 0, 0]) == pytest.approx(0.5)


def test_accuracy_noise_counts_as_miss():
    assert clustering_accuracy([0, 0, 1, 1], [0, -1, 1, 1]) == pytest.approx(3 / 4)
    assert clustering_accuracy([0, 0, 1, 1], [-1, -1, -1, -1]) == 0.0


# -- noise ----------------------------------------------------------------------------------------------
def test_noise_handling(example):
    X, _, truth = example
    pred = np.repeat([0, 1, 2], 6)
    pred[[0, 1, 8]] = -1
    s = score(X, pred, truth)
    assert s["n_noise"] == 3
    assert s["n_clusters"] == 3
    assert s["cluster_sizes"] == {"-1": 3, "0": 4, "1": 5, "2": 6}
    # noise points are singletons for ARI/NMI/FMI
    singles = pred.copy()
    singles[[0, 1, 8]] = [3, 4, 5]
    assert s["ari"] == pytest.approx(metrics.adjusted_rand_score(truth, singles))
    assert s["nmi"] == pytest.approx(metrics.normalized_mutual_info_score(truth, singles))
    assert s["fmi"] == pytest.approx(metrics.fowlkes_mallows_score(truth, singles))
    # ... which differs from treating noise as one more cluster
    lumped = np.where(pred == -1, 3, pred)
    assert s["ari"] != pytest.approx(metrics.adjusted_rand_score(truth, lumped))
    # misses for ACC
    assert s["acc"] == pytest.approx(15 / 18)
    # silhouette on the non-noise points only
    keep = pred != -1
    assert s["silhouette"] == pytest.approx(metrics.silhouette_score(X[keep], pred[keep], metric="cosine"))


def test_marking_points_as_noise_is_not_rewarded(example):
    X, _, truth = example
    perfect = np.repeat([0, 1, 2], 6)
    noisy = perfect.copy()
    noisy[::3] = -1
    a, b = score(X, perfect, truth), score(X, noisy, truth)
    for key in ("ari", "nmi", "fmi", "acc"):
        assert b[key] < a[key]


def test_all_noise(example):
    X, _, truth = example
    s = score(X, np.full(18, -1), truth)
    assert s["n_clusters"] == 0 and s["n_noise"] == 18
    assert s["silhouette"] is None
    assert s["acc"] == 0.0


# -- unlabelled rows ----------------------------------------------------------------------------------------
def test_unlabelled_rows_are_excluded(example):
    X, pred, truth = example
    truth = truth.astype(object)
    truth[[2, 9, 15]] = ""
    s = score(X, pred, list(truth))
    assert s["n_labelled"] == 15
    assert s["n_images"] == 18
    lab = truth != ""
    yt, yp = truth[lab].astype(str), pred[lab]
    assert s["ari"] == pytest.approx(metrics.adjusted_rand_score(yt, yp))
    assert s["nmi"] == pytest.approx(metrics.normalized_mutual_info_score(yt, yp))
    assert s["fmi"] == pytest.approx(metrics.fowlkes_mallows_score(yt, yp))
    assert s["acc"] == pytest.approx(clustering_accuracy(yt, yp))
    # the silhouette still uses every image
    assert s["silhouette"] == pytest.approx(metrics.silhouette_score(X, pred, metric="cosine"))


def test_too_few_labelled_rows_give_no_external_scores(example):
    X, pred, _ = example
    truth = [""] * 17 + ["a"]
    s = score(X, pred, truth)
    assert s["n_labelled"] == 1
    assert "ari" not in s and "acc" not in s


# -- silhouette edge cases ------------------------------------------------------------------------------------
def test_silhouette_none_with_one_cluster(example):
    X, _, truth = example
    s = score(X, np.zeros(18, int), truth)
    assert s["silhouette"] is None
    assert s["n_clusters"] == 1
    assert s["ari"] == pytest.approx(0.0)


def test_silhouette_none_when_every_point_is_its_own_cluster():
    X = np.random.default_rng(1).normal(size=(5, 3))
    s = score(X, np.arange(5))
    assert s["silhouette"] is None


def test_zero_and_false_are_labels_and_missing_values_are_not(example):
    """A Python API user's integer labels lost class 0 (``bool(0)`` is False: 'unlabelled') and NaN was a class
    of its own (a probe's find); ``""``, ``None``, NaN and ``pandas.NA`` are the unlabelled rows."""
    import pandas as pd

    X, pred, truth = example
    codes = {t: i for i, t in enumerate(sorted(set(truth)))}
    as_int = [codes[t] for t in truth]
    assert 0 in as_int
    by_int, by_str = score(X, pred, as_int), score(X, pred, list(truth))
    assert by_int["n_labelled"] == len(truth) and by_int["ari"] == pytest.approx(by_str["ari"])
    for missing in ("", None, float("nan"), np.nan, pd.NA):
        labels = list(as_int)
        labels[3] = missing
        assert score(X, pred, labels)["n_labelled"] == len(truth) - 1, missing


def test_score_refuses_what_it_cannot_score_in_one_line(example):
    X, pred, truth = example
    with pytest.raises(ParameterError, match="labels_true is one string"):
        score(X, pred, "".join(truth))
    with pytest.raises(ParameterError, match="labels_pred must be integer cluster ids"):
        score(X, pred.astype(str), list(truth))
    with pytest.raises(ParameterError, match="NaN or infinite"):
        score(np.where(np.eye(*X.shape, dtype=bool), np.nan, X), pred)
    with pytest.raises(ParameterError, match="silhouette_max must be an integer of at least 2"):
        score(X, pred, silhouette_max=0)
    assert score(X, pred.astype(float))["n_clusters"] == score(X, pred)["n_clusters"]  # whole floats are ids


def test_text_for_x_is_one_line():
    with pytest.raises(ParameterError, match=r"^score: X must be an array of numbers, got list \(could not convert"):
        score([["a", "b"], ["c", "d"]], [0, 1])  # was ValueError: could not convert string to float: 'a'
