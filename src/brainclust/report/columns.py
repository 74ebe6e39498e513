"""The columns of ``assignments.csv`` as the explorer sees them: categorical, numeric or text.

Other stages add columns to ``assignments.csv`` (metadata such as ``plane`` or
``site``, data-check ``flags``); the explorer must colour by any of them without
knowing them in advance. :func:`classify` decides from a column's name and
values:

* ``path``, ``name``: text (searched and shown, never a colour);
* ``cluster``, ``label``, ``type``, ``level_1`` .. ``level_10``: categorical;
* ``size``, ``width``, ``height``: numeric;
* any other column: numeric when every non-empty value is a number and it has
  more than :data:`MAX_NUMERIC_CODES` distinct values, else categorical; a
  categorical column with almost one value per row is text.

A categorical column keeps its :data:`MAX_CATEGORIES` - 1 most frequent values
(ties by name; cluster and level ids in numeric order, noise last) and puts the
rest in ``(other)``; empty cells are ``(none)``. Colours come from
:func:`brainclust.report.figures.palette`, so the explorer and the static
figures agree; a numeric column is drawn with :data:`RAMP` (viridis).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from brainclust.report.figures import NOISE_COLOUR, palette

TEXT_ROLES = ("path", "name")
CATEGORICAL_ROLES = ("cluster", "label", "type")
NUMERIC_ROLES = ("size", "width", "height")
#: Colours of one categorical column; rarer values share "(other)".
MAX_CATEGORIES = 24
#: An all-numeric column with at most this many distinct values is categorical (a site number, a 0/1 flag).
MAX_NUMERIC_CODES = 12
OTHER, NONE = "(other)", "(none)"
#: Viridis, 9 stops: numeric columns (the page interpolates between them, the server too).
RAMP = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725"]


def is_level(name: str) -> bool:
    """``level_1`` .. ``level_99``: a cut of the hierarchical tree."""
    return name.startswith("level_") and name[6:].isdigit()


def _is_id_column(name: str) -> bool:
    return name == "cluster" or is_level(name)


def _number(text: str) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


@dataclass
class Column:
    """One column: ``kind`` is ``"cat"``, ``"num"`` or ``"text"``.

    ``cat``: ``categories`` (display names: ``(none)`` for empty, ``noise``
    for cluster ``-1``) and ``raw`` (the values as written) with ``colours`` and
    ``counts``, ``codes`` per row (index into ``categories``). ``num``: ``values`` per row
    (NaN when empty), ``lo``/``hi``. ``text``: ``texts`` per row.
    """

    name: str
    kind: str
    categories: list[str] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    colours: list[str] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    codes: np.ndarray | None = None
    values: np.ndarray | None = None
    texts: list[str] | None = None
    lo: float | None = None
    hi: float | None = None

    def meta(self) -> dict:
        """What the page needs to draw a legend (no per-row data)."""
        m = {"name": self.name, "kind": self.kind}
        if self.kind == "cat":
            m.update(cats=self.categories, colours=self.colours, counts=self.counts)
        elif self.kind == "num":
            m.update(lo=self.lo, hi=self.hi, ramp=RAMP)
        return m

    def payload(self, rows: np.ndarray) -> dict:
        """:meth:`meta` plus the values of ``rows`` (codes, numbers rounded to 6 significant digits, or texts)."""
        m = self.meta()
        if self.kind == "cat":
            m["codes"] = self.codes[rows].tolist()
            m["raw"] = self.raw
        elif self.kind == "num":
            m["values"] = [None if not np.isfinite(v) else float(f"{v:.6g}") for v in self.values[rows].tolist()]
        else:
            m["texts"] = [self.texts[int(i)] for i in rows]
        return m

    def display(self, i: int) -> str:
        """Row ``i``'s value as written in assignments.csv."""
        if self.kind == "cat":
            code = int(self.codes[i])
            return self.texts[i] if self.texts is not None and self.raw[code] == OTHER else self.raw[code]
        if self.kind == "num":
            v = self.values[i]
            return "" if not np.isfinite(v) else f"{v:.6g}"
        return self.texts[i]


def classify(name: str, n_rows: int, n_distinct: int, all_numeric: bool) -> str:
    """``"text"``, ``"cat"`` or ``"num"`` for a column (see the module docstring)."""
    if name in TEXT_ROLES:
        return "text"
    if name in CATEGORICAL_ROLES or is_level(name):
        return "cat"
    if name in NUMERIC_ROLES:
        return "num"
    if all_numeric and n_distinct > MAX_NUMERIC_CODES:
        return "num"
    if n_distinct > 1000 and n_distinct > n_rows // 2:
        return "text"
    return "cat"


def category_order(name: str, counts: Counter) -> list[str]:
    """Values in legend order: ids numerically (noise ``-1`` last), others by count then name; ``(none)`` last."""
    vals = [v for v in counts if v != ""]
    if _is_id_column(name) and all(_number(v) is not None for v in vals):
        vals.sort(key=lambda v: (float(v) < 0, float(v)))
    else:
        vals.sort(key=lambda v: (-counts[v], v))
    return vals + ([""] if "" in counts else [])


def category_colours(name: str, shown: Sequence[str]) -> list[str]:
    """Palette colours in order; noise, ``(none)`` and ``(other)`` are grey."""
    grey = {"", OTHER, NONE, "-1" if _is_id_column(name) else None}
    normal = [v for v in shown if v not in grey]
    pal = dict(zip(normal, palette(len(normal))))
    return [pal.get(v, NOISE_COLOUR) for v in shown]


#: How the legends call cluster -1 of DBSCAN or ``--outliers`` (the id itself is ``report.run.NOISE``).
NOISE_NAME = "noise"


def display_name(name: str, value: str) -> str:
    """A category as shown: ``(none)`` for empty, ``noise`` for cluster/level ``-1`` (see :func:`name_unclustered`)."""
    if value == "":
        return NONE
    if _is_id_column(name) and value == "-1":
        return NOISE_NAME
    return value


def unclustered_name(n_noise: int, n_set_aside: int) -> str:
    """What cluster ``-1`` holds: DBSCAN's or ``--outliers``' ``noise``, images ``set aside`` by ``--exclude``,
    or both."""
    return "noise or set aside" if n_noise and n_set_aside else "set aside" if n_set_aside else NOISE_NAME


def unclustered_shown(name: str, shown: int, size: int, noun: str = "images") -> str:
    """The heading of the images shown of cluster ``-1`` (``name``: :func:`unclustered_name`): they are in no
    cluster, so none is more typical than another, and the first ``shown`` of the ``size`` are shown, in file
    order."""
    first = f"All {size}" if shown >= size else f"First {shown} of the {size}"
    return f"{first} {noun}, in file order ({name}: in no cluster, so none is more typical than another)"


def name_unclustered(columns: Sequence[Column], name: str) -> None:
    """Show cluster/level ``-1`` as ``name`` (:func:`unclustered_name`) in the legends of ``columns``."""
    for c in columns:
        if c.kind == "cat" and _is_id_column(c.name):
            c.categories = [name if raw == "-1" else cat for cat, raw in zip(c.categories, c.raw)]


def categorical(name: str, values: Sequence[str], counts: Counter | None = None) -> Column:
    """Encode string values as a categorical :class:`Column` (top values, the rest ``(other)``)."""
    counts = counts if counts is not None else Counter(values)
    order = category_order(name, counts)
    if len(order) > MAX_CATEGORIES:
        keep = order[: MAX_CATEGORIES - 1]
        if "" in counts and "" not in keep:
            keep = order[: MAX_CATEGORIES - 2] + [""]
        shown = keep + [OTHER]
    else:
        shown = order
    index = {v: j for j, v in enumerate(shown)}
    other = index.get(OTHER, -1)
    codes = np.fromiter((index.get(v, other) for v in values), dtype=np.int32, count=len(values))
    cnt = np.bincount(codes, minlength=len(shown)).tolist()
    return Column(name, "cat", [display_name(name, v) if v != OTHER else OTHER for v in shown], shown,
                  category_colours(name, shown), cnt, codes=codes,
                  texts=list(values) if other >= 0 else None)  # the rare values' own names


def numeric(name: str, values: np.ndarray) -> Column:
    """A numeric :class:`Column` (NaN = empty)."""
    values = np.asarray(values, dtype=np.float64)
    fin = values[np.isfinite(values)]
    lo, hi = (float(fin.min()), float(fin.max())) if len(fin) else (None, None)
    return Column(name, "num", values=values, lo=lo, hi=hi)


def describe(name: str, values: Sequence[str]) -> Column:
    """One column of ``assignments.csv`` (strings, as read) as a :class:`Column`."""
    values = ["" if v is None else str(v) for v in values]
    counts = Counter(values)
    nonempty = [v for v in counts if v != ""]
    nums = {v: _number(v) for v in nonempty} if name not in TEXT_ROLES else {}
    all_numeric = bool(nonempty) and all(x is not None for x in nums.values())
    kind = classify(name, len(values), len(counts), all_numeric)
    if kind == "text":
        return Column(name, "text", texts=values)
    if kind == "num":
        as_num = {v: (np.nan if x is None else x) for v, x in nums.items()}
        return numeric(name, np.array([as_num.get(v, np.nan) for v in values], dtype=np.float64))
    return categorical(name, values, counts)


def describe_rows(rows: Sequence[dict]) -> list[Column]:
    """Every column of ``assignments.csv`` rows (the header order), each as a :class:`Column`."""
    if not rows:
        return []
    return [describe(name, [r.get(name, "") for r in rows]) for name in rows[0].keys()]
