"""``groupby(keys).agg({...})`` as a tree reduction.

Policy: every partition reduces its groups to *partials* (sum, count, size, min, max of the
columns the spec needs); partials are concatenated and re-grouped by their index,
``split_every`` at a time, up a tree; the last step turns partials into the requested
statistics (``mean = sum / count``) and sorts the groups when ``sort=True``, as pandas does.
Null keys are dropped unless ``dropna=False``, in which case they form one group (listed
last). The result is one partition, laid out as pandas lays out ``agg`` with the same spec.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
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


def groupby_chunk(df: pd.DataFrame, by: list, dropna: bool, partials: list) -> pd.DataFrame:
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


def _regroup(parts: list, nlevels: int, how: dict, sort: bool) -> pd.DataFrame:
    df = concat(parts)
    level = 0 if nlevels == 1 else list(range(nlevels))
    return df.groupby(level=level, dropna=False, sort=sort).agg(how)


def groupby_combine(parts: list, nlevels: int, how: dict) -> pd.DataFrame:
    return _regroup(parts, nlevels, how, sort=False)


def groupby_aggregate(
    parts: list, nlevels: int, how: dict, outputs: list, sort: bool, flat: bool
) -> pd.DataFrame:
    df = _regroup(parts, nlevels, how, sort=sort)
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
        nlevels = len(self.by)
        result = tree_reduce(
            self.frame,
            groupby_chunk, {"by": self.by, "dropna": self.dropna, "partials": plan},
            groupby_combine, {"nlevels": nlevels, "how": how},
            groupby_aggregate,
            {"nlevels": nlevels, "how": how, "outputs": outputs, "sort": self.sort, "flat": flat},
            meta=meta, op="groupby-agg", split_every=split_every,
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
