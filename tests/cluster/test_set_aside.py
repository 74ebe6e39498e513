"""SetAside: a clustering of part of the rows seen over every row; its cluster.npz round trip for every method
and with the rules (--outliers auto, --k auto) inside."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from brainclust.cluster.kselect import AutoK
from brainclust.cluster.methods import load_clusterer, make_clusterer
from brainclust.cluster.outliers import OutlierRule
from brainclust.cluster.setaside import SetAside
from brainclust.errors import ModelFileError
from brainclust.io.atomic import atomic_write_npz, read_npz
from brainclust.io.outputs import MODEL_FILES
from brainclust.model.persist import load_clustering


def _data(n=90, seed=0):
    X, _ = make_blobs(n_samples=n, centers=[[5, 0, 0, 0], [0, 5, 0, 0], [0, 0, 5, 0]], cluster_std=0.6,
                      random_state=seed)
    aside = np.zeros(n, bool)
    aside[[3, 10, 11, 40, 77]] = True
    return X + 0.1, aside


def _fit(est, X, aside):
    return SetAside.fitted(est.fit(X[~aside]), aside, X)


@pytest.mark.parametrize("method", ["hierarchical", "kmeans", "gmm", "spectral", "dbscan"])
def test_rows_set_aside_get_minus_one_and_the_others_keep_the_inner_labels(method):
    X, aside = _data()
    inner = make_clusterer(method, n_clusters=3, random_state=0)
    wrapped = _fit(inner, X, aside)
    assert wrapped.labels_.shape == (90,) and np.all(wrapped.labels_[aside] == -1)
    np.testing.assert_array_equal(wrapped.labels_[~aside], inner.labels_)
    np.testing.assert_array_equal(wrapped.X_fit_, X)
    if inner.levels_ is not None:
        assert np.all(wrapped.levels_[aside] == -1)
        np.testing.assert_array_equal(wrapped.levels_[~aside], inner.levels_)
    np.testing.assert_array_equal(wrapped.predict(X[:7]), inner.predict(X[:7]))
    assert wrapped.method == method and wrapped.n_clusters_ == inner.n_clusters_


@pytest.mark.parametrize("method", ["hierarchical", "kmeans", "gmm", "spectral", "dbscan"])
def test_saved_and_loaded_it_predicts_as_before_and_the_report_reads_every_row(tmp_path, method):
    X, aside = _data()
    wrapped = _fit(make_clusterer(method, n_clusters=3, random_state=0), X, aside)
    entry = wrapped.save_step(tmp_path)
    assert entry["class"] == "SetAside" and entry["files"] == [MODEL_FILES["cluster"]]
    back = load_clustering(tmp_path, entry)
    assert isinstance(back, SetAside)
    np.testing.assert_array_equal(back.labels_, wrapped.labels_)
    np.testing.assert_array_equal(back.set_aside_, aside)
    np.testing.assert_array_equal(back.predict(X), wrapped.predict(X))
    plain = load_clusterer(tmp_path / MODEL_FILES["cluster"])  # what the report reads: every row, -1 set aside
    np.testing.assert_array_equal(plain.labels_, wrapped.labels_)
    assert len(plain.X_fit_) == 90


@pytest.mark.parametrize("rule", ["outliers", "autok", "both"])
def test_the_rules_inside_survive_the_round_trip(tmp_path, rule):
    X, aside = _data(120)
    est = make_clusterer("kmeans" if rule != "autok" else "hierarchical", n_clusters=3, random_state=0)
    if rule in ("outliers", "both"):
        est = OutlierRule(est)
    if rule in ("autok", "both"):
        est = AutoK(est, k_max=5, n_references=3)
    wrapped = _fit(est, X, aside)
    back = load_clustering(tmp_path, wrapped.save_step(tmp_path))
    np.testing.assert_array_equal(back.labels_, wrapped.labels_)
    np.testing.assert_array_equal(back.predict(X), wrapped.predict(X))
    assert type(back.estimator_).__name__ == type(wrapped.estimator_).__name__
    if rule != "outliers":
        assert back.k_ == wrapped.k_


def test_a_tampered_set_aside_mask_is_refused(tmp_path):
    X, aside = _data()
    wrapped = _fit(make_clusterer("kmeans", n_clusters=3, random_state=0), X, aside)
    entry = wrapped.save_step(tmp_path)
    path = tmp_path / MODEL_FILES["cluster"]
    data = read_npz(path, "cluster model")
    data["set_aside"] = ~data["set_aside"]  # now true where the labels are not -1
    atomic_write_npz(path, **data)
    with pytest.raises(ModelFileError, match="set_aside"):
        load_clustering(tmp_path, entry)
