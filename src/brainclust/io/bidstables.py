"""The files of a BIDS data set read as metadata, never as images: JSON sidecars (:func:`read_json`) and TSV
tables (:func:`read_tsv`; :func:`keyed_table`: rows by their key column, with only the columns the privacy rules
of :mod:`brainclust.io.privacy` keep). Size-capped; an unreadable file is ``None`` (counted by the caller), never an
error. Used by :mod:`brainclust.io.bids` and for same-stem sidecars by :mod:`brainclust.io.scanmeta`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

from brainclust.io import privacy
from brainclust.io.content import read_head

log = logging.getLogger(__name__)

#: Largest sidecar read (bytes); larger ones are counted as unreadable.
MAX_SIDECAR_BYTES = 1 << 20
#: Largest participants/sessions table read (bytes).
MAX_TABLE_BYTES = 64 << 20


def read_json(path: Path) -> dict | None:
    """A sidecar's JSON object, or ``None`` when it is too large, unreadable (a FIFO or a device too:
    :func:`~brainclust.io.content.read_head`) or not an object."""
    raw = read_head(path, MAX_SIDECAR_BYTES + 1)
    if raw is None or len(raw) > MAX_SIDECAR_BYTES:
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return data if isinstance(data, dict) else None


def read_tsv(path: Path) -> tuple[list[str], list[dict[str, str]]] | None:
    """A TSV table (header, rows), or ``None`` when unreadable (a FIFO or a device too) or too large."""
    raw = read_head(path, MAX_TABLE_BYTES + 1)
    if raw is None or len(raw) > MAX_TABLE_BYTES:
        return None
    try:
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline=""), delimiter="\t")
        rows = [dict(r) for r in reader]
        return [h.strip() for h in (reader.fieldnames or [])], rows
    except (UnicodeDecodeError, csv.Error):
        return None


def keyed_table(path: Path, key: str, what: str) -> dict[str, dict[str, str]]:
    """Rows of a BIDS TSV by their ``key`` column, with only the columns the privacy rules keep."""
    table = read_tsv(path)
    if table is None:
        if path.exists():
            log.warning("BIDS: %s could not be read; its columns are not used", what)
        return {}
    header, rows = table
    if key not in header:
        log.warning("BIDS: %s has no '%s' column; its columns are not used", what, key)
        return {}
    keep = []
    for col in header:
        if col == key or not col:
            continue
        values = [(r.get(col) or "").strip() for r in rows]
        reason = privacy.phi_reason(col, values)
        if reason:
            log.warning("BIDS: column '%s' of %s not used: %s", col, what, reason)
        else:
            keep.append(col)
    out: dict[str, dict[str, str]] = {}
    for col in keep:
        values = privacy.clean_column(col, [(r.get(col) or "").strip() for r in rows])
        for r, v in zip(rows, values):
            k = (r.get(key) or "").strip()
            if k:
                out.setdefault(k, {})[col] = "" if privacy.is_missing(v) else v
    for r in rows:
        k = (r.get(key) or "").strip()
        if k:
            out.setdefault(k, {})
    return out
