"""Build the picture bank of the likeness rule: ``src/brainclust/checks/pictures.npz``.

The ``picture`` step of :mod:`brainclust.checks.likeness` tells the folder's own slices from a fixed bank of
non-MRI pictures with a linear classifier. The bank is EfficientNet-Lite0 features (fp32 extraction, unit rows,
stored fp16) of pictures that packages ship (scikit-image's sample images, scikit-learn's two photographs,
matplotlib's sample pictures) and of charts, text and diagrams rendered here (``planted_render.py``, no
screenshots, none holding an MRI slice), each in the views a picture takes when it passes the pixel rules as a
slice: grey full frame, the colour original, grey on a dark canvas at 50 and 70 % of its side, an oval grey crop on
black, a grey vignette (dark towards the edges). No MRI and no file of ``../shared/data`` goes in. Each row keeps
its picture's name, so a measurement can leave out the pictures a planting uses (``BANK_LEAVE_OUT``).

    PYTHONPATH=src python benchmarks/picture_bank.py [--out src/brainclust/checks/pictures.npz]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

SKIMAGE = ["astronaut", "binary_blobs", "brick", "camera", "cat", "cell", "checkerboard", "clock", "coffee", "coins",
           "colorwheel", "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "logo",
           "microaneurysms", "moon", "page", "retina", "rocket", "text"]
CANVAS = 256


def package_pictures() -> dict[str, np.ndarray]:
    """Name -> uint8 array (grey or RGB) of the pictures packages ship (no MRI: skimage's phantom and brain and
    matplotlib's s1045 are left out)."""
    import matplotlib
    import skimage.data as skd
    from sklearn.datasets import load_sample_images

    out = {}
    for name in SKIMAGE:
        a = np.asarray(skd.binary_blobs(rng=0) if name == "binary_blobs" else getattr(skd, name)())
        out[name] = a.astype(np.uint8) * 255 if a.dtype == bool else a[..., :3] if a.ndim == 3 else a
    out["chelsea"] = out.pop("cat")  # the planting's name for the same picture
    out["blobs"] = out.pop("binary_blobs")
    for name, arr in zip(("china", "flower"), load_sample_images().images):
        out[name] = arr
    mpl = Path(matplotlib.get_data_path()) / "sample_data"
    for name, file in (("grace_hopper", "grace_hopper.jpg"), ("present", "Minduka_Present_Blue_Pack.png"),
                       ("mpl_logo", "logo2.png")):
        out[name] = np.asarray(Image.open(mpl / file).convert("RGB"))
    out["motorcycle_left"], out["motorcycle_right"] = skd.stereo_motorcycle()[:2]
    return {k: np.asarray(v if v.dtype == np.uint8 else np.clip(v * 255 if v.max() <= 1 else v, 0, 255)
                          .astype(np.uint8)) for k, v in out.items()}


def rendered_pictures(rng) -> dict[str, np.ndarray]:
    """Charts, text and diagrams (``planted_render.py``), none holding an MRI slice; demo slices stand in for the
    slices some charts summarise."""
    from brainclust.data.demo import make_demo_dataset
    from planted_render import charts, diagrams, text_pictures

    with tempfile.TemporaryDirectory() as tmp:
        make_demo_dataset(tmp, n_per_class=2, random_state=0)
        slices = [np.asarray(Image.open(p).convert("L")) for p in sorted(Path(tmp).rglob("*.png"))[:5]]
    out = {**charts(rng, slices), **text_pictures(rng), **diagrams(rng)}
    return {f"render_{k}": v for k, v in out.items() if "mri" not in k}


def views(arr: np.ndarray, rng) -> dict[str, Image.Image]:
    """The views of one picture that pass the pixel rules as a slice, or nearly."""
    grey = Image.fromarray(arr).convert("L")
    out = {"grey": grey}
    if arr.ndim == 3:
        out["colour"] = Image.fromarray(arr).convert("RGB")
    for frac in (0.5, 0.7):
        s = frac * CANVAS / max(grey.size)
        small = grey.resize((max(1, round(grey.width * s)), max(1, round(grey.height * s))))
        canvas = Image.new("L", (CANVAS, CANVAS), int(rng.integers(0, 20)))
        canvas.paste(small, ((CANVAS - small.width) // 2, (CANVAS - small.height) // 2))
        out[f"canvas{round(frac * 100)}"] = canvas
    s = 0.8 * CANVAS / max(grey.size)
    small = grey.resize((max(2, round(grey.width * s)), max(2, round(grey.height * s))))
    mask = Image.new("L", small.size, 0)
    ImageDraw.Draw(mask).ellipse([0, 0, small.width - 1, small.height - 1], fill=255)
    oval = Image.new("L", (CANVAS, CANVAS), 0)
    oval.paste(small, ((CANVAS - small.width) // 2, (CANVAS - small.height) // 2), mask)
    out["oval"] = oval
    y, x = np.mgrid[-1:1:CANVAS * 1j, -1:1:CANVAS * 1j]
    fade = np.clip(1.2 - np.hypot(x, y), 0, 1) ** 1.5
    out["vignette"] = Image.fromarray((np.asarray(grey.resize((CANVAS, CANVAS)), float) * fade).astype(np.uint8))
    return out


def build(out: Path, seed: int = 0) -> None:
    from brainclust import FeatureExtractor
    from brainclust.checks.likeness import BACKBONE

    rng = np.random.default_rng(seed)
    pictures = {**package_pictures(), **rendered_pictures(rng)}
    names, kinds, paths = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, arr in sorted(pictures.items()):
            for kind, im in views(arr, rng).items():
                path = Path(tmp) / f"{name}__{kind}.png"
                im.save(path)
                names.append(name), kinds.append(kind), paths.append(str(path))
        x = np.asarray(FeatureExtractor(backbone=BACKBONE, precision="fp32", cache_dir=False).fit().transform(paths),
                       np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, features=x.astype(np.float16), name=np.array(names), view=np.array(kinds),
                        backbone=np.array(BACKBONE))
    print(f"{len(pictures)} pictures, {len(names)} rows -> {out} ({out.stat().st_size / 1024:.0f} KiB)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "src" / "brainclust" / "checks" / "pictures.npz")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    build(args.out, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
