"""The convenience layer: ``brainclust run`` and ``brainclust predict`` as functions.

A run reads as **scan -> fit -> score -> publish**::

    scan the folder -> build_model(config).fit(records) -> model.scores(labels) -> publish the run folder

The data checks are a step of the model (:mod:`brainclust.checks.step`); :mod:`brainclust.model.checked`
turns what they found into the run's outputs (``quality.csv``, ``leakage.csv``, the ``flags`` column,
``metrics.json["distinct"]``, ``manifest.json["checks"]``).

The model (:class:`~brainclust.model.composite.BrainClusterModel`, or the ``--auto`` / ``--consensus``
meta-estimators of :mod:`brainclust.model.auto`) holds every step; the run folder's files are
:mod:`brainclust.io.outputs`' and the one ``publish`` :mod:`brainclust.io.publish`'s. :func:`predict` loads a
finished run's model (:mod:`brainclust.model.persist`) and assigns new images the same way. Every check that
needs no data (settings, ``--out``, ``--cache-dir``, the Ray cluster's address) runs before the scan.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from brainclust.checks.tables import leakage_table, write_leakage, write_quality
from brainclust.cluster.associations import from_assignments, write_associations
from brainclust.cluster.kselect import check_k_fits, resolve_k
from brainclust.engines import EngineHooks
from brainclust.errors import InputError
from brainclust.features.extractor import FeatureExtractor
from brainclust.features.limits import check_cache_location, check_device
from brainclust.features.unitpool import slice_rows
from brainclust.features.units import count_contents, count_units
from brainclust.io.formats import nifti
from brainclust.io.metadata import record_columns, typed_columns
from brainclust.io.modelconfig import read_model_manifest
from brainclust.io.outputs import (FLAGS_COLUMN, PREDICT_ENTRIES, RUN_ENTRIES, RunFolder, assignment_rows,
                                   escape_name, meta_columns, read_assignments, write_manifest, write_run_files,
                                   write_table)
from brainclust.io.publish import check_out, prepare_out, publish
from brainclust.io.scan import ImageRecord, ScanResult, scan
from brainclust.io.slicefile import SLICE_COLUMNS
from brainclust.model.agreement import fp32_agreement
from brainclust.model.auto import build_model
from brainclust.model.checked import (check_result, distinct_scores, flag_cells, predict_checks, predicted_scores,
                                      quality_table)
from brainclust.model.composite import BrainClusterModel, result_repr
from brainclust.model.config import RunConfig
from brainclust.model.enrich import enrich, label_column, read_metadata, scoring_labels, with_labels
from brainclust.model.record import (check_predictable, config_of, data_record, effective_config, predict_inputs,
                                    predict_manifest, run_config, run_manifest, versions)
from brainclust.model.scorespace import silhouette_space
from brainclust.model.steercolumns import check_label_column, check_run_columns
from brainclust.model.steerrecord import record_steering

__all__ = ["RunConfig", "RunResult", "predict", "resolve_k", "run", "scan_nonempty", "versions",
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
    #: the rows of ``associations.csv`` (set when the outputs are written)
    associations: list = field(default_factory=list)
    #: what the data checks found (:class:`brainclust.checks.stage.CheckResult`; ``None``: ``--checks off``)
    checks: object | None = None
    #: the images that did not decode in the extraction (``quality.csv`` lists them with their reason)
    failed: list = field(default_factory=list)

    def __repr__(self) -> str:  # a notebook shows this: counts and scores, not every array
        return result_repr(self, self.metrics, f"out_dir={self.out_dir}")

    def rows(self) -> list[dict]:
        """One dict per image with the columns of ``assignments.csv`` (``flags`` when the run checked its data)."""
        rows = assignment_rows(self.records, self.labels, self.levels)
        if self.checks is not None:
            for row, cell in zip(rows, flag_cells(self.checks, self.records)):
                row[FLAGS_COLUMN] = cell
        return rows


def scan_nonempty(data, labels_from_folders: bool, slices: str = "axial:mid",
                  volume_index: int = 0, progress: bool | None = None, **choice) -> ScanResult:
    """:func:`brainclust.io.scan.scan` with the run's file choice (``include``, ``exclude``, ``bids_filter``,
    ``bids``, ``told``: scan's keywords); an InputError when it finds no image."""
    scanned = scan(data, labels_from_folders=labels_from_folders, slices=slices, volume_index=volume_index,
                   progress=progress, **choice)
    if not scanned.records:
        raise InputError.no_images(data, scanned.skipped_text(), scanned.excluded)
    return scanned


def warn_failed(skipped: list[dict]) -> list[dict]:
    """One line per image that failed to decode in the extraction, as the scan names the files it skips."""
    for s in skipped:
        log.warning("skipped %s: %s", escape_name(s["path"]), s["reason"])
    return skipped


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
        ``finish(folder)`` runs on the staged run folder, all its files written, before it replaces
        ``out`` (``brainclust run`` builds the report here): if it fails, ``out`` is left as it was.
    model : optional
        The (unfitted) model to fit instead of ``build_model(config)`` (e.g. ``--auto`` over another portfolio).

    Raises
    ------
    InputError, ParameterError, WeightsUnavailableError
        Bad input or settings; raised before any output is written.
    """
    cfg = run_config(config, settings)
    check_cache_location(cfg.cache_dir, out, data)
    prepare_out(out, data=data)
    engine = EngineHooks(cfg.engine, cfg.ray_address)
    engine.check()  # a --ray-address nobody answers on is one line here, before the scan
    table = read_metadata(cfg.metadata)
    t: dict = {}
    t0 = time.perf_counter()
    scanned = scan_nonempty(data, cfg.labels_from_folders, cfg.slices, cfg.volume_index, cfg.progress,
                            include=cfg.include, exclude=cfg.exclude_files, bids_filter=cfg.bids_filter, bids=cfg.bids)
    t["scan"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    records, info = enrich(scanned.records, cfg, table, splits=True)
    t["metadata"], lab = time.perf_counter() - t0, label_column(cfg)  # a missing column: one line, before extraction
    check_run_columns(records, remove=cfg.remove, within=cfg.within, labels=lab, color_by=cfg.color_by, table=table)
    check_k_fits(cfg.k, cfg.method, count_units(records, cfg.unit), f"'{data}'", cfg.unit, final=not cfg.exclude,
                 distinct=None if cfg.remove or cfg.within else count_contents(records, cfg.unit))
    model = model if model is not None else build_model(cfg)
    # labels only report (the --auto / --consensus candidates' scores in auto.csv), never choose
    labels = scoring_labels(with_labels(records, lab), lab) if cfg.auto or cfg.consensus else None
    model.fit(records, labels, source=f"input folder '{data}'", prefill=engine.prefill, assign_all=engine.assign_all)
    if cfg.exclude and getattr(model, "aside_", None) is None:  # --exclude set nothing aside: the scan's count holds
        check_k_fits(cfg.k, cfg.method, count_units(records, cfg.unit), f"'{data}'", cfg.unit)
    t.update(model.timings_)
    rows = with_labels(model.records_, lab)
    t0 = time.perf_counter()
    y = scoring_labels(rows, lab)
    metrics = model.scores(y)
    checked = check_result(model)
    if checked is not None and (distinct := distinct_scores(model, checked, y)) is not None:
        metrics["distinct"] = distinct
    t["evaluate"] = time.perf_counter() - t0
    if cfg.agreement:  # a second fit on fp32 features, as a second run would be (model.agreement)
        t0 = time.perf_counter()
        metrics["agreement"] = fp32_agreement(model, cfg, records, build_model, f"input folder '{data}'")
        t["agreement"] = time.perf_counter() - t0
    cfg = effective_config(cfg, model)
    skipped = sorted(scanned.skipped + warn_failed(model.skipped_), key=lambda s: s["path"])
    manifest = run_manifest(cfg, model, data, scanned, skipped, engine.info(), t)
    manifest.update(data_record(cfg, scanned, rows, manifest["n_images"], info, lab))
    if checked is not None:
        manifest["checks"] = model.step("checks").info_
    record_steering(cfg, model, rows, metrics, manifest, lab, y)
    metrics["silhouette_space"] = silhouette_space(manifest)  # the UMAP or a kept SSL embedding says so
    result = RunResult(cfg, rows, skipped, model.features_, model.embedding_, model.labels_, model.levels_,
                       metrics, manifest, model.extractor_, model.step("reducer"), model.clusterer_, timings=t,
                       ssl_model=getattr(model.step("ssl"), "model_", None), model=model, checks=checked,
                       failed=model.skipped_)
    if out is not None:
        write_outputs(result, out, finish, data=data)
    return result


def write_outputs(result: RunResult, out, finish=None, *, data=None, model_dir=None) -> Path:
    """Publish the run (or prediction) folder ``out``: the model (a run's), ``assignments.csv``,
    ``embeddings.parquet``, ``metrics.json``, the checks' ``quality.csv`` and ``leakage.csv``, ``slices.csv``
    (unit rows), ``associations.csv`` (ranked from ``assignments.csv`` as written), then ``manifest.json``.

    Through :func:`brainclust.io.publish.publish`: staged, then swapped in whole, so ``out``
    never mixes two runs' files; ``finish(staging)`` (the report) completes the staged folder before
    the swap, so a failed or killed report leaves the previous ``out`` as it was.
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
        meta = meta_columns(result.records)  # a metadata column named "flags" is written as meta_flags
        write_run_files(folder, result.rows(), result.levels is not None, result.metrics, result.records,
                        result.embedding, features, ([FLAGS_COLUMN] if result.checks is not None else []) + meta,
                        typed_columns(record_columns(result.records)))
        if result.checks is not None:
            write_quality(folder.quality, quality_table(result.checks, result.failed))
            write_leakage(folder.leakage, leakage_table(result.checks))
        if result.records and hasattr(result.records[0], "members"):
            write_table(folder.slices, SLICE_COLUMNS, slice_rows(result.records))
        result.timings["write"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        result.associations = from_assignments(read_assignments(folder.assignments), result.config.permutations,
                                               result.config.seed, exclude=[result.config.within or ""],
                                               aside_flags=result.config.exclude)
        write_associations(folder.associations, result.associations)
        result.timings["associations"] = time.perf_counter() - t1
        write_manifest(folder.manifest, result.manifest)

    allowed = RUN_ENTRIES if result.model is not None else PREDICT_ENTRIES  # a prediction replaces no run
    result.out_dir = publish(out, fill, finish=finish, check=lambda: check_out(out, data=data, model_dir=model_dir,
                                                                               allowed=allowed))
    return result.out_dir


def predict(model_dir, data, out=None, labels_from_folders: bool = False, cache_dir=None,
            batch_size: int | None = None, workers: int | None = None, progress: bool | None = None,
            slices: str | None = None, volume_index: int | None = None, device: str = "auto", *, include=None,
            exclude_files=None, bids_filter=None, bids=None, metadata=None, metadata_key=None, labels=None,
            checks=None, weights=None) -> RunResult:
    """Assign the images under ``data`` to the clusters of the run saved in ``model_dir``.

    The same backbone, weights (checked by SHA-256), precision and pre-processing are used, then
    the saved unit pooling, reduction and clustering (a ``--unit volume`` run assigns new volumes).
    ``slices``, ``volume_index``, ``include``, ``exclude_files``, ``bids_filter`` and ``bids`` default to the
    run's own; ``metadata`` (``metadata_key``) joins a table to the new rows; ``labels`` scores
    against a column (``labels_from_folders``: the column ``folder``); ``checks``: ``on``/``off`` (as the run).
    ``device`` (``--device``) is where the features are computed, whatever device the run used:
    ``auto`` (a CUDA GPU when this machine has one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``. ``weights``
    (``--weights``): the weights file the model names, when this machine has it elsewhere (checked by SHA-256).
    """
    check_device(device)
    check_cache_location(cache_dir, out, data)
    check_predictable(read_model_manifest(model_dir)[0], model_dir)
    model = BrainClusterModel.load(model_dir, {"batch_size": batch_size, "num_workers": workers, "weights": weights,
                                               "cache_dir": cache_dir, "progress": progress, "device": device})
    info, do_checks = model.manifest_, predict_checks(model, checks)  # a bad --checks: one line before any work
    s = info["settings"]
    given = {"slices": slices, "volume_index": volume_index, "include": include, "exclude_files": exclude_files,
             "bids_filter": bids_filter, "bids": bids}
    if bids == "off" and bids_filter is None:  # the run's BIDS filter has nothing to select in plain folders
        given["bids_filter"] = ""
    cfg = replace(config_of(s), labels_from_folders=labels_from_folders, labels=labels, metadata=metadata,
                  metadata_key=metadata_key, cache_dir=cache_dir, progress=progress,
                  **{k: v for k, v in given.items() if v is not None})
    nifti.parse_slices(cfg.slices)
    nifti.check_volume_index(cfg.volume_index)
    cfg.check_inputs()
    inputs = predict_inputs(s, {k: getattr(cfg, k) for k, v in given.items() if v is not None})  # as read
    prepare_out(out, data=data, model_dir=model_dir, allowed=PREDICT_ENTRIES)
    table = read_metadata(cfg.metadata)
    scanned = scan_nonempty(data, labels_from_folders, cfg.slices, cfg.volume_index, progress, include=cfg.include,
                            exclude=cfg.exclude_files, bids_filter=cfg.bids_filter, bids=cfg.bids,
                            told=[k for k in ("slices", "volume_index") if given[k] is not None])
    t0 = time.perf_counter()
    records, extra = enrich(scanned.records, cfg, table)
    t_meta = time.perf_counter() - t0
    check_label_column(label_column(cfg), records)
    got = model.predict(records, source=f"input folder '{data}'", checks=do_checks)
    warn_failed(got.skipped)
    rows = with_labels(got.records, label_column(cfg))
    metrics = predicted_scores(got, scoring_labels(rows, label_column(cfg)), model.step("clusterer"))
    got.timings["metadata"] = t_meta
    manifest = predict_manifest(info, model_dir, data, scanned, got, got.timings, inputs)
    manifest["backbone"] = {**manifest["backbone"], "device": model.extractor_.device_,  # where it ran, with what
                            "weights_path": getattr(model.extractor_.weights_, "path", None)}
    manifest.update(data_record(cfg, scanned, rows, manifest["n_images"], extra, label_column(cfg)))
    metrics["silhouette_space"] = silhouette_space(manifest)  # the model's space: a kept SSL embedding says so
    result = RunResult(cfg, rows, manifest["skipped"], got.features, got.embedding, got.labels, got.levels,
                       metrics, manifest, model.extractor_, model.step("reducer"), model.clusterer_,
                       timings=got.timings, checks=got.checks, failed=got.skipped)
    if out is not None:
        write_outputs(result, out, data=data, model_dir=model_dir)
    return result
