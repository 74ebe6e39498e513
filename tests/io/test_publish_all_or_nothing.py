"""The whole publish of a run folder, its report included, is all or nothing (issue 21).

The report is built in the staged folder before the swap, so a report that fails, a full disk
during the report, SIGTERM or kill -9 during it leave the previous run exactly as it was; a
kill -9 leaves only a hidden staging folder, which the next command writing there removes.
``brainclust report RUN`` (the rebuild) is atomic the same way, and a read-only run folder is
one line, exit 2. The kills are real (a child process whose report builder announces itself on
stdout and then blocks on stdin, killed on that line: no polling, no deadline).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import brainclust
from brainclust.cli import main
from brainclust.errors import OutputError

SRC = str(Path(brainclust.__file__).resolve().parents[1])
ARGS = ["--backbone", "pixels@16", "--pca", "3", "--workers", "0", "-q"]


def write_images(root: Path, n: int = 8) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        a = (rng.integers(0, 50, (20, 20)) + 150 * (i % 2)).astype(np.uint8)
        (root / f"g{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(root / f"g{i % 2}" / f"i{i}.png")
    return root


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def hidden(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """Images, a feature cache, and a finished run with its report in ``tmp/out`` (k = 2)."""
    monkeypatch.setenv("BRAINCLUST_CACHE", str(tmp_path / "cache"))
    data = write_images(tmp_path / "data")
    out = tmp_path / "out"
    assert main(["run", str(data), "--out", str(out), "--k", "2", *ARGS]) == 0
    assert (out / "report.html").is_file() and (out / "figures").is_dir()
    return data, out


# -- the publish itself ----------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["fill", "finish"])
@pytest.mark.parametrize("error", [RuntimeError("boom"), OSError(errno.ENOSPC, "No space left on device")])
def test_a_failure_anywhere_before_the_swap_publishes_nothing(tmp_path, where, error):
    from brainclust.io.publish import publish

    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("old")
    before = snapshot(out)

    def fill(staging):
        (staging / "manifest.json").write_text("new")
        if where == "fill":
            raise error

    def finish(staging):
        assert (staging / "manifest.json").read_text() == "new"  # the report reads the staged files
        (staging / "report.html").write_text("half")
        raise error

    expected = OutputError if isinstance(error, OSError) else RuntimeError
    with pytest.raises(expected) as err:
        publish(out, fill, finish=finish)
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # staging removed
    if expected is OutputError:  # one line, naming the published folder, not the staging one
        msg = str(err.value)
        assert "ENOSPC" in msg and f"'{out}'" in msg and ".tmp-" not in msg and "\n" not in msg


def test_the_report_sees_the_staged_folder_and_the_result_has_it(tmp_path):
    from brainclust.io.publish import publish

    out = tmp_path / "out"

    def finish(staging):
        (staging / "report.html").write_text((staging / "manifest.json").read_text().upper())

    publish(out, lambda s: (s / "manifest.json").write_text("new"), finish=finish)
    assert (out / "report.html").read_text() == "NEW"


# -- brainclust run: the report phase --------------------------------------------------------------
def test_run_whose_report_hits_a_full_disk_is_one_line_and_keeps_the_previous_run(setup, monkeypatch, capsys):
    import brainclust.report.figures as F

    data, out = setup
    before = snapshot(out)

    def full(*a, **k):  # matplotlib or pyarrow writing a file on a full disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(F, "save_figure", full)
    capsys.readouterr()
    assert main(["run", str(data), "--out", str(out), "--k", "3", *ARGS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ENOSPC" in err[0] and str(out) in err[0] and ".tmp-" not in err[0]
    assert snapshot(out) == before
    assert hidden(out.parent) == []


#: A child running the CLI whose report builder says "in-report" on stdout and then waits for stdin.
BLOCK_IN_REPORT = """
import sys
import brainclust.report.build as B
real = B.build_report
def build_report(*a, **k):
    if k.get("command") == "brainclust report":  # the rebuild: its figures are written first
        real(*a, **k)
    print("in-report", flush=True)
    sys.stdin.readline()
    return real(*a, **k)
B.build_report = build_report
from brainclust.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _start(args: list[str], cache: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "BRAINCLUST_CACHE": str(cache)}
    proc = subprocess.Popen([sys.executable, "-c", BLOCK_IN_REPORT, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()  # blocks until the child is inside the report phase (or ends: "")
    if line.strip() != "in-report":
        proc.kill()
        pytest.fail(f"the child never reached the report: {proc.communicate()[1][-3000:]}")
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_run_killed_during_its_report_leaves_the_previous_run(setup, tmp_path, sig):
    data, out = setup
    before = snapshot(out)
    proc = _start(["run", str(data), "--out", str(out), "--k", "3", *ARGS], tmp_path / "cache")
    staged = [n for n in hidden(tmp_path) if n.startswith(".out.tmp-")]
    assert len(staged) == 1  # the new run is complete in its staging folder, its report under way
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert snapshot(out) == before  # the previous run, report included, exactly as it was
    if sig == signal.SIGTERM:
        assert proc.returncode == 143
        assert len(err.strip().splitlines()) == 1 and "terminated" in err
        assert hidden(tmp_path) == []  # the staging folder is removed on the way out
        return
    assert proc.returncode == -signal.SIGKILL
    assert hidden(tmp_path) == staged  # kill -9: only the hidden staging folder is left
    # the next command writing there removes it, with one warning line, and publishes normally
    res = subprocess.run([sys.executable, "-m", "brainclust", "run", str(data), "--out", str(out), "--k", "3",
                          *ARGS[:-1]], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": SRC, "BRAINCLUST_CACHE": str(tmp_path / "cache")})
    assert res.returncode == 0, res.stderr
    assert "interrupted brainclust process left 1 temporary item" in res.stderr
    assert hidden(tmp_path) == []
    assert json.loads((out / "manifest.json").read_text())["settings"]["k"] == 3


@pytest.mark.slow
def test_a_first_run_killed_during_its_report_leaves_no_output(tmp_path):
    data = write_images(tmp_path / "data")
    out = tmp_path / "out"
    proc = _start(["run", str(data), "--out", str(out), "--k", "2", *ARGS], tmp_path / "cache")
    proc.kill()
    proc.communicate(timeout=120)
    assert not out.exists()
    assert len(hidden(tmp_path)) == 1  # the staging folder of the dead process, removed by the next writer


# -- brainclust report: the rebuild ----------------------------------------------------------------
def test_a_failed_rebuild_keeps_the_previous_report(setup, monkeypatch, capsys):
    import brainclust.report.build as B

    _, out = setup
    (out / "report.html").write_text("previous report")
    before = snapshot(out)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(B, "_render", full)
    capsys.readouterr()
    assert main(["-q", "report", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ENOSPC" in err[0] and ".tmp-" not in err[0]
    assert snapshot(out) == before and hidden(out.parent) == []


def test_a_rebuild_replaces_report_and_figures_and_keeps_everything_else(setup, capsys):
    _, out = setup
    (out / "report.html").write_text("previous report")
    (out / "figures" / "dendrogram.png").write_bytes(b"previous figure")
    kept = {k: v for k, v in snapshot(out).items()
            if k != "manifest.json" and k != "report.html" and not k.startswith("figures/")}
    assert main(["report", str(out)]) == 0
    after = snapshot(out)
    assert {k: after[k] for k in kept} == kept
    assert after["report.html"].startswith(b"<!DOCTYPE html>") and after["figures/dendrogram.png"] != b"previous figure"
    assert json.loads(after["manifest.json"])["report"]["built_by"] == "brainclust report"
    assert f"report: {out}/report.html" in capsys.readouterr().out
    assert hidden(out.parent) == []


@pytest.mark.slow
def test_a_rebuild_killed_midway_keeps_the_previous_report(setup, tmp_path):
    _, out = setup
    (out / "report.html").write_text("previous report")
    before = snapshot(out)
    proc = _start(["report", str(out)], tmp_path / "cache")  # the staged report.html and figures are written
    proc.kill()
    proc.communicate(timeout=120)
    assert snapshot(out) == before
    assert main(["report", str(out)]) == 0  # the next command recovers and rebuilds
    assert hidden(tmp_path) == [] and (out / "report.html").read_text() != "previous report"


@pytest.fixture
def tmpfs(tmp_path):
    """A 16 MiB tmpfs (skipped where this process cannot mount one)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_rebuild_on_a_read_only_run_folder_is_one_line(setup, tmpfs, capsys):
    _, out = setup
    ro = tmpfs / "run"
    shutil.copytree(out, ro)
    before = snapshot(ro)
    if subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], capture_output=True).returncode != 0:
        pytest.skip("cannot remount the tmpfs read-only")
    capsys.readouterr()
    assert main(["-q", "report", str(ro)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "EROFS" in err[0] and str(ro) in err[0], err
    assert snapshot(ro) == before


def test_rebuild_refused_permission_is_one_line(setup, monkeypatch, capsys):
    """Where the run folder cannot be written (no permission; as root simulated): one line, nothing changed."""
    import brainclust.report.rebuild as R

    _, out = setup
    before = snapshot(out)
    monkeypatch.setattr(R.os, "access", lambda path, mode: Path(path) != out)
    capsys.readouterr()
    assert main(["-q", "report", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not writable" in err[0] and "EACCES" in err[0]
    assert snapshot(out) == before


def test_a_disk_filling_up_during_the_report_keeps_the_previous_run(setup, tmpfs, capsys):
    """A real full disk: room for the new run's tables and model, not for its report."""
    data, out = setup
    run = tmpfs / "run"
    shutil.copytree(out, run)
    before = snapshot(run)
    tables = sum(len(v) for k, v in before.items() if k != "report.html" and not k.startswith("figures/"))
    free = os.statvfs(tmpfs).f_bavail * os.statvfs(tmpfs).f_frsize
    with open(tmpfs / "filler", "wb") as fh:  # leave the tables' size (+ 64 KiB of pages) free
        fh.write(b"\0" * max(0, free - tables - 64 * 1024))
    capsys.readouterr()
    assert main(["run", str(data), "--out", str(run), "--k", "3", *ARGS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ENOSPC" in err[0] and ".tmp-" not in err[0], err
    assert snapshot(run) == before
    assert sorted(p.name for p in tmpfs.iterdir()) == ["filler", "run"]


def test_a_linked_or_mounted_target_is_refused_before_any_work(tmp_path, monkeypatch):
    """The published folder is swapped in whole: a link would become a plain folder beside its (empty)
    target, and a mount point cannot be swapped at all (EBUSY after all the work)."""
    from brainclust.errors import ParameterError
    from brainclust.io.publish import check_out

    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    with pytest.raises(ParameterError, match="--to: '.*link' is a symbolic link"):
        check_out(tmp_path / "link", option="--to", allowed=frozenset())
    (tmp_path / "usb").mkdir()
    monkeypatch.setattr(os.path, "ismount", lambda p: Path(p).name == "usb")
    with pytest.raises(ParameterError, match="is a mount point.*new folder inside it"):
        check_out(tmp_path / "usb", option="--to", allowed=frozenset())
    check_out(tmp_path / "usb" / "export", option="--to", allowed=frozenset())  # inside it is fine


def test_an_empty_name_or_the_working_folder_is_refused(tmp_path, monkeypatch):
    from brainclust.errors import ParameterError
    from brainclust.io.publish import check_out

    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    for out in (".", "", str(tmp_path / "here"), ".."):
        with pytest.raises(ParameterError, match="empty|working folder"):
            check_out(out)
    check_out("new_run")  # a folder inside it is fine
    with pytest.raises(ParameterError, match="not valid UTF-8"):  # pyarrow and the report need its name as text
        check_out(os.fsdecode(b"o5_\xe9"))
    (tmp_path / "gone").mkdir()
    monkeypatch.chdir(tmp_path / "gone")
    (tmp_path / "gone").rmdir()  # a deleted working folder: an absolute --out still works
    check_out(str(tmp_path / "elsewhere"))
