"""groupby(...).agg as a tree reduction, against pandas."""

from __future__ import annotations

import pandas as pd
import pytest
import taskbench.engine.dataframe as edf
from hypothesis import given
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal, assert_series_equal

from tests.engine.dataframe.helpers import SETTINGS, frames, make_frame

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
