"""CLI: exit codes, one-line errors, no half-written output, instant --help."""

import json
import os
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
    (["--self-supervised", "contrastive", "--ssl-views", ""], "besides identity (e.g. hflip,strong), got none"),
    (["--self-supervised", "none,rotation"], "'none' means no self-supervised learning; it cannot be combined"),
    (["--ssl-gate"], "--ssl-gate: would be ignored; it needs --self-supervised"),
    (["--self-supervised", "joint", "--k", "1"], "--k: 1 cannot be combined with --self-supervised"),
    (["--self-supervised", "all", "--ssl-mode", "finetune", "--ssl-views", "hflip"], "--ssl-views: applies to"),
])
def test_usage_errors_exit_2_with_one_line(capsys, small, tmp_path, extra, message):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "run", small, "--out", out, "--cache-dir", tmp_path / "c", *extra)
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.startswith("brainclust: error:")]
    assert len(lines) == 1 and message in lines[0]
    assert not out.exists()


def test_bf16_without_native_support_is_refused_before_the_scan(capsys, small, tmp_path, monkeypatch):
    from brainclust import pipeline
    from brainclust.features import openvino_runtime, runtime

    monkeypatch.setattr(runtime, "bf16_supported", lambda device="cpu": False)
    monkeypatch.setattr(openvino_runtime, "native_bf16", lambda: False)

    def no_scan(*a, **k):
        raise AssertionError("the folder was scanned")

    monkeypatch.setattr(pipeline, "scan", no_scan)
    for runtime_name in ("auto", "torch", "openvino"):
        out = tmp_path / f"out_{runtime_name}"
        code, _, err = run_cli(capsys, "run", small, "--out", out, "--precision", "bf16", "--runtime", runtime_name)
        lines = [ln for ln in err.splitlines() if ln.startswith("brainclust: error:")]
        assert code == 2 and len(lines) == 1 and "--precision bf16" in lines[0], err
        assert not out.exists()


def _output_folder(folder):
    """A brainclust output folder (what the scan skips as a folder, with its reason)."""
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text("{}")
    (folder / "assignments.csv").write_text("")


@pytest.mark.parametrize("command", ["run", "check"])
def test_a_skipped_folder_is_counted_as_a_folder(capsys, tmp_path, small, command):
    """A walk: a run on a folder holding a run folder said '1 file skipped' for the folder it skipped."""
    _output_folder(tmp_path / "only" / "results")
    code, _, err = run_cli(capsys, command, tmp_path / "only", "--out", tmp_path / "o1")
    assert code == 2 and "contains no readable image (1 folder skipped)" in err
    import shutil

    shutil.copytree(small, tmp_path / "data")
    _output_folder(tmp_path / "data" / "results")
    (tmp_path / "data" / "broken.png").write_bytes(b"not a png")
    extra = ["--backbone", "pixels@16", "--no-report", "--k", "2"] if command == "run" else []
    code, out, _ = run_cli(capsys, command, tmp_path / "data", "--out", tmp_path / "o2", "--workers", "0", *extra)
    assert code == 0 and "1 file and 1 folder skipped (see manifest.json)" in out, out


@pytest.mark.parametrize("command", ["run", "check"])
def test_a_folder_without_a_readable_image_exits_2_and_writes_nothing(capsys, tmp_path, command):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    code, _, err = run_cli(capsys, command, tmp_path / "in", "--out", tmp_path / "out")
    assert code == 2 and "contains no readable image (1 file skipped)" in err
    assert not (tmp_path / "out").exists()


def test_command_output_keeps_its_lines_and_escapes_everything_else(capsys):
    from brainclust.cli import say

    say("exported into out\x1b]0;title\x07", "two\nlines\r", "bytes \udcff")
    assert capsys.readouterr().out == "exported into out\\x1b]0;title\\x07\ntwo\nlines\\x0d\nbytes \\xff\n"


def test_control_characters_in_names_reach_the_terminal_escaped(capsys, tmp_path):
    data = tmp_path / "in\x1b[31m"
    data.mkdir()
    (data / "bad\x1b[2J.png").write_bytes(b"zz")
    code, out, err = run_cli(capsys, "check", data, "--out", tmp_path / "out")  # a warning, then the error
    code2, out2, err2 = run_cli(capsys, "run", tmp_path / "missing\x07", "--out", tmp_path / "o2")
    with pytest.raises(SystemExit) as exc:
        main(["run", str(data), "--k", "x\x1b[1m"])
    err3 = capsys.readouterr().err
    assert (code, code2, exc.value.code) == (2, 2, 2)
    assert "bad\\x1b[2J.png" in err and "in\\x1b[31m" in err and "missing\\x07" in err2 and "x\\x1b[1m" in err3
    assert not any(c in text for text in (out, err, out2, err2, err3) for c in "\x1b\x07")


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "x", "--out", "y", "--method", "ward"])
    assert exc.value.code == 2


@pytest.mark.slow
def test_run_and_predict_commands(capsys, small, tmp_path):
    code, out, _ = run_cli(capsys, "run", small, "--out", tmp_path / "r", "--k", "3", "--labels-from-folders",
                           "--backbone", "efficientnet_lite0", "--cache-dir", tmp_path / "c", "--workers", "0")
    assert code == 0 and "NMI=" in out and "assignments.csv" in out
    code, out, _ = run_cli(capsys, "predict", tmp_path / "r", small, "--out", tmp_path / "p",
                           "--cache-dir", tmp_path / "c", "--workers", "0")
    assert code == 0 and "9 hits, 0 misses" in out
    code, _, err = run_cli(capsys, "predict", tmp_path / "nowhere", small, "--out", tmp_path / "p2")
    assert code == 2 and "not a finished brainclust run" in err


@pytest.mark.slow
def test_demo_command(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "demo", "--out", tmp_path / "demo", "--n-per-class", "4",
                           "--cache-dir", tmp_path / "c")
    assert code == 0
    scores = json.loads(out.strip().splitlines()[-1])
    assert set(scores) == {"silhouette", "ari", "nmi", "fmi", "acc"}
    assert (tmp_path / "demo" / "results" / "assignments.csv").is_file()
    assert len(list((tmp_path / "demo" / "data").rglob("*.png"))) == 12


@pytest.mark.slow
def test_help_imports_no_heavy_library():
    """Every command's --help (GUIDE.md: instant): the options are declared without torch, scikit-learn, pandas
    or SciPy (each took seconds to import)."""
    code = ("import contextlib, io, sys\n"
            "from brainclust.cli import build_parser\n"
            "p = build_parser()\n"
            "commands = [n for a in p._actions if isinstance(a.choices, dict) for n in a.choices]\n"
            "for argv in [['--help']] + [[c, '--help'] for c in commands]:\n"
            "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "        build_parser().parse_args(argv)\n"
            "print(len(commands), sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'sklearn', 'pandas', "
            "'scipy'}))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    n, heavy = res.stdout.strip().split(" ", 1)
    assert int(n) >= 10 and heavy == "[]"


def test_demo_with_one_image_per_class_exits_2_with_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "demo", "--out", tmp_path / "demo", "--n-per-class", "1")
    lines = [ln for ln in err.splitlines() if ln.startswith("brainclust:")]
    assert code == 2 and len(lines) == 1 and "--n-per-class" in lines[0] and "Traceback" not in err
    assert not (tmp_path / "demo").exists()


def test_demo_refuses_a_folder_holding_files_it_does_not_write(capsys, tmp_path):
    """A user's image in DEMO/data/axial/ was clustered and scored as a demo image (a new user's walk)."""
    mine = tmp_path / "demo" / "data" / "axial" / "my_patient_scan.png"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"not touched")
    code, _, err = run_cli(capsys, "demo", "--out", tmp_path / "demo", "--n-per-class", "2")
    assert code == 2 and "holds 'data/axial/my_patient_scan.png', which 'brainclust demo' does not write" in err
    assert mine.read_bytes() == b"not touched" and sorted(p.name for p in mine.parent.iterdir()) == [mine.name]
    assert not (tmp_path / "demo" / "results").exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "thesis.txt").write_text("mine")
    code, _, err = run_cli(capsys, "demo", "--out", tmp_path / "other", "--n-per-class", "2")
    assert code == 2 and "holds 'thesis.txt'" in err and sorted(os.listdir(tmp_path / "other")) == ["thesis.txt"]


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(capsys, tmp_path, monkeypatch):
    import brainclust.pipeline as P

    def broken(*a, **k):
        raise ValueError("something no rule foresaw")

    monkeypatch.setattr(P, "scan_nonempty", broken)
    (tmp_path / "d").mkdir()
    code, _, err = run_cli(capsys, "run", tmp_path / "d", "--out", tmp_path / "o")
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("brainclust: internal error: ValueError: something no rule")
    code, _, err = run_cli(capsys, "--debug", "run", tmp_path / "d", "--out", tmp_path / "o")
    assert code == 1 and "Traceback" in err and "something no rule foresaw" in err
    code, _, err = run_cli(capsys, "run", tmp_path / "d", "--out", tmp_path / "o", "--k", "0", "--debug")
    # --debug after the command, a usage error
    assert code == 2 and "Traceback" in err and "--k (n_clusters): must be" in err


def test_ignored_settings_are_refused_on_the_command_line(capsys, small, tmp_path):
    code, _, err = run_cli(capsys, "run", small, "--out", tmp_path / "o", "--ssl-gate")
    assert code == 2 and "--ssl-gate: would be ignored" in err
    code, _, err = run_cli(capsys, "run", small, "--out", tmp_path / "o", "--fusion-norm", "block")
    assert code == 2 and "--fusion-norm: would be ignored" in err


@pytest.mark.parametrize("command, flag, value, wanted", [
    (["check", "{data}", "--out", "{out}"], "--split-column", "fold", "a --split-table CSV"),
    (["report", "{out}"], "--metadata-key", "subject", "a --metadata table"),
])
def test_check_and_report_refuse_an_ignored_setting_by_the_runs_rule(capsys, small, tmp_path, monkeypatch, command,
                                                                      flag, value, wanted):
    """``check --split-column`` without ``--split-table`` and ``report --metadata-key`` without ``--metadata`` are
    refused by the rule a run refuses them by (brainclust.core.needs.NEEDS, declared once; each command had its
    own copy), in the run's line: changed there, all say the new one."""
    from dataclasses import replace

    from brainclust.core import needs

    name = flag[2:].replace("-", "_")
    monkeypatch.setattr(needs, "NEEDS", tuple(replace(n, wanted=wanted) if n.name == name else n for n in needs.NEEDS))
    line = f"brainclust: error: {flag}: would be ignored (got {value!r}); it needs {wanted}"
    code, _, err = run_cli(capsys, "run", small, "--out", tmp_path / "run", flag, value)
    assert code == 2 and line in err.splitlines()
    argv = [a.format(data=small, out=tmp_path / "o") for a in command]
    code, _, err = run_cli(capsys, *argv, flag, value)
    assert code == 2 and line in err.splitlines() and not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, match", [(["--permutations", "99999999999"], "--permutations"),
                                         (["--metadata", "/dev/zero"], "not a regular file"),
                                         (["--split-table", "/dev/zero"], "not a regular file")])
def test_unbounded_inputs_are_refused_in_one_line(tmp_path, capsys, args, match):
    from PIL import Image

    for i in range(3):
        Image.new("L", (16, 16), 40 * i).save(tmp_path / f"i{i}.png")
    assert main(["-q", "run", str(tmp_path), "--out", str(tmp_path.parent / (tmp_path.name + "_o")), "--k", "2",
                 "--backbone", "pixels@16", "--workers", "0", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0]


@pytest.mark.parametrize("argv", [["run"], ["run", "d", "--out", "o", "--k", "abc"], ["run", "d", "--out", "o",
                                  "--method", "nope"], ["run", "d", "--out", "o", "--batch-size", "x"], ["bogus"],
                                  ["run", "d", "--out"]])
def test_a_bad_command_line_is_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and " error: " in err[0] and "--help" in err[0]


def test_summary_says_how_many_images_the_label_scores_cover():
    from types import SimpleNamespace

    from brainclust.clisummary import run_summary as _summary

    def line(**metrics):
        m = {"n_images": 20, "n_clusters": 2, "silhouette": 0.5, **metrics}
        res = SimpleNamespace(metrics=m, manifest={}, skipped=[], checks=None, associations=None, out_dir=None)
        return _summary(res).splitlines()[0]

    scores = {"ari": 1.0, "nmi": 1.0, "fmi": 0.0, "acc": 1.0}
    assert line(n_labelled=2, **scores).endswith("label scores over the 2 labelled of 20 (too few to mean much)")
    assert line(n_labelled=15, **scores).endswith("ACC=1.000, label scores over the 15 labelled of 20")
    assert line(n_labelled=20, **scores).endswith("ACC=1.000")                    # every image labelled
    assert line().endswith("silhouette=0.500")                                     # no labels
    assert line(n_noise=3).startswith("20 images, 2 clusters (+ 3 noise images as cluster -1), ")  # dbscan
    assert "(+ 1 outlier as cluster -1)" in line(n_noise=1, outliers={"n": 1})     # --outliers auto
    def summary(manifest):
        res = SimpleNamespace(metrics={"n_images": 20, "n_clusters": 2, "silhouette": 0.87}, manifest=manifest,
                              skipped=[], checks=None, associations=None, out_dir=None)
        return _summary(res)

    # --reduce umap, or --auto choosing it: the silhouette is on the UMAP embedding (0.87 with NMI 0.001 on yes/no)
    for manifest in ({"settings": {"reduce": "umap"}},
                     {"settings": {"reduce": "pca"}, "auto": {"chosen": {"reduce": "pca+umap"}}}):
        assert "silhouette on the UMAP embedding" in summary(manifest).splitlines()[1]
    assert "UMAP" not in summary({"settings": {"reduce": "pca"}})
    res = SimpleNamespace(metrics={"n_images": 20, "n_clusters": 2}, manifest={"ssl": {"gate": {"kept": False}}},
                          skipped=[], checks=None, associations=None, out_dir=None)
    assert "--ssl-gate: set the self-supervised embedding aside: the frozen features are clustered" in _summary(res)


def test_summary_names_the_report_only_when_one_was_written():
    """A walk (2026-12-07): `run --within plane --k auto --no-report` printed "votes and curves in metrics.json
    within.k_selection, the report", and `--auto --no-report` "(auto.csv, the report's section)";
    predict writes none."""
    from types import SimpleNamespace

    from brainclust.clisummary import auto_line, run_summary as _summary

    within = {"k": {"axial": 3}, "k_selection": {"axial": {}}}
    res = SimpleNamespace(metrics={"n_images": 20, "n_clusters": 3, "silhouette": 0.5, "within": within},
                          manifest={"auto": {"outcome": "kept the default", "candidates": []}}, skipped=[], checks=None,
                          associations=None, out_dir=None, config=SimpleNamespace(within="plane", consensus=False))
    assert "within.k_selection, the report)" in _summary(res)
    assert "within.k_selection)" in _summary(res, report=False) and "report" not in _summary(res, report=False)
    assert auto_line(res).endswith("(auto.csv, the report's section)")
    assert auto_line(res, report=False).endswith("(auto.csv)")
    # --k auto --no-report: its line (and the log's, below) named "the report's k panel"
    res.metrics = {"n_images": 20, "n_clusters": 2, "k_selection": {"chosen_k": 2, "indices": {"gap": {"vote": 2}},
                                                                    "prediction_strength": {"ks": [2]}}}
    assert "--k auto: k = 2 (votes: gap 2; curves and prediction strength in metrics.json, the report's k panel)" \
        in _summary(res)
    assert "(votes: gap 2; curves and prediction strength in metrics.json)" in _summary(res, report=False)


def test_the_k_evidence_log_names_no_report(caplog):
    """The library does not know whether a report will be written (--no-report): the summary names it."""
    import numpy as np

    from brainclust.model.kevidence import prediction_strength

    X = np.random.default_rng(0).normal(size=(40, 3)) + np.repeat([[0, 0, 0], [9, 9, 9]], 20, axis=0)
    with caplog.at_level("INFO", logger="brainclust"):
        assert prediction_strength(X, np.repeat([0, 1], 20), "kmeans", 0) is not None
    assert "metrics.json k_selection.prediction_strength" in caplog.text and "report" not in caplog.text


def test_summary_counts_one_image_and_one_cache_miss_in_the_singular():
    """predict on one new image said '1 images, 1 cluster' and 'feature cache: 0 hits, 1 misses'."""
    from types import SimpleNamespace

    from brainclust.clisummary import run_summary as _summary

    def lines(manifest):
        res = SimpleNamespace(metrics={"n_images": 1, "n_clusters": 1, "silhouette": None}, manifest=manifest,
                              skipped=[], checks=None, associations=None, out_dir=None)
        return _summary(res).splitlines()

    got = lines({"cache": {"hits": 1, "misses": 1, "views": {"views": 2, "hits": 0, "misses": 1}}})
    assert got[0] == "1 image, 1 cluster, silhouette=n/a"
    assert got[1] == ("feature cache: 1 hit, 1 miss; augmented views for --self-supervised (2 of each image): "
                      "0 hits, 1 miss")
    assert lines({"units": {"unit": "subject", "n_images": 1}})[0].startswith("1 subject from 1 image, ")


def test_summary_gives_the_scores_over_distinct_images_when_copies_were_dropped():
    """metrics.json's scores over distinct images were in no line a user reads, even with copies that inflate the
    run's scores (a walk: 10 duplicates in the 4-class set)."""
    from types import SimpleNamespace

    from brainclust.clisummary import run_summary as _summary

    def lines(distinct, **extra):
        m = {"n_images": 200, "n_clusters": 4, "silhouette": 0.28, "ari": 0.21, "nmi": 0.26, "distinct": distinct,
             **extra}
        res = SimpleNamespace(metrics=m, manifest={}, skipped=[], checks=None, associations=None, out_dir=None)
        return _summary(res).splitlines()

    copies = {"n_images": 199, "silhouette": 0.2791, "ari": 0.2048, "nmi": 0.2428}
    assert lines(copies)[1] == ("over the 199 distinct of 200 clustered images (exact copies dropped): silhouette "
                                "0.279, ARI 0.205, NMI 0.243 (metrics.json distinct)")
    assert not any("distinct" in ln for ln in lines({**copies, "n_images": 200}))  # every image distinct
    assert not any("distinct" in ln for ln in lines({**copies, "n_images": 190}, n_set_aside=10))  # set aside only
    # no score over the distinct images: the line ended in ': ' and nothing (predict of one copy and one new image)
    alone = {"n_images": 1, "n_clusters": 1, "silhouette": None}
    assert lines(alone, n_images=2)[1] == ("over the 1 distinct of 2 clustered images (exact copies dropped): "
                                           "silhouette n/a (metrics.json distinct)")
    assert lines({**alone, "n_images": 0}, n_images=1)[1] == (  # 'over the 0 distinct of 1 clustered images'
        "none of the 1 clustered images is distinct (each is an exact copy of an image the model was fitted on, or "
        "of another): no scores over distinct images (metrics.json distinct)")


def test_summary_says_a_kept_ssl_embeddings_silhouette_is_not_comparable_and_gives_the_gates_figures():
    # a walk's --self-supervised all printed silhouette 0.586 (0.280 without it) with no caveat while NMI fell
    from types import SimpleNamespace

    from brainclust.clisummary import run_summary as _summary

    def summary(manifest):
        res = SimpleNamespace(metrics={"n_images": 200, "n_clusters": 4, "silhouette": 0.586}, manifest=manifest,
                              skipped=[], checks=None, associations=None, out_dir=None)
        return _summary(res).splitlines()

    kept = summary({"settings": {"reduce": "pca", "ssl": ["contrastive", "rotation", "joint", "refine"]},
                    "ssl": {"mode": "head"}})
    assert kept[1] == ("silhouette on the self-supervised embedding (contrastive,rotation,joint,refine), trained to "
                       "separate the clusters, which tends to raise it: not comparable with that of a run without "
                       "--self-supervised")
    gate = {"kept": False, "frozen": {"stability": 0.9649, "knn_agreement": 0.943},
            "ssl": {"stability": 0.8906, "knn_agreement": 0.941}}
    aside = summary({"settings": {"reduce": "pca", "ssl": []}, "ssl": {"gate": gate}})  # the frozen features'
    assert aside[1] == ("--ssl-gate: set the self-supervised embedding aside: the frozen features are clustered "
                        "(SSL vs frozen: stability 0.891 vs 0.965, kNN agreement 0.941 vs 0.943; manifest.json "
                        "ssl.gate)")
    assert not any("not comparable" in line for line in aside)


def test_an_option_is_named_once_in_argparse_errors(capsys, tmp_path):
    from brainclust.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["run", str(tmp_path), "--out", str(tmp_path / "o"), "--exclude", "duplicates"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "argument --exclude: unknown flag 'duplicates'" in err and err.count("--exclude") == 1


def test_quiet_hides_the_progress_bars_too(tmp_path):
    """The README: ``-q`` silences the log, progress bars included (they showed on a terminal)."""
    from brainclust import progress
    from brainclust.cli import main

    assert main(["-q", "run", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert progress.SHOW_BY_DEFAULT is False and progress.bar(3, "x").disable
    assert not progress.bar(3, "x", enabled=True).disable  # a bar asked for still shows
    assert main(["run", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert progress.SHOW_BY_DEFAULT is None


def test_without_a_terminal_long_work_logs_progress_lines(monkeypatch, caplog):
    """A batch job's log (stderr a file) showed nothing until the end of a long extraction."""
    import logging

    from brainclust import progress

    monkeypatch.setattr(progress, "LOG_WITHOUT_TERMINAL", True)
    monkeypatch.setattr(progress, "SHOW_BY_DEFAULT", None)
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: False, raising=False)
    with caplog.at_level(logging.INFO, logger="brainclust"):
        b = progress.bar(2000, "features (pixels, fp32)")
        b.update(500)
        b.update(1500)
        b.close()
    assert isinstance(b, progress.LogProgress)
    assert "features (pixels, fp32): 500 of 2,000 img (25 %) after" in caplog.text
    assert caplog.text.count("2,000 of 2,000 img (100 %)") == 1  # the last count once, not again at close
    monkeypatch.setattr(progress, "LOG_EVERY_S", 3600.0)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="brainclust"):
        short = progress.bar(10, "scan", unit="file")
        short.update(10)
        short.close()
    assert caplog.text == ""  # short work logs nothing
    monkeypatch.setattr(progress, "LOG_DONE_AFTER_S", 0.0)
    with caplog.at_level(logging.INFO, logger="brainclust"):
        done = progress.bar(10, "scan", unit="file")
        done.update(10)
        done.close()
    assert "scan: 10 of 10 file (100 %) after" in caplog.text  # work past LOG_DONE_AFTER_S says it is done


@pytest.mark.parametrize("argv", [["check", "DATA", "--out", "O", "--exclude", "duplicate"],
                                  ["predict", "RUN", "DATA", "--out", "O", "--exclude", "duplicate"],
                                  ["run", "DATA", "--out", "O", "--intensity", "0,255"]])
def test_an_abbreviated_option_is_refused(argv, capsys):
    """``predict --exclude duplicate`` ran as ``--exclude-files duplicate`` (argparse's prefix matching)."""
    from brainclust.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "unrecognized arguments" in err and err.count("\n") == 1


def test_predict_exclude_files_empty_clears_the_runs_filter(monkeypatch):
    """A run fitted with --exclude-files 'sub-05/**' (a held-out subject) applied it to predict's new folder too,
    and nothing could clear it: '' now means none."""
    import brainclust.pipeline as pipeline
    from brainclust.cli import main

    seen = []

    def recorded(*args, **kwargs):  # what the CLI passes on; no run is needed
        seen.append(kwargs)
        raise SystemExit(0)
    monkeypatch.setattr(pipeline, "predict", recorded)
    for given, expected in (([], None), (["--exclude-files", ""], []), (["--exclude-files", "x/*"], ["x/*"])):
        with pytest.raises(SystemExit):
            main(["predict", "RUN", "NEW", "--out", "O", *given])
        assert seen[-1]["exclude_files"] == expected


def test_an_interrupted_run_promises_only_the_features_kept():
    """A walk's run lost 4 minutes of fine-tuning to Ctrl-C after a line that said it would "resume"."""
    from brainclust.terminal import stopped

    line, status = stopped(KeyboardInterrupt(), "run")
    assert status == 130 and line == ("brainclust: interrupted; rerun the same command: the features extracted so far "
                                      "are kept (self-supervised training and clustering start again)")


@pytest.mark.parametrize("where", ["parsing", "command"])
def test_ctrl_c_at_any_moment_gives_one_line_and_status_130(monkeypatch, capsys, where):
    """Building the parser takes a second or two (the backbones' registry): Ctrl-C there is no traceback either."""
    import brainclust.cli as cli

    def interrupt(*_a, **_k):
        raise KeyboardInterrupt
    if where == "parsing":
        monkeypatch.setattr(cli, "build_parser", interrupt)
    else:
        monkeypatch.setitem(cli.COMMANDS, "report", interrupt)
    assert cli.main(["report", "somewhere"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["brainclust: interrupted" + ("; nothing was changed" if where == "command" else "")]


def test_a_mistyped_option_gets_the_closest_one(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "data", "--out", "o", "--labels-from-folder"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "did you mean --labels-from-folders?" in err and err.count("\n") == 1
    with pytest.raises(SystemExit):
        main(["run", "data", "--out", "o", "--qqq"])
    assert "did you mean" not in capsys.readouterr().err  # nothing close: no guess
    with pytest.raises(SystemExit):
        main(["check", "data", "--out", "o", "--labels-from-folder"])
    assert "did you mean" not in capsys.readouterr().err  # 'check' has no --labels-from-folders: no guess


def test_another_commands_option_is_named_as_such_with_the_commands_help(capsys):
    """`check --exclude duplicate` suggested --include and the general help (a walk's find)."""
    with pytest.raises(SystemExit) as exc:
        main(["check", "data", "--out", "o", "--exclude", "duplicate"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1
    assert ("--exclude is an option of 'brainclust run', not of 'brainclust check' (see 'brainclust check --help')"
            in err) and "did you mean" not in err
    with pytest.raises(SystemExit):
        main(["run", "data", "--out", "o", "--exclud", "duplicate"])
    assert "did you mean --exclude? (see 'brainclust run --help')" in capsys.readouterr().err


def test_a_librarys_warning_is_one_line_of_the_log(tmp_path):
    """scikit-learn's "Graph is not fully connected" (spectral) printed Python's file, line and source line
    ("warnings.warn(") among the command's lines; the CLI logs it as one line of its own."""
    import subprocess
    import sys

    from PIL import Image

    Image.new("L", (40, 40), 30).save(tmp_path / "a.png")
    code = ("import sys, warnings\n"
            "import brainclust.checks.stage as stage\n"
            "def fake(*args, **kwargs):\n"
            "    warnings.warn('Graph is not fully connected, spectral embedding may not work as expected.\\n"
            "second line', UserWarning)\n"
            "    sys.exit(0)\n"
            "stage.check_data = fake\n"
            "from brainclust.cli import main\n"
            f"sys.exit(main(['check', {str(tmp_path)!r}, '--out', {str(tmp_path / 'out')!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["brainclust: UserWarning: Graph is not fully connected, spectral embedding "
                                        "may not work as expected."], proc.stderr


def test_a_within_run_that_ranks_no_column_names_its_strata_once(capsys, tmp_path):
    """--within folder on BMP images (one file size, no descriptors): no column can be ranked within the folders,
    and the summary said so twice: '... ranked within each folder (...) (associations.csv; within each folder, which
    is not ranked)'; so did `report --metadata`. Now once; a run that ranks a column still names the strata."""
    import numpy as np
    from PIL import Image

    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for folder in ("a", "b"):
        (data / folder).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 256, (24, 24), dtype=np.uint8)
            pixels[:, : 12 if i % 2 else 4] = 255 * (i % 2)
            Image.fromarray(pixels).save(data / folder / f"img{i}.bmp")
    common = ["run", data, "--within", "folder", "--k", "2", "--no-report", "--descriptors", "off", "--checks", "off",
              "--backbone", "histogram", "--cache-dir", tmp_path / "c"]
    code, out, _ = run_cli(capsys, *common, "--out", tmp_path / "o")
    line = next(ln for ln in out.splitlines() if "associations.csv" in ln and not ln.startswith("outputs"))
    assert code == 0 and line.startswith("clusters: no metadata column could be ranked within each folder"), out
    assert line.count("within each folder") == 1, line
    table = tmp_path / "t.csv"
    table.write_text("path,side\n" + "".join(f"{f}/img{i}.bmp,{f}\n" for f in "ab" for i in range(6)))
    code, out, _ = run_cli(capsys, "report", tmp_path / "o", "--metadata", table)
    line = next(ln for ln in out.splitlines() if ln.startswith("metadata:"))
    assert code == 0 and "no metadata column could be ranked within each folder" in line, out
    assert line.count("within each folder") == 1, line
    table.write_text("path,odd\n" + "".join(f"{f}/img{i}.bmp,{i % 2}\n" for f in "ab" for i in range(6)))
    code, out, _ = run_cli(capsys, "report", tmp_path / "o", "--metadata", table)
    line = next(ln for ln in out.splitlines() if ln.startswith("metadata:"))
    assert code == 0 and "odd" in line and line.endswith(" (within each folder)"), out
