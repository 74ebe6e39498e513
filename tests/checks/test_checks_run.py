"""The data checks wired into a run: quality.csv, leakage.csv, the flags column, --exclude, --checks off,
scores over distinct images, predict / report / export of a run with images set aside."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from brainclust.errors import ParameterError
from brainclust.io.outputs import LEAKAGE_COLUMNS, QUALITY_COLUMNS, RunFolder
from brainclust.model.config import RunConfig
from brainclust.pipeline import predict, run

from checks_planting import head_slice, save, screenshot

#: Settings that keep the runs small and fast (a pixel backbone, no report).
FAST = {"backbone": "pixels@16", "k": 2, "pca": 5, "workers": 0, "progress": False}
PLANTED = {"z/copy_of_s03.png": "duplicate", "z/screenshot.png": "not_mri", "z/blank.png": "blank"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """14 synthetic head slices in two folders, plus an exact copy, a screenshot and a blank image."""
    root = tmp_path_factory.mktemp("checked") / "data"
    for i in range(14):
        save(root / ("a" if i % 2 else "b") / f"s{i:02d}.png", head_slice(i))
    (root / "z").mkdir()
    shutil.copyfile(root / "a" / "s03.png", root / "z" / "copy_of_s03.png")
    save(root / "z" / "screenshot.png", screenshot(0))
    save(root / "z" / "blank.png", np.zeros((160, 160), np.uint8))
    return root


def _rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def checked_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "checked"
    cache = tmp_path_factory.mktemp("cache")
    return run(data, out, cache_dir=str(cache), **FAST), out, cache


def test_a_default_run_writes_quality_and_leakage_and_a_flags_column(checked_run, data):
    res, out, _ = checked_run
    folder = RunFolder(out)
    quality = _rows(folder.quality)
    assert list(quality[0]) == QUALITY_COLUMNS and len(quality) == 17
    assert folder.leakage.read_text(encoding="utf-8").splitlines()[0] == ",".join(LEAKAGE_COLUMNS)
    flags = {r["path"]: r["flags"] for r in quality}
    for path, flag in PLANTED.items():
        assert flag in flags[path].split(";"), (path, flags[path])
    assert {r["path"]: r["duplicate_of"] for r in quality}["z/copy_of_s03.png"] == "a/s03.png"
    assignments = _rows(folder.assignments)
    assert "flags" in assignments[0] and {r["path"]: r["flags"] for r in assignments} == flags
    import pyarrow.parquet as pq

    table = pq.read_table(folder.embeddings)
    assert table.column("flags").to_pylist() == [r["flags"] for r in assignments]
    manifest = json.loads(folder.manifest.read_text())
    assert manifest["checks"]["counts"]["duplicate"] >= 1 and manifest["checks"]["n_excluded"] == 0
    assert manifest["checks"]["thresholds"]["near_similarity"] == pytest.approx(0.985)
    assert manifest["settings"]["checks"] == "on" and manifest["settings"]["exclude"] == []
    assert "duplicate" in res.checks.summary()


def test_scores_over_distinct_images_leave_the_copies_out(checked_run):
    res, out, _ = checked_run
    metrics = json.loads(RunFolder(out).metrics.read_text())
    assert metrics["n_images"] == 17
    n_dup = sum(1 for f in res.checks.flags if "duplicate" in f)
    assert n_dup >= 1 and metrics["distinct"]["n_images"] == 17 - n_dup


def test_the_checks_do_not_change_the_clusters_and_checks_off_writes_none(checked_run, data, tmp_path):
    res, _, cache = checked_run
    off = run(data, tmp_path / "off", cache_dir=str(cache), checks="off", **FAST)
    np.testing.assert_array_equal(off.labels, res.labels)
    np.testing.assert_array_equal(off.embedding, res.embedding)
    folder = RunFolder(tmp_path / "off")
    assert not folder.quality.exists() and not folder.leakage.exists()
    assert "flags" not in _rows(folder.assignments)[0] and "checks" not in json.loads(folder.manifest.read_text())
    assert "distinct" not in json.loads(folder.metrics.read_text()) and off.checks is None


def test_the_descriptors_come_from_the_store_on_a_rerun(checked_run, data, tmp_path):
    res, _, cache = checked_run
    again = run(data, None, cache_dir=str(cache), **FAST)
    assert again.manifest["checks"]["descriptor_cache"] == {"hits": 17, "misses": 0}
    assert again.checks.flags == res.checks.flags and again.checks.duplicate_of == res.checks.duplicate_of


@pytest.fixture(scope="module")
def excluded_run(data, checked_run, tmp_path_factory):
    _, _, cache = checked_run
    out = tmp_path_factory.mktemp("runs") / "excluded"
    return run(data, out, cache_dir=str(cache), exclude=("duplicate", "not_mri", "blank"), **FAST), out


def test_excluded_images_get_cluster_minus_one_and_keep_their_flags(excluded_run):
    res, out = excluded_run
    rows = {r["path"]: r for r in _rows(RunFolder(out).assignments)}
    assert len(rows) == 17
    for path, flag in PLANTED.items():
        assert rows[path]["cluster"] == "-1" and flag in rows[path]["flags"]
        assert rows[path]["level_1"] == "-1"
    kept = [r for p, r in rows.items() if p not in PLANTED]
    assert all(int(r["cluster"]) >= 0 for r in kept)
    metrics = json.loads(RunFolder(out).metrics.read_text())
    assert metrics["n_set_aside"] == 3 and metrics["n_images"] == 14 and metrics["n_noise"] == 0
    assert json.loads(RunFolder(out).manifest.read_text())["checks"]["n_excluded"] == 3


def test_the_summary_says_how_many_were_set_aside_and_when_none_carries_the_flags(excluded_run, data, checked_run):
    from brainclust.clisummary import run_summary

    assert "--exclude duplicate,not_mri,blank: 3 images left out of the clustering" in run_summary(excluded_run[0])
    _, _, cache = checked_run
    none = run(data, None, cache_dir=str(cache), exclude=("noise",), **FAST)
    assert not any("noise" in f for f in none.checks.flags)
    assert "--exclude noise: no image carries these flags; every image was clustered" in run_summary(none)


def test_predict_of_an_excluding_model_says_it_sets_nothing_aside(excluded_run, data, tmp_path):
    """predict assigns every new image: the model's --exclude was read as "no image carries these flags" beside a
    checks line counting them (a walk's find)."""
    from brainclust import predict
    from brainclust.clisummary import run_summary

    got = predict(excluded_run[1], data, tmp_path / "pred", cache_dir=str(tmp_path / "c"), workers=0)
    said = run_summary(got)
    n = sum(bool(f & {"duplicate", "not_mri", "blank"}) for f in got.checks.flags)
    assert n == 17  # copies of the fit's images, all of them
    assert (f"--exclude duplicate,not_mri,blank (the model's): predict sets no image aside; {n} new images "
            "with these flags assigned a cluster") in said and "no image carries" not in said


def test_excluded_images_are_left_out_of_pca_and_clustering(excluded_run, data, checked_run, tmp_path):
    """The kept images cluster exactly as a run on the folder without the excluded files."""
    res, _ = excluded_run
    _, _, cache = checked_run
    clean = tmp_path / "clean"
    shutil.copytree(data, clean)
    for path in PLANTED:
        (clean / path).unlink()
    ref = run(clean, None, cache_dir=str(cache), checks="off", **FAST)
    kept = {r.path: int(c) for r, c in zip(res.records, res.labels) if r.path not in PLANTED}
    assert sorted(kept) == [r.path for r in ref.records]
    assert adjusted_rand_score([kept[r.path] for r in ref.records], ref.labels) == 1.0
    emb = {r.path: e for r, e in zip(res.records, res.embedding)}
    np.testing.assert_allclose(np.stack([emb[r.path] for r in ref.records]), ref.embedding, rtol=1e-5, atol=1e-5)


def test_predict_report_and_export_cope_with_the_images_set_aside(excluded_run, data, tmp_path):
    from brainclust.report.build import build_report
    from brainclust.report.export import export_clusters

    res, out = excluded_run
    got = predict(out, data, tmp_path / "pred", cache_dir=None, progress=False)
    assert len(got.labels) == 17 and got.labels.min() >= 0  # new images are never set aside
    kept = np.array([r.path not in PLANTED for r in res.records])
    assert np.mean(got.labels[kept] == res.labels[kept]) >= 0.9
    info = build_report(out, write_figures=False)
    html = info.path.read_text(encoding="utf-8")
    assert 'id="checks"' in html and "z/screenshot.png" in html and "--exclude duplicate,not_mri,blank" in html
    exp = export_clusters(out, tmp_path / "exp")
    assert exp.n_files == 17 and exp.counts.get("set_aside") == 3 and "noise" not in exp.counts  # not DBSCAN's
    assert {p.name for p in (tmp_path / "exp" / "set_aside").iterdir()} == {Path(p).name for p in PLANTED}


def test_a_leakage_across_split_folders_is_listed(tmp_path):
    for i in range(6):
        save(tmp_path / "d" / "train" / f"t{i}.png", head_slice(i))
        save(tmp_path / "d" / "test" / f"u{i}.png", head_slice(100 + i))
    shutil.copyfile(tmp_path / "d" / "train" / "t2.png", tmp_path / "d" / "test" / "t2_again.png")
    res = run(tmp_path / "d", tmp_path / "out", cache_dir=str(tmp_path / "c"), **FAST)
    leak = _rows(RunFolder(tmp_path / "out").leakage)
    # scan order is sorted path order: test/ comes before train/
    assert {(r["path"], r["relation"]) for r in leak} == {("test/t2_again.png", "representative"),
                                                          ("train/t2.png", "duplicate")}
    assert "across test/train" in res.checks.summary()


@pytest.mark.parametrize("settings, message", [
    ({"checks": "off", "exclude": ("duplicate",)}, "--exclude: would be ignored"),
    ({"checks": "off", "check_thresholds": "min_side=8"}, "--check-thresholds: would be ignored"),
    ({"split_column": "fold"}, "--split-column: would be ignored"),
    ({"exclude": ("duplicate",), "auto": True}, "--exclude: not supported with --auto"),
    ({"exclude": ("duplicates",)}, "--exclude: unknown flag 'duplicates'"),
    ({"check_thresholds": "min_side=0"}, "check threshold min_side"),
    ({"check_thresholds": "nonsense=1"}, "--check-thresholds: 'nonsense=1'"),
    ({"split_table": "/nonexistent/splits.csv"}, "--split-table '/nonexistent/splits.csv': file not found"),
])
def test_check_settings_are_checked_before_any_work(settings, message):
    with pytest.raises(ParameterError) as err:
        RunConfig(**settings).validate()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_split_table_names_the_splits(tmp_path):
    for i in range(6):
        save(tmp_path / "d" / f"s{i}.png", head_slice(i))
    shutil.copyfile(tmp_path / "d" / "s1.png", tmp_path / "d" / "s1_copy.png")
    table = tmp_path / "splits.csv"
    table.write_text("path,fold\n" + "".join(f"s{i}.png,{'train' if i < 3 else 'test'}\n" for i in range(6))
                     + "s1_copy.png,test\n")
    res = run(tmp_path / "d", None, cache_dir=str(tmp_path / "c"), split_table=str(table), split_column="fold",
              **FAST)
    assert res.checks.split_source == "metadata"
    assert {r["path"] for r in res.checks.leakage} == {"s1.png", "s1_copy.png"}
    assert res.manifest["checks"]["split_table"] == str(table)


def test_brainclust_check_takes_the_file_filters_of_a_run(data, tmp_path, capsys):
    from brainclust.cli import main

    out = tmp_path / "chk"
    assert main(["-q", "check", str(data), "--out", str(out), "--include", "a/*", "--exclude-files", "*s01*",
                 "--workers", "0", "--cache-dir", str(tmp_path / "c")]) == 0
    paths = [r["path"] for r in _rows(out / "quality.csv")]
    assert paths and all(p.startswith("a/") and "s01" not in p for p in paths)
    assert main(["-q", "check", str(data), "--out", str(tmp_path / "chk2"), "--include", "["]) == 2
    assert "--include" in capsys.readouterr().err


def test_a_split_table_naming_no_image_is_refused_before_any_feature_is_extracted(data, tmp_path, monkeypatch):
    from brainclust.features.extractor import FeatureExtractor

    table = tmp_path / "splits.csv"
    table.write_text("path,split\nelsewhere/x.png,train\nelsewhere/y.png,test\n", encoding="utf-8")

    def no_extraction(*args, **kwargs):
        raise AssertionError("features were extracted before the table was checked")
    monkeypatch.setattr(FeatureExtractor, "fit_extract", no_extraction)
    with pytest.raises(ParameterError, match="--split-table: none of its 2 paths names an image"):
        run(data, tmp_path / "out", cache_dir=str(tmp_path / "cache"), split_table=str(table), **FAST)
    assert not (tmp_path / "out").exists()


def test_an_image_the_extraction_could_not_decode_is_counted_as_not_checked(data, tmp_path):
    """A walk of the pages: a run over a truncated PNG wrote its error row in quality.csv but recorded
    n_not_checked 0 (the extraction drops it before the checks see it) and said "nothing flagged", where
    ``brainclust check`` of the same folder counts it; a prediction over that folder did the same."""
    from brainclust.checks.stage import check_data

    bad = tmp_path / "data"
    shutil.copytree(data, bad)
    good = (bad / "a" / "s01.png").read_bytes()
    (bad / "a" / "truncated.png").write_bytes(good[: len(good) // 2])
    res = run(bad, tmp_path / "run", cache_dir=str(tmp_path / "c"), **FAST)
    errors = [r["path"] for r in _rows(RunFolder(tmp_path / "run").quality) if r["error"]]
    checked = check_data(bad, tmp_path / "check", cache_dir=str(tmp_path / "c"), workers=0, progress=False)
    alone = json.loads((tmp_path / "check" / "manifest.json").read_text())["checks"]
    for record in (res.manifest["checks"], json.loads((tmp_path / "run" / "manifest.json").read_text())["checks"]):
        assert errors == ["a/truncated.png"] and record["n_not_checked"] == alone["n_not_checked"] == 1
        assert record["n_checked"] == alone["n_checked"] == 17
        assert "1 not checked (unreadable)" in record["summary"] == res.checks.summary() == checked.summary()
    got = predict(tmp_path / "run", bad, tmp_path / "pred", cache_dir=str(tmp_path / "c"), workers=0, progress=False)
    assert got.manifest["checks"]["n_not_checked"] == 1
