"""Command-line interface: parse arguments, call the library, map errors to exit codes.

No work happens here. Exit codes: 0 success, 2 usage or input error (one line
on stderr), 1 unexpected failure, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

DEMO_DEFAULT_K = 3


def _pca(value: str) -> float | int:
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 0, an integer >= 1 or a fraction in (0, 1), got '{value}'") from None
    return int(v) if v.is_integer() else v


def _clip(value: str) -> tuple[float, float] | None:
    if value.lower() in ("off", "none", "0"):
        return None
    try:
        lo, hi = (float(x) for x in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH percentiles (e.g. 0.5,99.5) or 'off', got '{value}'") from None
    return lo, hi


def _add_extraction_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("feature extraction")
    g.add_argument("--backbone", default="auto",
                   help="auto | inception_v3 | efficientnet_lite0 (default auto: inception_v3 when its weights "
                        "are available locally, else efficientnet_lite0 with a warning)")
    g.add_argument("--weights", metavar="PATH", help="local state-dict file for the backbone")
    g.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="auto = bf16 where the CPU/GPU supports it natively (default auto)")
    g.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    g.add_argument("--workers", type=int, default=None, help="image-decoding processes (default: half the cores)")
    g.add_argument("--clip", type=_clip, default=(0.5, 99.5), metavar="LOW,HIGH",
                   help="percentile intensity clip before min-max scaling, or 'off' (default 0.5,99.5)")
    g.add_argument("--cache-dir", metavar="DIR", help="feature cache (default $BRAINCLUST_CACHE or ~/.cache/brainclust)")
    g.add_argument("--device", default="cpu", help="cpu | cuda | auto (default cpu)")


def _add_cluster_options(p: argparse.ArgumentParser, k_default: int = 4) -> None:
    g = p.add_argument_group("reduction and clustering")
    g.add_argument("--pca", type=_pca, default=50,
                   help="PCA components (int), variance fraction (e.g. 0.95), or 0 for off (default 50)")
    g.add_argument("--method", default="hierarchical",
                   choices=["hierarchical", "kmeans", "gmm", "dbscan", "spectral"],
                   help="hierarchical = average linkage, cosine distance (default)")
    g.add_argument("--k", type=int, default=k_default, help=f"number of clusters (default {k_default})")
    g.add_argument("--seed", type=int, default=0, help="seed of all randomness (default 0)")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="brainclust",
                                     description="Unsupervised clustering of brain MRI images with CNN features.")
    parser.add_argument("--version", action="version", version=f"brainclust {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="cluster a folder of images")
    p.add_argument("data", help="folder of images (searched recursively)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--labels-from-folders", action="store_true",
                   help="first sub-folder = label, used only for scoring (ARI, NMI, FMI, ACC)")
    _add_extraction_options(p)
    _add_cluster_options(p)

    p = sub.add_parser("predict", help="assign new images to the clusters of a finished run")
    p.add_argument("model_dir", help="the --out folder of a finished 'brainclust run'")
    p.add_argument("data", help="folder of new images")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--labels-from-folders", action="store_true")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--cache-dir", metavar="DIR")

    p = sub.add_parser("demo", help="generate the built-in MNI152 demo set and cluster it")
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--n-per-class", type=int, default=40, help="images per plane (default 40)")
    p.add_argument("--backbone", default="efficientnet_lite0", help="default efficientnet_lite0 (offline)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--cache-dir", metavar="DIR")
    _add_cluster_options(p, k_default=DEMO_DEFAULT_K)
    return parser


def _configure_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("brainclust: %(message)s"))
    root = logging.getLogger("brainclust")
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    root.propagate = False


def _summary(result) -> str:
    m = result.metrics
    parts = [f"{m['n_images']} images", f"{m['n_clusters']} clusters",
             f"silhouette={m['silhouette']:.3f}" if m.get("silhouette") is not None else "silhouette=n/a"]
    for key in ("ari", "nmi", "fmi", "acc"):
        if key in m:
            parts.append(f"{key.upper()}={m[key]:.3f}")
    lines = [", ".join(parts)]
    if result.skipped:
        lines.append(f"{len(result.skipped)} file(s) skipped (see manifest.json)")
    cache = result.manifest.get("cache", {})
    lines.append(f"feature cache: {cache.get('hits', 0)} hits, {cache.get('misses', 0)} misses")
    if result.out_dir is not None:
        lines.append(f"outputs: {result.out_dir}/assignments.csv, metrics.json, manifest.json")
    return "\n".join(lines)


def _cmd_run(args) -> None:
    from .pipeline import RunConfig, run

    cfg = RunConfig(backbone=args.backbone, weights=args.weights, precision=args.precision,
                    batch_size=args.batch_size, workers=args.workers, clip_percentiles=args.clip,
                    pca=args.pca, method=args.method, k=args.k, seed=args.seed,
                    labels_from_folders=args.labels_from_folders, cache_dir=args.cache_dir, device=args.device)
    print(_summary(run(args.data, args.out, cfg)))


def _cmd_predict(args) -> None:
    from .pipeline import predict

    result = predict(args.model_dir, args.data, args.out, labels_from_folders=args.labels_from_folders,
                     cache_dir=args.cache_dir, batch_size=args.batch_size, workers=args.workers)
    print(_summary(result))


def _cmd_demo(args) -> None:
    from .demo import make_demo_dataset
    from .pipeline import RunConfig, run

    out = Path(args.out)
    data = make_demo_dataset(out / "data", n_per_class=args.n_per_class, random_state=args.seed)
    logging.getLogger("brainclust").info("demo data: %s (MNI152 T1 slices; labels = axial/coronal/sagittal)", data)
    cfg = RunConfig(backbone=args.backbone, precision=args.precision, pca=args.pca, method=args.method,
                    k=args.k, seed=args.seed, labels_from_folders=True, cache_dir=args.cache_dir)
    result = run(data, out / "results", cfg)
    print(_summary(result))
    print(json.dumps({k: result.metrics.get(k) for k in ("silhouette", "ari", "nmi", "fmi", "acc")}))


COMMANDS = {"run": _cmd_run, "predict": _cmd_predict, "demo": _cmd_demo}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.quiet)
    from .errors import BrainclustError

    try:
        COMMANDS[args.command](args)
    except BrainclustError as exc:
        print(f"brainclust: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("brainclust: interrupted; rerun the same command to resume from the feature cache", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
