"""The convenience layer: compose the stages into one run, write the outputs.

Data flows one way::

    scan -> FeatureExtractor (preprocess + backbone + cache) -> PCAReducer -> Clusterer -> score -> files

:func:`run` does what ``brainclust run`` does and returns a :class:`RunResult`;
:func:`predict` applies a finished run's saved model to new images.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path

import numpy as np

from . import __version__
from .cluster import METHODS, N_LEVELS, Clusterer
from .errors import InputError, ModelFileError, ParameterError
from .evaluate import score
from .features import PRECISIONS, FeatureExtractor
from .ingest import ImageRecord, ScanResult, scan
from .io import atomic_write_csv, atomic_write_json
from .reduce import PCAReducer

log = logging.getLogger(__name__)

MODEL_SUBDIR = "model"
BASE_COLUMNS = ["path", "name", "type", "size", "width", "height", "label", "cluster"]
LEVEL_COLUMNS = [f"level_{L}" for L in range(1, N_LEVELS + 1)]


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a run (recorded in ``manifest.json``). See ``brainclust run --help``."""

    backbone: str = "auto"
    weights: str | None = None
    precision: str = "auto"
    batch_size: int = 32
    workers: int | None = None
    clip_percentiles: tuple[float, float] | None = (0.5, 99.5)
    pca: int | float = 50
    method: str = "hierarchical"
    k: int = 4
    seed: int = 0
    labels_from_folders: bool = False
    cache_dir: str | None = None
    device: str = "cpu"
    progress: bool | None = None

    def validate(self) -> None:
        """Cheap checks that need no data, so bad settings fail before any work."""
        if self.method not in METHODS:
            raise ParameterError(f"--method: unknown method '{self.method}'; choose one of {', '.join(METHODS)}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ParameterError(f"--k: must be a positive integer, got {self.k!r}")
        if self.precision not in PRECISIONS:
            raise ParameterError(f"--precision: must be one of {', '.join(PRECISIONS)}, got '{self.precision}'")
        PCAReducer(self.pca)._check()

    def extractor(self) -> FeatureExtractor:
        return FeatureExtractor(backbone=self.backbone, weights=self.weights, precision=self.precision,
                                batch_size=self.batch_size, num_workers=self.workers,
                                clip_percentiles=self.clip_percentiles, cache_dir=self.cache_dir,
                                device=self.device, progress=self.progress)


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

    def rows(self) -> list[dict]:
        """One dict per image with the columns of ``assignments.csv``."""
        return _rows(self.records, self.labels, self.levels)


def _rows(records, labels, levels) -> list[dict]:
    rows = []
    for i, r in enumerate(records):
        row = {"path": r.path, "name": r.name, "type": r.type, "size": r.size, "width": r.width,
               "height": r.height, "label": r.label, "cluster": int(labels[i])}
        if levels is not None:
            row.update({c: int(levels[i, j]) for j, c in enumerate(LEVEL_COLUMNS)})
        rows.append(row)
    return rows


def versions() -> dict:
    out = {"brainclust": __version__, "python": platform.python_version()}
    for pkg in ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "pillow"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _extract(extractor: FeatureExtractor, scanned: ScanResult) -> tuple[list[ImageRecord], np.ndarray, list]:
    """Run the extractor; move images that fail to decode to the skipped list."""
    feats = extractor.transform(scanned.records)
    skipped = list(scanned.skipped)
    for i, reason in sorted(extractor.failed_.items()):
        skipped.append({"path": scanned.records[i].path, "reason": reason})
    ok = [i for i in range(len(scanned.records)) if i not in extractor.failed_]
    return [scanned.records[i] for i in ok], feats[ok], sorted(skipped, key=lambda s: s["path"])


def _scan_nonempty(data, labels_from_folders: bool) -> ScanResult:
    scanned = scan(data, labels_from_folders=labels_from_folders)
    if not scanned.records:
        raise InputError(f"input folder '{data}' contains no readable image "
                         f"({len(scanned.skipped)} file(s) skipped)")
    return scanned


def _backbone_info(ex: FeatureExtractor) -> dict:
    return {"name": ex.spec_.name, "requested": ex.backbone, "dim": ex.spec_.dim,
            "input_size": ex.spec_.input_size, "weights_path": ex.weights_.path,
            "weights_sha256": ex.weights_.sha256, "precision": ex.precision_, "device": ex.device_}


def run(data, out=None, config: RunConfig | None = None, **settings) -> RunResult:
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
    t = {}
    t0 = time.perf_counter()
    scanned = _scan_nonempty(data, cfg.labels_from_folders)
    if cfg.method != "dbscan" and cfg.k > len(scanned.records):
        raise ParameterError(f"--k: {cfg.k} clusters requested but '{data}' has only "
                             f"{len(scanned.records)} readable images")
    t["scan"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    extractor = cfg.extractor().fit()
    records, feats, skipped = _extract(extractor, scanned)
    t["extract"] = time.perf_counter() - t0
    if len(records) < 2:
        raise InputError(f"input folder '{data}' has {len(records)} decodable image(s); clustering needs 2")
    if cfg.method != "dbscan" and cfg.k > len(records):
        raise ParameterError(f"--k: {cfg.k} clusters requested but only {len(records)} images could be decoded")

    t0 = time.perf_counter()
    reducer = PCAReducer(cfg.pca, random_state=cfg.seed).fit(feats)
    emb = reducer.transform(feats)
    t["reduce"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    clusterer = Clusterer(method=cfg.method, n_clusters=cfg.k, random_state=cfg.seed).fit(emb)
    t["cluster"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    labels_true = [r.label for r in records] if cfg.labels_from_folders else None
    metrics = score(emb, clusterer.labels_, labels_true)
    t["evaluate"] = time.perf_counter() - t0

    manifest = {
        "kind": "run", "versions": versions(), "input": str(Path(data).resolve()),
        "settings": {**asdict(cfg), "preprocess": extractor.preprocess_.as_dict()},
        "backbone": _backbone_info(extractor),
        "pca": {"n_components": reducer.n_components_,
                "explained_variance": (float(reducer.explained_variance_ratio_.sum())
                                       if reducer.explained_variance_ratio_ is not None else None)},
        "clustering": {"method": cfg.method, "k": cfg.k, "n_clusters_found": clusterer.n_clusters_,
                       "dbscan_eps": clusterer.eps_},
        "cache": {"dir": str(extractor.cache_dir) if extractor.cache_dir is not False else None,
                  "hits": extractor.cache_hits_, "misses": extractor.cache_misses_},
        "n_files_scanned": len(scanned.records) + len(scanned.skipped),
        "n_images": len(records), "skipped": skipped, "timings_s": t,
    }
    result = RunResult(cfg, records, skipped, feats, emb, clusterer.labels_, clusterer.levels_, metrics,
                       manifest, extractor, reducer, clusterer, timings=t)
    if out is not None:
        write_outputs(result, out)
    return result


def write_outputs(result: RunResult, out) -> Path:
    """Write model, ``assignments.csv``, ``metrics.json`` and, last, ``manifest.json``."""
    out = Path(out)
    t0 = time.perf_counter()
    model = out / MODEL_SUBDIR
    result.reducer.save(model / "pca.npz")
    result.clusterer.save(model / "cluster.npz")
    atomic_write_json(model / "config.json", {"brainclust": __version__,
                                              "settings": result.manifest["settings"],
                                              "backbone": result.manifest["backbone"]})
    header = BASE_COLUMNS + (LEVEL_COLUMNS if result.levels is not None else [])
    atomic_write_csv(out / "assignments.csv", header, result.rows())
    atomic_write_json(out / "metrics.json", result.metrics)
    result.timings["write"] = time.perf_counter() - t0
    atomic_write_json(out / "manifest.json", result.manifest)
    result.out_dir = out
    return out


def load_model(model_dir) -> tuple[dict, PCAReducer, Clusterer]:
    """Read a finished run's ``model/`` folder (``model_dir`` is the run's ``--out``)."""
    model = Path(model_dir) / MODEL_SUBDIR
    cfg_path = model / "config.json"
    if not cfg_path.is_file():
        raise ModelFileError(f"'{model_dir}' is not a finished brainclust run: {cfg_path} is missing")
    try:
        info = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"'{cfg_path}' is damaged ({exc})") from None
    return info, PCAReducer.load(model / "pca.npz"), Clusterer.load(model / "cluster.npz")


def predict(model_dir, data, out=None, labels_from_folders: bool = False, cache_dir=None,
            batch_size: int | None = None, workers: int | None = None, progress: bool | None = None) -> RunResult:
    """Assign the images under ``data`` to the clusters of the run saved in ``model_dir``.

    The same backbone, weights (checked by SHA-256), precision and
    pre-processing are used, then the saved PCA and cluster model.
    """
    info, reducer, clusterer = load_model(model_dir)
    s, bb = info["settings"], info["backbone"]
    weights = bb["weights_path"] if bb["weights_sha256"] != "random" else "random"
    cfg = RunConfig(backbone=bb["name"], weights=weights, precision=bb["precision"],
                    batch_size=batch_size or s["batch_size"], workers=workers,
                    clip_percentiles=tuple(s["clip_percentiles"]) if s["clip_percentiles"] else None,
                    pca=s["pca"], method=s["method"], k=s["k"], seed=s["seed"],
                    labels_from_folders=labels_from_folders, cache_dir=cache_dir, device=bb["device"],
                    progress=progress)
    t = {}
    t0 = time.perf_counter()
    scanned = _scan_nonempty(data, labels_from_folders)
    extractor = cfg.extractor().fit()
    if extractor.weights_.sha256 != bb["weights_sha256"]:
        raise ModelFileError(f"weights '{weights}' have changed since the model was saved "
                             f"(SHA-256 {extractor.weights_.sha256[:12]} != {bb['weights_sha256'][:12]})")
    records, feats, skipped = _extract(extractor, scanned)
    t["extract"] = time.perf_counter() - t0
    if not records:
        raise InputError(f"input folder '{data}' has no decodable image")
    t0 = time.perf_counter()
    emb = reducer.transform(feats)
    labels = clusterer.predict(emb)
    levels = clusterer.predict_levels(emb)
    t["assign"] = time.perf_counter() - t0
    metrics = score(emb, labels, [r.label for r in records] if labels_from_folders else None)
    manifest = {"kind": "predict", "versions": versions(), "input": str(Path(data).resolve()),
                "model_dir": str(Path(model_dir).resolve()), "settings": s, "backbone": bb,
                "cache": {"hits": extractor.cache_hits_, "misses": extractor.cache_misses_},
                "n_files_scanned": len(scanned.records) + len(scanned.skipped),
                "n_images": len(records), "skipped": skipped, "timings_s": t}
    result = RunResult(cfg, records, skipped, feats, emb, labels, levels, metrics, manifest,
                       extractor, reducer, clusterer, timings=t)
    if out is not None:
        out = Path(out)
        header = BASE_COLUMNS + (LEVEL_COLUMNS if levels is not None else [])
        atomic_write_csv(out / "assignments.csv", header, result.rows())
        atomic_write_json(out / "metrics.json", metrics)
        atomic_write_json(out / "manifest.json", manifest)
        result.out_dir = out
    return result
