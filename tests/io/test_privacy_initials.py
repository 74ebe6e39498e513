"""Initials, names made of MRI abbreviations, phone numbers written with dots and ages in parts (the gaps the
security46 fixes left): each is withheld, dropped or capped, and the realistic header text beside them is kept."""

from __future__ import annotations

import pytest

from brainclust.io import phitext, privacy

#: Series descriptions, protocol names and study descriptions as Siemens, GE and Philips scanners and sites write
#: them, with sequence names, planes, field strengths, voxel sizes, contrast marks and phase directions: all kept.
KEPT = """T1|T2|FLAIR|T2*|SWI|AXIAL|SAGITTAL|CORONAL|3.0 T|1.5T|AX T2 3.0 T|T1 1.5 T|AX T1 POST GD|Ax T1 Post Gd|
Ax Gd|t1_mprage_sag_p2_iso|t2_tse_tra_p2|t2_tirm_tra_dark-fluid|ep2d_diff_mddw_20_p2|AAHead_Scout_64ch-head-coil|
t2_swi_tra_p2_1.5mm|t1_se_tra_fs_C+|Ax T2 FLAIR|Ax T1 SE|Ax T1 SE +C|Ax T1 Se +C|Sag T1 FLAIR|Ax T2* GRE|Cor T2 Fs|
Sag 3D T1 BRAVO +C|3-Plane Loc|PU:Ax T2 FLAIR|3D ASL (non-contrast)|T1W_3D_TFE|sT2W_FLAIR|WIP T2W_TSE SENSE|
sT1W_3D_TFE_Gd|DelRec - AX T1|MPRAGE 0.9 mm iso|t1 1.25-1.25-1.25|T1 0.9-0.9-0.9|DTI 2.0x2.0x2.0|T1 A|T2 SAG A|
DWI A-P|DWI P-A|T2 R-L|T1 A P|rfMRI_REST_AP|AX T1 +C|Ax T1 FS +C|SAG T1 C+|AX T1 W/O|AX T1 W/O C|AX T1 W/ C|
MRI BRAIN W/WO CONTRAST|MR BRAIN W/O CONTRAST|MRI HEAD W WO CONTRAST|DWI b 2000|DWI b0 b1000|DWI b 0 1000|T1 Se|
Sag T2 Fs|t1.w.tse|b.1000 DWI""".replace("\n", "").split("|")


@pytest.mark.parametrize("text", KEPT)
def test_technical_and_clinical_text_is_kept(text):
    assert privacy.safe_text(text) == text


@pytest.mark.parametrize("text", ["J. S.", "J.S.", "J S", "J.-P. T1", "T1 J. S.", "AX T1 J S", "T1 AX J.",
                                  "T1 MPRAGE J.D.", "FLAIR J D", "t1_mprage_J_D", "T2-J-D", "Se Ti", "T1 Se Ti",
                                  "Se Ti AX T2", "FLAIR Si Pa", "AX T2 J Se", "Se-Ti T1"])
def test_initials_and_names_made_of_abbreviations_are_withheld(text):
    """A letter with its dot is an initial; letters or title-case two-letter words side by side are read together,
    which gives no MRI term (``js``, ``seti``), so a name made of allowed abbreviations no longer passes."""
    assert privacy.safe_text(text) is None
    assert phitext.name_parts(" ".join(text.split()))


@pytest.mark.parametrize("text", ["555.123.4567", "+1.555.123.4567", "555 123 4567", "T1 555.123.4567",
                                  "AX T2 +1 555 123 4567", "T1 (555) 123-4567", "T2 06.12.34.56.78",
                                  "T1 192.168.1.10", "T1 555. 123. 4567", "FLAIR 555.1234.567"])
def test_phone_numbers_written_with_dots_or_spaces_are_withheld(text):
    assert privacy.safe_text(text) is None


def test_the_price_of_the_initials_rule():
    """Two title-case abbreviations side by side read as a name's syllables (``Pd Fs``): withheld; the same in
    capitals is kept, and so is one letter alone (it cannot be told from a plane, ``b`` or ``C``)."""
    assert privacy.safe_text("Ax Pd Fs") is None
    assert privacy.safe_text("AX PD FS") == "AX PD FS" and privacy.safe_text("SE TI") == "SE TI"
    assert privacy.safe_text("T1 J") == "T1 J"


@pytest.mark.parametrize("vendor", ["SIEMENS", "GE MEDICAL SYSTEMS", "Philips Medical Systems", "Philips Healthcare",
                                    "TOSHIBA_MEC", "Canon Medical Systems", "Siemens Healthineers",
                                    "Hitachi Medical Corporation"])
def test_manufacturers_are_kept(vendor):
    assert privacy.convert(vendor, "vendor") == vendor


@pytest.mark.parametrize("model", ["Prisma_fit", "SIGNA Premier", "Ingenia", "Skyra", "DISCOVERY MR750w",
                                   "Achieva dStream", "Signa HDxt 3.0T", "MAGNETOM Vida"])
def test_scanner_models_are_kept(model):
    assert privacy.convert(model, "model") == model


def test_a_sidecar_withholds_the_initials_and_keeps_the_rest():
    cols, held = privacy.sidecar_fields({"SeriesDescription": "T1 J. S.", "ProtocolName": "AX T1 +C",
                                         "Manufacturer": "GE MEDICAL SYSTEMS", "MagneticFieldStrength": 3,
                                         "ManufacturersModelName": "SIGNA Premier"})
    assert held == ["series_description"]
    assert cols == {"protocol_name": "AX T1 +C", "manufacturer": "GE MEDICAL SYSTEMS",
                    "manufacturer_model": "SIGNA Premier", "field_strength_t": 3.0}


@pytest.mark.parametrize("value", ["555.123.4567", "+1.555.123.4567", "555 123 4567", "06.12.34.56.78",
                                   "192.168.1.10", "(617)5550123", "555. 123. 4567",
                                   # whole phone numbers without dots, round or not (a review found them kept)
                                   "+15551234567", "+18002003000", "800 200 3000", "(800) 200-3000"])
def test_table_columns_holding_phone_numbers_with_dots_are_dropped(value):
    assert privacy.phi_reason("info", ["glioma", value]) == "it holds phone or social security numbers"


def test_table_values_with_dots_that_are_measurements_are_kept():
    for value in ("1.5", "1234567.5", "0.625", "12.5", "-1000", "1234567", "2.5.1", "1.25-1.25-1.25", "10-20",
                  "3.0 T", "1 234"):
        assert privacy.phi_reason("info", [value]) is None, value


def test_ages_in_parts_and_with_a_spaced_unit_are_capped():
    assert privacy.clean_column("age", ["95y 3m", "95 Y 3 M", "95y3m", "95 years 3 months", "95 years, 3 months",
                                        "95 yrs 2 mos", "95 y", "95 y.", "89y 11m", "1y 6m", "40"]) == \
        ["90", "90", "90", "90", "90", "90", "90", "90", "89y 11m", "1y 6m", "40"]
    assert privacy.clean_column("age", ["1080 days", "33000 days", "1100m 5d", "1079M 31D", "1079M 30D"]) == \
        ["1080 days", "32873 days", "1080m", "1080M", "1079M 30D"]
    assert privacy.clean_column("age_months", ["95y 3m", "1200", "600"]) == ["90", "1080", "600"]
    for value in ("95y 3m", "95 y", "1080 days", "89y 11m"):
        assert privacy.phi_reason("age", ["40", value]) is None, value


@pytest.mark.parametrize("value", ["95 lat 3 mies", "95 3m", "95+", "91-95", "95-year-old", ">95", "~95"])
def test_an_age_the_rule_cannot_cap_drops_its_column(value):
    assert "unit" in privacy.phi_reason("age", ["40", value])


def test_ages_the_rule_cannot_read_but_under_90_are_kept():
    for value in ("90+", "40-45", "<1", "unknown", "adult", "20s", "1 year and 3 months"):
        assert privacy.phi_reason("age", ["40", value]) is None, value
    assert privacy.phi_reason("age_days", ["100-200"]) is None  # days: under a year
    assert privacy.phi_reason("age", ["sub-01234"]) is None  # not an age: it does not begin with a number
