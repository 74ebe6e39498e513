"""brainclust benchmark: the grid, results.csv, tables that recompute from it, noise handling."""

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from brainclust.analysis import benchmark as bm
from brainclust.cli import main
from brainclust.data.demo import make_demo_dataset
from brainclust.errors import InputError, ParameterError
from brainclust.pipeline import RunConfig

SCORE_COLS = ["silhouette", "ari", "nmi", "fmi", "acc", "n_clusters_found", "n_noise", "k"]


def blob_dataset(name, k, seed, n_per=15, outliers=0):
    X, y = make_blobs(n_samples=n_per * k, centers=k, n_features=6, cluster_std=0.6, random_state=seed)
    if outliers:  # far, scattered points: DBSCAN noise
        rng = np.random.default_rng(seed)
        X = np.vstack([X, rng.uniform(-60, 60, size=(outliers, 6))])
        y = np.concatenate([y, rng.integers(0, k, outliers)])
    ds = bm.Dataset(name, f"/{name}", X, [f"c{v}" for v in y], records=[], extractor=None)
    ds.info = {"backbone": {"name": "blobs"}}
    return ds


@pytest.fixture(scope="module")
def grid_rows():
    sets = [blob_dataset("three", 3, 0), blob_dataset("four", 4, 1, outliers=6)]
    return bm.run_grid(sets, RunConfig(pca=0), seeds=(0, 1))


def test_grid_has_one_row_per_method_dataset_seed(grid_rows):
    assert len(grid_rows) == 5 * 2 * 2
    assert {(r["method"], r["dataset"], r["seed"]) for r in grid_rows} == {
        (m, d, s) for m in bm.METHOD_ORDER for d in ("three", "four") for s in (0, 1)}
    assert {r["k"] for r in grid_rows if r["dataset"] == "four" and r["method"] != "dbscan"} == {4}
    # k = number of label folders; well-separated blobs are recovered by the k-based methods
    for r in grid_rows:
        if r["method"] in ("kmeans", "hierarchical", "gmm") and r["dataset"] == "three":
            assert r["ari"] == pytest.approx(1.0)


def test_dbscan_noise_is_counted_and_not_scored_as_a_cluster(grid_rows):
    db = [r for r in grid_rows if r["method"] == "dbscan" and r["dataset"] == "four"]
    assert all(r["n_noise"] >= 1 for r in db)
    for r in db:
        n = r["n_images"]
        # noise is a miss in ACC: at most the non-noise share can be right
        assert r["acc"] <= (n - r["n_noise"]) / n + 1e-12
        assert r["dbscan_eps"] > 0 and r["k"] == ""
    others = [r for r in grid_rows if r["method"] != "dbscan"]
    assert all(r["n_noise"] == 0 and r["dbscan_eps"] == "" for r in others)


def test_tables_recompute_exactly_from_the_csv(grid_rows, tmp_path):
    path = bm.write_results_csv(tmp_path / "results.csv", grid_rows)
    back = bm.read_results_csv(path)
    assert list(back[0]) == bm.CSV_COLUMNS
    # floats survive the CSV exactly
    assert [float(r["nmi"]) for r in back] == [r["nmi"] for r in grid_rows]
    assert bm.build_tables(back) == bm.build_tables(bm.read_back(grid_rows, bm.CSV_COLUMNS))
    # a second identical grid gives identical numbers
    again = bm.run_grid([blob_dataset("three", 3, 0), blob_dataset("four", 4, 1, outliers=6)], RunConfig(pca=0),
                        seeds=(0, 1))
    assert [[r[c] for c in SCORE_COLS] for r in again] == [[r[c] for c in SCORE_COLS] for r in grid_rows]


def test_cells_are_mean_and_sample_std_and_mean_column_averages_per_seed():
    rows = [{"dataset": d, "method": "kmeans", "variant": "plain", "seed": s, "nmi": v}
            for d, s, v in [("a", 0, "0.2"), ("a", 1, "0.4"), ("b", 0, "0.6"), ("b", 1, "1.0")]]
    table = bm.metric_table(rows, "nmi")
    lines = table.splitlines()
    assert lines[0] == "| method | a | b | **Mean** |"
    # a: mean 0.3, sample std 0.1414; b: 0.8 ± 0.2828; per-seed means 0.4 and 0.7 -> 0.55 ± 0.2121
    assert lines[2] == "| K-Means | 0.300 ± 0.141 | 0.800 ± 0.283 | 0.550 ± 0.212 |"
    rows.append({"dataset": "a", "method": "dbscan", "variant": "plain", "seed": 0, "nmi": ""})
    assert "| DBSCAN | n/a |  | n/a |" in bm.metric_table(rows, "nmi")


def test_ssl_rows_use_the_selfsup_embedding(monkeypatch):
    calls = []

    def fake_ssl(ds, config, components, k, seed):
        calls.append((ds.name, components, k, seed))
        return ds.features[:, ::-1] * 2.0

    monkeypatch.setattr(bm, "_ssl_embedding", fake_ssl)
    rows = bm.run_grid([blob_dataset("three", 3, 0)], RunConfig(pca=0), methods=("kmeans",), seeds=(0, 1),
                       ssl=("contrastive",))
    assert calls == [("three", ("contrastive",), 3, 0), ("three", ("contrastive",), 3, 1)]
    assert [r["variant"] for r in rows] == ["plain", "ssl", "plain", "ssl"]
    assert "| K-Means + SSL |" in bm.build_tables(bm.read_back(rows, bm.CSV_COLUMNS))


def test_rejects_bad_settings():
    ds = blob_dataset("three", 3, 0)
    with pytest.raises(ParameterError, match="--methods"):
        bm.run_grid([ds], RunConfig(), methods=("kmedoids",))
    with pytest.raises(ParameterError, match="--seeds"):
        bm.run_grid([ds], RunConfig(), seeds=())
    with pytest.raises(ParameterError, match="--k"):
        bm.run_grid([ds], RunConfig(), k=1)


@pytest.mark.slow
def test_cli_benchmark_end_to_end(tmp_path, capsys):
    data = make_demo_dataset(tmp_path / "demo", n_per_class=4, size=64)
    out = tmp_path / "bench"
    args = ["-q", "benchmark", str(data), "--out", str(out), "--seeds", "2", "--backbone", "efficientnet_lite0",
            "--workers", "0", "--cache-dir", str(tmp_path / "cache"), "--pca", "5"]
    assert main(args) == 0
    assert "10 runs" in capsys.readouterr().out
    rows = bm.read_results_csv(out / "results.csv")
    assert len(rows) == 5 * 2 and {r["k"] for r in rows if r["method"] != "dbscan"} == {"3"}
    tables = (out / "tables.md").read_text()
    assert tables == bm.build_tables(rows)
    for title in ("Silhouette", "ARI", "NMI", "FMI", "ACC", "Noise images"):
        assert f"## {title}" in tables
    assert "| demo | **Mean** |" in tables
    # rerun: same numbers, and the features come from the cache
    assert main(args[:4] + [str(tmp_path / "bench2")] + args[5:]) == 0
    rows2 = bm.read_results_csv(tmp_path / "bench2" / "results.csv")
    assert [[r[c] for c in SCORE_COLS] for r in rows2] == [[r[c] for c in SCORE_COLS] for r in rows]
    import json

    info = json.loads((tmp_path / "bench2" / "benchmark.json").read_text())
    assert info["datasets"]["demo"]["cache_misses"] == 0


def test_unlabelled_folder_is_refused(tmp_path, make_image):
    for i in range(4):
        make_image(tmp_path / "flat" / f"{i}.png", seed=i)
    with pytest.raises(InputError, match="labels from at least 2 sub-folders"):
        bm.benchmark([tmp_path / "flat"], None, RunConfig(backbone="efficientnet_lite0", workers=0,
                                                          cache_dir=str(tmp_path / "c")), seeds=(0,))


def test_k_auto_is_chosen_per_method_and_seed():
    rows = bm.run_grid([blob_dataset("three", 3, 0)], RunConfig(pca=0), methods=("hierarchical", "kmeans", "dbscan"),
                       seeds=(0,), k="auto")
    ks = {r["method"]: r["k"] for r in rows}
    assert ks == {"hierarchical": 3, "kmeans": 3, "dbscan": ""}
    assert {r["k_source"] for r in rows if r["method"] != "dbscan"} == {"auto"}
    assert "three: k = 3 (auto)" in bm.build_tables(bm.read_back(rows, bm.CSV_COLUMNS))


def test_fewer_clusters_than_k_are_warned_once(caplog):
    """At k just below the number of images, a data set with copies makes K-Means and GMM find fewer clusters:
    the study said nothing of its own (scikit-learn's warning came once per cell); now one line says it."""
    import logging
    import warnings

    ds = blob_dataset("copies", 3, 0, n_per=4)
    ds.features = np.vstack([ds.features, ds.features[:2]])  # 14 rows, 12 distinct
    ds.labels = ds.labels + ds.labels[:2]
    with caplog.at_level(logging.WARNING, logger="brainclust"), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        rows = bm.run_grid([ds], RunConfig(pca=0), methods=("kmeans", "gmm", "hierarchical"), seeds=(0, 1), k=13)
    assert sorted(r["n_clusters_found"] for r in rows if r["method"] != "hierarchical") == [12] * 4
    lines = [r.getMessage() for r in caplog.records if "fewer clusters than their k" in r.getMessage()]
    assert lines == ["benchmark: 4 of 6 runs found fewer clusters than their k (first: 12 at k = 13; dataset "
                     "copies, method kmeans, seed 0): duplicate images, or k close to the number of images; their "
                     "scores compare fewer groups (results.csv: k, n_clusters_found)"]
    assert not [w for w in seen if "Number of distinct clusters" in str(w.message)]  # not once per cell


def test_dbscan_finding_a_single_cluster_is_said_once_per_study(caplog):
    """One blob: DBSCAN finds a single cluster in every cell. It was said once per cell ("dbscan found a single
    cluster for 40 images: ..."), three times for three seeds; now one line counts the runs, as for a short k."""
    import logging

    X, _ = make_blobs(n_samples=40, centers=1, n_features=6, cluster_std=0.6, random_state=0)
    ds = bm.Dataset("blob", "/blob", X, ["a", "b"] * 20, records=[], extractor=None)
    ds.info = {"backbone": {"name": "blobs"}}
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        rows = bm.run_grid([ds], RunConfig(pca=0), methods=("dbscan", "kmeans"), seeds=(0, 1, 2))
    assert [r["n_clusters_found"] for r in rows if r["method"] == "dbscan"] == [1, 1, 1]
    said = [r.getMessage() for r in caplog.records]
    assert not [m for m in said if "dbscan found a single cluster" in m], said
    assert [m for m in said if "single cluster" in m] == [
        "benchmark: 3 of 6 runs found a single cluster (first: dataset blob, method dbscan, seed 0): the features "
        "do not separate there (results.csv: n_clusters_found, n_noise)"]


def test_one_cluster_holding_nearly_every_image_is_said_once_per_study(caplog):
    """One blob and two far images: k = 2 puts 40 of 42 images in one cluster in every cell, and each cell said
    so ("hierarchical put 40 of 42 images (95%) in one cluster ..."), six lines for two methods and three seeds;
    now one line counts the runs, from results.csv's largest_cluster."""
    import logging

    X, _ = make_blobs(n_samples=40, centers=1, n_features=6, cluster_std=0.6, random_state=0)
    ds = bm.Dataset("blob", "/blob", np.vstack([X + 5, np.full((2, 6), -5.0)]), ["a", "b"] * 21, records=[],
                    extractor=None)
    ds.info = {"backbone": {"name": "blobs"}}
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        rows = bm.run_grid([ds], RunConfig(pca=0), methods=("hierarchical", "kmeans"), seeds=(0, 1, 2), k=2)
    assert [r["largest_cluster"] for r in rows] == [40] * 6 and "largest_cluster" in bm.CSV_COLUMNS
    said = [r.getMessage() for r in caplog.records if "in one cluster" in r.getMessage()]
    assert said == ["benchmark: 6 of 6 runs put over 90% of the images in one cluster (first: 40 of 42; dataset "
                    "blob, method hierarchical, seed 0): the other clusters are tiny (results.csv: largest_cluster, "
                    "n_images)"]
