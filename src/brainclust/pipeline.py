"""The convenience layer: compose the stages into one run, write the outputs.

Data flows one way::

    scan -> FeatureExtractor (preprocess + backbone + cache) -> PCAReducer -> Clusterer -> score -> files

:func:`run` does what ``brainclust run`` does and returns a :class:`RunResult`;
:func:`predict` applies a finished run's saved model to new images.
"""

from __future__ import annotations

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
from brainclust.errors import InputError, ModelFileError, ParameterError
from brainclust.features.fusion import FusedExtractor, check_norm
from brainclust.io.formats import nifti
from brainclust.cluster.scores import score
from brainclust.features.extractor import FeatureExtractor
from brainclust.io.scan import ImageRecord, ScanResult, scan
from brainclust.io.atomic import atomic_write_json
from brainclust.io.outputs import RunFolder, assignment_rows, read_json, write_assignments
from brainclust.cluster.reduce import PCAReducer
from brainclust.selfsup import stage as ssl_stage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a run (recorded in ``manifest.json``). See ``brainclust run --help``."""

    backbone: str = "auto"
    weights: str | None = None
    precision: str = "auto"
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

    def validate(self) -> None:
        """Cheap checks that need no data, so bad settings fail before any work.

        Each rule is declared once, by the stage that owns it; this calls their checks.
        """
        nifti.parse_slices(self.slices)
        nifti.check_volume_index(self.volume_index)
        check_seed(self.seed)
        self.extractor().check_params()
        check_norm(self.fusion_norm)
        PCAReducer(self.pca).check_params()
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
                      device=self.device, progress=self.progress)
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
    ok = [i for i in range(len(scanned.records)) if i not in extractor.failed_]
    return [scanned.records[i] for i in ok], feats[ok], sorted(skipped, key=lambda s: s["path"])


def _check_out(out) -> None:
    """Fail before any work when ``--out`` cannot become a writable folder (nothing is created)."""
    if out is None:
        return
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise ParameterError(f"--out: '{out}' exists and is not a folder")
    anc = p
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise ParameterError(f"--out: '{out}' cannot be created: '{anc}' is not a folder")
    import os

    if not os.access(anc, os.W_OK | os.X_OK):
        raise ParameterError(f"--out: '{out}' is not writable (no write permission on '{anc}')")


def _make_out(out) -> Path:
    """Create the output folder; an OS refusal becomes a one-line ParameterError."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ParameterError(f"--out: cannot create folder '{out}': {exc.strerror or exc}") from None
    return out


def scan_nonempty(data, labels_from_folders: bool, slices: str = "axial:mid",
                   volume_index: int = 0) -> ScanResult:
    scanned = scan(data, labels_from_folders=labels_from_folders, slices=slices, volume_index=volume_index)
    if not scanned.records:
        raise InputError(f"input folder '{data}' contains no readable image "
                         f"({len(scanned.skipped)} file(s) skipped)")
    return scanned


def backbone_info(ex: FeatureExtractor) -> dict:
    return {"name": ex.spec_.name, "requested": ex.backbone, "dim": ex.spec_.dim,
            "input_size": ex.spec_.input_size, "weights_path": ex.weights_.path,
            "weights_sha256": ex.weights_.sha256, "precision": ex.precision_, "device": ex.device_,
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
    scanned = scan_nonempty(data, cfg.labels_from_folders, cfg.slices, cfg.volume_index)
    if cfg.method != "dbscan" and cfg.k != "auto" and cfg.k > len(scanned.records):
        raise ParameterError(f"--k: {cfg.k} clusters requested but '{data}' has only "
                             f"{len(scanned.records)} readable images")
    t["scan"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    extractor = cfg.extractor().fit()
    records, feats, skipped = extract_records(extractor, scanned)
    t["extract"] = time.perf_counter() - t0
    if len(records) < 2:
        raise InputError(f"input folder '{data}' has {len(records)} decodable image(s); clustering needs 2")
    if cfg.method != "dbscan" and cfg.k != "auto" and cfg.k > len(records):
        raise ParameterError(f"--k: {cfg.k} clusters requested but only {len(records)} images could be decoded")
    return scanned, extractor, records, feats, skipped


def _cache_info(extractor) -> dict:
    return {"dir": (None if extractor.cache_dir is False else str(extractor.cache_dir or default_cache_dir())),
            "hits": extractor.cache_hits_, "misses": extractor.cache_misses_}


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
    _check_out(out)
    t: dict = {}
    scanned, extractor, records, feats, skipped = _scan_and_extract(data, cfg, t)
    ssl = None
    reduce_in = feats
    if cfg.ssl:  # the self-supervised stage: features -> learned embedding, then PCA as usual
        t0 = time.perf_counter()
        cfg = replace(cfg, ssl=ssl_stage.validate(cfg.ssl, cfg.ssl_mode, cfg.ssl_epochs))  # "all" -> the four
        ssl = ssl_stage.fit(cfg, extractor, records, feats)
        reduce_in = ssl.embedding
        t["ssl"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    reducer = PCAReducer(cfg.pca, random_state=cfg.seed).fit(reduce_in)
    emb = reducer.transform(reduce_in)
    t["reduce"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    k, k_selection = resolve_k(cfg.k, cfg.method, emb, cfg.seed)
    clusterer = Clusterer(method=cfg.method, n_clusters=k, random_state=cfg.seed).fit(emb)
    t["cluster"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    labels_true = [r.label for r in records] if cfg.labels_from_folders else None
    metrics = score(emb, clusterer.labels_, labels_true)
    if k_selection is not None:
        metrics["k_selection"] = k_selection
    t["evaluate"] = time.perf_counter() - t0

    manifest = {
        "kind": "run", "versions": versions(), "input": str(Path(data).resolve()),
        "settings": {**asdict(cfg), "preprocess": extractor.preprocess_.as_dict()},
        "backbone": backbone_info(extractor),
        "pca": {"n_components": reducer.n_components_,
                "explained_variance": (float(reducer.explained_variance_ratio_.sum())
                                       if reducer.explained_variance_ratio_ is not None else None)},
        "clustering": {"method": cfg.method, "k": k, "k_requested": cfg.k, "n_clusters_found": clusterer.n_clusters_,
                       "dbscan_eps": clusterer.eps_},
        "cache": _cache_info(extractor),
        "n_files_scanned": scanned.n_files,
        "n_images": len(records), "skipped": skipped, "timings_s": t,
        **({"ssl": ssl.info} if ssl is not None else {}),
    }
    result = RunResult(cfg, records, skipped, feats, emb, clusterer.labels_, clusterer.levels_, metrics,
                       manifest, extractor, reducer, clusterer, timings=t,
                       ssl_model=ssl.model if ssl is not None else None)
    if out is not None:
        write_outputs(result, out)
    return result


def write_outputs(result: RunResult, out) -> Path:
    """Write model, ``assignments.csv``, ``metrics.json`` and, last, ``manifest.json``."""
    out = _make_out(out)
    folder = RunFolder(out)
    t0 = time.perf_counter()
    result.reducer.save(folder.pca)
    result.clusterer.save(folder.cluster)
    if result.ssl_model is not None:
        ssl_stage.save(result.ssl_model, folder.model)
    atomic_write_json(folder.model_config, {"brainclust": __version__,
                                            "settings": result.manifest["settings"],
                                            "backbone": result.manifest["backbone"]})
    write_assignments(folder.assignments, result.rows(), result.levels is not None)
    atomic_write_json(folder.metrics, result.metrics)
    result.timings["write"] = time.perf_counter() - t0
    atomic_write_json(folder.manifest, result.manifest)
    result.out_dir = out
    return out


def load_model(model_dir) -> tuple[dict, PCAReducer, Clusterer]:
    """Read a finished run's ``model/`` folder (``model_dir`` is the run's ``--out``)."""
    folder = RunFolder(model_dir)
    if not folder.model_config.is_file():
        raise ModelFileError(f"'{model_dir}' is not a finished brainclust run: {folder.model_config} is missing")
    info = read_json(folder.model_config)
    return info, PCAReducer.load(folder.pca), Clusterer.load(folder.cluster)


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
    weights = bb["weights_path"] if bb["weights_sha256"] != "random" else "random"
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
    _check_out(out)
    t = {}
    t0 = time.perf_counter()
    scanned = scan_nonempty(data, labels_from_folders, cfg.slices, cfg.volume_index)
    extractor = cfg.extractor()
    if bb.get("block_scales") is not None:  # fusion: the scales learned on the training images
        extractor.set_params(block_scales=bb["block_scales"], norm=bb.get("fusion_norm", "image"))
    extractor.fit()
    if extractor.weights_.sha256 != bb["weights_sha256"]:
        raise ModelFileError(f"weights '{weights}' have changed since the model was saved "
                             f"(SHA-256 {extractor.weights_.sha256[:12]} != {bb['weights_sha256'][:12]})")
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
        out = _make_out(out)
        folder = RunFolder(out)
        write_assignments(folder.assignments, result.rows(), levels is not None)
        atomic_write_json(folder.metrics, metrics)
        atomic_write_json(folder.manifest, manifest)
        result.out_dir = out
    return result
