"""sort_values, set_index and sort_within_partitions: exactly pandas' stable sort."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import taskbench.engine.dataframe as edf
from hypothesis import given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal
from taskbench.engine.dataframe.sort import _lexsort_keys, sort_partition

from tests.engine.dataframe.helpers import SETTINGS, frames, make_frame


@SETTINGS
@given(
    frames(),
    st.sampled_from(["k", "v", "s", "t", ["k2", "v"], ["s", "i"]]),
    st.booleans(),
    st.sampled_from(["last", "first"]),
    st.integers(1, 10),
)
def test_sort_values_matches_pandas(client, case, by, ascending, na_position, nout):
    pdf, nparts = case
    df = edf.from_pandas(pdf, nparts)
    got = df.sort_values(by, ascending=ascending, na_position=na_position, npartitions=nout)
    assert got.npartitions == nout
    want = pdf.sort_values(by, ascending=ascending, na_position=na_position, kind="stable")
    assert_frame_equal(got.compute(client), want)


@SETTINGS
@given(frames(key_kinds=("int", "float", "skew")))
def test_sort_with_mixed_directions_and_few_samples(client, case):
    pdf, nparts = case
    df = edf.from_pandas(pdf, nparts)
    got = df.sort_values(["k", "i"], ascending=[False, True], samples=3).compute(client)
    want = pdf.sort_values(["k", "i"], ascending=[False, True], kind="stable")
    assert_frame_equal(got, want)


def _labels(df):
    index = df.index.astype(object)
    return df.set_axis(index.where(index.notna(), None), axis=0)


@SETTINGS
@given(frames(), st.sampled_from(["k", "t", "i"]))
def test_set_index_matches_pandas(client, case, column):
    pdf, nparts = case
    got = edf.from_pandas(pdf, nparts).set_index(column).compute(client)
    want = pdf.sort_values(column, kind="stable").set_index(column)
    # pd.concat turns an object index of strings into str (None into NaN): compare labels
    assert_frame_equal(_labels(got), _labels(want), check_index_type=False)


def test_sort_partitions_are_ordered_and_balanced(client):
    pdf = make_frame(5000, 4, "int", 0.0)
    out = edf.from_pandas(pdf, 10).sort_values("v", npartitions=8)
    parts = client.get(out.graph, out._output_keys())
    assert all(len(p) > 0.5 * 5000 / 8 for p in parts)
    for a, b in itertools.pairwise(parts):
        assert a.v.max() <= b.v.min()


def _sortable_column(kind: str, rng: np.random.Generator, n: int, nulls: np.ndarray) -> pd.Series:
    """Few distinct values (ties), nulls where the dtype has them, the extremes of each."""
    small = rng.integers(-2, 3, n)
    if kind == "float":  # infinities: test_infinities_sort_beside_nulls_by_their_value
        values = np.array([-2.5, -0.0, 0.0, 1.5, 1e300])[small + 2]
        return pd.Series(np.where(nulls, np.nan, values))
    if kind == "time":
        values = pd.to_datetime(small, unit="D").to_numpy().astype("datetime64[us]")
        values[nulls] = np.datetime64("NaT")
        return pd.Series(values)
    if kind == "delta":
        return pd.Series(pd.to_timedelta(small, unit="s")).mask(nulls)
    if kind == "bool":
        return pd.Series(small > 0)
    if kind == "extreme":  # int64's ends: a descending key must not overflow
        return pd.Series(
            np.array([np.iinfo(np.int64).min, -1, 0, 1, np.iinfo(np.int64).max])[small + 2]
        )
    if kind == "str":  # not a numpy key: pandas sorts it
        return pd.Series(np.array(["a", "b", "c", "d", "e"])[small + 2], dtype="str").mask(nulls)
    return pd.Series((small + 2).astype(kind))


SORT_KINDS = ["float", "time", "delta", "bool", "extreme", "str", "int8", "uint64", "uint8"]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 40),
    st.integers(0, 2**32 - 1),
    st.lists(st.tuples(st.sampled_from(SORT_KINDS), st.booleans()), min_size=1, max_size=3),
    st.sampled_from(["last", "first"]),
    st.sampled_from([0.0, 0.3, 1.0]),
)
def test_partition_sort_matches_pandas_stable_sort(n, seed, keys, na_position, null_share):
    """Every direction, null placement and tie among numpy keys; other keys sort in pandas."""
    rng = np.random.default_rng(seed)
    by = [f"k{j}" for j in range(len(keys))]
    pdf = pd.DataFrame(
        {name: _sortable_column(kind, rng, n, rng.random(n) < null_share)
         for name, (kind, _) in zip(by, keys, strict=True)},
        index=rng.permutation(n),
    )  # fmt: skip
    pdf["row"] = np.arange(n)
    ascending = [up for _, up in keys]
    got = sort_partition(pdf, by, ascending, na_position)
    want = pdf.sort_values(by, ascending=ascending, na_position=na_position, kind="stable")
    assert_frame_equal(got, want)
    numpy_keys = all(kind != "str" for kind, _ in keys)
    assert (_lexsort_keys(pdf, by, ascending, na_position) is not None) == numpy_keys


def test_infinities_sort_beside_nulls_by_their_value():
    """pandas 3.1 puts an infinity among the nulls when several keys sort descending with
    ``na_position="first"``; the engine keeps nulls together and ``inf`` first after them."""
    pdf = pd.DataFrame({"a": [np.inf, 1.5, np.nan, np.nan, np.nan], "b": [1.5, 1.5, np.nan, -2, 0]})
    got = sort_partition(pdf, ["a", "b"], [False, False], "first")
    assert got.index.tolist() == [2, 4, 3, 0, 1]
    got = sort_partition(pdf, ["a", "b"], [True, True], "last")
    want = pdf.sort_values(["a", "b"], na_position="last", kind="stable")
    assert got.index.tolist() == want.index.tolist() == [1, 0, 3, 4, 2]


@SETTINGS
@given(
    frames(),
    st.sampled_from(["k", "v", "t", "s", ["k2", "v"], ["t", "i"]]),
    st.booleans(),
    st.sampled_from(["last", "first"]),
)
def test_sort_within_partitions_sorts_each_partition_alone(
    client, case, by, ascending, na_position
):
    pdf, nparts = case
    df = edf.from_pandas(pdf, nparts)
    got = df.sort_within_partitions(by, ascending=ascending, na_position=na_position)
    assert got.npartitions == nparts
    want = df.map_partitions(
        lambda part: part.sort_values(by, ascending=ascending, na_position=na_position,
                                      kind="stable"),
    )  # fmt: skip
    assert_frame_equal(got.compute(client), want.compute(client))


def test_sort_errors():
    df = edf.from_pandas(make_frame(10, 0, "int", 0.0), 2)
    with pytest.raises(KeyError, match="sort_values: column 'nope' not found"):
        df.sort_values("nope")
    with pytest.raises(ValueError, match="npartitions must be a positive integer, got 0"):
        df.sort_values("k", npartitions=0)
    with pytest.raises(KeyError, match="set_index: column 'nope'"):
        df.set_index("nope")
    with pytest.raises(KeyError, match="sort_within_partitions: column 'nope' not found"):
        df.sort_within_partitions(["k", "nope"])
    with pytest.raises(ValueError, match="sort_within_partitions: 1 ascending flags for 2"):
        df.sort_within_partitions(["k", "i"], ascending=[True])
    with pytest.raises(ValueError, match="na_position must be 'last' or 'first', got 'middle'"):
        df.sort_within_partitions("k", na_position="middle")
