"""The HTML report: one self-contained ``report.html`` per run, plus paper figures.

The report is built **only from a finished run's written outputs**, never from
features: ``assignments.csv``, ``metrics.json``, ``manifest.json`` and
``model/cluster.npz`` (``X_fit`` = the PCA embedding the clustering used,
``labels``, ``levels`` and, for hierarchical clustering, the scipy linkage
``tree``). Thumbnails are read from ``manifest["input"] / path``; images that
are gone are drawn as placeholders. So ``brainclust report OUT_DIR`` rebuilds
the same report at any time without extracting a single feature.

Sections: summary (data, skipped files, backbone, weights, settings, seed,
time per stage), scores with a one-line meaning each, an interactive t-SNE map
coloured by cluster (and by label), the dendrogram pruned to depth 10 with the
cut marked (hierarchical only), per-cluster montages of the most and least
typical images, a silhouette plot, and with labels a confusion matrix after
Hungarian matching and a purity table. The same figures are written as PNG
(300 dpi) and SVG under ``figures/``.

Security: every string from a file name, folder or setting reaches the HTML
through Jinja2 autoescaping, or as JSON (``<``, ``>``, ``&`` escaped) that the
page's script only ever assigns to ``textContent``. A Content-Security-Policy
meta tag forbids any request other than ``data:`` images.

Scale: thumbnails are small JPEGs, the map holds at most ``max_map_points``
images (a sample stratified by cluster, also the t-SNE input), and each
montage a few images, so the file size is bounded whatever the number of
images.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ModelFileError, ParameterError
from .io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

REPORT_NAME = "report.html"
FIGURES_DIR = "figures"
DENDROGRAM_DEPTH = 10
NOISE = -1

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


# -- reading a finished run ------------------------------------------------------
@dataclass
class RunOutputs:
    """A finished run as read back from its ``--out`` folder.

    ``rows`` follow ``assignments.csv``; ``X`` row ``i`` is image ``rows[i]``.
    """

    out_dir: Path
    rows: list[dict]
    metrics: dict
    manifest: dict
    X: np.ndarray
    clusters: np.ndarray
    levels: np.ndarray | None
    tree: np.ndarray | None
    method: str
    k: int
    seed: int
    input_root: Path | None

    @property
    def names(self) -> list[str]:
        return [r["path"] for r in self.rows]

    @property
    def labels_true(self) -> list[str] | None:
        """Labels per image, or ``None`` when the run had no labels ("" = unlabelled image)."""
        has = bool(self.manifest.get("settings", {}).get("labels_from_folders")) or "ari" in self.metrics
        return [r.get("label", "") or "" for r in self.rows] if has else None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"'{path.parent}' is not a finished brainclust run: {path.name} is missing") from None
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"'{path}' is damaged ({exc})") from None


def load_outputs(out_dir) -> RunOutputs:
    """Read ``assignments.csv``, ``metrics.json``, ``manifest.json`` and ``model/cluster.npz``.

    Raises
    ------
    ModelFileError
        If a file is missing or damaged, or the files disagree with each other.
    """
    out = Path(out_dir)
    manifest = _read_json(out / "manifest.json")
    metrics = _read_json(out / "metrics.json")
    csv_path = out / "assignments.csv"
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError:
        raise ModelFileError(f"'{out}' is not a finished brainclust run: assignments.csv is missing") from None
    npz = out / "model" / "cluster.npz"
    try:
        with np.load(npz, allow_pickle=False) as z:
            X = np.asarray(z["X_fit"], dtype=np.float64)
            labels = np.asarray(z["labels"], dtype=np.int64)
            levels = z["levels"] if "levels" in z.files else None
            tree = z["tree"] if "tree" in z.files else None
            params = json.loads(str(z["params"])) if "params" in z.files else {}
    except FileNotFoundError:
        raise ModelFileError(f"'{out}' has no model/cluster.npz; 'brainclust report' needs the --out folder "
                             "of a 'brainclust run'") from None
    except (OSError, KeyError, ValueError) as exc:
        raise ModelFileError(f"cluster model '{npz}' is damaged ({exc})") from None
    try:
        csv_clusters = np.array([int(r["cluster"]) for r in rows], dtype=np.int64)
    except (KeyError, ValueError) as exc:
        raise ModelFileError(f"'{csv_path}' has a bad 'cluster' column ({exc})") from None
    if len(rows) != len(X) or not np.array_equal(csv_clusters, labels):
        raise ModelFileError(f"'{csv_path}' ({len(rows)} rows) does not match model/cluster.npz "
                             f"({len(X)} images): the outputs come from different runs")
    settings = manifest.get("settings", {})
    clustering = manifest.get("clustering", {})
    inp = manifest.get("input")
    try:  # the k the run used ("auto" in the settings is resolved in manifest["clustering"])
        k = int(clustering.get("k", params.get("n_clusters", settings.get("k"))))
    except (TypeError, ValueError):
        k = len(set(labels.tolist()) - {NOISE})
    return RunOutputs(out_dir=out, rows=rows, metrics=metrics, manifest=manifest, X=X, clusters=labels,
                      levels=levels, tree=tree,
                      method=str(clustering.get("method", params.get("method", settings.get("method", "")))),
                      k=k,
                      seed=int(settings.get("seed", 0) or 0), input_root=Path(inp) if inp else None)


# -- tables ----------------------------------------------------------------------
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
        return ["noise" if c == NOISE else str(c) for c in self.col_ids]

    @property
    def matched_accuracy(self) -> float:
        """Diagonal sum over all labelled images: the ACC of :mod:`brainclust.evaluate`."""
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
    """Per cluster: size, labelled images, majority label, its count and the purity (majority / labelled)."""
    y = np.asarray(["" if v is None else str(v) for v in labels_true], dtype=object)
    c = np.asarray(clusters, dtype=np.int64)
    out = []
    for cid in sorted(set(c.tolist()), key=lambda v: (v == NOISE, v)):
        sel = c == cid
        lab = y[sel & (y != "")]
        vals, cnt = np.unique(lab.astype(str), return_counts=True) if len(lab) else (np.array([]), np.array([]))
        order = np.lexsort((vals, -cnt)) if len(cnt) else []
        top = [(str(vals[i]), int(cnt[i])) for i in order]
        out.append({"cluster": "noise" if cid == NOISE else str(cid), "size": int(sel.sum()),
                    "n_labelled": int(len(lab)), "majority": top[0][0] if top else "",
                    "majority_count": top[0][1] if top else 0,
                    "purity": (top[0][1] / len(lab)) if top else None,
                    "breakdown": ", ".join(f"{n}: {k}" for n, k in top)})
    return out


# -- geometry ----------------------------------------------------------------------
def _unit(X: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norm, 1e-12)


def typical_atypical(X: np.ndarray, clusters: np.ndarray, n: int) -> dict[int, tuple[list[int], list[int]]]:
    """Per cluster, the ``n`` images closest to its centre and the ``n`` farthest (cosine).

    The centre is the mean of the cluster's unit vectors. A cluster with fewer
    than ``2n`` images shows each image once (typical first). Noise gets its
    first ``n`` images and no atypical list.
    """
    U = _unit(np.asarray(X, dtype=np.float64))
    out = {}
    for cid in sorted(set(clusters.tolist())):
        idx = np.flatnonzero(clusters == cid)
        if cid == NOISE:
            out[cid] = (idx[:n].tolist(), [])
            continue
        centre = _unit(U[idx].mean(axis=0, keepdims=True))[0]
        d = 1.0 - U[idx] @ centre
        order = idx[np.lexsort((idx, d))]
        typ = order[:n].tolist()
        rest = order[len(typ):]
        aty = rest[::-1][: min(n, len(rest))].tolist()
        out[cid] = (typ, aty)
    return out


def stratified_sample(clusters: np.ndarray, cap: int, random_state: int = 0) -> np.ndarray:
    """About ``cap`` sorted indices (at most ``cap`` + number of clusters), each cluster sampled in
    proportion to its size and with at least one image, so that small clusters stay visible."""
    n = len(clusters)
    if n <= cap:
        return np.arange(n)
    rng = np.random.default_rng(random_state)
    ids, sizes = np.unique(clusters, return_counts=True)
    quota = np.maximum(1, np.floor(sizes * cap / n)).astype(int)
    quota = np.minimum(quota, sizes)
    picked = [rng.choice(np.flatnonzero(clusters == c), size=q, replace=False) for c, q in zip(ids, quota)]
    return np.sort(np.concatenate(picked))


def tsne_2d(X: np.ndarray, random_state: int = 0) -> np.ndarray:
    """2-D t-SNE (cosine, PCA init, perplexity ``min(30, (n-1)/3)``); tiny inputs fall back to PCA."""
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    if n < 5:
        Z = X - X.mean(axis=0)
        if Z.shape[1] >= 2 and n >= 2:
            _, _, vt = np.linalg.svd(Z, full_matrices=False)
            Y = Z @ vt[:2].T
            return np.hstack([Y, np.zeros((n, 2 - Y.shape[1]))])
        return np.column_stack([np.arange(n, dtype=float), np.zeros(n)])
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    # one thread: the Barnes-Hut OpenMP loop gains little here, is many times slower on a busy machine
    # (oversubscription: 66 s vs 10 s for 1000 images measured on 2 shared cores) and sums in a fixed order
    with threadpool_limits(limits=1):
        return TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3.0), init="pca", metric="cosine",
                    random_state=random_state).fit_transform(X)


def silhouette_per_image(X: np.ndarray, clusters: np.ndarray) -> np.ndarray | None:
    """Cosine silhouette of every non-noise image (NaN for noise), or ``None`` when undefined."""
    from sklearn.metrics import silhouette_samples

    keep = clusters != NOISE
    k = len(set(clusters[keep].tolist()))
    if not 2 <= k < keep.sum():
        return None
    out = np.full(len(clusters), np.nan)
    out[keep] = silhouette_samples(X[keep], clusters[keep], metric="cosine")
    return out


# -- thumbnails ----------------------------------------------------------------------
class Thumbnails:
    """Small grayscale JPEG thumbnails of a run's images, read on demand and memoised.

    Intensities are clipped to the 0.5-99.5 percentiles, like the
    pre-processing. An image that cannot be read becomes a placeholder.
    """

    def __init__(self, root: Path | None, rows: list[dict], quality: int = 70):
        self.root = root
        self.rows = rows
        self.quality = quality
        self._arrays: dict[int, np.ndarray | None] = {}
        self.n_missing = 0

    def array(self, i: int) -> np.ndarray | None:
        """The image as uint8 2-D array (``None`` when it cannot be read)."""
        if i not in self._arrays:
            from .export import record_of_row
            from .ingest import load_record

            arr = None
            if self.root is not None:
                try:
                    a = np.asarray(load_record(record_of_row(self.root, self.rows[i])), dtype=np.float64)
                    lo, hi = np.percentile(a, [0.5, 99.5])
                    arr = (np.clip((a - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8) if hi > lo else \
                        np.zeros(a.shape, np.uint8)
                except Exception as exc:  # noqa: BLE001 - any unreadable image becomes a placeholder
                    log.debug("report: no thumbnail for %s (%s)", self.rows[i].get("path"), exc)
                    arr = None
            if arr is None:
                self.n_missing += 1
            self._arrays[i] = arr
        return self._arrays[i]

    def small(self, i: int, px: int) -> np.ndarray:
        """uint8 thumbnail whose longer side is ``px`` (a grey cross when the image is gone)."""
        from PIL import Image

        arr = self.array(i)
        if arr is None:
            ph = np.full((px, px), 200, np.uint8)
            d = np.arange(px)
            ph[d, d] = ph[d, px - 1 - d] = 120
            return ph
        im = Image.fromarray(arr)
        im.thumbnail((px, px), Image.Resampling.LANCZOS if max(im.size) > px else Image.Resampling.BICUBIC)
        if max(im.size) < px:
            scale = px / max(im.size)
            im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                           Image.Resampling.BICUBIC)
        return np.asarray(im)

    def data_uri(self, i: int, px: int) -> str:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(self.small(i, px)).save(buf, format="JPEG", quality=self.quality, optimize=True)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# -- the report ----------------------------------------------------------------------
@dataclass
class ReportInfo:
    """What :func:`build_report` wrote and measured."""

    path: Path
    size_bytes: int
    figures: list[str] = field(default_factory=list)
    n_map_points: int = 0
    n_missing_images: int = 0
    timings_s: dict = field(default_factory=dict)


def _fmt_seconds(s) -> str:
    if s is None:
        return ""
    s = float(s)
    return f"{s * 1000:.0f} ms" if s < 1 else (f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min")


def _settings_rows(manifest: dict) -> list[tuple[str, str]]:
    rows = []
    for key, val in sorted(manifest.get("settings", {}).items()):
        if isinstance(val, dict):
            val = ", ".join(f"{k}={v}" for k, v in sorted(val.items()))
        elif isinstance(val, (list, tuple)):
            val = ",".join(str(v) for v in val)
        rows.append((key, "" if val is None else str(val)))
    return rows


def _map_svg_points(coords: np.ndarray, width: float = 560.0, height: float = 480.0, pad: float = 12.0):
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    span = np.where(hi - lo > 1e-12, hi - lo, 1.0)
    scale = min((width - 2 * pad) / span[0], (height - 2 * pad) / span[1])
    off = np.array([(width - scale * span[0]) / 2, (height - scale * span[1]) / 2])
    xy = (coords - lo) * scale + off
    xy[:, 1] = height - xy[:, 1]
    return np.round(xy, 1)


def build_report(out_dir, *, max_map_points: int = 2000, montage_size: int = 8, thumb_px: int = 64,
                 montage_px: int = 96, write_figures: bool = True, command: str = "brainclust report") -> ReportInfo:
    """Build ``report.html`` (and ``figures/``) from a finished run's outputs.

    Nothing is extracted: the inputs are the files listed in the module
    docstring. The manifest gets a ``report`` entry that records this.

    Parameters
    ----------
    out_dir : path-like
        The ``--out`` folder of a finished ``brainclust run``.
    max_map_points : int, default 2000
        Images on the t-SNE map (a sample stratified by cluster above this).
    montage_size : int, default 8
        Typical images, and atypical images, per cluster montage.
    thumb_px, montage_px : int
        Longer side of the map's and the montages' thumbnails.
    write_figures : bool, default True
        Also write PNG (300 dpi) and SVG figures under ``figures/``.
    command : str
        Recorded in the manifest (what built the report).

    Returns
    -------
    ReportInfo

    Raises
    ------
    ModelFileError
        If the outputs are missing, damaged or inconsistent.
    ParameterError
        If a size parameter is not a positive integer.
    """
    for name, val in (("max_map_points (--max-points)", max_map_points), ("montage_size", montage_size),
                      ("thumb_px", thumb_px), ("montage_px", montage_px)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ParameterError(f"{name}: must be a positive integer, got {val!r}")
    from . import figures as F

    t_all = time.perf_counter()
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    run = load_outputs(out_dir)
    out = run.out_dir
    figdir = out / FIGURES_DIR if write_figures else None
    n = len(run.rows)
    clusters = run.clusters
    names = run.names
    ytrue = run.labels_true
    thumbs = Thumbnails(run.input_root, run.rows)
    cluster_ids = sorted(set(clusters.tolist()) - {NOISE})
    cpal = dict(zip(cluster_ids, F.palette(len(cluster_ids))))
    colour_of = {**cpal, NOISE: F.NOISE_COLOUR}
    t["load"] = time.perf_counter() - t0
    log.info("report: reading %s (%d images); no features are extracted", out, n)

    # confusion first: label colours follow the matched clusters
    conf = purity = None
    label_colour: dict[str, str] = {}
    if ytrue is not None and any(ytrue):
        conf = confusion(ytrue, clusters)
        purity = purity_rows(ytrue, clusters)
        extra = iter(F.palette(len(cluster_ids) + len(conf.row_names))[len(cluster_ids):])
        for i, name in enumerate(conf.row_names):
            label_colour[name] = cpal[conf.col_ids[i]] if i < conf.n_matched else next(extra)
        label_colour["(no label)"] = F.NOISE_COLOUR

    figs: dict[str, str] = {}
    fig_files: list[str] = []

    def emit(fig, name):
        figs[name] = _png_uri(F.save_figure(fig, figdir, name))
        if figdir is not None:
            fig_files.extend([f"{FIGURES_DIR}/{name}.png", f"{FIGURES_DIR}/{name}.svg"])

    # t-SNE map
    t0 = time.perf_counter()
    sample = stratified_sample(clusters, max_map_points, run.seed)
    coords = tsne_2d(run.X[sample], run.seed)
    t["tsne"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cl_names = ["noise" if c == NOISE else str(c) for c in clusters[sample].tolist()]
    emit(F.map_figure(coords, cl_names, {("noise" if c == NOISE else str(c)): col for c, col in colour_of.items()},
                      "t-SNE map, coloured by cluster"), "tsne_clusters")
    if conf is not None:
        lab_names = [ytrue[i] or "(no label)" for i in sample.tolist()]
        emit(F.map_figure(coords, lab_names, label_colour, "t-SNE map, coloured by label"), "tsne_labels")
    xy = _map_svg_points(coords)
    points = [{"x": float(xy[j, 0]), "y": float(xy[j, 1]), "i": j, "c": colour_of[int(clusters[i])],
               "l": label_colour.get(ytrue[i] or "(no label)", F.NOISE_COLOUR) if conf is not None else ""}
              for j, i in enumerate(sample.tolist())]
    map_data = {"names": [names[i] for i in sample.tolist()],
                "cluster": ["noise" if clusters[i] == NOISE else str(int(clusters[i])) for i in sample.tolist()],
                "label": [ytrue[i] for i in sample.tolist()] if conf is not None else None,
                "thumbs": [thumbs.data_uri(i, thumb_px) for i in sample.tolist()]}
    t["map"] = time.perf_counter() - t0

    # dendrogram
    t0 = time.perf_counter()
    dendro_note = None
    if run.method == "hierarchical" and run.tree is not None:
        emit(F.dendrogram_figure(run.tree, clusters, run.k, cpal, DENDROGRAM_DEPTH), "dendrogram")
    else:
        dendro_note = (f"Not applicable: the clustering method is '{run.method}'. Only hierarchical clustering "
                       "(--method hierarchical) builds a tree.")
    t["dendrogram"] = time.perf_counter() - t0

    # silhouette
    t0 = time.perf_counter()
    sil = silhouette_per_image(run.X, clusters)
    sil_note = None
    if sil is not None:
        keep = clusters != NOISE
        mean = float(np.mean(sil[keep]))
        emit(F.silhouette_figure(sil[keep], clusters[keep], cpal, mean), "silhouette")
    else:
        sil_note = "Not defined: the silhouette needs at least 2 clusters and fewer clusters than images."
    t["silhouette"] = time.perf_counter() - t0

    # montages
    t0 = time.perf_counter()
    picks = typical_atypical(run.X, clusters, montage_size)
    montages = []
    fig_rows = []
    for cid in sorted(picks, key=lambda v: (v == NOISE, v)):
        typ, aty = picks[cid]
        size = int((clusters == cid).sum())
        montages.append({
            "id": "noise" if cid == NOISE else str(cid), "size": size, "colour": colour_of[cid],
            "share": size / n if n else 0.0,
            "sil": float(np.nanmean(sil[clusters == cid])) if sil is not None and cid != NOISE else None,
            "typical": [{"src": thumbs.data_uri(i, montage_px), "name": names[i],
                         "label": ytrue[i] if ytrue is not None else ""} for i in typ],
            "atypical": [{"src": thumbs.data_uri(i, montage_px), "name": names[i],
                          "label": ytrue[i] if ytrue is not None else ""} for i in aty]})
        title = f"{'noise' if cid == NOISE else 'cluster ' + str(cid)}\nn={size}"
        fig_rows.append((title, [thumbs.small(i, montage_px) for i in typ], [thumbs.small(i, montage_px) for i in aty]))
    emit(F.montage_figure(fig_rows, montage_size), "montages")
    t["montages"] = time.perf_counter() - t0

    # --k auto: the curves of the internal indices
    ksel = run.metrics.get("k_selection")
    if ksel:
        emit(F.kselect_figure(ksel["ks"], ksel["indices"], ksel["chosen_k"]), "k_selection")

    # confusion
    t0 = time.perf_counter()
    if conf is not None and conf.counts.size:
        emit(F.confusion_figure(conf.counts, conf.row_names, conf.col_names, conf.n_matched), "confusion")
    t["confusion"] = time.perf_counter() - t0

    # summary
    m = run.manifest
    scores = []
    for key in ("silhouette", "ari", "nmi", "fmi", "acc"):
        if key in run.metrics or key == "silhouette":
            v = run.metrics.get(key)
            scores.append({"key": key, "name": SCORE_NAMES[key], "meaning": SCORE_MEANINGS[key],
                           "value": "n/a" if v is None else f"{v:.3f}"})
    bb = m.get("backbone", {})
    timings = [(k, _fmt_seconds(v)) for k, v in m.get("timings_s", {}).items()]
    skipped = m.get("skipped", [])
    ctx = {
        "title": f"brainclust report: {run.input_root.name if run.input_root else out.name}",
        "input": str(run.input_root) if run.input_root else "(unknown)",
        "out_dir": str(out), "n_images": n, "n_files_scanned": m.get("n_files_scanned", n),
        "skipped": skipped[:500], "n_skipped": len(skipped),
        "backbone": bb, "settings": _settings_rows(m), "seed": run.seed, "method": run.method, "k": run.k,
        "n_clusters": len(cluster_ids), "n_noise": int((clusters == NOISE).sum()),
        "pca": m.get("pca", {}), "timings": timings, "versions": m.get("versions", {}),
        "cache": m.get("cache", {}), "kind": m.get("kind", "run"),
        "scores": scores, "has_labels": conf is not None, "n_labelled": run.metrics.get("n_labelled"),
        "figs": figs, "points": points, "map_data": map_data, "n_map": len(sample), "tsne_perplexity":
            min(30.0, (len(sample) - 1) / 3.0), "map_sampled": len(sample) < n,
        "cluster_legend": [("noise" if c == NOISE else str(c), colour_of[c], int((clusters == c).sum()))
                           for c in cluster_ids + ([NOISE] if (clusters == NOISE).any() else [])],
        "label_legend": [(k_, v) for k_, v in label_colour.items() if k_ != "(no label)" or
                         (ytrue is not None and "" in ytrue)],
        "dendro_note": dendro_note, "sil_note": sil_note, "montages": montages, "montage_size": montage_size,
        "conf": conf, "purity": purity, "missing": 0, "depth": DENDROGRAM_DEPTH,
        "command": command,
    }
    ctx["missing"] = thumbs.n_missing
    t0 = time.perf_counter()
    html = _render(ctx)
    path = atomic_write_text(out / REPORT_NAME, html)
    t["render"] = time.perf_counter() - t0
    total = time.perf_counter() - t_all
    if thumbs.n_missing:
        log.warning("report: %d image(s) could not be read under %s; drawn as placeholders",
                    thumbs.n_missing, run.input_root)
    info = ReportInfo(path=path, size_bytes=len(html.encode("utf-8")), figures=fig_files,
                      n_map_points=len(sample), n_missing_images=thumbs.n_missing,
                      timings_s={**t, "total": total})
    m["report"] = {"file": REPORT_NAME, "built_by": command, "features_extracted": 0,
                   "sources": ["assignments.csv", "metrics.json", "manifest.json", "model/cluster.npz"],
                   "size_bytes": info.size_bytes, "n_map_points": len(sample),
                   "tsne": {"perplexity": ctx["tsne_perplexity"], "metric": "cosine", "random_state": run.seed},
                   "n_missing_images": thumbs.n_missing, "figures": fig_files,
                   "timings_s": info.timings_s}
    atomic_write_json(out / "manifest.json", m)
    log.info("report: %s (%.1f MB, %.1f s; built from the written outputs, 0 features extracted)",
             path, info.size_bytes / 1e6, total)
    return info


def _render(ctx: dict) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}%"
    env.filters["f3"] = lambda v: "n/a" if v is None else f"{v:.3f}"
    return env.get_template("report.html.j2").render(**ctx)
