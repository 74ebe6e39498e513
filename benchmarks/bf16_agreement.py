"""Does bf16 feature extraction change the clusters? fp32 vs bf16 on real data.

Runs ``brainclust.run(data, None, backbone="efficientnet_lite0", precision=P,
k=4, labels_from_folders=True, method=M, cache_dir=<temp dir>)`` for P in
fp32, bf16 and M in hierarchical, kmeans, then prints, per method, the ARI
between the fp32 and bf16 cluster assignments and the NMI (and ARI) of each
against the folder labels; also the bf16-vs-fp32 feature error over all images.
Skips cleanly (exit 0) when the data folder is missing.

Run::

    .venv/bin/python benchmarks/bf16_agreement.py [--data ../shared/data/brain_tumor_4class_dev]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/brain_tumor_4class_dev")
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--methods", default="hierarchical,kmeans")
    ap.add_argument("--precisions", default="fp32,bf16", help="first one is the reference")
    ap.add_argument("--cache-dir", default=None, help="feature cache (default: a temp dir, removed at the end)")
    args = ap.parse_args(argv)
    if not Path(args.data).is_dir():
        print(f"SKIP: data folder '{args.data}' not found (expected the shared real MRI set)")
        return 0
    import brainclust
    from brainclust.features.runtime import bf16_supported

    cache = args.cache_dir or tempfile.mkdtemp(prefix="bf16_agreement_cache_")
    precs, methods = args.precisions.split(","), args.methods.split(",")
    print(f"data: {args.data}; backbone {args.backbone}; k={args.k}; native bf16: {bf16_supported()}; "
          f"cache: {cache}", flush=True)
    res = {}
    for p in precs:
        for m in methods:
            t = time.perf_counter()
            r = brainclust.run(args.data, None, backbone=args.backbone, precision=p, k=args.k,
                               labels_from_folders=True, method=m, cache_dir=cache, progress=False)
            paths = [rec.path for rec in r.records]
            order = np.argsort(paths)  # align rows by path across runs
            res[p, m] = {"paths": np.asarray(paths)[order], "pred": np.asarray(r.labels)[order],
                         "true": np.asarray([rec.label for rec in r.records])[order],
                         "feats": np.asarray(r.features)[order], "sec": time.perf_counter() - t,
                         "extract": r.timings.get("extract"), "prec": r.extractor.precision_}
            print(f"  ran precision={p} (used {r.extractor.precision_}) method={m}: {len(paths)} images, "
                  f"{res[p, m]['sec']:.1f} s (extract {res[p, m]['extract']:.1f} s, "
                  f"cache hits {r.manifest['cache']['hits']})", flush=True)
    ref = precs[0]
    lines = ["", f"| method | precision | NMI vs labels | ARI vs labels | ARI vs {ref} assignments | "
             f"images changing cluster (best matching) |", "|---|---|---:|---:|---:|---:|"]
    for m in methods:
        a = res[ref, m]
        for p in precs:
            b = res[p, m]
            if not np.array_equal(a["paths"], b["paths"]):
                raise SystemExit(f"runs {ref}/{m} and {p}/{m} read different images")
            moved = _moved(a["pred"], b["pred"])
            lines.append(f"| {m} | {b['prec']} | {normalized_mutual_info_score(b['true'], b['pred']):.4f} | "
                         f"{adjusted_rand_score(b['true'], b['pred']):.4f} | "
                         f"{adjusted_rand_score(a['pred'], b['pred']):.4f} | {moved} |")
    f0 = res[ref, methods[0]]["feats"]
    for p in precs[1:]:
        f1 = res[p, methods[0]]["feats"]
        n0, n1 = np.linalg.norm(f0, axis=1), np.linalg.norm(f1, axis=1)
        rel = np.linalg.norm(f1 - f0, axis=1) / n0
        cos = (f0 * f1).sum(1) / (n0 * n1)
        lines.append(f"\nfeatures {p} vs {ref} over {len(f0)} images: relative error mean {rel.mean():.4f} "
                     f"(max {rel.max():.4f}), cosine similarity mean {cos.mean():.6f} (min {cos.min():.6f})")
    print("\n".join(lines))
    if not args.cache_dir:
        shutil.rmtree(cache, ignore_errors=True)
    return 0


def _moved(a: np.ndarray, b: np.ndarray) -> int:
    """Images whose cluster differs after the best one-to-one relabelling of ``b`` onto ``a``."""
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics.cluster import contingency_matrix

    C = contingency_matrix(a, b)
    rows, cols = linear_sum_assignment(C, maximize=True)
    return int(len(a) - C[rows, cols].sum())


if __name__ == "__main__":
    sys.exit(main())
