"""Whole runs on N dev images with each runtime/precision: extraction time ratios and cluster agreement.

``brainclust.run(folder, None, backbone=..., runtime=R, precision=P, k=4, method=M, cache_dir=FRESH)``
for (R, P) in onnx fp32 (the reference), openvino fp32, openvino bf16 (native bf16 only),
openvino int8, timed round-robin ``--repeats`` times. The extraction time is the run's
``timings_s["extract"]``. Two cache states, each timed:

* ``cold``: an empty cache folder: the one-time costs (ONNX export, OpenVINO conversion, int8
  calibration) are inside the extraction time;
* ``warm models``: an empty feature store, but the exported/converted/quantised networks of an
  earlier run are in the cache folder (``<cache>/onnx``, ``<cache>/openvino``), i.e. every later
  run on new images.

The folder of N images is made of hard links (or, across file systems, copies) of N images spread
over the 4-class dev set's classes, in a temporary folder removed at the end. ARI: the run's
clusters against the reference run's (same images, same seed).

    python benchmarks/bench_run_precision.py --n 160 --repeats 3
    python benchmarks/bench_run_precision.py --n 160 --backbone inception_v3 --weights W.pth \\
        --modes onnx-fp32,openvino-bf16
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

MODES = (("onnx", "fp32"), ("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8"))


def link_images(data: Path, n: int, dest: Path) -> Path:
    classes = sorted(d for d in data.iterdir() if d.is_dir())
    per = -(-n // len(classes))
    for d in classes:
        (dest / d.name).mkdir(parents=True, exist_ok=True)
        for p in sorted(d.glob("*.jp*g"))[:per]:
            try:
                os.link(p, dest / d.name / p.name)
            except OSError:
                shutil.copy2(p, dest / d.name / p.name)
    return dest


def one_run(folder: Path, cache: Path, runtime: str, precision: str, args) -> tuple[float, np.ndarray]:
    import brainclust

    r = brainclust.run(str(folder), None, backbone=args.backbone, weights=args.weights, runtime=runtime,
                       precision=precision, k=args.k, method=args.method, cache_dir=str(cache), progress=False)
    order = np.argsort([rec.path for rec in r.records])
    return float(r.timings["extract"]), np.asarray(r.labels)[order]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/brain_tumor_4class_dev")
    ap.add_argument("--n", type=int, default=160)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--method", default="hierarchical")
    ap.add_argument("--modes", default="", help="comma-separated RUNTIME-PRECISION (default: all that run here)")
    args = ap.parse_args(argv)
    logging.getLogger("brainclust").setLevel(logging.ERROR)
    from brainclust.features import openvino_runtime as ovr

    modes = [m for m in MODES if not args.modes or f"{m[0]}-{m[1]}" in args.modes.split(",")]
    if ("onnx", "fp32") not in modes:
        modes.insert(0, ("onnx", "fp32"))
    modes = [m for m in modes if m[1] != "bf16" or ovr.native_bf16()]
    tmp = Path(tempfile.mkdtemp(prefix="bench_run_precision_"))
    try:
        folder = link_images(Path(args.data), args.n, tmp / "images")
        models = tmp / "models"  # one warm model cache per mode
        times = {(m, state): [] for m in modes for state in ("cold", "warm models")}
        labels = {}
        for m in modes:  # fill the model caches (and check every mode runs)
            labels[m] = one_run(folder, models / "-".join(m), *m, args)[1]
        for rep in range(args.repeats):
            for m in modes:
                cold = tmp / f"cold-{rep}-{'-'.join(m)}"
                times[m, "cold"].append(one_run(folder, cold, *m, args)[0])
                shutil.rmtree(cold)
                warm = tmp / f"warm-{rep}-{'-'.join(m)}"
                warm.mkdir()
                for sub in ("onnx", "openvino"):
                    if (models / "-".join(m) / sub).is_dir():
                        shutil.copytree(models / "-".join(m) / sub, warm / sub)
                times[m, "warm models"].append(one_run(folder, warm, *m, args)[0])
                shutil.rmtree(warm)
            print(f"repeat {rep + 1}/{args.repeats} done; load {os.getloadavg()[0]:.1f}", flush=True)
        ref = ("onnx", "fp32")
        lines = [f"{args.n} images of {args.data}; backbone {args.backbone}; method {args.method}, k={args.k}; "
                 f"medians of {args.repeats} round-robin repeats; load at end {os.getloadavg()[0]:.1f}", "",
                 "| runtime | precision | extract s, cold | vs onnx fp32 | extract s, warm models | vs onnx fp32 | "
                 "ARI vs onnx fp32 clusters |", "|---|---|---:|---:|---:|---:|---:|"]
        for m in modes:
            cold, warm = statistics.median(times[m, "cold"]), statistics.median(times[m, "warm models"])
            rc, rw = statistics.median(times[ref, "cold"]), statistics.median(times[ref, "warm models"])
            lines.append(f"| {m[0]} | {m[1]} | {cold:.2f} | {rc / cold:.2f}x | {warm:.2f} | {rw / warm:.2f}x | "
                         f"{adjusted_rand_score(labels[ref], labels[m]):.3f} |")
        print("\n".join(lines))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
