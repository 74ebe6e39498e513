"""The report's tables: the label × cluster confusion matrix (Hungarian order), the purity table, and the run's
settings as the summary shows them."""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, fields

import numpy as np

from brainclust.cluster.manifold import UMAP_PRE_PCA
from brainclust.core.needs import not_applied
from brainclust.io.outputs import escape_name
from brainclust.model.config import RunConfig, options
from brainclust.model.scorespace import ssl_embedding
from brainclust.report.run import NOISE, cluster_name
from brainclust.terminal import count_text


@dataclass
class Confusion:
    """Label × cluster counts, columns ordered by the Hungarian matching.

    ``counts[i, j]`` = images with label ``row_names[i]`` in cluster
    ``col_ids[j]``. The first ``n_matched`` columns are the clusters matched
    to rows ``0..n_matched-1`` (the diagonal); unmatched clusters follow, then
    noise. Unlabelled images are not counted (``n_unlabelled``).
    """

    row_names: list[str]
    col_ids: list[int]
    counts: np.ndarray
    n_matched: int
    n_unlabelled: int = 0

    @property
    def col_names(self) -> list[str]:
        return [cluster_name(c) for c in self.col_ids]

    def label_colours(self, cluster_colour, n_clusters: int) -> dict[str, str]:
        """Each label's colour: its matched cluster's (``cluster_colour(id)``, ``None`` when it has none), else one
        no cluster has (the palette after the ``n_clusters`` clusters' colours). The report and ``view`` agree."""
        from brainclust.report.figures import palette

        extra = iter(palette(n_clusters + len(self.row_names))[n_clusters:])
        out = {}
        for r, name in enumerate(self.row_names):
            colour = cluster_colour(self.col_ids[r]) if r < self.n_matched else None
            out[name] = colour if colour is not None else next(extra)
        return out

    @property
    def matched_accuracy(self) -> float:
        """Diagonal sum over all labelled images: the ACC of :mod:`brainclust.cluster.scores`."""
        total = int(self.counts.sum())
        return float(np.trace(self.counts[:, : self.n_matched]) / total) if total else 0.0


def confusion(labels_true, clusters) -> Confusion:
    """Cross-tabulate labels against clusters and order clusters by the Hungarian matching."""
    from scipy.optimize import linear_sum_assignment

    y = np.asarray(["" if v is None else str(v) for v in labels_true], dtype=object)
    c = np.asarray(clusters, dtype=np.int64)
    keep = y != ""
    names = sorted(set(y[keep].tolist()))
    ids = sorted(set(c[keep].tolist()) - {NOISE})
    counts = np.zeros((len(names), len(ids)), dtype=np.int64)
    ri = {n: i for i, n in enumerate(names)}
    ci = {v: j for j, v in enumerate(ids)}
    for yy, cc in zip(y[keep].tolist(), c[keep].tolist()):
        if cc != NOISE:
            counts[ri[yy], ci[cc]] += 1
    rows, cols = linear_sum_assignment(counts, maximize=True) if counts.size else ([], [])
    match = dict(zip(np.asarray(rows).tolist(), np.asarray(cols).tolist()))
    # rows with a matched cluster first (in label order), then the unmatched rows
    row_order = [r for r in range(len(names)) if r in match] + [r for r in range(len(names)) if r not in match]
    col_order = [match[r] for r in row_order if r in match]
    col_order += [j for j in range(len(ids)) if j not in col_order]
    table = counts[np.ix_(row_order, col_order)] if counts.size else counts
    col_ids = [ids[j] for j in col_order]
    if (c[keep] == NOISE).any():
        noise = np.array([[int(((y == names[r]) & (c == NOISE)).sum())] for r in row_order], dtype=np.int64)
        table = np.hstack([table, noise])
        col_ids.append(NOISE)
    return Confusion([names[r] for r in row_order], col_ids, table, len(match), int((~keep).sum()))


def purity_rows(labels_true, clusters) -> list[dict]:
    """Per cluster: size, labelled images, majority label, its count and the purity (majority / labelled).

    One sparse cluster x label table, so the cost does not grow with the number of clusters.
    """
    from scipy.sparse import csr_matrix

    y = np.asarray(["" if v is None else str(v) for v in labels_true], dtype=object)
    ids, ci, sizes = np.unique(np.asarray(clusters, dtype=np.int64), return_inverse=True, return_counts=True)
    keep = y != ""
    names, li = np.unique(y[keep].astype(str), return_inverse=True)
    table = csr_matrix((np.ones(len(li), np.int64), (ci[keep], li)), shape=(len(ids), len(names)))
    table.sum_duplicates()
    out = []
    for r in sorted(range(len(ids)), key=lambda r: (ids[r] == NOISE, ids[r])):
        part = slice(table.indptr[r], table.indptr[r + 1])
        vals, cnt = names[table.indices[part]], table.data[part]
        order = np.lexsort((vals, -cnt)) if len(cnt) else []
        top = [(str(vals[i]), int(cnt[i])) for i in order]
        n_lab = int(cnt.sum())
        out.append({"cluster": cluster_name(int(ids[r])), "size": int(sizes[r]),
                    "n_labelled": n_lab, "majority": top[0][0] if top else "",
                    "majority_count": top[0][1] if top else 0,
                    "purity": (top[0][1] / n_lab) if top else None,
                    "breakdown": ", ".join(f"{n}: {k}" for n, k in top)})
    return out


#: Settings that name a file or folder: shown by their last part, relative or absolute, POSIX or Windows.
PATH_SETTINGS = frozenset({"cache_dir", "metadata", "split_table", "weights"})
#: Fields of the run's settings with no option to set them: bookkeeping (``pca_given``: whether ``--pca`` was given;
#: ``progress``: the bars follow the terminal), not shown.
NO_OPTION = frozenset(f.name for f in fields(RunConfig)) - frozenset(options())


def settings_rows(manifest: dict) -> list[tuple[str, str]]:
    """The run's settings as (name, text), without the empty ones (None, "", empty lists and dicts) and without
    those that did not apply to the run (:func:`brainclust.core.needs.not_applied`: ``--ssl-mode`` without
    ``--self-supervised``, ``--k`` with DBSCAN, ``--slices`` where the scan found no NIfTI file...), nor those
    with no option (:data:`NO_OPTION`: ``pca_given``). A path setting (``--cache-dir``, ``--metadata``,
    ``--weights``...) shows its last part only: the page can be mailed, and a folder above it may be named after a
    patient (the full path stays in ``manifest.json``)."""
    settings = manifest.get("settings") if isinstance(manifest.get("settings"), dict) else {}
    unused = not_applied({**settings, "scan": manifest.get("scan")})
    rows = []
    for key, val in sorted(settings.items()):
        if key in unused or key in NO_OPTION:
            continue
        if isinstance(val, dict):
            val = ", ".join(f"{k}={v}" for k, v in sorted(val.items()))
        elif isinstance(val, (list, tuple)):
            val = ",".join(str(v) for v in val)
        text = "" if val is None else str(val)
        if text and (key in PATH_SETTINGS or os.path.isabs(text) or text.startswith("~")):
            text = ".../" + re.split(r"[/\\]", text.rstrip("/\\"))[-1]
        if text.strip():
            rows.append((key, text))
    return rows


def steering_text(manifest: dict) -> str:
    """How a steered run was clustered, for the summary (``within each plane; level_2 factored out
    (center)``), or ``""``."""
    s = manifest.get("settings") or {}
    parts = []
    if isinstance(s.get("remove"), str) and s["remove"]:
        parts.append(f"{s['remove']} factored out ({s.get('remove_rule') or 'center'})")
    if isinstance(s.get("within"), str) and s["within"]:
        parts.append(f"within each {s['within']} (k per stratum; cluster ids numbered across the strata)")
    return escape_name("; ".join(parts))


def steer_within(manifest: dict) -> dict:
    """A ``--within`` run's record of its strata (``manifest.json`` ``steer.within``), or ``{}``: untrusted, like
    every field of a run folder (until 2026-12-07 one of another type ended the report in an internal error)."""
    steer = manifest.get("steer") if isinstance(manifest.get("steer"), dict) else {}
    return steer.get("within") if isinstance(steer.get("within"), dict) else {}


def within_pca_text(manifest: dict) -> str:
    """A ``--within`` run's reduction, for the summary: each stratum's own PCA (the components it kept, recorded
    in ``steer.within.pca``; else ``--pca`` capped at the images of a smaller stratum), and the one PCA of all
    the rows that the map and the silhouette use."""
    n = (manifest.get("pca") or {}).get("n_components")
    within = steer_within(manifest)
    strata, fitted = (within.get(key) if isinstance(within.get(key), dict) else {} for key in ("strata", "pca"))
    kept = [v for v in fitted.values() if isinstance(v, int) and not isinstance(v, bool)]
    if isinstance(n, bool) or not isinstance(n, (int, float)) or n <= 0:
        each = "none per stratum (--pca 0): each stratum's own clustering of its features"
    elif isinstance(n, float) and n < 1:
        each = f"per stratum: each stratum has its own PCA, keeping {n:g} of its variance, and its own clustering"
    elif kept:  # what each stratum's PCA kept (capped by its images and by the features' dimensions)
        fewer = sum(v < max(kept) for v in kept)
        each = (f"{max(kept)} components per stratum: each stratum has its own PCA"
                + (f" (fewer in {fewer} of the {len(kept)} strata)" if fewer else "") + " and its own clustering")
    else:  # a run folder written before the fitted sizes were recorded: the setting, capped by the strata's images
        small = [v for v in strata.values() if isinstance(v, int) and v < n]
        each = (f"{int(n)} components per stratum: each stratum has its own PCA"
                + (f" (fewer in {len(small)} of the {len(strata)} strata, which have fewer images)" if small else "")
                + " and its own clustering")
    both = "the features themselves" if each.startswith("none") else "one PCA of all the images"
    return escape_name(f"{each}; the map and the silhouette use {both}")


def no_pca_text(manifest: dict) -> str:
    """The summary's PCA row of a run that fitted no PCA (``--pca 0``: ``pca.solver`` ``none``), which clustered
    what it had as it was: ``none (--pca 0): the clustering takes the 1280 backbone features directly``, or the
    self-supervised embedding it learned (:func:`~brainclust.model.scorespace.ssl_embedding`); ``""`` for a run
    that fitted one (``pca.n_components`` then counts its components, not the width of what it clustered)."""
    pca = manifest.get("pca") if isinstance(manifest.get("pca"), dict) else {}
    if pca.get("solver") != "none":
        return ""
    n = pca.get("n_components")
    width = f"{n} " if isinstance(n, int) and not isinstance(n, bool) and n > 0 else ""
    of = ssl_embedding(manifest, dims=True) or f"the {width}backbone features"
    return escape_name(f"none (--pca 0): the clustering takes {of} directly")


def umap_text(manifest: dict) -> str:
    """The summary's PCA row of a UMAP run (``--reduce umap`` / ``pca+umap``), whose ``pca.n_components`` is UMAP's
    output width: what its ``reduce`` record says was fitted, ``50 components, then UMAP to 10 dimensions (--reduce
    pca+umap)``, or ``none (--pca 0): UMAP to 10 dimensions takes the backbone features directly (--reduce
    pca+umap)``; ``""`` for a run without UMAP."""
    red = manifest.get("reduce") if isinstance(manifest.get("reduce"), dict) else {}
    if red.get("method") != "umap":
        return ""
    pre, umap = red.get("pre_pca_components"), f"UMAP to {red.get('n_components')} dimensions"
    of, how = ssl_embedding(manifest, dims=True), "umap" if red.get("pre_pca") == "auto" else "pca+umap"
    if isinstance(pre, int) and not isinstance(pre, bool) and pre > 0:
        text = count_text(pre, "component") + (f" of {of}, not of the backbone features" if of else "")
        return escape_name(f"{text}, then {umap} (--reduce {how})")
    why = f"no wider than {UMAP_PRE_PCA} dimensions" if how == "umap" else "--pca 0"
    return escape_name(f"none ({why}): {umap} takes {of or 'the backbone features'} directly (--reduce {how})")


def reduction_text(manifest: dict) -> str:
    """The summary's PCA row where ``pca.n_components`` does not count fitted PCA components: a UMAP run's
    (:func:`umap_text`) or a run's without PCA (:func:`no_pca_text`); ``""`` for a PCA run."""
    return umap_text(manifest) or no_pca_text(manifest)


def estimated_strata(manifest: dict, rows: list[dict]) -> dict | None:
    """Where a steered run's column was estimated, not read: ``--within plane`` / ``--remove plane`` on images
    without a plane in their header (``plane_source`` of assignments.csv: ``estimate``; ``mixed`` for a unit of
    read and estimated slices; ``unreadable``), for the summary: ``options``, ``n`` rows and those counts; else
    ``None`` (the plane read from every header, another column, or a run before ``plane_source``)."""
    s = manifest.get("settings") or {}
    options = [f"--{opt} plane" for opt in ("within", "remove") if s.get(opt) == "plane"]
    if not options or not rows or "plane_source" not in rows[0]:
        return None
    count = Counter(str(r.get("plane_source") or "") for r in rows)
    if not count["estimate"] + count["mixed"] + count["unreadable"]:
        return None
    return {"options": " and ".join(options), "n": len(rows), "estimated": count["estimate"],
            "mixed": count["mixed"], "unreadable": count["unreadable"]}


def short_number(text):
    """A number written in full (``auto.csv``) as the page shows it: ``0.2451`` for ``0.24512345678901``;
    integers and text as they are."""
    try:
        x = float(text)
    except (TypeError, ValueError):
        return text
    return text if x.is_integer() or not np.isfinite(x) else f"{x:.4g}"
