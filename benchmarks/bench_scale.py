"""Clustering at scale: time and peak memory of every stage at n = 10k, 100k, 1M.

Two feature sets:

``synthetic``
    50-d Gaussian blobs on the unit sphere (10 random unit centres, each point
    ``centre + 0.25 * N(0, I/50)`` then normalised): known structure, so the
    ARI against the truth at k = 10 is reported.
``real``
    efficientnet_lite0 features of ``brain_tumor_4class_dev`` (1000 images,
    through the feature cache), reduced by PCA to 50-d on the 1000 originals,
    then tiled to ``n`` rows with 1% Gaussian noise (per-dimension standard
    deviation times 0.01). The PCA stage is timed on the synthetic set only.

Stages: PCA (``PCAReducer(50)``; synthetic only), the hierarchical tree
(exact scipy up to ``--exact-max``, else the two-stage tree), the 10 levels,
K-Means, silhouette (sampled above 20 000). Up to ``--side-by-side-max`` (20k)
scipy's exact linkage and scikit-learn's AgglomerativeClustering run too.
Peak RSS per stage is sampled from /proc/self/statm every 10 ms.

``--calibrate`` instead measures agreement (ARI at k = 4 and 10) on the real
features at n = 5k, 10k, 20k: the two-stage tree (for each ``--micro``) with
the exact tree, and the exact tree with itself under another 1% noise.

    python benchmarks/bench_scale.py --n 10000 100000 [--data DIR] [--json out.json]
    python benchmarks/bench_scale.py --calibrate --n 5000 10000 20000 --micro 500 1000 2000 4000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from brainclust.cluster.methods import Clusterer, cut_levels, hierarchical_tree, relabel
from brainclust.cluster.reduce import PCAReducer
from brainclust.cluster.scores import score
from brainclust.cluster.twostage import N_MICRO, two_stage_tree
from brainclust.io.outputs import N_LEVELS

DEFAULT_DATA = Path("../shared/data/brain_tumor_4class_dev")
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


class Stage:
    """Context manager: wall time and peak RSS (sampled) of one stage."""

    def __init__(self, name: str, out: dict):
        self.name, self.out = name, out

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            time.sleep(0.01)

    def __enter__(self):
        self.peak = self.start = rss_mb()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._sample, daemon=True)
        self._t.start()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        dt = time.perf_counter() - self.t0
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_mb())
        self.out[self.name] = {"s": round(dt, 2), "peak_rss_mb": round(self.peak), "rss_before_mb": round(self.start)}
        print(f"  {self.name:<22} {dt:8.2f} s   peak RSS {self.peak:7.0f} MB", file=sys.stderr, flush=True)


def synthetic(n: int, d: int = 50, k: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    C = rng.normal(size=(k, d))
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    y = rng.integers(0, k, n)
    X = C[y] + 0.25 * rng.normal(size=(n, d)) / np.sqrt(d)
    return X / np.linalg.norm(X, axis=1, keepdims=True), y


def real_embedding(data: Path) -> np.ndarray:
    from brainclust.analysis.common import load_dataset
    from brainclust.pipeline import RunConfig

    ds = load_dataset(data, RunConfig())
    return PCAReducer(n_components=50, random_state=0).fit_transform(ds.features)


def tile(E: np.ndarray, n: int, seed: int, noise: float = 0.01) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = np.tile(E, (int(np.ceil(n / len(E))), 1))[:n]
    return X + noise * E.std(axis=0) * rng.normal(size=X.shape)


def hierarchical_stages(X: np.ndarray, out: dict, exact_max: int, m: int, k: int = 10) -> np.ndarray:
    with Stage("tree", out):
        if len(X) <= exact_max:
            tree, micro_of = hierarchical_tree(X), None
        else:
            tree, _, micro_of = two_stage_tree(X, m, random_state=0)
    with Stage("levels", out):
        cuts = cut_levels(tree, [*range(1, N_LEVELS + 1), k])
        if micro_of is not None:
            cuts = {L: relabel(c[micro_of]) for L, c in cuts.items()}
        levels = np.stack([cuts[L] for L in range(1, N_LEVELS + 1)], axis=1)
    return cuts[k] if k > N_LEVELS else levels[:, k - 1]


def side_by_side(X: np.ndarray, out: dict, k: int = 10) -> None:
    from sklearn.cluster import AgglomerativeClustering

    with Stage("scipy_exact_linkage", out):
        hierarchical_tree(X)
    with Stage("sklearn_agglomerative", out):
        AgglomerativeClustering(n_clusters=k, linkage="average", metric="cosine").fit(X)


def bench_one(name: str, X: np.ndarray, y, args, with_pca: bool) -> dict:
    from sklearn.metrics import adjusted_rand_score

    n = len(X)
    out: dict = {"set": name, "n": n, "d": X.shape[1]}
    print(f"{name} n={n}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    if with_pca:
        with Stage("pca", out):
            X = PCAReducer(n_components=50, random_state=0).fit_transform(X)
    labels = hierarchical_stages(X, out, args.exact_max, args.m)
    out["hierarchical_end_to_end_s"] = round(time.perf_counter() - t0, 2)
    with Stage("kmeans", out):
        km = Clusterer(method="kmeans", n_clusters=10, random_state=0).fit(X)
    with Stage("silhouette", out):
        s = score(X, labels)
    out["silhouette_value"], out["silhouette_sample"] = s["silhouette"], s.get("silhouette_sample")
    if y is not None:
        out["ari_truth_tree_k10"] = round(float(adjusted_rand_score(y, labels)), 4)
        out["ari_truth_kmeans_k10"] = round(float(adjusted_rand_score(y, km.labels_)), 4)
    if n <= args.side_by_side_max:
        side_by_side(X, out)
    out["process_peak_rss_mb"] = round(max(v["peak_rss_mb"] for v in out.values() if isinstance(v, dict)))
    return out


def calibrate(args) -> list[dict]:
    from sklearn.metrics import adjusted_rand_score as ari

    E = real_embedding(args.data)
    rows = []
    for n in args.n:
        X1 = tile(E, n, seed=1)
        X2 = X1 + 0.01 * E.std(axis=0) * np.random.default_rng(2).normal(size=X1.shape)
        exact = cut_levels(hierarchical_tree(X1), [4, 10])
        noisy = cut_levels(hierarchical_tree(X2), [4, 10])
        row = {"n": n, "exact_vs_noisy_exact": {k: round(float(ari(exact[k], noisy[k])), 4) for k in (4, 10)}}
        for m in args.micro:
            t0 = time.perf_counter()
            tree, _, micro_of = two_stage_tree(X1, m, random_state=0)
            cuts = {k: c[micro_of] for k, c in cut_levels(tree, [4, 10]).items()}
            row[f"two_stage_m{m}"] = {k: round(float(ari(exact[k], cuts[k])), 4) for k in (4, 10)}
            row[f"two_stage_m{m}_s"] = round(time.perf_counter() - t0, 2)
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=[10000, 100000])
    p.add_argument("--sets", nargs="+", default=["synthetic", "real"], choices=["synthetic", "real"])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--exact-max", type=int, default=20000)
    p.add_argument("--m", type=int, default=N_MICRO, help="micro-clusters of the two-stage tree")
    p.add_argument("--side-by-side-max", type=int, default=20000)
    p.add_argument("--calibrate", action="store_true")
    p.add_argument("--micro", type=int, nargs="+", default=[500, 1000, 2000, 4000])
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.calibrate:
        result: object = calibrate(args)
    else:
        result = []
        E = real_embedding(args.data) if "real" in args.sets and args.data.is_dir() else None
        for n in args.n:
            if "synthetic" in args.sets:
                X, y = synthetic(n)
                result.append(bench_one("synthetic", X, y, args, with_pca=True))
                del X
            if E is not None:
                result.append(bench_one("real", tile(E, n, seed=1), None, args, with_pca=False))
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
