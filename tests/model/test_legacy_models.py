"""Model folders written before the versioned manifest (tests/fixtures/legacy_*) still load and predict.

Each fixture is the ``model/`` folder and ``assignments.csv`` of a run of brainclust 0.1.0 on the demo
images (``brainclust run DEMO --k 3 --labels-from-folders`` with the options below), and ``predicted.csv``
what that version's ``brainclust predict`` gave for the same images:

* ``legacy_hierarchical``: ``--backbone efficientnet_lite0 --pca 8``;
* ``legacy_kmeans``: ``--backbone pixels@16 --method kmeans``;
* ``legacy_outliers``: ``--backbone pixels@16 --pca 8 --outliers auto`` (one image set apart).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from brainclust.cluster.outliers import OutlierRule
from brainclust.data.demo import make_demo_dataset
from brainclust.model.composite import BrainClusterModel
from brainclust.pipeline import predict

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CASES = {"hierarchical": ("FeatureExtractor", "PCAReducer", "HierarchicalClusterer"),
         "kmeans": ("FeatureExtractor", "PCAReducer", "KMeansClusterer"),
         "outliers": ("FeatureExtractor", "PCAReducer", "OutlierRule")}


def _clusters(path) -> dict[str, int]:
    with open(path, newline="") as fh:
        return {r["path"]: int(r["cluster"]) for r in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("legacy") / "data", n_per_class=40, random_state=0)


def _copy(name, tmp_path) -> Path:
    run = tmp_path / name
    shutil.copytree(FIXTURES / f"legacy_{name}", run)
    return run


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_version_1_model_folder_loads_as_the_same_steps(name, tmp_path):
    run = _copy(name, tmp_path)
    assert "version" not in json.loads((run / "model" / "config.json").read_text())  # written before it existed
    model = BrainClusterModel.load(run, {"cache_dir": str(tmp_path / "cache")})
    assert tuple(type(s).__name__ for _, s in model.steps_) == CASES[name]
    saved = _clusters(run / "assignments.csv")
    np.testing.assert_array_equal(model.clusterer_.labels_, list(saved.values()))  # the run's own clusters
    if name == "outliers":
        rule = model.clusterer_
        assert isinstance(rule, OutlierRule) and rule.outlier_.sum() == 1
        assert len(rule.estimator_.labels_) == len(saved) - 1 and (rule.estimator_.labels_ >= 0).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_version_1_model_folder_predicts_what_it_predicted(name, demo, tmp_path):
    run = _copy(name, tmp_path)
    res = predict(run, demo, tmp_path / "pred", cache_dir=str(tmp_path / "cache"), labels_from_folders=True)
    before = _clusters(FIXTURES / f"legacy_{name}" / "predicted.csv")
    now = _clusters(tmp_path / "pred" / "assignments.csv")
    assert list(now) == list(before)
    # since 2026-12-06 an image a hierarchical model was fitted on keeps its fitted cluster (not the one the
    # mean-distance rule gave it then); the image set apart (-1) and K-Means follow the rule as before
    fitted = _clusters(run / "assignments.csv")
    expected = {p: fitted[p] if name != "kmeans" and fitted[p] >= 0 else before[p] for p in before}
    moved = sum(now[p] != expected[p] for p in before)
    # predicted.csv was made on another CPU: a network's features, and the BLAS products of the PCA and the
    # distances, differ in the last bits between CPUs, which may move an image whose distances to two clusters
    # tie within that noise. Pixels move nothing here but are allowed one such image.
    assert moved <= (1 if name != "hierarchical" else 0.03 * len(before)), moved
    assert set(res.labels.tolist()) <= {0, 1, 2}  # new images go to the inliers' clusters, never -1
