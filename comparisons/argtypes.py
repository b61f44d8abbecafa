"""argparse types of the ``taskbench`` commands outside the engine: the engine's rules, and rows.

Every rule but one is the engine's (`taskbench.engine.argtypes`, whose docstring lists them):
a count, a number of seconds, a port, an address, an input that exists, an output whose folder
exists. The one added here: a row count is a whole number of at least 1, written ``1000000``,
``1_000_000``, ``1,000``, ``1e6``, ``200k``, ``10M``, ``2.5M`` or ``1G``. A value that breaks
a rule is an ``argparse`` error naming the flag and the value.
"""

from __future__ import annotations

import argparse
from decimal import Decimal, InvalidOperation

from taskbench.engine.argtypes import (
    ArgumentParser,
    comma_choices,
    existing_file,
    existing_folder,
    existing_path,
    log_level,
    non_negative_int,
    non_negative_number,
    output_file,
    output_folder,
    positive_int,
    positive_number,
)

__all__ = [
    "ArgumentParser",
    "comma_choices",
    "existing_file",
    "existing_folder",
    "existing_path",
    "log_level",
    "non_negative_int",
    "non_negative_number",
    "output_file",
    "output_folder",
    "parse_rows",
    "positive_int",
    "positive_number",
]

_SUFFIXES = {"k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9}


def parse_rows(text: str) -> int:
    """A row count of at least 1: ``200k``, ``10M``, ``2_000_000``, ``1e6``."""
    cleaned = text.strip().replace("_", "").replace(",", "")
    scale = 1
    if cleaned and cleaned[-1].lower() in _SUFFIXES:
        scale = _SUFFIXES[cleaned[-1].lower()]
        cleaned = cleaned[:-1]
    try:
        value = Decimal(cleaned) * scale
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a row count: {text!r} (try 200k, 10M)") from None
    if not value.is_finite() or value != value.to_integral_value() or value < 1:
        raise argparse.ArgumentTypeError(f"not a whole row count of at least 1: {text!r}")
    return int(value)
