"""The report's Jinja environment: autoescaped HTML, undefined names refused, the report's filters."""

from __future__ import annotations

import math
import numbers
from functools import lru_cache
from pathlib import Path

from brainclust.io.walk import skipped_text
from brainclust.terminal import count_text

#: Where the templates (and the CSS and JavaScript they inline) live.
TEMPLATES = Path(__file__).parent / "templates"


@lru_cache(maxsize=1)
def environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v: f"{100 * v:.1f}%" if is_number(v) else ""
    env.filters["f3"] = lambda v: f"{v:.3f}" if is_number(v) else "n/a"
    env.filters["units"] = plural
    env.filters["counted"] = counted
    env.filters["noun"] = count_text  # {{ n|noun('cluster') }}: 1 cluster, 2 clusters; {{ n|noun('miss', 'misses') }}
    env.filters["skipped"] = skipped_text  # {{ manifest_skipped|skipped }}: 1 file, 2 files and 1 folder
    return env


def is_number(v) -> bool:
    """Whether ``v`` is a finite real number (not a bool): what the ``pct`` and ``f3`` filters format; anything else,
    from a run folder's JSON (untrusted: ``pca.explained_variance`` written as a string), shows as no number, never
    as an error (until 2026-12-07 the report ended in ``internal error: ValueError: Unknown format code 'f'``)."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def plural(unit: str) -> str:
    """What the rows of a ``unit`` run are counted as: ``images`` (slices), ``volumes``, ``series``, ``subjects``."""
    return "images" if unit == "slice" else unit if unit.endswith("s") else unit + "s"


def counted(n, unit: str) -> str:
    """``n`` rows of a ``unit`` run in words: ``1 volume``, ``20 volumes``, ``1 image``."""
    return count_text(n, "image" if unit == "slice" else unit)


def render(template: str, ctx: dict) -> str:
    """``template`` (a file of :data:`TEMPLATES`) rendered with ``ctx``."""
    return environment().get_template(template).render(**ctx)
