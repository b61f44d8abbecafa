"""The shuffle: implementations chosen by name, which build the graph.

Where a row goes (the hash) and how a partition is split and concatenated are the policy of
`engine.dataframe.partitioning`, shared by every implementation.

Implementations are registered by name in `SHUFFLE_METHODS` and share one signature,
`ShuffleBuilder`, so another one plugs in without touching callers.

- ``tasks``: split, one getitem task per (source, target) shard, and a concat per target,
  all inside the graph. With more than ``max_branch`` (default 32) partitions it is staged:
  ``s`` rounds over ``k = ceil(n ** (1/s))`` digits of the target, so tasks stay
  O(n · k · s) instead of O(n²), at the price of moving each row ``s`` times.
- ``p2p``: workers exchange shards directly, outside the graph, in batches, behind one
  barrier task; the graph stays O(n), and a lost worker restarts only what it held
  (`engine.dataframe.p2p`).
"""

from __future__ import annotations

import math
import operator
import os
from typing import Any, Protocol

import numpy as np
import pandas as pd
from taskbench.engine.dataframe.core import (
    DataFrame,
    _Frame,
    _merge_graphs,
    as_column_list,
    check_columns,
    check_npartitions,
    new_collection,
    new_name,
)
from taskbench.engine.dataframe.p2p import p2p_layers
from taskbench.engine.dataframe.partitioning import (
    check_partition_columns,
    concat_shards,
    hash_columns,
    hash_targets,
    partition_by_hash,
    split_by_targets,
    split_columns,
)

#: The column that carries a row's target through the rounds of a staged shuffle.
TARGET = "__shuffle_target__"
DEFAULT_MAX_BRANCH = 32


# ---------------------------------------------------------------- the tasks shuffle's tasks


def split_partition(
    df: pd.DataFrame,
    npartitions: int,
    extra: Any,
    partitioner: dict,
    columns: pd.Index,
    encode_strings: bool = True,
) -> list:
    check_partition_columns(df, columns)
    targets = partitioner["func"](df, npartitions, extra, **partitioner["kwargs"])
    return split_columns(df, targets, npartitions, encode_strings=encode_strings)


def split_stage(
    df: pd.DataFrame,
    npartitions: int,
    extra: Any,
    partitioner: dict,
    k: int,
    stage: int,
    columns: pd.Index,
    encode_strings: bool = True,
) -> list:
    """One round of a staged shuffle: split by digit ``stage`` (base ``k``) of the target.

    The first round computes each row's target and carries it on as a last column.
    """
    if stage == 0:
        check_partition_columns(df, columns)
        targets = partitioner["func"](df, npartitions, extra, **partitioner["kwargs"])
        extra_columns = [targets.astype(np.int32)]
        return split_columns(df, targets % k, k, extra_columns, encode_strings)
    targets = df[TARGET].to_numpy()
    digits = (targets // k**stage) % k
    return split_columns(df, digits.astype(np.intp, copy=False), k, (), encode_strings)


def empty_copy(meta: pd.DataFrame) -> pd.DataFrame:
    return meta.copy()


# ---------------------------------------------------------------- implementations


class ShuffleBuilder(Protocol):
    """Builds the layers of a shuffle of ``frame`` into ``npartitions`` partitions.

    The output partitions must be the keys ``(name, j)``; intermediate layers get their own
    names. ``partitioner`` is ``{"func": f, "kwargs": {...}}`` where
    ``f(partition, npartitions, extra, **kwargs)`` returns each row's target (an intp array);
    ``extra_key``, when not None, is a key whose value is passed as ``extra`` (e.g. sort
    boundaries). ``options`` are the caller's implementation-specific keywords.
    """

    def __call__(
        self,
        frame: _Frame,
        npartitions: int,
        name: str,
        partitioner: dict,
        extra_key: Any,
        options: dict,
    ) -> dict[str, dict]: ...


def _stages(size: int, max_branch: int) -> tuple[int, int]:
    """(rounds, digits per round) with digits ** rounds >= size and digits <= max_branch."""
    if size <= max_branch:
        return 1, size
    stages = math.ceil(math.log(size) / math.log(max_branch))
    k = max(2, math.ceil(size ** (1 / stages)))
    while k**stages < size:
        k += 1
    while k > 2 and (k - 1) ** stages >= size:
        k -= 1
    return stages, k


def tasks_layers(
    frame: _Frame,
    npartitions: int,
    name: str,
    partitioner: dict,
    extra_key: Any,
    options: dict,
) -> dict[str, dict]:
    """The ``tasks`` shuffle: split, getitem per shard, concat; staged above ``max_branch``.

    Options: ``max_branch``; ``encode_strings`` (default True): object columns of strings
    travel as Arrow arrays; False pickles them string by string, as 2016's dask did.
    """
    max_branch = options.get("max_branch") or DEFAULT_MAX_BRANCH
    encode = bool(options.get("encode_strings", True))
    if max_branch < 2:
        raise ValueError(f"max_branch must be >= 2, got {max_branch}")
    n_in, n = frame.npartitions, npartitions
    columns = frame._meta.columns
    stages, k = _stages(max(n_in, n), max_branch)
    if stages == 1:
        split, shard = new_name("shuffle-split"), new_name("shuffle-shard")
        args = (n, extra_key, partitioner, columns, encode)
        return {
            split: {(split, i): (split_partition, (frame._name, i), *args) for i in range(n_in)},
            shard: {
                (shard, i, j): (operator.getitem, (split, i), j)
                for i in range(n_in)
                for j in range(n)
            },
            name: {
                (name, j): (concat_shards, [(shard, i, j) for i in range(n_in)], columns)
                for j in range(n)
            },
        }

    if TARGET in frame._meta.columns:
        raise ValueError(f"a staged shuffle needs the column name {TARGET!r}, which is taken")
    size = k**stages
    empty = frame._meta.assign(**{TARGET: np.array([], dtype=np.int32)})
    staged_columns = empty.columns
    layers: dict[str, dict] = {}
    inputs = {label: (frame._name, label) for label in range(n_in)}
    for stage in range(stages):
        last = stage == stages - 1
        place = k**stage
        split, shard = new_name("shuffle-split"), new_name("shuffle-shard")
        out = name if last else new_name("shuffle-stage")
        splits, shards, concats = {}, {}, {}
        for label, key in inputs.items():
            splits[(split, label)] = (
                split_stage, key, n, extra_key if stage == 0 else None, partitioner, k, stage,
                columns if stage == 0 else staged_columns, encode,
            )  # fmt: skip
            digit = (label // place) % k
            for d in range(k):
                dest = label + (d - digit) * place
                if last and dest >= n:
                    continue
                shards[(shard, label, d)] = (operator.getitem, (split, label), d)
        targets = range(n) if last else range(size)
        for dest in targets:
            d = (dest // place) % k
            sources = [dest + (c - d) * place for c in range(k)]
            keys = [(shard, src, d) for src in sources if src in inputs]
            if keys:
                concats[(out, dest)] = (
                    concat_shards, keys, columns if last else staged_columns,
                )  # fmt: skip
            else:
                concats[(out, dest)] = (empty_copy, frame._meta if last else empty)
        layers[split], layers[shard], layers[out] = splits, shards, concats
        inputs = {label: (out, label) for label in targets}
    return layers


SHUFFLE_METHODS: dict[str, ShuffleBuilder] = {"tasks": tasks_layers, "p2p": p2p_layers}


def register_shuffle_method(name: str, builder: ShuffleBuilder) -> None:
    """Make ``builder`` available as ``shuffle(..., method=name)`` (replacing any other)."""
    SHUFFLE_METHODS[name] = builder


def default_method() -> str:
    """``TASKBENCH_SHUFFLE`` if set, else ``tasks``."""
    return os.environ.get("TASKBENCH_SHUFFLE", "").strip() or "tasks"


def get_builder(method: str | None) -> ShuffleBuilder:
    method = method or default_method()
    try:
        return SHUFFLE_METHODS[method]
    except KeyError:
        raise ValueError(
            f"unknown shuffle method {method!r}; known: {sorted(SHUFFLE_METHODS)}"
        ) from None


def rearrange(
    frame: _Frame,
    npartitions: int,
    partitioner: dict,
    *,
    extra: Any = None,
    method: str | None = None,
    op: str = "shuffle",
    **options: Any,
) -> Any:
    """Move every row of ``frame`` to the partition ``partitioner`` gives it."""
    builder = get_builder(method)
    name = new_name(op)
    deps = [frame] if extra is None else [frame, extra]
    layers, futures = _merge_graphs(deps)
    extra_key = None if extra is None else extra.key
    layers.update(builder(frame, npartitions, name, partitioner, extra_key, options))
    return new_collection(name, layers, npartitions, frame._meta, futures=futures, align=name)


def shuffle(
    frame: DataFrame,
    on: Any,
    npartitions: int | None = None,
    *,
    method: str | None = None,
    max_branch: int | None = None,
    **options: Any,
) -> DataFrame:
    """Hash-partition ``frame`` on columns ``on`` into ``npartitions`` (default: unchanged).

    ``method`` is ``"tasks"`` (default; ``TASKBENCH_SHUFFLE`` overrides) or ``"p2p"``.
    """
    if not isinstance(frame, DataFrame):
        raise TypeError(f"shuffle needs a DataFrame, got {type(frame).__name__}")
    on = as_column_list(on)
    if not on:
        raise ValueError("shuffle needs at least one column in on=")
    check_columns(frame._meta, on, "shuffle")
    n = frame.npartitions if npartitions is None else check_npartitions(npartitions)
    try:
        hash_targets(frame._meta, n, None, on)
    except Exception as e:
        dtypes = {c: str(frame._meta[c].dtype) for c in on}
        raise TypeError(f"shuffle: cannot hash columns {dtypes}: {e}") from e
    partitioner = {"func": hash_targets, "kwargs": {"on": on}}
    return rearrange(frame, n, partitioner, method=method, max_branch=max_branch, **options)


__all__ = [
    "SHUFFLE_METHODS",
    "ShuffleBuilder",
    "hash_columns",
    "partition_by_hash",
    "register_shuffle_method",
    "shuffle",
    "split_by_targets",
]
