"""What the data checks cost a default run: ``--checks on`` against ``--checks off``, cold and warm caches.

    PYTHONPATH=src python benchmarks/checks_run_cost.py [DATA] [--rounds 3] [--out results/checks_run_cost.json]

One process, interleaved rounds (the machine is shared and drifts). Each round: a cold run without
checks (empty feature cache), a cold run with checks (empty feature cache and descriptor store),
then a warm run of each (the caches the cold runs filled). Every run is ``pipeline.run`` with the
default settings and ``--k 4``, writing its folder (no report). Wall and CPU seconds of this process
(``resource.getrusage``; the descriptor workers are child processes, counted in ``children``). The
ratios are of medians, on vs off, in the same state. The checks' own split (descriptors; the rest:
near-duplicate search, rules, outliers, splits) comes from the manifest's ``checks.timings_s``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from brainclust.pipeline import run


def _cpu() -> tuple[float, float]:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def one(data: Path, work: Path, name: str, cache: Path, checks: str) -> dict:
    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    c0, k0 = _cpu()
    t0 = time.perf_counter()
    res = run(data, out, k=4, cache_dir=str(cache), checks=checks, progress=False)
    wall = time.perf_counter() - t0
    c1, k1 = _cpu()
    rec = {"run": name, "wall_s": wall, "cpu_s": c1 - c0, "children_cpu_s": k1 - k0,
           "timings_s": res.manifest["timings_s"]}
    if checks == "on":
        rec["checks_timings_s"] = res.manifest["checks"]["timings_s"]
        rec["descriptor_cache"] = res.manifest["checks"]["descriptor_cache"]
        rec["summary"] = res.checks.summary()
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", nargs="?", default="../shared/data/brain_tumor_4class_dev")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=None, help="JSON file for the raw records")
    args = ap.parse_args()
    data = Path(args.data)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for r in range(args.rounds):
            caches = {c: work / f"cache_{c}_{r}" for c in ("off", "on")}
            for state in ("cold", "warm"):
                for checks in ("off", "on"):
                    rec = one(data, work, f"{state}_{checks}", caches[checks], checks)
                    rec.update(round=r, state=state, checks=checks)
                    rows.append(rec)
                    print(json.dumps({k: rec[k] for k in ("round", "state", "checks", "wall_s", "cpu_s")}), flush=True)
    table = {}
    for state in ("cold", "warm"):
        med = {c: {k: statistics.median(x[k] for x in rows if x["state"] == state and x["checks"] == c)
                   for k in ("wall_s", "cpu_s")} for c in ("off", "on")}
        desc = statistics.median(x["checks_timings_s"]["describe"] for x in rows
                                 if x["state"] == state and x["checks"] == "on")
        total = statistics.median(x["checks_timings_s"]["total"] for x in rows
                                  if x["state"] == state and x["checks"] == "on")
        table[state] = {"off": med["off"], "on": med["on"],
                        "ratio_wall": med["on"]["wall_s"] / med["off"]["wall_s"],
                        "ratio_cpu": med["on"]["cpu_s"] / med["off"]["cpu_s"],
                        "checks_describe_s": desc, "checks_total_s": total}
    print("| cache | off: wall / CPU s | on: wall / CPU s | on / off (wall) | on / off (CPU) | checks: descriptors "
          "| checks: all |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for state, t in table.items():
        print(f"| {state} | {t['off']['wall_s']:.1f} / {t['off']['cpu_s']:.1f} | {t['on']['wall_s']:.1f} / "
              f"{t['on']['cpu_s']:.1f} | {t['ratio_wall']:.2f} | {t['ratio_cpu']:.2f} | "
              f"{t['checks_describe_s']:.1f} s | {t['checks_total_s']:.1f} s |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"data": str(data), "rows": rows, "table": table}, indent=1))


if __name__ == "__main__":
    main()
