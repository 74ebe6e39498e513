"""``slices.csv``: the slices of every unit of a unit run (``--unit volume|series|subject``).

``assignments.csv`` of such a run has one row per unit (``path`` = ``unit`` = the unit id);
``slices.csv`` lists every slice of every unit in scan order (:data:`SLICE_COLUMNS`), so the report
can show a unit as a strip of its slices and ``export`` can write every image of a unit. Written by
the run (:func:`brainclust.features.unitpool.slice_rows`), read by :func:`read_slices`.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

log = logging.getLogger(__name__)

#: Columns of ``slices.csv``: the unit id, then the slice as ``assignments.csv`` would name it.
SLICE_COLUMNS = ["unit", "path", "name", "type", "width", "height", "sha256"]


def read_slices(path, max_rows: int = 5_000_000) -> dict[str, list[dict]] | None:
    """``slices.csv`` (unit runs) as unit id -> its slice rows (``path``, ``name``, ``type``, ``sha256``; text, in file
    order), or ``None`` when there is none or it cannot be read (a warning). Untrusted input: the paths are
    checked by whoever opens them."""
    path = Path(path)
    if not path.is_file():
        return None
    out: dict[str, list[dict]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for i, row in enumerate(csv.DictReader(fh)):
                if i >= max_rows:
                    log.warning("'%s' has more than %d rows; the rest is not read", path, max_rows)
                    break
                out.setdefault(str(row.get("unit") or ""), []).append(
                    {k: str(row.get(k) or "") for k in ("path", "name", "type", "sha256")})
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        log.warning("'%s' cannot be read (%s); the units' slices are not used", path, exc)
        return None
    return out
