"""Text on the terminal: names are untrusted, so no control character of theirs reaches it raw.

Every line the CLI writes goes through :func:`terminal_text`: error lines, the argument parser's,
the log formatter's (:class:`TerminalFormatter`) and each command's output (``cli.say``).
"""

from __future__ import annotations

import difflib
import logging
import re

#: What a terminal could act on: C0 and C1 control characters, DEL, and undecodable bytes (surrogate escapes).
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def terminal_text(text: str) -> str:
    """``text`` with every character of :data:`CONTROL` as ``\\xNN``, so a file name cannot drive the terminal."""
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()) & 0xFF:02x}", text)


#: The most characters of a name a message shows (a 5,000-character path from a tampered row would fill the screen).
NAME_SHOWN = 200


def clipped(text: str, most: int = NAME_SHOWN) -> str:
    """``text``, or its first ``most`` characters and ``…`` when it is longer (a name in a message)."""
    return text if len(text) <= most else text[:most] + "…"


def did_you_mean(word: str, names) -> str:
    """`` (did you mean NAME?)`` when ``word`` is close to one of ``names`` (a typo of a column), else ``""``."""
    close = difflib.get_close_matches(str(word), list(names), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


class TerminalFormatter(logging.Formatter):
    """Log lines with :func:`terminal_text` applied to the message (tracebacks stay as they are)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return terminal_text(super().formatMessage(record))


def count_text(n: int, noun: str, plural: str | None = None) -> str:
    """``1 cluster``, ``2 clusters``, ``3 series``, ``2 strata`` (``plural``: when not the noun and an s)."""
    return f"{n} {noun}" if n == 1 or (plural is None and noun.endswith("s")) else f"{n} {plural or noun + 's'}"


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM (so ``finally`` blocks and temporary folders are cleaned up)."""


def on_sigterm(signum, frame) -> None:
    raise Terminated()


#: What rerunning a command after an interrupt does (said in the interrupt's line).
RESUME = {"run": "; rerun the same command: the features extracted so far are kept (self-supervised training and "
                 "clustering start again)",
          "predict": "; rerun the same command: the features extracted so far are kept",
          "report": "; nothing was changed", "export": "; nothing was changed",
          "check": "; rerun the same command to resume from the store of the checks"}


def stopped(exc: BaseException, command: str | None) -> tuple[str, int]:
    """``(line, exit status)`` saying that ``command`` was interrupted (Ctrl-C) or terminated (SIGTERM)."""
    what = "interrupted" if isinstance(exc, KeyboardInterrupt) else "terminated (SIGTERM)"
    return f"brainclust: {what}{RESUME.get(command or '', '')}", 130 if isinstance(exc, KeyboardInterrupt) else 143
