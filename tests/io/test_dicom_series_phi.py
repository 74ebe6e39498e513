"""DICOM: series grouping, the header whitelist, and no protected health information in any record field."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from brainclust.features.units import group, unit_columns, unit_ids
from brainclust.io import privacy
from brainclust.io.formats import dicom
from brainclust.io.metadata import record_columns
from brainclust.io.scan import scan

pytest.importorskip("pydicom")

ROOT = "1.2.826.0.1.3680043.8.498."
#: Patient data a scanner may write; none of it may reach a record.
SECRETS = {
    "PatientName": "Smithers^Waylon", "PatientID": "MRN-4471-SECRET", "PatientBirthDate": "19510317",
    "PatientAddress": "742 Evergreen Terrace", "StudyDate": "20210805", "SeriesDate": "20210805",
    "AcquisitionDateTime": "20210805101112", "StudyTime": "101112", "InstitutionName": "Springfield General",
    "InstitutionAddress": "1 Hospital Road", "ReferringPhysicianName": "Hibbert^Julius",
    "OperatorsName": "Nahasapeemapetilon^Apu", "ImageComments": "patient anxious, call wife Marge on 555-0123",
    "StudyDescription": "MRI HEAD for Waylon", "DeviceSerialNumber": "SN-998877", "StationName": "MRISTATION7",
    "AccessionNumber": "ACC-314159", "OtherPatientIDs": "OPID-2718",
}


def write(path: Path, series: str | None, *, frames: int = 1, phi: bool = True, **attrs) -> Path:
    from pydicom import config
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UID

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.4")
    meta.MediaStorageSOPInstanceUID = UID(ROOT + str(abs(hash(path.name)) % 10 ** 8))
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = UID(ROOT + "77")
    if series is not None:
        ds.SeriesInstanceUID = UID(ROOT + series)
    ds.Modality = "MR"
    pix = np.random.default_rng(len(path.name)).integers(0, 4000, (frames, 12, 10), dtype=np.uint16)
    ds.Rows, ds.Columns = 12, 10
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    ds.PixelData = (pix if frames > 1 else pix[0]).astype("<u2").tobytes()
    with warnings.catch_warnings(), config.disable_value_validation():
        warnings.simplefilter("ignore")
        for k, v in ({**SECRETS, **attrs} if phi else attrs).items():
            setattr(ds, k, v)
    ds.preamble = b"\0" * 128
    ds.save_as(path, enforce_file_format=True)
    return path


def test_files_are_grouped_into_series_by_uid_and_named_by_index(tmp_path):
    d = tmp_path / "data"
    for i in range(3):
        write(d / "pat" / f"a{i}.dcm", "100", SeriesDescription="AX T2 FLAIR")
    for i in range(2):
        write(d / "pat" / f"b{i}.dcm", "200")
    write(d / "pat" / "c.dcm", "300", frames=3)
    write(d / "other" / "x.dcm", "100")  # the same series as pat/a*, in another folder
    write(d / "pat" / "z.dcm", None)     # no SeriesInstanceUID: a series of its own
    found = scan(d)
    sid = {r.path: r.meta["series_id"] for r in found.records}
    assert sid["pat/a0.dcm"] == sid["pat/a2.dcm"] == sid["other/x.dcm"] == "other#series=1"
    assert sid["pat/b0.dcm"] == sid["pat/b1.dcm"] == "pat#series=1"
    assert {sid[f"pat/c.dcm#frame={i}"] for i in (1, 2, 3)} == {"pat#series=2"}
    assert sid["pat/z.dcm"] == "pat/z.dcm"
    # a series is a volume: one unit per series
    idx = group(unit_ids(found.records, "volume"))
    assert sorted(zip(idx.ids, idx.counts.tolist())) == [("other#series=1", 4), ("pat#series=1", 2),
                                                        ("pat#series=2", 3), ("pat/z.dcm", 1)]
    assert unit_ids(found.records, "series") == unit_ids(found.records, "volume")
    assert set(unit_ids(found.records, "subject")) == {"pat", "other"}
    uc = unit_columns(record_columns(found.records), idx)
    assert uc["n_slices"] == [4, 2, 3, 1] and "series_description" in uc


def test_whitelisted_fields_are_converted_and_sanitised(tmp_path):
    write(tmp_path / "s1.dcm", "1", SeriesDescription="Waylon Smithers brain", ProtocolName="T1 MPRAGE SAG",
          Manufacturer="SIEMENS", ManufacturerModelName="Avanto", MagneticFieldStrength="1.5",
          SliceThickness="5", RepetitionTime="4000", EchoTime="90", InversionTime="2500",
          ScanningSequence=["SE", "IR"], BodyPartExamined="BRAIN", ContrastBolusAgent="Gadavist 10 ml Dr Jones",
          ImageOrientationPatient=[0, 1, 0, 0, 0, -1])
    write(tmp_path / "s2.dcm", "2", ImageOrientationPatient=[1, 0, 0, 0, 1, 0], BodyPartExamined="brain; x")
    found = scan(tmp_path)
    m1 = next(r.meta for r in found.records if r.path == "s1.dcm")
    m2 = next(r.meta for r in found.records if r.path == "s2.dcm")
    assert m1["modality"] == "MR" and m1["protocol_name"] == "T1 MPRAGE SAG"
    assert "series_description" not in m1  # a name in it: withheld
    assert (m1["manufacturer"], m1["manufacturer_model"]) == ("SIEMENS", "Avanto")
    assert (m1["field_strength_t"], m1["slice_thickness_mm"], m1["repetition_time_ms"], m1["echo_time_ms"],
            m1["inversion_time_ms"]) == (1.5, 5.0, 4000.0, 90.0, 2500.0)
    assert m1["scanning_sequence"] == "SE/IR" and m1["body_part"] == "BRAIN"
    assert m1["contrast_agent"] == "yes" and m2["contrast_agent"] == "no"
    assert (m1["plane"], m2["plane"]) == ("sagittal", "axial")
    assert "body_part" not in m2  # not a DICOM code string
    assert "series_description" in found.summary and "withheld" in found.summary


def test_no_phi_reaches_any_record_field(tmp_path, caplog):
    caplog.set_level("DEBUG")
    d = tmp_path / "data"
    for i in range(2):
        write(d / "study" / f"im{i}.dcm", "555", SeriesDescription="Smithers^Waylon T1",
              ProtocolName="Dr Hibbert protocol", ContrastBolusAgent="given by Dr Hibbert")
    (d / "study" / "im0.json").write_text(json.dumps({"PatientName": "Smithers^Waylon",
                                                      "InstitutionName": "Springfield General",
                                                      "AcquisitionDateTime": "2021-08-05T10:11:12"}))
    found = scan(d)
    assert len(found.records) == 2
    cols = record_columns(found.records)
    idx = group(unit_ids(found.records, "subject"))
    texts = [repr(found.records), json.dumps(cols, default=str), repr(unit_columns(cols, idx)), repr(idx.ids),
             found.summary, caplog.text, repr(found.skipped)]
    uids = [ROOT + "555", ROOT + "77"]
    for secret in list(SECRETS.values()) + uids + ["Hibbert", "Smithers", "Waylon", "Springfield", "2021"]:
        for t in texts:
            assert secret not in t, secret
    meta = found.records[0].meta
    assert set(meta) <= {"folder", "aspect", "series_id", *[c for c, _ in privacy.DICOM_FIELDS.values()]}
    assert meta["contrast_agent"] == "yes"


def test_header_text_in_a_uid_never_reaches_a_skip_reason(tmp_path, caplog):
    """A crafted transfer syntax or SOP class "UID" holding a name is not quoted in the reason a file is skipped."""
    import pydicom
    from pydicom import config
    from pydicom.uid import UID

    d = tmp_path / "data"
    with warnings.catch_warnings(), config.disable_value_validation():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(write(d / "a.dcm", "1", phi=False))
        ds.file_meta.TransferSyntaxUID = UID("1.2.3.DOE^JOHN.44")
        ds.save_as(d / "a.dcm", implicit_vr=False, little_endian=True)
        ds = pydicom.dcmread(write(d / "b.dcm", "1", phi=False))
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UID("9.9.SMITH^ANN.1")
        del ds.PixelData  # an object without pixels is named by its SOP class
        ds.save_as(d / "b.dcm")
    caplog.set_level("DEBUG")
    caplog.clear()
    found = scan(d)
    text = repr(found.skipped) + found.summary + caplog.text
    assert {"a.dcm", "b.dcm"} <= {s["path"] for s in found.skipped} and "not a valid UID" in text
    for secret in ("DOE", "JOHN", "SMITH", "ANN"):
        assert secret not in text, secret
    ds = pydicom.dcmread(d / "a.dcm")
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.99999.19700101")  # digits and dots may still be a birth date
    ds.save_as(d / "a.dcm", implicit_vr=False, little_endian=True)
    caplog.clear()
    text = repr(scan(d).skipped) + caplog.text
    assert "19700101" not in text and "an unregistered UID" in text


def test_sanitiser_rules():
    assert privacy.safe_text("AX T2 FLAIR 5mm") == "AX T2 FLAIR 5mm"
    assert privacy.safe_text("t1_mprage_sag_p2_iso") == "t1_mprage_sag_p2_iso"
    assert privacy.safe_text("John T1") is None and privacy.safe_text("DOE^JOHN") is None
    assert privacy.safe_text("x" * 70) is None
    assert privacy.safe_code("ORIGINAL\\PRIMARY") == "ORIGINAL/PRIMARY" and privacy.safe_code("Brain") is None
    assert privacy.plane_from_orientation([1, 0, 0, 0, 0.7071, 0.7071]) == "oblique"
    assert privacy.plane_from_orientation([1, 0, 0, 0, 0, -1]) == "coronal"
    assert privacy.plane_from_orientation("junk") is None
    fields, withheld = dicom.header_fields(_ds(Modality="MR", BodyPartExamined="head; neck",
                                               SeriesDescription="Mr Burns"))
    assert fields == {"modality": "MR", "contrast_agent": "no"}
    assert set(withheld) == {"body_part", "series_description"}
    cols, held = privacy.sidecar_fields({"EchoTime": "abc", "RepetitionTime": 2, "InstitutionName": "X",
                                         "ContrastBolusIngredient": ""})
    assert cols == {"repetition_time_ms": 2000.0, "contrast_agent": "no"} and held == ["echo_time_ms"]


@pytest.mark.parametrize("text", ["COR T2 19700101", "T1 SAG MRN12345", "T1 PID12345", "T1 AX 03/04/1970",
                                  "T1 AX 1970-01-01", "T1 AX 03.04.70", "T1 12:30", "T1 #12345", "T1 DOE2",
                                  "T2 01 02 70", "T1 AB 12 34 56 78", "T1 3.4.1970", "T1_12_03_2021",
                                  "T1 123-45-6789", "AX T2 617-555-0123", "T1 1234-5678"])
def test_descriptions_with_dates_times_or_identifiers_are_withheld(text):
    """A digit once made any word safe: dates, times of day and record numbers reached every output."""
    assert privacy.safe_text(text) is None


@pytest.mark.parametrize("text", ["AX T2 FLAIR 5mm", "DTI 64 dirs b1000", "t2_tse_tra_512", "MPRAGE 1.0mm iso",
                                  "ep2d_diff_mddw_30", "T1 3D 1mm", "ep2d_bold_moco", "DWI_2000", "Ax DWI b 2000",
                                  "DWI 2000 3000", "TR 2000", "SE 2000/80", "ME 2.5/5.0/7.5", "AX T2 5-1.5",
                                  "t1 1.0-1.0-1.0", "PD/T2 2200/20/80", "t2_space_dark-fluid_sag_p2_ns-t2prep",
                                  "T1 3D MP2RAGE", "t2star", "MoCoSeries", "rfMRI_REST_AP", "T2w_SPC", "BOLD run 2"])
def test_protocol_names_with_numbers_are_kept(text):
    assert privacy.safe_text(text) == text


def test_coded_fields_and_the_manufacturer_hold_only_known_terms():
    assert privacy.convert("DOE JANE", "code:body_part") is None and privacy.convert("HEAD", "code:body_part") == "HEAD"
    assert privacy.convert("DOE", "code:modality") is None and privacy.convert("MR", "code:modality") == "MR"
    assert privacy.convert(["SE", "IR"], "code:sequence") == "SE/IR" and privacy.convert("JD", "code:sequence") is None
    assert privacy.convert("Jane Doe Imaging", "vendor") is None
    assert privacy.convert("SIEMENS JANE DOE", "vendor") is None
    assert privacy.convert("GE MEDICAL SYSTEMS", "vendor") == "GE MEDICAL SYSTEMS"
    assert privacy.convert("TOSHIBA_MEC", "vendor") == "TOSHIBA_MEC"
    assert privacy.convert("GR_IR", "code:sequence") == "GR/IR"  # a dcm2niix sidecar joins values with "_"
    assert privacy.sidecar_fields({"ScanningSequence": "GR_IR"}) == ({"scanning_sequence": "GR/IR"}, [])
    fields, withheld = dicom.header_fields(_ds(Modality="MR", BodyPartExamined="DOE JANE", Manufacturer="Jane Doe",
                                               SeriesDescription="T1 AX 1970-01-01"))
    assert fields == {"modality": "MR", "contrast_agent": "no"}
    assert set(withheld) == {"body_part", "manufacturer", "series_description"}


@pytest.mark.parametrize("model", ["Avanto", "SIGNA Premier", "Achieva dStream", "DISCOVERY MR750", "Prisma_fit",
                                   "Biograph_mMR", "Signa HDxt 3.0T", "Optima MR450w", "uMR 780", "Ingenia CX",
                                   "MAGNETOM Connectom", "SIGNA PET/MR", "Brivo MR355", "Panorama HFO", "SIGNA UHP",
                                   "Investigational_Device_7T", "Vantage Centurian"])
def test_scanner_model_names_are_kept(model):
    assert privacy.convert(model, "model") == model


@pytest.mark.parametrize("model", ["DOE JANE 1970", "Jane", "Skyra 1970-01-01", "Avanto 12345678", "Smithers"])
def test_names_dates_and_numbers_typed_as_a_model_are_withheld(model):
    assert privacy.convert(model, "model") is None
    assert privacy.sidecar_fields({"ManufacturersModelName": model})[1] == ["manufacturer_model"]


@pytest.mark.parametrize("name", ["PATIENTNAME", "patientname", "accessionnumber", "fullname", "MRNumber", "firstname",
                                  "lastname", "birthday", "dateofbirth", "studydate", "examdate", "phonenumber",
                                  "emailaddress", "zipcode", "acc_no", "StudyInstanceUID", "patient", "pid", "referrer",
                                  "radiologist", "StudyDescr", "filename", "PatientName", "scan_date", "MRN", "dob"])
def test_table_columns_named_for_phi_are_dropped_however_written(name):
    assert privacy.phi_reason(name, ["x"]) is not None


@pytest.mark.parametrize("name", ["participant_id", "age", "sex", "group", "handedness", "diagnosis", "grade", "site",
                                  "candidate_group", "patient_age", "validated", "echo_time", "volume_mm3", "subject",
                                  "session", "lipid", "accuracy", "time_point", "updated_label", "thickness_norm",
                                  "ThicknessNorm", "class_number", "ClassNum", "sessnum", "mass_norm",
                                  "preferred_hand", "sedated", "outdated", "mrna_level"])
def test_ordinary_table_columns_are_kept(name):
    assert privacy.phi_reason(name, ["a", "b", "12", "sub-01234"]) is None


@pytest.mark.parametrize("name", ["Nom", "Apellido", "Cognome", "geburtsdatum", "fecha_nacimiento", "Telefon", "Handy",
                                  "courriel", "Kontakt", "PatID", "pat_id", "Fallnummer", "hosp_no", "NHS_number",
                                  "exam_dt", "StudyTime", "Untersuchungsdatum", "yob", "PLZ", "Anschrift", "Arzt",
                                  "Befund"])
def test_phi_columns_named_in_other_languages_or_short_forms_are_dropped(name):
    assert privacy.phi_reason(name, ["x"]) is not None


@pytest.mark.parametrize("value", ["jane.doe@example.com", "617-555-0123", "(617) 555-0123", "+49 30 1234567",
                                   "123-45-6789", "01FEB1970", "01-Feb-1970", "1 Feb 1970", "Feb 1, 1970", "Mar 2021",
                                   "1970.02.01", "1970-02", "02/1970"])
def test_columns_holding_dates_mails_or_phone_numbers_are_dropped(value):
    assert privacy.phi_reason("info", ["glioma", value]) is not None


def test_ordinary_values_and_research_names_are_kept():
    for value in ("1.5", "10-20", "2013", "Maryland", "May", "1p19q", "IDH-mutant", "grade 4", "1234567", "-1000"):
        assert privacy.phi_reason("info", [value]) is None, value
    for name in ("sequence_name", "series_name", "timepoint_name", "cell_count", "image_id"):
        assert privacy.phi_reason(name, ["a", "I123456"] if name == "image_id" else ["a"]) is None, name


def test_ages_over_89_are_capped_in_years_only():
    assert privacy.clean_column("age", ["95", "89", "n/a", "095Y", "92 years", "92,5", "88.5"]) == \
        ["90", "89", "n/a", "90", "90", "90", "88.5"]
    assert privacy.clean_column("PatientAge", ["095Y"]) == ["90"] and privacy.clean_column("Alter", ["96"]) == ["90"]
    assert privacy.clean_column("age_months", ["600"]) == ["600"]  # 600 months is a 50-year-old, not a 600-year-old
    assert privacy.clean_column("age_days", ["20000"]) == ["20000"]


def test_table_columns_holding_identifiers_are_dropped():
    assert "identifiers" in privacy.phi_reason("code", ["ACC98765", "x"])
    assert "identifiers" in privacy.phi_reason("code", ["PID-12345"])
    assert privacy.phi_reason("volume", ["1234567", "7654321"]) is None
    assert privacy.phi_reason("subject", ["OAS30001", "OAS30002"]) is None  # research pseudonyms in a key column
    assert privacy.phi_reason("participant_id", ["sub01234"]) is None


def _ds(**attrs):
    from pydicom import config
    from pydicom.dataset import Dataset

    ds = Dataset()
    with warnings.catch_warnings(), config.disable_value_validation():
        warnings.simplefilter("ignore")  # odd values on purpose
        for k, v in attrs.items():
            setattr(ds, k, v)
    return ds


def test_a_metadata_table_without_its_header_line_is_refused_without_showing_it(tmp_path):
    """Its first row became the column names: a name and a record number reached the outputs and the error."""
    from brainclust.errors import InputError
    from brainclust.io.metadata import read_table

    table = tmp_path / "t.csv"
    table.write_text("pat0,DUPONT JEAN,1234567,AD\npat1,ROE RICHARD,7654321,CN\n", encoding="utf-8")
    with pytest.raises(InputError, match="first line reads as data") as exc:
        read_table(table)
    assert "DUPONT" not in str(exc.value) and "1234567" not in str(exc.value)
    assert privacy.value_like("1970-01-01") and privacy.value_like("1234567") and not privacy.value_like("Tumor Grade")
