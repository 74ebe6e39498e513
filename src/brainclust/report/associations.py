"""``associations.csv`` read back for the report: what the clusters follow, best first.

Another stage may write ``OUT/associations.csv`` with the columns ``column``,
``level``, ``score`` and ``p_value``: how strongly each metadata column of
``assignments.csv`` (``site``, ``plane``, a data-check flag...) goes with the
clusters at a tree level. The report shows it under the scores when the file
exists. The file is untrusted input: values reach the page only through
autoescaping, numbers are parsed (a bad one shows as blank) and at most
:data:`MAX_ROWS` rows are shown (the page says how many there are).
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

from brainclust.cluster.follows import STATISTIC_SHOWN, headline, tree_summary

log = logging.getLogger(__name__)

#: Rows of the ranking shown.
MAX_ROWS = 40
COLUMNS = ("column", "level", "score", "p_value")
#: What the headline needs (the columns :mod:`brainclust.cluster.associations` writes).
HEADLINE_COLUMNS = ("column", "level", "score", "p_value", "statistic", "same_as")
#: Rows of associations.csv read for the headline at most (one per column and level).
MAX_READ = 100_000


def _num(text) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def read_associations(path) -> list[dict] | None:
    """The ranking of :func:`ranked_rows` cut to its first :data:`MAX_ROWS` rows, or ``None`` when there is no
    such file."""
    rows = ranked_rows(path)
    return None if rows is None else rows[:MAX_ROWS]


def ranking(path) -> dict:
    """The report's context of the ranking: ``associations`` (:func:`read_associations`), ``n_associations`` (the
    rows before the cut: the page says when it shows fewer) and ``same_rows`` (:func:`folded_rows` of those shown)."""
    rows = ranked_rows(path)
    shown = None if rows is None else rows[:MAX_ROWS]
    return {"associations": shown, "n_associations": len(rows or ()), "same_rows": folded_rows(shown)}


def ranked_rows(path) -> list[dict] | None:
    """The whole ranking (the ``cluster`` level first, then score descending), or ``None`` when there is no
    such file.

    Each row: ``column``, ``level`` and ``statistic`` (``AMI``, ``AMI, quintiles``, or ``ε²`` in older runs;
    text), ``score`` and ``p_value``
    (float or ``None``); the columns that are the same as another are folded into its row (:func:`fold_same`),
    before the cap. A file without the expected columns gives ``[]`` and a warning.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not set(COLUMNS) <= set(reader.fieldnames or ()):
                log.warning("report: '%s' lacks the columns %s; not shown", path, ", ".join(COLUMNS))
                return []
            rows = [{"column": str(r.get("column") or ""), "level": str(r.get("level") or ""),
                     "statistic": "".join(STATISTIC_SHOWN.get(str(r.get("statistic")), ("", ""))) + (
                         f", within {r['within']}" if r.get("within") else ""),  # older files lack within
                     "score": _num(r.get("score")), "p_value": _num(r.get("p_value")),
                     "same_as": str(r.get("same_as") or "")} for r in reader]  # older files lack same_as
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        log.warning("report: '%s' cannot be read (%s); not shown", path, exc)
        return []
    rows = fold_same(rows)
    # the clusters' ranking first, then the tree levels' strongest associations
    rows.sort(key=lambda r: (r["score"] is None, r["level"] != "cluster", -(r["score"] or 0.0), r["column"],
                             r["level"]))
    return rows


def fold_same(rows: list[dict]) -> list[dict]:
    """The rows of a column that partitions the rows exactly as another (``same_as``: ``label`` and ``folder``
    with ``--labels-from-folders``, ``subject`` and ``folder`` in a BIDS set) folded into that column's row of
    the same level, whose ``column`` then reads ``folder (= label)``: the scores are the same. A row whose
    ``same_as`` names no row of its level stays as it is. The ``same_as`` key is dropped."""
    first = {(r["column"], r["level"]): r for r in rows if not r["same_as"]}
    folded: dict[int, list[str]] = {}
    out = []
    for r in rows:
        target = first.get((r["same_as"], r["level"])) if r["same_as"] else None
        if target is None:
            out.append(r)
        else:
            folded.setdefault(id(target), []).append(r["column"])
    for r in out:
        del r["same_as"]
        if id(r) in folded:
            r["column"] = f"{r['column']} (= {', '.join(folded[id(r)])})"
    return out


def folded_rows(rows: list[dict] | None) -> list[str]:
    """The distinct names of the rows of :func:`read_associations` that hold a folded column (``folder (= label)``,
    :func:`fold_same`), in order."""
    return list(dict.fromkeys(r["column"] for r in rows or () if r["column"].endswith(")") and " (= " in r["column"]))


def read_summary(path, groups: int | None = None, within: str | None = None) -> tuple[str, list[str]] | None:
    """``(headline, tree lines)`` of ``associations.csv`` (:func:`brainclust.cluster.follows.headline`,
    :func:`~brainclust.cluster.follows.tree_summary`), or ``None`` when there is no such file or it
    lacks the columns they need; ``groups``: the number of clusters, ``within``: the run's ``--within`` column
    (see ``headline``). The text goes to the page through autoescaping only."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not set(HEADLINE_COLUMNS) <= set(reader.fieldnames or ()):
                return None
            rows = []
            for i, r in enumerate(reader):
                if i >= MAX_READ:
                    break
                # older runs lack coarser_of and within
                rows.append({k: str(r.get(k) or "") for k in HEADLINE_COLUMNS + ("coarser_of", "within")})
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        log.warning("report: '%s' cannot be read (%s); no headline", path, exc)
        return None
    return headline(rows, groups=groups, within=within), tree_summary(rows)
