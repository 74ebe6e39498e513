"""The checks' per-image description (`checks.descriptors.describe`): current code against the
straightforward formulas it replaced, in one process.

The reference swaps back scipy's binary closing, opening and hole filling, the shift-by-shift
mirror correlation, a second percentile in the shape cues and numpy's histogram of the [0, 1]
picture (what `describe` did until 2026-12-05). Both variants describe the same decoded images
round-robin; medians of the rounds,
the decode's own time for scale, and the largest difference between the two descriptor vectors.

    PYTHONPATH=src python benchmarks/bench_describe.py ../shared/data/brain_tumor_4class_dev --n 200 --rounds 7
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from brainclust.checks import descriptors, shape
from brainclust.checks.decode import decode
from brainclust.io.scan import scan


def _symmetry_loop(s: np.ndarray) -> float:
    side, shift = shape.SYM_SIDE, shape.SYM_SHIFT
    t = np.asarray(Image.fromarray(np.asarray(s, np.float32), "F").resize((side, side), Image.BOX), np.float64)
    m = t[:, ::-1]
    best = -1.0
    for dx in range(-shift, shift + 1):
        a = t[:, max(0, dx):side + min(0, dx)]
        b = m[:, max(0, -dx):side + min(0, -dx)]
        a, b = a - a.mean(), b - b.mean()
        den = float(np.sqrt((a * a).sum() * (b * b).sum()))
        if den > 0:
            best = max(best, float((a * b).sum()) / den)
    return best


@contextlib.contextmanager
def reference():
    """`describe` as it was: scipy morphology, the loop symmetry, the shape cues' own percentiles."""
    saved = {name: getattr(shape, name) for name in ("closing", "opening", "fill_holes", "symmetry")}
    cues, histogram = descriptors.shape_cues, descriptors.unit_histogram
    shape.closing = lambda m, it: ndi.binary_closing(m, iterations=it, border_value=1)
    shape.opening = lambda m, it: ndi.binary_opening(m, iterations=it)
    shape.fill_holes = ndi.binary_fill_holes
    shape.symmetry = _symmetry_loop
    descriptors.shape_cues = lambda x, full_scale, scale=None: cues(x, full_scale)
    descriptors.unit_histogram = lambda s: np.histogram(s, bins=64, range=(0.0, 1.0))[0]
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(shape, name, fn)
        descriptors.shape_cues, descriptors.unit_histogram = cues, histogram


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)
    records = scan(args.folder).records[:args.n]
    t0 = time.perf_counter()
    images = [decode(r) for r in records]
    decode_ms = (time.perf_counter() - t0) / len(images) * 1e3
    times = {"reference": [], "current": []}
    vectors = {}
    for _ in range(args.rounds):
        for name in times:
            ctx = reference() if name == "reference" else contextlib.nullcontext()
            with ctx:
                t0 = time.perf_counter()
                vectors[name] = np.stack([descriptors.describe(im)[0] for im in images])
                times[name].append((time.perf_counter() - t0) / len(images) * 1e3)
    ref, cur = statistics.median(times["reference"]), statistics.median(times["current"])
    diff = np.abs(vectors["reference"].astype(np.float64) - vectors["current"]).max()
    print(f"{len(images)} images from {args.folder}, {args.rounds} rounds (medians, ms per image)")
    print(f"decode (once, for scale): {decode_ms:.2f}")
    print(f"describe, reference: {ref:.2f}   current: {cur:.2f}   speed-up: {ref / cur:.2f}x")
    print(f"largest difference between the descriptor vectors: {diff:.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
