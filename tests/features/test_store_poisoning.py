"""A file changed between the scan and the extraction never poisons the feature store.

The store is keyed by the scan's SHA-256; extraction must store features only
under the hash of the bytes it actually decoded. Here the file is rewritten
after the scan (PNG, a DICOM frame, a NIfTI slice); the record is then skipped
with a reason, and the store holds nothing under the old hash, so a later run
on the original content computes its real features.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from brainclust.features.cache import FeatureCache
from brainclust.features.extractor import FeatureExtractor
from brainclust.io.content import CHANGED_REASON
from brainclust.io.scan import scan

from conftest import make_image
from corpus import brain_volume, write_dicom, write_nifti


def _extractor(cache) -> FeatureExtractor:
    return FeatureExtractor(backbone="pixels@16", cache_dir=str(cache), num_workers=0, progress=False).fit()


def _stored(ex: FeatureExtractor, key: str) -> np.ndarray | None:
    store = FeatureCache(ex.cache_dir, ex.cache_settings_)
    try:
        return store.get(key)
    except KeyError:
        return None
    finally:
        store.close()


def _png_folder(root):
    for i in range(3):
        make_image(root / f"img{i}.png", "L", size=(24, 24), seed=i)
    return root


def test_png_rewritten_after_the_scan_is_skipped_and_not_stored(tmp_path, caplog):
    root = _png_folder(tmp_path / "data")
    found = scan(root)
    victim = next(i for i, r in enumerate(found.records) if r.name == "img0.png")
    old_key = found.records[victim].key
    original = (root / "img0.png").read_bytes()
    (root / "img0.png").write_bytes((root / "img2.png").read_bytes())  # the file changes mid-run
    ex = _extractor(tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        res = ex.extract(found.records)
    feats = res.features
    assert res.failed == {victim: CHANGED_REASON}
    assert np.isnan(feats[victim]).all()
    assert _stored(ex, old_key) is None, "features of the new content were stored under the old hash"
    assert any("changed after the scan" in r.getMessage() for r in caplog.records)
    # the other images were stored under their own hashes
    for i, r in enumerate(found.records):
        if i != victim:
            np.testing.assert_array_equal(_stored(ex, r.key), feats[i])
    # back to the original content: a new run computes the real features (no poisoned hit)
    (root / "img0.png").write_bytes(original)
    again = scan(root)
    ex2 = _extractor(tmp_path / "cache")
    res2 = ex2.extract(again.records)
    fresh = _extractor(tmp_path / "fresh-cache").transform(again.records)
    np.testing.assert_array_equal(res2.features, fresh)
    assert not res2.failed


def test_dicom_frames_rewritten_after_the_scan_are_skipped(tmp_path):
    pytest.importorskip("pydicom")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 4000, (3, 20, 20)).astype(np.uint16)
    path = write_dicom(tmp_path / "data" / "series.dcm", frames)
    found = scan(tmp_path / "data")
    assert len(found.records) == 3
    write_dicom(path, frames[::-1].copy())  # same size and frames, other content
    ex = _extractor(tmp_path / "cache")
    failed = ex.extract(found.records).failed
    assert sorted(failed) == [0, 1, 2] and set(failed.values()) == {CHANGED_REASON}
    assert all(_stored(ex, r.key) is None for r in found.records)


def test_nifti_slices_rewritten_after_the_scan_are_skipped(tmp_path):
    pytest.importorskip("nibabel")
    path = write_nifti(tmp_path / "data" / "t1.nii.gz", brain_volume(seed=0))
    found = scan(tmp_path / "data", slices="axial:3")
    assert len(found.records) == 3
    write_nifti(path, brain_volume(seed=1))
    ex = _extractor(tmp_path / "cache")
    assert sorted(ex.extract(found.records).failed) == [0, 1, 2]
    assert all(_stored(ex, r.key) is None for r in found.records)
    # a new scan sees the new content: its slices are computed and stored under the new hash
    again = scan(tmp_path / "data", slices="axial:3")
    res = ex.extract(again.records)
    feats = res.features
    assert not res.failed
    for i, r in enumerate(again.records):
        np.testing.assert_array_equal(_stored(ex, r.key), feats[i])


def test_a_run_whose_file_changes_mid_run_reports_it(tmp_path, monkeypatch):
    """Through the pipeline: the scan is followed (hook in the test) by a rewrite of one file."""
    from brainclust import pipeline

    root = _png_folder(tmp_path / "data")
    for i in range(3, 6):
        make_image(root / f"img{i}.png", "L", size=(24, 24), seed=i)
    real_scan = pipeline.scan

    def scan_then_rewrite(*args, **kwargs):
        found = real_scan(*args, **kwargs)
        (root / "img1.png").write_bytes((root / "img4.png").read_bytes())
        return found

    monkeypatch.setattr(pipeline, "scan", scan_then_rewrite)
    cfg = pipeline.RunConfig(backbone="pixels@16", k=2, workers=0, progress=False, cache_dir=str(tmp_path / "c"))
    result = pipeline.run(root, None, cfg)
    assert [s["path"] for s in result.skipped] == ["img1.png"]
    assert "changed after the scan" in result.skipped[0]["reason"]
    assert "img1.png" not in [r.path for r in result.records]


def test_check_descriptors_of_a_file_changed_after_the_scan_are_not_stored(tmp_path):
    """The data checks keep their own store under the scan's hash: the same rule holds there."""
    from brainclust.checks.store import cached_descriptors, open_store

    root = _png_folder(tmp_path / "data")
    found = scan(root)
    victim = next(i for i, r in enumerate(found.records) if r.name == "img0.png")
    original = (root / "img0.png").read_bytes()
    (root / "img0.png").write_bytes((root / "img2.png").read_bytes())
    desc, info = cached_descriptors(found.records, tmp_path / "cache", progress=False)
    assert desc.failed == {victim: CHANGED_REASON} and info["misses"] == 3
    store = open_store(tmp_path / "cache")
    try:
        with pytest.raises(KeyError):
            store.get(found.records[victim].key)
    finally:
        store.close()
    (root / "img0.png").write_bytes(original)  # the original content is described afresh, not from a poisoned row
    again, _ = cached_descriptors(scan(root).records, tmp_path / "cache", progress=False)
    fresh, _ = cached_descriptors(scan(root).records, False, progress=False)
    assert not again.failed
    np.testing.assert_array_equal(again.vectors, fresh.vectors)
    assert again.pixel_sha256 == fresh.pixel_sha256


@pytest.mark.parametrize("kind", ["png", "nifti"])
def test_intensity_descriptors_of_a_file_changed_after_the_scan_are_not_stored(tmp_path, kind):
    from brainclust.features.descstore import SETTINGS, describe_cached

    if kind == "png":
        root = _png_folder(tmp_path / "data")
        found = scan(root)
        target, donor = root / "img0.png", (root / "img2.png").read_bytes()
    else:
        pytest.importorskip("nibabel")
        target = write_nifti(tmp_path / "data" / "t1.nii.gz", brain_volume(seed=0))
        found = scan(tmp_path / "data", slices="axial:2")
        write_nifti(tmp_path / "other.nii.gz", brain_volume(seed=1))
        donor = (tmp_path / "other.nii.gz").read_bytes()
    original = target.read_bytes()
    target.write_bytes(donor)
    cols, info = describe_cached(found.records, tmp_path / "cache", progress=False)
    changed = [i for i, r in enumerate(found.records) if r.abspath == str(target)]
    assert changed and info["failed"] == len(changed)
    assert all(cols["intensity_mean"][i] is None for i in changed)
    store = FeatureCache(str(tmp_path / "cache"), SETTINGS)
    try:
        for i in changed:
            with pytest.raises(KeyError):
                store.get(found.records[i].key)
    finally:
        store.close()
    target.write_bytes(original)
    again, info2 = describe_cached(found.records, tmp_path / "cache", progress=False)
    fresh, _ = describe_cached(found.records, False, progress=False)
    assert again == fresh and info2["failed"] == 0
