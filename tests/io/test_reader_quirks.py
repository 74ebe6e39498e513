"""Unusual NIfTI and DICOM inputs the readers must read as the format means them, or skip with a clear reason."""

from __future__ import annotations

import logging
import struct

import numpy as np
import pytest

from brainclust.errors import ImageReadError
from brainclust.io.formats import dicom, nifti
from brainclust.io.scan import scan

from corpus import brain_volume, write_dicom, write_nifti

pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")


def test_nibabel_log_lines_never_reach_the_terminal(tmp_path, caplog, capfd):
    path = write_nifti(tmp_path / "zp.nii", brain_volume())
    raw = bytearray(path.read_bytes())
    raw[80:92] = struct.pack("<3f", 0, 0, 0)           # pixdim[1..3] = 0: nibabel logs "should be non-zero"
    raw[252:256] = struct.pack("<hh", 0, 0)            # no qform, no sform: the affine comes from pixdim
    path.write_bytes(bytes(raw))
    with caplog.at_level(logging.DEBUG):
        found = scan(tmp_path)
        nifti.header_fields(path)
    assert [r.path for r in found.records] == ["zp.nii#axial=8"] and not found.skipped
    assert "pixdim" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.name.startswith("nibabel")]
    assert not logging.getLogger("nibabel.global").disabled  # turned off only while nibabel reads


def lps(z_mm: float) -> np.ndarray:
    aff = np.diag([-0.9, -0.8, z_mm, 1.0])
    aff[:3, 3] = [12.0, 20.0, -30.0]
    return aff


def test_a_2d_nifti_keeps_its_affine_like_the_same_slice_stored_one_voxel_thick(tmp_path):
    v = brain_volume()[:, :, 8]
    write_nifti(tmp_path / "flat2d.nii.gz", v, lps(3.0))
    write_nifti(tmp_path / "flat3d.nii.gz", v[:, :, None], lps(3.0))
    found = scan(tmp_path)
    assert not found.skipped
    two, three = (next(r for r in found.records if r.name == n) for n in ("flat2d.nii.gz", "flat3d.nii.gz"))
    assert two.frame == three.frame == "axial=0"
    np.testing.assert_array_equal(nifti.load_slice(two.abspath, two.frame), nifti.load_slice(three.abspath, "axial=0"))
    # L->R and P->A flipped to RAS: the first stored voxel (patient's right, posterior) is shown bottom right
    shown = nifti.load_slice(two.abspath, two.frame)
    np.testing.assert_array_equal(shown, np.flipud(v[::-1, ::-1].T))
    fields = nifti.header_fields(two.abspath)
    assert fields == nifti.header_fields(three.abspath)
    assert fields["orientation"] == "LPS" and fields["voxel_z_mm"] == 3.0 and fields["shape"] == "20x24x1"
    assert {k: two.meta[k] for k in fields} == fields


def test_a_2d_nifti_whose_affine_has_no_third_axis_is_read(tmp_path):
    """Some writers leave a 2-D file's third affine column zero; no orientation could be read from it."""
    v = brain_volume()[:, :, 8]
    aff = lps(3.0)
    aff[:3, 2] = 0
    hdr = nib.Nifti1Header()  # the sform as written, no qform (nibabel cannot make one of a singular affine)
    hdr.set_data_shape(v.shape)
    hdr.set_data_dtype(v.dtype)
    hdr["srow_x"], hdr["srow_y"], hdr["srow_z"] = aff[:3]
    hdr["sform_code"], hdr["qform_code"] = 1, 0
    hdr["pixdim"][1:4] = [0.9, 0.8, 0]
    nib.save(nib.Nifti1Image(v, None, hdr), tmp_path / "flat.nii.gz")
    write_nifti(tmp_path / "ref.nii.gz", v[:, :, None], lps(1.0))  # the same plane, a thickness axis given
    found = scan(tmp_path)
    assert not found.skipped and {r.frame for r in found.records} == {"axial=0"}
    two, ref = (next(r for r in found.records if r.name == n) for n in ("flat.nii.gz", "ref.nii.gz"))
    np.testing.assert_array_equal(nifti.load_slice(two.abspath, two.frame), nifti.load_slice(ref.abspath, "axial=0"))


def test_a_one_voxel_thick_coronal_file_gives_its_slice_whatever_the_strategy(tmp_path):
    v = brain_volume()[:, :, 8]
    turned = np.array([[1.0, 0, 0, 0], [0, 0, 2.5, 0], [0, 1, 0, 0], [0, 0, 0, 1]])  # stored y -> S, z -> A
    write_nifti(tmp_path / "cor2d.nii.gz", v, turned)
    write_nifti(tmp_path / "cor3d.nii.gz", v[:, :, None], turned)
    write_nifti(tmp_path / "line.nii", np.arange(20, dtype=np.float32).reshape(20, 1, 1))
    for strategy in ("axial:mid", "sagittal:3", "all-planes:mid"):
        found = scan(tmp_path, slices=strategy)
        assert [r.path for r in found.records] == ["cor2d.nii.gz#coronal=0", "cor3d.nii.gz#coronal=0"]
        assert [s["path"] for s in found.skipped] == ["line.nii"]  # every file accounted for
        assert "holds no 2-D slice" in found.skipped[0]["reason"]
        a, b = (nifti.load_slice(r.abspath, r.frame) for r in found.records)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, np.flipud(v.T))  # superior up, the patient's left on the left
        assert found.records[0].meta["voxel_y_mm"] == 2.5 and found.records[0].meta["orientation"] == "RSA"


def test_a_complex_volume_gives_its_magnitude_with_one_warning_naming_the_file(tmp_path, caplog):
    mag = brain_volume()
    phase = np.linspace(0, 3, mag.shape[0])[:, None, None]  # the real part alone changes sign along x
    write_nifti(tmp_path / "sub" / "complex.nii.gz", (mag * np.exp(1j * phase)).astype(np.complex64))
    write_nifti(tmp_path / "sub" / "magnitude.nii.gz", mag)
    with caplog.at_level(logging.WARNING, logger="brainclust"):
        found = scan(tmp_path)
    assert [r.path for r in found.records] == ["sub/complex.nii.gz#axial=8", "sub/magnitude.nii.gz#axial=8"]
    got, want = (nifti.load_slice(r.abspath, r.frame) for r in found.records)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    said = [r.getMessage() for r in caplog.records if "complex" in r.getMessage()]
    assert said == ["sub/complex.nii.gz: complex values: their magnitude is used"]


def test_values_beyond_float32_are_named_as_such_not_called_constant(tmp_path):
    vol = brain_volume().astype(np.float64)
    write_nifti(tmp_path / "big.nii.gz", vol * 1e300)
    inf = vol.copy()
    inf[0, 0, 0] = np.inf                                   # a true infinity stays background, as documented
    write_nifti(tmp_path / "inf.nii.gz", inf)
    found = scan(tmp_path)
    assert [r.path for r in found.records] == ["inf.nii.gz#axial=8"]
    reason = {s["path"]: s["reason"] for s in found.skipped}["big.nii.gz"]
    assert "beyond the float32 range" in reason and "constant" not in reason
    with pytest.raises(ImageReadError, match=r"big\.nii\.gz.*beyond the float32 range"):
        nifti.load_volume(tmp_path / "big.nii.gz")


@pytest.mark.parametrize("name", ["pair.img", "pair.img.gz"])
def test_a_nifti_pair_is_skipped_with_one_reason_that_says_how_to_convert_it(tmp_path, name):
    nib.save(nib.Nifti1Pair(brain_volume(), np.eye(4)), str(tmp_path / name))  # pair.hdr[.gz] + pair.img[.gz]
    (tmp_path / "other.img").write_bytes(b"\x00\x01" * 500)                     # no header beside it
    write_nifti(tmp_path / "ok.nii", brain_volume())
    found = scan(tmp_path)
    hdr = name.replace(".img", ".hdr")
    assert [r.path for r in found.records] == ["ok.nii#axial=8"]
    reasons = {s["path"]: s["reason"] for s in found.skipped}
    assert sorted(reasons) == sorted([hdr, name, "other.img"])
    assert reasons[hdr].startswith("a NIfTI pair (.hdr/.img) is not supported; convert it to .nii")
    assert "Expected" not in reasons[hdr]
    assert reasons[name].startswith(f"the voxel data of the NIfTI pair '{hdr}'")
    assert reasons["other.img"] == "not a recognised image file"
    with pytest.raises(ImageReadError, match=r"pair\.hdr.*: a NIfTI pair \(\.hdr/\.img\) is not supported"):
        nifti.load_volume(tmp_path / hdr)


def palette(red, green, blue) -> dict:
    """The PALETTE COLOR attributes of three 256-entry, 16-bit lookup tables."""
    out = {}
    for colour, lut in (("Red", red), ("Green", green), ("Blue", blue)):
        out[f"{colour}PaletteColorLookupTableDescriptor"] = [256, 0, 16]
        out[f"{colour}PaletteColorLookupTableData"] = np.asarray(lut, "<u2").tobytes()
    return out


def test_palette_color_dicom_is_shown_through_its_lookup_table_as_luminance(tmp_path):
    idx = np.random.default_rng(0).integers(0, 256, (12, 10)).astype(np.uint8)
    ramp = np.arange(256) * 256
    red, green, blue = ramp, ramp[::-1], np.full(256, 128 * 256)      # luminance falls as the index rises
    write_dicom(tmp_path / "pal.dcm", idx, photometric="PALETTE COLOR", **palette(red, green, blue))
    found = scan(tmp_path)
    assert [r.path for r in found.records] == ["pal.dcm"] and not found.skipped
    got = dicom.load_frame(tmp_path / "pal.dcm")
    lum = 0.299 * red[idx] + 0.587 * green[idx] + 0.114 * blue[idx]   # naive reference: look up, then weigh
    lo, hi = np.percentile(lum, [0.5, 99.5])
    np.testing.assert_allclose(got, np.clip((lum - lo) / (hi - lo), 0, 1), atol=1e-5)
    assert np.corrcoef(got.ravel(), idx.ravel())[0, 1] < -0.99          # not the stored indices


def test_palette_color_dicom_without_its_lookup_table_is_skipped_with_a_reason(tmp_path):
    idx = np.arange(120, dtype=np.uint8).reshape(12, 10)
    attrs = palette(*[np.arange(256) * 256] * 3)
    del attrs["RedPaletteColorLookupTableDescriptor"]
    write_dicom(tmp_path / "nolut.dcm", idx, photometric="PALETTE COLOR", **attrs)
    write_dicom(tmp_path / "ok.dcm", idx.astype(np.uint16), uid=2)
    found = scan(tmp_path)
    assert [r.path for r in found.records] == ["ok.dcm"]
    assert [s["path"] for s in found.skipped] == ["nolut.dcm"]
    reason = found.skipped[0]["reason"]
    assert "PALETTE COLOR" in reason and "RedPaletteColorLookupTableDescriptor" in reason and "\n" not in reason
    with pytest.raises(ImageReadError, match=r"nolut\.dcm.*PALETTE COLOR"):
        dicom.load_frame(tmp_path / "nolut.dcm")
    attrs = palette(*[np.arange(256) * 256] * 3)
    attrs["RedPaletteColorLookupTableData"] = attrs["RedPaletteColorLookupTableData"][:384]  # 12 bits an entry
    write_dicom(tmp_path / "bad" / "odd.dcm", idx, photometric="PALETTE COLOR", **attrs)
    with pytest.raises(ImageReadError, match=r"odd\.dcm.*cannot apply the DICOM PALETTE COLOR lookup table"):
        dicom.load_frame(tmp_path / "bad" / "odd.dcm")


@pytest.mark.parametrize("colour", ["Green", "Blue"])
def test_a_palette_color_dicom_without_a_green_or_blue_descriptor_is_shown_as_pydicom_shows_it(tmp_path, colour):
    idx = np.random.default_rng(2).integers(0, 256, (12, 10)).astype(np.uint8)
    ramp = np.arange(256) * 256
    attrs = palette(ramp, ramp[::-1], np.full(256, 128 * 256))
    write_dicom(tmp_path / "full" / "pal.dcm", idx, photometric="PALETTE COLOR", **attrs)
    del attrs[f"{colour}PaletteColorLookupTableDescriptor"]  # the standard makes it the red one: pydicom reads that
    write_dicom(tmp_path / "part" / "pal.dcm", idx, photometric="PALETTE COLOR", **attrs)
    found = scan(tmp_path / "part")
    assert [r.path for r in found.records] == ["pal.dcm"] and not found.skipped
    np.testing.assert_array_equal(dicom.load_frame(tmp_path / "part" / "pal.dcm"),
                                  dicom.load_frame(tmp_path / "full" / "pal.dcm"))
    del attrs[f"{colour}PaletteColorLookupTableData"]  # its table itself: nothing to look the indices up in
    write_dicom(tmp_path / "nodata" / "pal.dcm", idx, photometric="PALETTE COLOR", **attrs)
    reason = scan(tmp_path / "nodata").skipped[0]["reason"]
    assert f"lacks {colour}PaletteColorLookupTableData of its colour lookup table" in reason and "\n" not in reason


def test_segmented_palette_tables_are_looked_up_and_a_mix_of_kinds_names_what_pydicom_would_miss(tmp_path):
    idx = np.random.default_rng(3).integers(0, 256, (12, 10)).astype(np.uint8)
    ramp = np.arange(256) * 256
    attrs = palette(ramp, ramp[::-1], ramp)
    write_dicom(tmp_path / "plain" / "pal.dcm", idx, photometric="PALETTE COLOR", **attrs)
    for colour, lut in (("Red", ramp), ("Green", ramp[::-1]), ("Blue", ramp)):  # one discrete segment each
        del attrs[f"{colour}PaletteColorLookupTableData"]
        attrs[f"Segmented{colour}PaletteColorLookupTableData"] = np.asarray([0, 256, *lut], "<u2").tobytes()
    write_dicom(tmp_path / "seg" / "pal.dcm", idx, photometric="PALETTE COLOR", **attrs)
    np.testing.assert_array_equal(dicom.load_frame(tmp_path / "seg" / "pal.dcm"),
                                  dicom.load_frame(tmp_path / "plain" / "pal.dcm"))
    attrs["RedPaletteColorLookupTableData"] = np.asarray(ramp, "<u2").tobytes()  # plain red: pydicom reads plain
    write_dicom(tmp_path / "mix" / "pal.dcm", idx, photometric="PALETTE COLOR", **attrs)
    reason = scan(tmp_path / "mix").skipped[0]["reason"]
    assert "lacks GreenPaletteColorLookupTableData, BluePaletteColorLookupTableData of its colour" in reason


def test_a_de_identified_copy_of_a_palette_color_image_keeps_its_lookup_table(tmp_path):
    from brainclust.io.deidentify import deidentified_dicom

    idx = np.random.default_rng(1).integers(0, 256, (12, 10)).astype(np.uint8)
    ramp = np.arange(256) * 256
    write_dicom(tmp_path / "pal.dcm", idx, photometric="PALETTE COLOR", **palette(ramp, ramp[::-1], ramp))
    copy = tmp_path / "copy" / "pal.dcm"
    copy.parent.mkdir()
    copy.write_bytes(deidentified_dicom((tmp_path / "pal.dcm").read_bytes(), "pal.dcm", "salt"))
    assert [r.path for r in scan(copy.parent).records] == ["pal.dcm"]  # not skipped for want of its table
    np.testing.assert_array_equal(dicom.load_frame(copy), dicom.load_frame(tmp_path / "pal.dcm"))
