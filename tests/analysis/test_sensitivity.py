"""brainclust sensitivity: one setting at a time, table from the CSV, one plot per setting."""

import pytest

from brainclust.features import backbones
from brainclust.analysis import sensitivity as sens
from brainclust.analysis.benchmark import read_results_csv
from brainclust.cli import main
from brainclust.cluster.methods import Clusterer
from brainclust.data.demo import make_demo_dataset
from brainclust.errors import ParameterError
from brainclust.pipeline import RunConfig

SCORES = ["silhouette", "ari", "nmi", "fmi", "acc", "n_clusters_found"]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sens")
    data = make_demo_dataset(tmp / "data", n_per_class=5, size=64)
    mp = pytest.MonkeyPatch()

    def no_download():  # an analysis never downloads weights (104 MB for inception_v3): it skips the backbone
        raise AssertionError("sensitivity tried to download weights")

    # two CNN backbones: one works offline, the other's weights are not on the machine (no network attempt)
    mp.setattr(backbones, "available", lambda: ["auto", "efficientnet_lite0", "inception_v3"])
    mp.setattr(backbones, "_inception_cached", lambda: None)
    mp.setattr(backbones, "_inception_download", no_download)
    cfg = RunConfig(backbone="efficientnet_lite0", workers=0, cache_dir=str(tmp / "cache"), pca=10)
    try:
        yield sens.sensitivity(data, tmp / "out", cfg, seeds=(0, 1), subsample=0.8)
    finally:
        mp.undo()


def test_one_row_per_value_and_seed(result):
    rows = result.rows
    by = {}
    for r in rows:
        by.setdefault(r["setting"], set()).add(r["value"])
    assert by["pca"] == {"10", "25", "50", "100", "200", "off"}
    assert by["k"] == {str(k) for k in range(2, 9)}
    assert by["linkage"] == {"average (cosine)", "complete (cosine)", "ward (euclidean)"}
    assert by["metric"] == {"cosine", "euclidean"}
    assert by["backbone"] == {"efficientnet_lite0"}
    assert by["clip"] == {"0.5-99.5", "off"}
    assert by["seed"] == {"0", "1"}
    assert sum(1 for r in rows if r["setting"] == "seed") == 2
    assert sum(1 for r in rows if r["setting"] == "k") == 7 * 2
    assert all(r["n_images"] == 12 for r in rows)  # 80 % of 15
    # 'pca' is what was used: 25 .. 200 components are capped at the 12 images
    assert {r["value"]: r["pca"] for r in rows if r["setting"] == "pca"} == {
        "10": "10", "25": "12", "50": "12", "100": "12", "200": "12", "off": "off"}
    assert any("inception_v3: skipped" in n for n in result.notes)


def test_defaults_agree_across_settings_and_only_one_thing_changes(result):
    rows = result.rows
    default = {}
    for r in rows:
        if r["is_default"]:
            default.setdefault(r["seed"], []).append([r[s] for s in SCORES])
    for seed, points in default.items():
        assert len(points) == 6  # pca, k, linkage, metric, backbone, clip
        assert all(p == points[0] for p in points)
    seed_rows = {r["value"]: [r[s] for s in SCORES] for r in rows if r["setting"] == "seed"}
    assert seed_rows == {str(s): default[s][0] for s in (0, 1)}
    for r in rows:
        if r["setting"] == "k":
            assert r["pca"] == "10" and r["linkage"] == "average" and r["clip"] == "0.5-99.5"
            assert r["n_clusters_found"] == r["k"] == int(r["value"])
    # clip off really changes the features
    clip = {r["value"]: r["silhouette"] for r in rows if r["setting"] == "clip" and r["seed"] == 0}
    assert clip["off"] != clip["0.5-99.5"]


def test_table_recomputes_from_csv_and_plots_exist(result):
    out = result.out_dir
    rows = read_results_csv(out / "sensitivity.csv")
    assert (out / "sensitivity.md").read_text() == sens.build_tables(rows, result.info)
    assert "| **3** (default) |" in result.tables
    names = sorted(p.name for p in (out / "plots").iterdir())
    assert names == sorted(f"sensitivity_{s}.png" for s in sens.SETTINGS)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in (out / "plots").iterdir())


def test_ward_needs_euclidean_and_linkages_differ():
    import numpy as np

    X = np.random.default_rng(0).normal(size=(30, 4)) + 1
    with pytest.raises(ParameterError, match="ward"):
        Clusterer(linkage="ward", metric="cosine").fit(X)
    with pytest.raises(ParameterError, match="linkage"):
        Clusterer(linkage="median").fit(X)
    ward = Clusterer(linkage="ward", metric="euclidean", n_clusters=3).fit(X)
    comp = Clusterer(linkage="complete", n_clusters=3).fit(X)
    assert ward.n_clusters_ == comp.n_clusters_ == 3
    from scipy.cluster.hierarchy import linkage

    assert np.allclose(ward.tree_, linkage(X, method="ward", metric="euclidean"))
    assert ward.predict(X[:5]).shape == (5,)


def test_bad_settings_fail_before_any_work(tmp_path):
    with pytest.raises(ParameterError, match="--settings"):
        sens.sensitivity(tmp_path, None, RunConfig(), settings=("colour",))
    with pytest.raises(ParameterError, match="--subsample"):
        sens.sensitivity(tmp_path, None, RunConfig(), subsample=0)
    with pytest.raises(ParameterError, match="dbscan"):
        sens.sensitivity(tmp_path, None, RunConfig(method="dbscan"))
    assert main(["sensitivity", str(tmp_path), "--out", str(tmp_path / "o"), "--settings", "pca,colour"]) == 2


def test_one_cluster_holding_nearly_every_image_is_said_once_per_study(tmp_path, caplog):
    """12 noise images and one dark one: k = 2 puts 12 of 13 in one cluster at every seed, said once per seed
    before; now once, counted from sensitivity.csv's largest_cluster."""
    import logging

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(12):
        (tmp_path / "d" / "a").mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((32, 32)) * 255).astype(np.uint8)).save(tmp_path / "d" / "a" / f"n{i}.png")
    (tmp_path / "d" / "b").mkdir()
    Image.fromarray(np.repeat([255] * 4 + [0] * 28, 32).reshape(32, 32).astype(np.uint8)).save(
        tmp_path / "d" / "b" / "dark.png")
    cfg = RunConfig(backbone="histogram", workers=0, cache_dir=str(tmp_path / "c"), pca=0, progress=False,
                    checks="off", descriptors="off")
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        rows = sens.sensitivity(tmp_path / "d", None, cfg, seeds=(0, 1, 2), subsample=1.0, settings=("seed",)).rows
    assert [r["largest_cluster"] for r in rows] == [12] * 3
    said = [r.getMessage() for r in caplog.records if "in one cluster" in r.getMessage()]
    assert said == ["sensitivity (hierarchical): 3 of 3 runs put over 90% of the images in one cluster (first: 12 "
                    "of 13; setting seed, value 0, seed 0): the other clusters are tiny (sensitivity.csv: "
                    "largest_cluster, n_images)"]
