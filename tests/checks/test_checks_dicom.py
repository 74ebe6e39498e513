"""Non-image DICOM objects made with pydicom: an RT dose grid, a segmentation, a structured report."""

from __future__ import annotations

import numpy as np
import pytest

from brainclust.checks.decode import dicom_header
from brainclust.checks.stage import check_folder
from brainclust.io.scan import scan

from checks_planting import head_slice


def _dataset(path, sop_class, modality, frames, rows, cols, pixels=True, image_type=None, seed=0):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientName = "Test^Hostile<img src=x>"
    if image_type:
        ds.ImageType = image_type
    if pixels:
        rng = np.random.default_rng(0)
        arr = head_slice(seed, rows)[:rows, :cols] if frames == 1 else rng.integers(0, 4000, (frames, rows, cols))
        arr = np.asarray(arr, np.uint16)
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        if frames > 1:
            ds.NumberOfFrames = frames
        ds.PixelData = arr.tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


@pytest.fixture
def dicom_folder(tmp_path):
    root = tmp_path / "dcm"
    root.mkdir()
    _dataset(root / "dose.dcm", "1.2.840.10008.5.1.4.1.1.481.2", "RTDOSE", 15, 10, 10)
    _dataset(root / "seg.dcm", "1.2.840.10008.5.1.4.1.1.66.4", "SEG", 2, 64, 64)
    _dataset(root / "sr.dcm", "1.2.840.10008.5.1.4.1.1.88.22", "SR", 0, 0, 0, pixels=False)
    _dataset(root / "mr.dcm", "1.2.840.10008.5.1.4.1.1.4", "MR", 1, 160, 160, image_type=["ORIGINAL", "PRIMARY"])
    return root


def test_rtdose_frames_and_segmentations_are_non_image_dicom(dicom_folder):
    res = check_folder(dicom_folder, progress=False)
    flags = dict(zip(res.paths, res.flags))
    dose = [p for p in res.paths if p.startswith("dose.dcm")]
    assert len(dose) == 15
    assert all({"non_image_dicom", "tiny"} <= flags[p] for p in dose)
    assert all("non_image_dicom" in flags[p] for p in res.paths if p.startswith("seg.dcm"))
    assert flags["mr.dcm"] == frozenset()
    reasons = dict(zip(res.paths, res.dicom_reasons))
    assert reasons["dose.dcm#frame=1"] == "Modality RTDOSE" and reasons["mr.dcm"] == ""


def test_an_image_whose_header_names_another_modality_is_not_mri_whatever_its_pixels(tmp_path):
    """A CT, an ultrasound or a nuclear-medicine frame in a DICOM folder passed as MRI (its pixels judged alone):
    the header's Modality says it is not; the same pixels as MR, or as OT (which says nothing), stay clean."""
    from brainclust.checks.rules import other_modality
    from brainclust.checks.tables import summary_line

    root = tmp_path / "mixed"
    root.mkdir()
    for i in range(6):  # the folder's own MR slices
        _dataset(root / f"mr{i}.dcm", "1.2.840.10008.5.1.4.1.1.4", "MR", 1, 160, 160, seed=i)
    for seed, (name, sop, modality) in enumerate((("ct", "1.2.840.10008.5.1.4.1.1.2", "CT"),
                                                  ("us", "1.2.840.10008.5.1.4.1.1.6.1", "US"),
                                                  ("nm", "1.2.840.10008.5.1.4.1.1.20", "nm "),
                                                  ("ot", "1.2.840.10008.5.1.4.1.1.4", "OT")), start=6):
        _dataset(root / f"{name}.dcm", sop, modality, 1, 160, 160, seed=seed)
    res = check_folder(root, progress=False)
    flags, why = dict(zip(res.paths, res.flags)), dict(zip(res.paths, res.not_mri_reason))
    assert {p for p, f in flags.items() if f} == {"ct.dcm", "us.dcm", "nm.dcm"}
    assert all(flags[p] == {"not_mri"} and why[p].split(";")[0] == "modality" for p in ("ct.dcm", "us.dcm", "nm.dcm"))
    assert summary_line(res) == "checks: 3 not MRI (3 by the Modality of their DICOM header)"
    assert [other_modality({"Modality": m}) for m in ("CT", " us", "MR", "OT", "", "RTDOSE")] == ["CT", "US", "", "",
                                                                                                  "", ""]


def test_a_structured_report_has_no_pixels_so_the_scan_skips_it_and_the_rule_names_it(dicom_folder):
    found = scan(dicom_folder, progress=False)
    assert [s["path"] for s in found.skipped] == ["sr.dcm"]
    header = dicom_header(dicom_folder / "sr.dcm")
    assert header == {"Modality": "SR", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.88.22"}  # no patient field read


def test_quality_csv_never_holds_header_values_other_than_the_reason(dicom_folder, tmp_path):
    check_folder(dicom_folder, tmp_path / "out", progress=False)
    text = (tmp_path / "out" / "quality.csv").read_text()
    assert "Hostile" not in text and "Test^" not in text


def test_a_secondary_capture_is_judged_as_a_picture_file_not_a_scanned_frame(tmp_path):
    """A Secondary Capture's pixels were rendered or converted (a screen, a page): the rules for 2-D image files
    apply to it. White text on black is ``not_mri`` for its strokes as a Secondary Capture, and not as an MR frame
    (whose pixels are scanned); a head slice saved as a Secondary Capture stays unflagged."""
    from test_checks_rules import dense_page, on_black

    from brainclust.checks.rules import secondary_capture

    root = tmp_path / "dcm"
    root.mkdir()
    text = np.asarray(on_black(dense_page(300, 300)), np.uint16) * 16
    sc = "1.2.840.10008.5.1.4.1.1.7"
    for name, sop, modality, pixels in (("sc_text.dcm", sc, "OT", text), ("mr_text.dcm", "1.2.840.10008.5.1.4.1.1.4",
                                        "MR", text[::-1].copy()), ("sc_head.dcm", sc, "OT", None)):
        _dataset(root / name, sop, modality, 1, 160 if pixels is None else 300, 160 if pixels is None else 300)
        if pixels is not None:
            import pydicom

            ds = pydicom.dcmread(root / name)
            ds.PixelData = pixels.tobytes()
            ds.save_as(root / name)
    res = check_folder(root, progress=False)
    flags = dict(zip(res.paths, res.flags))
    reason = dict(zip(res.paths, res.not_mri_reason))
    assert flags["sc_text.dcm"] == {"not_mri"} and "strokes" in reason["sc_text.dcm"].split(";")
    assert "strokes" not in reason["mr_text.dcm"].split(";")
    assert "not_mri" not in flags["sc_head.dcm"]
    assert secondary_capture({"SOPClassUID": sc}) and secondary_capture({"SOPClassUID": sc + ".1.1"})
    assert not secondary_capture({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.4"}) and not secondary_capture({})
