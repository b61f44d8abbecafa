"""The one rule for row counts and positive ints on every command line."""

from __future__ import annotations

import argparse

import pytest
from taskbench.comparisons.argtypes import parse_rows, positive_int


@pytest.mark.parametrize(
    ("text", "rows"),
    [("1M", 10**6), ("10M", 10**7), ("10m", 10**7), ("200k", 200_000), ("2_000_000", 2 * 10**6),
     ("1e6", 10**6), ("2.5M", 2_500_000), ("1,000", 1000), ("1G", 10**9), ("1", 1)],
)  # fmt: skip
def test_parse_rows(text, rows):
    assert parse_rows(text) == rows


@pytest.mark.parametrize("text", ["0", "-3", "-1k", "lots", "1.5", "1e-1", "M", "inf", ""])
def test_parse_rows_refuses(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_rows(text)


def test_positive_int():
    assert positive_int("3") == 3
    for text in ("0", "-1", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_int(text)
