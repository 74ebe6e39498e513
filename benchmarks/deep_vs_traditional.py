"""Deep vs traditional features: the README's "Deep vs traditional" table.

For each data set (the two shared real MRI sets and the MNI152 demo set) and
each backbone (traditional ``pixels``, ``hog``; deep ``efficientnet_lite0``,
``inception_v3``; fusions such as ``efficientnet_lite0+pixels``), features are
extracted once through the feature cache (:func:`brainclust.analysis.benchmark.load_dataset`),
then PCA and clustering run with k = the number of label folders. Labels are
used only for the scores.

Two spreads are reported, because they measure different things:

* **seeds**: :func:`brainclust.analysis.benchmark.run_grid` over ``--seeds`` (PCA is a full
  SVD and average linkage is deterministic, so for ``hierarchical`` the std over
  seeds is 0 by construction; for K-Means it is the spread of its initialisation);
* **subsamples**: ``--subsamples`` random subsets of ``--frac`` of the images
  (subset ``i`` drawn with seed ``i``), PCA refitted and clustered on each
  subset: how much the result depends on which images were drawn.

``wall s`` of a row: extraction (through the cache) + every seed of that
backbone (all methods, and the SSL training when ``--self-supervised`` is
given) + that row's subsamples.

Label-free columns (usable to choose a configuration): the cosine
**silhouette** on the PCA output, and **stability**, the mean adjusted Rand
index between the clusterings of every pair of subsamples, on the images the
two share. Backbones whose weights are not available offline
(``inception_v3`` without ``--weights``) get a "not available" line, never a
random-weight result.

    .venv/bin/python benchmarks/deep_vs_traditional.py                 # the README table
    .venv/bin/python benchmarks/deep_vs_traditional.py --data 4class --backbones pixels --methods hierarchical
    .venv/bin/python benchmarks/deep_vs_traditional.py --data /path/to/labelled_folder   # any labelled set
"""

from __future__ import annotations

import argparse
import itertools
import logging
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DATA = {"4class": ("brain_tumor_4class_dev", 4), "yes_no": ("brain_tumor_yes_no", 2), "demo": (None, 3)}
DEFAULT_BACKBONES = ["pixels", "hog", "efficientnet_lite0", "efficientnet_lite0_multi", "inception_v3",
                     "efficientnet_lite0+pixels"]


def subsample_scores(features: np.ndarray, labels: list[str], method: str, k: int, pca, n: int, frac: float) -> dict:
    """Scores on ``n`` random subsets of ``frac`` of the rows, and the pairwise-ARI stability between them."""
    from sklearn.metrics import adjusted_rand_score

    from brainclust.cluster.methods import Clusterer
    from brainclust.cluster.scores import score
    from brainclust.cluster.reduce import PCAReducer

    N = len(features)
    m = max(k + 1, int(round(frac * N)))
    assign, nmi, ari = [], [], []
    for i in range(n):
        idx = np.sort(np.random.default_rng(i).choice(N, size=m, replace=False))
        emb = PCAReducer(pca, random_state=i).fit_transform(features[idx])
        cl = Clusterer(method=method, n_clusters=k, random_state=i).fit(emb)
        s = score(emb, cl.labels_, [labels[j] for j in idx])
        nmi.append(s["nmi"])
        ari.append(s["ari"])
        full = np.full(N, -2)
        full[idx] = cl.labels_
        assign.append(full)
    stab = []
    for a, b in itertools.combinations(assign, 2):
        both = (a != -2) & (b != -2)
        stab.append(adjusted_rand_score(a[both], b[both]))
    return {"nmi": nmi, "ari": ari, "stability": float(np.mean(stab)) if stab else float("nan")}


def _ms(vals) -> str:
    vals = [v for v in vals if v is not None]
    if not vals:
        return "n/a"
    return f"{np.mean(vals):.3f} ± {np.std(vals):.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=list(DATA), metavar="SET",
                    help=f"{', '.join(DATA)}, or the path of any folder with one sub-folder per label "
                         "(k = the number of sub-folders with images) (default: the three sets)")
    ap.add_argument("--backbones", nargs="+", default=DEFAULT_BACKBONES)
    ap.add_argument("--methods", nargs="+", default=["hierarchical", "kmeans"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--subsamples", type=int, default=5)
    ap.add_argument("--frac", type=float, default=0.8)
    ap.add_argument("--pca", type=int, default=50)
    ap.add_argument("--clip", default="0.5,99.5", help="LOW,HIGH or off (as brainclust run --clip)")
    ap.add_argument("--fusion-norm", default="image", choices=["image", "block"],
                    help="fused backbones: per-image L2 of each block (image) or not (block), as brainclust run")
    ap.add_argument("--intensity-window", default=None,
                    help="LOW,HIGH fixed intensity range (as brainclust run --intensity-window), default off")
    ap.add_argument("--self-supervised", default="none",
                    help="SSL components for extra '+ SSL' rows (as brainclust run), default none")
    ap.add_argument("--ssl-views", default=None,
                    help="appearance views of the SSL head (as brainclust run --ssl-views), "
                         "default identity,hflip,strong")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--weights", default=None, help="local state dict, used for inception_v3 only")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")

    from threadpoolctl import threadpool_limits

    from brainclust.analysis.benchmark import load_dataset, run_grid
    from brainclust.model.optionspec import parse_clip as clip_arg, parse_views as views_arg, parse_window as window_arg
    from brainclust.data.demo import make_demo_dataset
    from brainclust.errors import WeightsUnavailableError
    from brainclust.pipeline import RunConfig
    from brainclust.selfsup import parse_components

    clip = clip_arg(args.clip)
    ssl = parse_components(args.self_supervised)
    print(f"seeds {args.seeds}; {args.subsamples} subsamples of {args.frac:.0%}; PCA {args.pca}; "
          f"clip {args.clip}; intensity window {args.intensity_window or 'off'}; fusion norm {args.fusion_norm}; "
          f"SSL {','.join(ssl) or 'none'}"
          + (f" (views {args.ssl_views})" if ssl and args.ssl_views else "") + "\n")
    print("| data | backbone | method | silhouette | stability | NMI (seeds) | ARI (seeds) "
          "| NMI (subsamples) | wall s | command |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.data:
            folder, k = DATA.get(key, (key, None))
            if folder is None:
                path = make_demo_dataset(Path(tmp) / "demo", n_per_class=40, random_state=0)
                name = "demo (MNI152)"
            else:
                path = SHARED / folder if key in DATA else Path(folder)
                name = path.name
                if not path.is_dir():
                    print(f"| {name} | | | not found at {path} | | | | | | |")
                    continue
            for backbone in args.backbones:
                cmd = (f".venv/bin/python benchmarks/deep_vs_traditional.py --data {key} "
                       f"--backbones {shlex.quote(backbone)} --methods {' '.join(args.methods)}"
                       + (f" --clip {args.clip}" if args.clip != "0.5,99.5" else "")
                       + (f" --intensity-window {args.intensity_window}" if args.intensity_window else "")
                       + (f" --fusion-norm {args.fusion_norm}" if args.fusion_norm != "image" else "")
                       + (f" --self-supervised {args.self_supervised}" if ssl else "")
                       + (f" --ssl-views {args.ssl_views}" if ssl and args.ssl_views else ""))
                cfg = RunConfig(backbone=backbone, clip_percentiles=clip, pca=args.pca, cache_dir=args.cache_dir,
                                intensity_window=window_arg(args.intensity_window) if args.intensity_window else None,
                                fusion_norm=args.fusion_norm,
                                ssl_views=views_arg(args.ssl_views) if args.ssl_views else None,
                                weights=args.weights if backbone == "inception_v3" else None, progress=False)
                t0 = time.perf_counter()
                try:
                    ds = load_dataset(path, cfg, name)
                except WeightsUnavailableError as exc:
                    print(f"| {name} | {backbone} | | not available offline: {str(exc)[:90]}... | | | | | | |")
                    continue
                t_extract = time.perf_counter() - t0
                with threadpool_limits(limits=1):
                    t1 = time.perf_counter()
                    rows = run_grid([ds], cfg, args.methods, args.seeds, k or ds.n_labels, ssl, progress=False)
                    t_grid = time.perf_counter() - t1  # all methods and variants, SSL training included
                    for variant in (("plain", "ssl") if ssl else ("plain",)):
                        for method in args.methods:
                            t1 = time.perf_counter()
                            cells = [r for r in rows if r["method"] == method and r["variant"] == variant]
                            sub = (subsample_scores(ds.features, ds.labels, method, k or ds.n_labels, args.pca,
                                                    args.subsamples, args.frac) if variant == "plain" else None)
                            wall = t_extract + t_grid + time.perf_counter() - t1
                            label = backbone + (" + SSL" if variant == "ssl" else "")
                            stab = f"{sub['stability']:.3f}" if sub and sub["stability"] == sub["stability"] else "n/a"
                            print(f"| {name} | {label} | {method} | {_ms([r['silhouette'] for r in cells])} "
                                  f"| {stab} | ", end="")
                            print(f"{_ms([r['nmi'] for r in cells])} | {_ms([r['ari'] for r in cells])} "
                                  f"| {_ms(sub['nmi']) if sub else 'n/a'} | {wall:.0f} "
                                  f"(cache {ds.info['cache_hits']} hits / {ds.info['cache_misses']} misses) "
                                  f"| `{cmd}` |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
