"""Row-wise operations, reductions, top-k, head, persist and errors, each against pandas."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import taskbench.engine.dataframe as edf
from hypothesis import given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal, assert_series_equal
from taskbench.engine.dataframe.core import calendar_field, clock_field, filter_rows, getitem

from tests.engine.dataframe.helpers import SETTINGS, SyncClient, frames, make_frame

# ---------------------------------------------------------------- row-wise


def test_column_selection_is_pandas_and_leaves_its_source_alone():
    pdf = make_frame(20, 0, "object", 0.2)
    got = getitem(pdf, ["t", "k", "v"])
    assert_frame_equal(got, pdf[["t", "k", "v"]])
    got.loc[got.index[0], "v"] = 1e9  # copy-on-write: the selection's write is its own
    assert pdf["v"].iloc[0] != 1e9
    mask = [True, False] * 10  # a list of booleans is a row mask, not labels
    assert_frame_equal(getitem(pdf, mask), pdf[mask])
    with pytest.raises(KeyError):
        getitem(pdf, ["k", "nope"])


@settings(max_examples=100, deadline=None)
@given(
    frames(key_kinds=("int", "float", "str", "object", "bool")),
    st.integers(0, 2**32 - 1),
    st.sets(st.sampled_from(["k", "k2", "i", "v", "s", "t"])),
    st.sampled_from(["array", "series", "unaligned"]),
)
def test_filter_copying_some_columns_matches_pandas(case, seed, columns, mask_kind):
    """A filter that copies only the columns read after it keeps pandas' rows, index, order
    and dtypes, whatever the mask is: an array, the frame's own Series, or one to align."""
    pdf, _ = case
    rng = np.random.default_rng(seed)
    pdf.index = rng.permutation(len(pdf)) * 3
    keep = rng.random(len(pdf)) < 0.5
    mask: object = keep
    if mask_kind == "series":
        mask = pd.Series(keep, index=pdf.index)
    elif mask_kind == "unaligned":  # the same labels in another order: pandas aligns them
        mask = pd.Series(keep, index=pdf.index)[::-1]
    got = filter_rows(pdf, mask, tuple(columns))
    want = pdf[mask][[c for c in pdf.columns if c in columns]]
    assert_frame_equal(got, want)


@SETTINGS
@given(frames())
def test_rowwise_expressions_match_pandas(client, case):
    pdf, nparts = case
    df = edf.from_pandas(pdf, nparts)
    assert_frame_equal(df.compute(client), pdf)
    out = df.assign(
        w=df.v * 2 + df.i,
        big=df.i > 10,
        ratio=df.i / (df.k2 + 1),
        neg=-df.i,
        hour=df.t.dt.hour,
    )
    expected = pdf.assign(
        w=pdf.v * 2 + pdf.i,
        big=pdf.i > 10,
        ratio=pdf.i / (pdf.k2 + 1),
        neg=-pdf.i,
        hour=pdf.t.dt.hour,
    )
    assert_frame_equal(out.compute(client), expected)
    mask = (df.i >= 0) & ~df.v.isna()
    assert_frame_equal(df[mask].compute(client), pdf[(pdf.i >= 0) & ~pdf.v.isna()])
    assert_frame_equal(df[["s", "i"]].compute(client), pdf[["s", "i"]])
    assert_series_equal(df.s.compute(client), pdf.s)
    assert_frame_equal(df.astype({"i": "float32"}).compute(client), pdf.astype({"i": "float32"}))


@SETTINGS
@given(frames(key_kinds=("int",)))
def test_datetime_accessors(client, case):
    pdf, nparts = case
    t = edf.from_pandas(pdf, nparts).t
    for attr in ("year", "month", "hour", "dayofweek"):
        want = getattr(pdf.t.dt, "day_of_week" if attr == "dayofweek" else attr)
        assert_series_equal(getattr(t.dt, attr).compute(client), want)
    assert_series_equal(t.dt.floor("D").compute(client), pdf.t.dt.floor("D"))


@settings(max_examples=200, deadline=None)
@given(
    unit=st.sampled_from(["s", "ms", "us", "ns"]),
    days=st.lists(st.integers(-40_000, 40_000), min_size=1, max_size=40),
    seconds=st.integers(0, 86_399),
    spread_days=st.sampled_from([0, 1, 31, 400, 100_000]),
    nat_share=st.sampled_from([0.0, 0.3, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_fast_datetime_fields_match_pandas(unit, days, seconds, spread_days, nat_share, seed):
    """Clock fields by integer arithmetic and calendar fields by a per-day table agree with
    pandas for every unit, before and after 1970, with NaT; a span too wide to tabulate (or
    all NaT) is handed back to pandas."""
    rng = np.random.default_rng(seed)
    day = np.timedelta64(1, "D") // np.timedelta64(1, unit)
    start = np.array(days, dtype=np.int64) * day + seconds * (day // 86_400)
    raw = start + rng.integers(0, spread_days * day + 1, len(days))
    times = pd.Series(raw.astype(f"M8[{unit}]"), name="t")
    times[rng.random(len(times)) < nat_share] = pd.NaT
    for attr in ("second", "minute", "hour", "day_of_week"):
        assert_series_equal(clock_field(times, attr), getattr(times.dt, attr))
    for attr in ("year", "month", "day"):
        looked_up = calendar_field(times, attr)
        # days apart, in integers: Timestamp arithmetic overflows at the edges of ns' range
        known = times.dropna().to_numpy().view(np.int64)
        span = int(known.max() // day - known.min() // day) if len(known) else None
        assert (looked_up is None) == (span is None or span >= 1 << 16)
        if looked_up is not None:
            assert_series_equal(looked_up, getattr(times.dt, attr))


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_clock_fields_at_step_edges_and_past_exact_floats(unit):
    """The compiled clock fields floor a float quotient below 2**53 ticks and divide
    integers above: both agree with pandas one tick either side of every step."""
    rng = np.random.default_rng(7)
    hour = np.timedelta64(1, "h") // np.timedelta64(1, unit)
    edges = rng.integers(-(10**6), 10**6, 3000) * hour
    wide = rng.integers(-(2**61), 2**61, 3000) // (1 if unit == "ns" else 1000)
    times = pd.Series(np.concatenate([edges - 1, edges, edges + 1, wide]).astype(f"M8[{unit}]"))
    times[::101] = pd.NaT
    for attr in ("second", "minute", "hour", "day_of_week"):
        assert_series_equal(clock_field(times, attr), getattr(times.dt, attr))


def test_scalar_broadcast_and_setitem(client):
    pdf = make_frame(50, 1, "int", 0.2)
    df = edf.from_pandas(pdf, 4)
    centred = df.i - df.i.mean()
    assert_series_equal(centred.compute(client), pdf.i - pdf.i.mean())
    df["double"] = df.i * 2
    pdf["double"] = pdf.i * 2
    assert_frame_equal(df.compute(client), pdf)
    assert (df.i.sum() + 1).compute(client) == pdf.i.sum() + 1
    assert (1 + df.i.sum()).compute(client) == pdf.i.sum() + 1


def test_map_partitions(client):
    pdf = make_frame(40, 2, "int", 0.0)
    df = edf.from_pandas(pdf, 3)
    out = df.map_partitions(lambda p, c: p.assign(c=p.i * c), 3)
    assert_frame_equal(out.compute(client), pdf.assign(c=pdf.i * 3))
    lengths = df.map_partitions(len).compute(client)
    assert lengths.tolist() == [13, 13, 14]
    both = df.i.map_partitions(lambda a, b: a + b, df.k2)
    assert_series_equal(both.compute(client), pdf.i + pdf.k2)


# ---------------------------------------------------------------- reductions


def _same(a, b) -> bool:
    if isinstance(a, float | np.floating) and math.isnan(a):
        return isinstance(b, float | np.floating) and math.isnan(b)
    if a is pd.NaT or b is pd.NaT:
        return a is b
    if isinstance(a, float | np.floating):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


@SETTINGS
@given(frames())
def test_series_reductions_match_pandas(client, case):
    pdf, nparts = case
    df = edf.from_pandas(pdf, nparts)
    assert df.length(split_every=2).compute(client) == len(pdf)
    for col in ("i", "v", "k2"):
        for how in ("sum", "mean", "count", "min", "max"):
            got = getattr(df[col], how)(split_every=3).compute(client)
            want = getattr(pdf[col], how)()
            assert _same(got, want), (col, how, got, want)
    for col in ("s", "t"):
        for how in ("count", "min", "max"):
            got = getattr(df[col], how)().compute(client)
            want = getattr(pdf[col], how)()
            assert _same(got, want) or (pd.isna(got) and pd.isna(want)), (col, how, got, want)


@SETTINGS
@given(frames())
def test_frame_reductions_match_pandas(client, case):
    pdf, nparts = case
    df = edf.from_pandas(pdf[["i", "v", "k2"]], nparts)
    num = pdf[["i", "v", "k2"]]
    for how in ("sum", "count", "min", "max", "mean"):
        got = getattr(df, how)(split_every=2).compute(client)
        assert_series_equal(got, getattr(num, how)(), check_dtype=False, rtol=1e-9), how


def _nulls_as_nan(s: pd.Series) -> pd.Series:
    """Sorted by index, every null label (None, NaN) as one NaN group.

    pandas' value_counts on an object column counts None and NaN apart; the engine counts
    all nulls as one group, as groupby(dropna=False) does.
    """
    index = s.index.astype(object).where(s.index.notna(), np.nan)
    s = pd.Series(s.to_numpy(), index=index, name=s.name)
    return s.groupby(level=0, dropna=False).sum().sort_index(na_position="last")


@SETTINGS
@given(frames())
def test_value_counts_match_pandas(client, case):
    pdf, nparts = case
    df = edf.from_pandas(pdf, nparts)
    for dropna in (True, False):
        for normalize in (False, True):
            got = df.k.value_counts(dropna=dropna, normalize=normalize, split_every=2)
            got = got.compute(client)
            want = pdf.k.value_counts(dropna=dropna, normalize=normalize)
            assert got.name == want.name and got.index.name == want.index.name
            # order among equal counts is unspecified: compare as mappings, and the order
            assert got.tolist() == sorted(got.tolist(), reverse=True)
            assert_series_equal(_nulls_as_nan(got), _nulls_as_nan(want), check_dtype=False)


@SETTINGS
@given(frames(key_kinds=("int", "float", "skew")))
def test_top_k_match_pandas(client, case):
    pdf, nparts = case
    df = edf.from_pandas(pdf, nparts)
    for n in (1, 5):
        got = df.nlargest(n, "v", split_every=2).compute(client)
        assert_frame_equal(got, pdf.nlargest(n, "v"))
        for keep in ("last", "all"):
            got = df.nsmallest(n, ["v", "i"], keep=keep, split_every=2).compute(client)
            assert_frame_equal(got, pdf.nsmallest(n, ["v", "i"], keep=keep))
        got = df.nsmallest(n, ["i", "k2"]).compute(client)
        assert_frame_equal(got, pdf.nsmallest(n, ["i", "k2"]))
        assert_series_equal(df.i.nlargest(n).compute(client), pdf.i.nlargest(n))
        assert_series_equal(df.v.nsmallest(n).compute(client), pdf.v.nsmallest(n))


@pytest.mark.parametrize("seed", range(4))
def test_top_k_cut_down_by_a_sample_is_pandas_answer(seed):
    from taskbench.engine.dataframe.core import TOP_K_SAMPLE_FACTOR, _top_k

    rng = np.random.default_rng(seed)
    for _ in range(15):  # long partitions (the sample applies), many ties, NaN
        n = int(rng.integers(1, 30))
        rows = int(rng.integers(TOP_K_SAMPLE_FACTOR * n, 4000))
        v = rng.integers(0, int(rng.integers(1, 50)), rows).astype(float)
        v[rng.random(rows) < rng.random() * 0.5] = np.nan
        pdf = pd.DataFrame({"v": v, "i": rng.integers(0, 5, rows)})
        for how in ("nlargest", "nsmallest"):
            for keep in ("first", "last", "all"):
                for columns in ("v", ["v", "i"], ["i", "v"]):
                    got = _top_k(pdf, how, n, columns, keep)
                    assert_frame_equal(got, getattr(pdf, how)(n, columns, keep=keep))
                want = getattr(pdf["v"], how)(n, keep=keep)
                assert_series_equal(_top_k(pdf["v"], how, n, None, keep), want)


@SETTINGS
@given(frames())
def test_head_skips_empty_partitions(client, case):
    pdf, nparts = case
    df = edf.from_pandas(pdf, nparts)
    for n in (0, 3, 1000):
        assert_frame_equal(df.head(n, client=client), pdf.head(n))


def test_get_partition(client):
    pdf = make_frame(20, 3, "int", 0.0)
    df = edf.from_pandas(pdf, 4)
    assert_frame_equal(df.get_partition(2).compute(client), pdf.iloc[10:15])
    assert_frame_equal(df.get_partition(-1).compute(client), pdf.iloc[15:])


# ---------------------------------------------------------------- persist


def test_persist_keeps_partitions_on_the_cluster(inproc_client):
    pdf = make_frame(200, 4, "str", 0.2)
    df = edf.from_pandas(pdf, 5).persist(inproc_client)
    assert not df.graph and len(df._futures) == 5
    assert_frame_equal(df.compute(), pdf)
    derived = df[df.i > 0].assign(j=df.i * 2)
    assert_frame_equal(derived.compute(), pdf[pdf.i > 0].assign(j=pdf.i * 2))
    assert derived.i.sum().compute() == pdf[pdf.i > 0].i.sum()
    with pytest.raises(ValueError, match="persisted on another client"):
        df.compute(SyncClient())


def test_persist_without_a_cluster_computes_into_the_graph():
    pdf = make_frame(30, 5, "int", 0.0)
    df = edf.from_pandas(pdf, 3).assign(j=lambda d: d.i + 1)
    local = df.persist(SyncClient())
    assert_frame_equal(local.compute(SyncClient()), pdf.assign(j=pdf.i + 1))


# ---------------------------------------------------------------- errors


def test_missing_column_is_named():
    df = edf.from_pandas(make_frame(10, 0, "int", 0.0), 2)
    with pytest.raises(KeyError, match="'nope' not found"):
        df["nope"]
    with pytest.raises(KeyError, match="'zz'"):
        df[["i", "zz"]]
    with pytest.raises(AttributeError, match="nope"):
        df.nope  # noqa: B018
    with pytest.raises(KeyError, match="'nope'"):
        df.nlargest(2, "nope")
    with pytest.raises(ValueError, match=r"nsmallest: keep must be .* got 'any'"):
        df.nsmallest(2, df.columns[0], keep="any")


def test_bad_dtypes_fail_when_the_graph_is_built():
    df = edf.from_pandas(make_frame(10, 0, "int", 0.0), 2)
    with pytest.raises(TypeError, match=r"column 's' \(str\)"):
        df.s - 1
    with pytest.raises(TypeError, match="column 's' has dtype str, which is not numeric"):
        df.s.mean()
    with pytest.raises(TypeError, match="bool Series"):
        df[df.i]
    with pytest.raises(AttributeError, match=r"no \.dt accessor"):
        df.i.dt  # noqa: B018


def test_npartitions_must_be_positive():
    pdf = make_frame(10, 0, "int", 0.0)
    with pytest.raises(ValueError, match="npartitions must be a positive integer, got 0"):
        edf.from_pandas(pdf, 0)
    with pytest.raises(ValueError, match="split_every"):
        edf.from_pandas(pdf, 2).i.sum(split_every=1)


def test_unaligned_collections_are_refused():
    pdf = make_frame(10, 0, "int", 0.0)
    a, b = edf.from_pandas(pdf, 2), edf.from_pandas(pdf, 2)
    with pytest.raises(ValueError, match="partitioned differently"):
        a.i + b.i
    with pytest.raises(ValueError, match="partitioned differently"):
        a[b.i > 0]
    with pytest.raises(TypeError, match="truth value"):
        bool(a.i > 0)


def test_map_partitions_asks_for_meta_when_it_cannot_infer_it(client):
    df = edf.from_pandas(make_frame(10, 0, "int", 0.0), 2)

    def first_row(p):
        return p.iloc[0]

    with pytest.raises(ValueError, match="pass meta="):
        df.map_partitions(first_row)
    out = df.map_partitions(lambda p: p.i.sum(), meta=0)
    assert out.compute(client).tolist() == [
        df.get_partition(j).i.sum().compute(client) for j in (0, 1)
    ]


def _part(i: int, n: int) -> pd.DataFrame:
    return pd.DataFrame({"i": range(i * n, (i + 1) * n)})


def test_from_map_and_a_collection_from_a_plain_graph(client):
    df = edf.from_map(_part, [0, 1, 2], n=4)
    assert df.npartitions == 3
    assert df.i.sum().compute(client) == sum(range(12))
    graph = {("mine", i): (_part, i, 2) for i in range(2)}
    plain = edf.DataFrame("mine", graph, 2, _part(0, 0))
    assert plain.compute(client).i.tolist() == [0, 1, 2, 3]
    assert (plain.i * 2).sum().compute(client) == 12
