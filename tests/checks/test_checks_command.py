"""``brainclust check DATA --out OUT``: the checks alone, published like a run folder."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from brainclust.checks.stage import check_data
from brainclust.cli import main
from brainclust.errors import ParameterError
from brainclust.io.outputs import QUALITY_COLUMNS

from checks_planting import head_slice, save, screenshot


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmd") / "data"
    for i in range(8):
        save(root / ("train" if i < 4 else "test") / f"s{i}.png", head_slice(i))
    shutil.copyfile(root / "train" / "s1.png", root / "test" / "s1_copy.png")
    save(root / "test" / "photo.png", screenshot(2))
    save(root / "test" / "tiny.png", np.full((10, 10), 40, np.uint8))
    return root


def test_check_publishes_quality_leakage_and_a_manifest(data, tmp_path):
    out = tmp_path / "out"
    res = check_data(data, out, cache_dir=str(tmp_path / "c"), progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["leakage.csv", "manifest.json", "quality.csv"]
    assert out.joinpath("quality.csv").read_text().splitlines()[0] == ",".join(QUALITY_COLUMNS)
    assert len(out.joinpath("quality.csv").read_text().splitlines()) == 1 + 11
    m = json.loads(out.joinpath("manifest.json").read_text())
    assert m["kind"] == "check" and m["n_images"] == 11 and m["checks"]["split_source"] == "folder"
    assert m["checks"]["counts"]["duplicate"] == 1 and m["checks"]["summary"] == res.summary()
    assert "1 duplicate (1 linked across test/train)" in res.summary()
    assert len(out.joinpath("leakage.csv").read_text().splitlines()) == 3
    again = check_data(data, out, cache_dir=str(tmp_path / "c"), progress=False)  # an earlier check's folder
    assert again.flags == res.flags


def test_check_refuses_an_out_inside_the_data_or_holding_other_files(data, tmp_path):
    with pytest.raises(ParameterError, match="must be outside"):
        check_data(data, data / "checks", progress=False)
    run_like = tmp_path / "a_run"
    run_like.mkdir()
    (run_like / "assignments.csv").write_text("path,cluster\n")
    with pytest.raises(ParameterError, match="holds 'assignments.csv', which a brainclust run writes: a run's "
                                             "folder is not replaced by this command"):
        check_data(data, run_like, progress=False)
    assert (run_like / "assignments.csv").is_file()
    (run_like / "assignments.csv").unlink()
    (run_like / "notes.txt").write_text("mine")
    with pytest.raises(ParameterError, match="holds 'notes.txt', which is not a brainclust output; 'brainclust "
                                             "check' replaces its whole --out folder") as err:
        check_data(data, run_like, progress=False)
    assert "a run replaces" not in str(err.value)  # it ended with the wording of a run's refusal


@pytest.mark.parametrize("settings, message", [
    ({"check_thresholds": "min_side=zero"}, "--check-thresholds: min_side must be a number"),
    ({"split_column": "fold"}, "--split-column: would be ignored"),
    ({"workers": -1}, "--workers: must be an integer from 0 to 64 (or unset)"),
    ({"workers": 500}, "--workers: must be an integer from 0 to 64 (or unset)"),
    ({"slices": "sideways:mid"}, "sideways"),
])
def test_check_refuses_bad_settings_before_the_scan(data, tmp_path, settings, message):
    with pytest.raises(ParameterError) as err:
        check_data(data, tmp_path / "o", **settings)
    assert message in str(err.value) and not (tmp_path / "o").exists()


def test_the_command_prints_the_summary_and_maps_errors_to_exit_2(data, tmp_path, capsys):
    assert main(["check", str(data), "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c")]) == 0
    printed = capsys.readouterr().out
    assert "11 images checked\n" in printed and "checks: 1 duplicate (1 linked across test/train)" in printed
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")  # what the scan skips is counted
    try:
        assert main(["check", str(data), "--out", str(tmp_path / "o3"), "--cache-dir", str(tmp_path / "c")]) == 0
    finally:
        (data / "broken.png").unlink()
    assert "11 images checked; 1 file skipped (see manifest.json)" in capsys.readouterr().out
    assert "not MRI" in printed and "tiny" in printed
    assert main(["check", str(data), "--out", str(tmp_path / "o2"), "--check-thresholds", "bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("brainclust: error: --check-thresholds") and "\n" not in err


def test_check_refuses_a_cache_inside_out_before_any_work(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        save(data / f"a{i}.png", head_slice(i))
    capsys.readouterr()
    assert main(["-q", "check", str(data), "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "o" / "c")]) == 2
    assert "--cache-dir" in capsys.readouterr().err
    assert not (tmp_path / "o" / "c").exists()


def test_a_folder_where_no_image_decodes_is_an_error_not_a_clean_check(tmp_path):
    from brainclust.errors import InputError

    data = tmp_path / "truncated"
    save(data / "a.png", head_slice(0))
    save(data / "b.png", head_slice(1))
    for p in data.iterdir():
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(InputError, match="none of its 2 images could be decoded .*nothing was checked"):
        check_data(data, tmp_path / "o", progress=False, cache_dir=False)
    assert not (tmp_path / "o").exists()


def test_the_command_writes_a_page_with_a_gallery_per_flag(data, tmp_path):
    import re

    bad = tmp_path / "data"
    shutil.copytree(data, bad)
    truncated = bad / "train" / "s2.png"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    (bad / "test" / "photo.png").rename(bad / "-photo.png")  # written '\x2dphoto.png' in quality.csv
    out = tmp_path / "o"
    assert main(["-q", "check", str(bad), "--out", str(out), "--cache-dir", str(tmp_path / "c")]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["checks.html", "leakage.csv", "manifest.json", "quality.csv"]
    page = out.joinpath("checks.html").read_text(encoding="utf-8")
    assert "<script" not in page and "default-src 'none'" in page and "Nothing was clustered" in page
    assert "duplicate: 1 image in 1 group<" in page and "across splits (leakage.csv)" in page
    assert "cross its splits (read from: folder) are in leakage.csv" in page
    for flag in ("not_mri", "blank", "tiny"):
        assert re.search(rf"<h3>{flag}: 1 image</h3>", page)
    assert "not checked: 1 image<" in page and "train/s2.png" in page
    assert ">-photo.png</figcaption>" in page and "x2d" not in page  # named as it is called
    # the copy's group (2), the photograph, the tiny constant image (blank and tiny); none for the truncated file
    assert len(re.findall(r'<img src="data:image/jpeg;base64,', page)) == 5
    # the page is replaced with the folder: a second check of a clean folder says nothing is flagged
    clean = tmp_path / "clean"
    for i in range(4):
        save(clean / f"s{i}.png", head_slice(i))
    assert main(["-q", "check", str(clean), "--out", str(out), "--cache-dir", str(tmp_path / "c")]) == 0
    page = out.joinpath("checks.html").read_text(encoding="utf-8")
    assert "No image is flagged." in page and "<h3>" not in page
    # no split in its names: the page said copies across splits were in leakage.csv all the same
    assert "no split (train/test/val) was found in folder or file names, so leakage.csv lists nothing" in page


def test_the_page_names_the_folder_it_checked_by_its_own_name(data, tmp_path):
    """A walk of the pages: checks.html named no data folder (the report names its own). By its last part only,
    as the report does: a folder above it may be named after a patient (the full path is in manifest.json)."""
    folder = tmp_path / "DOE_JANE" / "<b>scans"
    shutil.copytree(data, folder)
    out = tmp_path / "o"
    assert main(["-q", "check", str(folder), "--out", str(out), "--cache-dir", str(tmp_path / "c")]) == 0
    page = out.joinpath("checks.html").read_text(encoding="utf-8")
    assert 'Data folder: <span class="mono">&lt;b&gt;scans</span> (its full path is in manifest.json' in page
    assert "<title>brainclust check: &lt;b&gt;scans</title>" in page
    assert "DOE_JANE" not in page and "<b>" not in page and str(tmp_path) not in page


def test_the_page_shows_no_file_that_changed_since_the_scan(data, tmp_path):
    from brainclust.io.scan import scan
    from brainclust.report.checkpage import write_check_page

    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    out = tmp_path / "o"
    check_data(copy, out, cache_dir=False, progress=False)
    records = scan(copy, progress=False).records
    save(copy / "test" / "photo.png", head_slice(9))  # replaced after the check: not shown
    page = write_check_page(out, copy, records).read_text(encoding="utf-8")
    import base64

    from brainclust.report.thumbnails import jpeg_bytes, placeholder

    assert "Not shown: 1 image whose file is not the one checked" in page and "could not be shown" not in page
    cross = "data:image/jpeg;base64," + base64.b64encode(jpeg_bytes(placeholder(96))).decode("ascii")
    assert page.count(cross) == 1  # the photograph's tile: a placeholder, not the new picture
    with pytest.raises(Exception, match="does not list the images checked"):
        write_check_page(out, copy, records[:-1])


def test_galleries_spread_over_the_folder_and_groups_across_splits_come_first():
    """A gallery showed the first 16 images in scan order, often one folder (a new user's 92 not_mri images showed
    only two folders); now 16 spread evenly. Of the duplicate groups, those across splits and the largest first,
    each copy captioned exact or near (a new user could not tell them apart)."""
    from brainclust.report.checks import checks_context, spread

    assert spread(list(range(100)), 4) == [0, 33, 66, 99] and spread([1, 2], 16) == [1, 2]
    quality = [{"path": f"f{i:03d}.png", "flags": "not_mri", "duplicate_of": ""} for i in range(40)]
    quality += [{"path": "a.png", "flags": "", "duplicate_of": ""}, {"path": "b.png", "flags": "", "duplicate_of": ""},
                {"path": "c.png", "flags": "", "duplicate_of": ""}]
    quality += [{"path": "a2.png", "flags": "duplicate", "duplicate_of": "a.png"},
                {"path": "b2.png", "flags": "duplicate", "duplicate_of": "b.png"},
                {"path": "b3.png", "flags": "duplicate", "duplicate_of": "b.png"},
                {"path": "c2.png", "flags": "duplicate", "duplicate_of": "c.png"},
                {"path": "c3.png", "flags": "near_duplicate", "duplicate_of": "c.png"}]
    leakage = [{"group": "c.png", "splits": "test;train"}]
    ctx = checks_context(quality, leakage, {}, lambda p: {"name": p, "row": None, "src": None}, clustered=False,
                         cap=4, max_groups=2)
    assert [t["name"] for t in ctx["galleries"][0]["tiles"]] == ["f000.png", "f013.png", "f026.png", "f039.png"]
    assert [g["rep"] for g in ctx["groups"][0]["groups"]] == ["c.png", "b.png"]
    assert [t["kind"] for t in ctx["groups"][0]["groups"][0]["tiles"]] == ["", "exact copy", "near copy"]


def test_a_near_duplicate_box_shows_the_exact_copies_of_its_members_as_the_summary_counts_them():
    """The summary's "groups of up to N" counts a near group with the byte copies of its members (the 4-class
    set: Te-no_0142's group of 11, whose box showed 10: Tr-no_0143, a copy of the member Tr-no_0142, was left
    out); the box now shows them, each after its member; the duplicate boxes stay as they were."""
    from brainclust.report.checks import checks_context

    rows = [("r.png", "", ""), ("n1.png", "near_duplicate", "r.png"), ("rc.png", "duplicate", "r.png"),
            ("n2.png", "near_duplicate", "r.png"), ("n1c.png", "duplicate", "n1.png")]
    quality = [{"path": p, "flags": f, "duplicate_of": d} for p, f, d in rows]
    ctx = checks_context(quality, [], {}, lambda p: {"name": p, "row": None, "src": None}, clustered=False,
                         group_size=8)
    dup, near = ctx["groups"]
    assert near["flag"] == "near_duplicate" and near["n"] == 2 and near["n_groups"] == 1
    box = near["groups"][0]
    assert box["size"] == 5 and [(t["name"], t["kind"]) for t in box["tiles"]] == [
        ("r.png", ""), ("n1.png", "near copy"), ("n1c.png", "exact copy of n1.png"), ("rc.png", "exact copy"),
        ("n2.png", "near copy")]
    assert [(g["rep"], g["size"]) for g in dup["groups"]] == [("r.png", 4), ("n1.png", 2)]


def test_an_image_that_could_not_be_decoded_is_not_counted_as_checked():
    """A walk of the pages (2026-12-07): a run over 24 readable images and a truncated JPEG (skipped, listed in
    quality.csv with an error) said "25 images checked, 1 flagged" above "not checked: 1 image" (its manifest:
    n_checked 24); brainclust check's page said the same of its 25 images."""
    from brainclust.report.checks import checks_context
    from brainclust.report.render import render

    quality = [{"path": "a.png", "flags": "", "duplicate_of": "", "error": ""},
               {"path": "a2.png", "flags": "duplicate", "duplicate_of": "a.png", "error": ""},
               {"path": "bad.jpg", "flags": "", "duplicate_of": "", "error": "cannot decode image: truncated"}]
    ctx = checks_context(quality, [], {}, lambda p: {"name": p, "row": None, "src": None}, clustered=True)
    assert (ctx["n"], ctx["n_checked"], ctx["n_not_checked"]) == (3, 2, 1)
    html = render("check.html.j2", {"checks": ctx, "n_files": 3, "skipped": [], "n_withheld": 0, "n_refused": 0,
                                    "n_missing": 0, "version": "test", "input": "data"})
    assert "3 images from 3 files." in html and "2 images checked, 1 flagged" in html
    assert "<h3>not checked: 1 image</h3>" in html


def test_the_manifest_counts_as_checked_only_the_images_that_decoded(data, tmp_path):
    """brainclust check recorded n_checked 25 for 24 decodable images and a truncated one (n_not_checked 1),
    where a run over the same images records 24: checked means decoded and checked, in both."""
    bad = tmp_path / "data"
    shutil.copytree(data, bad)
    truncated = bad / "train" / "s2.png"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    out = tmp_path / "o"
    assert main(["-q", "check", str(bad), "--out", str(out), "--cache-dir", str(tmp_path / "c")]) == 0
    checks = json.loads((out / "manifest.json").read_text())["checks"]
    rows = (out / "quality.csv").read_text().splitlines()[1:]
    assert checks["n_not_checked"] == 1 and checks["n_checked"] == len(rows) - 1
