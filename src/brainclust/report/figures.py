"""Static figures of the report (matplotlib, ``Agg`` backend).

Every function returns a matplotlib ``Figure``; :func:`save_figure` writes it
as a 300-dpi PNG and an SVG under ``figures/`` and returns a smaller PNG for
embedding in the HTML report. matplotlib is imported inside the functions so
that importing :mod:`brainclust` stays cheap.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from brainclust.core.arrays import group_members
from brainclust.io.atomic import atomic_write_bytes
from brainclust.terminal import clipped

#: Colour of DBSCAN noise (cluster ``-1``) and of points without a label.
NOISE_COLOUR = "#9e9e9e"
_TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
          "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
#: Dots of the t-SNE scatter, in points² (matplotlib) for a given number of points.
_DOT_MAX, _DOT_MIN = 36.0, 4.0
#: The most groups a legend or an axis names (the largest); a map counts the rest in one entry.
LEGEND_MAX = 20


def palette(n: int) -> list[str]:
    """``n`` distinct hex colours: tab10, then tab20's light shades, then evenly spaced hues."""
    light = ["#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
             "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5"]
    base = _TAB10 + light
    if n <= len(base):
        return base[:n]
    import colorsys

    extra = [colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65, 0.85) for i in range(n - len(base))]
    return base + ["#%02x%02x%02x" % tuple(int(255 * c) for c in rgb) for rgb in extra]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    # text.parse_math off: labels, strata and file names are data; a '$' in one is not TeX (it raised at saving)
    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "svg.hashsalt": "brainclust",
                         "svg.fonttype": "none", "figure.dpi": 100, "text.parse_math": False})
    return plt


def save_figure(fig, figdir: Path | None, name: str, embed_dpi: int = 110) -> bytes:
    """Write ``figdir/name.png`` (300 dpi) and ``figdir/name.svg``; return PNG bytes for embedding.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        Closed after saving.
    figdir : Path or None
        Folder for the paper figures; nothing is written there when ``None``.
    name : str
        File stem.
    embed_dpi : int, default 110
        Resolution of the returned PNG.
    """
    plt = _plt()
    try:
        if figdir is not None:
            for ext, kw in (("png", {"dpi": 300}), ("svg", {"metadata": {"Date": None}})):
                buf = io.BytesIO()
                fig.savefig(buf, format=ext, bbox_inches="tight", **kw)
                atomic_write_bytes(Path(figdir) / f"{name}.{ext}", buf.getvalue())
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=embed_dpi, bbox_inches="tight")
        return buf.getvalue()
    finally:
        plt.close(fig)


def map_figure(coords: np.ndarray, groups: Sequence[str], colours: dict[str, str], title: str):
    """Scatter of a 2-D map (t-SNE), one colour per group, with a legend.

    Parameters
    ----------
    coords : array of shape (n, 2)
    groups : sequence of str, length n
        Group name of each point (cluster or label).
    colours : dict
        Group name -> hex colour; the legend follows its order.
    """
    plt = _plt()
    groups = np.asarray(groups, dtype=object)
    n = len(coords)
    size = float(np.clip(3000.0 / max(n, 1), _DOT_MIN, _DOT_MAX))
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    names, codes, counts = np.unique(groups, return_inverse=True, return_counts=True)
    count_of = dict(zip(names.tolist(), counts.tolist()))
    present = [g for g in colours if g in count_of]  # one scatter, drawn group after group in the legend's order
    rank_of = {g: r for r, g in enumerate(present)}
    rank = np.array([rank_of.get(g, -1) for g in names.tolist()])[codes]
    order = np.flatnonzero(rank >= 0)[np.argsort(rank[rank >= 0], kind="stable")]
    ax.scatter(coords[order, 0], coords[order, 1], s=size, c=[colours[present[r]] for r in rank[order]],
               linewidths=0, alpha=0.85)
    named = set(sorted(present, key=lambda g: -count_of[g])[:LEGEND_MAX])
    for g in (g for g in present if g in named):  # the legend: the largest groups, in the colours' order
        ax.scatter([], [], s=size, c=colours[g], linewidths=0, alpha=0.85, label=f"{g} ({count_of[g]})")
    if len(present) > LEGEND_MAX:
        ax.scatter([], [], s=0, label=f"+{len(present) - LEGEND_MAX} smaller groups")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.set_title(title)
    if present:  # no group to name: no legend (matplotlib would warn)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, markerscale=max(1.0, 20 / size))
    return fig


def dendrogram_figure(tree: np.ndarray, clusters: np.ndarray, k: int, colours: dict[int, str], depth: int = 10):
    """Dendrogram of a scipy linkage, truncated to ``depth`` levels, with the cut into ``k`` marked.

    ``clusters`` is the flat cluster of each leaf of the tree (an image, or a micro-cluster of a
    two-stage tree; a run with outliers set apart has one leaf per inlier). Links inside one flat
    cluster take that cluster's colour; links above the cut are black. Leaves show the number of
    images they stand for.
    """
    from scipy.cluster.hierarchy import dendrogram

    plt = _plt()
    n = len(tree) + 1
    node_cluster = np.full(2 * n - 1, -2, dtype=np.int64)
    if len(clusters) == n:  # a leaf's cluster (otherwise, e.g. an old caller passing images, links stay black)
        node_cluster[:n] = clusters
    for i, (a, b) in enumerate(tree[:, :2].astype(np.int64)):
        ca, cb = node_cluster[a], node_cluster[b]
        node_cluster[n + i] = ca if ca == cb else -2

    def link_colour(node: int) -> str:
        c = int(node_cluster[node])
        return colours.get(c, "#000000") if c >= 0 else "#000000"

    fig, ax = plt.subplots(figsize=(10, 4.8))
    d = dendrogram(tree, truncate_mode="level", p=depth, link_color_func=link_colour, no_plot=True)
    n_leaves = len(d["leaves"])
    readable = n_leaves <= 60
    dendrogram(tree, truncate_mode="level", p=depth, link_color_func=link_colour, ax=ax,
               no_labels=not readable, show_leaf_counts=True, leaf_rotation=90, leaf_font_size=7)
    heights = np.sort(tree[:, 2])
    if 2 <= k <= n:
        cut = 0.5 * (heights[n - k - 1] + heights[n - k]) if n - k - 1 >= 0 else heights[0] / 2
        ax.axhline(cut, color="#d62728", linestyle="--", linewidth=1.2)
        ax.text(ax.get_xlim()[1], cut, f"  cut: k = {k}", color="#d62728", va="center", ha="left", fontsize=9)
    ax.set_ylabel("cosine distance (average linkage)")
    ax.set_xlabel("leaf: image index, or (number of images) below a pruned branch" if readable else
                  f"{n_leaves} leaves (images or pruned branches; too many to label)")
    ax.set_title(f"Hierarchical clustering, top {depth} levels")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig


def silhouette_figure(sil: np.ndarray, clusters: np.ndarray, colours: dict[int, str], mean: float | None):
    """Classic silhouette plot: one horizontal bar per image, sorted within each cluster; the
    :data:`LEGEND_MAX` largest clusters are named."""
    plt = _plt()
    ids, sizes, members = group_members(clusters)
    named = set(ids[np.lexsort((ids, -sizes))[:LEGEND_MAX]].tolist())
    fig, ax = plt.subplots(figsize=(6.4, max(3.2, min(8.0, 1.2 + 0.45 * len(ids)))))
    y0, gap = 0, max(2, len(sil) // 60)
    ticks = []
    for c, idx in zip(ids.tolist(), members):
        vals = np.sort(sil[idx])
        y = np.arange(y0, y0 + len(vals))
        ax.fill_betweenx(y, 0, vals, color=colours.get(c, NOISE_COLOUR), linewidth=0, step=None)
        if c in named:
            ticks.append((y0 + len(vals) / 2, f"{c} (n={len(vals)})"))
        y0 += len(vals) + gap
    if mean is not None:
        ax.axvline(mean, color="#d62728", linestyle="--", linewidth=1, label=f"mean {mean:.3f}")
        ax.legend(loc="lower right", frameon=False, fontsize=9)
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_yticks([t for t, _ in ticks], [s for _, s in ticks])
    ax.set_ylim(-gap, y0 + gap * 2)
    ax.set_xlim(min(-0.1, float(sil.min()) - 0.02) if len(sil) else -0.1, 1.0)
    ax.set_xlabel("silhouette (cosine)")
    ax.set_ylabel("cluster")
    ax.set_title("Silhouette per image")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig


def _kselect_panels(axes, ks: Sequence[int], indices: dict, chosen: int) -> None:
    """One small panel per internal index of ``--k auto`` on ``axes``: its curve over k, its vote, the chosen k."""
    for ax, name in zip(axes, indices):
        idx = indices[name]
        y = [np.nan if v is None else v for v in idx["curve"]]
        ax.plot(ks, y, marker="o", markersize=3, color="#1f77b4")
        ax.axvline(chosen, color="#d62728", linestyle="--", linewidth=1)
        ax.set_xlim(min(ks) - 0.5, max(ks) + 0.5)  # every panel over the same k, the chosen one inside
        vote = "no k passes" if idx["vote"] is None else f"{idx.get('says', 'votes')} k={idx['vote']}"
        ax.set_title(f"{name.replace('_', ' ')} ({idx['best']}; {vote})", fontsize=9)
        ax.set_xlabel("k")
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)


def kselect_figure(ks: Sequence[int], indices: dict, chosen: int):
    """One small panel per internal index of ``--k auto``: its curve over k, its vote, the chosen k."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(indices), figsize=(3.0 * len(indices), 2.8), squeeze=False)
    _kselect_panels(axes[0], ks, indices, chosen)
    fig.suptitle(f"--k auto: chosen k = {chosen} (dashed)", fontsize=10)
    fig.tight_layout()
    return fig


def kselect_strata_figure(selections: dict):
    """``--within`` with ``--k auto``: one row of :func:`kselect_figure`'s panels per stratum (``selections``:
    stratum -> its ``k_selection`` record), the stratum and its chosen k left of its row."""
    plt = _plt()
    n_cols = max(len(sel["indices"]) for sel in selections.values())
    fig, axes = plt.subplots(len(selections), n_cols, figsize=(3.0 * n_cols, 2.4 * len(selections)), squeeze=False)
    for row, (name, sel) in zip(axes, selections.items()):
        _kselect_panels(row, sel["ks"], sel["indices"], sel["chosen_k"])
        row[0].set_ylabel(f"{clipped(str(name), 24)}: k = {sel['chosen_k']}", fontsize=9)
        for ax in row[len(sel["indices"]):]:
            ax.set_visible(False)
    fig.suptitle("--k auto per stratum: one row per stratum, its chosen k dashed", fontsize=10)
    fig.tight_layout()
    return fig


def confusion_figure(counts: np.ndarray, row_names: Sequence[str], col_names: Sequence[str], n_matched: int):
    """Heat map of a label × cluster table with the count in every cell.

    The first ``n_matched`` columns are the clusters matched to the rows in
    order (Hungarian), so the matched cells lie on the diagonal (outlined).
    """
    plt = _plt()
    from matplotlib.patches import Rectangle

    nr, nc = counts.shape
    fig, ax = plt.subplots(figsize=(1.6 + 0.75 * nc, 1.2 + 0.55 * nr))
    norm = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i in range(nr):
        for j in range(nc):
            ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=9,
                    color="white" if norm[i, j] > 0.55 else "black")
    for i in range(min(n_matched, nr, nc)):
        ax.add_patch(Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#d62728", linewidth=1.6))
    long = max((len(str(c)) for c in col_names), default=0) > 3
    ax.set_xticks(range(nc), list(col_names), rotation=45 if long else 0, ha="right" if long else "center")
    ax.set_yticks(range(nr), list(row_names))
    ax.set_xlabel("cluster (ordered by Hungarian matching)")
    ax.set_ylabel("label")
    ax.set_title("Label × cluster (red: matched pairs)")
    return fig


def montage_figure(rows: Sequence[tuple[str, list[np.ndarray], list[np.ndarray]]], n_cols: int):
    """Grid of thumbnails: one row per cluster, typical images left, atypical right.

    The tiles are pasted into one picture (one axes, whatever the number of rows), each centred in
    a square cell.

    Parameters
    ----------
    rows : sequence of (title, typical, atypical)
        ``typical`` and ``atypical`` are lists of uint8 2-D arrays.
    n_cols : int
        Thumbnails per side.
    """
    plt = _plt()
    nr = max(len(rows), 1)
    total = 2 * n_cols + 1
    px = max((max(t.shape) for _, typ, aty in rows for t in (*typ, *aty)), default=1)
    cell = px + max(2, px // 16)
    canvas = np.full((nr * cell, total * cell), 255, np.uint8)
    for r, (_, typical, atypical) in enumerate(rows):
        placed = [*enumerate(typical[:n_cols]), *((n_cols + 1 + j, t) for j, t in enumerate(atypical[:n_cols]))]
        for col, tile in placed:
            h, w = tile.shape
            y, x = r * cell + (cell - h) // 2, col * cell + (cell - w) // 2
            canvas[y:y + h, x:x + w] = tile
    fig, ax = plt.subplots(figsize=(0.75 * total, 0.85 * nr + 0.5))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=255, interpolation="nearest", extent=(0, total, nr, 0))
    ax.set_axis_off()
    for r, (title, _, _) in enumerate(rows):
        ax.text(-0.15, r + 0.5, title, ha="right", va="center", fontsize=8)
    ax.text(0, -0.08, "most typical →", fontsize=8, ha="left", va="bottom")
    ax.text(n_cols + 1, -0.08, "least typical →", fontsize=8, ha="left", va="bottom")
    return fig


class FigureSink:
    """Collects the figures: a PNG ``data:`` URI per name for the page, and the files written under ``figdir``."""

    def __init__(self, figdir: Path | None, root: Path) -> None:
        self.figdir = figdir
        self.root = root
        self.uris: dict[str, str] = {}
        self.files: list[str] = []

    def emit(self, fig, name: str) -> None:
        png = save_figure(fig, self.figdir, name)
        self.uris[name] = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        if self.figdir is not None:
            self.files.extend([(self.figdir / f"{name}.{ext}").relative_to(self.root).as_posix()
                               for ext in ("png", "svg")])
