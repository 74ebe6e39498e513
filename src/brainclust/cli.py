"""Command-line interface: parse arguments, call the library, map errors to exit codes.

No work happens here. The options of the settings of a run are generated from their one
declaration (:class:`brainclust.model.config.RunConfig`'s fields); every rule is the library's.
Exit codes: 0 success, 2 usage or input error (one line on stderr), 1 unexpected failure (one
line; ``--debug`` shows the traceback), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import traceback
import warnings
from pathlib import Path

from brainclust import progress
from brainclust.cliopts import OneLineParser, add_config_options, arg_type, config_from_args, negative_values
from brainclust.clisummary import auto_line, run_summary, strata_named
from brainclust.terminal import Terminated, TerminalFormatter, count_text, on_sigterm, stopped, terminal_text

__all__ = ["build_parser", "config_from_args", "main"]

DEMO_DEFAULT_K = 3
#: The settings of feature extraction every extracting command takes.
EXTRACTION = ("backbone", "weights", "precision", "runtime", "batch_size", "workers", "clip_percentiles",
              "fusion_norm", "intensity_window", "cache_dir", "device")
VOLUMES = ("slices", "volume_index")
#: Which files are read, what a row is, and the metadata (docs/units-metadata.md).
INPUTS = ("include", "exclude_files", "bids_filter", "bids")
METADATA = ("unit", "metadata", "metadata_key", "labels", "color_by", "descriptors", "permutations")
CLUSTERING = ("pca", "method", "k", "seed")
SSL = ("ssl", "ssl_mode", "ssl_epochs", "ssl_views")
CHECKS = ("checks", "exclude", "check_thresholds", "split_table", "split_column")
STEERING = ("within", "remove", "remove_rule")


def say(*texts: str, flush: bool = False) -> None:
    """Print ``texts`` on stdout, one per line, each line through :func:`terminal_text` (command output)."""
    print("\n".join(terminal_text(line) for text in texts for line in str(text).split("\n")), flush=flush)


def build_parser() -> argparse.ArgumentParser:
    from brainclust import __version__

    parser = OneLineParser(prog="brainclust",
                                     description="Unsupervised clustering of brain MRI images with CNN features.")
    parser.add_argument("--version", action="version", version=f"brainclust {__version__}")
    # -q and --debug are accepted after the sub-command too (SUPPRESS: a sub-command without it keeps the global)
    common = argparse.ArgumentParser(add_help=False)
    for p, default in ((parser, False), (common, argparse.SUPPRESS)):
        p.add_argument("-q", "--quiet", action="store_true", default=default, help="only warnings and errors")
        p.add_argument("--debug", action="store_true", default=default,
                       help="debug log, and the traceback of any error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run_parsers(sub, common)
    _add_study_parsers(sub, common)
    return parser


def _add_run_parsers(sub, common) -> None:
    p = sub.add_parser("run", help="cluster a folder of images", parents=[common])
    p.add_argument("data", help="folder of images (searched recursively)")
    p.add_argument("--out", required=True,
                   help="output folder, outside DATA; it is replaced as a whole, so it must be new, empty or "
                        "a previous run's or check's (a folder holding other files is refused); a second run "
                        "writing the same --out at the same time waits for the first")
    add_config_options(p, ["labels_from_folders", *EXTRACTION, "calibration_size", "agreement", *VOLUMES, *INPUTS,
                           *METADATA, *CLUSTERING, *SSL, "engine", "ray_address", "embeddings_features", "reduce",
                           "outliers", "auto", "consensus", "ssl_gate", *CHECKS, *STEERING])
    p.add_argument("--no-report", action="store_true", help="do not write report.html and figures/")

    p = sub.add_parser("check", help="check a folder of images without clustering it: duplicates, leakage, "
                                     "non-MRI, blank, noise, tiny, non-image DICOM (checks.html, quality.csv)",
                       parents=[common])
    p.add_argument("data", help="folder of images (searched recursively)")
    p.add_argument("--out", required=True, help="output folder, outside DATA: new, empty or an earlier check's "
                                                "(replaced as a whole)")
    add_config_options(p, ["check_thresholds", "split_table", "split_column", "workers", "cache_dir", *VOLUMES,
                           *INPUTS],
                       helps={"cache_dir": "where the checks' descriptors are cached (default $BRAINCLUST_CACHE or "
                                           "~/.cache/brainclust)"})

    _add_predict_parser(sub, common)
    _add_tool_parsers(sub, common)


def _add_predict_parser(sub, common) -> None:
    p = sub.add_parser("predict", help="assign new images to the clusters of a finished run", parents=[common])
    p.add_argument("model_dir", help="the --out folder of a finished 'brainclust run'")
    p.add_argument("data", help="folder of new images")
    p.add_argument("--out", required=True,
                   help="output folder, outside DATA and MODEL_DIR; new, empty or a previous output folder "
                        "(it is replaced as a whole)")
    add_config_options(p, ["labels_from_folders", "batch_size", "workers", "cache_dir", "device", "weights", *VOLUMES,
                           *INPUTS, "metadata", "metadata_key", "labels", "checks"],
                       defaults={"batch_size": None, "slices": None, "volume_index": None, "device": "auto",
                                 "checks": None, "bids": None},
                       helps={"batch_size": "images per forward pass (default: the run's)",
                              "checks": "check the new images (flags in quality.csv and assignments.csv; copies "
                                        "of the run's images are duplicates of them, listed in leakage.csv); off "
                                        "skips it (default: the run's --checks)",
                              "device": "where the features are computed, whatever device the run used: auto (a "
                                        "CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N "
                                        "(default auto)",
                              "include": "read only the files matching GLOB (repeatable) (default: the run's)",
                              "exclude_files": "leave out the files matching GLOB (repeatable) (default: the run's; "
                                               "'' for none)",
                              "bids_filter": "BIDS entity filter (default: the run's)",
                              "weights": "the weights file the model names (its backbone.weights_file), when this "
                                         "machine keeps it elsewhere than the torch cache (hub/checkpoints); "
                                         "checked by SHA-256 (default: found by that name)"})


def _add_tool_parsers(sub, common) -> None:
    p = sub.add_parser("demo", help="generate the built-in MNI152 demo set and cluster it", parents=[common])
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--n-per-class", type=int, default=40, help="images per plane (default 40)")
    add_config_options(p, ["backbone", "precision", "cache_dir", *CLUSTERING],
                       defaults={"backbone": "efficientnet_lite0", "k": DEMO_DEFAULT_K},
                       helps={"backbone": "default efficientnet_lite0 (offline)"})

    p = sub.add_parser("report", help="rebuild report.html of a finished run (no feature extraction)",
                       parents=[common])
    p.add_argument("out_dir", help="the --out folder of a finished 'brainclust run'")
    p.add_argument("--max-points", type=int, default=2000,
                   help="images the exact t-SNE places when the run has no stored map (the others are placed by "
                        "their neighbours) (default 2000)")
    add_config_options(p, ["metadata", "metadata_key", "color_by"],
                       helps={"metadata": "CSV or TSV table whose columns are added to the finished run's rows "
                                          "(joined on a path, unit, file name or subject column); assignments.csv, "
                                          "embeddings.parquet and associations.csv are rewritten (default none)",
                              "color_by": "colour the map by this column at first, kept for later reports "
                                          "of the run ('' forgets it) (default: the last report's --color-by, "
                                          "else the run's --color-by, else cluster)"})

    p = sub.add_parser("view", help="explore every image of a finished run in the browser (a local server)",
                       parents=[common])
    p.add_argument("out_dir", help="the --out folder of a finished 'brainclust run'")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this computer only)")
    p.add_argument("--cache-dir", metavar="DIR", help="thumbnail cache (default $BRAINCLUST_CACHE/view)")

    p = sub.add_parser("export", help="write one folder per cluster with its images", parents=[common])
    p.add_argument("out_dir", help="the --out folder of a finished 'brainclust run'")
    p.add_argument("--to", required=True, help="target folder (new or empty)")
    p.add_argument("--mode", default="copy", choices=["copy", "symlink"], help="copy files or link them (default "
                   "copy); NIfTI slices and DICOM frames are PNG files either way")
    p.add_argument("--dicom-headers", default=None, choices=["strip", "keep"],
                   help="a copied DICOM file de-identified, a PNG/JPEG/TIFF without its metadata (default strip), "
                   "or every file as it is, patient data included (needed by --mode symlink when a file is linked: "
                   "links carry it)")


def _add_study_parsers(sub, common) -> None:
    from brainclust.model.optionspec import parse_k, parse_pca

    p = sub.add_parser("ablation", help="multi-seed ablation of the self-supervised strategy", parents=[common])
    p.add_argument("--out", default="ablation_out", help="output folder, outside --data-root: new, empty or an earlier "
                   "ablation's (replaced as a whole; the demo set is generated into its demo_data/) "
                   "(default ablation_out)")
    p.add_argument("--data-root", default=None, help="folder holding the labelled sets brain_tumor_4class_dev/ and "
                   "brain_tumor_yes_no/ (not needed for --datasets demo)")
    p.add_argument("--datasets", default="brain_tumor_4class_dev,brain_tumor_yes_no,demo",
                   help="comma-separated subset of the default three")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds, 0..N-1 (default 5)")
    p.add_argument("--methods", default="hierarchical,kmeans", help="clustering methods (default hierarchical,kmeans)")
    add_config_options(p, ["ssl_epochs", "cache_dir", "precision"],
                       helps={"ssl_epochs": "head training epochs (default 30)"})

    p = sub.add_parser("benchmark", help="every clustering method on labelled data sets, over seeds (Tables 2-5)",
                       parents=[common])
    p.add_argument("data", nargs="+", help="data folders, each with one sub-folder per label (labels only score)")
    p.add_argument("--out", required=True, help="output folder: results.csv, tables.md, benchmark.json; outside "
                   "DATA, new, empty or an earlier benchmark's (replaced as a whole)")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds, 0..N-1 (default 5)")
    p.add_argument("--methods", default="kmeans,hierarchical,dbscan,spectral,gmm",
                   help="comma-separated clustering methods (default: all five)")
    p.add_argument("--k", dest="study_k", type=arg_type(parse_k), default=None,
                   help="clusters: an integer, 'auto' (chosen per method and seed), or unset = the number of "
                        "label folders of each data set (the protocol of the method's tables)")
    add_config_options(p, ["pca", *EXTRACTION, *SSL],
                       helps={"pca": "PCA components, variance fraction or 0 (default 50)"})

    p = sub.add_parser("sensitivity", help="vary one setting at a time around the defaults; table and plots",
                       parents=[common])
    p.add_argument("data", help="data folder with one sub-folder per label (labels only score)")
    p.add_argument("--out", required=True, help="output folder: sensitivity.md, sensitivity.csv, plots/; outside "
                   "DATA, new, empty or an earlier sensitivity's (replaced as a whole)")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds, 0..N-1 (default 5)")
    p.add_argument("--subsample", type=float, default=0.8,
                   help="fraction of the images each seed draws (spread over seeds for deterministic "
                        "methods too); 1 = all images (default 0.8)")
    p.add_argument("--method", default="hierarchical", choices=["hierarchical", "kmeans", "gmm", "spectral"],
                   help="clustering method around which settings vary (default hierarchical)")
    p.add_argument("--k", dest="study_k", type=int, default=None,
                   help="default k (default: the number of label folders)")
    p.add_argument("--pca", type=arg_type(parse_pca), default=50, help="default PCA components (default 50)")
    p.add_argument("--settings", default="pca,k,linkage,metric,backbone,clip,seed",
                   help="comma-separated settings to vary (default all)")
    add_config_options(p, EXTRACTION)


def _configure_logging(quiet: bool, debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TerminalFormatter("brainclust: %(message)s"))
    root = logging.getLogger("brainclust")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)
    root.propagate = False
    progress.SHOW_BY_DEFAULT, progress.LOG_WITHOUT_TERMINAL = (False, False) if quiet else (None, True)  # progress.py
    warnings.showwarning = _warning_line


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """A library's warning (scikit-learn's "Graph is not fully connected", a ConvergenceWarning) as one line of
    the command's log, without Python's file, line number and source line."""
    text = str(message).strip().splitlines()
    logging.getLogger("brainclust").warning("%s: %s", category.__name__, text[0] if text else "")


def _report_text(info) -> str:
    from brainclust.io.outputs import escape_name

    return (f"report: {escape_name(str(info.path))} ({info.size_bytes / 1e6:.1f} MB; "
            f"figures in {escape_name(str(info.path.parent / 'figures'))})")


def _report_finish(lines: list[str], out, command: str):
    """``finish`` of a run: the report built in the staged folder (published with it as ``out``)."""
    from brainclust.report.build import build_report

    return lambda staging: lines.append(_report_text(build_report(staging, command=command, final_dir=out)))


def _cmd_run(args) -> None:
    from brainclust.pipeline import run

    lines: list[str] = []
    finish = None if args.no_report else _report_finish(lines, args.out, "brainclust run")
    result = run(args.data, args.out, config_from_args(args), finish=finish)
    report = not args.no_report
    say(*(x for x in (auto_line(result, report), run_summary(result, report), *lines) if x))


def _cmd_check(args) -> None:
    from brainclust.checks.stage import check_data
    from brainclust.io.outputs import escape_name
    from brainclust.report.checkpage import write_check_page

    res = check_data(args.data, args.out, check_thresholds=args.check_thresholds, split_table=args.split_table,
                     split_column=args.split_column, workers=args.workers, cache_dir=args.cache_dir,
                     slices=args.slices, volume_index=args.volume_index, include=args.include or (),
                     exclude_files=args.exclude_files or (), bids_filter=args.bids_filter, bids=args.bids,
                     finish=lambda staging, records: write_check_page(staging, args.data, records))
    skipped = f"; {res.skipped_text()} skipped (see manifest.json)" if res.n_skipped else ""
    say(f"{count_text(len(res.paths), 'image')} checked{skipped}")
    say(res.summary())
    say(f"outputs: {escape_name(str(args.out))}/checks.html (a gallery per flag), quality.csv, leakage.csv, "
        "manifest.json")


def _cmd_report(args) -> None:
    from brainclust.core.needs import refuse_ignored
    from brainclust.report.rebuild import rebuild_report

    refuse_ignored({"metadata": args.metadata, "metadata_key": args.metadata_key}, {})
    added: dict = {}

    def add(staging) -> None:  # in the staged copy of the run: published with the report, or not at all
        from brainclust.report.addmeta import add_metadata

        added["metadata"] = add_metadata(staging, args.metadata, args.metadata_key)

    info = rebuild_report(args.out_dir, max_map_points=args.max_points, color_by=args.color_by,
                          prepare=add if args.metadata is not None else None)
    if added:
        from brainclust.cluster.follows import headline

        a = added["metadata"]
        text = headline(a.associations, within=a.within)
        say(f"metadata: {count_text(len(a.columns), 'column')} added ({a.n_matched} of {a.n_rows} rows "
            f"matched on '{a.key}'); {text}" + (f" (within each {a.within})"
                                                if a.within and not strata_named(text, a.within) else ""))
    say(_report_text(info))


def _cmd_view(args) -> None:
    from brainclust.report.server import all_interfaces, serve

    wide = "on this computer; it listens on all interfaces: other computers use this computer's name or address; "
    serve(args.out_dir, args.host, args.port, cache_dir=args.cache_dir,
          on_ready=lambda url: say(f"brainclust view: {url} ({wide if all_interfaces(args.host) else ''}Ctrl-C stops)",
                                   flush=True))
    say("brainclust view: stopped", flush=True)


def _cmd_export(args) -> None:
    from brainclust.report.export import export_clusters

    say(export_clusters(args.out_dir, args.to, mode=args.mode, dicom_headers=args.dicom_headers).summary())


def _cmd_predict(args) -> None:
    from brainclust.pipeline import predict

    result = predict(args.model_dir, args.data, args.out, labels_from_folders=args.labels_from_folders,
                     cache_dir=args.cache_dir, batch_size=args.batch_size, workers=args.workers,
                     slices=args.slices, volume_index=args.volume_index, device=args.device, include=args.include,
                     exclude_files=[] if args.exclude_files == [""] else args.exclude_files,  # '': none of the run's
                     bids_filter=args.bids_filter, bids=args.bids, metadata=args.metadata,
                     metadata_key=args.metadata_key, labels=args.labels, checks=args.checks, weights=args.weights)
    say(run_summary(result, report=False))


def _cmd_demo(args) -> None:
    from brainclust.data.demo import foreign_entry, make_demo_dataset
    from brainclust.errors import ParameterError
    from brainclust.features.limits import check_cache_location
    from brainclust.io.outputs import escape_name
    from brainclust.io.publish import prepare_out
    from brainclust.pipeline import run

    out = Path(args.out)
    cfg = config_from_args(args, labels_from_folders=True)
    cfg.validate()  # bad settings fail before the images are generated
    check_cache_location(cfg.cache_dir, out / "results", out / "data")
    prepare_out(out / "results", data=out / "data")
    if (foreign := foreign_entry(out)) is not None:
        raise ParameterError(f"--out: '{escape_name(str(out))}' holds '{escape_name(foreign)}', which 'brainclust "
                             "demo' does not write (it writes data/ and results/, and clusters all of data/); "
                             "choose a new or empty folder, or a previous demo's")
    data = make_demo_dataset(out / "data", n_per_class=args.n_per_class, random_state=args.seed)
    logging.getLogger("brainclust").info("demo data: %s (MNI152 T1 slices; labels = axial/coronal/sagittal)", data)
    lines: list[str] = []
    result = run(data, out / "results", cfg, finish=_report_finish(lines, out / "results", "brainclust demo"))
    say(run_summary(result), *lines)
    say(json.dumps({k: result.metrics.get(k) for k in ("silhouette", "ari", "nmi", "fmi", "acc")}))


def _cmd_ablation(args) -> None:
    import time

    from brainclust.analysis.ablation import ablation_datasets, check_datasets, check_options, run_ablation
    from brainclust.analysis.outfolder import ABLATION, prepare_study_out

    out = Path(args.out)
    wanted = [d.strip() for d in args.datasets.split(",") if d.strip()]
    seeds, methods = tuple(range(args.seeds)), tuple(m.strip() for m in args.methods.split(",") if m.strip())
    check_options(seeds, methods, args.precision)  # every option checked, and --out, before the demo set is written
    real = [p for p in check_datasets(args.data_root, wanted).values() if p is not None]
    prepare_study_out(out, ABLATION, [args.data_root] if real else [], args.cache_dir)  # outside the sets' folder
    sets = ablation_datasets(args.data_root, wanted, out / ABLATION.demo)
    t0 = time.perf_counter()
    run_ablation(sets, out, seeds=seeds, methods=methods, epochs=args.ssl_epochs, cache_dir=args.cache_dir,
                 precision=args.precision)
    say(f"ablation: {out / 'ablation.md'} ({(time.perf_counter() - t0) / 60:.1f} min)")


def _cmd_benchmark(args) -> None:
    from brainclust.analysis.benchmark import benchmark

    from brainclust.selfsup import parse_components

    cfg = config_from_args(args, ssl=())
    res = benchmark(args.data, args.out, cfg, methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
                    seeds=tuple(range(max(args.seeds, 0))), k=args.study_k, ssl=parse_components(args.ssl))
    t = res.info["timings_s"]
    say(f"benchmark: {count_text(len(res.rows), 'run')} in {t['total']:.1f} s (extraction {t['extract']:.1f} s, "
        f"clustering and scoring {t['grid']:.1f} s)")
    say(f"outputs: {res.out_dir}/tables.md, results.csv, benchmark.json")


def _cmd_sensitivity(args) -> None:
    from brainclust.analysis.sensitivity import sensitivity

    res = sensitivity(args.data, args.out, config_from_args(args, method=args.method, pca=args.pca), k=args.study_k,
                      seeds=tuple(range(max(args.seeds, 0))), subsample=args.subsample,
                      settings=tuple(s.strip() for s in args.settings.split(",") if s.strip()))
    for note in res.notes:
        say(f"note: {note}")
    say(f"sensitivity: {count_text(len(res.rows), 'run')} in {res.info['timings_s']['total']:.1f} s")
    say(f"outputs: {res.out_dir}/sensitivity.md, sensitivity.csv, plots/")


COMMANDS = {"run": _cmd_run, "check": _cmd_check, "predict": _cmd_predict, "demo": _cmd_demo, "report": _cmd_report,
            "export": _cmd_export, "view": _cmd_view, "ablation": _cmd_ablation, "benchmark": _cmd_benchmark,
            "sensitivity": _cmd_sensitivity}


def _say_stopped(exc: BaseException, command: str | None) -> int:
    line, status = stopped(exc, command)
    print(line, file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    try:  # building the parser imports the backbones' registry: a second or two in which Ctrl-C may come
        args = build_parser().parse_args(negative_values(sys.argv[1:] if argv is None else list(argv)))
    except KeyboardInterrupt as exc:
        return _say_stopped(exc, None)
    _configure_logging(args.quiet, args.debug)
    from brainclust.errors import BrainclustError

    try:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread: leave SIGTERM alone
        previous = None
    try:
        COMMANDS[args.command](args)
    except BrainclustError as exc:
        if args.debug:
            traceback.print_exc()
        print(terminal_text(f"brainclust: error: {exc}"), file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as exc:
        return _say_stopped(exc, args.command)
    except Exception as exc:  # noqa: BLE001 - an unexpected failure: one line, the traceback with --debug
        if args.debug:
            traceback.print_exc()
        print(terminal_text(f"brainclust: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the "
                            "traceback)"), file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
