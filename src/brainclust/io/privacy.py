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
  ``ProtocolName``) is typed at the scanner and can hold a name, a date or a
  record number. It is kept only when every run of two letters or more in it is a
  known MRI term, every run of digits at most four, no date, time of day, seven
  digits in groups, initial or name in parts (``J. S.``, ``Se Ti``) appear, and
  the whole text is at most 64 characters of letters, digits, spaces and
  ``_-+.()/:,#*`` (:func:`brainclust.io.phitext.safe_text`, whose rules live in
  :mod:`brainclust.io.phitext`); otherwise it is *withheld* (the column is empty)
  and counted in one log line.
  Coded strings (``Modality``, ``BodyPartExamined``, ``ScanningSequence``,
  ``MRAcquisitionType``) must be one of their field's defined terms
  (:data:`CODE_TERMS`); the manufacturer must begin with a known vendor
  (:data:`VENDORS`); the model name at most 64 characters of letters, digits,
  spaces and ``_-+./()``.
- **Tables** (``participants.tsv``, ``sessions.tsv``, ``--metadata FILE``): a
  column is dropped, with a warning naming the column (never a value), when its
  name says it may hold PHI (the rules of :mod:`brainclust.io.phinames`:
  names, dates, times, IDs of records, contact details, institutions,
  physicians, comments), when any
  of its values looks like a date or a time of day, holds a ``^`` (DICOM person
  names) or is an identifier (``ACC98765``), or when any value is free text
  (more than 64 characters or more than six words), or when its name is not in
  Latin letters. Ages of 90 years or more, once converted from the unit the
  column's name or the value gives (``age_days``, ``1140M``, ``95y 3m``), are
  written as 90 years (HIPAA safe harbour: "90 or older"); an age column with a
  unit or a form it cannot read and an age that may be over 90 (``95 lat``,
  ``95+``) is dropped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from brainclust.io.phinames import AGE_UNITS, age_unit, fold, phi_name, readable, research_key
from brainclust.io.phitext import MAX_TEXT_DIGITS, WORD, digit_groups, has_date, safe_text

#: Values read as missing in tables and CSV files (BIDS writes ``n/a``; ``none``/``na`` are real values).
MISSING = frozenset({"", "n/a", "nan"})

#: DICOM keyword -> (column, kind). kinds: "code" (DICOM CS), "model", "text" (sanitised free text),
#: "number" (first value as float), "presence" (yes/no), "plane" (from ImageOrientationPatient).
DICOM_FIELDS: dict[str, tuple[str, str]] = {
    "Modality": ("modality", "code:modality"),
    "SeriesDescription": ("series_description", "text"),
    "ProtocolName": ("protocol_name", "text"),
    "Manufacturer": ("manufacturer", "vendor"),
    "ManufacturerModelName": ("manufacturer_model", "model"),
    "MagneticFieldStrength": ("field_strength_t", "number"),
    "SliceThickness": ("slice_thickness_mm", "number"),
    "RepetitionTime": ("repetition_time_ms", "number"),
    "EchoTime": ("echo_time_ms", "number"),
    "InversionTime": ("inversion_time_ms", "number"),
    "ScanningSequence": ("scanning_sequence", "code:sequence"),
    "ContrastBolusAgent": ("contrast_agent", "presence"),
    "BodyPartExamined": ("body_part", "code:body_part"),
    "ImageOrientationPatient": ("plane", "plane"),
}

#: BIDS sidecar key -> (column, kind, factor to the column's unit). BIDS times are in seconds.
SIDECAR_FIELDS: dict[str, tuple[str, str, float]] = {
    "Modality": ("modality", "code:modality", 1.0),
    "SeriesDescription": ("series_description", "text", 1.0),
    "ProtocolName": ("protocol_name", "text", 1.0),
    "Manufacturer": ("manufacturer", "vendor", 1.0),
    "ManufacturersModelName": ("manufacturer_model", "model", 1.0),
    "MagneticFieldStrength": ("field_strength_t", "number", 1.0),
    "SliceThickness": ("slice_thickness_mm", "number", 1.0),
    "RepetitionTime": ("repetition_time_ms", "number", 1000.0),
    "EchoTime": ("echo_time_ms", "number", 1000.0),
    "InversionTime": ("inversion_time_ms", "number", 1000.0),
    "FlipAngle": ("flip_angle_deg", "number", 1.0),
    "MRAcquisitionType": ("mr_acquisition_type", "code:acquisition", 1.0),
    "ScanningSequence": ("scanning_sequence", "code:sequence", 1.0),
    "ContrastBolusIngredient": ("contrast_agent", "presence", 1.0),
    "BodyPartExamined": ("body_part", "code:body_part", 1.0),
}

#: The DICOM defined terms a coded field may hold (PS3.3 C.7.3.1 Modality, C.8.3.1 Scanning Sequence,
#: PS3.16 Annex L Body Part Examined, as far as a brain, head and neck or body MRI names them); any other
#: value (a name typed into the field) is withheld.
CODE_TERMS: dict[str, frozenset] = {
    "modality": frozenset("""AR ASMT AU BDUS BI BMD CR CT CTPROTOCOL DG DOC DX ECG EPS ES FID GM HC HD IO IOL IVOCT
        IVUS KER KO LEN LS MG MR M3D NM OAM OCT OP OPM OPT OPTBSV OPTENF OPV OSS OT PLAN PR PT PX REG RESP RF RG
        RTDOSE RTIMAGE RTINTENT RTPLAN RTRAD RTRECORD RTSEGANN RTSTRUCT RWV SEG SM SMR SR SRF STAIN TEXTUREMAP TG
        US VA XA XC""".split()),
    "sequence": frozenset("SE IR GR EP RM".split()),
    "acquisition": frozenset("2D 3D".split()),
    "body_part": frozenset("""HEAD BRAIN SKULL HEADNECK NECK FACE ORBIT EYE EAR IAC SELLA PITUITARY JAW TMJ SINUS NOSE
        MOUTH LARYNX THYROID CSPINE TSPINE LSPINE SSPINE COCCYX SPINE WHOLESPINE CTSPINE TLSPINE LSSPINE
        CIRCLEOFWILLIS CAROTID BRAINSTEM CHEST THORAX BREAST HEART ABDOMEN PELVIS ABDOMENPELVIS CHESTABDOMEN
        CHESTABDPELVIS WHOLEBODY EXTREMITY SHOULDER ELBOW WRIST HAND HIP KNEE ANKLE FOOT LEG ARM""".split()),
}
#: Manufacturers of MRI scanners: a ``Manufacturer`` value is kept when its first word is one of these
#: (lower case; ``GE MEDICAL SYSTEMS``, ``Philips Healthcare``...), else withheld.
VENDORS = frozenset("""siemens ge philips toshiba canon hitachi fonar esaote uih united bruker neusoft fujifilm agilent
    varian hyperfine aspect paramed imris synaptive mindray anke xingaoyi marconi picker elscint""".split())
#: The words a manufacturer may hold after its vendor (``GE MEDICAL SYSTEMS``, ``TOSHIBA_MEC``); any other word
#: (a name typed there) withholds it.
VENDOR_WORDS = VENDORS | frozenset("""medical systems system healthcare health care corporation corp inc ltd
    gmbh ag co company mec mr mri imaging technologies technology international solutions electric electronics
    america usa europe japan shanghai beijing healthineers biospin s p a spa""".split())

#: Words of MRI scanner model names (lower case; ``Avanto``, ``SIGNA Premier``, ``Achieva dStream``, ``MR750w``):
#: a ``ManufacturerModelName`` is kept when each run of letters is one of these, a vendor word or at most two
#: letters, and each run of digits at most four digits long; anything else (a name typed there) withholds it.
MODEL_WORDS = frozenset("""magnetom avanto skyra prisma trio triotim tim verio aera vida sola espree symphony sonata
    harmony essenza allegra biograph mmr amira altea lumina spectra concerto impact vision expert open fit dot cima
    terra free max viato signa discovery optima genesis excite hdxt hdx hde premier architect pioneer creator
    explorer artist voyager horizon echospeed twinspeed infinity sigma hero ultra performance achieva ingenia
    intera gyroscan panorama multiva elition evolution ambition prodiva dstream release ingenuity elite blueseal
    omega vantage titan galan orian elan atlas excelart flexart ogenio hyper echelon oval airis aperto lucent
    altaire smart eterna scan swoop umr connectom sempra investigational device pet brivo hdi hfo uhp centurian
    biospec pharmascan clinscan avance neo plus nova quasar pulsar gyro edge""".split())
#: A value that is an identifier: a few letters, then five digits or more (``ACC98765``, ``PID-12345``), not a
#: BIDS label (``sub-01234``).
_ID_VALUE = re.compile(r"^(?!sub-|ses-)[A-Za-z]{1,5}[-_#: ]?\d{5,}$", re.IGNORECASE)
#: One part of an age: a number, then maybe its unit (``95``, ``095Y``, ``92 years``, ``92,5``, ``1140M``,
#: ``35000 days``, ``3m``).
_AGE_PART = re.compile(r"(\d{1,7}(?:[.,]\d+)?)(\s*)([^\W\d_]*)\.?")
#: An age: one part, or parts that each name their unit after the first (``95y 3m``, ``95 years, 3 months``,
#: ``95y3m``).
_AGE_TEXT = re.compile(rf"^\s*{_AGE_PART.pattern}(?:[\s,]*\d{{1,7}}(?:[.,]\d+)?\s*[^\W\d_]+\.?)*\s*$")
#: The numbers of an age the rule cannot read (``95+``, ``91-95``, ``95-year-old``, ``>95``).
_AGE_NUMBERS = re.compile(r"\d+(?:[.,]\d+)?")
#: An age the rule cannot read begins with its number, after signs at most (``95+``, ``~95``; not ``sub-0123``).
_AGE_LEAD = re.compile(r"^[^\w]*\d")
_DATE_VALUE = re.compile(
    r"^\s*(\d{4}-\d{1,2}-\d{1,2}|\d{4}/\d{1,2}/\d{1,2}|\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}|(19|20)\d{2}(0[1-9]|1[0-2])"
    r"(0[1-9]|[12]\d|3[01])|\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)([ T]\S*)?\s*$")
#: Dates a clinical export writes otherwise: with a month's name (``01FEB1970``, ``1 Feb 1970``, ``Feb 1, 1970``,
#: ``Mar 2021``), ``1970.02.01``, or month and year (``1970-02``, ``02/1970``).
_MONTH = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_DATE_WORDS = re.compile(rf"(\b|\d)\d{{0,1}}[\s\-/]?{_MONTH}[\s\-/,]*\d{{2,4}}\b|\b{_MONTH}\s+\d{{1,2}}(st|nd|rd|th)?,?"
                         rf"\s+\d{{2,4}}\b|^\s*\d{{4}}\.\d{{1,2}}\.\d{{1,2}}\s*$"
                         rf"|^\s*(\d{{4}}-\d{{1,2}}|\d{{1,2}}/\d{{4}})\s*$", re.IGNORECASE)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", re.IGNORECASE)
#: A table value that is a whole phone number: digits with spaces, brackets, dashes or a leading ``+``, seven
#: digits or more (``+15551234567``, ``800 200 3000``, ``(800) 200-3000``); free text's digit groups
#: (:func:`~brainclust.io.phitext.digit_groups`, dots too) are looked for as well.
_PHONE_VALUE = re.compile(r"^\s*\+?[\d\s()\-]*\d[\d\s()\-]*$")
_MODEL_CHARS = re.compile(r"^[A-Za-z0-9 _\-+./()]{1,64}$")
_CODE_CHARS = re.compile(r"^[A-Z0-9 _]{1,16}$")
#: Largest age written as it is (HIPAA safe harbour); older ages are written as this plus one.
MAX_AGE = 89
#: A table value with more characters or words is free text: its column is dropped.
MAX_TEXT_CHARS, MAX_TEXT_WORDS = 64, 6


def safe_code(value, terms: frozenset | None = None) -> str | None:
    """A DICOM code string (one or several values joined by ``/``) if every value is an upper-case code (one
    of ``terms``, the field's defined terms, when given)."""
    values = [str(v).strip() for v in (value if isinstance(value, (list, tuple)) else
                                      str(value).split("\\"))]
    values = [v for v in values if v]
    if terms is not None:  # dcm2niix sidecars join the values with "_" (GR_IR) and may write them in any case
        values = [part.upper() for v in values for part in v.split("_") if part]
    if not values or not all(_CODE_CHARS.match(v) and (terms is None or v in terms) for v in values):
        return None
    return "/".join(values)


def _model_like(value) -> str | None:
    """Letters, digits, spaces and ``_-+./()``, at most 64 characters, no date; else ``None``."""
    text = " ".join(str(value).split())
    return text if _MODEL_CHARS.match(text) and not has_date(text) else None


def safe_model(value) -> str | None:
    """A scanner model name whose words are model terms (:data:`MODEL_WORDS`), else ``None`` (withheld)."""
    text = _model_like(value)
    runs = re.findall(r"[a-z]+|[0-9]+", (text or "").lower())
    ok = all(len(run) <= MAX_TEXT_DIGITS if run.isdigit() else len(run) <= 2 or run in MODEL_WORDS or
             run in VENDOR_WORDS for run in runs)
    return text if runs and ok else None


def safe_vendor(value) -> str | None:
    """A manufacturer: a model-like text whose first word is a known MRI vendor (:data:`VENDORS`)."""
    text = _model_like(value)
    words = [w.lower() for w in WORD.findall(text or "")]
    return text if words and words[0] in VENDORS and all(w in VENDOR_WORDS for w in words) else None


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
    if kind.startswith("code"):
        return safe_code(value, CODE_TERMS.get(kind.partition(":")[2]))
    if kind == "model":
        return safe_model(value)
    if kind == "vendor":
        return safe_vendor(value)
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


def is_date(text: str) -> bool:
    """Whether ``text`` is or holds a calendar date or a time of day (``20190315``, ``1970-02-01``, ``01FEB1970``)."""
    return bool(_DATE_VALUE.match(text) or _DATE_WORDS.search(text))


def _value_reason(text: str) -> str | None:
    """Why one table value marks its column as PHI (the kinds below), or ``None``; free text is judged apart."""
    if is_date(text):
        return "it holds dates or times of day"
    if "^" in text:
        return "it holds person names (DICOM name format)"
    if _EMAIL.search(text):
        return "it holds e-mail addresses"
    if digit_groups(text) or (_PHONE_VALUE.match(text) and re.search(r"[\s()+\-]", text.strip())
                              and sum(c.isdigit() for c in text) >= 7):
        return "it holds phone or social security numbers"
    if _ID_VALUE.match(text.strip()):
        return "it holds identifiers (letters and five digits or more)"
    return None


def value_like(name: str) -> bool:
    """Whether a column name reads as a value that may be PHI (a table without its header line: the first row's
    ``DUPONT JEAN``, ``1234567``, ``1970-01-01``); such a name is never written or shown."""
    text = str(name).strip()
    return bool(text) and (_value_reason(text) is not None or (text.isdigit() and len(text) >= 5))


def phi_reason(name: str, values: Sequence) -> str | None:
    """Why a table column must be dropped (a short reason that names no value), or ``None`` to keep it."""
    if phi_name(name):
        return "its name says it may hold names, dates, identifiers, contact details or comments"
    if not readable(name):
        return ("its name is not in Latin letters, which the privacy rules cannot read (rename the column, in Latin "
                "letters, to keep it)")
    if value_like(name):
        return "its name reads as a value (a table without its header line?)"
    key, unit = research_key(name), age_unit(name)
    for v in values:
        if is_missing(v):
            continue
        text = str(v)
        why = _value_reason(text)
        if why is not None and not (key and why.startswith("it holds identifiers")):
            return why
        if len(text) > MAX_TEXT_CHARS or len(text.split()) > MAX_TEXT_WORDS:
            return "it holds free text"
        if unit is not None and _uncapped_age(text, unit):
            return ("it holds ages in a form or unit the age rule cannot read (write years, or name the unit: "
                    "age_months)")
    return None


def _uncapped_age(text: str, unit: float) -> bool:
    """Whether an age value of a column in ``unit`` may be 90 or older and cannot be capped: in a unit not in
    :data:`AGE_UNITS` with a number over :data:`MAX_AGE` (``95 lat``), or in a form :func:`_age` cannot read with a
    number over 90 years in the column's unit that begins it (:data:`_AGE_LEAD`: ``95+``, ``91-95``,
    ``95-year-old``, ``>95``; ``90+`` is the cap's own form)."""
    age = _age(text, unit)
    if age is not None:
        return not age[1] and age[0] > MAX_AGE
    numbers = [float(n.replace(",", ".")) for n in _AGE_NUMBERS.findall(text)]
    return bool(_AGE_LEAD.match(text)) and any(n * unit > MAX_AGE + 1 for n in numbers)


def _age(text: str, unit: float) -> tuple[float, float, str] | None:
    """``(number, its unit in years, the unit as written)`` of an age (``1140M``: ``(1140.0, 1/12, "M")``;
    ``unit`` when it names none), or ``None`` when the value is not a number with a unit. An age in parts is added
    up in the unit of its first (``95y 3m``: ``(95.25, 1.0, "y")``; ``1100 days 5 h``). A unit of 0 when a part
    names one not in :data:`AGE_UNITS`, or one of several parts names none (``95 lat``, ``95 3m``): the number is
    then the largest of the value's."""
    if _AGE_TEXT.match(text) is None:
        return None
    parts = _AGE_PART.findall(text)
    numbers = [float(n.replace(",", ".")) for n, _, _ in parts]
    units = [AGE_UNITS.get(fold(suffix), 0.0) if suffix else unit if len(parts) == 1 else 0.0
             for _, _, suffix in parts]
    if not all(units):
        return max(numbers), 0.0, ""
    rest = sum(n * u for n, u in zip(numbers[1:], units[1:]))
    return numbers[0] + rest / units[0], units[0], parts[0][1] + parts[0][2]


def clean_column(name: str, values: list) -> list:
    """The values written for a kept table column: in an age column (:func:`brainclust.io.phinames.age_unit`),
    an age of 90 years or more (``95``, ``095Y``, ``92 years``, ``92,5``, ``95 y``, ``95y 3m``; ``1140M``, or
    ``35000`` in ``age_days``, once converted by :func:`_age`) is written as 90 years: ``90`` in years
    (:data:`MAX_AGE` + 1), else the smallest whole number of its (first part's) unit that is 90 years (``1080M``,
    ``32873``)."""
    unit = age_unit(name)
    if unit is None:
        return values
    out = []
    for v in values:
        age = None if is_missing(v) else _age(str(v), unit)
        if age is None or not age[1] or age[0] * age[1] < MAX_AGE + 1 - 1e-9:
            out.append(v)
        elif age[1] == 1.0:
            out.append(str(MAX_AGE + 1))
        else:
            out.append(f"{math.ceil(round((MAX_AGE + 1) / age[1], 6))}{age[2]}")
    return out
