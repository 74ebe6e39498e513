"""The data-check section of a run's report and of ``brainclust check``'s page (:mod:`~brainclust.report.checkpage`),
from the folder's ``quality.csv`` and ``leakage.csv``.

Per flag a gallery of the flagged images (scan order, at most ``cap``), and the duplicate and
near-duplicate groups side by side (representative first; a group that crosses train/test/val
splits is marked). Everything is read from the written files (:data:`brainclust.io.outputs.QUALITY_COLUMNS`);
thumbnails come from the report's :class:`~brainclust.report.thumbnails.Thumbnails` (rows of
``assignments.csv``, so an image the run could not decode has none and is listed by name).
"""

from __future__ import annotations

import csv
from collections.abc import Callable

import numpy as np

from brainclust.checks.flags import FLAGS, split_flags
from brainclust.errors import ModelFileError
from brainclust.io.outputs import shown_name
from brainclust.report.run import RunOutputs

#: What each flag means, in one line (docs/checks.md has the rules and thresholds).
FLAG_MEANINGS = {
    "duplicate": "same decoded pixels as an earlier image (scan order)",
    "near_duplicate": "the same picture after resizing, recompression, a small crop, a flip or an intensity change",
    "not_mri": "not a grey anatomical slice: colour, no dark background or a bright frame, a two-level graphic, "
               "text or line art on a dark ground, a scene, a label map (a segmentation volume), unlike the "
               "folder's slices to a CNN, or nearer the package's non-MRI pictures than the folder's slices",
    "blank": "constant or almost empty",
    "noise": "no structure",
    "tiny": "below the size floor",
    "non_image_dicom": "a DICOM object whose pixels are not an anatomical image (dose grid, segmentation, report...)",
    "outlier": "far from every other image (in the run's features; in the pixel codes for brainclust check)",
}


#: The ``quality.csv`` columns the section reads (the others are dropped as the file is read).
QUALITY_KEPT = ("path", "flags", "duplicate_of", "error")


def read_table(path, keep: tuple[str, ...] | None = None) -> list[dict] | None:
    """The rows of a CSV file of a run or check folder (only the ``keep`` columns), ``None`` when it is absent."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            if keep is None:
                return list(csv.DictReader(fh))
            return [{k: r.get(k) or "" for k in keep} for r in csv.DictReader(fh)]
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"'{path}' is damaged ({exc})") from None


def checks_section(run: RunOutputs, thumbs, px: int) -> dict:
    """The template context of a run report's section (``checks`` is ``None`` when the run has no
    ``quality.csv``); thumbnails of ``assignments.csv``'s rows."""
    quality = read_table(run.folder.quality, QUALITY_KEPT)
    if quality is None:
        return {"checks": None}
    tile = tile_maker({r.get("path", ""): i for i, r in enumerate(run.rows)}, thumbs, px, rows=True)
    return {"checks": checks_context(quality, read_table(run.folder.leakage) or [], run.manifest.get("checks") or {},
                                     tile, clustered=True)}


def tile_maker(row_of: dict[str, int], thumbs, px: int, rows: bool) -> Callable[[str], dict]:
    """``tile(path)`` of :func:`checks_context`: the image's name as a message shows it, its thumbnail (``None``
    when ``path`` has no row in ``row_of``) and, with ``rows``, its row (the report's explorer links to it)."""
    def tile(path: str) -> dict:
        i = row_of.get(path)
        return {"name": shown_name(path), "row": i if rows else None,
                "src": thumbs.data_uri(i, px) if i is not None else None}

    return tile


def spread(items: list, n: int) -> list:
    """At most ``n`` of ``items``, evenly spaced over them (the first and the last among them), in order."""
    if len(items) <= n:
        return list(items)
    return [items[i] for i in np.unique(np.linspace(0, len(items) - 1, n).round().astype(int))]


def checks_context(quality: list[dict], leakage: list[dict], info: dict, tile: Callable[[str], dict], *,
                   clustered: bool, cap: int = 16, max_groups: int = 8, group_size: int = 4) -> dict:
    """What the section shows, from the rows of ``quality.csv`` and ``leakage.csv`` and the manifest's
    ``checks`` record; ``tile(path)`` gives an image's ``name``, ``row`` and ``src`` (thumbnail URI or
    ``None``); ``clustered``: the images were clustered (a run, not ``brainclust check``). A gallery shows ``cap``
    images spread evenly over its flag's images in scan order (the first ``cap`` were often one folder); of the
    duplicate groups, ``max_groups`` are shown: those across splits first, then the largest, then in scan order.
    ``n`` counts the rows, ``n_checked`` those without an ``error`` (the others could not be decoded: not checked)."""
    flags = [split_flags(q.get("flags", "")) for q in quality]
    galleries = []
    for f in FLAGS:
        members = [q["path"] for q, fl in zip(quality, flags) if f in fl]
        if members and f not in ("duplicate", "near_duplicate"):
            galleries.append({"flag": f, "n": len(members), "meaning": FLAG_MEANINGS[f],
                              "tiles": [tile(p) for p in spread(members, cap)]})
    groups: dict[str, list[int]] = {}
    for i, q in enumerate(quality):
        if q.get("duplicate_of"):
            groups.setdefault(q["duplicate_of"], []).append(i)
    crossing = {r.get("group", "") for r in leakage}
    group_views = []
    for f in ("duplicate", "near_duplicate"):
        chosen = [(rep, box_items(rep, m, quality, flags, groups if f == "near_duplicate" else {}))
                  for rep, m in groups.items() if any(f in flags[i] for i in m)]
        chosen.sort(key=lambda g: (g[0] not in crossing, -len(g[1])))  # stable: scan order within ties
        n_images = sum(1 for fl in flags if f in fl)
        if not n_images:
            continue
        shown = [{"rep": rep, "size": len(items), "crosses": rep in crossing,
                  "tiles": [{**tile(p), "kind": k} for p, k in items[:group_size]]}
                 for rep, items in chosen[:max_groups]]
        group_views.append({"flag": f, "n": n_images, "n_groups": len(chosen), "meaning": FLAG_MEANINGS[f],
                            "groups": shown})
    failed = [{"name": shown_name(q["path"]), "error": q.get("error", "")} for q in quality if q.get("error")]
    exclude = info.get("exclude") if isinstance(info.get("exclude"), list) else []  # untrusted: a run folder's
    return {"summary": info.get("summary", ""), "n": len(quality), "n_checked": len(quality) - len(failed),
            "clustered": clustered, "n_flagged": sum(1 for fl in flags if fl), "galleries": galleries,
            "groups": group_views,
            "n_leakage": len(leakage), "leak_splits": sorted({s for r in leakage
                                                              for s in r.get("splits", "").split(";") if s}),
            "exclude": [str(f) for f in exclude], "n_excluded": info.get("n_excluded", 0),
            "split_source": info.get("split_source"), "not_checked": failed[:cap], "n_not_checked": len(failed)}


def box_items(rep: str, members: list[int], quality: list[dict], flags: list[frozenset],
              copies_of: dict[str, list[int]]) -> list[tuple[str, str]]:
    """The ``(path, kind)`` of a group's box: its first image (kind ``""``), then its members in scan order
    (``exact copy`` of the first image, or ``near copy``), each near copy followed by its own byte-identical
    copies from ``copies_of`` (rows by ``duplicate_of``; ``exact copy of NAME``). A near-duplicate group then
    shows every image the summary's "groups of up to N" counts; a duplicate box passes ``{}`` (a near copy's
    copies have a box of their own there)."""
    items = [(rep, "")]
    for i in members:
        path = quality[i]["path"]
        items.append((path, "exact copy" if "duplicate" in flags[i] else "near copy"))
        if "near_duplicate" in flags[i]:
            items += [(quality[j]["path"], f"exact copy of {shown_name(path)}")
                      for j in copies_of.get(path, []) if "duplicate" in flags[j]]
    return items
