"""Every method's large-n path (or refusal), exercised at small thresholds."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from brainclust.cluster.kselect import KSelector
from brainclust.cluster.methods import Clusterer
from brainclust.cluster.scores import score
from brainclust.errors import ParameterError


def _blobs(n_per=60, k=3, d=6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 4
    return centres.repeat(n_per, 0) + rng.normal(size=(k * n_per, d)), np.arange(k).repeat(n_per)


def test_kmeans_switches_to_minibatch_above_kmeans_max(tmp_path):
    X, y = _blobs()
    big = Clusterer(method="kmeans", n_clusters=3, kmeans_max=50, random_state=0).fit(X)
    assert adjusted_rand_score(y, big.labels_) == 1.0
    assert np.array_equal(big.predict(X), big.labels_)
    big.save(tmp_path / "k.npz")
    assert np.array_equal(Clusterer.load(tmp_path / "k.npz").predict(X), big.labels_)


def test_gmm_fits_a_seeded_sample_above_exact_max():
    X, y = _blobs()
    a = Clusterer(method="gmm", n_clusters=3, exact_max=60, random_state=0).fit(X)
    b = Clusterer(method="gmm", n_clusters=3, exact_max=60, random_state=0).fit(X)
    assert a.labels_.shape == (len(X),) and np.array_equal(a.labels_, b.labels_)
    assert adjusted_rand_score(y, a.labels_) == 1.0
    assert np.array_equal(a.predict(X), a.labels_)


@pytest.mark.parametrize("method", ["dbscan", "spectral"])
def test_graph_methods_refuse_above_exact_max(method):
    X, _ = _blobs()
    with pytest.raises(ParameterError, match=r"exact_max=100 .*got 180.*kmeans"):
        Clusterer(method=method, n_clusters=3, exact_max=100).fit(X)
    Clusterer(method=method, n_clusters=3, exact_max=180).fit(X)  # at the limit: still exact


@pytest.mark.parametrize("linkage,metric", [("complete", "cosine"), ("ward", "euclidean"), ("average", "euclidean")])
def test_other_linkages_refuse_above_exact_max(linkage, metric):
    X, _ = _blobs()
    with pytest.raises(ParameterError, match="exact_max=100"):
        Clusterer(n_clusters=3, linkage=linkage, metric=metric, exact_max=100).fit(X)


def test_hierarchical_above_exact_max_is_two_stage():
    X, y = _blobs()
    model = Clusterer(n_clusters=3, exact_max=100, n_micro=20, random_state=0).fit(X)
    assert model.micro_centers_.shape == (20, X.shape[1]) and model.tree_.shape == (19, 4)
    assert adjusted_rand_score(y, model.labels_) == 1.0
    with pytest.raises(ParameterError, match="micro-clusters"):
        Clusterer(n_clusters=30, exact_max=100, n_micro=20, random_state=0).fit(X)


def test_new_thresholds_are_checked():
    with pytest.raises(ParameterError, match="exact_max"):
        Clusterer(exact_max=0).check_params()
    with pytest.raises(ParameterError, match="n_micro"):
        Clusterer(n_micro=1.5).check_params()


def test_silhouette_on_a_seeded_sample_above_the_threshold():
    X, y = _blobs()
    full = score(X, y)
    assert "silhouette_sample" not in full
    a, b = score(X, y, silhouette_max=50), score(X, y, silhouette_max=50)
    assert a["silhouette_sample"] == 50 and a["silhouette"] == b["silhouette"]
    assert a["silhouette"] != full["silhouette"] and abs(a["silhouette"] - full["silhouette"]) < 0.1


def test_kselect_runs_on_a_seeded_sample_above_the_threshold():
    X, _ = _blobs(n_per=100)
    sel = KSelector(method="kmeans", k_max=5, n_references=2, random_state=0, sample_max=120).fit(X)
    assert len(sel.sample_) == 120 and sel.as_dict()["sample_size"] == 120
    assert all(len(v) == 120 for v in sel.labels_.values())
    assert sel.k_ == 3
    full = KSelector(method="kmeans", k_max=5, n_references=2, random_state=0).fit(X)
    assert full.sample_ is None and "sample_size" not in full.as_dict()
