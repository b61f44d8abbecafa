"""Partition statistics and the predicates they decide.

Policy: ``read_parquet`` keeps each partition's row count and each column's min, max and null
count from the row-group metadata; row-preserving steps (column selection, ``assign`` of other
columns, ``persist``) keep them, anything else drops them. A comparison of a column that has
statistics with a literal (``>=``, ``>``, ``<=``, ``<``, ``==``, ``between``, and ``&`` of
those) carries a `Predicate`. A filter by such a predicate leaves out every partition whose
statistics say no row can pass; a missing statistic (no min/max, an unorderable value) keeps
the partition. Comparisons are false on nulls, so an all-null column passes no row. In a
partition it keeps, a term the statistics prove true of every row (no nulls, the whole range
past the value) is not evaluated (`Predicate.undecided`).
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

#: the comparisons a predicate records, by the name `operator` gives them
COMPARISONS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "eq": "=="}


class ColumnStats(NamedTuple):
    min: Any  #: None when the metadata has none
    max: Any
    nulls: int | None


@dataclass(frozen=True, slots=True)
class PartitionStats:
    rows: int | None  #: None once rows may have been dropped
    columns: Mapping[Any, ColumnStats]

    def select(self, columns: list) -> PartitionStats:
        return PartitionStats(self.rows, {c: self.columns[c] for c in columns if c in self.columns})


def row_group_stats(row_group: Any, columns: list) -> PartitionStats:
    """The statistics of one parquet row group (``pyarrow`` metadata) for ``columns``."""
    found: dict = {}
    for j in range(row_group.num_columns):
        chunk = row_group.column(j)
        name = chunk.path_in_schema
        if name not in columns:
            continue
        st = chunk.statistics
        if st is None:
            continue
        lo, hi = (st.min, st.max) if st.has_min_max else (None, None)
        found[name] = ColumnStats(lo, hi, st.null_count if st.has_null_count else None)
    return PartitionStats(row_group.num_rows, found)


def literal(value: Any) -> bool:
    """A value a predicate can hold: a plain number, string, date or timestamp."""
    kinds = int | float | str | np.number | dt.date | np.datetime64  # datetime is a date
    return isinstance(value, kinds) and not isinstance(value, bool | np.bool_)


@dataclass(frozen=True, slots=True)
class Predicate:
    """``col op value`` terms, all of which must hold, with the statistics of each column per
    partition (None: unknown) and the read they came from (for pushdown into the files)."""

    terms: tuple  #: ((column, op name, value), ...)
    stats: Mapping[Any, tuple]  #: column -> per-partition ColumnStats or None
    source: Any = None

    def __and__(self, other: Predicate) -> Predicate:
        source = self.source if self.source == other.source else None
        return Predicate(self.terms + other.terms, {**self.stats, **other.stats}, source)

    def may_match(self, partition: int) -> bool:
        """False only when the statistics prove that no row of ``partition`` passes."""
        return all(_term_may_match(op, value, self.stats.get(col), partition)
                   for col, op, value in self.terms)  # fmt: skip

    def filters(self) -> list:
        """The terms as pyarrow's DNF filters (one conjunction)."""
        return [(col, COMPARISONS[op], value) for col, op, value in self.terms]

    def undecided(self, partition: int) -> tuple:
        """The terms the statistics do not prove true of every row of ``partition``."""
        stats = self.stats
        return tuple(
            (col, op, value) for col, op, value in self.terms
            if not _term_always(op, value, stats.get(col), partition)
        )  # fmt: skip


#: op -> (some row may pass, every row passes), given a partition's min and max and the value
_DECIDE = {
    "ge": (lambda lo, hi, v: hi >= v, lambda lo, hi, v: lo >= v),
    "gt": (lambda lo, hi, v: hi > v, lambda lo, hi, v: lo > v),
    "le": (lambda lo, hi, v: lo <= v, lambda lo, hi, v: hi <= v),
    "lt": (lambda lo, hi, v: lo < v, lambda lo, hi, v: hi < v),
    "eq": (lambda lo, hi, v: lo <= v <= hi, lambda lo, hi, v: lo == v == hi),
}


def _decide(op: str, value: Any, st: ColumnStats, every_row: bool, unknown: bool) -> bool:
    """One of `_DECIDE`'s answers for ``st``; ``unknown`` where the values do not compare."""
    try:
        lo, hi = _comparable(st.min, value), _comparable(st.max, value)
        return bool(_DECIDE[op][every_row](lo, hi, _comparable(value, value)))
    except (TypeError, ValueError, OverflowError):
        return unknown


def _term_always(op: str, value: Any, per_partition: tuple | None, partition: int) -> bool:
    """True only when the statistics prove every row of ``partition`` passes: no nulls, and
    the whole [min, max] range on the right side of ``value``."""
    st = None if per_partition is None else per_partition[partition]
    if st is None or st.nulls != 0 or st.min is None or st.max is None:
        return False
    return _decide(op, value, st, every_row=True, unknown=False)


def _term_may_match(op: str, value: Any, per_partition: tuple | None, partition: int) -> bool:
    st = None if per_partition is None else per_partition[partition]
    if st is None:
        return True
    if st.min is None or st.max is None:
        return st.nulls is None or st.nulls == 0  # all null (or no rows): nothing passes
    return _decide(op, value, st, every_row=False, unknown=True)


def _comparable(stat: Any, value: Any) -> Any:
    """A statistic in the value's terms (parquet gives datetimes; queries use Timestamps)."""
    if isinstance(value, dt.date | np.datetime64):
        return pd.Timestamp(stat)
    return stat


def comparison(op: Any, column: Any, stats: tuple | None, source: Any, value: Any):
    """The predicate of ``column op value``, or None when ``op`` is not one it can record."""
    name = getattr(op, "__name__", "")
    if name not in COMPARISONS or not literal(value):
        return None
    return Predicate(((column, name, value),), {column: stats}, source)


def between(column: Any, stats: tuple | None, source: Any, left: Any, right: Any,
            inclusive: str) -> Predicate | None:  # fmt: skip
    """``left <= column <= right`` (``inclusive`` as pandas takes it) as a predicate."""
    sides = {
        "both": (operator.ge, operator.le),
        "left": (operator.ge, operator.lt),
        "right": (operator.gt, operator.le),
        "neither": (operator.gt, operator.lt),
    }
    if inclusive not in sides:
        return None
    low, high = (comparison(op, column, stats, source, v)
                 for op, v in zip(sides[inclusive], (left, right), strict=True))  # fmt: skip
    return low & high if low is not None and high is not None else None


@dataclass(frozen=True)
class ReadSource:
    """The parquet read a frame is, untouched: where a projection or a filter can be pushed."""

    files: tuple
    columns: tuple | None
    filters: Any
    read: Any = field(default=None, compare=False)  #: ``read_parquet``, to read it again

    def same_rows(self, other: Any) -> bool:
        """Same files and filters: the same partitions, row for row."""
        return isinstance(other, ReadSource) and (self.files, self.filters) == (
            other.files,
            other.filters,
        )

    def with_filters(self, terms: list) -> list:
        """This read's filters and ``terms``, all required (pyarrow's DNF)."""
        if not self.filters:
            return list(terms)
        if isinstance(self.filters[0], list):
            return [[*group, *terms] for group in self.filters]
        return [*self.filters, *terms]
