"""Answers made comparable: fixed column names, dtypes and row order, then a cell-by-cell check.

:func:`normalize` takes whatever frame a solution returns (group keys in the index, engine-made
column names, Arrow or nullable or float-coded integer dtypes) and gives the registry's
columns with one dtype per kind:

- ``int``: ``int64``, or nullable ``Int64`` where the registry allows null; a float-coded
  integer must be whole;
- ``float``: ``float64``, null as NaN;
- ``str``: ``object``, null as ``None``;
- ``timestamp``: naive ``datetime64[us]`` (a zoned value is converted to UTC).

Rows are sorted by the query's ``order`` with nulls last, and the index is reset.
:func:`compare` then checks a normalised answer against the reference: keys, counts and
integers exactly; floats to a relative tolerance of ``RTOL`` (NaN equals NaN), with an
absolute floor of ``ATOL`` so that money sums which cancel to zero are not flagged for noise.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from taskbench.comparisons.queries import Column, Query

RTOL = 1e-6
ATOL = 1e-9


class AnswerError(ValueError):
    """An answer that cannot be normalised: it is wrong in shape or type."""


@dataclass(frozen=True)
class Mismatch:
    """Where an answer first differs from the reference."""

    message: str
    row: int | None = None
    column: str | None = None
    expected: Any = None
    got: Any = None

    def __str__(self) -> str:
        return self.message


def normalize(answer: Any, query: Query) -> pd.DataFrame:
    """The answer with the registry's column names, one dtype per kind, and a fixed row order."""
    if isinstance(answer, pd.Series):
        answer = answer.to_frame()
    if not isinstance(answer, pd.DataFrame):
        raise AnswerError(f"expected a pandas DataFrame, got {type(answer).__name__}")
    frame = _names(answer, query)
    columns = {c.name: _convert(frame[c.name], c) for c in query.columns}
    result = pd.DataFrame(columns, index=pd.RangeIndex(len(frame)))
    return sort_answer(result, query)


def sort_answer(frame: pd.DataFrame, query: Query) -> pd.DataFrame:
    """``frame`` in the query's total order, nulls last, with a fresh index."""
    if not query.order or len(frame) < 2:
        return frame.reset_index(drop=True)
    by = [name.lstrip("-") for name in query.order]
    ascending = [not name.startswith("-") for name in query.order]
    ordered = frame.sort_values(by, ascending=ascending, na_position="last", kind="stable")
    return ordered.reset_index(drop=True)


def _names(frame: pd.DataFrame, query: Query) -> pd.DataFrame:
    wanted = list(query.names)
    if not set(wanted) <= set(map(str, frame.columns)) and _has_named_index(frame):
        frame = frame.reset_index()
    frame = frame.rename(columns=str)
    if set(wanted) <= set(frame.columns):
        return frame[wanted]
    if len(frame.columns) == len(wanted):  # engine-made names (count(1), …): go by position
        return frame.set_axis(wanted, axis=1)
    raise AnswerError(f"columns: expected {wanted}, got {list(frame.columns)}")


def _has_named_index(frame: pd.DataFrame) -> bool:
    return any(name is not None for name in frame.index.names)


def _convert(values: pd.Series, column: Column) -> pd.Series:
    where = f"column {column.name}"
    nulls = values.isna().to_numpy(dtype=bool, na_value=True)
    if nulls.any() and not column.nullable:
        raise AnswerError(f"{where}: {int(nulls.sum())} null value(s) where none may be")
    if column.kind == "int":
        return _to_int(values, nulls, column, where)
    if column.kind == "float":
        try:
            return pd.Series(values.to_numpy(dtype="float64", na_value=np.nan))
        except (TypeError, ValueError) as exc:
            raise AnswerError(f"{where}: not numbers ({values.dtype}): {exc}") from None
    if column.kind == "str":
        data = np.empty(len(values), dtype=object)
        data[:] = [None if null else str(v) for v, null in zip(values, nulls, strict=True)]
        return pd.Series(data, dtype=object)
    return _to_timestamp(values, where)


def _to_int(values: pd.Series, nulls: np.ndarray, column: Column, where: str) -> pd.Series:
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        raise AnswerError(f"{where}: expected integers, got {values.dtype}")
    try:
        numbers = values.to_numpy(dtype="float64", na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise AnswerError(f"{where}: expected integers, got {values.dtype}: {exc}") from None
    present = numbers[~nulls]
    if present.size and not (np.isfinite(present).all() and (present == np.trunc(present)).all()):
        bad = present[~(np.isfinite(present) & (present == np.trunc(present)))][0]
        raise AnswerError(f"{where}: expected integers, got {float(bad)!r}")
    if pd.api.types.is_integer_dtype(values.dtype) and not nulls.any():
        exact = values.to_numpy(dtype="int64")  # exact beyond 2**53, unlike the float view
    else:
        exact = np.where(nulls, 0, numbers).astype("int64")
    if column.nullable:
        return pd.Series(pd.arrays.IntegerArray(exact, nulls.copy()))
    return pd.Series(exact)


def _to_timestamp(values: pd.Series, where: str) -> pd.Series:
    try:
        stamps = pd.to_datetime(values)
    except (TypeError, ValueError) as exc:
        raise AnswerError(f"{where}: expected timestamps, got {values.dtype}: {exc}") from None
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return stamps.astype("datetime64[us]").reset_index(drop=True)


def compare(expected: pd.DataFrame, got: pd.DataFrame, query: Query) -> Mismatch | None:
    """The first difference between two normalised answers, or None if they agree."""
    if list(expected.columns) != list(got.columns):
        return Mismatch(f"columns: expected {list(expected.columns)}, got {list(got.columns)}")
    rows = min(len(expected), len(got))
    first: tuple[int, str] | None = None
    for c in query.columns:
        differs = ~_equal(expected[c.name].iloc[:rows], got[c.name].iloc[:rows], c)
        if differs.any():
            row = int(np.flatnonzero(differs)[0])
            if first is None or row < first[0]:
                first = (row, c.name)
    if len(expected) != len(got):
        where = ""
        if first is not None:
            row, name = first
            where = f"; first difference at {_cell(expected, got, row, name)}"
        elif len(expected) > len(got):
            where = f"; first missing row: {_row(expected, rows, query)}"
        else:
            where = f"; first extra row: {_row(got, rows, query)}"
        return Mismatch(f"expected {len(expected)} rows, got {len(got)}{where}", *(first or ()))
    if first is None:
        return None
    row, name = first
    x, y = _plain(expected[name].iloc[row]), _plain(got[name].iloc[row])
    return Mismatch(_cell(expected, got, row, name), row, name, x, y)


def _equal(a: pd.Series, b: pd.Series, column: Column) -> np.ndarray:
    a_null = a.isna().to_numpy(dtype=bool, na_value=True)
    b_null = b.isna().to_numpy(dtype=bool, na_value=True)
    both = a_null & b_null
    either = a_null | b_null
    if column.kind == "float":
        x = a.to_numpy(dtype="float64", na_value=np.nan)
        y = b.to_numpy(dtype="float64", na_value=np.nan)
        with np.errstate(invalid="ignore", over="ignore"):
            close = (x == y) | (np.abs(x - y) <= RTOL * np.maximum(np.abs(x), np.abs(y)) + ATOL)
        return both | (~either & close)
    pairs = zip(a.to_numpy(dtype=object), b.to_numpy(dtype=object), either, strict=True)
    same = np.array([not null and bool(x == y) for x, y, null in pairs], dtype=bool)
    return both | same


def _cell(expected: pd.DataFrame, got: pd.DataFrame, row: int, name: str) -> str:
    x, y = _plain(expected[name].iloc[row]), _plain(got[name].iloc[row])
    return f"row {row}, column {name}: expected {x!r}, got {y!r}"


def _row(frame: pd.DataFrame, row: int, query: Query) -> str:
    names = query.keys or query.names
    return ", ".join(f"{n}={_plain(frame[n].iloc[row])!r}" for n in names)


def _plain(value: Any) -> Any:
    """A cell as a plain Python value for messages and JSON: None for every kind of null."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float | np.floating) and math.isnan(value):
        return None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def checksum(answer: pd.DataFrame, query: Query) -> str:
    """A cheap fingerprint of a normalised answer (like db-benchmark's ``chk``).

    Integers, strings and timestamps are hashed exactly; floats are rounded to 6 significant
    digits first, so two valid answers usually, but not always, share a checksum. It
    identifies an answer in a results record; validity comes from :func:`compare`.
    """
    digest = hashlib.sha256(f"{query.id}:{len(answer)}".encode())
    for c in query.columns:
        values = answer[c.name]
        if c.kind == "float":
            cells = ["null" if _plain(v) is None else f"{float(v):.6g}" for v in values.to_numpy()]
        else:
            cells = [repr(_plain(v)) for v in values.to_numpy(dtype=object)]
        digest.update(f"{c.name}=".encode() + "\x1f".join(cells).encode())
    return "sha256:" + digest.hexdigest()[:16]
