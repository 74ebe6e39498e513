"""The run settings that apply only with another, declared once: :data:`NEEDS`.

Two readers: :func:`refuse_ignored` refuses such a setting given where it would be ignored, in one line naming
what it needs (:meth:`brainclust.model.config.RunConfig.validate`, ``brainclust check`` and ``brainclust report``),
and the report's settings table (:func:`brainclust.report.tables.settings_rows`) leaves out those that did not
apply to the run (their defaults say nothing about it: ``--ssl-mode head`` of a run without ``--self-supervised``).
A few are never refused (``refused=False``): ``--k`` with DBSCAN, which the run warns of (the heads of
``--self-supervised`` still use it), and the settings the data decide, which the settings alone cannot tell
(``--slices`` cuts NIfTI volumes: a folder of PNGs ignores it, a mixed folder uses it; ``--volume-index`` picks a
volume of 4-D files only; the scan warns): their rule reads the run's record of its scan (``manifest.json``
``scan``, under the key ``scan``), and without one they apply.

Each rule reads the settings as a mapping (the fields of a :class:`~brainclust.model.config.RunConfig`, or the
``settings`` of a ``manifest.json``, untrusted: a missing or odd value is read as the default would be), so this
module imports nothing but the errors and the settings' values (:mod:`brainclust.core.choices`): every stage can
read it (``brainclust check`` refuses in :mod:`brainclust.checks.stage`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from brainclust.core.choices import is_fused
from brainclust.errors import ParameterError

__all__ = ["NEEDS", "Need", "applied", "not_applied", "refuse_ignored"]


@dataclass(frozen=True)
class Need:
    """Setting ``name`` (option ``flag``) applies only when ``applies(settings)``; ``wanted`` says what it needs.

    :meth:`given` says whether the user set it (a value other than ``None``, empty or the default;
    ``given_by``: a setting that records that the user set it, as ``pca_given`` does for ``--pca``);
    ``refused``: whether :func:`refuse_ignored` refuses it given where it does not apply."""

    name: str
    flag: str
    applies: Callable[[Mapping], bool]
    wanted: str
    given_by: str | None = None
    refused: bool = True

    def given(self, settings: Mapping, default) -> bool:
        value = settings.get(self.name)
        return (value not in (None, ()) and value != default) or bool(self.given_by and settings.get(self.given_by))


def _fused(settings: Mapping) -> bool:
    return is_fused(str(settings.get("backbone") or ""))


def _checks_on(settings: Mapping) -> bool:
    return settings.get("checks") != "off"


def _k_used(settings: Mapping) -> bool:
    """DBSCAN finds its own number of clusters; ``k`` still sets the self-supervised heads and cuts the first tree
    of a ``level_N`` column of ``--within``/``--remove``."""
    return settings.get("method") != "dbscan" or bool(settings.get("ssl")) or any(
        str(settings.get(name) or "").startswith("level_") for name in ("within", "remove"))


def _nifti_found(settings: Mapping) -> bool:
    """Whether the scan found a NIfTI file (``scan.nifti``: kept or skipped); unknown (no record) counts as found."""
    scan = settings.get("scan")
    return not isinstance(scan, Mapping) or scan.get("nifti") is not False


def _multi_volume(settings: Mapping) -> bool:
    """Whether a NIfTI file the scan found had more than one volume (``scan.nifti_multi_volume``); unknown (no
    record: a run folder written before it) counts as one had."""
    scan = settings.get("scan")
    return _nifti_found(settings) and (not isinstance(scan, Mapping) or scan.get("nifti_multi_volume") is not False)


_SSL = "--self-supervised"
#: In the order the refusals are tried (the first that applies is the one line).
NEEDS: tuple[Need, ...] = (
    Need("ssl_gate", "--ssl-gate", lambda s: bool(s.get("ssl")), _SSL),
    Need("ssl_mode", "--ssl-mode", lambda s: bool(s.get("ssl")), _SSL),
    Need("ssl_epochs", "--ssl-epochs", lambda s: bool(s.get("ssl")), _SSL),
    Need("ssl_views", "--ssl-views", lambda s: bool(s.get("ssl")), _SSL),
    Need("calibration_size", "--calibration-size", lambda s: s.get("precision") == "int8", "--precision int8"),
    Need("fusion_norm", "--fusion-norm", _fused, "a fused --backbone (A+B)"),
    Need("pca", "--pca", lambda s: s.get("reduce") != "umap",
         "--reduce pca or pca+umap (--reduce umap chooses its own PCA)", given_by="pca_given"),
    Need("clip_percentiles", "--clip", lambda s: s.get("intensity_window") is None,
         "no --intensity-window (which replaces it)"),
    Need("metadata_key", "--metadata-key", lambda s: s.get("metadata") is not None, "--metadata FILE"),
    Need("split_column", "--split-column", lambda s: s.get("split_table") is not None, "--split-table"),
    Need("remove_rule", "--remove-rule", lambda s: s.get("remove") is not None, "--remove COLUMN"),
    Need("exclude", "--exclude", _checks_on, "--checks on"),
    Need("check_thresholds", "--check-thresholds", _checks_on, "--checks on"),
    Need("split_table", "--split-table", _checks_on, "--checks on"),
    # never refused: the run warns (--k), or the data decide (a mixed folder slices its NIfTI volumes)
    Need("k", "--k", _k_used, "a --method other than dbscan (it finds its own number of clusters)", refused=False),
    Need("slices", "--slices", _nifti_found, "NIfTI volumes in DATA", refused=False),
    Need("volume_index", "--volume-index", _multi_volume, "4-D NIfTI files in DATA", refused=False),
)


def not_applied(settings: Mapping) -> set[str]:
    """The names of :data:`NEEDS` whose setting did not apply with these ``settings`` (and ``scan``: the run's
    record of its scan, for the settings the data decide)."""
    return {need.name for need in NEEDS if not need.applies(settings)}


def applied(name: str, settings: Mapping) -> bool:
    """Whether setting ``name`` applies with these ``settings`` (one that :data:`NEEDS` does not name always does)."""
    return name not in not_applied(settings)


def refuse_ignored(settings: Mapping, defaults: Mapping) -> None:
    """Refuse the first of :data:`NEEDS` given in ``settings`` (away from its value in ``defaults``) where it would
    be ignored, in one line: ``--split-column: would be ignored (got 'fold'); it needs --split-table``. A setting
    missing from ``settings`` is not given (a command with a few of the settings passes those).

    Raises
    ------
    ParameterError
        The first such setting, with what it needs.
    """
    for need in NEEDS:
        if need.refused and not need.applies(settings) and need.given(settings, defaults.get(need.name)):
            got = settings[need.name]
            shown = ",".join(map(str, got)) if isinstance(got, (tuple, list)) else got
            given = "" if isinstance(got, bool) else f" (got {shown!r})"  # a switch: its name says it all
            raise ParameterError(f"{need.flag}: would be ignored{given}; it needs {need.wanted}")
