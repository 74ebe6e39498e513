"""Command-line interface: parse arguments, call the library, map errors to exit codes.

No work happens here. Exit codes: 0 success, 2 usage or input error (one line
on stderr), 1 unexpected failure, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

DEMO_DEFAULT_K = 3


def _pca(value: str) -> float | int:
    try:
        return int(value)  # "1" is one component
    except ValueError:
        pass
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 0, an integer >= 1 or a fraction in (0, 1), got '{value}'") from None
    return int(v) if v.is_integer() and v != 1 else v  # "1.0" stays a float: PCAReducer refuses it


def _k(value: str) -> int | str:
    if value.lower() == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'auto', got '{value}'") from None


def clip_arg(value: str) -> tuple[float, float] | None:
    if value.lower() in ("off", "none", "0"):
        return None
    try:
        lo, hi = (float(x) for x in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH percentiles (e.g. 0.5,99.5) or 'off', got '{value}'") from None
    return lo, hi


def window_arg(value: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH intensities (e.g. 0,255), got '{value}'") from None
    return lo, hi


def views_arg(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _add_extraction_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("feature extraction")
    g.add_argument("--backbone", default="auto",
                   help="auto | inception_v3 | efficientnet_lite0 | efficientnet_lite0_multi | pixels | hog "
                        "(pixels@SIZE, hog@SIZE: image side, default 128); fuse with '+', e.g. "
                        "efficientnet_lite0+pixels (default auto: inception_v3 when its weights "
                        "are available locally, else efficientnet_lite0 with a warning)")
    g.add_argument("--weights", metavar="PATH", help="local state-dict file for the backbone")
    g.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="auto = fp32 on CPU, bf16 on CUDA GPUs that support it (default auto). bf16 on CPU is "
                        "opt-in: faster on CPUs with native bf16, but it moves the clusters (fp32 vs bf16 on "
                        "the 4-class set: ARI 0.68 hierarchical, 0.995 kmeans; docs/performance.md)")
    g.add_argument("--runtime", default="auto", choices=["auto", "onnx", "torch"],
                   help="where the network runs: onnx = ONNX Runtime on CPU (exported once into the cache "
                        "folder), torch = PyTorch; auto = onnx on CPU in fp32, torch on CUDA or with bf16 "
                        "(default auto; same features to 1e-5, so caches are shared)")
    g.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    g.add_argument("--workers", type=int, default=None, help="image-decoding processes (default: half the cores)")
    g.add_argument("--clip", type=clip_arg, default=(0.5, 99.5), metavar="LOW,HIGH",
                   help="percentile intensity clip before min-max scaling, or 'off' (default 0.5,99.5)")
    g.add_argument("--fusion-norm", default="image", choices=["image", "block"],
                   help="fused backbones (A+B): 'image' L2-normalises each block per image before balancing the "
                        "blocks' variance; 'block' only balances (keeps e.g. the brightness in the pixels block) "
                        "(default image)")
    g.add_argument("--intensity-window", type=window_arg, default=None, metavar="LOW,HIGH",
                   help="one fixed intensity range for every image instead of the per-image clip and min-max, "
                        "e.g. 0,255 for 8-bit images (default off)")
    g.add_argument("--cache-dir", metavar="DIR",
                   help="feature cache (default $BRAINCLUST_CACHE or ~/.cache/brainclust); if it cannot be "
                        "used (a file, read-only...) the run warns once and continues uncached")
    g.add_argument("--device", default="cpu", help="cpu | cuda | auto (default cpu)")


def _add_volume_options(p: argparse.ArgumentParser, default: str | None = "axial:mid") -> None:
    g = p.add_argument_group("NIfTI volumes")
    g.add_argument("--slices", default=default, metavar="STRATEGY",
                   help="2-D slices cut from each NIfTI volume: PLANE:mid, PLANE:N (N evenly spaced through the "
                        "slices with brain) or PLANE:all, PLANE = axial|coronal|sagittal|all-planes; "
                        "comma-separated to combine " + (f"(default {default})" if default else
                                                          "(default: the run's)"))
    g.add_argument("--volume-index", type=int, default=0 if default else None, metavar="T",
                   help="volume of 4-D NIfTI files to slice, from 0 " + ("(default 0)" if default else
                                                                        "(default: the run's)"))


def _add_cluster_options(p: argparse.ArgumentParser, k_default: int = 4) -> None:
    g = p.add_argument_group("reduction and clustering")
    g.add_argument("--pca", type=_pca, default=50,
                   help="PCA components (an integer; 1 = one component), variance fraction strictly below 1 "
                        "(e.g. 0.95), or 0 for off; 1.0 is refused as ambiguous (default 50)")
    g.add_argument("--method", default="hierarchical",
                   choices=["hierarchical", "kmeans", "gmm", "dbscan", "spectral"],
                   help="hierarchical = average linkage, cosine distance (default)")
    g.add_argument("--k", type=_k, default=k_default,
                   help=f"number of clusters, or 'auto' (majority vote of silhouette, Calinski-Harabasz, "
                        f"Davies-Bouldin and gap over k = 2..15) (default {k_default})")
    g.add_argument("--seed", type=int, default=0, help="seed of all randomness (default 0)")


def _add_ssl_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("self-supervised strategy")
    g.add_argument("--self-supervised", default="none", metavar="COMPONENTS",
                   help="comma-separated: contrastive, rotation, joint, refine; or 'all'; or 'temi' (clustering "
                        "heads on the frozen features alone, no views); or 'none' (default none)")
    g.add_argument("--ssl-mode", default="head", choices=["head", "finetune"],
                   help="head = train small heads on cached features of augmented views (default, CPU); "
                        "finetune = also train the backbone's last blocks (GPU)")
    g.add_argument("--ssl-epochs", type=int, default=None, help="training epochs (default 30 head, 10 finetune, 200 temi)")
    g.add_argument("--ssl-views", type=views_arg, default=None, metavar="VIEWS",
                   help="head mode: comma-separated appearance views, e.g. hflip,intensity "
                        "(default identity,hflip,strong; identity is always included)")


def build_parser() -> argparse.ArgumentParser:
    from brainclust import __version__

    parser = argparse.ArgumentParser(prog="brainclust",
                                     description="Unsupervised clustering of brain MRI images with CNN features.")
    parser.add_argument("--version", action="version", version=f"brainclust {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    # -q is accepted after the sub-command too (SUPPRESS: a sub-command without it keeps the global value)
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run_parsers(sub, quiet)
    _add_study_parsers(sub, quiet)
    return parser


def _add_run_parsers(sub, quiet) -> None:
    p = sub.add_parser("run", help="cluster a folder of images", parents=[quiet])
    p.add_argument("data", help="folder of images (searched recursively)")
    p.add_argument("--out", required=True,
                   help="output folder, outside DATA; it is replaced as a whole, so it must be new, empty or "
                        "a previous run's (a folder holding other files is refused); a second run writing the "
                        "same --out at the same time waits for the first")
    p.add_argument("--labels-from-folders", action="store_true",
                   help="first sub-folder = label, used only for scoring (ARI, NMI, FMI, ACC)")
    _add_extraction_options(p)
    _add_volume_options(p)
    _add_cluster_options(p)
    _add_ssl_options(p)
    p.add_argument("--no-report", action="store_true", help="do not write report.html and figures/")
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="who extracts the features: local = this process (default); ray = a Ray cluster "
                        "(pip install 'brainclust[ray]'; docs/ray.md); the outputs are the same")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="with --engine ray: 'auto' or HOST:6379 joins a running cluster (ray start --head); "
                        "default: start a local Ray on this machine's cores")
    p.add_argument("--embeddings-features", action="store_true",
                   help="also write the raw backbone features into embeddings.parquet (column 'features')")
    q = p.add_argument_group("quality options (docs/results.md)")
    q.add_argument("--reduce", default="pca", choices=["pca", "umap", "pca+umap"],
                   help="pca (default); umap: PCA to 100 when wider, then UMAP to 10 dims (n_neighbors 30, "
                        "min_dist 0, cosine); pca+umap: --pca, then UMAP (needs brainclust[umap])")
    q.add_argument("--outliers", default="off", choices=["off", "auto"],
                   help="auto: images in tiny clusters or far from their cluster get cluster -1 and the k "
                        "clusters are formed among the rest (default off)")
    q.add_argument("--auto", action="store_true",
                   help="choose the backbone and reduction label-free from a small portfolio (auto.csv)")
    q.add_argument("--consensus", action="store_true",
                   help="cluster the consensus (co-association) of the --auto portfolio's five backbones' "
                        "partitions instead of choosing one; 'predict' cannot extend such a run")
    q.add_argument("--ssl-gate", action="store_true",
                   help="with --self-supervised: keep the SSL embedding only if a label-free check passes")

    p = sub.add_parser("predict", help="assign new images to the clusters of a finished run", parents=[quiet])
    p.add_argument("model_dir", help="the --out folder of a finished 'brainclust run'")
    p.add_argument("data", help="folder of new images")
    p.add_argument("--out", required=True,
                   help="output folder, outside DATA and MODEL_DIR; new, empty or a previous output folder "
                        "(it is replaced as a whole)")
    p.add_argument("--labels-from-folders", action="store_true")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--cache-dir", metavar="DIR")
    _add_volume_options(p, default=None)

    p = sub.add_parser("demo", help="generate the built-in MNI152 demo set and cluster it", parents=[quiet])
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--n-per-class", type=int, default=40, help="images per plane (default 40)")
    p.add_argument("--backbone", default="efficientnet_lite0", help="default efficientnet_lite0 (offline)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--cache-dir", metavar="DIR")
    _add_cluster_options(p, k_default=DEMO_DEFAULT_K)

    p = sub.add_parser("report", help="rebuild report.html of a finished run (no feature extraction)", parents=[quiet])
    p.add_argument("out_dir", help="the --out folder of a finished 'brainclust run'")
    p.add_argument("--max-points", type=int, default=2000,
                   help="images on the t-SNE map; more are sampled by cluster (default 2000)")

    p = sub.add_parser("export", help="write one folder per cluster with its images", parents=[quiet])
    p.add_argument("out_dir", help="the --out folder of a finished 'brainclust run'")
    p.add_argument("--to", required=True, help="target folder (new or empty)")
    p.add_argument("--mode", default="copy", choices=["copy", "symlink"], help="copy files or link them (default copy)")


def _add_study_parsers(sub, quiet) -> None:
    p = sub.add_parser("ablation", help="multi-seed ablation of the self-supervised strategy", parents=[quiet])
    p.add_argument("--out", default="ablation_out", help="output folder (default ablation_out)")
    p.add_argument("--data-root", required=True,
                   help="folder holding the labelled sets brain_tumor_4class_dev/ and brain_tumor_yes_no/")
    p.add_argument("--datasets", default="brain_tumor_4class_dev,brain_tumor_yes_no,demo",
                   help="comma-separated subset of the default three")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds, 0..N-1 (default 5)")
    p.add_argument("--methods", default="hierarchical,kmeans", help="clustering methods (default hierarchical,kmeans)")
    p.add_argument("--ssl-epochs", type=int, default=None, help="head training epochs (default 30)")
    p.add_argument("--cache-dir", metavar="DIR")

    p = sub.add_parser("benchmark", help="every clustering method on labelled data sets, over seeds (Tables 2-5)", parents=[quiet])
    p.add_argument("data", nargs="+", help="data folders, each with one sub-folder per label (labels only score)")
    p.add_argument("--out", required=True, help="output folder: results.csv, tables.md, benchmark.json")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds, 0..N-1 (default 5)")
    p.add_argument("--methods", default="kmeans,hierarchical,dbscan,spectral,gmm",
                   help="comma-separated clustering methods (default: all five)")
    p.add_argument("--k", type=_k, default=None,
                   help="clusters: an integer, 'auto' (chosen per method and seed), or unset = the number of "
                        "label folders of each data set (the protocol of the method's tables)")
    p.add_argument("--pca", type=_pca, default=50, help="PCA components, variance fraction or 0 (default 50)")
    _add_extraction_options(p)
    _add_ssl_options(p)
    p.set_defaults(self_supervised="none")

    p = sub.add_parser("sensitivity", help="vary one setting at a time around the defaults; table and plots", parents=[quiet])
    p.add_argument("data", help="data folder with one sub-folder per label (labels only score)")
    p.add_argument("--out", required=True, help="output folder: sensitivity.md, sensitivity.csv, plots/")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds, 0..N-1 (default 5)")
    p.add_argument("--subsample", type=float, default=0.8,
                   help="fraction of the images each seed draws (spread over seeds for deterministic "
                        "methods too); 1 = all images (default 0.8)")
    p.add_argument("--method", default="hierarchical", choices=["hierarchical", "kmeans", "gmm", "spectral"],
                   help="clustering method around which settings vary (default hierarchical)")
    p.add_argument("--k", type=int, default=None, help="default k (default: the number of label folders)")
    p.add_argument("--pca", type=_pca, default=50, help="default PCA components (default 50)")
    p.add_argument("--settings", default="pca,k,linkage,metric,backbone,clip,seed",
                   help="comma-separated settings to vary (default all)")
    _add_extraction_options(p)


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
    if "k_selection" in m:
        sel = m["k_selection"]
        votes = ", ".join(f"{name} {v['vote']}" for name, v in sel["indices"].items())
        lines.append(f"--k auto: k = {sel['chosen_k']} (votes: {votes}; curves in metrics.json)")
    if result.skipped:
        lines.append(f"{len(result.skipped)} file(s) skipped (see manifest.json)")
    cache = result.manifest.get("cache", {})
    lines.append(f"feature cache: {cache.get('hits', 0)} hits, {cache.get('misses', 0)} misses")
    if result.out_dir is not None:
        from brainclust.io.outputs import escape_name

        lines.append(f"outputs: {escape_name(str(result.out_dir))}/assignments.csv, embeddings.parquet, metrics.json, "
                     "manifest.json")
    return "\n".join(lines)


def _cmd_run(args) -> None:
    from brainclust.pipeline import run
    from brainclust.selfsup import parse_components

    cfg = _extraction_config(args, pca=args.pca, method=args.method, k=args.k, seed=args.seed,
                             labels_from_folders=args.labels_from_folders, slices=args.slices,
                             volume_index=args.volume_index, ssl=parse_components(args.self_supervised),
                             ssl_mode=args.ssl_mode, ssl_epochs=args.ssl_epochs, ssl_views=args.ssl_views,
                             embeddings_features=args.embeddings_features, reduce=args.reduce,
                             outliers=args.outliers, ssl_gate=args.ssl_gate, engine=args.engine,
                             ray_address=args.ray_address, consensus=args.consensus)
    lines: list[str] = []
    finish = None if args.no_report else (lambda out: lines.append(_report_line(out, "brainclust run")))
    if args.auto or args.consensus:  # the portfolio scored label-free, then the output run (analysis.autoconfig)
        from brainclust.analysis.autoconfig import run_auto
        from brainclust.errors import ParameterError

        if args.auto and args.consensus:
            raise ParameterError("--auto and --consensus: choose one (one winner, or the consensus of all)")

        result, choice = run_auto(args.data, args.out, cfg, finish=finish)
        print("--consensus: the consensus of " + ", ".join(b for b, _ in choice.labels) + " (criteria in auto.csv)"
              if args.consensus else
              f"--auto: chose backbone {choice.chosen[0]}, --reduce {choice.chosen[1]} (criteria in auto.csv)")
        print(_summary(result))
    else:
        print(_summary(run(args.data, args.out, cfg, finish=finish)))
    for line in lines:
        print(line)


def _report_line(out, command: str, max_points: int = 2000) -> str:
    from brainclust.io.outputs import escape_name
    from brainclust.report.build import build_report

    info = build_report(out, max_map_points=max_points, command=command)
    return (f"report: {escape_name(str(info.path))} ({info.size_bytes / 1e6:.1f} MB; "
            f"figures in {escape_name(str(Path(out) / 'figures'))})")


def _report(out, command: str, max_points: int = 2000) -> None:
    print(_report_line(out, command, max_points))


def _cmd_report(args) -> None:
    from brainclust.io.atomic import folder_lock

    with folder_lock(args.out_dir):  # not while a run is replacing the folder
        _report(args.out_dir, "brainclust report", args.max_points)


def _cmd_export(args) -> None:
    from brainclust.report.export import export_clusters

    res = export_clusters(args.out_dir, args.to, mode=args.mode)
    print(f"exported {res.n_files} images ({args.mode}) into {len(res.counts)} folders under {res.to}: "
          + ", ".join(f"{k} ({v})" for k, v in res.counts.items()))


def _cmd_predict(args) -> None:
    from brainclust.pipeline import predict

    result = predict(args.model_dir, args.data, args.out, labels_from_folders=args.labels_from_folders,
                     cache_dir=args.cache_dir, batch_size=args.batch_size, workers=args.workers,
                     slices=args.slices, volume_index=args.volume_index)
    print(_summary(result))


def _cmd_demo(args) -> None:
    from brainclust.data.demo import make_demo_dataset
    from brainclust.pipeline import RunConfig, run

    out = Path(args.out)
    data = make_demo_dataset(out / "data", n_per_class=args.n_per_class, random_state=args.seed)
    logging.getLogger("brainclust").info("demo data: %s (MNI152 T1 slices; labels = axial/coronal/sagittal)", data)
    cfg = RunConfig(backbone=args.backbone, precision=args.precision, pca=args.pca, method=args.method,
                    k=args.k, seed=args.seed, labels_from_folders=True, cache_dir=args.cache_dir)
    lines: list[str] = []
    result = run(data, out / "results", cfg, finish=lambda o: lines.append(_report_line(o, "brainclust demo")))
    print(_summary(result))
    for line in lines:
        print(line)
    print(json.dumps({k: result.metrics.get(k) for k in ("silhouette", "ari", "nmi", "fmi", "acc")}))


def _cmd_ablation(args) -> None:
    import time

    from brainclust.errors import InputError, ParameterError
    from brainclust.analysis.ablation import default_datasets, run_ablation

    if args.seeds < 1:
        raise ParameterError(f"--seeds: must be >= 1, got {args.seeds}")
    wanted = [d.strip() for d in args.datasets.split(",") if d.strip()]
    known = ("brain_tumor_4class_dev", "brain_tumor_yes_no", "demo")
    bad = [d for d in wanted if d not in known]
    if bad:
        raise ParameterError(f"--datasets: unknown data set '{bad[0]}'; choose from {', '.join(known)}")
    out = Path(args.out)
    sets = default_datasets(args.data_root, out / "demo_data") if "demo" in wanted else {
        n: Path(args.data_root) / n for n in wanted}
    sets = {n: p for n, p in sets.items() if n in wanted}
    for n, p in sets.items():
        if not p.is_dir():
            raise InputError(f"--data-root: data set '{n}' not found at '{p}'")
    t0 = time.perf_counter()
    run_ablation(sets, out, seeds=tuple(range(args.seeds)),
                 methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
                 epochs=args.ssl_epochs, cache_dir=args.cache_dir)
    print(f"ablation: {out / 'ablation.md'} ({(time.perf_counter() - t0) / 60:.1f} min)")


def _extraction_config(args, **more):
    from brainclust.pipeline import RunConfig

    return RunConfig(backbone=args.backbone, weights=args.weights, precision=args.precision,
                     batch_size=args.batch_size, workers=args.workers, clip_percentiles=args.clip,
                     intensity_window=args.intensity_window, fusion_norm=args.fusion_norm,
                     cache_dir=args.cache_dir, device=args.device, runtime=args.runtime, **more)


def _cmd_benchmark(args) -> None:
    from brainclust.analysis.benchmark import benchmark
    from brainclust.errors import ParameterError
    from brainclust.selfsup import parse_components

    if args.seeds < 1:
        raise ParameterError(f"--seeds: must be >= 1, got {args.seeds}")
    cfg = _extraction_config(args, pca=args.pca, ssl_mode=args.ssl_mode, ssl_epochs=args.ssl_epochs,
                             ssl_views=args.ssl_views)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    res = benchmark(args.data, args.out, cfg, methods=methods, seeds=tuple(range(args.seeds)), k=args.k,
                    ssl=parse_components(args.self_supervised))
    t = res.info["timings_s"]
    print(f"benchmark: {len(res.rows)} runs in {t['total']:.1f} s (extraction {t['extract']:.1f} s, "
          f"clustering and scoring {t['grid']:.1f} s)")
    print(f"outputs: {res.out_dir}/tables.md, results.csv, benchmark.json")


def _cmd_sensitivity(args) -> None:
    from brainclust.errors import ParameterError
    from brainclust.analysis.sensitivity import sensitivity

    if args.seeds < 1:
        raise ParameterError(f"--seeds: must be >= 1, got {args.seeds}")
    cfg = _extraction_config(args, pca=args.pca, method=args.method)
    res = sensitivity(args.data, args.out, cfg, k=args.k, seeds=tuple(range(args.seeds)),
                      subsample=args.subsample,
                      settings=tuple(s.strip() for s in args.settings.split(",") if s.strip()))
    for note in res.notes:
        print(f"note: {note}")
    print(f"sensitivity: {len(res.rows)} runs in {res.info['timings_s']['total']:.1f} s")
    print(f"outputs: {res.out_dir}/sensitivity.md, sensitivity.csv, plots/")


COMMANDS = {"run": _cmd_run, "predict": _cmd_predict, "demo": _cmd_demo, "report": _cmd_report,
            "export": _cmd_export, "ablation": _cmd_ablation, "benchmark": _cmd_benchmark,
            "sensitivity": _cmd_sensitivity}


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM (so ``finally`` blocks and temporary folders are cleaned up)."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.quiet)
    from brainclust.errors import BrainclustError

    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave SIGTERM alone
        previous = None
    try:
        COMMANDS[args.command](args)
    except BrainclustError as exc:
        print(f"brainclust: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("brainclust: interrupted; rerun the same command to resume from the feature cache", file=sys.stderr)
        return 130
    except Terminated:
        print("brainclust: terminated (SIGTERM); rerun the same command to resume from the feature cache",
              file=sys.stderr)
        return 143
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
