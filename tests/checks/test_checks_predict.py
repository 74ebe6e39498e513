"""``predict`` checks the new images: their own flags, and the copies of the images the model was fitted on
(``model/checks.npz``, :mod:`brainclust.checks.fitted`)."""

from __future__ import annotations

import csv
import json
import logging
import shutil

import numpy as np
import pytest

from brainclust.checks.fitted import FITTED_PREFIX, FittedContents
from brainclust.errors import ModelFileError, ParameterError
from brainclust.io.outputs import LEAKAGE_COLUMNS, QUALITY_COLUMNS, RunFolder
from brainclust.pipeline import predict, run

from checks_planting import head_slice, save, screenshot

FAST = {"backbone": "pixels@16", "k": 2, "pca": 5, "workers": 0, "progress": False}


def _rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A run on 10 synthetic head slices (one of them twice), and a folder of new images: two copies of fitted
    slices (one of them twice), a screenshot, a blank image and two new slices."""
    base = tmp_path_factory.mktemp("fitted")
    data, new = base / "data", base / "new"
    for i in range(10):
        save(data / ("a" if i % 2 else "b") / f"s{i:02d}.png", head_slice(i))
    shutil.copyfile(data / "a" / "s03.png", data / "b" / "s03_again.png")
    new.mkdir()
    shutil.copyfile(data / "a" / "s03.png", new / "copy3.png")
    shutil.copyfile(data / "a" / "s03.png", new / "copy3_twice.png")
    shutil.copyfile(data / "b" / "s04.png", new / "copy4.png")
    save(new / "screenshot.png", screenshot(0))
    save(new / "blank.png", np.zeros((160, 160), np.uint8))
    for i in (50, 51):
        save(new / f"fresh{i}.png", head_slice(i))
    cache = base / "cache"
    run(data, base / "run", cache_dir=str(cache), **FAST)
    return base / "run", new, cache


def test_copies_of_fitted_images_are_duplicates_of_them_and_listed_as_leakage(fitted, tmp_path):
    out, new, cache = fitted
    res = predict(out, new, tmp_path / "pred", cache_dir=str(cache), progress=False)
    folder = RunFolder(tmp_path / "pred")
    quality = {r["path"]: r for r in _rows(folder.quality)}
    assert list(next(iter(quality.values()))) == QUALITY_COLUMNS and len(quality) == 7
    # the scan order of the fit puts a/s03.png before b/s03_again.png: copies point to the first
    for path, of in (("copy3.png", "a/s03.png"), ("copy3_twice.png", "a/s03.png"), ("copy4.png", "b/s04.png")):
        assert quality[path]["flags"].split(";") == ["duplicate"], quality[path]
        assert quality[path]["duplicate_of"] == FITTED_PREFIX + of
    assert "not_mri" in quality["screenshot.png"]["flags"] and "blank" in quality["blank.png"]["flags"]
    assert quality["fresh50.png"]["flags"] == quality["fresh51.png"]["flags"] == ""
    leak = _rows(folder.leakage)
    assert list(leak[0]) == LEAKAGE_COLUMNS
    assert {(r["path"], r["split"], r["relation"]) for r in leak} == {
        ("model:a/s03.png", "fit", "representative"), ("copy3.png", "predict", "duplicate"),
        ("copy3_twice.png", "predict", "duplicate"), ("model:b/s04.png", "fit", "representative"),
        ("copy4.png", "predict", "duplicate")}
    flags = {r["path"]: r["flags"] for r in _rows(folder.assignments)}
    assert flags["copy4.png"] == "duplicate" and flags["fresh50.png"] == ""
    manifest = json.loads(folder.manifest.read_text(encoding="utf-8"))
    assert manifest["checks"]["n_copies_of_fit"] == 3 and manifest["checks"]["counts"]["duplicate"] == 3
    line = res.checks.summary()
    assert "3 duplicates (3 exact copies of images the model was fitted on; near copies of those are not " \
           "searched" in line and "across" not in line


def test_one_copy_of_a_fitted_image_is_counted_in_the_singular(fitted, tmp_path):
    out, new, cache = fitted
    one = tmp_path / "one"
    one.mkdir()
    for name in ("copy4.png", "fresh50.png"):
        shutil.copyfile(new / name, one / name)
    line = predict(out, one, None, cache_dir=str(cache), progress=False).checks.summary()
    assert "1 duplicate (1 exact copy of an image the model was fitted on; near copies" in line, line


def test_predict_checks_off_and_a_run_without_checks(fitted, tmp_path, caplog):
    out, new, cache = fitted
    res = predict(out, new, tmp_path / "off", cache_dir=str(cache), progress=False, checks="off")
    assert res.checks is None and not RunFolder(tmp_path / "off").quality.exists()
    assert "flags" not in _rows(RunFolder(tmp_path / "off").assignments)[0]
    with pytest.raises(ParameterError, match="--checks: must be on or off"):
        predict(out, new, None, cache_dir=str(cache), progress=False, checks="yes")
    bare = run(new, tmp_path / "bare", cache_dir=str(cache), checks="off", **FAST)
    assert "checks" not in dict(bare.model.steps_)
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        got = predict(tmp_path / "bare", new, None, cache_dir=str(cache), progress=False, checks="on")
    assert got.checks is None and "the run was made with --checks off" in caplog.text


def _copy_with_checks_entry(out, dest, files):
    """A copy of the run folder ``out`` whose checks step lists ``files`` (``[]``: no ``checks.npz``)."""
    shutil.copytree(out, dest)
    config = RunFolder(dest).model_config
    info = json.loads(config.read_text(encoding="utf-8"))
    next(e for e in info["steps"] if e["name"] == "checks")["files"] = files
    if files == []:
        info["sha256"].pop("checks.npz")
        (RunFolder(dest).model / "checks.npz").unlink()
    config.write_text(json.dumps(info), encoding="utf-8")
    return dest


def test_a_model_without_kept_contents_still_checks_the_new_images(fitted, tmp_path):
    """A model saved before ``checks.npz`` existed: the new images are checked, copies of the fit not found."""
    out, new, cache = fitted
    old = _copy_with_checks_entry(out, tmp_path / "old", [])
    res = predict(old, new, None, cache_dir=str(cache), progress=False)
    flags = dict(zip(res.checks.paths, res.checks.flags))
    assert flags["copy3_twice.png"] == {"duplicate"} and flags["copy3.png"] == frozenset()  # among the new only
    assert not any(d.startswith(FITTED_PREFIX) for d in res.checks.duplicate_of)


def test_fitted_contents_round_trip_and_lookup(tmp_path):
    paths = ["a/x.png", "b/é ü.png", "c/\udcff.png", "d/dup.png"]
    hexes = [f"{i:064x}" for i in (5, 1, 9)] + [f"{1:064x}"]
    got = FittedContents.of(paths, hexes, failed={})
    assert len(got) == 3  # one per distinct content, the first path of each
    got.save(tmp_path / "c.npz")
    back = FittedContents.load(tmp_path / "c.npz")
    assert back.paths == got.paths and bytes(back.digests.tobytes()) == bytes(got.digests.tobytes())
    assert back.lookup([f"{1:064x}", f"{9:064x}", f"{7:064x}", "", f"{99:064x}"]) == \
        ["b/é ü.png", "c/\udcff.png", None, None, None]
    assert FittedContents.of(paths, hexes, failed={1: "bad"}).lookup([f"{1:064x}"]) == ["d/dup.png"]
    assert FittedContents.of([], [], {}).lookup([f"{1:064x}"]) == [None]


@pytest.mark.parametrize("arrays, message", [
    ({"digests": np.zeros((2, 32), np.uint8), "paths": np.zeros(4, np.uint8),
      "offsets": np.array([0, 2, 4])}, "not sorted and distinct"),
    ({"digests": np.zeros((1, 32), np.uint8), "paths": np.zeros(4, np.uint8),
      "offsets": np.array([0, 5])}, "do not fit together"),
    ({"digests": np.zeros((1, 16), np.uint8), "paths": np.zeros(4, np.uint8),
      "offsets": np.array([0, 4])}, "do not fit together"),
    ({"digests": np.zeros((1, 32), np.uint8)}, "no array 'paths'"),
])
def test_damaged_fitted_contents_are_one_line(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ModelFileError, match=message):
        FittedContents.load(tmp_path / "bad.npz")


def test_a_damaged_files_field_of_the_checks_step_is_one_line(fitted, tmp_path):
    out, new, cache = fitted
    bad = _copy_with_checks_entry(out, tmp_path / "bad", 5)
    with pytest.raises(ModelFileError, match="step 'checks': field 'files' must be a list"):
        predict(bad, new, None, cache_dir=str(cache), progress=False)


def test_a_unit_run_predicts_with_checks(tmp_path):
    """``--unit``: the new slices are checked, each unit gets its slices' flags; a copy of a fitted slice is
    found through the unit."""
    from brainclust.io.outputs import RunFolder as Folder

    data, new = tmp_path / "data", tmp_path / "new"
    for s in ("sub-01", "sub-02", "sub-03"):
        for i in range(3):
            save(data / s / f"s{i}.png", head_slice(10 * int(s[-1]) + i))
    (new / "sub-09").mkdir(parents=True)
    shutil.copyfile(data / "sub-01" / "s0.png", new / "sub-09" / "s0.png")
    save(new / "sub-09" / "blank.png", np.zeros((160, 160), np.uint8))
    run(data, tmp_path / "run", cache_dir=str(tmp_path / "c"), unit="subject", **{**FAST, "pca": 2})
    res = predict(tmp_path / "run", new, tmp_path / "pred", cache_dir=str(tmp_path / "c"), progress=False)
    rows = _rows(Folder(tmp_path / "pred").assignments)
    assert len(rows) == 1 and set(rows[0]["flags"].split(";")) == {"duplicate", "blank"}
    assert "instance_number" not in rows[0] and res.manifest["checks"]["n_copies_of_fit"] == 1


def test_predict_scores_over_the_new_images_apart(fitted, tmp_path):
    """metrics.json's ``distinct`` of a prediction leaves out the copies of the fit (not new) and repeats."""
    out, new, cache = fitted
    res = predict(out, new, None, cache_dir=str(cache), progress=False)
    assert res.metrics["n_images"] == 7
    # copy3, copy3_twice and copy4 are the fit's images again: 4 are new (blank, screenshot, two fresh slices)
    assert res.metrics["distinct"]["n_images"] == 4 and "none that is a copy" in res.metrics["distinct"]["rule"]
    off = predict(out, new, None, cache_dir=str(cache), progress=False, checks="off")
    assert "distinct" not in off.metrics
