"""The window similarity (brainclust.checks.windows.match) of crops and of pairs that are not copies, on the real data.

Crops: slices of brain_tumor_4class_dev and of the dev volumes, cut 0-8 % off each side at random and flipped at
random, kept exact or saved as PNG or JPEG (quality 90, 75): the lowest score per kind, and how many fall below
the threshold. Pairs that are not copies, each with one image cropped the same way: neighbouring slices of one
volume (1, 2, 3 voxels apart), one position in two sequences of one subject, two subjects: the highest score
per kind. docs/checks.md, "Crops seen as pixel windows", tables the same kinds from a review's own scripts.

    PYTHONPATH=src python benchmarks/checks_windows_pairs.py
"""

from __future__ import annotations

import argparse
import io
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from brainclust.checks.flags import Thresholds
from brainclust.checks.windows import match

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SEQUENCES = ("T1w", "ce-gadolinium_T1w", "T2w", "FLAIR")


def volume(sub: int, seq: str) -> np.ndarray:
    import nibabel as nib

    path = next((DATA / "brain_mri_volumes_dev" / f"sub-0{sub}" / "anat").glob(f"sub-0{sub}_{seq}.nii*"))
    return np.asarray(nib.load(path).dataobj, np.float64)


def as8(a: np.ndarray) -> np.ndarray:
    top = np.percentile(a, 99.5)
    return np.clip(a / top * 255 if top > 0 else a, 0, 255).astype(np.uint8)


def crop(a: np.ndarray, rng: random.Random) -> np.ndarray:
    h, w = a.shape
    t, b, l, r = (rng.randint(0, int(0.08 * s)) for s in (h, h, w, w))
    if t + b + l + r == 0:
        l = 1
    fy, fx = rng.choice((1, -1)), rng.choice((1, -1))
    return a[t:h - b, l:w - r][::fy, ::fx]


def saved(a: np.ndarray, kind: str) -> np.ndarray:
    if kind == "exact":
        return a
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, "PNG" if kind == "png" else "JPEG",
                                                  **({} if kind == "png" else {"quality": int(kind[4:])}))
    return np.asarray(Image.open(buf), np.float64)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    thr = Thresholds().window_similarity
    crops: dict[str, list[float]] = defaultdict(list)
    slices = [np.asarray(Image.open(p).convert("L")) for p in
              rng.sample(sorted((DATA / "brain_tumor_4class_dev").rglob("*.jpg")), 40)]
    slices += [as8(np.take(volume(sub, seq), int(f * volume(sub, seq).shape[ax]), axis=ax))
               for sub in range(1, 6) for seq in ("T1w", "FLAIR") for ax, f in ((2, 0.45), (0, 0.5))]
    for a in slices:
        for kind in ("exact", "png", "jpeg90", "jpeg75"):
            crops[kind].append(match(a.astype(np.float64), saved(crop(a, rng), kind)))
    print(f"crops of {len(slices)} real slices (window similarity; threshold {thr}):")
    for kind, v in crops.items():
        v = np.array(v)
        print(f"  {kind}: lowest {np.nanmin(v):.4f}, below the threshold {int(np.sum(~(v >= thr)))} of {len(v)}")
    others: dict[str, list[float]] = defaultdict(list)
    for sub in range(1, 6):
        vols = {seq: volume(sub, seq) for seq in SEQUENCES}
        for ax in (0, 1, 2):
            n = vols["T1w"].shape[ax]
            for f in (0.35, 0.5, 0.65):
                z = int(f * n)
                for seq, v in vols.items():
                    here = np.take(v, z, axis=ax)
                    for d in (1, 2, 3):
                        others[f"neighbouring slices, {d} voxel(s) apart"].append(
                            match(here, crop(np.take(v, z + d, axis=ax), rng)))
                for a, b in (("T1w", "ce-gadolinium_T1w"), ("T2w", "FLAIR")):
                    others[f"one position, {a} and {b}"].append(
                        match(np.take(vols[a], z, axis=ax), crop(np.take(vols[b], z, axis=ax), rng)))
                other = volume(sub % 5 + 1, "T1w")
                if z < other.shape[ax]:
                    others["two subjects, T1w"].append(match(np.take(vols["T1w"], z, axis=ax),
                                                             crop(np.take(other, z, axis=ax), rng)))
    print("pairs that are not copies, one of each cropped:")
    for kind, v in others.items():
        v = np.array(v)
        print(f"  {kind}: highest {np.nanmax(v):.4f}, at or above the threshold {int(np.sum(v >= thr))} of {len(v)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
