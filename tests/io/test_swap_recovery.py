"""The folder swap never leaves ``dest`` missing, and the next writer cleans up after a killed one.

Each case runs the swap in a child process that SIGKILLs itself at one point
(the hook is a monkeypatch inside the child, not a hook in library code), then
checks the folder as the kill left it and after the next writer's recovery.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from brainclust.io import atomic

SRC = str(Path(atomic.__file__).resolve().parents[2])  # the brainclust under test, for the child

CHILD = textwrap.dedent(r'''
    import os, shutil, signal, sys
    from pathlib import Path
    from brainclust.io import atomic

    point, dest = sys.argv[1], Path(sys.argv[2])
    no_exchange = point.startswith("no-exchange:")
    point = point.split(":", 1)[-1]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    real_rename, real_exchange, real_rmtree = os.rename, atomic.exchange, shutil.rmtree
    renames = []

    def rename(a, b):
        if point == "before-rename-1" and not renames:
            die()
        real_rename(a, b)
        renames.append((a, b))
        if point == "after-rename-%d" % len(renames):
            die()

    def exchange(a, b):
        if point == "before-exchange":
            die()
        if no_exchange:
            return False
        done = real_exchange(a, b)
        if point == "after-exchange":
            die()
        return done

    def rmtree(path, *args, **kwargs):
        if point == "during-delete":
            files = sorted(p for p in Path(path).rglob("*") if p.is_file())
            files[0].unlink()  # half deleted
            die()
        return real_rmtree(path, *args, **kwargs)

    os.rename, atomic.exchange, shutil.rmtree = rename, exchange, rmtree
    with atomic.folder_lock(dest):
        staging = atomic.sibling_temp_dir(dest)
        (staging / "model").mkdir()
        (staging / "version").write_text("new")
        (staging / "model" / "a").write_text("new")
        (staging / "model" / "b").write_text("new")
        atomic.swap_folder(staging, dest)
    print("finished")
''')


def _old_run(dest: Path) -> None:
    (dest / "model").mkdir(parents=True)
    (dest / "version").write_text("old")
    (dest / "model" / "a").write_text("old")
    (dest / "model" / "b").write_text("old")


def _version(dest: Path) -> str | None:
    """"old" or "new" when ``dest`` is one whole run folder, None when missing; fails on a mix."""
    if not dest.exists():
        return None
    v = (dest / "version").read_text()
    assert {(dest / "model" / n).read_text() for n in "ab"} == {v}, "a mix of two runs"
    return v


def _swap_killed_at(point: str, dest: Path) -> int:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", CHILD, point, str(dest)], env=env, capture_output=True,
                          text=True, timeout=120)
    return proc.returncode


def _hidden(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))




def _exchange_works(tmp_path: Path) -> bool:
    a, b = tmp_path / "xa", tmp_path / "xb"
    a.mkdir()
    b.mkdir()
    try:
        return atomic.exchange(a, b)
    finally:
        a.rmdir()
        b.rmdir()


# With RENAME_EXCHANGE (Linux): the first rename of the old two-rename swap is gone, and a kill
# anywhere leaves dest whole.
@pytest.mark.parametrize("point", ["before-exchange", "after-exchange", "during-delete", "after-rename-1"])
def test_a_kill_anywhere_in_the_swap_leaves_dest_whole(tmp_path, point):
    if not _exchange_works(tmp_path):
        pytest.skip("this file system cannot exchange two paths atomically (renameat2 RENAME_EXCHANGE)")
    dest = tmp_path / "run"
    _old_run(dest)
    rc = _swap_killed_at(point, dest)
    assert _version(dest) in ("old", "new"), f"dest missing after a kill at {point} (rc {rc})"
    if rc == -signal.SIGKILL:
        assert _hidden(tmp_path), "the kill left nothing to recover: the hook did not fire where expected"
    # the next writer: recovery under the lock leaves only dest
    with atomic.folder_lock(dest):
        atomic.recover_leftovers(dest)
    assert _hidden(tmp_path) == []
    assert _version(dest) in ("old", "new")


@pytest.mark.parametrize("point, expect", [("before-rename-1", "old"), ("after-rename-1", "old"),
                                           ("after-rename-2", "new"), ("during-delete", "new")])
def test_fallback_swap_is_recovered_by_the_next_writer(tmp_path, point, expect, caplog):
    """Without RENAME_EXCHANGE a kill between the two renames leaves dest missing; the next writer
    restores the previous run (the killed command did not finish), with one warning line."""
    dest = tmp_path / "run"
    _old_run(dest)
    rc = _swap_killed_at(f"no-exchange:{point}", dest)
    assert rc == -signal.SIGKILL
    assert _hidden(tmp_path), "nothing left over: the kill did not happen mid-swap"
    with caplog.at_level("WARNING", logger="brainclust.io.atomic"):
        with atomic.folder_lock(dest):
            done = atomic.recover_leftovers(dest)
    assert _hidden(tmp_path) == []
    assert _version(dest) == expect
    assert (done["restored"] is not None) == (point == "after-rename-1")
    lines = [r for r in caplog.records if r.name == "brainclust.io.atomic"]
    assert len(lines) == 1 and "interrupted" in lines[0].getMessage()


def test_the_next_swap_recovers_by_itself(tmp_path):
    """A later swap_folder (the next run's publish) first restores and cleans what a killed one left."""
    dest = tmp_path / "run"
    _old_run(dest)
    assert _swap_killed_at("no-exchange:after-rename-1", dest) == -signal.SIGKILL
    assert not dest.exists()
    with atomic.folder_lock(dest):
        staging = atomic.sibling_temp_dir(dest)
        (staging / "model").mkdir()
        for rel in ("version", "model/a", "model/b"):
            (staging / rel).write_text("third")
        atomic.swap_folder(staging, dest)
    assert _version(dest) == "third" and _hidden(tmp_path) == []


def test_leftovers_of_a_live_process_are_left_alone(tmp_path):
    dest = tmp_path / "run"
    _old_run(dest)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        mine = tmp_path / f".run.tmp-{live.pid}-abcdefgh"
        mine.mkdir()
        dead = tmp_path / ".run.old-999999999-0badc0de"  # no such pid
        dead.mkdir()
        with atomic.folder_lock(dest):
            done = atomic.recover_leftovers(dest)
        assert mine.is_dir() and not dead.exists()
        assert done["removed"] == [dead]
    finally:
        live.kill()
        live.wait()


def test_other_folders_names_are_never_taken_for_leftovers(tmp_path):
    dest = tmp_path / "run"
    _old_run(dest)
    others = [".run.tmp", ".run.tmp-x-y", ".runs.tmp-1-abc", ".run.tmp.tmp-999999999-abc", "run.tmp-999999999-a",
              ".other.old-999999999-abc"]
    for name in others:
        (tmp_path / name).mkdir()
    with atomic.folder_lock(dest):
        atomic.recover_leftovers(dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(others + ["run"])


def test_exchange_swaps_two_folders(tmp_path):
    if not _exchange_works(tmp_path):
        pytest.skip("no RENAME_EXCHANGE on this file system")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "y").write_text("b")
    assert atomic.exchange(a, b)
    assert (a / "y").read_text() == "b" and (b / "x").read_text() == "a"
    with pytest.raises(FileNotFoundError):
        atomic.exchange(a, tmp_path / "missing")


RUN_CHILD = textwrap.dedent(r'''
    import os, shutil, signal, sys
    from brainclust.io import atomic
    from brainclust.cli import main

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if sys.argv[1] == "kill-in-swap":  # right after the swap's first step, whichever the code takes
        real_rename, real_exchange = os.rename, getattr(atomic, "exchange", None)

        def rename(a, b):
            real_rename(a, b)
            if os.path.basename(str(b)) != "out":  # the old folder moved aside: dest is missing now
                die()

        def exchange(a, b):
            real_exchange(a, b)
            die()

        os.rename = rename
        if real_exchange is not None:
            atomic.exchange = exchange
    sys.exit(main(sys.argv[2:]))
''')


def test_a_run_killed_in_its_swap_is_recovered_by_the_next_run(tmp_path, image_folder):
    """End to end: `brainclust run` killed inside the swap; `--out` still exists, and the rerun
    leaves one whole run folder and no hidden leftovers."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    args = ["run", str(image_folder), "--out", str(out), "--backbone", "pixels@16", "--k", "2", "--no-report",
            "--cache-dir", str(tmp_path / "cache"), "--workers", "0", "-q"]

    def cli(mode: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", RUN_CHILD, mode, *args], env=env, capture_output=True,
                              text=True, timeout=300)

    first = cli("plain")
    assert first.returncode == 0, first.stderr
    before = (out / "assignments.csv").read_bytes()
    killed = cli("kill-in-swap")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (out / "assignments.csv").read_bytes() == before, "--out missing or mixed after a kill in the swap"
    again = cli("plain")
    assert again.returncode == 0, again.stderr
    assert _hidden(tmp_path) == [], "leftovers of the killed run were not cleaned up"
    assert (out / "assignments.csv").read_bytes() == before


def test_a_planted_link_is_never_restored_as_the_folder(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    os.symlink(elsewhere, tmp_path / ".run.old-999999996-x")  # --out missing, a dead writer's "old folder" a link
    with atomic.folder_lock(tmp_path / "run"):
        done = atomic.recover_leftovers(tmp_path / "run")
    assert done["restored"] is None and not (tmp_path / "run").exists()
    assert (elsewhere / "keep.txt").read_text() == "mine" and not (tmp_path / ".run.old-999999996-x").exists()
