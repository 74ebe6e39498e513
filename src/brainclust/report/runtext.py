"""Sentences of the report read from a run's ``manifest.json`` and ``metrics.json``: what was clustered out of
the files found (the summary's first row), the k of the clustering (the header and the summary), the backbones of
a ``--consensus`` run (the summary), the scores
inside the strata of a ``--within`` run (the scores) and what a ``--self-supervised`` run trained (its section).

Both files are untrusted input: a field of the wrong type is left out of the sentence (an older run folder
lacks some: no clause), never an error. The text reaches the page through autoescaping.
"""

from __future__ import annotations

import math

from brainclust.io.scanmeta import FILTER_REASON
from brainclust.model.criteria import consensus_outcome
from brainclust.model.scorespace import silhouette_space, ssl_comparison
from brainclust.report.render import counted
from brainclust.report.run import int_or_zero
from brainclust.report.tables import steer_within
from brainclust.terminal import count_text

__all__ = ["clustered_text", "consensus_text", "files_text", "k_text", "ssl_text", "within_scores"]

#: The most strata whose k the header names (the others are counted; every one is in manifest.json steer.within.k).
K_NAMED = 12


def _left_out(scan: dict) -> list[tuple[str, int]]:
    """``(reason, files)`` of the scan's left-out counts (older manifests: none)."""
    left = scan.get("left_out")
    if not isinstance(left, dict):
        return []
    return [(str(reason), int_or_zero(n)) for reason, n in left.items() if int_or_zero(n) > 0]


def files_text(manifest: dict, n_skipped: int) -> str:
    """``22 files (2 of them metadata, 0 skipped)``, or with files left out by the scan (``--include``,
    ``--exclude-files``, a BIDS rule, hidden names) ``4 of 22 files (18 left out by --include/--exclude-files,
    0 skipped)``: the files found, those read and why the others were not."""
    scan = manifest.get("scan") if isinstance(manifest.get("scan"), dict) else {}
    n_files, n_meta = int_or_zero(manifest.get("n_files_scanned")), int_or_zero(scan.get("metadata_files"))
    left = _left_out(scan)
    n_left = sum(n for _, n in left)
    skipped = f"{n_skipped} skipped"
    if not left or n_left > n_files:  # nothing left out (or counts that do not add up: the plain count)
        return f"{n_files} files ({f'{n_meta} of them metadata, ' if n_meta else ''}{skipped})"
    used = n_files - n_left
    why = [f"{n} left out " + (f"by {reason}" if reason == FILTER_REASON else f"({reason.split(' (')[0]})")
           for reason, n in sorted(left, key=lambda item: (item[0] != FILTER_REASON, item[0]))]
    meta = [f"{n_meta} of the {used} metadata"] if n_meta else []
    return f"{used} of {n_files} files ({', '.join(why + meta + [skipped])})"


def clustered_text(unit: str, n_rows: int, n_set_aside: int, n_slice_images: int, files: str) -> str:
    """The summary's "Images clustered" row: the rows, what a unit row is made of, the files they come from
    (:func:`files_text`), and the rows ``--exclude`` set aside, said once (``200 images from 200 files (0
    skipped): 188 clustered, 12 set aside by --exclude (not clustered)``)."""
    rows = counted(n_rows, unit)
    if unit != "slice":
        rows += f" (one row each: the mean of their slices' features) made of {count_text(n_slice_images, 'image')}"
    aside = (f": {n_rows - n_set_aside} clustered, {n_set_aside} set aside by --exclude (not clustered)"
             if n_set_aside else "")
    return f"{rows} from {files}{aside}"


def k_text(manifest: dict, k: int) -> str:
    """The k of the header and the summary: ``k = 4``, ``k = 4 per stratum`` (``--within``), and for ``--within``
    with ``--k auto``, where each stratum chose its own, ``k auto per stratum (axial: 15, coronal: 15, sagittal: 5)``
    (``manifest.json`` ``steer.within.k``; ``k``: the run's, unused then). DBSCAN has no k (it ignores ``--k``, which
    the manifest still records): its ``eps = 0.686`` (``clustering.dbscan_eps``), else ``no k``."""
    settings = manifest.get("settings") if isinstance(manifest.get("settings"), dict) else {}
    clustering = manifest.get("clustering") if isinstance(manifest.get("clustering"), dict) else {}
    if (clustering.get("method") or settings.get("method")) == "dbscan":
        eps = clustering.get("dbscan_eps")
        return "no k" if isinstance(eps, bool) or not isinstance(eps, (int, float)) else f"eps = {eps:.3g}"
    if not settings.get("within"):
        return f"k = {k}"
    if settings.get("k") != "auto":
        return f"k = {k} per stratum"
    within = steer_within(manifest)
    per = within.get("k") if isinstance(within.get("k"), dict) else {}
    named = [f"{name}: {n}" for name, n in per.items() if isinstance(n, int) and not isinstance(n, bool)]
    if len(named) > K_NAMED:
        named = named[:K_NAMED] + [f"… {len(named) - K_NAMED} more in manifest.json steer.within.k"]
    return "k auto per stratum" + (f" ({', '.join(named)})" if named else "")


def consensus_text(manifest: dict) -> str | None:
    """A ``--consensus`` run's backbones and how their partitions were combined, for the summary's backbone row
    (``manifest.json`` ``clustering.consensus_of`` and ``k``); ``None`` for another run."""
    clustering = manifest.get("clustering") if isinstance(manifest.get("clustering"), dict) else {}
    members, k = clustering.get("consensus_of"), int_or_zero(clustering.get("k"))
    if not isinstance(members, list) or not members or not all(isinstance(b, str) for b in members) or not k:
        return None
    return consensus_outcome(members, k)


def _score(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def within_scores(metrics: dict, n_clusters: int) -> dict | None:
    """A ``--within`` run with labels: the mean NMI and ARI inside the strata (``metrics.json``
    ``within.scores``, :func:`brainclust.model.steerrecord.stratum_scores`) as the Scores section shows them
    (``nmi``, ``ari``: text; ``meaning``), or ``None`` (no such run, or no scores recorded)."""
    within = metrics.get("within")
    scores = within.get("scores") if isinstance(within, dict) else None
    if not isinstance(scores, dict):
        return None
    per = scores.get("per_stratum") if isinstance(scores.get("per_stratum"), dict) else {}
    unscored = scores.get("not_scored") if isinstance(scores.get("not_scored"), dict) else {}
    n_strata = len(per) + len(unscored)
    nmi, ari = _score(scores.get("mean_nmi")), _score(scores.get("mean_ari"))
    if nmi is None or ari is None:
        if not unscored:
            return None
        return {"nmi": "n/a", "ari": "n/a", "meaning": "No stratum could be scored: in each of the "
                f"{n_strata} strata the labelled images hold fewer than two labels (one label, or one labelled "
                "image or none), so the scores above measure the strata, not the clusters (metrics.json "
                "within.scores)."}
    not_scored = (f"; {len(unscored)} not scored, their labelled images holding fewer than two labels"
                  if unscored else "")
    alone = scores.get("strata") if isinstance(scores.get("strata"), dict) else {}
    alone_nmi, alone_ari = _score(alone.get("nmi")), _score(alone.get("ari"))
    free = ("" if alone_nmi is None or alone_ari is None else f"The strata alone, as clusters, score NMI "
            f"{alone_nmi:.3f} and ARI {alone_ari:.3f}: what the scores above get from the strata for free. ")
    return {"nmi": f"{nmi:.3f}", "ari": f"{ari:.3f}", "meaning": (
        f"Mean NMI and ARI inside each stratum, weighted by its labelled images, over "
        f"{count_text(len(per), 'scored stratum', 'scored strata')} of {n_strata}{not_scored} "
        "(metrics.json within.scores). "
        f"Compare these with a run at k: the ARI and NMI above score the {n_clusters} clusters of all strata "
        "together, which a run at k does not have. " + free + "NMI is not corrected for chance: with few images "
        "per stratum any split scores high; ARI is corrected.")}


def ssl_text(manifest: dict) -> dict | None:
    """A ``--self-supervised`` run's section (``manifest.json`` ``ssl``): ``trained`` (what, in how long),
    ``used`` (whether the run clustered the embedding: the gate may have set it aside), ``compare`` (what the record
    compares, label-free, between the embedding and the frozen features) and the gate's ``rule``; ``None`` for
    another run and for a prediction (its record says only whether the model's embedding is used)."""
    ssl = manifest.get("ssl")
    comps = ssl.get("components") if isinstance(ssl, dict) and isinstance(ssl.get("components"), list) else []
    if not comps:
        return None
    times = ssl.get("timings_s") if isinstance(ssl.get("timings_s"), dict) else {}
    seconds = sum(v for v in map(_score, times.values()) if v is not None)
    gate = ssl.get("gate") if isinstance(ssl.get("gate"), dict) else {}
    trained = f"--self-supervised {','.join(map(str, comps))}"
    if isinstance(ssl.get("mode"), str):
        trained += f" (--ssl-mode {ssl['mode']})"
    if int_or_zero(dim := ssl.get("embedding_dim")):
        trained += f": an embedding of {dim} dimensions"
    trained += f"; the stage took {seconds:.{1 if seconds < 10 else 0}f} s." if seconds else "."
    return {"trained": trained, "used": silhouette_space(manifest)["space"].startswith("ssl"),
            "compare": ssl_comparison(manifest), "rule": gate["rule"] if isinstance(gate.get("rule"), str) else None}
