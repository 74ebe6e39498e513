"""Real slices cropped tight to the head: how many does ``not_mri`` flag? (docs/checks.md, "Likeness")

Every other image of brain_tumor_4class_dev is cropped to the head (pixels above a tenth of its
maximum) and 5 % further in on every side, so that no air is left around it; the other half is
kept whole. The folder is checked with the default thresholds and with the likeness rule off
(``likeness_unlike_below=-1e9,likeness_alike_above=1e9,likeness_reference_below=-1e9,likeness_picture_z=-1e9``),
and the images flagged ``not_mri`` are counted (every one is a real slice).

    PYTHONPATH=src python benchmarks/checks_tight_crops.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "brain_tumor_4class_dev"


def tight_crop(a: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(a > 0.1 * a.max())
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    dy, dx = int(0.05 * (y1 - y0)), int(0.05 * (x1 - x0))
    return a[y0 + dy:y1 - dy + 1, x0 + dx:x1 - dx + 1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"real data not found at {args.data}", file=sys.stderr)
        return 2
    from brainclust.checks.flags import Thresholds
    from brainclust.checks.stage import check_folder

    root = Path(tempfile.mkdtemp(prefix="tight_crops_"))
    files = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    for k, p in enumerate(files):
        a = np.asarray(Image.open(p).convert("L"))
        q = root / p.relative_to(args.data).with_suffix(".png")
        q.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(tight_crop(a) if k % 2 and a.max() > 0 else a).save(q)
    off = Thresholds(likeness_unlike_below=-1e9, likeness_alike_above=1e9, likeness_reference_below=-1e9,
                     likeness_picture_z=-1e9)
    for name, t in (("default", Thresholds()), ("likeness off", off)):
        res = check_folder(root, thresholds=t, progress=False)
        hit = [p for p, f in zip(res.paths, res.flags) if "not_mri" in f]
        scored = np.isfinite(res.likeness_z)
        print(f"{name}: {len(hit)} of {len(res.paths)} real slices flagged not_mri; likeness scored "
              f"{int(scored.sum())} (lowest z "
              f"{np.nanmin(res.likeness_z) if scored.any() else float('nan'):.2f}); {hit[:8]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
