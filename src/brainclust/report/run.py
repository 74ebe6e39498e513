"""A finished run read back for the report: :func:`load_outputs` and :class:`RunOutputs`.

Only the written outputs are read (the files of :class:`~brainclust.io.outputs.RunFolder`), as
untrusted input: ``assignments.csv`` and ``manifest.json`` through the one checking reader
(:func:`brainclust.io.runfolder.read_run`), ``metrics.json`` and ``model/cluster.npz``, the latter
through the one reader of saved clusterings (:func:`brainclust.cluster.methods.load_clusterer`:
``X_fit`` = the embedding the clustering used, ``labels``, ``levels`` and, for hierarchical
clustering, the scipy linkage ``tree`` and the flat cluster of each of its leaves).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainclust.cluster.hierarchical import tree_leaf_labels
from brainclust.cluster.methods import load_clusterer
from brainclust.errors import ModelFileError
from brainclust.io.outputs import FLAGS_COLUMN, RunFolder, read_json
from brainclust.io.runfolder import read_run
from brainclust.terminal import clipped

#: Cluster id of the images DBSCAN leaves unclustered.
NOISE = -1


def is_set_aside(cluster, flags, exclude) -> bool:
    """Whether a row was left out of the clustering by ``--exclude FLAGS`` (``exclude``, the manifest's
    ``settings.exclude``): cluster -1 with one of those flags. Other -1 rows are DBSCAN's or ``--outliers``'."""
    return str(cluster).strip() == str(NOISE) and bool(set(exclude or ()) & set(str(flags or "").split(";")))


def excluded_flags(manifest: dict) -> list:
    """The flags of the run's ``--exclude`` (the manifest's ``settings.exclude``; ``[]`` when none or malformed)."""
    exclude = (manifest.get("settings") or {}).get("exclude")
    return exclude if isinstance(exclude, list) else []


def within_column(manifest: dict) -> str | None:
    """The run's ``--within`` column (the manifest's ``settings.within``; ``None`` when none or malformed)."""
    within = (manifest.get("settings") or {}).get("within")
    return within if isinstance(within, str) and within else None


def cluster_name(cid: int) -> str:
    """A cluster id as shown in the report: its number, or ``noise``."""
    return "noise" if cid == NOISE else str(cid)


def relpath(folder: RunFolder, path: Path) -> str:
    """``path`` relative to the run folder, with ``/`` (as recorded in the manifest)."""
    return Path(path).relative_to(folder.root).as_posix()


@dataclass
class RunOutputs:
    """A finished run as read back from its ``--out`` folder.

    ``rows`` follow ``assignments.csv``; ``X`` row ``i`` is image ``rows[i]``.
    """

    out_dir: Path
    rows: list[dict]
    metrics: dict
    manifest: dict
    X: np.ndarray
    clusters: np.ndarray
    levels: np.ndarray | None
    tree: np.ndarray | None
    method: str
    k: int
    seed: int
    input_root: Path | None
    #: the flat cluster of each leaf of ``tree`` (images, the inliers, or micro-clusters)
    leaf_clusters: np.ndarray | None = None
    #: the SHA-256 recorded for each row's file (:func:`brainclust.io.runfolder.recorded_hashes`)
    hashes: np.ndarray | None = None

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.out_dir)

    @functools.cached_property
    def set_aside(self) -> np.ndarray:
        """Rows left out of the clustering by ``--exclude`` (:func:`is_set_aside`); computed once."""
        exclude = excluded_flags(self.manifest)
        return np.array([is_set_aside(c, r.get(FLAGS_COLUMN), exclude) for c, r in zip(self.clusters.tolist(),
                                                                                      self.rows)], bool)

    @property
    def unit(self) -> str:
        """What a row is: the manifest's ``units.unit`` (``slice``, an image, unless the run clustered units)."""
        return str((self.manifest.get("units") or {}).get("unit", "slice"))

    @property
    def names(self) -> list[str]:
        return [r["path"] for r in self.rows]

    @property
    def stratum_of(self) -> dict[int, str]:
        """A ``--within`` run's stratum of each cluster id (the ``stratum`` column of ``assignments.csv``: every
        cluster lies in one stratum), else ``{}``."""
        if not (self.manifest.get("settings") or {}).get("within"):
            return {}
        return {c: str(r["stratum"]) for c, r in zip(self.clusters.tolist(), self.rows)
                if c != NOISE and r.get("stratum") not in (None, "")}

    @property
    def labels_true(self) -> list[str] | None:
        """Labels per image, or ``None`` when the run had no labels ("" = unlabelled image)."""
        has = bool(self.manifest.get("settings", {}).get("labels_from_folders")) or "ari" in self.metrics
        return [r.get("label", "") or "" for r in self.rows] if has else None


def _read_cluster_model(folder: RunFolder):
    """``X_fit``, ``labels``, ``levels``, ``tree``, ``params`` and the tree's leaf clusters of ``model/cluster.npz``."""
    within = folder.model / "within.npz"
    if not folder.cluster.is_file() and within.is_file():  # --within: one clustering per stratum
        return within_model(within)
    if not folder.cluster.is_file():
        raise ModelFileError(f"'{folder.root}' has no {relpath(folder, folder.cluster)}; 'brainclust report' "
                             "needs the --out folder of a 'brainclust run' ('brainclust view' shows a predict "
                             "folder too)")
    model = load_clusterer(folder.cluster)
    labels = np.asarray(model.labels_, dtype=np.int64)
    leaves = tree_leaf_labels(labels, model.micro_of_) if model.tree_ is not None else None
    return (np.asarray(model.X_fit_, dtype=np.float64), labels, model.levels_, model.tree_,
            {"method": model.method, **model.get_params()}, leaves)


def within_model(path):
    """What :func:`_read_cluster_model` gives, from a ``--within`` run's ``model/within.npz`` (no single tree)."""
    from brainclust.io.atomic import read_npz

    d = read_npz(path, "within model")
    try:
        X, labels = np.asarray(d["X_fit"], dtype=np.float64), np.asarray(d["labels"], dtype=np.int64)
        levels = np.asarray(d["levels"], dtype=np.int64) if "levels" in d else None
        method = str(d["method"])
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelFileError(f"within model '{path}' is damaged ({exc})") from None
    if X.ndim != 2 or labels.shape != (len(X),) or (levels is not None and len(levels) != len(X)):
        raise ModelFileError(f"within model '{path}': fields 'X_fit', 'labels', 'levels' do not fit together")
    return X, labels, levels, None, {"method": method}, None


def _check_same_run(folder: RunFolder, rows: list[dict], X: np.ndarray, labels: np.ndarray) -> None:
    """``assignments.csv`` and ``model/cluster.npz`` must list the same images in the same clusters."""
    try:
        csv_clusters = np.array([int(r["cluster"]) for r in rows], dtype=np.int64)
    except (KeyError, ValueError) as exc:
        raise ModelFileError(f"'{folder.assignments}' has a bad 'cluster' column ({exc})") from None
    if len(rows) != len(X) or not np.array_equal(csv_clusters, labels):
        what = f"({len(rows)} rows) does not match" if len(rows) != len(X) else "has other clusters than"
        raise ModelFileError(f"'{folder.assignments}' {what} {relpath(folder, folder.cluster)} ({len(X)} images): "
                             "the outputs were edited or come from different runs")


def int_or_zero(value) -> int:
    """An integer field of a run's JSON read as untrusted: itself, or 0 when it is not an integer."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def run_seed(manifest: dict, path) -> int:
    """The run's ``--seed`` (``settings.seed``), which the map's t-SNE takes: 0 when it is no integer (an older or
    edited record); ModelFileError naming ``path`` for an integer no run takes, outside [0, 2**32 - 1] (until
    2026-12-07 scikit-learn's TSNE refused it: internal error)."""
    settings = manifest.get("settings") if isinstance(manifest.get("settings"), dict) else {}
    seed = int_or_zero(settings.get("seed"))
    if not 0 <= seed < 2**32:
        raise ModelFileError(f"'{path}' is damaged: settings.seed {clipped(str(seed), 40)} is not a seed (an integer "
                             "from 0 to 2**32 - 1)")
    return seed


_OBJ, _NUM = (dict, type(None)), (int, float, type(None))
#: Fields of ``manifest.json`` and ``metrics.json`` the report and ``view`` read, and their JSON types.
MANIFEST_FIELDS = {**{k: (dict,) for k in ("settings", "clustering", "backbone", "timings_s", "versions", "cache")},
                   **{k: _OBJ for k in ("pca", "ssl", "auto", "outliers", "report", "scan", "units", "checks",
                                        "steer")},
                   "skipped": (list,), "n_files_scanned": (int,), "kind": (str,)}
METRICS_FIELDS = {"k_selection": _OBJ, "n_labelled": _NUM,
                  **{k: _NUM for k in ("silhouette", "ari", "nmi", "fmi", "acc")}}


def check_fields(path, info: dict, types: dict) -> None:
    """The fields of a run's JSON file that the report reads must have their JSON types (ModelFileError)."""
    for name, allowed in types.items():
        v = info.get(name)
        if name in info and (isinstance(v, bool) or not isinstance(v, allowed)):
            raise ModelFileError(f"'{path}' is damaged: field '{name}' has the wrong type ({type(v).__name__})")
    bad_skip = [s for s in info.get("skipped") or () if not isinstance(s, dict)]
    bad_time = [t for t in (info.get("timings_s") or {}).values()
                if isinstance(t, bool) or not isinstance(t, (int, float, type(None)))]
    ksel = info.get("k_selection")
    if bad_skip or bad_time or (ksel and not (isinstance(ksel.get("ks"), list) and isinstance(ksel.get("indices"), dict)
                                              and isinstance(ksel.get("chosen_k"), int))):
        what = "skipped" if bad_skip else "timings_s" if bad_time else "k_selection"
        raise ModelFileError(f"'{path}' is damaged: field '{what}' has the wrong form")


def load_outputs(out_dir) -> RunOutputs:
    """Read ``assignments.csv``, ``metrics.json``, ``manifest.json`` and ``model/cluster.npz``.

    Raises
    ------
    ModelFileError
        If a file is missing or damaged, or the files disagree with each other.
    """
    tables = read_run(out_dir, need_input=False)
    folder, manifest, rows = tables.folder, tables.manifest, tables.rows
    metrics = read_json(folder.metrics, folder.root)
    if not isinstance(metrics, dict):
        raise ModelFileError(f"'{folder.metrics}' is damaged: expected a JSON object, got {type(metrics).__name__}")
    check_fields(folder.manifest, manifest, MANIFEST_FIELDS)
    check_fields(folder.metrics, metrics, METRICS_FIELDS)
    X, labels, levels, tree, params, leaves = _read_cluster_model(folder)
    _check_same_run(folder, rows, X, labels)
    settings, clustering = manifest.get("settings") or {}, manifest.get("clustering") or {}
    # the k the run used ("auto" in the settings is resolved in manifest["clustering"], except with --within, where
    # each stratum chose its own: the page names them, runtext.k_text; RunOutputs.k is then the clusters found)
    try:
        k = int(clustering.get("k", params.get("n_clusters", settings.get("k"))))
    except (TypeError, ValueError):
        k = len(set(labels.tolist()) - {NOISE})
    return RunOutputs(out_dir=folder.root, rows=rows, metrics=metrics, manifest=manifest, X=X, clusters=labels,
                      levels=levels, tree=tree,
                      method=str(clustering.get("method", params.get("method", settings.get("method", "")))),
                      k=k,
                      seed=run_seed(manifest, folder.manifest), input_root=tables.input_root,
                      leaf_clusters=leaves, hashes=tables.hashes)
