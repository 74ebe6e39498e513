"""Quality of the default pipeline on the shared real MRI sets and the demo set.

For each data set, each clustering method and each seed, runs
``brainclust.run`` (frozen features, PCA 50, k = number of labels) and prints a
Markdown table of mean +- std over seeds of silhouette, ARI, NMI, FMI and ACC.
Labels come from sub-folders and are used only for scoring.

    .venv/bin/python benchmarks/results_table.py --seeds 0 1 2 3 4 --backbone efficientnet_lite0
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import brainclust
from brainclust.data.demo import make_demo_dataset

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
KEYS = ("silhouette", "ari", "nmi", "fmi", "acc")


def datasets(tmp: Path) -> dict[str, tuple[Path, int]]:
    out = {}
    for name, k in (("brain_tumor_4class_dev", 4), ("brain_tumor_yes_no", 2)):
        if (SHARED / name).is_dir():
            out[name] = (SHARED / name, k)
    out["demo (MNI152, 3 planes)"] = (make_demo_dataset(tmp / "demo", n_per_class=40), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--methods", nargs="+", default=["hierarchical", "kmeans"])
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--pca", type=float, default=50)
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args()
    pca = int(args.pca) if float(args.pca).is_integer() else args.pca
    print(f"backbone {args.backbone}, PCA {pca}, seeds {args.seeds}\n")
    print("| data | method | silhouette | ARI | NMI | FMI | ACC | wall s (all seeds) |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (path, k) in datasets(Path(tmp)).items():
            for method in args.methods:
                t0 = time.perf_counter()
                scores = {key: [] for key in KEYS}
                for seed in args.seeds:
                    m = brainclust.run(path, None, backbone=args.backbone, pca=pca, method=method, k=k,
                                       seed=seed, labels_from_folders=True, cache_dir=args.cache_dir).metrics
                    for key in KEYS:
                        scores[key].append(np.nan if m.get(key) is None else m[key])
                cells = [f"{np.mean(v):.3f} ± {np.std(v):.3f}" for v in scores.values()]
                print(f"| {name} | {method} | " + " | ".join(cells) + f" | {time.perf_counter() - t0:.0f} |",
                      flush=True)


if __name__ == "__main__":
    main()
