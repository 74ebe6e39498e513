"""The one progress helper of the library: a tqdm bar on stderr.

Bars show only when stderr is a terminal (``disable=None``) unless forced with
``enabled=True``; ``enabled=False`` hides them. The CLI's ``-q`` sets :data:`SHOW_BY_DEFAULT` to ``False``:
then only ``enabled=True`` shows one.
"""

from __future__ import annotations

from tqdm.auto import tqdm


#: What ``enabled=None`` means: ``None`` = a bar when stderr is a terminal; ``False`` = no bar (``brainclust -q``).
SHOW_BY_DEFAULT: bool | None = None


def bar(total: int, desc: str, enabled: bool | None = None, unit: str = "img") -> tqdm:
    enabled = SHOW_BY_DEFAULT if enabled is None else enabled
    return tqdm(total=total, desc=desc, unit=unit, disable=None if enabled is None else not enabled,
                dynamic_ncols=True, leave=False)
