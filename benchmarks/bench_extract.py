"""Feature-extraction throughput (images/s) per backbone, against a plain PyTorch loop.

For every network backbone in ``brainclust.features.backbones.REGISTRY`` (``inception_v3``
with random weights -- speed does not depend on weight values -- the
EfficientNet-Lite0 variants with their packaged weights), on the same N images,
in one process:

* ``plain fp32 loop (network)``: fp32, contiguous NCHW, batch 32, ``torch.no_grad()``,
  images decoded and pre-processed in memory beforehand (network only);
* ``plain fp32 loop (files)``: the same loop end to end: each batch decoded and
  pre-processed from the files, then run (the reference of the ratios);
* ``extractor <runtime> <precision> w<workers>``: ``FeatureExtractor(...).transform(paths)``
  with ``cache_dir=False``, end to end from the files; ``onnx`` is timed with
  and without the prefetch thread (``runtime.PREFETCH``); ``--bf16`` adds the
  opt-in torch bf16 path.

All modes are warmed up once, then timed round-robin (to spread machine noise
evenly) ``--repeats`` times; the median is reported. The compute roof is the
fp32 ``torch.matmul`` rate measured in the same run divided by the backbone's
GFLOP per image (counted with ``torch.utils.flop_counter``). Also prints the
feature error of every extractor mode against the plain fp32 loop.

Run::

    .venv/bin/python benchmarks/bench_extract.py --n 32 --repeats 3 --out benchmarks/results/extract.md
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

from brainclust.features import backbones, runtime
from brainclust.features.extractor import FeatureExtractor, bf16_supported
from brainclust.io.scan import load_gray
from brainclust.features.preprocess import PreprocessConfig, preprocess, to_model_input

#: Backbones benchmarked with random weights (no pre-trained weights offline; speed does not depend on them).
RANDOM = {"inception_v3"}
EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


def image_paths(data: Path, n: int, tmp: Path) -> tuple[list[str], str]:
    if data.is_dir():
        files = sorted(p for p in data.rglob("*") if p.suffix.lower() in EXTS)[:n]
        if files:
            return [str(p) for p in files], f"{data} (first {len(files)} sorted files)"
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


def network_backbones() -> list[str]:
    """Registry entries that are neural networks (array backbones such as pixels/hog have no builder)."""
    return [k for k, v in backbones.REGISTRY.items() if v.builder is not None]


def weights_for(name: str) -> str | None:
    if name in RANDOM or backbones.REGISTRY[name].default_weights() is None:
        return backbones.RANDOM_WEIGHTS
    return None


def gflop_per_image(model, spec) -> float:
    """Counted FLOPs (2 per multiply-add) of one image through the network."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.zeros(1, 3, spec.input_size, spec.input_size))
    return fc.get_total_flops() / 1e9


def in_memory_batch(spec, paths) -> torch.Tensor:
    cfg = PreprocessConfig(size=spec.input_size)
    return torch.from_numpy(np.stack([to_model_input(preprocess(load_gray(p), cfg), spec.mean, spec.std)
                                      for p in paths]))


def plain_loop(model, x, bs):
    def f():
        with torch.no_grad():
            return torch.cat([model(x[i:i + bs]) for i in range(0, len(x), bs)]).numpy()
    return f


def plain_files_loop(model, spec, paths, bs):
    """The plain loop end to end: decode + pre-process each batch from its files, then run it."""
    def f():
        out = []
        with torch.no_grad():
            for i in range(0, len(paths), bs):
                out.append(model(in_memory_batch(spec, paths[i:i + bs])))
            return torch.cat(out).numpy()
    return f


def extractor_run(name, precision, rt_name, workers, bs, paths, prefetch=True):
    ex = FeatureExtractor(backbone=name, weights=weights_for(name), precision=precision, batch_size=bs,
                          num_workers=workers, cache_dir=False, progress=False, runtime=rt_name).fit()
    ex.transform(paths[:1])  # export / build outside the timing

    def f():
        runtime.PREFETCH = prefetch
        try:
            return ex.transform(paths)
        finally:
            runtime.PREFETCH = True
    return ex, f


def feature_error(f, ref) -> tuple[float, float]:
    rel = np.linalg.norm(f - ref, axis=1) / np.linalg.norm(ref, axis=1)
    cos = (f * ref).sum(1) / (np.linalg.norm(f, axis=1) * np.linalg.norm(ref, axis=1))
    return float(rel.mean()), float(cos.mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/brain_tumor_4class_dev")
    ap.add_argument("--n", type=int, default=64, help="number of images (first N sorted files)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", default="0", help="comma-separated DataLoader worker counts")
    ap.add_argument("--bf16", action="store_true", help="also time the opt-in torch bf16 extractor")
    ap.add_argument("--backbones", default=",".join(network_backbones()),
                    help="comma-separated CNN backbones to time (default: %(default)s)")
    ap.add_argument("--out", default="benchmarks/results/extract.md")
    args = ap.parse_args(argv)
    logging.getLogger("brainclust").setLevel(logging.ERROR)

    tmp = Path(tempfile.mkdtemp(prefix="bench_extract_"))
    paths, source = image_paths(Path(args.data), args.n, tmp)
    n, bs = len(paths), args.batch_size
    mm = {"fp32": [matmul_gflops()], "bf16": [matmul_gflops(torch.bfloat16)] if args.bf16 else [float("nan")]}
    load0 = os.getloadavg()
    print(f"images: {source}; matmul fp32 {mm['fp32'][0]:.0f} GFLOP/s; load {load0}", flush=True)
    rows, notes, results, gflop = [], [], [], {}
    for name in args.backbones.split(","):
        spec, w = backbones.resolve(name, weights_for(name))
        t = time.perf_counter()
        x = in_memory_batch(spec, paths)
        print(f"[{name}] decode+preprocess in memory: {n / (time.perf_counter() - t):.1f} img/s", flush=True)
        plain = backbones.build(spec, w)
        gflop[name] = gflop_per_image(plain, spec)
        modes = {"plain fp32 loop (network)": plain_loop(plain, x, bs),
                 "plain fp32 loop (files)": plain_files_loop(plain, spec, paths, bs)}
        for nw in (int(v) for v in args.workers.split(",")):
            runs = [("torch", "fp32", True), ("onnx", "fp32", True), ("onnx", "fp32", False)]
            for rt_name, prec, pf in runs + ([("torch", "bf16", True)] if args.bf16 else []):
                ex, fn = extractor_run(name, prec, rt_name, nw, bs, paths, pf)
                label = f"extractor {ex.runtime_} {ex.precision_} w{nw}{'' if pf else ' no-prefetch'}"
                modes[label] = fn
        outs = {}
        for label, fn in modes.items():  # warm-up; keep outputs for the error check
            outs[label] = fn()
            print(f"[{name}] warmed up: {label}", flush=True)
        times = {label: [] for label in modes}
        for r in range(args.repeats):
            for label, fn in modes.items():
                t = time.perf_counter()
                fn()
                times[label].append(time.perf_counter() - t)
            mm["fp32"].append(matmul_gflops(reps=5))  # the roof is re-measured each round: noisy machine
            if args.bf16:  # slow on CPUs without native bf16
                mm["bf16"].append(matmul_gflops(torch.bfloat16, reps=5))
            print(f"[{name}] repeat {r + 1}/{args.repeats} done", flush=True)
        for label in modes:
            results.append((name, label, n / statistics.median(times[label]),
                            " ".join(f"{n / s:.1f}" for s in times[label])))
            print(f"[{name}] {label}: {results[-1][2]:.2f} img/s", flush=True)
        ref = outs["plain fp32 loop (network)"]
        for label in (k for k in outs if k.startswith("extractor")):
            if w.path is None:
                continue  # random weights: every build is another network (tests/test_runtime.py compares them)
            rel, cos = feature_error(np.asarray(outs[label], np.float32), ref)
            notes.append(f"{name} features, {label} vs plain fp32 loop: mean relative error {rel:.2e}, "
                         f"mean cosine similarity {cos:.6f}")
        del plain, modes, outs
    gf32, gf16 = statistics.median(mm["fp32"]), statistics.median(mm["bf16"])
    for name, label, ips, runs in results:
        base = next(r[2] for r in results if r[0] == name and r[1] == "plain fp32 loop (files)")
        net = next(r[2] for r in results if r[0] == name and r[1] == "plain fp32 loop (network)")
        roof = gf32 / gflop[name]
        rows.append(f"| {name} | {label} | {ips:.2f} | {ips / base:.2f} | {ips / net:.2f} | {ips / roof:.2f} "
                    f"| {runs} |")
    notes += [f"{b}: {g:.2f} GFLOP/image (counted) -> fp32 roof {gf32 / g:.1f} img/s (bf16-matmul roof "
              f"{gf16 / g:.1f}){'; RANDOM weights' if weights_for(b) else ''}" for b, g in gflop.items()]
    head = [f"images: {source}; batch {bs}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
            f"native bf16: {bf16_supported()}; load average at start {load0[0]:.1f}, at end "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine)",
            f"1024x1024 matmul, median of {len(mm['fp32'])} measurements spread over the run: fp32 {gf32:.0f} "
            f"GFLOP/s (range {min(mm['fp32']):.0f}-{max(mm['fp32']):.0f}), bf16 {gf16:.0f} GFLOP/s "
            "(roof column uses fp32)",
            f"img/s: median of {args.repeats} round-robin repeats after 1 warm-up per mode", ""]
    table = ["| backbone | mode | img/s (median) | vs plain loop (files) | vs plain loop (network) | vs compute roof "
             "| img/s (each run) |", "|---|---|---:|---:|---:|---:|---|", *rows]
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
