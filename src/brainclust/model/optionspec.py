"""The command-line option of a run setting: :class:`Option` (flag, parser, help text, group), :func:`opt` that
declares a :class:`~brainclust.model.config.RunConfig` field with its option, the help groups, and the parsers of
option text (each raises ParameterError on bad text; the CLI shows the message).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from brainclust.errors import ParameterError
from brainclust.io.pathfilter import glob_list


def parse_pca(value: str) -> float | int:
    """``--pca``: ``"1"`` is one component, ``"0.95"`` a variance fraction, ``"1.0"`` stays a float (refused)."""
    try:
        return int(value)
    except ValueError:
        pass
    try:
        v = float(value)
    except ValueError:
        raise ParameterError(f"must be 0, an integer >= 1 or a fraction in (0, 1), got '{value}'") from None
    return int(v) if v.is_integer() and v != 1 else v


def parse_k(value: str) -> int | str:
    if value.lower() == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        raise ParameterError(f"must be a positive integer or 'auto', got '{value}'") from None


def parse_clip(value: str) -> tuple[float, float] | None:
    if value.lower() in ("off", "none", "0"):
        return None
    try:
        lo, hi = (float(x) for x in value.split(","))
    except ValueError:
        raise ParameterError(f"expected LOW,HIGH percentiles (e.g. 0.5,99.5) or 'off', got '{value}'") from None
    return lo, hi


def parse_window(value: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in value.split(","))
    except ValueError:
        raise ParameterError(f"expected LOW,HIGH intensities (e.g. 0,255), got '{value}'") from None
    return lo, hi


def parse_views(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def list_value(option: "Option", value, default=None):
    """A list-valued setting (a tuple field) given from Python, read as on the command line: a string is what
    follows the flag once, so one pattern for an option given once per value (``repeat``: ``include="*.png"``),
    else the option's text (``exclude="duplicate,blank"``, ``clip_percentiles="1,99"``; a comma-separated list
    when it has no parser); a list becomes a tuple; ``None`` stays, or is empty when the field's ``default`` is
    (``exclude=None``: none, as ``include=None``)."""
    if option.repeat:  # one pattern per flag (--include, --exclude-files): the scan's own rule
        return glob_list(value, option.flag)
    if isinstance(value, (bytes, bytearray, memoryview)) or (isinstance(value, (list, tuple)) and any(
            v is None or isinstance(v, (bytes, bytearray, memoryview, list, tuple, dict, set)) for v in value)):
        raise ParameterError(f"{option.flag}: expected a string or a list of values, got {value!r:.80}")
    if isinstance(value, str):
        try:
            return option.parse(value) if option.parse else parse_views(value)
        except ParameterError as exc:
            raise ParameterError(str(exc) if str(exc).startswith("--") else f"{option.flag}: {exc}") from None
    if value is None:
        return () if default == () else None
    if isinstance(value, tuple):
        return value
    try:
        return tuple(value)
    except TypeError:
        raise ParameterError(f"{option.flag}: expected a list or a string, got {value!r:.80}") from None


def parse_int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ParameterError(f"must be an integer, got '{value}'") from None


@dataclass(frozen=True)
class Option:
    """The command-line option of a :class:`RunConfig` field."""

    flag: str
    help: str
    group: str
    parse: Callable[[str], object] | None = None
    choices: tuple | None = None
    metavar: str | None = None
    switch: bool = False  #: a flag without a value (store_true)
    repeat: bool = False  #: may be given several times (a tuple of values; default: none)
    #: the default as the help shows it and as the CLI passes it to ``parse`` (when not the field's)
    shown: str | None = None


EXTRACTION, VOLUMES, CLUSTERING, SSL, QUALITY, RUN = ("feature extraction", "NIfTI volumes", "reduction and clustering",
                                                      "self-supervised strategy", "quality options (docs/results.md)",
                                                      "run")
INPUT, METADATA = "choosing files (docs/units-metadata.md)", "units and metadata (docs/units-metadata.md)"
CHECKS = "data checks (docs/checks.md)"
STEERING = "steering (docs/steering.md)"


def opt(default, *args, **kwargs):
    """A dataclass field whose metadata is its :class:`Option`."""
    return field(default=default, metadata={"option": Option(*args, **kwargs)})
