"""Issue 24's measurements on every local set, mean ± std over 5 seeds (labels only score).

Parts (run as separate processes; each writes its own JSON, merged by ``--render``):

``basic``      default (efficientnet_lite0, PCA 50, average-cosine), pixels, the fusion
               efficientnet_lite0+pixels, TURTLE on (efficientnet_lite0, pixels) and on the
               four single backbones;
``auto``       the first ``--auto`` (:func:`brainclust.analysis.autoconfig.select`), ``--consensus``
               and the new one (:func:`brainclust.analysis.autoselect.decide`, with the estimated
               plane as its factor);
``steer``      ``--remove`` and ``--within`` with the estimated plane, the known plane (volume sets
               and demo: what a NIfTI header or metadata gives) and the default's own k-cut
               (``level_K``), both removal rules;
``k``          ``--k auto``: the four-index vote (:class:`~brainclust.cluster.kselect.KSelector`) and
               prediction strength (:class:`~brainclust.cluster.kchoice.StableK`), on the default and the
               fusion; the chosen k per seed;
``plane``      the plane estimate's accuracy where the plane is known.

Every cell uses cached features (``local_sets.load``); k = the number of classes. NMI and ARI;
``--within`` rows score the global ids (k clusters per stratum) and, in ``within_nmi``, the
mean NMI inside the strata.

Usage::

    python benchmarks/cut_volume_sets.py ../brainclust-quality/sets
    OMP_NUM_THREADS=1 python benchmarks/steer_table.py --parts basic --out ../brainclust-quality/t_basic.json
    ... (one process per part) ...
    python benchmarks/steer_table.py --render ../brainclust-quality/t_*.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
import local_sets  # noqa: E402

from brainclust.analysis.common import markdown_table, mean_std_text  # noqa: E402
from brainclust.cluster.methods import Clusterer  # noqa: E402
from brainclust.cluster.reduce import PCAReducer  # noqa: E402
from brainclust.cluster.steer import FactorRemover, StratifiedClusterer  # noqa: E402
from brainclust.core.arrays import unit_rows  # noqa: E402
from brainclust.selfsup.gate import reference_labels  # noqa: E402

SEEDS = (0, 1, 2, 3, 4)
PLANE_VERSION = "plane-v2"


def scores(y, lab) -> dict:
    return {"nmi": float(normalized_mutual_info_score(y, lab)), "ari": float(adjusted_rand_score(y, lab))}


class Cell:
    def __init__(self, store: dict, save):
        self.store, self.save = store, save

    def done(self, row, name) -> bool:
        return len(self.store.get(row, {}).get(name, [])) >= len(SEEDS)

    def add(self, row, name, seed, y, lab, t0, **extra):
        self.store.setdefault(row, {}).setdefault(name, []).append(
            {"seed": seed, **scores(y, lab), "wall_s": time.perf_counter() - t0, **extra})


def planes_of(s, cache: Path) -> np.ndarray:
    """The estimated plane of every image of set ``s`` (cached per folder)."""
    from brainclust.features.plane import fitted_estimator
    from brainclust.io.scan import load_record, scan

    f = cache / f"planes_{PLANE_VERSION}_{Path(s.path).name}.npz"
    if f.is_file():
        d = np.load(f, allow_pickle=False)
        known = dict(zip(d["paths"].tolist(), d["plane"].tolist()))
        if all(p in known for p in s.paths):
            return np.asarray([known[p] for p in s.paths], dtype=object)
    recs = {r.path: r for r in scan(s.path, True).records}
    est = fitted_estimator(0)
    plane = est.predict([load_record(recs[p]) for p in s.paths])
    np.savez(f, paths=np.asarray(s.paths), plane=np.asarray(plane, dtype=str))
    return plane


def known_plane(s):
    if "plane" in s.meta:
        return s.meta["plane"]
    return s.labels if s.name == "demo" else None


def spaces(s, seed, names):
    return {b: PCAReducer(50, random_state=seed).fit_transform(s.features[b]) for b in names}


def part_basic(s, c: Cell) -> None:
    from brainclust.cluster.turtle import TurtleClusterer

    for seed in SEEDS:
        sp = spaces(s, seed, ("efficientnet_lite0", "pixels", "efficientnet_lite0+pixels", "efficientnet_lite0_multi",
                              "hog"))
        for row, b in (("default", "efficientnet_lite0"), ("pixels", "pixels"),
                       ("efficientnet_lite0+pixels", "efficientnet_lite0+pixels")):
            if not c.done(row, s.name):
                t0 = time.perf_counter()
                c.add(row, s.name, seed, s.labels, reference_labels(sp[b], s.k, seed), t0)
        for row, names in (("TURTLE (lite0, pixels)", ("efficientnet_lite0", "pixels")),
                           ("TURTLE (4 backbones)",
                            ("efficientnet_lite0", "efficientnet_lite0_multi", "pixels", "hog"))):
            if not c.done(row, s.name):
                t0 = time.perf_counter()
                m = TurtleClusterer(n_clusters=s.k, warm_start=True, random_state=seed).fit([sp[b] for b in names])
                c.add(row, s.name, seed, s.labels, m.labels_, t0, objective=m.objective_)
        c.save()


def part_auto(s, c: Cell, cache: Path) -> None:
    from brainclust.analysis.autoconfig import select
    from brainclust.analysis.autoselect import decide

    plane = planes_of(s, cache)
    for seed in SEEDS:
        if not c.done("--auto (first rule)", s.name):
            t0 = time.perf_counter()
            res = select(s.features, s.k, seed)
            c.add("--auto (first rule)", s.name, seed, s.labels, res.labels[res.chosen], t0, chosen=list(res.chosen))
        if not c.done("--consensus", s.name):
            t0 = time.perf_counter()
            res = select(s.features, s.k, seed, reductions=("pca",), with_consensus=True)
            c.add("--consensus", s.name, seed, s.labels, res.consensus.labels_, t0)
        if not c.done("--auto (new rule)", s.name):
            t0 = time.perf_counter()
            dec = decide(s.features, s.k, seed, factors={"plane": plane})
            c.add("--auto (new rule)", s.name, seed, s.labels, dec.labels, t0, chosen=dec.chosen,
                  factors=dec.factors, suggestion=dec.suggestion,
                  candidates=[{kk: v for kk, v in r.items()} for r in dec.rows])
        c.save()


def part_steer(s, c: Cell, cache: Path) -> None:
    X = s.features["efficientnet_lite0"]
    strata = {"estimated plane": planes_of(s, cache)}
    if known_plane(s) is not None:
        strata["known plane"] = known_plane(s)
    for seed in SEEDS:
        emb = PCAReducer(50, random_state=seed).fit_transform(X)
        strata["level_K"] = Clusterer(n_clusters=s.k, random_state=seed).fit(emb).labels_.astype(str)
        # the comparison on the same features: the default, and the default on unit rows (what the --remove rule's
        # rescaling did before 2026-12-07)
        for row, Z in (("default (steer part)", X), ("default on unit rows", unit_rows(X))):
            if not c.done(row, s.name):
                t0 = time.perf_counter()
                c.add(row, s.name, seed, s.labels, reference_labels(PCAReducer(50, random_state=seed)
                                                                    .fit_transform(Z), s.k, seed), t0)
        for what, st in strata.items():
            for rule in ("center", "project"):
                row = f"--remove {what} ({rule})"
                if not c.done(row, s.name):
                    t0 = time.perf_counter()
                    R = FactorRemover(rule).fit_transform(X, st)
                    c.add(row, s.name, seed, s.labels, reference_labels(PCAReducer(50, random_state=seed)
                                                                        .fit_transform(R), s.k, seed), t0)
            row = f"--within {what}"
            if not c.done(row, s.name):
                t0 = time.perf_counter()
                w = StratifiedClusterer(n_clusters=s.k, random_state=seed).fit(X, st)
                inside = [normalized_mutual_info_score(s.labels[w.stratum_ == v], w.local_labels_[w.stratum_ == v])
                          for v in w.strata_ if (w.stratum_ == v).sum() >= 10]
                c.add(row, s.name, seed, s.labels, w.labels_, t0, within_nmi=float(np.mean(inside)),
                      n_clusters=int(w.n_clusters_))
        c.save()


def part_k(s, c: Cell) -> None:
    from brainclust.cluster.kchoice import StableK
    from brainclust.cluster.kselect import KSelector

    for seed in SEEDS:
        for b in ("efficientnet_lite0", "efficientnet_lite0+pixels"):
            emb = PCAReducer(50, random_state=seed).fit_transform(s.features[b])
            for row, est in ((f"k: four-index vote ({b})", KSelector(random_state=seed)),
                             (f"k: prediction strength ({b})", StableK(random_state=seed))):
                if c.done(row, s.name):
                    continue
                t0 = time.perf_counter()
                est.fit(emb)
                lab = reference_labels(emb, est.k_, seed)
                c.add(row, s.name, seed, s.labels, lab, t0, k=int(est.k_), true_k=int(s.k), evidence=est.as_dict())
        c.save()


def part_plane(s, c: Cell, cache: Path) -> None:
    truth = known_plane(s)
    row = "plane estimate accuracy"
    if truth is None or c.done(row, s.name):
        return
    t0 = time.perf_counter()
    est = planes_of(s, cache)
    acc = float((est == truth).mean())
    per = {p: float((est[truth == p] == p).mean()) for p in sorted(set(truth.tolist()))}
    for seed in SEEDS:  # deterministic: one value, repeated so that the table format holds
        c.store.setdefault(row, {}).setdefault(s.name, []).append(
            {"seed": seed, "nmi": acc, "ari": acc, "per_plane": per, "wall_s": time.perf_counter() - t0})
    c.save()


def render(store: dict, names) -> str:
    lines = []
    for metric in ("nmi", "ari"):
        rows = []
        for row, cells in store.items():
            if row.startswith("k:") or row.startswith("plane"):
                continue
            vals = [[v[metric] for v in cells.get(n, [])] for n in names]
            means = [np.mean(v) for v in vals if v]
            walls = [v["wall_s"] for n in names for v in cells.get(n, [])]
            rows.append([row, *[mean_std_text(v) if v else "-" for v in vals],
                         f"{np.mean(means):.3f}" if len(means) == len(names) else "-",
                         f"{np.mean(walls):.1f}" if walls else "-"])
        lines += [f"**{metric.upper()}**", "", markdown_table(["row", *names, "mean", "wall s / cell"], rows), ""]
    rows = []
    for row, cells in store.items():
        if row.startswith("k:"):
            ks = [", ".join(str(v["k"]) for v in cells.get(n, [])) or "-" for n in names]
            hits = sum(v["k"] == v["true_k"] for n in names for v in cells.get(n, []))
            total = sum(len(cells.get(n, [])) for n in names)
            rows.append([row[3:], *ks, f"{hits}/{total}"])
    if rows:
        lines += ["**k chosen per seed** (true k: " + ", ".join(f"{n} {t}" for n, t in _true_k(store, names)) + ")",
                  "", markdown_table(["selector", *names, "hits"], rows), ""]
    acc = store.get("plane estimate accuracy")
    if acc:
        lines += ["**plane estimate accuracy**", "",
                  markdown_table(["set", "accuracy", "per plane"],
                                 [[n, f"{v[0]['nmi']:.3f}",
                                   ", ".join(f"{p} {a:.2f}" for p, a in v[0]["per_plane"].items())]
                                  for n, v in acc.items()]), ""]
    return "\n".join(lines)


def _true_k(store, names):
    for row, cells in store.items():
        if row.startswith("k:"):
            return [(n, cells[n][0]["true_k"]) for n in names if cells.get(n)]
    return []


def main() -> None:
    global SEEDS
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="basic,auto,steer,k,plane")
    ap.add_argument("--sets", default=",".join(local_sets.ALL))
    ap.add_argument("--cache-dir", default="../brainclust-quality/feat")
    ap.add_argument("--sets-root", default="../brainclust-quality/sets")
    ap.add_argument("--out", default="../brainclust-quality/steer_table.json")
    ap.add_argument("--render", nargs="+", metavar="JSON")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--backbones", default=",".join(local_sets.PORTFOLIO),
                    help="the backbones to load (the steer and plane parts need efficientnet_lite0 only)")
    a = ap.parse_args()
    SEEDS = tuple(range(a.seeds))
    if a.render:
        store: dict = {}
        for f in a.render:
            for row, cells in json.loads(Path(f).read_text()).items():
                store.setdefault(row, {}).update(cells)
        print(render(store, [n for n in local_sets.ALL if any(n in c for c in store.values())]))
        return
    out = Path(a.out)
    store = json.loads(out.read_text()) if out.is_file() else {}
    c = Cell(store, lambda: out.write_text(json.dumps(store, indent=1, default=float)))
    cache = Path(a.cache_dir)
    for name in a.sets.split(","):
        s = local_sets.load(name, tuple(a.backbones.split(",")), cache_dir=a.cache_dir, sets_root=a.sets_root)
        for part in a.parts.split(","):
            t0 = time.perf_counter()
            {"basic": lambda: part_basic(s, c), "auto": lambda: part_auto(s, c, cache),
             "steer": lambda: part_steer(s, c, cache), "k": lambda: part_k(s, c),
             "plane": lambda: part_plane(s, c, cache)}[part]()
            print(f"{name} {part}: {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
