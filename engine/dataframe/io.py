"""Constructors: ``from_pandas``, ``read_parquet`` (pyarrow), ``read_csv`` (byte ranges).

Policy:

- ``from_pandas`` cuts the frame into ``npartitions`` runs of rows as equal as possible (empty
  ones when there are fewer rows), held in the graph as data.
- ``read_parquet`` makes one partition per row group (or per file), reads only the needed
  columns, and pushes ``filters`` (pyarrow's DNF list) into pyarrow twice: row groups whose
  statistics rule them out get no partition at all, and rows are filtered as each row group is
  read. Without a stored pandas index, a row's index is its position in the dataset (files in
  sorted order) before filtering, so an unfiltered read has pandas' index. The meta comes from
  the Arrow schema, so dtypes are those of ``pd.read_parquet``. A file's parsed footer is kept
  (`_footer`) while its size and modification time stay the same, so building a graph over
  files read before (a pushed-down projection or filter) opens none of them.
- ``read_csv`` cuts each file into ``blocksize`` byte ranges. A block owns the lines that
  *start* inside it: it skips the partial line at its start and reads on past its end to
  finish its last line, and is parsed with the file's header line prepended. Quoted fields
  that contain newlines are not supported with ``blocksize``. Each block gets its own
  RangeIndex. A block whose dtypes differ from the meta (read from the file's head) is cast
  to them, or raises an error that names the column and suggests ``dtype=``.
"""

from __future__ import annotations

import functools
import glob
import io as _io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from taskbench.engine.dataframe.core import (
    DataFrame,
    apply_kwargs,
    check_columns,
    check_npartitions,
    new_collection,
    new_name,
)
from taskbench.engine.dataframe.optimize import NARROWERS, Blockwise
from taskbench.engine.dataframe.stats import PartitionStats, ReadSource, row_group_stats

PathLike = str | os.PathLike[str]

# ---------------------------------------------------------------- from_pandas


def from_pandas(data: pd.DataFrame | pd.Series, npartitions: int) -> Any:
    """A collection of ``npartitions`` runs of rows of ``data`` (kept in the graph)."""
    if not isinstance(data, pd.DataFrame | pd.Series):
        raise TypeError(f"from_pandas needs a pandas DataFrame or Series, not {type(data)}")
    n = check_npartitions(npartitions)
    name = new_name("from-pandas")
    rows = len(data)
    bounds = [rows * i // n for i in range(n + 1)]
    layer = {(name, i): data.iloc[bounds[i] : bounds[i + 1]] for i in range(n)}
    return new_collection(name, {name: layer}, n, data.iloc[:0], align=name)


def from_map(func: Any, iterable: Sequence[Any], meta: Any = None, **kwargs: Any) -> Any:
    """One partition per item: partition i is ``func(items[i], **kwargs)``, run on the cluster.

    Without ``meta``, it is ``func(items[0], **kwargs).iloc[:0]``, computed here.
    """
    items = list(iterable)
    if not items:
        raise ValueError("from_map needs at least one item")
    if meta is None:
        meta = func(items[0], **kwargs).iloc[:0]
    op = getattr(func, "__name__", "from-map").strip("_<>").replace("_", "-") or "from-map"
    name = new_name(op if op.replace("-", "").isalnum() else "from-map")
    layer = {(name, i): (apply_kwargs, func, item, kwargs) for i, item in enumerate(items)}
    return new_collection(name, {name: Blockwise(layer)}, len(items), meta, align=name)


# ---------------------------------------------------------------- parquet


def _expand_paths(paths: PathLike | Sequence[PathLike], suffixes: tuple[str, ...]) -> list[str]:
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    out: list[str] = []
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            found = sorted(
                str(f) for f in Path(p).rglob("*") if f.is_file() and f.name.endswith(suffixes)
            )
            if not found:
                raise FileNotFoundError(f"no {'/'.join(suffixes)} files under {p}")
            out.extend(found)
        elif any(c in p for c in "*?["):
            found = sorted(glob.glob(p))
            if not found:
                raise FileNotFoundError(f"no files match {p}")
            out.extend(found)
        elif os.path.exists(p):
            out.append(p)
        else:
            raise FileNotFoundError(f"no such file or directory: {p}")
    return out


def _filter_columns(filters: Any) -> list[str]:
    """Column names used by a DNF filter list (``[(col, op, value), ...]`` or a list of those)."""
    if not filters:
        return []
    groups = filters if isinstance(filters[0], list) else [filters]
    return list(dict.fromkeys(term[0] for group in groups for term in group))


#: pyarrow compute functions of the DNF comparison operators (``filters_to_expression``'s)
_COMPARE = {"=": "equal", "==": "equal", "!=": "not_equal", "<": "less", ">": "greater",
            "<=": "less_equal", ">=": "greater_equal"}  # fmt: skip


def _filter_mask(table: Any, filters: Any) -> np.ndarray:
    """Which rows of ``table`` pass the DNF ``filters``: the kernels and Kleene logic of
    ``pq.filters_to_expression``, evaluated on the table directly (``Table.filter`` with an
    expression plans a query for it, three times slower on one row group); null is no."""
    import pyarrow as pa
    import pyarrow.compute as pc

    groups = filters if isinstance(filters[0], list) else [filters]
    passed = None
    for group in groups:
        both = None
        for column, op, value in group:
            values = table.column(column)
            if op in ("in", "not in"):
                term = pc.is_in(values, value_set=pa.array(list(value)))
                term = pc.invert(term) if op == "not in" else term
            elif op in _COMPARE:
                term = pc.call_function(_COMPARE[op], [values, pa.scalar(value)])
            else:
                raise ValueError(f"filter ({column!r}, {op!r}, …): unknown operator {op!r}")
            both = term if both is None else pc.and_kleene(both, term)
        passed = both if passed is None else pc.or_kleene(passed, both)
    return pc.fill_null(passed, False).to_numpy(zero_copy_only=False)


def read_row_group(
    path: str,
    row_group: int | None,
    columns: list | None,
    read_columns: list | None,
    filters: Any,
    offset: int,
) -> pd.DataFrame:
    """One row group (or the whole file when ``row_group`` is None) as pandas."""
    import pyarrow.parquet as pq

    f = pq.ParquetFile(path)
    if row_group is None:
        table = f.read(columns=read_columns)
    else:
        table = f.read_row_group(row_group, columns=read_columns)
    positions = None
    if filters:
        positions = np.flatnonzero(_filter_mask(table, filters))
        table = table.take(positions)
        positions += offset
    if columns is not None:
        table = table.select(columns)
    df = table.to_pandas()
    if isinstance(df.index, pd.RangeIndex):
        if positions is None:
            df.index = pd.RangeIndex(offset, offset + len(df))
        else:
            df.index = pd.Index(positions)
    return df


def _narrow_read(task: tuple, needed: set) -> tuple:
    """The same row group read, of only the ``needed`` columns (and its filters' columns)."""
    func, path, row_group, columns, _read_columns, filters, offset = task
    if columns is None:
        return task
    keep = [c for c in columns if c in needed] or columns[:1]  # one column still counts rows
    read = list(dict.fromkeys([*keep, *_filter_columns(filters)]))
    return (func, path, row_group, keep, read, filters, offset)


NARROWERS[read_row_group] = _narrow_read


def _footer(path: str) -> tuple[Any, Any]:
    """``path``'s parquet metadata and its dataset fragment (which keeps the row groups'
    statistics once parsed), as of the file's current size and modification time."""
    st = os.stat(path)
    return _parsed_footer(path, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=1024)
def _parsed_footer(path: str, size: int, mtime_ns: int) -> tuple[Any, Any]:
    import pyarrow.dataset as ds
    import pyarrow.fs as fs
    import pyarrow.parquet as pq

    metadata = pq.read_metadata(path)
    fragment = ds.ParquetFileFormat().make_fragment(path, filesystem=fs.LocalFileSystem())
    fragment.ensure_complete_metadata()
    return metadata, fragment


def read_parquet(
    paths: PathLike | Sequence[PathLike],
    columns: list | None = None,
    filters: Any = None,
    *,
    split_row_groups: bool = True,
) -> DataFrame:
    """Parquet files (or directories of them) as a DataFrame, one partition per row group."""
    import pyarrow.parquet as pq

    files = _expand_paths(paths, (".parquet", ".parq", ".pq"))
    schema = _footer(files[0])[0].schema.to_arrow_schema()
    meta_all = schema.empty_table().to_pandas()
    if columns is not None:
        columns = list(columns)
        check_columns(meta_all, columns, "read_parquet columns")
    if filters:
        check_columns(meta_all, _filter_columns(filters), "read_parquet filters")
        expression = pq.filters_to_expression(filters)
    else:
        expression = None
    read_columns = None
    if columns is not None:
        read_columns = list(dict.fromkeys([*columns, *_filter_columns(filters)]))
    meta = meta_all if columns is None else meta_all[columns]

    name = new_name("read-parquet")
    layer: dict = {}
    stats: list = []  # per partition: rows (unless filtered) and the columns' min/max
    offset = 0
    for path in files:
        md, fragment = _footer(path)
        starts = np.concatenate(
            [[0], np.cumsum([md.row_group(i).num_rows for i in range(md.num_row_groups)])]
        ).tolist()
        if split_row_groups:
            if expression is not None:
                kept = [
                    rg.id
                    for piece in fragment.split_by_row_group(expression, schema=schema)
                    for rg in piece.row_groups
                ]
            else:
                kept = list(range(md.num_row_groups))
            for rg in kept:
                if not md.row_group(rg).num_rows:
                    continue
                layer[(name, len(layer))] = (
                    read_row_group, path, rg, columns, read_columns, filters, offset + starts[rg],
                )  # fmt: skip
                found = row_group_stats(md.row_group(rg), list(meta.columns))
                stats.append(found if not filters else PartitionStats(None, found.columns))
        elif md.num_rows:
            layer[(name, len(layer))] = (
                read_row_group, path, None, columns, read_columns, filters, offset,
            )  # fmt: skip
            stats.append(PartitionStats(None if filters else md.num_rows, {}))
        offset += md.num_rows
    if not layer:
        layer[(name, 0)] = meta
        stats.append(PartitionStats(0, {}))
    frame = new_collection(name, {name: Blockwise(layer)}, len(layer), meta, align=name)
    frame._stats = tuple(stats)
    frame._source = ReadSource(tuple(files), None if columns is None else tuple(columns), filters,
                               read_parquet)  # fmt: skip
    return frame


# ---------------------------------------------------------------- csv


def read_csv_block(
    path: str, start: int, end: int, header: bytes, kwargs: dict, meta: pd.DataFrame
) -> pd.DataFrame:
    """The lines that start in bytes [start, end) of ``path``, parsed with ``header`` first."""
    with open(path, "rb") as f:
        if start > 0:
            f.seek(start - 1)
            if f.read(1) != b"\n":
                f.readline()  # the partial line belongs to the previous block
        begin = f.tell()
        data = f.read(max(end - begin, 0)) if begin < end else b""
        if data and not data.endswith(b"\n"):
            data += f.readline()  # finish the last line that starts before `end`
    if start == 0:
        data = data[len(header) :] if header else data
    if not data.strip():
        return meta.copy()
    df = pd.read_csv(_io.BytesIO(header + data), **kwargs)
    return _conform(df, meta, path, start, end)


def _conform(df: pd.DataFrame, meta: pd.DataFrame, path: str, start: int, end: int):
    if list(df.columns) != list(meta.columns):
        raise ValueError(
            f"read_csv: bytes {start}-{end} of {path} have columns {list(df.columns)}, "
            f"expected {list(meta.columns)}"
        )
    for col in meta.columns:
        want, got = meta[col].dtype, df[col].dtype
        if want == got:
            continue
        lossy = pd.api.types.is_integer_dtype(want) and pd.api.types.is_float_dtype(got)
        try:
            if lossy:
                raise ValueError("integer column holds missing or fractional values")
            df[col] = df[col].astype(want)
        except (ValueError, TypeError) as e:
            raise ValueError(
                f"read_csv: column {col!r} is {got} in bytes {start}-{end} of {path} but {want} "
                f"in the file's first rows ({e}); pass dtype={{{col!r}: ...}} to read_csv"
            ) from e
    return df


def read_csv(
    paths: PathLike | Sequence[PathLike],
    blocksize: int | None = 64 * 2**20,
    sample_rows: int = 1000,
    **kwargs: Any,
) -> DataFrame:
    """CSV files as a DataFrame: one partition per ``blocksize`` bytes (per file if None)."""
    files = _expand_paths(paths, (".csv", ".txt"))
    for bad in ("skiprows", "nrows", "skipfooter", "chunksize", "iterator"):
        if bad in kwargs:
            raise ValueError(f"read_csv: {bad}= is not supported on partitioned reads")
    if kwargs.get("compression") not in (None, "infer") or any(
        f.endswith((".gz", ".bz2", ".xz", ".zst", ".zip")) for f in files
    ):
        raise ValueError("read_csv: compressed files cannot be split into byte ranges")
    if blocksize is not None:
        blocksize = check_npartitions(blocksize, "blocksize")
    has_header = kwargs.get("header", "infer") not in (None,)
    meta = pd.read_csv(files[0], nrows=sample_rows, **kwargs).iloc[:0]
    name = new_name("read-csv")
    layer: dict = {}
    for path in files:
        size = os.path.getsize(path)
        header = b""
        if has_header:
            with open(path, "rb") as f:
                header = f.readline()
        step = size if blocksize is None else blocksize
        starts = list(range(0, size, max(step, 1))) or [0]
        for start in starts:
            end = min(start + step, size) if size else 0
            layer[(name, len(layer))] = (read_csv_block, path, start, end, header, kwargs, meta)
    return new_collection(name, {name: Blockwise(layer)}, len(layer), meta, align=name)
