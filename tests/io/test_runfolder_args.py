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
