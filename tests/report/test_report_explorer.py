"""The report's explorer data without a browser: columns, size budget, sample, stored map, associations, safety."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from explorer_fixtures import make_run, read_rows
from PIL import Image

from brainclust.io.atomic import file_sha256
from brainclust.io.runfolder import read_run
from brainclust.report.associations import MAX_ROWS, read_associations
from brainclust.report.build import build_report
from brainclust.report.columns import MAX_CATEGORIES, NONE, OTHER, describe, describe_rows
from brainclust.report.mapcoords import normalise, save_map
from brainclust.report.thumbnails import Thumbnails, is_safe_relpath


def payload(page: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="map-data">(.*?)</script>', page, re.S).group(1))


# -- columns ---------------------------------------------------------------------------
def test_columns_are_classified_by_role_and_by_values():
    assert describe("path", ["a.png", "b.png"]).kind == "text"
    assert describe("cluster", ["0", "1", "-1"]).kind == "cat"
    assert describe("size", ["10", "20"]).kind == "num"
    assert describe("age", [str(v) for v in range(40)]).kind == "num"          # many numbers
    assert describe("site_id", ["1", "2", "3", "1"]).kind == "cat"             # few numbers: codes
    assert describe("plane", ["axial", "coronal", ""]).kind == "cat"
    assert describe("uid", [f"u{i}" for i in range(3000)]).kind == "text"    # one value per row


def test_categories_ids_in_order_noise_last_and_grey_empty_is_none():
    col = describe("cluster", ["2", "10", "-1", "0", "2"])
    assert col.categories == ["0", "2", "10", "noise"] and col.raw == ["0", "2", "10", "-1"]
    assert col.colours[-1] == "#9e9e9e" and len(set(col.colours[:3])) == 3
    assert col.counts == [1, 2, 1, 1] and [col.display(i) for i in range(5)] == ["2", "10", "-1", "0", "2"]
    flags = describe("flags", ["dark", "", "dark", "tiny"])
    assert flags.categories == ["dark", "tiny", NONE] and flags.display(1) == ""


def test_rare_values_share_other_and_keep_their_names():
    values = [f"v{i:02d}" for i in range(40) for _ in range(40 - i)]
    col = describe("scanner", values)
    assert len(col.categories) == MAX_CATEGORIES and col.categories[-1] == OTHER
    assert sum(col.counts) == len(values)
    rare = values.index("v39")
    assert col.categories[col.codes[rare]] == OTHER and col.display(rare) == "v39"


def test_describe_rows_keeps_the_header_order():
    rows = [{"path": "a", "cluster": "0", "x": "1"}, {"path": "b", "cluster": "1", "x": "2"}]
    assert [c.name for c in describe_rows(rows)] == ["path", "cluster", "x"]


# -- associations.csv ------------------------------------------------------------------
def test_associations_sorted_bad_numbers_blank_and_capped(tmp_path):
    p = tmp_path / "associations.csv"
    assert read_associations(p) is None
    lines = ["column,level,score,p_value", "site,level_2,0.2,0.01", "plane,level_3,0.9,1e-9", "flags,cluster,x,nan"]
    lines += [f"c{i},level_1,0.{i:02d},0.5" for i in range(60)]
    p.write_text("\n".join(lines) + "\n")
    rows = read_associations(p)
    assert len(rows) == MAX_ROWS and rows[0]["column"] == "plane" and rows[0]["p_value"] == pytest.approx(1e-9)
    assert all(r["score"] is not None for r in rows)                    # the unparsable one sorts last
    p.write_text("a,b\n1,2\n")
    assert read_associations(p) == []


def test_columns_that_are_the_same_as_another_share_its_row(tmp_path):
    """--labels-from-folders ranks folder and then an identical label at every level: one row each, read
    ``folder (= label)``, folded before the cap; a same_as naming no row of its level stays a row."""
    p = tmp_path / "associations.csv"
    lines = ["level,column,score,p_value,same_as"]
    for lv in ["cluster"] + [f"level_{L}" for L in range(2, 11)]:
        lines += [f"{lv},folder,0.3,0.005,", f"{lv},label,0.3,0.005,folder", f"{lv},subject,0.3,0.005,folder",
                  f"{lv},size,0.1,0.005,"] + [f"{lv},c{i},0.0{i},0.5," for i in range(3)]
    lines.append("level_2,ghost,0.2,0.01,nosuchcolumn")
    p.write_text("\n".join(lines) + "\n")
    rows = read_associations(p)
    assert len(rows) == MAX_ROWS and rows[0] == {"column": "folder (= label, subject)", "level": "cluster",
                                                  "statistic": "", "score": 0.3, "p_value": 0.005}
    assert not any(r["column"] in ("label", "subject") for r in rows)
    assert sum(r["column"] == "folder (= label, subject)" for r in rows) == 10  # every level, despite the cap
    assert {"column": "ghost", "level": "level_2", "statistic": "", "score": 0.2, "p_value": 0.01} in rows


# -- the report ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = make_run(tmp_path_factory.mktemp("rx"), n_per=20)
    (out / "associations.csv").write_text("column,level,statistic,score,p_value\n<b>site</b>,level_2,AMI,0.31,0.002\n"
                                          "plane,level_3,epsilon2,0.74,1e-12\n", encoding="utf-8")
    info = build_report(out, write_figures=False)
    return out, info, info.path.read_text(encoding="utf-8")


def test_every_image_and_every_column_is_in_the_file(built):
    out, info, page = built
    d = payload(page)
    rows = read_rows(out)
    assert d["n"] == d["n_total"] == len(rows) and not d["sampled"]
    assert d["names"] == [r["path"] for r in rows]
    kinds = {c["name"]: c["kind"] for c in d["columns"]}
    assert kinds["site"] == "cat" and kinds["flags"] == "cat" and kinds["age"] == "num"
    assert kinds["level_3"] == "cat" and kinds["path"] == "text"
    age = next(c for c in d["columns"] if c["name"] == "age")
    assert age["values"] == [float(r["age"]) for r in rows]
    assert all(t.startswith("data:image/jpeg;base64,") for t in d["thumbs"])
    assert len(d["x"]) == len(rows) and 0 <= min(d["x"]) and max(d["x"]) <= 1


def test_scores_first_settings_folded_without_empty_rows(built):
    _, _, page = built
    assert page.index('id="headline"') < page.index('<section id="summary">') < page.index('<section id="scores">')
    settings = re.search(r'<table id="settings">(.*?)</table>', page, re.S).group(1)
    for empty in ("workers", "ray_address", "ssl", "progress"):           # None, "", [] in the manifest
        assert f"<th>{empty}</th>" not in settings
    assert "<th>seed</th>" in settings
    assert re.search(r'<details id="run-details">.*<table id="settings">', page, re.S)


def test_associations_ranked_and_escaped(built):
    _, _, page = built
    table = re.search(r'<table id="associations-table">(.*?)</table>', page, re.S).group(1)
    assert table.index("plane") < table.index("site") and "<b>site" not in table
    assert "&lt;b&gt;site&lt;/b&gt;" in table
    assert "<th>statistic</th>" in table and "<td>AMI</td>" in table and "<td>\u03b5\u00b2</td>" in table


def test_the_budget_holds_and_a_sample_keeps_every_cluster_and_the_montages(tmp_path):
    out = make_run(tmp_path, n_per=60)
    rows = read_rows(out)
    info = build_report(out, write_figures=False, size_budget_mb=0.3)
    page = info.path.read_text(encoding="utf-8")
    d = payload(page)
    assert info.size_bytes <= 0.3e6 and d["sampled"] and d["n"] < len(rows)
    assert {rows[i]["cluster"] for i in d["rows"]} == {r["cluster"] for r in rows}
    montage_rows = {int(v) for v in re.findall(r'<figure data-row="(\d+)"', page)}
    assert montage_rows and montage_rows <= set(d["rows"])
    assert f"This file holds {d['n']} of the {len(rows)} images" in re.sub(r"<[^>]+>", "", page)
    man = json.loads((out / "manifest.json").read_text())["report"]
    assert man["n_map_points"] == d["n"] and man["size_budget_bytes"] == 300000
    big = build_report(out, write_figures=False)
    assert json.loads((out / "manifest.json").read_text())["report"]["thumbnail_px"] > man["thumbnail_px"]
    assert payload(big.path.read_text(encoding="utf-8"))["n"] == len(rows)


def test_a_stored_map_is_used(tmp_path):
    out = make_run(tmp_path, n_per=10)
    n = len(read_rows(out))
    coords = np.random.default_rng(5).normal(size=(n, 2)).astype(np.float32)
    save_map(out, coords)
    d = payload(build_report(out, write_figures=False).path.read_text(encoding="utf-8"))
    xy = normalise(coords)
    assert np.allclose(d["x"], xy[:, 0], atol=6e-5) and np.allclose(d["y"], xy[:, 1], atol=6e-5)
    rep = json.loads((out / "manifest.json").read_text())["report"]
    assert rep["map"]["source"] == "map.npy" and "map.npy" in rep["sources"]


def test_report_never_reads_outside_the_data_folder(tmp_path):
    out = make_run(tmp_path, n_per=4)
    secret = tmp_path / "outside.png"
    Image.fromarray(np.full((20, 20), 255, np.uint8)).save(secret)
    rows = read_rows(out)
    hashes = [file_sha256(secret)] * 2 + [read_run(out).hashes[0]]
    thumbs = Thumbnails(tmp_path / "data", [{"path": "../outside.png", "type": "png"},
                                            {"path": str(secret), "type": "png"}, rows[0]], hashes)
    assert thumbs.array(0) is None and thumbs.array(1) is None and thumbs.array(2) is not None
    assert thumbs.n_missing == 2 and thumbs.n_refused == 2
    assert Thumbnails(tmp_path / "data", [rows[0]], None).array(0) is None  # no recorded hash: never opened
    assert not is_safe_relpath("a/../../b") and not is_safe_relpath("/etc/passwd") and is_safe_relpath("a/b#c=1")


def test_a_color_by_column_the_run_lacks_is_refused_when_given_and_a_run_setting_falls_back(tmp_path, caplog):
    """`report --color-by sitee` warned and coloured by cluster while `run` refused the same typo."""
    from brainclust.errors import ParameterError

    out = make_run(tmp_path, n_per=6)
    with pytest.raises(ParameterError, match="--color-by: no column \"sitee\".*did you mean site"):
        build_report(out, write_figures=False, color_by="sitee")
    info = build_report(out, write_figures=False, color_by="site")
    assert '"colour": "site"' in info.path.read_text(encoding="utf-8")
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    manifest.setdefault("settings", {})["color_by"] = "gone_column"  # the run's own setting: its column may have gone
    del manifest["report"]["color_by"]  # the --color-by site kept above would come first
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with caplog.at_level("WARNING", logger="brainclust"):
        info = build_report(out, write_figures=False)
    assert "no such column to colour the map by" in caplog.text
    assert '"colour": "cluster"' in info.path.read_text(encoding="utf-8")
