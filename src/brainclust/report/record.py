"""What building a report logs and records: the ``report`` entry of the run's ``manifest.json`` (what built
the page, from which files, 0 features extracted, its size, map and timings, and the map's first colouring a
``report --color-by`` chose; :func:`record_in_manifest`)."""

from __future__ import annotations

import logging

from brainclust.io.atomic import atomic_write_json
from brainclust.report.run import RunOutputs, relpath
from brainclust.terminal import count_text

log = logging.getLogger(__name__)

__all__ = ["record_in_manifest"]


def record_in_manifest(run: RunOutputs, info, command: str, ctx: dict, budget_mb: float) -> None:
    """Log what was built; add the ``report`` entry (what built it, from which files, 0 features extracted);
    ``info``: the :class:`~brainclust.report.build.ReportInfo` of the page."""
    if info.n_refused:
        log.warning("report: %s of assignments.csv refused under the input folder %s (a path leading out of "
                    "it, or a file whose bytes are not those the run clustered); drawn as placeholders",
                    count_text(info.n_refused, "image"), run.input_root)
    if info.n_missing_images > info.n_refused:
        log.warning("report: %s could not be read under %s; drawn as placeholders",
                    count_text(info.n_missing_images - info.n_refused, "image"), run.input_root)
    if info.size_bytes > budget_mb * 1e6:
        log.warning("report: %s is %.1f MB, above the %.1f MB budget", info.path, info.size_bytes / 1e6, budget_mb)
    log.info("report: %s (%.1f MB, %.1f s; built from the written outputs, 0 features extracted)",
             info.path, info.size_bytes / 1e6, info.timings_s["total"])
    folder, m = run.folder, run.manifest
    sources = [folder.assignments, folder.metrics, folder.manifest, folder.cluster]
    sources += [p for p in (folder.root / "map.npy", folder.associations, folder.slices)
                if p.is_file() and (p.name != "map.npy" or ctx["map_source"] == "map.npy")]
    m["report"] = {"file": relpath(folder, folder.report), "built_by": command, "features_extracted": 0,
                   "sources": [relpath(folder, p) for p in sources],
                   "size_bytes": info.size_bytes, "size_budget_bytes": int(budget_mb * 1e6),
                   "n_map_points": info.n_map_points, "thumbnail_px": ctx["map_px"],
                   "map": {"source": ctx["map_source"], "tsne_images": ctx["n_tsne"]},
                   "tsne": {"perplexity": ctx["tsne_perplexity"], "metric": "cosine", "random_state": run.seed},
                   "n_missing_images": info.n_missing_images, "n_refused_paths": info.n_refused,
                   "figures": info.figures,
                   "timings_s": info.timings_s,
                   # `report --color-by`: the map's first colouring, kept for a later plain `report`
                   **({"color_by": ctx["color_by"]} if ctx.get("color_by") else {})}
    atomic_write_json(folder.manifest, m)
