"""Size and build time of ``report.html`` for a large run, without extracting features.

Fakes a finished run of ``--n`` images: the data folder holds symbolic links
to the images of a real folder, repeated (realistic thumbnail sizes); the
embedding is random (``k`` Gaussian blobs in 50-d, like a PCA-50 output);
the clustering is the real :class:`brainclust.cluster.methods.Clusterer`. Then
:func:`brainclust.report.build.build_report` runs on it and the file size and stage
times are printed.

Run::

    .venv/bin/python benchmarks/bench_report.py --n 10000 --data ../shared/data/brain_tumor_4class_dev
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--method", default="hierarchical")
    ap.add_argument("--data", default="../shared/data/brain_tumor_4class_dev",
                    help="folder of real images to link to (searched recursively)")
    ap.add_argument("--workdir", default=None, help="where to write the fake run (default: a temporary folder)")
    args = ap.parse_args(argv)

    from brainclust.cluster.methods import Clusterer
    from brainclust.cluster.scores import score
    from brainclust.io.atomic import atomic_write_csv, atomic_write_json
    from brainclust.report.build import build_report

    src = sorted(p for p in Path(args.data).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not src:
        print(f"no images under {args.data}", file=sys.stderr)
        return 2
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_report_"))
    data, out = work / "data", work / "out"
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(args.n):
        s = src[i % len(src)]
        rel = f"{s.parent.name}/copy{i // len(src)}_{s.name}"
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        if not (data / rel).exists():
            os.symlink(s.resolve(), data / rel)
        paths.append(rel)
        labels.append(s.parent.name)
    names = sorted(set(labels))
    centres = rng.normal(size=(len(names), 50)) * 2.0
    X = np.stack([centres[names.index(lab)] + rng.normal(size=50) * 1.5 for lab in labels])
    t0 = time.perf_counter()
    cl = Clusterer(method=args.method, n_clusters=args.k, random_state=0).fit(X)
    t_cluster = time.perf_counter() - t0
    cl.save(out / "model" / "cluster.npz")
    cols = ["path", "name", "type", "size", "width", "height", "label", "cluster"]
    rows = [{"path": p, "name": Path(p).name, "type": "jpeg", "size": 0, "width": 224, "height": 224,
             "label": labels[i], "cluster": int(cl.labels_[i])} for i, p in enumerate(paths)]
    atomic_write_csv(out / "assignments.csv", cols, rows)
    atomic_write_json(out / "metrics.json", score(X, cl.labels_, labels))
    atomic_write_json(out / "manifest.json", {
        "kind": "run", "input": str(data.resolve()), "settings": {"method": args.method, "k": args.k, "seed": 0,
                                                                   "labels_from_folders": True},
        "clustering": {"method": args.method, "k": args.k}, "n_images": args.n, "skipped": [],
        "timings_s": {"cluster": t_cluster}})
    t0 = time.perf_counter()
    info = build_report(out)
    total = time.perf_counter() - t0
    print(f"n={args.n} method={args.method} k={args.k}: report.html {info.size_bytes / 1e6:.2f} MB, "
          f"{info.n_map_points} map points, built in {total:.1f} s")
    print("stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in info.timings_s.items()))
    print(f"fake run in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
