"""What metadata may reach an output: the header whitelist and the rules for tables.

Every value brainclust writes as a metadata column passes through here. The
policy (documented in ``docs/units-metadata.md``) is a whitelist for headers and
a conservative filter for tables:

- **DICOM headers and BIDS JSON sidecars**: only the fields of
  :data:`DICOM_FIELDS` / :data:`SIDECAR_FIELDS` are read, each into a fixed
  column with a fixed unit (times in ms, field strength in T, thickness in mm).
  Never names, IDs, UIDs, dates, times of day, institutions, device serials or
  any other free text. The contrast agent becomes ``yes``/``no`` from the
  presence of ``ContrastBolusAgent`` (``ContrastBolusIngredient`` in a
  sidecar), never its text.
- **Free text that the issue asks for** (``SeriesDescription``,
  ``ProtocolName``) is typed at the scanner and can hold a name. It is kept only
  when every word is a known MRI term (:data:`SAFE_WORDS`), holds a digit, or
  has at most two letters, and the whole text is at most 64 characters of
  letters, digits, spaces and ``_-+.()/:,#*``; otherwise it is *withheld*
  (the column is empty) and counted in one log line. Coded strings (``Modality``,
  ``BodyPartExamined``, ``ScanningSequence``: DICOM code strings) must be
  upper-case codes of at most 16 characters; the model and manufacturer at most
  64 characters of letters, digits, spaces and ``_-+./()``.
- **Tables** (``participants.tsv``, ``sessions.tsv``, ``--metadata FILE``): a
  column is dropped, with a warning naming the column (never a value), when its
  name says it may hold PHI (:data:`PHI_COLUMN`, on the name in snake case:
  names, dates, times, IDs of records, contact details, institutions,
  physicians, comments), when any of its values looks like a date or a time of
  day or holds a ``^`` (DICOM person names), or when any value is free text
  (more than 64 characters or more than six words). Ages above 89 are written as
  90 (HIPAA safe harbour: "90 or older").
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

#: Values read as missing in tables and CSV files (BIDS writes ``n/a``; ``none``/``na`` are real values).
MISSING = frozenset({"", "n/a", "nan"})

#: DICOM keyword -> (column, kind). kinds: "code" (DICOM CS), "model", "text" (sanitised free text),
#: "number" (first value as float), "presence" (yes/no), "plane" (from ImageOrientationPatient).
DICOM_FIELDS: dict[str, tuple[str, str]] = {
    "Modality": ("modality", "code"),
    "SeriesDescription": ("series_description", "text"),
    "ProtocolName": ("protocol_name", "text"),
    "Manufacturer": ("manufacturer", "model"),
    "ManufacturerModelName": ("manufacturer_model", "model"),
    "MagneticFieldStrength": ("field_strength_t", "number"),
    "SliceThickness": ("slice_thickness_mm", "number"),
    "RepetitionTime": ("repetition_time_ms", "number"),
    "EchoTime": ("echo_time_ms", "number"),
    "InversionTime": ("inversion_time_ms", "number"),
    "ScanningSequence": ("scanning_sequence", "code"),
    "ContrastBolusAgent": ("contrast_agent", "presence"),
    "BodyPartExamined": ("body_part", "code"),
    "ImageOrientationPatient": ("plane", "plane"),
}

#: BIDS sidecar key -> (column, kind, factor to the column's unit). BIDS times are in seconds.
SIDECAR_FIELDS: dict[str, tuple[str, str, float]] = {
    "Modality": ("modality", "code", 1.0),
    "SeriesDescription": ("series_description", "text", 1.0),
    "ProtocolName": ("protocol_name", "text", 1.0),
    "Manufacturer": ("manufacturer", "model", 1.0),
    "ManufacturersModelName": ("manufacturer_model", "model", 1.0),
    "MagneticFieldStrength": ("field_strength_t", "number", 1.0),
    "SliceThickness": ("slice_thickness_mm", "number", 1.0),
    "RepetitionTime": ("repetition_time_ms", "number", 1000.0),
    "EchoTime": ("echo_time_ms", "number", 1000.0),
    "InversionTime": ("inversion_time_ms", "number", 1000.0),
    "FlipAngle": ("flip_angle_deg", "number", 1.0),
    "MRAcquisitionType": ("mr_acquisition_type", "code", 1.0),
    "ScanningSequence": ("scanning_sequence", "code", 1.0),
    "ContrastBolusIngredient": ("contrast_agent", "presence", 1.0),
    "BodyPartExamined": ("body_part", "code", 1.0),
}

#: Words of MRI protocol names and series descriptions that are kept (lower case).
SAFE_WORDS = frozenset("""
t1 t2 t1w t2w t2star pd pdw flair stir tirm dark fluid mprage mp2rage spgr fspgr bravo tfe tse fse se gre epi
dwi dti adc trace tracew fa swi swan tof mra mrv pc asl pcasl pasl bold fmri rest resting state task localizer
localiser loc scout survey aahscout calibration cal ref reference field fieldmap map mag magnitude phase pha
ax axi axial tra trans transverse sag sagittal cor coronal obl oblique iso isotropic pre post gd gad gado
gadolinium contrast ce fs fatsat fat sat water mpr mip thin thick brain head neuro whole high low res hires
highres lowres fast quick short long routine standard std sense asset grappa ipat cs bh nav moco motion
corrected corr norm filtered orig original derived reformat reform recon dyn dynamic perfusion perf dsc dce
cbf cbv mtt spectro mrs svs csi spine orbit orbits iac pituitary pit sella hippocampus hippo temporal lobe
stroke tumor tumour ms epilepsy protocol sequence series scan image images slice slices mm ch channel coil
body hd echo multi single shot turbo spin gradient inversion recovery weighted diffusion tensor
susceptibility angio angiography venous arterial ssfp fiesta ciss space cube vista blade propeller multivane
mde vibe lava flash fl tfl hemo cine nd dis dis2d dis3d mosaic raw dual volume vol bias biasfield prescan
normalize
""".split())

#: Column names that may hold protected health information (names, dates, IDs, contacts, free text).
PHI_COLUMN = re.compile(
    r"(^|[^a-z])(names?|surname|initials|mrn|ssn|social|address|street|city|zip|postcode|postal|phone|"
    r"telephone|fax|e?mail|birth|birthdate|dob|dates?|datetime|times?tamp|acq_?time|acquisition_?time|"
    r"institution|institution_?name|hospital|clinic|physician|doctor|referring|operator|accession|comments?|"
    r"notes?|remarks?|patient_?id|patientid|medical_?record|record_?number|insurance|ip|url|serial|"
    r"device_?serial_?number|station)($|[^a-z])", re.IGNORECASE)
_AGE_COLUMN = re.compile(r"(^|[^a-z])age($|[^a-z])", re.IGNORECASE)
_DATE_VALUE = re.compile(
    r"^\s*(\d{4}-\d{1,2}-\d{1,2}|\d{4}/\d{1,2}/\d{1,2}|\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}|(19|20)\d{2}(0[1-9]|1[0-2])"
    r"(0[1-9]|[12]\d|3[01])|\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)([ T]\S*)?\s*$")
_TEXT_CHARS = re.compile(r"^[A-Za-z0-9 _\-+.()/:,#*]{1,64}$")
_MODEL_CHARS = re.compile(r"^[A-Za-z0-9 _\-+./()]{1,64}$")
_CODE_CHARS = re.compile(r"^[A-Z0-9 _]{1,16}$")
_WORDS = re.compile(r"[A-Za-z0-9]+")
#: Largest age written as it is (HIPAA safe harbour); older ages are written as this plus one.
MAX_AGE = 89
#: A table value with more characters or words is free text: its column is dropped.
MAX_TEXT_CHARS, MAX_TEXT_WORDS = 64, 6


def safe_text(value: str) -> str | None:
    """A series description / protocol name if it passes the conservative pattern, else ``None`` (withheld)."""
    text = " ".join(str(value).split())
    if not text or not _TEXT_CHARS.match(text):
        return None
    for word in _WORDS.findall(text):
        low = word.lower()
        letters = sum(c.isalpha() for c in low)
        if not (low in SAFE_WORDS or any(c.isdigit() for c in low) or letters <= 2):
            return None
    return text


def safe_code(value) -> str | None:
    """A DICOM code string (one or several values joined by ``/``) if every value is an upper-case code."""
    values = [str(v).strip() for v in (value if isinstance(value, (list, tuple)) else
                                      str(value).split("\\"))]
    values = [v for v in values if v]
    if not values or not all(_CODE_CHARS.match(v) for v in values):
        return None
    return "/".join(values)


def safe_model(value) -> str | None:
    """A manufacturer or model name (letters, digits, spaces, ``_-+./()``, at most 64 characters)."""
    text = " ".join(str(value).split())
    return text if _MODEL_CHARS.match(text) else None


def number(value) -> float | None:
    """The first value of a DICOM number (or a JSON number) as a finite float, else ``None``."""
    try:
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            value = value[0]
        if isinstance(value, bool):
            return None
        out = float(value)
    except (TypeError, ValueError, IndexError):
        return None
    return out if math.isfinite(out) else None


def plane_from_orientation(iop) -> str | None:
    """``axial``, ``coronal``, ``sagittal`` or ``oblique`` from ImageOrientationPatient (6 direction cosines).

    The slice normal is the cross product of the row and column directions; the
    plane is the patient axis it is closest to when that component is at least
    0.8 in absolute value (within about 37 degrees), else ``oblique``.
    """
    try:
        v = [float(x) for x in iop]
    except (TypeError, ValueError):
        return None
    if len(v) != 6 or not all(math.isfinite(x) for x in v):
        return None
    r, c = v[:3], v[3:]
    n = [r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0]]
    norm = math.sqrt(sum(x * x for x in n))
    if norm < 1e-6:
        return None
    a = [abs(x) / norm for x in n]
    axis = max(range(3), key=lambda i: a[i])
    if a[axis] < 0.8:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def convert(value, kind: str, factor: float = 1.0):
    """One whitelisted value to its column's value, or ``None`` when it is missing or withheld."""
    if kind == "presence":
        return "yes" if value not in (None, "", [], b"") else "no"
    if value is None or value == "":
        return None
    if kind == "number":
        x = number(value)
        return None if x is None else round(x * factor, 6)
    if kind == "plane":
        return plane_from_orientation(value)
    if kind == "code":
        return safe_code(value)
    if kind == "model":
        return safe_model(value)
    return safe_text(value)


def sidecar_fields(data: Mapping) -> tuple[dict[str, object], list[str]]:
    """The whitelisted fields of a BIDS JSON sidecar: ``(columns, withheld column names)``."""
    out: dict[str, object] = {}
    withheld: list[str] = []
    for key, (column, kind, factor) in SIDECAR_FIELDS.items():
        if kind == "presence":
            if key in data:
                out[column] = convert(data.get(key), kind)
            continue
        if key not in data:
            continue
        value = convert(data[key], kind, factor)
        if value is None:
            if data[key] not in (None, ""):
                withheld.append(column)
        else:
            out[column] = value
    return out, withheld


def is_missing(value) -> bool:
    """Whether a value counts as missing: ``None``, a float NaN, or text ``""``, ``n/a`` or ``nan`` (any case)."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return str(value).strip().lower() in MISSING


def _snake(name: str) -> str:
    """``PatientName`` / ``patient-name`` / ``patient name`` -> ``Patient_Name`` / ``patient_name``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(name)).replace("-", "_").replace(" ", "_")


def phi_reason(name: str, values: Sequence) -> str | None:
    """Why a table column must be dropped (a short reason that names no value), or ``None`` to keep it."""
    if PHI_COLUMN.search(_snake(name)):
        return "its name says it may hold names, dates, identifiers, contact details or comments"
    for v in values:
        if is_missing(v):
            continue
        text = str(v)
        if _DATE_VALUE.match(text):
            return "it holds dates or times of day"
        if "^" in text:
            return "it holds person names (DICOM name format)"
        if len(text) > MAX_TEXT_CHARS or len(text.split()) > MAX_TEXT_WORDS:
            return "it holds free text"
    return None


def clean_column(name: str, values: list) -> list:
    """The values written for a kept table column: ages above :data:`MAX_AGE` become ``MAX_AGE + 1``."""
    if not _AGE_COLUMN.search(_snake(name)):
        return values
    out = []
    for v in values:
        x = None if is_missing(v) else number(v)
        out.append(str(MAX_AGE + 1) if x is not None and x > MAX_AGE else v)
    return out
