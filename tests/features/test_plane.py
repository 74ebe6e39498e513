"""The label-free plane estimate (brainclust.features.plane) on demo-like slices and on NIfTI records."""

import numpy as np
import pytest

from brainclust.errors import ParameterError
from brainclust.features.plane import PLANES, PlaneEstimator, estimate_planes, head_mask, shape_descriptor

nib = pytest.importorskip("nibabel")


@pytest.fixture(scope="module")
def estimator():
    return PlaneEstimator(n_per_plane=60, random_state=0).fit()


def test_estimates_the_plane_of_demo_slices(estimator, tmp_path):
    from brainclust.data.demo import make_demo_dataset
    from brainclust.io.scan import load_record, scan

    make_demo_dataset(tmp_path / "demo", n_per_class=12, random_state=3)  # other poses than the training slices
    recs = scan(tmp_path / "demo", labels_from_folders=True).records
    pred = estimator.predict([load_record(r) for r in recs])
    truth = np.asarray([r.label for r in recs])
    assert (pred == truth).mean() >= 0.9
    proba = estimator.predict_proba([load_record(r) for r in recs[:3]])
    assert proba.shape == (3, 3)
    np.testing.assert_allclose(proba.sum(1), 1.0)


def test_descriptor_ignores_gain_and_nearly_ignores_contrast():
    yy, xx = np.mgrid[0:120, 0:100]
    head = (((yy - 60) / 50) ** 2 + ((xx - 50) / 38) ** 2 < 1).astype(float)
    t1 = head * (0.5 + 0.3 * np.sin(xx / 7.0))
    np.testing.assert_allclose(shape_descriptor(t1), shape_descriptor(40 * t1 + 7), atol=1e-9)  # gain, offset
    t2_like = head * (1.3 - (0.5 + 0.3 * np.sin(xx / 7.0)))  # inverted inside the head
    a, b = shape_descriptor(t1), shape_descriptor(t2_like)
    outline = np.r_[0:36, 40:len(a)]  # everything but the two intensity-symmetry values
    # the edge moves by at most a pixel (1/8 of a thumbnail cell)
    np.testing.assert_allclose(a[outline], b[outline], atol=0.15)
    assert shape_descriptor(np.zeros((50, 50))).sum() == 0  # blank: no head, zeros
    with pytest.raises(ParameterError, match="2-D image"):
        shape_descriptor(np.zeros((4, 4, 3)))


def test_head_mask_keeps_the_largest_filled_part():
    img = np.zeros((60, 60))
    img[10:50, 10:50] = 1.0
    img[25:35, 25:35] = 0.0  # a dark hole (ventricles)
    img[2:4, 55:58] = 1.0  # a speck
    m = head_mask(img)
    assert m[30, 30] and not m[3, 56] and m.sum() >= 40 * 40 - 100


def test_nifti_slices_take_the_plane_from_their_frame(tmp_path, estimator, monkeypatch):
    from brainclust.features import plane as plane_mod
    from brainclust.io.scan import scan

    vol = np.zeros((20, 24, 16), np.float32)
    vol[4:16, 4:20, 3:13] = 1.0
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "v.nii.gz")
    recs = scan(tmp_path, slices="axial:2,sagittal:1").records
    monkeypatch.setattr(plane_mod, "fitted_estimator", lambda *args, **kwargs: estimator)
    plane, source, conf = estimate_planes(recs)
    assert list(plane) == ["axial", "axial", "sagittal"] and set(source) == {"header"} and (conf == 1).all()
    assert set(PLANES) == {"axial", "coronal", "sagittal"}


def test_save_load_round_trip_and_cache(estimator, tmp_path, monkeypatch):
    from brainclust.errors import ModelFileError
    from brainclust.features import plane as plane_mod

    estimator.save(tmp_path / "p.npz")
    back = PlaneEstimator.load(tmp_path / "p.npz")
    imgs = [np.pad(np.ones((40, 30)), 10), np.pad(np.ones((30, 40)), 10)]
    np.testing.assert_array_equal(back.coef_, estimator.coef_)  # stored arrays: exact
    np.testing.assert_allclose(back.predict_proba(imgs), estimator.predict_proba(imgs), rtol=1e-12)
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(ModelFileError, match="plane estimator"):
        PlaneEstimator.load(tmp_path / "bad.npz")
    calls = []
    monkeypatch.setattr(plane_mod.PlaneEstimator, "fit", lambda self: calls.append(1) or estimator)
    plane_mod.fitted_estimator.cache_clear()
    first = plane_mod.fitted_estimator(0, str(tmp_path))  # fits once and stores the model
    assert calls == [1] and (tmp_path / f"plane_estimator_{plane_mod.VERSION}_0.npz").is_file()
    plane_mod.fitted_estimator.cache_clear()
    again = plane_mod.fitted_estimator(0, str(tmp_path))  # a new process would read it back
    assert calls == [1]
    np.testing.assert_array_equal(again.coef_, first.coef_)
    plane_mod.fitted_estimator.cache_clear()


def test_a_stored_estimator_trained_on_other_template_slices_is_refitted(estimator, tmp_path, monkeypatch):
    """The stored model was reused whatever slices it was trained on: a change of nifti.brain_range (one slice later
    on two axes, 2026-12-07) left plane_estimator_2_0.npz files giving the old estimates (4-class dev: 611 coronal
    and 36 sagittal against 506 and 125 from a fresh fit)."""
    from brainclust.features import plane as plane_mod

    assert estimator.ranges_.shape == (3, 2)
    np.testing.assert_array_equal(estimator.ranges_, plane_mod.template_ranges())
    calls = []
    monkeypatch.setattr(plane_mod.PlaneEstimator, "fit", lambda self: calls.append(1) or estimator)
    plane_mod.fitted_estimator.cache_clear()
    path = tmp_path / f"plane_estimator_{plane_mod.VERSION}_0.npz"
    estimator.save(path)
    plane_mod.fitted_estimator(0, str(tmp_path))
    assert calls == []  # the same span: reused
    plane_mod.fitted_estimator.cache_clear()
    monkeypatch.setattr(plane_mod, "template_ranges", lambda vol=None: estimator.ranges_ + 1)
    plane_mod.fitted_estimator(0, str(tmp_path))
    assert calls == [1]  # another span: refitted
    plane_mod.fitted_estimator.cache_clear()
