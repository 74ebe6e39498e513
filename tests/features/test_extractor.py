"""FeatureExtractor: shapes, cache hits and resume, failures (a result object), precision, the fitted check."""

import numpy as np
import pytest
from PIL import Image

from brainclust.errors import NotFittedError, ParameterError
from brainclust.features import runtime as rt
from brainclust.features.extraction import as_records
from brainclust.features.extractor import FeatureExtractor


@pytest.fixture(scope="module")
def six_images(tmp_path_factory):
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("imgs")
    paths = []
    for i in range(6):
        arr = (rng.random((48 + 8 * i, 64)) * 255).astype(np.uint8)
        arr[10:30, 10:30] = 255 * (i % 2)
        p = root / f"img{i}.png"
        Image.fromarray(arr).save(p)
        paths.append(str(p))
    return paths


def make(cache, **kw):
    kw.setdefault("precision", "fp32")
    return FeatureExtractor(backbone="efficientnet_lite0", cache_dir=str(cache), num_workers=0,
                            batch_size=4, **kw).fit()


def test_shapes_and_cache_hits(six_images, tmp_path):
    got = make(tmp_path).extract(six_images)
    f1 = got.features
    assert f1.shape == (6, 1280) and f1.dtype == np.float32 and np.isfinite(f1).all()
    assert (got.cache_hits, got.cache_misses) == (0, 6)
    fe2 = make(tmp_path)
    again = fe2.extract(six_images)
    assert (again.cache_hits, again.cache_misses) == (6, 0)
    np.testing.assert_array_equal(f1, again.features)
    assert fe2.describe()["runtime"] == fe2.runtime_ and fe2._net is None  # nothing to extract: never built


def test_interrupted_extraction_resumes(six_images, tmp_path):
    make(tmp_path).transform(six_images[:3])  # as if the run stopped after three images
    got = make(tmp_path).extract(six_images)
    assert (got.cache_hits, got.cache_misses) == (3, 3)


def test_settings_change_the_cache_key(six_images, tmp_path):
    make(tmp_path).transform(six_images[:2])
    assert make(tmp_path, clip_percentiles=None).extract(six_images[:2]).cache_misses == 2


def test_undecodable_image_gives_nan_row_and_reason(six_images, tmp_path):
    bad = tmp_path / "truncated.png"
    bad.write_bytes(open(six_images[0], "rb").read()[:60])
    fe = make(tmp_path / "c")
    got = fe.extract([six_images[0], str(bad)])
    out = got.features
    assert np.isfinite(out[0]).all() and np.isnan(out[1]).all()
    assert list(got.failed) == [1] and "cannot decode" in got.failed[1]
    records, feats, skipped = got.split(as_records([six_images[0], str(bad)]))
    assert len(records) == 1 and feats.shape == (1, 1280) and skipped[0]["reason"] == got.failed[1]
    assert not hasattr(fe, "failed_") and not hasattr(fe, "cache_hits_")  # transform leaves no side channel


def test_transform_and_extract_need_fit(six_images, tmp_path):
    fe = FeatureExtractor(backbone="pixels@16", cache_dir=str(tmp_path), num_workers=0)
    with pytest.raises(NotFittedError, match="fit"):
        fe.transform(six_images)  # it does not fit itself
    with pytest.raises(NotFittedError):
        fe.extract(six_images)
    with pytest.raises(NotFittedError):
        fe.describe()
    assert not hasattr(fe, "spec_")
    fe.fit()
    assert fe.transform(six_images).shape == (6, 256)


@pytest.mark.slow
def test_bf16_features_stay_close_to_fp32(six_images, tmp_path, monkeypatch):
    monkeypatch.setattr(rt, "bf16_supported", lambda device="cpu": True)  # emulated where not native
    f32 = make(tmp_path, precision="fp32").transform(six_images)
    bf16 = make(tmp_path, precision="bf16", runtime="torch").transform(six_images)
    cos = (f32 * bf16).sum(1) / np.linalg.norm(f32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert cos.min() > 0.95


def test_bf16_is_refused_in_one_line_where_torch_would_emulate_it(monkeypatch):
    monkeypatch.setattr(rt, "bf16_supported", lambda device="cpu": False)
    for runtime in ("torch", "auto"):
        try:
            fe = FeatureExtractor(backbone="efficientnet_lite0", precision="bf16", runtime=runtime).fit()
        except ParameterError as exc:
            msg = str(exc)
            assert "\n" not in msg and "--precision bf16" in msg and "native bf16" in msg and "fp32" in msg
        else:  # auto runs bf16 with OpenVINO where the CPU has it natively
            assert runtime == "auto" and fe.runtime_ == "openvino"


def test_bad_parameters():
    with pytest.raises(ParameterError, match="--precision"):
        FeatureExtractor(precision="fp8").fit()
    with pytest.raises(ParameterError, match="--batch-size"):
        FeatureExtractor(batch_size=0).fit()


def test_transform_warns_naming_an_image_it_could_not_read(six_images, tmp_path, caplog):
    """transform() returned NaN rows without a word (a probe's find: the PCA refused them later, naming nothing)."""
    import logging

    bad = tmp_path / "truncated.png"
    bad.write_bytes(open(six_images[0], "rb").read()[:60])
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        out = make(tmp_path / "c").transform([six_images[0], str(bad), str(bad)])
    assert np.isnan(out[1:]).all()
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 1 and said[0].startswith("2 of 3 images could not be read, their rows are NaN: '")
    assert "truncated.png': cannot decode" in said[0] and "extract() gives every reason" in said[0]


def test_int8_calibrates_in_fit_only_as_its_docstring_says(six_images, tmp_path):
    doc = " ".join(FeatureExtractor.__doc__.split())
    assert "or to the first :meth:`transform`" not in doc  # it said so; an extractor never learns in transform
    assert "``fit()`` without images: :meth:`transform` is refused" in doc
    pytest.importorskip("nncf", reason="int8 needs the openvino extra: pip install 'brainclust[openvino]'")
    fe = FeatureExtractor(backbone="efficientnet_lite0", weights="random", precision="int8",
                          cache_dir=str(tmp_path), num_workers=0).fit()
    with pytest.raises(ParameterError, match=r"without images to calibrate on; call fit\(images\) first$"):
        fe.transform(six_images)
