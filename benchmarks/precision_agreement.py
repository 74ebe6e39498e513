"""Do the faster paths (OpenVINO fp32, bf16, int8) change the clusters? Agreement with ONNX Runtime fp32.

For every local data set (the 4-class dev set, yes/no, the demo set, and slices cut from the
BIDS volumes in all three planes), the features of every image are extracted with ONNX Runtime
fp32 (the reference) and with each other path, each into a fresh feature cache; then
:func:`brainclust.analysis.agreement.agreement` gives the mean (min) cosine of each image's two
vectors and, for hierarchical (average-cosine) and k-means clustering after PCA 50, the adjusted
Rand index between the reference partition and the other one, over 5 seeds (mean ± std). k is the
number of labels of the set; labels are not used otherwise. A control row per bf16/int8 path
adds Gaussian noise of the same size per image (the norm of that image's bf16/int8 - fp32 error)
to the fp32 features: it tells how much of the disagreement any perturbation of that size causes. Paths
that cannot run on this CPU
(bf16 without native bf16) are skipped with the reason.

Run (``make bench`` runs it)::

    .venv/bin/python benchmarks/precision_agreement.py --out benchmarks/results/precision_agreement.md
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from brainclust.analysis.agreement import agreement
from brainclust.analysis.common import markdown_table, mean_std_text
from brainclust.features import openvino_runtime as ovr, quantize
from brainclust.features.extractor import FeatureExtractor
from brainclust.pipeline import scan_nonempty

#: (runtime, precision) compared with the reference ("onnx", "fp32").
PATHS = (("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8"))


def data_sets(root: Path, tmp: Path) -> list[tuple[str, Path, str, int]]:
    """``(name, folder, --slices, k)`` of every local set that exists (the demo set is generated)."""
    from brainclust.data.demo import make_demo_dataset

    sets = []
    for name, k in (("brain_tumor_4class_dev", 4), ("brain_tumor_yes_no", 2)):
        if (root / name).is_dir():
            sets.append((name, root / name, "axial:mid", k))
    sets.append(("demo (generated)", Path(make_demo_dataset(tmp / "demo")), "axial:mid", 3))
    if (root / "brain_mri_volumes_dev").is_dir():
        sets.append(("volume slices, all-planes:10", root / "brain_mri_volumes_dev", "all-planes:10", 3))
    return sets


def why_not(runtime: str, precision: str) -> str | None:
    if not ovr.openvino_available():
        return "openvino not installed"
    if precision == "bf16" and not ovr.native_bf16():
        return "no native bf16 on this CPU"
    if precision == "int8" and not quantize.nncf_available():
        return "nncf not installed"
    return None


def features(records, backbone: str, runtime: str, precision: str, cache: Path) -> tuple[np.ndarray, float]:
    ex = FeatureExtractor(backbone=backbone, runtime=runtime, precision=precision, cache_dir=str(cache),
                          progress=False, num_workers=0)
    t = time.perf_counter()
    f = ex.fit(records).transform(records)
    return f, time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/precision_agreement.md")
    args = ap.parse_args(argv)
    logging.getLogger("brainclust").setLevel(logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="precision_agreement_"))
    rows = []
    try:
        for name, folder, slices, k in data_sets(Path(args.data_root), tmp):
            records = scan_nonempty(folder, True, slices, 0).records
            cache = tmp / "cache"
            shutil.rmtree(cache, ignore_errors=True)
            ref, t_ref = features(records, args.backbone, "onnx", "fp32", cache)
            print(f"[{name}] {len(records)} images; onnx fp32 {t_ref:.1f} s", flush=True)
            for runtime, precision in PATHS:
                why = why_not(runtime, precision)
                if why:
                    rows.append([name, len(records), f"{runtime} {precision}", f"skipped: {why}", "", ""])
                    continue
                shutil.rmtree(cache, ignore_errors=True)  # fresh caches: every path computes its features
                feats, t = features(records, args.backbone, runtime, precision, cache)
                res = [agreement(ref, feats, k, seed) for seed in range(args.seeds)]
                rows.append([name, len(records), f"{runtime} {precision}",
                             f"{res[0]['cosine_mean']:.4f} ({res[0]['cosine_min']:.4f})",
                             mean_std_text([r["ari_hierarchical"] for r in res]),
                             mean_std_text([r["ari_kmeans"] for r in res])])
                print(f"[{name}] {runtime} {precision}: {t:.1f} s; {rows[-1][3:]}", flush=True)
                if precision != "fp32":  # control: random noise of the same size per image on the fp32 features
                    rng = np.random.default_rng(0)
                    err = np.linalg.norm(feats - ref, axis=1, keepdims=True) / np.sqrt(ref.shape[1])
                    noisy = ref + rng.normal(size=ref.shape).astype(np.float32) * err
                    res = [agreement(ref, noisy, k, seed) for seed in range(args.seeds)]
                    rows.append([name, len(records), f"control: fp32 + Gaussian noise of the {precision} error",
                                 f"{res[0]['cosine_mean']:.4f} ({res[0]['cosine_min']:.4f})",
                                 mean_std_text([r["ari_hierarchical"] for r in res]),
                                 mean_std_text([r["ari_kmeans"] for r in res])])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    table = markdown_table(["set", "images", "path", "cosine to onnx fp32, mean (min)",
                            f"ARI hierarchical, {args.seeds} seeds", f"ARI k-means, {args.seeds} seeds"], rows)
    text = (f"backbone {args.backbone}; reference ONNX Runtime fp32; OpenVINO capabilities "
            f"{','.join(ovr.cpu_capabilities()) or 'n/a'}; int8 calibrated on {quantize.CALIBRATION_SIZE} images "
            f"of each set (seed {quantize.CALIBRATION_SEED}); PCA 50; k = number of labels\n\n{table}\n")
    print("\n" + text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"Command: {' '.join([Path(sys.executable).name, *sys.argv])}\n\n" + text)
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
