"""Compiled loops of the dense groupby path (`engine.dataframe.groupby`), with numba.

Policy: each kernel is one plain pass over its column, where numpy needs several passes and a
fresh column-sized temporary per pass: coding a float key (bounds, integrality, offsets, the
null slot) and summing a value column with its non-null count per group. They release the
GIL. Each is compiled for the signatures written here when this module is imported, and numba
caches the code on disk: the first process on a machine compiles, the others load it at
import, so no query's first task on a worker pays for compiling (a one-partition query's hot
run may be the first on the other worker).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit
from numba.types import Array, float32, float64, int64

_CODES = int64[:]  # the chunk's own codes; any layout


def _column(dtype: Any) -> Array:
    """A column the kernel reads: any layout (a frame's column may be a strided view),
    read-only (pandas hands out read-only views; a writable array converts to it)."""
    return Array(dtype, 1, "A", readonly=True)


@njit([(_column(float64), int64), (_column(float32), int64)], cache=True, nogil=True)
def float_offsets(values: np.ndarray, limit: int) -> Any:  # pragma: no cover (compiled)
    """``values`` (float) as ``(codes, lo, span, nulls)``: each value's offset from the
    smallest ``lo``, NaN in slot ``span``; None if a value is not integral, every value is
    NaN, or the values span ``limit`` or more."""
    n = len(values)
    lo, hi, nulls = np.inf, -np.inf, 0
    for i in range(n):
        v = values[i]
        if v != v:
            nulls += 1
        elif v != np.floor(v) or v == np.inf or v == -np.inf:
            return None
        else:
            lo = min(lo, v)
            hi = max(hi, v)
    if nulls == n or hi - lo >= limit:
        return None
    span = int(hi - lo) + 1
    codes = np.empty(n, np.int64)
    for i in range(n):
        v = values[i]
        codes[i] = span if v != v else int(v - lo)
    return codes, lo, span, nulls


@njit([(_CODES, int64)], cache=True, nogil=True)
def group_sizes(codes: np.ndarray, slots: int) -> np.ndarray:  # pragma: no cover (compiled)
    """Rows per group ``0..slots-1``."""
    sizes = np.zeros(slots, np.int64)
    for i in range(len(codes)):
        sizes[codes[i]] += 1
    return sizes


@njit([(_CODES, _column(float64), int64)], cache=True, nogil=True)
def group_float_sums(
    codes: np.ndarray, values: np.ndarray, slots: int
) -> Any:  # pragma: no cover (compiled)
    """Per group: the sum of the non-NaN ``values`` and their count."""
    sums = np.zeros(slots, np.float64)
    counts = np.zeros(slots, np.int64)
    for i in range(len(codes)):
        v = values[i]
        if v == v:
            c = codes[i]
            sums[c] += v
            counts[c] += 1
    return sums, counts


@njit([(_CODES, _column(int64), int64)], cache=True, nogil=True)
def group_int_sums(
    codes: np.ndarray, values: np.ndarray, slots: int
) -> np.ndarray:  # pragma: no cover (compiled)
    """Per group: the sum of integer ``values`` in int64 (wrapping as pandas' does)."""
    sums = np.zeros(slots, np.int64)
    for i in range(len(codes)):
        sums[codes[i]] += values[i]
    return sums


@njit([(_CODES, int64)], cache=True, nogil=True)
def compact_offsets(codes: np.ndarray, span: int) -> np.ndarray:  # pragma: no cover (compiled)
    """Renumber offset ``codes`` (``0..span-1``, nulls ``span``) in place to the ranks of the
    offsets present, nulls after them; return the offsets present, in order."""
    seen = np.zeros(span + 1, np.bool_)
    for i in range(len(codes)):
        seen[codes[i]] = True
    rank = np.empty(span + 1, np.int64)
    present = 0
    for v in range(span):
        if seen[v]:
            rank[v] = present
            present += 1
    rank[span] = present
    offsets = np.empty(present, np.int64)
    for v in range(span):
        if seen[v]:
            offsets[rank[v]] = v
    for i in range(len(codes)):
        codes[i] = rank[codes[i]]
    return offsets


_NAT = np.iinfo(np.int64).min  # NaT's integer in a datetime64 array
_EXACT = 2**53  # integers a float64 holds exactly; floor(v / d) is exact below it


@njit([(_column(int64), int64, int64, int64)], cache=True, nogil=True)
def clock_values(
    ticks: np.ndarray, per_step: int, epoch: int, cycle: int
) -> Any:  # pragma: no cover (compiled)
    """``(ticks // per_step + epoch) % cycle`` (floored, as Python's) of each datetime64's
    integer, as int32 (0 for NaT); and whether there was a NaT."""
    out = np.empty(len(ticks), np.int32)
    nat = False
    step, turn = float(per_step), float(cycle)
    for i in range(len(ticks)):
        v = ticks[i]
        if v == _NAT:
            out[i] = 0
            nat = True
        elif -_EXACT < v < _EXACT:  # a float quotient floors exactly here, without idiv
            q = np.floor(v / step) + epoch
            out[i] = int(q - turn * np.floor(q / turn))
        else:
            out[i] = (v // per_step + epoch) % cycle
    return out, nat
