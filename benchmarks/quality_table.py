"""One quality table for docs/results.md: default, --reduce umap, --outliers auto, --auto, SSL with/without the gate.

Columns: the three local sets (the demo, made with
``make_demo_dataset(dir, n_per_class=40, random_state=0)``, brain_tumor_4class_dev,
brain_tumor_yes_no); cells: mean ± std NMI over the seeds; k = the number of label
folders; labels only score. Features come through the cache (``--cache-dir``), so
every cell runs the same code as ``brainclust run`` on cached features:
:func:`brainclust.cluster.manifold.build_reducer` ->
:func:`brainclust.cluster.outliers.cluster_with_outliers` -> ``score`` (rows 1-3),
:func:`brainclust.analysis.autoconfig.select` (row 4) and :func:`brainclust.pipeline.run`
(SSL and TEMI rows; each gated row applies :func:`brainclust.selfsup.gate.check` to the same fit).

Usage::

    python benchmarks/quality_table.py --cache-dir /tmp/qcache --out /tmp/qtable.json [--ssl-epochs 10]
    python benchmarks/quality_table.py --render /tmp/qtable.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from brainclust.analysis.autoconfig import PORTFOLIO, select
from brainclust.analysis.common import load_dataset, markdown_table, mean_std_text
from brainclust.cluster.manifold import build_reducer
from brainclust.cluster.outliers import cluster_with_outliers
from brainclust.cluster.scores import score
from brainclust.data.demo import make_demo_dataset
from brainclust.pipeline import RunConfig, run
from brainclust.selfsup import gate

SETS = {"demo": None, "4class_dev": "../shared/data/brain_tumor_4class_dev",
        "yes_no": "../shared/data/brain_tumor_yes_no"}
ROWS = {"default": "brainclust run DATA --backbone efficientnet_lite0 --k K --seed S",
        "--reduce umap": "... --reduce umap",
        "--outliers auto": "... --outliers auto",
        "--auto": "brainclust run DATA --auto --k K --seed S",
        "SSL all (no gate)": "... --self-supervised all --ssl-epochs E",
        "SSL all + gate": "... --self-supervised all --ssl-epochs E --ssl-gate",
        "--consensus": "brainclust run DATA --consensus --k K --seed S",
        "consensus of all 10 candidates (not a CLI option)": "quality_table.py --parts consensus",
        "TEMI (no gate)": "... --self-supervised temi",
        "TEMI + gate": "... --self-supervised temi --ssl-gate"}


def cell(store: dict, row: str, name: str, seed: int, nmi: float, wall: float, extra=None) -> None:
    store.setdefault(row, {}).setdefault(name, []).append({"seed": seed, "nmi": nmi, "wall_s": wall,
                                                           **(extra or {})})


def simple_rows(store, name, X, y, k, seeds) -> None:
    for row, kw in (("default", {}), ("--outliers auto", {"outliers": "auto"}), ("--reduce umap", {"reduce": "umap"})):
        for s in seeds:
            t0 = time.perf_counter()
            emb = build_reducer(kw.get("reduce", "pca"), 50, s).fit_transform(X)
            cl, info = cluster_with_outliers(emb, "hierarchical", k, s, kw.get("outliers", "off"))
            m = score(emb, cl.labels_, y)
            cell(store, row, name, s, m["nmi"], time.perf_counter() - t0,
                 {"n_outliers": (info or {}).get("n"), "sizes": m["cluster_sizes"]})


def auto_rows(store, name, feats, y, k, seeds) -> None:
    for s in seeds:
        t0 = time.perf_counter()
        res = select(feats, k, s, labels_true=y)
        chosen = next(r for r in res.rows if r["chosen"])
        cell(store, "--auto", name, s, chosen["nmi"], time.perf_counter() - t0,
             {"chosen": list(res.chosen), "candidates": res.rows})


def ssl_rows(store, name, path, y, k, seeds, epochs, cache, frozen_nmi) -> None:
    for s in seeds:
        t0 = time.perf_counter()
        r = run(path, None, RunConfig(backbone="efficientnet_lite0", ssl=("all",), ssl_epochs=epochs, seed=s, k=k,
                                      labels_from_folders=True, cache_dir=cache, progress=False))
        wall = time.perf_counter() - t0
        cell(store, "SSL all (no gate)", name, s, r.metrics["nmi"], wall)
        t1 = time.perf_counter()
        dec = gate.check(r.features, r.ssl_model.embedding_, k, 50, s)
        nmi = r.metrics["nmi"] if dec.kept else frozen_nmi[s]
        cell(store, "SSL all + gate", name, s, nmi, wall + time.perf_counter() - t1, {"gate": dec.as_dict()})


def temi_rows(store, name, path, y, k, seeds, cache, frozen_nmi) -> None:
    """TEMI heads (default settings, 200 epochs) with and without the gate, from one fit per seed."""
    for s in seeds:
        t0 = time.perf_counter()
        r = run(path, None, RunConfig(backbone="efficientnet_lite0", ssl=("temi",), seed=s, k=k,
                                      labels_from_folders=True, cache_dir=cache, progress=False))
        wall = time.perf_counter() - t0
        cell(store, "TEMI (no gate)", name, s, r.metrics["nmi"], wall, {"head_agreement": r.ssl_model.head_agreement_})
        t1 = time.perf_counter()
        dec = gate.check(r.features, r.ssl_model.embedding_, k, 50, s, seed_stability=r.ssl_model.head_agreement_)
        nmi = r.metrics["nmi"] if dec.kept else frozen_nmi[s]
        cell(store, "TEMI + gate", name, s, nmi, wall + time.perf_counter() - t1, {"gate": dec.as_dict()})


def consensus_rows(store, name, feats, y, k, seeds) -> None:
    """``--consensus`` (:func:`brainclust.analysis.autoconfig.select` with ``with_consensus``: the five PCA
    candidates' co-association) and, for comparison, the consensus of all ten candidates (PCA and PCA+UMAP)."""
    from brainclust.analysis.autoconfig import consensus, evaluate

    for s in seeds:
        t0 = time.perf_counter()
        res = select(feats, k, s, labels_true=y, reductions=("pca",), with_consensus=True)
        cell(store, "--consensus", name, s, res.rows[-1]["nmi"], time.perf_counter() - t0,
             {"candidates": res.rows})
        t0, keep = time.perf_counter(), {}
        evaluate(feats, k, s, keep=keep)
        lab = consensus(list(keep["labels"].values()), k, s).labels_
        cell(store, "consensus of all 10 candidates (not a CLI option)", name, s,
             score(feats["efficientnet_lite0"], lab, y)["nmi"], time.perf_counter() - t0)


def render(store: dict) -> str:
    names = list(SETS)
    rows = []
    for row, cmd in ROWS.items():
        cells = []
        walls = []
        for n in names:
            vals = store.get(row, {}).get(n, [])
            cells.append(f"{mean_std_text([v['nmi'] for v in vals])} (n={len(vals)})" if vals else "not run")
            walls += [v["wall_s"] for v in vals]
        rows.append([row, *cells, f"{np.mean(walls):.1f}" if walls else "-", f"`{cmd}`"])
    return markdown_table(["row", *names, "mean wall s / cell", "command"], rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache-dir", default="/tmp/qcache")
    ap.add_argument("--out", default="/tmp/qtable.json")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--auto-seeds", type=int, default=5)
    ap.add_argument("--ssl-epochs", type=int, default=10)
    ap.add_argument("--ssl-seeds", type=int, default=5)
    ap.add_argument("--parts", default="simple,auto,ssl,temi",
                    help="which rows: simple (rows 1-3), auto, ssl, temi, consensus")
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--demo-dir", default="/tmp/qwork/demo")
    ap.add_argument("--render", metavar="JSON", nargs="+")
    a = ap.parse_args()
    if a.render:  # several JSON files (parts run in parallel) are merged
        store: dict = {}
        for f in a.render:
            for row, cells in json.loads(Path(f).read_text()).items():
                store.setdefault(row, {}).update(cells)
        print(render(store))
        return
    if not Path(a.demo_dir).exists():
        make_demo_dataset(a.demo_dir, n_per_class=40, random_state=0)
    paths = {n: (SETS[n] or a.demo_dir) for n in a.sets.split(",")}
    store = json.loads(Path(a.out).read_text()) if Path(a.out).is_file() else {}  # resume
    save = lambda: Path(a.out).write_text(json.dumps(store, indent=1, default=float))  # noqa: E731
    done = lambda row, n: n in store.get(row, {})  # noqa: E731
    parts = a.parts.split(",")
    for n, p in paths.items():
        feats = {b: load_dataset(p, RunConfig(backbone=b, cache_dir=a.cache_dir, progress=False)) for b in PORTFOLIO}
        ds = feats["efficientnet_lite0"]
        X, y, k = {b: d.features for b, d in feats.items()}, ds.labels, ds.n_labels
        if "simple" in parts and not done("default", n):
            simple_rows(store, n, ds.features, y, k, list(range(a.seeds)))
            save()
        if "auto" in parts and not done("--auto", n):
            auto_rows(store, n, X, y, k, list(range(a.auto_seeds)))
            save()
        frozen = {}  # the default cell's NMI per seed: what a gated row falls back to
        for s in range(max(a.ssl_seeds, a.seeds)) if {"ssl", "temi"} & set(parts) else ():
            emb = build_reducer("pca", 50, s).fit_transform(ds.features)
            frozen[s] = score(emb, cluster_with_outliers(emb, "hierarchical", k, s)[0].labels_, y)["nmi"]
        if "ssl" in parts and not done("SSL all (no gate)", n):
            ssl_rows(store, n, p, y, k, list(range(a.ssl_seeds)), a.ssl_epochs, a.cache_dir, frozen)
            save()
        if "consensus" in parts and not done("--consensus", n):
            consensus_rows(store, n, X, y, k, list(range(a.seeds)))
            save()
        if "temi" in parts and not done("TEMI (no gate)", n):
            temi_rows(store, n, p, y, k, list(range(a.seeds)), a.cache_dir, frozen)
            save()


if __name__ == "__main__":
    main()
