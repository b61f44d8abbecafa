"""``groupby(keys).agg({...})`` as a tree reduction.

Policy: every partition reduces its groups to *partials* (sum, count, size, min, max of the
columns the spec needs); partials are concatenated and re-grouped by their index,
``split_every`` at a time, up a tree; the last step turns partials into the requested
statistics (``mean = sum / count``) and sorts the groups when ``sort=True``, as pandas does.
Null keys are dropped unless ``dropna=False``, in which case they form one group (listed
last). The result is one partition, laid out as pandas lays out ``agg`` with the same spec.

A sorted groupby whose partials are sizes, counts and exact sums takes the dense path, in
its chunks and where partials are re-grouped: each key becomes codes ``0..width-1`` (a
small-integer key its offset from its minimum, with no hashing, renumbered to the ranks of the
offsets present when they spread over more than ``COMPACT_SPAN``; any other key the ranks of
its sorted distinct values), a row's group is its keys' codes in mixed radix, so groups come
out in key order, and the partials are counted and summed over it by compiled loops
(`engine.dataframe.kernels`), one pass per column. Keys of too many combinations, keys that do
not order, and other partials go through pandas.

A sorted groupby of a frame joined to broadcast tables aggregates below the joins: chunks
group by the frame's own keys and the join keys, and only the final step joins the re-grouped
partials, one row per group, to the tables (`join_groupby_aggregate`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from taskbench.engine.dataframe import kernels
from taskbench.engine.dataframe.core import (
    DataFrame,
    Series,
    as_column_list,
    check_columns,
    concat,
    getitem,
    partitionwise,
    tree_reduce,
)
from taskbench.engine.dataframe.optimize import COLUMN_RULES

SUPPORTED = ("sum", "mean", "count", "size", "min", "max")
_PARTIALS = {
    "sum": ("sum",),
    "mean": ("sum", "count"),
    "count": ("count",),
    "size": ("size",),
    "min": ("min",),
    "max": ("max",),
}
# how partials of each statistic combine
_COMBINE = {"sum": "sum", "count": "sum", "size": "sum", "min": "min", "max": "max"}


#: the dense path's bound on distinct key combinations, beyond a partition's row count
DENSE_SLOTS = 1 << 16
#: an offset key spanning more values than this is renumbered to the values present
COMPACT_SPAN = 1 << 10


class _DenseKey:
    """One key column as codes ``0..span-1``, nulls (if any) in slot ``span``: an offset from
    ``lo``, or an index into ``uniques``."""

    def __init__(
        self, column: pd.Series, codes: np.ndarray, span: int, has_null: bool, lo: Any = 0,
        uniques: Any = None,
    ) -> None:  # fmt: skip
        self.column = column
        self.codes = codes  # the key's own array: the chunk combines keys into it in place
        self.has_null = has_null
        self.lo = lo
        self.uniques = uniques
        self.width = span + has_null

    def labels(self, codes: np.ndarray) -> Any:
        """The key values of groups ``codes``, in the column's own dtype."""
        dtype = self.column.dtype
        is_null = codes == self.width - 1 if self.has_null else None
        if self.uniques is not None:
            at = codes if is_null is None else np.where(is_null, -1, codes)
            return pd.api.extensions.take(self.uniques, at, allow_fill=True)
        values = codes + self.lo
        if is_null is None:
            return pd.array(values, dtype=dtype)
        if isinstance(dtype, np.dtype):  # float: nulls are NaN
            return np.where(is_null, np.nan, values)
        labels = pd.array(np.where(is_null, 0, values), dtype=dtype)
        labels[is_null] = pd.NA
        return labels


def _dense_key(column: pd.Series, limit: int) -> _DenseKey | None:
    """``column`` as codes: offsets for small integers (ranks of the values present, when
    they spread wide), else factorized."""
    key = _offset_key(column, limit)
    if key is None:
        return _factorized_key(column)
    if key.width - key.has_null > COMPACT_SPAN:
        offsets = kernels.compact_offsets(key.codes, key.width - key.has_null)
        values = offsets + key.lo
        dtype = column.dtype
        uniques = values.astype(dtype) if isinstance(dtype, np.dtype) else pd.array(values, dtype)
        return _DenseKey(column, key.codes, len(offsets), key.has_null, uniques=uniques)
    return key


def _factorized_key(column: pd.Series) -> _DenseKey | None:
    """``column`` as the ranks of its sorted distinct values; None when they do not order."""
    try:
        codes, uniques = column.factorize(sort=True, use_na_sentinel=True)
    except TypeError:
        return None
    uniques = uniques.array
    codes = codes.astype(np.int64, copy=False)
    null = codes < 0
    has_null = bool(null.any())
    if has_null:
        codes[null] = len(uniques)
    return _DenseKey(column, codes, len(uniques), has_null, uniques=uniques)


def _offset_key(column: pd.Series, limit: int) -> _DenseKey | None:
    """``column`` as offsets from its minimum, or None when it is not a few small integers."""
    dtype = column.dtype
    extension = isinstance(dtype, pd.api.extensions.ExtensionDtype)
    if len(column) == 0 or dtype.kind not in ("iuf" if extension else "biuf"):
        return None
    if (extension and dtype.kind == "f") or (dtype.kind == "u" and dtype.itemsize == 8):
        return None
    if dtype.kind == "f":
        values = column.to_numpy()
        if values.dtype.itemsize < 4:  # the kernel takes float32 and float64
            values = values.astype(np.float32)
        coded = kernels.float_offsets(values, limit)
        if coded is None:
            return None
        codes, lo, span, nulls = coded
        return _DenseKey(column, codes, span, nulls > 0, lo)
    null = column.isna().to_numpy() if extension else None
    raw = column.to_numpy(dtype=np.int64, na_value=0) if extension else column.to_numpy()
    has_null = null is not None and bool(null.any())
    some = raw[~null] if has_null else raw
    if len(some) == 0:
        return None
    lo, hi = int(some.min()), int(some.max())
    if hi - lo >= limit:
        return None
    codes = raw.astype(np.int64)  # a copy: the column's own data is never written
    codes -= lo
    if has_null:
        codes[null] = hi - lo + 1
    return _DenseKey(column, codes, hi - lo + 1, has_null, lo)


def _group_sums(codes: np.ndarray, values: pd.Series, slots: int) -> tuple | None:
    """(sums, non-null counts) per group of a float or (non-null) integer column; None for
    other dtypes."""
    dtype = values.dtype
    if dtype == np.float64:
        return kernels.group_float_sums(codes, values.to_numpy(), slots)
    if isinstance(dtype, np.dtype) and dtype.kind in "biu" and dtype != np.uint64:
        raw = values.to_numpy().astype(np.int64, copy=False)
        return kernels.group_int_sums(codes, raw, slots), None
    return None


def _dense_chunk(df: pd.DataFrame, by: list, dropna: bool, partials: list) -> Any:
    """The partials by dense keys, or None where the dense path does not apply."""
    if any(stat not in ("size", "count", "sum") for _, _, stat in partials):
        return None
    limit = max(DENSE_SLOTS, 2 * len(df))
    keys = []
    slots = 1
    if len(df) == 0 or any(isinstance(df[name].dtype, pd.CategoricalDtype) for name in by):
        return None
    for name in by:
        key = _dense_key(df[name], limit)
        if key is None:
            return None
        keys.append(key)
        slots *= key.width
        if slots > limit:
            return None
    dropped = None
    if dropna and any(key.has_null for key in keys):
        dropped = np.logical_or.reduce([key.codes == key.width - 1 for key in keys if key.has_null])
    codes = keys[0].codes  # each key's codes are its own: combined in place
    for key in keys[1:]:
        codes *= key.width
        codes += key.codes
    if dropped is not None:
        codes[dropped] = slots  # one slot past the groups collects the dropped rows
    counted = slots + (dropped is not None)
    sizes = kernels.group_sizes(codes, counted)[:slots]
    present = np.flatnonzero(sizes)
    columns = {}
    summed: dict = {}  # column -> (sums, counts): one pass for its sum and its count
    for p, col, stat in partials:
        if stat == "size":
            columns[p] = sizes[present]
            continue
        if col not in summed:
            summed[col] = _group_sums(codes, df[col], counted)
        if summed[col] is None:
            if stat == "sum":
                return None  # a dtype the kernels do not sum
            notnull = df[col].notna().to_numpy()
            counts = sizes if notnull.all() else np.bincount(codes, notnull, counted)
            columns[p] = counts[:slots][present].astype(np.int64)
            continue
        sums, counts = summed[col]
        if stat == "sum":
            columns[p] = sums[present]
        else:  # an integer column has no nulls: its count is its size
            columns[p] = (sizes if counts is None else counts)[present]
    labels = []
    rest = present
    for key in reversed(keys):
        rest, offsets = np.divmod(rest, key.width)
        labels.append(key.labels(offsets))
    labels.reverse()
    if len(by) == 1:
        index = pd.Index(labels[0], name=by[0])
    else:
        index = pd.MultiIndex.from_arrays(labels, names=by)
    return pd.DataFrame(columns, index=index)


def groupby_chunk(
    df: pd.DataFrame, by: list, dropna: bool, partials: list, sort: bool = False
) -> pd.DataFrame:
    if sort:  # the dense path lists groups in key order, which a sorted groupby restores
        dense = _dense_chunk(df, by, dropna, partials)
        if dense is not None:
            return dense
    g = df.groupby(by, dropna=dropna, sort=False, observed=True)
    named = {p: (col, stat) for p, col, stat in partials if stat != "size"}
    sizes = [p for p, _, stat in partials if stat == "size"]
    out = g.agg(**named) if named else None
    if sizes:
        size = g.size()
        if out is None:
            out = size.to_frame(sizes[0])
        else:
            out[sizes[0]] = size.to_numpy()
    return out


COLUMN_RULES[groupby_chunk] = lambda args, kwargs, want: [
    (args[0], {*kwargs["by"], *(col for _, col, _ in kwargs["partials"] if col is not None)})
]


def _below_joins(frame: DataFrame, by: list, plan: list) -> tuple[DataFrame, list, list, list]:
    """Where a groupby can aggregate below broadcast joins: (the frame under them, the joins'
    merge kwargs and tables innermost first, the keys at each level from the bottom up).

    A join qualifies when it joins ``on`` the same columns, its table adds columns the left
    side lacks, and the groupby's values are the left side's.
    """
    values = {col for _, col, _ in plan if col is not None}
    names = {p for p, _, _ in plan}
    joins, tables, levels = [], [], [list(by)]
    while (join := frame._join) is not None:
        on = join.kwargs["left_on"]
        left = set(join.left._meta.columns)
        right = set(join.right._meta.columns) - set(on)
        keys = levels[-1]
        if (
            join.kwargs["right_on"] != on
            or left & right
            or (right | set(keys)) & names
            or not values <= left
            or not set(keys) <= left | right
        ):
            break
        joins.append(join.kwargs)
        tables.append(join.right)
        levels.append(list(dict.fromkeys([*(k for k in keys if k in left), *on])))
        frame = join.left
    return frame, joins[::-1], tables[::-1], levels[::-1]


def _regroup(parts: list, nlevels: int, how: dict, sort: bool, dense: bool) -> pd.DataFrame:
    """Partials concatenated and re-grouped by their index (in key order when ``sort``, else
    in the order groups first appear); with ``dense``, partials that only add up may take the
    dense path, which lists groups in key order."""
    df = concat(parts)
    names = list(df.index.names)
    if dense and set(how.values()) == {"sum"} and None not in names and not set(names) & set(how):
        out = _dense_chunk(df.reset_index(), names, False, [(p, p, "sum") for p in how])
        if out is not None:
            return out
    level = 0 if nlevels == 1 else list(range(nlevels))
    return df.groupby(level=level, dropna=False, sort=sort).agg(how)


def groupby_combine(parts: list, nlevels: int, how: dict, sort: bool) -> pd.DataFrame:
    return _regroup(parts, nlevels, how, sort=False, dense=sort)


def _statistics(df: pd.DataFrame, outputs: list, flat: bool) -> pd.DataFrame:
    """The requested statistics from the final partials (``mean = sum / count``)."""
    columns = {}
    for label, func, names in outputs:
        if func == "mean":
            columns[label] = df[names[0]] / df[names[1]]
        else:
            columns[label] = df[names[0]]
    out = pd.DataFrame(columns, index=df.index)
    labels = [label for label, _, _ in outputs]
    out.columns = pd.Index(labels) if flat else pd.MultiIndex.from_tuples(labels)
    return out


def groupby_aggregate(
    parts: list, nlevels: int, how: dict, outputs: list, sort: bool, flat: bool
) -> pd.DataFrame:
    return _statistics(_regroup(parts, nlevels, how, sort=sort, dense=sort), outputs, flat)


def join_groupby_aggregate(
    parts_and_tables: list, joins: list, keys: list, dropna: bool, how: dict, outputs: list,
    flat: bool,
) -> pd.DataFrame:  # fmt: skip
    """The final step of a sorted groupby aggregated below broadcast joins: the partials by
    ``keys[0]`` (the frame's own keys and the join keys) are re-grouped, then each merge (kwargs
    ``joins``) with its table joins them, re-grouped by ``keys[j + 1]``. Sizes, counts, sums,
    minima and maxima combine over a join's matches as over its rows, so the joins meet one row
    per group rather than every row."""
    parts, *tables = parts_and_tables
    out = _regroup(parts, len(keys[0]), how, sort=True, dense=True)
    for j, (table, merge_kwargs) in enumerate(zip(tables, joins, strict=True)):
        merged = pd.merge(out.reset_index(), table, **merge_kwargs)
        last = j == len(joins) - 1  # only the groupby's own keys drop nulls
        out = merged.groupby(keys[j + 1], dropna=dropna and last, sort=last).agg(how)
    return _statistics(out, outputs, flat)


class GroupBy:
    """Groups of a DataFrame by key columns; ``[cols]`` selects what to aggregate."""

    def __init__(
        self,
        frame: DataFrame,
        by: Any,
        *,
        dropna: bool = True,
        sort: bool = True,
        selection: Any = None,
    ) -> None:
        self.frame = frame
        self.by = as_column_list(by)
        if not self.by:
            raise ValueError("groupby needs at least one key column")
        check_columns(frame._meta, self.by, "groupby")
        self.dropna = dropna
        self.sort = sort
        self.selection = selection

    def __getitem__(self, columns: Any) -> GroupBy:
        check_columns(self.frame._meta, as_column_list(columns), "groupby selection")
        return GroupBy(self.frame, self.by, dropna=self.dropna, sort=self.sort, selection=columns)

    def __getattr__(self, key: str) -> GroupBy:
        if key.startswith("_") or key not in self.frame._meta.columns:
            raise AttributeError(f"GroupBy has no attribute or column {key!r}")
        return self[key]

    def _value_columns(self) -> list:
        if self.selection is not None:
            return as_column_list(self.selection)
        return [c for c in self.frame._meta.columns if c not in self.by]

    def agg(self, spec: Any, split_every: int | None = None) -> DataFrame:
        """Aggregate with ``spec``: ``{column: func or [funcs]}``, a func name, or a list.

        Funcs are sum, mean, count, size, min and max.
        """
        return self._agg(spec, split_every)

    def _agg(self, spec: Any, split_every: int | None, meta: Any = None) -> DataFrame:
        meta_frame = self.frame._meta
        if isinstance(spec, dict):
            spec = dict(spec)
        elif isinstance(spec, str | list | tuple):
            spec = dict.fromkeys(self._value_columns(), spec)
        else:
            raise TypeError(f"agg spec must be a dict, a function name or a list, not {spec!r}")
        check_columns(meta_frame, list(spec), "agg")
        flat = all(isinstance(f, str) for f in spec.values())
        partials: dict[tuple, str] = {}
        outputs = []
        for col, funcs in spec.items():
            for func in [funcs] if isinstance(funcs, str) else list(funcs):
                if func not in SUPPORTED:
                    raise ValueError(
                        f"agg: unsupported function {func!r} for column {col!r}; "
                        f"supported: {', '.join(SUPPORTED)}"
                    )
                dtype = meta_frame[col].dtype
                if func in ("sum", "mean") and not pd.api.types.is_numeric_dtype(dtype):
                    raise TypeError(
                        f"agg: cannot {func} column {col!r} of dtype {dtype}; it is not numeric"
                    )
                names = []
                for stat in _PARTIALS[func]:
                    pkey = (None, "size") if stat == "size" else (col, stat)
                    if pkey not in partials:
                        partials[pkey] = f"p{len(partials)}"
                    names.append(partials[pkey])
                outputs.append((col if flat else (col, func), func, names))
        plan = [(p, col, stat) for (col, stat), p in partials.items()]
        how = {p: _COMBINE[stat] for p, _, stat in plan}
        if meta is None:
            try:
                meta = meta_frame.groupby(self.by, dropna=self.dropna, sort=self.sort).agg(spec)
            except Exception as e:
                dtypes = {c: str(t) for c, t in meta_frame.dtypes.items()}
                raise TypeError(f"agg {spec!r} on columns {dtypes}: {e}") from e
        # only a sorted groupby goes below joins: the order groups first appear in is lost there
        frame, joins, tables, levels = (
            _below_joins(self.frame, self.by, plan) if self.sort else (self.frame, [], [], [])
        )
        if joins:  # grouped by the keys below the joins; the final step joins the groups
            by, dropna = levels[0], False
            aggregate, aggregate_kwargs = join_groupby_aggregate, {
                "joins": joins, "keys": levels, "dropna": self.dropna, "how": how,
                "outputs": outputs, "flat": flat,
            }  # fmt: skip
        else:
            by, dropna = self.by, self.dropna
            aggregate, aggregate_kwargs = groupby_aggregate, {
                "nlevels": len(by), "how": how, "outputs": outputs, "sort": self.sort,
                "flat": flat,
            }  # fmt: skip
        result = tree_reduce(
            frame,
            groupby_chunk, {"by": by, "dropna": dropna, "partials": plan, "sort": self.sort},
            groupby_combine, {"nlevels": len(by), "how": how, "sort": self.sort},
            aggregate, aggregate_kwargs,
            meta=meta, op="groupby-agg", split_every=split_every, broadcast=tables,
        )  # fmt: skip
        return result

    def _single(self, func: str, split_every: int | None) -> Any:
        result = self.agg(func, split_every=split_every)
        if self.selection is not None and not isinstance(self.selection, list | tuple):
            return partitionwise(
                getitem, result, self.selection, meta=result._meta[self.selection], op="getitem"
            )
        return result

    def sum(self, split_every: int | None = None) -> Any:
        return self._single("sum", split_every)

    def mean(self, split_every: int | None = None) -> Any:
        return self._single("mean", split_every)

    def count(self, split_every: int | None = None) -> Any:
        return self._single("count", split_every)

    def min(self, split_every: int | None = None) -> Any:
        return self._single("min", split_every)

    def max(self, split_every: int | None = None) -> Any:
        return self._single("max", split_every)

    def size(self, split_every: int | None = None) -> Series:
        """Rows per group, as a Series (pandas' ``groupby(...).size()``)."""
        col = self.by[0]
        meta = self.frame._meta.groupby(self.by, dropna=self.dropna, sort=self.sort).size()
        result = self._agg({col: "size"}, split_every, meta=meta.to_frame(col))
        return partitionwise(getitem, result, col, meta=meta, op="size").rename(meta.name)
