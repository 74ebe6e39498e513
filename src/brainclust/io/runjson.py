"""The JSON files of a run folder parsed as brainclust writes them (:func:`loads_run_json`): no ``NaN`` or
``Infinity`` constant, and no number beyond the float range. Such a number is valid JSON, but ``1e400`` reads as an
infinity and ``1`` followed by 400 zeros as an integer no float holds: a field the report or ``view`` formats then
failed past every check of its type (until 2026-12-07: ``brainclust report`` and ``view`` of a ``metrics.json``
whose ``within.scores.mean_nmi`` was such an integer ended in ``internal error: OverflowError``)."""

from __future__ import annotations

import json
import math
import sys

__all__ = ["loads_run_json"]


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON that brainclust writes")


def _beyond(text: str) -> ValueError:
    return ValueError(f"the number {text[:24]}{'…' if len(text) > 24 else ''} is beyond the float range: not JSON "
                      "that brainclust writes")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _beyond(text)
    return value


def _float_sized_int(text: str) -> int:
    value = int(text)
    if abs(value) > sys.float_info.max:
        raise _beyond(text)
    return value


def loads_run_json(text: str):
    """``json.loads(text)``, refusing (ValueError) ``NaN``/``Infinity`` and the numbers no float holds."""
    return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_float_sized_int)
