"""Grey photographs pasted on a dark canvas (a photograph on a dark slide): how many are ``not_mri``?

Builds, in a temporary folder, 240 slices of brain_tumor_4class_dev (a seeded sample) and 17 of scikit-image's
pictures turned grey, each centred on a 256 x 256 canvas of one dark level (0-19) at 45, 60 or 75 % of its side.
Such a picture has air all round one object, as a slice has, so the pixel rules let it through; the likeness
rule (brainclust.checks.likeness) decides. Prints each picture's likeness z, ``box_edge`` and flags, and the
real slices flagged ``not_mri`` (there should be none). The pictures are left out of the likeness rule's picture
bank (they are among its pictures) unless ``--bank full``.

    PYTHONPATH=src python benchmarks/checks_framed.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FOUR = ROOT.parent / "shared" / "data" / "brain_tumor_4class_dev"
PICTURES = ["astronaut", "camera", "coffee", "chelsea", "rocket", "moon", "retina", "coins", "clock", "page", "text",
            "brick", "cell", "immunohistochemistry", "horse", "hubble_deep_field", "grass"]


def build(out: Path, seed: int = 50) -> None:
    import skimage.data as skd

    rng = np.random.default_rng(seed)
    for p in rng.choice(sorted(FOUR.rglob("*.jpg")), 240, replace=False):
        shutil.copyfile(p, out / p.name)
    for j, name in enumerate(PICTURES):
        a = getattr(skd, name)()
        im = Image.fromarray(a if a.dtype == np.uint8 else (a * 255).astype(np.uint8)).convert("L")
        scale = [0.45, 0.6, 0.75][j % 3] * 256 / max(im.size)
        im = im.resize((max(1, int(im.width * scale)), max(1, int(im.height * scale))))
        canvas = Image.new("L", (256, 256), int(rng.integers(0, 20)))
        canvas.paste(im, ((256 - im.width) // 2, (256 - im.height) // 2))
        canvas.save(out / f"framed_{name}.png")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", help="build the folder here and keep it (default: a temporary folder)")
    ap.add_argument("--bank", choices=("leave-out", "full"), default="leave-out",
                    help="leave the pictures out of the likeness rule's picture bank (default) or not")
    args = ap.parse_args(argv)
    if not FOUR.is_dir():
        print(f"real data not found at {FOUR}", file=sys.stderr)
        return 2
    from brainclust.checks import likeness
    from brainclust.checks.descriptors import slot
    from brainclust.checks.stage import check_folder

    if args.bank == "leave-out":
        likeness.BANK_LEAVE_OUT = frozenset(PICTURES)

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="checks_framed_"))
    try:
        root.mkdir(parents=True, exist_ok=True)
        build(root)
        res = check_folder(root, progress=False)
        box = res.descriptors.vectors[:, slot("box_edge")]
        framed = [i for i, p in enumerate(res.paths) if p.startswith("framed_")]
        caught = [i for i in framed if "not_mri" in res.flags[i]]
        print(f"framed pictures flagged not_mri: {len(caught)} of {len(framed)}")
        for i in framed:
            print(f"  {res.paths[i]}: likeness z {res.likeness_z[i]:.2f}, picture {res.picture_score[i]:.2f}, "
                  f"box_edge {box[i]:.2f}, "
                  f"flags {','.join(sorted(res.flags[i])) or '-'}")
        real = sorted(set(range(len(res.paths))) - set(framed))
        print(f"real slices flagged not_mri: {[res.paths[i] for i in real if 'not_mri' in res.flags[i]]}")
        z = np.array([res.likeness_z[i] for i in real])
        print(f"lowest real likeness z: {np.sort(z[np.isfinite(z)])[:3].round(2).tolist()}")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
