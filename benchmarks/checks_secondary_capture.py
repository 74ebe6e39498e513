"""DICOM Secondary Captures among real slices: screen grabs are ``not_mri``, slices saved as captures are not.

Builds, in a temporary folder, 200 slices of brain_tumor_4class_dev (a seeded sample, JPEG as shipped), four
screen captures (RGB Secondary Captures, Modality OT, conversion WSD: a grey ellipse with lines of text in a
corner, drawn with PIL), four more 4-class slices saved as grey Secondary Captures (Modality OT, as ``img2dcm``
writes a converted picture) and four as MR images. Runs ``brainclust check`` on it and prints each DICOM file's
flags, reason and likeness z. Expected since 2026-12-07: the four captures ``not_mri``, none of the slices.

    PYTHONPATH=src python benchmarks/checks_secondary_capture.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
FOUR = ROOT.parent / "shared" / "data" / "brain_tumor_4class_dev"
CAPTURE, MR = "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.4"


def write(path: Path, pixels: np.ndarray, sop_class: str, modality: str) -> None:
    """An uncompressed DICOM file of 8-bit pixels, grey (2-D) or RGB (H, W, 3); no patient fields."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop_class, meta.MediaStorageSOPInstanceUID, modality
    ds.ConversionType = "WSD" if sop_class == CAPTURE else None
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
    ds.PhotometricInterpretation = "RGB" if pixels.ndim == 3 else "MONOCHROME2"
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(pixels, np.uint8).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def screen(i: int) -> np.ndarray:
    im = Image.new("RGB", (512, 400))
    d = ImageDraw.Draw(im)
    d.ellipse([100 + 10 * i, 60, 400, 340 - 5 * i], fill=(120 + 10 * i,) * 3)
    d.ellipse([180, 140, 300 + 8 * i, 260], fill=(60,) * 3)
    for j in range(6):
        d.text((10, 10 + 14 * j), f"STUDY BRAIN^ROUTINE  ID 12345{j}  W:{400 + i} L:40", fill=(255, 255, 255))
    d.text((380, 370), "R  10mm", fill=(255, 255, 0))
    return np.asarray(im)


def build(out: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    pick = rng.choice(sorted(FOUR.rglob("*.jpg")), 208, replace=False)
    for p in pick[:200]:
        shutil.copyfile(p, out / f"{p.parent.name}_{p.name}")
    for i in range(4):
        write(out / f"screen{i}.dcm", screen(i), CAPTURE, "OT")
    for k, p in enumerate(pick[200:]):
        grey = np.asarray(Image.open(p).convert("L"))
        write(out / (f"capture{k}.dcm" if k < 4 else f"mr{k - 4}.dcm"), grey, CAPTURE if k < 4 else MR,
              "OT" if k < 4 else "MR")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, help="build the folder here and keep it (with the check's outputs)")
    args = ap.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="sc_"))
    data = base / "data"
    data.mkdir(parents=True, exist_ok=True)
    build(data)
    subprocess.run([sys.executable, "-m", "brainclust", "-q", "check", str(data), "--out", str(base / "out")],
                   check=True)
    with open(base / "out" / "quality.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        if r["path"].endswith(".dcm"):
            print(f"{r['path']:14} {r['flags'] or '-':28} {r['not_mri_reason'] or '-':18} z {r['likeness_z'] or '-'}")
    real = [r["path"] for r in rows if r["path"].endswith(".jpg") and "not_mri" in r["flags"]]
    print(f"real slices flagged not_mri: {len(real)} of 200 {real[:5]}")
    if not args.keep:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
