"""What the clusters follow, in words: the headline and the tree levels' lines of ``associations.csv``'s rows.

The rows are those :mod:`brainclust.cluster.associations` ranks, as written or read back as text
(``column``, ``level``, ``statistic``, ``score``, ``p_value``, ``same_as``, ``coarser_of``, ``within``).
One rule says whether a partition follows a column clearly (:func:`follows_clearly`): the headline and each
tree level's line name a column only then, and otherwise say so plainly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from brainclust.cluster.mutualinfo import MIN_ROWS
from brainclust.io.outputs import LEVEL_COLUMNS

__all__ = ["ALPHA", "MIN_NAMED", "SHOWN_AS", "STATISTIC_SHOWN", "follows_clearly", "headline", "tree_summary"]

#: How the headline names the file's own columns, whose names read as something else (``height``: the image's,
#: in pixels, not the patient's; ``size``: the file's bytes).
SHOWN_AS = {"width": "width (image, px)", "height": "height (image, px)", "size": "size (file, bytes)",
            "type": "type (file format)"}


#: How the headline and the report name each statistic: (name, note after the score); ``epsilon2``: the numeric
#: statistic of runs made before 2026-12-06.
STATISTIC_SHOWN = {"AMI": ("AMI", ""), "AMI_quintiles": ("AMI", ", quintiles"), "epsilon2": ("\u03b5\u00b2", "")}

#: The largest p-value of a column named as followed.
ALPHA = 0.05
#: The smallest score the headline names: significant columns of random partitions score up to 0.02 (254
#: rows) and 0.005 (1,000 rows), docs/units-metadata.md; a score of a few hundredths says nothing to a reader.
MIN_NAMED = 0.05


def follows_clearly(r: Mapping, alpha: float = ALPHA, min_score: float = MIN_NAMED) -> bool:
    """Whether the row's partition follows its column clearly: ``p_value <= alpha`` and a score of at least
    ``min_score`` (an untested row, ``--permutations 0``, never does)."""
    return _num(r["p_value"]) <= alpha and _num(r["score"]) >= min_score


def _label(r: Mapping, most: float = math.nan) -> str:
    """``plane (AMI 0.91)``; ``modality (AMI 1.00, 10 of 69 images)`` when the column has a value in fewer rows
    than ``most`` (the most rows any column of the level has: the clustered images, as the file's own columns
    are never missing)."""
    name, note = STATISTIC_SHOWN.get(str(r["statistic"]), (str(r["statistic"]), ""))
    within = f" within {r['within']}" if r.get("within") else ""  # older files lack it
    n = _num(r.get("n", math.nan))
    some = f", {n:.0f} of {most:.0f} images" if n < most else ""
    return f"{SHOWN_AS.get(r['column'], r['column'])} ({name} {float(r['score']):.2f}{note}{some}{within})"


def _untested(rows: Sequence[Mapping]) -> bool:
    return all(math.isnan(_num(r["p_value"])) for r in rows)


def headline(rows: Sequence[Mapping], level: str = "cluster", top: int = 3, alpha: float = ALPHA,
             min_score: float = MIN_NAMED, groups: int | None = None, within: str | None = None) -> str:
    """One sentence for the report: ``clusters follow: plane (AMI 0.91), then scanner (AMI 0.40)``.

    Lists up to ``top`` columns of ``level`` that the clusters follow clearly (:func:`follows_clearly`), by
    score,
    one per distinct partition (``same_as`` duplicates are left out, and so is a coarser copy of a column
    listed before it: ``coarser_of``); says so plainly when no column qualifies. ``groups``: the number of
    clusters (noise apart), when known: with one, nothing can be ranked, whatever the columns. ``within``: the
    ``--within`` column of the run, whose strata every column was scored inside (a column constant inside each is
    not ranked).
    """
    mine = [r for r in rows if r["level"] == level]
    most = max((n for r in mine if (n := _num(r.get("n", math.nan))) == n), default=math.nan)

    def label(r: Mapping) -> str:
        return _label(r, most)

    what = "clusters" if level == "cluster" else f"{level.replace('_', ' ')} of the tree"
    if not mine and groups is not None and groups < 2:
        return f"{what}: {'only one' if groups else 'none (every image is noise or set aside)'}, so no metadata " \
               "column can be ranked against them"
    if not mine and within:
        return (f"{what}: no metadata column could be ranked within each {within} (each is constant inside every "
                f"{within}, different in every row of each, or has fewer than {MIN_ROWS} values)")
    if not mine:
        return (f"{what}: no metadata column could be ranked (each is constant, different in every row, or has "
                f"fewer than {MIN_ROWS} values)")
    if _untested(mine):  # --permutations 0: nothing is tested
        ranked = [r for r in mine if not r.get("same_as")][:top]
        return f"{what}, strongest columns (untested: --permutations 0): " + ", ".join(label(r) for r in ranked)
    good = [r for r in mine if not r.get("same_as") and follows_clearly(r, alpha, min_score)]
    if not good:
        best = max([r for r in mine if not r.get("same_as")] or mine, key=lambda r: _num(r["score"]))
        p = f"p = {_num(best['p_value']):.2g}"
        if _num(best["p_value"]) <= alpha:
            p += f"; a score below {min_score:g}: too weak to name"
        if len(mine) == 1:
            return f"{what} do not follow the one metadata column clearly ({label(best)}, {p})"
        return f"{what} follow none of the {len(mine)} metadata columns clearly (highest: {label(best)}, {p})"
    listed: list[Mapping] = []
    for r in good:
        finer = set(str(r.get("coarser_of") or "").split(";")) - {""}
        if len(listed) < top and not finer & {str(x["column"]) for x in listed}:
            listed.append(r)
    return f"{what} follow: " + ", then ".join(label(r) for r in listed)


def tree_summary(rows: Sequence[Mapping], alpha: float = ALPHA, min_score: float = MIN_NAMED) -> list[str]:
    """For each tree level, the column it splits on most among those it follows clearly (the headline's rule,
    :func:`follows_clearly`): ``level 2: plane (AMI 0.80)``, or ``level 3: nothing clearly`` when none
    qualifies (one line for consecutive such levels: ``levels 3-10: nothing clearly``). Untested rows
    (``--permutations 0``): the strongest column, as the headline lists them."""
    said: list[tuple[list[str], str]] = []  # (levels, what they follow)
    for level in LEVEL_COLUMNS:
        mine = [r for r in rows if r["level"] == level and not r.get("same_as")]
        if not mine:
            continue
        good = mine if _untested(mine) else [r for r in mine if follows_clearly(r, alpha, min_score)]
        text = _label(max(good, key=lambda r: _num(r["score"]))) if good else "nothing clearly"
        number = level.split("_")[1]
        if good or not said or said[-1][1] != text or int(said[-1][0][-1]) + 1 != int(number):
            said.append(([number], text))
        else:
            said[-1][0].append(number)
    return [f"levels {ls[0]}-{ls[-1]}: {text}" if len(ls) > 1 else f"level {ls[0]}: {text}" for ls, text in said]


def _num(v) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return x
