"""Backbone registry: resolution rules, weights files, offline errors."""

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from brainclust.features import backbones
from brainclust.errors import ParameterError, WeightsUnavailableError
from brainclust.io.atomic import file_sha256


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    """A torch hub cache with no Inception weights in it."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub"


@pytest.fixture(scope="module")
def inception_state(tmp_path_factory):
    """A random-weight Inception V3 state dict saved by the test itself."""
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    model = inception_v3(weights=None, aux_logits=True, init_weights=True, transform_input=False).eval()
    path = tmp_path_factory.mktemp("w") / "inception_random.pth"
    torch.save(model.state_dict(), path)
    return path, model


def test_unknown_backbone_is_a_parameter_error():
    with pytest.raises(ParameterError, match="unknown backbone 'resnet9000'"):
        backbones.resolve("resnet9000")


def test_auto_falls_back_to_lite0_with_an_info_line_not_a_warning(empty_torch_home, caplog):
    """The documented default, nothing to act on: said at info (every run without -q), never a warning (-q hid
    nothing of it: it printed on every run of every offline machine)."""
    with caplog.at_level(logging.INFO, logger="brainclust"):
        spec, weights = backbones.resolve("auto")
    assert spec.name == "efficientnet_lite0"
    said = [(r.levelname, r.getMessage()) for r in caplog.records if "inception_v3" in r.getMessage()]
    assert said == [("INFO", "--backbone auto: efficientnet_lite0 (inception_v3's weights are not on this machine: "
                             "pass --weights PATH or put them in the torch cache to use it)")]
    assert weights.sha256 == file_sha256(weights.path)


@pytest.mark.parametrize("level", [logging.INFO, logging.WARNING])
def test_the_inception_download_says_nothing_under_quiet(empty_torch_home, monkeypatch, capsys, level):
    """What torch prints while it downloads (a progress bar; any line on stdout) goes to stderr with the log, and
    nowhere under -q (the log at warnings); the error of a failed download is the caller's one line either way."""
    def fake_download(url, dst, hash_prefix=None, progress=True):
        print('Downloading: "https://download.pytorch.org/models/x.pth" to x.pth')
        import sys
        sys.stderr.write(f"progress={progress}\n")
        raise OSError("offline")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    logging.getLogger("brainclust").setLevel(level)  # as the command line sets it (-q: WARNING); conftest restores it
    with pytest.raises(WeightsUnavailableError, match="could not be downloaded"):
        backbones.resolve("inception_v3")
    out, err = capsys.readouterr()
    assert out == ""
    assert (err == "") == (level == logging.WARNING), err
    assert level == logging.WARNING or ("Downloading" in err and "progress=True" in err)


def stand_in_for_inception(monkeypatch, path) -> None:
    """Random Inception weights play the downloaded file: their SHA-256 starts as the cached file's name says."""
    monkeypatch.setattr(backbones, "_INCEPTION_SHA_PREFIX", file_sha256(path)[:8])


def test_auto_uses_inception_when_its_weights_are_cached(empty_torch_home, inception_state, monkeypatch):
    stand_in_for_inception(monkeypatch, inception_state[0])
    ckpt = empty_torch_home / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / backbones._INCEPTION_FILE).write_bytes(inception_state[0].read_bytes())
    spec, weights = backbones.resolve("auto")
    assert spec.name == "inception_v3" and spec.dim == 2048 and spec.input_size == 299
    assert weights.sha256 == file_sha256(inception_state[0])


def test_explicit_inception_offline_gives_one_clear_error(empty_torch_home, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(WeightsUnavailableError) as exc:
        backbones.resolve("inception_v3")
    msg = str(exc.value)
    assert "\n" not in msg and "--weights PATH" in msg and "efficientnet_lite0" in msg


@pytest.mark.slow
def test_inception_loads_a_local_state_dict(inception_state):
    path, reference = inception_state
    spec, weights = backbones.resolve("inception_v3", str(path))
    assert weights.sha256 == file_sha256(path)
    model = backbones.build(spec, weights)
    x = torch.randn(2, 3, 299, 299, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        feats = model(x)
        reference.fc = torch.nn.Identity()
        expected = reference(x)
    assert feats.shape == (2, 2048)
    np.testing.assert_allclose(feats.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)


def test_missing_and_wrong_weights_files(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        backbones.resolve("inception_v3", str(tmp_path / "nope.pth"))
    bad = tmp_path / "lite.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    spec, weights = backbones.resolve("inception_v3", str(bad))
    with pytest.raises(WeightsUnavailableError, match="not an inception_v3 state dict"):
        backbones.build(spec, weights)
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    spec, weights = backbones.resolve("efficientnet_lite0", str(junk))
    with pytest.raises(WeightsUnavailableError,
                       match="not a readable PyTorch state-dict file|not a PyTorch state dict"):
        backbones.build(spec, weights)


def test_the_weights_loaded_are_the_weights_hashed(tmp_path):
    """A file replaced between resolve (which hashes it for the cache key and the manifest) and build is refused:
    build loads the bytes it hashed again, never the path a second time."""
    good = tmp_path / "w.pth"
    torch.save(backbones.build(*backbones.resolve("efficientnet_lite0", backbones.RANDOM_WEIGHTS)).net.state_dict(),
               good)
    spec, weights = backbones.resolve("efficientnet_lite0", str(good))
    assert backbones.build(spec, weights) is not None
    torch.save({"other": torch.zeros(1)}, good)  # swapped after the check
    with pytest.raises(WeightsUnavailableError, match="changed since it was checked"):
        backbones.build(spec, weights)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_put_in_place_of_the_weights_is_refused_not_waited_on(tmp_path):
    good = tmp_path / "w.pth"
    torch.save({"conv.weight": torch.zeros(1)}, good)
    spec, weights = backbones.resolve("efficientnet_lite0", str(good))
    good.unlink()
    os.mkfifo(good)  # nobody writes to it: a blocking open would hang the run
    with pytest.raises(WeightsUnavailableError, match="not a regular file"):
        backbones.build(spec, weights)
    good.unlink()
    good.mkdir()  # a folder: refused on the open descriptor, which is closed again
    with pytest.raises(WeightsUnavailableError, match="not a regular file"):
        backbones.build(spec, weights)
    good.rmdir()
    with pytest.raises(WeightsUnavailableError, match="cannot read file"):
        backbones.build(spec, weights)


def test_a_weights_file_over_the_limit_is_refused_when_resolved_and_when_read(tmp_path, monkeypatch):
    """The size limit holds when the file is hashed for the cache key (resolve), not only when it is loaded; and
    what is read is bounded by the size the file had when opened (a kernel file that says 0 bytes is refused, not
    read on: the rule of io.content.read_hashed)."""
    from brainclust.features import statedict

    big = tmp_path / "big.pth"
    torch.save({"conv.weight": torch.zeros(4096)}, big)
    monkeypatch.setattr(statedict, "MAX_WEIGHTS_BYTES", 1000)
    with pytest.raises(WeightsUnavailableError, match="larger than any weights file"):
        backbones.resolve("efficientnet_lite0", str(big))
    monkeypatch.undo()
    if Path("/proc/self/status").is_file():
        with pytest.raises(WeightsUnavailableError, match="holds more than its size says"):
            statedict.weights_sha256("/proc/self/status")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_the_inception_download_never_loads_what_lies_at_its_path(empty_torch_home, monkeypatch, inception_state):
    """torchvision's get_state_dict unpickled (in full) a file already at the cache path and waited on a FIFO
    there: the download now only writes the file (torch checks its hash prefix) and build loads it as any other."""
    import threading

    assert backbones._INCEPTION_SHA_PREFIX == "0cc3c7bd"  # the prefix of the real file, which torch checks
    stand_in_for_inception(monkeypatch, inception_state[0])
    ckpt = empty_torch_home / "checkpoints"
    ckpt.mkdir(parents=True)
    os.mkfifo(ckpt / backbones._INCEPTION_FILE)  # nobody writes to it

    def fake_download(url, dst, hash_prefix=None, progress=True):
        assert url.endswith(backbones._INCEPTION_FILE) and hash_prefix == backbones._INCEPTION_SHA_PREFIX
        tmp = f"{dst}.partial"
        Path(tmp).write_bytes(inception_state[0].read_bytes())
        os.replace(tmp, dst)  # as torch does: the whole file moved into place

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    got = {}
    worker = threading.Thread(target=lambda: got.update(w=backbones.resolve("inception_v3")[1]), daemon=True)
    worker.start()
    worker.join(120)
    assert not worker.is_alive(), "resolve waited on the FIFO"
    assert got["w"].sha256 == file_sha256(inception_state[0])


def test_a_damaged_inception_copy_in_the_torch_cache_is_named_with_the_way_out(empty_torch_home):
    """--backbone auto chooses Inception V3 when the torch cache holds its file: a partial copy there broke every
    default run with a line about a KeyError; it is now refused when resolved, before its hash keys any cache (its
    SHA-256 is not the one the file's name starts), in a line that says whose file it is and what to do."""
    ckpt = empty_torch_home / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / backbones._INCEPTION_FILE).write_text("not a checkpoint")
    with pytest.raises(WeightsUnavailableError) as err:
        backbones.resolve("auto")
    said = str(err.value)
    assert "\n" not in said and "damaged or partly copied" in said
    assert "torch cache's copy" in said and "--backbone efficientnet_lite0" in said


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_weights_file_that_would_run_code_is_never_unpickled(tmp_path):
    evil = tmp_path / "evil.pth"
    torch.save({"conv.weight": _RunsCode(tmp_path / "ran")}, evil)
    spec, weights = backbones.resolve("efficientnet_lite0", str(evil))
    with pytest.raises(WeightsUnavailableError) as err:
        backbones.build(spec, weights)
    msg = str(err.value)
    assert "never unpickles" in msg and "weights_only" not in msg and "\n" not in msg
    assert not (tmp_path / "ran").exists()


def test_lite0_ships_real_weights_and_gives_1280_features():
    spec, weights = backbones.resolve("efficientnet_lite0")
    assert weights.path and weights.sha256 != backbones.RANDOM_WEIGHTS
    model = backbones.build(spec, weights)
    with torch.inference_mode():
        out = model(torch.zeros(1, 3, 224, 224))
    assert out.shape == (1, 1280)
    # pre-trained weights, not a fresh init: the first conv differs from a random build
    random_model = backbones.build(spec, backbones.ResolvedWeights(None, backbones.RANDOM_WEIGHTS))
    assert not torch.equal(model.net._conv_stem.weight, random_model.net._conv_stem.weight)


def test_the_views_of_an_auto_run_resolve_its_backbone_once(empty_torch_home, tmp_path, caplog):
    """Each augmented view of a self-supervised run is extracted by a copy of the run's extractor: with --backbone
    auto each copy resolved it again and said so (6 times per run); the copies now take the resolved backbone."""
    import numpy as np
    from PIL import Image

    import brainclust
    from brainclust.features.extractor import FeatureExtractor
    from brainclust.selfsup import views as views_mod

    for i in range(3):
        im = (np.random.default_rng(i).random((40, 36)) * 255).astype(np.uint8)
        Image.fromarray(im).save(tmp_path / f"{i}.png")
    records = brainclust.scan(tmp_path).records
    with caplog.at_level(logging.INFO, logger="brainclust"):
        ex = FeatureExtractor("auto", cache_dir=str(tmp_path / "cache"), num_workers=0, progress=False).fit()
        views = views_mod.extract(ex, records, ["rot90", "hflip"])
    assert sorted(views) == ["hflip", "rot90"] and views["rot90"].shape == (3, ex.spec_.dim)
    assert sum("--backbone auto" in r.getMessage() for r in caplog.records) == 1
