"""Real slices under a steep display curve: how many does ``not_mri`` flag, by the pixel rules and after likeness?

Each of the 1,000 brain_tumor_4class_dev slices is redrawn under gamma 1.5, 2 and 3 and under windows from 25, 40 and
60 of 255 (the levels below crushed to black), as an export from a viewer would. The pixel rules are applied to every
variant; those they flag ``not_mri`` are then checked by ``check_folder`` beside a seeded sample of 200 plain slices,
so that the likeness rule (which may clear ``no_air``, ``scene`` and ``strokes``) sees a folder of slices.

    PYTHONPATH=src python benchmarks/checks_display_variants.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from brainclust.checks.decode import Decoded
from brainclust.checks.descriptors import describe
from brainclust.checks.flags import Thresholds
from brainclust.checks.rules import not_mri_reasons, pixel_flags
from brainclust.checks.stage import check_folder

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "brain_tumor_4class_dev"
VARIANTS = {"gamma 1.5": lambda a: 255 * (a / 255) ** 1.5, "gamma 2": lambda a: 255 * (a / 255) ** 2,
            "gamma 3": lambda a: 255 * (a / 255) ** 3, "window 25-255": lambda a: (a - 25) / 230 * 255,
            "window 40-255": lambda a: (a - 40) / 215 * 255, "window 60-255": lambda a: (a - 60) / 195 * 255}


def main() -> int:
    if not DATA.is_dir():
        print(f"real data not found at {DATA}", file=sys.stderr)
        return 2
    files = sorted(p for p in DATA.rglob("*") if p.is_file())
    t = Thresholds()
    work = Path(tempfile.mkdtemp(prefix="display_variants_"))
    flagged: Counter = Counter()
    reasons: Counter = Counter()
    try:
        for f in files:
            a = np.asarray(Image.open(f).convert("L"), np.float64)
            for j, (name, curve) in enumerate(VARIANTS.items()):
                x = np.clip(np.rint(curve(a)), 0, 255).astype(np.uint8)
                vec, _ = describe(Decoded(x.astype(np.float32), None, 255.0, ""))
                if pixel_flags(vec, t)["not_mri"][0]:
                    flagged[name] += 1
                    reasons.update(k for k, m in not_mri_reasons(vec, t).items() if m[0])
                    (work / "variants").mkdir(exist_ok=True)
                    Image.fromarray(x).save(work / "variants" / f"v{j}_{f.stem}.png")
        rng = np.random.default_rng(0)
        (work / "slices").mkdir()
        for f in rng.choice(files, 200, replace=False):
            shutil.copyfile(f, work / "slices" / f.name)
        print(f"{len(files)} slices; flagged not_mri by the pixel rules, per variant: "
              + ", ".join(f"{n} {flagged[n]}" for n in VARIANTS) + f" (reasons: {dict(reasons)})")
        if not flagged:
            return 0
        res = check_folder(work, progress=False)
        names = list(VARIANTS)
        variants = [i for i, p in enumerate(res.paths) if p.startswith("variants/")]
        kept = [i for i in variants if "not_mri" in res.flags[i]]
        plain = sum("not_mri" in res.flags[i] for i, p in enumerate(res.paths) if p.startswith("slices/"))
        print(f"after the likeness rule, beside 200 plain slices: {len(kept)} of {len(variants)} still flagged"
              + "".join(f"\n  {res.paths[i]} ({names[int(res.paths[i].split('/')[1][1])]}, likeness z "
                        f"{res.likeness_z[i]:.2f})" for i in kept)
              + f"\nplain slices flagged not_mri: {plain}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
