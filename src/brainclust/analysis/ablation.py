"""The multi-seed ablation of the self-supervised strategy (``brainclust ablation``).

Configurations, each added to the frozen ``efficientnet_lite0`` features in
``head`` mode with the defaults of ``brainclust run --self-supervised``:

=========================  ===========================================
``no SSL``                 features -> PCA -> clustering
``contrastive``            NT-Xent head
``rotation``               rotation-pretext head
``contrastive+rotation``   both pretext losses
``+joint``                 ... plus SCAN, trained together
``+refine``                ... plus iterative refinement (all four)
=========================  ===========================================

For every data set, configuration and seed, the learned embedding goes through
the same PCA and is clustered with each method (``k`` = number of label
folders, as in the data's reference levels); ARI, NMI, FMI, ACC and the
silhouette are reported as mean +- std over the seeds. Labels are used for
scoring only: no setting here was chosen by a label-based score.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from brainclust.analysis import common
from brainclust.analysis.common import Dataset, check_seeds, cluster_and_score, load_dataset
from brainclust.analysis.outfolder import ABLATION, prepare_study_out, publish_study
from brainclust.cluster.methods import clusterer_class
from brainclust.cluster.reduce import PCAReducer
from brainclust.data.demo import make_demo_dataset
from brainclust.errors import InputError, ParameterError
from brainclust.io.atomic import atomic_write_json, atomic_write_text
from brainclust.io.publish import stage_copy
from brainclust.pipeline import RunConfig
from brainclust.selfsup import views as views_mod
from brainclust.selfsup.stage import head_estimator

log = logging.getLogger(__name__)

CONFIGS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("no SSL", ()),
    ("contrastive", ("contrastive",)),
    ("rotation", ("rotation",)),
    ("contrastive+rotation", ("contrastive", "rotation")),
    ("+joint", ("contrastive", "rotation", "joint")),
    ("+refine", ("contrastive", "rotation", "joint", "refine")),
)
METRICS = ("ari", "nmi", "fmi", "acc", "silhouette")


#: The data sets ``brainclust ablation`` knows (the two shared real sets, and the generated demo set).
DATASETS = ("brain_tumor_4class_dev", "brain_tumor_yes_no", "demo")


def default_datasets(data_root, demo_dir) -> dict[str, Path]:
    """The three sets of the ablation: the two shared real sets and the generated demo set."""
    root = Path(data_root)
    return {"brain_tumor_4class_dev": root / "brain_tumor_4class_dev",
            "brain_tumor_yes_no": root / "brain_tumor_yes_no",
            "demo": Path(make_demo_dataset(demo_dir, n_per_class=40, random_state=0))}


def ablation_datasets(data_root, wanted, demo_dir) -> dict[str, Path]:
    """``--datasets`` (names of :data:`DATASETS`) as ``{name: folder}``; the demo set is generated into ``demo_dir``."""
    bad = [d for d in wanted if d not in DATASETS]
    if bad or not wanted:
        raise ParameterError(f"--datasets: unknown data set '{bad[0] if bad else ''}'; choose from "
                             f"{', '.join(DATASETS)}")
    real = [d for d in wanted if d != "demo"]
    if data_root is None and real:  # the generated demo set needs no folder
        raise ParameterError(f"--data-root: needed for {', '.join(real)} (the folder that holds them)")
    if data_root is None:
        return {"demo": Path(make_demo_dataset(demo_dir, n_per_class=40, random_state=0))}
    sets = default_datasets(data_root, demo_dir) if "demo" in wanted else {n: Path(data_root) / n for n in wanted}
    sets = {n: p for n, p in sets.items() if n in wanted}
    for n, p in sets.items():
        if not p.is_dir():
            raise InputError(f"--data-root: data set '{n}' not found at '{p}'")
    return sets


def study_data(datasets: dict[str, Path], out) -> list[Path]:
    """The data folders ``--out`` must stay outside: all but the demo set generated into ``out``'s ``demo_data``."""
    demo = Path(out, ABLATION.demo).resolve()
    return [Path(p) for p in datasets.values() if Path(p).resolve() != demo]


def run_ablation(datasets: dict[str, Path], out, seeds=(0, 1, 2, 3, 4), methods=("hierarchical", "kmeans"),
                 configs=CONFIGS, pca: int | float = 50, epochs: int | None = None,
                 backbone: str = "efficientnet_lite0", cache_dir=None, workers: int | None = None,
                 progress: bool | None = None) -> dict:
    """Run the ablation; write ``ablation.json`` and ``ablation.md`` to ``out``; return the results.

    Parameters
    ----------
    datasets : dict of str to path
        Name -> labelled image folder (labels from the first sub-folder, or the one below a split folder).
    out : path-like
        Output folder, published whole: new, empty or an earlier ablation's (its ``demo_data/`` kept when the demo
        set was generated there), outside the data folders (:mod:`brainclust.analysis.outfolder`, checked before
        any work).
    seeds : sequence of int
        ``random_state`` of the head, the PCA and the clustering.
    methods : sequence of str
        Clustering methods of :class:`~brainclust.cluster.methods.Clusterer`.
    configs : sequence of (name, components)
    pca, epochs, backbone, cache_dir, workers, progress
        As for ``brainclust run``.
    """
    check_seeds(seeds)
    for method in methods:
        clusterer_class(method)
    if not datasets:
        raise ParameterError("--datasets: need at least one data set")
    t_start = time.perf_counter()
    config = RunConfig(backbone=backbone, cache_dir=cache_dir, workers=workers, progress=progress, pca=pca)
    config.validate()
    prepare_study_out(out, ABLATION, study_data(datasets, out), cache_dir)
    rows, runs = [], []
    for ds_name, path in datasets.items():
        ds = load_dataset(path, config, ds_name)
        names = sorted({v for _, comps in configs for v in views_mod.needed(comps, True)},
                       key=lambda v: (v != "identity", v))
        t0 = time.perf_counter()
        views = views_mod.extract(ds.extractor, ds.records, names, identity=ds.features)
        log.info("%s: %d images, k=%d, %d views ready in %.0f s", ds_name, len(ds.labels), ds.n_labels, len(views),
                 time.perf_counter() - t0)
        plain_reduced: list = []  # the full-SVD PCA of the plain features is seed-free: fitted once
        for cfg_name, comps in configs:
            recs = [_one_seed(ds, views, comps, int(seed), methods, pca, epochs, plain_reduced) for seed in seeds]
            for rec in recs:
                rec["config"] = cfg_name
                log.info("%s | %s | seed %d: %s", ds_name, cfg_name, rec["seed"],
                         ", ".join(f"{mm} NMI={rec[mm]['nmi']:.3f}" for mm in methods))
            runs += recs
            rows += [_summary_row(ds, cfg_name, method, recs) for method in methods]
    wall = time.perf_counter() - t_start
    result = {"seeds": [int(s) for s in seeds], "methods": list(methods), "configs": [c for c, _ in configs],
              "pca": pca, "epochs": epochs, "backbone": backbone, "wall_seconds": wall, "rows": rows, "runs": runs}
    _publish(out, result, datasets)
    return result


def _publish(out, result: dict, datasets: dict[str, Path]) -> None:
    """``ablation.json`` and ``ablation.md`` published as the folder ``out``, with the demo set generated into it
    (linked into the staged folder) when this ablation used it."""
    out = Path(out)
    demo = out / ABLATION.demo
    keep = demo.is_dir() and demo.resolve() in {Path(p).resolve() for p in datasets.values()}

    def fill(staging: Path) -> None:
        atomic_write_json(staging / "ablation.json", result)
        atomic_write_text(staging / "ablation.md", markdown_table(result))
        if keep:
            stage_copy(out, staging, skip=[n for n in os.listdir(out) if n != ABLATION.demo])

    publish_study(out, ABLATION, fill, study_data(datasets, out))


def _one_seed(ds: Dataset, views: dict, comps: tuple[str, ...], seed: int, methods, pca, epochs,
              plain_reduced: list) -> dict:
    """One configuration and seed: train the head (if any), reduce, cluster and score with each method."""
    t0 = time.perf_counter()
    rec: dict = {"dataset": ds.name, "seed": seed}
    if comps:
        est = head_estimator(comps, ds.n_labels, epochs, seed).fit(views)
        emb = est.embedding_
        rec["refine_rounds"] = [r.get("nmi_to_previous") for r in est.history_["refine"]]
        rec["refine_stop"] = est.history_["refine"][-1].get("stop") if est.history_["refine"] else None
        if "rotation_train_accuracy" in est.history_:
            rec["rotation_train_accuracy"] = est.history_["rotation_train_accuracy"]
        rec["final_loss"] = {key: c[-1] for key, c in est.history_["loss"].items() if c}
    else:
        emb = ds.features
    rec["ssl_seconds"] = time.perf_counter() - t0
    if comps or not plain_reduced:
        red = PCAReducer(pca, random_state=seed).fit_transform(emb)
        if not comps:
            plain_reduced.append(red)
    else:
        red = plain_reduced[0]
    for method in methods:
        _, m = cluster_and_score(red, ds.labels, method, ds.n_labels, seed)
        rec[method] = {key: m.get(key) for key in METRICS}
    return rec


def _summary_row(ds: Dataset, cfg_name: str, method: str, recs: list[dict]) -> dict:
    """Mean and std over the seeds of one data set, configuration and method."""
    row = {"dataset": ds.name, "n_images": len(ds.labels), "k": ds.n_labels, "method": method, "config": cfg_name,
           "ssl_seconds_mean": float(np.mean([r["ssl_seconds"] for r in recs]))}
    for key in METRICS:
        vals = np.array([r[method][key] if r[method][key] is not None else np.nan for r in recs], float)
        row[key] = [float(np.nanmean(vals)), float(np.nanstd(vals))]
    return row


def markdown_table(result: dict) -> str:
    """The ablation as a Markdown table (mean +- std over seeds) plus the NMI gain of the full strategy."""
    lines = [f"Seeds {', '.join(map(str, result['seeds']))}; backbone {result['backbone']} (frozen, `head` mode); "
             f"PCA {result['pca']}; k = number of label folders; mean ± std over seeds. "
             f"Wall time {result['wall_seconds'] / 60:.1f} min.", ""]
    body = [[f"{r['dataset']} (n={r['n_images']}, k={r['k']})", r["method"], r["config"],
             *(f"{r[key][0]:.3f} ± {r[key][1]:.3f}" for key in METRICS), f"{r['ssl_seconds_mean']:.1f}"]
            for r in result["rows"]]
    lines += [common.markdown_table(["data set", "method", "configuration", "ARI", "NMI", "FMI", "ACC",
                                     "silhouette", "SSL s/seed"], body)]
    lines += ["", "NMI of the full strategy (`+refine`) minus `no SSL`, against the aim of the issue (a gain of "
              "at least +0.05 that also exceeds the larger of the two stds):", ""]
    by = {(r["dataset"], r["method"], r["config"]): r for r in result["rows"]}
    for (ds, method, cfg), r in by.items():
        if cfg != "+refine" or (ds, method, "no SSL") not in by:
            continue
        base = by[(ds, method, "no SSL")]
        gain = r["nmi"][0] - base["nmi"][0]
        spread = max(r["nmi"][1], base["nmi"][1])
        if gain >= 0.05 and gain > spread:
            verdict = "meets the aim"
        elif gain < -spread:
            verdict = "worse (beyond the spread)"
        elif gain > spread:
            verdict = "higher, but by less than 0.05"
        else:
            verdict = "no change beyond the spread"
        lines.append(f"- {ds}, {method}: {gain:+.3f} (std {spread:.3f}): {verdict}")
    return "\n".join(lines) + "\n"
