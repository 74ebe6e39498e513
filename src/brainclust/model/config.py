"""Every setting of a run, declared once: :class:`RunConfig`.

Each field carries its command-line option (:class:`Option`: flag, parser, help text), from
which ``brainclust run`` and the other commands build their options (the CLI declares none of its
own for these), so a field and its option cannot drift apart. The rules of the values live with
the step that owns them (``_parameter_constraints``); :meth:`RunConfig.validate` builds the steps
(:func:`build_steps`) and asks each, then checks the rules that tie settings together, including
refusing a setting that would be ignored (one line each).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from brainclust.checks.flags import parse_exclude
from brainclust.core.choices import (DEFAULT_COMPONENTS, METHODS, NORMS, OUTLIER_MODES, REDUCTIONS, REMOVE_RULES,
                                     SSL_MODES)
from brainclust.core.needs import refuse_ignored
from brainclust.engines import ENGINES, check_engine
from brainclust.errors import ParameterError
from brainclust.features.runtime import PRECISIONS, RUNTIMES
from brainclust.features.units import UNITS, check_unit
from brainclust.io import bids as bids_io  # not "bids": a field of RunConfig is named so
from brainclust.io.formats import nifti
from brainclust.io.metadata import check_key
from brainclust.io.pathfilter import PathFilter
from brainclust.model.optionspec import (CHECKS, CLUSTERING, EXTRACTION, INPUT, METADATA, QUALITY, RUN, SSL, STEERING,
                                         VOLUMES, Option, list_value, opt, parse_clip, parse_int, parse_k, parse_pca,
                                         parse_views, parse_window)
# The steps (scikit-learn, pandas, SciPy) are imported where they are used: declaring the options is instant.

#: ``--descriptors``: the intensity descriptors of every image as metadata columns, or not.
DESCRIPTOR_MODES = ("on", "off")


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a run (recorded in ``manifest.json``). See ``brainclust run --help``."""

    backbone: str = opt("auto", "--backbone", "auto | inception_v3 | efficientnet_lite0 | efficientnet_lite0_multi | "
                        "pixels | hog | histogram (NAME@SIZE: image side, default 128); fuse with '+', e.g. "
                        "efficientnet_lite0+pixels (default auto: inception_v3 when its weights are available "
                        "locally, else efficientnet_lite0, said in an info line)", EXTRACTION)
    weights: str | None = opt(None, "--weights", "local state-dict file for the backbone", EXTRACTION, metavar="PATH")
    precision: str = opt("auto", "--precision", "auto = fp32 on CPU, bf16 on CUDA GPUs that support it (default "
                         "auto). On CPU, bf16 and int8 are opt-in and faster but move the clusters "
                         "(docs/performance.md): bf16 needs native bf16 (AMX, AVX512-BF16; refused elsewhere) and runs "
                         "with OpenVINO (torch autocast without OpenVINO); int8 = OpenVINO with NNCF post-training "
                         "quantisation calibrated on --calibration-size of the run's own images (pip install "
                         "'brainclust[openvino]')", EXTRACTION, choices=PRECISIONS)
    runtime: str = opt("auto", "--runtime", "where the network runs: onnx = ONNX Runtime on CPU (exported once "
                       "into the cache folder), openvino = OpenVINO on CPU (converted once, cached; needs "
                       "brainclust[openvino]), torch = PyTorch; auto = onnx on CPU in fp32, OpenVINO for bf16 on CPUs "
                       "with native bf16 and for int8, torch on CUDA (default auto; fp32 runtimes give the same "
                       "features to 1e-5, so caches are shared)", EXTRACTION, choices=RUNTIMES)
    #: ``--calibration-size``: images of the run the int8 network is calibrated on (seeded by content hash).
    calibration_size: int = opt(128, "--calibration-size", "with --precision int8: images of the run the "
                                "quantisation is calibrated on (default {default})", EXTRACTION, parse=parse_int)
    agreement: bool = opt(False, "--agreement", "with --precision bf16|int8: fit again on fp32 features (default "
                          "runtime) and report the feature cosine and the clusters' ARI against them in "
                          "metrics.json (a second extraction)", EXTRACTION, switch=True)
    batch_size: int = opt(32, "--batch-size", "images per forward pass (default 32)", EXTRACTION, parse=parse_int)
    workers: int | None = opt(None, "--workers", "image-decoding processes (default: half the cores, at most 4, none "
                              "on 2 cores or fewer, when extracting; every core for the data checks)", EXTRACTION,
                              parse=parse_int)
    clip_percentiles: tuple[float, float] | None = opt(
        (0.5, 99.5), "--clip", "percentile intensity clip before min-max scaling, or 'off' (default 0.5,99.5)",
        EXTRACTION, parse=parse_clip, metavar="LOW,HIGH")
    #: Fixed input intensity range for every image (``--intensity-window``); replaces the clip and min-max.
    intensity_window: tuple[float, float] | None = opt(
        None, "--intensity-window", "one fixed intensity range for every image instead of the per-image clip and "
        "min-max, e.g. 0,255 for 8-bit images (default off)", EXTRACTION, parse=parse_window, metavar="LOW,HIGH")
    #: Fusion only (``--fusion-norm``): ``image`` L2-normalises each block per image, ``block`` does not.
    fusion_norm: str = opt("image", "--fusion-norm", "fused backbones (A+B): 'image' L2-normalises each block per "
                           "image before balancing the blocks' variance; 'block' only balances (keeps e.g. the "
                           "brightness in the pixels block) (default image)", EXTRACTION, choices=NORMS)
    pca: int | float = opt(DEFAULT_COMPONENTS, "--pca", "PCA components (an integer; 1 = one component), "
                           "variance fraction strictly below 1 (e.g. 0.95), or 0 for off; 1.0 is refused as "
                           "ambiguous (default {default})", CLUSTERING, parse=parse_pca)
    #: whether the user set ``--pca`` (no option: the command line says so): a ``--pca`` above what the data allow
    #: is then capped with a warning, the default quietly; ``None``: set unless it is the default.
    pca_given: bool | None = None
    method: str = opt("hierarchical", "--method", "hierarchical = average linkage, cosine distance (default)",
                      CLUSTERING, choices=METHODS)
    #: number of clusters, or "auto" (chosen by :class:`~brainclust.cluster.kselect.KSelector`)
    k: int | str = opt(4, "--k", "number of clusters, or 'auto' (majority vote of silhouette, Calinski-Harabasz, "
                       "Davies-Bouldin and gap over k = 2..15) (default {default})", CLUSTERING, parse=parse_k)
    seed: int = opt(0, "--seed", "seed of all randomness (default 0)", CLUSTERING, parse=parse_int)
    labels_from_folders: bool = opt(False, "--labels-from-folders", "first sub-folder = label (the one below "
                                    "it under Training/...), only for scoring (ARI, NMI, FMI, ACC)", RUN, switch=True)
    cache_dir: str | None = opt(None, "--cache-dir", "feature cache (default $BRAINCLUST_CACHE or "
                                "~/.cache/brainclust); if it cannot be used (a file, read-only...) the run warns once "
                                "and continues uncached", EXTRACTION, metavar="DIR")
    device: str = opt("cpu", "--device", "cpu | cuda | cuda:N | auto (default cpu)", EXTRACTION)
    #: progress bars: None = only on a terminal (no option: the CLI's -q hides them with the log)
    progress: bool | None = None
    slices: str = opt("axial:mid", "--slices", "2-D slices cut from each NIfTI volume: PLANE:mid, PLANE:N (N evenly "
                      "spaced through the slices with brain) or PLANE:all, PLANE = axial|coronal|sagittal|all-planes; "
                      "comma-separated to combine (default {default})", VOLUMES, metavar="STRATEGY")
    volume_index: int = opt(0, "--volume-index", "volume of 4-D NIfTI files to slice, from 0 (default {default})",
                            VOLUMES, parse=parse_int, metavar="T")
    #: Self-supervised components (see :mod:`brainclust.selfsup`); empty = off.
    ssl: tuple[str, ...] = opt((), "--self-supervised", "comma-separated: contrastive, rotation, joint, refine; or "
                               "'all'; or 'temi' (clustering heads on the frozen features alone, no views); or "
                               "'none' (default none)", SSL, metavar="COMPONENTS", shown="none")
    ssl_mode: str = opt("head", "--ssl-mode", "head = train small heads on cached features of augmented views "
                        "(default, CPU); finetune = also train the backbone's last blocks (GPU)", SSL,
                        choices=SSL_MODES)
    ssl_epochs: int | None = opt(None, "--ssl-epochs", "training epochs (default 30 head, 10 finetune, 200 temi)",
                                 SSL, parse=parse_int)
    #: Appearance views of the SSL head (``--ssl-views``); ``None`` = identity, hflip, strong.
    ssl_views: tuple[str, ...] | None = opt(None, "--ssl-views", "head mode: comma-separated appearance views, e.g. "
                                            "hflip,intensity (default identity,hflip,strong; identity is always "
                                            "included)", SSL, parse=parse_views, metavar="VIEWS")
    #: Also write the raw backbone features into ``embeddings.parquet`` (``--embeddings-features``).
    embeddings_features: bool = opt(False, "--embeddings-features", "also write the raw backbone features into "
                                    "embeddings.parquet (column 'features')", RUN, switch=True)
    #: ``--reduce``: ``pca`` (default), ``umap`` or ``pca+umap`` (:mod:`brainclust.cluster.manifold`).
    reduce: str = opt("pca", "--reduce", "pca (default); umap: PCA to 100 when wider, then UMAP to 10 dims "
                      "(n_neighbors 30, min_dist 0, cosine); pca+umap: --pca, then UMAP (needs brainclust[umap])",
                      QUALITY, choices=REDUCTIONS)
    #: ``--outliers``: ``off`` (default) or ``auto`` (:mod:`brainclust.cluster.outliers`).
    outliers: str = opt("off", "--outliers", "auto: images in tiny clusters or far from their cluster get cluster "
                        "-1 and the k clusters are formed among the rest (default off)", QUALITY,
                        choices=OUTLIER_MODES)
    #: ``--auto``: the backbone and reduction are chosen label-free (:class:`brainclust.model.auto.AutoSelect`).
    auto: bool = opt(False, "--auto", "choose the backbone and reduction label-free from a small portfolio "
                     "(auto.csv)", QUALITY, switch=True)
    #: ``--consensus``: the co-association consensus of the portfolio's partitions.
    consensus: bool = opt(False, "--consensus", "cluster the consensus (co-association) of the --auto portfolio's "
                          "five backbones' partitions instead of choosing one; 'predict' cannot extend such a run",
                          QUALITY, switch=True)
    #: ``--ssl-gate``: keep the SSL embedding only when :mod:`brainclust.selfsup.gate`'s check passes.
    ssl_gate: bool = opt(False, "--ssl-gate", "with --self-supervised: keep the SSL embedding only if a label-free "
                         "check passes", QUALITY, switch=True)
    #: ``--engine``: ``local`` or ``ray`` (:mod:`brainclust.engines.ray_data`); ``ray_address`` joins a cluster.
    engine: str = opt("local", "--engine", "who extracts the features: local = this process (default); ray = a Ray "
                      "cluster (pip install 'brainclust[ray]'; docs/ray.md); the outputs are the same", RUN,
                      choices=ENGINES)
    #: ``--include`` / ``--exclude-files``: globs over paths relative to DATA (:mod:`brainclust.io.pathfilter`).
    include: tuple[str, ...] = opt((), "--include", "read only the files whose path relative to DATA matches GLOB "
                                   "(* within a name, ** any folders; a pattern without / matches file names; "
                                   "repeatable) (default: every file)", INPUT, metavar="GLOB", repeat=True,
                                   shown="none")
    exclude_files: tuple[str, ...] = opt((), "--exclude-files", "leave out the files matching GLOB (repeatable) "
                                         "(default none)", INPUT, metavar="GLOB", repeat=True, shown="none")
    #: ``--bids-filter``: entity filter of a BIDS data set (:func:`brainclust.io.bids.parse_filter`).
    bids_filter: str | None = opt(None, "--bids-filter", "BIDS data sets: KEY=VALUE[|VALUE...][,KEY=VALUE...] over "
                                  "entities, suffix, datatype, extension, e.g. suffix=T1w|FLAIR,datatype=anat "
                                  "(default: every anatomical image)", INPUT, metavar="FILTER", shown="none")
    #: ``--bids``: ``auto`` detects a BIDS data set, ``off`` reads it as ordinary folders (:mod:`brainclust.io.bids`).
    bids: str = opt("auto", "--bids", "auto: a folder with dataset_description.json or a sub-<label> folder is read "
                    "as a BIDS data set (its rules, columns and --bids-filter); off: read it as ordinary folders, "
                    "every image (default {default})", INPUT, choices=bids_io.BIDS_MODES)
    #: ``--unit``: what one row of the results is (:mod:`brainclust.features.units`).
    unit: str = opt("slice", "--unit", "one row per slice (image), or per volume (NIfTI volume, DICOM series), "
                    "series (NIfTI file, DICOM series) or subject (BIDS subject, else first-level folder); a unit's "
                    "features are the mean of its slices' L2-normalised features (default slice)", METADATA,
                    choices=UNITS)
    #: ``--metadata``: a CSV/TSV table joined to the rows (:mod:`brainclust.io.metadata`).
    metadata: str | None = opt(None, "--metadata", "CSV or TSV table whose columns are added to every row, "
                               "joined on a path, unit, file name or subject column (default none)", METADATA,
                               metavar="FILE")
    metadata_key: str | None = opt(None, "--metadata-key", "the --metadata column to join on (default: the "
                                   "path/unit/name/subject column that matches most rows)", METADATA,
                                   metavar="COLUMN", shown="auto")
    #: ``--labels``: the metadata column the clusters are scored against (ARI, NMI, FMI, ACC).
    labels: str | None = opt(None, "--labels", "score the clusters (ARI, NMI, FMI, ACC) against this metadata "
                             "column, e.g. sequence, plane, site or a --metadata column; never used as a feature "
                             "(default none)", METADATA, metavar="COLUMN")
    #: ``--color-by``: the column the report's map is coloured by at first.
    color_by: str | None = opt(None, "--color-by", "colour the report's map by this column at first (the page "
                               "switches to any column) (default cluster)", METADATA, metavar="COLUMN",
                               shown="cluster")
    descriptors: str = opt("on", "--descriptors", "intensity descriptors of every image (mean, std, percentiles, "
                           "foreground fraction) as metadata columns: one more decode per image, kept in the "
                           "feature cache (default on)", METADATA, choices=DESCRIPTOR_MODES)
    permutations: int = opt(199, "--permutations", "permutations of the p-values of associations.csv, 0 = none "
                            "(default 199)", METADATA, parse=parse_int, metavar="N")
    ray_address: str | None = opt(None, "--ray-address", "with --engine ray: 'auto' or HOST:6379 joins a running "
                                  "cluster (ray start --head); default: start a local Ray on this machine's cores",
                                  RUN, metavar="ADDR")
    #: ``--checks``: the data checks (:mod:`brainclust.checks`): flags in quality.csv and assignments.csv.
    checks: str = opt("on", "--checks", "flag duplicates, near duplicates, non-MRI, blank, noise and tiny images, "
                      "non-image DICOM and outliers (quality.csv, leakage.csv, a 'flags' column); off skips them "
                      "(default on)", CHECKS, choices=("on", "off"))
    #: ``--exclude``: flags whose images are left out of the reduction and the clustering (cluster -1).
    exclude: tuple[str, ...] = opt((), "--exclude", "comma-separated flags whose images are left out of the "
                                   "reduction and the clustering (they stay in assignments.csv with cluster -1), "
                                   "e.g. duplicate,not_mri,blank (default none)", CHECKS, parse=parse_exclude,
                                   metavar="FLAGS", shown="none")
    #: ``--check-thresholds``: ``NAME=VALUE,...`` over the checks' defaults
    #: (:class:`brainclust.checks.flags.Thresholds`).
    check_thresholds: str | None = opt(None, "--check-thresholds", "NAME=VALUE,... changes a check's threshold, "
                                       "e.g. near_similarity=0.99,min_side=24 (docs/checks.md lists them)", CHECKS,
                                       metavar="NAME=V,...")
    #: ``--split-table``: a CSV/TSV naming each image's split (``path`` + ``--split-column``).
    split_table: str | None = opt(None, "--split-table", "CSV/TSV with a 'path' column (relative to DATA) and a "
                                  "split column: duplicates across its splits go to leakage.csv (default: splits "
                                  "read from train/test/val folder and file names)", CHECKS, metavar="CSV")
    split_column: str = opt("split", "--split-column", "the split column of --split-table (default {default})",
                            CHECKS, metavar="NAME")
    #: ``--within`` / ``--remove``: steer the clustering by a column (:mod:`brainclust.model.steering`).
    within: str | None = opt(None, "--within", "cluster separately within each value of COLUMN: a metadata "
                             "column, plane (read from NIfTI, else estimated) or level_N of a first pass; every "
                             "image keeps one global cluster id, its stratum and cluster_in_stratum (default none)",
                             STEERING, metavar="COLUMN")
    remove: str | None = opt(None, "--remove", "factor COLUMN (as for --within) out of the features before the "
                             "reduction and the clustering (default none)", STEERING, metavar="COLUMN")
    remove_rule: str = opt("center", "--remove-rule", "center = subtract each stratum's mean (add back the grand "
                           "mean); project = project out the directions that separate the strata (default center)",
                           STEERING, choices=REMOVE_RULES)

    def __post_init__(self) -> None:
        """A string given for a list setting is read as after its flag (:func:`list_value`): ``include="*.png"``
        is one pattern, ``exclude="duplicate,blank"`` two flags, ``clip_percentiles="1,99"`` a pair."""
        for f in fields(self):
            if str(f.type).startswith("tuple[") and "option" in f.metadata:
                object.__setattr__(self, f.name, list_value(f.metadata["option"], getattr(self, f.name), f.default))

    # -- checks ------------------------------------------------------------------------
    def validate(self, strict: bool = True) -> None:
        """Check every setting without data, so bad settings fail before any work.

        Each value is checked by the step that owns it (:func:`build_steps` and each step's
        ``check_params``); then the rules between settings. ``strict=False`` skips the refusal of
        settings that would be ignored (a saved model's recorded settings keep, e.g., ``ssl_gate``
        after the gate set the SSL stage aside).
        """
        from brainclust.cluster.base import check_seed
        from brainclust.cluster.manifold import check_reduce
        from brainclust.cluster.outliers import check_outlier_method
        from brainclust.cluster.reduce import PCAReducer
        from brainclust.model.agreement import check_agreement
        from brainclust.model.steerrecord import check_steering
        from brainclust.selfsup.stage import check_k as check_ssl_k, validate as validate_ssl

        for f in fields(self):  # "no" or "false" is a true value: labels_from_folders="no" scored the folders
            value = getattr(self, f.name)
            if f.type.startswith("bool") and not (isinstance(value, (bool, np.bool_))
                                                  or (value is None and "None" in f.type)):
                flag = f.metadata["option"].flag if "option" in f.metadata else f.name
                raise ParameterError(f"{flag}: must be True or False, got {value!r}")
        nifti.parse_slices(self.slices)
        nifti.check_volume_index(self.volume_index)
        check_seed(self.seed)
        check_engine(self.engine, self.ray_address)
        check_reduce(self.reduce)
        PCAReducer(self.pca).check_params()
        check_outlier_method(self.outliers, self.method)
        comps = validate_ssl(self.ssl, self.ssl_mode, self.ssl_epochs, self.ssl_views)
        if self.checks not in ("on", "off"):  # not a bool: checks=False ran the checks ("off" is the setting)
            raise ParameterError(f"--checks: must be on or off, got {self.checks!r}")
        self.check_inputs()
        for _, step in build_steps(self):
            step.check_params()
        check_ssl_k(comps, self.k)
        if comps and self.ssl_mode == "finetune" and self.intensity_window is not None:
            raise ParameterError("--intensity-window: not supported with --ssl-mode finetune; use --ssl-mode head")
        self._check_portfolio()
        if self.exclude and (self.auto or self.consensus):
            raise ParameterError(f"--exclude: not supported with {'--auto' if self.auto else '--consensus'} (its "
                                 "portfolio scores every image); run 'brainclust check' and leave the images out, "
                                 "or drop --exclude")
        if self.exclude and self.unit != "slice":
            raise ParameterError(f"--exclude: not supported with --unit {self.unit} (the flags are per slice, the rows "
                                 "per unit); run 'brainclust check' and leave the slices out with --exclude-files, "
                                 "or drop --exclude")
        check_steering(self, comps)
        check_agreement(self)
        if strict:
            self._refuse_ignored(comps)

    def check_inputs(self) -> None:
        """``--include``/``--exclude-files``, ``--bids-filter``, ``--bids``, ``--unit`` and the metadata options."""
        PathFilter(self.include, self.exclude_files)
        bids_io.parse_filter(self.bids_filter)
        bids_io.check_mode(self.bids, self.bids_filter)
        check_unit(self.unit)
        check_key(self.metadata_key)
        for flag, value in (("--labels", self.labels), ("--color-by", self.color_by), ("--metadata", self.metadata)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ParameterError(f"{flag}: expected a column name{' or file' if flag == '--metadata' else ''}, "
                                     f"got {value!r}")
        if self.descriptors not in DESCRIPTOR_MODES:
            raise ParameterError(f"--descriptors: must be one of {', '.join(DESCRIPTOR_MODES)}, "
                                 f"got {self.descriptors!r}")
        if isinstance(self.permutations, bool) or not isinstance(self.permutations, int) or \
                not 0 <= self.permutations <= 100_000:
            raise ParameterError(f"--permutations: must be an integer from 0 to 100000, got {self.permutations!r}")
        if self.labels is not None and self.labels_from_folders:
            raise ParameterError("--labels and --labels-from-folders: choose one (--labels-from-folders is "
                                 "--labels folder)")
        if self.unit != "slice" and (self.auto or self.consensus):
            raise ParameterError(f"--unit {self.unit}: not available with --auto or --consensus (their portfolio "
                                 "is scored on slices); choose the backbone first, then run with --unit")

    def _check_portfolio(self) -> None:
        """``--auto`` / ``--consensus``: one of them, on the default backbone and reduction, without SSL."""
        if self.auto and self.consensus:
            raise ParameterError("--auto and --consensus: choose one (one winner, or the consensus of all)")
        if not (self.auto or self.consensus):
            return
        flag = "--consensus" if self.consensus else "--auto"
        if self.ssl:
            raise ParameterError(f"{flag}: cannot be combined with --self-supervised; choose first, then add it")
        if self.reduce != "pca" or self.backbone not in ("auto", "efficientnet_lite0"):
            raise ParameterError(f"{flag}: chooses --backbone and --reduce itself; leave them at their defaults")
        if self.consensus and (self.method != "hierarchical" or self.outliers != "off"):
            raise ParameterError("--consensus: clusters the co-association with the reference cell (--method "
                                 "hierarchical, --outliers off); leave them at their defaults")

    def _refuse_ignored(self, comps) -> None:
        """A setting that would change nothing is refused, with the setting it needs
        (:data:`~brainclust.core.needs.NEEDS`)."""
        refuse_ignored({**vars(self), "ssl": comps}, vars(RunConfig()))

    def normalized(self) -> "RunConfig":
        """The same settings with ``ssl`` parsed (``"all"`` -> the four components)."""
        from brainclust.selfsup.common import parse_components

        return replace(self, ssl=parse_components(self.ssl))

    def extractor(self) -> FeatureExtractor:
        """The (unfitted) extractor of these settings."""
        from brainclust.features.extractor import FeatureExtractor
        from brainclust.features.fusion import FusedExtractor, is_fused

        kwargs = dict(backbone=self.backbone, weights=self.weights, precision=self.precision,
                      batch_size=self.batch_size, num_workers=self.workers,
                      clip_percentiles=self.clip_percentiles, intensity_window=self.intensity_window,
                      cache_dir=self.cache_dir, device=self.device, progress=self.progress, runtime=self.runtime)
        if is_fused(self.backbone):  # fusion of several backbones (brainclust.features.fusion)
            return FusedExtractor(**kwargs, norm=self.fusion_norm)
        return FeatureExtractor(**kwargs, calibration_size=self.calibration_size)


def options() -> dict[str, Option]:
    """``{field: Option}`` of the settings that have a command-line option."""
    return {f.name: f.metadata["option"] for f in fields(RunConfig) if "option" in f.metadata}


def build_steps(cfg: RunConfig) -> list[tuple[str, object]]:
    """The (unfitted) steps of the model of ``cfg``, in order: extractor, [checks], [ssl], [units], reducer,
    [manifold], clusterer (``checks`` unless ``--checks off``: it may set images aside, see
    :mod:`brainclust.checks.step`; ``units``: :class:`~brainclust.features.unitpool.UnitPool` when ``--unit``
    is not ``slice``).

    ``--outliers auto`` wraps the clustering in an :class:`~brainclust.cluster.outliers.OutlierRule`,
    ``--k auto`` in an :class:`~brainclust.cluster.kselect.AutoK` (outside the rule: k is chosen on every image).
    """
    from brainclust.checks.step import DataChecks, likeness_extraction
    from brainclust.cluster.kselect import AutoK
    from brainclust.cluster.manifold import UMAPManifold, pre_pca_reducer
    from brainclust.cluster.methods import make_clusterer
    from brainclust.cluster.outliers import OutlierRule
    from brainclust.features.unitpool import UnitPool
    from brainclust.model.steering import RemoveStep, WithinStep
    from brainclust.selfsup.common import parse_components
    from brainclust.selfsup.stage import SelfSupervisedStep

    k = cfg.k if cfg.k != "auto" else 4
    steps: list[tuple[str, object]] = [("extractor", cfg.extractor())]
    if cfg.checks != "off":  # the likeness rule's features follow the run's precision (its one rule)
        steps.append(("checks", DataChecks(exclude=tuple(cfg.exclude), thresholds=cfg.check_thresholds,
                                           split_table=cfg.split_table, split_column=cfg.split_column,
                                           n_components=cfg.pca if cfg.reduce != "umap" else 50,
                                           random_state=cfg.seed, workers=cfg.workers, cache_dir=cfg.cache_dir,
                                           progress=cfg.progress, **likeness_extraction(cfg))))
    comps = parse_components(cfg.ssl)
    if comps:
        steps.append(("ssl", SelfSupervisedStep(components=comps, mode=cfg.ssl_mode, epochs=cfg.ssl_epochs,
                                                views=cfg.ssl_views, n_clusters=k, gate=cfg.ssl_gate,
                                                gate_pca=cfg.pca, random_state=cfg.seed,
                                                clip_percentiles=cfg.clip_percentiles, batch_size=cfg.batch_size)))
    if cfg.unit != "slice":
        steps.append(("units", UnitPool(unit=cfg.unit)))
    if cfg.remove is not None:
        steps.append(("remove", RemoveStep(column=cfg.remove, rule=cfg.remove_rule, n_components=cfg.pca,
                                           n_clusters=k, random_state=cfg.seed, cache_dir=cfg.cache_dir)))
    if cfg.within is not None:  # one PCA and clustering per stratum (model.steering.WithinStep)
        steps.append(("clusterer", WithinStep(column=cfg.within, method=cfg.method, k=cfg.k, pca=cfg.pca,
                                              random_state=cfg.seed, cache_dir=cfg.cache_dir,
                                              pca_given=cfg.pca_given)))
        return steps
    steps.append(("reducer", pre_pca_reducer(cfg.reduce, cfg.pca, cfg.seed, cfg.pca_given)))
    if cfg.reduce != "pca":
        steps.append(("manifold", UMAPManifold(random_state=cfg.seed)))
    clusterer = make_clusterer(cfg.method, n_clusters=k, random_state=cfg.seed)
    if cfg.outliers == "auto":
        clusterer = OutlierRule(clusterer)
    if cfg.k == "auto" and cfg.method != "dbscan":
        clusterer = AutoK(clusterer)
    steps.append(("clusterer", clusterer))
    return steps
