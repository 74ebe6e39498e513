"""The outputs of the checks, defined once: ``quality.csv``, ``leakage.csv``, the summary line,
the report's galleries, and the policy helpers (``--exclude``, scores over distinct images).

``quality.csv``: one row per input image (scan order), columns :data:`QUALITY_COLUMNS`:
``path``; ``flags`` (``;``-joined, vocabulary order, empty when clean); ``duplicate_of`` (for a
``duplicate``: the first image in scan order with the same decoded content; for a ``near_duplicate``:
the first image of its group);
``split`` (``train``/``test``/``val`` or empty); the scores behind the flags
(``near_similarity``: best verified similarity within its group, of the codes or, for a pair confirmed
as a pixel window, the window similarity; ``outlier_z``; ``likeness_z``
(for the images :mod:`brainclust.checks.likeness` scores) and ``likeness_role`` (``reference`` or
``candidate``: which threshold the score answers to); ``picture_score`` (for those whose z-score is below
``likeness_picture_z``: below ``likeness_picture_below`` nearer the package's non-MRI pictures than the folder's
slices); ``not_mri_reason`` (why a ``not_mri`` image is: the pixel rules' reasons, ``likeness`` and ``picture``);
``non_image_dicom``: the header reason; the descriptor slots); ``content_sha256`` (hash of the
decoded pixels); ``error`` (why the image could not be described; it then has no flag).

``leakage.csv``: :data:`LEAKAGE_COLUMNS`, one row per member of every duplicate or
near-duplicate group whose members come from two or more splits.

Paths are written as escaped text (:func:`brainclust.io.outputs.escape_name`). The column lists and
file names are :mod:`brainclust.io.outputs`' (every file schema in one place); they are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from brainclust.checks.descriptors import slot
from brainclust.checks.fitted import FIT_SPLITS, FITTED_PREFIX
from brainclust.checks.flags import FLAGS, PIXEL_FLAGS, join_flags
from brainclust.io.atomic import atomic_write_csv
from brainclust.io.outputs import LEAKAGE_COLUMNS, LEAKAGE_FILE, QUALITY_COLUMNS, QUALITY_FILE, escape_name
from brainclust.io.outputs import QUALITY_SCORE_COLUMNS as SCORE_COLUMNS
from brainclust.terminal import count_text

__all__ = ["LEAKAGE_COLUMNS", "LEAKAGE_FILE", "QUALITY_COLUMNS", "QUALITY_FILE", "SCORE_COLUMNS", "SUMMARY_NAMES",
           "distinct_index", "exclude_mask", "galleries", "leakage_table", "quality_rows", "summary_line",
           "write_leakage", "write_quality"]
#: A group of near duplicates this large is more likely neighbouring slices of one head than copies
#: (docs/checks.md, "Known limit"): the summary line says so.
NEAR_CHAIN = 5
#: How the summary line names each flag.
SUMMARY_NAMES = {"duplicate": "duplicates", "near_duplicate": "near duplicates", "not_mri": "not MRI",
                 "blank": "blank", "noise": "noise", "tiny": "tiny", "non_image_dicom": "non-image DICOM",
                 "outlier": "outliers"}


def _num(x: float, digits: int = 4) -> str:
    return "" if x is None or not np.isfinite(x) else f"{float(x):.{digits}g}"


def write_quality(path, rows: Iterable[dict]) -> Path:
    """Write ``quality.csv`` rows (dicts keyed by :data:`QUALITY_COLUMNS`)."""
    return atomic_write_csv(path, QUALITY_COLUMNS, rows)


def write_leakage(path, rows: Iterable[dict]) -> Path:
    """Write ``leakage.csv`` rows (dicts keyed by :data:`LEAKAGE_COLUMNS`)."""
    return atomic_write_csv(path, LEAKAGE_COLUMNS, rows)


def quality_rows(result) -> list[dict]:
    """``quality.csv`` rows of a :class:`~brainclust.checks.stage.CheckResult`."""
    rows = []
    vec = result.descriptors.vectors
    for i, p in enumerate(result.paths):
        failed = i in result.descriptors.failed
        row = {"path": escape_name(p), "flags": join_flags(result.flags[i]),
               "duplicate_of": escape_name(result.duplicate_of[i]), "split": result.splits[i],
               "near_similarity": _num(result.duplicates.similarity[i]),
               "outlier_z": _num(result.outlier_z[i], 3), "likeness_z": _num(result.likeness_z[i], 3),
               "likeness_role": _role(result, i),
               "picture_score": "" if result.picture_score is None else _num(result.picture_score[i]),
               "not_mri_reason": result.not_mri_reason[i] if result.not_mri_reason else "",
               "non_image_dicom": result.dicom_reasons[i],
               "content_sha256": result.descriptors.pixel_sha256[i],
               "error": result.descriptors.failed.get(i, "")}
        for c in SCORE_COLUMNS:
            row[c] = "" if failed else _num(vec[i, slot(c)])
        rows.append(row)
    return rows


def _role(result, i: int) -> str:
    """``reference`` or ``candidate`` for an image with a likeness z-score (they answer to different thresholds:
    ``likeness_reference_below``, ``likeness_unlike_below``), else ``""``."""
    if not np.isfinite(result.likeness_z[i]):
        return ""
    ref = result.likeness_reference
    return "reference" if ref is not None and ref[i] else "candidate"


def leakage_table(result) -> list[dict]:
    """``leakage.csv`` rows with escaped paths."""
    return [{**r, "group": escape_name(r["group"]), "path": escape_name(r["path"])} for r in result.leakage]


def summary_line(result) -> str:
    """One line for the terminal, e.g. ``checks: 10 duplicates (6 linked across test/train), 24 not MRI, 3 blank``:
    "linked across" counts the images whose group of copies and near copies (``leakage.csv``'s) spans splits."""
    counts = {f: sum(1 for fl in result.flags if f in fl) for f in FLAGS}
    parts = []
    own = [r for r in result.leakage if r["splits"] != FIT_SPLITS]  # the folder's splits; the fit's: below
    crossing = {r["path"] for r in own if r["relation"] != "representative"}
    split_names = "/".join(sorted({s for r in own for s in r["splits"].split(";")}))
    of_fit = sum(1 for d in result.duplicate_of if d.startswith(FITTED_PREFIX))
    for f in FLAGS:
        if not counts[f]:
            continue
        text = f"{counts[f]} {SUMMARY_NAMES[f].removesuffix('s') if counts[f] == 1 else SUMMARY_NAMES[f]}"
        notes = []
        if f in ("duplicate", "near_duplicate"):
            across = sum(1 for i, fl in enumerate(result.flags) if f in fl and result.paths[i] in crossing)
            if across:
                notes.append(f"{across} linked across {split_names}")
        if f == "duplicate" and of_fit:  # predict: exact copies of the images the model was fitted on
            notes.append(f"{count_text(of_fit, 'exact copy', 'exact copies')} of "
                         f"{'an image' if of_fit == 1 else 'images'} the model was fitted on; near copies of those "
                         "are not searched: 'brainclust check' on both folders finds them")
        by_header = sum(1 for why in result.not_mri_reason or () if "modality" in why.split(";"))
        if f == "not_mri" and by_header:
            notes.append(f"{by_header} by the Modality of their DICOM header")
        if f == "near_duplicate":
            largest = max((len(g) for g in result.duplicates.groups() if any(f in result.flags[i] for i in g)),
                          default=0)
            if largest >= NEAR_CHAIN:
                notes.append(f"groups of up to {largest}: neighbouring slices of one head match too")
        parts.append(text + (f" ({'; '.join(notes)})" if notes else ""))
    if n_unread := len(result.descriptors.failed) + result.n_undecoded:
        parts.append(f"{n_unread} not checked (unreadable)")
    few = few_levels(result)
    note = (f"; {few} of {len(result.paths)} hold {result.thresholds.label_levels} grey levels or fewer (masks or "
            "posterised slices: not a flag; grey_levels in quality.csv)") if few else ""
    if not parts:
        return f"checks: {count_text(len(result.paths), 'image')}, nothing flagged{note}"
    return "checks: " + ", ".join(parts) + note


def few_levels(result) -> int:
    """Images no flag explains that hold at most ``label_levels`` grey levels: a folder of masks or of
    posterised slices (every score on them is a score on masks). Said in the summary, never a flag: real
    8-bit files can hold so few levels (docs/checks.md)."""
    levels = result.descriptors.vectors[:, slot("grey_levels")]
    return sum(1 for i, fl in enumerate(result.flags) if i not in result.descriptors.failed and not fl & PIXEL_FLAGS
               and levels[i] <= result.thresholds.label_levels)


def galleries(result, limit: int = 48) -> dict[str, list]:
    """The report's galleries: per flag, at most ``limit`` paths in scan order; for ``duplicate`` and
    ``near_duplicate``, at most ``limit`` groups, each a list of paths (representative first)."""
    out: dict[str, list] = {}
    groups = result.duplicates.groups()
    for f in FLAGS:
        if f in ("duplicate", "near_duplicate"):
            chosen = [g for g in groups if any(f in result.flags[i] for i in g)][:limit]
            out[f] = [[result.paths[i] for i in g] for g in chosen]
        else:
            out[f] = [p for p, fl in zip(result.paths, result.flags) if f in fl][:limit]
    return out


def exclude_mask(flags: list[frozenset[str]], exclude: Iterable[str]) -> np.ndarray:
    """Boolean mask, True for images that carry any of the ``exclude`` flags (``--exclude``)."""
    ex = frozenset(exclude)
    return np.array([bool(fl & ex) for fl in flags], bool)


def distinct_index(paths: list[str], flags: list[frozenset], duplicate_of: list[str],
                   use: np.ndarray | None = None) -> np.ndarray:
    """Indices of one image per decoded content (scores over distinct images): in order, the first of each
    content among ``use`` (a mask; default every image). A ``duplicate``'s content is its ``duplicate_of``'s, so
    when the first image of a content is not used (set aside as a ``near_duplicate``), its next copy stands for it.
    """
    seen: set[str] = set()
    out: list[int] = []
    for i in range(len(paths)) if use is None else np.flatnonzero(use):
        content = duplicate_of[i] if "duplicate" in flags[i] else paths[i]
        if content not in seen:
            seen.add(content)
            out.append(int(i))
    return np.asarray(out, dtype=np.int64)
