"""``merge(left, right, on, how)``: a broadcast join when one side is small, else a hash join.

Policy: key dtypes must be of one kind on both sides (integers of any width, floats, strings
whether ``object`` or ``str``, datetimes, ...), else a TypeError names the key and both
dtypes; the hash of `engine.dataframe.shuffle` is equal for equal keys of one kind. Null keys
match null keys, as in pandas. ``broadcast=None`` broadcasts the right side when it has at
most `BROADCAST_PARTITIONS` partitions and no more than the left; for an inner join the left
side may be broadcast the same way. Otherwise both sides are shuffled on their keys into the
same number of partitions and merged partition by partition. Each output partition has its
own RangeIndex (pandas gives one RangeIndex over the whole result).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from taskbench.engine.dataframe.core import (
    DataFrame,
    _merge_graphs,
    as_column_list,
    check_npartitions,
    concat,
    new_collection,
    new_name,
)
from taskbench.engine.dataframe.optimize import Blockwise
from taskbench.engine.dataframe.shuffle import hash_targets, rearrange

BROADCAST_PARTITIONS = 4
HOWS = ("inner", "left")


@dataclass(frozen=True)
class BroadcastJoin:
    """How a broadcast join's partitions are made: each of ``left``'s, merged with the whole of
    ``right`` by ``kwargs``; kept on the result so that a groupby can aggregate below it."""

    left: DataFrame
    right: DataFrame
    kwargs: dict


def merge_partitions(left: pd.DataFrame, right: pd.DataFrame, kwargs: dict) -> pd.DataFrame:
    return pd.merge(left, right, **kwargs)


def key_kind(dtype: Any) -> str:
    """The family of a key dtype; keys of one family can be joined."""
    if isinstance(dtype, pd.CategoricalDtype):
        return key_kind(dtype.categories.dtype)
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "datetime (tz-aware)"
    if getattr(dtype, "kind", "") == "M":
        return "datetime"
    if getattr(dtype, "kind", "") == "m":
        return "timedelta"
    if pd.api.types.is_string_dtype(dtype) or dtype == np.dtype(object):
        return "string"
    return str(dtype)


def _check_side(frame: Any, keys: list, side: str) -> None:
    missing = [k for k in keys if k not in frame._meta.columns]
    if missing:
        raise KeyError(
            f"merge: key column(s) {', '.join(map(repr, missing))} not found in the {side} "
            f"frame; its columns are {list(frame._meta.columns)}"
        )


def merge(
    left: DataFrame,
    right: DataFrame | pd.DataFrame,
    on: Any = None,
    how: str = "inner",
    *,
    left_on: Any = None,
    right_on: Any = None,
    suffixes: tuple[str, str] = ("_x", "_y"),
    broadcast: bool | None = None,
    npartitions: int | None = None,
    shuffle_method: str | None = None,
) -> DataFrame:
    """Join ``left`` and ``right`` on key columns, ``how`` = ``"inner"`` or ``"left"``."""
    from taskbench.engine.dataframe.io import from_pandas

    if isinstance(right, pd.DataFrame):
        right = from_pandas(right, 1)
    if not isinstance(left, DataFrame) or not isinstance(right, DataFrame):
        raise TypeError("merge needs two DataFrames")
    if how not in HOWS:
        raise ValueError(f"merge: how={how!r} is not supported; use one of {HOWS}")
    if on is not None:
        if left_on is not None or right_on is not None:
            raise ValueError("merge: pass on= or left_on=/right_on=, not both")
        left_on = right_on = as_column_list(on)
    elif left_on is None or right_on is None:
        raise ValueError("merge needs on= or both left_on= and right_on=")
    left_on, right_on = as_column_list(left_on), as_column_list(right_on)
    if len(left_on) != len(right_on) or not left_on:
        raise ValueError(f"merge: left_on {left_on} and right_on {right_on} differ in length")
    _check_side(left, left_on, "left")
    _check_side(right, right_on, "right")
    for lk, rk in zip(left_on, right_on, strict=True):
        ldt, rdt = left._meta[lk].dtype, right._meta[rk].dtype
        if key_kind(ldt) != key_kind(rdt):
            key = repr(lk) if lk == rk else f"{lk!r} / {rk!r}"
            raise TypeError(
                f"merge: key {key} has dtype {ldt} on the left and {rdt} on the right; "
                "cast one side with astype so that the keys compare equal"
            )
    kwargs = {"how": how, "left_on": left_on, "right_on": right_on, "suffixes": suffixes}
    meta = pd.merge(left._meta, right._meta, **kwargs)

    side = None
    if broadcast is None:
        if right.npartitions <= BROADCAST_PARTITIONS and right.npartitions <= left.npartitions:
            side = "right"
        elif (
            how == "inner"
            and left.npartitions <= BROADCAST_PARTITIONS
            and left.npartitions < right.npartitions
        ):
            side = "left"
    elif broadcast:
        side = "right" if how == "left" or right.npartitions <= left.npartitions else "left"

    name = new_name("merge")
    layers, futures = _merge_graphs([left, right])
    if side is not None:
        small, big = (right, left) if side == "right" else (left, right)
        whole = new_name("merge-broadcast")
        layers[whole] = {(whole, 0): (concat, [(small._name, i) for i in range(small.npartitions)])}
        if side == "right":
            tasks = {
                (name, i): (merge_partitions, (big._name, i), (whole, 0), kwargs)
                for i in range(big.npartitions)
            }
        else:
            tasks = {
                (name, i): (merge_partitions, (whole, 0), (big._name, i), kwargs)
                for i in range(big.npartitions)
            }
        layers[name] = Blockwise(tasks)  # partition i of the big side, and the whole small one
        joined = new_collection(name, layers, big.npartitions, meta, futures=futures, align=name)
        if side == "right":
            joined._join = BroadcastJoin(left, right, kwargs)
        return joined

    n = (
        max(left.npartitions, right.npartitions)
        if npartitions is None
        else check_npartitions(npartitions)
    )
    lsh = rearrange(
        left, n, {"func": hash_targets, "kwargs": {"on": left_on}},
        method=shuffle_method, op="merge-shuffle",
    )  # fmt: skip
    rsh = rearrange(
        right, n, {"func": hash_targets, "kwargs": {"on": right_on}},
        method=shuffle_method, op="merge-shuffle",
    )  # fmt: skip
    layers, futures = _merge_graphs([lsh, rsh])
    layers[name] = {
        (name, i): (merge_partitions, (lsh._name, i), (rsh._name, i), kwargs) for i in range(n)
    }
    return new_collection(name, layers, n, meta, futures=futures, align=name)
