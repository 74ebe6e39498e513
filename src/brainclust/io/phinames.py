"""Table column names that may hold protected health information, and the names of age columns.

The rules of :func:`brainclust.io.privacy.phi_reason` and :func:`~brainclust.io.privacy.clean_column` that read a
column's *name* (documented in ``docs/units-metadata.md``). A name is first folded (:func:`fold`: accents
stripped, ``ß`` -> ``ss``, ``ø`` -> ``o``..., case folded), so ``Straße``, ``prénom`` and ``âge`` read as
``strasse``, ``prenom`` and ``age``. A column is dropped when its folded name says it may hold names, dates,
identifiers, contact details, institutions or comments (:func:`phi_name`), in English, French, Spanish, German,
Italian or Dutch, or when it holds letters of another script, which these rules cannot read (:func:`readable`:
``姓名``, ``ФИО``); its values may still be pseudonyms when it is a research key (:func:`research_key`); ages
are capped in a column named for them, in the unit its name gives (:func:`age_unit`).
"""

from __future__ import annotations

import re
import unicodedata

#: Column names that may hold protected health information (names, dates, IDs, contacts, free text).
PHI_COLUMN = re.compile(
    r"(^|[^a-z])(names?|surname|initials|mrn|ssn|social|address|street|city|zip|postcode|postal|phone|"
    r"telephone|fax|e?mail|birth|birthdate|dob|dates?|datetime|times?tamp|acq_?time|acquisition_?time|"
    r"institution|institution_?name|hospital|clinic|physician|doctor|referring|operator|accession|comments?|"
    r"notes?|remarks?|patient_?id|patientid|medical_?record|record_?number|insurance|ip|url|serial|"
    r"device_?serial_?number|station|pt_?(id|no|num|number|nr))($|[^a-z])", re.IGNORECASE)
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
             "examtime", "visittime", "hospno", "hospnum", "chartno", "chartnum", "nhsn",
             # each language's name, birth, address, street, town, phone, record number and next of kin
             "naam", "nominativo", "naissance", "nascita", "geboorte", "fecha", "adres", "indirizzo", "domicil",
             "wohnsitz", "residen", "straat", "wohnort", "woonplaats", "ciudad", "localit", "hometown", "telefoon",
             "elettronic", "dossier", "aktenzeichen", "patientnum", "huisnummer", "hausnummer", "historiaclinica",
             "cartella", "tessera", "versicher", "krankenkasse", "nextofkin", "angehorig", "prevenir", "guardian",
             "huisarts")
#: Words that hold a stem innocently.
PHI_STEM_WORDS = ("candidate", "validat", "update", "mandate", "consolidat", "accommodat", "sedat", "outdat",
                  "preferr", "thickness", "class", "session", "sessn", "massn", "mrna", "namespace")
#: Columns named for a research thing's name (``sequence_name``), letters only: kept whatever the rules above say.
RESEARCH_NAMES = frozenset("""sequencename seriesname contrastname classname timepointname taskname protocolname
    scanname sesname sessionname labelname regionname roiname structurename tissuename conditionname groupname
    sitename scannername""".split())
#: Names that mark PHI when a word of the name begins with them (``pid``, ``pid2``), when the whole name is one
#: (``patient``, ``MR#``), or when a word is one (``nom``, ``tel``, ``dt`` of ``exam_dt``).
PHI_PREFIXES = ("pid", "dob", "ptid")
PHI_NAMES = frozenset({"patient", "patients", "subjectname", "desc", "mr"})
PHI_WORDS = frozenset({"nom", "nombre", "naam", "tel", "handy", "mobile", "fax", "dni", "ipp", "bsn", "nhs", "kvnr",
                       "plz", "dod", "yob", "dt", "dos", "stadt", "town", "county", "ward", "room", "bed", "ipaddr",
                       "account", "chart",
                       # street, town, phone, record number and next of kin in the languages above
                       "rue", "calle", "via", "strada", "ort", "ville", "commune", "stad", "plaats", "gemeente",
                       "gemeinde", "citta", "comune", "municipio", "mobil", "mobiel", "movil", "celular", "cellulare",
                       "portable", "gsm", "nir", "secu", "nif", "nhc", "historia", "nome", "kin", "nok", "proche",
                       "parente", "pariente", "familiar", "familiare", "naaste"})
#: Columns of research pseudonyms (``subject``: ``OAS30001``; ``participant_id``), where such values are keys.
_RESEARCH_KEY = re.compile(r"(^|[^a-z])(sub|subject|participant|session|ses|scan|case|run|image|img)(_?id)?"
                           r"($|[^a-z])", re.IGNORECASE)
#: Words that name an age column (``age``, ``Alter``, ``edad``, ``âge``, ``età``, ``leeftijd``, ``PatientAge``).
AGE_WORDS = frozenset({"age", "ages", "alter", "edad", "idade", "eta", "leeftijd"})
#: Units of an age, in years: a word of a column's name (``age_months``; one letter is not read there: ``age_m``
#: may be the men's) or a value's suffix (``1140M``, the DICOM age string; ``92 years``); no unit is years.
AGE_UNITS: dict[str, float] = {
    **dict.fromkeys("y yo yr yrs year years a j jahr jahre an ans ano anos anio anios anno anni jaar jaren"
                    .split(), 1.0),
    **dict.fromkeys("m mo mos mon mons mth mths month months monat monate mois mes meses mese mesi maand maanden"
                    .split(), 1 / 12),
    **dict.fromkeys("w wk wks week weeks woche wochen semaine semaines semana semanas settimana settimane weken"
                    .split(), 7 / 365.25),
    **dict.fromkeys("d day days tage jour jours dia dias giorno giorni dag dagen".split(), 1 / 365.25),
    **dict.fromkeys("h hr hrs hour hours stunde stunden heure heures hora horas ora ore uur".split(), 1 / 8766),
}
#: Letters that folding by NFKD leaves as they are (``ß`` is folded by ``casefold``; ``µ``, micro, is a Greek mu).
_LATIN = str.maketrans({"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i",
                        "ħ": "h", "ŋ": "n", "ſ": "s", "μ": "u"})


def _strip_marks(text: str) -> str:
    """``text`` decomposed (NFKD) without its combining marks (accents): ``Âge`` -> ``Age``."""
    return "".join(c for c in unicodedata.normalize("NFKD", str(text)) if not unicodedata.combining(c))


def fold(text: str) -> str:
    """``text`` without accents, in lower case, ``ß`` as ``ss`` (``Straße`` -> ``strasse``, ``Âge`` -> ``age``);
    the case of each letter is kept where :func:`snake` needs it (fold its result)."""
    return _strip_marks(text).casefold().translate(_LATIN)


def snake(name: str) -> str:
    """``PatientName`` / ``patient-name`` / ``patient name`` -> ``patient_name``, folded (:func:`fold`)."""
    decomposed = _strip_marks(name)
    return fold(re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", decomposed).replace("-", "_").replace(" ", "_"))


def readable(name: str) -> bool:
    """Whether every letter of a column's name is a Latin one once folded (``Straße``, ``âge``): the rules below
    cannot read a name in another script (``姓名``, ``ФИО``, ``Возраст``), which is dropped."""
    return all(not c.isalpha() or "a" <= c <= "z" for c in snake(name))


def phi_name(name: str) -> bool:
    """Whether a column's name says it may hold PHI: :data:`PHI_COLUMN` on its words, :data:`PHI_STEMS` in its
    letters run together, :data:`PHI_PREFIXES` / :data:`PHI_NAMES` / :data:`PHI_WORDS` (on the folded name)."""
    folded = snake(name)
    letters = re.sub(r"[^a-z]", "", folded)
    if letters in RESEARCH_NAMES:
        return False
    if PHI_COLUMN.search(folded):
        return True
    masked = letters
    for word in PHI_STEM_WORDS:
        masked = masked.replace(word, "-")
    words = re.findall(r"[a-z]+", folded)
    return (any(stem in masked for stem in PHI_STEMS) or letters in PHI_NAMES
            or any(w.startswith(PHI_PREFIXES) or w in PHI_WORDS for w in words))


def research_key(name: str) -> bool:
    """Whether a column is a research key (``subject``, ``participant_id``), whose identifier-like values are
    pseudonyms."""
    return bool(_RESEARCH_KEY.search(snake(name)))


def age_unit(name: str) -> float | None:
    """The unit of an age column in years (``age``, ``Alter``, ``âge``, ``ages``: 1; ``age_months``,
    ``AgeInDays``, ``agemonths``: the unit its name gives, :data:`AGE_UNITS`), or ``None`` when the name is not
    an age's."""
    words = re.findall(r"[a-z]+", snake(name))
    for i, w in enumerate(words):
        rest = w[3:] if w.startswith("age") and len(w) > 4 else None  # ageyears, agemonths, agedays
        if w in AGE_WORDS or rest in AGE_UNITS:
            units = [rest] if rest in AGE_UNITS else [u for u in words[i + 1:] + words[:i]
                                                      if u in AGE_UNITS and len(u) > 1]
            return AGE_UNITS[units[0]] if units else 1.0
    return None
