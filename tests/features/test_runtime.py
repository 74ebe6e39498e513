"""ONNX Runtime vs torch: same features, export cache, fallbacks, fp32 by default."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from brainclust.errors import ModelFileError, ParameterError
from brainclust.features import runtime as rt
from brainclust.features.extractor import FeatureExtractor

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "brain_tumor_4class_dev"
if not DATA.is_dir():
    DATA = Path("/work/shared/data/brain_tumor_4class_dev")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[str]:
    """A few real MRI JPEGs (one per class) when available, else generated images."""
    if DATA.is_dir():
        files = [sorted(d.glob("*.jp*g"))[0] for d in sorted(DATA.iterdir()) if d.is_dir()]
        if files:
            return [str(p) for p in files[:4]]
    from conftest import make_image

    root = tmp_path_factory.mktemp("rt_images")
    return [str(make_image(root / f"g{i}.png", "L", size=(64, 56), seed=i)) for i in range(3)]


def rel_max_error(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / np.abs(ref).max())


def features(runtime: str, images, cache_dir, backbone="efficientnet_lite0", weights=None, seed=None):
    ex = FeatureExtractor(backbone=backbone, weights=weights, runtime=runtime, cache_dir=cache_dir,
                          batch_size=4, num_workers=0, progress=False).fit()
    if seed is not None:
        torch.manual_seed(seed)  # random weights: both runtimes must build the same network
    return ex, ex.transform(images)


@pytest.mark.slow
def test_onnx_matches_torch_lite0_and_runtime_not_in_cache_key(images, tmp_path):
    ex_onnx, f_onnx = features("onnx", images, False)
    ex_torch, f_torch = features("torch", images, False)
    assert (ex_onnx.runtime_, ex_torch.runtime_) == ("onnx", "torch")
    assert ex_onnx.precision_ == ex_torch.precision_ == "fp32"
    assert np.isfinite(f_onnx).all() and f_onnx.shape == (len(images), 1280)
    assert rel_max_error(f_onnx, f_torch) < 1e-5
    # they agree, so the runtime stays out of the cache key (caches remain valid across runtimes)
    assert ex_onnx.cache_settings_ == ex_torch.cache_settings_
    assert "runtime" not in ex_onnx.cache_settings_


@pytest.mark.slow
def test_onnx_matches_torch_inception_random_weights(images, tmp_path):
    ex_onnx, f_onnx = features("onnx", images[:2], False, "inception_v3", "random", seed=0)
    ex_torch, f_torch = features("torch", images[:2], False, "inception_v3", "random", seed=0)
    assert ex_onnx.runtime_ == "onnx" and f_onnx.shape == (2, 2048)
    assert rel_max_error(f_onnx, f_torch) < 1e-5


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 5, 3)

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3))


def test_export_is_reused_and_damaged_or_stale_files_are_rebuilt(tmp_path):
    torch.manual_seed(0)
    model = Tiny().eval()
    builds = []

    def build():
        builds.append(1)
        return model

    settings = {"backbone": "tiny", "weights_sha256": "abc", "input_size": 16}
    x = np.random.default_rng(0).normal(size=(3, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    sess = rt.load_onnx_backbone(build, tmp_path, settings)
    assert len(builds) == 1 and rel_max_error(sess(x), ref) < 1e-5
    path = rt.onnx_path(tmp_path, settings)
    assert path.is_file() and rt.is_valid_export(path, settings)
    assert not list(path.parent.glob("*.tmp"))  # atomic: no temp file left behind
    rt.load_onnx_backbone(build, tmp_path, settings)
    assert len(builds) == 1  # valid export reused
    path.write_bytes(path.read_bytes()[:-20])  # damaged (truncated)
    assert not rt.is_valid_export(path, settings)
    sess = rt.load_onnx_backbone(build, tmp_path, settings)
    assert len(builds) == 2 and rel_max_error(sess(x), ref) < 1e-5
    stale = dict(settings, export_version=-1)
    assert not rt.is_valid_export(path, stale)  # other settings -> other file name, and the sidecar disagrees
    assert rt.onnx_path(tmp_path, stale) != path


def test_onnxruntime_missing(monkeypatch, caplog):
    monkeypatch.setattr(rt, "onnx_available", lambda: False)
    with pytest.raises(ParameterError, match="--runtime onnx.*onnxruntime"):
        FeatureExtractor(backbone="efficientnet_lite0", runtime="onnx").fit()
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        ex = FeatureExtractor(backbone="efficientnet_lite0", runtime="auto").fit()
    assert ex.runtime_ == "torch" and "onnxruntime cannot be imported" in caplog.text


def test_cli_runtime_onnx_without_onnxruntime_exits_2(monkeypatch, capsys, tmp_path):
    from conftest import make_image

    from brainclust.cli import main

    for i in range(4):
        make_image(tmp_path / "in" / f"i{i}.png", "L", size=(32, 32), seed=i)
    monkeypatch.setattr(rt, "onnx_available", lambda: False)
    code = main(["run", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--backbone", "efficientnet_lite0",
                 "--runtime", "onnx", "--k", "2", "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--runtime onnx" in err[0]


def test_export_failure_falls_back_only_under_auto(monkeypatch, images, caplog, tmp_path):
    def broken(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(rt, "export", broken)
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        ex, f = features("auto", images[:2], tmp_path / "c1")  # empty cache: an export is needed
    # the fitted runtime_ stays as fit resolved it (transform changes nothing); what ran is recorded
    assert ex.runtime_ == "onnx" and ex.describe()["runtime"] == "torch"
    assert np.isfinite(f).all() and "ONNX export failed" in caplog.text
    with pytest.raises(ModelFileError, match="--runtime onnx"):
        features("onnx", images[:2], tmp_path / "c2")


def test_bad_runtime_and_array_backbones():
    with pytest.raises(ParameterError, match="--runtime"):
        FeatureExtractor(runtime="tensorrt").check_params()
    assert FeatureExtractor(backbone="pixels@16").fit().runtime_ == "none"
    with pytest.raises(ParameterError, match="--runtime: would be ignored"):  # no network to run
        FeatureExtractor(backbone="pixels@16", runtime="onnx").fit()
    with pytest.raises(ParameterError, match="--precision: would be ignored"):
        FeatureExtractor(backbone="hog@16", precision="bf16").fit()


def test_precision_auto_is_fp32_on_cpu_even_with_native_bf16(monkeypatch):
    from brainclust.pipeline import RunConfig

    monkeypatch.setattr(rt, "bf16_supported", lambda device="cpu": True)
    ex = FeatureExtractor(backbone="efficientnet_lite0", precision="auto", device="cpu").fit()
    assert ex.precision_ == "fp32" and ex.runtime_ == "onnx"
    demo = RunConfig(backbone="efficientnet_lite0").extractor().fit()  # the demo's settings
    assert demo.precision_ == "fp32"
    bf16 = FeatureExtractor(backbone="efficientnet_lite0", precision="bf16").fit()
    from brainclust.features import openvino_runtime as ovr

    native = ovr.openvino_available() and ovr.native_bf16()  # OpenVINO runs bf16 natively, else torch autocast
    assert bf16.precision_ == "bf16" and bf16.runtime_ == ("openvino" if native else "torch")
    with pytest.raises(ParameterError, match="--runtime onnx: would be ignored with --precision bf16"):
        FeatureExtractor(backbone="efficientnet_lite0", precision="bf16", runtime="onnx").fit()


def test_prefetch_keeps_order_and_reraises():
    assert list(rt.prefetch(iter(range(7)))) == list(range(7))

    def failing():
        yield 1
        raise ValueError("bad batch")

    it = rt.prefetch(failing())
    assert next(it) == 1
    with pytest.raises(ValueError, match="bad batch"):
        next(it)


def test_native_bf16_is_told_from_the_cpu_flags_not_from_torchs_probe(monkeypatch):
    """torch's probe answers yes on AVX-512 CPUs without AVX512-BF16 (oneDNN emulates bf16 there): on x86 the
    kernel's flags decide, so such a CPU refuses --precision bf16 as the docs say."""
    from brainclust.features import cpu

    flags = cpu.cpu_flags.__wrapped__()
    if flags is not None:
        assert "fpu" in flags or not cpu.platform.machine().lower().startswith("x86")  # the real file is read
    monkeypatch.setattr(cpu.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512bw", "avx512_vnni"}))
    assert cpu.x86_native_bf16() is False and rt.bf16_supported("cpu") is False
    with pytest.raises(ParameterError, match="no native bf16"):
        rt.check_torch_bf16()
    for native in ("avx512_bf16", "amx_bf16"):
        monkeypatch.setattr(cpu, "cpu_flags", lambda native=native: frozenset({"avx512f", native}))
        assert rt.bf16_supported("cpu") is True
    monkeypatch.setattr(cpu.platform, "machine", lambda: "arm64")  # elsewhere torch's own probe answers
    assert cpu.x86_native_bf16() is None and isinstance(rt.bf16_supported("cpu"), bool)


def test_without_the_kernels_flags_an_x86_cpu_asks_openvino_never_torch(monkeypatch):
    """Windows and macOS have no /proc/cpuinfo: OpenVINO's own probe decides (False where it is not installed),
    since torch's answers yes where AVX-512 only emulates bf16."""
    import torch

    from brainclust.features import cpu, openvino_runtime as ovr

    monkeypatch.setattr(cpu.platform, "machine", lambda: "AMD64")
    monkeypatch.setattr(cpu, "cpu_flags", lambda: None)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    for caps, native in ((("FP32", "INT8"), False), (("FP32", "BF16", "INT8"), True), ((), False)):
        monkeypatch.setattr(ovr, "cpu_capabilities", lambda caps=caps: caps)
        assert cpu.x86_native_bf16() is None and rt.bf16_supported("cpu") is native
    with pytest.raises(ParameterError, match="none that could be confirmed .*pip install 'brainclust.openvino.'"):
        rt.check_torch_bf16()


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")  # the exporter's, from threads
def test_two_exports_at_once_both_succeed(tmp_path):
    """torch's exporter keeps global state: two runs in two threads of one process failed to export (and fell back
    to torch) until exports took turns (a probe's find)."""
    import threading

    torch.manual_seed(0)
    model = Tiny().eval()
    settings = {"backbone": "tiny", "weights_sha256": "abc", "input_size": 16}
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            for j in range(3):
                rt.export(model, tmp_path / f"t{i}_{j}.onnx", settings)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(list(tmp_path.glob("t*.onnx"))) == 6
