"""The data-check stage: descriptors -> flags, duplicate groups, leakage; and ``brainclust check``.

:func:`run_checks` is what a run calls (after the scan; with the run's features when it has them);
:func:`check_folder` scans a folder, runs the checks and writes ``quality.csv`` and
``leakage.csv`` (the standalone command). Nothing here changes which images are clustered:
the policy helpers of :mod:`brainclust.checks.tables` do that, on request.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from brainclust.checks import nearcode
from brainclust.checks.decode import dicom_header
from brainclust.checks.descriptors import Descriptors, describe_records
from brainclust.checks.duplicates import DuplicateGroups, first_of_hash, group
from brainclust.checks.flags import PIXEL_FLAGS, Thresholds
from brainclust.checks.likeness import (BACKBONE as LIKENESS_BACKBONE, Likeness, likeness_scores, pictured,
                                        revise_not_mri, unlike)
from brainclust.checks.outliers import outlier_scores
from brainclust.checks.rules import (certain_not_mri, non_image_dicom, not_mri_reasons, other_modality, pixel_flags,
                                    secondary_capture)
from brainclust.checks.splits import detect_splits, leakage_rows, match_table
from brainclust.checks.store import cached_descriptors, cached_near_pairs
from brainclust.checks.tables import (LEAKAGE_FILE, QUALITY_FILE, leakage_table, quality_rows, summary_line,
                                      write_leakage, write_quality)
from brainclust.core.needs import refuse_ignored
from brainclust.errors import InputError, ParameterError
from brainclust.features.extractor import WORKERS_PARAM
from brainclust.features.limits import check_cache_location
from brainclust.io.metadata import read_table
from brainclust.io.outputs import CHECK_ENTRIES, write_manifest
from brainclust.io.publish import check_out, prepare_out, publish
from brainclust.io.scan import SCAN_TYPES, ImageRecord, ScanResult, scan
from brainclust.io.walk import skipped_text
from brainclust.terminal import count_text

log = logging.getLogger(__name__)
#: How the refusal of a --out holding a file a check does not write ends (publish.check_out's is a run's).
CHECK_ADVICE = ("'brainclust check' replaces its whole --out folder: move it out, or choose a new or empty folder "
                "(or an earlier check's)")

@dataclass
class CheckResult:
    """What the checks found, one entry per record (scan order).

    ``flags`` are frozensets of :data:`~brainclust.checks.flags.FLAGS`; ``duplicate_of``: for a
    ``duplicate``, the path of the first image (scan order) with the same decoded content; for a
    ``near_duplicate``, its group's first image (the representative); else ``""``;
    ``splits``/``split_source`` from :func:`~brainclust.checks.splits.detect_splits`;
    ``leakage`` the rows of ``leakage.csv`` (unescaped paths); ``outlier_z`` and ``likeness_z`` the
    scores of :mod:`~brainclust.checks.outliers` and :mod:`~brainclust.checks.likeness` (NaN: not scored);
    ``likeness_reference`` which rows were likeness references (their z-scores answer to
    ``likeness_reference_below``; the other scored rows are candidates; ``None``: none); ``not_mri_reason``
    why each ``not_mri`` image is (``;``-joined :data:`~brainclust.checks.rules.NOT_MRI_REASONS`,
    ``likeness`` and ``picture``; ``""`` for the others; ``None``: not recorded); ``picture_score`` the
    likeness rule's picture scores (step 7; NaN: not scored; ``None``: not recorded);
    ``likeness_features`` how the latter's features were extracted (backbone, precision, runtime); ``skipped``
    the files and folders the scan could not read (``n_skipped`` of them, ``skipped_text()`` in words);
    ``n_undecoded`` the images of a run (or prediction) that its extraction could not decode, which the checks
    never saw: not checked, as those the checks could not decode (``descriptors.failed``), which is how
    ``brainclust check``, decoding every image itself, counts them.
    """

    paths: list[str]
    flags: list[frozenset]
    duplicate_of: list[str]
    duplicates: DuplicateGroups
    descriptors: Descriptors
    outlier_z: np.ndarray
    likeness_z: np.ndarray
    dicom_reasons: list[str]
    splits: list[str]
    split_source: str
    leakage: list[dict] = field(default_factory=list)
    thresholds: Thresholds = field(default_factory=Thresholds)
    likeness_features: dict = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"}, as the manifest's ``skipped``
    n_undecoded: int = 0  # images a run's extraction could not decode (rows of quality.csv with an error)
    likeness_reference: np.ndarray | None = None
    not_mri_reason: list[str] | None = None
    picture_score: np.ndarray | None = None

    def summary(self) -> str:
        return summary_line(self)

    n_skipped = property(lambda self: len(self.skipped))

    def skipped_text(self) -> str:
        return skipped_text(self.skipped)

    def quality_rows(self) -> list[dict]:
        return quality_rows(self)

    def counts(self) -> dict[str, int]:
        from brainclust.checks.flags import FLAGS

        return {f: sum(1 for fl in self.flags if f in fl) for f in FLAGS}


def _dicom_reasons(records: Sequence[ImageRecord],
                   headers: Mapping[str, Mapping] | None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Each record's ``non_image_dicom`` reason (``""``: none), whether it is a DICOM Secondary Capture, and whether
    its header names another imaging modality than MR (:func:`~brainclust.checks.rules.other_modality`); each
    file's header read once."""
    cache: dict[str, tuple[str, bool, bool]] = {}
    out, capture, other = [], np.zeros(len(records), bool), np.zeros(len(records), bool)
    for i, r in enumerate(records):
        if r.type != "dicom":
            out.append("")
            continue
        if r.abspath not in cache:
            header = headers.get(r.abspath) if headers is not None and r.abspath in headers else dicom_header(r.abspath)
            header = header or {}
            cache[r.abspath] = non_image_dicom(header), secondary_capture(header), bool(other_modality(header))
        out.append(cache[r.abspath][0])
        capture[i], other[i] = cache[r.abspath][1:]
    return out, capture, other


def _likeness(records, desc: Descriptors, masks: dict[str, np.ndarray], ok: np.ndarray, sliced: np.ndarray,
              group: np.ndarray, t: Thresholds, random_state: int, cache_dir, progress,
              extraction: dict, modality: np.ndarray) -> Likeness:
    """The likeness z-scores, picture scores and references; revises ``masks["not_mri"]`` (the pixel
    rules' and ``modality``'s: the DICOM images of another modality, never cleared nor references) with their
    verdicts (``group``: each row's duplicate group; ``extraction``: the likeness features' ``precision`` and
    ``runtime``)."""
    masks["not_mri"] |= modality & ~(masks["blank"] | masks["noise"] | masks["tiny"])
    unflagged = ok & ~np.logical_or.reduce(list(masks.values()))
    suspected = ok & masks["not_mri"] & ~certain_not_mri(desc.vectors, t, sliced) & ~modality
    likeness = likeness_scores(records, desc.vectors, unflagged, suspected, sliced, t, random_state, cache_dir,
                               progress, group=group, **extraction)
    masks["not_mri"] = revise_not_mri(masks["not_mri"], likeness.z, suspected, t, likeness.reference,
                                      likeness.picture)
    return likeness


def _reasons(desc: Descriptors, not_mri: np.ndarray, sliced: np.ndarray, likeness: Likeness,
             t: Thresholds, modality: np.ndarray) -> list[str]:
    """Why each ``not_mri`` row is: ``modality`` when its DICOM header names another imaging modality, the pixel
    reasons that hold, ``likeness`` when its z-score is below its threshold and ``picture`` when step 7 calls it a
    picture (``""`` for the other rows)."""
    reasons = {"modality": modality, **not_mri_reasons(desc.vectors, t, sliced),
               "likeness": unlike(likeness.z, t, likeness.reference), "picture": pictured(likeness.picture, t)}
    return [";".join(name for name, m in reasons.items() if m[i]) if not_mri[i] else "" for i in range(len(not_mri))]


def _outliers(features, desc: Descriptors, rows: np.ndarray, ok: np.ndarray, first: np.ndarray, t: Thresholds,
              backend: str, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """``outlier`` z-scores and flags: in the run's ``features`` over the decoded rows, or (``None``) in the
    near-duplicate codes of ``rows`` (distinct pictures)."""
    if features is not None:
        return outlier_scores(np.asarray(features, np.float32), t, first, ok, backend, random_state)
    feats = np.zeros((len(ok), nearcode.SIDE ** 2), np.float32)
    feats[rows] = nearcode.codes(desc.thumbs[rows])
    valid = np.zeros(len(ok), bool)
    valid[rows] = True
    return outlier_scores(feats, t, first, valid, backend, random_state)


def run_checks(records: Sequence[ImageRecord], descriptors: Descriptors | None = None,
               features: np.ndarray | None = None, thresholds: Thresholds | None = None,
               split_table: Mapping[str, str] | None = None, dicom_headers: Mapping[str, Mapping] | None = None,
               workers: int = 0, backend: str = "auto", random_state: int = 0,
               progress: bool | None = None, cache_dir=False, likeness_precision: str = "fp32",
               likeness_runtime: str = "auto") -> CheckResult:
    """Flag every record; group duplicates; list split leakage.

    Parameters
    ----------
    records : list of ImageRecord
        The scanned images, in scan order.
    descriptors : Descriptors or None
        Precomputed (e.g. in the run's decode); ``None`` decodes every record once here.
    features : (n, d) array or None
        The run's features (rows = records) for ``outlier``; ``None`` uses the near-duplicate
        codes (the picture's layout) instead.
    thresholds : Thresholds or None
        ``None`` = the defaults.
    split_table : mapping of path -> split, or None
        Each image's split keyed by the records' own paths (:func:`~brainclust.checks.splits.match_table`
        keys a user's table so); ``None`` reads folders and file names.
    dicom_headers : mapping of absolute path -> header dict, or None
        Header fields already read (``Modality``, ``SOPClassUID``, ``ImageType``); ``None`` reads them.
    workers : int
        Decoding processes when ``descriptors`` is None (0 = this process).
    backend : {"auto", "exact", "faiss"}
        Nearest-neighbour search (``auto``: exact up to ``thresholds.exact_max`` images).
    random_state : int
        Seeds the sample the search's projection and index are trained on.
    cache_dir : path, None or False
        Where near-duplicate pairs and likeness features are cached (``None``: the default; ``False``: not).
    likeness_precision, likeness_runtime : str
        How the likeness rule's features are extracted (:mod:`brainclust.checks.likeness`): ``fp32`` on
        ``auto``, or ``bf16`` (a bf16 run's, on its runtime).
    """
    t = thresholds or Thresholds()
    t.validate()
    records = list(records)
    n = len(records)
    if features is not None and len(features) != n:
        raise ParameterError(f"checks: features have {len(features)} rows for {n} images")
    desc = descriptors if descriptors is not None else describe_records(records, workers, progress)
    ok = np.ones(n, bool)
    ok[list(desc.failed)] = False
    reasons, capture, modality = _dicom_reasons(records, dicom_headers)
    # a Secondary Capture's pixels were rendered or converted, not scanned: judged as a 2-D image file's
    sliced = np.array([r.type in SCAN_TYPES for r in records], bool) & ~capture
    extraction = dict(precision=likeness_precision, runtime=likeness_runtime)
    masks = pixel_flags(desc.vectors, t, sliced)
    first = first_of_hash(desc.pixel_sha256)
    # near duplicates among distinct, decodable contents with a picture (not blank, not tiny), in 2-D image
    # files only (SCAN_TYPES: neighbouring slices and co-registered sequences look alike by design)
    rows = np.nonzero(ok & (first == np.arange(n)) & ~masks["blank"] & ~masks["tiny"])[0]
    pairs, sims, _ = cached_near_pairs(cache_dir, desc, rows[~sliced[rows]], t, backend, random_state, progress,
                                       records)
    groups = group(desc.pixel_sha256, pairs, sims)
    likeness = _likeness(records, desc, masks, ok, sliced, groups.representative, t, random_state, cache_dir,
                         progress, extraction, modality)
    z, outlier = _outliers(features, desc, rows, ok, first, t, backend, random_state)
    paths = [r.path for r in records]
    flags, dup_of = _flag_rows(paths, ok, masks, groups, first, outlier, reasons)
    splits, source = detect_splits(paths, split_table)
    leak = leakage_rows(paths, splits, groups.linked, groups.exact, groups.near) if source else []
    return CheckResult(paths, flags, dup_of, groups, desc, z, likeness.z, reasons, splits, source, leak, t,
                       {"backbone": LIKENESS_BACKBONE, **extraction}, likeness_reference=likeness.reference,
                       not_mri_reason=_reasons(desc, masks["not_mri"] & ok, sliced, likeness, t, modality),
                       picture_score=likeness.picture)


def _flag_rows(paths: list[str], ok: np.ndarray, masks: dict[str, np.ndarray], groups: DuplicateGroups,
               first: np.ndarray, outlier: np.ndarray, reasons: list[str]) -> tuple[list[frozenset], list[str]]:
    """Each image's flags and ``duplicate_of``."""
    flags, dup_of = [], []
    for i in range(len(paths)):
        f = set()
        if ok[i]:
            f.update(name for name, m in masks.items() if m[i])
            if groups.exact[i]:
                f.add("duplicate")
            elif groups.near[i]:
                f.add("near_duplicate")
            if outlier[i] and not f & PIXEL_FLAGS:
                f.add("outlier")
        if reasons[i]:
            f.add("non_image_dicom")
        flags.append(frozenset(f))
        # a duplicate points to the first image of the same decoded content (its copy, byte for byte when the
        # files are); anything else in a group to the group's first image
        rep = int(first[i]) if groups.exact[i] else int(groups.representative[i])
        dup_of.append(paths[rep] if rep != i else "")
    return flags, dup_of


def read_split_table(path: str | os.PathLike, column: str = "split", path_column: str = "path") -> dict[str, str]:
    """``{path: split}`` from a CSV/TSV metadata table with a ``path`` column and a split column, read as
    ``--metadata`` is (:func:`~brainclust.io.metadata.read_table`: a spreadsheet's byte-order mark, tabs in a
    ``.txt``, quoted cells). Until 2026-12-07 it had a reader of its own: a table saved as "CSV UTF-8" by a
    spreadsheet had "no column 'path' (columns: \ufeffpath, split)", an empty file "no column 'split' (columns: )",
    and a header without rows was taken as no table at all.

    Raises
    ------
    ParameterError
        The file cannot be read, lacks a column or has no row.
    """
    try:
        table = read_table(path, option="--split-table", rows=f"one row per image ({path_column}, {column})")
    except InputError as exc:
        raise ParameterError(str(exc)) from None
    for c in (column, path_column):
        if c not in table.header:
            raise ParameterError(f"--split-table '{path}': has no column '{c}' (columns: {', '.join(table.header)})")
    if not table.rows:
        raise ParameterError(f"--split-table '{path}': has a header and no row; expected one row per image "
                             f"({path_column}, {column})")
    return {row[path_column]: row[column] for row in table.rows}


def check_split_table(records: Sequence[ImageRecord], path, column: str = "split") -> None:
    """A run's ``--split-table`` against its scanned images, before any feature is extracted: one line when the
    table names none of them or gives them no split (the checks match it again, and warn, later)."""
    match_table([r.path for r in records], [r.abspath for r in records], read_split_table(path, column), warn=False)


def write_outputs(result: CheckResult, out: str | os.PathLike, manifest: Mapping | None = None) -> dict[str, Path]:
    """Write ``quality.csv`` and ``leakage.csv`` (header only when nothing leaks) into ``out``, then
    ``manifest`` as ``manifest.json`` when given."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {"quality": write_quality(out / QUALITY_FILE, result.quality_rows()),
               "leakage": write_leakage(out / LEAKAGE_FILE, leakage_table(result))}
    if manifest is not None:
        written["manifest"] = write_manifest(out / "manifest.json", manifest)
    return written


def checks_record(result: CheckResult, exclude=(), n_excluded: int = 0, split_table=None, cache: dict | None = None,
                  timings: dict | None = None) -> dict:
    """What a manifest records of the checks: thresholds, the split source, counts per flag, what was excluded
    (``n_checked``: the images decoded and checked; ``n_not_checked``: those the checks or, in a run, its
    extraction could not decode: the error rows of ``quality.csv``)."""
    return {"thresholds": asdict(result.thresholds), "split_source": result.split_source or None,
            "split_table": None if split_table is None else str(split_table),
            "n_checked": len(result.paths) - len(result.descriptors.failed),
            "counts": result.counts(), "n_flagged": sum(1 for f in result.flags if f),
            "n_duplicate_groups": len(result.duplicates.groups()), "n_leakage_rows": len(result.leakage),
            "n_not_checked": len(result.descriptors.failed) + result.n_undecoded, "exclude": list(exclude),
            "n_excluded": n_excluded,
            "descriptor_cache": cache or {}, "likeness_features": result.likeness_features,
            "summary": result.summary(), "timings_s": timings or {}}


def check_folder(data: str | os.PathLike, out: str | os.PathLike | None = None,
                 thresholds: Thresholds | None = None, workers: int = 0, progress: bool | None = None,
                 split_table: Mapping[str, str] | None = None, backend: str = "auto",
                 scan_result: ScanResult | None = None, cache_dir=False, split_source: str | None = None,
                 finish: Callable[[Path, Sequence[ImageRecord]], None] | None = None, **scan_kwargs) -> CheckResult:
    """Scan ``data`` (``brainclust.io.scan.scan``; ``scan_kwargs`` e.g. ``slices``), check it, and, when
    ``out`` is given, publish ``quality.csv``, ``leakage.csv`` and ``manifest.json`` there (``brainclust check``).

    ``out`` is written like a run folder (:func:`brainclust.io.outputs.publish`: staged, then swapped in
    whole, under a lock); it must be outside ``data`` and new, empty or an earlier check's folder.
    ``cache_dir``: the descriptor store (:mod:`brainclust.checks.store`; ``False`` = none, ``None`` = the
    default folder). ``split_source`` names the split table in the manifest. ``finish(staging, records)``
    completes the staged folder before it is published (``brainclust check``'s page).

    Raises
    ------
    ParameterError
        ``out`` cannot be used; bad thresholds or workers.
    InputError
        ``data`` holds no readable image (nothing is written).
    """
    t = thresholds or Thresholds()
    t.validate()
    if out is not None:
        prepare_out(out, data=data, allowed=CHECK_ENTRIES, advice=CHECK_ADVICE)
    check_cache_location(cache_dir, out, data)  # before any work: a store inside --out would be refused after it
    t0 = time.perf_counter()
    found = scan_result if scan_result is not None else scan(data, progress=progress, **scan_kwargs)
    if not found.records:
        raise InputError.no_images(data, found.skipped_text(), found.excluded)
    if split_table:  # matched before any image is decoded: a table that names nothing is refused at once
        split_table = match_table([r.path for r in found.records], [r.abspath for r in found.records], split_table)
    t_scan = time.perf_counter() - t0
    desc, cache = cached_descriptors(found.records, cache_dir, workers, progress)
    if desc.failed and len(desc.failed) == len(found.records):
        i, why = next(iter(desc.failed.items()))
        raise InputError(f"input folder '{data}': none of its {count_text(len(found.records), 'image')} could be "
                         f"decoded (e.g. '{found.records[i].path}': {why}); nothing was checked")
    result = run_checks(found.records, descriptors=desc, thresholds=t, split_table=split_table, backend=backend,
                        progress=progress, cache_dir=cache_dir)
    result.skipped = found.skipped
    timings = {"scan": t_scan, "total": time.perf_counter() - t0}
    if out is not None:
        from brainclust import __version__

        manifest = {"kind": "check", "brainclust": __version__, "input": str(Path(data).resolve()),
                    "settings": {"scan": {k: v for k, v in scan_kwargs.items() if isinstance(v, (str, int, bool))}},
                    "n_files_scanned": found.n_files, "n_images": len(found.records),
                    "skipped": sorted(found.skipped, key=lambda s: s["path"]),
                    "checks": checks_record(result, split_table=split_source, cache=cache, timings=timings)}
        publish(out, lambda staging: write_outputs(result, staging, manifest),
                check=lambda: check_out(out, data=data, allowed=CHECK_ENTRIES, advice=CHECK_ADVICE),
                finish=None if finish is None else lambda staging: finish(staging, found.records))
    log.debug("%s", result.summary())
    return result


def check_data(data: str | os.PathLike, out: str | os.PathLike | None = None, *, check_thresholds: str | None = None,
               split_table: str | os.PathLike | None = None, split_column: str = "split", workers: int | None = None,
               cache_dir=None, slices: str = "axial:mid", volume_index: int = 0,
               progress: bool | None = None, include=(), exclude_files=(), bids_filter=None, bids: str = "auto",
               finish=None) -> CheckResult:
    """``brainclust check``: :func:`check_folder` from the command's settings (the text of
    ``--check-thresholds``, a split table's path and column, ``--workers`` (``None``: every core), the
    descriptor cache folder, the NIfTI slicing, the file filters of a run: ``--include``,
    ``--exclude-files``, ``--bids-filter``, ``--bids``; ``finish``: see :func:`check_folder`). Every setting is
    checked before the scan.
    """
    from brainclust.checks.store import default_workers
    from brainclust.io import bids as bids_io
    from brainclust.io.formats import nifti

    nifti.parse_slices(slices)
    nifti.check_volume_index(volume_index)
    refuse_ignored({"split_table": split_table, "split_column": split_column}, {"split_column": "split"})
    bids_io.check_mode(bids, bids_filter)
    thresholds = Thresholds.from_text(check_thresholds or "")
    WORKERS_PARAM.check("workers", workers)
    table = read_split_table(split_table, split_column) if split_table is not None else None
    return check_folder(data, out, thresholds, workers=default_workers(workers), progress=progress,
                        split_table=table, cache_dir=cache_dir, split_source=split_table, slices=slices,
                        volume_index=volume_index, include=include, exclude=exclude_files,
                        bids_filter=bids_filter, bids=bids, finish=finish)
