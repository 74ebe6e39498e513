"""Pixel windows of the near-duplicate check (brainclust.checks.windows): what they compare, what they find, what
they cost.

Runs ``check_folder`` on FOLDER (no cache) with the window comparison timed inside it, then prints:
- how many candidate pairs fell short of near_similarity, how many of them had sizes that allow a window;
- the window similarities found, highest first (the pairs at or above window_similarity, then the next
  ones below: the margin);
- the comparison's share of check_folder's wall time (same process).

    PYTHONPATH=src python benchmarks/checks_planted.py --planting dev --keep /tmp/pl_dev
    PYTHONPATH=src python benchmarks/checks_windows.py /tmp/pl_dev
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from brainclust.checks import windows
from brainclust.checks.descriptors import DESCRIPTOR_NAMES
from brainclust.checks.flags import Thresholds
from brainclust.checks.stage import check_folder


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("--show", type=int, default=8, help="pairs below the threshold to list (default 8)")
    args = ap.parse_args(argv)
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    spent = [0.0]
    inner = windows.window_similarity

    def timed(records, sizes, pairs, progress=None):
        t = time.perf_counter()
        out = inner(records, sizes, pairs, progress)
        spent[0] += time.perf_counter() - t
        seen.append((np.asarray(pairs), out))
        return out

    windows.window_similarity = timed
    t0 = time.perf_counter()
    res = check_folder(args.folder, progress=False, cache_dir=False)
    total = time.perf_counter() - t0
    pairs = np.concatenate([p for p, _ in seen]) if seen else np.zeros((0, 2), int)
    scores = np.concatenate([s for _, s in seen]) if seen else np.zeros(0)
    compared = ~np.isnan(scores)
    thr = Thresholds().window_similarity
    sizes = res.descriptors.vectors[:, [DESCRIPTOR_NAMES.index("width"), DESCRIPTOR_NAMES.index("height")]]
    print(f"{args.folder}: {len(res.paths)} images; {len(pairs)} candidate pairs short of near_similarity, "
          f"{int(windows.fits(pairs, sizes).sum())} of sizes that allow a window, {int(compared.sum())} of them "
          f"past the coarse scale")
    order = np.argsort(-np.where(compared, scores, -np.inf))
    shown_below = 0
    for k in order[:int(compared.sum())]:
        below = scores[k] < thr
        if below:
            shown_below += 1
            if shown_below > args.show:
                break
        a, b = pairs[k]
        print(f"  {scores[k]:.4f} {'below' if below else 'KEPT '} {res.paths[a]} | {res.paths[b]}")
    print(f"window comparison {spent[0]:.2f} s of check_folder's {total:.1f} s: {spent[0] / total:.3f} of it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
