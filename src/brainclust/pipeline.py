"""The convenience layer: compose the stages into one run, write the outputs.

Data flows one way::

    scan -> FeatureExtractor (preprocess + backbone + cache) -> PCAReducer -> Clusterer -> score -> files

:func:`run` does what ``brainclust run`` does and returns a :class:`RunResult`;
:func:`predict` applies a finished run's saved model to new images.
"""

from __future__ import annotations

import functools
import logging
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path

import numpy as np

from brainclust import __version__
from brainclust.features.cache import default_cache_dir
from brainclust.cluster.kselect import KSelector
from brainclust.cluster.methods import Clusterer, check_seed
from brainclust.engines import check_engine
from brainclust.errors import InputError, ModelFileError, ParameterError
from brainclust.features.fusion import FusedExtractor, check_norm
from brainclust.io.formats import nifti
from brainclust.cluster.scores import score
from brainclust.features.extractor import FeatureExtractor
from brainclust.io.scan import ImageRecord, ScanResult, scan
from brainclust.io.embeddings import write_embeddings
from brainclust.io.atomic import atomic_write_json, folder_lock, remove_tree, sibling_temp_dir, swap_folder
from brainclust.io.outputs import (RUN_ENTRIES, RunFolder, assignment_rows, escaped_manifest, read_json,
                                   write_assignments)
from brainclust.cluster.reduce import PCAReducer
from brainclust.cluster.manifold import UMAPReducer, build_reducer, check_reduce
from brainclust.cluster.outliers import check_outlier_method, cluster_with_outliers
from brainclust.selfsup import gate as ssl_gate
from brainclust.selfsup import stage as ssl_stage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a run (recorded in ``manifest.json``). See ``brainclust run --help``."""

    backbone: str = "auto"
    weights: str | None = None
    precision: str = "auto"
    runtime: str = "auto"
    batch_size: int = 32
    workers: int | None = None
    clip_percentiles: tuple[float, float] | None = (0.5, 99.5)
    #: Fixed input intensity range for every image (``--intensity-window``); replaces the clip and min-max.
    intensity_window: tuple[float, float] | None = None
    #: Fusion only (``--fusion-norm``): ``image`` L2-normalises each block per image, ``block`` does not.
    fusion_norm: str = "image"
    pca: int | float = 50
    method: str = "hierarchical"
    #: number of clusters, or "auto" (chosen by :class:`~brainclust.cluster.kselect.KSelector`)
    k: int | str = 4
    seed: int = 0
    labels_from_folders: bool = False
    cache_dir: str | None = None
    device: str = "cpu"
    progress: bool | None = None
    slices: str = "axial:mid"
    volume_index: int = 0
    #: Self-supervised components (see :mod:`brainclust.selfsup`); empty = off.
    ssl: tuple[str, ...] = ()
    ssl_mode: str = "head"
    ssl_epochs: int | None = None
    #: Appearance views of the SSL head (``--ssl-views``); ``None`` = identity, hflip, strong.
    ssl_views: tuple[str, ...] | None = None
    #: Also write the raw backbone features into ``embeddings.parquet`` (``--embeddings-features``).
    embeddings_features: bool = False
    #: ``--reduce``: ``pca`` (default), ``umap`` or ``pca+umap`` (:mod:`brainclust.cluster.manifold`).
    reduce: str = "pca"
    #: ``--outliers``: ``off`` (default) or ``auto`` (:mod:`brainclust.cluster.outliers`).
    outliers: str = "off"
    #: ``--auto``: the backbone and reduction are chosen label-free (:func:`brainclust.analysis.autoconfig.run_auto`).
    auto: bool = False
    #: ``--consensus``: the co-association consensus of the portfolio's partitions (``run_auto`` too).
    consensus: bool = False
    #: ``--ssl-gate``: keep the SSL embedding only when :mod:`brainclust.selfsup.gate`'s check passes.
    ssl_gate: bool = False
    #: ``--engine``: ``local`` or ``ray`` (:mod:`brainclust.engines.ray_data`); ``ray_address`` joins a cluster.
    engine: str = "local"
    ray_address: str | None = None

    def validate(self) -> None:
        """Cheap checks that need no data, so bad settings fail before any work.

        Each rule is declared once, by the stage that owns it; this calls their checks.
        """
        nifti.parse_slices(self.slices)
        nifti.check_volume_index(self.volume_index)
        check_seed(self.seed)
        check_engine(self.engine, self.ray_address)
        self.extractor().check_params()
        check_norm(self.fusion_norm)
        PCAReducer(self.pca).check_params()
        check_reduce(self.reduce)
        check_outlier_method(self.outliers, self.method)
        Clusterer(method=self.method, n_clusters=self.k).check_params()
        comps = ssl_stage.validate(self.ssl, self.ssl_mode, self.ssl_epochs, self.ssl_views)
        if comps and self.k == "auto":
            raise ParameterError("--k: 'auto' cannot be combined with --self-supervised (the SSL head is trained "
                                 "for a given k); run with --k auto first, then pass the chosen k")
        if comps and self.ssl_mode == "finetune" and self.intensity_window is not None:
            raise ParameterError("--intensity-window: not supported with --ssl-mode finetune; use --ssl-mode head")

    def extractor(self) -> FeatureExtractor:
        kwargs = dict(backbone=self.backbone, weights=self.weights, precision=self.precision,
                      batch_size=self.batch_size, num_workers=self.workers,
                      clip_percentiles=self.clip_percentiles, intensity_window=self.intensity_window,
                      cache_dir=self.cache_dir,
                      device=self.device, progress=self.progress, runtime=self.runtime)
        if "+" in self.backbone:  # fusion of several backbones (brainclust.features.fusion)
            return FusedExtractor(**kwargs, norm=self.fusion_norm)
        return FeatureExtractor(**kwargs)


@dataclass
class RunResult:
    """Everything a run produced. Rows follow ``records`` (images that were read)."""

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
    reducer: PCAReducer
    clusterer: Clusterer
    out_dir: Path | None = None
    timings: dict = field(default_factory=dict)
    ssl_model: object | None = None

    def rows(self) -> list[dict]:
        """One dict per image with the columns of ``assignments.csv``."""
        return assignment_rows(self.records, self.labels, self.levels)


def versions() -> dict:
    out = {"brainclust": __version__, "python": platform.python_version()}
    for pkg in ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "pillow"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def extract_records(extractor: FeatureExtractor, scanned: ScanResult) -> tuple[list[ImageRecord], np.ndarray, list]:
    """Run the extractor; move images that fail to decode to the skipped list."""
    feats = extractor.transform(scanned.records)
    skipped = list(scanned.skipped)
    for i, reason in sorted(extractor.failed_.items()):
        skipped.append({"path": scanned.records[i].path, "reason": reason})
    if not extractor.failed_:  # no copy of the (possibly memory-mapped) matrix
        return list(scanned.records), feats, sorted(skipped, key=lambda s: s["path"])
    ok = [i for i in range(len(scanned.records)) if i not in extractor.failed_]
    return [scanned.records[i] for i in ok], feats[ok], sorted(skipped, key=lambda s: s["path"])


def _inside(a: Path, b: Path) -> bool:
    """Whether folder ``a`` is ``b`` or lies inside it (both resolved)."""
    return a == b or b in a.parents


def _check_out(out, data=None, model_dir=None) -> None:
    """Fail before any work when ``--out`` cannot become this run's folder (nothing is created).

    Refused: a file; a folder that cannot be created or written; ``--out`` equal to,
    inside or around ``data`` (a rerun would cluster the outputs, or the swap would
    delete the images) or ``model_dir``; an existing folder holding anything that is
    not a run output (:data:`~brainclust.io.outputs.RUN_ENTRIES`), which a rerun
    would otherwise delete.
    """
    if out is None:
        return
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise ParameterError(f"--out: '{out}' exists and is not a folder")
    for other, what in ((data, "the input folder"), (model_dir, "the model folder")):
        if other is None:
            continue
        o, r = Path(other).resolve(), p.resolve()
        if _inside(r, o) or _inside(o, r):
            raise ParameterError(f"--out: '{out}' must be outside {what} '{other}' (and not contain it); "
                                 "choose another folder")
    if p.is_dir():
        foreign = sorted(e.name for e in p.iterdir() if e.name not in RUN_ENTRIES)
        if foreign:
            raise ParameterError(f"--out: '{out}' holds '{foreign[0]}', which is not a brainclust output; "
                                 "a run replaces its whole --out folder: choose a new or empty folder "
                                 "(or a previous run's)")
    anc = p
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise ParameterError(f"--out: '{out}' cannot be created: '{anc}' is not a folder")
    import os

    if not os.access(anc, os.W_OK | os.X_OK):
        raise ParameterError(f"--out: '{out}' is not writable (no write permission on '{anc}')")


def _make_out(out) -> Path:
    """Create an empty staging folder next to ``out``; an OS refusal becomes a one-line ParameterError."""
    out = Path(out)
    try:
        return sibling_temp_dir(out)
    except OSError as exc:
        raise ParameterError(f"--out: cannot create folder '{out}': {exc.strerror or exc}") from None


def _publish(out, fill, data=None, model_dir=None, finish=None) -> Path:
    """Write a whole output folder: ``fill(staging)`` in a sibling folder, then swap it in as ``out``.

    Under :func:`~brainclust.io.atomic.folder_lock`: a second writer of ``out``
    waits. ``finish(out)`` (e.g. the report) runs after the swap, still locked.
    On any failure the staging folder is removed and ``out`` is left as it was.
    """
    out = Path(out)
    with folder_lock(out, on_wait=lambda: log.info("waiting for another brainclust process writing '%s'", out)):
        _check_out(out, data, model_dir)  # again: the folder may have changed while the run worked
        staging = _make_out(out)
        try:
            fill(staging)
            swap_folder(staging, out)
        except BaseException:
            remove_tree(staging)
            raise
        if finish is not None:
            finish(out)
    return out


def scan_nonempty(data, labels_from_folders: bool, slices: str = "axial:mid",
                   volume_index: int = 0, progress: bool | None = None) -> ScanResult:
    scanned = scan(data, labels_from_folders=labels_from_folders, slices=slices, volume_index=volume_index,
                   progress=progress)
    if not scanned.records:
        raise InputError(f"input folder '{data}' contains no readable image "
                         f"({len(scanned.skipped)} file(s) skipped)")
    return scanned


def backbone_info(ex: FeatureExtractor) -> dict:
    return {"name": ex.spec_.name, "requested": ex.backbone, "dim": ex.spec_.dim,
            "input_size": ex.spec_.input_size, "weights_path": ex.weights_.path,
            "weights_sha256": ex.weights_.sha256, "precision": ex.precision_, "device": ex.device_,
            "runtime": getattr(ex, "runtime_", "torch"),
            **({"block_scales": [float(v) for v in ex.block_scales_], "fusion_norm": ex.norm}
               if getattr(ex, "block_scales_", None) is not None else {})}


def resolve_k(k: int | str, method: str, emb: np.ndarray, seed: int | None) -> tuple[int, dict | None]:
    """``k`` as an int; ``"auto"`` runs :class:`~brainclust.cluster.kselect.KSelector` and returns its record.

    ``dbscan`` has no ``k``: ``"auto"`` resolves to 0 (unused) with no selection.
    """
    if k != "auto":
        return k, None
    if method == "dbscan":
        return 0, None
    sel = KSelector(method=method, random_state=seed).fit(emb)
    return sel.k_, sel.as_dict()


def _scan_and_extract(data, cfg: RunConfig, t: dict):
    """Scan ``data`` and extract the features of every decodable image; check ``k`` against the count."""
    t0 = time.perf_counter()
    scanned = scan_nonempty(data, cfg.labels_from_folders, cfg.slices, cfg.volume_index, cfg.progress)
    if cfg.method != "dbscan" and cfg.k != "auto" and cfg.k > len(scanned.records):
        raise ParameterError(f"--k: {cfg.k} clusters requested but '{data}' has only "
                             f"{len(scanned.records)} readable images")
    t["scan"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    extractor = cfg.extractor().fit()
    if cfg.engine == "ray":  # the cluster fills the feature store; the local pass below then reads it
        from brainclust.engines import ray_data

        engine = ray_data.extract(extractor, scanned.records, cfg.ray_address)
    else:
        engine = {"engine": "local"}
    records, feats, skipped = extract_records(extractor, scanned)
    t["extract"] = time.perf_counter() - t0
    if len(records) < 2:
        raise InputError(f"input folder '{data}' has {len(records)} decodable image(s); clustering needs 2")
    if cfg.method != "dbscan" and cfg.k != "auto" and cfg.k > len(records):
        raise ParameterError(f"--k: {cfg.k} clusters requested but only {len(records)} images could be decoded")
    return scanned, extractor, records, feats, skipped, engine


def _assign_all(cfg: RunConfig):
    """With ``--engine ray``, the clustering's pass over all rows runs on Ray; else ``None`` (local)."""
    if cfg.engine != "ray":
        return None
    from brainclust.engines import ray_data

    return functools.partial(ray_data.nearest_on_ray, address=cfg.ray_address)


def _cache_info(extractor) -> dict:
    return {"dir": (None if extractor.cache_dir is False else str(extractor.cache_dir or default_cache_dir())),
            "hits": extractor.cache_hits_, "misses": extractor.cache_misses_}


def _self_supervised(cfg: RunConfig, extractor, records, feats, t: dict):
    """The optional SSL stage: ``(cfg, outcome or None, what the reduction gets)``.

    With ``--ssl-gate`` the embedding is kept only when :func:`brainclust.selfsup.gate.check`
    passes; otherwise the run goes on with the frozen features, ``cfg.ssl`` becomes empty (so
    ``predict`` does not embed) and no SSL model is saved; ``info["gate"]`` says which.
    """
    if not cfg.ssl:
        return cfg, None, feats
    t0 = time.perf_counter()
    cfg = replace(cfg, ssl=ssl_stage.validate(cfg.ssl, cfg.ssl_mode, cfg.ssl_epochs))  # "all" -> the four
    ssl = ssl_stage.fit(cfg, extractor, records, feats)
    reduce_in = ssl.embedding
    if cfg.ssl_gate:
        ssl.info["gate"] = ssl_gate.check(feats, ssl.embedding, cfg.k, cfg.pca, cfg.seed,
                                           seed_stability=ssl.info.get("head_agreement")).as_dict()
        if not ssl.info["gate"]["kept"]:  # step aside: frozen features, no SSL model saved
            reduce_in, ssl.model, cfg = feats, None, replace(cfg, ssl=())
    t["ssl"] = time.perf_counter() - t0
    return cfg, ssl, reduce_in


def run(data, out=None, config: RunConfig | None = None, *, finish=None, **settings) -> RunResult:
    """Cluster the images under ``data``; write the outputs to ``out`` when given.

    Parameters
    ----------
    data : path-like
        Folder of images (searched recursively).
    out : path-like or None
        Output folder for ``assignments.csv``, ``metrics.json``,
        ``manifest.json`` and ``model/``. Nothing is written when ``None``.
    config : RunConfig, optional
        Settings; keyword arguments override its fields (e.g. ``k=4``).
    finish : callable, optional
        ``finish(out)`` runs once the run folder is in place, while it is still
        locked (``brainclust run`` builds the report here).

    Returns
    -------
    RunResult

    Raises
    ------
    InputError, ParameterError, WeightsUnavailableError
        Bad input or settings; raised before any output is written.
    """
    cfg = replace(config or RunConfig(), **settings)
    cfg.validate()
    if cfg.auto or cfg.consensus:  # these live in analysis (a higher rank), which calls run() without them
        raise ParameterError("--auto/--consensus: use brainclust.analysis.autoconfig.run_auto (the CLI does)")
    _check_out(out, data)
    t: dict = {}
    scanned, extractor, records, feats, skipped, engine = _scan_and_extract(data, cfg, t)
    cfg, ssl, reduce_in = _self_supervised(cfg, extractor, records, feats, t)

    t0 = time.perf_counter()
    reducer = build_reducer(cfg.reduce, cfg.pca, cfg.seed)  # PCAReducer unless --reduce umap / pca+umap
    emb = reducer.fit_transform(reduce_in)
    t["reduce"] = time.perf_counter() - t0
    if cfg.method != "dbscan" and cfg.k != "auto" and cfg.k > reducer.n_distinct_:
        raise ParameterError(f"--k: {cfg.k} clusters requested but only {reducer.n_distinct_} of the "
                             f"{len(records)} images have distinct features (duplicates share one); "
                             f"use --k {reducer.n_distinct_} or fewer")

    t0 = time.perf_counter()
    k, k_selection = resolve_k(cfg.k, cfg.method, emb, cfg.seed)
    clusterer, outlier_info = cluster_with_outliers(emb, cfg.method, k, cfg.seed, cfg.outliers,
                                                    assign_all=_assign_all(cfg))
    t["cluster"] = time.perf_counter() - t0
    log.info("%d images: %s %d -> %d dims in %.1f s, %s -> %d clusters in %.1f s", len(records), cfg.reduce,
             reduce_in.shape[1], emb.shape[1], t["reduce"], cfg.method, clusterer.n_clusters_, t["cluster"])

    t0 = time.perf_counter()
    labels_true = [r.label for r in records] if cfg.labels_from_folders else None
    metrics = score(emb, clusterer.labels_, labels_true)
    metrics.update({key: v for key, v in (("k_selection", k_selection), ("outliers", outlier_info)) if v is not None})
    t["evaluate"] = time.perf_counter() - t0

    manifest = {
        "kind": "run", "versions": versions(), "input": str(Path(data).resolve()),
        "settings": {**asdict(cfg), "preprocess": extractor.preprocess_.as_dict()},
        "backbone": backbone_info(extractor),
        "pca": {"n_components": reducer.n_components_, "solver": reducer.solver_, "fit_rows": reducer.fit_rows_,
                "explained_variance": (float(reducer.explained_variance_ratio_.sum())
                                       if reducer.explained_variance_ratio_ is not None else None)},
        "clustering": {"method": cfg.method, "k": k, "k_requested": cfg.k, "n_clusters_found": clusterer.n_clusters_,
                       "dbscan_eps": clusterer.eps_},
        "cache": _cache_info(extractor),
        "engine": engine,
        "n_files_scanned": scanned.n_files,
        "n_images": len(records), "skipped": skipped, "timings_s": t,
        **({"ssl": ssl.info} if ssl is not None else {}),
        **({"reduce": reducer.as_dict()} if cfg.reduce != "pca" else {}),
        **({"outliers": outlier_info} if outlier_info is not None else {}),
    }
    result = RunResult(cfg, records, skipped, feats, emb, clusterer.labels_, clusterer.levels_, metrics,
                       manifest, extractor, reducer, clusterer, timings=t,
                       ssl_model=ssl.model if ssl is not None else None)
    if out is not None:
        write_outputs(result, out, finish)
    return result


def write_outputs(result: RunResult, out, finish=None) -> Path:
    """Write the whole run folder ``out``: model, ``assignments.csv``, ``metrics.json``, ``manifest.json``.

    The files go to a temporary sibling folder that then replaces ``out`` (see
    :func:`_publish`), so ``out`` never mixes two runs' files; ``finish(out)``
    (the report) runs after the swap while the folder is still locked.
    """
    t0 = time.perf_counter()

    def fill(staging: Path) -> None:
        folder = RunFolder(staging)
        if isinstance(result.reducer, UMAPReducer):  # --reduce umap: its PCA, then the UMAP part
            result.reducer.pca_.save(folder.pca)
            result.reducer.save(folder.umap)
        else:
            result.reducer.save(folder.pca)
        result.clusterer.save(folder.cluster)
        if result.ssl_model is not None:
            ssl_stage.save(result.ssl_model, folder.model)
        atomic_write_json(folder.model_config, {"brainclust": __version__,
                                                "settings": result.manifest["settings"],
                                                "backbone": result.manifest["backbone"]})
        write_assignments(folder.assignments, result.rows(), result.levels is not None)
        write_embeddings(folder.embeddings, result.rows(), result.records, result.embedding,
                         result.features if result.config.embeddings_features else None)
        atomic_write_json(folder.metrics, result.metrics)
        result.timings["write"] = time.perf_counter() - t0
        atomic_write_json(folder.manifest, escaped_manifest(result.manifest))

    out = _publish(out, fill, result.manifest.get("input"), result.manifest.get("model_dir"), finish)
    result.out_dir = out
    return out


#: model/config.json: field -> (allowed types, may be missing). ``None`` in a tuple allows null.
_SETTINGS_TYPES = {"batch_size": ((int,), False), "clip_percentiles": ((list, type(None)), False),
                   "intensity_window": ((list, type(None)), True), "pca": ((int, float), False),
                   "method": ((str,), False), "k": ((int, str), False), "seed": ((int,), False),
                   "slices": ((str,), True), "volume_index": ((int,), True),
                   "ssl": ((list, type(None)), True), "ssl_mode": ((str,), True),
                   "ssl_epochs": ((int, type(None)), True)}
_BACKBONE_TYPES = {"name": ((str,), False), "weights_path": ((str, type(None)), False),
                   "weights_sha256": ((str,), False), "precision": ((str,), False), "device": ((str,), False),
                   "dim": ((int,), False), "block_scales": ((list, type(None)), True),
                   "fusion_norm": ((str,), True)}


def check_model_config(info, path) -> None:
    """``model/config.json`` read like untrusted input: a ModelFileError naming the file and the field."""
    if not isinstance(info, dict):
        raise ModelFileError(f"model config '{path}': must be a JSON object, got {type(info).__name__}")
    for section, table in (("settings", _SETTINGS_TYPES), ("backbone", _BACKBONE_TYPES)):
        sec = info.get(section)
        if not isinstance(sec, dict):
            raise ModelFileError(f"model config '{path}': field '{section}' is missing or not a JSON object")
        for name, (types, optional) in table.items():
            if name not in sec:
                if optional:
                    continue
                raise ModelFileError(f"model config '{path}': field '{section}.{name}' is missing")
            v = sec[name]
            if isinstance(v, bool) or not isinstance(v, types):
                raise ModelFileError(f"model config '{path}': field '{section}.{name}' has the wrong type "
                                     f"({type(v).__name__}: {v!r:.60})")
    for name in ("clip_percentiles", "intensity_window"):
        v = info["settings"].get(name)
        if v is not None and (len(v) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                     for x in v)):
            raise ModelFileError(f"model config '{path}': field 'settings.{name}' must be null or two numbers")


def load_model(model_dir) -> tuple[dict, PCAReducer, Clusterer]:
    """Read a finished run's ``model/`` folder (``model_dir`` is the run's ``--out``)."""
    folder = RunFolder(model_dir)
    if not folder.model_config.is_file():
        raise ModelFileError(f"'{model_dir}' is not a finished brainclust run: {folder.model_config} is missing")
    info = read_json(folder.model_config)
    check_model_config(info, folder.model_config)
    reducer, clusterer = PCAReducer.load(folder.pca), Clusterer.load(folder.cluster)
    if info["settings"].get("reduce", "pca") != "pca":  # the UMAP after the saved PCA (re-fitted, no pickle)
        reducer = UMAPReducer.load(folder.umap, reducer)
    if clusterer.method != info["settings"]["method"]:
        raise ModelFileError(f"cluster model '{folder.cluster}': field 'params.method' is "
                             f"'{clusterer.method}' but {folder.model_config} says '{info['settings']['method']}'")
    if reducer.n_components_ != clusterer.X_fit_.shape[1]:
        raise ModelFileError(f"cluster model '{folder.cluster}': field 'X_fit' has {clusterer.X_fit_.shape[1]} "
                             f"dimensions but the PCA ({folder.pca}) gives {reducer.n_components_}")
    if not info["settings"].get("ssl") and reducer.n_features_in_ != info["backbone"]["dim"]:
        raise ModelFileError(f"PCA file '{folder.pca}': field 'n_features_in' is {reducer.n_features_in_} but "
                             f"{folder.model_config} says backbone.dim = {info['backbone']['dim']}")
    return info, reducer, clusterer


def _refuse_consensus(model_dir, settings: dict) -> None:
    if settings.get("consensus"):
        raise ParameterError(f"'{model_dir}' is a --consensus run: its clusters combine several backbones' "
                             "partitions and have no single model to place new images; run "
                             "'brainclust run --consensus' on the old and new images together")


def _stored_config(s: dict, bb: dict, weights) -> RunConfig:
    """The settings of a saved model alone (no option of the predict call), to check them."""
    return RunConfig(backbone=bb["name"], weights=weights, precision=bb["precision"], batch_size=s["batch_size"],
                     clip_percentiles=tuple(s["clip_percentiles"]) if s["clip_percentiles"] else None,
                     intensity_window=tuple(s["intensity_window"]) if s.get("intensity_window") else None,
                     pca=s["pca"], method=s["method"], k=s["k"], seed=s["seed"], device=bb["device"],
                     slices=s.get("slices", "axial:mid"), volume_index=s.get("volume_index", 0),
                     ssl=tuple(s.get("ssl") or ()), ssl_mode=s.get("ssl_mode", "head"),
                     ssl_epochs=s.get("ssl_epochs"))


def predict(model_dir, data, out=None, labels_from_folders: bool = False, cache_dir=None,
            batch_size: int | None = None, workers: int | None = None, progress: bool | None = None,
            slices: str | None = None, volume_index: int | None = None) -> RunResult:
    """Assign the images under ``data`` to the clusters of the run saved in ``model_dir``.

    The same backbone, weights (checked by SHA-256), precision and
    pre-processing are used, then the saved PCA and cluster model. ``slices``
    and ``volume_index`` (NIfTI) default to the run's own.
    """
    info, reducer, clusterer = load_model(model_dir)
    s, bb = info["settings"], info["backbone"]
    _refuse_consensus(model_dir, s)
    weights = bb["weights_path"] if bb["weights_sha256"] != "random" else "random"
    try:
        _stored_config(s, bb, weights).validate()
    except ParameterError as exc:
        raise ModelFileError(f"model config '{RunFolder(model_dir).model_config}': {exc}") from None
    cfg = RunConfig(backbone=bb["name"], weights=weights, precision=bb["precision"],
                    batch_size=batch_size or s["batch_size"], workers=workers,
                    clip_percentiles=tuple(s["clip_percentiles"]) if s["clip_percentiles"] else None,
                    intensity_window=tuple(s["intensity_window"]) if s.get("intensity_window") else None,
                    pca=s["pca"], method=s["method"], k=s["k"], seed=s["seed"],
                    labels_from_folders=labels_from_folders, cache_dir=cache_dir, device=bb["device"],
                    progress=progress,
                    slices=slices if slices is not None else s.get("slices", "axial:mid"),
                    volume_index=volume_index if volume_index is not None else s.get("volume_index", 0),
                    ssl=tuple(s.get("ssl") or ()), ssl_mode=s.get("ssl_mode", "head"),
                    ssl_epochs=s.get("ssl_epochs"))
    cfg.validate()
    _check_out(out, data, model_dir)
    t = {}
    t0 = time.perf_counter()
    scanned = scan_nonempty(data, labels_from_folders, cfg.slices, cfg.volume_index, progress)
    extractor = cfg.extractor()
    if bb.get("block_scales") is not None:  # fusion: the scales learned on the training images
        extractor.set_params(block_scales=bb["block_scales"], norm=bb.get("fusion_norm", "image"))
    extractor.fit()
    if extractor.spec_.dim != bb["dim"]:
        raise ModelFileError(f"model config '{RunFolder(model_dir).model_config}': field 'backbone.name' "
                             f"('{bb['name']}') gives {extractor.spec_.dim} dimensions but the model was saved "
                             f"with backbone.dim = {bb['dim']}")
    if extractor.weights_.sha256 != bb["weights_sha256"]:
        raise ModelFileError(f"the weights of backbone '{bb['name']}' "
                             f"('{extractor.weights_.path or bb['weights_path'] or 'built-in'}') have changed since "
                             f"the model was saved (SHA-256 {extractor.weights_.sha256[:12]} != "
                             f"{bb['weights_sha256'][:12]})")
    records, feats, skipped = extract_records(extractor, scanned)
    t["extract"] = time.perf_counter() - t0
    if not records:
        raise InputError(f"input folder '{data}' has no decodable image")
    reduce_in = feats
    if cfg.ssl:  # embed with the saved self-supervised model first, as the run did
        t0 = time.perf_counter()
        reduce_in = ssl_stage.embed(ssl_stage.load(RunFolder(model_dir).model, s), extractor, records, feats)
        t["ssl"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    emb = reducer.transform(reduce_in)
    labels = clusterer.predict(emb)
    levels = clusterer.predict_levels(emb)
    t["assign"] = time.perf_counter() - t0
    metrics = score(emb, labels, [r.label for r in records] if labels_from_folders else None)
    manifest = {"kind": "predict", "versions": versions(), "input": str(Path(data).resolve()),
                "model_dir": str(Path(model_dir).resolve()), "settings": s, "backbone": bb,
                "cache": {"hits": extractor.cache_hits_, "misses": extractor.cache_misses_},
                "n_files_scanned": scanned.n_files,
                "n_images": len(records), "skipped": skipped, "timings_s": t}
    result = RunResult(cfg, records, skipped, feats, emb, labels, levels, metrics, manifest,
                       extractor, reducer, clusterer, timings=t)
    if out is not None:
        def fill(staging: Path) -> None:
            folder = RunFolder(staging)
            write_assignments(folder.assignments, result.rows(), levels is not None)
            write_embeddings(folder.embeddings, result.rows(), records, emb)
            atomic_write_json(folder.metrics, metrics)
            atomic_write_json(folder.manifest, escaped_manifest(manifest))

        result.out_dir = _publish(out, fill, data, model_dir)
    return result
