"""--outliers auto: planted outliers are found, the k clusters form among the rest; off is today's fit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from brainclust.cluster.methods import Clusterer
from brainclust.cluster.outliers import cluster_with_outliers, split_outliers
from brainclust.cluster.reduce import PCAReducer
from brainclust.cluster.scores import score
from brainclust.errors import ParameterError


def planted(seed=0, n_per=60, dim=20):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (3, dim)) * 6 + 20  # away from the origin (cosine geometry)
    X = np.concatenate([c + rng.normal(0, 1, (n_per, dim)) for c in centres])
    y = np.repeat(np.arange(3), n_per)
    odd = 20 + rng.normal(0, 1, (4, dim)) * 25  # 4 far-away images
    return np.concatenate([X, odd]), np.concatenate([y, [-1] * 4])


def test_planted_outliers_are_set_apart_and_clusters_recovered():
    X, y = planted()
    cl, info = cluster_with_outliers(X, "hierarchical", 3, 0, "auto")
    found = cl.labels_ == -1
    assert found[y == -1].all()  # every planted outlier
    assert found[y != -1].sum() <= 3  # and hardly anything else
    keep = ~found
    assert adjusted_rand_score(y[keep & (y != -1)], cl.labels_[keep & (y != -1)]) > 0.95
    assert info["n"] == int(found.sum()) and "median + 3" in info["rule"]
    assert cl.X_fit_.shape[0] == len(X) and cl.levels_.shape[0] == len(X)
    assert (cl.levels_[found] == -1).all()
    # new points go to the inliers' clusters, never to -1
    assert (cl.predict(X) >= 0).all()
    m = score(X, cl.labels_, y.astype(str))
    assert m["n_noise"] == info["n"]


def test_without_outlier_handling_average_linkage_spends_clusters_on_them():
    X, y = planted()
    plain = Clusterer(n_clusters=3).fit(X).labels_
    assert adjusted_rand_score(y[y != -1], plain[y != -1]) < 0.9  # the motivating failure


def test_tiny_group_rule_and_cap():
    X, _ = planted()
    calls = []

    def fit(Xi):
        calls.append(len(Xi))
        c = Clusterer(n_clusters=3).fit(Xi)
        return c.labels_, c

    split = split_outliers(X, fit, max_fraction=0.01)  # cap: 1 image
    assert split.info["n"] == 1 and split.info["max_n"] == 1
    assert calls[0] == len(X) and calls[-1] == len(X) - 1


def test_off_is_todays_fit_and_methods_checked():
    X, _ = planted()
    cl, info = cluster_with_outliers(X, "hierarchical", 3, 0, "off")
    assert info is None
    np.testing.assert_array_equal(cl.labels_, Clusterer(n_clusters=3, random_state=0).fit(X).labels_)
    with pytest.raises(ParameterError, match="--outliers"):
        cluster_with_outliers(X, "gmm", 3, 0, "auto")
    with pytest.raises(ParameterError, match="--outliers"):
        cluster_with_outliers(X, "hierarchical", 3, 0, "maybe")


def test_demo_outputs_with_outliers_off_match_the_plain_flow_byte_for_byte(tmp_path):
    """The run folder of --outliers off equals what PCA -> Clusterer -> score (the old flow) writes."""
    from brainclust.data.demo import make_demo_dataset
    from brainclust.io.atomic import atomic_write_json
    from brainclust.pipeline import run

    data = tmp_path / "demo"
    make_demo_dataset(data, n_per_class=10, random_state=0)
    r = run(data, tmp_path / "out", backbone="pixels", cache_dir=str(tmp_path / "cache"), k=3,
            labels_from_folders=True, progress=False, outliers="off", checks="off")
    emb = PCAReducer(50, random_state=0).fit(r.features).transform(r.features)
    base = Clusterer(method="hierarchical", n_clusters=3, random_state=0).fit(emb)
    base_metrics = score(emb, base.labels_, [rec.label for rec in r.records])
    base_metrics["silhouette_space"] = {"space": "features", "on": "the PCA of the frozen backbone features",
                                        "note": None}  # what every run now records beside the scores
    atomic_write_json(tmp_path / "metrics.json", base_metrics)
    base.save(tmp_path / "cluster.npz")
    assert (tmp_path / "out" / "metrics.json").read_bytes() == (tmp_path / "metrics.json").read_bytes()
    assert (tmp_path / "out" / "model" / "cluster.npz").read_bytes() == (tmp_path / "cluster.npz").read_bytes()
    assert "outliers" not in json.loads((tmp_path / "out" / "manifest.json").read_text())
    rows = (tmp_path / "out" / "assignments.csv").read_text().splitlines()[1:]
    assert [int(line.split(",")[7]) for line in rows] == base.labels_.tolist()


@pytest.mark.parametrize("method", ["hierarchical", "kmeans"])
def test_a_model_with_outliers_apart_saves_loads_and_predicts(tmp_path, method):
    from brainclust.errors import ModelFileError

    X, _ = planted()
    cl, _ = cluster_with_outliers(X, method, 3, 0, "auto")
    cl.save(tmp_path / "cluster.npz")
    back = Clusterer.load(tmp_path / "cluster.npz")  # a run's predict loads it like this
    np.testing.assert_array_equal(back.labels_, cl.labels_)
    np.testing.assert_array_equal(back.predict(X), cl.predict(X))
    if method == "hierarchical":
        data = dict(np.load(tmp_path / "cluster.npz"))
        data["levels"][np.flatnonzero(cl.labels_ == -1)[0]] = 0  # an outlier with a level id: damaged
        np.savez(tmp_path / "bad.npz", **data)
        with pytest.raises(ModelFileError, match="levels"):
            Clusterer.load(tmp_path / "bad.npz")
