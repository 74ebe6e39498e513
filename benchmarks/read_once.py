"""Cost of decoding from one read (read, SHA-256, decode from the buffer) against decoding by path.

    PYTHONPATH=src python benchmarks/read_once.py [DATA]   # default ../shared/data

Per set: the median over 5 interleaved rounds of the time to decode every record, by path (the loaders
the extractor used before: load_gray, dicom.load_frame, nifti.load_slice, NIfTI volumes cached)
and through scan.read_record, in the same process; prints the ratio read_record / by path.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from brainclust.io.formats import nifti
from brainclust.io.scan import load_gray, read_record, scan


def by_path(rec):
    if rec.type == "nifti":
        return nifti.load_slice(rec.abspath, rec.frame)
    return load_gray(rec.abspath)


def timed(fns, records, rounds=5):
    """Median seconds of each function over ``rounds`` interleaved rounds (the machine drifts)."""
    out = [[] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            nifti._HASHED.clear()
            nifti._cached.cache_clear()
            t0 = time.perf_counter()
            for r in records:
                fn(r)
            out[i].append(time.perf_counter() - t0)
    return [statistics.median(o) for o in out]


def main(root: Path) -> None:
    sets = [("brain_tumor_4class_dev", {}), ("brain_tumor_yes_no", {}),
            ("brain_mri_volumes_dev", {"slices": "axial:5"})]
    for name, kw in sets:
        if not (root / name).is_dir():
            print(f"{name}: missing, skipped")
            continue
        recs = scan(root / name, **kw).records
        a, b = timed([by_path, read_record], recs)
        print(f"{name}: {len(recs)} images; by path {a:.2f} s, read once {b:.2f} s, ratio {b / a:.2f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
