"""argparse types shared by every ``taskbench`` command outside the engine.

One rule each: a row count is a whole number of at least 1, written ``1000000``,
``1_000_000``, ``1,000``, ``1e6``, ``200k``, ``10M``, ``2.5M`` or ``1G``; a positive int is
an int of at least 1. A value that breaks the rule is an ``argparse`` error naming it.
"""

from __future__ import annotations

import argparse
from decimal import Decimal, InvalidOperation

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


def positive_int(text: str) -> int:
    """An int of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
