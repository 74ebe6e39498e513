"""The free text of a header that may reach an output: series descriptions and protocol names.

The rules of :func:`safe_text` (documented in ``docs/units-metadata.md``, *Privacy*), with the two they share with
the table rules of :mod:`brainclust.io.privacy`: a calendar date inside a text (:func:`has_date`) and digits written
in groups, a phone, social security or record number (:func:`digit_groups`). A text is kept only when every word of
it reads as an MRI term; a name, an initial, a date or a number that may identify someone withholds it.

Initials: a letter written with a dot (``J.``, ``J. S.``, ``J.S.``) is an initial and withholds the text; letters
standing alone side by side (``J S``) and title-case two-letter words side by side (``Se Ti``, the syllables of a
name) are read together as one word (``js``, ``seti``), kept only when that is a term (``A P``, ``R-L``: ``ap``,
``rl``). A letter alone stays: ``b`` of ``DWI b 2000``, ``C`` of ``+C``, ``T`` of ``3.0 T``, a plane's ``A``; one
initial alone cannot be told from those.
"""

from __future__ import annotations

import re

#: Words of MRI protocol names and series descriptions (lower case; read by :data:`SAFE_WORDS`).
_SEQUENCE_WORDS = """
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
"""
#: Words of protocol names (diffusion, averages, vendors' options).
_PROTOCOL_WORDS = """
diff dir dirs directions avg ave nex mddw slab slabs dixon prep wip view eswan aahead shc smartbrain spc pace
fid basic mapping resolve tgse pld caipi cmrr mbep haste twist press memprage rms minip source frfse plane cow
ffe clear swip vwip flow opp fase rfmri tfmri dmri rsfmri distortion abcd vnav run repeat research non apparent
coefficient values longtr uni inv phoenix zip report del rec col rel mri
"""
#: Two-letter abbreviations of protocol names (phase directions, parameters, options); a run of two letters that
#: is not one of these or of the words above withholds the text (``FLAIR Li Na``, ``T1 MPRAGE WU LI``).
_TWO_LETTER_WORDS = """
ap pa lr rl si is hf fh rf ns tr te ti ir me mb sb sw ip mt dw ep gr rm ss ad md rd bw pf ps os pu sl wo nc fb fc
mp mr ct qa qc hr wm gm bb oax osag ocor
"""
#: Words of MRI protocol names and series descriptions that are kept (lower case): the three blocks above.
SAFE_WORDS = frozenset(word for block in (_SEQUENCE_WORDS, _PROTOCOL_WORDS, _TWO_LETTER_WORDS)
                       for word in block.split())

#: Two-letter terms that descriptions write in title case (GE's ``Ax T2 FLAIR``; ``T1 Post Gd``, the element): not
#: read as a syllable of a name.
TITLE_TERMS = frozenset({"Ax", "Gd"})
#: A word that may be part of a name: one letter (an initial) or a capital and a lower-case letter (``Se``, ``Li``).
_NAME_PART = re.compile(r"[A-Za-z]|[A-Z][a-z]")
#: What joins the parts of a name (``J S``, ``J.S``, ``Se-Ti``, ``J_S``); a ``/`` or ``+`` beside a letter makes it
#: a term's (``W/O``, ``A/P``, ``+C``, ``C+``).
_NAME_JOIN = re.compile(r"[\s._\-]+")
#: An initial written with its dot: a letter standing alone, then a dot that begins neither a number nor a word
#: (``J.``, ``J.S.``, ``J. S.``, ``T1 Smith J.``; not ``b.1000`` nor ``t1.w.tse``).
_INITIAL = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]\.(?![A-Za-z]{2}|\d)")
#: A word of a text: a run of letters and digits.
WORD = re.compile(r"[A-Za-z0-9]+")
_TEXT_CHARS = re.compile(r"^[A-Za-z0-9 _\-+.()/:,#*]{1,64}$")
#: A date anywhere in a free text: ``1970-01-01``, ``03/04/70``, ``3.4.1970`` (day and month checked by
#: :func:`has_date`; lists such as ``2.5/5.0/7.5`` or ``2200/20/80`` are not dates), or a time (``12:30``).
_DATE_IN_TEXT = re.compile(r"(?<![\d.])(\d{1,4})([/.\-_])(\d{1,2})\2(\d{1,4})(?![\d.])")
#: Digit groups joined by spaces, dashes, underscores, brackets or dots (``555 0123``, ``1951 0317``,
#: ``(617) 555-0123``, ``555.123.4567``, ``192.168.1.10``); a decimal number (one dot between two groups, joined
#: to no other by a dot: ``1.5``, ``1.25-1.25-1.25``) is a value, not a group (:func:`digit_groups`).
_DIGIT_GROUPS = re.compile(r"(?<!\d)(?<!\d\.)\d+(?:[-_\s.()]+\d+)+(?!\d)(?!\.\d)")
#: Where a run of digit groups is cut into numbers: at any joiner but a single dot (a decimal point).
_GROUP_CUT = re.compile(r"[-_\s.()]{2,}|[-_\s()]")
#: Digits in groups that make a phone, social security or record number or a date (``555 0123``: seven).
MIN_GROUP_DIGITS = 7
#: Where camel case is read as two words: before a capital that begins three lower-case letters or more or a run
#: of capitals or digits (``MoCo|Series``, ``rel|CBF``, ``s|T1W``, ``ZIP|Report``); ``JoHnSmItH`` is one word.
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z](?:[a-z]{2}|[A-Z0-9]))|(?<=[A-Z])(?=[A-Z][a-z]{2})")
_TIME_IN_TEXT = re.compile(r"(?<!\d)([01]?\d|2[0-3]):[0-5]\d(?!\d)")
#: Numbers alone in a row: more than this many is a date or an identifier written with spaces (``01 02 70``).
MAX_NUMBER_WORDS = 2
#: Longest run of digits kept in a free text (longer: an identifier or a date).
MAX_TEXT_DIGITS = 4


def safe_text(value: str) -> str | None:
    """A series description / protocol name if it passes the conservative pattern, else ``None`` (withheld).

    Each word is cut at camel case (where :data:`_CAMEL` marks a word boundary) and into runs of letters and of
    digits (``t1w`` -> ``t``, ``1``, ``w``): a word that is an MRI term whole (:data:`SAFE_WORDS`: ``mp2rage``)
    passes; else every run of two letters or more must be an MRI term (``Li Na``, ``JoHnSmItH`` are withheld),
    every run of digits at most :data:`MAX_TEXT_DIGITS` long, at most :data:`MAX_NUMBER_WORDS` numbers in a row,
    no digit groups of seven digits or more (:func:`digit_groups`: ``555 0123``, ``555.123.4567``); no date or
    time of day anywhere (``MRN12345``, ``DOE2``, ``19700101``, ``1970-01-01``, ``01 02 70``, ``12:30`` are
    withheld; a year alone is not a date: ``DWI b 2000`` is kept); no initial and no name in parts
    (:func:`name_parts`: ``J. S.``, ``J S``, ``Se Ti`` are withheld; a letter alone, ``b``, ``+C``, ``3.0 T``,
    is kept)."""
    text = " ".join(str(value).split())
    if not text or not _TEXT_CHARS.match(text) or has_date(text) or _TIME_IN_TEXT.search(text) or \
            digit_groups(text) or name_parts(text):
        return None
    in_a_row = 0
    for token in text.split():  # numbers written apart: 01 02 70, 12 34 56 78
        in_a_row = in_a_row + 1 if token.isdigit() else 0
        if in_a_row > MAX_NUMBER_WORDS:
            return None
    for word in WORD.findall(text):
        if word.lower() in SAFE_WORDS:  # terms holding digits (mp2rage, t2star) or capitals (mIP) are whole words
            continue
        for part in _CAMEL.sub(" ", word).lower().split():  # MoCoSeries: MoCo, Series
            if part in SAFE_WORDS:
                continue
            for run in re.findall(r"[a-z]+|[0-9]+", part):
                if run.isdigit() and len(run) > MAX_TEXT_DIGITS or run.isalpha() and len(run) > 1 and \
                        run not in SAFE_WORDS:
                    return None
    return text


def name_parts(text: str) -> bool:
    """Whether ``text`` holds an initial or a name written in parts.

    An initial is a letter standing alone with a dot after it (:data:`_INITIAL`: ``J.``, ``J.S.``, ``J. S.``). Parts
    of a name (:data:`_NAME_PART`: a letter standing alone, ``J``; a capital and a lower-case letter, ``Se``, other
    than :data:`TITLE_TERMS`) that stand two or more side by side, joined by spaces, dots, dashes or underscores
    (:data:`_NAME_JOIN`), are read together as one word, which must be an MRI term: ``J S`` (``js``), ``Se Ti``
    (``seti``), ``Pd Fs`` (``pdfs``) are names; ``A P`` and ``R-L`` (``ap``, ``rl``: phase directions) are not. A
    letter beside a ``/`` or a ``+`` is a term's (``W/O``, ``A/P``, ``+C``, ``C+``), and one part alone is kept:
    the ``b`` of ``DWI b 2000``, ``T`` of ``3.0 T``, a plane ``A``, ``Se`` (spin echo) cannot be told from an
    initial or a one-syllable name, so those pass; a name in capitals or in lower case made of terms only
    (``SE TI``) passes too."""
    if _INITIAL.search(text):
        return True
    pieces = WORD.split(text)  # the gaps between the words: pieces[k] is before word k, pieces[k + 1] after it
    words = WORD.findall(text)
    run: list[str] = []
    for k, word in enumerate(words + [""]):
        before, after = pieces[k], pieces[k + 1] if k + 1 < len(pieces) else ""
        part = bool(_NAME_PART.fullmatch(word)) and word not in TITLE_TERMS and not re.search(r"[/+]", before + after)
        if part and run and _NAME_JOIN.fullmatch(before):
            run.append(word)
            continue
        if len(run) > 1 and "".join(run).lower() not in SAFE_WORDS:
            return True
        run = [word] if part else []
    return False


def digit_groups(text: str) -> bool:
    """Whether ``text`` holds digit groups (:data:`_DIGIT_GROUPS`) of :data:`MIN_GROUP_DIGITS` digits or more in
    all, other than round values (each a multiple of 100 with no leading zero: b-values and times, ``DWI 2000
    3000``; the first group may be the end of a word, ``T2 2000 3000``). A decimal number in a run (one dot,
    ``1.25-1.25-1.25``) is a value and counts no digits; dots joining three groups or more (``555.123.4567``) join
    groups."""
    for m in _DIGIT_GROUPS.finditer(text):
        numbers = _GROUP_CUT.split(m.group(0))
        groups = [g for n in numbers if n.count(".") != 1 for g in n.split(".")]
        word_end = m.start() and text[m.start() - 1].isalpha() and numbers[0].count(".") != 1
        rest = groups[1:] if word_end else groups
        if sum(map(len, groups)) >= MIN_GROUP_DIGITS and not all(g[0] != "0" and int(g) % 100 == 0 for g in rest):
            return True
    return False


def has_date(text: str) -> bool:
    """Whether ``text`` holds a calendar date: year-month-day, or day and month (either order) then a year."""
    for m in _DATE_IN_TEXT.finditer(text):
        a, _, b, c = m.groups()
        if len(a) == 4 and 1 <= int(b) <= 12 and 1 <= int(c) <= 31:
            return True
        if len(a) <= 2 and len(c) in (2, 4) and ((1 <= int(a) <= 31 and 1 <= int(b) <= 12) or
                                                 (1 <= int(a) <= 12 and 1 <= int(b) <= 31)):
            return True
    return False
