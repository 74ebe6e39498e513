"""A run folder is replaced only when every entry, at every depth, is one a run writes (issue 21).

User files inside ``figures/`` or ``model/`` are never deleted silently: a run, a prediction or a
report rebuild into such a folder is refused with one line naming the first foreign entry, and
nothing is written inside a run folder from outside (``export --to RUN/figures``, ``--out RUN/sub``).
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from brainclust.cli import main

ARGS = ["--backbone", "pixels@16", "--pca", "3", "--workers", "0", "-q"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """Labelled images and a finished run with every output a run can write here: hierarchical, --k auto
    (k_selection), labels (tsne_labels, confusion), report."""
    tmp = tmp_path_factory.mktemp("foreign")
    rng = np.random.default_rng(0)
    for i in range(18):
        a = (rng.integers(0, 50, (20, 20)) + 70 * (i % 3)).astype(np.uint8)
        (tmp / "data" / f"g{i % 3}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(tmp / "data" / f"g{i % 3}" / f"i{i}.png")
    assert main(["run", str(tmp / "data"), "--out", str(tmp / "run"), "--k", "auto", "--labels-from-folders",
                 "--cache-dir", str(tmp / "cache"), *ARGS]) == 0
    return tmp


@pytest.fixture
def run(base, tmp_path):
    shutil.copytree(base / "run", tmp_path / "run")
    return tmp_path / "run"


def rerun(base, out, *extra) -> int:
    return main(["run", str(base / "data"), "--out", str(out), "--k", "3", "--cache-dir", str(base / "cache"),
                 *ARGS, *extra])


def one_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("brainclust: error: ")
    return lines[0]


def test_everything_a_run_writes_is_its_own(run, base):
    from brainclust.io.atomic import walk_entries
    from brainclust.io.publish import foreign_entry

    names = walk_entries(run)
    assert {"figures/k_selection.png", "figures/confusion.svg", "figures/tsne_labels.png", "model/cluster.npz",
            "report.html"} <= set(names)
    assert foreign_entry(run) is None
    assert rerun(base, run) == 0


@pytest.mark.parametrize("entry", ["figures/notes.txt", "figures/my_plot.png", "model/mine.npz", "model/sub/x.json",
                                   "figures/extra/dendrogram.png", "notes.txt", ".hidden", "-notes.txt"])
def test_a_user_file_at_any_depth_refuses_the_run_and_is_kept(run, base, capsys, entry):
    path = run / entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("keep me")
    before = sorted(p.relative_to(run).as_posix() for p in run.rglob("*"))
    capsys.readouterr()
    assert rerun(base, run) == 2
    line = one_error(capsys)
    first = entry if "/" not in entry or entry.count("/") == 1 else entry.rsplit("/", 1)[0]
    assert f"holds '{first}'" in line and "not a brainclust output" in line
    assert path.read_text() == "keep me"
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*")) == before


@pytest.mark.parametrize("kind", ["link_to_file", "link_to_folder", "model_is_a_file", "fifo"])
def test_links_and_odd_entries_are_not_a_runs(run, base, capsys, tmp_path, kind):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep me")
    if kind == "link_to_file":
        (run / "report.html").unlink()
        os.symlink(tmp_path / "mine" / "precious.txt", run / "report.html")
    elif kind == "link_to_folder":
        shutil.rmtree(run / "figures")
        os.symlink(tmp_path / "mine", run / "figures")
    elif kind == "model_is_a_file":
        shutil.rmtree(run / "model")
        (run / "model").write_text("x")
    else:
        os.mkfifo(run / "metrics.json.fifo")
    capsys.readouterr()
    assert rerun(base, run) == 2
    said = one_error(capsys)
    if kind.startswith("link"):  # a run's entry kept as a link (git-annex, DVC): said so, with what to do
        assert "as a symbolic link" in said and "cp -rL" in said
    else:
        assert "not a brainclust output" in said
    assert (tmp_path / "mine" / "precious.txt").read_text() == "keep me"


def test_a_killed_atomic_writes_temporary_file_is_the_runs(run, base):
    (run / ".assignments.csv.12345-abc_9.tmp").write_text("half")
    (run / "figures" / ".dendrogram.png.4242-zz.tmp").write_bytes(b"half")
    assert rerun(base, run) == 0
    assert not (run / ".assignments.csv.12345-abc_9.tmp").exists()


def test_the_report_rebuild_is_refused_too_and_keeps_the_file(run, capsys):
    (run / "figures" / "notes.txt").write_text("keep me")
    capsys.readouterr()
    assert main(["-q", "report", str(run)]) == 2
    assert "'figures/notes.txt'" in one_error(capsys)
    assert (run / "figures" / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("target", ["figures", "new", "model/x", "figures/sub/deeper"])
def test_export_into_a_run_folder_is_refused(run, capsys, target):
    capsys.readouterr()
    assert main(["-q", "export", str(run), "--to", str(run / target)]) == 2
    line = one_error(capsys)
    assert "--to" in line and ("inside the brainclust run folder" in line or "not an empty folder" in line)
    assert not (run / "new").exists() and not (run / "model" / "x").exists()
    assert not (run / "figures" / "sub").exists()


def test_run_and_predict_inside_a_run_folder_are_refused(run, base, capsys):
    capsys.readouterr()
    assert rerun(base, run / "sub") == 2
    assert "lies inside the brainclust run folder" in one_error(capsys)
    other = base / "run"
    assert main(["-q", "predict", str(other), str(base / "data"), "--out", str(run / "pred"),
                 "--cache-dir", str(base / "cache")]) == 2
    assert "lies inside the brainclust run folder" in one_error(capsys)
    assert not (run / "sub").exists() and not (run / "pred").exists()


def test_predict_never_replaces_a_run_folder_but_replaces_its_own(run, base, tmp_path, capsys):
    """A prediction's folder has no model, report or map: --out on another run's folder would delete them."""
    other = tmp_path / "other"
    shutil.copytree(run, other)
    before = sorted(p.name for p in other.iterdir())
    capsys.readouterr()
    args = [str(run), str(base / "data"), "--cache-dir", str(base / "cache")]
    assert main(["-q", "predict", *args, "--out", str(other)]) == 2
    assert "which a brainclust run writes: a run's folder is not replaced" in one_error(capsys)
    assert sorted(p.name for p in other.iterdir()) == before and (other / "model" / "config.json").is_file()
    assert main(["-q", "predict", *args, "--out", str(tmp_path / "pred")]) == 0
    assert main(["-q", "predict", *args, "--out", str(tmp_path / "pred")]) == 0  # its own folder: replaced
    assert not (tmp_path / "pred" / "model").exists()


def test_a_check_folder_is_named_as_such_and_a_predict_folder_is_no_model(base, tmp_path, capsys):
    """A new user's walk: run/predict --out on a 'brainclust check' folder said "holds 'checks.html', which is not a
    brainclust output", and predict from a predict folder "model/config.json is missing"."""
    assert main(["-q", "check", str(base / "data"), "--out", str(tmp_path / "chk"), "--cache-dir",
                 str(base / "cache")]) == 0
    capsys.readouterr()
    assert rerun(base, tmp_path / "chk") == 2
    assert "holds 'checks.html': it is the folder of a 'brainclust check'" in one_error(capsys)
    args = [str(base / "data"), "--cache-dir", str(base / "cache")]
    assert main(["-q", "predict", str(base / "run"), *args, "--out", str(tmp_path / "pred")]) == 0
    capsys.readouterr()
    assert main(["-q", "predict", str(tmp_path / "pred"), *args, "--out", str(tmp_path / "pred2")]) == 2
    assert "is the folder of a 'brainclust predict' (it has no model/ of its own)" in one_error(capsys)
    assert sorted(p.name for p in (tmp_path / "chk").iterdir()) == ["checks.html", "leakage.csv", "manifest.json",
                                                                     "quality.csv"]


def test_run_wrote_rules():
    from brainclust.io.outputs import FIGURE_NAMES, MODEL_FILES, RUN_NESTED

    assert set(RUN_NESTED) == {"model", "figures"}
    import fnmatch

    for name in MODEL_FILES.values():
        assert any(fnmatch.fnmatchcase(name, p) for p in RUN_NESTED["model"])
    for name in ("ssl_head.json", "ssl_finetune.safetensors", "ssl_temi.json"):
        assert any(fnmatch.fnmatchcase(name, p) for p in RUN_NESTED["model"])
    assert len(RUN_NESTED["figures"]) == 2 * len(FIGURE_NAMES)
