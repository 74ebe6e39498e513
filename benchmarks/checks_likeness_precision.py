"""Do the likeness rule's verdicts hold when its features are bf16 (or int8) instead of fp32?

For each folder: the checks (``run_checks``) with the likeness features in fp32, in bf16 (OpenVINO, as a
``--precision bf16`` run on the CPU gives them; needs native bf16) and in int8 (OpenVINO + NNCF,
calibrated on the folder's references and candidates; not used by brainclust, measured to show why).
Prints, per folder and precision, the largest change of a likeness z-score against fp32 and the
images whose flags change (docs/checks.md, "Likeness").

    PYTHONPATH=src python benchmarks/checks_likeness_precision.py FOLDER [FOLDER ...] [--cache-dir DIR]

The folders used: the three plantings kept with ``benchmarks/checks_planted.py --planting P --keep DIR``
and the tight-crop folders of ``benchmarks/checks_tight_crops.py`` (docs/checks.md).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile

import numpy as np


def int8_features(records, extraction, view=None):
    """The likeness rule's ``_features`` with an int8 extractor calibrated on ``records``."""
    from brainclust.features.extractor import FeatureExtractor

    opts = {**extraction, "precision": "int8", "runtime": "openvino"}
    ex = FeatureExtractor(backbone="efficientnet_lite0", view=view, **opts).fit(list(records))
    x = np.asarray(ex.transform(list(records)), np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.full_like(x, np.nan), where=norm > 0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--cache-dir", default=None, help="feature store (default: a new temporary folder)")
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    from brainclust.checks import likeness
    from brainclust.checks.stage import run_checks
    from brainclust.io.scan import scan

    cache = args.cache_dir or tempfile.mkdtemp(prefix="likeness_precision_")
    print("| folder | precision | scored | max abs z change vs fp32 | not_mri fp32 | not_mri | flags changed |")
    print("|---|---|---:|---:|---:|---:|---|")
    for folder in args.folders:
        records = scan(folder, progress=False).records
        ref = run_checks(records, progress=False, cache_dir=cache)
        original = likeness._features
        for name in ("bf16", "int8"):
            try:
                if name == "int8":
                    likeness._features = int8_features
                    res = run_checks(records, progress=False, cache_dir=cache)
                else:
                    res = run_checks(records, progress=False, cache_dir=cache, likeness_precision="bf16",
                                     likeness_runtime="openvino")
            finally:
                likeness._features = original
            both = np.isfinite(ref.likeness_z) & np.isfinite(res.likeness_z)
            dz = float(np.abs(ref.likeness_z[both] - res.likeness_z[both]).max()) if both.any() else float("nan")
            changed = [p for p, a, b in zip(ref.paths, ref.flags, res.flags) if a != b]
            print(f"| {folder} | {name} | {int(both.sum())} | {dz:.2f} | {sum('not_mri' in f for f in ref.flags)} "
                  f"| {sum('not_mri' in f for f in res.flags)} | {len(changed)} {changed[:3]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
