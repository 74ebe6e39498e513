"""The one progress helper of the library: a tqdm bar on stderr.

Bars show only when stderr is a terminal (``disable=None``) unless forced with
``enabled=True``; ``enabled=False`` hides them.
"""

from __future__ import annotations

from tqdm.auto import tqdm


def bar(total: int, desc: str, enabled: bool | None = None, unit: str = "img") -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, disable=None if enabled is None else not enabled,
                dynamic_ncols=True, leave=False)
