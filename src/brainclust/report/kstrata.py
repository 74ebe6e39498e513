"""A ``--within COLUMN --k auto`` run in the report: each stratum chose its own k by the vote of
:class:`~brainclust.cluster.kselect.KSelector`, recorded in ``metrics.json`` ``within.k_selection``. The page shows a
table of each stratum's k and the indices' votes, and the curves of the first :data:`STRATA_DRAWN` strata, one row
of panels each (:func:`brainclust.report.figures.kselect_strata_figure`).

``metrics.json`` is untrusted input: a stratum whose record has the wrong form has no votes in the table and no
row of curves, never an error. Its text reaches the page through autoescaping.
"""

from __future__ import annotations

import math

from brainclust.io.outputs import escape_name

__all__ = ["STRATA_DRAWN", "selection_ok", "within_k_table"]

#: The most strata whose curves the figure draws (the table lists them all).
STRATA_DRAWN = 8


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def selection_ok(sel) -> bool:
    """Whether a ``k_selection`` record can be drawn: integer ``ks`` and ``chosen_k``, and every index a dict
    with a ``curve`` of one number (or ``None``) per k and an integer or ``None`` ``vote``."""
    if not isinstance(sel, dict) or not _is_int(sel.get("chosen_k")):
        return False
    ks, indices = sel.get("ks"), sel.get("indices")
    if not isinstance(ks, list) or not ks or not all(map(_is_int, ks)) or not isinstance(indices, dict) or not indices:
        return False
    return all(isinstance(idx, dict) and isinstance(idx.get("curve"), list) and len(idx["curve"]) == len(ks)
               and all(v is None or _is_number(v) for v in idx["curve"])
               and (idx.get("vote") is None or _is_int(idx["vote"])) for idx in indices.values())


def within_k_table(metrics: dict) -> dict | None:
    """The page's table of a ``--within`` run with ``--k auto`` (``None`` for other runs): ``indices`` (the
    columns: each index's vote), ``rows`` (``stratum``, ``images``, ``k``: the stratum's clusters, with the
    vote's k when fewer distinct images made fewer, ``votes``: one text per index, empty without a vote),
    ``n_unvoted`` (strata too small or too alike to compare k: one cluster each) and ``curves`` (stratum ->
    its record, for the figure: the first :data:`STRATA_DRAWN` that can be drawn) with ``n_voted``."""
    within = metrics.get("within")
    sels = within.get("k_selection") if isinstance(within, dict) else None
    if not isinstance(sels, dict) or not sels:
        return None
    per_k = within["k"] if isinstance(within.get("k"), dict) else {}
    images = within["strata"] if isinstance(within.get("strata"), dict) else {}
    ok = {name: sel for name, sel in sels.items() if selection_ok(sel)}
    indices = list(dict.fromkeys(name for sel in ok.values() for name in sel["indices"]))
    rows = []
    for name in list(per_k) + [s for s in sels if s not in per_k]:  # every stratum: those without a vote too
        sel, k = ok.get(name), per_k.get(name)
        k_text = str(k) if _is_int(k) else ""
        if sel is not None and k_text != str(sel["chosen_k"]):
            k_text = f"{k_text} (vote: {sel['chosen_k']})" if k_text else str(sel["chosen_k"])
        votes = ["" if sel is None or i not in sel["indices"] else
                 str(sel["indices"][i].get("vote") if sel["indices"][i].get("vote") is not None else "none")
                 for i in indices]
        rows.append({"stratum": escape_name(str(name)), "k": k_text, "votes": votes,
                     "images": images[name] if _is_int(images.get(name)) else ""})
    return {"indices": [i.replace("_", " ") for i in indices], "rows": rows, "n_voted": len(ok),
            "n_unvoted": len(rows) - len(ok), "curves": dict(list(ok.items())[:STRATA_DRAWN])}
