"""Fast size estimates, in bytes, of task results.

Workers call `sizeof` after every task, so it sits on the hot path between tasks. Policy:

- Dispatch on ``type(obj)`` through an exact-type cache, else an MRO walk over the registered
  handlers. numpy, pandas and pyarrow handlers are registered lazily, the first time a type from
  that package is seen: importing this module imports none of them. `register` adds handlers.
- Exact where the bytes live in buffers: builtin scalars, str and bytes via ``sys.getsizeof``;
  memoryview and numpy via ``nbytes`` (a stride-0 broadcast axis counted once); pyarrow via
  ``get_total_buffer_size()``, which counts each referenced buffer once and ignores slice
  offsets: a slice reports the parent buffers it keeps alive, which is also what pickle sends
  (``nbytes`` would report the sliced extent, double-count repeated chunks, and is 10x slower);
  pandas numeric, datetime, masked, categorical-code and arrow columns from those arrays, plus
  the index.
- Sampled, never scanned, where the values are Python objects (numpy object arrays, pandas
  object and ``string[python]`` columns). Per column of n values, take k = 32 values, one per
  stratum of n/k rows at a fixed offset within it (drawn once from an LCG seeded with 42, so
  periodic data does not alias; k = max(256 // columns, 8) in pandas blocks of more than 8
  object columns), and estimate ``n * (max(q90, mean + 3 * sd / sqrt(k)) + 8)`` from the
  ``sys.getsizeof`` of the sampled values: the larger of their 90th percentile and a
  3-standard-error upper bound on their mean, plus one 8-byte pointer per value. Columns with
  n <= k are summed exactly. Values rarer than about 1 in k can be missed: the price of not
  scanning.
- list, tuple, set, frozenset, dict: the container plus len x the mean size of at most 10 items
  (one per stratum for sequences, the first 10 for sets and dicts); nesting is followed 3 deep,
  deeper items count ``sys.getsizeof`` only.
- Anything else: ``sys.getsizeof``. A handler that raises falls back to it, so `sizeof` never
  raises (pandas objects fall back to ``object.__sizeof__``: their ``__sizeof__`` is a deep scan).

``set_mode("deep")``, or ``TASKBENCH_SIZEOF=deep`` at import, makes `sizeof` return
`deep_sizeof`, the exact deep size: pandas ``memory_usage(deep=True, index=True)`` (arrow
columns by ``nbytes``), numpy object arrays' buffer plus ``sys.getsizeof`` of every element,
containers recursively; every reference is counted, as pandas does, and cycles end. That scan
is what made dask workers lag ~100 ms between tasks on object frames in 2016; it is kept as a
switch so the suites can reproduce the cost. A ``TASKBENCH_SIZEOF`` that names neither mode
fails the import with a ValueError that names the variable: a typo must not run "sampled".
"""

from __future__ import annotations

import contextlib
import itertools
import math
import operator
import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from taskbench.engine.options import SIZEOF_ENV, SIZEOF_MODES, SizeofMode

Mode = SizeofMode
Handler = Callable[[Any], int]

_MODES = SIZEOF_MODES
_deep = False

_SAMPLES = 32  # sampled values per object column
_MIN_SAMPLES = 8  # per column, in wide object blocks
_BLOCK_SAMPLES = 256  # per object block, once columns x _SAMPLES exceeds it
_SEED = 42  # of the sampling offsets within strata
_ITEM_SAMPLES = 10  # per Python container
_MAX_DEPTH = 3
_CACHE_LIMIT = 4096

_getsizeof = sys.getsizeof

_handlers: dict[type, Handler] = {}
_deep_handlers: dict[type, Handler] = {}
_user: dict[type | str, Handler] = {}
_cache: dict[type, Handler] = {}
_deep_cache: dict[type, Handler] = {}
_offsets_cache: dict[int, list[float]] = {}
_lock = threading.RLock()


def sizeof(obj: object) -> int:
    """Size of ``obj`` in bytes, estimated under the module's policy; never raises."""
    if _deep:
        return deep_sizeof(obj)
    try:
        typ = type(obj)
        return (_cache.get(typ) or _resolve(typ, deep=False))(obj)
    except Exception:
        return _fallback(obj)


def deep_sizeof(obj: object) -> int:
    """Exact deep size of ``obj`` in bytes (what deep mode returns); never raises."""
    try:
        typ = type(obj)
        return (_deep_cache.get(typ) or _resolve(typ, deep=True))(obj)
    except Exception:
        return _fallback(obj)


def set_mode(mode: Mode) -> None:
    """Switch every `sizeof` call in this process to ``"sampled"`` or ``"deep"``."""
    global _deep
    if mode not in _MODES:
        raise ValueError(f"sizeof mode must be one of {_MODES}, got {mode!r}")
    _deep = mode == "deep"


def get_mode() -> Mode:
    """The current process-wide mode."""
    return "deep" if _deep else "sampled"


def register(
    key: type | str, func: Handler | None = None
) -> Handler | Callable[[Handler], Handler]:
    """Use ``func(obj) -> bytes`` for ``key`` (a type, or ``"module.QualName"``) and subclasses.

    It is used in both modes; the result is coerced to int, and a raising ``func`` falls back to
    ``sys.getsizeof``. Without ``func``, returns a decorator.
    """
    if func is None:

        def decorator(f: Handler) -> Handler:
            register(key, f)
            return f

        return decorator

    user_func = func

    def handler(obj: Any) -> int:
        return int(user_func(obj))

    with _lock:
        _user[key] = handler
        _cache.clear()
        _deep_cache.clear()
    return func


def _resolve(typ: type, deep: bool) -> Handler:
    """Walk the MRO: registered by the user (type, then name), then built in (deep, if deep)."""
    with _lock:
        mro = getattr(typ, "__mro__", (typ,))
        for cls in mro:
            loader = _lazy.pop(_package(cls), None)
            if loader is not None:
                with contextlib.suppress(Exception):  # a broken install: types use the fallback
                    loader()
        tables = [_deep_handlers, _handlers] if deep else [_handlers]
        handler = None
        for table in tables:
            for cls in mro:
                handler = _user.get(cls)
                if handler is None and _user:
                    handler = _user.get(f"{cls.__module__}.{getattr(cls, '__qualname__', '')}")
                if handler is None:
                    handler = table.get(cls)
                if handler is not None:
                    break
            if handler is not None:
                break
        if handler is None:
            handler = _shallow if _is_pandas(typ) else _getsizeof
        cache = _deep_cache if deep else _cache
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[typ] = handler
        return handler


def _package(cls: type) -> str:
    return str(getattr(cls, "__module__", "")).partition(".")[0]


def _is_pandas(typ: type) -> bool:
    return any(_package(cls) == "pandas" for cls in getattr(typ, "__mro__", (typ,)))


def _shallow(obj: object) -> int:
    # pandas objects' __sizeof__ is a deep memory_usage scan: never the default for them
    return object.__sizeof__(obj)


def _fallback(obj: object) -> int:
    try:
        return _shallow(obj) if _is_pandas(type(obj)) else _getsizeof(obj)
    except Exception:
        try:
            return _shallow(obj)
        except Exception:
            return 0


# Python builtins ---------------------------------------------------------------------------


def _item_size(item: object, depth: int) -> int:
    typ = type(item)
    handler = _cache.get(typ) or _resolve(typ, deep=False)
    if handler in _COLLECTIONS:
        if depth <= 0:
            return _fallback(item)
        try:
            return handler(item, depth - 1)  # type: ignore[call-arg]
        except Exception:
            return _fallback(item)
    return sizeof(item)


def _offsets(k: int) -> list[float]:
    """k offsets in [0, 1), the same on every call: a 32-bit LCG seeded with _SEED."""
    offsets = _offsets_cache.get(k)
    if offsets is None:
        state, offsets = _SEED, []
        for _ in range(k):
            state = (1664525 * state + 1013904223) % 2**32
            offsets.append(state / 2**32)
        _offsets_cache[k] = offsets
    return offsets


def _strata(n: int, k: int) -> list[int]:
    """One position per stratum of n/k, at its fixed offset: sorted, distinct when n >= k."""
    width = n / k
    return [int((i + u) * width) for i, u in enumerate(_offsets(k))]


def _sample_sequence(seq: list | tuple) -> list:
    n = len(seq)
    if n <= _ITEM_SAMPLES:
        return list(seq)
    return [seq[i] for i in _strata(n, _ITEM_SAMPLES)]


def _sizeof_sequence(seq: list | tuple, depth: int = _MAX_DEPTH) -> int:
    size = _getsizeof(seq)
    sample = _sample_sequence(seq)
    if not sample:
        return size
    items = sum(_item_size(x, depth) for x in sample)
    return size + items * len(seq) // len(sample)


def _sizeof_set(s: set | frozenset, depth: int = _MAX_DEPTH) -> int:
    size = _getsizeof(s)
    sample = list(itertools.islice(s, _ITEM_SAMPLES))
    if not sample:
        return size
    items = sum(_item_size(x, depth) for x in sample)
    return size + items * len(s) // len(sample)


def _sizeof_dict(d: dict, depth: int = _MAX_DEPTH) -> int:
    size = _getsizeof(d)
    sample = list(itertools.islice(d.items(), _ITEM_SAMPLES))
    if not sample:
        return size
    items = sum(_item_size(k, depth) + _item_size(v, depth) for k, v in sample)
    return size + items * len(d) // len(sample)


def _sizeof_memoryview(m: memoryview) -> int:
    return m.nbytes


_COLLECTIONS = frozenset({_sizeof_sequence, _sizeof_set, _sizeof_dict})


def _deep_collection(obj: Any, memo: dict[int, int] | None = None) -> int:
    """Every reference counted, like pandas' deep usage; memoised per container, cycles count 0."""
    if memo is None:
        memo = {}
    key = id(obj)
    if key in memo:
        return memo[key]
    memo[key] = 0
    size = _getsizeof(obj)
    items = itertools.chain.from_iterable(obj.items()) if isinstance(obj, dict) else obj
    for item in items:
        typ = type(item)
        handler = _deep_cache.get(typ) or _resolve(typ, deep=True)
        if handler is _deep_collection:
            size += _deep_collection(item, memo)
        else:
            size += deep_sizeof(item)
    memo[key] = size
    return size


for _typ in (type(None), bool, int, float, complex, str, bytes, bytearray, range):
    _handlers[_typ] = _getsizeof
_handlers[memoryview] = _sizeof_memoryview
for _typ in (list, tuple):
    _handlers[_typ] = _sizeof_sequence
for _typ in (set, frozenset):
    _handlers[_typ] = _sizeof_set
_handlers[dict] = _sizeof_dict
for _typ in (list, tuple, set, frozenset, dict):
    _deep_handlers[_typ] = _deep_collection
_cache.update(_handlers)
_deep_cache.update({t: _deep_handlers.get(t, h) for t, h in _handlers.items()})


# numpy -------------------------------------------------------------------------------------

_positions_cache: dict[tuple[int, int], Any] = {}


def _positions(n: int, k: int) -> Any:
    """k sorted positions in range(n), one per stratum of n/k, as a numpy index array."""
    pos = _positions_cache.get((n, k))
    if pos is None:
        import numpy as np

        pos = np.array(_strata(n, k), dtype=np.intp)
        if len(_positions_cache) >= _CACHE_LIMIT:
            _positions_cache.clear()
        _positions_cache[(n, k)] = pos
    return pos


def _per_value(sizes: list[int]) -> float:
    """Pessimistic bytes per value from a sample: max(q90, mean + 3 standard errors)."""
    k = len(sizes)
    sizes.sort()
    total = sum(sizes)
    mean = total / k
    var = max(sum(map(operator.mul, sizes, sizes)) - total * mean, 0) / (k - 1)
    return max(sizes[int(0.9 * (k - 1))], mean + 3.0 * math.sqrt(var / k))


def _object_rows(rows: Any) -> int:
    """Bytes of a 2-D object array whose rows are columns (a pandas block), row by row."""
    ncols, n = rows.shape
    total = rows.nbytes
    if n == 0 or ncols == 0:
        return total
    k = _SAMPLES
    if ncols * k > _BLOCK_SAMPLES:
        k = max(_BLOCK_SAMPLES // ncols, _MIN_SAMPLES)
    if n <= k:
        for row in rows.tolist():
            total += sum(map(_getsizeof, row))
        return total
    estimate = 0.0
    for row in rows.take(_positions(n, k), axis=1).tolist():
        estimate += _per_value(list(map(_getsizeof, row)))
    return total + int(estimate * n)


def _object_array(a: Any) -> int:
    if a.ndim == 1:
        return _object_rows(a.reshape(1, -1))
    n = a.size
    if n <= _SAMPLES:
        return a.nbytes + sum(map(_getsizeof, a.ravel().tolist()))
    import numpy as np

    sample = a[np.unravel_index(_positions(n, _SAMPLES), a.shape)].tolist()
    return a.nbytes + int(_per_value(list(map(_getsizeof, sample))) * n)


def _sizeof_ndarray(a: Any) -> int:
    if a.dtype.kind == "O":
        return _object_array(a)
    if 0 in a.strides:  # broadcast views: count each stride-0 axis once
        return a[tuple(slice(None) if s else slice(0, 1) for s in a.strides)].nbytes
    return a.nbytes


def _deep_ndarray(a: Any) -> int:
    if a.dtype.kind == "O":
        return a.nbytes + sum(map(_getsizeof, a.ravel().tolist()))
    return _sizeof_ndarray(a)


_ndarray: type | None = None


def _load_numpy() -> None:
    global _ndarray
    import numpy as np

    _ndarray = np.ndarray
    _handlers[np.ndarray] = _sizeof_ndarray
    _deep_handlers[np.ndarray] = _deep_ndarray


# pyarrow -----------------------------------------------------------------------------------


def _arrow_buffers(x: Any) -> int:
    return x.get_total_buffer_size()


def _arrow_nbytes(x: Any) -> int:
    return x.nbytes


def _arrow_buffer(b: Any) -> int:
    return b.size


def _load_pyarrow() -> None:
    import pyarrow as pa

    for cls in (pa.Array, pa.ChunkedArray, pa.Table, pa.RecordBatch):
        exact = _arrow_buffers if hasattr(cls, "get_total_buffer_size") else _arrow_nbytes
        _handlers[cls] = exact
    _handlers[pa.Buffer] = _arrow_buffer


# pandas ------------------------------------------------------------------------------------


def _frame_arrays(df: Any) -> list:
    """The frame's column arrays: its blocks' values (one call per block), else per column."""
    try:
        return [block.values for block in df._mgr.blocks]
    except AttributeError:
        return _frame_arrays_public(df)


def _frame_arrays_public(df: Any) -> list:
    return [column.array for _, column in df.items()]


def _values_size(values: Any) -> int:
    if type(values) is _ndarray and values.ndim == 2 and values.dtype.kind == "O":
        return _object_rows(values)  # an object block: one sample per column
    return sizeof(values)


def _sizeof_frame(df: Any) -> int:
    return sizeof(df.index) + sum(_values_size(v) for v in _frame_arrays(df))


def _sizeof_series(s: Any) -> int:
    try:
        values = s._values
    except AttributeError:
        values = s.array
    return sizeof(s.index) + sizeof(values)


def _sizeof_index(idx: Any) -> int:
    try:
        values = idx._values
    except AttributeError:
        values = idx.array
    return sizeof(values)


def _sizeof_range_index(idx: Any) -> int:
    return idx.nbytes


def _sizeof_multi_index(idx: Any) -> int:
    return sum(sizeof(level) for level in idx.levels) + sum(sizeof(c) for c in idx.codes)


def _sizeof_ndarray_backed(x: Any) -> int:
    return sizeof(x._ndarray)


def _sizeof_arrow_backed(x: Any) -> int:
    return sizeof(x._pa_array)


def _sizeof_categorical(c: Any) -> int:
    try:
        codes = c._codes
    except AttributeError:
        codes = c.codes
    return sizeof(codes) + sizeof(c.categories)


def _sizeof_extension_array(x: Any) -> int:
    return int(x.nbytes)


def _deep_frame(df: Any) -> int:
    return int(df.memory_usage(deep=True, index=True).sum())


def _deep_series(s: Any) -> int:
    return int(s.memory_usage(deep=True, index=True))


def _deep_index(idx: Any) -> int:
    return int(idx.memory_usage(deep=True))


def _deep_extension_array(x: Any) -> int:
    memory_usage = getattr(x, "memory_usage", None)
    return int(memory_usage(deep=True)) if memory_usage is not None else int(x.nbytes)


def _load_pandas() -> None:
    import pandas as pd

    _lazy.pop("numpy", _noop)()  # frames hold numpy blocks

    arrays = pd.arrays
    sampled: dict[Any, Handler] = {
        pd.DataFrame: _sizeof_frame,
        pd.Series: _sizeof_series,
        pd.Index: _sizeof_index,
        pd.RangeIndex: _sizeof_range_index,
        pd.MultiIndex: _sizeof_multi_index,
        pd.Categorical: _sizeof_categorical,
        pd.api.extensions.ExtensionArray: _sizeof_extension_array,
        arrays.ArrowExtensionArray: _sizeof_arrow_backed,
    }
    for name in ("NumpyExtensionArray", "DatetimeArray", "TimedeltaArray", "PeriodArray"):
        cls = getattr(arrays, name, None)
        if cls is not None:
            sampled[cls] = _sizeof_ndarray_backed
    for cls, handler in sampled.items():
        _handlers[cls] = handler
    deep: dict[Any, Handler] = {
        pd.DataFrame: _deep_frame,
        pd.Series: _deep_series,
        pd.Index: _deep_index,
        pd.api.extensions.ExtensionArray: _deep_extension_array,
    }
    for cls, handler in deep.items():
        _deep_handlers[cls] = handler


def _noop() -> None:
    pass


_lazy: dict[str, Callable[[], None]] = {
    "numpy": _load_numpy,
    "pyarrow": _load_pyarrow,
    "pandas": _load_pandas,
}


def mode_from_env(environ: Mapping[str, str] = os.environ) -> Mode | None:
    """The mode ``TASKBENCH_SIZEOF`` names, None when unset; any other value is a ValueError."""
    value = environ.get(SIZEOF_ENV, "")
    mode = value.strip().lower()
    if not mode:
        return None
    if mode not in _MODES:
        raise ValueError(
            f"{SIZEOF_ENV}={value!r} is not a sizeof mode; expected one of {', '.join(_MODES)}"
        )
    return mode  # type: ignore[return-value]


_env_mode = mode_from_env()
if _env_mode is not None:
    set_mode(_env_mode)
