"""Split detection (folders, file-name tokens, a metadata table) and the leakage table."""

from __future__ import annotations

import logging
import os
import shutil

import pytest

from brainclust.checks.splits import detect_splits, match_table, split_of
from brainclust.checks.stage import check_folder, read_split_table
from brainclust.errors import ParameterError

from checks_planting import head_slice, save


@pytest.mark.parametrize("path, expected", [
    ("Training/glioma/Tr-gl_0010.jpg", ("train", "folder")),
    ("glioma/Te-meTr_0003.jpg", ("test", "file name")),
    ("glioma/Tr-gl_0010.jpg", ("train", "file name")),
    ("x/scan_val_01.png", ("val", "file name")),
    ("data/validation/a.png", ("val", "folder")),
    ("vol.nii.gz#axial=4", ("", "")),
    ("tree/trunk.png", ("", "")),       # 'tr' only as a whole first token
    ("te.png", ("", "")),               # a bare word with its extension is not a marker
    ("latest/test_tube.png", ("test", "file name")),
])
def test_split_of_one_path(path, expected):
    assert split_of(path) == expected


def test_a_data_set_needs_two_splits_and_half_of_its_images_marked_or_two_split_folders(caplog):
    assert detect_splits(["a/test.x.png", "a/b.png", "a/c.png"])[1] == ""
    assert detect_splits(["train/a.png", "train/b.png"])[1] == ""
    splits, source = detect_splits(["train/a.png", "test/b.png", "c.png"])
    assert splits == ["train", "test", ""] and source == "folder"
    # train/ and test/ beside a larger unmarked folder: the folders are the data set's word (a new user's probe:
    # a copy across them went unreported once more unmarked images were added)
    paths = ["train/a.png", "test/b.png"] + [f"other/o{i}.png" for i in range(8)]
    with caplog.at_level(logging.INFO, logger="brainclust"):
        splits, source = detect_splits(paths)
    assert splits[:2] == ["train", "test"] and set(splits[2:]) == {""} and source == "folder"
    assert "2 of 10 images are in test/train; the other 8 have none" in caplog.text
    # split folders that are not side by side are not a data set's splits (a review: qa/test/ and
    # teaching/training/ among 30 unmarked images reported leakage)
    paths = ["qa/test/q1.png", "teaching/training/c1.png"] + [f"cohort/o{i}.png" for i in range(8)]
    assert detect_splits(paths) == ([""] * 10, "")
    assert detect_splits(["site1/train/a.png", "site1/test/b.png"] + [f"x/o{i}.png" for i in range(8)])[1] == "folder"
    # file-name markers on a minority are set aside, with a warning that says how to use them
    caplog.clear()
    paths = ["x_train_1.png", "x_test_2.png"] + [f"o{i}.png" for i in range(8)]
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        assert detect_splits(paths) == ([""] * 10, "")
    assert "file name of 2 of 10 images read as test/train" in caplog.text and "--split-table" in caplog.text
    splits, source = detect_splits(["a.png", "b.png"], {"a.png": "Training", "b.png": "valid"})
    assert splits == ["train", "val"] and source == "metadata"


def test_a_split_table_is_used_however_few_images_it_names_and_may_name_them_absolutely(tmp_path, caplog):
    """The user's table is their word: no half-marked rule, absolute paths match (through a linked folder too),
    one that names nothing or gives no split is refused, and one split only finds no leakage (said)."""
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    paths = ["a.png", "b.png", "c.png", "d.png", "v.nii.gz#axial=3"]
    absp = [str(tmp_path / "real" / p.split("#")[0]) for p in paths]  # the scan resolves the root
    table = match_table(paths, absp, {"a.png": "train", str(tmp_path / "link" / "b.png"): "test"})
    assert table == {"a.png": "train", "b.png": "test"}
    assert "3 of 5 images have no split" in caplog.text
    assert detect_splits(paths, table) == (["train", "test", "", "", ""], "metadata")
    assert match_table(paths, absp, {"v.nii.gz": "test", "a.png": "train"})["v.nii.gz#axial=3"] == "test"
    with pytest.raises(ParameterError, match="none of its 1 paths names an image"):
        match_table(paths, absp, {"/elsewhere/a.png": "train"})
    with pytest.raises(ParameterError, match="split column is empty for all 2 images it names"):
        match_table(paths, absp, {"a.png": "", "b.png": " "})
    assert detect_splits(paths, {"a.png": "train", "b.png": "training"}) == ([""] * 5, "")
    assert "all in one split (train)" in caplog.text


def test_copies_across_train_and_test_folders_are_listed_in_leakage(tmp_path):
    root = tmp_path / "data"
    for i in range(4):
        save(root / "train" / f"t{i}.png", head_slice(i))
        save(root / "test" / f"e{i}.png", head_slice(10 + i))
    shutil.copyfile(root / "train" / "t1.png", root / "test" / "leak.png")
    save(root / "train" / "t1_again.png", head_slice(1))  # same pixels, same split: not leakage
    res = check_folder(root, tmp_path / "out", progress=False)
    rows = res.leakage
    assert {(r["path"], r["split"], r["relation"]) for r in rows} == {
        ("test/leak.png", "test", "representative"), ("train/t1.png", "train", "duplicate"),
        ("train/t1_again.png", "train", "duplicate")}
    assert all(r["group"] == "test/leak.png" for r in rows)  # 'test/...' sorts first: it is the representative
    assert "across test/train" in res.summary()
    text = (tmp_path / "out" / "leakage.csv").read_text()
    assert text.splitlines()[0] == "group,splits,path,split,relation" and "test;train" in text


def test_split_table_is_read_and_checked(tmp_path):
    p = tmp_path / "meta.csv"
    p.write_text("path,split\na.png,train\nb.png,test\n")
    assert read_split_table(p) == {"a.png": "train", "b.png": "test"}
    with pytest.raises(ParameterError, match="no column 'fold'"):
        read_split_table(p, column="fold")


def test_split_table_is_read_as_a_metadata_table_and_an_empty_one_is_refused(tmp_path):
    """A walk (2026-12-07): a table saved as "CSV UTF-8" by a spreadsheet (a byte-order mark) had "no column 'path'
    (columns: \ufeffpath, split)", a tab-separated .txt "no column 'split' (columns: path\x09split)", an empty file
    "no column 'split' (columns: )", and a header without rows was run as if no table had been given."""
    p = tmp_path / "splits.csv"
    p.write_bytes(b"\xef\xbb\xbfpath,split\r\na.png,train\r\nb.png,test\r\n")
    assert read_split_table(p) == {"a.png": "train", "b.png": "test"}
    p = tmp_path / "splits.txt"
    p.write_text("path\tsplit\na.png\ttrain\n")
    assert read_split_table(p) == {"a.png": "train"}
    for text, said in (("", r"empty; expected a header line and one row per image \(path, split\)$"),
                       ("path,split\n", r"has a header and no row; expected one row per image \(path, split\)$")):
        p.write_text(text)  # the empty one said "one row per key", --metadata's words
        with pytest.raises(ParameterError, match=f"^--split-table '{p}': {said}"):
            read_split_table(p)
