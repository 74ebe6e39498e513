"""torch fp32 against torch bf16 autocast on this CPU (EfficientNet-Lite0), in one process, round-robin.

On a CPU without native bf16 (no AMX or AVX512-BF16) torch emulates bf16: this measures what that
costs, the reason ``--precision bf16`` is refused there (docs/performance.md, "AVX2 only").

    python benchmarks/bench_bf16_emulated.py --n 96
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from brainclust.features import runtime as rt
from brainclust.features.extractor import FeatureExtractor


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/brain_tumor_4class_dev")
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    files = sorted(str(p) for p in Path(args.data).rglob("*.jpg"))
    files = files[:: max(1, len(files) // args.n)][: args.n]
    native = rt.bf16_supported()
    rt.bf16_supported = lambda device="cpu": True  # let torch emulate it where it is not native
    ex = {p: FeatureExtractor(backbone="efficientnet_lite0", runtime="torch", precision=p, cache_dir=False).fit()
          for p in ("fp32", "bf16")}
    times: dict[str, list[float]] = {p: [] for p in ex}
    feats = {p: e.transform(files[:8]) for p, e in ex.items()}  # warm-up
    for _ in range(args.repeats):
        for p, e in ex.items():
            t = time.perf_counter()
            feats[p] = np.asarray(e.transform(files))
            times[p].append(time.perf_counter() - t)
    med = {p: statistics.median(v) for p, v in times.items()}
    a, b = feats["fp32"], feats["bf16"]
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    print(f"torch native bf16: {native}; {len(files)} images, median of {args.repeats}")
    print(f"fp32 {len(files) / med['fp32']:.1f} img/s, bf16 {len(files) / med['bf16']:.1f} img/s: "
          f"bf16 at {med['fp32'] / med['bf16']:.2f}x fp32; feature cosine mean {cos.mean():.4f}, min {cos.min():.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
