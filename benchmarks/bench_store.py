"""Feature store (features/cache.py): write and read throughput, peak RSS and bytes written.

Writes ``--n`` synthetic ``--dim``-d float32 vectors in batches of ``--batch`` (one
transaction each, as the extractor does), then reads them all back in random order,
``--batch`` keys per ``fill`` call. Each phase runs in a fresh process, so its peak
RSS (``resource.getrusage``) is its own; bytes written are the process's ``wchar``
(``/proc/self/io``: everything passed to write(2), WAL and checkpoints included).

    python benchmarks/bench_store.py --n 10000 100000 [--dim 1280] [--dir /tmp/store-bench]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SETTINGS = {"bench": "store"}


def _key(i: int) -> str:
    """Keys like the real ones: SHA-256 hex digests, in random order."""
    return hashlib.sha256(str(i).encode()).hexdigest()


def _io() -> dict:
    with open("/proc/self/io") as fh:
        return {k: int(v) for k, v in (line.split(":") for line in fh)}


def _phase(kind: str, root: str, n: int, dim: int, batch: int) -> dict:
    from brainclust.features.cache import FeatureCache

    rng = np.random.default_rng(0)
    io0, t0 = _io(), time.perf_counter()
    store = FeatureCache(root, SETTINGS)
    if kind == "write":
        for s in range(0, n, batch):
            m = min(batch, n - s)
            store.put_many([_key(i) for i in range(s, s + m)], rng.standard_normal((m, dim), np.float32))
    else:
        order = rng.permutation(n)
        buf = np.empty((batch, dim), np.float32)
        hits = 0
        for s in range(0, n, batch):
            keys = [_key(i) for i in order[s:s + batch]]
            hits += int(store.fill(keys, buf[:len(keys)]).sum())
        assert hits == n, hits
    store.close()
    secs, io1 = time.perf_counter() - t0, _io()
    return {"seconds": secs, "vectors_per_s": n / secs, "MB_per_s": n * dim * 4 / secs / 1e6,
            "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "wchar_MB": (io1["wchar"] - io0["wchar"]) / 1e6, "rchar_MB": (io1["rchar"] - io0["rchar"]) / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[10000, 100000])
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--dir", default="/tmp/brainclust-store-bench")
    ap.add_argument("--json")
    ap.add_argument("--phase", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(_phase(args.phase[0], args.dir, int(args.phase[1]), args.dim, args.batch)))
        return
    results = []
    for n in args.n:
        shutil.rmtree(args.dir, ignore_errors=True)
        row = {"n": n, "dim": args.dim, "payload_MB": n * args.dim * 4 / 1e6}
        for kind in ("write", "read"):
            cmd = [sys.executable, __file__, "--phase", kind, str(n), "--dim", str(args.dim),
                   "--batch", str(args.batch), "--dir", args.dir]
            row[kind] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        row["files_MB"] = sum(p.stat().st_size for p in Path(args.dir).rglob("*") if p.is_file()) / 1e6
        results.append(row)
        print(json.dumps(row), flush=True)
    shutil.rmtree(args.dir, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
