"""The summary's "Images clustered" row counts the files the scan left out (``--include``, ``--exclude-files``, a
BIDS rule) and says ``--exclude``'s set-aside images once; the associations note names the run's own folded
columns. Fake finished runs (no CNN), as in test_report; the sentences of report/runtext directly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_report import fake_run, mark_set_aside

from brainclust.report.build import build_report
from brainclust.report.runtext import clustered_text, files_text, k_text


def images_row(page: str) -> str:
    return re.search(r'<tr id="images-row"><th>Images clustered</th><td>(.*?)</td></tr>', page, re.S).group(1)


def with_scan(out: Path, **scan) -> Path:
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["scan"] = scan
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def page_of(out: Path) -> str:
    return build_report(out, write_figures=False).path.read_text(encoding="utf-8")


def test_files_left_out_by_include_are_counted(tmp_path):
    """The walk of 2026-12-07: '50 images from 200 files (0 skipped)' when --include left 150 out."""
    out = with_scan(fake_run(tmp_path, n_per=4, k=2), metadata_files=0,
                    left_out={"--include/--exclude-files": 150})
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["n_files_scanned"] = 159
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert images_row(page_of(out)) == "8 images from 9 of 159 files (150 left out by --include/--exclude-files, " \
                                       "1 skipped)"


@pytest.mark.parametrize("manifest, expected", [
    ({"n_files_scanned": 22, "scan": {"metadata_files": 2, "left_out": {}}},
     "22 files (2 of them metadata, 0 skipped)"),
    ({"n_files_scanned": 22, "scan": {"metadata_files": 0, "left_out": {"--include/--exclude-files": 18}}},
     "4 of 22 files (18 left out by --include/--exclude-files, 0 skipped)"),
    ({"n_files_scanned": 30, "scan": {"metadata_files": 2, "left_out": {
        "hidden (name starts with '.'; a hidden folder counts once)": 1, "--include/--exclude-files": 7}}},
     "22 of 30 files (7 left out by --include/--exclude-files, 1 left out (hidden), 2 of the 22 metadata, 0 skipped)"),
    ({"n_files_scanned": 22}, "22 files (0 skipped)"),                               # older runs: no scan record
    ({"n_files_scanned": 22, "scan": {"left_out": "x", "metadata_files": "2"}}, "22 files (0 skipped)"),  # damaged
    ({"n_files_scanned": 5, "scan": {"left_out": {"--include/--exclude-files": 9}}}, "5 files (0 skipped)"),
])
def test_the_files_clause(manifest, expected):
    assert files_text(manifest, 0) == expected


def test_exclude_says_clustered_and_set_aside_once(tmp_path):
    """'188 images from 200 files (0 skipped); 12 more images set aside' read as if 12 files gave nothing."""
    out = fake_run(tmp_path, n_per=8, k=2, method="kmeans", clusters_override=[0] * 8 + [1] * 6 + [-1] * 2)
    mark_set_aside(out, 2)
    row = images_row(page_of(out))
    assert row == "16 images from 17 files (1 skipped): 14 clustered, 2 set aside by --exclude (not clustered)"
    assert clustered_text("volume", 20, 0, 160, "22 files (0 skipped)") == (
        "20 volumes (one row each: the mean of their slices' features) made of 160 images from 22 files (0 skipped)")


def test_the_associations_note_names_the_runs_own_folded_columns(tmp_path):
    """It always said 'folder (= label)', in runs labelled by another column and in runs with no labels."""
    out = fake_run(tmp_path, n_per=6)
    head = "level,rank,column,kind,statistic,score,p_value,n,n_values,same_as,coarser_of,permutations,perm_rows\n"
    (out / "associations.csv").write_text(head + "cluster,1,subject,categorical,AMI,0.27,0.005,18,3,,,199,18\n"
                                          "cluster,2,folder,categorical,AMI,0.27,0.005,18,3,subject,,199,18\n"
                                          "level_2,1,subject,categorical,AMI,0.2,0.005,18,3,,,199,18\n"
                                          "level_2,2,folder,categorical,AMI,0.2,0.005,18,3,subject,,199,18\n",
                                          encoding="utf-8")
    note = re.search(r'<p class="note">From associations.csv:(.*?)</p>', page_of(out), re.S).group(1)
    assert note.endswith('named "column (= same column)": here subject (= folder).')
    assert "folder (= label)" not in note
    (out / "associations.csv").write_text(head + "cluster,1,site,categorical,AMI,0.27,0.005,18,3,,,199,18\n",
                                          encoding="utf-8")
    note = re.search(r'<p class="note">From associations.csv:(.*?)</p>', page_of(out), re.S).group(1)
    assert note.endswith("(none here).") and " (= " not in note.replace("(= same column)", "")


def test_a_cut_associations_table_says_how_many_rows_there_are(tmp_path):
    """A walk of the pages (2026-12-07): the 4-class run's table showed 40 rows of the 70 in associations.csv
    (80 lines, label folded into folder) with no word of the others; a reader comparing it with the file found
    30 missing."""
    from brainclust.report.associations import MAX_ROWS

    def level_rows(lv: str) -> str:  # folder, label (= folder) and 6 numeric columns: 7 rows on the page
        return (f"{lv},1,folder,categorical,AMI,0.3,0.005,18,3,,,199,18\n"
                f"{lv},2,label,categorical,AMI,0.3,0.005,18,3,folder,,199,18\n"
                + "".join(f"{lv},{3 + i},c{i},numeric,AMI_quintiles,0.0{i},0.5,18,18,,,199,18\n" for i in range(6)))

    def table_rows(page: str) -> int:
        return page.split('<table id="associations-table">')[1].split("</table>")[0].count("<tr><td>")

    out = fake_run(tmp_path, n_per=6)
    head = "level,rank,column,kind,statistic,score,p_value,n,n_values,same_as,coarser_of,permutations,perm_rows\n"
    levels = ["cluster"] + [f"level_{L}" for L in range(2, 11)]
    (out / "associations.csv").write_text(head + "".join(map(level_rows, levels)), encoding="utf-8")
    page = page_of(out)
    assert table_rows(page) == MAX_ROWS
    assert f"The table shows its first {MAX_ROWS} of 70 rows (the clusters' first" in page
    (out / "associations.csv").write_text(head + level_rows("cluster"), encoding="utf-8")
    page = page_of(out)
    assert table_rows(page) == 7 and "table shows its" not in page


def test_a_count_of_one_unit_is_singular():
    """Montage headings of a unit run said "1 volumes (5.0%)"."""
    from brainclust.report.render import counted

    assert [counted(1, "volume"), counted(20, "volume"), counted(1, "slice"), counted(3, "slice")] == [
        "1 volume", "20 volumes", "1 image", "3 images"]
    assert counted(1, "series") == "1 series" and counted(2, "subject") == "2 subjects"


def test_a_count_of_one_is_singular_on_the_page(tmp_path):
    """The page said '1 clusters', '1 files skipped', '1 hits, 1 misses', '1 images checked' and '1 rows in
    leakage.csv' (its own counts never went through brainclust.terminal.count_text)."""
    from brainclust.report.render import render

    out = fake_run(tmp_path, n_per=4, k=2, clusters_override=[0] * 8)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["cache"] = {"hits": 1, "misses": 1}
    (out / "manifest.json").write_text(json.dumps(manifest))
    page = page_of(out)
    assert '<span class="chip">1 cluster (' in page and '<span class="chip">1 file skipped</span>' in page
    assert "1 cluster found" in page and "<td>1 hit, 1 miss</td>" in page and " 1 clusters" not in page
    checks = {"summary": "", "n": 1, "n_checked": 1, "n_flagged": 0, "split_source": "splits.csv", "n_leakage": 1,
              "leak_splits": [], "exclude": [], "clustered": False, "groups": [], "galleries": [], "not_checked": []}
    skipped = [{"path": "broken.png", "reason": "not a recognised image file"}]
    html = render("check.html.j2", {"checks": checks, "n_files": 1, "skipped": skipped, "n_withheld": 1,
                                    "n_refused": 0, "n_missing": 0, "version": "test", "input": "data"})
    assert "1 image from 1 file (1 file skipped: " in html and "1 image checked, 0 flagged" in html
    assert "; 1 row in leakage.csv" in html and "Not shown: 1 DICOM image that may show" in html


def test_a_skipped_folder_is_named_a_folder_on_the_pages(tmp_path):
    """The chip said '2 files skipped' for a broken file and a brainclust output folder inside the data."""
    from brainclust.report.render import render

    out = fake_run(tmp_path, n_per=4, k=2)
    manifest = json.loads((out / "manifest.json").read_text())
    folder = {"path": "results", "reason": "a brainclust output folder (manifest.json, assignments.csv): its "
                                           "figures are not data; not read"}
    manifest["skipped"].append(folder)
    (out / "manifest.json").write_text(json.dumps(manifest))
    page = page_of(out)
    assert '<span class="chip">1 file and 1 folder skipped</span>' in page and "Skipped (1 file and 1 folder)" in page
    checks = {"summary": "", "n": 1, "n_checked": 1, "n_flagged": 0, "split_source": "", "n_leakage": 0,
              "leak_splits": [], "exclude": [], "clustered": False, "groups": [], "galleries": [], "not_checked": []}
    html = render("check.html.j2", {"checks": checks, "n_files": 2, "skipped": [folder], "n_withheld": 0,
                                    "n_refused": 0, "n_missing": 0, "version": "test", "input": "data"})
    assert "1 image from 2 files (1 folder skipped: " in html


@pytest.mark.parametrize("level", [255.0, 200.0, 0.0, 4000.0, 0.5])
def test_a_thumbnail_of_one_level_is_mid_grey(level):
    """A white blank page was drawn black in the galleries (found by a new user's planted blanks): an image of one
    level is mid-grey whatever its units (a review: 200 of a 16-bit file is near black); a real image is still
    stretched."""
    import numpy as np

    from brainclust.report.thumbnails import to_uint8

    assert np.all(to_uint8(np.full((20, 30), level)) == 128)
    ramp = np.tile(np.linspace(10, 60, 30), (20, 1))
    out = to_uint8(ramp)
    assert out.min() == 0 and out.max() == 255


def test_a_dbscan_run_names_its_eps_not_the_k_it_ignored(tmp_path):
    """A walk of the pages (2026-12-07): `brainclust run DATA --method dbscan`, which ignores --k (README), read
    "1 cluster (dbscan, k = 4), 18 noise" in the header and "dbscan, k = 4: 1 cluster found" in the summary."""
    out = fake_run(tmp_path, n_per=6, k=3, method="dbscan")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["clustering"]["dbscan_eps"] = 0.68612
    (out / "manifest.json").write_text(json.dumps(manifest))
    page = page_of(out)
    assert "(dbscan, eps = 0.686)" in page and "<td>dbscan, eps = 0.686: " in page and "k = 3" not in page
    del manifest["clustering"]["dbscan_eps"]  # an older manifest: no eps, and still no k
    assert k_text(manifest, 3) == "no k"
    assert k_text({"settings": {"method": "kmeans", "k": 3}, "clustering": {"method": "kmeans", "k": 3}}, 3) == "k = 3"
