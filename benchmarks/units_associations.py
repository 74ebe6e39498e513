"""What do clusters of today's features follow on real multi-sequence MRI? (``docs/results.md``)

On the BIDS set ``brain_mri_volumes_dev`` (5 subjects x T1w, ce-gadolinium_T1w,
T2w, FLAIR; ``participants.tsv`` with ``site``), with the default backbone
(efficientnet_lite0, frozen, through the feature cache):

1. **Volume level**: 8 axial slices per volume (``--slices axial:8``: evenly
   spaced through the brain's extent), aggregated per volume by
   :class:`brainclust.features.units.UnitAggregator` (mean of L2-normalised
   slice features, re-normalised), PCA (capped at the 20 volumes), k = 4.
   AMI of the clusters with sequence, subject and site.
2. **Slice level, all three planes**: 8 slices per plane per volume
   (``--slices all-planes:8``), PCA 50, k = 3 and k = 4. AMI with plane,
   sequence and subject.

Clustering: average-linkage cosine (the default; deterministic, so its std over
seeds is 0 by construction) and K-Means over ``--seeds`` (mean ± std). Labels
only score. The association ranking of :mod:`brainclust.analysis.associations`
(the one ``associations.csv`` holds) is printed for the default partitions,
computed from the columns as text, as ``assignments.csv`` would hold them.

Also measured, as ratios in the same process: the scan with the noise-robust
brain extent against the same scan with ``axial:mid`` (no mask), and the
intensity descriptors (one more decode per image) against feature extraction
from a warm cache and from a cold one.

    PYTHONPATH=src .venv/bin/python benchmarks/units_associations.py
    PYTHONPATH=src .venv/bin/python benchmarks/units_associations.py --data /path/to/bids --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_mutual_info_score

from brainclust.analysis import associations
from brainclust.cluster.methods import Clusterer
from brainclust.cluster.reduce import PCAReducer
from brainclust.features.extractor import FeatureExtractor
from brainclust.features.units import UnitAggregator, group, unit_columns, unit_ids
from brainclust.io.descriptors import describe_records
from brainclust.io.metadata import record_columns
from brainclust.io.scan import scan

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "brain_mri_volumes_dev"


def text(v) -> str:
    return "" if v is None else str(v)


def partitions(emb: np.ndarray, k: int, seeds: list[int]) -> dict[str, list[np.ndarray]]:
    hier = Clusterer(method="hierarchical", n_clusters=k).fit(emb)
    km = [Clusterer(method="kmeans", n_clusters=k, random_state=s).fit(emb).labels_ for s in seeds]
    return {"average-cosine": [hier.labels_], "kmeans": km, "levels": hier.levels_}


def ami_cells(parts: dict, truths: dict[str, list[str]]) -> dict[str, dict[str, str]]:
    out = {}
    for method in ("average-cosine", "kmeans"):
        row = {}
        for name, truth in truths.items():
            vals = [adjusted_mutual_info_score(truth, lab) for lab in parts[method]]
            row[name] = (f"{vals[0]:.2f}" if len(vals) == 1 else
                         f"{statistics.mean(vals):.2f} ± {statistics.stdev(vals):.2f}")
        out[method] = row
    return out


def ranking(columns: dict[str, list], parts: dict, permutations: int) -> list[dict]:
    levels = {"cluster": [str(x) for x in parts["average-cosine"][0]]}
    for j in range(parts["levels"].shape[1]):
        levels[f"level_{j + 1}"] = [str(x) for x in parts["levels"][:, j]]
    table = {k: [text(v) for v in vals] for k, vals in columns.items()}
    return associations.rank_associations(table, levels, permutations=permutations, random_state=0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--permutations", type=int, default=199)
    ap.add_argument("--cache", default=None, help="feature cache folder (default: a temporary one)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    cache = a.cache or tempfile.mkdtemp(prefix="bc-units-")
    ext = FeatureExtractor(backbone="efficientnet_lite0", cache_dir=cache, progress=False).fit()
    print(f"data: {a.data}\nbackbone: efficientnet_lite0 ({ext.runtime_}, {ext.precision_}); seeds {a.seeds}\n")

    # -- 1. volume level ------------------------------------------------------------------
    t0 = time.perf_counter()
    mid = scan(a.data, slices="axial:mid")
    t_mid = time.perf_counter() - t0
    t0 = time.perf_counter()
    vol_scan = scan(a.data, slices="axial:8")
    t_mask = time.perf_counter() - t0
    recs = vol_scan.records
    t0 = time.perf_counter()
    feats = ext.transform(recs)
    t_cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    ext.transform(recs)
    t_warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    describe_records(recs, progress=False)
    t_desc = time.perf_counter() - t0
    ids = unit_ids(recs, "volume")
    agg = UnitAggregator("volume").fit(feats, ids)
    cols = unit_columns(record_columns(recs), group(ids))
    emb = PCAReducer(50).fit(agg.unit_features_).transform(agg.unit_features_)
    parts = partitions(emb, 4, a.seeds)
    truths = {"sequence": [text(v) for v in cols["sequence"]], "subject": [text(v) for v in cols["subject"]],
              "site": [text(v) for v in cols["site"]]}
    cells = ami_cells(parts, truths)
    print(f"## Volume level: {len(agg.units_)} volumes x {int(np.median(agg.counts_))} axial slices, k = 4\n")
    print("| clustering | AMI sequence | AMI subject | AMI site |\n| --- | --- | --- | --- |")
    for m, row in cells.items():
        print(f"| {m} | {row['sequence']} | {row['subject']} | {row['site']} |")
    print("\nThe same with other aggregation rules (average-cosine, k = 4; AMI sequence / subject):\n")
    idx = group(ids)
    raw = np.stack([feats[idx.index == u].mean(axis=0) for u in range(len(idx.ids))])
    slice_emb = PCAReducer(50).fit(feats).transform(feats)
    pca_mean = np.stack([slice_emb[idx.index == u].mean(axis=0) for u in range(len(idx.ids))])
    for rule, unit_feats, reduce in (("mean of L2-normalised slices, re-normalised (brainclust)",
                                      agg.unit_features_, True),
                                     ("plain mean of slice features", raw, True),
                                     ("mean of the slices' PCA-50 embeddings", pca_mean, False)):
        e = PCAReducer(50).fit(unit_feats).transform(unit_feats) if reduce else unit_feats
        lab = Clusterer(method="hierarchical", n_clusters=4).fit(e).labels_
        print(f"- {rule}: {adjusted_mutual_info_score(truths['sequence'], lab):.2f} / "
              f"{adjusted_mutual_info_score(truths['subject'], lab):.2f}")
    rows = ranking({**cols, "unit": agg.units_}, parts, a.permutations)
    print("\n" + associations.headline(rows) + "\n")
    for line in associations.tree_summary(rows):
        print(f"- {line}")

    # -- 2. slice level, three planes ---------------------------------------------------------
    sl = scan(a.data, slices="all-planes:8").records
    sfeats = ext.transform(sl)
    scols = record_columns(sl)
    semb = PCAReducer(50).fit(sfeats).transform(sfeats)
    struths = {"plane": [text(v) for v in scols["plane"]], "sequence": [text(v) for v in scols["sequence"]],
               "subject": [text(v) for v in scols["subject"]]}
    for k in (3, 4):
        sparts = partitions(semb, k, a.seeds)
        scells = ami_cells(sparts, struths)
        print(f"\n## Slice level: {len(sl)} slices (8 per plane per volume), k = {k}\n")
        print("| clustering | AMI plane | AMI sequence | AMI subject |\n| --- | --- | --- | --- |")
        for m, row in scells.items():
            print(f"| {m} | {row['plane']} | {row['sequence']} | {row['subject']} |")
        srows = ranking(scols, sparts, a.permutations)
        print("\n" + associations.headline(srows))

    # -- 3. costs -------------------------------------------------------------------------
    n = len(recs)
    print(f"\n## Costs ({n} slices of {len(mid.records)} volumes; ratios measured in this process)\n")
    print(f"- scan axial:8 (robust brain extent) / scan axial:mid (no mask): {t_mask / t_mid:.2f}")
    print(f"- intensity descriptors / feature extraction, cold cache: {t_desc / t_cold:.2f}")
    print(f"- intensity descriptors / feature extraction, warm cache: {t_desc / t_warm:.2f}")
    big = 1_000_000
    rng = np.random.default_rng(0)
    g = rng.integers(0, 8, big)
    t0 = time.perf_counter()
    associations.rank_associations({"cat": [str(x) for x in rng.integers(0, 5, big)],
                                    "num": [f"{x:.4f}" for x in rng.normal(size=big)]},
                                   {"cluster": [str(x) for x in g], "level_2": [str(x % 2) for x in g],
                                    "level_3": [str(x % 3) for x in g]}, permutations=a.permutations)
    print(f"- associations at 1M rows, 2 columns x 3 partitions, {a.permutations} permutations on "
          f"{associations.PERMUTATION_ROWS} rows: {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
