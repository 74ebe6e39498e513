"""Sensitivity analysis (the method's section 5.6): vary one setting at a time around the defaults.

``brainclust sensitivity DATA --out DIR`` starts from the defaults of
``brainclust run`` (PCA 50, hierarchical average-cosine, ``k`` = number of
label folders, the run's backbone, percentile clip 0.5-99.5) and changes
**one** setting at a time:

========== =====================================================================
setting    values
========== =====================================================================
pca        10, 25, 50, 100, 200, off
k          2 .. 8
linkage    average (cosine), complete (cosine), ward (euclidean: ward needs it)
metric     cosine, euclidean (average linkage)
backbone   every name of :func:`brainclust.features.backbones.available` but ``auto``;
           a backbone whose weights are not available is skipped with a note
clip       on (0.5-99.5 percentiles, or the given clip), off
seed       each seed alone
========== =====================================================================

``linkage`` and ``metric`` apply to the hierarchical method only (they are
skipped with a note for the others). Each value runs once per seed; each seed
draws its own random ``subsample`` of the images (default 80 %, without
replacement) and seeds PCA and the clustering, so the spread over seeds
measures stability even for the deterministic hierarchical method. Backbone
and clip values need their own features; they are extracted once each,
through the feature cache.

The silhouette is always the cosine one of :func:`brainclust.cluster.scores.score`.

Outputs: ``sensitivity.csv`` (one row per setting x value x seed; its ``value`` is the setting asked for,
its ``pca`` the components used: capped at the images and dimensions there are),
``sensitivity.md`` (one table per setting, mean ± std over seeds, built from
the CSV rows by :func:`build_tables`) and ``plots/sensitivity_<setting>.png``
(each score against the setting's values, error bars = std over seeds).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from threadpoolctl import threadpool_limits

from brainclust.analysis.common import (SCORE_LABELS, SCORES, Dataset, cells_said_once, check_seeds, check_study_k,
                                        cluster_and_score, load_dataset, markdown_table, mean_std_text, n_labels,
                                        ordered, read_back, read_rows_csv, to_float, warn_fewer_found, write_rows_csv)
from brainclust.analysis.outfolder import SENSITIVITY, prepare_study_out, publish_study
from brainclust.cluster.reduce import PCAReducer
from brainclust.core.arrays import seeded_sample
from brainclust.errors import ParameterError, WeightsUnavailableError
from brainclust.features import backbones
from brainclust.io.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from brainclust.pipeline import RunConfig
from brainclust.progress import bar

log = logging.getLogger(__name__)

SETTINGS = ("pca", "k", "linkage", "metric", "backbone", "clip", "seed")
PCA_VALUES = (10, 25, 50, 100, 200, 0)
K_VALUES = tuple(range(2, 9))
#: linkage value -> (scipy linkage, distance)
LINKAGE_VALUES = {"average": ("average", "cosine"), "complete": ("complete", "cosine"), "ward": ("ward", "euclidean")}
METRIC_VALUES = ("cosine", "euclidean")
CSV_COLUMNS = ["setting", "value", "is_default", "seed", "backbone", "pca", "k", "linkage", "metric", "clip",
               "n_images", "n_clusters_found", "n_noise", "largest_cluster", *SCORES, "wall_s"]


@dataclass
class SensitivityResult:
    """What :func:`sensitivity` produced."""

    rows: list[dict]
    tables: str
    notes: list[str]
    info: dict
    plots: list[Path] = field(default_factory=list)
    out_dir: Path | None = None


def _clip_text(clip) -> str:
    return "off" if clip is None else f"{clip[0]:g}-{clip[1]:g}"


def _pca_text(p) -> str:
    return "off" if p == 0 else str(p)


def _subsample(n: int, fraction: float, seed: int) -> np.ndarray:
    if fraction >= 1:
        return np.arange(n)
    m = max(3, int(round(fraction * n)))
    return seeded_sample(n, min(m, n), seed)


def _cell(ds: Dataset, seed: int, subsample: float, method: str, pca, k: int, linkage: str, metric: str,
          memo: dict) -> dict:
    idx = _subsample(len(ds.labels), subsample, seed)
    y = [ds.labels[i] for i in idx]
    key = (id(ds), seed, pca)  # points that share features, seed and PCA share the (deterministic) PCA fit
    if key not in memo:
        reducer = PCAReducer(pca, random_state=seed)
        memo[key] = reducer.fit_transform(ds.features[idx]), reducer.n_components_ if pca else 0
    x, used = memo[key]
    _, m = cluster_and_score(x, y, method, int(k), seed, linkage=linkage, metric=metric)
    return {"pca": _pca_text(used), "n_images": len(idx), "n_clusters_found": m["n_clusters"], "n_noise": m["n_noise"],
            "largest_cluster": m["largest_cluster"], **{s: m.get(s) for s in SCORES}, "wall_s": m["wall_s"]}


def _plan(settings, base: dict, seeds, backbone_names, clip_values, method: str, notes: list) -> list[tuple]:
    """(setting, value text, is_default, overrides, seeds) for every point of the analysis."""
    plan = []
    for s in settings:
        if s in ("linkage", "metric") and method != "hierarchical":
            notes.append(f"{s}: applies to the hierarchical method only; skipped for '{method}'")
            continue
        if s == "pca":
            vals = [(_pca_text(v), {"pca": v}) for v in ordered([*PCA_VALUES, base["pca"]])]
            default = _pca_text(base["pca"])
        elif s == "k":
            vals = [(str(v), {"k": v}) for v in sorted(set(K_VALUES) | {base["k"]})]
            default = str(base["k"])
        elif s == "linkage":
            vals = [(f"{n} ({d})", {"linkage": n, "metric": d}) for n, (_, d) in LINKAGE_VALUES.items()]
            default = "average (cosine)"
        elif s == "metric":
            vals = [(d, {"metric": d}) for d in METRIC_VALUES]
            default = base["metric"]
        elif s == "backbone":
            vals = [(b, {"features": ("backbone", b)}) for b in backbone_names]
            default = base["backbone"]
        elif s == "clip":
            vals = [(_clip_text(c), {"features": ("clip", c)}) for c in clip_values]
            default = _clip_text(base["clip"])
        elif s == "seed":
            plan += [("seed", str(sd), False, {}, (sd,)) for sd in seeds]
            continue
        else:
            raise ParameterError(f"--settings: unknown setting '{s}'; choose from {', '.join(SETTINGS)}")
        plan += [(s, text, text == default, ov, tuple(seeds)) for text, ov in vals]
    return plan


def _points(plan, base, base_ds, features, subsample, method, rows, pbar) -> None:
    """Run every point of the plan (all seeds) and append its rows."""
    memo: dict = {}
    try:
        for setting, text, is_default, ov, point_seeds in plan:
            p = {**base, **{kk: v for kk, v in ov.items() if kk != "features"}}
            ds = features[ov["features"]] if "features" in ov else base_ds
            if "features" in ov:
                p[ov["features"][0]] = ov["features"][1]
            for seed in point_seeds:
                cell = _cell(ds, int(seed), subsample, method, p["pca"], p["k"], p["linkage"], p["metric"],
                             memo)
                rows.append({"setting": setting, "value": text, "is_default": int(is_default), "seed": int(seed),
                             "backbone": ds.info["backbone"]["name"], "k": p["k"],
                             "linkage": p["linkage"], "metric": p["metric"], "clip": _clip_text(p["clip"]),
                             **cell})
                pbar.update(1)
    finally:
        pbar.close()


def _backbone_features(data, config, features: dict, notes: list) -> list[str]:
    """The backbones the ``backbone`` setting compares, their features added to ``features``: every one whose
    weights are on this machine (an analysis never downloads 100 MB); the others are noted as skipped."""
    names = []
    for name in [b for b in backbones.available() if b != "auto"]:
        key = ("backbone", name)
        if key not in features and not backbones.weights_local(name):
            notes.append(f"backbone {name}: skipped, its weights are not on this machine (a run with "
                         f"--backbone {name} downloads them once when online)")
            continue
        if key not in features:
            try:
                features[key] = load_dataset(data, replace(config, backbone=name, weights=None))
            except WeightsUnavailableError as exc:
                notes.append(f"backbone {name}: skipped, weights unavailable ({exc})")
                continue
        names.append(name)
    return names


def sensitivity(data, out=None, config=None, k: int | None = None, seeds: Sequence[int] = (0, 1, 2, 3, 4),
                subsample: float = 0.8, settings: Sequence[str] = SETTINGS) -> SensitivityResult:
    """Vary one setting at a time around ``config``; write the table, CSV and plots to ``out``.

    Parameters
    ----------
    data : path-like
        Data folder with one sub-folder per label (labels only score).
    out : path-like or None
        Output folder, published whole: new, empty or an earlier sensitivity analysis's, outside ``data``
        (:mod:`brainclust.analysis.outfolder`, checked before any work); nothing is written when ``None``.
    config : RunConfig or None
        The defaults: extraction settings, ``pca`` and ``method``
        (``hierarchical``, ``kmeans``, ``gmm`` or ``spectral``).
    k : int or None
        Default ``k`` (``None`` = the number of label folders).
    seeds : sequence of int
        Seeds of every point (and the values of the ``seed`` setting).
    subsample : float in (0, 1]
        Fraction of the images each seed draws.
    settings : sequence of str
        Which of :data:`SETTINGS` to vary.
    """
    config = config or RunConfig()
    config.validate()
    if config.method == "dbscan":
        raise ParameterError("--method: sensitivity needs a method with a k; dbscan has none")
    if not (isinstance(subsample, (int, float)) and 0 < subsample <= 1):
        raise ParameterError(f"--subsample: must be a fraction in (0, 1], got {subsample!r}")
    check_seeds(seeds)
    if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2):
        raise ParameterError(f"--k: must be an integer >= 2, got {k!r}")
    bad = [s for s in settings if s not in SETTINGS]
    if bad or not settings:
        raise ParameterError(f"--settings: choose from {', '.join(SETTINGS)}, got {', '.join(settings) or 'none'}")
    prepare_study_out(out, SENSITIVITY, [data], config.cache_dir)
    t0 = time.perf_counter()
    notes: list[str] = []
    base_ds = load_dataset(data, config, check=_k_check(data, k, subsample, config.method, "k" in settings))
    base = {"pca": config.pca, "k": int(k) if k is not None else base_ds.n_labels, "linkage": "average",
            "metric": "cosine", "backbone": base_ds.info["backbone"]["name"], "clip": config.clip_percentiles}
    features = {("backbone", base["backbone"]): base_ds, ("clip", base["clip"]): base_ds}
    backbone_names = _backbone_features(data, config, features, notes) if "backbone" in settings else []
    clip_values = ordered([base["clip"], (0.5, 99.5), None]) if "clip" in settings else []
    for c in clip_values:
        if ("clip", c) not in features:
            features[("clip", c)] = load_dataset(data, replace(config, clip_percentiles=c))
    t_extract = time.perf_counter() - t0

    plan = _plan(settings, base, seeds, backbone_names, clip_values, config.method, notes)
    rows: list[dict] = []
    pbar = bar(sum(len(p[4]) for p in plan), "sensitivity", config.progress, unit="run")
    with threadpool_limits(limits=1), cells_said_once():  # many small fits: see benchmark.run_grid
        _points(plan, base, base_ds, features, subsample, config.method, rows, pbar)
    warn_fewer_found(rows, f"sensitivity ({config.method})", "sensitivity.csv")
    info = {"settings": {**asdict(config), "k": base["k"], "seeds": [int(s) for s in seeds],
                         "subsample": subsample, "varied": list(settings)},
            "defaults": {**base, "clip": _clip_text(base["clip"]), "pca": _pca_text(base["pca"])},
            "method": config.method, "notes": notes, "n_images": len(base_ds.labels),
            "timings_s": {"extract": t_extract, "total": time.perf_counter() - t0}}
    result = SensitivityResult(rows, "", notes, info)
    if out is None:
        result.tables = build_tables(read_back(rows, CSV_COLUMNS), info)
        return result

    def fill(folder: Path) -> None:
        write_rows_csv(folder / "sensitivity.csv", CSV_COLUMNS, rows)
        csv_rows = read_rows_csv(folder / "sensitivity.csv")
        result.tables = build_tables(csv_rows, info)
        atomic_write_text(folder / "sensitivity.md", result.tables)
        result.plots = [p.name for p in write_plots(csv_rows, folder / "plots")]
        atomic_write_json(folder / "sensitivity.json", info)

    result.out_dir = publish_study(out, SENSITIVITY, fill, [data])
    result.plots = [result.out_dir / "plots" / name for name in result.plots]
    return result


def _k_check(data, k: int | None, subsample: float, method: str, varied: bool):
    """``load_dataset``'s check: each seed's subsample of the images can be split into the default ``k``
    (``None``: the number of label folders) and, when ``varied``, into every k of :data:`K_VALUES`
    (:func:`~brainclust.analysis.common.check_study_k`)."""
    def check(records) -> None:
        n = len(_subsample(len(records), subsample, 0))  # the same size for every seed
        where = f"'{data}'" if n == len(records) else (f"each seed's --subsample {subsample:g} of the "
                                                        f"{len(records)} images of '{data}'")
        k_base = n_labels(records) if k is None else int(k)

        def more(top: int) -> str:  # all the images would do
            return " or raise --subsample" if n < len(records) and top + (2 if method == "spectral" else 1) <= len(
                records) else ""

        head = "--k" if k is not None else f"--k (unset: the {k_base} label folders)"
        check_study_k(k_base, n, where, [method], head=head, advice=f"choose a smaller --k{more(k_base)}")
        if varied:
            check_study_k(max(K_VALUES), n, where, [method], head=f"--settings k (k = {min(K_VALUES)}.."
                          f"{max(K_VALUES)})", advice=f"leave k out of --settings{more(max(K_VALUES))}")
    return check


def summarise(rows: Sequence[dict]) -> dict[str, list[dict]]:
    """setting -> one dict per value: ``value``, ``is_default``, ``n`` and per score ``mean``/``std`` lists."""
    out: dict[str, list[dict]] = {}
    for setting in ordered(r["setting"] for r in rows):
        sel = [r for r in rows if r["setting"] == setting]
        pts = []
        for value in ordered(r["value"] for r in sel):
            vr = [r for r in sel if r["value"] == value]
            pt = {"value": value, "is_default": any(str(r["is_default"]) == "1" for r in vr), "rows": vr}
            for s in (*SCORES, "n_clusters_found"):
                vals = [v for v in (to_float(r[s]) for r in vr) if v is not None]
                pt[s] = (float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0) if vals else None
            pts.append(pt)
        out[setting] = pts
    return out


def build_tables(rows: Sequence[dict], info: dict | None = None) -> str:
    """``sensitivity.md`` from ``sensitivity.csv`` rows: one table per setting, mean ± std over seeds."""
    lines = ["# Sensitivity analysis: one setting at a time", ""]
    if info:
        d = info["defaults"]
        lines += [f"Defaults: method {info['method']}, backbone {d['backbone']}, PCA {d['pca']}, k = {d['k']}, "
                  f"linkage {d['linkage']}, distance {d['metric']}, clip {d['clip']}. "
                  f"{info['n_images']} images; each seed draws {info['settings']['subsample']:.0%} of them. "
                  f"Seeds {', '.join(map(str, info['settings']['seeds']))}; cells are mean ± std over seeds.", ""]
        lines += [f"- note: {n}" for n in info["notes"]] + ([""] if info["notes"] else [])
    for setting, pts in summarise(rows).items():
        body = []
        for pt in pts:
            cells = [mean_std_text([to_float(r[s]) for r in pt["rows"]]) for s in SCORES]
            cells.append(mean_std_text([to_float(r["n_clusters_found"]) for r in pt["rows"]], 1))
            body.append([f"**{pt['value']}** (default)" if pt["is_default"] else pt["value"], *cells])
        lines += [f"## {setting}", "",
                  markdown_table(["value", *(SCORE_LABELS[s] for s in SCORES), "clusters found"], body), ""]
    return "\n".join(lines)


def write_plots(rows: Sequence[dict], folder) -> list[Path]:
    """One PNG per setting: each score against the values, error bars = std over seeds (matplotlib, Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    paths = []
    for setting, pts in summarise(rows).items():
        fig = Figure(figsize=(6.4, 4.0), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        x = np.arange(len(pts))
        for j, s in enumerate(SCORES):
            ok = [i for i, pt in enumerate(pts) if pt[s] is not None]
            if not ok:
                continue
            mean = [pts[i][s][0] for i in ok]
            std = [pts[i][s][1] for i in ok]
            ax.errorbar(x[ok] + (j - 2) * 0.04, mean, yerr=std, marker="o", capsize=3, label=SCORE_LABELS[s])
        ax.set_xticks(x, [f"{pt['value']}*" if pt["is_default"] else pt["value"] for pt in pts],
                      rotation=20 if len(pts) > 4 else 0)
        ax.set_xlabel(f"{setting} (* = default)")
        ax.set_ylabel("score (mean ± std over seeds)")
        ax.set_title(f"Sensitivity to {setting}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        paths.append(atomic_write_bytes(Path(folder) / f"sensitivity_{setting}.png", buf.getvalue()))
    return paths
