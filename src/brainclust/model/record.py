"""What a run or a prediction records in ``manifest.json`` about its model (one place for both)."""

from __future__ import annotations

import difflib
import logging
import platform
from dataclasses import asdict, fields, replace
from importlib import metadata
from pathlib import Path

from brainclust import __version__
from brainclust.checks.fitted import FITTED_PREFIX
from brainclust.checks.stage import checks_record
from brainclust.cluster.manifold import reduction_record
from brainclust.core.needs import applied
from brainclust.errors import ParameterError
from brainclust.features.cache import default_cache_dir
from brainclust.io.scanmeta import nifti_found, nifti_multi_volume
from brainclust.model.config import RunConfig

log = logging.getLogger(__name__)


def versions() -> dict:
    out = {"brainclust": __version__, "python": platform.python_version()}
    for pkg in ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "pillow"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def effective_config(cfg: RunConfig, model) -> RunConfig:
    """The settings the run recorded: the meta-estimators' choice (``--auto``, ``--consensus``), else the run's
    own. The self-supervised components stay as requested when the gate set the stage aside: ``ssl.kept`` (and
    ``ssl.gate``) record that, as the model's ``ssl`` step does (``kept``: ``predict`` does not embed)."""
    chosen = getattr(model, "config_", None)
    return chosen if chosen is not None else cfg


def clustering_record(cfg: RunConfig, model) -> dict:
    """``manifest.json``'s ``clustering``: the method, the k used and asked for, the clusters found (``--k auto``:
    the chosen k; with ``--within``, ``"auto"``: each stratum chose its own, ``steer.within.k``)."""
    clusterer = model.clusterer_
    if cfg.k != "auto":
        k = cfg.k
    elif hasattr(clusterer, "k_"):
        k = clusterer.k_
    elif cfg.within is not None and cfg.method != "dbscan":  # --within: each stratum's own k (steer.within.k)
        k = "auto"
    else:  # dbscan: no k
        k = 0
    out = {"method": cfg.method, "k": k, "k_requested": cfg.k, "n_clusters_found": int(clusterer.n_clusters_),
           "dbscan_eps": clusterer.eps_}
    extra = model.clustering_extras()
    if extra.get("consensus_of"):
        out.update(n_clusters_found=len(set(model.labels_.tolist()) - {-1}), consensus_of=extra["consensus_of"])
    return out


def run_manifest(cfg: RunConfig, model, data, scanned, skipped: list, engine: dict, timings: dict) -> dict:
    """The whole ``manifest.json`` of a run (the settings are :func:`effective_config`)."""
    ex = model.extractor_
    reducer = model.step("reducer")
    pca, reduce = (reduction_record(reducer, model.step("manifold")) if reducer is not None else  # --within
                   ({"n_components": cfg.pca, "solver": "per stratum (--within)", "fit_rows": None,
                     "explained_variance": None}, None))
    ssl = model.step("ssl")
    outliers = model.clustering_extras().get("outliers")
    auto = model.auto_record() if hasattr(model, "auto_record") else None
    cache = dict(model.cache_)
    moved = min(int(engine.get("computed") or 0), int(cache.get("hits") or 0))
    if moved:  # what the Ray pass computed, the local pass then read from the store: misses of the run, not hits
        cache.update(hits=cache["hits"] - moved, misses=int(cache.get("misses") or 0) + moved)
    if ssl is not None and getattr(ssl, "view_cache_", None):  # the augmented views of --self-supervised, apart
        cache["views"] = dict(ssl.view_cache_)
    return {
        "kind": "run", "versions": versions(), "input": str(Path(data).resolve()),
        "settings": {**asdict(cfg), "preprocess": ex.preprocess_.as_dict()},
        "backbone": {**ex.describe(), **({"requested": "auto"} if cfg.auto else {})},  # the choice: name, auto
        "pca": pca, "clustering": clustering_record(cfg, model),
        "cache": {"dir": None if ex.cache_dir is False else str(ex.cache_dir or default_cache_dir()), **cache},
        "engine": engine, "n_files_scanned": scanned.n_files,
        "n_images": len(getattr(model, "slice_records_", None) or model.records_), "skipped": skipped,
        "timings_s": timings,
        **({"ssl": ssl.info_} if ssl is not None else {}),
        **({"reduce": reduce} if reduce is not None else {}),
        **({"outliers": outliers} if outliers is not None else {}),
        **({"auto": auto} if auto is not None else {}),
    }


def check_predictable(info: dict, model_dir) -> None:
    """ParameterError for a run whose clusters no model can extend to new images (``--consensus``)."""
    if info["settings"].get("consensus"):
        raise ParameterError(f"'{model_dir}' is a --consensus run: its clusters combine several backbones' "
                             "partitions and have no single model to place new images; run "
                             "'brainclust run --consensus' on the old and new images together")


def predict_inputs(settings: dict, given: dict) -> dict:
    """The input options a prediction was given (``--slices``, ``--include``...; recorded in its manifest as
    ``inputs``), with one warning when a unit run's slices are cut otherwise than those it was fitted on."""
    given = {k: list(v) if isinstance(v, tuple) else v for k, v in given.items() if v is not None}
    for key, flag in (("include", "--include"), ("exclude_files", "--exclude-files"), ("bids_filter", "--bids-filter")):
        if settings.get(key) and key not in given:  # the run's file filters choose the new files too: a warning
            log.warning("predict: the run's %s %s chooses the new files too (give %s yourself to replace it%s)",
                        flag, " ".join(map(str, settings[key])) if isinstance(settings[key], list) else settings[key],
                        flag, ", or --exclude-files '' for none" if key == "exclude_files" else "")
    unit = settings.get("unit", "slice")
    if unit != "slice" and given.get("slices", settings.get("slices")) != settings.get("slices"):
        log.warning("predict: --slices %s is not the run's %s: each %s is pooled from other slices than the run's "
                    "%ss were", given["slices"], settings.get("slices"), unit, unit)
    return given


def predict_manifest(info: dict, model_dir, data, scanned, got, timings: dict, inputs: dict | None = None) -> dict:
    """The ``manifest.json`` of a prediction: the model's recorded settings and backbone, the input options it
    was given (``inputs``), what was assigned, what the checks of the new images found (``checks``, with
    ``n_copies_of_fit``: the images whose decoded content the model was fitted on)."""
    out = {"kind": "predict", "versions": versions(), "input": str(Path(data).resolve()), "inputs": inputs or {},
           "model_dir": str(Path(model_dir).resolve()), "settings": info["settings"], "backbone": info["backbone"],
           "cache": dict(got.cache), "n_files_scanned": scanned.n_files,
           "n_images": len(got.slices if got.slices is not None else got.records),
           "skipped": sorted(scanned.skipped + got.skipped, key=lambda s: s["path"]), "timings_s": timings}
    if ssl := next((s for s in info.get("steps") or () if isinstance(s, dict) and s.get("name") == "ssl"), None):
        out["ssl"] = {"kept": bool(ssl.get("kept", True))}  # the gate's decision: the settings keep the request
    if got.checks is not None:
        out["checks"] = {**checks_record(got.checks, timings={"total": timings.get("checks", 0.0)}),
                         "n_copies_of_fit": sum(1 for d in got.checks.duplicate_of if d.startswith(FITTED_PREFIX))}
    return out


def run_config(config: RunConfig | None, settings: dict) -> RunConfig:
    """``config`` (default: the defaults) with ``settings`` over it, normalised and validated (``brainclust.run``'s
    keyword arguments); a setting that is not a field is one line naming the closest (``kk`` -> ``k``)."""
    names = [f.name for f in fields(RunConfig)]
    for name in settings:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            raise ParameterError(f"unknown setting {name!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
    if config is not None and not isinstance(config, RunConfig):  # run(data, out, {"k": 4}): a TypeError of replace()
        raise ParameterError(f"config: expected a RunConfig or None, got {type(config).__name__}; pass settings as "
                             "keywords (run(data, out, k=4)) or RunConfig(k=4)")
    cfg = replace(config or RunConfig(), **settings).normalized()
    cfg.validate()
    if "k" in settings:
        warn_unused_k(cfg)
    return cfg


def warn_unused_k(cfg: RunConfig) -> None:
    """Warn that the ``k`` the user gave is not used: DBSCAN finds its own number of clusters (``k`` still sets the
    self-supervised heads and cuts the first tree of a ``level_N`` column of ``--within``/``--remove``)."""
    if not applied("k", vars(cfg)):  # the rule by which the report leaves k out (brainclust.core.needs)
        log.warning("--k %s is not used: --method dbscan finds its own number of clusters (from its eps)", cfg.k)


def config_of(settings: dict) -> RunConfig:
    """A RunConfig of recorded settings (unknown or missing fields keep their defaults; not validated)."""
    names = {f.name for f in fields(RunConfig)}
    return RunConfig(**{k: v for k, v in settings.items() if k in names})  # lists become tuples there


def data_record(cfg: RunConfig, scanned, rows: list, n_images: int, info: dict, labels: str | None) -> dict:
    """``manifest.json``'s ``scan`` (filters, the scan's summary and counts), ``units`` (what a row is),
    ``descriptors`` / ``metadata`` (what :func:`brainclust.model.enrich.enrich` did) and ``labels`` (the
    column scored against). ``scan.nifti``: whether it found a NIfTI file (:func:`~brainclust.io.scanmeta.nifti_found`),
    so the report leaves out ``--slices`` and ``--volume-index`` when it did not; ``scan.nifti_multi_volume``: whether
    one had more than one volume (:func:`~brainclust.io.scanmeta.nifti_multi_volume`; else no ``--volume-index``)."""
    return {"scan": {"bids": scanned.bids, "summary": scanned.summary, "metadata_files": scanned.metadata_files,
                     "nifti": nifti_found(scanned.records, scanned.skipped),
                     "nifti_multi_volume": nifti_multi_volume(scanned.records, scanned.skipped),
                     "left_out": dict(scanned.excluded), "include": list(cfg.include),
                     "exclude_files": list(cfg.exclude_files), "bids_filter": cfg.bids_filter},
            "units": {"unit": cfg.unit, "n_rows": len(rows), "n_images": n_images},
            **info, "labels": labels}
