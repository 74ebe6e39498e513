"""Precision and recall of the data checks on a planted folder built from the real data.

Builds, in a temporary folder, real MRI slices (a sample of brain_tumor_4class_dev and
brain_tumor_yes_no, slices cut from the NIfTI volumes, demo slices) plus planted cases:
photographs, generated documents and screenshots (not_mri), constant and almost-empty images
(blank), noise, tiny images, exact copies (byte copies and lossless re-saves) and near copies
(resized, recompressed, cropped, flipped, intensity-changed). Runs the checks and prints, per
flag, precision and recall, and how many flagged images were duplicates already present in the
real data ("natural": measured by checking the real images alone first).

Four plantings:
  --planting dev       seed 0, scikit-image's photographs: the one the rules were looked at on;
  --planting heldout   seed 1, other photographs (scikit-learn's, matplotlib's, scikit-image's
                       motorcycle pair), other MRI samples and transforms: the one reported
                       (its two missed grey photographs were looked at when the likeness rule of
                       brainclust.checks.likeness was added);
  --planting grey      seed 2, the pictures the other two do not use (scikit-image's textures,
                       Hubble field, colour wheel, silhouettes, logos; matplotlib's logo), every
                       one and its crops turned grey: the hard case, never looked at before
                       the rule was fixed. A real MRI slice (matplotlib's s1045) and the
                       Shepp-Logan phantom are added as MRI;
  --planting render    seed 3, rendered pictures (benchmarks/planted_render.py): matplotlib charts, text in
                       several fonts, diagrams, headless-chromium screenshots of HTML pages, four of
                       them holding an MRI slice (still not_mri; never cropped); a third turned grey,
                       crops of the others. No photographs, documents or screens of the other three.
                       The pages' text is fixed in planted_render.py (since 2026-12-07; before, pages
                       quoted README.md, docs/checks.md and this file), so editing them changes nothing.

`--seed N` builds a planting with another seed (other samples, crops and transforms of the same kinds).

The likeness rule's picture bank (brainclust/checks/pictures.npz, benchmarks/picture_bank.py) holds the same
package pictures the plantings use. By default the planting's own pictures are left out of the bank
(`--bank leave-out`), so its recall is measured on pictures the bank never held; `--bank full` keeps them (the
figure a user whose pictures are in the bank would see).

    PYTHONPATH=src python benchmarks/checks_planted.py --planting heldout
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("../shared/data")

DEV_PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "camera", "text", "page", "moon", "coins", "clock",
              "brick", "cell", "immunohistochemistry", "retina"]
TRANSFORMS = ["resize", "jpeg", "crop_centre", "crop_sides", "hflip", "vflip", "linear_intensity", "gamma"]


def heldout_photos() -> dict[str, np.ndarray]:
    import matplotlib
    import skimage.data as skd
    from sklearn.datasets import load_sample_images

    out = {}
    imgs = load_sample_images()
    for name, arr in zip(("china", "flower"), imgs.images):
        out[name] = arr
    mpl = Path(matplotlib.get_data_path()) / "sample_data"
    out["grace_hopper"] = np.asarray(Image.open(mpl / "grace_hopper.jpg").convert("RGB"))
    out["present"] = np.asarray(Image.open(mpl / "Minduka_Present_Blue_Pack.png").convert("RGB"))
    out["motorcycle_left"] = skd.stereo_motorcycle()[0]
    out["motorcycle_right"] = skd.stereo_motorcycle()[1]
    return out


def grey_photos() -> dict[str, np.ndarray]:
    import matplotlib
    import skimage.data as skd

    out = {n: getattr(skd, n)() for n in ("grass", "gravel", "hubble_deep_field", "microaneurysms", "colorwheel",
                                           "checkerboard")}
    out["horse"] = (~skd.horse()).astype(np.uint8) * 255
    out["blobs"] = skd.binary_blobs(rng=2).astype(np.uint8) * 255
    out["logo"] = skd.logo()[..., :3]
    mpl = Path(matplotlib.get_data_path()) / "sample_data"
    out["mpl_logo"] = np.asarray(Image.open(mpl / "logo2.png").convert("RGB"))
    return out


def extra_mri() -> list[tuple[str, np.ndarray]]:
    """matplotlib's MRI slice (256x256, 16 bits) and scikit-image's Shepp-Logan phantom, as 8-bit PNGs."""
    import gzip

    import matplotlib
    import skimage.data as skd

    raw = np.frombuffer(gzip.open(Path(matplotlib.get_data_path()) / "sample_data" / "s1045.ima.gz").read(),
                        np.uint16).reshape(256, 256).astype(np.float64)
    phantom = skd.shepp_logan_phantom()
    return [(name, (255 * a / a.max()).astype(np.uint8))
            for name, a in (("s1045.png", raw), ("shepp_logan.png", phantom))]


def dev_photos() -> dict[str, np.ndarray]:
    import skimage.data as skd

    out = {}
    for n in DEV_PHOTOS:
        a = getattr(skd, n)()
        if a.ndim == 3 and a.shape[-1] == 4:
            a = a[..., :3]
        out[n] = a
    return out


def document(rng, w=620, h=820) -> Image.Image:
    im = Image.new("L" if rng.random() < 0.5 else "RGB", (w, h), "white")
    d = ImageDraw.Draw(im)
    y = int(rng.integers(30, 80))
    words = ["patient", "report", "findings", "the", "of", "MRI", "brain", "normal", "signal", "lesion", "and",
             "contrast", "impression", "study", "axial", "no", "evidence"]
    while y < h - 40:
        x = int(rng.integers(30, 60))
        line = " ".join(rng.choice(words, int(rng.integers(4, 12))))
        d.text((x, y), line, fill="black")
        y += int(rng.integers(14, 30))
        if rng.random() < 0.1:
            d.rectangle([x, y, w - 40, y + int(rng.integers(40, 120))], outline="black")
            y += 130
    return im


def screenshot(rng, w=800, h=520) -> Image.Image:
    dark = rng.random() < 0.3
    bg = (30, 30, 34) if dark else (236, 236, 240)
    im = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    bar = tuple(int(v) for v in rng.integers(40, 200, 3))
    d.rectangle([0, 0, w, 36], fill=bar)
    d.text((12, 12), "Viewer - settings", fill="white")
    for _ in range(int(rng.integers(4, 9))):
        x0, y0 = int(rng.integers(10, w - 200)), int(rng.integers(50, h - 80))
        col = tuple(int(v) for v in rng.integers(60, 250, 3))
        d.rectangle([x0, y0, x0 + int(rng.integers(80, 190)), y0 + int(rng.integers(24, 70))], fill=col,
                    outline=(0, 0, 0))
        d.text((x0 + 6, y0 + 6), "button", fill=(255, 255, 255) if dark else (0, 0, 0))
    for k in range(int(rng.integers(5, 15))):
        d.text((20, 60 + 22 * k), f"option {k}: value {int(rng.integers(0, 999))}",
               fill=(220, 220, 220) if dark else (20, 20, 20))
    return im


def crops(arr: np.ndarray, rng, n: int) -> list[np.ndarray]:
    h, w = arr.shape[:2]
    out = []
    for _ in range(n):
        f = rng.uniform(0.45, 0.8)
        ch, cw = int(h * f), int(w * f)
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        out.append(arr[y:y + ch, x:x + cw])
    return out


def near_copy(im: Image.Image, kind: str, rng) -> Image.Image:
    w, h = im.size
    if kind == "resize":
        f = rng.uniform(0.5, 0.9)
        return im.resize((max(8, int(w * f)), max(8, int(h * f))),
                         Image.BILINEAR if rng.random() < .5 else Image.BICUBIC)
    if kind == "jpeg":
        buf = io.BytesIO()
        im.convert("RGB" if im.mode not in ("L", "RGB") else im.mode).save(buf, "JPEG",
                                                                          quality=int(rng.integers(40, 86)))
        return Image.open(io.BytesIO(buf.getvalue()))
    if kind == "crop_centre":
        c = rng.uniform(0.01, 0.05)
        return im.crop((int(c * w), int(c * h), w - int(c * w), h - int(c * h)))
    if kind == "crop_sides":
        c = rng.uniform(0.0, 0.03, 4)
        return im.crop((int(c[0] * w), int(c[1] * h), w - int(c[2] * w), h - int(c[3] * h)))
    if kind == "hflip":
        return ImageOps.mirror(im)
    if kind == "vflip":
        return ImageOps.flip(im)
    a = np.asarray(im.convert("L"), np.float32)
    if kind == "linear_intensity":
        a = a * rng.uniform(0.7, 1.3) + rng.uniform(-20, 20)
    else:  # gamma
        top = max(a.max(), 1.0)
        a = top * (a / top) ** rng.uniform(0.8, 1.25)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))


def nifti_slices(rng, n: int) -> list[tuple[str, np.ndarray]]:
    import nibabel as nib

    vols = sorted((DATA / "brain_mri_volumes_dev").glob("sub-*/anat/*.nii.gz"))
    out = []
    for _ in range(n):
        f = vols[int(rng.integers(len(vols)))]
        vol = np.asanyarray(nib.as_closest_canonical(nib.load(f)).dataobj).astype(np.float32)
        ax = int(rng.integers(3))
        k = int(vol.shape[ax] * rng.uniform(0.3, 0.7))
        sl = np.rot90(np.take(vol, k, axis=ax))
        lo, hi = np.percentile(sl, [0.5, 99.5])
        arr = (np.clip((sl - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)
        out.append((f"{f.name.split('.')[0]}_{ax}_{k}.png", arr))
    return out


def render_planted(rng, mri: set[str], truth: dict, save) -> None:
    """The render planting's not_mri: each rendered picture and, unless it holds an MRI slice, one or two crops;
    a third of them grey. The MRI slices drawn in come from 4-class files left out of the folder."""
    from planted_render import render_pictures

    name = "brain_tumor_4class_dev"
    spare = [p for p in sorted(p for p in (DATA / name).rglob("*") if p.is_file())
             if f"mri/{name}/{p.relative_to(DATA / name).as_posix()}" not in mri]
    slices = [np.asarray(Image.open(p).convert("L")) for p in rng.choice(spare, 5, replace=False)]
    pictures, holding_mri = render_pictures(rng, slices)
    for name, arr in pictures.items():
        for j, a in enumerate([arr] + ([] if name in holding_mri else crops(arr, rng, int(rng.integers(1, 3))))):
            if rng.random() < 1 / 3:
                a = np.asarray(Image.fromarray(a).convert("L"))
            ext = "jpg" if rng.random() < 0.3 else "png"
            truth["not_mri"].add(save(f"planted/render/{name}_{j}.{ext}", a))


def build(root: Path, planting: str, seed: int | None = None) -> dict:
    """Write the planted folder; return the truth: {flag: set(paths)}, copies [(src, copy, kind)], mri set.
    ``seed``: the planting's own (dev 0, heldout 1, grey 2, render 3) unless given."""
    from brainclust.data.demo import make_demo_dataset

    seed = {"dev": 0, "heldout": 1, "grey": 2, "render": 3}[planting] if seed is None else seed
    rng = np.random.default_rng(seed)
    mri: list[str] = []

    def save(rel: str, im: Image.Image | np.ndarray, **kw) -> str:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        (im if isinstance(im, Image.Image) else Image.fromarray(im)).save(p, **kw)
        return rel

    for name, k in (("brain_tumor_4class_dev", 300), ("brain_tumor_yes_no", 100)):
        files = sorted(p for p in (DATA / name).rglob("*") if p.is_file())
        for p in rng.choice(files, k, replace=False):
            rel = f"mri/{name}/{p.relative_to(DATA / name).as_posix()}"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, root / rel)
            mri.append(rel)
    for fname, arr in nifti_slices(rng, 60):
        mri.append(save(f"mri/volumes/{fname}", arr))
    demo = Path(tempfile.mkdtemp())
    make_demo_dataset(demo, random_state=seed)
    demo_files = sorted(p for p in demo.rglob("*.png"))
    for p in rng.choice(demo_files, 40, replace=False):
        rel = f"mri/demo/{p.relative_to(demo).as_posix()}"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, root / rel)
        mri.append(rel)
    shutil.rmtree(demo, ignore_errors=True)
    if planting == "grey":
        mri += [save(f"mri/other/{name}", arr) for name, arr in extra_mri()]
    mri = sorted(set(mri))
    truth: dict[str, set] = {f: set() for f in ("not_mri", "blank", "noise", "tiny", "duplicate", "near_duplicate")}
    # not MRI: photographs (and crops of them), documents, screenshots; or rendered pictures
    if planting == "render":
        render_planted(rng, set(mri), truth, save)
    photos = {"dev": dev_photos, "heldout": heldout_photos, "grey": grey_photos, "render": dict}[planting]()
    for name, arr in photos.items():
        for j, a in enumerate([arr] + crops(arr, rng, 2)):
            if a.ndim == 3 and (planting == "grey" or rng.random() < 0.25):
                a = np.asarray(Image.fromarray(a).convert("L"))  # some grey photographs
            ext = "jpg" if rng.random() < 0.6 else "png"
            truth["not_mri"].add(save(f"planted/photos/{name}_{j}.{ext}", a))
    for j in range(8 if planting != "render" else 0):
        truth["not_mri"].add(save(f"planted/documents/doc_{seed}_{j}.png", document(rng)))
        truth["not_mri"].add(save(f"planted/screens/screen_{seed}_{j}.png", screenshot(rng)))
    # blank: constant images and almost-empty ones
    for j in range(15):
        w, h = int(rng.integers(64, 400)), int(rng.integers(64, 400))
        a = np.full((h, w), int(rng.choice([0, 0, 255, int(rng.integers(1, 255))])), np.uint8)
        if j % 3 == 1:  # a speck or a short mark on black
            a[:] = 0
            y, x = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
            a[y:y + 3, x:x + 3] = 255
        if j % 3 == 2 and rng.random() < 0.5:
            a = np.dstack([a, a, a])
        truth["blank"].add(save(f"planted/blank/blank_{j}.{'png' if j % 2 else 'jpg'}", a))
    # noise
    for j in range(15):
        w, h = int(rng.integers(64, 400)), int(rng.integers(64, 400))
        kind = j % 3
        if kind == 0:
            a = rng.integers(0, 256, (h, w), dtype=np.uint8)
        elif kind == 1:
            a = np.clip(rng.normal(128, 40, (h, w)), 0, 255).astype(np.uint8)
        else:
            a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        truth["noise"].add(save(f"planted/noise/noise_{j}.{'png' if j % 2 else 'jpg'}", a,
                                **({"quality": 90} if j % 2 == 0 else {})))
    # tiny
    for j in range(10):
        src = Image.open(root / mri[int(rng.integers(len(mri)))])
        s = int(rng.integers(8, 28))
        truth["tiny"].add(save(f"planted/tiny/tiny_{j}.png", src.convert("L").resize((s, s))))
    # exact copies: byte copies and lossless re-saves; near copies: one transform each
    copies = []
    pool = list(rng.choice(mri, 30 + 8 * 12 + 40, replace=False))
    for j in range(30):
        src = pool.pop()
        if j % 2 == 0:
            rel = f"planted/copies/exact_{j}_{Path(src).name}"
            shutil.copyfile(root / src, root / rel) if (root / rel).parent.exists() else \
                ((root / rel).parent.mkdir(parents=True), shutil.copyfile(root / src, root / rel))
        else:
            im = Image.open(root / src)
            im.load()
            rel = save(f"planted/copies/resaved_{j}_{Path(src).stem}.png", im)
        copies.append((src, rel, "exact"))
    for j in range(8 * 12):
        kind = TRANSFORMS[j % len(TRANSFORMS)]
        while True:  # a copy must still be a picture and differ from its source
            src = pool.pop()
            im = Image.open(root / src)
            im.load()
            out = near_copy(ImageOps.exif_transpose(im), kind, rng)
            a = np.asarray(out.convert("L"))
            if a.max() > a.min() and (a.shape != np.asarray(im.convert("L")).shape
                                      or not np.array_equal(a, np.asarray(im.convert("L")))):
                break
        rel = save(f"planted/copies/near_{kind}_{j}_{Path(src).stem}.png", out)
        copies.append((src, rel, kind))
    return {"truth": truth, "copies": copies, "mri": set(mri)}


def evaluate(root: Path, built: dict, workers: int, thresholds: str = "") -> str:
    from brainclust.checks.flags import Thresholds
    from brainclust.checks.stage import check_folder

    t = Thresholds.from_text(thresholds)

    truth, copies, mri = built["truth"], built["copies"], built["mri"]
    # natural duplicates: the real images checked alone
    only = Path(tempfile.mkdtemp())
    for rel in mri:
        (only / rel).parent.mkdir(parents=True, exist_ok=True)
        (only / rel).symlink_to(root / rel)
    natural_res = check_folder(only, thresholds=t, progress=False, workers=workers)
    natural = {f: {p for p, fl in zip(natural_res.paths, natural_res.flags) if f in fl} for f in truth}
    shutil.rmtree(only, ignore_errors=True)
    t0 = time.perf_counter()
    res = check_folder(root, thresholds=t, progress=False, workers=workers)
    elapsed = time.perf_counter() - t0
    flagged = {f: {p for p, fl in zip(res.paths, res.flags) if f in fl} for f in truth}
    index = {p: i for i, p in enumerate(res.paths)}
    rep = res.duplicates.representative
    expected = {"duplicate": set(), "near_duplicate": set()}
    found_kind: Counter = Counter()
    total_kind: Counter = Counter()
    for src, cp, kind in copies:
        later = max(src, cp, key=lambda p: index[p])
        flag = "duplicate" if kind == "exact" else "near_duplicate"
        expected[flag].add(later)
        total_kind[kind] += 1
        if rep[index[src]] == rep[index[cp]] and flag in res.flags[index[later]]:
            found_kind[kind] += 1
    truth = {**truth, **expected}
    lines = [f"planted folder: {len(res.paths)} images ({len(mri)} real MRI slices); checks took {elapsed:.1f} s",
             "", "natural: flagged when the real images are checked alone "
                 "(duplicates and blank slices already in the data)",
             "", "| flag | planted | flagged | true | natural | other | precision | precision (natural excluded) "
                 "| recall |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for f in truth:
        tp = len(flagged[f] & truth[f])
        nat = len((flagged[f] - truth[f]) & natural[f])
        other = len(flagged[f]) - tp - nat
        prec = tp / len(flagged[f]) if flagged[f] else float("nan")
        prec_x = tp / (tp + other) if tp + other else float("nan")
        rec = tp / len(truth[f]) if truth[f] else float("nan")
        lines.append(f"| {f} | {len(truth[f])} | {len(flagged[f])} | {tp} | {nat} | {other} | {prec:.3f} | "
                     f"{prec_x:.3f} | {rec:.3f} |")
    from brainclust.checks.nearcode import pair_similarity

    missed_copies = [(src, cp, kind) for src, cp, kind in copies
                     if not (rep[index[src]] == rep[index[cp]])]
    if missed_copies:
        ii = np.array([index[s] for s, _, _ in missed_copies])
        jj = np.array([index[c] for _, c, _ in missed_copies])
        best, _ = pair_similarity(res.descriptors.thumbs, ii, jj)
        lines += ["", "near copies missed (kind, copy, best code similarity): " +
                  "; ".join(f"{k} {Path(c).name} {b:.3f}" for (_, c, k), b in zip(missed_copies, best))]
    lines += ["", "near copies found per transform: " +
              ", ".join(f"{k} {found_kind[k]}/{total_kind[k]}" for k in total_kind)]
    from brainclust.checks.rules import not_mri_reasons

    reasons = not_mri_reasons(res.descriptors.vectors, t)

    def scored(p: str) -> str:  # the likeness z (nan: not scored), the pixel reasons, the flags
        i = index[p]
        why = "+".join(r for r, m in reasons.items() if m[i]) or "-"
        return f"{p} (likeness z {res.likeness_z[i]:.2f}, pixel reasons {why}, flags {','.join(sorted(res.flags[i]))})"

    mri_not = sorted(p for p in flagged["not_mri"] if p in mri)
    lines.append(f"real MRI slices flagged not_mri: {len(mri_not)} {[scored(p) for p in mri_not[:10]]}")
    missed = sorted(truth["not_mri"] - flagged["not_mri"])
    lines.append(f"not_mri missed: {len(missed)}" + "".join(f"\n  {scored(p)}" for p in missed))
    others = {f: sorted(p for p in flagged[f] - truth[f] if p not in natural[f])[:8] for f in truth}
    lines.append(f"flagged, not planted, not natural (first 8 per flag): {others}")
    lines.append(f"summary: {res.summary()}")
    return "\n".join(lines)


def leave_out_planted(planting: str) -> None:
    """Leave the planting's own pictures out of the likeness rule's picture bank."""
    from brainclust.checks import likeness

    with np.load(likeness.BANK_FILE) as bank:
        names = set(bank["name"].tolist())
    own = {"dev": lambda: set(DEV_PHOTOS), "heldout": lambda: set(heldout_photos()),
           "grey": lambda: set(grey_photos()), "render": lambda: {n for n in names if n.startswith("render_")}}
    likeness.BANK_LEAVE_OUT = frozenset(own[planting]() & names)
    print(f"picture bank: {len(likeness.BANK_LEAVE_OUT)} of its {len(names)} pictures left out "
          f"({', '.join(sorted(likeness.BANK_LEAVE_OUT))})", file=sys.stderr)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--planting", choices=("dev", "heldout", "grey", "render"), default="heldout")
    ap.add_argument("--seed", type=int, help="another seed for the planting (default: its own, above)")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--keep", help="build the folder here and keep it (default: a temporary folder)")
    ap.add_argument("--bank", choices=("leave-out", "full"), default="leave-out",
                    help="leave the planting's own pictures out of the likeness rule's picture bank (default) or not")
    ap.add_argument("--thresholds", default="", help="NAME=VALUE,... as brainclust's --check-thresholds "
                    "(likeness_unlike_below=-1e9,likeness_alike_above=1e9,likeness_reference_below=-1e9,"
                    "likeness_picture_z=-1e9: without the likeness rule)")
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"real data not found at {DATA}", file=sys.stderr)
        return 2
    if args.bank == "leave-out":
        leave_out_planted(args.planting)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="checks_planted_"))
    try:
        built = build(root, args.planting, args.seed)
        print(f"## planting: {args.planting}" + ("" if args.seed is None else f", seed {args.seed}") + "\n")
        print(evaluate(root, built, args.workers, args.thresholds))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
