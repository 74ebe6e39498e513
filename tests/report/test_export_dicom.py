"""``export`` copies DICOM files de-identified by default: no patient data reaches the export's files."""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from corpus import PHI, write_dicom

from brainclust.cli import main
from brainclust.io.deidentify import METHOD, deidentified_dicom

pydicom = pytest.importorskip("pydicom")
RUN = ["--backbone", "pixels@16", "--pca", "2", "--k", "2", "--workers", "0", "--no-report", "-q"]
#: More than PHI: what else a scanner writes, a private tag and free text naming the patient.
EXTRA = {"ReferringPhysicianName": "Doc^Hidden", "StudyDate": "20200102", "StudyDescription": "HEAD for SECRET",
         "ImageComments": "call SECRET at home", "StationName": "SECRETSTATION", "DeviceSerialNumber": "SN-SECRET-1",
         "SeriesDescription": "AX T1 SECRET NAME", "ProtocolName": "t1_mprage_sag", "Manufacturer": "SIEMENS",
         "ImageType": ["ORIGINAL", "PRIMARY"], "PixelSpacing": [0.9, 0.9], "RepetitionTime": 2300.0}
SECRETS = [*PHI.values(), "SECRET", "Hidden", "20200102", "SN-SECRET"]


def read(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


def strictly_valid(path) -> bool:
    """Every element of the file is valid for its VR (length, characters): pydicom raises otherwise."""
    mode = pydicom.config.settings.reading_validation_mode
    pydicom.config.settings.reading_validation_mode = pydicom.config.RAISE
    try:
        for elem in pydicom.dcmread(path):
            _ = elem.value  # validated as it is read
        return True
    finally:
        pydicom.config.settings.reading_validation_mode = mode


@pytest.fixture(scope="module")
def dicom_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("dcm")
    data, out = base / "data", base / "out"
    rng = np.random.default_rng(0)
    for i in range(8):
        pix = (rng.integers(0, 300, (16, 16)) + (i % 2) * 2000).astype(np.uint16)
        p = write_dicom(data / f"s{i}.dcm", pix, uid=i + 1, **EXTRA)
        ds = read(p)
        ds.add_new(0x00091010, "LO", "private SECRET")  # a private tag
        ds.save_as(p)
    assert main(["run", str(data), "--out", str(out), *RUN]) == 0
    return data, out


def test_copies_hold_no_patient_data_and_the_same_pixels(dicom_run, tmp_path, capsys):
    data, out = dicom_run
    assert main(["export", str(out), "--to", str(tmp_path / "exp")]) == 0
    assert "8 DICOM files de-identified" in capsys.readouterr().out
    files = sorted((tmp_path / "exp").glob("cluster_*/*.dcm"))
    assert len(files) == 8
    series = set()
    for f in files:
        raw = f.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in raw, (f.name, secret)
        ds, orig = read(f), read(data / f.name)
        assert np.array_equal(ds.pixel_array, orig.pixel_array)
        assert ds.PatientIdentityRemoved == "YES" and ds.DeidentificationMethod == METHOD
        assert strictly_valid(f)
        assert ds.SOPInstanceUID != orig.SOPInstanceUID and ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.ProtocolName == "t1_mprage_sag" and "SeriesDescription" not in ds  # safe text only
        assert list(ds.PixelSpacing) == [0.9, 0.9] and float(ds.RepetitionTime) == 2300.0
        assert not any(e.tag.is_private for e in ds)
        old_uids = {str(e.value) for e in orig if e.VR == "UI"} - {str(orig.SOPClassUID)}
        assert not old_uids & ({str(e.value) for e in ds if e.VR == "UI"} | {ds.file_meta.MediaStorageSOPInstanceUID})
        series.add(ds.SeriesInstanceUID)
    assert len(series) == 1  # one series stays one series


def test_exported_copies_run_like_the_originals(dicom_run, tmp_path):
    _, out = dicom_run
    assert main(["export", str(out), "--to", str(tmp_path / "exp"), "-q"]) == 0
    assert main(["run", str(tmp_path / "exp"), "--out", str(tmp_path / "again"), *RUN]) == 0
    assert (tmp_path / "again" / "assignments.csv").read_text().count("\n") == 9


def test_keep_copies_the_files_as_they_are(dicom_run, tmp_path, capsys):
    data, out = dicom_run
    assert main(["export", str(out), "--to", str(tmp_path / "exp"), "--dicom-headers", "keep"]) == 0
    assert "headers and metadata kept, patient data included" in capsys.readouterr().out
    for f in (tmp_path / "exp").glob("cluster_*/*.dcm"):
        assert hashlib.sha256(f.read_bytes()).digest() == hashlib.sha256((data / f.name).read_bytes()).digest()


@pytest.mark.parametrize("asked", [["--dicom-headers", "strip"], []])
def test_symlink_is_refused_unless_the_headers_are_kept_on_purpose(dicom_run, tmp_path, capsys, asked):
    """A link points at the original file, header and all: ``strip`` (asked for, or the default) cannot be done
    by a link. It was done silently (links to files full of patient data); now one line, exit 2, nothing written."""
    data, out = dicom_run
    capsys.readouterr()
    assert main(["export", str(out), "--to", str(tmp_path / "exp"), "--mode", "symlink", *asked]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("brainclust: error: --mode symlink") and "--dicom-headers keep" in err[0]
    assert not (tmp_path / "exp").exists()
    keep = ["--mode", "symlink", "--dicom-headers", "keep"]
    assert main(["export", str(out), "--to", str(tmp_path / "exp"), *keep]) == 0
    assert "patient data included" in capsys.readouterr().out
    links = list((tmp_path / "exp").glob("cluster_*/*.dcm"))
    assert links and all(p.is_symlink() and Path(os.readlink(p)).parent == data.resolve() for p in links)


def test_a_file_that_is_not_dicom_is_one_line_naming_it():
    from brainclust.errors import InputError

    with pytest.raises(InputError, match="'x/a.dcm' cannot be de-identified") as err:
        deidentified_dicom(b"\x00" * 10, "x/a.dcm", "salt")
    assert "\n" not in str(err.value)


def test_names_in_fields_meant_for_numbers_or_codes_and_after_the_pixels_are_dropped(tmp_path):
    """A crafted file: text in a number field, a code field holding a name, a number field declared as text,
    bytes after the last frame, a named contrast agent. None of it reaches the copy; the pixels do."""
    from pydicom import config
    from pydicom.dataelem import DataElement

    pix = np.arange(64, dtype=np.uint16).reshape(8, 8)
    p = write_dicom(tmp_path / "a.dcm", pix, ImageType=["ORIGINAL", "SMITH JOHN"], BodyPartExamined="JOHN DOE",
                    PatientPosition="JD 19700101", ContrastBolusAgent="Gadovist for SMITH", WindowCenter="40")
    with warnings.catch_warnings(), config.disable_value_validation():
        warnings.simplefilter("ignore")
        ds = read(p)
        ds["WindowWidth"] = DataElement(0x00281051, "DS", "9999999999")  # text in a number field, patched below
        ds["InstanceNumber"] = DataElement(0x00200013, "LO", "DOE^JOHN")  # a number field declared as text
        ds.PixelData = ds.PixelData + b"DOE^JOHN MRN-7777"
        ds.save_as(p)
    p.write_bytes(p.read_bytes().replace(b"9999999999", b"SMITH^JOHN"))
    out = deidentified_dicom(p.read_bytes(), "a.dcm", "salt")
    for secret in (b"SMITH", b"JOHN", b"DOE", b"JD", b"1970", b"7777", *[v.encode() for v in PHI.values()]):
        assert secret not in out, secret
    copy = read(__import__("io").BytesIO(out))
    assert np.array_equal(copy.pixel_array, pix) and copy.ImageType == "ORIGINAL"  # "SMITH JOHN" left out
    assert copy.ContrastBolusAgent == "REMOVED" and float(copy.WindowCenter) == 40.0  # presence and numbers kept
    assert "BodyPartExamined" not in copy and "InstanceNumber" not in copy and "WindowWidth" not in copy


def test_the_type_column_of_a_run_folder_does_not_decide(dicom_run, tmp_path):
    """The run folder is untrusted: DICOM rows relabelled 'png' are still de-identified (told from the bytes)."""
    import shutil

    _, out = dicom_run
    edited = tmp_path / "run"
    shutil.copytree(out, edited)
    text = (edited / "assignments.csv").read_text()
    (edited / "assignments.csv").write_text(text.replace(",dicom,", ",png,"))
    assert ",png," in (edited / "assignments.csv").read_text()
    assert main(["export", str(edited), "--to", str(tmp_path / "exp"), "-q"]) == 0
    for f in (tmp_path / "exp").glob("cluster_*/*.dcm"):
        assert b"SECRET" not in f.read_bytes()


def test_two_exports_give_other_uids_and_one_series_each(dicom_run, tmp_path):
    _, out = dicom_run
    uids = []
    for name in ("a", "b"):
        assert main(["export", str(out), "--to", str(tmp_path / name), "-q"]) == 0
        uids.append({str(read(f).SeriesInstanceUID) for f in (tmp_path / name).glob("cluster_*/*.dcm")})
    assert len(uids[0]) == len(uids[1]) == 1 and uids[0] != uids[1]  # salted: a guessed UID cannot be checked
