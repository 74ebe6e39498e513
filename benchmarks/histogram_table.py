"""The ``histogram`` backbone (the foreground's grey levels) on every local set, mean ± std over 5 seeds.

A question about the contrast (which sequence?) is one the default's features cannot answer: they keep the
anatomy (plane, height of the slice). This table puts the ``histogram`` backbone beside them, with the
default's clustering (PCA 50, capped at its 32 values; average-cosine hierarchical) and K-Means. Labels only
score. Rows without randomness give ± 0.000.

Usage::

    python benchmarks/cut_volume_sets.py SETS
    OMP_NUM_THREADS=1 python benchmarks/histogram_table.py --sets-root SETS --cache-dir CACHE
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
import local_sets  # noqa: E402

from brainclust.analysis.common import markdown_table, mean_std_text  # noqa: E402
from brainclust.cluster.methods import Clusterer  # noqa: E402
from brainclust.cluster.reduce import PCAReducer  # noqa: E402

SEEDS = (0, 1, 2, 3, 4)
ROWS = {"efficientnet_lite0 (default)": ("efficientnet_lite0", "hierarchical"),
        "histogram": ("histogram", "hierarchical"),
        "histogram, K-Means": ("histogram", "kmeans")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default=",".join(local_sets.ALL))
    ap.add_argument("--sets-root", required=True)
    ap.add_argument("--cache-dir", required=True)
    args = ap.parse_args()
    names = args.sets.split(",")
    cells = {row: [] for row in ROWS}
    for name in names:
        s = local_sets.load(name, backbones=("efficientnet_lite0", "histogram"), cache_dir=args.cache_dir,
                            sets_root=args.sets_root)
        for row, (backbone, method) in ROWS.items():
            nmis = []
            for seed in SEEDS:
                emb = PCAReducer(50, random_state=seed).fit_transform(s.features[backbone])
                labels = Clusterer(method=method, n_clusters=s.k, random_state=seed).fit(emb).labels_
                nmis.append(normalized_mutual_info_score(s.labels, labels))
            cells[row].append(nmis)
            print(f"{name} {row}: {np.mean(nmis):.3f}", file=sys.stderr, flush=True)
    header = ["row", *names, "mean"]
    lines = [[row, *(mean_std_text(v) for v in vals), f"{np.mean([np.mean(v) for v in vals]):.3f}"]
             for row, vals in cells.items()]
    print(markdown_table(header, lines))


if __name__ == "__main__":
    main()
