"""Hash partitioning and the shuffle, with implementations chosen by name.

Policy:

- A row's target partition is ``hash(on) % npartitions``. The hash is stable across processes
  and equal for values pandas treats as equal keys: integers and booleans of any width hash as
  int64, floats as float64 with ``-0.0`` as ``0.0``, datetimes as int64 nanoseconds, strings
  the same whether ``object`` or ``str``; every null (None, NaN, NaT, NA) hashes to one
  constant, so null keys meet in one partition. Columns combine with a multiply-xor.
- A partition is split once: a stable argsort of its targets, one ``take`` per column, then
  slices (not one boolean mask per target). Inside the graph a shard is ``(index, [column
  arrays])``, not a DataFrame, and the concat rebuilds pandas' blocks from them: per-frame
  pandas overhead would otherwise dominate small partitions. `split_by_targets` is the same
  split into DataFrames (the pandas baseline of the overhead ratio). Within an output
  partition rows keep the order of their source partitions, and sources keep their row
  order, so every row arrives exactly once and the result is deterministic.
- Implementations build the graph; they are registered by name in `SHUFFLE_METHODS` and share
  one signature, `ShuffleBuilder`, so another one (``p2p``) plugs in without touching callers.

  ``tasks``: split, one getitem task per (source, target) shard, and a concat per target,
  all inside the graph. With more than ``max_branch`` (default 32) partitions it is staged:
  ``s`` rounds over ``k = ceil(n ** (1/s))`` digits of the target, so tasks stay
  O(n · k · s) instead of O(n²), at the price of moving each row ``s`` times.

  ``p2p``: workers exchange shards directly, outside the graph, in batches, behind one
  barrier task; the graph stays O(n), and a lost worker restarts only what it held
  (`engine.p2p`).
"""

from __future__ import annotations

import math
import operator
import os
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
from pandas.api.internals import create_dataframe_from_blocks
from pandas.api.types import infer_dtype
from pandas.util import hash_array, hash_pandas_object
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

#: The column that carries a row's target through the rounds of a staged shuffle.
TARGET = "__shuffle_target__"
DEFAULT_MAX_BRANCH = 32

_NULL_HASH = np.uint64(0x9E3779B97F4A7C15)
_MIX = np.uint64(0x100000001B3)


# ---------------------------------------------------------------- hashing


def _column_hash(s: pd.Series) -> np.ndarray:
    dtype = s.dtype
    mask = None
    if isinstance(dtype, pd.CategoricalDtype):
        s = s.astype(dtype.categories.dtype if not s.hasnans else object)
        dtype = s.dtype
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_integer_dtype(dtype):
        if isinstance(dtype, np.dtype):
            values = s.to_numpy().astype(np.int64, copy=False)
        else:
            mask = s.isna().to_numpy()
            values = s.to_numpy(dtype=np.int64, na_value=0)
        h = hash_array(values)
    elif pd.api.types.is_float_dtype(dtype):
        values = s.to_numpy(dtype=np.float64, na_value=np.nan) + 0.0  # -0.0 -> 0.0
        mask = np.isnan(values)
        # a whole float hashes as its int64: a column read as int32 in one partition and as
        # float64 (because it has nulls) in another must still send 5 and 5.0 to one place
        whole = ~mask & (np.trunc(values) == values) & (np.abs(values) < 2.0**63)
        h = hash_array(values)
        if whole.any():
            h = np.where(whole, hash_array(np.where(whole, values, 0).astype(np.int64)), h)
    elif isinstance(dtype, pd.DatetimeTZDtype):
        return _column_hash(s.dt.tz_convert(None))
    elif dtype.kind in "mM":
        unit = "datetime64[ns]" if dtype.kind == "M" else "timedelta64[ns]"
        values = s.to_numpy().astype(unit, copy=False).view(np.int64)
        mask = np.isnat(s.to_numpy())
        h = hash_array(values)
    else:  # object, str, string, ...: pandas' stable SipHash of the values
        h = hash_pandas_object(s, index=False).to_numpy()
        mask = s.isna().to_numpy()
    if mask is not None and mask.any():
        h = h.copy() if not h.flags.writeable else h
        h[mask] = _NULL_HASH
    return h


def hash_columns(df: pd.DataFrame, on: list) -> np.ndarray:
    """A uint64 hash per row of the ``on`` columns, by the module's policy."""
    h = None
    for col in on:
        hc = _column_hash(df[col])
        h = hc if h is None else (h * _MIX) ^ hc
    if h is None:
        raise ValueError("hash_columns needs at least one column")
    return h


def hash_targets(df: pd.DataFrame, npartitions: int, extra: Any, on: list) -> np.ndarray:
    """Each row's target partition, ``hash(on) % npartitions``."""
    return (hash_columns(df, on) % np.uint64(npartitions)).astype(np.intp)


def split_by_targets(df: pd.DataFrame, targets: np.ndarray, n: int) -> list[pd.DataFrame]:
    """``n`` frames; frame j holds the rows whose target is j, in their original order."""
    if n == 1:
        return [df]
    small = targets.astype(np.int16 if n <= np.iinfo(np.int16).max else np.int32)
    order = np.argsort(small, kind="stable")  # radix sort on int16
    counts = np.bincount(targets, minlength=n)
    ends = np.cumsum(counts).tolist()
    taken = df.take(order)
    out = []
    start = 0
    for end in ends:
        out.append(taken.iloc[start:end])
        start = end
    return out


def partition_by_hash(df: pd.DataFrame, on: Any, npartitions: int) -> list[pd.DataFrame]:
    """Hash-partition one in-memory frame into ``npartitions`` frames: the pandas baseline."""
    on = as_column_list(on)
    return split_by_targets(df, hash_targets(df, npartitions, None, on), npartitions)


# ---------------------------------------------------------------- partition-level tasks


# A shard is ``(index, [column arrays])``: numpy arrays (numpy dtypes, object included) or
# ExtensionArrays, sliced out of one take per column. Splitting and concatenating column
# arrays instead of DataFrames skips pandas' per-frame overhead, which dominates when
# partitions are small and shards many; the concat rebuilds pandas' consolidated blocks.


def _column_arrays(df: pd.DataFrame) -> list:
    """Each column's values, read from pandas' blocks (per-column ``iloc`` costs ~20 µs)."""
    try:
        arrays: list = [None] * df.shape[1]
        for blk in df._mgr.blocks:
            values = blk.values
            locs = blk.mgr_locs.as_array
            if not isinstance(values, np.ndarray) and isinstance(values.dtype, np.dtype):
                values = values._ndarray  # naive datetime/timedelta: its datetime64 ndarray
            if isinstance(values, np.ndarray) or values.ndim == 2:
                for row, loc in enumerate(locs):
                    arrays[loc] = values[row]
            else:
                arrays[locs[0]] = values
        if any(a is None for a in arrays):
            raise AttributeError("blocks do not cover the columns")
        return arrays
    except AttributeError:  # pandas internals changed: the public, slower way
        return _column_arrays_public(df)


def _column_arrays_public(df: pd.DataFrame) -> list:
    arrays = []
    for i in range(df.shape[1]):
        col = df.iloc[:, i]
        arrays.append(col.to_numpy() if isinstance(col.dtype, np.dtype) else col.array)
    return arrays


def _check_columns(df: pd.DataFrame, columns: pd.Index) -> None:
    if not df.columns.equals(columns):
        raise ValueError(
            f"a partition has columns {list(df.columns)}, but the collection's meta has "
            f"{list(columns)}; pass the right meta= where the partitions were made"
        )


def _encode_strings(values: Any) -> Any:
    """An object array of str (and None) as an Arrow string array, else None.

    Pickling Python strings one by one costs ~0.3 s per million; Arrow converts both ways in
    ~0.1 s and travels as plain buffers. NaN, bytes and other objects are left as they are,
    so the round trip is exact.
    """
    if not (isinstance(values, np.ndarray) and values.dtype == object):
        return None
    if infer_dtype(values, skipna=True) != "string":
        return None
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowException, TypeError, ValueError):
        return None


def split_columns(
    df: pd.DataFrame, targets: np.ndarray, n: int, extra: list = (), encode_strings: bool = True
) -> list:
    """``n`` shards of ``df`` (plus ``extra`` arrays as trailing columns) by ``targets``.

    With ``encode_strings``, object columns of strings travel as Arrow arrays (see
    `_encode_strings`), converted in row order (the strings' memory order, several times
    faster than after the take); `concat_shards` turns them back into object columns.
    """
    arrays = _column_arrays(df) + list(extra)
    encoded = [_encode_strings(a) if encode_strings else None for a in arrays]
    if n == 1:
        return [(df.index, [a if e is None else e for a, e in zip(arrays, encoded, strict=True)])]
    small = targets.astype(np.int16 if n <= np.iinfo(np.int16).max else np.int32)
    order = np.argsort(small, kind="stable")
    ends = np.cumsum(np.bincount(targets, minlength=n)).tolist()
    index = df.index.take(order)
    taken = [a.take(order) if e is None else None for a, e in zip(arrays, encoded, strict=True)]
    shards = []
    start = 0
    for end in ends:
        rows = pa.array(order[start:end]) if any(e is not None for e in encoded) else None
        columns = [
            a[start:end] if e is None else e.take(rows) for a, e in zip(taken, encoded, strict=True)
        ]
        shards.append((index[start:end], columns))
        start = end
    return shards


def _decode_strings(parts: list) -> list:
    """The parts of one column, Arrow string arrays turned back into object arrays."""
    if not any(isinstance(p, pa.Array) for p in parts):
        return parts
    if all(isinstance(p, pa.Array) for p in parts):
        return [pa.concat_arrays(parts).to_numpy(zero_copy_only=False)]
    return [p.to_numpy(zero_copy_only=False) if isinstance(p, pa.Array) else p for p in parts]


def split_partition(
    df: pd.DataFrame,
    npartitions: int,
    extra: Any,
    partitioner: dict,
    columns: pd.Index,
    encode_strings: bool = True,
) -> list:
    _check_columns(df, columns)
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
        _check_columns(df, columns)
        targets = partitioner["func"](df, npartitions, extra, **partitioner["kwargs"])
        extra_columns = [targets.astype(np.int32)]
        return split_columns(df, targets % k, k, extra_columns, encode_strings)
    targets = df[TARGET].to_numpy()
    digits = (targets // k**stage) % k
    return split_columns(df, digits.astype(np.intp, copy=False), k, (), encode_strings)


def _shard_frame(index: Any, arrays: list, columns: pd.Index) -> pd.DataFrame:
    blocks = [
        (a.reshape(1, -1) if isinstance(a, np.ndarray) else a, np.array([j]))
        for j, a in enumerate(arrays)
    ]
    return create_dataframe_from_blocks(blocks, index, columns)


def concat_shards(shards: list, columns: pd.Index) -> pd.DataFrame:
    """One frame of ``shards``, its columns labelled ``columns``; arrays beyond (the staged
    shuffle's target column) are dropped."""
    ncols = len(columns)
    index = shards[0][0] if len(shards) == 1 else shards[0][0].append([s[0] for s in shards[1:]])
    parts_of = [_decode_strings([s[1][j] for s in shards]) for j in range(ncols)]
    blocks = []
    by_dtype: dict[np.dtype, list[int]] = {}
    for j, parts in enumerate(parts_of):
        first = parts[0]
        if any(type(p) is not type(first) or p.dtype != first.dtype for p in parts[1:]):
            # partitions disagree on a dtype: let pandas find the common one
            frames = []
            for shard_index, arrays in shards:
                decoded = [
                    a.to_numpy(zero_copy_only=False) if isinstance(a, pa.Array) else a
                    for a in arrays[:ncols]
                ]
                frames.append(_shard_frame(shard_index, decoded, columns))
            return pd.concat(frames)
        if isinstance(first, np.ndarray):
            by_dtype.setdefault(first.dtype, []).append(j)
        else:
            blocks.append((type(first)._concat_same_type(parts), np.array([j])))
    n = len(index)
    for dtype, positions in by_dtype.items():
        block = np.empty((len(positions), n), dtype=dtype)
        for row, j in enumerate(positions):
            parts = parts_of[j]
            if len(parts) == 1:
                block[row] = parts[0]
            else:
                np.concatenate(parts, out=block[row])
        blocks.append((block, np.array(positions)))
    return create_dataframe_from_blocks(blocks, index, columns)


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


def p2p_layers(
    frame: _Frame,
    npartitions: int,
    name: str,
    partitioner: dict,
    extra_key: Any,
    options: dict,
) -> dict[str, dict]:
    """The ``p2p`` shuffle, built by `engine.p2p` (imported here: it needs this module)."""
    from taskbench.engine.p2p import p2p_layers as build

    return build(frame, npartitions, name, partitioner, extra_key, options)


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
