"""The comparative analysis of the method's Tables 2-5: every clustering method on every data set.

Protocol (``brainclust benchmark``)
-----------------------------------
* Each data set is a folder whose first-level sub-folders are the labels; the
  labels are used **only for scoring**.
* Features are extracted **once per data set** with
  :class:`~brainclust.features.extractor.FeatureExtractor` (so they come from, and go
  to, the feature cache); nothing is re-extracted per method or seed.
* PCA (:class:`~brainclust.cluster.reduce.PCAReducer`, a full SVD, so it has no
  randomness) is fitted once per data set; then, for every seed, each method
  of :data:`METHOD_ORDER` runs with ``random_state=seed`` and is scored with
  :func:`brainclust.cluster.scores.score` on the PCA output.
* ``k`` is the number of label folders of the data set (the protocol of the
  method's tables, which compare partitions into the true number of groups),
  an explicit integer, or ``"auto"``: :class:`~brainclust.cluster.kselect.KSelector`
  chooses ``k`` per method and seed from the data alone.
* DBSCAN has no ``k``: ``eps`` comes from the k-distance knee
  (:func:`brainclust.cluster.methods.knee_eps`), noise is ``-1``. Its noise count is
  a column of ``results.csv`` and a table of ``tables.md``. Noise is never
  scored as a cluster: each noise image is its own singleton in ARI/NMI/FMI,
  a miss in ACC, and left out of the silhouette (see :mod:`brainclust.cluster.scores`).
* With ``ssl`` components (``--self-supervised``), every method also runs on
  the embedding learned by :mod:`brainclust.selfsup` (trained once per data
  set and seed, with that seed), reported as ``"<method> + SSL"``. The heads are
  trained for a given k: ``k="auto"`` is refused with them, as by ``brainclust run``
  (:func:`brainclust.selfsup.stage.check_k`).

Outputs: ``results.csv`` (long format, one row per variant x method x data
set x seed, all scores, clusters found, noise count, wall time),
``tables.md`` (one table per score, rows = methods, columns = data sets and
their **Mean**, cells = mean ± standard deviation over seeds) and
``benchmark.json`` (settings, extraction and total timings). ``tables.md`` is
built by :func:`build_tables` from the rows *as read back from*
``results.csv``, so the tables always recompute exactly from the CSV.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from brainclust.analysis.common import (SCORE_LABELS, SCORES, Dataset, cells_said_once, check_seeds, check_study_k,
                                        cluster_and_score, load_dataset, markdown_table, mean_std_text, n_labels,
                                        ordered, read_back, read_rows_csv, to_float, warn_fewer_found,
                                        write_rows_csv)
from brainclust.analysis.outfolder import BENCHMARK, prepare_study_out, publish_study
from brainclust.cluster.reduce import PCAReducer
from brainclust.errors import ParameterError
from brainclust.io.atomic import atomic_write_json, atomic_write_text
from brainclust.pipeline import RunConfig
from brainclust.progress import bar
from brainclust.selfsup import stage as ssl_stage

log = logging.getLogger(__name__)

#: Rows of the tables, in the order of the method's Tables 2-5.
METHOD_ORDER = ("kmeans", "hierarchical", "dbscan", "spectral", "gmm")
METHOD_LABELS = {"kmeans": "K-Means", "hierarchical": "Hierarchical (average, cosine)", "dbscan": "DBSCAN",
                 "spectral": "Spectral", "gmm": "GMM"}
CSV_COLUMNS = ["dataset", "method", "variant", "seed", "k", "k_source", "backbone", "pca", "n_images",
               "n_clusters_found", "n_noise", "largest_cluster", *SCORES, "dbscan_eps", "wall_s"]
VARIANTS = ("plain", "ssl")


def _check(methods: Sequence[str], seeds: Sequence[int], k, ssl: Sequence[str] = ()) -> None:
    bad = [m for m in methods if m not in METHOD_ORDER]
    if bad or not methods:
        raise ParameterError(f"--methods: choose from {', '.join(METHOD_ORDER)}, got {', '.join(methods) or 'none'}")
    check_seeds(seeds)
    if k not in (None, "auto") and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2):
        raise ParameterError(f"--k: must be an integer >= 2, 'auto' or unset (= number of label folders), got {k!r}")
    ssl_stage.check_k(ssl, k)  # as brainclust run: the heads are trained for a given k


def _ssl_embedding(ds: Dataset, config, components: tuple[str, ...], k: int, seed: int) -> np.ndarray:
    """The self-supervised stage of :mod:`brainclust.selfsup` on one data set and seed."""
    cfg = replace(config, ssl=tuple(components), k=int(k), seed=int(seed))
    return ssl_stage.fit(cfg, ds.extractor, ds.records, ds.features).embedding


def _one(method: str, emb: np.ndarray, labels: list[str], k, seed: int) -> dict:
    """Cluster and score one cell of the grid."""
    cl, m = cluster_and_score(emb, labels, method, k, seed)
    return {"k": "" if method == "dbscan" else m["k"], "n_clusters_found": m["n_clusters"],
            "n_noise": m["n_noise"], "largest_cluster": m["largest_cluster"], **{s: m.get(s) for s in SCORES},
            "dbscan_eps": cl.eps_ if cl.eps_ is not None else "", "wall_s": m["wall_s"]}


def run_grid(datasets: Sequence[Dataset], config, methods: Sequence[str] = METHOD_ORDER,
             seeds: Sequence[int] = (0, 1, 2, 3, 4), k=None, ssl: Sequence[str] = (),
             progress: bool | None = None) -> list[dict]:
    """Every variant x method x data set x seed; one dict per cell (the columns of ``results.csv``)."""
    _check(methods, seeds, k, ssl)
    variants = ("plain", "ssl") if ssl else ("plain",)
    pbar = bar(len(datasets) * len(variants) * len(seeds) * len(methods), "benchmark", progress, unit="run")
    # many small fits: one BLAS/OpenMP thread each (spinning threads on a busy machine made PCA
    # ~14x and K-Means ~100x slower here), and results that do not depend on the number of cores
    with threadpool_limits(limits=1), cells_said_once():
        rows = _grid(datasets, config, methods, seeds, k, ssl, variants, pbar)
    warn_fewer_found(rows, "benchmark", "results.csv")
    return rows


def _grid(datasets, config, methods, seeds, k, ssl, variants, pbar) -> list[dict]:
    rows: list[dict] = []
    plain: dict[str, np.ndarray] = {}
    try:
        for ds in datasets:
            k_ds = ds.n_labels if k is None else k
            source = "labels" if k is None else ("auto" if k == "auto" else "fixed")
            for seed in seeds:
                for variant in variants:
                    if variant == "plain":  # PCA is a full SVD: the same for every seed, fitted once
                        if ds.name not in plain:
                            plain[ds.name] = PCAReducer(config.pca, random_state=0).fit_transform(ds.features)
                        emb = plain[ds.name]
                    else:
                        X = _ssl_embedding(ds, config, tuple(ssl), k_ds, seed)
                        emb = PCAReducer(config.pca, random_state=seed).fit_transform(X)
                    for method in methods:
                        cell = _one(method, emb, ds.labels, k_ds, seed)
                        rows.append({"dataset": ds.name, "method": method, "variant": variant, "seed": int(seed),
                                     "k_source": source if method != "dbscan" else "data (eps knee)",
                                     "backbone": ds.info["backbone"]["name"], "pca": config.pca,
                                     "n_images": len(ds.labels), **cell})
                        pbar.update(1)
    finally:
        pbar.close()
    return rows


# -- results.csv <-> tables ---------------------------------------------------

def write_results_csv(path, rows: Sequence[dict]) -> Path:
    """``results.csv``: one row per cell; floats keep full precision, undefined scores are empty."""
    return write_rows_csv(path, CSV_COLUMNS, rows)


def read_results_csv(path) -> list[dict]:
    """The rows of ``results.csv`` as strings (what :func:`build_tables` takes)."""
    return read_rows_csv(path)


def _row_label(method: str, variant: str) -> str:
    base = METHOD_LABELS.get(method, method)
    return f"{base} + SSL" if variant == "ssl" else base


def metric_table(rows: Sequence[dict], metric: str, digits: int = 3) -> str:
    """One markdown table: rows = methods (and + SSL), columns = data sets + Mean; mean ± std over seeds.

    The **Mean** column averages the data sets seed by seed, then gives the
    mean ± std of those per-seed averages over the seeds where every data set
    has a value.
    """
    datasets = ordered(r["dataset"] for r in rows)
    keys = ordered((r["variant"], r["method"]) for r in rows)
    keys.sort(key=lambda vm: (VARIANTS.index(vm[0]) if vm[0] in VARIANTS else 9,
                              METHOD_ORDER.index(vm[1]) if vm[1] in METHOD_ORDER else 9))
    body = []
    for variant, method in keys:
        cells, per_seed = [], {}
        for ds in datasets:
            sel = [r for r in rows if r["variant"] == variant and r["method"] == method and r["dataset"] == ds]
            vals = [to_float(r[metric]) for r in sel]
            cells.append(mean_std_text(vals, digits) if sel else "")
            for r in sel:
                per_seed.setdefault(str(r["seed"]), {})[ds] = to_float(r[metric])
        full = [np.mean([d[ds] for ds in datasets]) for d in per_seed.values()
                if len(d) == len(datasets) and all(d[ds] is not None for ds in datasets)]
        mean = mean_std_text([float(v) for v in full], digits) if full else "n/a"
        body.append([_row_label(method, variant), *cells, mean])
    return markdown_table(["method", *datasets, "**Mean**"], body)


def build_tables(rows: Sequence[dict]) -> str:
    """The whole ``tables.md`` from ``results.csv`` rows (see :func:`read_results_csv`)."""
    datasets = ordered(r["dataset"] for r in rows)
    seeds = ordered(str(r["seed"]) for r in rows)
    backbones = ", ".join(ordered(r["backbone"] for r in rows))
    pca = ", ".join(ordered(str(r["pca"]) for r in rows))
    k_parts = []
    for ds in datasets:
        sel = [r for r in rows if r["dataset"] == ds and r["method"] != "dbscan"]
        ks = sorted({int(r["k"]) for r in sel if r["k"] != ""})
        src = ", ".join(ordered(r["k_source"] for r in sel))
        k_parts.append(f"{ds}: k = {'/'.join(map(str, ks)) or '-'} ({src or '-'})")
    k_text = "; ".join(k_parts)
    n_img = "; ".join(f"{ds}: {ordered(r['n_images'] for r in rows if r['dataset'] == ds)[0]} images"
                      for ds in datasets)
    out = ["# Comparison of clustering methods (the method's Tables 2-5)", "",
           f"Backbone {backbones}, PCA {pca}, seeds {', '.join(seeds)} "
           f"(cells: mean ± standard deviation over the seeds). {n_img}. {k_text}.", "",
           "k = number of label folders unless stated otherwise; labels are used only for scoring. "
           "DBSCAN chooses its own number of clusters (eps from the k-distance knee); each of its noise "
           "images counts as a singleton cluster in ARI/NMI/FMI and as a miss in ACC, and is left out of "
           "the silhouette. The **Mean** column averages the data sets seed by seed.", ""]
    for metric in SCORES:
        out += [f"## {SCORE_LABELS[metric]}", "", metric_table(rows, metric), ""]
    out += ["## Clusters found", "", metric_table(rows, "n_clusters_found", digits=1), ""]
    out += ["## Noise images (DBSCAN; 0 for the other methods)", "", metric_table(rows, "n_noise", digits=1), ""]
    return "\n".join(out)


@dataclass
class BenchmarkResult:
    """What :func:`benchmark` produced."""

    rows: list[dict]
    tables: str
    info: dict
    out_dir: Path | None = None


def benchmark(data: Sequence, out=None, config=None, methods: Sequence[str] = METHOD_ORDER,
              seeds: Sequence[int] = (0, 1, 2, 3, 4), k=None, ssl: Sequence[str] = (),
              names: Sequence[str] | None = None) -> BenchmarkResult:
    """Run :func:`run_grid` on the data folders and write ``results.csv``, ``tables.md``, ``benchmark.json``.

    Parameters
    ----------
    data : sequence of path-like
        Data folders, each with one sub-folder per label.
    out : path-like or None
        Output folder, published whole: new, empty or an earlier benchmark's, outside the data folders
        (:mod:`brainclust.analysis.outfolder`, checked before any work); nothing is written when ``None``.
    config : RunConfig or None
        Extraction and PCA settings (``method``, ``k`` and ``seed`` of the
        config are ignored: the grid sets them).
    methods, seeds, k, ssl
        See :func:`run_grid`. ``ssl`` is a sequence of self-supervised
        components (e.g. from ``parse_components("all")``); empty = no SSL rows.
    names : sequence of str or None
        Column names of the data sets (default: folder names, made unique).
    """
    config = config or RunConfig()
    _check(methods, seeds, k, ssl)
    replace(config, ssl=tuple(ssl)).validate()
    prepare_study_out(out, BENCHMARK, data, config.cache_dir)
    t0 = time.perf_counter()
    if names is None:
        names, seen = [], {}
        for d in data:
            base = Path(d).resolve().name
            seen[base] = seen.get(base, 0) + 1
            names.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    datasets = [load_dataset(d, config, n, check=_k_check(d, methods, k)) for d, n in zip(data, names)]
    t_extract = time.perf_counter() - t0
    t1 = time.perf_counter()
    rows = run_grid(datasets, config, methods, seeds, k, ssl, config.progress)
    t_grid = time.perf_counter() - t1
    info = {"settings": {**asdict(config), "methods": list(methods), "seeds": [int(s) for s in seeds],
                         "k": k if k is not None else "number of label folders", "ssl": list(ssl)},
            "datasets": {ds.name: ds.info for ds in datasets},
            "timings_s": {"extract": t_extract, "grid": t_grid, "total": time.perf_counter() - t0}}
    result = BenchmarkResult(rows, "", info)
    if out is None:
        result.tables = build_tables(read_back(rows, CSV_COLUMNS))
        return result

    def fill(folder: Path) -> None:
        write_results_csv(folder / "results.csv", rows)
        result.tables = build_tables(read_results_csv(folder / "results.csv"))
        atomic_write_text(folder / "tables.md", result.tables)
        atomic_write_json(folder / "benchmark.json", info)

    result.out_dir = publish_study(out, BENCHMARK, fill, data)
    return result


def _k_check(path, methods: Sequence[str], k):
    """``load_dataset``'s check of the data set ``path``: its images can be clustered into ``k`` (``None``: the
    number of its label folders) groups by each of ``methods`` (:func:`check_study_k`)."""
    def check(records) -> None:
        k_ds = n_labels(records) if k is None else k
        head = "--k" if k is not None else f"--k (unset: the {k_ds} label folders)"
        check_study_k(k_ds, len(records), f"'{path}'", methods, head=head)
    return check
