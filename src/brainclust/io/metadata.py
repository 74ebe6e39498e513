"""Per-record metadata as table columns, and the ``--metadata FILE`` join.

Every :class:`~brainclust.io.scan.ImageRecord` carries ``meta``: a mapping of
column name -> value (str, int or float) built by the scan from the folder, the
BIDS name, sidecars, ``participants.tsv``, ``sessions.tsv`` and the DICOM/NIfTI
headers (all through :mod:`brainclust.io.privacy`). :func:`record_columns` turns
a list of records into a table (column -> one value per record, ``None`` when a
record has no value) for ``assignments.csv`` and ``embeddings.parquet``.

Column names, order and text (one rule, :mod:`brainclust.io.outputs`)
--------------------------------------------------------------------
Metadata never overwrites a column of the run itself (:data:`RESERVED`: the
columns of ``assignments.csv`` -- ``path``, ``name``, ``type``, ``size``,
``width``, ``height``, ``label``, ``cluster``, ``level_1`` ... ``level_10``,
``unit``, ``n_slices`` -- and ``sha256``, ``frame``, ``embedding``,
``features``, ``abspath``): such a metadata column is renamed with the prefix
``meta_`` (``meta_label``; :func:`brainclust.io.outputs.column_name`), with one
warning. Metadata columns follow the run's own columns in order of first
appearance over the rows; a missing value is an empty cell, any other value its
text escaped like a file name (:func:`brainclust.io.outputs.meta_text`).
Between metadata sources, the explicit ``--metadata`` table wins over what the
scan found (warning naming the column).

The metadata table (``--metadata FILE``)
----------------------------------------
CSV or TSV (tab-separated when the name ends in ``.tsv``/``.tab`` or the header
line holds a tab), UTF-8, one header line. One column is the key; its kind
decides what it is compared with in each row of the run:

===========  ==================================================  ====================================
kind         key column names (case-insensitive)                 matches
===========  ==================================================  ====================================
``path``     ``path``, ``relative_path``, ``filepath``            the row's path relative to DATA, with
                                                                  or without its ``#axial=45`` part, or
                                                                  the row's unit id
``unit``     ``unit``, ``unit_id``                                the row's unit id
``name``     ``name``, ``file``, ``filename``, ``file_name``      the file name (last path component)
``subject``  ``subject``, ``participant_id``, ``participant``,    the row's ``subject`` column (BIDS
             ``sub``                                              ``sub-01``), else its unit id
===========  ==================================================  ====================================

Without an explicit key, every column with one of these names is tried and the
one with the most matches is used. With ``key=COLUMN`` of another name, every
kind is tried for it. Paths in the table may use ``\\`` or start with ``./``;
a ``sub-01`` subject also matches ``01``. Values: the text as written, empty
(or ``n/a``, ``nan``) = missing. The other columns pass
:func:`brainclust.io.privacy.phi_reason` (a column that may hold PHI is dropped
with a warning).

Errors (:class:`~brainclust.errors.InputError`, one line naming the file): the
file cannot be read, has no header or no key column, the key has duplicate
values, or no row of the run matches. A warning gives the count of rows of the
run without a match (their columns are empty) and of table rows that match
nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from brainclust.errors import InputError, ParameterError
from brainclust.io import privacy
from brainclust.io.outputs import (META_PREFIX, RESERVED, column_name, escape_name, meta_keys, meta_text,
                                   output_name, unescape_name)
from brainclust.io.pathfilter import folder_of
from brainclust.terminal import count_text

__all__ = ["RESERVED", "PREFIX", "KEY_NAMES", "column_name", "folder_of", "record_columns", "typed_columns",
           "text_columns", "overlay", "merge_columns", "MetadataTable", "read_table", "JoinResult", "join_table",
           "record_rows", "check_key"]

log = logging.getLogger(__name__)

#: Metadata with a name of :data:`RESERVED` (the run's own columns, :mod:`brainclust.io.outputs`) gets this prefix.
PREFIX = META_PREFIX
#: Key column names of each kind (lower case), in the order ties are broken.
KEY_NAMES = {"path": ("path", "relative_path", "filepath"), "unit": ("unit", "unit_id"),
             "name": ("name", "file", "filename", "file_name"),
             "subject": ("subject", "participant_id", "participant", "sub")}
#: Largest metadata table read (bytes).
MAX_TABLE_BYTES = 256 << 20


def record_columns(records: Sequence) -> dict[str, list]:
    """The metadata of ``records`` as columns: name -> one value per record (``None`` when absent).

    Columns appear in the records' order (:func:`~brainclust.io.outputs.meta_keys`); reserved names are prefixed
    (:func:`column_name`). ``records`` are ImageRecords (anything with ``meta``).
    """
    order = {k: output_name(k) for k in meta_keys(records)}
    renamed = {k for k, new in order.items() if new != k}
    for k in sorted(renamed):
        log.warning("metadata column '%s' has the name of a run column; written as '%s'", k, order[k])
    return {new: [(getattr(r, "meta", None) or {}).get(old) for r in records] for old, new in order.items()}


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def typed_columns(columns: Mapping[str, Sequence]) -> dict[str, tuple[str, list]]:
    """Each column with its type for ``embeddings.parquet``: ``("float64", floats with None)`` when every
    present value is a number, else ``("string", text with None)``."""
    out: dict[str, tuple[str, list]] = {}
    for name, values in columns.items():
        present = [v for v in values if not privacy.is_missing(v)]
        if present and all(_is_number(v) for v in present):
            out[name] = ("float64", [None if privacy.is_missing(v) else float(v) for v in values])
        else:
            out[name] = ("string", [None if privacy.is_missing(v) else str(v) for v in values])
    return out


def text_columns(columns: Mapping[str, Sequence]) -> dict[str, list[str]]:
    """Each column as the text ``assignments.csv`` holds (missing -> ``""``; numbers as ``str``)."""
    return {name: [meta_text(v) for v in values] for name, values in columns.items()}


def overlay(old: Sequence, new: Sequence, source: str, name: str) -> list:
    """A column of a table laid over the run's column of the same name: the table's value where it has one,
    the run's where it has none (a row the table does not list, or an empty cell); says how many of each."""
    out = [o if privacy.is_missing(n) else n for o, n in zip(old, new)]
    kept = sum(privacy.is_missing(n) and not privacy.is_missing(o) for o, n in zip(old, new))
    log.warning("%s: column '%s' replaces the run's column of the same name%s", source, name,
                f" (its own value kept in {count_text(kept, 'row')} the table gives none)" if kept else "")
    return out


def merge_columns(base: Mapping[str, list], new: Mapping[str, list], source: str = "--metadata") -> dict[str, list]:
    """``base`` with the columns of ``new`` added; a column of ``new`` with a name in ``base`` is laid over it
    (:func:`overlay`)."""
    out = dict(base)
    for k, v in new.items():
        name = column_name(k)
        if name != str(k).strip():
            why = (f"the run writes its own '{k}'" if str(k).strip() in RESERVED else
                   "a spreadsheet would run the name as a formula")
            log.warning("%s: column '%s' is written as '%s': %s", source, k, name, why)
        out[name] = overlay(out[name], v, source, name) if name in out else list(v)
    return out


@dataclass
class MetadataTable:
    """A metadata file read by :func:`read_table`: its header and rows (text), and the SHA-256 of the bytes
    they were read from."""

    path: str
    header: list[str]
    rows: list[dict[str, str]]
    sha256: str = ""


def read_table(path: str | Path, option: str = "--metadata", rows: str = "one row per key") -> MetadataTable:
    """Read a CSV or TSV metadata file (see the module docstring); ``option`` names it in errors (``--split-table``
    reads its table here too), ``rows`` what its rows are (said of an empty file).

    Raises
    ------
    InputError
        If the file is missing, unreadable, too large, empty or has a duplicate column name.
    """
    p = Path(path)
    try:
        if p.exists() and not p.is_file():  # /dev/zero, a FIFO: never read (it would not end)
            raise InputError(f"{option} '{path}': not a regular file")
        if p.stat().st_size > MAX_TABLE_BYTES:
            raise InputError(f"{option} '{path}': larger than {MAX_TABLE_BYTES >> 20} MiB")
        raw = p.read_bytes()  # hashed (report --metadata records it), then read as read_text would
        text = raw.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")
    except FileNotFoundError:
        raise InputError(f"{option} '{path}': file not found") from None
    except UnicodeDecodeError:
        raise InputError(f"{option} '{path}': not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"{option} '{path}': cannot read ({exc.strerror or exc})") from None
    first = text.split("\n", 1)[0]
    tab = p.name.lower().endswith((".tsv", ".tab", ".tsv.txt")) or "\t" in first
    try:
        # the csv module splits the records itself: a quoted newline stays in its cell, and U+2028, \x0c or \x85
        # (line breaks to str.splitlines) are text (until 2026-12-07 they cut a row in two without a word)
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if tab else ",", strict=True)
        numbered = [(reader.line_num, row) for row in reader]  # the line each record ends on
        lines = [row for _, row in numbered]
    except csv.Error as exc:
        raise InputError(f"{option} '{path}': not a valid {'TSV' if tab else 'CSV'} file ({exc})") from None
    if not lines or not any(h.strip() for h in lines[0]):
        raise InputError(f"{option} '{path}': empty; expected a header line and {rows}")
    header = [h.strip() for h in lines[0]]
    if any(privacy.value_like(h) for h in header):  # the first row of a table without a header: never shown
        raise InputError(f"{option} '{path}': its first line reads as data (a date, a long number or an "
                         "identifier where a column name belongs); add a header line of column names")
    dupes = sorted({h for h in header if h and header.count(h) > 1})
    if dupes:
        raise InputError(f"{option} '{path}': column name '{dupes[0]}' appears more than once in the header")
    rows = []
    for n, line in numbered[1:]:
        if not any(c.strip() for c in line):
            continue
        if any(c.strip() for c in line[len(header):]):  # a value would be lost (trailing empty fields are not)
            raise InputError(f"{option} '{path}': line {n} has {len(line)} fields and the header {len(header)} "
                             "(a value holding the delimiter needs quotes)")
        rows.append({h: (line[i].strip() if i < len(line) else "") for i, h in enumerate(header) if h})
    return MetadataTable(str(path), [h for h in header if h], rows, hashlib.sha256(raw).hexdigest())


def _norm_path(text: str) -> str:
    t = text.strip().replace("\\", "/")
    while t.startswith("./"):
        t = t[2:]
    return escape_name(t)


def _row_keys(row: Mapping, kind: str) -> list[str]:
    """The values of a run row a key of ``kind`` may equal (first match wins)."""
    path = escape_name(unescape_name(str(row.get("path") or "")))  # as escaped now, in a run folder of any age
    unit = escape_name(unescape_name(str(row.get("unit") or "")))
    if kind == "path":
        return [k for k in (path, path.split("#", 1)[0], unit) if k]
    if kind == "unit":
        return [unit] if unit else []
    if kind == "name":  # the file name escaped on its own (a path's first character may be escaped, see escape_name)
        base = escape_name(unescape_name(path.split("#", 1)[0]).rsplit("/", 1)[-1])
        return [base] if base else []
    subject = str(row.get("subject") or "")
    return [k for k in (subject, unit) if k]


def _table_key(value: str, kind: str) -> list[str]:
    if kind == "path":
        return [_norm_path(value)]
    if kind == "subject":
        v = value.strip()
        return [v, f"sub-{v}"] if not v.startswith("sub-") else [v]
    if kind in ("name", "unit"):
        return [escape_name(value.strip())]
    return [value.strip()]


@dataclass
class JoinResult:
    """What :func:`join_table` did: the new columns (one value per run row) and the counts."""

    columns: dict[str, list[str]]
    key: str
    kind: str
    n_matched: int
    n_rows: int
    n_unused: int
    dropped: list[str]


def _match(table: MetadataTable, key: str, kind: str, rows: Sequence[Mapping]) -> tuple[list[int | None], int]:
    index: dict[str, int] = {}
    for i, trow in enumerate(table.rows):
        for k in _table_key(trow.get(key, ""), kind):
            if k:
                index.setdefault(k, i)
    hit: list[int | None] = []
    used: set[int] = set()
    for row in rows:
        j = next((index[k] for k in _row_keys(row, kind) if k in index), None)
        hit.append(j)
        if j is not None:
            used.add(j)
    return hit, len(used)


def _warn_shared_names(table: MetadataTable, col: str, rows: Sequence[Mapping], hit: list) -> None:
    """A file-name key that names files in several folders: every one of those files gets the row (said once)."""
    files: dict[int, set[str]] = {}
    for r, j in zip(rows, hit):
        if j is not None:
            files.setdefault(j, set()).add(str(r.get("path") or "").split("#", 1)[0])
    shared = sorted(table.rows[j].get(col, "") for j, f in files.items() if len(f) > 1)
    if shared:
        log.warning("--metadata '%s': key column '%s' has %s naming files in more than one folder (e.g. "
                    "'%s'); each of those files gets the same row: key on the path to tell them apart",
                    table.path, col, count_text(len(shared), "value"), escape_name(shared[0]))


def join_table(table: MetadataTable, rows: Sequence[Mapping], key: str | None = None) -> JoinResult:
    """Join a metadata table onto the run's rows (dicts with ``path`` and, when present, ``unit``, ``subject``).

    Parameters
    ----------
    table : MetadataTable
    rows : sequence of mappings
        One per row of the run (``assignments.csv`` rows, or :func:`record_rows` of the records).
    key : str or None
        The table's key column; ``None`` chooses it (module docstring).

    Returns
    -------
    JoinResult
        ``columns``: every kept non-key column, one value per row (``""`` without a match).

    Raises
    ------
    InputError
        No key column, duplicate key values, or no row matches.
    """
    lower = {h.lower(): h for h in table.header}
    if key is not None:
        if key not in table.header:
            raise InputError(f"--metadata '{table.path}': key column '{key}' not found; columns: "
                             f"{', '.join(table.header[:20])}")
        kinds = [k for k, names in KEY_NAMES.items() if key.lower() in names] or list(KEY_NAMES)
        candidates = [(key, kind) for kind in kinds]
    else:
        candidates = [(lower[n], kind) for kind, names in KEY_NAMES.items() for n in names if n in lower]
        if not candidates:
            accepted = ", ".join(n for names in KEY_NAMES.values() for n in names)
            raise InputError(f"--metadata '{table.path}': no key column; name one of: {accepted} "
                             f"(columns: {', '.join(table.header[:20])})")
    best = None
    for col, kind in candidates:
        hit, used = _match(table, col, kind, rows)
        n = sum(h is not None for h in hit)
        if best is None or n > best[0]:
            best = (n, col, kind, hit, used)
    n, col, kind, hit, used = best
    values = [r.get(col, "").strip() for r in table.rows]
    seen: set[str] = set()
    for i, v in enumerate(values):
        if privacy.is_missing(v):
            continue
        if v in seen:
            present = [x for x in values if not privacy.is_missing(x)]
            raise InputError(f"--metadata '{table.path}': key column '{col}' has "
                             f"{count_text(len(present) - len(set(present)), 'duplicate value')} "
                             f"(first at line {i + 2}); each key must appear once")
        seen.add(v)
    if n == 0:  # every kind tried for that column is said, with the run's own first path as the example
        tried = [_describe(k, rows) for c, k in candidates if c == col]
        raise InputError(f"--metadata '{table.path}': no row of the run matches key column '{col}' "
                         f"(compared as {', '.join(tried[:-1]) + ' and ' if len(tried) > 1 else ''}{tried[-1]})")
    if kind == "name":
        _warn_shared_names(table, col, rows, hit)
    columns: dict[str, list[str]] = {}
    dropped: list[str] = []
    for h in table.header:
        if h == col:
            continue
        values = [table.rows[j].get(h, "") if j is not None else "" for j in hit]
        reason = privacy.phi_reason(h, [r.get(h, "") for r in table.rows])
        if reason:
            log.warning("--metadata '%s': column '%s' not used: %s", table.path, h, reason)
            dropped.append(h)
            continue
        values = privacy.clean_column(h, values)
        columns[h] = ["" if privacy.is_missing(v) else v for v in values]
    unmatched, unused = len(rows) - n, len(table.rows) - used
    if unmatched or unused:
        log.warning("--metadata '%s': %d of %d rows of the run have no match (their columns are empty); "
                    "no match for %s", table.path, unmatched, len(rows), count_text(unused, "table row"))
    return JoinResult(columns, col, kind, n, len(rows), unused, dropped)


def _describe(kind: str, rows: Sequence[Mapping]) -> str:
    example = str(rows[0].get("path", "")).split("#")[0] if rows else ""
    return {"path": "paths relative to the data folder" + (f", e.g. {example}" if example else ""),
            "unit": "unit ids of the run", "name": "file names",
            "subject": "BIDS subjects (sub-01) or unit ids"}[kind]


def record_rows(records: Sequence, units: Sequence[str] | None = None) -> list[dict[str, str]]:
    """The join keys of records as rows: ``path`` (escaped), ``unit`` (when given) and ``subject``."""
    out = []
    for i, r in enumerate(records):
        row = {"path": escape_name(r.path)}
        subj = (getattr(r, "meta", None) or {}).get("subject")
        if subj:
            row["subject"] = str(subj)
        if units is not None:
            row["unit"] = escape_name(str(units[i]))
        out.append(row)
    return out


def check_key(key) -> str | None:
    """Validate a ``--metadata-key`` value (a column name or ``None``)."""
    if key is None:
        return None
    if not isinstance(key, str) or not key.strip():
        raise ParameterError(f"--metadata-key: expected a column name, got {key!r}")
    return key.strip()
