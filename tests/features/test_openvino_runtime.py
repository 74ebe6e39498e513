"""OpenVINO runtime: fp32 equals ONNX Runtime, the converted-model cache, the bf16 probe, int8 calibration."""

from __future__ import annotations

import json
import os
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino", reason="OpenVINO is an optional extra: pip install 'brainclust[openvino]'")

from brainclust.errors import ModelFileError, ParameterError  # noqa: E402
from brainclust.features import openvino_runtime as ovr  # noqa: E402
from brainclust.features import quantize  # noqa: E402
from brainclust.features import runtime as rt  # noqa: E402
from brainclust.features.cache import config_key  # noqa: E402
from brainclust.features.extractor import FeatureExtractor  # noqa: E402

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "brain_tumor_4class_dev"
if not DATA.is_dir():
    DATA = Path("/work/shared/data/brain_tumor_4class_dev")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[str]:
    """Twelve real MRI JPEGs (three per class) when available, else generated images."""
    if DATA.is_dir():
        files = [p for d in sorted(DATA.iterdir()) if d.is_dir() for p in sorted(d.glob("*.jp*g"))[:3]]
        if len(files) >= 8:
            return [str(p) for p in files]
    from conftest import make_image

    root = tmp_path_factory.mktemp("ov_images")
    return [str(make_image(root / f"g{i}.png", "L", size=(64, 56), seed=i)) for i in range(12)]


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory) -> Path:
    """One cache folder for the module: the ONNX export and the converted IR are made once."""
    return tmp_path_factory.mktemp("ov_cache")


def extractor(cache, runtime="openvino", precision="fp32", **kw):
    return FeatureExtractor(backbone="efficientnet_lite0", runtime=runtime, precision=precision,
                            cache_dir=cache if cache is False else str(cache),
                            batch_size=4, num_workers=0, progress=False, **kw)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_openvino_fp32_matches_onnx_and_shares_its_feature_cache(images, model_cache):
    ov = extractor(model_cache).fit()
    res = ov.extract(images[:4])
    f_ov = res.features
    assert ov.runtime_ == "openvino" and ov.precision_ == "fp32" and res.cache_misses == 4
    assert list((model_cache / "openvino").glob("efficientnet_lite0-*.xml"))  # the converted model, cached
    onnx = extractor(False, runtime="onnx").fit()
    f_onnx = onnx.transform(images[:4])
    assert ov.cache_settings_ == onnx.cache_settings_  # fp32 runtimes agree: one cache entry
    assert f_ov.shape == f_onnx.shape == (4, 1280) and np.isfinite(f_ov).all()
    assert cosine(f_ov, f_onnx).min() >= 0.9999
    assert float(np.abs(f_ov - f_onnx).max() / np.abs(f_onnx).max()) < 1e-4


def test_compile_config_sets_precision_threads_and_hint():
    cfg = ovr.compile_config("fp32", threads=3, mode="latency")
    assert cfg == {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 3}
    assert ovr.compile_config("bf16")["INFERENCE_PRECISION_HINT"] == "bf16"
    assert ovr.compile_config("fp32")["INFERENCE_NUM_THREADS"] == ovr.available_cores()
    with pytest.raises(ParameterError, match="mode"):
        ovr.compile_config("fp32", mode="fast")


def test_converted_model_is_reused_and_a_damaged_one_rebuilt(images, model_cache, caplog):
    settings = rt.export_settings("efficientnet_lite0", "fake-weights", 224)
    made = []

    def make():
        made.append(1)
        onnx = next((model_cache / "onnx").glob("efficientnet_lite0-*.onnx"))  # the export of the test above
        return ovr.convert(onnx)

    folder = model_cache / "irtest"
    ir = ovr.ir_settings(settings, "fp32")
    _, xml = ovr.load_ir(folder, ir, make)
    _, xml2 = ovr.load_ir(folder, ir, make)
    assert xml == xml2 and len(made) == 1  # reused: no second conversion
    meta = json.loads(ovr.sidecar_of(xml).read_text())
    assert meta["settings"] == ir and len(meta["bin_sha256"]) == 64
    weights = xml.with_suffix(".bin")
    raw = bytearray(weights.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING):
        ovr.load_ir(folder, ir, make)
    assert len(made) == 2 and "damaged or stale" in caplog.text
    assert ovr.read_checked(xml, ir) is not None  # the rebuilt pair checks out
    assert ovr.read_checked(xml, {**ir, "convert_version": -1}) is None  # other settings: stale



def test_compiled_model_is_cached_checked_and_keyed_by_cpu(model_cache, monkeypatch, caplog):
    onnx = next((model_cache / "onnx").glob("efficientnet_lite0-*.onnx"))  # the export of the first test
    xml = model_cache / "compiletest" / "lite0-test.xml"
    made = []

    def make():
        made.append(1)
        return ovr.convert(onnx)

    cfg = ovr.compile_config("fp32", threads=1)
    first = ovr.compile_cached(make, cfg, xml)
    blobs = list((xml.parent / "compiled").glob("*.blob"))
    assert len(made) == 1 and len(blobs) == 1
    again = ovr.compile_cached(make, cfg, xml)
    assert len(made) == 1  # imported from the checked blob: the model was not even read
    x = np.random.default_rng(0).random((2, 3, 224, 224), dtype=np.float32)
    np.testing.assert_array_equal(again({0: x})[0], first({0: x})[0])
    raw = bytearray(blobs[0].read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    blobs[0].write_bytes(bytes(raw))
    ovr.compile_cached(make, cfg, xml)
    assert len(made) == 2  # damaged: compiled again and rewritten
    assert ovr.read_blob(blobs[0], json.loads(blobs[0].with_suffix(".json").read_text())["settings"]) is not None
    xml.with_suffix(".json").write_text(json.dumps({"xml_sha256": "a" * 64, "bin_sha256": "b" * 64}))
    ovr.compile_cached(make, cfg, xml)
    assert len(made) == 3  # another IR content (its sidecar's digests): another blob
    xml.with_suffix(".json").write_text("[" * 200_000)  # a crafted sidecar: unreadable, not a RecursionError
    ovr.compile_cached(make, cfg, xml)
    assert len(made) == 3  # read as no digests: the first blob again
    other = dict(ovr.cpu_identity(), flags="another cpu")
    monkeypatch.setattr(ovr, "cpu_identity", lambda: other)
    ovr.compile_cached(make, cfg, xml)
    assert len(made) == 4 and len(list((xml.parent / "compiled").glob("*.blob"))) == 3  # another CPU: its own

    def refuse(path, data):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(ovr, "atomic_write_bytes", refuse)
    with caplog.at_level(logging.INFO, logger="brainclust"):
        fresh = ovr.compile_cached(make, cfg, model_cache / "readonly" / "lite0-test.xml")
    assert len(made) == 5 and "not cached" in caplog.text  # a cache that cannot be written costs the compile only
    np.testing.assert_array_equal(fresh({0: x})[0], first({0: x})[0])

def test_only_the_most_recently_used_compiled_forms_of_an_ir_are_kept(tmp_path):
    folder = tmp_path / "compiled"
    folder.mkdir()
    names = [f"lite0-aaaa-{i:016x}.blob" for i in range(7)]
    for age, name in enumerate(names):  # names[0] the newest
        for f in (folder / name, (folder / name).with_suffix(".json")):
            f.write_bytes(b"x")
            os.utime(f, (1e9 - 60 * age, 1e9 - 60 * age))
    (folder / "lite0-aaaa-bbbb-0000000000000000.blob").write_bytes(b"x")  # another IR's stem, never touched
    (folder / "lite0-aa-0000000000000000.blob").write_bytes(b"x")
    just = folder / names[-1]  # the oldest file, just written: always kept
    gone = ovr.prune_blobs(just, keep=3)
    assert sorted(p.name for p in gone) == sorted(names[2:-1])
    left = {p.name for p in folder.iterdir()}
    assert {names[0], names[1], names[-1]} <= left and not left & {n for n in names[2:-1]}
    assert not any(n.replace(".blob", ".json") in left for n in names[2:-1])
    assert {"lite0-aaaa-bbbb-0000000000000000.blob", "lite0-aa-0000000000000000.blob"} <= left


def test_bf16_refused_with_one_line_without_native_bf16(monkeypatch):
    monkeypatch.setattr(ovr, "cpu_capabilities", lambda: ("FP32", "INT8"))
    with pytest.raises(ParameterError) as info:
        FeatureExtractor(backbone="efficientnet_lite0", runtime="openvino", precision="bf16").fit()
    msg = str(info.value)
    assert "\n" not in msg and "--precision bf16" in msg and "native bf16" in msg and "FP32,INT8" in msg
    # auto keeps the earlier behaviour there where torch has native bf16: autocast (features keyed as before)
    monkeypatch.setattr(rt, "bf16_supported", lambda device="cpu": True)
    auto = FeatureExtractor(backbone="efficientnet_lite0", runtime="auto", precision="bf16").fit()
    assert auto.runtime_ == "torch" and "runtime" not in auto.cache_settings_
    monkeypatch.setattr(rt, "bf16_supported", lambda device="cpu": False)  # and refuses it elsewhere
    with pytest.raises(ParameterError, match="no native bf16.*use --precision fp32"):
        FeatureExtractor(backbone="efficientnet_lite0", runtime="auto", precision="bf16").fit()


def test_runtime_rules(monkeypatch):
    r = rt.resolve_runtime
    assert r("auto", "cpu", "fp32", True) == rt.AUTO_FP32
    assert r("openvino", "cpu", "fp32", True) == "openvino"
    if quantize.nncf_available():
        assert r("auto", "cpu", "int8", True) == "openvino"
    assert r("auto", "cpu", "fp32", False) == "none"
    with pytest.raises(ParameterError, match="would be ignored"):  # pixels, hog: no network to run
        r("openvino", "cpu", "fp32", False)
    for runtime in ("onnx", "torch"):
        with pytest.raises(ParameterError, match="--precision int8"):
            r(runtime, "cpu", "int8", True)
    with pytest.raises(ParameterError, match="--runtime openvino: runs on the CPU"):
        r("openvino", "cuda", "fp32", True)
    with pytest.raises(ParameterError, match="--precision int8: runs on the CPU"):
        r("auto", "cuda", "int8", True)
    monkeypatch.setattr(ovr, "cpu_capabilities", lambda: ("FP32", "BF16"))
    assert r("auto", "cpu", "bf16", True) == "openvino"
    monkeypatch.setattr(rt, "AUTO_FP32", "openvino")  # were OpenVINO measured faster in fp32
    assert r("auto", "cpu", "fp32", True) == "openvino"


def test_cache_keys_never_mix_runtimes_or_calibrations():
    assert rt.feature_key("onnx", "fp32") == rt.feature_key("openvino", "fp32") == {}
    assert rt.feature_key("torch", "bf16") == {}  # the key of earlier versions' torch bf16 features
    assert rt.feature_key("openvino", "bf16") == {"runtime": "openvino"}
    a = rt.feature_key("openvino", "int8", quantize.calibration_info(["k1", "k2"]))
    b = rt.feature_key("openvino", "int8", quantize.calibration_info(["k1", "k3"]))
    assert a["runtime"] == "openvino" and a["calibration"]["n"] == 2 and a != b


def test_calibration_sample_is_seeded_order_free_and_bounded():
    keys = [f"sha{i:03d}" for i in range(50)]
    s1 = quantize.calibration_sample(keys, 10, seed=0)
    assert s1 == quantize.calibration_sample(list(reversed(keys)) + keys[:5], 10, seed=0)  # order, repeats
    assert len(s1) == len(set(s1)) == 10 and set(s1) <= set(keys)
    assert s1 != quantize.calibration_sample(keys, 10, seed=1)
    assert sorted(quantize.calibration_sample(keys[:4], 10)) == sorted(keys[:4])
    # adding images keeps most of the sample (bottom-k of a hash)
    grown = quantize.calibration_sample(keys + [f"new{i}" for i in range(5)], 10)
    assert len(set(grown) & set(s1)) >= 5
    with pytest.raises(ParameterError, match="--calibration-size"):
        quantize.calibration_sample(keys, 0)


@pytest.mark.skipif(not quantize.nncf_available(), reason="nncf is not installed (pip install 'brainclust[openvino]')")
def test_int8_is_deterministic_cached_and_close_to_fp32(images, model_cache, monkeypatch):
    fp32 = extractor(model_cache, runtime="onnx").fit().transform(images)
    ex = extractor(model_cache, precision="int8", calibration_size=8).fit(images)
    assert ex.runtime_ == "openvino" and ex.calibration_["n"] == 8 and len(ex.calibration_records_) == 8
    res = ex.extract(images)
    f1 = res.features
    assert res.cache_misses == len(images) and ex.cache_settings_["calibration"] == ex.calibration_
    ir = [p for p in (model_cache / "openvino").glob("*.json")
          if json.loads(p.read_text())["settings"].get("calibration") == ex.calibration_]
    assert len(ir) == 1
    bin1 = ir[0].with_suffix(".bin").read_bytes()
    # the same images in another order: the same calibration; the quantised model comes from the cache
    shutil.rmtree(Path(model_cache) / config_key(ex.cache_settings_))  # drop the features, keep the models
    monkeypatch.setattr(quantize, "quantize", lambda *a, **k: pytest.fail("quantised again despite the cache"))
    again = extractor(model_cache, precision="int8", calibration_size=8).fit(list(reversed(images)))
    assert again.calibration_ == ex.calibration_
    res2 = again.extract(images)
    f2 = res2.features
    assert res2.cache_misses == len(images)
    np.testing.assert_allclose(f2, f1, rtol=1e-5, atol=1e-6)
    monkeypatch.undo()
    # quantising again from scratch (a fresh model cache) gives the same model, byte for byte
    fresh = extractor(model_cache / "fresh", precision="int8", calibration_size=8).fit(images)
    fresh.transform(images[:1])
    ir2 = model_cache / "fresh" / "openvino" / ir[0].with_suffix(".bin").name
    assert ir2.read_bytes() == bin1
    # int8 stays near fp32 (loose: measured mean cosine 0.98 on real MRI, docs/performance.md)
    assert cosine(f1, fp32).mean() > 0.9


def test_int8_without_its_quantised_model_or_images_is_a_model_file_error(images, tmp_path):
    if not quantize.nncf_available():
        pytest.skip("nncf is not installed")
    cal = quantize.calibration_info(["a" * 64])
    ex = extractor(tmp_path / "empty", precision="int8", calibration=cal).fit()
    with pytest.raises(ModelFileError, match="not in the cache folder"):
        ex.transform(images[:1])


def test_import_and_help_do_not_import_openvino():
    code = ("import sys, brainclust, brainclust.features.runtime, brainclust.features.openvino_runtime, "
            "brainclust.features.quantize\n"
            "from brainclust.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "bad = [m for m in ('openvino', 'nncf') if m in sys.modules]\n"
            "print('IMPORTED', bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "IMPORTED []" in out
