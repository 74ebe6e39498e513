"""How far below its verified similarity does a true near-duplicate pair sit in the search?

``checks.duplicates.near_pairs`` verifies the candidates whose projected search similarity reaches
``near_similarity`` minus ``SEARCH_MARGIN`` (exact path) or ``SEARCH_MARGIN_LARGE`` (large path). This runs
the same search with a wide floor (0.12 below), keeps
each candidate's best search similarity, verifies every candidate, and counts the candidates and the
verified pairs each margin would keep, on both paths: exact (128-d codes, 4 crops; up to 20,000
images) and large (faiss, 64-d, 2 crops). It reads the module's internals on purpose (a probe, not
an API).

    python benchmarks/checks_planted.py --planting dev --keep /tmp/dev      # the planted folders
    python benchmarks/near_margin.py /tmp/dev                               # or oblique:N (in memory)
"""
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from brainclust.checks import duplicates as D, nearcode
from brainclust.checks.flags import Thresholds
from brainclust.checks.neighbors import Searcher

THR = Thresholds().near_similarity
MARGINS = (0.12, 0.10, 0.08, 0.06, 0.05, 0.04, 0.03, 0.02, 0.01)


def thumbs_of(name):
    if not name.startswith("oblique:"):
        from brainclust.checks.descriptors import describe_records
        from brainclust.io.scan import scan
        recs = scan(name).records
        desc = describe_records(recs, workers=2, progress=False)
        _, first = np.unique(desc.pixel_sha256, return_index=True)
        return desc.thumbs, np.sort(first)
    import bench_million as bm
    n = int(name.split(":")[1])
    vols = bm.volumes(Path(__file__).resolve().parents[2] / "shared" / "data" / "brain_mri_volumes_dev")
    t = np.stack([np.asarray(bm.oblique(vols, i, 64), np.uint8) for i in range(n)])
    return t, np.arange(n)


def search(thumbs, rows, large):
    proj = D._projection(thumbs, rows, 0, D.SEARCH_DIM_LARGE if large else D.SEARCH_DIM)
    base = D._project(thumbs, rows, proj, 8192)
    s = Searcher(base, "faiss" if large else "exact", 20000, 0)
    floor = THR - max(MARGINS)
    k = min(D.SEARCH_K, len(rows))
    pairs, sims = [], []
    for crop in (nearcode.SEARCH_CROPS_LARGE if large else nearcode.SEARCH_CROPS):
        for st in range(0, len(rows), 8192):
            c = nearcode.codes(thumbs[rows[st:st + 8192]], crop)
            for flip in nearcode.FLIPS:
                q = nearcode.flipped(c, flip)
                sm, idx = s.search(q if proj is None else q @ proj, k)
                a, b = np.nonzero((sm >= floor) & (idx >= 0))
                other = idx[a, b]
                keep = other != a + st
                pa, pb = rows[a[keep] + st], rows[other[keep]]
                pairs.append(np.stack([np.minimum(pa, pb), np.maximum(pa, pb)], 1))
                sims.append(sm[a[keep], b[keep]])
    pairs, sims = np.concatenate(pairs), np.concatenate(sims)
    order = np.lexsort((-sims, pairs[:, 1], pairs[:, 0]))
    pairs, sims = pairs[order], sims[order]
    first = np.ones(len(pairs), bool)
    first[1:] = np.any(pairs[1:] != pairs[:-1], axis=1)
    return pairs[first], sims[first]  # the best search similarity of each distinct pair


def main():
    name = sys.argv[1]
    thumbs, rows = thumbs_of(name)
    print(f"{name}: {len(rows)} distinct thumbnails")
    for large in (False, True):
        t0 = time.perf_counter()
        pairs, ssim = search(thumbs, rows, large)
        t1 = time.perf_counter()
        vsim = D._verify(thumbs, pairs, progress=False)
        t2 = time.perf_counter()
        true = vsim >= THR
        print(f"  {'large (faiss 64-d)' if large else 'exact (128-d)'}: search {t1 - t0:.1f} s, "
              f"verify {t2 - t1:.1f} s; "
              f"{len(pairs)} candidates at margin {max(MARGINS)}, {true.sum()} verified")
        if true.any():
            gap = vsim[true] - ssim[true]
            print(f"    verified pairs: search sim min {ssim[true].min():.4f}, "
                  f"verified - search gap max {gap.max():.4f}")
        for m in MARGINS:
            kept = ssim >= THR - m
            print(f"    margin {m:.2f}: candidates {kept.sum():>10d}  "
                  f"verified kept {int((kept & true).sum()):>7d} / {int(true.sum())}")


main()
