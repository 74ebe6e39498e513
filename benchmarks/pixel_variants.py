"""Why does clustimage beat our pixel baseline? One pre-processing step at a time, on every local set.

clustimage 1.7.1 (read in its own venv, ``clustimage.imread``): decode, **min-max the whole
image to 0-255 uint8** (no percentile clip), **stretch** it to 128 x 128 with OpenCV's
``INTER_AREA`` (the aspect ratio is not kept), flatten; then PCA and the clustering. Our
``pixels`` backbone: aspect-preserving resize (longer side 128, bilinear with antialias),
**pad** to a square, **clip to the 0.5-99.5 percentiles** and min-max to [0, 1].

Variants (each a 128 x 128 grey image, flattened; PCA 50, average-cosine, k = classes):

``pad+clip``      ours (the ``pixels`` backbone; computed here the same way, checked equal)
``pad+minmax``    ours with ``--clip off``
``stretch+clip``  stretched, percentile clip
``stretch+minmax`` stretched, min-max: clustimage's pipeline (uint8 rounding included)
``crop+minmax``   the head's bounding box (pixels above 5% of the image's range) cropped,
                  then stretched: every head fills the frame, whatever its plane or margin

Usage::

    python benchmarks/pixel_variants.py --out ../brainclust-quality/pixel_variants.json [--sets plane,dev_gmp]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
import local_sets  # noqa: E402

from brainclust.cluster.reduce import PCAReducer  # noqa: E402
from brainclust.features.preprocess import PreprocessConfig, preprocess  # noqa: E402
from brainclust.io.scan import load_record, scan  # noqa: E402
from brainclust.selfsup.gate import reference_labels  # noqa: E402

SIZE = 128
VARIANTS = ("pad+clip", "pad+minmax", "stretch+clip", "stretch+minmax", "crop+minmax")


def minmax(img, clip):
    lo, hi = np.percentile(img, (0.5, 99.5)) if clip else (img.min(), img.max())
    if hi <= lo:
        return np.zeros_like(img, dtype=np.float32)
    return ((np.clip(img, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def stretch(img):
    return np.asarray(Image.fromarray(img.astype(np.float32), mode="F").resize((SIZE, SIZE), Image.BOX), np.float32)


def head_box(img, frac=0.05):
    lo, hi = float(img.min()), float(img.max())
    fg = img > lo + frac * (hi - lo)
    if not fg.any():
        return img
    rows, cols = np.flatnonzero(fg.any(1)), np.flatnonzero(fg.any(0))
    return img[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def variant(img: np.ndarray, name: str) -> np.ndarray:
    img = np.nan_to_num(np.asarray(img, np.float32))
    if name == "pad+clip":
        return preprocess(img, PreprocessConfig(size=SIZE))
    if name == "pad+minmax":
        return preprocess(img, PreprocessConfig(size=SIZE, clip_percentiles=None))
    if name == "stretch+clip":
        return stretch(minmax(img, True))
    if name == "stretch+minmax":  # clustimage: min-max to uint8 first, then INTER_AREA to 128 x 128
        return stretch(np.round(minmax(img, False) * 255)) / 255
    if name == "crop+minmax":
        return stretch(np.round(minmax(head_box(img), False) * 255)) / 255
    raise ValueError(name)


def features(path: str, paths: list[str], cache: Path) -> dict[str, np.ndarray]:
    f = cache / f"pixvar_{Path(path).name}.npz"
    if f.is_file():
        d = np.load(f, allow_pickle=False)
        if list(d["paths"]) == paths:
            return {v: d[v] for v in VARIANTS}
    recs = {r.path: r for r in scan(path, True).records}
    out = {v: np.empty((len(paths), SIZE * SIZE), np.float32) for v in VARIANTS}
    for i, p in enumerate(paths):
        img = load_record(recs[p])
        for v in VARIANTS:
            out[v][i] = variant(img, v).reshape(-1)
    np.savez(f, paths=np.asarray(paths), **out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", default=",".join(local_sets.ALL))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--cache-dir", default="../brainclust-quality/feat")
    ap.add_argument("--sets-root", default="../brainclust-quality/sets")
    ap.add_argument("--out", default="../brainclust-quality/pixel_variants.json")
    a = ap.parse_args()
    res = json.loads(Path(a.out).read_text()) if Path(a.out).is_file() else {}
    for name in a.sets.split(","):
        s = local_sets.load(name, ("pixels",), a.cache_dir, a.sets_root)
        all_paths = [r.path for r in scan(s.path, True).records]
        feats = features(s.path, all_paths, Path(a.cache_dir))
        rows = [all_paths.index(p) for p in s.paths]
        ours = s.features["pixels"]
        same = float(np.abs(feats["pad+clip"][rows] - ours).max())
        res[name] = {"max_abs_diff_pad+clip_vs_pixels_backbone": same}
        for v in VARIANTS:
            X = feats[v][rows]
            vals = []
            for seed in range(a.seeds):
                t0 = time.perf_counter()
                lab = reference_labels(PCAReducer(50, random_state=seed).fit_transform(X), s.k, seed)
                vals.append({"seed": seed, "nmi": normalized_mutual_info_score(s.labels, lab),
                             "ari": adjusted_rand_score(s.labels, lab), "wall_s": time.perf_counter() - t0})
            res[name][v] = vals
            print(name, v, f"{np.mean([r['nmi'] for r in vals]):.3f} ± {np.std([r['nmi'] for r in vals], ddof=1):.3f}",
                  f"(pad+clip vs backbone: {same:.2e})", flush=True)
        Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
