"""A run from image files at scale: generate N distinct PNGs, run ``brainclust.run`` on them, time every stage.

Inputs (``make``), in folders of 1000 (``<dir>/dNNNN/iNNNNNNN.png``), ``--size`` px grey PNGs:

* ``--source copies`` (the first inputs): the 4-class dev set's 1000 real slices, downscaled and
  made distinct by writing the file's index (32 bits) into the first row of pixels. Every source
  slice appears N / 1000 times, so the images are near duplicates of each other by construction
  and the checks' near-duplicate verification grows with them. Without the dev set, demo images
  are used as the sources.
* ``--source oblique``: every file is its own oblique slice through one of the 20 real BraTS
  volumes of ``brain_mri_volumes_dev`` (5 subjects x 4 sequences; file i uses volume i mod 20):
  a random plane orientation (uniform on the sphere), a random offset from the brain's centre
  (up to 30 % of its half-size along the normal) and a random in-plane rotation, all drawn from
  ``numpy.random.default_rng(i)``, sampled with trilinear interpolation on a 240 mm field of view
  after a Gaussian blur (sigma 1.5 voxels) against aliasing, grey levels 0 .. the volume's 99.5th
  brain percentile. Real anatomy and contrasts, few near duplicates (50,000 slices per volume
  spread over orientations, offsets and rotations).

Distinct contents matter: the feature store keys images by their SHA-256, so hard links or copies
of the same image would be extracted once. About 3-4 KB per file at 64 px (plus a file-system
block each): ~4-8 GB at 10^6.

Run (``run``): ``brainclust.run(dir, out, ...)`` in this process (scan -> feature store ->
checks -> PCA -> clustering -> outputs -> report), with a thread sampling the process's RSS
every 0.2 s; each stage's wall time comes from the run's ``timings_s`` and its peak RSS from the
samples inside the stage's time window (so it is approximate to a sample).

    python benchmarks/bench_million.py make /tmp/million --n 20000 [--source oblique]
    # in parallel on two cores: make /tmp/million --n 500000 & make /tmp/million --start 500000 --n 1000000
    python benchmarks/bench_million.py run /tmp/million --out /tmp/million_out --runtime openvino --precision bf16
    rm -rf /tmp/million /tmp/million_out    # do not leave them on a shared disk

The figures at 10^6 in docs/performance.md are extrapolated from a measured N where marked.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image


def sources(data: Path, size: int) -> list[np.ndarray]:
    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")) if data.is_dir() else []
    if not files:
        from brainclust.data.demo import make_demo_dataset

        demo = make_demo_dataset(Path(tempfile.mkdtemp(prefix="million_src_")) / "demo")
        files = sorted(Path(demo).rglob("*.png"))
    out = []
    for p in files:
        with Image.open(p) as im:
            out.append(np.asarray(im.convert("L").resize((size, size), Image.BILINEAR), dtype=np.uint8))
    return out


def volumes(data: Path) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """The BraTS volumes (blurred), each with its brain's centre (voxels) and 99.5th brain percentile."""
    from scipy.ndimage import gaussian_filter

    from brainclust.io.formats import nifti

    out = []
    for path in sorted(data.glob("sub-*/anat/*.nii.gz")):
        vol = nifti.load_volume(path).astype(np.float32)
        brain = np.argwhere(vol > 0)
        out.append((gaussian_filter(vol, 1.5), brain.mean(axis=0), float(np.percentile(vol[vol > 0], 99.5))))
    if not out:
        raise SystemExit(f"no NIfTI volumes under {data}")
    return out


def oblique(vols, i: int, size: int) -> np.ndarray:
    """Image i: an oblique slice through volume i mod len(vols), its pose drawn from ``default_rng(i)``."""
    from scipy.ndimage import map_coordinates

    vol, centre, top = vols[i % len(vols)]
    rng = np.random.default_rng(i)
    normal = rng.normal(size=3)
    normal /= np.linalg.norm(normal)
    u = np.cross(normal, [1.0, 0.0, 0.0] if abs(normal[0]) < 0.9 else [0.0, 1.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    a = rng.uniform(0, 2 * np.pi)
    u, v = np.cos(a) * u + np.sin(a) * v, -np.sin(a) * u + np.cos(a) * v
    origin = centre + normal * rng.uniform(-0.3, 0.3) * min(vol.shape) / 2
    grid = np.linspace(-120, 120, size)  # 1 mm voxels: a 240 mm field of view
    pts = origin[:, None, None] + u[:, None, None] * grid[None, :, None] + v[:, None, None] * grid[None, None, :]
    img = map_coordinates(vol, pts.reshape(3, -1), order=1, cval=0.0).reshape(size, size)
    return np.round(np.clip(img / top, 0, 1) * 255).astype(np.uint8)


def indexed_copy(src: list[np.ndarray], i: int, size: int) -> np.ndarray:
    """Image i: source slice i mod len(src) (already ``size`` px) with i written into its first row."""
    img = src[i % len(src)].copy()
    img[0, :32] = [((i >> b) & 1) * 255 for b in range(32)]  # the index: every file is distinct
    return img


def make(folder: Path, n: int, size: int, data: Path, start: int = 0, source: str = "copies") -> None:
    pool, picture = (volumes(data), oblique) if source == "oblique" else (sources(data, size), indexed_copy)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for i in range(start, n):
        img = picture(pool, i, size)
        sub = folder / f"d{i // 1000:04d}"
        if i % 1000 == 0:
            sub.mkdir(exist_ok=True)
        Image.fromarray(img).save(sub / f"i{i:07d}.png", optimize=False, compress_level=1)
        if (i + 1) % 50000 == 0:
            print(f"{i + 1} files, {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"made {n - start} PNGs ({size} px) in {time.perf_counter() - t0:.1f} s under {folder}")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run(folder: Path, out: Path, kwargs: dict, report: bool, progress: bool = False) -> dict:
    import brainclust
    from brainclust.report.build import build_report

    report_s = {}

    def finish(folder_out):
        t = time.perf_counter()
        build_report(folder_out)
        report_s["report"] = time.perf_counter() - t

    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append((time.perf_counter(), rss_bytes()))
            stop.wait(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    t0 = time.perf_counter()
    thread.start()
    try:
        result = brainclust.run(str(folder), str(out), progress=progress, finish=finish if report else None,
                                **kwargs)
    finally:
        stop.set()
        thread.join()
    wall = time.perf_counter() - t0
    manifest = json.loads((out / "manifest.json").read_text())
    stages, start = [], t0
    # the run's own timings keep the order the stages ran in (manifest.json's keys are sorted)
    for name, sec in [*result.timings.items(), *report_s.items()]:
        if not isinstance(sec, (int, float)):
            continue
        peak = max((r for t, r in samples if start <= t <= start + sec + 0.2), default=0)
        stages.append({"stage": name, "s": round(sec, 2), "peak_rss_gb": round(peak / 1e9, 2)})
        start += sec
    return {"n_images": manifest.get("n_images"), "wall_s": round(wall, 1), "stages": stages,
            "checks": {k: manifest.get("checks", {}).get(k) for k in ("timings_s", "summary")},
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 2),
            "settings": kwargs}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("folder")
    m.add_argument("--n", type=int, default=1_000_000)
    m.add_argument("--start", type=int, default=0,
                   help="first index (a multiple of 1000), so that processes can make parts in parallel")
    m.add_argument("--size", type=int, default=64)
    m.add_argument("--source", choices=("copies", "oblique"), default="copies")
    m.add_argument("--data", default=None,
                   help="sources: default ../shared/data/brain_tumor_4class_dev (copies), "
                        "../shared/data/brain_mri_volumes_dev (oblique)")
    r = sub.add_parser("run")
    r.add_argument("folder")
    r.add_argument("--out", required=True)
    r.add_argument("--backbone", default="efficientnet_lite0")
    r.add_argument("--runtime", default="auto")
    r.add_argument("--precision", default="fp32")
    r.add_argument("--k", type=int, default=4)
    r.add_argument("--cache-dir", default=None)
    r.add_argument("--no-report", action="store_true")
    r.add_argument("--progress", action="store_true", help="progress bars on stderr (long runs)")
    args = ap.parse_args(argv)
    if args.cmd == "make":
        if args.start % 1000:
            ap.error("--start must be a multiple of 1000")
        data = args.data or ("../shared/data/brain_mri_volumes_dev" if args.source == "oblique"
                             else "../shared/data/brain_tumor_4class_dev")
        make(Path(args.folder), args.n, args.size, Path(data), args.start, args.source)
        return 0
    kwargs = {"backbone": args.backbone, "runtime": args.runtime, "precision": args.precision, "k": args.k,
              "cache_dir": args.cache_dir or tempfile.mkdtemp(prefix="million_cache_")}
    res = run(Path(args.folder), Path(args.out), kwargs, not args.no_report, args.progress)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
