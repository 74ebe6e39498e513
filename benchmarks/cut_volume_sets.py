"""Cut labelled 2-D slice sets from the BraTS volumes of ``brain_mri_volumes_dev`` (issue 24's local analogues).

The shared folder holds 5 subjects x 4 co-registered sequences (T1w, ce-gadolinium T1w,
T2w, FLAIR; skull-stripped, 240 x 240 x 155, 1 mm). Every slice written here knows its
plane, sequence, subject, site and position, so each set below is a clustering task with
a known answer. Slice positions are chosen per subject on its T1w (the brain's extent
along the plane's axis, :func:`brainclust.io.formats.nifti.brain_range`, then
``N`` positions evenly spread over its central ``1 - 2 * EDGE`` part), and the *same*
indices are cut from the subject's four sequences, so the heights are matched across
sequences. Grey levels: each volume is mapped to 8 bits by ``0 .. its 99.5th brain
percentile`` (one scale per volume, as an export to PNG would do); slices keep their
native shape (axial 240 x 240, coronal and sagittal 155 x 240 as displayed).

Sets (one folder each, first-level sub-folders = the label; plus ``metadata.csv``):

``plane``          (1440) every sequence, the three planes, 24 positions per plane and
                   volume; label = plane (k = 3). Analogue of hidden set 5.
``sequence``       (1000) axial only, 50 matched heights per subject, the same subjects in
                   every class; label = sequence (k = 4). Analogue of hidden set 4.
``ce_subject``     (900) ce-gadolinium T1w only, the three planes, 60 positions per plane;
                   label = subject (k = 5). A "one contrast, mixed planes, structure
                   within the plane" analogue of hidden set 3. What it measures: whether a
                   factor that is constant within a volume (the patient: head shape, tumour
                   position, scanner and site) can be found under the dominant plane. It is
                   *not* a pathology task (no segmentation ships with the data).
``mixed_sequence`` (1440) the images of ``plane`` with label = sequence (k = 4): the same
                   pictures as ``plane``, asking the opposite question (the plane is the
                   nuisance). No label-free rule can answer both ``plane`` and
                   ``mixed_sequence`` on identical images; the pair shows it.

``metadata.csv`` columns: ``path`` (relative to the set folder), ``plane``, ``sequence``,
``subject``, ``site``, ``index`` (slice index in the volume), ``position`` (0 = the first
brain slice along the axis, 1 = the last). Labels and metadata are for scoring and for
``--within/--remove`` experiments only; never as features.

Usage::

    python benchmarks/cut_volume_sets.py OUT [--data ../shared/data/brain_mri_volumes_dev]

Writes ``OUT/<set>/...``; OUT must be outside the repository (images are never committed).
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image

from brainclust.io.atomic import atomic_write_bytes
from brainclust.io.formats import nifti

SEQUENCES = {"T1w": "T1", "ce-gadolinium_T1w": "T1C", "T2w": "T2", "FLAIR": "FLAIR"}
PLANES = ("axial", "coronal", "sagittal")
#: Fraction of the brain's extent left out at each end (near-empty edge slices).
EDGE = 0.1
SETS = {  # name -> (sequences, planes, positions per plane and volume, label column)
    "plane": (tuple(SEQUENCES), PLANES, 24, "plane"),
    "sequence": (tuple(SEQUENCES), ("axial",), 50, "sequence"),
    "ce_subject": (("ce-gadolinium_T1w",), PLANES, 60, "subject"),
    "mixed_sequence": (tuple(SEQUENCES), PLANES, 24, "sequence"),
}


def positions(vol: np.ndarray, plane: str, n: int) -> list[int]:
    """``n`` slice indices evenly spread over the central part of the brain's extent along ``plane``."""
    first, last = nifti.brain_range(vol, plane)
    lo, hi = first + EDGE * (last - first), last - EDGE * (last - first)
    return sorted({int(round(v)) for v in np.linspace(lo, hi, n)})


def to_png(slice2d: np.ndarray, top: float) -> bytes:
    img = np.clip(slice2d / max(top, 1e-6), 0, 1) * 255
    buf = io.BytesIO()
    Image.fromarray(np.round(img).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def sites(root: Path) -> dict[str, str]:
    with open(root / "participants.tsv", newline="") as fh:
        return {r["participant_id"]: r["site"] for r in csv.DictReader(fh, delimiter="\t")}


def cut_set(root: Path, out: Path, name: str) -> int:
    seqs, planes, n, label = SETS[name]
    site = sites(root)
    rows = []
    for subject in sorted(site):
        ref = nifti.load_volume(root / subject / "anat" / f"{subject}_T1w.nii.gz")
        where = {p: positions(ref, p, n) for p in planes}
        ext = {p: nifti.brain_range(ref, p) for p in planes}
        for seq in seqs:
            vol = nifti.load_volume(root / subject / "anat" / f"{subject}_{seq}.nii.gz")
            top = float(np.percentile(vol[vol > 0], 99.5))
            for p in planes:
                for idx in where[p]:
                    meta = {"plane": p, "sequence": SEQUENCES[seq], "subject": subject, "site": site[subject]}
                    rel = f"{meta[label]}/{subject}_{SEQUENCES[seq]}_{p}_{idx:03d}.png"
                    atomic_write_bytes(out / name / rel, to_png(nifti.cut(vol, p, idx), top))
                    first, last = ext[p]
                    rows.append({"path": rel, **meta, "index": idx,
                                 "position": round((idx - first) / max(1, last - first), 4)})
    with open(out / name / "metadata.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / "../shared/data/brain_mri_volumes_dev"))
    ap.add_argument("--sets", default=",".join(SETS))
    a = ap.parse_args()
    out, root = Path(a.out).resolve(), Path(a.data).resolve()
    repo = Path(__file__).resolve().parents[1]
    if out == repo or repo in out.parents:
        raise SystemExit(f"OUT '{out}' is inside the repository; images are never committed: choose another folder")
    for name in a.sets.split(","):
        print(f"{name}: {cut_set(root, out, name)} slices -> {out / name}")


if __name__ == "__main__":
    main()
