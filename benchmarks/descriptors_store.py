"""Should the intensity descriptors be on by default, and does keeping them in the feature store pay? (docs/results.md)

    PYTHONPATH=src python benchmarks/descriptors_store.py [--data ../shared/data] [--rounds 3]

Per set (``brain_tumor_4class_dev``: 1000 JPEG slices; ``brain_mri_volumes_dev``: 20 NIfTI volumes x 8
axial slices), in one process, with a fresh temporary feature store:

1. one cold feature extraction (efficientnet_lite0; every image decoded and embedded);
2. ``rounds`` interleaved rounds of: a warm extraction (every vector from the store), the descriptors
   with an empty descriptor store (one decode per image, then stored:
   :func:`brainclust.features.descstore.describe_cached`), the descriptors again from the filled store;

and prints the medians and the ratios against the cold and the warm extraction. NIfTI volumes are
read afresh in every timed step (the volume cache is cleared).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from brainclust.features.descstore import describe_cached
from brainclust.features.extractor import FeatureExtractor
from brainclust.io.formats import nifti
from brainclust.io.scan import scan

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def timed(fn) -> float:
    nifti._cached.cache_clear()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(name: str, folder: Path, slices: str, rounds: int) -> None:
    records = scan(folder, slices=slices, progress=False).records
    with tempfile.TemporaryDirectory() as tmp:
        ex = FeatureExtractor(backbone="efficientnet_lite0", cache_dir=str(Path(tmp) / "features"),
                              progress=False).fit(records[:2])
        cold = timed(lambda: ex.extract(records))
        warm, d_cold, d_warm = [], [], []
        for r in range(rounds):
            store = str(Path(tmp) / f"desc{r}")
            warm.append(timed(lambda: ex.extract(records)))
            d_cold.append(timed(lambda: describe_cached(records, store, progress=False)))
            d_warm.append(timed(lambda: describe_cached(records, store, progress=False)))
    w, dc, dw = (statistics.median(x) for x in (warm, d_cold, d_warm))
    print(f"## {name}: {len(records)} images")
    print(f"- extraction: cold {cold:.1f} s, warm {w:.2f} s")
    print(f"- descriptors, empty store: {dc:.2f} s = {dc / cold:.2f} x cold extraction, {dc / w:.1f} x warm")
    print(f"- descriptors, from the store: {dw:.3f} s = {dw / cold:.4f} x cold extraction, {dw / w:.2f} x warm")
    print(f"- store / recompute: {dw / dc:.3f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for name, slices in (("brain_tumor_4class_dev", "axial:mid"), ("brain_mri_volumes_dev", "axial:8")):
        if (args.data / name).is_dir():
            measure(name, args.data / name, slices, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
