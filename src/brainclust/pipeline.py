"""The convenience layer: ``brainclust run`` and ``brainclust predict`` as functions.

A run reads as **scan -> fit -> score -> publish**::

    scan the folder -> build_model(config).fit(records) -> model.scores(labels) -> publish the run folder

The data checks are a step of the model (:mod:`brainclust.checks.step`); :mod:`brainclust.model.checked`
turns what they found into the run's outputs (``quality.csv``, ``leakage.csv``, the ``flags`` column,
``metrics.json["distinct"]``, ``manifest.json["checks"]``).

The model (:class:`~brainclust.model.composite.BrainClusterModel`, or the ``--auto`` /
``--consensus`` meta-estimators of :mod:`brainclust.model.auto`) holds every step; the run
folder's files and the one ``publish`` are :mod:`brainclust.io.outputs`'. :func:`predict` loads a
finished run's model (:mod:`brainclust.model.persist`) and assigns new images the same way.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from brainclust.cluster.kselect import resolve_k
from brainclust.cluster.scores import score
from brainclust.engines import EngineHooks
from brainclust.errors import InputError, ParameterError
from brainclust.features.extractor import FeatureExtractor
from brainclust.io.formats import nifti
from brainclust.checks.tables import leakage_table, write_leakage, write_quality
from brainclust.io.outputs import (FLAGS_COLUMN, RunFolder, assignment_rows, check_out, meta_columns, publish,
                                   read_model_manifest, write_manifest, write_run_files)
from brainclust.io.scan import ImageRecord, ScanResult, scan
from brainclust.model.auto import build_model
from brainclust.model.config import RunConfig
from brainclust.model.checked import check_result, distinct_scores, flag_cells, quality_table
from brainclust.model.composite import BrainClusterModel
from brainclust.model.record import config_of, effective_config, predict_manifest, run_manifest, versions

__all__ = ["RunConfig", "RunResult", "backbone_info", "predict", "resolve_k", "run", "scan_nonempty", "versions",
           "write_outputs"]

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """Everything a run (or a prediction) produced. Rows follow ``records`` (images that were read)."""

    config: RunConfig
    records: list[ImageRecord]
    skipped: list[dict[str, str]]
    features: np.ndarray
    embedding: np.ndarray
    labels: np.ndarray
    levels: np.ndarray | None
    metrics: dict
    manifest: dict
    extractor: FeatureExtractor
    reducer: object
    clusterer: object
    out_dir: Path | None = None
    timings: dict = field(default_factory=dict)
    ssl_model: object | None = None
    #: the fitted model (``None`` for a prediction: see ``model_dir``)
    model: object | None = None
    #: what the data checks found (:class:`brainclust.checks.stage.CheckResult`; ``None``: ``--checks off``, predict)
    checks: object | None = None

    def rows(self) -> list[dict]:
        """One dict per image with the columns of ``assignments.csv`` (``flags`` when the run checked its data)."""
        rows = assignment_rows(self.records, self.labels, self.levels)
        if self.checks is not None:
            for row, cell in zip(rows, flag_cells(self.checks, self.records)):
                row[FLAGS_COLUMN] = cell
        return rows


def backbone_info(ex) -> dict:
    """The fitted extractor as ``manifest.json`` records it (:meth:`FeatureExtractor.describe`)."""
    return ex.describe()


def scan_nonempty(data, labels_from_folders: bool, slices: str = "axial:mid",
                  volume_index: int = 0, progress: bool | None = None) -> ScanResult:
    scanned = scan(data, labels_from_folders=labels_from_folders, slices=slices, volume_index=volume_index,
                   progress=progress)
    if not scanned.records:
        raise InputError(f"input folder '{data}' contains no readable image "
                         f"({len(scanned.skipped)} file(s) skipped)")
    return scanned


def run(data, out=None, config: RunConfig | None = None, *, finish=None, model=None, **settings) -> RunResult:
    """Cluster the images under ``data``; write the outputs to ``out`` when given.

    Parameters
    ----------
    data : path-like
        Folder of images (searched recursively).
    out : path-like or None
        Output folder for ``assignments.csv``, ``metrics.json``, ``manifest.json`` and
        ``model/``. Nothing is written when ``None``.
    config : RunConfig, optional
        Settings; keyword arguments override its fields (e.g. ``k=4``).
    finish : callable, optional
        ``finish(out)`` runs once the run folder is in place, while it is still locked
        (``brainclust run`` builds the report here).
    model : optional
        The (unfitted) model to fit instead of ``build_model(config)`` (e.g. ``--auto`` over
        another portfolio).

    Raises
    ------
    InputError, ParameterError, WeightsUnavailableError
        Bad input or settings; raised before any output is written.
    """
    cfg = replace(config or RunConfig(), **settings).normalized()
    cfg.validate()
    check_out(out, data=data)
    t: dict = {}
    t0 = time.perf_counter()
    scanned = scan_nonempty(data, cfg.labels_from_folders, cfg.slices, cfg.volume_index, cfg.progress)
    if cfg.method != "dbscan" and cfg.k != "auto" and cfg.k > len(scanned.records):
        raise ParameterError(f"--k: {cfg.k} clusters requested but '{data}' has only "
                             f"{len(scanned.records)} readable images")
    t["scan"] = time.perf_counter() - t0
    model = model if model is not None else build_model(cfg)
    engine = EngineHooks(cfg.engine, cfg.ray_address)
    labels = [r.label for r in scanned.records] if cfg.labels_from_folders else None
    model.fit(scanned.records, labels, source=f"input folder '{data}'", prefill=engine.prefill,
              assign_all=engine.assign_all)
    t.update(model.timings_)
    t0 = time.perf_counter()
    y = [r.label for r in model.records_] if cfg.labels_from_folders else None
    metrics = model.scores(y)
    checked = check_result(model)
    if checked is not None:
        metrics["distinct"] = distinct_scores(model, checked, y)
    t["evaluate"] = time.perf_counter() - t0
    cfg = effective_config(cfg, model)
    skipped = sorted(scanned.skipped + model.skipped_, key=lambda s: s["path"])
    manifest = run_manifest(cfg, model, data, scanned, skipped, engine.info(), t)
    if checked is not None:
        manifest["checks"] = model.step("checks").info_
    ssl = model.step("ssl")
    result = RunResult(cfg, model.records_, skipped, model.features_, model.embedding_, model.labels_, model.levels_,
                       metrics, manifest, model.extractor_, model.step("reducer"), model.clusterer_, timings=t,
                       ssl_model=ssl.model_ if ssl is not None else None, model=model, checks=checked)
    if out is not None:
        write_outputs(result, out, finish, data=data)
    return result


def write_outputs(result: RunResult, out, finish=None, *, data=None, model_dir=None) -> Path:
    """Publish the run (or prediction) folder ``out``: the model (a run's), ``assignments.csv``,
    ``embeddings.parquet``, ``metrics.json``, the checks' ``quality.csv`` and ``leakage.csv`` (a checked
    run's), then ``manifest.json``.

    Through :func:`brainclust.io.outputs.publish`: staged, then swapped in whole, so ``out``
    never mixes two runs' files; ``finish(out)`` (the report) runs after the swap while the folder
    is still locked.
    """
    t0 = time.perf_counter()
    data = data if data is not None else result.manifest.get("input")

    def fill(staging: Path) -> None:
        folder = RunFolder(staging)
        if result.model is not None:
            result.model.save(staging, settings=result.manifest["settings"])
            if hasattr(result.model, "write_extras"):
                result.model.write_extras(staging)
        features = result.features if result.config.embeddings_features and result.model is not None else None
        meta = [c for c in meta_columns(result.records) if c != FLAGS_COLUMN]
        write_run_files(folder, result.rows(), result.levels is not None, result.metrics, result.records,
                        result.embedding, features, ([FLAGS_COLUMN] if result.checks is not None else []) + meta)
        if result.checks is not None:
            write_quality(folder.quality, quality_table(result.checks, result.model.skipped_))
            write_leakage(folder.leakage, leakage_table(result.checks))
        result.timings["write"] = time.perf_counter() - t0
        write_manifest(folder.manifest, result.manifest)

    result.out_dir = publish(out, fill, finish=finish,
                             check=lambda: check_out(out, data=data, model_dir=model_dir))
    return result.out_dir


def predict(model_dir, data, out=None, labels_from_folders: bool = False, cache_dir=None,
            batch_size: int | None = None, workers: int | None = None, progress: bool | None = None,
            slices: str | None = None, volume_index: int | None = None) -> RunResult:
    """Assign the images under ``data`` to the clusters of the run saved in ``model_dir``.

    The same backbone, weights (checked by SHA-256), precision and pre-processing are used, then
    the saved reduction and clustering. ``slices`` and ``volume_index`` (NIfTI) default to the run's own.
    """
    info, _ = read_model_manifest(model_dir)
    if info["settings"].get("consensus"):
        raise ParameterError(f"'{model_dir}' is a --consensus run: its clusters combine several backbones' "
                             "partitions and have no single model to place new images; run "
                             "'brainclust run --consensus' on the old and new images together")
    model = BrainClusterModel.load(model_dir, {"batch_size": batch_size, "num_workers": workers,
                                               "cache_dir": cache_dir, "progress": progress})
    info = model.manifest_
    s = info["settings"]
    slices = slices if slices is not None else s.get("slices", "axial:mid")
    volume_index = volume_index if volume_index is not None else s.get("volume_index", 0)
    nifti.parse_slices(slices)
    nifti.check_volume_index(volume_index)
    check_out(out, data=data, model_dir=model_dir)
    scanned = scan_nonempty(data, labels_from_folders, slices, volume_index, progress)
    got = model.predict(scanned.records, source=f"input folder '{data}'")
    metrics = score(got.embedding, got.labels, [r.label for r in got.records] if labels_from_folders else None)
    manifest = predict_manifest(info, model_dir, data, scanned, got, got.timings)
    cfg = replace(config_of(s), labels_from_folders=labels_from_folders, slices=slices, volume_index=volume_index)
    result = RunResult(cfg, got.records, manifest["skipped"], got.features, got.embedding, got.labels, got.levels,
                       metrics, manifest, model.extractor_, model.step("reducer"), model.clusterer_,
                       timings=got.timings)
    if out is not None:
        write_outputs(result, out, data=data, model_dir=model_dir)
    return result
