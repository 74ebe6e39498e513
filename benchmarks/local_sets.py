"""The local labelled sets of issue 24, loaded once through the feature cache.

``demo`` (generated), ``dev`` (brain_tumor_4class_dev), ``dev_gmp`` (its glioma,
meningioma and pituitary images only: one contrast-enhanced T1 source in mixed planes,
the local analogue of hidden set 3; a subset of ``dev``, not independent of it),
``yes_no``, and the volume-cut sets of ``benchmarks/cut_volume_sets.py``: ``plane``,
``sequence``, ``ce_subject`` and ``mixed_sequence`` (the images of ``plane`` scored
against the sequence). Labels and the volume sets' metadata only score, or name a
``--within/--remove`` column; never features.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainclust.analysis.common import load_dataset
from brainclust.data.demo import make_demo_dataset
from brainclust.pipeline import RunConfig

SHARED = Path(__file__).resolve().parents[1] / "../shared/data"
#: name -> (folder, kind): kind "shared" (under the shared data folder), "cut" (under --sets-root), "demo".
SOURCES = {"demo": ("demo", "demo"), "dev": ("brain_tumor_4class_dev", "shared"),
           "dev_gmp": ("brain_tumor_4class_dev", "shared"), "yes_no": ("brain_tumor_yes_no", "shared"),
           "plane": ("plane", "cut"), "sequence": ("sequence", "cut"), "ce_subject": ("ce_subject", "cut"),
           "mixed_sequence": ("plane", "cut")}
ALL = tuple(SOURCES)
PORTFOLIO = ("efficientnet_lite0", "efficientnet_lite0_multi", "pixels", "hog", "efficientnet_lite0+pixels")


@dataclass
class LocalSet:
    name: str
    path: str
    features: dict
    labels: np.ndarray
    k: int
    paths: list
    meta: dict = field(default_factory=dict)


def folder(name: str, sets_root) -> Path:
    sub, kind = SOURCES[name]
    if kind == "shared":
        return (SHARED / sub).resolve()
    root = Path(sets_root)
    if kind == "demo" and not (root / "demo").is_dir():
        make_demo_dataset(root / "demo", n_per_class=40, random_state=0)
    return root / sub


def read_metadata(path: Path) -> dict[str, dict]:
    f = path / "metadata.csv"
    if not f.is_file():
        return {}
    with open(f, newline="") as fh:
        return {r["path"]: r for r in csv.DictReader(fh)}


def load(name: str, backbones=PORTFOLIO, cache_dir="../brainclust-quality/feat",
         sets_root="../brainclust-quality/sets") -> LocalSet:
    path = folder(name, sets_root)
    data = {b: load_dataset(path, RunConfig(backbone=b, cache_dir=cache_dir, progress=False)) for b in backbones}
    first = data[backbones[0]]
    paths = [r.path for r in first.records]
    for b, d in data.items():
        if [r.path for r in d.records] != paths:
            raise RuntimeError(f"{name}: backbone {b} decoded another set of images")
    labels = np.asarray(first.labels)
    rows = np.arange(len(paths))
    md = read_metadata(path)
    meta = {}
    if md:
        cols = [c for c in next(iter(md.values())) if c != "path"]
        meta = {c: np.asarray([md[p][c] for p in paths]) for c in cols}
    if name == "mixed_sequence":
        labels = meta["sequence"]
    if name == "dev_gmp":
        rows = np.flatnonzero(labels != "notumor")
    feats = {b: np.asarray(d.features)[rows] for b, d in data.items()}
    labels = labels[rows]
    meta = {c: v[rows] for c, v in meta.items()}
    return LocalSet(name, str(path), feats, labels, len(set(labels.tolist())), [paths[i] for i in rows], meta)
