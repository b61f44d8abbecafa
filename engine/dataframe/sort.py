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


def sort_partition(df: pd.DataFrame, by: list, ascending: Any, na_position: str) -> pd.DataFrame:
    return df.sort_values(by, ascending=ascending, na_position=na_position, kind="stable")


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
    by = as_column_list(by)
    if not by:
        raise ValueError("sort_values needs at least one column in by=")
    check_columns(frame._meta, by, "sort_values")
    if isinstance(ascending, list | tuple):
        if len(ascending) != len(by):
            raise ValueError(f"sort_values: {len(ascending)} ascending flags for {len(by)} columns")
        first_ascending = bool(ascending[0])
        ascending = list(ascending)
    else:
        first_ascending = ascending = bool(ascending)
    if na_position not in ("last", "first"):
        raise ValueError(f"na_position must be 'last' or 'first', got {na_position!r}")
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
