"""The report's explorer data: which images the file holds, their thumbnails, map places and every column.

``report.html`` stays one offline file under a size budget (15 MB by default).
What it holds is chosen in two steps:

1. **Thumbnail size.** A probe of up to 48 images (stratified by cluster) is
   encoded at each size of :data:`PX_CHOICES` (160 down to 64 px, JPEG q70);
   the largest size at which *every* image fits in the budget left by the rest
   of the page wins: a small run gets sharp previews, a large one smaller ones.
2. **Sample.** When every image does not fit even at ``min_px``, the file
   holds a sample stratified by cluster (every cluster present, in proportion
   to its size) of as many images as fit, plus every image a montage shows; the
   page says so. If the real size overshoots the estimate, the sample shrinks.

The map places come from the run's ``map.npy`` when it fits the run
(:func:`brainclust.report.mapcoords.read_map`), else from
:func:`brainclust.report.mapcoords.compute_map` on the sample (an exact t-SNE of
at most ``max_map_points`` images, the others placed by their neighbours).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np

from brainclust.errors import ParameterError
from brainclust.io.outputs import shown_name
from brainclust.report.columns import Column
from brainclust.report.geometry import stratified_sample
from brainclust.report.mapcoords import compute_map, normalise, read_map
from brainclust.report.thumbnails import Thumbnails
from brainclust.terminal import did_you_mean

log = logging.getLogger(__name__)

#: Thumbnail sizes tried, largest first (longer side, px).
PX_CHOICES = (160, 128, 112, 96, 80, 72, 64)
#: Safety factor on the probe's mean thumbnail size.
MARGIN = 1.04


@dataclass
class ExplorerData:
    """What :func:`explorer_data` chose: the page's JSON and how it was made."""

    payload: dict
    sample: np.ndarray
    coords: np.ndarray
    px: int
    map_source: str
    n_tsne: int
    budget_bytes: int
    bytes_used: int


def thumb_costs(thumbs: Thumbnails, probe: np.ndarray, sizes) -> dict[int, float]:
    """Mean length of the ``data:`` URI of the probe images at each size."""
    return {px: float(np.mean([len(thumbs.explorer_uri(int(i), px)) for i in probe])) for px in sizes}


def row_cost(columns: list[Column], probe: np.ndarray) -> float:
    """Mean JSON bytes of one image's columns, name and coordinates."""
    body = json.dumps([c.payload(probe) for c in columns], ensure_ascii=False)
    return len(body.encode("utf-8")) / max(len(probe), 1) + 40.0


def choose_size(n: int, budget: float, costs: dict[int, float], per_row: float) -> tuple[int, int]:
    """``(px, n_keep)``: the largest size at which all ``n`` images fit, else the smallest and how many fit."""
    for px in sorted(costs, reverse=True):
        if n * (costs[px] * MARGIN + per_row) <= budget:
            return px, n
    px = min(costs)
    return px, max(1, int(budget // (costs[px] * MARGIN + per_row)))


def _with_required(sample: np.ndarray, required: np.ndarray) -> np.ndarray:
    return np.union1d(sample, required).astype(np.int64)


def explorer_data(run, columns: list[Column], thumbs: Thumbnails, budget_bytes: int, *, required=(),
                  min_px: int = 64, max_px: int = 160, max_map_points: int = 2000) -> ExplorerData:
    """Choose the images, thumbnail size and map places of the report's explorer.

    Parameters
    ----------
    run : RunOutputs
        The run read back (``rows``, ``clusters``, ``X``, ``seed``, ``out_dir``).
    columns : list of Column
        Every column of ``assignments.csv`` (:func:`brainclust.report.columns.describe_rows`).
    thumbs : Thumbnails
    budget_bytes : int
        Bytes the explorer's data may take in the page.
    required : sequence of int
        Rows that must be in the file (the montages' images).
    min_px, max_px : int
        Range of thumbnail sizes (longer side).
    max_map_points : int
        Without a stored map: images placed by the exact t-SNE.
    """
    n = len(run.rows)
    clusters = run.clusters
    required = np.asarray(sorted(set(int(i) for i in required)), dtype=np.int64)
    sizes = [px for px in PX_CHOICES if min_px <= px <= max_px] or [min_px]
    probe = stratified_sample(clusters, 48, run.seed)  # one per cluster at least: a random 48 of many clusters
    probe = np.sort(np.random.default_rng(run.seed).choice(probe, 48, replace=False)) if len(probe) > 48 else probe
    costs = thumb_costs(thumbs, probe, sizes)
    per_row = row_cost(columns, probe)
    px, n_keep = choose_size(n, max(budget_bytes, 0), costs, per_row)
    sample = np.arange(n) if n_keep >= n else _with_required(stratified_sample(clusters, n_keep, run.seed), required)
    uris = {}
    for _ in range(4):
        for i in sample.tolist():
            if i not in uris:
                uris[i] = thumbs.explorer_uri(i, px)
        used = sum(len(uris[i]) for i in sample.tolist()) + per_row * len(sample)
        if used <= budget_bytes or len(sample) <= len(required) + 1:
            break
        keep = max(1, int(len(sample) * budget_bytes / used * 0.97) - len(required))
        sub = stratified_sample(clusters[sample], keep, run.seed + 1)
        sample = _with_required(sample[sub], required)
        log.info("report: the thumbnails took more room than estimated; %d images kept", len(sample))
    coords, source, n_tsne = _coordinates(run, sample, max_map_points)
    xy = normalise(coords)
    names = [run.rows[i]["path"] for i in sample.tolist()]
    payload = {
        "mode": "file", "n": int(len(sample)), "n_total": n, "sampled": bool(len(sample) < n), "px": px,
        "rows": sample.tolist(), "names": names, "shown": _shown_names(names),
        "x": np.round(xy[:, 0], 4).tolist(), "y": np.round(xy[:, 1], 4).tolist(),
        "columns": [_column_payload(c, sample) for c in columns], "colour": "cluster",
        "has_labels": run.labels_true is not None, "thumbs": [uris[i] for i in sample.tolist()],
    }
    return ExplorerData(payload, sample, coords, px, source, n_tsne, int(budget_bytes), int(used))


def kept_colour(manifest: dict, color_by: str | None) -> str | None:
    """The map's first colouring a user chose: ``color_by`` (``brainclust report --color-by``; ``""`` chooses
    none), else the one an earlier ``report --color-by`` chose (``manifest.json``'s ``report.color_by``), else
    ``None`` (the run's own ``--color-by`` applies)."""
    if color_by is None:
        color_by = (manifest.get("report") or {}).get("color_by")
    return color_by if isinstance(color_by, str) and color_by else None


def initial_colour(payload: dict, wanted: str | None, given: bool = False) -> str:
    """The column the map is coloured by at first: ``wanted`` (``--color-by``) when the page can colour by it,
    else ``cluster`` with a warning (the run's own setting, whose column may have gone), or a
    :class:`ParameterError` when ``given`` (``brainclust report --color-by``: a typo is refused as ``run``
    refuses it)."""
    if not wanted:
        return payload.get("colour", "cluster")
    names = [c["name"] for c in payload["columns"] if c.get("kind") != "text"]
    if wanted in names:
        return wanted
    if given:
        shown = [n for n in names if not n.startswith("level_")]
        raise ParameterError(f"--color-by: no column {json.dumps(str(wanted))[:80]} to colour the map by in this run"
                             + did_you_mean(wanted, names) + f"; it has level_N and "
                             f"{', '.join(shown[:15])}{' ...' if len(shown) > 15 else ''}")
    log.warning("report: --color-by %s: no such column to colour the map by (or one without values); colouring "
                "by cluster", json.dumps(str(wanted))[:80])
    return payload.get("colour", "cluster")


def label_colours(columns: list[Column], of_label: dict[str, str]) -> None:
    """The label column takes the Hungarian-matched cluster colours of the report (as in the confusion matrix)."""
    for col in columns:
        if col.name == "label" and col.kind == "cat" and of_label:
            col.colours = [of_label.get(raw, col.colours[j]) for j, raw in enumerate(col.raw)]


def _shown_names(names: list[str]) -> dict[str, str]:
    """The names a caption shows otherwise than ``assignments.csv`` holds them (:func:`shown_name`), by position."""
    return {str(j): shown for j, name in enumerate(names) if (shown := shown_name(name)) != name}


def _column_payload(col: Column, sample: np.ndarray) -> dict:
    """A column's payload; ``path`` carries no texts (the page has them as ``names``); rare values kept."""
    if col.name == "path":
        return {"name": "path", "kind": "text"}
    p = col.payload(sample)
    if col.kind == "cat" and col.texts is not None and "(other)" in col.categories:
        other = col.categories.index("(other)")
        p["other"] = {str(j): col.texts[int(i)] for j, i in enumerate(sample.tolist()) if col.codes[i] == other}
    return p


def _coordinates(run, sample: np.ndarray, max_map_points: int) -> tuple[np.ndarray, str, int]:
    stored = read_map(run.out_dir, len(run.rows))
    if stored is not None:
        return stored[sample].astype(np.float64), "map.npy", 0
    coords = compute_map(run.X[sample], run.seed, clusters=run.clusters[sample], n_tsne=max(2, max_map_points))
    return coords.astype(np.float64), "computed when the report was built", int(min(len(sample), max_map_points))
