"""Units: ids of each kind, the aggregation rule against a naive loop, unit metadata."""

from __future__ import annotations

import numpy as np
import pytest

from brainclust.errors import ParameterError
from brainclust.features import units
from brainclust.io.scan import ImageRecord


def rec(path, type_, frame="", **meta):
    return ImageRecord(path, "/x/" + path, path.split("/")[-1].split("#")[0], type_, 1, 4, 4, "h",
                       frame=frame, meta=meta)


RECORDS = [
    rec("sub-01/anat/sub-01_T1w.nii.gz#axial=3", "nifti", "axial=3", subject="sub-01"),
    rec("sub-01/anat/sub-01_T1w.nii.gz#axial=5", "nifti", "axial=5", subject="sub-01"),
    rec("sub-01/func/bold.nii.gz#axial=4&t=0", "nifti", "axial=4&t=0", subject="sub-01"),
    rec("sub-01/func/bold.nii.gz#axial=4&t=1", "nifti", "axial=4&t=1", subject="sub-01"),
    rec("pat/s/im1.dcm", "dicom", series_id="pat/s#series=1"),
    rec("pat/s/im2.dcm", "dicom", series_id="pat/s#series=1"),
    rec("pat/x.png", "png"),
    rec("top.png", "png"),
]


def test_unit_ids_of_each_kind():
    assert units.unit_ids(RECORDS, "slice") == [r.path for r in RECORDS]
    assert units.unit_ids(RECORDS, "volume") == [
        "sub-01/anat/sub-01_T1w.nii.gz", "sub-01/anat/sub-01_T1w.nii.gz", "sub-01/func/bold.nii.gz#t=0",
        "sub-01/func/bold.nii.gz#t=1", "pat/s#series=1", "pat/s#series=1", "pat/x.png", "top.png"]
    assert units.unit_ids(RECORDS, "series")[2:4] == ["sub-01/func/bold.nii.gz"] * 2
    assert units.unit_ids(RECORDS, "subject") == ["sub-01"] * 4 + ["pat"] * 3 + ["top.png"]
    with pytest.raises(ParameterError, match="--unit: must be one of slice, volume, series, subject"):
        units.unit_ids(RECORDS, "study")


def test_aggregation_equals_a_naive_loop_and_is_scale_free():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(9, 5)).astype(np.float32)
    X[4] = 0.0  # an all-zero slice adds nothing
    ids = ["b", "a", "b", "c", "c", "a", "b", "a", "d"]
    agg = units.UnitAggregator("volume").fit(X, ids)
    assert agg.units_ == ["b", "a", "c", "d"] and agg.counts_.tolist() == [3, 3, 2, 1]
    for u, row in zip(agg.units_, agg.unit_features_):
        members = [X[i] / np.linalg.norm(X[i]) for i, v in enumerate(ids) if v == u and np.linalg.norm(X[i]) > 0]
        mean = np.mean(members, axis=0)
        np.testing.assert_allclose(row, mean / np.linalg.norm(mean), atol=1e-6)
    scaled = X * np.array([[3.0], [0.1], [7], [1], [1], [2], [5], [9], [0.5]], np.float32)
    np.testing.assert_allclose(agg.transform(scaled, ids), agg.unit_features_, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(agg.unit_features_, axis=1), 1.0, atol=1e-6)


def test_chunked_aggregation_matches_one_block(monkeypatch):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 3))
    ids = [str(i % 7) for i in range(50)]
    whole = units.UnitAggregator().fit_transform(X, ids)
    monkeypatch.setattr(units, "CHUNK_ROWS", 8)
    np.testing.assert_allclose(units.UnitAggregator().fit_transform(X, ids), whole, atol=1e-6)


def test_aggregator_validates_its_inputs():
    agg = units.UnitAggregator()
    with pytest.raises(ParameterError, match="call fit before transform"):
        agg.transform(np.ones((2, 3)), ["a", "b"])
    with pytest.raises(ParameterError, match="3 unit ids for 2 rows"):
        agg.fit(np.ones((2, 3)), ["a", "b", "c"])
    agg.fit(np.ones((2, 3)), ["a", "b"])
    with pytest.raises(ParameterError, match="4 features per row, the fitted aggregator had 3"):
        agg.transform(np.ones((2, 4)), ["a", "b"])
    with pytest.raises(ParameterError, match="--unit"):
        units.UnitAggregator("voxel").fit(np.ones((2, 3)), ["a", "b"])


def test_unit_columns_shared_mean_mixed_and_slice_only_dropped():
    idx = units.group(["u", "u", "v", "v", "w"])
    cols = {"plane": ["axial", "axial", "axial", "coronal", None], "mean": [1.0, 3.0, 2.0, 2.0, None],
            "ce": ["gd", None, None, None, None], "slice_index": [1, 2, 3, 4, 5]}
    out = units.unit_columns(cols, idx)
    assert out == {"n_slices": [2, 2, 1], "plane": ["axial", "mixed", None], "mean": [2.0, 2.0, None],
                   "ce": ["mixed", None, None]}
    assert idx.first_row.tolist() == [0, 2, 4]


def test_a_series_unit_of_a_4d_nifti_holds_the_one_volume_the_scan_reads(tmp_path):
    """units-metadata.md: a 4-D file contributes volume --volume-index only, so its series unit and its volume
    unit hold the same slices (they differ in their id)."""
    nib = pytest.importorskip("nibabel")
    from brainclust.io.scan import scan

    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in (12, 14, 10)], indexing="ij")
    ball = (sum(g ** 2 for g in grid) < 0.6).astype(np.float32)
    rng = np.random.default_rng(0)
    series = np.stack([ball * (100 + 10 * t) + rng.normal(0, 1, ball.shape) for t in range(3)], axis=-1)
    nib.save(nib.Nifti1Image(series.astype(np.float32), np.eye(4)), str(tmp_path / "bold.nii.gz"))
    recs = scan(tmp_path, slices="axial:2", volume_index=1).records
    assert len(recs) == 2 and all(r.frame.endswith("&t=1") for r in recs)
    assert units.unit_ids(recs, "series") == ["bold.nii.gz"] * 2
    assert units.unit_ids(recs, "volume") == ["bold.nii.gz#t=1"] * 2
