"""Pictures in the views that pass for a slice, among real slices: how many are ``not_mri``, and is any slice?

Builds, in a temporary folder, 240 slices of brain_tumor_4class_dev and 60 of brain_tumor_yes_no (a minority
source: its slices are the least like the rest) and, for one part of the picture bank's pictures
(``--part K`` of 4, by name), one of the views the bank makes of each (``benchmarks/picture_bank.py``: grey,
colour, on a dark canvas at 50 and 70 %, an oval crop on black, faded to a dark edge), drawn by ``--seed``
(``--all-views``: every view; the views of one picture then vouch for each other as the folder's slices, which
is a harder case). Those pictures are left out of the picture bank for the run with their families (the
stereo pair's other view, the other fonts' texts), so the likeness rule's step 7 meets them as new pictures.
Prints, per view, how many are ``not_mri`` and by which reasons, and the real slices flagged ``not_mri`` (there
should be none).

    PYTHONPATH=src python benchmarks/checks_picture_views.py --part 0 [--seed 61]   # parts 1, 2, 3
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
DATA = ROOT.parent / "shared" / "data"
PARTS = 4


def family(name: str) -> str:
    """Pictures of one family are left out of the bank together: the two views of scikit-image's stereo pair,
    the rendered texts in their several fonts."""
    return "motorcycle" if name.startswith("motorcycle") else "render_text" if name.startswith("render_text") \
        else name


def build(out: Path, part: int, seed: int = 60, all_views: bool = False) -> list[str]:
    """Write the folder; return the names of the planted pictures."""
    from picture_bank import package_pictures, rendered_pictures, views

    rng = np.random.default_rng(seed)
    for name, k in (("brain_tumor_4class_dev", 240), ("brain_tumor_yes_no", 60)):
        for p in rng.choice(sorted((DATA / name).rglob("*.jpg")) + sorted((DATA / name).rglob("*.JPG")), k,
                            replace=False):
            shutil.copyfile(p, out / f"mri_{name}_{p.parent.name}_{p.name}")
    pictures = {**package_pictures(), **rendered_pictures(np.random.default_rng(0))}
    names = sorted(pictures)[part::PARTS]
    for name in names:
        made = views(pictures[name], rng)
        for kind in made if all_views else [rng.choice(sorted(made))]:
            made[kind].save(out / f"view_{name}__{kind}.png")
    return names


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", type=int, choices=range(PARTS), default=0)
    ap.add_argument("--seed", type=int, default=60, help="the seed that draws the slices and the views")
    ap.add_argument("--all-views", action="store_true", help="every view of each picture, not one")
    ap.add_argument("--thresholds", default="", help="NAME=VALUE,... as brainclust's --check-thresholds")
    ap.add_argument("--keep", help="build the folder here and keep it (default: a temporary folder)")
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"real data not found at {DATA}", file=sys.stderr)
        return 2
    from brainclust.checks import likeness
    from brainclust.checks.flags import Thresholds
    from brainclust.checks.stage import check_folder

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="checks_views_"))
    try:
        root.mkdir(parents=True, exist_ok=True)
        names = build(root, args.part, args.seed, args.all_views)
        with np.load(likeness.BANK_FILE) as bank:
            families = {family(n) for n in names}
            likeness.BANK_LEAVE_OUT = frozenset(n for n in bank["name"].tolist() if family(n) in families)
        res = check_folder(root, progress=False, thresholds=Thresholds.from_text(args.thresholds))
        planted = [i for i, p in enumerate(res.paths) if p.startswith("view_")]
        by_view, caught, reasons = Counter(), Counter(), Counter()
        for i in planted:
            view = res.paths[i].rsplit("__", 1)[1].removesuffix(".png")
            by_view[view] += 1
            if "not_mri" in res.flags[i]:
                caught[view] += 1
                reasons[res.not_mri_reason[i]] += 1
        print(f"part {args.part}: {len(names)} pictures planted, {len(likeness.BANK_LEAVE_OUT)} left out of the bank "
              f"({', '.join(sorted(likeness.BANK_LEAVE_OUT))})")
        print(f"planted pictures not_mri: {sum(caught.values())} of {len(planted)} "
              f"({sum(caught.values()) / len(planted):.3f})")
        print("per view: " + ", ".join(f"{v} {caught[v]}/{by_view[v]}" for v in sorted(by_view)))
        print("reasons: " + ", ".join(f"{r or '-'} {c}" for r, c in reasons.most_common()))
        missed = [i for i in planted if "not_mri" not in res.flags[i]]
        for i in missed:
            print(f"  missed {res.paths[i]}: z {res.likeness_z[i]:.2f}, picture {res.picture_score[i]:.2f}, "
                  f"flags {','.join(sorted(res.flags[i])) or '-'}")
        real = [i for i, p in enumerate(res.paths) if p.startswith("mri_")]
        print(f"real slices flagged not_mri: {[res.paths[i] for i in real if 'not_mri' in res.flags[i]]}")
        s = np.array([res.picture_score[i] for i in real])
        print(f"lowest real picture scores: {np.sort(s[np.isfinite(s)])[:3].round(2).tolist()}")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
