"""The run folder a command reads (predict, view, export, report): a wrong one is one line, the same in each."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from brainclust.cli import main

COMMANDS = {
    "predict": lambda run, t: ["predict", str(run), str(t / "data"), "--out", str(t / "pred")],
    "view": lambda run, t: ["view", str(run), "--port", "0", "--cache-dir", str(t / "c")],
    "export": lambda run, t: ["export", str(run), "--to", str(t / "exported")],
    "report": lambda run, t: ["report", str(run)],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_wrong_run_folder_is_one_line_saying_what_it_is(tmp_path, capsys, command):
    """A walk (2026-12-07): a misspelt run folder read, in predict, "'my_rn' is not a finished brainclust run:
    my_rn/model/config.json is missing" (as if it existed), in view "is not a folder", in report "no
    manifest.json"; a check's folder and the demo's folder were named as such by report only."""
    Image.fromarray(np.full((8, 8), 9, np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "data").mkdir()
    Image.fromarray(np.full((8, 8), 9, np.uint8)).save(tmp_path / "data" / "b.png")
    for page in ("manifest.json", "checks.html"):
        (tmp_path / "chk").mkdir(exist_ok=True)
        (tmp_path / "chk" / page).write_text("{}")
    (tmp_path / "demo_out" / "results" / "model").mkdir(parents=True)
    (tmp_path / "demo_out" / "results" / "manifest.json").write_text("{}")
    (tmp_path / "demo_out" / "results" / "model" / "config.json").write_text("{}")
    need = f"'brainclust {command}' needs the --out folder of a 'brainclust run'"
    cases = {"my_rn": "is not a finished brainclust run: it does not exist; " + need,
             "a.png": "is not a finished brainclust run: it is a file, not a folder; " + need,
             "chk": "is the folder of a 'brainclust check' (its page is checks.html, written with it); " + need,
             "demo_out": f"is not a finished brainclust run (no manifest.json); 'brainclust demo' writes its run "
                         f"into '{tmp_path / 'demo_out' / 'results'}': give that folder",
             # a walk: 'brainclust view RUN/model' gave no hint (predict named the run folder)
             "demo_out/results/model": f"looks like the model/ folder of a run: pass the run folder "
                                       f"'{tmp_path / 'demo_out' / 'results'}', not its model/ folder"}
    for name, said in cases.items():
        assert main(COMMANDS[command](tmp_path / name, tmp_path)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"brainclust: error: '{tmp_path / name}' {said}"]
    assert not (tmp_path / "pred").exists() and not (tmp_path / "exported").exists()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_run_folder_that_cannot_be_entered_is_one_line(tmp_path, capsys, monkeypatch, command):
    """A run folder under a folder this user cannot enter (chmod 700 of another user's home): pathlib's exists()
    raises PermissionError there, which ended each command in 'internal error: PermissionError' (exit 1). The
    denial is simulated (the tests may run as root, whom no permission stops)."""
    import os

    (tmp_path / "data").mkdir()
    Image.fromarray(np.full((8, 8), 9, np.uint8)).save(tmp_path / "data" / "b.png")
    locked, real_stat = str(tmp_path / "home") + os.sep, os.stat  # the folder itself can be stat()ed

    def stat(path, *args, **kwargs):
        if os.fspath(path).startswith(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    assert main(COMMANDS[command](tmp_path / "home" / "run", tmp_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"brainclust: error: '{tmp_path / 'home' / 'run'}' cannot be read (Permission denied)"]
