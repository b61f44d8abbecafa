"""merge: broadcast and hash joins, inner and left, against pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import taskbench.engine.dataframe as edf
from hypothesis import given
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

from tests.engine.dataframe.helpers import SETTINGS, frames, lookup, make_frame


def canonical(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in one order (the join's row order and index are not specified)."""
    df = df.reset_index(drop=True)
    order = pd.util.hash_pandas_object(df, index=False).argsort(kind="stable")
    return df.iloc[order].reset_index(drop=True)


@SETTINGS
@given(
    frames(key_kinds=("int", "float", "str", "object", "skew")),
    st.sampled_from(["inner", "left"]),
    st.sampled_from([None, True, False]),
    st.integers(1, 6),
    st.integers(0, 2**16),
)
def test_merge_matches_pandas(client, case, how, broadcast, rparts, seed):
    pdf, nparts = case
    right = lookup(pdf.k, seed)
    left = edf.from_pandas(pdf, nparts)
    r = edf.from_pandas(right, rparts)
    got = left.merge(r, on="k", how=how, broadcast=broadcast).compute(client)
    want = pdf.merge(right, on="k", how=how)
    assert list(got.columns) == list(want.columns)
    assert_frame_equal(canonical(got), canonical(want), check_dtype=False)


@SETTINGS
@given(frames(key_kinds=("int",)), st.integers(1, 5))
def test_merge_on_two_keys_with_overlapping_columns(client, case, rparts):
    pdf, nparts = case
    right = pdf.sample(frac=0.5, random_state=1)[["k", "k2", "v", "s"]].drop_duplicates(["k", "k2"])
    got = edf.merge(
        edf.from_pandas(pdf, nparts), edf.from_pandas(right, rparts), on=["k", "k2"],
        how="left", broadcast=False, npartitions=3,
    ).compute(client)  # fmt: skip
    want = pdf.merge(right, on=["k", "k2"], how="left")
    assert list(got.columns) == list(want.columns)
    assert_frame_equal(canonical(got), canonical(want), check_dtype=False)


def test_merge_with_left_on_right_on_and_narrower_int_keys(client):
    pdf = make_frame(200, 3, "int", 0.0)
    zones = pd.DataFrame({"LocationID": np.arange(-3, 5, dtype=np.int32), "zone": list("abcdefgh")})
    got = edf.merge(
        edf.from_pandas(pdf, 4), edf.from_pandas(zones, 3), left_on="k", right_on="LocationID",
        broadcast=False,
    ).compute(client)  # fmt: skip
    want = pdf.merge(zones, left_on="k", right_on="LocationID")
    assert_frame_equal(canonical(got), canonical(want), check_dtype=False)


def test_merge_strategy_choice():
    big = edf.from_pandas(make_frame(100, 0, "int", 0.0), 16)
    small = edf.from_pandas(pd.DataFrame({"k": [1, 2], "z": ["a", "b"]}), 1)
    broadcast = big.merge(small, on="k")
    assert not any("shuffle" in name for name in broadcast._layers)
    assert broadcast.npartitions == 16
    hashed = big.merge(edf.from_pandas(make_frame(100, 1, "int", 0.0), 16), on="k")
    assert any("shuffle" in name for name in hashed._layers)
    # a left join keeps every left row: the small left side is not broadcast
    left = small.merge(big, on="k", how="left")
    assert any("shuffle" in name for name in left._layers)
    inner = small.merge(big, on="k")
    assert not any("shuffle" in name for name in inner._layers)


def test_merge_errors_name_the_problem():
    left = edf.from_pandas(make_frame(10, 0, "int", 0.0), 2)
    right = edf.from_pandas(make_frame(10, 0, "str", 0.0), 2)
    with pytest.raises(TypeError, match="key 'k' has dtype int64 on the left and str on the right"):
        left.merge(right, on="k")
    floats = edf.from_pandas(make_frame(10, 0, "float", 0.0), 2)
    with pytest.raises(TypeError, match="key 'k' has dtype int64 on the left and float64"):
        left.merge(floats, on="k")
    with pytest.raises(KeyError, match="'zz' not found in the right frame"):
        left.merge(right, left_on="k", right_on="zz")
    with pytest.raises(ValueError, match="how='outer' is not supported"):
        left.merge(left, on="k", how="outer")
    with pytest.raises(ValueError, match="npartitions must be a positive integer, got 0"):
        left.merge(left, on="k", broadcast=False, npartitions=0)
