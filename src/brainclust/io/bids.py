"""BIDS data sets: a strict parser of file names, entity filters, sidecars and participant tables.

Why not pybids: measured on this project's machine (``docs/ARCHITECTURE.md``),
pybids 0.22 adds 17 packages and 55 MB to the install, ~0.5 s to the import and
12 s to index a 6,000-file tree (SQLite), for what brainclust needs: the
entities of each file name, the sidecars that apply to it and two TSV tables.
This module does that in pure Python in milliseconds.

What is recognised
------------------
A folder is a BIDS data set when it holds ``dataset_description.json`` or at
least one ``sub-<label>`` folder. Inside it, a *data file* is
``sub-<label>/[ses-<label>/]<datatype>/<name>`` whose name is
``sub-<label>[_<entity>-<label>...]_<suffix><extension>`` with entities from
:data:`ENTITIES` in any order, labels of letters and digits, and the ``sub`` /
``ses`` of the name equal to its folders; ``<datatype>`` is a folder name of
lower-case letters (``anat``, ``func``, ``dwi``...), so a session folder is never
taken for one. A ``sub-<label>`` folder's label is letters and digits only:
``sub-01 copy/`` or ``sub-01_old/`` is not a subject folder (:func:`is_subject_folder`,
the one test of detection and of the scan). A file that is not a data file is
not part of the data set, as for the specification and pybids, wherever it lies:
under a subject folder (``sub-01/func/rest_run1.nii.gz``,
``sub-01/anat/sub-02_T1w.nii.gz``) or outside one (``scan.nii.gz`` at the top,
``extra/x.png``, ``sub-01_old/anat/sub-01_T1w.nii.gz``). When the data set has
data files at all, the scan leaves such a file out (counted, one warning naming
how many and one of them), so it never passes ``--bids-filter`` either; metadata
files (sidecars, tables, ``README``...) are read as metadata, and the non-data
folders below are left out with their own reason. A tree of ``sub-<label>``
folders none of whose files has a BIDS name is scanned as ordinary folders.
Detection can be turned off (``--bids off``, :data:`BIDS_MODES`, :func:`detect`):
the tree is then scanned as ordinary folders, every image read, no BIDS column
or rule applied.

Default: **anatomical images only**. Without a ``datatype`` filter, data files of
other datatypes (``func``, ``dwi``, ``fmap``, ``perf``...: often 4-D series whose
volumes are not brain images in the same sense) are not used and counted in the
scan's summary line; ``--bids-filter datatype=func`` takes them. The top-level
folders ``derivatives``, ``sourcedata``, ``code``, ``stimuli``, ``phenotype``
and ``log(s)`` are not data and are left out.

Filters (``--bids-filter``): ``KEY=VALUE[|VALUE...][,KEY=VALUE...]``, keys being
entity names (short ``sub``, ``ses``, ``acq``... or long ``subject``,
``session``, ``acquisition``...), ``suffix``, ``datatype`` or ``extension``.
Values of one key are alternatives (``suffix=T1w|FLAIR``; repeating the key has
the same effect); different keys must all match. Index entities (``run``,
``echo``, ``flip``, ``inv``, ``mt``, ``chunk``, ``split``) compare as numbers
(``run=1`` matches ``run-01``). A file without the entity does not match a
filter on it.

Metadata of a data file (columns; see :mod:`brainclust.io.metadata`):
``subject`` (``sub-01``), ``session``, every other entity under its short name
(``acq``, ``ce``, ``run``...), ``suffix``, ``datatype`` and ``sequence`` (the
name without ``sub``, ``ses``, ``run``, ``chunk``, ``split``: e.g.
``ce-gadolinium_T1w``, the same for every subject); the whitelisted fields of the
JSON sidecars that apply to it by the BIDS inheritance principle (a sidecar at
the data set, subject, session or datatype level whose entities are a subset of
the file's and whose suffix is the same; deeper and more specific ones win); the
columns of ``participants.tsv`` (row ``participant_id`` = ``sub-<label>``) and of
``sub-<label>/sub-<label>_sessions.tsv`` (row ``session_id``), filtered by
:func:`brainclust.io.privacy.phi_reason`. ``scans.tsv`` is not read (its
``acq_time`` is a date).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from brainclust.errors import ParameterError
from brainclust.io import privacy
from brainclust.io.bidstables import keyed_table, read_json

log = logging.getLogger(__name__)

#: BIDS entities in the specification's order (short names).
ENTITIES = ("sub", "ses", "sample", "task", "tracksys", "acq", "nuc", "voi", "ce", "trc", "stain", "rec", "dir",
            "run", "mod", "echo", "flip", "inv", "mt", "part", "proc", "hemi", "space", "split", "recording",
            "chunk", "seg", "res", "den", "label", "desc")
#: The columns a data file's name gives (:func:`name_columns`) besides ``subject``, as ``--labels`` names them.
NAME_COLUMNS = ("suffix", "sequence", "session", *(e for e in ENTITIES if e not in ("sub", "ses")), "datatype")
#: Long names accepted by the filter.
LONG_NAMES = {"subject": "sub", "session": "ses", "acquisition": "acq", "ceagent": "ce", "contrast": "ce",
              "tracer": "trc", "reconstruction": "rec", "direction": "dir", "modality": "mod",
              "processing": "proc", "hemisphere": "hemi", "recording": "recording", "description": "desc",
              "resolution": "res", "density": "den", "segmentation": "seg", "flipangle": "flip",
              "inversion": "inv", "magnetization": "mt"}
#: Entities whose labels are numbers.
INDEX_ENTITIES = frozenset({"run", "echo", "flip", "inv", "mt", "chunk", "split"})
#: Entities left out of the ``sequence`` column (they tell repetitions apart, not kinds of image).
NOT_SEQUENCE = frozenset({"sub", "ses", "run", "chunk", "split"})
#: Datatype used when no filter names one.
DEFAULT_DATATYPES = frozenset({"anat"})
#: Top-level folders of a BIDS data set that hold no raw data.
NON_DATA_FOLDERS = frozenset({"derivatives", "sourcedata", "code", "stimuli", "phenotype", "log", "logs"})
#: ``--bids``: ``auto`` detects a BIDS data set (:func:`is_bids_root`), ``off`` reads every tree as ordinary folders.
BIDS_MODES = ("auto", "off")

_LABEL = re.compile(r"[A-Za-z0-9]+")  # fullmatch: '$' would accept a trailing newline
_DATATYPE = re.compile(r"[a-z]+")  # anat, func, dwi, fmap, perf...: never a ses-<label> folder
_NAME = re.compile(r"(sub-[A-Za-z0-9]+(?:_[a-z]+-[A-Za-z0-9]+)*)_([A-Za-z0-9]+)(\.[A-Za-z0-9.]+)")
_FILTER_KEYS = frozenset(ENTITIES) | {"suffix", "datatype", "extension"}


@dataclass(frozen=True)
class BidsName:
    """A parsed BIDS file name: entities in file order, suffix and extension (``.nii.gz``)."""

    entities: tuple[tuple[str, str], ...]
    suffix: str
    extension: str

    @property
    def entity_map(self) -> dict[str, str]:
        return dict(self.entities)


@dataclass(frozen=True)
class BidsFile:
    """A BIDS data file: its name's parts and its datatype folder."""

    rel: str
    name: BidsName
    datatype: str

    @property
    def subject(self) -> str:
        return "sub-" + self.name.entity_map["sub"]

    @property
    def session(self) -> str:
        ses = self.name.entity_map.get("ses")
        return f"ses-{ses}" if ses else ""


def parse_name(filename: str) -> BidsName | None:
    """The entities, suffix and extension of a BIDS file name, or ``None`` if it is not one."""
    m = _NAME.fullmatch(filename)
    if not m:
        return None
    pairs = []
    for part in m.group(1).split("_"):
        key, _, label = part.partition("-")
        if key not in ENTITIES or not _LABEL.fullmatch(label) or key in dict(pairs):
            return None
        pairs.append((key, label))
    return BidsName(tuple(pairs), m.group(2), m.group(3))


def parse_path(rel: str) -> BidsFile | None:
    """A data file's parts from its path relative to the data set's root, or ``None``."""
    parts = rel.split("/")
    if len(parts) not in (3, 4) or not parts[0].startswith("sub-"):
        return None
    name = parse_name(parts[-1])
    if name is None:
        return None
    ent = name.entity_map
    if parts[0] != f"sub-{ent['sub']}":
        return None
    if len(parts) == 4 and parts[1] != f"ses-{ent.get('ses', '')}":
        return None
    if len(parts) == 3 and "ses" in ent:
        return None
    if not _DATATYPE.fullmatch(parts[-2]):
        return None
    return BidsFile(rel, name, parts[-2])


def is_subject_folder(name: str) -> bool:
    """Whether a folder name is ``sub-<label>``, the label letters and digits only (not ``sub-01 copy``,
    ``sub-01_old``, ``sub-``)."""
    return name.startswith("sub-") and bool(_LABEL.fullmatch(name[4:]))


def is_bids_root(root: str | Path) -> bool:
    """Whether ``root`` is a BIDS data set: ``dataset_description.json`` or a ``sub-<label>`` folder."""
    root = Path(root)
    if (root / "dataset_description.json").is_file():
        return True
    try:
        return any(is_subject_folder(p.name) and p.is_dir() for p in root.iterdir())
    except OSError:
        return False


def check_mode(mode, bids_filter=None) -> None:
    """``--bids``: one of :data:`BIDS_MODES`; ``off`` with a ``--bids-filter`` is refused (it would be ignored).

    Raises
    ------
    ParameterError
        Another mode, or ``off`` with a filter (a bad filter: see :func:`parse_filter`).
    """
    if mode not in BIDS_MODES:
        raise ParameterError(f"--bids: must be one of {', '.join(BIDS_MODES)}, got {mode!r}")
    if mode == "off" and parse_filter(bids_filter):
        raise ParameterError(f"--bids-filter: would be ignored with --bids off (got {bids_filter!r}); it needs "
                             "--bids auto")


def detect(root: str | Path, mode="auto", bids_filter=None) -> bool:
    """Whether the scan reads ``root`` as a BIDS data set: ``mode`` ``auto`` (or ``None``) detects it
    (:func:`is_bids_root`), ``off`` (or ``False``) never; ``True`` always. Checked by :func:`check_mode`."""
    if isinstance(mode, bool):
        return mode
    mode = "auto" if mode is None else mode
    check_mode(mode, bids_filter)
    return mode == "auto" and is_bids_root(root)


def _index_value(text: str) -> str:
    return str(int(text)) if text.isdigit() else text


def parse_filter(text: str | Mapping | None) -> dict[str, frozenset[str]]:
    """Parse ``--bids-filter`` (``suffix=T1w|FLAIR,datatype=anat``) into ``{key: allowed values}``.

    A mapping (``{"suffix": ["T1w"]}``) is accepted as it is. Keys are
    normalised to short entity names.

    Raises
    ------
    ParameterError
        On an unknown key, a missing ``=`` or an empty value.
    """
    if text is None or text == "" or text == {}:
        return {}
    items: list[tuple[str, str]] = []
    if isinstance(text, Mapping):
        for k, v in text.items():
            for one in ([v] if isinstance(v, str) else list(v)):
                items.append((str(k), str(one)))
    else:
        for part in str(text).split(","):
            if not part.strip():
                continue
            key, eq, value = part.partition("=")
            if not eq:
                raise ParameterError(f"--bids-filter: '{part.strip()}' must be KEY=VALUE (e.g. suffix=T1w), "
                                     f"got {text!r}")
            for one in value.split("|"):
                items.append((key, one))
    out: dict[str, set[str]] = {}
    for key, value in items:
        k = key.strip().lower()
        k = LONG_NAMES.get(k, k)
        v = value.strip()
        if k not in _FILTER_KEYS:
            raise ParameterError(f"--bids-filter: unknown key '{key.strip()}'; use an entity "
                                 f"({', '.join(ENTITIES[:16])}...), suffix, datatype or extension")
        if not v:
            hint = (f"; a filter keeps files by their values ({k}=VALUE); --exclude-files '*_{k}-*' leaves out "
                    "the files that have the key" if k in ENTITIES and k != "sub" else "")
            raise ParameterError(f"--bids-filter: key '{key.strip()}' has an empty value in {text!r}{hint}")
        if k == "extension" and not v.startswith("."):
            v = "." + v
        out.setdefault(k, set()).add(_index_value(v) if k in INDEX_ENTITIES else v)
    return {k: frozenset(v) for k, v in out.items()}


def matches(bf: BidsFile, filt: Mapping[str, frozenset[str]]) -> bool:
    """Whether a data file passes a parsed filter (and the default datatype rule when it names none)."""
    if "datatype" not in filt and bf.datatype not in DEFAULT_DATATYPES:
        return False
    return all(filter_value(bf, key) in allowed for key, allowed in filt.items())


def filter_value(bf: BidsFile, key: str) -> str | None:
    """The value a data file has for a filter key (``None``: its name has no such entity)."""
    ent = bf.name.entity_map
    if key == "suffix":
        return bf.name.suffix
    if key == "datatype":
        return bf.datatype
    if key == "extension":
        return bf.name.extension
    if key in ent:
        return _index_value(ent[key]) if key in INDEX_ENTITIES else ent[key]
    return None


def name_columns(bf: BidsFile) -> dict[str, str]:
    """The metadata columns a data file's name gives (see the module docstring)."""
    out = {"subject": bf.subject}
    if bf.session:
        out["session"] = bf.session
    for key, label in bf.name.entities:
        if key not in ("sub", "ses"):
            out[key] = label
    out["suffix"] = bf.name.suffix
    out["datatype"] = bf.datatype
    seq = [f"{k}-{v}" for k, v in bf.name.entities if k not in NOT_SEQUENCE] + [bf.name.suffix]
    out["sequence"] = "_".join(seq)
    return out


@dataclass
class SidecarStats:
    """Counts for the scan's summary line."""

    read: int = 0
    unreadable: int = 0
    withheld: dict[str, int] = field(default_factory=dict)


class BidsIndex:
    """What a BIDS data set says about its data files: names, sidecars, participants, sessions.

    Built once per scan from the relative paths of every file; reads the JSON
    sidecars and TSV tables lazily, each at most once.
    """

    def __init__(self, root: str | Path, rel_files: Iterable[str]) -> None:
        self.root = Path(root)
        self._json: dict[str, list[tuple[int, BidsName, str]]] = {}  # folder -> [(n entities, name, rel)]
        for rel in rel_files:
            if rel.endswith(".json"):
                folder, _, fname = rel.rpartition("/")
                name = parse_name(fname) if fname.startswith("sub-") else _top_sidecar(fname)
                if name is not None:
                    self._json.setdefault(folder, []).append((len(name.entities), name, rel))
        for items in self._json.values():
            items.sort(key=lambda t: (t[0], t[2]))
        self._loaded: dict[str, dict | None] = {}
        self._participants: dict[str, dict[str, str]] | None = None
        self._sessions: dict[str, dict[str, dict[str, str]]] = {}
        self._dated_sessions = False
        self.stats = SidecarStats()

    def _sidecar(self, rel: str) -> dict:
        if rel not in self._loaded:
            data = read_json(self.root / rel)
            if data is None:
                self.stats.unreadable += 1
                self._loaded[rel] = None
            else:
                self.stats.read += 1
                cols, withheld = privacy.sidecar_fields(data)
                for c in withheld:
                    self.stats.withheld[c] = self.stats.withheld.get(c, 0) + 1
                self._loaded[rel] = cols
        return self._loaded[rel] or {}

    def sidecar_columns(self, bf: BidsFile) -> dict[str, object]:
        """The merged whitelisted fields of every sidecar that applies to ``bf`` (inheritance principle)."""
        ent = bf.name.entity_map
        parts = bf.rel.split("/")[:-1]
        out: dict[str, object] = {}
        for depth in range(len(parts) + 1):
            folder = "/".join(parts[:depth])
            for _, name, rel in self._json.get(folder, ()):
                if name.suffix != bf.name.suffix:
                    continue
                if all(ent.get(k) == v for k, v in name.entities):
                    out.update(self._sidecar(rel))
        return out

    def participants(self) -> dict[str, dict[str, str]]:
        if self._participants is None:
            self._participants = keyed_table(self.root / "participants.tsv", "participant_id", "participants.tsv")
        return self._participants

    def sessions(self, subject: str) -> dict[str, dict[str, str]]:
        if subject not in self._sessions:
            path = self.root / subject / f"{subject}_sessions.tsv"
            self._sessions[subject] = (keyed_table(path, "session_id", f"{subject}_sessions.tsv")
                                       if path.is_file() else {})
        return self._sessions[subject]

    def columns(self, bf: BidsFile) -> dict[str, object]:
        """Every metadata column of a data file: name, sidecars, participants.tsv, sessions.tsv."""
        out: dict[str, object] = dict(name_columns(bf))
        if bf.session and not self._dated_sessions and privacy.is_date(bf.session.removeprefix("ses-")):
            self._dated_sessions = True  # a date is PHI: said once, the label itself never printed
            log.warning("BIDS: session labels are calendar dates; they are written in every output (paths, the "
                        "'session' column): rename the sessions (ses-01, ses-02...) before sharing the outputs")
        out.update(self.sidecar_columns(bf))
        for col, value in self.participants().get(bf.subject, {}).items():
            out.setdefault(col, value)
        if bf.session:
            for col, value in self.sessions(bf.subject).get(bf.session, {}).items():
                out.setdefault(col, value)
        return out


def _top_sidecar(fname: str) -> BidsName | None:
    """A data-set-level sidecar without ``sub`` (``T1w.json``, ``acq-fast_T1w.json``)."""
    if fname in ("dataset_description.json", "participants.json", "sessions.json", "scans.json"):
        return None
    stem = fname[:-5]
    parts = stem.split("_")
    pairs = []
    for part in parts[:-1]:
        key, _, label = part.partition("-")
        if key not in ENTITIES or key == "sub" or not _LABEL.fullmatch(label):
            return None
        pairs.append((key, label))
    if not parts or not _LABEL.fullmatch(parts[-1]):
        return None
    return BidsName(tuple(pairs), parts[-1], ".json")
