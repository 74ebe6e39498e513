"""The command line's options of a run's settings, generated from their one declaration.

:class:`brainclust.model.config.RunConfig` declares each setting once (its flag, parser, help and
group); :func:`add_config_options` turns the fields a command takes into argparse options, and
:func:`config_from_args` the parsed options back into a ``RunConfig``. :func:`negative_values` lets
an option's value start with a minus sign (``--clip -5,50``).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys

from brainclust.terminal import terminal_text


#: Options whose value may start with a minus sign (argparse would take ``-5,50`` for an option).
NEGATIVE_VALUE_OPTIONS = ("--clip", "--intensity-window")
_NEGATIVE_VALUE = re.compile(r"-\.?\d")


def negative_values(argv: list[str]) -> list[str]:
    """``--clip -5,50`` rewritten as ``--clip=-5,50``, which argparse reads as the option's value; nothing after
    ``--`` is touched."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            return out + list(argv[i:])
        takes = "=" not in a and a in NEGATIVE_VALUE_OPTIONS  # options are never abbreviated (OneLineParser)
        if takes and i + 1 < len(argv) and _NEGATIVE_VALUE.match(argv[i + 1]):
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def arg_type(parse):
    """An argparse ``type`` from a library parser: its ParameterError becomes argparse's one-line error."""
    from brainclust.errors import ParameterError

    def convert(text):
        try:
            return parse(text)
        except ParameterError as exc:  # argparse names the option itself: the library's own "--opt: " goes
            raise argparse.ArgumentTypeError(re.sub(r"^--[\w-]+: ", "", str(exc))) from None

    convert.__name__ = parse.__name__
    return convert


def add_config_options(p: argparse.ArgumentParser, names, defaults: dict | None = None,
                       helps: dict | None = None) -> None:
    """Options for the :class:`RunConfig` fields ``names``, from their declaration (dest = field name).

    ``defaults`` / ``helps`` override a field's default or help text for this command; a help text's
    ``{default}`` shows the default.
    """
    from dataclasses import fields

    from brainclust.model.config import RunConfig, options
    from brainclust.model.optionspec import RUN

    declared, field_default = options(), {f.name: f.default for f in fields(RunConfig)}
    groups: dict[str, object] = {}
    for name in names:
        o = declared[name]
        default = (defaults or {}).get(name, field_default[name])
        group = p if o.group == RUN else groups.setdefault(o.group, p.add_argument_group(o.group))
        shown = o.shown if o.shown is not None else ("the run's" if default is None else default)
        text = (helps or {}).get(name, o.help).format(default=shown)
        if o.switch:
            group.add_argument(o.flag, dest=name, action="store_true", help=text)
        elif o.repeat:  # None = not given (the field's default, or the run's for predict)
            group.add_argument(o.flag, dest=name, action="append", default=None,
                               type=arg_type(o.parse) if o.parse else None, metavar=o.metavar, help=text)
        else:
            group.add_argument(o.flag, dest=name, default=default, type=arg_type(o.parse) if o.parse else None,
                               choices=o.choices, metavar=o.metavar, help=text)


def config_from_args(args, **more):
    """The RunConfig of the parsed options (every option that is a RunConfig field) and ``more``."""
    from dataclasses import fields

    from brainclust.model.config import RunConfig, options
    from brainclust.model.record import warn_unused_k

    declared, default = options(), {f.name: f.default for f in fields(RunConfig)}
    values = {n: getattr(args, n) for n in declared if hasattr(args, n)}
    for n, o in declared.items():
        if o.repeat and n in values:
            values[n] = tuple(values[n]) if values[n] is not None else default[n]
    if "pca" in values and "--pca" in getattr(args, "given_options_", ()):  # capped with a warning, not quietly
        more = {"pca_given": True, **more}
    cfg = RunConfig(**{**values, **more}).normalized()
    if "k" in values and "--k" in getattr(args, "given_options_", ()):  # the default k is not the user's
        warn_unused_k(cfg)
    return cfg


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the rule and the value, then where help is), exit 2, and
    that takes no abbreviated option (``predict --exclude duplicate`` was read as ``--exclude-files``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        self.given_ = list(sys.argv[1:] if args is None else args)  # for _did_you_mean
        ns, rest = super().parse_known_args(args, namespace)
        # the options on the command line (config_from_args warns about a given option the run does not use)
        ns.given_options_ = frozenset(w.split("=", 1)[0] for w in self.given_ if w.startswith("--"))
        return ns, rest

    def error(self, message: str):
        command = self._command()
        where = f"{self.prog} {command}" if command and message.startswith("unrecognized arguments: ") else self.prog
        self.exit(2, terminal_text(f"{self.prog}: error: {message}{self._did_you_mean(message)} "
                                   f"(see '{where} --help')") + "\n")

    def _subcommands(self) -> dict:
        return {name: sub for a in self._actions if isinstance(a.choices, dict) for name, sub in a.choices.items()
                if isinstance(sub, argparse.ArgumentParser)}

    def _command(self) -> str | None:
        """The sub-command on the command line (its parser's own options are known), if any."""
        return next((w for w in getattr(self, "given_", ()) if w in self._subcommands()), None)

    def _did_you_mean(self, message: str) -> str:
        """``; did you mean --x?`` for an unrecognised option close to one of this parser's; ``; --x is an option
        of 'brainclust run'`` for one of another sub-command's (``check --exclude`` suggested ``--include``)."""
        if not message.startswith("unrecognized arguments: "):
            return ""
        subs, command = self._subcommands(), self._command()
        parsers = [self] + ([subs[command]] if command else [])
        known = sorted({o for p in parsers for a in p._actions for o in a.option_strings if o.startswith("--")})
        for word in message.split(": ", 1)[1].split():
            option = word.split("=", 1)[0]
            owners = [f"'{self.prog} {name}'" for name, sub in subs.items() if name != command and any(
                option in a.option_strings for a in sub._actions)]
            if command and word.startswith("--") and owners:
                return f"; {option} is an option of {' and '.join(owners)}, not of '{self.prog} {command}'"
            close = difflib.get_close_matches(option, known, n=1, cutoff=0.75)
            if word.startswith("--") and close:
                return f"; did you mean {close[0]}?"
        return ""
