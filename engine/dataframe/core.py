"""Lazy partitioned collections: pandas partitions behind task keys.

Policy, stated once for the whole package:

- A collection is a name, a graph held as *layers* (``{layer name: {key: task}}``), a partition
  count and ``meta``, an empty pandas object with the result's dtypes. Partition ``i`` is the key
  ``(name, i)``; a `Scalar` is ``(name, 0)``. Every operation adds layers under fresh
  ``f"{op}-{uuid}"`` names and never changes its parents.
- ``meta`` comes from running the operation on the parents' metas, so a missing column or a
  bad dtype raises when the graph is built, naming the column and the dtypes, never deep in a
  worker.
- Row-wise operations leave every row in its partition, so their results stay aligned with
  their inputs; an *alignment* token records this. A binary operation between collections
  needs the same token (and so the same partition count): rows are never silently paired
  across different partitionings. Shuffles, sorts, merges and reductions start a new token.
- Reductions are trees: ``chunk`` per partition, ``combine`` ``split_every`` results at a
  time, ``aggregate`` once; O(partitions) tasks. The default, 16, reads a dozen partitions'
  partials in the final step: a level of the tree is a round of transfers and a hop through
  the scheduler, which costs more than re-grouping a few more partials in one task.
- ``compute(client)`` runs on ``client.get`` if given, else on
  `engine.client.default_client`, else on `engine.local.get_sync`. ``persist()`` keeps the
  partitions on the workers behind futures that the new collection (and everything built
  from it) holds; such a collection computes on that client only.
"""

from __future__ import annotations

import datetime as dt
import operator
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from taskbench.engine.dataframe import kernels
from taskbench.engine.dataframe import stats as st
from taskbench.engine.dataframe.optimize import (
    ALL,
    COLUMN_RULES,
    NARROWERS,
    Blockwise,
    fuse,
    unwrap_call,
)

DEFAULT_SPLIT_EVERY = 16

# ---------------------------------------------------------------- names and checks


def new_name(op: str) -> str:
    """A fresh collection name whose task prefix (`engine.graph.key_prefix`) is ``op``."""
    return f"{op}-{uuid.uuid4().hex}"


def check_npartitions(npartitions: Any, what: str = "npartitions") -> int:
    """``npartitions`` as a positive int, or a ValueError that names it."""
    if isinstance(npartitions, bool) or not isinstance(npartitions, int | np.integer):
        raise TypeError(f"{what} must be a positive integer, got {npartitions!r}")
    if npartitions < 1:
        raise ValueError(f"{what} must be a positive integer, got {npartitions}")
    return int(npartitions)


def check_split_every(split_every: int | None) -> int:
    if split_every is None:
        return DEFAULT_SPLIT_EVERY
    if isinstance(split_every, bool) or not isinstance(split_every, int) or split_every < 2:
        raise ValueError(f"split_every must be an integer >= 2, got {split_every!r}")
    return split_every


def as_column_list(columns: Any) -> list:
    """A column label or a list of them, as a list."""
    if isinstance(columns, list | tuple | pd.Index):
        return list(columns)
    return [columns]


def check_columns(meta: pd.DataFrame, columns: Iterable, what: str) -> None:
    """Raise KeyError naming the columns of ``columns`` that ``meta`` lacks."""
    missing = [c for c in columns if c not in meta.columns]
    if missing:
        names = ", ".join(map(repr, missing))
        plural = "s" if len(missing) > 1 else ""
        raise KeyError(
            f"{what}: column{plural} {names} not found; columns are {list(meta.columns)}"
        )


# ---------------------------------------------------------------- partition-level functions
# Module-level, so tasks pickle them by reference.


def apply_spec(func: Callable, deps: list, spec: dict) -> Any:
    """Call ``func`` with arguments from ``spec``: ``(True, i)`` is ``deps[i]``, else literal."""
    args = [deps[v] if is_dep else v for is_dep, v in spec["args"]]
    kwargs = {k: deps[v] if is_dep else v for k, (is_dep, v) in spec["kwargs"].items()}
    return func(*args, **kwargs)


def apply_kwargs(func: Callable, x: Any, kwargs: dict) -> Any:
    return func(x, **kwargs)


def _spec_call(func: Callable, deps: list, spec: dict) -> tuple:
    args = [deps[v] if is_dep else v for is_dep, v in spec["args"]]
    return func, args, {k: deps[v] if is_dep else v for k, (is_dep, v) in spec["kwargs"].items()}


apply_spec.wraps_call = _spec_call  # type: ignore[attr-defined]  # what the optimizer reads
apply_kwargs.wraps_call = lambda func, x, kwargs: (func, [x], kwargs)  # type: ignore[attr-defined]


def call_method(obj: Any, method: str, *args: Any, **kwargs: Any) -> Any:
    return getattr(obj, method)(*args, **kwargs)


#: clock fields of ``.dt`` as (seconds per step, steps per cycle, step of 1970-01-01)
_CLOCK_FIELDS = {
    "second": (1, 60, 0),
    "minute": (60, 60, 0),
    "hour": (3600, 24, 0),
    "day_of_week": (86400, 7, 3),  # a Thursday
}


_CALENDAR_FIELDS = ("year", "month", "day")
_CALENDAR_DAYS = 1 << 16  #: the widest span of days a calendar field is looked up over


def accessor_attribute(obj: Any, accessor: str, attr: str) -> Any:
    if accessor == "dt" and isinstance(obj.dtype, np.dtype):
        if attr in _CLOCK_FIELDS:
            return clock_field(obj, attr)
        if attr in _CALENDAR_FIELDS:
            looked_up = calendar_field(obj, attr)
            if looked_up is not None:
                return looked_up
    return getattr(getattr(obj, accessor), attr)


def clock_field(times: pd.Series, attr: str) -> pd.Series:
    """``times.dt.<attr>`` for a time-zone-naive datetime64 series, in integer arithmetic."""
    seconds, cycle, epoch = _CLOCK_FIELDS[attr]
    unit, _ = np.datetime_data(times.dtype)
    per_step = np.timedelta64(seconds, "s") // np.timedelta64(1, unit)
    values = times.to_numpy()
    field, nat = kernels.clock_values(values.view(np.int64), int(per_step), epoch, cycle)
    return _field_series(times, field, np.isnat(values) if nat else None)


def calendar_field(times: pd.Series, attr: str) -> pd.Series | None:
    """``times.dt.<attr>`` for a time-zone-naive datetime64 series, looked up per day: the
    field of each day from the first time's to the last's, one value if they all agree (a
    partition of one month), else taken by each time's day. None when the times span more
    than `_CALENDAR_DAYS` days or are all NaT."""
    unit, _ = np.datetime_data(times.dtype)
    day = np.timedelta64(1, "D") // np.timedelta64(1, unit)
    values = times.to_numpy()
    raw = values.view(np.int64)
    missing = np.isnat(values)
    known = raw[~missing] if missing.any() else raw
    if len(known) == 0:
        return None
    first, last = int(known.min()) // day, int(known.max()) // day
    if last - first >= _CALENDAR_DAYS:
        return None
    days = pd.DatetimeIndex(np.arange(first, last + 1).astype("M8[D]"))
    table = getattr(days, attr).to_numpy().astype(np.int32)
    if (table == table[0]).all():
        field = np.full(len(raw), table[0], dtype=np.int32)
    else:
        offsets = raw // day - first
        if missing.any():
            offsets[missing] = 0
        field = table[offsets]
    return _field_series(times, field, missing)


def _field_series(times: pd.Series, field: np.ndarray, missing: np.ndarray | None) -> pd.Series:
    """An int32 field of ``times`` as pandas gives it: float64 with NaN where ``missing``."""
    if missing is not None and missing.any():
        field = np.where(missing, np.nan, field)
    return pd.Series(field, index=times.index, name=times.name, copy=False)


def accessor_method(obj: Any, accessor: str, attr: str, *args: Any, **kwargs: Any) -> Any:
    return getattr(getattr(obj, accessor), attr)(*args, **kwargs)


def getitem(obj: Any, key: Any) -> Any:
    """``obj[key]``; a frame's columns by a list of their names are views, not copies (pandas
    copies them; copy-on-write keeps views safe)."""
    if (
        type(key) is list
        and isinstance(obj, pd.DataFrame)
        and obj.columns.is_unique
        and not any(isinstance(k, bool | np.bool_) for k in key)
        and (obj.columns.get_indexer(key) >= 0).all()
    ):
        return obj.reindex(columns=key)
    return obj[key]


def filter_rows(df: Any, mask: Any, columns: tuple | None = None) -> Any:
    """``df[mask]``; of a frame, only ``columns`` (when given) are copied, each by one take of
    the kept positions (pandas' ``loc`` copies every column of a block the columns share)."""
    if columns is None or not isinstance(df, pd.DataFrame):
        return df[mask]
    if isinstance(mask, pd.Series) and mask.index is df.index:
        mask = mask.to_numpy()
    if not (isinstance(mask, np.ndarray) and mask.dtype == bool and df.columns.is_unique):
        return df.loc[mask, df.columns.isin(columns)]
    kept = np.flatnonzero(mask)
    index = df.index.take(kept)
    names = df.columns[df.columns.isin(columns)]
    taken = {}
    for c in names:
        column = df[c]
        values = column.array.take(kept)
        if column.dtype == object:  # pandas would infer str from an object array
            values = pd.Series(values, index=index, dtype=object, copy=False)
        taken[c] = values
    out = pd.DataFrame(taken, index=index, copy=False)
    out.columns = names  # the frame's own labels (and their name), also when there are none
    return out


_TERM_OPS = {"ge": np.greater_equal, "gt": np.greater, "le": np.less_equal, "lt": np.less,
             "eq": np.equal}  # fmt: skip


def numpy_decides(meta: pd.DataFrame, terms: tuple) -> bool:
    """Whether numpy compares every ``(column, op, value)`` term as pandas does: a numpy
    number or naive datetime column against a number or a naive time (NaN and NaT fail)."""
    for column, _, value in terms:
        dtype = meta.dtypes.get(column)
        if not isinstance(dtype, np.dtype) or dtype.kind not in "iufbM":
            return False
        if dtype.kind == "M":
            is_time = isinstance(value, dt.datetime | np.datetime64)  # Timestamp is a datetime
            if not is_time or getattr(value, "tzinfo", None) is not None:
                return False
        elif not isinstance(value, int | float | np.number) or isinstance(value, np.datetime64):
            return False
    return True


def filter_terms(df: pd.DataFrame, terms: tuple, columns: tuple | None = None) -> pd.DataFrame:
    """The rows of ``df`` where every term holds (see `numpy_decides`); all rows with none.
    Only ``columns`` (when given) are copied."""
    mask = None
    for column, op, value in terms:
        values = df[column].to_numpy()
        if values.dtype.kind == "M":
            value = pd.Timestamp(value).to_datetime64()
        term = _TERM_OPS[op](values, value)
        mask = term if mask is None else np.logical_and(mask, term, out=mask)
    if mask is None:
        return df if columns is None else df.loc[:, df.columns.isin(columns)]
    return filter_rows(df, mask, columns)


def assign_columns(df: pd.DataFrame, **values: Any) -> pd.DataFrame:
    return df.assign(**values)


def concat(parts: Sequence[Any]) -> Any:
    """Concatenate partitions, leaving empty ones out (their dtypes must not upcast others)."""
    if len(parts) == 1:
        return parts[0]
    if parts and not isinstance(parts[0], pd.DataFrame | pd.Series):
        return pd.Series(list(parts))
    full = [p for p in parts if len(p)]
    if not full:
        return parts[0]
    if len(full) == 1:
        return full[0]
    return pd.concat(full)


def partition_length(part: Any) -> int:
    return len(part)


# the columns each step reads of the frame it is given (`optimize.prune_columns`)
COLUMN_RULES[getitem] = lambda args, kwargs, want: [(args[0], as_column_list(args[1]))]
COLUMN_RULES[filter_rows] = lambda args, kwargs, want: [(args[0], want), (args[1], ALL)]
COLUMN_RULES[filter_terms] = lambda args, kwargs, want: [
    (args[0], ALL if want is ALL else {*want, *(term[0] for term in args[1])})
]


def _copying_only(func: Callable) -> Callable:
    """The narrower of a filter ``func(df, rows, columns=None)``: the same call, copying only
    the columns the program reads after it."""
    return lambda task, needed: (func, *unwrap_call(task)[1][:2], tuple(sorted(needed, key=str)))


NARROWERS[filter_rows] = _copying_only(filter_rows)
NARROWERS[filter_terms] = _copying_only(filter_terms)
COLUMN_RULES[partition_length] = lambda args, kwargs, want: [(args[0], set())]
COLUMN_RULES[assign_columns] = lambda args, kwargs, want: [  # a callable may read any column
    (args[0], ALL if want is ALL or any(map(callable, kwargs.values())) else want - set(kwargs)),
    *[(v, ALL) for v in kwargs.values()],
]


def _sum_values(parts: list) -> Any:
    return sum(parts[1:], parts[0])


def _frame_sum(parts: list) -> pd.Series:
    return pd.DataFrame(parts).sum()


def _value_or_none(s: pd.Series, how: str) -> Any:
    """min or max of a partition's values, None when it has none (so it can't skew dtypes)."""
    values = s.dropna()
    if not len(values):
        return None
    return getattr(values, how)()


def _extreme(parts: list, how: str) -> Any:
    values = [p for p in parts if p is not None]
    if not values:
        return None
    return min(values) if how == "min" else max(values)


def _extreme_final(parts: list, how: str, empty: Any) -> Any:
    value = _extreme(parts, how)
    return empty if value is None else value


def _frame_extreme(parts: list, how: str) -> pd.Series:
    return getattr(pd.DataFrame(parts), how)()


def _sum_count(x: Any) -> tuple:
    return (x.sum(), x.count())


def _sum_count_combine(parts: list) -> tuple:
    sums = [p[0] for p in parts]
    counts = [p[1] for p in parts]
    if isinstance(sums[0], pd.Series):
        return (_frame_sum(sums), _frame_sum(counts))
    return (_sum_values(sums), _sum_values(counts))


def _mean_final(parts: list) -> Any:
    total, count = _sum_count_combine(parts)
    if isinstance(total, pd.Series):
        return total / count
    return np.float64(total) / count if count else np.float64("nan")


def _value_counts_chunk(s: pd.Series, dropna: bool) -> pd.Series:
    return s.value_counts(dropna=dropna, sort=False)


def _value_counts_combine(parts: list) -> pd.Series:
    full = concat(parts)
    return full.groupby(level=0, dropna=False, sort=False).sum()


def _value_counts_final(
    parts: list, sort: bool, ascending: bool, normalize: bool, name: Any, index_name: Any
) -> pd.Series:
    out = _value_counts_combine(parts)
    if normalize:
        total = out.sum()
        out = out / total if total else out.astype("float64")
    out.name = name
    out.index.name = index_name
    if sort:
        out = out.sort_values(ascending=ascending, kind="stable")
    return out


#: a partition at least this many times ``n`` long is cut down by a sample first (`_top_k`)
TOP_K_SAMPLE_FACTOR = 64


def _top_k(x: Any, how: str, n: int, columns: Any, keep: str = "first") -> Any:
    """pandas' ``nlargest``/``nsmallest``; on a long partition, only of the rows that reach the
    ``n``-th best value of a strided sample of the first column. That value is no better than
    the ``n``-th best of all rows, so every row of the answer (ties included) passes; pandas'
    own selection then runs on about ``TOP_K_SAMPLE_FACTOR × n`` rows, in their order."""
    first = x if columns is None else x[as_column_list(columns)[0]]
    numeric = isinstance(first.dtype, np.dtype) and first.dtype.kind in "iuf"
    values = first.to_numpy() if numeric else None
    if values is not None and n > 0 and len(values) >= TOP_K_SAMPLE_FACTOR * n:
        sample = values[:: TOP_K_SAMPLE_FACTOR // 4]
        if sample.dtype.kind == "f":
            sample = sample[~np.isnan(sample)]
        if len(sample) >= n:
            if how == "nlargest":
                bound = np.partition(sample, len(sample) - n)[len(sample) - n]
                x = x[values >= bound]
            else:
                bound = np.partition(sample, n - 1)[n - 1]
                x = x[values <= bound]
    args = (n,) if columns is None else (n, columns)
    return getattr(x, how)(*args, keep=keep)


def _top_k_combine(parts: list, how: str, n: int, columns: Any, keep: str = "first") -> Any:
    return _top_k(concat(parts), how, n, columns, keep)


# ---------------------------------------------------------------- graph building


def _deps_and_spec(args: Sequence[Any], kwargs: dict[str, Any]):
    """The collections among args/kwargs, and the spec `apply_spec` rebuilds the call from."""
    deps: list[_Collection] = []
    spec_args = []
    for a in args:
        if isinstance(a, _Collection):
            spec_args.append((True, len(deps)))
            deps.append(a)
        else:
            spec_args.append((False, a))
    spec_kwargs = {}
    for k, a in kwargs.items():
        if isinstance(a, _Collection):
            spec_kwargs[k] = (True, len(deps))
            deps.append(a)
        else:
            spec_kwargs[k] = (False, a)
    return deps, {"args": spec_args, "kwargs": spec_kwargs}


def as_layers(name: str, graph: dict) -> dict[str, dict]:
    """``graph`` as layers: already ``{layer: {key: task}}``, or a flat graph (one layer)."""
    if all(type(k) is str and isinstance(v, dict) for k, v in graph.items()):
        return graph
    return {name: graph}


def _merge_graphs(collections: Iterable[_Collection]) -> tuple[dict, tuple]:
    layers: dict[str, dict] = {}
    futures: dict[Any, Any] = {}
    for c in collections:
        layers.update(c._layers)
        for f in c._futures:
            futures[f.key] = f
    return layers, tuple(futures.values())


def _meta_of(x: Any) -> Any:
    if isinstance(x, _Frame):
        return x._meta
    if isinstance(x, Scalar):
        return x._meta
    return x


def _both_predicates(a: Any, b: Any) -> bool:
    return isinstance(b, _Frame) and a._predicate is not None and b._predicate is not None


def _aligned(frames: Sequence[_Frame], what: str) -> _Frame:
    first = frames[0]
    for f in frames[1:]:
        if f.npartitions != first.npartitions or f._align != first._align:
            raise ValueError(
                f"{what}: the collections are partitioned differently ({first.npartitions} and "
                f"{f.npartitions} partitions from different sources); rows can only be combined "
                "partition by partition when they come from the same partitioning. Use merge "
                "to join unaligned frames."
            )
    return first


def partitionwise(
    func: Callable,
    *args: Any,
    meta: Any,
    op: str,
    align: str | None = None,
    **kwargs: Any,
) -> Any:
    """Apply ``func`` partition by partition; collections among args must be aligned.

    Scalars among args are broadcast to every partition. The result keeps the alignment of the
    frames it was built from (or ``align`` when given).
    """
    deps, spec = _deps_and_spec(args, kwargs)
    frames = [d for d in deps if isinstance(d, _Frame)]
    if not frames:
        raise TypeError(f"{op}: needs at least one partitioned collection")
    first = _aligned(frames, op)
    n = first.npartitions
    name = new_name(op)
    dep_keys = [[(d._name, i) if isinstance(d, _Frame) else d.key for d in deps] for i in range(n)]
    if (
        len(deps) == 1
        and not spec["kwargs"]
        and len(spec["args"]) == 1
        and spec["args"][0][0]
        and isinstance(deps[0], _Frame)
    ):
        layer = {(name, i): (func, (first._name, i)) for i in range(n)}
    else:
        layer = {(name, i): (apply_spec, func, dep_keys[i], spec) for i in range(n)}
    layers, futures = _merge_graphs(deps)
    layers[name] = Blockwise(layer)
    return new_collection(
        name, layers, n, meta, futures=futures, align=align or first._align,
        divisions=first.divisions if align is None else None,
    )  # fmt: skip


def infer_meta(func: Callable, args: Sequence[Any], kwargs: dict[str, Any], op: str) -> Any:
    """Run ``func`` on the metas (empty partitions) of its arguments."""
    margs = [_meta_of(a) for a in args]
    mkwargs = {k: _meta_of(v) for k, v in kwargs.items()}
    return func(*margs, **mkwargs)


def new_collection(
    name: str,
    layers: dict,
    npartitions: int,
    meta: Any,
    *,
    futures: tuple = (),
    align: str | None = None,
    divisions: tuple | None = None,
) -> Any:
    """A DataFrame, Series or Scalar, chosen by the type of ``meta``."""
    if isinstance(meta, pd.DataFrame):
        return DataFrame(name, layers, npartitions, meta, divisions, align=align, futures=futures)
    if isinstance(meta, pd.Series):
        return Series(name, layers, npartitions, meta, divisions, align=align, futures=futures)
    if npartitions == 1 and align is None:
        return Scalar(name, layers, meta, futures=futures)
    # per-partition values (e.g. map_partitions(len)): a Series of one value per partition
    dtype = pd.Series([meta]).dtype if meta is not None else object
    return Series(
        name, layers, npartitions, pd.Series([], dtype=dtype), divisions, align=align,
        futures=futures,
    )  # fmt: skip


def tree_reduce(
    frame: _Frame,
    chunk: Callable,
    chunk_kwargs: dict,
    combine: Callable,
    combine_kwargs: dict,
    aggregate: Callable,
    aggregate_kwargs: dict,
    *,
    meta: Any,
    op: str,
    split_every: int | None = None,
    broadcast: Sequence[_Frame] = (),
) -> Any:
    """``aggregate(combine(... chunk(partition) ...))`` as a tree, ``split_every`` wide.

    With ``broadcast`` frames, the aggregate reads the list ``[partials, *each frame whole]``.
    """
    split_every = check_split_every(split_every)
    name = new_name(op)
    chunk_name = new_name(f"{op}-chunk")
    layers, futures = _merge_graphs([frame, *broadcast])
    wholes = []
    for small in broadcast:
        if small.npartitions == 1:
            wholes.append((small._name, 0))
            continue
        whole = new_name(f"{op}-broadcast")
        layers[whole] = {(whole, 0): (concat, small._output_keys())}
        wholes.append((whole, 0))
    layers[chunk_name] = Blockwise({
        (chunk_name, i): (apply_kwargs, chunk, (frame._name, i), chunk_kwargs)
        for i in range(frame.npartitions)
    })  # fmt: skip
    keys = [(chunk_name, i) for i in range(frame.npartitions)]
    while len(keys) > split_every:
        level = new_name(f"{op}-combine")
        layer = {}
        new_keys = []
        for j in range(0, len(keys), split_every):
            key = (level, j // split_every)
            layer[key] = (apply_kwargs, combine, keys[j : j + split_every], combine_kwargs)
            new_keys.append(key)
        layers[level] = layer
        keys = new_keys
    parts = [keys, *wholes] if wholes else keys
    # blockwise: one partition, so the row-wise steps after it (or, over a single partition,
    # the chunk before it) run in its task
    layers[name] = Blockwise({(name, 0): (apply_kwargs, aggregate, parts, aggregate_kwargs)})
    return new_collection(name, layers, 1, meta, futures=futures)


# ---------------------------------------------------------------- execution


def _resolve_client(futures: tuple, client: Any) -> Any:
    if futures:
        owner = futures[0].client
        if client is not None and client is not owner:
            raise ValueError(
                "this collection is persisted on another client's cluster; compute it there"
            )
        if owner._closed:
            raise RuntimeError("this collection was persisted on a client that is now closed")
        return owner
    if client is not None:
        return client
    from taskbench.engine.client import default_client

    return default_client()


def run_graph(graph: dict, keys: list, futures: tuple, client: Any) -> tuple:
    """Run ``keys`` of ``graph`` on the resolved client, or in this thread."""
    client = _resolve_client(futures, client)
    if client is None:
        from taskbench.engine.local import get_sync

        return get_sync(graph, keys)
    return client.get(graph, keys)


def cull(graph: dict, keys: Iterable[Any]) -> dict:
    """The part of ``graph`` that ``keys`` need."""
    from taskbench.engine.graph import normalize_graph

    keys = list(keys)
    present = [k for k in keys if k in graph]
    tasks, _ = normalize_graph(graph, present)
    out: dict = {}
    stack = present
    while stack:
        k = stack.pop()
        if k in out or k not in graph:
            continue
        out[k] = graph[k]
        stack.extend(tasks[k].dependencies)
    return out


def _plan(collections: Sequence[_Collection]) -> tuple[dict, list, list, tuple]:
    """One graph for all ``collections`` (shared layers once, blockwise work fused), the
    distinct output keys, each collection's keys, and the futures the graph reads."""
    layers, futures = _merge_graphs(collections)
    outputs = [c._output_keys() for c in collections]
    keys = list(dict.fromkeys(k for ks in outputs for k in ks))
    return fuse(layers, keys, [f.key for f in futures]), keys, outputs, futures


def compute(*collections: _Collection, client: Any = None) -> tuple:
    """Every collection's result, from one graph sent in one update: what they share runs
    once (q07's count, non-null count and sum are one pass over the filtered rows)."""
    graph, keys, outputs, futures = _plan(collections)
    # a result that is an element of a fused task's tuple is taken from the tuple here
    elements = {
        k: graph.pop(k)[1:]
        for k in keys
        if type(graph.get(k)) is tuple and graph[k][0] is operator.getitem and graph[k][1] in graph
    }
    asked = list(dict.fromkeys(elements[k][0] if k in elements else k for k in keys))
    got = dict(zip(asked, run_graph(graph, asked, futures, client), strict=True))
    values = {k: got[elements[k][0]][elements[k][1]] if k in elements else got[k] for k in keys}
    return tuple(c._finalize([values[k] for k in ks]) for c, ks in zip(collections, outputs,
                                                                      strict=True))  # fmt: skip


def persist(*collections: _Collection, client: Any = None) -> tuple:
    """Every collection kept on the cluster's workers, from one graph (see `compute`)."""
    graph, keys, outputs, futures = _plan(collections)
    client = _resolve_client(futures, client)
    if client is None or not hasattr(client, "persist"):
        if client is None:
            from taskbench.engine.local import get_sync

            held = dict(zip(keys, get_sync(graph, keys), strict=True))
        else:
            held = dict(zip(keys, client.get(graph, keys), strict=True))
        return tuple(c._rebuild({c._name: {k: held[k] for k in ks}}, ())
                     for c, ks in zip(collections, outputs, strict=True))  # fmt: skip
    by_key = {f.key: f for f in client.persist(graph, keys)}
    return tuple(c._rebuild({}, tuple(by_key[k] for k in ks))
                 for c, ks in zip(collections, outputs, strict=True))  # fmt: skip


class _Collection:
    """What every lazy collection has: a name, layers of tasks, and held futures."""

    _name: str
    _layers: dict[str, dict]
    _futures: tuple
    _meta: Any

    @property
    def name(self) -> str:
        return self._name

    @property
    def graph(self) -> dict:
        """All tasks, flattened from the layers."""
        out: dict = {}
        for layer in self._layers.values():
            out.update(layer)
        return out

    def _output_keys(self) -> list:
        raise NotImplementedError

    def _finalize(self, results: list) -> Any:
        raise NotImplementedError

    def compute(self, client: Any = None) -> Any:
        """The result as pandas (or a Python/numpy value for a Scalar)."""
        return compute(self, client=client)[0]

    def persist(self, client: Any = None) -> Any:
        """The same partitions, kept on the cluster's workers (in the graph without a cluster)."""
        return persist(self, client=client)[0]

    def _rebuild(self, layers: dict, futures: tuple) -> Any:
        raise NotImplementedError

    def __bool__(self) -> bool:
        raise TypeError(
            f"the truth value of a lazy {type(self).__name__} is unknown until it is computed"
        )

    def _binary(self, other: Any, op: Callable) -> Any:
        raise NotImplementedError


def _binary_op(op: Callable, name: str) -> Callable:
    def method(self: Any, other: Any) -> Any:
        return self._binary(other, op)

    method.__name__ = name
    return method


_BINARY = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "truediv": operator.truediv,
    "floordiv": operator.floordiv,
    "mod": operator.mod,
    "pow": operator.pow,
    "and": operator.and_,
    "or": operator.or_,
    "xor": operator.xor,
}
_COMPARE = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}


def radd(a: Any, b: Any) -> Any:
    return b + a


def rsub(a: Any, b: Any) -> Any:
    return b - a


def rmul(a: Any, b: Any) -> Any:
    return b * a


def rtruediv(a: Any, b: Any) -> Any:
    return b / a


def rfloordiv(a: Any, b: Any) -> Any:
    return b // a


def rmod(a: Any, b: Any) -> Any:
    return b % a


def rpow(a: Any, b: Any) -> Any:
    return b**a


def rand(a: Any, b: Any) -> Any:
    return b & a


def ror(a: Any, b: Any) -> Any:
    return b | a


def rxor(a: Any, b: Any) -> Any:
    return b ^ a


_REFLECTED = {
    "add": radd,
    "sub": rsub,
    "mul": rmul,
    "truediv": rtruediv,
    "floordiv": rfloordiv,
    "mod": rmod,
    "pow": rpow,
    "and": rand,
    "or": ror,
    "xor": rxor,
}


def _install_operators(cls: type) -> type:
    for name, op in _BINARY.items():
        setattr(cls, f"__{name}__", _binary_op(op, f"__{name}__"))
        setattr(cls, f"__r{name}__", _binary_op(_REFLECTED[name], f"__r{name}__"))
    for name, op in _COMPARE.items():
        setattr(cls, f"__{name}__", _binary_op(op, f"__{name}__"))
    cls.__hash__ = None  # type: ignore[attr-defined]
    return cls


# ---------------------------------------------------------------- Scalar


@_install_operators
class Scalar(_Collection):
    """One lazy value: a reduction's result."""

    def __init__(self, name: str, layers: dict, meta: Any = None, *, futures: tuple = ()):
        self._name = name
        self._layers = as_layers(name, layers)
        self._meta = meta
        self._futures = futures

    @property
    def key(self) -> tuple:
        return (self._name, 0)

    @property
    def npartitions(self) -> int:
        return 1

    def _output_keys(self) -> list:
        return [self.key]

    def _finalize(self, results: list) -> Any:
        return results[0]

    def _rebuild(self, layers: dict, futures: tuple) -> Scalar:
        return Scalar(self._name, layers, self._meta, futures=futures)

    def _binary(self, other: Any, op: Callable) -> Any:
        if isinstance(other, _Frame):
            return NotImplemented
        name = new_name(getattr(op, "__name__", "op").strip("_"))
        deps, spec = _deps_and_spec([self, other], {})
        layers, futures = _merge_graphs(deps)
        layers[name] = {(name, 0): (apply_spec, op, [d.key for d in deps], spec)}
        try:
            meta = op(self._meta, _meta_of(other))
        except Exception:
            meta = None
        return Scalar(name, layers, meta, futures=futures)

    def __repr__(self) -> str:
        return f"<Scalar {self._name}>"


# ---------------------------------------------------------------- frames


class _Frame(_Collection):
    """Shared by DataFrame and Series: partitions, meta, alignment."""

    _meta: pd.DataFrame | pd.Series

    def __init__(
        self,
        name: str,
        layers: dict,
        npartitions: int,
        meta: Any,
        divisions: tuple | None = None,
        *,
        align: str | None = None,
        futures: tuple = (),
        stats: tuple | None = None,
    ) -> None:
        self._name = name
        self._layers = as_layers(name, layers)
        self.npartitions = npartitions
        self._meta = meta
        self.divisions = divisions
        self._align = align or name
        self._futures = futures
        self._stats = stats  #: per-partition `stats.PartitionStats`, or None
        self._source: st.ReadSource | None = None  #: set on a parquet read, untouched
        self._column: tuple | None = None  #: a Series: (name, per-partition stats, source)
        self._predicate: st.Predicate | None = None  #: a bool Series the statistics decide
        self._join: Any = None  #: a broadcast join's `join.BroadcastJoin`, for a groupby

    # -- plumbing

    def _output_keys(self) -> list:
        return [(self._name, i) for i in range(self.npartitions)]

    def _finalize(self, results: list) -> Any:
        return concat(results)

    def _rebuild(self, layers: dict, futures: tuple) -> Any:
        return type(self)(
            self._name, layers, self.npartitions, self._meta, self.divisions,
            align=self._align, futures=futures, stats=self._stats,
        )  # fmt: skip

    @property
    def meta(self) -> Any:
        """An empty pandas object with the result's dtypes."""
        return self._meta

    @property
    def dtypes(self) -> Any:
        return self._meta.dtypes

    def __len__(self) -> int:
        return int(self.length().compute())

    def known_rows(self) -> int | None:
        """The row count the partition statistics give, or None."""
        if self._stats is None or any(p.rows is None for p in self._stats):
            return None
        return sum(p.rows for p in self._stats)

    def length(self, split_every: int | None = None) -> Scalar:
        """The number of rows, lazily (``len(df)`` computes it); from the partition
        statistics when they know it, without a task."""
        rows = self.known_rows()
        if rows is not None:
            name = new_name("len")
            return Scalar(name, {name: {(name, 0): rows}}, 0)
        return tree_reduce(
            self, partition_length, {}, _sum_values, {}, _sum_values, {},
            meta=0, op="len", split_every=split_every,
        )  # fmt: skip

    def _apply_partitionwise(self, func: Callable, *args: Any, op: str, **kwargs: Any) -> Any:
        try:
            meta = infer_meta(func, [self, *args], kwargs, op)
        except Exception as e:
            e.add_note(f"raised by {op} on {self._describe()}, when the graph was built")
            raise
        return partitionwise(func, self, *args, meta=meta, op=op, **kwargs)

    def _method(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Apply the pandas method ``method`` to every partition."""
        return self._apply_partitionwise(call_method, method, *args, op=method, **kwargs)

    def map_partitions(self, func: Callable, *args: Any, meta: Any = None, **kwargs: Any) -> Any:
        """``func(partition, *args, **kwargs)`` on every partition.

        Collections among the arguments are passed partition by partition (they must be
        aligned), Scalars as values. Without ``meta``, it comes from calling ``func`` on empty
        partitions; pass ``meta`` when that cannot work.
        """
        op = getattr(func, "__name__", "map-partitions").strip("<>_") or "map-partitions"
        op = op if op.replace("_", "").isalnum() else "map-partitions"
        if meta is None:
            try:
                meta = infer_meta(func, [self, *args], kwargs, op)
            except Exception as e:
                raise ValueError(
                    f"map_partitions could not infer the result's meta by calling "
                    f"{getattr(func, '__name__', func)!r} on empty partitions ({e!r}); "
                    "pass meta= (an empty pandas object with the result's dtypes)"
                ) from e
        return partitionwise(func, self, *args, meta=meta, op=op, **kwargs)

    def _binary(self, other: Any, op: Callable) -> Any:
        if isinstance(other, _Frame):
            _aligned([self, other], "binary operation")
        try:
            meta = op(self._meta, _meta_of(other))
        except Exception as e:
            other_dtype = getattr(_meta_of(other), "dtype", type(other).__name__)
            raise TypeError(
                f"cannot apply {getattr(op, '__name__', op)} to {self._describe()} and "
                f"{other_dtype}: {e}"
            ) from e
        name = getattr(op, "__name__", "op").strip("_")
        out = partitionwise(op, self, other, meta=meta, op=name)
        if self._column is not None and not isinstance(other, _Collection):
            out._predicate = st.comparison(op, *self._column, other)
        elif op is operator.and_ and _both_predicates(self, other):
            out._predicate = self._predicate & other._predicate
        return out

    def _describe(self) -> str:
        if isinstance(self._meta, pd.Series):
            return f"column {self._meta.name!r} ({self._meta.dtype})"
        return "a DataFrame"

    def __neg__(self) -> Any:
        return self._apply_partitionwise(operator.neg, op="neg")

    def __invert__(self) -> Any:
        return self._apply_partitionwise(operator.invert, op="invert")

    def __abs__(self) -> Any:
        return self._apply_partitionwise(operator.abs, op="abs")

    def abs(self) -> Any:
        return self.__abs__()

    def astype(self, dtype: Any) -> Any:
        return self._method("astype", dtype)

    def isna(self) -> Any:
        return self._method("isna")

    def notna(self) -> Any:
        return self._method("notna")

    def fillna(self, value: Any) -> Any:
        return self._method("fillna", value)

    def round(self, decimals: int = 0) -> Any:
        return self._method("round", decimals)

    def get_partition(self, i: int) -> Any:
        """Partition ``i`` alone, as a one-partition collection."""
        if not -self.npartitions <= i < self.npartitions:
            raise IndexError(f"partition {i} of a collection with {self.npartitions}")
        i %= self.npartitions
        name = new_name("get-partition")
        layers = {
            f"{name}-culled": cull(self.graph, [(self._name, i)]),
            name: {(name, 0): (self._name, i)},
        }
        return new_collection(name, layers, 1, self._meta, futures=self._futures, align=name)

    def head(self, n: int = 5, client: Any = None) -> Any:
        """The first ``n`` rows as pandas, computing as few partitions as it can."""
        want = 1
        while True:
            want = min(want, self.npartitions)
            keys = [(self._name, i) for i in range(want)]
            parts = run_graph(cull(self.graph, keys), keys, self._futures, client)
            taken = sum(len(p) for p in parts)
            if taken >= n or want == self.npartitions:
                return concat(parts).head(n)
            want *= 2

    # -- reductions

    def _reduce_extreme(self, how: str, split_every: int | None) -> Any:
        meta = getattr(self._meta, how)()
        if isinstance(self._meta, pd.DataFrame):
            return tree_reduce(
                self, call_method, {"method": how}, _frame_extreme, {"how": how},
                _frame_extreme, {"how": how}, meta=meta, op=how, split_every=split_every,
            )  # fmt: skip
        return tree_reduce(
            self, _value_or_none, {"how": how}, _extreme, {"how": how},
            _extreme_final, {"how": how, "empty": meta}, meta=meta, op=how,
            split_every=split_every,
        )  # fmt: skip

    def min(self, split_every: int | None = None) -> Any:
        return self._reduce_extreme("min", split_every)

    def max(self, split_every: int | None = None) -> Any:
        return self._reduce_extreme("max", split_every)

    def _check_numeric(self, op: str) -> None:
        meta = self._meta
        dtypes = (
            meta.dtypes.items() if isinstance(meta, pd.DataFrame) else [(meta.name, meta.dtype)]
        )
        for col, dtype in dtypes:
            if not pd.api.types.is_numeric_dtype(dtype):
                raise TypeError(f"{op}: column {col!r} has dtype {dtype}, which is not numeric")

    def sum(self, split_every: int | None = None) -> Any:
        self._check_numeric("sum")
        meta = self._meta.sum()
        if isinstance(self._meta, pd.DataFrame):
            return tree_reduce(
                self, call_method, {"method": "sum"}, _frame_sum, {}, _frame_sum, {},
                meta=meta, op="sum", split_every=split_every,
            )  # fmt: skip
        return tree_reduce(
            self, call_method, {"method": "sum"}, _sum_values, {}, _sum_values, {},
            meta=meta, op="sum", split_every=split_every,
        )  # fmt: skip

    def count(self, split_every: int | None = None) -> Any:
        meta = self._meta.count()
        combine = _frame_sum if isinstance(self._meta, pd.DataFrame) else _sum_values
        return tree_reduce(
            self, call_method, {"method": "count"}, combine, {}, combine, {},
            meta=meta, op="count", split_every=split_every,
        )  # fmt: skip

    def mean(self, split_every: int | None = None) -> Any:
        self._check_numeric("mean")
        meta = self._meta.mean()
        return tree_reduce(
            self, _sum_count, {}, _sum_count_combine, {}, _mean_final, {},
            meta=meta, op="mean", split_every=split_every,
        )  # fmt: skip

    def _top(self, how: str, n: int, columns: Any, keep: str, split_every: int | None) -> Any:
        """``how`` (``nlargest``/``nsmallest``) as a tree: each partition's best ``n`` rows
        (with ties, for ``keep="all"``) hold the whole frame's, in partition order."""
        if columns is not None:
            check_columns(self._meta, as_column_list(columns), how)
        if keep not in ("first", "last", "all"):
            raise ValueError(f'{how}: keep must be "first", "last" or "all", got {keep!r}')
        try:
            meta = _top_k(self._meta, how, n, columns, keep)
        except TypeError as e:
            raise TypeError(f"{how}: {e}") from e
        kw = {"how": how, "n": n, "columns": columns, "keep": keep}
        return tree_reduce(
            self, _top_k, kw, _top_k_combine, kw, _top_k_combine, kw,
            meta=meta, op=how, split_every=split_every,
        )  # fmt: skip

    # -- shuffles

    def shuffle(
        self, on: Any, npartitions: int | None = None, method: str | None = None, **options: Any
    ) -> Any:
        """Rows with equal ``on`` values end in one partition; see `engine.dataframe.shuffle`."""
        from taskbench.engine.dataframe.shuffle import shuffle

        return shuffle(self, on, npartitions, method=method, **options)


@_install_operators
class Series(_Frame):
    """A lazy partitioned pandas Series."""

    _meta: pd.Series

    def __repr__(self) -> str:
        return (
            f"<Series {self._meta.name!r} dtype={self._meta.dtype} "
            f"npartitions={self.npartitions} name={self._name}>"
        )

    @property
    def dtype(self) -> Any:
        return self._meta.dtype

    @property
    def dt(self) -> _Accessor:
        """Datetime accessor: year, month, hour, dayofweek and the rest, partition by partition."""
        return _Accessor(self, "dt")

    @property
    def str(self) -> _Accessor:
        return _Accessor(self, "str")

    def isin(self, values: Iterable) -> Series:
        return self._method("isin", list(values))

    def between(self, left: Any, right: Any, inclusive: str = "both") -> Series:
        out = self._method("between", left, right, inclusive=inclusive)
        if self._column is not None:
            out._predicate = st.between(*self._column, left, right, inclusive)
        return out

    def rename(self, name: Any) -> Series:
        return self._method("rename", name)

    def to_frame(self, name: Any = None) -> DataFrame:
        return self._method("to_frame") if name is None else self._method("to_frame", name)

    def value_counts(
        self,
        dropna: bool = True,
        sort: bool = True,
        ascending: bool = False,
        normalize: bool = False,
        split_every: int | None = None,
    ) -> Series:
        """Counts of each value as a one-partition Series (pandas' names and order).

        All nulls count as one value (pandas counts None and NaN of an object column apart).
        """
        meta = self._meta.value_counts(dropna=dropna, normalize=normalize)
        return tree_reduce(
            self, _value_counts_chunk, {"dropna": dropna}, _value_counts_combine, {},
            _value_counts_final,
            {"sort": sort, "ascending": ascending, "normalize": normalize, "name": meta.name,
             "index_name": meta.index.name},
            meta=meta, op="value-counts", split_every=split_every,
        )  # fmt: skip

    def nlargest(self, n: int = 5, keep: str = "first", split_every: int | None = None) -> Series:
        return self._top("nlargest", n, None, keep, split_every)

    def nsmallest(self, n: int = 5, keep: str = "first", split_every: int | None = None) -> Series:
        return self._top("nsmallest", n, None, keep, split_every)


@_install_operators
class DataFrame(_Frame):
    """A lazy partitioned pandas DataFrame."""

    _meta: pd.DataFrame

    def __repr__(self) -> str:
        return (
            f"<DataFrame npartitions={self.npartitions} columns={list(self._meta.columns)} "
            f"name={self._name}>"
        )

    @property
    def columns(self) -> pd.Index:
        return self._meta.columns

    def __dir__(self) -> list[str]:
        extra = [c for c in self._meta.columns if isinstance(c, str) and c.isidentifier()]
        return sorted({*super().__dir__(), *extra})

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        meta = self.__dict__.get("_meta")
        if meta is not None and key in meta.columns:
            return self[key]
        raise AttributeError(f"{type(self).__name__} has no attribute or column {key!r}")

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, Series):
            dtype = key._meta.dtype
            if not pd.api.types.is_bool_dtype(dtype):
                raise TypeError(f"a boolean filter must be a bool Series, got dtype {dtype}")
            _aligned([self, key], "boolean filter")
            return self._filter(key)
        if isinstance(key, _Collection):
            raise TypeError(f"cannot index a DataFrame with a {type(key).__name__}")
        columns = as_column_list(key)
        check_columns(self._meta, columns, "select")
        if isinstance(key, list | pd.Index):
            key = list(key)
            if self._source is not None:  # projection pushdown: read only these columns
                return self._read(self._source, columns=key, filters=self._source.filters)
        meta = self._meta[key]
        out = partitionwise(getitem, self, key, meta=meta, op="getitem")
        if isinstance(out, DataFrame):
            out._stats = self._stats and tuple(p.select(columns) for p in self._stats)
        else:
            per_partition = self._stats and tuple(p.columns.get(key) for p in self._stats)
            out._column = (key, per_partition, self._source)
        return out

    def _read(self, source: st.ReadSource, columns: list, filters: Any) -> DataFrame:
        """The same parquet read with other columns or filters (same files, same layout)."""
        out = source.read(list(source.files), columns=columns, filters=filters)
        if filters == source.filters:
            out._align = self._align  # the same row groups: rows stay aligned with this frame
        return out

    def _filter(self, mask: Series) -> DataFrame:
        """``self[mask]``: pushed into the parquet read when both are one untouched read;
        else without the partitions whose statistics say no row passes, each kept partition
        filtered by the terms its statistics leave undecided when numpy decides them as
        pandas does (the mask itself is then never computed)."""
        predicate = mask._predicate
        source = self._source
        if predicate is not None and source is not None and source.same_rows(predicate.source):
            return self._read(source, list(self._meta.columns),
                              source.with_filters(predicate.filters()))  # fmt: skip
        if predicate is None or self._stats is None:
            return partitionwise(filter_rows, self, mask, meta=self._meta, op="filter")
        kept = [i for i in range(self.npartitions) if predicate.may_match(i)]
        direct = numpy_decides(self._meta, predicate.terms)
        if len(kept) == self.npartitions and not direct:
            return partitionwise(filter_rows, self, mask, meta=self._meta, op="filter")
        name = new_name("filter")
        layers, futures = _merge_graphs([self] if direct else [self, mask])
        if kept:
            layers[name] = Blockwise({
                (name, j): (filter_terms, (self._name, i), predicate.undecided(i)) if direct
                else (filter_rows, (self._name, i), (mask._name, i))
                for j, i in enumerate(kept)
            }, renumbered=len(kept) < self.npartitions)  # fmt: skip
        else:  # no partition can pass: one empty partition, no task
            layers[name] = {(name, 0): self._meta}
        return new_collection(name, layers, len(kept) or 1, self._meta, futures=futures)

    def __setitem__(self, key: Any, value: Any) -> None:
        new = self.assign(**{key: value})
        self.__dict__.update(new.__dict__)

    def assign(self, **columns: Any) -> DataFrame:
        """New or replaced columns: aligned Series, Scalars, constants or ``f(partition)``."""
        for k, v in columns.items():
            if isinstance(v, DataFrame):
                raise TypeError(f"assign: column {k!r} must be a Series, not a DataFrame")
        out = self._apply_partitionwise(assign_columns, op="assign", **columns)
        if self._stats is not None:
            kept = [c for c in self._meta.columns if c not in columns]
            out._stats = tuple(p.select(kept) for p in self._stats)
        return out

    def drop(self, columns: Any) -> DataFrame:
        check_columns(self._meta, as_column_list(columns), "drop")
        return self._method("drop", columns=columns)

    def rename(self, columns: dict) -> DataFrame:
        return self._method("rename", columns=columns)

    def dropna(self, subset: Any = None) -> DataFrame:
        if subset is not None:
            check_columns(self._meta, as_column_list(subset), "dropna")
        return self._method("dropna", subset=subset)

    def nlargest(
        self, n: int, columns: Any, keep: str = "first", split_every: int | None = None
    ) -> DataFrame:
        return self._top("nlargest", n, columns, keep, split_every)

    def nsmallest(
        self, n: int, columns: Any, keep: str = "first", split_every: int | None = None
    ) -> DataFrame:
        return self._top("nsmallest", n, columns, keep, split_every)

    def groupby(self, by: Any, dropna: bool = True, sort: bool = True) -> Any:
        """Group by columns ``by``; null keys form a group when ``dropna=False``."""
        from taskbench.engine.dataframe.groupby import GroupBy

        return GroupBy(self, by, dropna=dropna, sort=sort)

    def merge(self, right: DataFrame, on: Any = None, how: str = "inner", **kwargs: Any) -> Any:
        """See `engine.dataframe.merge`."""
        from taskbench.engine.dataframe.join import merge

        return merge(self, right, on=on, how=how, **kwargs)

    def sort_values(self, by: Any, ascending: Any = True, **kwargs: Any) -> DataFrame:
        """See `engine.dataframe.sort.sort_values`."""
        from taskbench.engine.dataframe.sort import sort_values

        return sort_values(self, by, ascending=ascending, **kwargs)

    def sort_within_partitions(self, by: Any, ascending: Any = True, **kwargs: Any) -> DataFrame:
        """See `engine.dataframe.sort.sort_within_partitions`."""
        from taskbench.engine.dataframe.sort import sort_within_partitions

        return sort_within_partitions(self, by, ascending=ascending, **kwargs)

    def set_index(self, column: Any, drop: bool = True, **kwargs: Any) -> DataFrame:
        """See `engine.dataframe.sort.set_index`."""
        from taskbench.engine.dataframe.sort import set_index

        return set_index(self, column, drop=drop, **kwargs)


class _Accessor:
    """``series.dt`` / ``series.str``: each attribute or method runs partition by partition.

    ``dt.dayofweek`` (deprecated in pandas 3.1) is served as ``dt.day_of_week``.
    """

    _ALIASES = {"dayofweek": "day_of_week", "dayofyear": "day_of_year"}

    def __init__(self, series: Series, accessor: str) -> None:
        self._series = series
        self._accessor = accessor
        try:
            self._meta_accessor = getattr(series._meta, accessor)
        except AttributeError as e:
            raise AttributeError(
                f"column {series._meta.name!r} has dtype {series._meta.dtype}, which has no "
                f".{accessor} accessor"
            ) from e

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        if self._accessor == "dt":
            attr = self._ALIASES.get(attr, attr)
        value = getattr(self._meta_accessor, attr)
        s, acc = self._series, self._accessor
        if callable(value):

            def method(*args: Any, **kwargs: Any) -> Any:
                return s._apply_partitionwise(
                    accessor_method, acc, attr, *args, op=f"{acc}-{attr}", **kwargs
                )

            return method
        return partitionwise(accessor_attribute, s, acc, attr, meta=value, op=f"{acc}-{attr}")
