"""Hardening of the outputs: any file name round-trips, the run folder is written whole and locked,
``--out`` may not overlap DATA, export is all-or-nothing, SIGTERM, k = 1 and the predict weights message."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from brainclust.cli import main
from brainclust.errors import ModelFileError, ParameterError
from brainclust.io.atomic import atomic_write_bytes, atomic_write_csv, sibling_temp_dir, temp_prefix
from brainclust.io.outputs import escape_name, read_assignments, unescape_name

CONTROL = list(range(1, 32)) + [0x7F]
#: Unicode bidirectional controls: they reorder the text around them.
BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
RUN = ["--backbone", "pixels@32", "--pca", "5", "--workers", "0", "--no-report", "-q"]

# -- the representation ---------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64))
def test_escape_round_trips_any_bytes_name(raw):
    name = os.fsdecode(raw)
    text = escape_name(name)
    text.encode("utf-8")  # always valid UTF-8
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)
    assert os.fsencode(unescape_name(text)) == raw


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_escape_is_invertible_on_any_text(name):
    assert unescape_name(escape_name(name)) == name
    escape_name(name).encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cc", "Cs", "Cf"), blacklist_characters="\\" + BIDI)))
def test_ordinary_names_are_unchanged(name):
    name = "n" + name  # a first = + - @ is escaped (tests/io/test_formula_cells.py)
    assert escape_name(name) == name == unescape_name(name)


def test_bidirectional_controls_are_escaped_so_a_name_shows_as_it_is():
    name = "\u202egnp.exe"  # shown as "exe.png" where the control is honoured
    assert escape_name(name) == "\\u202egnp.exe" and unescape_name(escape_name(name)) == name
    assert not set(escape_name("a" + BIDI + "b")) & set(BIDI)
    hidden = "\u200b\u200c\u200d\u2060\ufeff"  # invisible: 'ad\u200bmin.png' would show as 'admin.png'
    assert escape_name("ad" + hidden) == "ad\\u200b\\u200c\\u200d\\u2060\\ufeff"
    assert unescape_name(escape_name("ad" + hidden)) == "ad" + hidden


@pytest.mark.parametrize("code", CONTROL)
def test_csv_keeps_every_control_character(tmp_path, code):
    """A field holding a bare control character (notably "\\r") reads back as one row, unchanged."""
    ch = chr(code)
    rows = [{"a": ch, "b": f"x{ch}y"}, {"a": "plain", "b": ch + ch}]
    atomic_write_csv(tmp_path / "t.csv", ["a", "b"], rows)
    assert read_assignments(tmp_path / "t.csv") == rows


def test_csv_of_ordinary_rows_is_unquoted(tmp_path):
    atomic_write_csv(tmp_path / "t.csv", ["a", "b"], [{"a": "x", "b": 1}])
    assert (tmp_path / "t.csv").read_bytes() == b"a,b\nx,1\n"


# -- a run over hostile names ---------------------------------------------------------------------


def hostile_names() -> list[bytes]:
    names = [b"c%02x_" % c + bytes([c]) + b".png" for c in CONTROL]
    names += [b"bad_\xff\xfe.png", b"\xff\xfe.png", b"back\\slash.png", b"back\\x41.png", b"lit\\xff.png",
              b"hash#frame=1.png", b"L" * 246 + b".png", b"caf\xc3\xa9.png", b"sp ace,comma\"q.png"]
    return names


def write_data(root: Path, names: list[bytes], labels=(b"lab\rA", b"lab\xffB")) -> list[bytes]:
    """Two label folders of tiny PNGs; returns the relative paths as bytes."""
    rng = np.random.default_rng(0)
    rels = []
    for i, n in enumerate(names):
        rel = labels[i % 2] + b"/" + n
        full = os.fsencode(root) + b"/" + rel
        os.makedirs(os.path.dirname(full), exist_ok=True)
        a = (rng.integers(0, 40, (32, 32)) + (i % 2) * 150).astype(np.uint8)
        Image.fromarray(a).save(os.fsdecode(full), format="PNG")
        rels.append(rel)
    return rels


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    data, out = base / "data", base / "out"
    rels = write_data(data, hostile_names())
    broken = b"lab\rA/broken_\x01\xff\r.png"
    (Path(os.fsdecode(os.fsencode(data) + b"/" + broken))).write_bytes(b"not an image")
    assert main(["run", str(data), "--out", str(out), "--k", "2", "--labels-from-folders", *RUN]) == 0
    return data, out, rels, broken


def test_assignments_round_trip_every_name(hostile_run):
    data, out, rels, _ = hostile_run
    raw = (out / "assignments.csv").read_bytes()
    raw.decode("utf-8")
    rows = read_assignments(out / "assignments.csv")
    assert len(rows) == len(rels)
    assert sorted(os.fsencode(unescape_name(r["path"])) for r in rows) == sorted(rels)
    for r in rows:
        path = os.fsencode(unescape_name(r["path"]))
        assert os.fsencode(unescape_name(r["name"])) == path.rsplit(b"/", 1)[1]
        assert os.fsencode(unescape_name(r["label"])) == path.split(b"/", 1)[0]
        assert os.path.isfile(os.fsencode(data) + b"/" + path)
    # ordinary names are written as they are
    assert "cafe\u0301" not in raw.decode() and "caf\u00e9.png" in raw.decode()


def test_manifest_skipped_list_round_trips(hostile_run):
    data, out, _, broken = hostile_run
    m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert [os.fsencode(unescape_name(s["path"])) for s in m["skipped"]] == [broken]
    assert os.fsencode(unescape_name(m["input"])) == os.fsencode(data.resolve())


def test_report_and_export_of_hostile_names(hostile_run, tmp_path):
    from brainclust.report.build import build_report

    data, out, rels, broken = hostile_run
    work = tmp_path / "copy_of_run"
    shutil.copytree(out, work)
    info = build_report(work, max_map_points=50, write_figures=False)
    html = Path(info.path).read_text(encoding="utf-8")
    assert json.dumps(escape_name("bad_\udcff\udcfe.png"))[1:-1] in html  # in the map's data
    assert escape_name(os.fsdecode(broken)) in html  # in the skipped-files table
    assert "\r" not in html.replace("\r\n", "")
    assert main(["export", str(out), "--to", str(tmp_path / "exp"), "-q"]) == 0
    exported = {}
    for dirpath, _, files in os.walk(os.fsencode(tmp_path / "exp")):
        for f in files:
            if f != b"export.csv":
                exported[f] = Path(os.fsdecode(os.path.join(dirpath, f))).read_bytes()
    assert sorted(exported) == sorted(r.rsplit(b"/", 1)[1] for r in rels)
    for r in rels:
        assert exported[r.rsplit(b"/", 1)[1]] == Path(os.fsdecode(os.fsencode(data) + b"/" + r)).read_bytes()
    mapping = read_assignments(tmp_path / "exp" / "export.csv")
    assert sorted(os.fsencode(unescape_name(m["path"])) for m in mapping) == sorted(rels)
    for m in mapping:
        assert (tmp_path / "exp" / unescape_name(m["file"])).is_file()



# -- --out and DATA -------------------------------------------------------------------------------


@pytest.fixture
def small_data(tmp_path):
    data = tmp_path / "data"
    write_data(data, [b"a%d.png" % i for i in range(8)], labels=(b"x", b"y"))
    return data


def _no_work(monkeypatch):
    import brainclust.pipeline as P

    def boom(*a, **k):
        raise AssertionError("work started")

    monkeypatch.setattr(P, "build_model", boom)
    monkeypatch.setattr(P, "scan_nonempty", boom)


@pytest.mark.parametrize("where", ["equal", "inside", "deep_inside", "around", "via_symlink"])
def test_out_overlapping_data_is_refused_before_any_work(small_data, tmp_path, monkeypatch, capsys, where):
    _no_work(monkeypatch)
    link = tmp_path / "link"
    link.symlink_to(small_data)
    out = {"equal": small_data, "inside": small_data / "out", "deep_inside": small_data / "x" / "new" / "o",
           "around": tmp_path, "via_symlink": link / "o"}[where]
    before = sorted(p for p in tmp_path.rglob("*"))
    assert main(["run", str(small_data), "--out", str(out), *RUN]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--out" in err and "outside" in err
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_run_help_says_out_must_be_outside_data(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "outside DATA" in out


def test_predict_out_inside_its_data_or_the_model_is_refused(small_data, tmp_path):
    model = tmp_path / "model_run"
    assert main(["run", str(small_data), "--out", str(model), "--k", "2", *RUN]) == 0
    before = (model / "manifest.json").read_bytes()
    for out in (small_data / "pred", small_data, model, model / "model"):
        assert main(["predict", str(model), str(small_data), "--out", str(out), "-q"]) == 2
    assert not (small_data / "pred").exists()
    assert (model / "manifest.json").read_bytes() == before
    assert main(["predict", str(model), str(small_data), "--out", str(tmp_path / "pred"), "-q"]) == 0
    assert read_assignments(tmp_path / "pred" / "assignments.csv")


# -- the folder is written whole ------------------------------------------------------------------


def _entries(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_foreign_folder_is_refused_and_kept(small_data, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["run", str(small_data), "--out", str(out), *RUN]) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert _entries(out) == {"notes.txt": b"keep me"}


def test_rerun_replaces_the_whole_folder(small_data, tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(small_data), "--out", str(out), "--k", "3", *RUN]) == 0
    (out / "figures").mkdir()  # as a report would have left them
    (out / "figures" / "dendrogram.png").write_bytes(b"old")
    (out / "report.html").write_text("old report")
    (out / "model" / "ssl_head.json").write_text("{}")  # a file only the first run's settings wrote
    assert main(["run", str(small_data), "--out", str(out), "--k", "2", *RUN]) == 0
    assert not (out / "report.html").exists() and not (out / "figures").exists()
    assert not (out / "model" / "ssl_head.json").exists()
    assert json.loads((out / "manifest.json").read_text())["settings"]["k"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "out"]  # no staging or lock left over


@pytest.mark.parametrize("fail_at", ["write_assignments", "atomic_write_json"])
def test_failed_write_leaves_the_previous_run_untouched(small_data, tmp_path, monkeypatch, fail_at):
    import brainclust.io.outputs as O
    import brainclust.pipeline as P

    out = tmp_path / "out"
    assert main(["run", str(small_data), "--out", str(out), "--k", "3", *RUN]) == 0
    before = _entries(out)

    def fail(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(O, fail_at, fail)  # the writers of the run folder's files (io.outputs owns them)
    with pytest.raises(OSError):
        P.run(small_data, out, backbone="pixels@32", pca=5, k=2, workers=0)
    assert _entries(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "out"]


def test_report_failure_leaves_the_previous_run_as_it_was(small_data, tmp_path):
    """The report is built in the staged folder before the swap (issue 21): a failing report publishes nothing."""
    import brainclust.pipeline as P

    out = tmp_path / "out"
    P.run(small_data, out, backbone="pixels@32", pca=5, k=3, workers=0)
    (out / "report.html").write_text("previous report")
    before = _entries(out)

    def broken_report(o):
        raise RuntimeError("report failed")

    with pytest.raises(RuntimeError):
        P.run(small_data, out, backbone="pixels@32", pca=5, k=2, workers=0, finish=broken_report)
    assert _entries(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "out"]


def _slow_writer(data: str, out: str, k: int, delay: float, started) -> None:
    """Child process: one run whose every JSON write is slowed down."""
    import time

    import brainclust.io.outputs as O
    import brainclust.pipeline as P

    real = O.atomic_write_json

    def slow(path, obj):
        started.set()
        time.sleep(delay)
        return real(path, obj)

    O.atomic_write_json = slow
    logging.getLogger("brainclust").setLevel(logging.ERROR)
    P.run(data, out, backbone="pixels@32", pca=5, k=k, workers=0, progress=False)


@pytest.mark.slow
def test_two_concurrent_writers_never_mix(small_data, tmp_path):
    out = tmp_path / "out"
    ctx = multiprocessing.get_context("spawn")
    started = [ctx.Event(), ctx.Event()]
    procs = [ctx.Process(target=_slow_writer, args=(str(small_data), str(out), k, 0.4, started[i]))
             for i, k in enumerate((2, 3))]
    procs[0].start()
    assert started[0].wait(120)
    procs[1].start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    manifest = json.loads((out / "manifest.json").read_text())
    config = json.loads((out / "model" / "config.json").read_text())
    rows = read_assignments(out / "assignments.csv")
    metrics = json.loads((out / "metrics.json").read_text())
    k = manifest["settings"]["k"]
    assert config["settings"]["k"] == k
    assert len({r["cluster"] for r in rows}) == k == metrics["n_clusters"]
    with np.load(out / "model" / "cluster.npz", allow_pickle=False) as z:
        assert np.array_equal(z["labels"], [int(r["cluster"]) for r in rows])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "out"]


# -- export ---------------------------------------------------------------------------------------


def test_temporary_names_stay_within_name_max(tmp_path):
    name = "n" * 250
    assert len(temp_prefix(name)) < 40
    atomic_write_bytes(tmp_path / name, b"x")
    assert (tmp_path / name).read_bytes() == b"x"
    d = sibling_temp_dir(tmp_path / ("d" * 255))
    assert d.is_dir() and len(os.fsencode(d.name)) <= 255


@pytest.fixture
def long_name_run(tmp_path):
    """Two images of one cluster with the same 250-byte name (so the export must tag and shorten it)."""
    data = tmp_path / "data"
    long = b"N" * 246 + b".png"
    write_data(data, [long, long, long, long] + [b"s%d.png" % i for i in range(4)], labels=(b"x", b"y"))
    write_data(data, [long], labels=(b"z",))
    out = tmp_path / "run"
    assert main(["run", str(data), "--out", str(out), "--k", "1", *RUN]) == 0
    return out


def test_export_of_long_names(long_name_run, tmp_path):
    to = tmp_path / "exp"
    assert main(["export", str(long_name_run), "--to", str(to), "-q"]) == 0
    files = [p for p in (to / "cluster_0").iterdir()]
    assert len(files) == 7  # x/, y/ and z/ each hold the 250-byte name: three tagged, shortened names
    long = [p.name for p in files if p.name.startswith("NNNN")]
    assert len(set(long)) == 3 and all(len(os.fsencode(n)) <= 255 and n.endswith(".png") for n in long)


def test_failed_export_leaves_nothing_and_a_rerun_works(long_name_run, tmp_path, monkeypatch):
    import brainclust.report.export as E

    real, calls = E._place, []

    def flaky(src, dest, mode, strip=False):
        calls.append(dest)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(src, dest, mode, strip)

    monkeypatch.setattr(E, "_place", flaky)
    to = tmp_path / "exp"
    with pytest.raises(OSError):
        E.export_clusters(long_name_run, to)
    assert not to.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run"]
    monkeypatch.setattr(E, "_place", real)
    to.mkdir()  # an empty target folder is fine too
    res = E.export_clusters(long_name_run, to)
    assert res.n_files == 7 and (to / "export.csv").is_file()


# -- signals, k = 1, predict's weights message ---------------------------------------------------


def test_sigterm_exits_143_with_one_line(tmp_path):
    code = ("import sys, time\n"
            "import brainclust.cli as c\n"
            "def slow(args):\n"
            "    print('ready', flush=True)\n"
            "    time.sleep(60)\n"
            "c.COMMANDS['report'] = slow\n"
            "sys.exit(c.main(['report', 'x']))\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "terminated" in lines[0]


@pytest.mark.parametrize("method", ["hierarchical", "kmeans", "gmm", "spectral"])
def test_no_degenerate_warning_when_one_cluster_was_asked(method, caplog):
    from brainclust.cluster.methods import Clusterer

    X = np.random.default_rng(0).normal(size=(30, 4))
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        Clusterer(method=method, n_clusters=1, random_state=0).fit(X)
    assert "do not separate" not in caplog.text


def test_degenerate_warning_remains_when_more_were_asked(caplog):
    from brainclust.cluster.methods import Clusterer

    X = np.random.default_rng(0).normal(size=(30, 4)) * 1e-6  # one tight blob: DBSCAN finds one cluster
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        c = Clusterer(method="dbscan", random_state=0).fit(X)
    assert c.n_clusters_ <= 1 and "do not separate" in caplog.text


def test_predict_names_the_backbone_when_its_weights_changed(small_data, tmp_path):
    from brainclust.pipeline import predict

    model = tmp_path / "model_run"
    assert main(["run", str(small_data), "--out", str(model), "--k", "2", *RUN]) == 0
    cfg_path = model / "model" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["backbone"]["weights_sha256"] = "0" * 64
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError) as exc:
        predict(model, small_data, tmp_path / "pred")
    msg = str(exc.value)
    assert "'None'" not in msg and cfg["backbone"]["name"] in msg and "have changed" in msg


def test_parameter_error_type_for_out(small_data):
    from brainclust.pipeline import run

    with pytest.raises(ParameterError):
        run(small_data, small_data / "o", backbone="pixels@32")


@pytest.mark.parametrize("sub", [".", "x", "new/deeper"])
def test_export_into_the_input_folder_is_refused(long_name_run, tmp_path, capsys, sub):
    data = tmp_path / "data"
    before = sorted(data.rglob("*"))
    assert main(["export", str(long_name_run), "--to", str(data / sub)]) == 2
    assert "input folder" in capsys.readouterr().err
    assert sorted(data.rglob("*")) == before


def _locked_append(folder: str, tag: str, holding, release) -> None:
    from brainclust.io.atomic import folder_lock

    log_file = Path(folder).parent / "order.txt"
    with folder_lock(folder):
        with open(log_file, "a") as fh:
            fh.write(f"{tag}-in\n")
        if holding is not None:
            holding.set()
            release.wait(60)
        with open(log_file, "a") as fh:
            fh.write(f"{tag}-out\n")


def test_folder_lock_serialises_two_writers(tmp_path):
    """B asks for the lock while A holds it: B only gets in after A is out."""
    ctx = multiprocessing.get_context("spawn")
    holding, release = ctx.Event(), ctx.Event()
    a = ctx.Process(target=_locked_append, args=(str(tmp_path / "out"), "A", holding, release))
    b = ctx.Process(target=_locked_append, args=(str(tmp_path / "out"), "B", None, None))
    a.start()
    assert holding.wait(120)
    b.start()
    b.join(2)  # B is still waiting (it cannot finish while A holds the lock)
    assert b.exitcode is None
    release.set()
    a.join(120)
    b.join(120)
    assert (a.exitcode, b.exitcode) == (0, 0)
    assert (tmp_path / "order.txt").read_text().split() == ["A-in", "A-out", "B-in", "B-out"]


def test_degenerate_warning_says_when_every_image_is_noise(caplog):
    from brainclust.cluster.methods import Clusterer

    X = np.random.default_rng(0).normal(size=(3, 4))  # fewer images than min_samples: all noise
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        c = Clusterer(method="dbscan", random_state=0).fit(X)
    assert c.n_clusters_ == 0 and (c.labels_ == -1).all()
    assert "dbscan found no cluster (every image is noise) for 3 images" in caplog.text
