"""``brainclust check DATA --out OUT``: the checks alone, published like a run folder."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from brainclust.checks.stage import check_data
from brainclust.cli import main
from brainclust.errors import ParameterError
from brainclust.io.outputs import QUALITY_COLUMNS

from checks_planting import head_slice, save, screenshot


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmd") / "data"
    for i in range(8):
        save(root / ("train" if i < 4 else "test") / f"s{i}.png", head_slice(i))
    shutil.copyfile(root / "train" / "s1.png", root / "test" / "s1_copy.png")
    save(root / "test" / "photo.png", screenshot(2))
    save(root / "test" / "tiny.png", np.full((10, 10), 40, np.uint8))
    return root


def test_check_publishes_quality_leakage_and_a_manifest(data, tmp_path):
    out = tmp_path / "out"
    res = check_data(data, out, cache_dir=str(tmp_path / "c"), progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["leakage.csv", "manifest.json", "quality.csv"]
    assert out.joinpath("quality.csv").read_text().splitlines()[0] == ",".join(QUALITY_COLUMNS)
    assert len(out.joinpath("quality.csv").read_text().splitlines()) == 1 + 11
    m = json.loads(out.joinpath("manifest.json").read_text())
    assert m["kind"] == "check" and m["n_images"] == 11 and m["checks"]["split_source"] == "folder"
    assert m["checks"]["counts"]["duplicate"] == 1 and m["checks"]["summary"] == res.summary()
    assert "1 duplicate (1 across test/train)" in res.summary()
    assert len(out.joinpath("leakage.csv").read_text().splitlines()) == 3
    again = check_data(data, out, cache_dir=str(tmp_path / "c"), progress=False)  # an earlier check's folder
    assert again.flags == res.flags


def test_check_refuses_an_out_inside_the_data_or_holding_other_files(data, tmp_path):
    with pytest.raises(ParameterError, match="must be outside"):
        check_data(data, data / "checks", progress=False)
    run_like = tmp_path / "a_run"
    run_like.mkdir()
    (run_like / "assignments.csv").write_text("path,cluster\n")
    with pytest.raises(ParameterError, match="holds 'assignments.csv', which a brainclust run writes: a run's "
                                             "folder is not replaced by this command"):
        check_data(data, run_like, progress=False)
    assert (run_like / "assignments.csv").is_file()
    (run_like / "assignments.csv").unlink()
    (run_like / "notes.txt").write_text("mine")
    with pytest.raises(ParameterError, match="holds 'notes.txt', which is not a brainclust output"):
        check_data(data, run_like, progress=False)


@pytest.mark.parametrize("settings, message", [
    ({"check_thresholds": "min_side=zero"}, "--check-thresholds: min_side must be a number"),
    ({"split_column": "fold"}, "--split-column: would be ignored"),
    ({"workers": -1}, "--workers: must be None or an integer from 0 to 64"),
    ({"workers": 500}, "--workers: must be None or an integer from 0 to 64"),
    ({"slices": "sideways:mid"}, "sideways"),
])
def test_check_refuses_bad_settings_before_the_scan(data, tmp_path, settings, message):
    with pytest.raises(ParameterError) as err:
        check_data(data, tmp_path / "o", **settings)
    assert message in str(err.value) and not (tmp_path / "o").exists()


def test_the_command_prints_the_summary_and_maps_errors_to_exit_2(data, tmp_path, capsys):
    assert main(["check", str(data), "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c")]) == 0
    printed = capsys.readouterr().out
    assert "11 image(s) checked" in printed and "checks: 1 duplicate (1 across test/train)" in printed
    assert "not MRI" in printed and "tiny" in printed
    assert main(["check", str(data), "--out", str(tmp_path / "o2"), "--check-thresholds", "bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("brainclust: error: --check-thresholds") and "\n" not in err


def test_check_refuses_a_cache_inside_out_before_any_work(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        save(data / f"a{i}.png", head_slice(i))
    capsys.readouterr()
    assert main(["-q", "check", str(data), "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "o" / "c")]) == 2
    assert "--cache-dir" in capsys.readouterr().err
    assert not (tmp_path / "o" / "c").exists()


def test_a_folder_where_no_image_decodes_is_an_error_not_a_clean_check(tmp_path):
    from brainclust.errors import InputError

    data = tmp_path / "truncated"
    save(data / "a.png", head_slice(0))
    save(data / "b.png", head_slice(1))
    for p in data.iterdir():
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(InputError, match="none of its 2 image.s. could be decoded .*nothing was checked"):
        check_data(data, tmp_path / "o", progress=False, cache_dir=False)
    assert not (tmp_path / "o").exists()
