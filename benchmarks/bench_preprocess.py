"""Pre-processing + model input per image: the current code against the straightforward formulas.

Both give byte-identical arrays (``tests/features/test_preprocess_fast_paths.py``); this times
them round-robin in one process on the same decoded images (milliseconds per image, median of
``--rounds``), at each backbone input size.

    python benchmarks/bench_preprocess.py --n 100 --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from brainclust.features.preprocess import PreprocessConfig, preprocess, to_model_input
from brainclust.io.scan import load_gray


def reference(img, cfg: PreprocessConfig, mean, std) -> np.ndarray:
    """The formulas with no shortcut (the code before the fast paths)."""
    img = np.nan_to_num(np.asarray(img, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    h, w = img.shape
    scale = cfg.size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if (nh, nw) != (h, w):
        img = np.asarray(Image.fromarray(img, mode="F").resize((nw, nh), Image.BILINEAR, reducing_gap=None),
                         dtype=np.float32)
    lo, hi = (float(v) for v in np.percentile(img, cfg.clip_percentiles))
    img = (((np.clip(img, lo, hi) - lo) / (hi - lo)) * (cfg.new_max - cfg.new_min) + cfg.new_min).astype(np.float32)
    out = np.full((cfg.size, cfg.size), cfg.new_min, dtype=np.float32)
    top, left = (cfg.size - img.shape[0]) // 2, (cfg.size - img.shape[1]) // 2
    out[top:top + img.shape[0], left:left + img.shape[1]] = img
    m = np.asarray(mean, dtype=np.float32)[:, None, None]
    s = np.asarray(std, dtype=np.float32)[:, None, None]
    return (np.broadcast_to(out, (3, *out.shape)) - m) / s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/brain_tumor_4class_dev")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)
    files = sorted(p for p in Path(args.data).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    files = files[::max(1, len(files) // args.n)][:args.n]
    if not files:
        print(f"SKIP: no images under {args.data}")
        return 0
    grey = [load_gray(p) for p in files]
    half = (0.5, 0.5, 0.5)
    for size in (224, 299):
        cfg = PreprocessConfig(size=size)
        ways = {"formulas": lambda g: reference(g, cfg, half, half),
                "brainclust": lambda g: to_model_input(preprocess(g, cfg), half, half)}
        assert all(np.array_equal(ways["formulas"](g), ways["brainclust"](g)) for g in grey[:10])
        ms = {k: [] for k in ways}
        for _ in range(args.rounds):
            for k, f in ways.items():
                t = time.perf_counter()
                np.stack([f(g) for g in grey])
                ms[k].append((time.perf_counter() - t) / len(grey) * 1e3)
        a, b = statistics.median(ms["formulas"]), statistics.median(ms["brainclust"])
        print(f"{size} px, {len(grey)} images: formulas {a:.3f} ms/image, brainclust {b:.3f} ms/image "
              f"({a / b:.2f}x), identical outputs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
