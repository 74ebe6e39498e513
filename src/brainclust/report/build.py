"""The HTML report: one self-contained ``report.html`` per run, plus paper figures.

The report is built **only from a finished run's written outputs**, never from
features: ``assignments.csv``, ``metrics.json``, ``manifest.json`` and
``model/cluster.npz`` (``X_fit`` = the PCA embedding the clustering used,
``labels``, ``levels`` and, for hierarchical clustering, the scipy linkage
``tree``). Thumbnails are read from ``manifest["input"] / path``; images that
are gone are drawn as placeholders. So ``brainclust report OUT_DIR`` rebuilds
the same report at any time without extracting a single feature.

Sections: the scores at the top, a short summary (settings, weights, times,
versions and skipped files folded away), the scores with a one-line meaning
each (and the ranking of ``associations.csv`` when present), the explorer
(:mod:`brainclust.report.explorer`), the dendrogram pruned to depth 10 with
the cut marked (hierarchical only), per-cluster montages, a silhouette plot,
and with labels a confusion matrix after Hungarian matching and a purity
table. The same figures are written as PNG (300 dpi) and SVG under ``figures/``.

Security: every string from a file name, folder or setting reaches the HTML
through Jinja2 autoescaping, or as JSON (``<``, ``>``, ``&`` escaped) that the
page's script only ever assigns to ``textContent``. A Content-Security-Policy
meta tag forbids any request other than ``data:`` images.

Scale: the file keeps under a size budget (15 MB): thumbnails shrink with
the number of images, and above what fits the explorer holds a sample
stratified by cluster (the page says so).
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainclust.errors import ParameterError
from brainclust.io.atomic import atomic_write_text
from brainclust.io.outputs import escape_name, shown_name
from brainclust.model.scorespace import SPACE_NAMES, silhouette_space, ssl_comparison, ssl_embedding
from brainclust.report import figures as F
from brainclust.report.associations import ranking, read_summary
from brainclust.report.checks import checks_section
from brainclust.report.columns import describe_rows, name_unclustered, unclustered_name, unclustered_shown
from brainclust.report.explorer import ExplorerData, explorer_data, initial_colour, kept_colour, label_colours
from brainclust.report.figures import FigureSink
from brainclust.report.geometry import (largest_clusters, silhouette_per_image, stratified_sample, tsne_2d,
                                        tsne_perplexity, typical_atypical)
from brainclust.report.kstrata import within_k_table
from brainclust.report.record import record_in_manifest
from brainclust.report.render import TEMPLATES, plural, render
from brainclust.report.run import NOISE, RunOutputs, cluster_name, load_outputs, within_column
from brainclust.report.runtext import clustered_text, consensus_text, files_text, k_text, ssl_text, within_scores
from brainclust.report.strips import UnitThumbnails, run_thumbnails
from brainclust.report.tables import (Confusion, confusion, estimated_strata, purity_rows, reduction_text,
                                      settings_rows, short_number, steering_text, within_pca_text)
from brainclust.report.thumbnails import Thumbnails
from brainclust.terminal import clipped, count_text

__all__ = ["DENDROGRAM_DEPTH", "NOISE", "SCORE_MEANINGS", "SCORE_NAMES", "Confusion", "ReportInfo", "RunOutputs",
           "Thumbnails", "build_report", "confusion", "load_outputs", "purity_rows", "silhouette_per_image",
           "stratified_sample", "tsne_2d", "typical_atypical"]

log = logging.getLogger(__name__)

DENDROGRAM_DEPTH = 10
MONTAGE_CLUSTERS = 40  # the most clusters the montages draw (the largest; noise besides); all stay in the explorer
NO_LABEL = "(no label)"

#: One-line plain-language meaning of each score, shown next to it.
SCORE_MEANINGS = {
    "silhouette": "How much closer each image is to its own cluster than to the next one (cosine), averaged: "
                  "-1 to 1, near 0 = overlapping clusters, higher = tighter and better separated. Needs no labels.",
    "ari": "Agreement between clusters and labels over all pairs of images, corrected for chance: "
           "0 = no better than random, 1 = identical groupings.",
    "nmi": "How much knowing an image's cluster tells you about its label (shared information): "
           "0 = nothing, 1 = everything.",
    "fmi": "Geometric mean of pair precision and recall: of the pairs put in one cluster, how many share a "
           "label, and of the pairs that share a label, how many are put together (0 to 1).",
    "acc": "Share of images whose cluster, after the best one-to-one matching of clusters to labels "
           "(Hungarian), equals their label (0 to 1).",
}
SCORE_NAMES = {"silhouette": "Silhouette", "ari": "ARI", "nmi": "NMI", "fmi": "FMI", "acc": "ACC"}


@dataclass
class ReportInfo:
    """What :func:`build_report` wrote and measured."""

    path: Path
    size_bytes: int
    figures: list[str] = field(default_factory=list)
    n_map_points: int = 0
    n_missing_images: int = 0
    n_refused: int = 0  # paths of assignments.csv leading outside the input folder: never opened
    timings_s: dict = field(default_factory=dict)


# -- shared by the sections ------------------------------------------------------------
@dataclass
class Colours:
    """Colours of the clusters (``of_cluster``: no noise; ``of_id``: with noise) and of the labels.

    A label matched to a cluster (Hungarian) gets that cluster's colour; the
    label colours are empty when the run has no labels.
    """

    cluster_ids: list[int]
    of_cluster: dict[int, str]
    of_id: dict[int, str]
    of_label: dict[str, str] = field(default_factory=dict)


def cluster_colours(clusters: np.ndarray) -> Colours:
    """One palette colour per cluster id (sorted), grey for noise."""
    cluster_ids = sorted(set(clusters.tolist()) - {NOISE})
    cpal = dict(zip(cluster_ids, F.palette(len(cluster_ids))))
    return Colours(cluster_ids, cpal, {**cpal, NOISE: F.NOISE_COLOUR})


@contextmanager
def _timed(timings: dict[str, float], key: str):
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = time.perf_counter() - t0


def _fmt_seconds(s) -> str:
    if s is None:
        return ""
    s = float(s)
    return f"{s * 1000:.0f} ms" if s < 1 else (f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min")


# -- the sections: each returns its part of the template context ---------------------------
def summary_section(run: RunOutputs, command: str, shown_dir: Path | None = None) -> dict:
    """Data, skipped files, backbone, settings, seed, versions and time per stage (``shown_dir``: the run
    folder's name to show, when the report is built in a staging folder)."""
    m, n, skipped = run.manifest, len(run.rows), run.manifest.get("skipped", [])
    out_dir = shown_dir if shown_dir is not None else run.out_dir
    counts = unclustered_counts(run)
    return {
        "title": "brainclust report: " + escape_name(run.input_root.name if run.input_root else out_dir.name),
        "input": escape_name(run.input_root.name) if run.input_root else "(unknown)",  # the page can be mailed:
        "weights_file": escape_name(Path(str(m.get("backbone", {}).get("weights_path") or "")).name),  # no full paths
        "out_dir": escape_name(Path(out_dir).name), "n_images": n, "skipped": skipped, "n_skipped": len(skipped),
        "clustered_text": clustered_text(run.unit, n, counts["n_set_aside"], m.get("n_images", n),
                                         files_text({"n_files_scanned": n, **m}, len(skipped))),
        "backbone": m.get("backbone", {}), "settings": settings_rows(m), "steering": steering_text(m),
        "estimated": estimated_strata(m, run.rows), "consensus": consensus_text(m),
        "stratified": bool((m.get("settings") or {}).get("within")), "seed": run.seed, "method": run.method,
        "within_column": str((m.get("settings") or {}).get("within") or ""), "within_pca": within_pca_text(m),
        "k": run.k, "k_text": k_text(m, run.k), "n_clusters": len(set(run.clusters.tolist()) - {NOISE}),
        **counts, "pca": m.get("pca") or {}, "pca_of": ssl_embedding(m, dims=True), "reduction": reduction_text(m),
        "timings": [(k, _fmt_seconds(v)) for k, v in m.get("timings_s", {}).items()],
        "versions": m.get("versions", {}), "cache": m.get("cache", {}), "kind": m.get("kind", "run"),
        "n_labelled": run.metrics.get("n_labelled"), "command": command,
        "label_column": m["labels"] if isinstance(m.get("labels"), str) and m["labels"] != "folder" else None,
        "unit": run.unit, "n_slice_images": m.get("n_images", n),
    }


def scores_section(run: RunOutputs) -> dict:
    """The scores with a one-line meaning each (the silhouette always, label scores when computed; a ``--within``
    run's scores inside the strata), and the "what the clusters follow" ranking of ``associations.csv`` when the
    run has one."""
    scores, space = [], silhouette_space(run.manifest)
    for key in ("silhouette", "ari", "nmi", "fmi", "acc"):
        if key in run.metrics or key == "silhouette":
            v, sil = run.metrics.get(key), key == "silhouette"  # its space: named, a UMAP or kept SSL one apart
            scores.append({"key": key, "name": SCORE_NAMES[key] + (SPACE_NAMES.get(space["space"], "") if sil else ""),
                           "meaning": SCORE_MEANINGS[key] + (f" Taken on {space['on']}." if sil else ""),
                           "value": "n/a" if isinstance(v, bool) or not isinstance(v, (int, float)) else f"{v:.3f}"})
    groups = len(set(np.asarray(run.clusters).tolist()) - {NOISE})
    summary = read_summary(run.folder.associations, groups=groups, within=within_column(run.manifest))
    return {"scores": scores, "within_scores": within_scores(run.metrics, groups),
            **ranking(run.folder.associations), "space_note": space["note"],
            "ssl_compare": ssl_comparison(run.manifest) if "ssl" in space["space"] else None,
            "follows": summary[0] if summary else None, "tree_follows": summary[1] if summary else []}


def labels_section(run: RunOutputs, colours: Colours) -> dict:
    """With labels: the confusion matrix and purity table; sets ``colours.of_label`` (matched clusters' colours).

    Comes before the other sections, which colour by label.
    """
    ytrue = run.labels_true
    if ytrue is None or not any(ytrue):
        return {"conf": None, "purity": None, "has_labels": False, "label_legend": []}
    conf = confusion(ytrue, run.clusters)
    colours.of_label.update(conf.label_colours(colours.of_cluster.get, len(colours.cluster_ids)))
    colours.of_label[NO_LABEL] = F.NOISE_COLOUR
    legend = [(k, v) for k, v in colours.of_label.items() if k != NO_LABEL or "" in ytrue]
    return {"conf": conf, "purity": purity_rows(ytrue, run.clusters), "has_labels": True, "label_legend": legend}


def explorer_section(run: RunOutputs, ex: ExplorerData, colours: Colours, figs: FigureSink,
                     color_by: str | None = None, thumbs: Thumbnails | None = None) -> dict:
    """The explorer's data (:mod:`brainclust.report.explorer`) and the map figures by cluster and label;
    ``color_by``: the map's first colouring (else an earlier report's, :func:`kept_colour`, else the run's
    setting); ``thumbs``: units' strips or images. ``color_by`` in the result: the choice to keep, if any."""
    clusters, ytrue, idx = run.clusters, run.labels_true, ex.sample.tolist()
    figs.emit(F.map_figure(ex.coords, [cluster_name(c) for c in clusters[ex.sample].tolist()],
                           {cluster_name(c): col for c, col in colours.of_id.items()},
                           "t-SNE map, coloured by cluster"), "tsne_clusters")
    if colours.of_label:
        figs.emit(F.map_figure(ex.coords, [ytrue[i] or NO_LABEL for i in idx], colours.of_label,
                               "t-SNE map, coloured by label"), "tsne_labels")
    payload = dict(ex.payload, input=escape_name(run.input_root.name) if run.input_root else "",
                   strip=isinstance(thumbs, UnitThumbnails), unclustered=unclustered_counts(run)["unclustered"])
    chosen = kept_colour(run.manifest, color_by)
    payload["colour"] = initial_colour(payload, chosen or (run.manifest.get("settings") or {}).get("color_by"),
                                       given=bool(color_by))
    return {"map_data": payload, "n_map": len(idx), "map_sampled": payload["sampled"], "map_px": ex.px,
            "color_by": chosen if chosen == payload["colour"] else None,  # a column gone: warned once, forgotten
            "map_source": ex.map_source, "n_tsne": ex.n_tsne,
            "tsne_perplexity": tsne_perplexity(ex.n_tsne or len(idx))}


def dendrogram_section(run: RunOutputs, colours: Colours, figs: FigureSink) -> dict:
    """The dendrogram pruned to :data:`DENDROGRAM_DEPTH` with the cut marked, or why there is none."""
    if run.method == "hierarchical" and run.tree is not None:
        leaves = run.leaf_clusters if run.leaf_clusters is not None else run.clusters
        figs.emit(F.dendrogram_figure(run.tree, leaves, run.k, colours.of_cluster, DENDROGRAM_DEPTH), "dendrogram")
        return {"dendro_note": None, "depth": DENDROGRAM_DEPTH}
    within = (run.manifest.get("settings") or {}).get("within")
    return {"depth": DENDROGRAM_DEPTH, "dendro_note": (
        f"Not drawn: a --within {escape_name(str(within))} run builds one tree per stratum, none for all images."
        if within else f"Not applicable: the clustering method is '{run.method}'. Only hierarchical clustering "
                       "(--method hierarchical) builds a tree.")}


def silhouette_section(run: RunOutputs, colours: Colours, figs: FigureSink) -> tuple[dict, np.ndarray | None]:
    """The silhouette plot, or why there is none; also returns the per-image silhouette (for the montages)."""
    clusters = run.clusters
    sil = silhouette_per_image(run.X, clusters)
    if sil is None:
        return {"sil_note": "Not defined: the silhouette needs at least 2 clusters and fewer clusters than "
                            "images."}, None
    keep = np.isfinite(sil)  # noise has none; above SILHOUETTE_MAX images only a stratified sample has one
    figs.emit(F.silhouette_figure(sil[keep], clusters[keep], colours.of_cluster, float(np.mean(sil[keep]))),
              "silhouette")
    return {"sil_note": None}, sil


def unclustered_counts(run: RunOutputs) -> dict:
    """Cluster -1 split into ``n_noise`` (DBSCAN's noise, ``--outliers``) and ``n_set_aside`` (``--exclude``), and
    ``noise_title``: what the report calls the group (:func:`~brainclust.report.columns.unclustered_name`), and
    ``n_clustered``: the rows clustered (every row but those set aside; noise is the clustering's own)."""
    aside = int(run.set_aside.sum())
    noise = int((run.clusters == NOISE).sum()) - aside
    name = unclustered_name(noise, aside)
    return {"n_noise": noise, "n_set_aside": aside, "unclustered": name, "noise_title": name.capitalize(),
            "n_clustered": len(run.clusters) - aside}


def montage_section(run: RunOutputs, sil: np.ndarray | None, colours: Colours, thumbs: Thumbnails,
                    figs: FigureSink, montage_size: int, montage_px: int) -> dict:
    """Per cluster (noise last; the :data:`MONTAGE_CLUSTERS` largest) its most and least typical images."""
    clusters, names, ytrue, n = run.clusters, run.names, run.labels_true, len(run.rows)
    shown_ids, size_of = largest_clusters(clusters, MONTAGE_CLUSTERS)
    unclustered = unclustered_counts(run)["unclustered"]
    noun = plural(run.unit)

    def tiles(indices):
        return [{"src": thumbs.data_uri(i, montage_px), "name": shown_name(names[i]), "row": i,
                 "label": ytrue[i] if ytrue is not None else ""} for i in indices]

    picks = typical_atypical(run.X, clusters, montage_size, only=shown_ids)
    montages, fig_rows, stratum_of = [], [], run.stratum_of  # --within: each cluster's stratum in its heading
    for cid in shown_ids:
        (typ, aty), size, stratum = picks[cid], size_of[cid], stratum_of.get(cid)
        montages.append({
            "id": cluster_name(cid), "browse": unclustered if cid == NOISE else cluster_name(cid), "size": size,
            "colour": colours.of_id[cid], "share": size / n if n else 0.0, "stratum": stratum,
            "sil": float(np.nanmean(sil[clusters == cid])) if sil is not None and cid != NOISE else None,
            "typical": tiles(typ), "atypical": tiles(aty),  # cluster -1 has no centre: its first images are shown
            "typical_title": unclustered_shown(unclustered, len(typ), size, noun) if cid == NOISE else "Most typical"})
        stratum_line = [f"stratum {clipped(stratum, 20)}"] if stratum else []
        title = "\n".join([unclustered if cid == NOISE else f"cluster {cid}", *stratum_line, f"n={size}",
                           *(["file order"] if cid == NOISE else [])])
        fig_rows.append((title, [thumbs.small(i, montage_px) for i in typ],
                         [thumbs.small(i, montage_px) for i in aty]))
    figs.emit(F.montage_figure(fig_rows, montage_size), "montages")
    shown = sorted({i for typ, aty in picks.values() for i in typ + aty})
    return {"montages": montages, "montage_size": montage_size, "montage_rows": shown,
            "montage_clusters": len(set(size_of) - {NOISE}), "montage_shown": len(set(shown_ids) - {NOISE})}


def quality_section(run: RunOutputs, thumbs: Thumbnails, montage_px: int, cap: int = 60) -> dict:
    """``--outliers auto``: a gallery of the images set apart; ``--auto``: auto.csv; ``--self-supervised``: what
    was trained, and ``--ssl-gate``'s decision."""
    import csv

    info = run.metrics.get("outliers")
    idx = np.flatnonzero((run.clusters == NOISE) & ~run.set_aside)[:cap] if info else []  # not --exclude's
    gallery = [{"src": thumbs.data_uri(int(i), montage_px), "name": shown_name(run.rows[int(i)]["path"])} for i in idx]
    auto = None
    if run.folder.auto.is_file():
        with open(run.folder.auto, newline="", encoding="utf-8") as fh:  # the page shows 4 significant digits
            auto = [{k: short_number(v) for k, v in r.items()} for r in csv.DictReader(fh)]
    return {"outlier_info": info, "outlier_gallery": gallery, "auto_rows": auto,
            "auto_info": run.manifest.get("auto"), "ssl": ssl_text(run.manifest)}


def kselect_section(run: RunOutputs, figs: FigureSink) -> dict:
    """With ``--k auto``: the curves of the internal indices (a figure; the page shows it in the scores); with
    ``--within``, each stratum's k and votes (``within_k``, :func:`~brainclust.report.kstrata.within_k_table`)
    and the curves of the first strata."""
    ksel = run.metrics.get("k_selection")
    if ksel:
        indices, ps = dict(ksel["indices"]), ksel.get("prediction_strength")
        if isinstance(ps, dict) and isinstance(ps.get("ks"), list) and isinstance(ps.get("strength"), list):
            by_k = dict(zip(ps["ks"], ps["strength"]))  # its own panel: the finest level that reproduces
            indices["prediction_strength"] = {"curve": [by_k.get(k) for k in ksel["ks"]],
                                              "best": f">= {ps.get('threshold')}",
                                              "vote": ps.get("finest_reproducible_k"), "says": "evidence only:"}
        figs.emit(F.kselect_figure(ksel["ks"], indices, ksel["chosen_k"]), "k_selection")
    within = within_k_table(run.metrics)
    if within and within["curves"]:
        figs.emit(F.kselect_strata_figure(within["curves"]), "k_selection_within")
    return {"within_k": within}


def confusion_section(conf: Confusion | None, figs: FigureSink) -> dict:
    """The confusion matrix figure (its table and the purity table come from :func:`labels_section`)."""
    if conf is not None and conf.counts.size:
        figs.emit(F.confusion_figure(conf.counts, conf.row_names, conf.col_names, conf.n_matched), "confusion")
    return {}


# -- the report ----------------------------------------------------------------------
def _check_sizes(budget_mb, **sizes) -> None:
    for name, val in sizes.items():
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ParameterError(f"{name}: must be a positive integer, got {val!r}")
    if isinstance(budget_mb, bool) or not isinstance(budget_mb, (int, float)) or not budget_mb > 0:
        raise ParameterError(f"size_budget_mb: must be a positive number, got {budget_mb!r}")


def build_report(out_dir, *, max_map_points: int = 2000, montage_size: int = 8, thumb_px: int = 64,
                 montage_px: int = 96, write_figures: bool = True, command: str = "brainclust report",
                 size_budget_mb: float = 15.0, thumb_px_max: int = 160, color_by: str | None = None,
                 final_dir=None) -> ReportInfo:
    """Build ``report.html`` (and ``figures/``) from a finished run's outputs.

    Nothing is extracted: the inputs are the files listed in the module
    docstring (and ``map.npy``, ``associations.csv`` when the run has them).
    The manifest gets a ``report`` entry that records this.

    Parameters
    ----------
    out_dir : path-like
        The ``--out`` folder of a finished ``brainclust run``.
    max_map_points : int, default 2000
        Without a stored ``map.npy``: images the exact t-SNE places (the others by their neighbours).
    montage_size : int, default 8
        Typical images, and atypical images, per cluster montage.
    thumb_px, thumb_px_max : int, default 64 and 160
        Range of the explorer's thumbnail size: the largest at which every image
        fits in the budget; below ``thumb_px`` the file holds a stratified sample.
    montage_px : int, default 96
        Longer side of the montages' thumbnails.
    write_figures : bool, default True
        Also write PNG (300 dpi) and SVG figures under ``figures/``.
    command : str
        Recorded in the manifest (what built the report).
    size_budget_mb : float, default 15
        Size of ``report.html`` not to exceed (10^6 bytes); the explorer gets what the rest leaves.
    final_dir : path-like, optional
        The folder ``out_dir`` becomes when it is a publish's staging folder (shown, and in ``ReportInfo.path``).
    color_by : str or None
        The map's first colouring, kept for later builds (``report.color_by``; ``""`` forgets it) (default:
        the kept one, else the run's ``--color-by``, else ``cluster``).

    Returns
    -------
    ReportInfo

    Raises
    ------
    ModelFileError
        If the outputs are missing, damaged or inconsistent.
    ParameterError
        If a size parameter is not a positive integer, or the budget is not positive.
    """
    _check_sizes(size_budget_mb, **{"max_map_points (--max-points)": max_map_points, "montage_size": montage_size,
                                    "thumb_px": thumb_px, "montage_px": montage_px, "thumb_px_max": thumb_px_max})
    t_all, t = time.perf_counter(), {}
    with _timed(t, "load"):
        run = load_outputs(out_dir)
        thumbs = run_thumbnails(run)
        colours = cluster_colours(run.clusters)
        columns = describe_rows(run.rows)
        name_unclustered(columns, unclustered_counts(run)["unclustered"])
    shown = Path(final_dir) if final_dir is not None else None
    log.info("report: reading %s (%d %s); no features are extracted", shown or run.out_dir, len(run.rows),
             "images" if run.unit == "slice" else "rows")
    figs = FigureSink(run.folder.figures if write_figures else None, run.folder.root)
    ctx = {**summary_section(run, command, shown), **scores_section(run), **labels_section(run, colours)}
    label_colours(columns, colours.of_label)
    ctx.update(_figure_sections(run, ctx["conf"], colours, thumbs, figs, t, montage_size, montage_px, thumb_px))
    with _timed(t, "map"):  # the explorer gets the bytes the rest of the page leaves
        rest = len(_render({**ctx, **_EMPTY_MAP, "missing": thumbs.n_missing}).encode("utf-8"))
        ex = explorer_data(run, columns, thumbs, int(size_budget_mb * 1e6) - rest - 2048,
                           required=ctx["montage_rows"], min_px=thumb_px, max_px=max(thumb_px, thumb_px_max),
                           max_map_points=max_map_points)
        ctx.update(explorer_section(run, ex, colours, figs, color_by, thumbs), missing=thumbs.n_missing)
    with _timed(t, "render"):
        html = _render(ctx)
        path = atomic_write_text(run.folder.report, html)
    info = ReportInfo(path=shown / path.name if shown is not None else path, size_bytes=len(html.encode("utf-8")),
                      figures=figs.files,
                      n_map_points=len(ex.sample), n_missing_images=thumbs.n_missing, n_refused=thumbs.n_refused,
                      timings_s={**t, "total": time.perf_counter() - t_all})
    if thumbs.n_withheld:
        log.info("report: %s that may show patient text (BurnedInAnnotation YES, a screen save or a report) drawn "
                 "as placeholders", count_text(thumbs.n_withheld, "DICOM image"))
    record_in_manifest(run, info, command, ctx, size_budget_mb)
    return info


def _figure_sections(run, conf, colours, thumbs, figs, t: dict, montage_size: int, montage_px: int,
                     thumb_px: int) -> dict:
    """The page's figures and galleries (dendrogram, silhouette, montages, k choice, quality and checks,
    confusion), each timed in ``t``."""
    ctx: dict = {}
    with _timed(t, "dendrogram"):
        ctx.update(dendrogram_section(run, colours, figs))
    with _timed(t, "silhouette"):
        sil_ctx, sil = silhouette_section(run, colours, figs)
        ctx.update(sil_ctx)
    with _timed(t, "montages"):
        ctx.update(montage_section(run, sil, colours, thumbs, figs, montage_size, montage_px))
    ctx.update(kselect_section(run, figs))
    ctx.update(quality_section(run, thumbs, montage_px), **checks_section(run, thumbs, thumb_px))
    with _timed(t, "confusion"):
        ctx.update(confusion_section(conf, figs))
    return {**ctx, "figs": figs.uris}


_EMPTY_MAP = {"map_data": {"mode": "file", "n": 0, "n_total": 0, "columns": []}, "n_map": 0, "map_sampled": False,
              "map_px": 0, "map_source": "", "n_tsne": 0, "tsne_perplexity": 0.0}


def _render(ctx: dict) -> str:
    from markupsafe import Markup

    js = (TEMPLATES / "explorer.js").read_text(encoding="utf-8")
    if "</script" in js.lower() or "<!--" in js:
        raise RuntimeError("explorer.js must not hold '</script' or '<!--' (it is inlined in the report)")
    css = (TEMPLATES / "explorer.css").read_text(encoding="utf-8")
    return render("report.html.j2", {**ctx, "explorer_js": Markup(js), "explorer_css": Markup(css)})
