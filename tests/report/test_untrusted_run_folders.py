"""export, report and view treat a run folder as untrusted input (issue 21).

A tampered ``assignments.csv`` (``../../etc/passwd``, an absolute path, a link out of the data
folder, a NUL byte, a FIFO) never makes ``export`` copy or link a file from outside the input
folder recorded in ``manifest.json``: the whole export is refused with one line and nothing is
written; ``report`` and ``view`` draw such rows as placeholders without opening their files. A
damaged run folder (``manifest.json`` holding ``[]``, a truncated or edited ``assignments.csv``,
missing columns, bytes that are not UTF-8...) is exit 2 with one line in each command.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainclust.cli import main
from conftest import record_hashes

ARGS = ["--backbone", "pixels@16", "--pca", "3", "--workers", "0", "-q"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A finished run (with report) over ``data/``, an ``outside/`` folder with a secret image and text,
    and, added to ``data/`` after the run, a link out of it and a FIFO."""
    tmp = tmp_path_factory.mktemp("untrusted")
    rng = np.random.default_rng(0)
    for i in range(8):
        a = (rng.integers(0, 50, (20, 20)) + 150 * (i % 2)).astype(np.uint8)
        (tmp / "data" / f"g{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(tmp / "data" / f"g{i % 2}" / f"i{i}.png")
    assert main(["run", str(tmp / "data"), "--out", str(tmp / "run"), "--k", "2", "--cache-dir",
                 str(tmp / "cache"), *ARGS]) == 0
    (tmp / "outside").mkdir()
    Image.fromarray(np.full((20, 20), 99, np.uint8)).save(tmp / "outside" / "secret.png")
    (tmp / "outside" / "secret.txt").write_text("root:x:0:0:secret\n")
    os.symlink(tmp / "outside" / "secret.png", tmp / "data" / "g0" / "link_out.png")
    os.mkfifo(tmp / "data" / "g0" / "fifo.png")
    return tmp


@pytest.fixture
def run(base, tmp_path):
    shutil.copytree(base / "run", tmp_path / "run")
    return tmp_path / "run"


def rows_of(run: Path) -> list[dict]:
    with open(run / "assignments.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def write_rows(run: Path, rows: list[dict], header=None) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header or list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    (run / "assignments.csv").write_text(buf.getvalue(), encoding="utf-8")


def tamper(run: Path, *paths: str) -> None:
    rows = rows_of(run)
    for i, p in enumerate(paths):
        rows[i] = {**rows[i], "path": p}
    write_rows(run, rows)


def edit_manifest(run: Path, **fields) -> None:
    m = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**m, **fields}))


def one_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err[-3000:]
    assert lines[0].startswith("brainclust: error: ") and "Traceback" not in err
    return lines[0]


def tampered_paths(base: Path) -> dict[str, str]:
    return {"dotdot": "../outside/secret.png", "etc": "../../../../../../../../etc/passwd",
            "absolute": str(base / "outside" / "secret.png"), "abs_etc": "/etc/passwd",
            "middle": "g0/../../outside/secret.png", "link_out": "g0/link_out.png",
            "frame": "../outside/vol.nii#axial=3", "nul": "g0/i0.png\\x00.txt"}


# -- export ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["copy", "symlink"])
@pytest.mark.parametrize("kind", ["dotdot", "etc", "absolute", "abs_etc", "middle", "link_out", "frame", "nul"])
def test_export_refuses_a_path_out_of_the_input_folder(run, base, tmp_path, capsys, kind, mode):
    tamper(run, tampered_paths(base)[kind])
    capsys.readouterr()
    keep = ["--dicom-headers", "keep"] if mode == "symlink" else []  # a link carries the headers: asked for
    assert main(["-q", "export", str(run), "--to", str(tmp_path / "exp"), "--mode", mode, *keep]) == 2
    line = one_error(capsys)
    assert "row 1" in line and "refused" in line and "nothing was exported" in line
    assert not (tmp_path / "exp").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging folder either


def test_export_refuses_a_file_that_is_not_an_image_under_a_tampered_input(run, base, tmp_path, capsys):
    """Even when manifest.json's input is changed to another folder, only image files are ever placed."""
    edit_manifest(run, input=str(base / "outside"))
    tamper(run, "secret.txt")
    record_hashes(run, base / "outside")  # even with its hash recorded (its content known), a text file is refused
    capsys.readouterr()
    assert main(["-q", "export", str(run), "--to", str(tmp_path / "exp")]) == 2
    assert "not an image file brainclust reads" in one_error(capsys)
    assert not (tmp_path / "exp").exists()


def set_hash(run: Path, row: int, sha256: str) -> None:
    """Record ``sha256`` for ``row`` in embeddings.parquet, its path following assignments.csv (a consistent tamper)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(run / "embeddings.parquet", columns=["path", "sha256"]).to_pydict()
    t["path"][row], t["sha256"][row] = rows_of(run)[row]["path"], sha256
    pq.write_table(pa.table(t), run / "embeddings.parquet")


@pytest.mark.parametrize("path", ["a" * 300 + ".png", "g0/" + "b" * 5000 + ".png", "c" * 300 + ".nii#axial=1"])
def test_export_refuses_a_name_too_long_for_the_file_system_in_one_short_line(run, tmp_path, capsys, path):
    """A part over 255 bytes makes ``exists()`` raise ENAMETOOLONG: it was an internal error (exit 1) printing the
    whole path; now the row is refused like any other unusable row, the name cut in the message."""
    tamper(run, path)
    set_hash(run, 0, "0" * 64)  # a consistent tamper: embeddings.parquet names the same path
    capsys.readouterr()
    assert main(["-q", "export", str(run), "--to", str(tmp_path / "exp")]) == 2
    line = one_error(capsys)
    assert "row 1" in line and "File name too long" in line and "nothing was exported" in line
    assert len(line) < 600 and "…" in line
    assert not (tmp_path / "exp").exists()


def test_a_long_path_out_of_the_input_folder_is_refused_in_a_short_line(run, tmp_path, capsys):
    tamper(run, "../" + "d" * 5000 + ".png")
    capsys.readouterr()
    assert main(["-q", "export", str(run), "--to", str(tmp_path / "exp")]) == 2
    line = one_error(capsys)
    assert "refused" in line and len(line) < 600


@pytest.mark.parametrize("value", ["\u00e9" * 64, "ab" * 32 + "zz", None])
def test_odd_recorded_hashes_are_no_hash(run, capsys, value):
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(run / "embeddings.parquet", columns=["path", "sha256"]).to_pydict()
    t["sha256"][0] = value
    pq.write_table(pa.table(t), run / "embeddings.parquet")
    assert main(["-q", "report", str(run)]) == 0
    assert json.loads((run / "manifest.json").read_text())["report"]["n_refused_paths"] == 1


def test_export_refuses_a_fifo_without_opening_it(run, tmp_path, capsys):
    tamper(run, "g0/fifo.png")  # opening it would block forever
    set_hash(run, 0, "ab" * 32)
    capsys.readouterr()
    assert main(["-q", "export", str(run), "--to", str(tmp_path / "exp")]) == 2
    assert "not a regular file" in one_error(capsys)


def test_an_edited_input_folder_shows_and_exports_no_file_the_run_did_not_cluster(run, base, tmp_path, capsys,
                                                                                monkeypatch):
    """manifest.json's ``input`` moved up to a folder that holds other images: the paths stay inside it, but
    no file's bytes hash to what the run recorded, so none reaches a report, the explorer or an export."""
    import brainclust.io.scan as S
    from brainclust.report.thumbcache import ThumbCache
    from brainclust.report.viewdata import ViewData

    edit_manifest(run, input=str(base))
    tamper(run, "outside/secret.png", "data/g1/i1.png")
    capsys.readouterr()
    assert main(["-q", "export", str(run), "--to", str(tmp_path / "exp")]) == 2
    line = one_error(capsys)
    assert "row 1" in line and "no content hash" in line and not (tmp_path / "exp").exists()
    set_hash(run, 0, "ab" * 32)  # a hash recorded, but not that of the file found there
    assert main(["-q", "export", str(run), "--to", str(tmp_path / "exp")]) == 2
    assert "not the file the run clustered" in one_error(capsys)
    opened: list[str] = []
    real = S.read_record
    monkeypatch.setattr(S, "read_record", lambda rec: opened.append(rec.abspath) or real(rec))
    assert main(["-q", "report", str(run)]) == 0
    # no decoder touches a file: row 1's bytes are not those recorded, row 2 has no recorded hash, and the
    # others' paths name no file under the new input
    assert opened == []
    assert json.loads((run / "manifest.json").read_text())["report"]["n_refused_paths"] == 2
    data = ViewData(run, cache_dir=run.parent / "viewcache")
    thumbs = ThumbCache(data, run.parent / "viewcache")
    try:
        assert {thumbs.get(i, 64)[1] for i in range(2)} == {"refused"}
    finally:
        thumbs.close()


def test_a_file_changed_after_the_run_is_not_shown_or_exported(run, base, tmp_path, capsys):
    rows = rows_of(run)
    victim = base / "data" / rows[0]["path"]
    original = victim.read_bytes()
    try:
        Image.fromarray(np.full((20, 20), 7, np.uint8)).save(victim)
        assert main(["-q", "export", str(run), "--to", str(tmp_path / "exp")]) == 2
        assert "not the file the run clustered" in one_error(capsys)
        assert main(["-q", "report", str(run)]) == 0
        assert json.loads((run / "manifest.json").read_text())["report"]["n_refused_paths"] == 1
    finally:
        victim.write_bytes(original)


def test_an_untampered_export_still_works(run, tmp_path):
    assert main(["-q", "export", str(run), "--to", str(tmp_path / "exp")]) == 0
    assert sum(1 for p in (tmp_path / "exp").rglob("*.png")) == 8


# -- report and view ------------------------------------------------------------------------------------
def test_report_draws_tampered_rows_as_placeholders_and_never_opens_them(run, base, monkeypatch):
    import brainclust.io.scan as S

    opened: list[str] = []
    real = S.read_record

    def spy(record):
        opened.append(os.path.realpath(record.abspath))
        return real(record)

    monkeypatch.setattr(S, "read_record", spy)
    kinds = tampered_paths(base)
    tamper(run, kinds["dotdot"], kinds["absolute"], kinds["link_out"], kinds["etc"])
    assert main(["-q", "report", str(run)]) == 0
    root = os.path.realpath(base / "data")
    assert opened and all(p.startswith(root + os.sep) for p in opened), opened
    assert json.loads((run / "manifest.json").read_text())["report"]["n_refused_paths"] == 4


def test_view_serves_no_tampered_row(run, base):
    from brainclust.report.viewdata import ViewData
    from brainclust.report.thumbcache import ThumbCache

    kinds = tampered_paths(base)
    tamper(run, kinds["dotdot"], kinds["absolute"], kinds["link_out"])
    data = ViewData(run, cache_dir=run.parent / "viewcache")
    thumbs = ThumbCache(data, run.parent / "viewcache")
    try:
        assert [thumbs.get(i, 64)[1] for i in range(4)] == ["refused", "refused", "refused", "ok"]
    finally:
        thumbs.close()


@pytest.mark.parametrize("value", [str(2**70), "-5", "abc"])
def test_view_draws_a_run_with_an_odd_cluster_value(run, value):
    from brainclust.report.viewdata import ViewData

    rows = rows_of(run)
    rows[2]["cluster"] = value
    write_rows(run, rows)
    data = ViewData(run, cache_dir=run.parent / "viewcache")
    assert data.n == len(rows) and value in data.by_name["cluster"].categories


@pytest.mark.parametrize("number", ["9" * 400, "1e400"])
def test_view_of_metrics_with_a_number_beyond_floats_serves_its_page_without_them(run, number):
    """The view shows a --within run's scores inside the strata (metrics.json within.scores): an integer no float
    holds made the server fail at start (internal error: OverflowError); a damaged metrics.json is left out."""
    from brainclust.report import server as srv

    metrics = json.loads((run / "metrics.json").read_text())
    scores = {"mean_nmi": 0.5, "mean_ari": 0.25, "per_stratum": {"a": {"nmi": 0.5, "ari": 0.25, "n": 4}},
              "strata": {"nmi": "BIG", "ari": 0.1}}
    (run / "metrics.json").write_text(json.dumps({**metrics, "within": {"scores": scores}}).replace('"BIG"', number))
    server, ex = srv.make_server(run, port=0, cache_dir=run.parent / "viewcache")
    try:
        assert "Within the strata" not in ex.page.decode()
    finally:
        server.server_close()
        ex.close()


@pytest.mark.parametrize("value", ["0.9", "<b>x</b>", True, [0.9]])
def test_a_share_of_variance_that_is_no_number_is_left_out_of_the_pca_row(run, capsys, value):
    """manifest.json pca.explained_variance as a string (or a list...) ended the report in 'internal error:
    ValueError: Unknown format code 'f''; the PCA row now shows the components without it."""
    m = json.loads((run / "manifest.json").read_text())
    edit_manifest(run, pca={**m["pca"], "n_components": 3, "explained_variance": value})
    assert main(["-q", "report", str(run)]) == 0
    page = (run / "report.html").read_text(encoding="utf-8")
    assert '<tr id="pca-row"><th>PCA</th><td>3 components; seed 0</td></tr>' in page


@pytest.mark.parametrize("fields", [
    {"pca": None}, {"checks": {"exclude": 5}}, {"steer": {"within": "x"}}, {"steer": {"within": {"strata": "x"}}},
    {"steer": {"within": {"pca": [3]}}}])
def test_a_record_field_of_another_type_is_left_out_of_the_report(run, fields):
    """Fields inside manifest.json's records, read as untrusted: each of these ended the report in an internal
    error (AttributeError: 'NoneType' / 'str' object has no attribute 'get' / 'values'; TypeError: 'int' object
    is not iterable); the report is built without them."""
    m = json.loads((run / "manifest.json").read_text())
    edit_manifest(run, settings={**m["settings"], "within": "label" if "steer" in fields else None}, **fields)
    assert main(["-q", "report", str(run)]) == 0
    assert '<tr id="pca-row">' in (run / "report.html").read_text(encoding="utf-8")


def test_a_run_with_one_pca_component_has_its_report_and_view(base, tmp_path):
    from brainclust.report.viewdata import ViewData

    args = [a if a != "3" else "1" for a in ARGS]
    assert main(["run", str(base / "data"), "--out", str(tmp_path / "r"), "--k", "2", "--cache-dir",
                 str(base / "cache"), *args]) == 0
    assert (tmp_path / "r" / "report.html").is_file()
    (tmp_path / "r" / "map.npy").unlink(missing_ok=True)  # view computes its map from the 1-D features
    assert main(["-q", "report", str(tmp_path / "r")]) == 0
    data = ViewData(tmp_path / "r", cache_dir=tmp_path / "vc")
    assert data.n >= 8 and data.xy.shape == (data.n, 2)


def test_view_refuses_a_cache_folder_inside_the_run(run, capsys):
    capsys.readouterr()
    assert main(["-q", "view", str(run), "--port", "0", "--cache-dir", str(run / "cache")]) == 2
    assert "--cache-dir" in one_error(capsys)
    assert not (run / "cache").exists()


# -- damaged run folders: one line, exit 2, in every command ---------------------------------------------
def _damage(run: Path, kind: str) -> str:
    """Damage ``run``; return the name of the file the message must name."""
    text = (run / "assignments.csv").read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    rows = rows_of(run)
    if kind == "manifest_list":
        (run / "manifest.json").write_text("[]")
    elif kind == "manifest_garbage":
        (run / "manifest.json").write_text("{not json")
    elif kind == "manifest_missing":
        (run / "manifest.json").unlink()
    elif kind == "input_number":
        edit_manifest(run, input=5)
    elif kind == "input_relative":
        edit_manifest(run, input="data")
    elif kind == "settings_list":
        edit_manifest(run, settings=[1, 2])
    elif kind in ("scan_text", "units_text", "checks_text", "steer_text"):
        edit_manifest(run, **{kind.split("_")[0]: "x"})
    elif kind == "settings_seed":  # no run takes it: the map's t-SNE refused it (internal error)
        edit_manifest(run, settings={**json.loads((run / "manifest.json").read_text())["settings"], "seed": 2**40})
    elif kind == "truncated_mid_row":
        (run / "assignments.csv").write_text("".join(lines[:3]) + lines[3][: len(lines[3]) // 2], encoding="utf-8")
    elif kind == "truncated_at_a_line":
        (run / "assignments.csv").write_text("".join(lines[:4]), encoding="utf-8")
    elif kind == "missing_columns":
        write_rows(run, [{k: v for k, v in r.items() if k != "cluster"} for r in rows])
    elif kind == "not_utf8":
        (run / "assignments.csv").write_bytes(text.encode("utf-8").replace(b"i1.png", b"i1\xff\xfe.png"))
    elif kind == "empty":
        (run / "assignments.csv").write_bytes(b"")
    elif kind in ("cluster_text", "cluster_huge", "cluster_negative", "cluster_fullwidth"):
        rows[2]["cluster"] = {"cluster_text": "abc", "cluster_huge": str(2**70), "cluster_negative": "-5",
                              "cluster_fullwidth": "\uff11"}[kind]  # int() reads a full-width 1 as 1
        write_rows(run, rows)
    elif kind == "extra_field":
        (run / "assignments.csv").write_text(text.replace("\n", ",surplus\n", 3).replace(",surplus", "", 1),
                                             encoding="utf-8")
    elif kind == "duplicate_path":
        rows[1]["path"] = rows[0]["path"]
        write_rows(run, rows)
    elif kind in ("manifest_fifo", "assignments_fifo", "metrics_fifo"):  # reading one would block forever
        name = kind.split("_")[0] + (".csv" if kind.startswith("assignments") else ".json")
        (run / name).unlink()
        os.mkfifo(run / name)
        return name
    elif kind == "manifest_devzero":  # reading it would never end
        (run / "manifest.json").unlink()
        os.symlink("/dev/zero", run / "manifest.json")
    elif kind == "assignments_link":  # a link to a file out of the run (git-annex keeps links): never quoted
        secret = run.parent / f"{run.name}-secret.csv"
        secret.write_text("root:x:0:0:root:/root:/bin/bash,SECRET-CONTENT\n", encoding="utf-8")
        (run / "assignments.csv").unlink()
        os.symlink(secret, run / "assignments.csv")
    elif kind == "secret_row":  # a row that does not parse: the message names the file, never the row
        (run / "assignments.csv").write_text(text + "root:x:0:0:root:/root:/bin/bash,SECRET-CONTENT\n",
                                             encoding="utf-8")
    elif kind == "manifest_nan":  # not JSON a run writes; writing it back would fail after the report
        (run / "manifest.json").write_text((run / "manifest.json").read_text().replace('"kind"', '"x": NaN, "kind"', 1))
    elif kind == "manifest_overflow":  # valid JSON read as an infinity: writing it back failed after the report
        text = (run / "manifest.json").read_text()
        (run / "manifest.json").write_text(text.replace('"kind"', '"x": 1e400, "kind"', 1))
    elif kind == "metrics_bigint":  # valid JSON no float holds: formatting the score failed (OverflowError)
        scores = {"mean_nmi": "BIG", "mean_ari": 0.1, "per_stratum": {"a": {"nmi": 0.5, "ari": 0.1, "n": 4}}}
        metrics = json.loads((run / "metrics.json").read_text())
        text = json.dumps({**metrics, "within": {"scores": scores}})
        (run / "metrics.json").write_text(text.replace('"BIG"', "9" * 400))
        return "metrics.json"
    elif kind == "manifest_deep":
        (run / "manifest.json").write_text("[" * 200_000 + "]" * 200_000)
    elif kind == "huge_field":
        (run / "assignments.csv").write_text("x" * 200_000 + "\n", encoding="utf-8")
    elif kind == "metrics_list":
        (run / "metrics.json").write_text("[]")
        return "metrics.json"
    return ("manifest.json" if kind.startswith(("manifest", "input", "settings", "scan", "units", "checks", "steer"))
            else "assignments.csv")


DAMAGES = ["manifest_list", "manifest_garbage", "manifest_missing", "input_number", "input_relative", "settings_list",
           "truncated_mid_row", "truncated_at_a_line", "missing_columns", "not_utf8", "empty", "cluster_text",
           "cluster_huge", "cluster_fullwidth", "cluster_negative", "extra_field", "duplicate_path", "metrics_list",
           "manifest_fifo", "assignments_fifo", "metrics_fifo", "manifest_devzero", "manifest_deep", "huge_field",
           "manifest_nan", "manifest_overflow", "metrics_bigint", "scan_text", "units_text", "checks_text",
           "steer_text", "settings_seed", "assignments_link", "secret_row"]
#: What each command reads: export never reads the settings or metrics.json; view reads the rows as a table
#: (it needs no integer cluster nor unique paths to draw them) and does without metrics.json.
SKIP = {"export": {"settings_list", "metrics_list", "metrics_bigint", "metrics_fifo", "scan_text", "units_text",
                   "checks_text", "steer_text", "settings_seed"},
        "view": {"metrics_fifo", "cluster_text", "cluster_huge", "cluster_negative", "cluster_fullwidth",
                 "duplicate_path", "metrics_list", "metrics_bigint"}}


@pytest.mark.parametrize("command, kind", [(c, k) for c in ("report", "export", "view") for k in DAMAGES
                                           if k not in SKIP.get(c, ())])
def test_a_damaged_run_folder_is_one_line_and_exit_2(run, tmp_path, capsys, monkeypatch, command, kind):
    import brainclust.report.server as srv

    def stop(self, poll_interval=0.5):  # a view that starts would serve forever: end it at once (exit 0)
        raise KeyboardInterrupt

    monkeypatch.setattr(srv._Server, "serve_forever", stop)
    named = _damage(run, kind)
    before = {p.relative_to(run).as_posix(): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    argv = {"report": ["report", str(run)], "export": ["export", str(run), "--to", str(tmp_path / "exp")],
            "view": ["view", str(run), "--port", "0", "--cache-dir", str(tmp_path / "viewcache")]}[command]
    capsys.readouterr()
    assert main(["-q", *argv]) == 2
    line = one_error(capsys)
    assert named in line and "SECRET-CONTENT" not in line
    assert {p.relative_to(run).as_posix(): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "exp").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_damaged_embeddings_file_is_named_as_the_runs_not_by_the_staged_copy(run, capsys):
    (run / "embeddings.parquet").write_bytes(b"garbage")
    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    err = capsys.readouterr().err
    assert "the run's embeddings.parquet: it cannot be read" in err and ".tmp-" not in err


def test_run_files_kept_as_links_to_regular_files_are_read(tmp_path):
    """DataLad and git-annex keep a folder's files as links into .git/annex: such a run folder stays readable."""
    from brainclust.io.outputs import check_run_file, read_json

    annex = tmp_path / ".git" / "annex" / "objects" / "manifest"
    annex.parent.mkdir(parents=True)
    annex.write_text('{"kind": "run"}', encoding="utf-8")
    (tmp_path / "run").mkdir()
    os.symlink(annex, tmp_path / "run" / "manifest.json")
    assert check_run_file(tmp_path / "run" / "manifest.json") == annex.stat().st_size
    assert read_json(tmp_path / "run" / "manifest.json") == {"kind": "run"}


def test_a_link_refused_in_a_run_folder_is_named_a_link(run, tmp_path, capsys):
    """A link is read when it leads to a regular file (above); one that leads nowhere, or to a device or a folder,
    is refused, and the message said 'missing' or 'not a regular file' where it is a link."""
    from brainclust.errors import ModelFileError
    from brainclust.io.outputs import check_run_file, read_json

    (run / "assignments.csv").unlink()
    os.symlink(tmp_path / "gone.csv", run / "assignments.csv")
    capsys.readouterr()
    assert main(["-q", "view", str(run), "--port", "0", "--cache-dir", str(tmp_path / "viewcache")]) == 2
    assert "assignments.csv is a symbolic link to a file that does not exist" in one_error(capsys)
    (run / "manifest.json").unlink()
    for target in ("/dev/null", str(tmp_path)):
        os.symlink(target, tmp_path / "link.json")
        with pytest.raises(ModelFileError, match="is a symbolic link to something other than a regular file"):
            read_json(tmp_path / "link.json")
        (tmp_path / "link.json").unlink()
    (tmp_path / "plain.json").mkdir()
    with pytest.raises(ModelFileError, match="is not a regular file; not read"):  # not a link: as before
        check_run_file(tmp_path / "plain.json")
