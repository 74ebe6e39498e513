"""CLI: exit codes, one-line errors, no half-written output, instant --help."""

import json
import subprocess
import sys

import pytest

from brainclust.cli import main
from brainclust.data.demo import make_demo_dataset


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("d") / "data", n_per_class=3, size=48)


def run_cli(capsys, *argv):
    code = main(list(map(str, argv)))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.mark.parametrize("extra, message", [
    (["--k", "100"], "--k: 100 clusters requested"),
    (["--backbone", "vgg"], "unknown backbone 'vgg'"),
    (["--backbone", "inception_v3", "--weights", "missing.pth"], "--weights: file 'missing.pth' does not exist"),
    (["--pca", "1.5"], "--pca"),
    (["--intensity-window", "255,0"], "--intensity-window: intensity window needs finite LOW < HIGH"),
    (["--intensity-window", "0,255", "--self-supervised", "all", "--ssl-mode", "finetune"], "--intensity-window: not"),
    (["--self-supervised", "contrastive", "--ssl-views", "hflip,rot90"], "--ssl-views: 'rot90' is a rotation"),
    (["--self-supervised", "all", "--ssl-mode", "finetune", "--ssl-views", "hflip"], "--ssl-views: applies to"),
])
def test_usage_errors_exit_2_with_one_line(capsys, small, tmp_path, extra, message):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "run", small, "--out", out, "--cache-dir", tmp_path / "c", *extra)
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.startswith("brainclust: error:")]
    assert len(lines) == 1 and message in lines[0]
    assert not out.exists()


def test_empty_folder_exits_2(capsys, tmp_path):
    (tmp_path / "in").mkdir()
    code, _, err = run_cli(capsys, "run", tmp_path / "in", "--out", tmp_path / "out")
    assert code == 2 and "contains no readable image" in err


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "x", "--out", "y", "--method", "ward"])
    assert exc.value.code == 2


def test_run_and_predict_commands(capsys, small, tmp_path):
    code, out, _ = run_cli(capsys, "run", small, "--out", tmp_path / "r", "--k", "3", "--labels-from-folders",
                           "--backbone", "efficientnet_lite0", "--cache-dir", tmp_path / "c", "--workers", "0")
    assert code == 0 and "NMI=" in out and "assignments.csv" in out
    code, out, _ = run_cli(capsys, "predict", tmp_path / "r", small, "--out", tmp_path / "p",
                           "--cache-dir", tmp_path / "c", "--workers", "0")
    assert code == 0 and "9 hits, 0 misses" in out
    code, _, err = run_cli(capsys, "predict", tmp_path / "nowhere", small, "--out", tmp_path / "p2")
    assert code == 2 and "not a finished brainclust run" in err


def test_demo_command(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "demo", "--out", tmp_path / "demo", "--n-per-class", "4",
                           "--cache-dir", tmp_path / "c")
    assert code == 0
    scores = json.loads(out.strip().splitlines()[-1])
    assert set(scores) == {"silhouette", "ari", "nmi", "fmi", "acc"}
    assert (tmp_path / "demo" / "results" / "assignments.csv").is_file()
    assert len(list((tmp_path / "demo" / "data").rglob("*.png"))) == 12


def test_help_does_not_import_torch():
    code = ("import sys; from brainclust.cli import build_parser; build_parser().format_help(); "
            "print('torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"
