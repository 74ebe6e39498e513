"""Options with no upper bound used to end in a crash after the work began; now each is one line up front."""

from __future__ import annotations

import os

import pytest

from brainclust.errors import ParameterError, WeightsUnavailableError
from brainclust.features import backbones, limits
from brainclust.features.fusion import parse_blocks
from brainclust.pipeline import RunConfig


def _refused(match: str, **settings) -> str:
    with pytest.raises(ParameterError, match=match) as err:
        RunConfig(**settings).validate()
    msg = str(err.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("backbone", ["pixels@100000", "hog@2048", "efficientnet_lite0+pixels@5000"])
def test_huge_array_backbone_sizes_are_refused(backbone):
    msg = _refused("at most 1024", backbone=backbone)
    assert "--backbone" in msg and "GiB" in msg


def test_the_largest_array_size_is_accepted():
    RunConfig(backbone="pixels@1024", batch_size=8).validate()
    assert backbones.resolve("pixels@1024")[0].dim == 1024 * 1024


@pytest.mark.parametrize("batch", [99999999999999999999, 4097])
def test_huge_batch_sizes_are_refused(batch):
    msg = _refused("--batch-size: must be at most 4096", batch_size=batch, backbone="efficientnet_lite0")
    assert str(batch) in msg


def test_batch_memory_is_bounded_for_the_pair_of_options():
    msg = _refused("GiB per batch", backbone="pixels@1024", batch_size=2048)
    assert "--batch-size" in msg and "pixels@1024" in msg
    RunConfig(backbone="pixels@1024", batch_size=64).validate()  # about 0.5 GiB: fine
    assert limits.batch_bytes("efficientnet_lite0", 32) == 32 * 3 * 224 * 224 * 4


def test_batch_size_through_the_cli_is_one_line(capsys, tmp_path):
    from brainclust.cli import main

    (tmp_path / "data").mkdir()
    rc = main(["run", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--batch-size",
               "99999999999999999999", "--backbone", "pixels"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--batch-size" in err[0] and "4096" in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("device", ["bogus", "cuda:", "cuda:x", "gpu", "CPU", "cuda:1:2", ""])
def test_device_names_are_validated(device):
    _refused("--device: must be one of cpu, cuda, cuda:N, auto", device=device, backbone="pixels")


def test_good_device_names():
    for device in ("cpu", "auto", "cuda", "cuda:0", "cuda:12"):
        assert limits.check_device(device, available=False) == device
    RunConfig(device="auto", backbone="pixels").validate()


def test_a_missing_cuda_device_is_refused_before_any_work():
    import torch

    if torch.cuda.is_available():
        _refused("has .* CUDA device", device=f"cuda:{torch.cuda.device_count()}", backbone="pixels")
    else:
        msg = _refused("no CUDA device is available", device="cuda", backbone="pixels")
        assert msg.startswith("--device cuda:")
        _refused("no CUDA device is available", device="cuda:1", backbone="efficientnet_lite0+pixels")


@pytest.mark.parametrize("name, weight", [("pixels*1e308+hog*1e-308", "1e308"), ("pixels+hog*1e309", "1e309"),
                                          ("pixels*2e6+hog", "2e6"), ("pixels+hog*1e-7", "1e-7")])
def test_fusion_weights_must_be_in_range(name, weight):
    msg = _refused("fusion weight of", backbone=name)
    assert "--backbone" in msg and weight in msg and name in msg


def test_fusion_weights_in_range_are_kept():
    assert parse_blocks("pixels*1e6+hog*1e-6") == [("pixels", 1e6), ("hog", 1e-6)]


def test_weights_pointing_at_a_folder_or_a_fifo(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="is a folder, expected a state-dict file"):
        backbones.resolve("efficientnet_lite0", str(tmp_path))
    os.mkfifo(tmp_path / "w.pth")
    with pytest.raises(WeightsUnavailableError, match="is not a regular file"):
        backbones.resolve("efficientnet_lite0", str(tmp_path / "w.pth"))


def test_cache_inside_out_is_refused(tmp_path, monkeypatch):
    out = tmp_path / "run"
    for cache in (out, out / "cache", out / "a" / "b"):
        with pytest.raises(ParameterError, match="--cache-dir: .* lies inside --out"):
            limits.check_cache_location(str(cache), str(out))
    limits.check_cache_location(str(tmp_path / "cache"), str(out))  # a sibling is fine
    limits.check_cache_location(str(tmp_path / "runs-cache"), str(out))  # a name sharing a prefix too
    limits.check_cache_location(str(out / "cache"), None)  # no --out: nothing to compare
    # through a symbolic link, and the default store (BRAINCLUST_CACHE)
    out.mkdir()
    (tmp_path / "link").symlink_to(out)
    with pytest.raises(ParameterError, match="lies inside --out"):
        limits.check_cache_location(str(tmp_path / "link" / "cache"), str(out))
    monkeypatch.setenv("BRAINCLUST_CACHE", str(out / "store"))
    with pytest.raises(ParameterError, match="lies inside --out"):
        limits.check_cache_location(None, str(out))


def test_cache_inside_the_input_folder_is_refused(tmp_path, make_image, monkeypatch):
    data = tmp_path / "data"
    make_image(data / "a.png", seed=0)
    make_image(data / "b.png", seed=1)
    with pytest.raises(ParameterError, match="--cache-dir: .* lies inside the input folder .* next scan"):
        limits.check_cache_location(str(data / "cache"), None, str(data))
    limits.check_cache_location(str(tmp_path / "cache"), None, str(data))
    limits.check_cache_location(str(data / ".cache" / "brainclust"), None, str(data))   # hidden: never scanned
    monkeypatch.setenv("BRAINCLUST_CACHE", str(data / "store"))                           # the default store
    with pytest.raises(ParameterError, match="^the default feature store .* lies inside the input folder"):
        limits.check_cache_location(None, None, str(data))
    monkeypatch.delenv("BRAINCLUST_CACHE")
    from brainclust.cli import main

    for command in ("check", "run"):
        assert main([command, str(data), "--out", str(tmp_path / "o"), "--cache-dir", str(data / "c")]) == 2
    assert not (data / "c").exists() and not (tmp_path / "o").exists()
