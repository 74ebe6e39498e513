"""Each setting is declared once: RunConfig's fields and the CLI's options cannot drift apart; every rule is the
library's; a setting that would be ignored is refused with one line."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest

from brainclust.cli import build_parser, config_from_args
from brainclust.errors import ParameterError
from brainclust.model.config import RunConfig, build_steps, options

#: Settings a user of the CLI never sets (progress bars follow the terminal).
NO_OPTION = {"progress", "pca_given"}


def _run_parser():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices["run"]


def test_every_field_has_one_option_and_every_run_option_is_a_field():
    names = {f.name for f in fields(RunConfig)}
    assert set(options()) == names - NO_OPTION
    dests = {a.dest for a in _run_parser()._actions} - {"help", "quiet", "debug", "data", "out", "no_report"}
    assert dests == set(options())
    flags = {a.dest: a.option_strings[0] for a in _run_parser()._actions if a.option_strings}
    assert all(flags[n] == o.flag for n, o in options().items())


def test_the_run_options_defaults_are_the_config_defaults():
    args = _run_parser().parse_args(["data", "--out", "o"])
    assert config_from_args(args) == RunConfig()


def test_a_pca_on_the_command_line_is_the_users_even_at_the_default_value():
    """--pca 50 typed is the user's choice (a cap is then a warning); left out, it is not (capped quietly)."""
    assert config_from_args(_run_parser().parse_args(["d", "--out", "o"])).pca_given is None
    for argv in (["--pca", "50"], ["--pca=50"]):
        cfg = config_from_args(_run_parser().parse_args(["d", "--out", "o", *argv]))
        assert (cfg.pca, cfg.pca_given) == (50, True)


def test_options_parse_into_the_fields():
    args = _run_parser().parse_args(["d", "--out", "o", "--k", "auto", "--pca", "0.9", "--clip", "off",
                                     "--self-supervised", "all", "--ssl-views", "hflip,strong", "--seed", "7"])
    cfg = config_from_args(args)
    assert (cfg.k, cfg.pca, cfg.clip_percentiles, cfg.seed, cfg.ssl_views) == ("auto", 0.9, None, 7,
                                                                              ("hflip", "strong"))
    assert cfg.ssl == ("contrastive", "rotation", "joint", "refine")


def test_bids_detection_is_a_run_setting_with_its_option():
    assert RunConfig().bids == "auto"
    cfg = config_from_args(_run_parser().parse_args(["d", "--out", "o", "--bids", "off"]))
    assert cfg.bids == "off"
    cfg.validate()
    with pytest.raises(SystemExit):  # argparse: only the declared choices
        _run_parser().parse_args(["d", "--out", "o", "--bids", "on"])


@pytest.mark.parametrize("settings, message", [
    ({"ssl_gate": True}, "--ssl-gate: would be ignored"),
    ({"ssl_mode": "finetune"}, "--ssl-mode: would be ignored"),
    ({"ssl_epochs": 5}, "--ssl-epochs: would be ignored"),
    ({"ssl_views": ("hflip",)}, "--ssl-views: would be ignored"),
    ({"fusion_norm": "block"}, "--fusion-norm: would be ignored"),
    ({"reduce": "umap", "pca": 20}, "--pca: would be ignored"),
    ({"reduce": "umap", "pca": 50, "pca_given": True}, "--pca: would be ignored"),  # --pca 50 on the command line
    ({"intensity_window": (0.0, 255.0), "clip_percentiles": (1.0, 99.0)}, "--clip: would be ignored"),
    ({"ray_address": "auto"}, "--ray-address: only with --engine ray"),
    ({"auto": True, "consensus": True}, "--auto and --consensus: choose one"),
    ({"consensus": True, "method": "kmeans"}, "--consensus: clusters the co-association"),
    ({"auto": True, "backbone": "pixels"}, "--auto: chooses --backbone"),
    ({"bids": "off", "bids_filter": "suffix=T1w"}, "--bids-filter: would be ignored with --bids off"),
    ({"bids": "maybe"}, "--bids: must be one of auto, off"),
])
def test_settings_that_would_be_ignored_or_conflict_are_refused_by_the_library(settings, message):
    if settings.get("reduce") == "umap":
        pytest.importorskip("umap")
    with pytest.raises(ParameterError) as err:
        RunConfig(**settings).validate()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_help_of_agreement_and_device_says_what_the_library_accepts():
    """A walk (2026-12-07): `run --help` said --agreement works "with --precision bf16|int8 or another --runtime",
    but `--runtime torch --agreement` is refused (fp32 is the same on every runtime); --device listed
    cpu | cuda | auto, not the cuda:N the README names and the library takes."""
    helps = {a.dest: a.help for a in _run_parser()._actions}
    with pytest.raises(ParameterError, match="--agreement: would compare fp32 with itself"):
        RunConfig(agreement=True, runtime="torch").validate()
    assert "bf16|int8" in helps["agreement"] and "--runtime" not in helps["agreement"]
    assert "cuda:N" in helps["device"]


def test_the_settings_they_need_make_them_count():
    pytest.importorskip("umap")
    RunConfig(ssl=("contrastive",), ssl_gate=True, ssl_epochs=2).validate()
    RunConfig(backbone="pixels+hog", fusion_norm="block").validate()
    RunConfig(reduce="pca+umap", pca=20).validate()
    RunConfig(intensity_window=(0.0, 255.0)).validate()
    RunConfig(auto=True).validate()
    RunConfig(consensus=True).validate()


def test_validate_asks_each_step():
    steps = dict(build_steps(RunConfig(outliers="auto", k="auto")))
    assert type(steps["clusterer"]).__name__ == "AutoK"
    assert type(steps["clusterer"].estimator).__name__ == "OutlierRule"
    for settings, option in (({"batch_size": 0}, "--batch-size"), ({"pca": 1.0}, "--pca"), ({"k": 0}, "--k"),
                             ({"seed": -1}, "--seed"), ({"precision": "fp8"}, "--precision"),
                             ({"method": "ward"}, "--method"), ({"workers": -1}, "--workers")):
        with pytest.raises(ParameterError, match=option):
            RunConfig(**settings).validate()


def test_study_rules_live_in_the_library(tmp_path):
    from brainclust.analysis.ablation import ablation_datasets, run_ablation

    with pytest.raises(ParameterError, match="--seeds"):
        run_ablation({"x": tmp_path}, tmp_path / "out", seeds=())
    with pytest.raises(ParameterError, match="--datasets"):
        ablation_datasets(tmp_path, ["nope"], tmp_path / "demo")
    with pytest.raises(ParameterError, match="--data-root: needed for brain_tumor_yes_no"):
        ablation_datasets(None, ["demo", "brain_tumor_yes_no"], tmp_path / "demo")
    assert not (tmp_path / "out").exists()
    assert list(ablation_datasets(None, ["demo"], tmp_path / "demo")) == ["demo"]  # the demo set needs no folder


@pytest.mark.parametrize("settings, expected", [
    ({}, ("fp32", "auto")),
    ({"precision": "bf16"}, ("bf16", "auto")),
    ({"precision": "bf16", "runtime": "torch"}, ("bf16", "torch")),
    ({"precision": "bf16", "device": "cuda"}, ("fp32", "auto")),  # the checks extract on the CPU
])
def test_the_checks_likeness_features_follow_a_bf16_run_on_the_cpu(settings, expected):
    checks = dict(build_steps(RunConfig(**settings)))["checks"]
    assert (checks.likeness_precision, checks.likeness_runtime) == expected


@pytest.mark.parametrize("native", [True, False])
def test_an_int8_runs_likeness_features_are_bf16_only_where_the_cpu_runs_it_natively(monkeypatch, native):
    """int8 features move the likeness scores more than the thresholds' margins: never int8."""
    from brainclust.features import openvino_runtime as ovr

    monkeypatch.setattr(ovr, "openvino_available", lambda: True)
    monkeypatch.setattr(ovr, "native_bf16", lambda: native)
    checks = dict(build_steps(RunConfig(precision="int8")))["checks"]
    assert ((checks.likeness_precision, checks.likeness_runtime)
            == (("bf16", "openvino") if native else ("fp32", "auto")))


@pytest.mark.parametrize("argv, warned", [
    (["d", "--out", "o", "--method", "dbscan", "--k", "6"], True),
    (["d", "--out", "o", "--method", "dbscan", "--k=6"], True),
    (["d", "--out", "o", "--method", "dbscan"], False),  # the default k is not the user's
    (["d", "--out", "o", "--k", "6"], False),
    # --k still cuts the first pass's tree for a level_N column, and sets the heads of self-supervision
    (["d", "--out", "o", "--method", "dbscan", "--k", "6", "--within", "level_2"], False),
    (["d", "--out", "o", "--method", "dbscan", "--k", "6", "--remove", "level_3"], False),
    (["d", "--out", "o", "--method", "dbscan", "--k", "6", "--self-supervised", "rotation"], False),
])
def test_a_k_given_with_dbscan_is_said_to_be_unused(caplog, argv, warned):
    with caplog.at_level("WARNING", logger="brainclust"):
        config_from_args(build_parser().parse_args(["run", *argv]))
    assert ("--k 6 is not used" in caplog.text) == warned


@pytest.mark.parametrize("settings, expected", [
    ({"include": "glioma/*"}, {"include": ("glioma/*",)}),  # one pattern, not the characters 'g', ..., '/', '*'
    ({"exclude_files": "glioma/*", "include": ["*.jpg", "*.png"]},
     {"exclude_files": ("glioma/*",), "include": ("*.jpg", "*.png")}),
    ({"exclude": "duplicate"}, {"exclude": ("duplicate",)}),  # a comma list, as --exclude duplicate,blank
    ({"exclude": "blank, duplicate"}, {"exclude": ("duplicate", "blank")}),
    ({"exclude": "none"}, {"exclude": ()}),
    ({"ssl": "contrastive", "ssl_views": "hflip,intensity"}, {"ssl_views": ("hflip", "intensity")}),
    ({"clip_percentiles": "1,99"}, {"clip_percentiles": (1.0, 99.0)}),
    ({"clip_percentiles": "off"}, {"clip_percentiles": None}),
    ({"intensity_window": "0,255"}, {"intensity_window": (0.0, 255.0)}),
])
def test_a_string_for_a_list_setting_is_read_as_after_its_flag(settings, expected):
    from brainclust.model.record import run_config

    cfg = run_config(None, settings)
    assert {name: getattr(cfg, name) for name in expected} == expected


@pytest.mark.parametrize("settings, message", [
    ({"exclude": "duplicates"}, r"^--exclude: unknown flag 'duplicates'; the flags are duplicate, "),
    ({"clip_percentiles": "1"}, r"^--clip: expected LOW,HIGH percentiles"),
    ({"include": 5}, r"^--include: expected a pattern or a list of patterns, got 5$"),  # the scan's rule
    ({"exclude": b"duplicate"}, r"^--exclude: expected a string or a list of values, got b'duplicate'$"),  # not bytes
    ({"exclude": [b"duplicate"]}, r"^--exclude: expected a string or a list of values, got \[b'duplicate'\]$"),
    ({"exclude": [["duplicate"]]}, r"^--exclude: expected a string or a list of values, got \[\['duplicate'\]\]$"),
    ({"exclude": [None]}, r"^--exclude: expected a string or a list of values, got \[None\]$"),
    ({"include": b"*.png"}, r"^--include: expected a pattern or a list of patterns \(strings\), got b'\*\.png'$"),
    ({"include": [b"*.png"]}, r"^--include: expected a pattern or a list of patterns \(strings\), got \[b'"),
    ({"include": [5]}, r"^--include: expected a pattern or a list of patterns \(strings\), got \[5\]$"),
])
def test_a_bad_list_setting_is_one_line_naming_its_option(settings, message):
    with pytest.raises(ParameterError, match=message):
        RunConfig(**settings)


@pytest.mark.parametrize("value", [False, "of"])
def test_a_checks_setting_other_than_on_or_off_is_refused_not_read_as_on(value):
    from brainclust.model.record import run_config

    with pytest.raises(ParameterError, match=rf"^--checks: must be on or off, got {value!r}$"):
        run_config(None, {"checks": value})
    assert [n for n, _ in build_steps(run_config(None, {"checks": "off"}))] == ["extractor", "reducer", "clusterer"]


def test_none_for_a_list_setting_whose_default_is_empty_is_empty():
    assert RunConfig(exclude=None).exclude == () and RunConfig(exclude_files=None).exclude_files == ()
    RunConfig(exclude=None).validate()  # a bare TypeError before (the review of 2026-12-06)


@pytest.mark.parametrize("name, value", [("labels_from_folders", "no"), ("agreement", "no"),
                                         ("embeddings_features", "false"), ("auto", 1), ("progress", "x")])
def test_a_yes_no_setting_takes_only_true_or_false(name, value):
    """``run(data, out, labels_from_folders="no")`` scored against the folders ("no" is a true value; a probe's
    find). ``progress`` may also be None (the default: a bar when stderr is a terminal)."""
    with pytest.raises(ParameterError, match="must be True or False, got"):
        RunConfig(**{name: value}).validate()
    RunConfig(**{name: False}).validate()
    RunConfig(progress=None, labels_from_folders=np.bool_(True)).validate()


def test_a_dict_given_as_run_config_is_one_line_naming_the_keywords(tmp_path):
    import brainclust

    with pytest.raises(ParameterError, match=r"^config: expected a RunConfig or None, got dict; pass settings as "
                                             r"keywords \(run\(data, out, k=4\)\) or RunConfig\(k=4\)$"):
        brainclust.run(tmp_path, None, {"k": 3})  # was TypeError: replace() should be called on dataclass instances


@pytest.mark.parametrize("settings, warned", [
    ({"method": "dbscan", "k": 6}, True),
    ({"method": "dbscan"}, False),  # the default k is not the user's
    ({"method": "dbscan", "k": 6, "ssl": "rotation"}, False),  # k sets the heads
])
def test_run_with_k_and_dbscan_says_k_is_unused_as_the_command_line_does(caplog, settings, warned):
    from brainclust.model.record import run_config

    with caplog.at_level("WARNING", logger="brainclust"):
        run_config(None, settings)  # brainclust.run(data, method="dbscan", k=6) ignored k without a word
    assert ("--k 6 is not used: --method dbscan finds its own number of clusters" in caplog.text) == warned
