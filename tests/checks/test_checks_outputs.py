"""quality.csv, the summary line, galleries, the policy helpers and outliers."""

from __future__ import annotations

import csv

import numpy as np

from brainclust.checks.flags import Thresholds
from brainclust.checks.outliers import outlier_scores
from brainclust.checks.stage import check_folder
from brainclust.checks.tables import QUALITY_COLUMNS, distinct_index, exclude_mask, galleries

from checks_planting import document, head_slice, save


def _folder(root):
    for i in range(8):
        save(root / "mri" / f"s{i}.png", head_slice(i))
    save(root / "mri" / "zcopy.png", head_slice(2))
    save(root / "odd" / "blank.png", np.zeros((90, 90), np.uint8))
    save(root / "odd" / "doc.png", document(0))
    save(root / "odd" / "x<img src=x onerror=alert(1)>.png", np.full((50, 50), 9, np.uint8))
    return root


def test_quality_csv_has_one_row_per_image_in_scan_order(tmp_path):
    res = check_folder(_folder(tmp_path / "d"), tmp_path / "out", progress=False)
    with open(tmp_path / "out" / "quality.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == QUALITY_COLUMNS
    assert [r["path"] for r in rows] == res.paths == sorted(res.paths)
    row = {r["path"]: r for r in rows}
    assert row["mri/zcopy.png"]["flags"] == "duplicate" and row["mri/zcopy.png"]["duplicate_of"] == "mri/s2.png"
    assert row["odd/blank.png"]["flags"] == "blank" and row["odd/doc.png"]["flags"] == "not_mri"
    assert row["mri/s0.png"]["flags"] == "" and float(row["mri/s0.png"]["dark_fraction"]) > 0.2
    assert len(row["mri/s0.png"]["content_sha256"]) == 64


def test_summary_galleries_and_policy(tmp_path):
    res = check_folder(_folder(tmp_path / "d"), progress=False)
    line = res.summary()
    assert line.startswith("checks: ") and "1 duplicate," in line and "1 not MRI" in line and "2 blank" in line
    g = galleries(res)
    assert g["duplicate"] == [["mri/s2.png", "mri/zcopy.png"]] and g["not_mri"] == ["odd/doc.png"]
    mask = exclude_mask(res.flags, {"duplicate", "blank"})
    assert [p for p, m in zip(res.paths, mask) if m] == ["mri/zcopy.png", "odd/blank.png",
                                                        "odd/x<img src=x onerror=alert(1)>.png"]
    keep = distinct_index(res.paths, res.flags, res.duplicate_of)
    assert res.paths.index("mri/zcopy.png") not in keep and len(keep) == len(res.paths) - 1


def test_distinct_images_are_the_first_of_each_content_among_those_used():
    """A copy stands for its content when the first image of it is not used (a walk: --exclude near_duplicate
    set aside Tr-no_0142, and its byte copy Tr-no_0143, clustered, was dropped from the distinct scores too)."""
    paths, dup_of = ["a", "b", "c", "d"], ["", "a", "", "a"]
    flags = [frozenset(), frozenset({"duplicate"}), frozenset({"near_duplicate"}), frozenset({"duplicate"})]
    assert distinct_index(paths, flags, dup_of).tolist() == [0, 2]
    assert distinct_index(paths, flags, dup_of, np.array([False, True, True, True])).tolist() == [1, 2]
    assert distinct_index(paths, flags, dup_of, np.array([False, False, False, True])).tolist() == [3]


def test_the_summary_says_when_images_hold_few_grey_levels(tmp_path):
    """A folder of three-level slices (as brain_tumor_yes_no: values 0, 1, 2) is said once, never flagged."""
    assert "grey levels or fewer" not in check_folder(_folder(tmp_path / "d"), progress=False).summary()
    for i in range(6):
        save(tmp_path / "p" / f"p{i}.png", (head_slice(i).astype(np.float32) / 255 * 2.99).astype(np.uint8))
    res = check_folder(tmp_path / "p", progress=False)
    assert res.summary() == ("checks: 6 images, nothing flagged; 6 of 6 hold 5 grey levels or fewer (masks or "
                             "posterised slices: not a flag; grey_levels in quality.csv)")
    assert all(not fl for fl in res.flags)


def test_defaults_only_flag(tmp_path):
    # the checks never drop an image: every scanned image has a row, flagged or not
    res = check_folder(_folder(tmp_path / "d"), progress=False)
    assert len(res.flags) == len(res.paths) == 12


def test_a_point_far_from_everything_is_an_outlier_and_a_copy_does_not_hide_it():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)) * 0.05 + np.array([1, 0, 0, 0, 0, 0, 0, 0])
    x = np.vstack([x, [[0, 0, 0, 0, 0, 0, 0, 1]] * 2])
    first = np.arange(len(x))
    first[-1] = len(x) - 2  # the far point has an exact copy
    z, flag = outlier_scores(x, Thresholds(), first)
    assert flag[-2] and flag[-1] and flag[:300].sum() == 0
    assert z[-1] == z[-2]
