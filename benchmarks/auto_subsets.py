"""More tasks for the label-free choices: every 2- and 3-class subset of the 4-class dev set.

``--auto`` and the consensus were judged on three local sets only. This script
makes ten more tasks from ``brain_tumor_4class_dev`` (the six pairs and four
triples of its classes, k = the number of classes kept) and reports, per task,
the NMI of the default (efficientnet_lite0, PCA 50, average-cosine), of
``--auto`` (:func:`brainclust.analysis.autoconfig.select`, its choice) and of
``--consensus`` (the same with ``with_consensus``: the five PCA candidates' co-association).
Nothing here changes a rule: labels only score. The tasks share images, so they
are not independent evidence, and they come from the set that is known to mislead.

Usage::

    python benchmarks/auto_subsets.py --cache-dir /tmp/qcache --out /tmp/auto_subsets.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

from brainclust.analysis.autoconfig import PORTFOLIO, select
from brainclust.analysis.common import load_dataset, markdown_table
from brainclust.pipeline import RunConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/brain_tumor_4class_dev")
    ap.add_argument("--cache-dir", default="/tmp/qcache")
    ap.add_argument("--out", default="/tmp/auto_subsets.json")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    data = {b: load_dataset(a.data, RunConfig(backbone=b, cache_dir=a.cache_dir, progress=False)) for b in PORTFOLIO}
    y_all = np.asarray(data["efficientnet_lite0"].labels)
    classes = sorted(set(y_all.tolist()))
    rows = []
    for size in (2, 3):
        for keep in itertools.combinations(classes, size):
            m = np.isin(y_all, keep)
            y, k = y_all[m], size
            feats = {b: d.features[m] for b, d in data.items()}
            t0 = time.perf_counter()
            res = select(feats, k, a.seed, labels_true=y)  # labels only fill the nmi column
            chosen = next(r for r in res.rows if r["chosen"])
            auto_s = time.perf_counter() - t0
            default = next(r for r in res.rows if (r["backbone"], r["reduce"]) == ("efficientnet_lite0", "pca"))
            cons = select(feats, k, a.seed, labels_true=y, reductions=("pca",), with_consensus=True).rows[-1]
            nmi = {"default": default["nmi"], "auto": chosen["nmi"], "consensus": cons["nmi"]}
            rows.append({"task": "+".join(keep), "n": int(m.sum()), "k": k, **nmi,
                         "auto_choice": f"{chosen['backbone']} / {chosen['reduce']}", "auto_s": auto_s})
            print(rows[-1], flush=True)
    Path(a.out).write_text(json.dumps(rows, indent=1))
    table = [[r["task"], r["n"], f"{r['default']:.3f}", f"{r['auto']:.3f}", r["auto_choice"], f"{r['consensus']:.3f}"]
             for r in rows]
    mean = [np.mean([r[c] for r in rows]) for c in ("default", "auto", "consensus")]
    worst = [min(r[c] - r["default"] for r in rows) for c in ("auto", "consensus")]
    table.append(["**mean**", "", f"{mean[0]:.3f}", f"{mean[1]:.3f}", f"worst vs default {worst[0]:+.3f}",
                  f"{mean[2]:.3f} (worst {worst[1]:+.3f})"])
    print(markdown_table(["task", "n", "default", "--auto", "--auto choice", "--consensus"], table))


if __name__ == "__main__":
    main()
