"""Saving and loading a model folder (a run's ``model/``) through the one step protocol.

:func:`save_steps` asks each step for its files and manifest entry
(:meth:`~brainclust.core.params.Step.save_step`) and writes the versioned manifest
(:func:`brainclust.io.modelconfig.write_model_manifest`). :func:`load_steps` reads it back like
untrusted input: every class must be one of :data:`STEP_CLASSES`, every file and field is checked
by the step that reads it, and the steps must fit together (the clustering's width is the
reduction's output, the reduction's input is the backbone's dimension). A manifest without a
version (written before it listed its steps) gets its steps from its recorded settings
(:func:`legacy_entries`), so model folders of earlier versions still load.
"""

from __future__ import annotations

from pathlib import Path

from brainclust import __version__
from brainclust.checks.step import DataChecks
from brainclust.cluster.kselect import AutoK
from brainclust.cluster.manifold import UMAPManifold
from brainclust.cluster.methods import CLUSTERERS, load_clusterer
from brainclust.cluster.outliers import OutlierRule
from brainclust.cluster.reduce import PCAReducer
from brainclust.cluster.setaside import SetAside
from brainclust.core.params import entry_params
from brainclust.errors import ModelFileError, ParameterError
from brainclust.features.backbones import RANDOM_WEIGHTS
from brainclust.features.extractor import FeatureExtractor
from brainclust.features.fusion import FusedExtractor, is_fused
from brainclust.features.unitpool import UnitPool
from brainclust.io.modelconfig import check_model_files, read_model_manifest, write_model_manifest
from brainclust.io.outputs import MODEL_FILES, RunFolder, read_json
from brainclust.model.steering import RemoveStep, WithinStep
from brainclust.selfsup.stage import SelfSupervisedStep

#: Every class a model manifest may name (nothing else is ever built from a file).
STEP_CLASSES = {c.__name__: c for c in (FeatureExtractor, FusedExtractor, DataChecks, SelfSupervisedStep, UnitPool,
                                        RemoveStep, WithinStep, PCAReducer, UMAPManifold, OutlierRule, AutoK, SetAside,
                                        *CLUSTERERS.values())}
#: Extractor parameters a ``predict`` call may change: how features are computed, never what they are
#: (``device``: a model trained on a GPU is applied on a CPU-only machine, and the other way round).
RUNTIME_PARAMS = ("batch_size", "num_workers", "cache_dir", "progress", "device")


def save_steps(steps: list, folder, settings: dict) -> None:
    """Every fitted step's files, then ``config.json`` (settings, the fitted backbone, the steps)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, step in steps:
        entry = step.save_step(folder)
        entry.pop("state", None)  # the extractor's state is the manifest's ``backbone``
        entries.append({"name": name, **entry})
    write_model_manifest(folder, settings, dict(steps)["extractor"].describe(), entries, __version__)


def default_settings(steps: list) -> dict:
    """The settings a model saved without a run records: what its steps say (the fields every manifest has)."""
    named = dict(steps)
    ex, reducer, clusterer = named["extractor"], named.get("reducer"), named["clusterer"]
    inner = clusterer
    while "n_clusters" not in inner.get_params(deep=False) and "estimator" in inner.get_params(deep=False):
        inner = inner.get_params(deep=False)["estimator"]
    return {"batch_size": ex.batch_size, "clip_percentiles": ex.clip_percentiles,
            "intensity_window": ex.intensity_window, "pca": reducer.n_components if reducer is not None else 0,
            "method": clusterer.method, "k": "auto" if isinstance(clusterer, AutoK) else
            int(inner.get_params().get("n_clusters", 4)), "seed": int(inner.record_params().get("random_state") or 0)}


def legacy_entries(info: dict) -> list[dict]:
    """The step entries of a version-1 manifest (``settings`` and ``backbone`` of a run before version 2)."""
    s, bb = info["settings"], info["backbone"]
    ex = {"backbone": bb["name"], "weights": RANDOM_WEIGHTS if bb["weights_sha256"] == RANDOM_WEIGHTS
          else bb.get("weights_path"), "precision": bb["precision"], "batch_size": s["batch_size"],
          "clip_percentiles": s["clip_percentiles"], "intensity_window": s.get("intensity_window"),
          "device": bb["device"]}
    if is_fused(bb["name"]):
        ex = {**ex, "weights": RANDOM_WEIGHTS if bb["weights_sha256"] == RANDOM_WEIGHTS else None,
              "block_scales": bb.get("block_scales"), "norm": bb.get("fusion_norm", "image")}
    entries = [{"name": "extractor", "class": "FusedExtractor" if is_fused(bb["name"]) else "FeatureExtractor",
                "params": ex}]
    if s.get("ssl"):
        entries.append({"name": "ssl", "class": "SelfSupervisedStep",
                        "params": {"components": s["ssl"], "mode": s.get("ssl_mode", "head"),
                                   "epochs": s.get("ssl_epochs"), "random_state": s["seed"]}})
    entries.append({"name": "reducer", "class": "PCAReducer", "params": {}})
    if s.get("reduce", "pca") != "pca":
        entries.append({"name": "manifold", "class": "UMAPManifold", "params": {}})
    clusterer = {"name": "clusterer", "class": "(cluster.npz)", "params": {}}
    if s.get("outliers", "off") == "auto":
        clusterer = {**clusterer, "class": "OutlierRule"}
    entries.append(clusterer)
    return entries


def load_clustering(folder: Path, entry: dict):
    """The clustering step: the method's estimator from ``cluster.npz``, inside its rules if any (a
    ``SetAside`` outermost: the estimator is then read from the rows not set aside)."""
    path = folder / MODEL_FILES["cluster"]
    if entry["class"] == "SetAside":
        est, whole = SetAside.read(path)
        inner = _rules_around(est, folder, entry.get("estimator") or {})
        return SetAside.restored(inner, whole["set_aside"], whole["X_fit"], whole["labels"], whole["levels"])
    return _rules_around(load_clusterer(path), folder, entry)


def _rules_around(est, folder: Path, entry: dict):
    if entry.get("class") == "OutlierRule":
        return OutlierRule.from_saved(est, **entry_params(OutlierRule, entry, drop=("estimator",)))
    if entry.get("class") == "AutoK":
        inner = entry.get("estimator") or {}
        if inner.get("class") == "OutlierRule":
            est = OutlierRule.from_saved(est, **entry_params(OutlierRule, inner, drop=("estimator",)))
        return AutoK.fitted(est, **entry_params(AutoK, entry, drop=("estimator",)))
    if entry.get("class") in STEP_CLASSES and entry["class"] != type(est).__name__:
        raise ModelFileError(f"cluster model '{folder / MODEL_FILES['cluster']}': field 'params.method' is "
                             f"'{est.method}' but {folder / MODEL_FILES['config']} names {entry['class']}")
    return est


def _load_entry(folder: Path, entry: dict, runtime: dict):
    cls_name = entry["class"]
    if entry["name"] == "clusterer":
        if cls_name == "WithinStep":  # --within: one clustering per stratum (model.steering)
            return WithinStep.load_step(folder, entry)
        return load_clustering(folder, entry)
    cls = STEP_CLASSES.get(cls_name)
    if cls is None:
        raise ModelFileError(f"model config '{folder / MODEL_FILES['config']}': step '{entry['name']}' names an "
                             f"unknown class '{cls_name}'")
    if cls in (FeatureExtractor, FusedExtractor):
        return None  # loaded last (see load_model)
    return cls.load_step(folder, entry)


def _check_fit_together(folder: RunFolder, info: dict, steps: dict) -> None:
    s, bb = info["settings"], info["backbone"]
    clusterer, reducer = steps["clusterer"], steps.get("reducer")
    if clusterer.method != s["method"]:
        raise ModelFileError(f"cluster model '{folder.cluster}': field 'params.method' is "
                             f"'{clusterer.method}' but {folder.model_config} says '{s['method']}'")
    if isinstance(clusterer, WithinStep):  # --within: no reducer; each stratum's own PCA reads the features
        dim = steps["units"].n_features_in_ if "units" in steps else bb["dim"]
        if "ssl" not in steps and (reducer is not None or clusterer.n_features_in_ != dim):
            raise ModelFileError(f"within model '{folder.model / 'within.npz'}': field 'centroids' has "
                                 f"{clusterer.n_features_in_} dimensions but {folder.model_config} says backbone.dim "
                                 f"= {dim} (and a --within model has no reducer step)")
        return
    if reducer is None:
        raise ModelFileError(f"model config '{folder.model_config}': field 'steps' has no 'reducer' step (a run "
                             "saves one, PCA off included)")
    width = (steps["manifold"].n_components if "manifold" in steps else reducer.n_components_)
    if width != clusterer.X_fit_.shape[1]:
        raise ModelFileError(f"cluster model '{folder.cluster}': field 'X_fit' has {clusterer.X_fit_.shape[1]} "
                             f"dimensions but the reduction ({folder.pca}) gives {width}")
    if "units" in steps and "ssl" not in steps and steps["units"].n_features_in_ != bb["dim"]:
        raise ModelFileError(f"model config '{folder.model_config}': step 'units' has n_features_in = "
                             f"{steps['units'].n_features_in_} but backbone.dim = {bb['dim']}")
    if "ssl" not in steps and reducer.n_features_in_ != bb["dim"]:
        raise ModelFileError(f"PCA file '{folder.pca}': field 'n_features_in' is {reducer.n_features_in_} but "
                             f"{folder.model_config} says backbone.dim = {bb['dim']}")


def _check_settings(folder: RunFolder, info: dict) -> None:
    """The recorded settings must be settings a run accepts (what the files were made with). The recorded
    device is checked for its form only: where features are computed now is ``predict``'s choice."""
    from brainclust.features.limits import check_device
    from brainclust.model.config import RunConfig

    s, bb = info["settings"], info["backbone"]
    try:
        check_device(bb["device"], available=False)
        RunConfig(pca=s["pca"], method=s["method"], k=s["k"], seed=s["seed"], batch_size=s["batch_size"],
                  clip_percentiles=tuple(s["clip_percentiles"]) if s["clip_percentiles"] else None,
                  intensity_window=tuple(s["intensity_window"]) if s.get("intensity_window") else None,
                  slices=s.get("slices", "axial:mid"), volume_index=s.get("volume_index", 0),
                  ssl=tuple(s.get("ssl") or ()), ssl_mode=s.get("ssl_mode", "head"),
                  ssl_epochs=s.get("ssl_epochs"), backbone=bb["name"], precision=bb["precision"],
                  device="cpu", unit=s.get("unit", "slice"), include=tuple(s.get("include") or ()),
                  exclude_files=tuple(s.get("exclude_files") or ()),
                  bids_filter=s.get("bids_filter"), bids=s.get("bids", "auto")).validate(strict=False)
    except ParameterError as exc:
        raise ModelFileError(f"model config '{folder.model_config}': {exc}") from None


def load_steps(model_dir, runtime: dict | None = None) -> tuple[list, dict]:
    """``(fitted steps, manifest)`` of the run folder ``model_dir`` (its ``model/``); see the module docstring.

    ``runtime``: extractor parameters of :data:`RUNTIME_PARAMS` for this use (``None``: the default); the
    values saved in the folder are never used; ``weights``: where this machine keeps the weights file the model
    names (``predict --weights``; checked by SHA-256, so it never changes the features:
    :mod:`brainclust.features.weightsfile`).
    """
    folder = RunFolder(model_dir)
    info, version = read_model_manifest(model_dir)
    check_model_files(info, folder.model)
    _check_settings(folder, info)
    entries = info["steps"] if version >= 2 else legacy_entries(info)
    if entries[0].get("name") != "extractor" or entries[-1].get("name") != "clusterer":
        raise ModelFileError(f"model config '{folder.model_config}': field 'steps' must start with the extractor "
                             "and end with the clusterer")
    given = (runtime or {}).get("weights")
    runtime = {k: v for k, v in (runtime or {}).items() if k in RUNTIME_PARAMS and v is not None}
    steps = {e["name"]: _load_entry(folder.model, e, runtime) for e in entries}
    _check_fit_together(folder, info, steps)
    for step in steps.values():  # the model keeps no cache folder (modelconfig.portable): this machine's, for
        if "cache_dir" in getattr(step, "get_params", dict)():  # the checks and the planes of --remove/--within
            step.set_params(cache_dir=runtime.get("cache_dir"))
    if steps.get("checks") is not None:  # predict's checks decode as its extraction does
        steps["checks"].set_params(progress=runtime.get("progress"), workers=runtime.get("num_workers"))
    ex_entry = entries[0]
    cls = STEP_CLASSES.get(ex_entry["class"])
    if cls not in (FeatureExtractor, FusedExtractor):
        raise ModelFileError(f"model config '{folder.model_config}': the first step must be an extractor, "
                             f"got '{ex_entry['class']}'")
    # where to cache, how many processes, which device: this machine's (``runtime`` or the defaults), never
    # the model folder's, which may come from another machine or be crafted
    params = {k: v for k, v in entry_params(cls, ex_entry).items() if k not in RUNTIME_PARAMS}
    if params.get("backbone") != info["backbone"]["name"]:
        raise ModelFileError(f"model config '{folder.model_config}': field 'backbone.name' is "
                             f"'{info['backbone']['name']}' but the extractor step says '{params.get('backbone')}'")
    steps["extractor"] = cls.load_step(folder.model, {"params": params, "state": info["backbone"],
                                                      "source": f"model config '{folder.model_config}'",
                                                      "weights_given": given, "legacy": version < 3,
                                                      "weights_beside": run_weights_path(folder)}, runtime)
    return [(e["name"], steps[e["name"]]) for e in entries], info


def run_weights_path(folder: RunFolder) -> str | None:
    """The weights path the run folder's ``manifest.json`` names (the machine of the run; untrusted, used only
    with the model's SHA-256), or ``None``."""
    try:
        path = (read_json(folder.manifest).get("backbone") or {}).get("weights_path")
    except (ModelFileError, AttributeError):
        return None
    return path if isinstance(path, str) and "\x00" not in path else None
