"""The one progress helper of the library: a tqdm bar on stderr, or log lines in a batch job's log.

Bars show only when stderr is a terminal (``disable=None``) unless forced with
``enabled=True``; ``enabled=False`` hides them. The CLI sets two switches: ``-q`` sets
:data:`SHOW_BY_DEFAULT` to ``False`` (then only ``enabled=True`` shows one), and without ``-q`` it sets
:data:`LOG_WITHOUT_TERMINAL`, so that a command whose stderr is a file (a cluster job's log) logs a
progress line at most every :data:`LOG_EVERY_S` seconds instead of showing nothing until the end.
"""

from __future__ import annotations

import logging
import sys
import time

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

#: What ``enabled=None`` means: ``None`` = a bar when stderr is a terminal; ``False`` = no bar (``brainclust -q``).
SHOW_BY_DEFAULT: bool | None = None
#: Without a terminal, log lines instead of no bar (the CLI sets it; a notebook or a library caller keeps tqdm's).
LOG_WITHOUT_TERMINAL = False
#: Seconds between two progress lines of :class:`LogProgress`.
LOG_EVERY_S = 60.0
#: Work that took at least this many seconds logs its final count at ``close`` even when no line was due.
LOG_DONE_AFTER_S = 10.0


class LogProgress:
    """``update``/``close`` like a tqdm bar, written as log lines: one at most every :data:`LOG_EVERY_S`
    seconds, and at ``close`` the final count when an earlier line did not show it and either a line was written
    or the work took :data:`LOG_DONE_AFTER_S` or more (short work logs nothing)."""

    def __init__(self, total: int, desc: str, unit: str):
        self.total, self.desc, self.unit, self.n = int(total), desc, unit, 0
        self.start = self.last = time.monotonic()
        self.lines, self.logged = 0, 0

    def _line(self, now: float) -> None:
        share = f" ({100 * self.n / self.total:.0f} %)" if self.total else ""
        log.info("%s: %s of %s %s%s after %.1f min", self.desc, f"{self.n:,}", f"{self.total:,}", self.unit, share,
                 (now - self.start) / 60)
        self.last, self.lines, self.logged = now, self.lines + 1, self.n

    def set_description(self, desc: str, refresh: bool = True) -> None:
        """The label of the next lines (tqdm's signature: a bar's label may say which part of the work runs)."""
        self.desc = desc

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= LOG_EVERY_S:
            self._line(now)

    def close(self) -> None:
        now = time.monotonic()
        if self.logged != self.n and (self.lines or now - self.start >= LOG_DONE_AFTER_S):  # the last count, once
            self._line(now)


def bar(total: int, desc: str, enabled: bool | None = None, unit: str = "img"):
    enabled = SHOW_BY_DEFAULT if enabled is None else enabled
    if enabled is None and LOG_WITHOUT_TERMINAL and not sys.stderr.isatty():
        return LogProgress(total, desc, unit)
    return tqdm(total=total, desc=desc, unit=unit, disable=None if enabled is None else not enabled,
                dynamic_ncols=True, leave=False)
