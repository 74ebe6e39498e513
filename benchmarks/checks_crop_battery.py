"""Recall of one-sided and corner crops of real slices as near duplicates (lossless PNG, 30 pairs per kind).

Each pair is a 4-class slice saved as PNG and a crop of it that removes 2-5 % of one side, or 2-4 % of two
adjacent sides (a corner), also PNG; 210 pairs, every source a different slice. Prints, per kind, how many
crops share their source's duplicate group, and how many pairs of sources were grouped (natural near copies
in the data; the same with any search margin).

    PYTHONPATH=src python benchmarks/checks_crop_battery.py [--margin 0.06]

``--margin`` sets the exact path's search margin (``checks.duplicates.SEARCH_MARGIN``) for the run.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from brainclust.checks import duplicates
from brainclust.checks.stage import check_folder

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "brain_tumor_4class_dev"
#: Fractions removed from the left, top, right and bottom.
KINDS = {"left 2 %": (0.02, 0, 0, 0), "left 3 %": (0.03, 0, 0, 0), "left 4 %": (0.04, 0, 0, 0),
         "left 5 %": (0.05, 0, 0, 0), "corner 2 %": (0, 0.02, 0.02, 0), "corner 3 %": (0, 0.03, 0.03, 0),
         "corner 4 %": (0, 0.04, 0.04, 0)}
PER_KIND = 30


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--margin", type=float, help=f"the search margin (default {duplicates.SEARCH_MARGIN})")
    args = ap.parse_args(argv)
    if args.margin is not None:
        duplicates.SEARCH_MARGIN = args.margin
    if not DATA.is_dir():
        print(f"real data not found at {DATA}", file=sys.stderr)
        return 2
    files = random.Random(3).sample(sorted(DATA.rglob("*.jpg")), PER_KIND * len(KINDS))
    work = Path(tempfile.mkdtemp(prefix="crop_battery_"))
    pairs = []
    try:
        for n, f in enumerate(files):
            kind = list(KINDS)[n // PER_KIND]
            left, top, right, bottom = KINDS[kind]
            im = Image.open(f).convert("L")
            w, h = im.size
            im.save(work / f"{n:03d}_src.png")
            im.crop((round(left * w), round(top * h), w - round(right * w), h - round(bottom * h))).save(
                work / f"{n:03d}_crop.png")
            pairs.append((kind, f"{n:03d}_src.png", f"{n:03d}_crop.png"))
        t0 = time.perf_counter()
        res = check_folder(work, progress=False)
        took = time.perf_counter() - t0
        head = {p: (d or p) for p, d in zip(res.paths, res.duplicate_of)}
        found = {k: sum(head[c] == head[s] for kind, s, c in pairs if kind == k) for k in KINDS}
        sources = [s for _, s, _ in pairs]
        grouped = sum(head[a] == head[b] for i, a in enumerate(sources) for b in sources[i + 1:])
        print(f"margin {duplicates.SEARCH_MARGIN}: {len(pairs)} crops of {len(pairs)} slices, checks {took:.1f} s: "
              + ", ".join(f"{k} {v}/{PER_KIND}" for k, v in found.items())
              + f"; all {sum(found.values())}/{len(pairs)}; pairs of sources grouped: {grouped}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
