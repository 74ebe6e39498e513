"""DICOM and NIfTI input: pixel values, orientation, slice counts, mixed folders, privacy."""

from __future__ import annotations

import csv
import json
import logging

import numpy as np
import pytest

import brainclust
from brainclust.errors import ImageReadError, ParameterError
from brainclust.io.formats import detect, dicom, dicomdisplay, nifti
from brainclust.io.formats.gzwhole import read_whole
from brainclust.io.scan import ImageRecord, load_record, scan

from corpus import PHI, brain_volume, write_dicom, write_nifti

pytest.importorskip("pydicom")
pytest.importorskip("nibabel")


def only(found, path):
    recs = [r for r in found.records if r.path == path]
    assert len(recs) == 1, [r.path for r in found.records]
    return recs[0]


# --------------------------------------------------------------------------- DICOM
PIX = np.array([[0, 100], [200, 300]], np.uint16)


def test_rescale_then_linear_window_hand_computed(tmp_path):
    # stored 0,100,200,300 -> rescaled 2x-100: -100,100,300,500; window c=200, w=401 (PS3.3 C.11.2.1.2.1):
    # below c-0.5-(w-1)/2 = -0.5 -> 0; above c-0.5+(w-1)/2 = 399.5 -> 1; else (x-199.5)/400+0.5
    write_dicom(tmp_path / "a.dcm", PIX, slope=2, intercept=-100, center=200, width=401)
    rec = only(scan(tmp_path), "a.dcm")
    assert (rec.type, rec.width, rec.height, rec.frame) == ("dicom", 2, 2, "")
    got = load_record(rec)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [[0.0, 0.25125], [0.75125, 1.0]], atol=1e-6)


def test_window_functions_match_the_standard():
    x = np.array([90.0, 100.0, 110.0])
    np.testing.assert_allclose(dicomdisplay.window(x, 100, 20, "LINEAR_EXACT"), [0.0, 0.5, 1.0], atol=1e-6)
    np.testing.assert_allclose(dicomdisplay.window(x, 100, 20, "SIGMOID"),
                               1 / (1 + np.exp(-4 * (x - 100) / 20)), atol=1e-6)
    # (x - 99.5) / 20 + 0.5 -> 0.025, 0.525, 1.025 clipped to 1
    np.testing.assert_allclose(dicomdisplay.window(x, 100, 21), [0.025, 0.525, 1.0], atol=1e-6)
    assert dicomdisplay.window(np.array([89.5]), 100, 21)[0] == 0.0


def test_percentile_window_without_header_window_and_monochrome1_inverted(tmp_path):
    pix = np.arange(100, dtype=np.uint16).reshape(10, 10)
    write_dicom(tmp_path / "m2.dcm", pix, uid=1, intercept=-1000)
    write_dicom(tmp_path / "m1.dcm", pix, uid=2, intercept=-1000, photometric="MONOCHROME1")
    found = scan(tmp_path)
    m2, m1 = load_record(only(found, "m2.dcm")), load_record(only(found, "m1.dcm"))
    # 0.5th/99.5th percentiles of 0..99 (linear interpolation) are 0.495 and 98.505; the intercept cancels
    expect = np.clip((pix - 0.495) / (98.505 - 0.495), 0, 1)
    np.testing.assert_allclose(m2, expect, atol=1e-5)
    np.testing.assert_allclose(m1, 1 - expect, atol=1e-5)


def test_multiframe_is_split_into_frames_with_their_own_keys(tmp_path):
    frames = np.stack([PIX, PIX + 1000, PIX * 3]).astype(np.uint16)
    write_dicom(tmp_path / "series" / "mf.dcm", frames, slope=1, intercept=0, center=600, width=1201)
    found = scan(tmp_path)
    assert [r.path for r in found.records] == [f"series/mf.dcm#frame={i}" for i in (1, 2, 3)]
    assert [r.frame for r in found.records] == ["f0001", "f0002", "f0003"]
    assert len({r.key for r in found.records}) == 3 and all(r.name == "mf.dcm" for r in found.records)
    for rec, raw in zip(found.records, frames):
        np.testing.assert_allclose(load_record(rec), dicomdisplay.window(raw.astype(float), 600, 1201), atol=1e-6)


def test_enhanced_multiframe_uses_per_frame_rescale(tmp_path):
    from pydicom.dataset import Dataset

    groups = []
    for slope in (1.0, 2.0):
        item, pvt = Dataset(), Dataset()
        pvt.RescaleSlope, pvt.RescaleIntercept = slope, 0
        item.PixelValueTransformationSequence = [pvt]
        groups.append(item)
    write_dicom(tmp_path / "enh.dcm", np.stack([PIX, PIX]), center=300, width=601,
                PerFrameFunctionalGroupsSequence=groups)
    a, b = (load_record(r) for r in scan(tmp_path).records)
    np.testing.assert_allclose(a, dicomdisplay.window(PIX.astype(float), 300, 601), atol=1e-6)
    np.testing.assert_allclose(b, dicomdisplay.window(2.0 * PIX, 300, 601), atol=1e-6)


def test_series_folder_without_extensions_and_headerless_files(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(3):
        write_dicom(tmp_path / "series" / f"IM{i:04d}", rng.integers(0, 4096, (8, 6), dtype=np.uint16), uid=i + 1)
    write_dicom(tmp_path / "old.dcm", PIX, uid=9, preamble=False, center=200, width=401)
    (tmp_path / "IM_text").write_text("not dicom at all")
    found = scan(tmp_path)
    assert [r.path for r in found.records] == ["old.dcm", "series/IM0000", "series/IM0001", "series/IM0002"]
    assert all(r.type == "dicom" for r in found.records)
    assert detect(tmp_path / "series" / "IM0000") == "dicom" and detect(tmp_path / "old.dcm") == "image"
    np.testing.assert_allclose(load_record(found.records[0]), dicomdisplay.window(PIX.astype(float), 200, 401),
                               atol=1e-6)
    assert [s["path"] for s in found.skipped] == ["IM_text"]


def test_non_image_and_undecodable_objects_are_skipped_with_reasons(tmp_path):
    from pydicom.encaps import encapsulate
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSLossless

    write_dicom(tmp_path / "sr.dcm", None, sop_class="1.2.840.10008.5.1.4.1.1.88.11")  # Basic Text SR
    write_dicom(tmp_path / "pr.dcm", None, uid=2, sop_class="1.2.840.10008.5.1.4.1.1.11.1")  # presentation state
    write_dicom(tmp_path / "mr_cut.dcm", None, uid=4, sop_class="1.2.840.10008.5.1.4.1.1.4")  # MR, pixels cut off
    write_dicom(tmp_path / "jls.dcm", PIX, uid=3, transfer_syntax=JPEGLSLossless,
                pixel_bytes=encapsulate([b"\xff\xd8\xff\xd9"]))
    found = scan(tmp_path)
    reasons = {s["path"]: s["reason"] for s in found.skipped}
    assert "no pixel data (Basic Text SR Storage)" in reasons["sr.dcm"]
    assert "no pixel data (Grayscale Softcopy Presentation State Storage)" in reasons["pr.dcm"]
    assert reasons["mr_cut.dcm"].endswith("no pixel data (MR Image Storage): the file is truncated or damaged")
    if get_decoder(JPEGLSLossless).is_available:
        rec = only(found, "jls.dcm")  # the extra is installed: garbage data fails at decoding
        with pytest.raises(ImageReadError, match="cannot decode DICOM pixel data"):
            load_record(rec)
    else:
        assert "pip install 'brainclust[dicom-codecs]'" in reasons["jls.dcm"]
        assert "JPEG-LS" in reasons["jls.dcm"]


def test_rle_compressed_decodes_like_the_uncompressed_file(tmp_path):
    import pydicom
    from pydicom.uid import RLELossless

    pix = np.random.default_rng(2).integers(0, 4096, (12, 10), dtype=np.uint16)
    write_dicom(tmp_path / "raw.dcm", pix, center=2000, width=4000)
    ds = pydicom.dcmread(tmp_path / "raw.dcm")
    ds.compress(RLELossless, encoding_plugin="pydicom")
    ds.save_as(tmp_path / "rle.dcm")
    found = scan(tmp_path)
    assert not found.skipped
    np.testing.assert_array_equal(load_record(only(found, "rle.dcm")), load_record(only(found, "raw.dcm")))


# --------------------------------------------------------------------------- NIfTI
def test_canonical_reorientation_gives_the_same_slices(tmp_path):
    vol = brain_volume()
    write_nifti(tmp_path / "ras.nii.gz", vol)
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = vol.shape[0] - 1  # x stored right-to-left: same anatomy, same world position
    write_nifti(tmp_path / "las.nii.gz", vol[::-1], flip)
    perm = np.zeros((4, 4))
    perm[0, 1] = perm[1, 0] = perm[2, 2] = perm[3, 3] = 1  # stored axes (A, R, S)
    write_nifti(tmp_path / "ars.nii", vol.transpose(1, 0, 2), perm)
    found = scan(tmp_path, slices="all-planes:3")
    by_file: dict[str, list] = {}
    for r in found.records:
        by_file.setdefault(r.name, []).append((r.frame, load_record(r)))
    assert len(by_file) == 3
    ref = by_file["ras.nii.gz"]
    for other in ("las.nii.gz", "ars.nii"):
        assert [f for f, _ in by_file[other]] == [f for f, _ in ref]
        for (_, a), (_, b) in zip(by_file[other], ref):
            np.testing.assert_array_equal(a, b)


def test_slices_are_cut_in_the_documented_display_orientation(tmp_path):
    vol = np.zeros((10, 12, 8), np.float32)
    vol[1, 10, 4] = 5.0  # patient left (low x), anterior (high y), mid height
    write_nifti(tmp_path / "v.nii", vol)
    axial = nifti.cut(nifti.load_volume(tmp_path / "v.nii"), "axial", 4)
    assert axial.shape == (12, 10)  # rows = y (anterior on top), columns = x (left on the left)
    assert np.argwhere(axial == 5.0).tolist() == [[12 - 1 - 10, 1]]
    sag = nifti.cut(nifti.load_volume(tmp_path / "v.nii"), "sagittal", 1)
    assert sag.shape == (8, 12) and np.argwhere(sag == 5.0).tolist() == [[8 - 1 - 4, 10]]


@pytest.mark.parametrize("strategy, expected", [
    ("axial:mid", ["axial=8"]),
    ("axial:5", [f"axial={i}" for i in (5, 7, 9, 11, 13)]),
    ("axial:all", [f"axial={i}" for i in range(4, 14)]),
    ("coronal:2", ["coronal=3", "coronal=5"]),
    ("all-planes:1", ["axial=9", "coronal=4", "sagittal=5"]),
    ("axial:mid,sagittal:mid", ["axial=8", "sagittal=5"]),
    ("axial:50", [f"axial={i}" for i in range(4, 14)]),
])
def test_slice_strategies_pick_the_documented_slices(tmp_path, strategy, expected):
    vol = np.zeros((10, 8, 16), np.float32)
    vol[2:9, 2:7, 4:14] = 100.0  # brain: x 2..8, y 2..6, z 4..13
    write_nifti(tmp_path / "sub-01" / "T1w.nii.gz", vol)
    found = scan(tmp_path, slices=strategy)
    assert [r.frame for r in found.records] == expected
    assert [r.path for r in found.records] == [f"sub-01/T1w.nii.gz#{f}" for f in expected]
    assert len({r.key for r in found.records}) == len(expected)
    assert all(r.type == "nifti" and r.name == "T1w.nii.gz" for r in found.records)


def test_four_d_volume_index_nans_and_constant_volumes(tmp_path):
    vol = brain_volume()
    write_nifti(tmp_path / "bold.nii.gz", np.stack([vol, 2 * vol], axis=-1))
    nan = vol.copy()
    nan[0] = np.nan
    write_nifti(tmp_path / "nan.nii", nan)
    write_nifti(tmp_path / "flat.nii", np.full((5, 5, 5), 7.0, np.float32))
    v0, v1 = scan(tmp_path), scan(tmp_path, volume_index=1)
    r0, r1 = only(v0, "bold.nii.gz#axial=8&t=0"), only(v1, "bold.nii.gz#axial=8&t=1")
    assert r0.key != r1.key
    np.testing.assert_allclose(load_record(r1), 2 * load_record(r0), rtol=1e-6)
    img = load_record(only(v0, "nan.nii#axial=8"))
    assert np.isfinite(img).all() and img[:, 0].min() == img.min()  # NaN column -> volume minimum
    assert "constant" in {s["path"]: s["reason"] for s in v0.skipped}["flat.nii"]
    skipped = {s["path"]: s["reason"] for s in scan(tmp_path, volume_index=5).skipped}
    assert "--volume-index 5 is out of range" in skipped["bold.nii.gz"]
    assert "nan.nii" not in skipped  # the option is about 4-D files


def test_nifti_under_another_name_and_a_2d_nifti_are_read(tmp_path):
    import shutil

    vol = brain_volume()
    write_nifti(tmp_path / "src" / "v.nii.gz", vol)
    write_nifti(tmp_path / "src" / "raw.nii", vol)
    (tmp_path / "d").mkdir()
    shutil.copy(tmp_path / "src" / "v.nii.gz", tmp_path / "d" / "vol.jpg")      # gzipped, a wrong extension
    shutil.copy(tmp_path / "src" / "raw.nii", tmp_path / "d" / "vol_noext")     # uncompressed, no extension
    write_nifti(tmp_path / "d" / "slice2d.nii.gz", vol[:, :, 8])                # a 2-D image
    got = scan(tmp_path / "d")
    assert got.skipped == []
    want = load_record(only(scan(tmp_path / "src"), "v.nii.gz#axial=8"))
    for name in ("vol.jpg#axial=8", "vol_noext#axial=8"):
        np.testing.assert_array_equal(load_record(only(got, name)), want)
    flat = only(got, "slice2d.nii.gz#axial=0")
    np.testing.assert_array_equal(load_record(flat), want)                       # the same slice, one thick
    assert nifti.header_fields(tmp_path / "d" / "vol_noext")["shape"] == nifti.header_fields(
        tmp_path / "src" / "raw.nii")["shape"]
    turned = np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])  # thickness axis -> anterior
    write_nifti(tmp_path / "e" / "cor2d.nii.gz", vol[:, :, 8], affine=turned)
    write_nifti(tmp_path / "e" / "thin.nii.gz", vol[:, :, 8:9])                       # 3-D, one voxel thick
    got = scan(tmp_path / "e", slices="all-planes:mid")
    assert sorted(r.path for r in got.records) == ["cor2d.nii.gz#coronal=0", "thin.nii.gz#axial=0"]  # its affine
    for r in got.records:                                                              # never a one-pixel line
        np.testing.assert_array_equal(load_record(r), want)


@pytest.mark.parametrize("bad", ["", "axial", "axial:0", "top:3", "axial:-1", "axial:mid;coronal:1"])
def test_bad_slice_strategies_are_parameter_errors(tmp_path, bad):
    with pytest.raises(ParameterError, match="^--slices: "):
        scan(tmp_path, slices=bad)


def test_bare_path_records_dispatch_on_content(tmp_path):
    write_nifti(tmp_path / "v.nii", brain_volume())
    write_dicom(tmp_path / "d", PIX, center=200, width=401)
    rec = lambda p: ImageRecord(path=p.name, abspath=str(p), name=p.name, type="", size=0, width=0,  # noqa: E731
                                height=0, sha256="x")
    assert load_record(rec(tmp_path / "v.nii")).shape == (24, 20)
    assert load_record(rec(tmp_path / "d")).shape == (2, 2)


# --------------------------------------------------------------------------- mixed folder, privacy
@pytest.mark.slow
def test_mixed_folder_end_to_end_leaks_no_patient_data(tmp_path, caplog, capfd, make_image):
    data = tmp_path / "data"
    rng = np.random.default_rng(3)
    for i in range(3):
        make_image(data / "png" / f"img{i}.png", "L", size=(40, 36), seed=i)
    for i in range(3):  # a series folder, one file without extension
        write_dicom(data / "dicom" / "series" / (f"IM{i}" if i else f"IM{i}.dcm"),
                    rng.integers(0, 4096, (32, 32), dtype=np.uint16), uid=i + 1, center=2000, width=4000)
    write_dicom(data / "dicom" / "mf.dcm", rng.integers(0, 4096, (2, 24, 24), dtype=np.uint16), uid=7,
                photometric="MONOCHROME1")
    write_dicom(data / "dicom" / "report.dcm", None, uid=8, sop_class="1.2.840.10008.5.1.4.1.1.88.11")
    # malformed values pydicom would warn about, quoting them
    write_dicom(data / "dicom" / "odd.dcm", PIX, uid=9, PatientSex="SECRET^NAME" * 3)
    write_nifti(data / "nifti" / "sub-01_T1w.nii.gz", brain_volume(seed=1))
    write_nifti(data / "nifti" / "sub-02_T1w.nii.gz", brain_volume(seed=2))
    out = tmp_path / "out"
    capfd.readouterr()  # what writing the test files printed is not ours
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    res = brainclust.run(data, out, backbone="efficientnet_lite0", k=3, workers=0, pca=5,
                         cache_dir=str(tmp_path / "cache"), slices="axial:2")
    with open(out / "assignments.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    # 3 PNG + 3 series + 2 frames + 1 odd + 2 volumes x 2 slices
    assert len(rows) == 3 + 3 + 2 + 1 + 4 == len(res.records)
    assert {r["type"] for r in rows} == {"png", "dicom", "nifti"}
    files = [r["path"].split("#")[0] for r in rows]
    assert files == sorted(files)  # files in path order, slices/frames of a file in index order
    assert [r["path"] for r in rows if r["name"] == "sub-01_T1w.nii.gz"] == [
        "nifti/sub-01_T1w.nii.gz#axial=5", "nifti/sub-01_T1w.nii.gz#axial=10"]
    assert "dicom/mf.dcm#frame=2" in {r["path"] for r in rows}
    man = json.loads((out / "manifest.json").read_text())
    assert [s["path"] for s in man["skipped"]] == ["dicom/report.dcm"]
    assert man["n_files_scanned"] == 3 + 3 + 1 + 1 + 1 + 2
    assert man["settings"]["slices"] == "axial:2"
    captured = capfd.readouterr()
    texts = [p.read_bytes().decode("utf-8", "replace") for p in out.rglob("*") if p.is_file()]
    texts += [caplog.text, captured.out, captured.err, json.dumps(res.manifest), repr(res.records)]
    for value in PHI.values():
        for variant in {value, value.replace("^", " "), value.split("^")[0]}:
            assert all(variant not in t for t in texts), variant


def test_a_gzipped_nifti_whose_checksum_fails_is_refused_not_read_as_garbage(tmp_path):
    """nibabel stops once it has the voxels, so a damaged stream whose checksum fails was read and clustered."""
    good = write_nifti(tmp_path / "good.nii.gz", brain_volume())
    raw = bytearray(good.read_bytes())
    raw[-8:-4] = bytes(b ^ 0xFF for b in raw[-8:-4])  # the CRC32 of the trailer: every voxel still decodes
    bad = tmp_path / "data" / "bad.nii.gz"
    bad.parent.mkdir()
    bad.write_bytes(bytes(raw))
    assert nifti.load_volume(good).shape == (20, 24, 16)
    with pytest.raises(ImageReadError, match="damaged gzip stream"):
        nifti.load_volume(bad)
    write_nifti(tmp_path / "data" / "other.nii.gz", brain_volume(seed=1))
    found = scan(tmp_path / "data")
    assert {r.path.split("#")[0] for r in found.records} == {"other.nii.gz"}
    assert any("damaged gzip stream" in s["reason"] for s in found.skipped if s["path"].startswith("bad"))


def test_the_checksum_read_keeps_the_bomb_guard_and_leaves_4d_series_and_trailing_bytes_alone(tmp_path):
    """The whole-file read happens only for one volume within MAX_VOXELS, after its header is read."""
    import gzip

    import nibabel as nib

    bomb = tmp_path / "bomb.nii.gz"  # a few MB declaring 1000^3 voxels: refused before anything is unpacked
    nib.save(nib.Nifti1Image(np.zeros((1000, 1000, 1000), np.uint8), np.eye(4)), bomb)
    assert read_whole(str(bomb), nifti.MAX_VOXELS) == str(bomb)
    with pytest.raises(ImageReadError, match="exceeds the limit"):
        nifti.load_volume(bomb)
    series = write_nifti(tmp_path / "bold.nii.gz", np.stack([brain_volume(seed=s) for s in range(3)], -1))
    assert read_whole(str(series), nifti.MAX_VOXELS) == str(series)  # 4-D: nibabel streams it up to the volume
    one = write_nifti(tmp_path / "one.nii.gz", brain_volume())
    assert read_whole(str(one), nifti.MAX_VOXELS).getvalue() == gzip.decompress(one.read_bytes())
    junk = tmp_path / "junk.nii.gz"  # bytes after a whole member whose checksum passed: read, as gzip reads them
    junk.write_bytes(one.read_bytes() + b"JUNK")
    np.testing.assert_array_equal(nifti.load_volume(junk), nifti.load_volume(one))


def test_a_truncated_nii_is_skipped_with_a_reason_that_names_no_full_path(tmp_path):
    """nibabel's error names the file's absolute path; the reason reaches the report's skipped list, which names
    no full path (it read 'Expected N bytes, got 300 bytes from /home/.../cut.nii')."""
    data = tmp_path / "study_of_jane_doe"
    good = write_nifti(data / "good.nii", brain_volume())
    (data / "cut.nii").write_bytes(good.read_bytes()[:652])
    found = scan(data)
    reason = {s["path"]: s["reason"] for s in found.skipped}["cut.nii"]
    assert reason.startswith("cannot read NIfTI volume (") and "bytes from cut.nii)" in reason
    assert str(tmp_path) not in reason and "jane" not in reason
