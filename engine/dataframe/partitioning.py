"""Where each row goes, and how a partition is split and put back together.

Shared by every shuffle implementation (``engine.dataframe.shuffle`` and its ``tasks``
shuffle; ``engine.dataframe.p2p``), which import it; it imports neither.

- A row's target partition is ``hash(on) % npartitions``. The hash is stable across processes
  and equal for values pandas treats as equal keys: integers and booleans of any width hash as
  int64, floats as float64 with ``-0.0`` as ``0.0``, datetimes as int64 nanoseconds, strings
  the same whether ``object`` or ``str``; every null (None, NaN, NaT, NA) hashes to one
  constant, so null keys meet in one partition. Columns combine with a multiply-xor.
- A partition is split once: a stable argsort of its targets, one ``take`` per column, then
  slices (not one boolean mask per target). A shard is ``(index, [column arrays])``, not a
  DataFrame, and `concat_shards` rebuilds pandas' blocks from them: per-frame pandas overhead
  would otherwise dominate small partitions. `split_columns` cuts one shard per target (the
  ``tasks`` shuffle); `PartitionSplit` cuts one piece per list of targets (the ``p2p``
  shuffle: a piece per destination worker). `split_by_targets` is the same split into
  DataFrames (the pandas baseline of the overhead ratio). Within an output partition rows keep
  the order of their source partitions, and sources keep their row order, so every row
  arrives exactly once and the result is deterministic.
- Object columns of strings travel as Arrow arrays, except columns of a few repeated objects,
  which pickle sends once each (`_encode_strings`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pandas.api.internals import create_dataframe_from_blocks
from pandas.util import hash_array, hash_pandas_object
from taskbench.engine.dataframe.core import as_column_list

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


def _target_order(targets: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(a stable argsort of ``targets``, the end of each target's run in it)."""
    small = targets.astype(np.int16 if n <= np.iinfo(np.int16).max else np.int32)
    order = np.argsort(small, kind="stable")  # a radix sort on int16
    return order, np.cumsum(np.bincount(targets, minlength=n))


def split_by_targets(df: pd.DataFrame, targets: np.ndarray, n: int) -> list[pd.DataFrame]:
    """``n`` frames; frame j holds the rows whose target is j, in their original order."""
    if n == 1:
        return [df]
    order, ends = _target_order(targets, n)
    taken = df.take(order)
    out = []
    start = 0
    for end in ends.tolist():
        out.append(taken.iloc[start:end])
        start = end
    return out


def partition_by_hash(df: pd.DataFrame, on: Any, npartitions: int) -> list[pd.DataFrame]:
    """Hash-partition one in-memory frame into ``npartitions`` frames: the pandas baseline."""
    on = as_column_list(on)
    return split_by_targets(df, hash_targets(df, npartitions, None, on), npartitions)


# ---------------------------------------------------------------- splitting


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


def check_partition_columns(df: pd.DataFrame, columns: pd.Index) -> None:
    if not df.columns.equals(columns):
        raise ValueError(
            f"a partition has columns {list(df.columns)}, but the collection's meta has "
            f"{list(columns)}; pass the right meta= where the partitions were made"
        )


#: Values of an object column sampled to tell a column of a few repeated objects.
_SAMPLE = 256


def _distinct_objects(values: Any) -> bool:
    """An object array of mostly distinct objects (in a sample): not a few repeated ones."""
    if not (isinstance(values, np.ndarray) and values.dtype == object):
        return False
    sample = values[:: max(1, len(values) // _SAMPLE)][:_SAMPLE]
    return len(sample) < 16 or len({id(v) for v in sample}) * 8 > len(sample)


def _to_arrow(values: np.ndarray) -> Any:
    """An object array of str (and None) as an Arrow string array; None if it holds more."""
    try:
        arrow = pa.array(values)  # all str: string; any bytes: binary; anything else raises
    except (pa.ArrowException, TypeError, ValueError):
        return None
    return arrow if arrow.type == pa.string() else None


def _encode_strings(values: Any) -> Any:
    """An object array of str (and None) as an Arrow string array, else None.

    Pickling Python strings one by one costs ~0.3 s per million; Arrow converts both ways in
    ~0.1 s and travels as plain buffers. Two kinds of column stay with pickle: one of a few
    repeated objects (flags, codes), where pickle's memo sends each object once and the
    receiver shares them, several times cheaper than Arrow both ways; and one holding NaN,
    bytes or other objects, so the round trip is exact.
    """
    return _to_arrow(values) if _distinct_objects(values) else None


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
    order, ends = _target_order(targets, n)
    index = df.index.take(order)
    taken = [a.take(order) if e is None else None for a, e in zip(arrays, encoded, strict=True)]
    shards = []
    start = 0
    for end in ends.tolist():
        rows = pa.array(order[start:end]) if any(e is not None for e in encoded) else None
        columns = [
            a[start:end] if e is None else e.take(rows) for a, e in zip(taken, encoded, strict=True)
        ]
        shards.append((index[start:end], columns))
        start = end
    return shards


def piece_rows(piece: tuple, start: int, stop: int) -> tuple[pd.Index, list]:
    """Rows ``start:stop`` of a `PartitionSplit` piece: ``(index, [column arrays])`` (views)."""
    index, arrays = piece
    return index[start:stop], [values[start:stop] for values in arrays]


class PartitionSplit:
    """One partition ordered by target once; the rows of any list of targets as one piece.

    A piece is ``(index, [column arrays])``: the rows of its targets, target after target, each
    in row order (`piece_rows` reads a run of them), cut with one take per column, not one per
    target. A piece cut to travel (``wire``) carries object columns of strings as Arrow arrays
    when ``encode_strings`` (see `_encode_strings`), converted for its own rows only, in row
    order before the take (twice as fast as after it at 300k rows); a piece that stays shares
    the input's string objects. Pieces are copies, even of a partition that stays held: one
    gather of all of a piece's rows uses every cache line it reads, where a take per target at
    the unpack would read each line again for every target (twice the unpack's time at 10M).
    """

    def __init__(
        self, df: pd.DataFrame, targets: np.ndarray, n: int, encode_strings: bool = True
    ) -> None:
        self.index = df.index
        self.arrays = _column_arrays(df)
        self.order, self.ends = _target_order(targets, n)
        self.encode_strings = encode_strings
        # a rough size of a row as it travels: 64 bytes for a Python object
        self.row_bytes = sum(
            (64 if a.dtype == object else a.itemsize)
            if isinstance(a, np.ndarray)
            else a.nbytes / max(len(a), 1)
            for a in self.arrays
        )

    def count(self, j: int) -> int:
        """The rows of target ``j``."""
        return int(self.ends[j]) - (int(self.ends[j - 1]) if j else 0)

    def rows(self, targets: list[int]) -> np.ndarray:
        """The positions of the rows of ``targets``, target after target."""
        runs = [self.order[int(self.ends[j]) - self.count(j) : int(self.ends[j])] for j in targets]
        return np.concatenate(runs) if len(runs) > 1 else runs[0] if runs else self.order[:0]

    def piece(self, targets: list[int], wire: bool = False) -> tuple[pd.Index, list]:
        """The rows of ``targets``, target after target; ``wire``: cut to travel."""
        rows = self.rows(targets)
        encode = wire and self.encode_strings
        columns = []
        positions = None
        for values in self.arrays:
            arrow = None
            if encode and _distinct_objects(values):
                if positions is None:
                    subset, positions = self._subset(rows)
                arrow = _to_arrow(values if subset is None else values[subset])
            columns.append(values.take(rows) if arrow is None else arrow.take(positions))
        return self.index.take(rows), columns

    def _subset(self, rows: np.ndarray) -> tuple[np.ndarray | None, pa.Array]:
        """(a mask of ``rows`` in row order, or None for all; where each row is within it)."""
        if len(rows) == len(self.order):
            return None, pa.array(rows)
        mask = np.zeros(len(self.order), dtype=bool)
        mask[rows] = True
        return mask, pa.array((np.cumsum(mask) - 1)[rows])


def _decode_strings(parts: list) -> list:
    """The parts of one column, Arrow string arrays turned back into object arrays."""
    if not any(isinstance(p, pa.Array) for p in parts):
        return parts
    if all(isinstance(p, pa.Array) for p in parts):
        return [pa.concat_arrays(parts).to_numpy(zero_copy_only=False)]
    return [p.to_numpy(zero_copy_only=False) if isinstance(p, pa.Array) else p for p in parts]


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
