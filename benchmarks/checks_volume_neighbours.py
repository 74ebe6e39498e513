"""How often neighbouring slices cut from one volume verify as near duplicates.

Cuts, from the first ``--volumes`` NIfTI volumes of ``brain_mri_volumes_dev``, the 9 slices around
the middle of each axis (as PNG files on each slice's 0.5-99.5 percentile scale, the way slice
folders are usually made), runs ``brainclust check`` on them (``check_folder``), and prints the
share of images flagged ``duplicate`` or ``near_duplicate`` and, per gap between two slices of one
volume and axis (1, 2, 4 slices = mm in these volumes), the median code similarity and the share at
or above ``near_similarity``.

    PYTHONPATH=src python benchmarks/checks_volume_neighbours.py --volumes 6
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "brain_mri_volumes_dev"


def cut(volumes: list[Path], dest: Path, half: int = 4) -> None:
    import nibabel as nib

    for f in volumes:
        vol = np.asanyarray(nib.as_closest_canonical(nib.load(f)).dataobj).astype(np.float32)
        for ax in range(3):
            mid = vol.shape[ax] // 2
            for k in range(mid - half, mid + half + 1):
                sl = np.rot90(np.take(vol, k, axis=ax))
                lo, hi = np.percentile(sl, [0.5, 99.5])
                arr = (np.clip((sl - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)
                Image.fromarray(arr).save(dest / f"{f.name.split('.')[0]}_{ax}_{k:03d}.png")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--volumes", type=int, default=6)
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"real data not found at {DATA}", file=sys.stderr)
        return 2
    from brainclust.checks.flags import Thresholds
    from brainclust.checks.nearcode import pair_similarity
    from brainclust.checks.stage import check_folder

    tmp = Path(tempfile.mkdtemp(prefix="volume_neighbours_"))
    try:
        cut(sorted(DATA.glob("sub-*/anat/*.nii.gz"))[:args.volumes], tmp)
        res = check_folder(tmp, progress=False)
        flagged = sum(1 for f in res.flags if f & {"duplicate", "near_duplicate"})
        print(f"{len(res.paths)} slices of {args.volumes} volumes; flagged duplicate or near_duplicate: "
              f"{flagged} ({flagged / len(res.paths):.0%}); near_similarity {Thresholds().near_similarity}")
        index = {p: i for i, p in enumerate(res.paths)}
        for gap in (1, 2, 4):
            pairs = []
            for p in res.paths:
                stem, ax, k = p.rsplit("_", 2)
                q = f"{stem}_{ax}_{int(k[:3]) + gap:03d}.png"
                if q in index:
                    pairs.append((index[p], index[q]))
            i, j = np.array(pairs).T
            sims = pair_similarity(res.descriptors.thumbs, i, j)[0]
            print(f"gap {gap}: {len(sims)} pairs, median code similarity {np.median(sims):.4f}, "
                  f"at or above the threshold {np.mean(sims >= Thresholds().near_similarity):.0%}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
