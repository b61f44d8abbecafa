"""groupby(...).agg as a tree reduction, against pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import taskbench.engine.dataframe as edf
from hypothesis import given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal, assert_series_equal
from taskbench.engine.dataframe.groupby import DENSE_SLOTS, _dense_chunk, groupby_chunk

from tests.engine.dataframe.helpers import SETTINGS, frames, lookup, make_frame

SPECS = [
    {"v": "sum"},
    {"v": ["sum", "mean", "count", "size", "min", "max"], "i": "max"},
    {"i": ["mean", "min"], "s": ["count", "min", "max"], "t": ["min", "max", "size"]},
    {"v": "mean", "i": "sum", "t": "count"},
]


@SETTINGS
@given(
    frames(),
    st.sampled_from(SPECS),
    st.sampled_from([["k"], ["k", "k2"]]),
    st.booleans(),
    st.sampled_from([2, 3, 8]),
)
def test_agg_matches_pandas(client, case, spec, by, dropna, split_every):
    pdf, nparts = case
    df = edf.from_pandas(pdf, nparts)
    got = df.groupby(by, dropna=dropna).agg(spec, split_every=split_every).compute(client)
    want = pdf.groupby(by, dropna=dropna).agg(spec)
    assert_frame_equal(got, want, check_dtype=False, check_index_type=False, rtol=1e-9)


@SETTINGS
@given(frames(key_kinds=("int", "float", "str", "object")))
def test_groupby_shortcuts(client, case):
    pdf, nparts = case
    df = edf.from_pandas(pdf, nparts)
    for how in ("sum", "mean", "count", "min", "max"):
        got = getattr(df.groupby("k", dropna=False).v, how)().compute(client)
        want = getattr(pdf.groupby("k", dropna=False).v, how)()
        assert_series_equal(got, want, check_dtype=False, check_index_type=False, rtol=1e-9)
    got = df.groupby(["k", "k2"]).size().compute(client)
    want = pdf.groupby(["k", "k2"]).size()
    assert_series_equal(got, want, check_dtype=False, check_index_type=False)
    got = df[["k", "i", "v"]].groupby("k").sum().compute(client)
    want = pdf[["k", "i", "v"]].groupby("k").sum()
    assert_frame_equal(got, want, check_dtype=False, check_index_type=False, rtol=1e-9)


def test_agg_is_a_tree_of_linear_size():
    df = edf.from_pandas(make_frame(100, 0, "int", 0.0), 64)
    graph = df.groupby("k").agg({"v": "sum"}, split_every=4).graph
    layer = [k for k in graph if isinstance(k, tuple) and "groupby" in k[0]]
    assert len(layer) == 64 + 16 + 4 + 1


def test_agg_errors_name_the_column():
    df = edf.from_pandas(make_frame(10, 0, "int", 0.0), 2)
    with pytest.raises(KeyError, match="groupby: column 'nope' not found"):
        df.groupby("nope")
    with pytest.raises(KeyError, match="agg: column 'zz' not found"):
        df.groupby("k").agg({"zz": "sum"})
    with pytest.raises(ValueError, match="unsupported function 'median' for column 'v'"):
        df.groupby("k").agg({"v": "median"})
    with pytest.raises(TypeError, match="cannot mean column 's' of dtype str"):
        df.groupby("k").agg({"s": "mean"})


def test_taxi_like_groupby(client):
    rows = make_frame(1000, 9, "int", 0.1)
    rows["hour"] = rows.t.dt.hour
    df = edf.from_pandas(rows, 6)
    df = df.assign(hour=df.t.dt.hour, fare=df.v.fillna(0) * 10)
    got = df.groupby("hour").agg({"fare": ["sum", "mean"], "i": "count"}).compute(client)
    pdf = rows.assign(fare=rows.v.fillna(0) * 10)
    want = pdf.groupby("hour").agg({"fare": ["sum", "mean"], "i": "count"})
    assert_frame_equal(got, want, check_dtype=False, rtol=1e-9)
    assert isinstance(got, pd.DataFrame)


DENSE_KEYS = ["int32", "Int32", "Int64", "uint8", "bool", "float", "float-halves", "wide", "str",
              "sparse", "sparse-float", "sparse-Int32"]  # fmt: skip
PARTIALS = [("p0", None, "size"), ("p1", "v", "sum"), ("p2", "v", "count"), ("p3", "i", "sum")]


def dense_key(kind: str, rng: np.random.Generator, n: int, nulls: np.ndarray) -> pd.Series:
    small = rng.integers(-3, 4, n)
    if kind.startswith("sparse"):  # offsets over more than COMPACT_SPAN: renumbered
        spread = np.array([-20_000, -3, 0, 5, 30_000])[small % 5]
        if kind == "sparse":
            return pd.Series(spread)
        if kind == "sparse-float":
            return pd.Series(np.where(nulls, np.nan, spread.astype(float)))
        return pd.Series(pd.array(np.where(nulls, 0, spread), dtype="Int32")).mask(nulls)
    if kind in ("Int32", "Int64"):
        return pd.Series(pd.array(np.where(nulls, 0, small), dtype=kind)).mask(nulls)
    if kind.startswith("float"):  # halves are not integers: factorized
        values = small.astype(float) / (2 if kind == "float-halves" else 1)
        return pd.Series(np.where(nulls, np.nan, values))
    if kind == "wide":  # too wide a range for offsets: factorized
        return pd.Series(rng.integers(0, 10**12, n))
    if kind == "str":
        return pd.Series(np.array(["a", "b", "é"])[small % 3], dtype="str").mask(nulls)
    return pd.Series(small > 0 if kind == "bool" else (small + 3).astype(kind))


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 60),
    st.integers(0, 2**32 - 1),
    st.lists(st.sampled_from(DENSE_KEYS), min_size=1, max_size=3),
    st.booleans(),
    st.sampled_from([0.0, 0.3, 1.0]),
)
def test_dense_groupby_chunk_matches_pandas(n, seed, kinds, dropna, null_share):
    """The dense path gives pandas' partials; it declines only an empty frame or too many
    key combinations."""
    rng = np.random.default_rng(seed)
    by = [f"k{j}" for j in range(len(kinds))]
    columns = {
        name: dense_key(kind, rng, n, rng.random(n) < null_share)
        for name, kind in zip(by, kinds, strict=True)
    }
    v = rng.normal(size=n)
    v[rng.random(n) < null_share] = np.nan
    pdf = pd.DataFrame({**columns, "v": v, "i": rng.integers(-100, 100, n)})
    want = groupby_chunk(pdf, by, dropna, PARTIALS)
    got = _dense_chunk(pdf, by, dropna, PARTIALS)
    assert (got is None) == (n == 0 or (kinds.count("wide") == 3 and n**3 > DENSE_SLOTS))
    if got is not None:
        got = got[want.columns].sort_index()  # in code order; a sorted groupby sorts them
        assert_frame_equal(got, want.sort_index(), check_index_type=False, rtol=1e-12)


JOINED_BY = [["k_name"], ["k_name", "k2_name"], ["k2_name", "k"], ["k_name", "k2"], ["k2", "k"]]


@SETTINGS
@given(
    frames(key_kinds=("int", "float", "str", "skew")),
    st.sampled_from(["inner", "left"]),
    st.sampled_from(JOINED_BY),
    st.booleans(),
    st.integers(1, 3),
    st.integers(0, 2**16),
)
def test_groupby_below_broadcast_joins(client, case, how, by, dropna, rparts, seed):
    """A sorted groupby over broadcast joins aggregates below them (no merge task): the same
    answer as the joined rows grouped (the plan unoptimised) and as pandas, with duplicate
    and null join keys."""
    pdf, nparts = case
    zones, kinds = lookup(pdf.k, seed), lookup(pdf.k2, seed + 1, name="k2")
    spec = {"v": ["size", "sum", "mean", "count", "min"], "i": "max"}
    joined = (
        edf.from_pandas(pdf, nparts)
        .merge(edf.from_pandas(zones, rparts), on="k", how=how)
        .merge(kinds, on="k2", how=how)
    )
    pushed = joined.groupby(by, dropna=dropna).agg(spec)
    merges = [key for key in pushed.graph if isinstance(key, tuple) and "merge" in key[0]]
    assert (merges == []) == (rparts <= nparts)  # a right side as big as the left is not broadcast
    rows = joined.map_partitions(lambda df: df, meta=joined._meta)
    unoptimised = rows.groupby(by, dropna=dropna).agg(spec).compute(client)
    want = pdf.merge(zones, on="k", how=how).merge(kinds, on="k2", how=how)
    want = want.groupby(by, dropna=dropna).agg(spec)
    for got in (pushed.compute(client), unoptimised):
        assert_frame_equal(got, want, check_dtype=False, check_index_type=False, rtol=1e-9)
