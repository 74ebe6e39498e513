"""A run folder holds no path of the machine that made it, except ``manifest.json`` (README, Outputs):
``model/config.json`` names the weights file by name and SHA-256, and ``predict`` finds it again (the torch cache,
the backbone's own file, or its ``--weights``), or says in one line which file it needs. Model folders saved
before (version 2, the weights' absolute path) still load."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from brainclust import pipeline
from brainclust.errors import ModelFileError, WeightsUnavailableError
from brainclust.features import backbones, weightsfile
from brainclust.model.composite import BrainClusterModel

from conftest import two_group_images


def _own_lite0() -> Path:
    path = backbones.REGISTRY["efficientnet_lite0"].default_weights()
    if path is None:
        pytest.skip("the efficientnet_lite0 weights package is not installed")
    return Path(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A run on weights of the user's own (the package's, one tensor scaled), with a metadata table, a split table,
    --within folder and its own cache folder: every kind of path a run is given."""
    root = tmp_path_factory.mktemp("portable")
    data = root / "data"
    two_group_images(data / "a", n=6, seed=1)
    two_group_images(data / "b", n=6, seed=2)
    state = torch.load(_own_lite0(), map_location="cpu", weights_only=True)
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key] * 1.01
    weights = root / "mine" / "my-lite0.pth"
    weights.parent.mkdir()
    torch.save(state, weights)
    paths = sorted(p.relative_to(data).as_posix() for p in data.rglob("*.png"))
    for name, column, values in (("meta.csv", "site", ("s1", "s2")), ("split.csv", "split", ("train", "test"))):
        with open(root / name, "w", newline="") as fh:
            csv.writer(fh).writerows([("path", column)] + [(p, values[i % 2]) for i, p in enumerate(paths)])
    out = root / "run"
    res = pipeline.run(data, out, backbone="efficientnet_lite0", weights=str(weights), runtime="torch", workers=0,
                       k=2, within="folder", metadata=str(root / "meta.csv"), split_table=str(root / "split.csv"),
                       cache_dir=str(root / "cache"), permutations=0)
    return {"root": root, "data": data, "weights": weights, "out": out, "labels": res.labels}


def _strings(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def test_no_file_of_the_run_folder_but_the_manifest_holds_a_path_of_this_machine(setup):
    root, out = setup["root"], setup["out"]
    files = [p for p in out.rglob("*") if p.is_file() and p.suffix in (".json", ".csv") and p.name != "manifest.json"]
    assert out / "model" / "config.json" in files
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert str(root) not in text and str(Path.home()) not in text and "site-packages" not in text, path
    config = json.loads((out / "model" / "config.json").read_text())
    assert [s for s in _strings(config) if s.startswith("/")] == []
    assert config["version"] == 3 and "weights_path" not in config["backbone"]
    assert config["backbone"]["weights_file"] == "my-lite0.pth"
    assert config["steps"][0]["params"]["weights"] == "my-lite0.pth"
    assert config["settings"]["weights"] == "my-lite0.pth" and config["settings"]["cache_dir"] is None
    assert (config["settings"]["metadata"], config["settings"]["split_table"]) == ("meta.csv", "split.csv")
    assert str(setup["weights"]) in (out / "manifest.json").read_text()  # where the paths are kept


def _predict(setup, tmp_path, out=None, **kw):
    return pipeline.predict(out or setup["out"], setup["data"], tmp_path / "pred",
                            cache_dir=str(setup["root"] / "cache"), workers=0, device="cpu", **kw)


def _elsewhere(out: Path, dest: Path) -> Path:
    """The run folder as another machine gets it: its ``manifest.json`` names a weights path of the first."""
    shutil.copytree(out, dest)
    info = json.loads((dest / "manifest.json").read_text())
    info["backbone"]["weights_path"] = "/elsewhere/venv/my-lite0.pth"
    (dest / "manifest.json").write_text(json.dumps(info))
    return dest


def test_predict_finds_the_weights_by_name_or_refuses_in_one_line_naming_the_file(setup, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # an empty weights cache
    res = _predict(setup, tmp_path)  # on the machine of the run: the path its manifest.json names, by SHA-256
    np.testing.assert_array_equal(res.labels, setup["labels"])
    moved = _elsewhere(setup["out"], tmp_path / "moved")
    with pytest.raises(WeightsUnavailableError) as err:  # the model folder does not say where the file was
        _predict(setup, tmp_path, out=moved)
    said = str(err.value)
    assert "'my-lite0.pth'" in said and "--weights PATH" in said and "\n" not in said
    assert str(setup["weights"].parent) not in said
    res = _predict(setup, tmp_path, out=moved, weights=str(setup["weights"]))  # predict --weights
    np.testing.assert_array_equal(res.labels, setup["labels"])
    with pytest.raises(WeightsUnavailableError, match="is not the weights file the model was saved with"):
        _predict(setup, tmp_path, out=moved, weights=str(_own_lite0()))
    (tmp_path / "wdir").mkdir()  # a folder or a FIFO: the words of run's --weights
    with pytest.raises(WeightsUnavailableError, match=r"^--weights: '.*wdir' is a folder, expected a state-dict file$"):
        _predict(setup, tmp_path, out=moved, weights=str(tmp_path / "wdir"))
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo")
        with pytest.raises(WeightsUnavailableError, match=r"^--weights: file '.*fifo' is not a regular file$"):
            _predict(setup, tmp_path, out=moved, weights=str(tmp_path / "fifo"))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)  # the torch cache, by name
    shutil.copy(setup["weights"], tmp_path / "hub" / "checkpoints" / "my-lite0.pth")
    res = _predict(setup, tmp_path, out=moved)
    np.testing.assert_array_equal(res.labels, setup["labels"])
    assert res.manifest["backbone"]["weights_path"] == str(tmp_path / "hub" / "checkpoints" / "my-lite0.pth")


def test_the_steps_use_this_machines_cache_folder_never_the_folders(setup, tmp_path):
    model = BrainClusterModel.load(setup["out"], {"cache_dir": str(tmp_path / "c"), "weights": str(setup["weights"])})
    assert model.step("clusterer").cache_dir == str(tmp_path / "c")  # --within's step (planes are cached there)
    assert model.step("checks").cache_dir == str(tmp_path / "c") and model.extractor_.cache_dir == str(tmp_path / "c")


def _as_version_2(out: Path, weights_path: str) -> None:
    """``model/config.json`` as brainclust wrote it before version 3: the absolute path of the weights file."""
    path = out / "model" / "config.json"
    info = json.loads(path.read_text())
    info["version"] = 2
    info["backbone"].pop("weights_file", None)
    info["backbone"]["weights_path"] = weights_path
    info["steps"][0]["params"]["weights"] = weights_path
    path.write_text(json.dumps(info))


def test_a_version_2_model_folder_with_the_weights_path_still_loads(setup, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    old = _elsewhere(setup["out"], tmp_path / "old")
    _as_version_2(old, str(setup["weights"]))  # the file is still there
    assert BrainClusterModel.load(old).extractor_.weights_.path == str(setup["weights"])
    _as_version_2(old, "/elsewhere/venv/my-lite0.pth")  # moved: looked for by name in the torch cache
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    shutil.copy(setup["weights"], tmp_path / "hub" / "checkpoints" / "my-lite0.pth")
    assert BrainClusterModel.load(old).extractor_.weights_.path == str(tmp_path / "hub" / "checkpoints" /
                                                                        "my-lite0.pth")
    (tmp_path / "hub" / "checkpoints" / "my-lite0.pth").unlink()  # nowhere (the backbone's own has another SHA)
    with pytest.raises(WeightsUnavailableError, match=r"the weights file 'my-lite0.pth' .* pass --weights PATH"):
        BrainClusterModel.load(old)
    _as_version_2(old, "C:\\Users\\me\\venv\\my-lite0.pth")  # saved on Windows: looked for by its name
    shutil.copy(setup["weights"], tmp_path / "hub" / "checkpoints" / "my-lite0.pth")
    assert BrainClusterModel.load(old).extractor_.weights_.path == str(tmp_path / "hub" / "checkpoints" /
                                                                        "my-lite0.pth")


@pytest.mark.parametrize("path", ["/etc/passwd", "/proc/version", "/proc/self/mem", "/dev/zero", "/nonexistent/x.pth",
                                  "link-to-proc"])
def test_a_crafted_model_folder_cannot_make_predict_read_a_system_file(setup, tmp_path, monkeypatch, path):
    """A version-3 folder names its weights file; a path there is refused before any file is opened, and a
    version-2 folder's path is read only when it is a regular file outside /proc, /sys and /dev (and used only
    with the recorded SHA-256)."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    read = []
    real = weightsfile.weights_sha256
    # what is opened: a path that does not exist is tried and fails to open
    monkeypatch.setattr(weightsfile, "weights_sha256", lambda p: (Path(p).exists() and read.append(str(p))) or real(p))
    if path == "link-to-proc":  # a regular-looking path that leads into /proc
        path = str(tmp_path / "my-lite0.pth")
        Path(path).symlink_to("/proc/version")
    bad = _elsewhere(setup["out"], tmp_path / "bad")
    info = json.loads((bad / "model" / "config.json").read_text())
    info["steps"][0]["params"]["weights"] = path
    (bad / "model" / "config.json").write_text(json.dumps(info))
    with pytest.raises(ModelFileError, match="must be a file name"):
        BrainClusterModel.load(bad)
    _as_version_2(bad, path)
    with pytest.raises(WeightsUnavailableError) as err:
        BrainClusterModel.load(bad)
    said = str(err.value)
    assert "\n" not in said and "pass --weights PATH" in said
    assert ("has another SHA-256" in said) == (path == "/etc/passwd")
    others = [p for p in read if p != str(_own_lite0())]  # the backbone's own file is a candidate too
    assert others == (["/etc/passwd"] if path == "/etc/passwd" else [])  # /proc, /dev, links into them: never read


def test_a_nul_in_the_run_manifests_weights_path_is_ignored(setup, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    bad = _elsewhere(setup["out"], tmp_path / "bad")
    info = json.loads((bad / "manifest.json").read_text())
    info["backbone"]["weights_path"] = "/tmp/a\x00b"
    (bad / "manifest.json").write_text(json.dumps(info))
    with pytest.raises(WeightsUnavailableError, match="pass --weights PATH"):  # one line, not a ValueError
        BrainClusterModel.load(bad)


def test_a_weights_field_that_is_a_path_is_refused_in_a_version_3_model(setup, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(setup["out"], bad)
    path = bad / "model" / "config.json"
    info = json.loads(path.read_text())
    info["steps"][0]["params"]["weights"] = "../../mine/my-lite0.pth"  # untrusted input: a name, no folder
    path.write_text(json.dumps(info))
    with pytest.raises(ModelFileError, match="field 'params.weights' of the extractor must be a file name"):
        BrainClusterModel.load(bad)
