"""``sort_values`` and ``set_index`` by sampled quantile boundaries, inside the graph.

Policy: each partition samples up to ``samples`` non-null values of the first sort column
(seeded by its index) and weighs them by its non-null count; one task turns the weighted
sample into ``npartitions - 1`` boundaries; every row goes to the partition
``searchsorted(boundaries, value, side="right")`` (reversed when descending), nulls to the
last partition (the first with ``na_position="first"``), through the shuffle; each partition
is then sorted with a stable sort. Equal first-column values share a partition, so the
result is exactly pandas' stable sort (``kind="stable"``), index included. A key that holds
most rows makes one large partition: correct, not balanced. Boundaries are computed lazily,
so ``divisions`` stay unknown (None).

A partition is sorted by ``np.lexsort`` over its key columns when they are all numpy numbers,
booleans or times (pandas factorizes each key first, which costs more than the sort); other
keys go through pandas. ``sort_within_partitions`` (Spark's ``sortWithinPartitions``) sorts
each partition alone, after a shuffle has put what belongs together in one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from taskbench.engine.dataframe.core import (
    DataFrame,
    Scalar,
    _merge_graphs,
    as_column_list,
    check_columns,
    check_npartitions,
    new_name,
    partitionwise,
)
from taskbench.engine.dataframe.shuffle import rearrange

SAMPLES = 1000


def sample_partition(df: pd.DataFrame, column: Any, samples: int, seed: int) -> tuple:
    """(up to ``samples`` non-null values of ``column``, the weight of each)."""
    values = df[column].dropna()
    n = len(values)
    if n > samples:
        positions = np.sort(np.random.default_rng(seed).choice(n, samples, replace=False))
        values = values.iloc[positions]
    if not n:
        return values.to_numpy(), 0.0
    return values.to_numpy(), n / len(values)


def quantile_boundaries(samples: list, npartitions: int) -> np.ndarray:
    """``npartitions - 1`` weighted quantiles of the pooled samples (fewer if it is empty)."""
    pairs = [(v, w) for v, w in samples if len(v)]
    if not pairs or npartitions == 1:
        return np.array([], dtype=object)
    values = np.concatenate([v for v, _ in pairs])
    weights = np.concatenate([np.full(len(v), w) for v, w in pairs])
    order = np.argsort(values, kind="stable")
    values, cumulative = values[order], np.cumsum(weights[order])
    quantiles = cumulative[-1] * np.arange(1, npartitions) / npartitions
    idx = np.minimum(np.searchsorted(cumulative, quantiles, side="left"), len(values) - 1)
    return values[idx]


def range_targets(
    df: pd.DataFrame,
    npartitions: int,
    boundaries: np.ndarray,
    by: Any,
    ascending: bool,
    na_position: str,
) -> np.ndarray:
    """Each row's partition by ``boundaries`` on column ``by``; nulls first or last."""
    col = df[by]
    mask = col.isna().to_numpy()
    has_nulls = bool(mask.any())
    values = col.dropna().to_numpy() if has_nulls else col.to_numpy()
    if len(boundaries):
        pos = np.searchsorted(boundaries, values, side="right").astype(np.intp)
    else:
        pos = np.zeros(len(values), dtype=np.intp)
    if not ascending:
        pos = npartitions - 1 - pos
    if not has_nulls:
        return pos
    targets = np.empty(len(col), dtype=np.intp)
    targets[~mask] = pos
    targets[mask] = npartitions - 1 if na_position == "last" else 0
    return targets


def _lexsort_keys(df: pd.DataFrame, by: list, ascending: list, na_position: str) -> list | None:
    """``np.lexsort`` keys (the most significant last) that order the rows as pandas' stable
    sort does: per column its values (order-reversed when descending, nulls set to 0) under
    its null flags; None when a key is not a numpy number, boolean or time."""
    keys = []
    for column, up in zip(reversed(by), reversed(ascending), strict=True):
        values = df[column]  # a frame when the label is not unique
        dtype = values.dtype if isinstance(values, pd.Series) else None
        if not isinstance(dtype, np.dtype) or dtype.kind not in "biufmM":
            return None
        raw = values.to_numpy()
        null = None
        if dtype.kind in "mM":
            null, raw = np.isnat(raw), raw.view(np.int64)
        elif dtype.kind == "f":
            null = np.isnan(raw)
        if null is not None and null.any():
            raw = np.where(null, 0, raw)
        else:
            null = None
        if not up:
            raw = -raw if dtype.kind == "f" else ~raw  # ~ reverses integers and booleans exactly
        keys.append(raw)
        if null is not None:
            keys.append(null if na_position == "last" else ~null)
    return keys


def sort_partition(df: pd.DataFrame, by: list, ascending: Any, na_position: str) -> pd.DataFrame:
    """``df.sort_values(by, ascending=..., na_position=..., kind="stable")``."""
    flags = list(ascending) if isinstance(ascending, list) else [ascending] * len(by)
    keys = _lexsort_keys(df, by, flags, na_position)
    if keys is None:
        return df.sort_values(by, ascending=ascending, na_position=na_position, kind="stable")
    return df.take(np.lexsort(keys))


def _sort_arguments(frame: DataFrame, by: Any, ascending: Any, na_position: str, op: str) -> tuple:
    """(columns, ascending as one flag or one per column), checked against ``frame``."""
    by = as_column_list(by)
    if not by:
        raise ValueError(f"{op} needs at least one column in by=")
    check_columns(frame._meta, by, op)
    if isinstance(ascending, list | tuple):
        if len(ascending) != len(by):
            raise ValueError(f"{op}: {len(ascending)} ascending flags for {len(by)} columns")
        ascending = [bool(a) for a in ascending]
    else:
        ascending = bool(ascending)
    if na_position not in ("last", "first"):
        raise ValueError(f"na_position must be 'last' or 'first', got {na_position!r}")
    return by, ascending


def sort_within_partitions(
    frame: DataFrame, by: Any, ascending: bool | list[bool] = True, *, na_position: str = "last"
) -> DataFrame:
    """Each partition sorted alone by columns ``by`` (pandas' stable sort); rows stay in their
    partitions."""
    by, ascending = _sort_arguments(frame, by, ascending, na_position, "sort_within_partitions")
    meta = sort_partition(frame._meta, by, ascending, na_position)
    return partitionwise(sort_partition, frame, by, ascending, na_position, meta=meta, op="sort")


def sort_values(
    frame: DataFrame,
    by: Any,
    ascending: bool | list[bool] = True,
    *,
    na_position: str = "last",
    npartitions: int | None = None,
    shuffle_method: str | None = None,
    samples: int = SAMPLES,
) -> DataFrame:
    """Sort rows by columns ``by`` across partitions (pandas' stable sort)."""
    by, ascending = _sort_arguments(frame, by, ascending, na_position, "sort_values")
    first_ascending = ascending[0] if isinstance(ascending, list) else ascending
    n = frame.npartitions if npartitions is None else check_npartitions(npartitions)
    meta = sort_partition(frame._meta, by, ascending, na_position)

    sample_name, bounds_name = new_name("sort-sample"), new_name("sort-boundaries")
    layers, futures = _merge_graphs([frame])
    layers[sample_name] = {
        (sample_name, i): (sample_partition, (frame._name, i), by[0], samples, i)
        for i in range(frame.npartitions)
    }
    layers[bounds_name] = {
        (bounds_name, 0): (
            quantile_boundaries, [(sample_name, i) for i in range(frame.npartitions)], n,
        )
    }  # fmt: skip
    boundaries = Scalar(bounds_name, layers, None, futures=futures)
    partitioner = {
        "func": range_targets,
        "kwargs": {"by": by[0], "ascending": first_ascending, "na_position": na_position},
    }
    shuffled = rearrange(
        frame, n, partitioner, extra=boundaries, method=shuffle_method, op="sort-shuffle"
    )
    return partitionwise(sort_partition, shuffled, by, ascending, na_position, meta=meta, op="sort")


def set_index_partition(df: pd.DataFrame, column: Any, drop: bool) -> pd.DataFrame:
    return df.set_index(column, drop=drop)


def set_index(
    frame: DataFrame,
    column: Any,
    drop: bool = True,
    *,
    npartitions: int | None = None,
    shuffle_method: str | None = None,
) -> DataFrame:
    """Sort by ``column`` and make it the index (nulls last); divisions stay unknown."""
    check_columns(frame._meta, [column], "set_index")
    ordered = sort_values(frame, column, npartitions=npartitions, shuffle_method=shuffle_method)
    meta = set_index_partition(frame._meta, column, drop)
    return partitionwise(set_index_partition, ordered, column, drop, meta=meta, op="set-index")
