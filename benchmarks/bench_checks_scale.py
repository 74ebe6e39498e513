"""Scale of the data checks from stored descriptors: exact-duplicate grouping and near-duplicate search.

No images are decoded: the inputs are generated the way a run stores them.

- exact duplicates: n content hashes (hex SHA-256), 3 % of them copies of earlier ones,
  grouped by :func:`brainclust.checks.duplicates.first_of_hash`;
- near duplicates: n stored search vectors (64 float32: the projected near-duplicate codes),
  drawn around 2,000 centres so that unrelated images are similar (as MRI slices are), with 1 %
  planted near copies (cosine ~0.99 to their source). The search is the one of
  :func:`brainclust.checks.duplicates.near_pairs`: one index, 16 query passes below 20,000 images
  (4 flips x 4 crops; exact) and 8 above (4 flips x 2 crops; faiss); here each pass perturbs the queries
  slightly, the top 8 neighbours per query, candidates
  kept above the verification floor (0.925). Reported: time, peak RSS of the process, and the
  recall of the planted pairs.
- the library choice: faiss IVF-Flat vs usearch HNSW vs exact, one pass of n queries, recall@8
  against exact on 1,000 queries.

Each case runs in its own process (peak RSS is per process):

    PYTHONPATH=src python benchmarks/bench_checks_scale.py --sizes 10000 100000 1000000
    PYTHONPATH=src python benchmarks/bench_checks_scale.py --compare --sizes 10000 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

DIM = 64  # the projected codes above the exact-search size (brainclust.checks.duplicates.SEARCH_DIM_LARGE)
FLOOR = 0.925


def vectors(n: int, seed: int = 0, chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """(n, DIM) unit float32 vectors around 2,000 centres, with 1 % planted near copies; planted (m, 2)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2000, DIM)).astype(np.float32)
    out = np.empty((n, DIM), np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        x = centres[rng.integers(0, 2000, m)] + 0.45 * rng.normal(size=(m, DIM)).astype(np.float32)
        out[s:s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    m = n // 100
    src = rng.choice(n // 2, m, replace=False)
    dst = n // 2 + rng.choice(n - n // 2, m, replace=False)
    y = out[src] + 0.012 * rng.normal(size=(m, DIM)).astype(np.float32)
    out[dst] = y / np.linalg.norm(y, axis=1, keepdims=True)
    return out, np.stack([src, dst], 1)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_seconds() -> float:
    """User + system CPU time of this process (robust to other jobs on a shared machine)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def case_exact(n: int) -> dict:
    from brainclust.checks.duplicates import first_of_hash

    rng = np.random.default_rng(0)
    hashes = [f"{x:064x}" for x in rng.integers(0, 2**63, n, dtype=np.int64)]
    dup = rng.choice(np.arange(1, n), n * 3 // 100, replace=False)
    for i in dup:
        hashes[i] = hashes[int(rng.integers(0, i))]
    t0 = time.perf_counter()
    first = first_of_hash(hashes)
    t = time.perf_counter() - t0
    return {"case": "exact-duplicate grouping", "n": n, "seconds": t, "peak_rss_mb": peak_rss_mb(),
            "duplicates": int((first != np.arange(n)).sum())}


def case_near(n: int, backend: str) -> dict:
    from brainclust.checks.neighbors import Searcher

    x, planted = vectors(n)
    rng = np.random.default_rng(1)
    t0, cpu0 = time.perf_counter(), cpu_seconds()
    searcher = Searcher(x, backend=backend, exact_max=20000)
    t_build = time.perf_counter() - t0
    found = set()
    chunk = 100_000
    from brainclust.checks import nearcode

    crops = nearcode.SEARCH_CROPS if searcher.exact else nearcode.SEARCH_CROPS_LARGE
    passes = len(nearcode.FLIPS) * len(crops)  # 4 flips x 4 crops (exact) or x 2 crops (faiss)
    for p in range(passes):
        for s in range(0, n, chunk):
            q = x[s:s + chunk]
            if p:
                q = q + 0.004 * rng.normal(size=q.shape).astype(np.float32)
                q /= np.linalg.norm(q, axis=1, keepdims=True)
            sims, idx = searcher.search(q, 8)
            a, b = np.nonzero((sims >= FLOOR) & (idx >= 0))
            other = idx[a, b]
            keep = other != a + s
            lo = np.minimum(a[keep] + s, other[keep])
            hi = np.maximum(a[keep] + s, other[keep])
            found.update(zip(lo.tolist(), hi.tolist()))
    t = time.perf_counter() - t0
    planted_set = {(int(min(a, b)), int(max(a, b))) for a, b in planted}
    return {"case": f"near-duplicate search ({searcher.__class__.__name__}, "
                    f"{'exact' if searcher.exact else 'faiss IVF-SQ8, exact re-score'})", "n": n, "seconds": t,
            "build_seconds": t_build, "cpu_seconds": cpu_seconds() - cpu0, "peak_rss_mb": peak_rss_mb(),
            "candidates": len(found),
            "planted_recall": len(planted_set & found) / max(len(planted_set), 1)}


def case_compare(n: int, lib: str) -> dict:
    x, _ = vectors(n)
    rng = np.random.default_rng(2)
    qi = rng.choice(n, 1000, replace=False)
    t0 = time.perf_counter()
    if lib == "faiss":
        from brainclust.checks.neighbors import FaissIndex

        index = FaissIndex(x)
        build = time.perf_counter() - t0
        t1 = time.perf_counter()
        _, idx = index.search(x, 8)
    elif lib == "usearch":
        from usearch.index import Index

        index = Index(ndim=DIM, metric="ip", dtype="f32", connectivity=16, expansion_add=128, expansion_search=64)
        index.add(np.arange(n), x, threads=os.cpu_count() or 1)
        build = time.perf_counter() - t0
        t1 = time.perf_counter()
        res = index.search(x, 8, threads=os.cpu_count() or 1)
        idx = np.asarray(res.keys).astype(np.int64)
    else:
        from brainclust.checks.neighbors import exact_knn

        build = 0.0
        t1 = time.perf_counter()
        _, idx = exact_knn(x, x, 8)
    search = time.perf_counter() - t1
    from brainclust.checks.neighbors import exact_knn

    _, ref = exact_knn(x, x[qi], 8)
    recall = float(np.mean([len(set(idx[q]) & set(ref[j])) / 8 for j, q in enumerate(qi)]))
    return {"case": f"one pass, {lib}", "n": n, "build_seconds": build, "search_seconds": search,
            "seconds": build + search, "peak_rss_mb": peak_rss_mb(), "recall_at_8": recall}


def run_child(args: list[str]) -> dict:
    env = dict(os.environ)
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env)
    if out.returncode:
        return {"case": " ".join(args), "error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--compare", action="store_true", help="compare faiss, usearch and exact (one pass)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, n = args.child[0], int(args.child[1])
        if kind == "exact":
            r = case_exact(n)
        elif kind == "near":
            r = case_near(n, args.child[2])
        else:
            r = case_compare(n, args.child[2])
        print(json.dumps(r))
        return 0
    rows = []
    for n in args.sizes:
        if args.compare:
            libs = ["faiss", "usearch"] + (["exact"] if n <= 100_000 else [])
            rows += [run_child(["compare", str(n), lib]) for lib in libs]
        else:
            rows.append(run_child(["exact", str(n)]))
            rows.append(run_child(["near", str(n), "auto"]))
        for r in rows[-2:]:
            print(json.dumps(r), flush=True)
    print(f"\nload average: {os.getloadavg()[0]:.1f}")
    print("\n| case | n | seconds | peak RSS (MB) | recall |\n| --- | --- | --- | --- | --- |")
    for r in rows:
        rec = r.get("planted_recall", r.get("recall_at_8", ""))
        print(f"| {r.get('case')} | {r.get('n', '')} | {r.get('seconds', float('nan')):.1f} | "
              f"{r.get('peak_rss_mb', float('nan')):.0f} | {rec if rec == '' else f'{rec:.4f}'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
