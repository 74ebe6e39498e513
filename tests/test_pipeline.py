"""End-to-end runs on the generated demo set, and on ../shared/data when present."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

import brainclust
from brainclust.data.demo import make_demo_dataset
from brainclust.errors import InputError, ParameterError
from brainclust.cluster.scores import clustering_accuracy

pytestmark = pytest.mark.slow  # whole runs with a real backbone

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "data", n_per_class=6, size=64)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def read_rows(out):
    with open(Path(out) / "assignments.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def check_scores_match_sklearn(out):
    rows = read_rows(out)
    m = json.loads((Path(out) / "metrics.json").read_text())
    y = [r["label"] for r in rows]
    c = [int(r["cluster"]) for r in rows]
    assert m["n_images"] == len(rows)
    assert m["ari"] == pytest.approx(skm.adjusted_rand_score(y, c))
    assert m["nmi"] == pytest.approx(skm.normalized_mutual_info_score(y, c))
    assert m["fmi"] == pytest.approx(skm.fowlkes_mallows_score(y, c))
    assert m["acc"] == pytest.approx(clustering_accuracy(y, c))
    return rows, m


def test_run_writes_the_three_files_with_consistent_levels(demo_data, cache, tmp_path):
    out = tmp_path / "out"
    res = brainclust.run(demo_data, out, backbone="efficientnet_lite0", k=3, labels_from_folders=True,
                         cache_dir=cache, workers=0)
    rows, m = check_scores_match_sklearn(out)
    assert len(rows) == 18 and m["n_clusters"] == 3
    assert m["silhouette_space"] == {"space": "features", "on": "the PCA of the frozen backbone features", "note": None}
    assert list(rows[0])[:8] == ["path", "name", "type", "size", "width", "height", "label", "cluster"]
    assert [r["path"] for r in rows] == sorted(r["path"] for r in rows)
    assert {r["label"] for r in rows} == {"axial", "coronal", "sagittal"}
    assert {r["level_1"] for r in rows} == {"0"}
    assert all(r["level_3"] == r["cluster"] for r in rows)
    for L in range(1, 11):
        assert len({r[f"level_{L}"] for r in rows}) == L
    # embedding used for the silhouette is the one recorded in the result
    assert m["silhouette"] == pytest.approx(skm.silhouette_score(res.embedding, res.labels, metric="cosine"))
    man = json.loads((out / "manifest.json").read_text())
    assert man["backbone"]["name"] == "efficientnet_lite0"
    assert len(man["backbone"]["weights_sha256"]) == 64
    assert set(man["timings_s"]) >= {"scan", "extract", "reduce", "cluster", "evaluate"}
    assert (out / "model" / "pca.npz").is_file() and (out / "model" / "cluster.npz").is_file()
    # the demo's three planes are easy: far better than chance
    assert m["nmi"] > 0.3


def test_second_run_hits_the_cache_for_every_image(demo_data, cache, tmp_path):
    brainclust.run(demo_data, tmp_path / "a", backbone="efficientnet_lite0", k=3, cache_dir=cache, workers=0)
    res = brainclust.run(demo_data, tmp_path / "b", backbone="efficientnet_lite0", k=2, method="kmeans",
                         cache_dir=cache, workers=0)
    man = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert man["cache"] == {"dir": cache, "hits": 18, "misses": 0}
    assert "level_1" not in read_rows(tmp_path / "b")[0]
    assert res.metrics["n_clusters"] == 2


def test_bad_files_are_skipped_with_reasons(demo_data, cache, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    (data / "axial" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 50)
    good = next((data / "coronal").glob("*.png")).read_bytes()
    (data / "coronal" / "truncated.png").write_bytes(good[: len(good) // 2])
    (data / "coronal" / "empty.png").write_bytes(b"")
    (data / "notes.txt").write_text("scanner notes")
    out = tmp_path / "out"
    brainclust.run(data, out, backbone="efficientnet_lite0", k=3, labels_from_folders=True,
                   cache_dir=cache, workers=0)
    man = json.loads((out / "manifest.json").read_text())
    reasons = {s["path"]: s["reason"] for s in man["skipped"]}
    assert set(reasons) == {"axial/corrupt.jpg", "coronal/truncated.png", "coronal/empty.png", "notes.txt"}
    assert all(reasons.values())
    rows = read_rows(out)
    assert len(rows) == 18 and man["n_files_scanned"] == 22


def test_same_seed_gives_identical_outputs(demo_data, cache, tmp_path):
    for name in ("a", "b"):
        brainclust.run(demo_data, tmp_path / name, backbone="efficientnet_lite0", k=3, method="kmeans",
                       seed=7, labels_from_folders=True, cache_dir=cache, workers=0)
    for f in ("assignments.csv", "metrics.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


@pytest.mark.parametrize("method", ["hierarchical", "kmeans", "gmm", "spectral", "dbscan"])
def test_predict_reproduces_the_training_assignments(demo_data, cache, tmp_path, method):
    res = brainclust.run(demo_data, tmp_path / "run", backbone="efficientnet_lite0", k=3, method=method,
                         pca=5, cache_dir=cache, workers=0)
    pred = brainclust.predict(tmp_path / "run", demo_data, tmp_path / "pred", cache_dir=cache, workers=0)
    assert pred.manifest["cache"]["misses"] == 0
    agree = np.mean(pred.labels == res.labels)
    assert agree >= (0.8 if method in ("spectral", "dbscan") else 0.9)
    rows = read_rows(tmp_path / "pred")
    assert [int(r["cluster"]) for r in rows] == pred.labels.tolist()


def test_errors_leave_no_output(demo_data, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ParameterError, match="--k: 50 clusters requested but .* only 18"):
        brainclust.run(demo_data, out, backbone="efficientnet_lite0", k=50)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(InputError, match="no readable image"):
        brainclust.run(empty, out)
    with pytest.raises(ParameterError, match="--method"):
        brainclust.run(demo_data, out, method="ward")
    assert not out.exists()


@pytest.mark.skipif(not (SHARED / "brain_tumor_4class_dev").is_dir(),
                    reason="../shared/data/brain_tumor_4class_dev is not present")
def test_shared_4class_dev_end_to_end(tmp_path, cache):
    out = tmp_path / "out"
    brainclust.run(SHARED / "brain_tumor_4class_dev", out, backbone="efficientnet_lite0", k=4,
                   labels_from_folders=True, cache_dir=cache)
    rows, m = check_scores_match_sklearn(out)
    assert len(rows) == 1000 and m["n_clusters"] == 4
    assert {r["level_1"] for r in rows} == {"0"}
    assert all(r["level_4"] == r["cluster"] for r in rows)
    # frozen ImageNet features carry some signal on tumour type, far from perfect (README reference ~0.25)
    assert 0.1 < m["nmi"] < 0.6


def test_each_image_that_fails_to_decode_is_named_once(tmp_path, caplog, make_image):
    import logging

    from brainclust.pipeline import predict, run

    data = tmp_path / "data"
    for i in range(6):
        make_image(data / f"img{i}.png", seed=i)
    whole = (data / "img5.png").read_bytes()
    (data / "img5.png").write_bytes(whole[: len(whole) // 2])          # the header scans, the pixels do not decode
    settings = dict(backbone="pixels@16", k=2, pca=3, workers=0, cache_dir=str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        res = run(data, tmp_path / "out", checks="off", **settings)
    said = [m for m in caplog.messages if m.startswith("skipped img5.png: cannot decode image")]
    assert len(said) == 1 and [s["path"] for s in res.skipped] == ["img5.png"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        predict(tmp_path / "out", data, tmp_path / "pred", cache_dir=str(tmp_path / "cache"), workers=0)
    assert len([m for m in caplog.messages if m.startswith("skipped img5.png: cannot decode image")]) == 1


def test_predict_records_its_inputs_and_warns_when_units_are_cut_otherwise(tmp_path, caplog):
    import logging

    from corpus import brain_volume, write_nifti

    from brainclust.pipeline import predict, run

    rng = np.random.default_rng(0)
    for i in range(4):
        write_nifti(tmp_path / "data" / f"v{i}.nii.gz",
                    brain_volume() * (1 + i) + rng.normal(size=brain_volume().shape))
    settings = dict(cache_dir=str(tmp_path / "cache"), workers=0)
    run(tmp_path / "data", tmp_path / "run", backbone="pixels@16", k=2, pca=2, slices="all-planes:2", unit="volume",
        checks="off", **settings)
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        same = predict(tmp_path / "run", tmp_path / "data", tmp_path / "p1", **settings)
    assert not [m for m in caplog.messages if "is not the run's" in m] and same.manifest["inputs"] == {}
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        other = predict(tmp_path / "run", tmp_path / "data", tmp_path / "p2", slices="axial:mid", **settings)
    assert [m for m in caplog.messages if "is not the run's" in m] == [
        "predict: --slices axial:mid is not the run's all-planes:2: each volume is pooled from other slices than "
        "the run's volumes were"]
    assert other.manifest["inputs"] == {"slices": "axial:mid"}
    assert json.loads((tmp_path / "p2" / "manifest.json").read_text())["inputs"] == {"slices": "axial:mid"}


def test_a_result_shows_in_one_line_not_every_array():
    """A notebook showed a RunResult or an Assignment as every array and the whole check result (hundreds of
    lines): now its counts and scores, in one line."""
    import numpy as np

    from brainclust.model.composite import Assignment
    from brainclust.pipeline import RunConfig, RunResult

    n, big = 5000, np.zeros((5000, 1280), np.float32)
    labels = np.arange(n) % 3
    res = RunResult(RunConfig(), list(range(n)), [{"path": "x", "reason": "y"}], big, big[:, :50], labels, None,
                    {"silhouette": 0.31234, "nmi": 0.5, "n_images": n}, {}, None, None, None, out_dir=Path("runs/a"))
    assert repr(res) == ("RunResult(5000 images, 3 clusters, 1 skipped; silhouette=0.312, nmi=0.500; "
                         "out_dir=runs/a)")
    assert repr(Assignment(list(range(n)), [], big, big, labels, None)) == "Assignment(5000 images, 3 clusters, " \
                                                                           "0 skipped)"
