"""One rule per kind of value on every command line: rows, counts, seconds, ports, paths."""

from __future__ import annotations

import argparse
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from taskbench.comparisons.argtypes import (
    comma_choices,
    existing_file,
    existing_folder,
    existing_path,
    log_level,
    non_negative_int,
    non_negative_number,
    output_file,
    output_folder,
    parse_rows,
    positive_int,
    positive_number,
)
from taskbench.engine.argtypes import address, port


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


RULES = [positive_int, non_negative_int, positive_number, non_negative_number, port, address,
         log_level, comma_choices(["a", "b"], "thing")]  # fmt: skip


@pytest.mark.parametrize(
    ("rule", "good", "bad"),
    [
        (non_negative_int, {"0": 0, "7": 7, "1_000": 1000}, ["-1", "x", "1.5", ""]),
        (positive_number, {"0.5": 0.5, "3": 3.0, "1e-3": 0.001}, ["0", "-1", "nan", "inf", "x"]),
        (non_negative_number, {"0": 0.0, "2.5": 2.5}, ["-0.1", "nan", "-inf", "x"]),
        (port, {"0": 0, "8786": 8786, "65535": 65535}, ["-1", "65536", "99999", "http", ""]),
        (
            address,
            {
                "tcp://10.0.0.5:8786": "tcp://10.0.0.5:8786",
                "host:1": "tcp://host:1",
                "tcp://[::1]:80": "tcp://[::1]:80",
            },
            [
                "notanaddress",
                "tcp://h:0",
                "tcp://h:99999",
                "tcp://:80",
                "http://h:80",
                "tcp://h:80/x",
                "h:x",
            ],
        ),
        (log_level, {"info": "INFO", "DEBUG": "DEBUG"}, ["loud", ""]),
        (comma_choices(["a", "b"], "thing"), {"a": ["a"], "b,a,b": ["b", "a"]}, ["c", "a,c", ","]),
    ],
)
def test_one_rule_per_kind_of_value(rule, good, bad):
    for text, value in good.items():
        assert rule(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(repr(text)) + "|thing"):
            rule(text)


def test_paths(tmp_path):
    (tmp_path / "f").write_text("x")
    assert existing_file(str(tmp_path / "f")) == tmp_path / "f"
    assert existing_folder(str(tmp_path)) == tmp_path
    assert existing_path(str(tmp_path)) == tmp_path
    assert output_file(str(tmp_path / "new.png")) == tmp_path / "new.png"
    assert output_folder(str(tmp_path / "new")) == tmp_path / "new"
    assert output_folder(str(tmp_path)) == tmp_path
    refused = [
        (existing_file, tmp_path / "none"), (existing_file, tmp_path),
        (existing_folder, tmp_path / "f"), (existing_path, tmp_path / "none"),
        (output_file, tmp_path / "missing" / "x.png"), (output_file, tmp_path),
        (output_folder, tmp_path / "missing" / "ds"), (output_folder, tmp_path / "f"),
    ]  # fmt: skip
    for rule, path in refused:
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(repr(str(path)))):
            rule(str(path))
    with pytest.raises(argparse.ArgumentTypeError):
        output_file("")


@given(st.text(max_size=20))
def test_a_rule_returns_a_value_that_keeps_it_or_refuses_with_argparse_error(text):
    for rule in RULES:
        try:
            value = rule(text)
        except argparse.ArgumentTypeError as e:
            assert "\n" not in str(e)
            continue
        if rule in (positive_int, positive_number):
            assert value > 0
        elif rule in (non_negative_int, non_negative_number):
            assert value >= 0
        elif rule is port:
            assert 0 <= value <= 65535
        if isinstance(value, float):
            assert math.isfinite(value)
