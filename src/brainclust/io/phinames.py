"""Table column names that may hold protected health information, and the names of age columns.

The rules of :func:`brainclust.io.privacy.phi_reason` and :func:`~brainclust.io.privacy.clean_column` that read a
column's *name* (documented in ``docs/units-metadata.md``): a column is dropped when its name says it may hold
names, dates, identifiers, contact details, institutions or comments (:func:`phi_name`); its values may still be
pseudonyms when it is a research key (:func:`research_key`); ages are capped in a column named for them
(:func:`age_column`).
"""

from __future__ import annotations

import re

#: Column names that may hold protected health information (names, dates, IDs, contacts, free text).
PHI_COLUMN = re.compile(
    r"(^|[^a-z])(names?|surname|initials|mrn|ssn|social|address|street|city|zip|postcode|postal|phone|"
    r"telephone|fax|e?mail|birth|birthdate|dob|dates?|datetime|times?tamp|acq_?time|acquisition_?time|"
    r"institution|institution_?name|hospital|clinic|physician|doctor|referring|operator|accession|comments?|"
    r"notes?|remarks?|patient_?id|patientid|medical_?record|record_?number|insurance|ip|url|serial|"
    r"device_?serial_?number|station)($|[^a-z])", re.IGNORECASE)
#: The same words run together (``PATIENTNAME``, ``dateofbirth``, ``MRNumber``, ``StudyInstanceUID``): stems
#: searched in the name with everything but letters removed, and the words that hold one innocently.
PHI_STEMS = ("name", "birth", "address", "phone", "email", "street", "postcode", "zipcode", "accession", "accno",
             "institution", "hospital", "physician", "doctor", "referr", "radiolog", "operator", "comment",
             "remark", "insurance", "medicalrecord", "recordnumber", "patientid", "instanceuid", "seriesuid",
             "studyuid", "descr", "date", "timestamp", "mrn", "ssn",
             # other languages and short forms (French, Spanish, German, Italian, Dutch; clinical exports)
             "prenom", "apellido", "cognome", "geburt", "nacimiento", "telefon", "courriel", "correo", "kontakt",
             "contact", "patid", "patienten", "fallnummer", "personnummer", "versicherten", "codicefiscale",
             "socsec", "datum", "postleitzahl", "adresse", "anschrift", "direccion", "strasse", "arzt", "medecin",
             "surgeon", "bemerkung", "kommentar", "befund", "klinik", "krankenhaus", "website", "studytime",
             "examtime", "visittime", "hospno", "hospnum", "chartno", "chartnum", "nhsn")
#: Words that hold a stem innocently.
PHI_STEM_WORDS = ("candidate", "validat", "update", "mandate", "consolidat", "accommodat", "sedat", "outdat",
                  "preferr", "thickness", "class", "session", "sessn", "massn", "mrna", "namespace")
#: Columns named for a research thing's name (``sequence_name``), letters only: kept whatever the rules above say.
RESEARCH_NAMES = frozenset("""sequencename seriesname contrastname classname timepointname taskname protocolname
    scanname sesname sessionname labelname regionname roiname structurename tissuename conditionname groupname
    sitename scannername""".split())
#: Names that mark PHI when a word of the name begins with them (``pid``, ``pid2``), when the whole name is one
#: (``patient``, ``MR#``), or when a word is one (``nom``, ``tel``, ``dt`` of ``exam_dt``).
PHI_PREFIXES = ("pid", "dob")
PHI_NAMES = frozenset({"patient", "patients", "subjectname", "desc", "mr"})
PHI_WORDS = frozenset({"nom", "nombre", "naam", "tel", "handy", "mobile", "fax", "dni", "ipp", "bsn", "nhs", "kvnr",
                       "plz", "dod", "yob", "dt", "dos", "stadt", "town", "county", "ward", "room", "bed", "ipaddr",
                       "account", "chart"})
#: Columns of research pseudonyms (``subject``: ``OAS30001``; ``participant_id``), where such values are keys.
_RESEARCH_KEY = re.compile(r"(^|[^a-z])(sub|subject|participant|session|ses|scan|case|run|image|img)(_?id)?"
                           r"($|[^a-z])", re.IGNORECASE)
_AGE_COLUMN = re.compile(r"(^|[^a-z])(age|alter|edad|idade|eta|leeftijd|ageyears|age_?yrs)($|[^a-z])",
                         re.IGNORECASE)
#: An age column in another unit (``age_months``, ``age_days``): not capped (its 100 is not 100 years).
_AGE_OTHER_UNIT = re.compile(r"(month|mon|mo|week|wk|day|hour)s?($|[^a-z])", re.IGNORECASE)


def snake(name: str) -> str:
    """``PatientName`` / ``patient-name`` / ``patient name`` -> ``Patient_Name`` / ``patient_name``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(name)).replace("-", "_").replace(" ", "_")


def phi_name(name: str) -> bool:
    """Whether a column's name says it may hold PHI: :data:`PHI_COLUMN` on its words, :data:`PHI_STEMS` in its
    letters run together, :data:`PHI_PREFIXES` / :data:`PHI_NAMES`."""
    letters = re.sub(r"[^a-z]", "", str(name).lower())
    if letters in RESEARCH_NAMES:
        return False
    if PHI_COLUMN.search(snake(name)):
        return True
    masked = letters
    for word in PHI_STEM_WORDS:
        masked = masked.replace(word, "-")
    words = re.findall(r"[a-z]+", snake(name).lower())
    return (any(stem in masked for stem in PHI_STEMS) or letters in PHI_NAMES
            or any(w.startswith(PHI_PREFIXES) or w in PHI_WORDS for w in words))


def research_key(name: str) -> bool:
    """Whether a column is a research key (``subject``, ``participant_id``), whose identifier-like values are
    pseudonyms."""
    return bool(_RESEARCH_KEY.search(snake(name)))


def age_column(name: str) -> bool:
    """Whether a column holds ages in years (``age``, ``Alter``, ``PatientAge``; not ``age_months``)."""
    s = snake(name)
    return bool(_AGE_COLUMN.search(s)) and not _AGE_OTHER_UNIT.search(s)
