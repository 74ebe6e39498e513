"""brainclust ablation: what its many cells say on the terminal and in ablation.json / ablation.md."""

import json
import logging
import warnings

import numpy as np
from PIL import Image

from brainclust.analysis import ablation as ab
from brainclust.cluster.methods import make_clusterer


def test_one_cluster_holding_nearly_every_image_is_said_once_per_ablation(tmp_path, caplog):
    """11 near copies of one image and its negative, k = 2: every seed puts 11 of 12 images in one cluster, and each
    cell said so ("hierarchical put 11 of 12 images (92%) in one cluster ..."), once per seed and configuration, as
    the benchmark did before; now one line counts the runs (ablation.json: each run's largest_cluster)."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (32, 32)).astype(float)
    for i in range(12):
        (tmp_path / "data" / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        pixels = 255 - base if i == 0 else base + rng.normal(0, 3, base.shape)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(tmp_path / "data" / "ab"[i % 2] / f"i{i}.png")
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        res = ab.run_ablation({"near": tmp_path / "data"}, tmp_path / "out", seeds=(0, 1, 2), methods=("hierarchical",),
                              configs=(("no SSL", ()),), backbone="pixels@16", workers=0,
                              cache_dir=str(tmp_path / "cache"), progress=False)
    said = [r.getMessage() for r in caplog.records if "one cluster" in r.getMessage()]
    assert said == ["ablation: 3 of 3 runs put over 90% of the images in one cluster (first: 11 of 12; dataset near, "
                    "config no SSL, method hierarchical, seed 0): the other clusters are tiny (ablation.json runs: "
                    "largest_cluster, n_images)"], said
    assert [r["hierarchical"]["largest_cluster"] for r in res["runs"]] == [11, 11, 11]


def test_a_score_undefined_at_every_seed_is_null_and_n_a_without_a_numpy_warning(tmp_path):
    """12 near copies of one image: DBSCAN finds one cluster at every seed, so the silhouette is undefined at each;
    its mean over the seeds was NaN (numpy's "Mean of empty slice") and writing ablation.json failed ("Out of range
    float values are not JSON compliant: nan"). Now it is null there and n/a in ablation.md."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (32, 32)).astype(float)
    for i in range(12):
        (tmp_path / "data" / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        pixels = base + rng.normal(0, 3, base.shape)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(tmp_path / "data" / "ab"[i % 2] / f"i{i}.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        ab.run_ablation({"near": tmp_path / "data"}, tmp_path / "out", seeds=(0, 1), methods=("dbscan",),
                        configs=(("no SSL", ()),), backbone="pixels@16", workers=0,
                        cache_dir=str(tmp_path / "cache"), progress=False)
    saved = json.loads((tmp_path / "out" / "ablation.json").read_text(encoding="utf-8"))
    assert [r["dbscan"]["n_clusters_found"] for r in saved["runs"]] == [1, 1]
    (row,) = saved["rows"]
    assert row["silhouette"] is None and len(row["nmi"]) == 2, row
    table = (tmp_path / "out" / "ablation.md").read_text(encoding="utf-8")
    assert "| near (n=12, k=2) | dbscan | no SSL |" in table and "| n/a |" in table, table


def test_each_fits_info_line_goes_to_the_debug_log_in_a_study_and_stays_info_in_a_run(tmp_path, caplog):
    """Each seed's "refinement round 1: NMI to previous round ..." and each cell's "dbscan: eps=..., N noise points"
    were info lines, one per seed and cell of the ablation (the benchmark's too); in a study they go to the debug
    log now (--debug), as the cells' warnings are said once; one DBSCAN fit outside a study says it at info."""
    rng = np.random.default_rng(0)
    for i in range(16):
        pixels = rng.integers(0, 60, (32, 32))
        pixels[:, : 16 if i % 2 else 4] += 190
        (tmp_path / "data" / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "data" / "ab"[i % 2] / f"i{i}.png")
    with caplog.at_level(logging.DEBUG, logger="brainclust"):
        res = ab.run_ablation({"two": tmp_path / "data"}, tmp_path / "out", seeds=(0, 1), methods=("dbscan",),
                              configs=(ab.CONFIGS[0], ab.CONFIGS[-1]), epochs=1, backbone="pixels@16", workers=0,
                              cache_dir=str(tmp_path / "cache"), progress=False)
    cells = [r for r in caplog.records if r.getMessage().startswith(("dbscan: eps=", "refinement round "))]
    assert {r.getMessage().split(":")[0] for r in cells} >= {"dbscan", "refinement round 1"}, cells
    assert {r.levelno for r in cells} == {logging.DEBUG}, [(r.levelname, r.getMessage()) for r in cells]
    assert all(r["dbscan"]["n_clusters_found"] > 1 for r in res["runs"])
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="brainclust"):
        make_clusterer("dbscan").fit(np.repeat(np.eye(2), 8, axis=0) + rng.normal(0, 0.01, (16, 2)))
    said = [(r.levelno, r.getMessage()[:12]) for r in caplog.records]
    assert said == [(logging.INFO, "dbscan: eps=")], said
