"""Feature extraction side by side: torch, ONNX Runtime and OpenVINO at fp32, bf16 and int8.

For each backbone, on the same N images, in one process:

* **network only**: the pre-processed batch already in memory (batch ``--batch-size``), each
  runtime/precision's model called batch after batch;
* **end to end**: ``FeatureExtractor(runtime=..., precision=..., cache_dir=False).transform(paths)``
  from the image files (decoding and pre-processing overlapped by the prefetch thread);
* the per-stage cost of decoding (JPEG/PNG -> grey array), pre-processing (resize, clip,
  rescale, pad) and the model input (3 channels, normalised), single-threaded;
* the one-time costs (ONNX export, OpenVINO conversion, int8 calibration, compile) of each mode.

Modes: torch fp32 (the plain eager loop), torch bf16 (autocast; only on CPUs with native bf16),
onnx fp32, openvino fp32, openvino bf16 (native bf16 only), openvino int8 (NNCF, calibrated on a
seeded sample of the same images). Modes that cannot run on this CPU or are not installed are
listed as skipped. All timed modes run round-robin (to spread the machine's noise evenly)
``--repeats`` times after one warm-up; medians are reported, with ratios to ONNX Runtime fp32
measured in the same run. The compute roof is the fp32 ``torch.matmul`` rate (1024x1024,
re-measured every round, median) divided by the backbone's counted GFLOP per image
(``torch.utils.flop_counter``). The feature cosine to ONNX Runtime fp32 is given per mode
(inception_v3 runs with random weights: speed does not depend on them, and every build of random
weights is another network, so its cosine column compares builds of one seed).

Run (``make bench`` runs the first)::

    .venv/bin/python benchmarks/bench_extract.py --out benchmarks/results/extract.md
    .venv/bin/python benchmarks/bench_extract.py --backbones inception_v3 --n 64 --repeats 3
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from brainclust.features import backbones, openvino_runtime as ovr, quantize, runtime as rt
from brainclust.features.extractor import FeatureExtractor
from brainclust.features.runtime import bf16_supported
from brainclust.features.preprocess import PreprocessConfig, preprocess, to_model_input
from brainclust.io.scan import load_gray

EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
#: (runtime, precision) of every mode, in table order; the reference is ("onnx", "fp32").
MODES = (("torch", "fp32"), ("torch", "bf16"), ("onnx", "fp32"), ("openvino", "fp32"), ("openvino", "bf16"),
         ("openvino", "int8"))
REF = ("onnx", "fp32")


def image_paths(data: Path, n: int, tmp: Path) -> tuple[list[str], str]:
    """The first ``n`` sorted images of ``data`` (spread over its sub-folders), or generated demo images."""
    if data.is_dir():
        files = sorted(p for p in data.rglob("*") if p.suffix.lower() in EXTS)
        if files:
            step = max(1, len(files) // n)
            files = files[::step][:n]
            return [str(p) for p in files], f"{data} ({len(files)} images, one sorted file in {step})"
    print(f"NOTE: data folder '{data}' is missing or empty; generating demo images instead", file=sys.stderr)
    from brainclust.data.demo import make_demo_dataset

    out = make_demo_dataset(tmp / "demo", n_per_class=-(-n // 3), size=224)
    files = sorted(p for p in Path(out).rglob("*") if p.suffix.lower() in EXTS)[:n]
    return [str(p) for p in files], f"brainclust.data.demo.make_demo_dataset ({len(files)} images)"


def matmul_gflops(dtype=torch.float32, n: int = 1024, reps: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(ts) / 1e9


def gflop_per_image(model, spec) -> float:
    """Counted FLOPs (2 per multiply-add) of one image through the network."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.zeros(1, 3, spec.input_size, spec.input_size))
    return fc.get_total_flops() / 1e9


def stage_costs(spec, paths) -> dict:
    """Milliseconds per image of each decoding stage, single-threaded, over ``paths``."""
    cfg = PreprocessConfig(size=spec.input_size)
    t0 = time.perf_counter()
    grey = [load_gray(p) for p in paths]
    t1 = time.perf_counter()
    pre = [preprocess(g, cfg) for g in grey]
    t2 = time.perf_counter()
    np.stack([to_model_input(p, spec.mean, spec.std) for p in pre])
    t3 = time.perf_counter()
    n = len(paths)
    return {"decode": (t1 - t0) / n * 1e3, "preprocess": (t2 - t1) / n * 1e3, "model input": (t3 - t2) / n * 1e3}


def unavailable(runtime: str, precision: str) -> str | None:
    """Why a mode cannot run here, or ``None``."""
    if runtime == "onnx" and not rt.onnx_available():
        return "onnxruntime not installed"
    if runtime == "openvino" and not ovr.openvino_available():
        return "openvino not installed"
    if precision == "int8" and not quantize.nncf_available():
        return "nncf not installed"
    if precision == "bf16" and runtime == "openvino" and not ovr.native_bf16():
        return "no native bf16 on this CPU"
    if precision == "bf16" and runtime == "torch" and not bf16_supported():
        return "no native bf16 on this CPU"
    return None


def make_extractor(name, weights, runtime, precision, bs, paths, calib, workers=0):
    """A fitted extractor with its network built (one-time costs returned in seconds)."""
    torch.manual_seed(0)  # random weights: every mode builds the same network
    ex = FeatureExtractor(backbone=name, weights=weights, runtime=runtime, precision=precision, batch_size=bs,
                          num_workers=workers, cache_dir=False, progress=False, calibration_size=calib)
    t = time.perf_counter()
    ex.fit(paths)
    ex._model()  # noqa: SLF001 - export / convert / calibrate / compile outside the timing
    return ex, time.perf_counter() - t


def network_fn(ex, x: np.ndarray, bs: int):
    xt = torch.from_numpy(x)

    def f():
        return np.concatenate([ex._forward(xt[i:i + bs]) for i in range(0, len(xt), bs)])  # noqa: SLF001
    return f


def cosine(a, b) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def bench_backbone(name: str, paths: list[str], args, roof_samples: list[float]) -> tuple[list, dict]:
    weights = backbones.RANDOM_WEIGHTS if name == "inception_v3" else None
    spec, w = backbones.resolve(name, weights)
    n, bs = len(paths), args.batch_size
    costs = stage_costs(spec, paths)
    x = np.stack([to_model_input(preprocess(load_gray(p), PreprocessConfig(size=spec.input_size)), spec.mean,
                                 spec.std) for p in paths])
    torch.manual_seed(0)
    gflop = gflop_per_image(backbones.build(spec, w), spec)
    fns, once, skipped = {}, {}, {}
    for runtime, precision in MODES:
        why = unavailable(runtime, precision)
        if why or (args.modes and f"{runtime}-{precision}" not in args.modes.split(",")
                   and (runtime, precision) != REF):
            skipped[runtime, precision] = why or "not requested"
            continue
        ex, setup = make_extractor(name, weights, runtime, precision, bs, paths, args.calibration_size)
        once[runtime, precision] = setup
        fns[runtime, precision, "network"] = network_fn(ex, x, bs)
        fns[runtime, precision, "end to end"] = lambda ex=ex: ex.transform(paths)
        print(f"[{name}] ready: {runtime} {precision} (setup {setup:.1f} s)", flush=True)
        if runtime == "openvino" and args.other_mode:  # the other PERFORMANCE_HINT, network only
            other = "latency" if ovr.MODE == "throughput" else "throughput"
            exo, _ = make_extractor(name, weights, runtime, precision, bs, paths, args.calibration_size)
            exo.model_ = ovr.OpenVinoBackbone(exo.model_.source(), precision, mode=other)
            fns[runtime, precision, f"network {other}"] = network_fn(exo, x, bs)
        for nw in args.workers:  # decoding in worker processes instead of the prefetch thread
            if precision in ("fp32", "bf16") and runtime in ("onnx", "openvino"):
                exw, _ = make_extractor(name, weights, runtime, precision, bs, paths, args.calibration_size, nw)
                fns[runtime, precision, f"end to end w{nw}"] = lambda ex=exw: ex.transform(paths)
    outs = {key: np.asarray(f(), np.float32) for key, f in fns.items()}  # warm-up, and the features
    times = {key: [] for key in fns}
    for r in range(args.repeats):
        for key, f in fns.items():
            t = time.perf_counter()
            f()
            times[key].append(time.perf_counter() - t)
        roof_samples.append(matmul_gflops(reps=5))
        print(f"[{name}] repeat {r + 1}/{args.repeats} done", flush=True)
    ips = {key: n / statistics.median(ts) for key, ts in times.items()}
    roof = statistics.median(roof_samples) / gflop
    rows = []
    for runtime, precision in MODES:
        if (runtime, precision) in skipped:
            rows.append([name, runtime, precision, f"skipped: {skipped[runtime, precision]}", "", "", "", "", "",
                         ""])
            continue
        net, e2e = ips[runtime, precision, "network"], ips[runtime, precision, "end to end"]
        cos = cosine(outs[runtime, precision, "end to end"], outs[REF + ("end to end",)])
        rows.append([name, runtime, precision, f"{net:.1f}", f"{net / ips[REF + ('network',)]:.2f}",
                     f"{e2e:.1f}", f"{e2e / ips[REF + ('end to end',)]:.2f}", f"{e2e / roof:.2f}",
                     f"{cos.mean():.4f} / {cos.min():.4f}", f"{once[runtime, precision]:.1f}"])
        other = "latency" if ovr.MODE == "throughput" else "throughput"
        if (runtime, precision, f"network {other}") in ips:
            v = ips[runtime, precision, f"network {other}"]
            rows.append([name, runtime, f"{precision}, PERFORMANCE_HINT {other.upper()}", f"{v:.1f}",
                         f"{v / ips[REF + ('network',)]:.2f}", "", "", "", "", ""])
        for nw in args.workers:
            if (runtime, precision, f"end to end w{nw}") in ips:
                v = ips[runtime, precision, f"end to end w{nw}"]
                rows.append([name, runtime, f"{precision}, {nw} decoding worker process(es)", "", "", f"{v:.1f}",
                             f"{v / ips[REF + ('end to end',)]:.2f}", f"{v / roof:.2f}", "", ""])
    info = {"gflop": gflop, "roof": roof, "costs": costs, "n": n}
    return rows, info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/brain_tumor_4class_dev")
    ap.add_argument("--n", type=int, default=160, help="images (spread over the sorted files)")
    ap.add_argument("--n-large", type=int, default=64, help="images for inception_v3 (slow in fp32)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--calibration-size", type=int, default=quantize.CALIBRATION_SIZE)
    ap.add_argument("--backbones", default="efficientnet_lite0,inception_v3")
    ap.add_argument("--modes", default="", help="comma-separated RUNTIME-PRECISION to time (default: all); "
                                                "onnx-fp32 always runs (the reference)")
    ap.add_argument("--workers", default="", help="comma-separated DataLoader worker counts to time as well "
                                                  "(end to end, onnx/openvino fp32/bf16); default: none")
    ap.add_argument("--other-mode", action="store_true",
                    help="also time OpenVINO's other PERFORMANCE_HINT (network only)")
    ap.add_argument("--out", default="benchmarks/results/extract.md")
    args = ap.parse_args(argv)
    args.workers = [int(v) for v in args.workers.split(",") if v.strip() and int(v) > 0]
    logging.getLogger("brainclust").setLevel(logging.ERROR)
    torch.set_num_threads(ovr.available_cores())
    tmp = Path(tempfile.mkdtemp(prefix="bench_extract_"))
    load0 = os.getloadavg()[0]
    roof_samples = [matmul_gflops()]
    flags = sorted({f for f in Path("/proc/cpuinfo").read_text().split() if f in
                    ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx_vnni")}) \
        if Path("/proc/cpuinfo").exists() else []
    rows, notes = [], []
    for name in args.backbones.split(","):
        paths, source = image_paths(Path(args.data), args.n_large if name == "inception_v3" else args.n, tmp)
        r, info = bench_backbone(name, paths, args, roof_samples)
        rows += r
        c = info["costs"]
        notes.append(f"{name}: {source}; {info['gflop']:.2f} GFLOP/image -> fp32 roof {info['roof']:.1f} img/s; "
                     f"per image, single thread: decode {c['decode']:.2f} ms, pre-process {c['preprocess']:.2f} "
                     f"ms, model input {c['model input']:.2f} ms "
                     f"({1e3 / sum(c.values()):.0f} img/s for the three)"
                     + ("; RANDOM weights" if name == "inception_v3" else ""))
    head = [f"CPU flags: {' '.join(flags) or 'unknown'}; OpenVINO capabilities: "
            f"{','.join(ovr.cpu_capabilities()) or 'n/a'}; {ovr.available_cores()} cores; torch "
            f"{torch.__version__}; batch {args.batch_size}; int8 calibration {args.calibration_size} images; "
            f"OpenVINO mode {ovr.MODE}",
            f"load average at start {load0:.1f}, at end {os.getloadavg()[0]:.1f} (shared machine); fp32 matmul "
            f"{statistics.median(roof_samples):.0f} GFLOP/s (median of {len(roof_samples)}, range "
            f"{min(roof_samples):.0f}-{max(roof_samples):.0f})",
            f"img/s: median of {args.repeats} round-robin repeats after a warm-up; ratios against ONNX Runtime fp32 "
            "in the same run; cosine: features vs ONNX Runtime fp32 (mean / min); setup: export + convert + "
            "calibrate + compile, once per cache folder", ""]
    table = ["| backbone | runtime | precision | network img/s | vs onnx fp32 | end to end img/s | vs onnx fp32 "
             "| vs fp32 roof | cosine to fp32 | setup s |", "|---|---|---|---:|---:|---:|---:|---:|---|---:|",
             *("| " + " | ".join(r) + " |" for r in rows)]
    text = "\n".join([*head, *table, "", *(f"- {s}" for s in notes)]) + "\n"
    print("\n" + text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"Command: {' '.join([Path(sys.executable).name, *sys.argv])}\n\n" + text)
    print(f"written: {out}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
