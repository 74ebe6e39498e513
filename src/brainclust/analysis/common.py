"""What the studies share: labelled data sets, the one PCA -> cluster -> score cell, and tables.

:func:`load_dataset` extracts a labelled folder once through the feature cache;
:func:`cluster_and_score` is the single cell that the benchmark, the
sensitivity analysis and the ablation all run; :func:`markdown_table` and
:func:`mean_std_text` are their one table builder and cell format.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainclust.cluster import base
from brainclust.cluster.kselect import check_k_fits, resolve_k
from brainclust.cluster.methods import BaseClusterer, make_clusterer
from brainclust.cluster.scores import score
from brainclust.core.cellinfo import cells_at_debug
from brainclust.errors import InputError, ParameterError
from brainclust.features.extractor import FeatureExtractor
from brainclust.io.csvcell import formula_safe
from brainclust.io.outputs import write_table
from brainclust.pipeline import scan_nonempty
from brainclust.terminal import count_text

log = logging.getLogger(__name__)

SCORES = ("silhouette", "ari", "nmi", "fmi", "acc")
SCORE_LABELS = {"silhouette": "Silhouette (cosine)", "ari": "ARI", "nmi": "NMI", "fmi": "FMI", "acc": "ACC"}


@dataclass
class Dataset:
    """Features and labels of one data set, extracted once."""

    name: str
    path: str
    features: np.ndarray
    labels: list[str]
    records: list = field(repr=False)
    extractor: FeatureExtractor = field(repr=False)
    info: dict = field(default_factory=dict)

    @property
    def n_labels(self) -> int:
        return len({y for y in self.labels if y})


def load_dataset(path, config, name: str | None = None, check: Callable[[list], None] | None = None) -> Dataset:
    """Scan ``path`` (labels from sub-folders) and extract its features through the cache.

    Parameters
    ----------
    path : path-like
        Data folder.
    config : RunConfig
        Extraction settings (backbone, weights, precision, clip, cache...).
    name : str or None
        Column name in the tables (default: the folder name).
    check : callable or None
        ``check(records)`` (raising a one-line error) on the records scanned, before the extraction, and again
        on those decoded (e.g. :func:`check_study_k`).
    """
    t0 = time.perf_counter()
    scanned = scan_nonempty(path, True, config.slices, config.volume_index)
    if check is not None:
        check(scanned.records)
    extractor = config.extractor()
    got = extractor.fit_extract(scanned.records)
    records, feats, skipped = got.split(scanned.records)
    if check is not None and len(records) < len(scanned.records):
        check(records)
    labels = [r.label or "" for r in records]
    if len(records) < 3:
        raise InputError(f"data set '{path}': {count_text(len(records), 'decodable image')}; the analysis needs at "
                         "least 3")
    ds = Dataset(name or Path(path).resolve().name, str(Path(path).resolve()), feats, labels, records, extractor)
    if ds.n_labels < 2:
        raise InputError(f"data set '{path}': the analysis needs labels from at least 2 sub-folders, "
                         f"found {ds.n_labels}")
    ds.info = {"path": ds.path, "n_images": len(records), "n_skipped": len(skipped), "n_labels": ds.n_labels,
               "backbone": extractor.describe(), "cache_hits": got.cache_hits,
               "cache_misses": got.cache_misses, "extract_s": time.perf_counter() - t0}
    return ds


def cluster_and_score(emb: np.ndarray, labels: Sequence[str] | None, method: str, k, seed: int,
                      linkage: str = "average", metric: str = "cosine") -> tuple[BaseClusterer, dict]:
    """The one cell of every study: cluster the (already reduced) ``emb`` and score it.

    ``k`` may be ``"auto"`` (resolved as in :func:`brainclust.cluster.kselect.resolve_k`);
    it is capped at the number of rows. Returns the fitted clusterer and the scores
    of :func:`brainclust.cluster.scores.score`, with ``k`` (the k used), ``largest_cluster``
    (its size, noise not counted) and ``wall_s`` added.
    """
    t0 = time.perf_counter()
    k_used, _ = resolve_k(k, method, emb, seed)
    with warnings.catch_warnings():  # scikit-learn's "Number of distinct clusters ... found smaller than n_clusters"
        # (K-Means, GMM's initialisation), one per cell: the study warns once instead (warn_fewer_found)
        warnings.filterwarnings("ignore", "Number of distinct clusters", Warning)
        cl = make_clusterer(method, n_clusters=max(1, min(int(k_used), len(emb))), random_state=seed,
                            linkage=linkage, metric=metric).fit(emb)
    m = score(emb, cl.labels_, labels)
    found = cl.labels_[cl.labels_ >= 0]
    return cl, {**m, "k": int(k_used), "largest_cluster": int(np.bincount(found).max()) if len(found) else 0,
                "wall_s": time.perf_counter() - t0}


@contextlib.contextmanager
def cells_said_once():
    """Around a study's cells: each fit's own warning of one cluster or none
    (:data:`~brainclust.cluster.base.ONE_CLUSTER`, e.g. ``dbscan found a single cluster ...``) or of one cluster
    holding nearly every image (:data:`~brainclust.cluster.base.ONE_BIG`) is dropped, as :func:`warn_fewer_found`
    says it once for the study, counted from the rows; each fit's info line (``dbscan: eps=...``, ``refinement
    round 1: ...``: :func:`~brainclust.core.cellinfo.cell_info`) goes to the debug log."""
    def keep(record: logging.LogRecord) -> bool:
        return record.msg not in (base.ONE_CLUSTER, base.ONE_BIG)

    base.log.addFilter(keep)
    try:
        with cells_at_debug():
            yield
    finally:
        base.log.removeFilter(keep)


def warn_fewer_found(rows: Sequence[dict], study: str, table: str) -> None:
    """One warning when cells of a study found fewer clusters than their ``k`` (duplicate images, or a k close
    to the number of images); the rows keep both (``table``'s ``k`` and ``n_clusters_found``). One more when
    cells without a k (DBSCAN's) found a single cluster or none (every image noise), and one when cells put more
    than :data:`~brainclust.cluster.base.BIG_SHARE` of the images in one cluster (``largest_cluster``)."""
    def where(r: dict) -> str:
        keys = ("dataset", "config", "method", "setting", "value", "seed")
        return ", ".join(f"{key} {r[key]}" for key in keys if key in r)

    short = [r for r in rows if str(r.get("k", "")).isdigit() and int(r["n_clusters_found"]) < int(r["k"])]
    if short:
        r = short[0]
        log.warning("%s: %d of %d runs found fewer clusters than their k (first: %d at k = %s; %s): duplicate "
                    "images, or k close to the number of images; their scores compare fewer groups (%s: k, "
                    "n_clusters_found)", study, len(short), len(rows), int(r["n_clusters_found"]), r["k"], where(r),
                    table)
    one = [r for r in rows if not str(r.get("k", "")).isdigit() and int(r["n_clusters_found"]) <= 1]
    if one:
        found = {int(r["n_clusters_found"]) for r in one}
        what = {frozenset({1}): "a single cluster", frozenset({0}): "no cluster (every image noise)"}.get(
            frozenset(found), "a single cluster or none")
        log.warning("%s: %d of %d runs found %s (first: %s): the features do not separate there (%s: "
                    "n_clusters_found, n_noise)", study, len(one), len(rows), what, where(one[0]), table)
    big = [r for r in rows if int(r["n_clusters_found"]) > 1
           and int(r.get("largest_cluster") or 0) > base.BIG_SHARE * int(r["n_images"])]
    if big:
        r = big[0]
        log.warning("%s: %d of %d runs put over %.0f%% of the images in one cluster (first: %s of %s; %s): the other "
                    "clusters are tiny (%s: largest_cluster, n_images)", study, len(big), len(rows),
                    100 * base.BIG_SHARE, r["largest_cluster"], r["n_images"], where(r), table)


def n_labels(records: Sequence) -> int:
    """The number of label folders among ``records`` (the default k of a study)."""
    return len({r.label for r in records if r.label})


def check_study_k(k, n: int, where: str, methods: Sequence[str], head: str = "--k",
                  advice: str = "choose a smaller --k") -> None:
    """One line (ParameterError) before the work when ``n`` images (``where`` says whose) cannot be clustered into
    ``k`` groups by each of ``methods`` so that a score means something: ``k`` at least ``n`` (every image a
    cluster of its own, or fewer images than clusters: the number found silently falls short), spectral
    clustering without k + 2 images, ``auto`` below what :class:`~brainclust.cluster.kselect.KSelector` needs.
    ``head`` starts the message (the option), ``advice`` ends it; ``dbscan`` has no k."""
    with_k = [m for m in methods if m != "dbscan"]
    if not with_k:
        return
    if k == "auto":
        for method in with_k:
            check_k_fits("auto", method, n, where)
        return
    if n <= k:
        raise ParameterError(f"{head}: {k} clusters requested but {where} has only {count_text(n, 'image')} to "
                             f"cluster (a score needs fewer clusters than images); {advice}")
    if "spectral" in with_k and n < k + 2:
        raise ParameterError(f"{head}: spectral clustering needs at least k + 2 = {k + 2} images for k = {k}, but "
                             f"{where} has {n}; {advice}")


def check_seeds(seeds: Sequence[int]) -> None:
    """``--seeds``: at least one, each an integer >= 0."""
    if not seeds or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in seeds):
        raise ParameterError(f"--seeds: need at least one seed >= 0, got {list(seeds)}")


# -- rows, CSV and tables ------------------------------------------------------
def to_float(v) -> float | None:
    """A CSV cell as a float; ``""`` and ``None`` are ``None``."""
    if v is None or v == "":
        return None
    return float(v)


def mean_std_text(vals: Sequence[float | None], digits: int = 3) -> str:
    """``"mean ± std"`` over the defined values (sample std), with a note when some are missing."""
    ok = np.asarray([v for v in vals if v is not None], dtype=float)
    if not len(ok):
        return "n/a"
    text = f"{ok.mean():.{digits}f} ± {(ok.std(ddof=1) if len(ok) > 1 else 0.0):.{digits}f}"
    if len(ok) < len(vals):
        text += f" ({len(ok)}/{len(vals)} seeds)"
    return text


def ordered(values: Iterable) -> list:
    """The distinct values in order of first appearance."""
    return list(dict.fromkeys(values))


def markdown_table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A Markdown table: ``header`` cells, then one line per row of cells."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


#: Rows as CSV with a fixed column order (``None`` -> empty cell): :func:`brainclust.io.outputs.write_table`.
write_rows_csv = write_table


def read_rows_csv(path) -> list[dict]:
    """The rows of a CSV written by :func:`write_rows_csv`, as strings."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def read_back(rows: Sequence[dict], columns: Sequence[str]) -> list[dict]:
    """The rows exactly as :func:`read_rows_csv` would return them after :func:`write_rows_csv`."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: ("" if r.get(c) is None else formula_safe(r.get(c))) for c in columns})  # as written
    buf.seek(0)
    return list(csv.DictReader(buf))
