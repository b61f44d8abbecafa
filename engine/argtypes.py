"""The command line's value rules, one per kind of value, and the parser every command uses.

Each rule is an ``argparse`` type: a value that breaks it is an ``argparse`` error that names
the flag and the value (``error: argument --nthreads: expected a whole number of at least 1,
got '0'``), exit code 2, before the command does anything. The rules:

- count: a whole number of at least 1 (`positive_int`); where 0 means "skip", of at least 0
  (`non_negative_int`);
- number (seconds, bytes/s, a scale): a finite number above 0 (`positive_number`), or of at
  least 0 (`non_negative_number`);
- port: a whole number from 0 to 65535 (`port`); address: ``tcp://host:port`` or
  ``host:port`` with a port from 1 to 65535, returned as ``tcp://host:port`` (`address`);
- input: an existing file (`existing_file`), folder (`existing_folder`) or either
  (`existing_path`);
- output: its folder exists and is writable, and a file output is not a folder
  (`output_file`, `output_folder`);
- a choice from a comma list (`comma_choices`), a log level (`log_level`).

`ArgumentParser` shows each flag's default in ``--help`` and, when a required argument is
missing beside an unknown flag, names the unknown flag rather than the missing argument.
The module is pure (standard library only), so every layer can use it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _fail(message: str) -> NoReturn:
    raise argparse.ArgumentTypeError(message)


def _int(text: str, what: str) -> int:
    try:
        return int(text.strip().replace("_", ""))
    except ValueError:
        _fail(f"expected {what}, got {text!r}")


def positive_int(text: str) -> int:
    """A count: a whole number of at least 1."""
    what = "a whole number of at least 1"
    value = _int(text, what)
    if value < 1:
        _fail(f"expected {what}, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """A count where 0 means none (skip): a whole number of at least 0."""
    what = "a whole number of at least 0"
    value = _int(text, what)
    if value < 0:
        _fail(f"expected {what}, got {text!r}")
    return value


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        _fail(f"expected {what}, got {text!r}")
    if not math.isfinite(value):
        _fail(f"expected {what}, got {text!r}")
    return value


def positive_number(text: str) -> float:
    """Seconds, bytes/s or a scale that must be above 0: a finite number > 0."""
    what = "a number above 0"
    value = _number(text, what)
    if value <= 0:
        _fail(f"expected {what}, got {text!r}")
    return value


def non_negative_number(text: str) -> float:
    """Seconds where 0 means "not at all": a finite number >= 0."""
    what = "a number of at least 0"
    value = _number(text, what)
    if value < 0:
        _fail(f"expected {what}, got {text!r}")
    return value


def port(text: str) -> int:
    """A TCP port to listen on: 0 (any free port) to 65535."""
    what = "a port from 0 to 65535"
    value = _int(text, what)
    if not 0 <= value <= 65535:
        _fail(f"expected {what}, got {text!r}")
    return value


def address(text: str) -> str:
    """An address to connect to, ``tcp://host:port`` (``host:port`` too); returns the URL form."""
    rest = text.removeprefix("tcp://")
    host, _, number = rest.rpartition(":")
    host = host.strip("[]")
    ok = host and "/" not in rest and number.isascii() and number.isdigit()
    if not ok or not 1 <= int(number) <= 65535:
        _fail(f"expected an address tcp://host:port (port 1-65535), got {text!r}")
    return f"tcp://{'[' + host + ']' if ':' in host else host}:{int(number)}"


def existing_file(text: str) -> Path:
    """An input file that exists."""
    path = Path(text)
    if not path.is_file():
        _fail(f"no such file: {text!r}" + (" (a folder)" if path.is_dir() else ""))
    return path


def existing_folder(text: str) -> Path:
    """An input folder that exists."""
    path = Path(text)
    if not path.is_dir():
        _fail(f"no such folder: {text!r}" + (" (a file)" if path.exists() else ""))
    return path


def existing_path(text: str) -> Path:
    """An input file or folder that exists."""
    path = Path(text)
    if not text or not path.exists():
        _fail(f"no such file or folder: {text!r}")
    return path


def _writable_parent(text: str) -> Path:
    if not text.strip():
        _fail("expected a path, got ''")
    path = Path(text)
    folder = path.parent
    if not folder.is_dir():
        _fail(f"folder {str(folder)!r} does not exist (for {text!r})")
    if not os.access(folder, os.W_OK | os.X_OK):
        _fail(f"folder {str(folder)!r} is not writable (for {text!r})")
    return path


def output_file(text: str) -> Path:
    """A file to write: its folder exists and is writable, and it is not itself a folder."""
    path = _writable_parent(text)
    if path.is_dir():
        _fail(f"{text!r} is a folder, not a file")
    return path


def output_folder(text: str) -> Path:
    """A folder to write into: its parent exists and is writable; it is not a file."""
    path = _writable_parent(text)
    if path.exists() and not path.is_dir():
        _fail(f"{text!r} is a file, not a folder")
    return path


def comma_choices(choices: Iterable[str], what: str) -> Callable[[str], list[str]]:
    """A type for a comma list of ``choices`` (no repeats, given order); empty is an error."""
    known = tuple(choices)

    def parse(text: str) -> list[str]:
        picked = [c.strip() for c in text.split(",") if c.strip()]
        bad = [c for c in picked if c not in known]
        if bad or not picked:
            named = ", ".join(map(repr, bad)) or repr(text)
            _fail(f"unknown {what} {named}; choose from {', '.join(known)}")
        return list(dict.fromkeys(picked))

    parse.__name__ = f"{what}_list"
    return parse


def log_level(text: str) -> str:
    """A logging level name, any case."""
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        _fail(f"expected one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return level


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """``--help`` adds ``(default: X)`` to each flag with a default its help does not state."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        none = default is None or default is False or default is argparse.SUPPRESS
        none = none or (isinstance(default, (str, list)) and not default)
        if text == argparse.SUPPRESS or none or not action.option_strings or "default" in text:
            return action.help
        return f"{text} (default: %(default)s)".lstrip()


class _Probe(Exception):
    pass


class ArgumentParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` with defaults in ``--help`` and unknown flags named first.

    argparse reports a missing required argument (such as the subcommand) before an
    unrecognised one, so ``taskbench --frob`` said "required: command". This parser parses
    again without the required checks when one fails, and reports what it did not recognise.
    Subparsers are made of the same class.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)
        self._seen: list[str] = []
        self._probing = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._seen = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        if self._probing:
            raise _Probe(message)
        if message.startswith("the following arguments are required"):
            unknown = self._unrecognised()
            if unknown:
                message = f"unrecognized arguments: {' '.join(unknown)}"
        super().error(message)

    def _unrecognised(self) -> list[str]:
        required = [a for a in self._actions if a.required]
        self._probing = True
        try:
            for action in required:
                action.required = False
            return super().parse_known_args(self._seen, argparse.Namespace())[1]
        except _Probe:
            return []
        finally:
            for action in required:
                action.required = True
            self._probing = False
