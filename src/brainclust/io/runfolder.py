"""A finished run folder read back as untrusted input: ``manifest.json`` and ``assignments.csv`` checked.

``export``, ``report`` and ``view`` read a run folder that anyone may have edited. :func:`read_run`
reads both files and checks what every reader relies on: the manifest is a JSON object naming an
absolute input folder; ``assignments.csv`` holds every fixed column once, as many rows as the
manifest records, each path once and not empty, each ``cluster`` -1 or an int32 id >= 0. Any breach is one
:class:`~brainclust.errors.ModelFileError` line naming the file. Whether a row's path stays inside
the input folder is checked where it is opened (:func:`brainclust.io.atomic.safe_join`).

The ``input`` folder is untrusted too: edited to ``/``, it would let any readable image reach a
report or an export. So an input file is only ever used when its bytes hash to the SHA-256 the run
recorded for the row (:func:`recorded_hashes`, from ``embeddings.parquet``; ``slices.csv`` for the
slices of a unit run): whoever edits a run folder can only show files whose exact content they
already know.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainclust.errors import ModelFileError
from brainclust.io.outputs import (ASSIGNMENT_COLUMNS, CHECK_PAGE, MODEL_FILES, RunFolder, escape_name,
                                   read_assignments, read_json, unescape_name)
from brainclust.terminal import count_text

__all__ = ["RunTables", "check_assignment_columns", "check_row_count", "check_run_dir", "input_root", "read_manifest",
           "read_run", "recorded_hashes"]

log = logging.getLogger(__name__)


def check_run_dir(path, command: str) -> None:
    """One line, before anything is read, when ``path``, given to ``brainclust COMMAND`` as a run folder, is no
    folder (it does not exist, or is a file), a ``brainclust check``'s or ``brainclust demo``'s folder (its run is
    ``results/``) or the ``model/`` folder of a run: until 2026-12-07 predict, view, export and report each said it
    their own way, e.g. predict of a misspelt run
    ``'my_rn' is not a finished brainclust run: my_rn/model/config.json is missing``."""
    p, shown = Path(path), escape_name(str(path))
    head = f"'{shown}' is not a finished brainclust run"
    need = f"'brainclust {command}' needs the --out folder of a 'brainclust run'"
    try:
        _check_run_dir(p, shown, head, need)
    except OSError as exc:  # a folder above it, or it, that cannot be entered: pathlib raises all but ENOENT
        raise ModelFileError(f"'{shown}' cannot be read ({exc.strerror or exc})") from None


def _check_run_dir(p: Path, shown: str, head: str, need: str) -> None:
    if not p.exists():
        raise ModelFileError(f"{head}: it does not exist; {need}")
    if not p.is_dir():
        raise ModelFileError(f"{head}: it is a file, not a folder; {need}")
    folder = RunFolder(p)
    if (p / CHECK_PAGE).is_file() and not folder.assignments.is_file():
        raise ModelFileError(f"'{shown}' is the folder of a 'brainclust check' (its page is {CHECK_PAGE}, written with "
                             f"it); {need}")
    if not folder.manifest.is_file() and p.name == "model" and (p / MODEL_FILES["config"]).is_file():
        raise ModelFileError(f"'{shown}' looks like the model/ folder of a run: pass the run folder "
                             f"'{escape_name(str(p.parent))}', not its model/ folder")
    if not folder.manifest.is_file() and (p / "results" / "manifest.json").is_file():
        raise ModelFileError(f"{head} (no manifest.json); 'brainclust demo' writes its run into "
                             f"'{escape_name(str(p / 'results'))}': give that folder")


def read_manifest(folder: RunFolder) -> dict:
    """``manifest.json`` of a run folder, which must hold a JSON object (ModelFileError otherwise)."""
    m = read_json(folder.manifest, folder.root)
    if not isinstance(m, dict):
        raise ModelFileError(f"'{folder.manifest}' is damaged: expected a JSON object, got {type(m).__name__}")
    return m


def input_root(folder: RunFolder, manifest: Mapping, required: bool = True) -> Path | None:
    """The input folder ``manifest.json`` records (``input``): an absolute path; ``None`` when absent and not
    ``required``. Only the name is checked here (the folder may be gone)."""
    inp = manifest.get("input")
    if inp is None and not required:
        return None
    if not isinstance(inp, str) or not inp or "\x00" in inp:
        raise ModelFileError(f"'{folder.manifest}': field 'input' must name the input folder, got {inp!r:.60}")
    root = Path(unescape_name(inp))
    if not root.is_absolute():
        raise ModelFileError(f"'{folder.manifest}': field 'input' must be an absolute path, got '{inp:.200}'")
    return root


def check_assignment_columns(header: Sequence[str] | None, path) -> None:
    """The header of ``assignments.csv`` must hold every column of :data:`ASSIGNMENT_COLUMNS`, each name once."""
    header = list(header or ())
    missing = [c for c in ASSIGNMENT_COLUMNS if c not in header]
    if missing or len(set(header)) != len(header):
        what = (f"lacks {count_text(len(missing), 'column')} ({', '.join(missing)})" if missing
                else "repeats a column name")
        raise ModelFileError(f"'{path}' {what}: not an assignments file written by brainclust, or edited")


def check_row_count(n_rows: int, manifest: Mapping, path) -> None:
    """``assignments.csv`` must have the rows ``manifest.json`` records (when it records them): ``n_images``,
    or for a unit run (``--unit``) ``units.n_rows``."""
    units = manifest.get("units")
    n, what = (units.get("n_rows"), "rows") if isinstance(units, Mapping) else (manifest.get("n_images"), "images")
    if isinstance(n, int) and not isinstance(n, bool) and n != n_rows:
        raise ModelFileError(f"'{path}' has {n_rows} rows but manifest.json records {n} {what}: the file is "
                             "truncated or edited, or the outputs come from different runs")


@dataclass
class RunTables:
    """What :func:`read_run` read and checked: ``manifest.json``, the rows of ``assignments.csv`` (text;
    ``cluster`` holds an integer) and the input folder (``None`` when not required and not recorded)."""

    folder: RunFolder
    manifest: dict
    rows: list[dict]
    input_root: Path | None
    #: the SHA-256 of each row's file (:func:`recorded_hashes`); ``None``: no input file may be opened
    hashes: np.ndarray | None = None


def _column_bytes(meta, names) -> int:
    """Uncompressed bytes the parquet metadata ``meta`` declares for the columns ``names``."""
    total = 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            col = group.column(c)
            if col.path_in_schema in names:
                total += max(int(col.total_uncompressed_size), 0)
    return total


def recorded_hashes(folder: RunFolder, paths: Sequence[str], warn: bool = True) -> np.ndarray | None:
    """The SHA-256 the run recorded for each row's file (``embeddings.parquet``, column ``sha256``), as
    ``S64`` bytes aligned with ``paths`` (the rows of ``assignments.csv``); empty for a row whose path is
    not the one at its place in ``embeddings.parquet`` (edited). ``None``, with a warning, when the file
    is missing or damaged or has other rows: then no input file is opened."""
    import pyarrow.parquet as pq

    why = "" if folder.embeddings.is_file() else "it is missing or not a regular file"
    table = None
    try:
        meta = None if why else pq.ParquetFile(folder.embeddings).metadata  # sized before anything is read
        if meta is not None and meta.num_rows != len(paths):
            why = f"it has {meta.num_rows} rows for the {len(paths)} of assignments.csv"
        elif meta is not None and _column_bytes(meta, ("path", "sha256")) > 4096 * (len(paths) + 1):
            why = "its path and sha256 columns declare far more bytes than such rows hold"
        elif meta is not None:
            table = pq.read_table(folder.embeddings, columns=["path", "sha256"])
    except Exception as exc:  # noqa: BLE001 - a damaged parquet file raises many types (MemoryError too)
        why = f"it cannot be read ({type(exc).__name__})"
    if why:
        log.log(logging.WARNING if warn else logging.DEBUG, "the run's %s: %s, so the images' content cannot be "
                "checked against the run; none is shown or exported", folder.embeddings.name, why)  # not the path
        # of the staged copy a report rebuild reads
        return None
    same = np.array([a == b for a, b in zip(table.column("path").to_pylist(), paths)], dtype=bool)
    hashes = np.array([h if isinstance(h, str) and len(h) == 64 and h.isascii() else ""
                       for h in table.column("sha256").to_pylist()], dtype="S64")
    hashes[~same] = b""
    return hashes


def read_run(out_dir, *, need_input: bool = True, warn: bool = True) -> RunTables:
    """``manifest.json`` and ``assignments.csv`` of a finished run (or prediction) folder, read as untrusted
    input (the rules are in the module docstring), and the files' recorded hashes when an input folder is
    recorded; any breach is a one-line ModelFileError."""
    folder = RunFolder(out_dir)
    if not folder.root.is_dir():
        raise ModelFileError(f"'{folder.root}' is not a finished brainclust run: it is not a folder")
    manifest = read_manifest(folder)
    root = input_root(folder, manifest, required=need_input)
    path = folder.assignments
    rows = read_assignments(path, folder.root)
    if rows:
        check_assignment_columns(list(rows[0]), path)
    else:
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            check_assignment_columns(next(csv.reader(fh), None), path)
    check_row_count(len(rows), manifest, path)
    seen: set[str] = set()
    for i, r in enumerate(rows, start=1):
        if r["path"] in seen:
            raise ModelFileError(f"'{path}' row {i}: the path {r['path']!r:.200} is listed twice")
        seen.add(r["path"])
        text = r["cluster"]  # ASCII digits only: int() also takes " 1", "1_0" and a full-width "１"
        cluster = int(text) if re.fullmatch(r"-?[0-9]{1,10}", text) else None
        if cluster is None or not -1 <= cluster < 2**31 - 1:
            raise ModelFileError(f"'{path}' row {i}: 'cluster' must be -1 (noise) or a cluster id >= 0, "
                                 f"got {r['cluster']!r:.40}")
        if not r["path"]:
            raise ModelFileError(f"'{path}' row {i}: the 'path' is empty")
    hashes = recorded_hashes(folder, [r["path"] for r in rows], warn) if root is not None else None
    return RunTables(folder, manifest, rows, root, hashes)
