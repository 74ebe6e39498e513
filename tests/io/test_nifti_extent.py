"""NIfTI: a brain extent that noise cannot move, slice positions, header fields."""

from __future__ import annotations

import numpy as np
import pytest

from brainclust.io.formats import brainmask, nifti
from brainclust.io.scan import scan

nib = pytest.importorskip("nibabel")


def head(shape, centre=(0.0, 0.0, 0.0), radius=0.6, seed=0) -> np.ndarray:
    """An ellipsoid of textured 'tissue' (values ~100-300) on a zero background."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r = np.sqrt(sum(((g - c) / radius) ** 2 for g, c in zip(grid, centre)))
    tissue = 200 + 80 * np.cos(6 * grid[0]) * np.sin(5 * grid[2]) + rng.normal(0, 10, shape)
    return np.where(r < 1, tissue, 0).astype(np.float32)


def true_extent(vol: np.ndarray, axis: int) -> tuple[int, int]:
    keep = np.flatnonzero((vol > 0).sum(axis=tuple(a for a in range(3) if a != axis)))
    return int(keep[0]), int(keep[-1])


@pytest.mark.parametrize("shape", [(40, 48, 36), (150, 160, 100)])  # full-resolution and half-resolution masks
@pytest.mark.parametrize("sd", [0.05, 0.2])
def test_a_noisy_copy_gets_nearly_the_same_slices_and_no_noise_only_slice(shape, sd):
    clean = head(shape, centre=(0.1, -0.1, 0.05))
    noisy = clean + np.random.default_rng(1).normal(0, sd * clean.max(), shape).astype(np.float32)
    for plane, axis in brainmask.AXIS.items():
        lo, hi = true_extent(clean, axis)
        a, b = nifti.pick(clean, plane, "5"), nifti.pick(noisy, plane, "5")
        assert len(a) == len(b) == 5
        assert max(abs(i - j) for i, j in zip(a, b)) <= 2, (plane, a, b)
        assert all(lo <= i <= hi for i in a + b), (plane, lo, hi, a, b)  # never a noise-only slice
        first, last = nifti.brain_range(noisy, plane)
        assert abs(first - lo) <= 3 and abs(last - hi) <= 3, (plane, (first, last), (lo, hi))


def test_a_bright_speck_outside_the_head_does_not_extend_the_range():
    vol = head((40, 48, 36))
    lo, hi = true_extent(vol, 2)
    speck = vol.copy()
    speck[20:23, 20:23, 33:36] = 900.0  # far above the head, not connected to it
    assert nifti.brain_range(speck, "axial") == nifti.brain_range(vol, "axial")
    assert lo <= nifti.brain_range(vol, "axial")[0] and nifti.brain_range(vol, "axial")[1] <= hi


def test_scan_records_plane_slice_index_and_position(tmp_path):
    vol = head((30, 34, 26))
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(tmp_path / "v.nii.gz"))
    recs = scan(tmp_path, slices="axial:3,sagittal:mid").records
    axial = [r.meta for r in recs if r.meta["plane"] == "axial"]
    assert [m["slice_index"] for m in axial] == [int(r.frame.split("=")[1]) for r in recs[:3]]
    pos = [m["slice_position"] for m in axial]
    assert pos == sorted(pos) and 0 < pos[0] < 0.5 < pos[-1] < 1
    mid = [r.meta for r in recs if r.meta["plane"] == "sagittal"]
    assert len(mid) == 1 and abs(mid[0]["slice_position"] - 0.5) < 0.1  # the head is centred
    only_mid = scan(tmp_path, slices="sagittal:mid").records
    assert "slice_position" not in only_mid[0].meta  # ``mid`` alone does not locate the brain (no cost)


def test_header_fields_in_canonical_axis_order(tmp_path):
    data = np.zeros((8, 10, 12), np.float32)
    data[2:6, 2:8, 2:10] = 1
    aff = np.zeros((4, 4))
    aff[0, 1], aff[1, 2], aff[2, 0], aff[3, 3] = -0.5, 2.0, 3.0, 1.0  # stored (S, L, A) with sizes 3, 0.5, 2 mm
    nib.save(nib.Nifti1Image(data, aff), str(tmp_path / "p.nii"))
    f = nifti.header_fields(tmp_path / "p.nii")
    assert f["orientation"] == "SLA"
    assert (f["voxel_x_mm"], f["voxel_y_mm"], f["voxel_z_mm"]) == (0.5, 2.0, 3.0)
    assert f["shape"] == "10x12x8" and f["n_volumes"] == 1
    assert f["shape"] == "x".join(map(str, nifti.load_volume(tmp_path / "p.nii").shape))
    nib.save(nib.Nifti1Image(np.stack([data] * 4, -1), np.eye(4)), str(tmp_path / "f.nii.gz"))
    assert nifti.header_fields(tmp_path / "f.nii.gz")["n_volumes"] == 4
