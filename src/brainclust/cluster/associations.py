"""What do these clusters follow? Every metadata column ranked by its association with each partition.

Works from the text of ``assignments.csv`` alone (:func:`from_assignments`), so
``brainclust report RUN --metadata FILE`` can rank columns added to a finished
run. One row of ``associations.csv`` per (partition, column):

``level``
    ``cluster`` (the run's clusters) or ``level_1`` ... ``level_10`` (the
    hierarchical tree cut into 1 ... 10 groups). Partitions with a single group
    (``level_1``) are not scored.
``column``, ``kind``, ``statistic``, ``score``
    A column is **numeric** when every present value is a finite number and it
    has more than :data:`MAX_CATEGORIES` (10) distinct values; otherwise it is
    **categorical** (its values compared as text, so ``site`` codes such as
    ``2013`` or a field strength of 1.5/3 T are categories).

    - categorical: ``AMI``, the adjusted mutual information between the column
      and the partition as ``sklearn.metrics.adjusted_mutual_info_score
      (column, partition)`` computes it by default (arithmetic normalisation; computed
      here without its per-call checks, equal to 1e-12: :func:`~brainclust.cluster.mutualinfo.ami`);
    - numeric: ``AMI_quintiles``, the same AMI between the column's quintile bins and the partition
      (:func:`~brainclust.cluster.mutualinfo.quintiles`: the intervals of ``pandas.qcut(values, 5,
      duplicates="drop")``, except that values tied at the minimum or the maximum get a bin of their own
      when they fill a fifth of the rows).

    One statistic on one scale for every column, so the ranking compares like with like: about 0 when
    the column does not depend on the groups (it can be slightly negative) and 1 when the column's
    values (bins) and the groups determine each other. (Until 2026-12-06 numeric columns were scored
    with epsilon squared of a one-way ANOVA, which reads higher than an AMI of the same dependence: a
    numeric image descriptor at epsilon squared 0.57 led a run's headline over the plane at AMI 0.25,
    where its quintiles' AMI is 0.28.)

``p_value``
    Permutation test of independence: the column's values (bins) are shuffled over
    the rows ``permutations`` times (seeded by ``random_state``) and ``p = (1 +
    #{shuffled >= observed}) / (1 + permutations)``, comparing the mutual
    information, which orders permutations as the AMI does (its other terms do
    not change under a shuffle). With more than
    :data:`PERMUTATION_ROWS` rows the test runs on a seeded random sample of
    that many rows (``perm_rows`` says how many were used); the score is always
    computed on every row. The smallest possible p-value is ``1 / (1 +
    permutations)`` (0.005 with the default 199).
``n``, ``n_values``, ``same_as``, ``coarser_of``, ``rank``, ``within``
    Rows with a value, distinct values, the first column with exactly the same
    partition of the rows (e.g. ``subject`` and ``folder`` in a BIDS set), the
    categorical columns this one is a coarser copy of (``;``-joined: each of their
    values goes with one value of this column, as the image height with the plane or
    the BIDS suffix with the sequence; the headline does not list it after them),
    the rank within the level (1 = strongest), and the column the score was taken within (below; mostly empty).

**Within strata** (a ``--within`` run: ``assignments.csv`` has a ``stratum`` column): each score is the
mean of the column's scores inside each stratum, weighted by the stratum's rows with a value (a numeric
column is binned inside each stratum; a column that is constant inside a stratum scores 0 there; a stratum
with one group at a level, fewer than 3 rows, or a different value (bin) in every row is left out of that
level, as such a column is left out of a whole ranking: two rows in two groups always score AMI 1),
and the permutation test shuffles the values inside each stratum. So a column that lies mostly between the
strata scores about 0, as a random split of each stratum does: what is ranked is what the clusters follow
*within* the strata. A column that the strata determine, constant inside every stratum (on its rows with a
value), tells nothing there and is not ranked, as the ``--within`` column is not: one that groups the rows
exactly as the strata do (``subject`` and ``folder`` in a ``--within site`` run where each subject has its own
site), a coarser copy of the stratum (the BIDS ``suffix`` within ``sequence``), the image height within planes of
one size each. (Until 2026-12-07 only the first was left out: the others were ranked at AMI 0, and a BIDS run
``--within sequence`` read "clusters do not follow the one metadata column clearly (suffix (AMI 0.00), p = 1)".)

**Along another column** (:data:`~brainclust.io.outputs.COUNTS_ALONG`: a slice's ``slice_index`` and
``slice_position`` count along its ``plane``, a DICOM file's ``instance_number`` along its ``series_id``): such a
column is scored within each value of that column, as within strata (and within both with a run's strata), when
its rows hold more than one and most of its rows can be scored there (not in series of a file or a few, where each
holds one number per file: then over every row); ``within`` names the column. Over every row, quintiles of
indices whose ranges differ between planes are part plane, part height.

Missing values (``""``, ``n/a``, ``nan``; any case): each score uses the rows where the
column has a value. Columns are not ranked when fewer than 3 rows have a value,
when they have a single value, or when categorical with a different value in
every row (identifiers such as file names: their AMI is 0 by construction).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

# the headline's words moved to follows; these names stay importable from here
from brainclust.cluster.follows import MIN_NAMED, SHOWN_AS, STATISTIC_SHOWN, headline, tree_summary  # noqa: F401
from brainclust.cluster.mutualinfo import BINS, MIN_ROWS, ami, label_codes, mutual_info, quintiles
from brainclust.errors import ParameterError
from brainclust.io import privacy
from brainclust.io.atomic import atomic_write_csv
from brainclust.io.outputs import COUNTS_ALONG, FLAGS_COLUMN, LEVEL_COLUMNS

#: Partitions scored, in output order.
LEVELS = ("cluster", *LEVEL_COLUMNS)
#: A numeric column with at most this many distinct values is treated as categorical.
MAX_CATEGORIES = 10
#: Rows used by the permutation test at most (a seeded sample above).
PERMUTATION_ROWS = 10_000
#: Columns of ``associations.csv``.
ASSOCIATION_COLUMNS = ["level", "rank", "column", "kind", "statistic", "score", "p_value", "n", "n_values",
                       "same_as", "coarser_of", "permutations", "perm_rows", "within"]
#: Columns of assignments.csv that are never ranked (identifiers and the partitions themselves).
NOT_RANKED = frozenset({"path", "name", "unit", "sha256", "frame", "flags", "stratum", "cluster_in_stratum", *LEVELS})


@dataclass(frozen=True)
class Column:
    """One column prepared for scoring: the rows with a value and its codes or numbers."""

    name: str
    kind: str  # "categorical" | "numeric"
    rows: np.ndarray  # indices of rows with a value
    codes: np.ndarray  # per row in ``rows``: categorical 0..n_values-1, numeric its quintile bin
    values: np.ndarray | None  # numeric: float per row in ``rows`` (binned again inside each stratum)
    n_values: int
    strata: np.ndarray | None = None  # per row of the table: the strata the column is scored within, or None
    within: str = ""  # the column whose values it is scored within (COUNTS_ALONG), besides a run's strata


def _text(values: Sequence) -> np.ndarray:
    """Values as a stripped text array; missing values (``None``, NaN, ``""``, ``n/a``, ``nan``) become ``""``."""
    arr = np.asarray(["" if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]
                     if not isinstance(values, np.ndarray) else values)
    arr = np.char.strip(arr.astype(str))
    if arr.size:
        arr[np.isin(np.char.lower(arr), list(privacy.MISSING))] = ""
    return arr


def prepare(name: str, values: Sequence) -> Column | None:
    """Classify and encode a column (module docstring); ``None`` when it is not ranked."""
    text = _text(values)
    rows = np.flatnonzero(text != "").astype(np.int64)
    present = text[rows]
    distinct, codes = np.unique(present, return_inverse=True)
    if len(rows) < MIN_ROWS or len(distinct) < 2:
        return None
    if len(distinct) > MAX_CATEGORIES:
        try:
            v = present.astype(np.float64)
        except ValueError:
            v = None
        if v is not None and np.all(np.isfinite(v)):
            if np.ptp(v) == 0:
                return None
            return Column(name, "numeric", rows, quintiles(v), v, len(distinct))
    if len(distinct) == len(rows):
        return None
    return Column(name, "categorical", rows, codes.astype(np.int64), None, len(distinct))


def _strata_parts(s: np.ndarray) -> list[np.ndarray]:
    """The positions of each stratum's rows (``s``: stratum codes), in one pass."""
    order = np.argsort(s, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(s[order])) + 1)


def _along(col: Column, frames: Mapping[str, np.ndarray], strata: np.ndarray | None) -> Column:
    """The column with the strata it is scored within: the run's (``strata``, or None) and, for a column that
    counts along the axis another names (:data:`~brainclust.io.outputs.COUNTS_ALONG`: a slice's index along its
    plane), that column's values among its rows, when they are more than one (and more than the run's strata
    tell) and :func:`_score` keeps most of its rows in them (:func:`_mostly_scorable`). Its numeric values are
    then binned inside each, as a run's strata do (:func:`_binned_within`). ``frames``: the codes of the table's
    columns that others count along, computed once."""
    frame = COUNTS_ALONG.get(col.name)
    codes = frames.get(frame)
    if codes is not None and len(np.unique(codes[col.rows])) > 1:
        both = codes if strata is None else label_codes(strata * (int(codes.max()) + 1) + codes)
        if ((strata is None or len(np.unique(both[col.rows])) > len(np.unique(strata[col.rows])))
                and _mostly_scorable(col, both[col.rows])):
            return replace(col, strata=both, within=frame)
    return replace(col, strata=strata)


def _varies_within(col: Column, strata: np.ndarray) -> bool:
    """Whether the column takes more than one value (a numeric one: number) inside some stratum (``strata``: the
    run's stratum code per row of the table), on its rows with a value."""
    s = strata[col.rows]
    v = col.codes if col.values is None else label_codes(col.values)
    return len(np.unique(s * (int(v.max()) + 1) + v)) > len(np.unique(s))


def _mostly_scorable(col: Column, s: np.ndarray) -> bool:
    """Whether half the column's rows or more lie in strata ``s`` (per row of ``col.rows``) that :func:`_score`
    keeps: at least :data:`MIN_ROWS` rows, and not a value (bin) per row. Within the series of a DICOM folder of
    short series (a file without a series UID is a series of its own) an instance number is a value per row:
    nothing would be left to score, so it is scored over every row instead."""
    binned = _binned_within(col, s)
    kept = sum(len(i) for i in _strata_parts(s) if len(i) >= MIN_ROWS and len(np.unique(binned[i])) < len(i))
    return 2 * kept >= len(s)


def _binned_within(col: Column, s: np.ndarray) -> np.ndarray:
    """The column's codes with a numeric column binned inside each stratum (``s``: the rows' stratum codes), kept
    apart between strata."""
    if col.kind == "categorical":
        return col.codes
    out = np.empty(len(s), np.int64)
    for i in _strata_parts(s):
        out[i] = s[i[0]] * BINS + (quintiles(col.values[i]) if np.ptp(col.values[i]) > 0 else 0)
    return label_codes(out)


def _score(col: Column, groups: np.ndarray, strata: np.ndarray | None = None) -> float:
    """The column's score against ``groups``; with ``strata``, the row-weighted mean of its scores inside each
    stratum (module docstring)."""
    g = groups[col.rows]
    if strata is not None:  # numeric columns come binned inside each stratum (rank_associations)
        scored = []
        for i in _strata_parts(strata[col.rows]):
            gi, ci = label_codes(g[i]), label_codes(col.codes[i])
            # left out, as for a whole column: a stratum with one group, fewer than MIN_ROWS rows, or a value (bin)
            # per row, like an identifier (two rows in two groups always score AMI 1); a constant column scores 0
            if gi.max() >= 1 and len(i) >= MIN_ROWS and ci.max() + 1 < len(i):
                scored.append((len(i), ami(ci, gi, b_coded=True)))
        return sum(w * v for w, v in scored) / sum(w for w, _ in scored) if scored else float("nan")
    if np.count_nonzero(np.bincount(g)) < 2:
        return float("nan")
    return ami(col.codes, g)


def rank_associations(table: Mapping[str, Sequence], levels: Mapping[str, Sequence],
                      permutations: int = 199, random_state: int | None = 0,
                      exclude: Iterable[str] = (), strata: Sequence | None = None) -> list[dict]:
    """Score every column of ``table`` against every partition of ``levels`` (module docstring).

    Parameters
    ----------
    table : mapping of column name -> values (text as in assignments.csv; one per row)
    levels : mapping of partition name (``cluster``, ``level_2``...) -> group label per row
    permutations : int, default 199
    random_state : int or None, default 0
    exclude : column names not ranked (besides :data:`NOT_RANKED`)
    strata : one stratum label per row, or None; given, every score is within strata (module docstring)

    Returns
    -------
    list of dict
        The rows of ``associations.csv`` (:data:`ASSOCIATION_COLUMNS`), by level then rank.
    """
    if isinstance(permutations, bool) or not isinstance(permutations, int) or permutations < 0:
        raise ParameterError(f"associations: permutations must be an integer >= 0, got {permutations!r}")
    n = len(next(iter(levels.values()))) if levels else 0
    for name, labels in list(levels.items()) + list(table.items()):
        if len(labels) != n:
            raise ParameterError(f"associations: column '{name}' has {len(labels)} values for {n} rows")
    strata = None if strata is None else label_codes(strata)
    if strata is not None and len(strata) != n:
        raise ParameterError(f"associations: 'strata' has {len(strata)} values for {n} rows")
    skip = NOT_RANKED | set(exclude)
    frames = {frame: label_codes(_text(table[frame])) for frame in set(COUNTS_ALONG.values()) & set(table)}
    cols = [_along(c, frames, strata) for c in (prepare(k, v) for k, v in table.items() if k not in skip)
            if c is not None]
    if strata is not None:  # a column the strata determine (constant inside each) tells nothing within them
        cols = [c for c in cols if _varies_within(c, strata)]
    # a numeric column is binned inside each of its strata, once for every level
    cols = [c if c.strata is None else replace(c, codes=_binned_within(c, c.strata[c.rows])) for c in cols]
    same = _same_partitions(cols, n)
    coarser = _coarser_copies([c for c in cols if c.name not in same], n)
    out: list[dict] = []
    for level in [lv for lv in LEVELS if lv in levels] + [lv for lv in levels if lv not in LEVELS]:
        groups = label_codes(levels[level])
        if len(np.unique(groups)) < 2:
            continue
        rows = []
        for col in cols:
            score = _score(col, groups, col.strata)
            if not math.isfinite(score):
                continue
            # every column of a level draws the same permutations (seeded by the seed and the level's name):
            # equal columns get equal p-values, whatever other columns and levels there are
            seed = None if random_state is None else [random_state, zlib.crc32(str(level).encode())]
            rng = np.random.default_rng(seed)
            p, used = _p_value(col, groups, permutations, rng, col.strata)
            rows.append({"level": level, "column": col.name, "kind": col.kind,
                         "statistic": "AMI" if col.kind == "categorical" else "AMI_quintiles",
                         "score": score, "p_value": p, "n": len(col.rows), "n_values": col.n_values,
                         "same_as": same.get(col.name, ""), "coarser_of": coarser.get(col.name, ""),
                         "permutations": permutations, "perm_rows": used, "within": col.within})
        rows.sort(key=lambda r: (-r["score"], r["p_value"], r["column"]))
        for i, r in enumerate(rows):
            out.append({"rank": i + 1, **r})
    return [{k: r[k] for k in ASSOCIATION_COLUMNS} for r in out]


def _p_value(col: Column, groups: np.ndarray, permutations: int, rng,
             strata: np.ndarray | None = None) -> tuple[float, int]:
    """With ``strata`` the values are shuffled inside each stratum: the part of the statistic that lies
    between strata is then the same in every shuffle, so the test compares what lies within them."""
    if permutations == 0:
        return float("nan"), 0
    m = len(col.rows)
    pick = np.sort(rng.choice(m, PERMUTATION_ROWS, replace=False)) if m > PERMUTATION_ROWS else np.arange(m)
    g = label_codes(groups[col.rows][pick])
    ng = int(g.max()) + 1
    x = label_codes(col.codes[pick])  # the sample's own codes: the contingency table grows with the sample
    nx = int(x.max()) + 1
    observed = mutual_info(x, g, nx, ng)
    tol = 1e-9 * max(1.0, abs(observed))
    s = None if strata is None else strata[col.rows][pick]
    by_stratum = None if s is None else np.argsort(s, kind="stable")

    def shuffled():  # inside each stratum: a random order of each stratum's rows, block by block
        if s is None:
            return x[rng.permutation(len(x))]
        out = np.empty(len(x), np.int64)
        out[by_stratum] = np.argsort(s + rng.random(len(x)))  # by stratum (integer codes), at random inside
        return x[out]
    hits = sum(mutual_info(shuffled(), g, nx, ng) >= observed - tol for _ in range(permutations))
    return (1 + hits) / (1 + permutations), len(x)


def _coarser_copies(cols: list[Column], n: int) -> dict[str, str]:
    """Categorical column -> the categorical columns (``;``-joined) it is a coarser copy of: on the rows where
    both have a value, each value of the finer column goes with a single value of this one."""
    cat = [c for c in cols if c.kind == "categorical"]
    full = {c.name: _full(c, n) for c in cat}

    def distinct(codes: np.ndarray, size: int) -> int:  # a count array while it stays small, else a sort
        return int(np.count_nonzero(np.bincount(codes, minlength=size))) if size <= 4 * n else len(np.unique(codes))
    out: dict[str, list[str]] = {}
    for fine in cat:
        for coarse in cat:
            if coarse.n_values >= fine.n_values:
                continue
            a, b = full[fine.name], full[coarse.name]
            both = (a >= 0) & (b >= 0)
            if np.count_nonzero(both) < MIN_ROWS:
                continue
            a, b = a[both], b[both]
            if distinct(a * coarse.n_values + b, fine.n_values * coarse.n_values) == distinct(a, fine.n_values):
                out.setdefault(coarse.name, []).append(fine.name)
    return {k: ";".join(v) for k, v in out.items()}


def _full(col: Column, n: int) -> np.ndarray:
    """The column's codes on all ``n`` rows, -1 where it has no value."""
    full = np.full(n, -1, np.int64)
    full[col.rows] = col.codes
    return full


def _partition(codes: np.ndarray) -> bytes:
    """The partition of the rows that ``codes`` make, as bytes: equal for codes that group the rows alike."""
    _, first, inv = np.unique(codes, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inv].astype(np.int64).tobytes()  # labels by first occurrence


def _same_partitions(cols: list[Column], n: int) -> dict[str, str]:
    """Column -> the first earlier column that partitions the rows the same way (missing rows included). ``label``
    comes last: it is a copy of the column ``--labels`` names, which is the one to show."""
    seen: dict[bytes, str] = {}
    out: dict[str, str] = {}
    for col in sorted(cols, key=lambda c: c.name == "label"):
        if col.kind != "categorical":
            continue
        key = _partition(_full(col, n))
        if key in seen:
            out[col.name] = seen[key]
        else:
            seen[key] = col.name
    return out


def from_assignments(rows: Sequence[Mapping[str, str]], permutations: int = 199, random_state: int | None = 0,
                     exclude: Iterable[str] = (), aside_flags: Iterable[str] = ()) -> list[dict]:
    """:func:`rank_associations` on the rows of ``assignments.csv`` (dicts of text, as read back).

    Partitions: ``cluster`` and every ``level_L`` column present; every other
    column except :data:`NOT_RANKED` and ``exclude`` is ranked. Rows set aside
    by ``--exclude`` (cluster ``-1`` with one of ``aside_flags``) are not
    clustered and are left out, as the scores leave them out. A ``stratum`` column (a ``--within`` run) makes
    every score within strata.
    """
    aside = set(aside_flags)
    if aside:
        rows = [r for r in rows if not (str(r.get("cluster")) == "-1" and aside & set(
            str(r.get(FLAGS_COLUMN) or "").split(";")))]
    if not rows:
        return []
    names = list(rows[0].keys())
    levels = {c: [r.get(c, "") for r in rows] for c in names if c in LEVELS}
    table = {c: [r.get(c, "") for r in rows] for c in names if c not in LEVELS}
    strata = [r.get("stratum", "") for r in rows] if "stratum" in names else None
    return rank_associations(table, levels, permutations, random_state, exclude, strata)


def write_associations(path, rows: Sequence[Mapping]) -> object:
    """Write ``associations.csv`` atomically (scores with 10 significant digits)."""
    def fmt(v):  # a p-value with no permutation test is an empty cell, never "nan"
        return ("" if math.isnan(v) else f"{v:.10g}") if isinstance(v, float) else v

    return atomic_write_csv(path, ASSOCIATION_COLUMNS, [{k: fmt(r[k]) for k in ASSOCIATION_COLUMNS} for r in rows])
