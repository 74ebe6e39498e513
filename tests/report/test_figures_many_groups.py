"""The report's figures stay readable and bounded with many clusters: the map's legend and the silhouette
axis name only the largest groups, and the montage picture has one row per cluster drawn."""

from __future__ import annotations

import numpy as np

from brainclust.report import figures as F


def _close(fig):
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_map_legend_names_the_largest_groups_and_counts_the_rest():
    sizes = np.arange(1, 31)                                    # group g has g + 1 points
    groups = [f"g{g}" for g, m in enumerate(sizes) for _ in range(m)]
    coords = np.random.default_rng(0).normal(size=(len(groups), 2))
    colours = {f"g{g}": "#336699" for g in range(30)}
    fig = F.map_figure(coords, groups, colours, "t")
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    _close(fig)
    assert len(texts) == F.LEGEND_MAX + 1 and texts[-1] == f"+{30 - F.LEGEND_MAX} smaller groups"
    assert texts[:-1] == [f"g{g} ({g + 1})" for g in range(30 - F.LEGEND_MAX, 30)]   # in the colours' order
    few = F.map_figure(coords[:6], groups[:6], colours, "t")
    assert [t.get_text() for t in few.axes[0].get_legend().get_texts()] == ["g0 (1)", "g1 (2)", "g2 (3)"]
    _close(few)


def test_map_draws_every_point_once_in_its_group_colour():
    groups = ["b", "a", "b", "c", "a"]
    coords = np.arange(10, dtype=float).reshape(5, 2)
    fig = F.map_figure(coords, groups, {"a": "#ff0000", "b": "#00ff00"}, "t")   # "c" has no colour: not drawn
    pts = fig.axes[0].collections[0]
    offsets, faces = pts.get_offsets(), pts.get_facecolors()
    _close(fig)
    assert offsets.tolist() == [[2, 3], [8, 9], [0, 1], [4, 5]]                 # group a, then group b
    assert [tuple(np.round(f[:3], 3)) for f in faces] == [(1, 0, 0)] * 2 + [(0, 1, 0)] * 2


def test_silhouette_axis_names_the_largest_clusters_only():
    rng = np.random.default_rng(1)
    clusters = np.repeat(np.arange(50), np.arange(1, 51))
    sil = rng.uniform(-0.2, 0.9, len(clusters))
    fig = F.silhouette_figure(sil, clusters, {c: "#123456" for c in range(50)}, float(sil.mean()))
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    _close(fig)
    assert labels == [f"{c} (n={c + 1})" for c in range(50 - F.LEGEND_MAX, 50)]


def test_montage_picture_has_one_row_per_cluster():
    tile = np.full((8, 6), 40, np.uint8)
    rows = [(f"cluster {r}", [tile] * 3, [tile] * 2) for r in range(5)]
    one = F.montage_figure(rows[:1], 3)
    five = F.montage_figure(rows, 3)
    img1, img5 = one.axes[0].images[0].get_array(), five.axes[0].images[0].get_array()
    _close(one)
    _close(five)
    assert img5.shape[0] == 5 * img1.shape[0] and img5.shape[1] == img1.shape[1]
    assert (img5 == 40).sum() == 5 * (3 + 2) * tile.size                       # every tile pasted, whole
