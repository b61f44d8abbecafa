"""engine.sizeof: exact on buffers, sampled and pessimistic on Python objects, never raising."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import taskbench.engine.sizeof as sz
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from taskbench.engine.sizeof import deep_sizeof, get_mode, register, set_mode, sizeof

ALPHABETS = {"ascii": "abcdefghij", "latin1": "àéîõü", "bmp": "€₤₿∑", "astral": "😀🚀🧪"}
STATISTICAL = settings(
    derandomize=True,  # a fixed set of examples: the bounds are statistical, CI must not flake
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(autouse=True)
def _restore_registry():
    user = dict(sz._user)
    yield
    set_mode("sampled")
    sz._user.clear()
    sz._user.update(user)
    sz._cache.clear()
    sz._deep_cache.clear()


def strings(lengths: np.ndarray, alphabet: str = "ascii", seed: int = 0) -> np.ndarray:
    """Distinct-ish strings of the given lengths, as an object array."""
    chars = ALPHABETS[alphabet]
    rng = np.random.default_rng(seed)
    text = "".join(rng.choice(list(chars), int(max(lengths.max(initial=0), 1)) + 64))
    starts = rng.integers(0, 64, len(lengths))
    return np.array([text[s : s + n] for s, n in zip(starts, lengths, strict=True)], dtype=object)


def ordered(lengths: np.ndarray, order: str, rng: np.random.Generator) -> np.ndarray:
    if order == "sorted":
        return np.sort(lengths)
    if order == "reversed":
        return np.sort(lengths)[::-1]
    if order == "periodic":
        return np.resize(lengths[: int(rng.integers(2, 65))], len(lengths))
    return lengths  # drawn i.i.d., so already shuffled


# -- fast paths and import hygiene -------------------------------------------------------------


@pytest.mark.parametrize(
    "obj", [None, True, 0, 2**100, 1.5, 1j, "", "abc" * 100, "€" * 10, b"x" * 99, bytearray(5)]
)
def test_scalars_are_getsizeof(obj):
    assert sizeof(obj) == sys.getsizeof(obj)


def test_memoryview_is_nbytes():
    assert sizeof(memoryview(b"x" * 1000)) == 1000
    assert sizeof(memoryview(np.zeros((10, 10)))[::2]) == 400


def test_import_is_lazy():
    code = (
        "import sys, engine.sizeof as s; s.sizeof([1, 'a', {2: 3}]); "
        "print(sorted(m for m in ('numpy', 'pandas', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- numpy and arrow: exact from buffers -------------------------------------------------------


@pytest.mark.parametrize(
    "dtype", ["f8", "f4", "i8", "u1", "?", "c16", "M8[ns]", "m8[s]", "U7", "S3"]
)
@pytest.mark.parametrize("shape", [(0,), (1,), (1000,), (10, 30), (3, 4, 5)])
def test_numpy_is_nbytes(dtype, shape):
    a = np.zeros(shape, dtype=dtype)
    assert sizeof(a) == deep_sizeof(a) == a.nbytes
    assert sizeof(a.T) == a.nbytes
    assert sizeof(a[..., ::2]) == a[..., ::2].nbytes


def test_numpy_structured_and_broadcast():
    s = np.zeros(100, dtype=[("a", "f8"), ("b", "i4")])
    assert sizeof(s) == s.nbytes
    row = np.arange(10.0)
    assert sizeof(np.broadcast_to(row, (1000, 10))) == row.nbytes  # one copy of the data


def buffer_sum(arr: pa.Array | pa.ChunkedArray) -> int:
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    return sum(b.size for chunk in chunks for b in chunk.buffers() if b is not None)


ARROW = {
    "int64": pa.array(np.arange(1000)),
    "nulls": pa.array([1.5, None] * 500),
    "string": pa.array([f"value-{i}" for i in range(1000)]),
    "large_string": pa.array(["x" * (i % 50) for i in range(1000)], type=pa.large_string()),
    "bool": pa.array([True, False, None] * 100),
    "timestamp": pa.array(np.arange(1000).astype("M8[us]")),
    "dictionary": pa.array(["a", "b", "a"] * 100).dictionary_encode(),
    "list": pa.array([[1, 2], [3], None] * 100),
}


@pytest.mark.parametrize("name", ARROW)
def test_arrow_is_buffer_total(name):
    arr = ARROW[name]
    assert sizeof(arr) == arr.get_total_buffer_size()
    chunked = pa.chunked_array([arr, arr.slice(0, 0)])
    assert sizeof(chunked) == chunked.get_total_buffer_size()
    if name not in ("dictionary", "list"):  # flat layouts: every buffer is in .buffers()
        assert sizeof(arr) == buffer_sum(arr)


def test_arrow_tables_buffers_and_slices():
    table = pa.table({k: v for k, v in ARROW.items() if len(v) == 1000})
    assert sizeof(table) == table.get_total_buffer_size()
    batch = table.to_batches()[0]
    assert sizeof(batch) == batch.get_total_buffer_size()
    buf = pa.py_buffer(b"x" * 4096)
    assert sizeof(buf) == 4096
    # a slice keeps, and pickles, its parent's buffers: counted in full, by design
    arr = ARROW["string"]
    assert sizeof(arr.slice(10, 5)) == sizeof(arr) > arr.slice(10, 5).nbytes
    # a buffer referenced twice is counted once
    assert sizeof(pa.chunked_array([arr, arr])) == sizeof(arr)


# -- pandas: exact on buffers ------------------------------------------------------------------


def typed_frame(n: int = 1000) -> pd.DataFrame:
    rng = np.random.default_rng(42)
    return pd.DataFrame(
        {
            "f8": rng.random(n),
            "i8": rng.integers(0, 9, n),
            "b": rng.random(n) > 0.5,
            "dt": pd.date_range("2020-01-01", periods=n, freq="s"),
            "dtz": pd.date_range("2020-01-01", periods=n, freq="s", tz="Europe/Paris"),
            "td": pd.to_timedelta(np.arange(n), unit="s"),
            "period": pd.period_range("2020-01-01", periods=n, freq="D"),
            "Int64": pd.array(np.where(rng.random(n) > 0.1, rng.integers(0, 9, n), 0), "Int64"),
            "Float64": pd.array(rng.random(n), dtype="Float64"),
            "boolean": pd.array(rng.random(n) > 0.5, dtype="boolean"),
            "i64_arrow": pd.array(np.arange(n), dtype="int64[pyarrow]"),
        },
        index=pd.date_range("2021-01-01", periods=n, freq="min"),
    )


def test_pandas_buffers_are_exact():
    df = typed_frame()
    expected = df.memory_usage(deep=True, index=True).sum()
    assert sizeof(df) == deep_sizeof(df) == expected
    for name, column in df.items():
        assert sizeof(column) == column.memory_usage(deep=True, index=True), name
    assert sizeof(df.index) == df.index.nbytes
    assert sizeof(pd.RangeIndex(10**9)) == pd.RangeIndex(10**9).nbytes


def test_pandas_str_columns_are_arrow_buffers():
    values = [f"item-{i}" for i in range(1000)]
    df = pd.DataFrame({"s": pd.Series(values, dtype="str"), "x": np.ones(1000)})
    assert df["s"].dtype == "str"
    expected = buffer_sum(df["s"].array._pa_array) + 8000 + df.index.nbytes
    assert sizeof(df) == expected


def test_categorical_is_codes_plus_categories():
    """pandas' deep usage also counts a cached hash table of the categories, when one was built;
    sizeof leaves that rebuildable cache out."""
    names = ["red", "green", "blue"]
    codes = np.random.default_rng(0).integers(0, 3, 1000).astype(np.int8)
    cat = pd.Categorical.from_codes(codes, categories=pd.Index(names, dtype=object))
    assert sizeof(cat) == codes.nbytes + 3 * 8 + sum(sys.getsizeof(x) for x in names)
    cat = pd.Categorical.from_codes(codes, categories=pd.Index(names, dtype="str"))
    assert sizeof(cat) == codes.nbytes + buffer_sum(cat.categories.array._pa_array)
    series = pd.Series(cat)
    assert sizeof(series) == sizeof(cat) + series.index.nbytes


def test_multiindex_and_object_index():
    mi = pd.MultiIndex.from_arrays([np.arange(1000) % 7, np.arange(1000) % 13])
    expected = sum(level.nbytes for level in mi.levels) + sum(c.nbytes for c in mi.codes)
    assert sizeof(mi) == expected
    keys = pd.Index(strings(np.full(1000, 10)), dtype=object)
    assert sizeof(pd.Series(np.ones(1000), index=keys)) == 8000 + deep_sizeof(keys)


def test_block_path_matches_public_api_path(monkeypatch):
    rng = np.random.default_rng(1)
    df = typed_frame()
    df["o1"] = strings(rng.integers(0, 60, len(df)), seed=1)
    df["o2"] = pd.array(strings(rng.integers(0, 9, len(df)), seed=2), dtype="string[python]")
    df["s"] = pd.Series(strings(rng.integers(0, 30, len(df)), seed=3), dtype="str", index=df.index)
    blocks = sizeof(df)
    monkeypatch.setattr(sz, "_frame_arrays", sz._frame_arrays_public)
    assert sizeof(df) == blocks
    # objects without a block manager take the public path
    no_mgr = types.SimpleNamespace(items=df.items)
    assert len(sz._frame_arrays(no_mgr)) == df.shape[1]


# -- sampled estimate on Python objects ----------------------------------------------------------


def test_object_columns_are_sampled_not_scanned(monkeypatch):
    calls = []

    class Counted:
        def __sizeof__(self):
            calls.append(1)
            return 100

    def no_deep_scan(*args, **kwargs):
        raise AssertionError("sizeof must not call memory_usage")

    column = np.array([Counted() for _ in range(10_000)], dtype=object)
    each = sys.getsizeof(column[0])  # __sizeof__ plus the GC header
    calls.clear()
    df = pd.DataFrame({"a": column, "b": column, "c": np.ones(10_000)})
    monkeypatch.setattr(pd.DataFrame, "memory_usage", no_deep_scan)
    monkeypatch.setattr(pd.Series, "memory_usage", no_deep_scan)
    assert sizeof(df) == 2 * 10_000 * (each + 8) + 80_000 + df.index.nbytes
    assert len(calls) == 2 * 32


def test_small_object_columns_are_exact():
    column = strings(np.arange(32) * 3)
    assert sizeof(column) == deep_sizeof(column)
    frame = pd.DataFrame({"o": pd.Series(column, dtype=object)})
    assert sizeof(frame) == deep_sizeof(frame)


@STATISTICAL
@given(
    n=st.integers(33, 5000),
    length=st.integers(0, 300),
    spread=st.floats(0.0, 0.1),
    alphabet=st.sampled_from(list(ALPHABETS)),
    seed=st.integers(0, 2**32 - 1),
)
def test_uniform_strings_within_bound(n, length, spread, alphabet, seed):
    """Lengths within +-10% of one another: the estimate is within [-2%, +10%] of exact."""
    rng = np.random.default_rng(seed)
    lo, hi = int(length * (1 - spread)), int(length * (1 + spread))
    column = pd.Series(strings(rng.integers(lo, hi + 1, n), alphabet, seed), dtype=object)
    ratio = sizeof(column) / deep_sizeof(column)
    assert 0.98 <= ratio <= 1.10


@STATISTICAL
@given(
    n=st.integers(100, 5000),
    family=st.sampled_from(["lognormal", "two-lengths"]),
    sigma=st.floats(0.25, 0.75),
    median=st.floats(1, 200),
    long_fraction=st.floats(0.5, 0.95),
    long_extra=st.integers(10, 2000),
    order=st.sampled_from(["shuffled", "sorted", "reversed", "periodic"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_skewed_strings_are_pessimistic(
    n, family, sigma, median, long_fraction, long_extra, order, seed
):
    """Log-normal lengths (sigma <= 0.75) or two lengths up to 100x apart, the long ones at
    least half: the estimate is at least 0.9x the exact size.

    Offline, over 5,000 columns (100-5,000 values) per family and order, this family never
    failed (lowest ratio 0.935). Wider ones do, rarely: about 1 column in 20,000 for log-normal
    sigma <= 1, 4e-3 for sigma <= 1.5, 4e-4 when long values are 30-50% of a column, 4e-3 at
    10% (values rarer than 1 in 32 are missed by design; see the next test).
    """
    rng = np.random.default_rng(seed)
    if family == "lognormal":
        lengths = np.exp(np.log(median) + sigma * rng.standard_normal(n)).astype(np.int64)
    else:
        short = int(rng.integers(0, 21))
        lengths = np.where(rng.random(n) < long_fraction, short + long_extra, short)
    column = strings(ordered(lengths, order, rng), seed=seed)
    assert sizeof(column) >= 0.9 * deep_sizeof(column)


def test_rare_outliers_are_missed_by_design():
    lengths = np.full(10_000, 10)
    lengths[1234] = 1_000_000  # 1 in 10,000: no sample of 32 is likely to see it
    column = strings(lengths)
    assert sizeof(column) < 0.5 * deep_sizeof(column)


def test_wide_object_blocks_sample_fewer_per_column():
    calls = []

    class Counted:
        def __sizeof__(self):
            calls.append(1)
            return 64

    column = np.array([Counted() for _ in range(1000)], dtype=object)
    each = sys.getsizeof(column[0])
    calls.clear()
    df = pd.DataFrame({f"c{i}": column for i in range(64)})
    assert sizeof(df) == 64 * 1000 * (each + 8) + df.index.nbytes
    assert len(calls) == 64 * 8


def test_numpy_object_arrays_of_any_shape():
    flat = strings(np.full(6000, 20))
    for a in (flat, flat.reshape(60, 100), flat.reshape(60, 100).T, flat.reshape(10, 20, 30)):
        assert sizeof(a) == deep_sizeof(a)  # equal sizes: the estimate is exact


# -- Python containers -----------------------------------------------------------------------------


def test_containers_are_sampled_and_scaled():
    ints = list(range(1000, 101_000))
    assert sizeof(ints) == deep_sizeof(ints)  # same-size items
    assert sizeof(tuple(ints)) == deep_sizeof(tuple(ints))
    assert sizeof(set(ints)) == deep_sizeof(set(ints))
    d = {i: float(i) for i in ints}
    assert sizeof(d) == deep_sizeof(d)
    mixed = [np.zeros(1000), "x" * 100, 7] * 1000
    assert 0.5 <= sizeof(mixed) / deep_sizeof(mixed) <= 2.0
    frames = [pd.DataFrame({"a": np.ones(100)})] * 4
    assert sizeof(frames) == sys.getsizeof(frames) + 4 * sizeof(frames[0])


def test_nesting_is_bounded_and_cycles_end():
    cyclic: list = [1, 2]
    cyclic.append(cyclic)
    d: dict = {"self": None}
    d["self"] = d
    deep: list = []
    node = deep
    for _ in range(5000):
        node.append([])
        node = node[0]
    for obj in (cyclic, d, deep):
        assert sizeof(obj) > 0
        assert deep_sizeof(obj) > 0
    assert deep_sizeof(cyclic) == sys.getsizeof(cyclic) + 2 * sys.getsizeof(1)


# -- never raises ---------------------------------------------------------------------------


class RaisingSizeof:
    def __sizeof__(self):
        raise RuntimeError("boom")


class WrongSizeof:
    def __sizeof__(self):
        return "not a number"


class UnhashableMeta(type):
    __hash__ = None  # type: ignore[assignment]

    def __eq__(cls, other):
        return False


class UnhashableType(metaclass=UnhashableMeta):
    pass


@pytest.mark.parametrize(
    "obj",
    [
        RaisingSizeof(),
        WrongSizeof(),
        UnhashableType(),
        [RaisingSizeof()] * 100,
        {"k": WrongSizeof()},
        np.array([RaisingSizeof()] * 100, dtype=object),
        pd.Series([RaisingSizeof()] * 100, dtype=object),
        pd.DataFrame({"a": [1, 2]}).groupby("a"),
        object(),
        type,
        sys,
        lambda: None,
    ],
    ids=lambda o: type(o).__name__,
)
@pytest.mark.parametrize("mode", ["sampled", "deep"])
def test_never_raises(obj, mode):
    set_mode(mode)
    assert isinstance(sizeof(obj), int)
    assert isinstance(deep_sizeof(obj), int)


def test_failing_pandas_handler_does_not_fall_back_to_a_deep_scan(monkeypatch):
    df = pd.DataFrame({"o": np.array(["x"] * 1000, dtype=object)})

    def broken(obj):
        raise RuntimeError("pandas internals changed")

    def no_deep_scan(*args, **kwargs):
        raise AssertionError("fallback must not scan")

    monkeypatch.setattr(sz, "_frame_arrays", broken)
    monkeypatch.setattr(pd.DataFrame, "memory_usage", no_deep_scan)
    assert sizeof(df) == object.__sizeof__(df)


# -- modes and registration ---------------------------------------------------------------------


def test_mode_switch():
    column = pd.Series(strings(np.random.default_rng(0).integers(0, 100, 5000)), dtype=object)
    assert get_mode() == "sampled"
    sampled = sizeof(column)
    set_mode("deep")
    assert get_mode() == "deep"
    assert sizeof(column) == deep_sizeof(column) == column.memory_usage(deep=True, index=True)
    assert sizeof(column) != sampled
    set_mode("sampled")
    assert sizeof(column) == sampled
    with pytest.raises(ValueError, match="mode"):
        set_mode("exact")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "mode"), [("deep", "deep"), ("sampled", "sampled"), ("", "sampled")]
)
def test_mode_from_environment(value, mode):
    env = {**os.environ, "TASKBENCH_SIZEOF": value}
    code = "import taskbench.engine.sizeof as s; print(s.get_mode())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == mode


def test_bad_mode_in_environment_fails_loudly():
    env = {**os.environ, "TASKBENCH_SIZEOF": "exact"}
    code = "import taskbench.engine.sizeof as s; print(s.get_mode())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode != 0 and out.stdout == ""
    assert "TASKBENCH_SIZEOF='exact' is not a sizeof mode" in out.stderr


def test_register_by_type_and_subclass():
    class Blob:
        def __init__(self, n):
            self.n = n

    class SubBlob(Blob):
        pass

    assert sizeof(Blob(10)) == sys.getsizeof(Blob(10))
    register(Blob, lambda b: b.n * 1.5)
    assert sizeof(Blob(10)) == 15
    assert isinstance(sizeof(Blob(10)), int)
    assert sizeof(SubBlob(4)) == 6
    set_mode("deep")
    assert sizeof(Blob(10)) == 15


def test_register_by_qualname_and_decorator():
    class Payload:
        pass

    name = f"{Payload.__module__}.{Payload.__qualname__}"

    @register(name)
    def payload_size(p):
        return 12345

    assert payload_size(None) == 12345
    assert sizeof(Payload()) == 12345
    assert sizeof([Payload()] * 10) == sys.getsizeof([Payload()] * 10) + 10 * 12345


def test_registered_handler_overrides_builtin_and_may_raise():
    register(np.ndarray, lambda a: 1)
    assert sizeof(np.zeros(10)) == 1
    set_mode("deep")
    assert sizeof(np.zeros(10)) == 1

    class Fragile:
        pass

    register(Fragile, lambda f: 1 / 0)
    assert sizeof(Fragile()) == sys.getsizeof(Fragile())
