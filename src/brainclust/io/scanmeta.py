"""Helpers of :func:`brainclust.io.scan.scan` for metadata: sidecar files, DICOM series ids, the summary line."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from brainclust.errors import InputError, ParameterError, UnsafePathError
from brainclust.io import bids as bids_mod
from brainclust.io import privacy
from brainclust.io.bidstables import read_json
from brainclust.io.content import read_head
from brainclust.io.outputs import escape_name, shown_name
from brainclust.io.pathfilter import PathFilter, class_folder_of, folder_of
from brainclust.io.walk import output_folder_files
from brainclust.terminal import count_text

log = logging.getLogger(__name__)

#: Image file endings whose same-stem ``.json`` is their sidecar (dcm2niix writes ``x.nii.gz`` + ``x.json``).
STEM_SUFFIXES = (".nii.gz", ".nii", ".dcm", ".ima", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: Text files of a BIDS data set's root that are metadata (``README``, ``README.md``...).
BIDS_TEXT = ("README", "CHANGES", "LICENSE", "CITATION")


def is_metadata_file(p: Path, in_bids: bool) -> bool:
    """Whether a file is read as metadata rather than as an image.

    JSON files whose content starts with ``{`` or ``[`` and TSV files (without NUL
    bytes in their first 512 bytes; ``.tsv.gz`` always); in a BIDS data set also
    ``.bval``, ``.bvec`` and the root's README, CHANGES, LICENSE and CITATION files.
    """
    name = p.name.lower()
    if in_bids and (name.endswith((".bval", ".bvec")) or p.name.split(".")[0] in BIDS_TEXT):
        return True
    if not name.endswith((".json", ".tsv", ".tsv.gz")):
        return False
    if name.endswith(".tsv.gz"):
        return True
    head = read_head(p, 512)  # a FIFO named x.json is never waited on: it is no metadata, and no image either
    if head is None:
        return False
    if name.endswith(".json"):
        return head.lstrip()[:1] in (b"{", b"[")
    return b"\x00" not in head


class StemSidecars:
    """The whitelisted fields of ``x.json`` for an image ``x.nii.gz`` / ``x.dcm`` / ... in the same folder."""

    def __init__(self, root: Path, rels: Iterable[str]) -> None:
        self.root = Path(root)
        self.json = {r for r in rels if r.lower().endswith(".json")}
        self.cache: dict[str, dict] = {}
        self.withheld: dict[str, int] = {}
        self.unreadable = 0

    def path_of(self, rel: str) -> str | None:
        low = rel.lower()
        for suf in STEM_SUFFIXES:
            if low.endswith(suf):
                cand = rel[: len(rel) - len(suf)] + ".json"
                return cand if cand in self.json else None
        return None

    def columns(self, rel: str) -> dict:
        side = self.path_of(rel)
        if side is None:
            return {}
        if side not in self.cache:
            data = read_json(self.root / side)
            self.unreadable += data is None
            cols, withheld = privacy.sidecar_fields(data or {})
            for c in withheld:
                self.withheld[c] = self.withheld.get(c, 0) + 1
            self.cache[side] = cols
        return self.cache[side]


def assign_series_ids(records: Sequence, keys: Mapping[str, str]) -> None:
    """Set ``meta['series_id']`` of DICOM records (see "DICOM series" in :mod:`brainclust.io.scan`).

    ``keys`` maps a file's relative path to the hash of its SeriesInstanceUID.
    """
    names: dict[str, str] = {}
    per_folder: dict[str, int] = {}
    for r in records:
        if r.type != "dicom":
            continue
        file_rel = r.path.split("#", 1)[0]
        key = keys.get(file_rel, "")
        if not key:
            r.meta["series_id"] = file_rel
            continue
        if key not in names:
            folder = file_rel.rsplit("/", 1)[0] if "/" in file_rel else "."
            per_folder[folder] = per_folder.get(folder, 0) + 1
            names[key] = f"{folder}#series={per_folder[folder]}"
        r.meta["series_id"] = names[key]


#: Why the scan leaves out a file that ``--include``/``--exclude-files`` filter out (``manifest["scan"]["left_out"]``).
FILTER_REASON = "--include/--exclude-files"
#: Why a file of a BIDS data set that is not a BIDS data file (under a ``sub-<label>/`` folder or outside one) is
#: left out.
NOT_BIDS = ("name not BIDS (not sub-<label>/[ses-<label>/]<datatype>/sub-<label>_..._<suffix> with its folders' "
            "sub and ses)")
#: Why hidden entries (names starting with ``.``: ``.git``, macOS ``._`` files) are left out.
HIDDEN = "hidden (name starts with '.'; a hidden folder counts once)"


def summary_line(bids: bool, metadata_files: int, excluded: Mapping[str, int], withheld: Mapping[str, int],
                 unreadable: int) -> str:
    """The scan's one summary line (``""`` when there is nothing to say)."""
    parts = []
    if bids:
        parts.append("BIDS data set")
    if metadata_files:
        parts.append(f"{count_text(metadata_files, 'metadata file')} (JSON/TSV sidecars and tables) read as metadata, "
                     "not images" + (f" ({unreadable} unreadable)" if unreadable else ""))
    for reason, n in sorted(excluded.items()):
        parts.append(f"{count_text(n, 'file')} left out: {reason}")
    if withheld:
        parts.append("header text withheld (not matching the safe pattern): " +
                     ", ".join(f"{c} x{n}" for c, n in sorted(withheld.items())))
    return "; ".join(parts)


def warn_links_out(files: list[Path], root: Path) -> None:
    """Links to files outside ``root`` are read here, but export, the report and view never follow them."""
    def outside(p: Path) -> bool:
        try:
            return p.is_symlink() and root not in p.resolve().parents
        except (OSError, RuntimeError):  # a link loop: skipped by the scan with its reason
            return False

    n = sum(1 for p in files if outside(p))
    if n:
        log.warning("scan: %s to files outside '%s': read like the other files, but export, the report's "
                    "thumbnails and view do not follow links out of the input folder (to have them, %s)",
                    count_text(n, "symbolic link"), root, UnsafePathError.LINKS_OUT_HINT)


#: What in a file or folder name looks like patient data: a person's name in DICOM's format (``DOE^JOHN``) or a
#: calendar date (``19700101``, ``1970-01-01``, ``1970_01_01``).
PHI_IN_NAME = re.compile(r"\^"  # a DICOM person name (Family^Given)
                         r"|(?<!\d)(19|20)\d{2}([-_.]?)(0[1-9]|1[0-2])"
                         r"\2(0[1-9]|[12]\d|3[01])(?!\d)"  # 19700101, 1970-01-01
                         r"|(?<![a-z0-9])(0?[1-9]|[12]\d|3[01])[-_ .]?(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
                         r"[a-z]*[-_ .]?((19|20)\d{2}|\d{2})(?!\d)"  # 01JAN1970, 1-Jan-70
                         r"|(?<![a-z])(mrn|dob)(?![a-z])", re.IGNORECASE)  # a record number or a birth date named


def _nifti_skipped(skipped: Sequence[dict]) -> bool:
    return any(s["path"].lower().endswith((".nii", ".nii.gz")) for s in skipped)


def nifti_found(records: Sequence, skipped: Sequence[dict]) -> bool:
    """Whether the scan found a NIfTI file, kept (``records``) or skipped (e.g. for its ``--volume-index``): the
    data ``--slices`` and ``--volume-index`` apply to (``manifest.json`` ``scan.nifti``)."""
    return any(r.type == "nifti" for r in records) or _nifti_skipped(skipped)


def nifti_multi_volume(records: Sequence, skipped: Sequence[dict]) -> bool:
    """Whether a NIfTI file the scan found had more than one volume (a skipped one may have: it counts), the files
    ``--volume-index`` applies to (``manifest.json`` ``scan.nifti_multi_volume``)."""
    return any(r.type == "nifti" and (r.meta.get("n_volumes") or 1) > 1 for r in records) or _nifti_skipped(skipped)


def warn_found(records: Sequence, skipped: Sequence[dict], options: Mapping[str, tuple], told=(),
               root: str = "") -> int:
    """The scan's warnings on what it found: each of ``options`` (``{"slices": (value, default), ...}``) the user
    gave (``told``) away from its default when the scan found images but no NIfTI file, kept or skipped (it
    changes nothing), ``volume_index`` when every NIfTI file is 3-D (until 2026-12-07 without a word), and
    :func:`warn_phi_names` over the images' paths and ``root``, the data folder's own name (the report and
    ``checks.html`` name it; until 2026-12-07 not looked at); returns the latter's count."""
    nifti_seen = nifti_found(records, skipped)
    for name, (value, default) in options.items() if records and not nifti_seen else ():
        if name in told and value != default:
            log.warning("--%s %s: no NIfTI volume was found, so it changes nothing", name.replace("_", "-"), value)
    value, default = options.get("volume_index", (0, 0))
    if "volume_index" in told and value != default and nifti_seen and not nifti_multi_volume(records, skipped):
        log.warning("--volume-index %s: every NIfTI file found is 3-D (one volume), so it changes nothing", value)
    return warn_phi_names([*(r.path for r in records), root])


def warn_phi_names(paths: Iterable[str]) -> int:
    """One warning when file or folder names of the images look like patient data (:data:`PHI_IN_NAME`): names
    reach every output as they are, so the user renames them; no name is shown. Returns how many."""
    names = {part for p in paths for part in p.split("#", 1)[0].split("/")}
    n = sum(1 for name in names if PHI_IN_NAME.search(name))
    if n:
        log.warning("scan: %s with what looks like a person's name (DICOM's '^'), a date or a record number "
                    "(MRN, DOB); names are written as they are to assignments.csv, the report and every output: "
                    "rename them before sharing the outputs", count_text(n, "file or folder name"))
    return n


def check_options(root, labels_from_folders) -> Path:
    """:func:`check_root`, after ``labels_from_folders`` (True or False: ``"no"`` is a true value, it read the
    folders as labels)."""
    if not isinstance(labels_from_folders, (bool, np.bool_)):
        raise ParameterError(f"labels_from_folders: must be True or False, got {labels_from_folders!r}")
    return check_root(root)


def check_root(root) -> Path:
    """The folder :func:`~brainclust.io.scan.scan` reads, or one line: ParameterError for what is not a path
    (a list: one folder per scan), InputError for a file or a path that does not exist."""
    if not isinstance(root, (str, os.PathLike)):
        raise ParameterError(f"root: expected a folder path, got {type(root).__name__} (several folders: scan "
                             "each and join their .records)")
    if not os.fspath(root):
        raise InputError("input folder '': empty; name the folder that holds the images ('.' for this one)")
    rootp = Path(root)
    if rootp.is_file():
        raise InputError(f"input folder '{root}' is a file, not a folder: pass the folder that holds the images")
    if not rootp.is_dir():
        raise InputError(f"input folder '{root}' does not exist or is not a folder")
    if files := output_folder_files(rootp):
        raise InputError(f"input folder '{root}' is a brainclust output folder ({files}), not a folder of images: "
                         "pass the folder of images (its manifest.json names it as 'input')")
    return rootp


class FileSelector:
    """Which files a scan reads as images, with what metadata; counts what it leaves out.

    Called once per file (sorted order): returns the file's metadata columns, or
    ``None`` when the file is left out (``--include``/``--exclude-files``, a BIDS
    non-data folder, a BIDS data file the filter or the default datatype rule does
    not select, a file of a BIDS data set that is not a BIDS data file, under a
    ``sub-<label>/`` folder or outside one: see :mod:`brainclust.io.bids`) or is a
    metadata file. ``bids``: ``--bids`` (``auto``/``None`` detects a BIDS data set, ``off``/``False`` never:
    :func:`brainclust.io.bids.detect`).
    """

    def __init__(self, root: Path, rels: Sequence[str], include, exclude, bids_filter, bids: str | bool | None,
                 shown_root: str, hidden: int = 0) -> None:
        self.pfilter = PathFilter(include, exclude)
        self.bfilter = bids_mod.parse_filter(bids_filter)
        self.bids_filter_text = bids_filter
        self.bids = bids_mod.detect(root, bids, bids_filter)
        if self.bfilter and not self.bids:
            raise ParameterError(f"--bids-filter: '{shown_root}' is not a BIDS data set (no "
                                 "dataset_description.json and no sub-<label> folder)")
        self.shown_root = shown_root
        self.index = bids_mod.BidsIndex(root, rels) if self.bids else None
        # with data files, the other files (under sub-<label>/ or not) are not part of the data set (a tree of
        # sub-<label> folders holding no BIDS name at all is read as ordinary folders)
        self.strict = self.bids and any(bids_mod.parse_path(r) is not None for r in rels)
        self.not_bids_example = ""
        self.sidecars = StemSidecars(root, rels)
        self.metadata_files = 0
        self.excluded: dict[str, int] = {HIDDEN: hidden} if hidden else {}
        self.withheld: dict[str, int] = {}
        self.n_bids_data = self.n_bids_used = 0
        self.found: dict[str, set[str]] = {key: set() for key in self.bfilter}  # each filter key's values there
        self.summary = ""

    def _leave_out(self, reason: str) -> None:
        self.excluded[reason] = self.excluded.get(reason, 0) + 1

    def __call__(self, p: Path, rel: str) -> dict | None:
        parts = rel.split("/")
        non_data = self.bids and len(parts) > 1 and parts[0] in bids_mod.NON_DATA_FOLDERS
        # a metadata file (participants.tsv, a sidecar) is read as metadata whatever --include says: not an image
        metadata = not non_data and is_metadata_file(p, self.bids)
        if self.pfilter and not metadata and not self.pfilter(rel):
            self._leave_out(FILTER_REASON)
            return None
        if non_data:
            self._leave_out(f"BIDS folder {parts[0]}/ (not raw data)")
            return None
        if metadata:
            self.metadata_files += 1
            return None
        meta: dict = {}
        bf = bids_mod.parse_path(rel) if self.bids else None
        if bf is None and self.strict:
            self._leave_out(NOT_BIDS)  # its subject, session and datatype are unknown: never guessed from its name
            self.not_bids_example = self.not_bids_example or rel
            return None
        if bf is not None:  # a BIDS data file (images, and e.g. EEG files: left out unless selected)
            self.n_bids_data += 1
            for key, values in self.found.items():
                values.add(bids_mod.filter_value(bf, key) or "(none)")
            if not bids_mod.matches(bf, self.bfilter):
                if "datatype" not in self.bfilter and bf.datatype not in bids_mod.DEFAULT_DATATYPES:
                    self._leave_out(f"BIDS datatype {bf.datatype} (anatomical images only by default; "
                                    "--bids-filter datatype=... takes others)")
                else:
                    self._leave_out("not selected by --bids-filter")
                return None
            self.n_bids_used += 1
            meta.update(self.index.columns(bf))
        else:
            meta.update(self.sidecars.columns(rel))
        meta["folder"] = folder_of(rel)  # after the BIDS columns: 'subject' comes first when they coincide
        if cls := class_folder_of(rel):  # Training/glioma/...: the class below the split
            meta["class_folder"] = cls
        return meta

    def count_withheld(self, columns: Iterable[str]) -> None:
        for c in columns:
            self.withheld[c] = self.withheld.get(c, 0) + 1

    def finish(self) -> None:
        """Warn once about the files of a BIDS data set that are not BIDS data files (their count and one of
        them); merge the sidecar counts into the summary line; raise when BIDS data files exist but none is used.

        Raises
        ------
        InputError
            A BIDS filter (or the default datatype rule) selected none of the data set's data files.
        """
        if self.not_bids_example:
            log.warning("BIDS: %s left out as not BIDS data files (e.g. '%s'; BIDS tools ignore such files "
                        "too): name them sub-<label>/[ses-<label>/]<datatype>/sub-<label>[_ses-<label>]..."
                        "_<suffix>.nii.gz to have them read as BIDS, or read the tree as ordinary folders with "
                        "--bids off", count_text(self.excluded[NOT_BIDS], "file"),
                        shown_name(escape_name(self.not_bids_example)))
        if self.bids and self.n_bids_data and not self.n_bids_used:
            what = (f"--bids-filter {self.bids_filter_text!r}" if self.bfilter else
                    "the default (anatomical images only; --bids-filter datatype=... takes others)")
            found = "; ".join(f"{k}: {', '.join(sorted(v)[:8])}{', ...' if len(v) > 8 else ''}"
                              for k, v in self.found.items())
            raise InputError(f"input folder '{self.shown_root}': {what} selects none of its "
                             f"{count_text(self.n_bids_data, 'BIDS data file')}"
                             + (f" (their values: {found})" if found else ""))
        unreadable = self.sidecars.unreadable
        for stats in ([self.index.stats] if self.index is not None else []) + [self.sidecars]:
            for c, n in stats.withheld.items():
                self.withheld[c] = self.withheld.get(c, 0) + n
        if self.index is not None:
            unreadable += self.index.stats.unreadable
        self.summary = summary_line(self.bids, self.metadata_files, self.excluded, self.withheld, unreadable)
