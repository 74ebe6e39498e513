"""The run settings that apply only with another, declared once: :data:`NEEDS`.

Two readers: :meth:`brainclust.model.config.RunConfig.validate` refuses such a setting given where it would be
ignored (one line naming what it needs), and the report's settings table
(:func:`brainclust.report.tables.settings_rows`) leaves out those that did not apply to the run (their defaults
say nothing about it: ``--ssl-mode head`` of a run without ``--self-supervised``).

Each rule reads the settings as a mapping (the fields of a :class:`~brainclust.model.config.RunConfig`, or the
``settings`` of a ``manifest.json``, untrusted: a missing or odd value is read as the default would be), so this
module imports nothing heavy and nothing of the model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["NEEDS", "Need", "not_applied"]


@dataclass(frozen=True)
class Need:
    """Setting ``name`` (option ``flag``) applies only when ``applies(settings)``; ``wanted`` says what it needs.

    :meth:`given` says whether the user set it (a value other than ``None``, empty or the default;
    ``given_by``: a setting that records that the user set it, as ``pca_given`` does for ``--pca``)."""

    name: str
    flag: str
    applies: Callable[[Mapping], bool]
    wanted: str
    given_by: str | None = None

    def given(self, settings: Mapping, default) -> bool:
        value = settings.get(self.name)
        return (value not in (None, ()) and value != default) or bool(self.given_by and settings.get(self.given_by))


def _fused(settings: Mapping) -> bool:
    from brainclust.features.fusion import is_fused

    return is_fused(str(settings.get("backbone") or ""))


def _checks_on(settings: Mapping) -> bool:
    return settings.get("checks") != "off"


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
)


def not_applied(settings: Mapping) -> set[str]:
    """The names of :data:`NEEDS` whose setting did not apply with these ``settings``."""
    return {need.name for need in NEEDS if not need.applies(settings)}
