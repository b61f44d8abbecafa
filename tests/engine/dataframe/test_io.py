"""read_parquet (row groups, projection, filters) and read_csv (byte ranges) against pandas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import taskbench.engine.dataframe as edf
from hypothesis import given
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal
from taskbench.comparisons.data import generate

from tests.engine.dataframe.helpers import SETTINGS, SyncClient, make_frame


@pytest.fixture(scope="module")
def taxi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("taxi")
    generate(out, rows=6_000, start="2015-01", months=2, seed=0)
    return out


@pytest.fixture(scope="module")
def row_groups(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three files of 0, 250 and 1000 rows in row groups of 100."""
    out = tmp_path_factory.mktemp("row-groups")
    for i, n in enumerate((0, 250, 1000)):
        frame = make_frame(n, i, "str", 0.2).drop(columns="t")
        frame["n"] = np.arange(n) + 10_000 * i
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), out / f"part-{i}.parquet",
                       row_group_size=100)  # fmt: skip
    return out


def test_read_parquet_one_partition_per_row_group(client, row_groups):
    df = edf.read_parquet(row_groups)
    assert df.npartitions == 3 + 10
    want = pd.read_parquet(row_groups)
    assert_frame_equal(df.compute(client), want)
    assert_frame_equal(df.meta, want.iloc[:0])
    per_file = edf.read_parquet(row_groups, split_row_groups=False)
    assert per_file.npartitions == 2
    assert_frame_equal(per_file.compute(client), want)


def test_read_parquet_projection_and_filters(client, row_groups):
    filters = [("n", ">=", 10_150), ("n", "<", 20_420)]
    df = edf.read_parquet(row_groups, columns=["s", "v"], filters=filters)
    # row groups ruled out by their statistics get no partition
    assert df.npartitions == 2 + 5
    want = pd.read_parquet(row_groups, columns=["s", "v"], filters=filters)
    got = df.compute(client)
    assert list(got.columns) == ["s", "v"]
    assert_frame_equal(got.reset_index(drop=True), want)
    either = [[("n", "<", 10_003)], [("k", "in", ["a", "b"]), ("n", ">", 20_900)]]
    got = edf.read_parquet(row_groups, filters=either).compute(client)
    want = pd.read_parquet(row_groups, filters=either)
    assert_frame_equal(got.reset_index(drop=True), want)


def test_read_parquet_sees_a_rewritten_file(client, tmp_path):
    path = tmp_path / "f.parquet"
    pd.DataFrame({"n": np.arange(10)}).to_parquet(path, row_group_size=5)
    first = edf.read_parquet(path)
    assert first.npartitions == 2 and len(edf.read_parquet(path, columns=["n"])) == 10
    pd.DataFrame({"n": np.arange(30), "m": 1.5}).to_parquet(path, row_group_size=10)
    again = edf.read_parquet(path, filters=[("n", ">=", 12)])  # footer read afresh
    assert again.npartitions == 2 and list(again.meta.columns) == ["n", "m"]
    assert again.compute(client)["n"].tolist() == list(range(12, 30))


FILTER_TABLE = pa.table({
    "i": pa.array([1, 2, None, 4, 5], pa.int32()), "f": [0.5, np.nan, 2.5, None, -1.0],
    "s": ["a", "b", None, "c", "a"],
    "t": pa.array(pd.date_range("2015-01-01", periods=5, freq="D"), pa.timestamp("us")),
})  # fmt: skip


@pytest.mark.parametrize("filters", [
    [("i", ">=", 2)], [("i", ">=", 2.5)], [("i", "!=", 4)], [("f", "<=", 2.5)], [("s", "=", "a")],
    [("s", "in", ["a", "c"])], [("s", "not in", ["a"])], [("i", "not in", [1.0])],
    [("f", "in", [2.5, np.nan])],
    [("t", ">=", pd.Timestamp("2015-01-03")), ("t", "<", pd.Timestamp("2015-01-05"))],
    [[("i", "<", 2)], [("s", "==", "c"), ("f", "!=", 0.0)]], [[("i", ">", 3)], [("f", "<", 1)]],
])  # fmt: skip
def test_a_row_groups_filter_keeps_the_rows_pyarrows_expression_keeps(filters) -> None:
    from taskbench.engine.dataframe.io import _filter_mask

    want = FILTER_TABLE.filter(pq.filters_to_expression(filters)).to_pandas()
    got = FILTER_TABLE.filter(pa.array(_filter_mask(FILTER_TABLE, filters))).to_pandas()
    assert_frame_equal(got, want)  # nulls and NaN compare as pyarrow's Kleene logic says


def test_read_parquet_errors(tmp_path, row_groups):
    with pytest.raises(KeyError, match="read_parquet columns: column 'nope' not found"):
        edf.read_parquet(row_groups, columns=["s", "nope"])
    with pytest.raises(KeyError, match="read_parquet filters: column 'zz'"):
        edf.read_parquet(row_groups, filters=[("zz", "==", 1)])
    with pytest.raises(FileNotFoundError, match=r"missing\.parquet"):
        edf.read_parquet(tmp_path / "missing.parquet")


def test_taxi_workload_on_generated_data(client, taxi):
    trips = edf.read_parquet(
        taxi / "trips",
        columns=["tpep_pickup_datetime", "PULocationID", "fare_amount", "tip_amount"],
    )
    zones = edf.read_parquet(taxi / "zones.parquet")
    assert trips.npartitions == 2
    pt = pd.read_parquet(
        taxi / "trips",
        columns=["tpep_pickup_datetime", "PULocationID", "fare_amount", "tip_amount"],
    )
    pz = pd.read_parquet(taxi / "zones.parquet")
    assert_frame_equal(trips.compute(client), pt)

    trips = trips[trips.fare_amount > 0]
    trips = trips.assign(hour=trips.tpep_pickup_datetime.dt.hour)
    joined = trips.merge(zones, left_on="PULocationID", right_on="LocationID", how="left")
    got = (
        joined.groupby(["Borough", "hour"], dropna=False)
        .agg({"fare_amount": ["mean", "count"], "tip_amount": "sum"})
        .compute(client)
    )
    p = pt[pt.fare_amount > 0]
    p = p.assign(hour=p.tpep_pickup_datetime.dt.hour)
    want = (
        p.merge(pz, left_on="PULocationID", right_on="LocationID", how="left")
        .groupby(["Borough", "hour"], dropna=False)
        .agg({"fare_amount": ["mean", "count"], "tip_amount": "sum"})
    )
    assert_frame_equal(got, want, check_dtype=False, check_index_type=False, rtol=1e-9)
    top = trips.nlargest(5, "fare_amount").compute(client)
    assert_frame_equal(top, p.nlargest(5, "fare_amount"))


# ---------------------------------------------------------------- csv


def _write_csv(path: Path, frame: pd.DataFrame, crlf: bool) -> None:
    frame.to_csv(path, index=False, lineterminator="\r\n" if crlf else "\n")


@SETTINGS
@given(
    st.integers(0, 300),
    st.integers(1, 400),
    st.booleans(),
    st.integers(0, 2**16),
)
def test_read_csv_by_byte_ranges(tmp_path_factory, rows, blocksize, crlf, seed):
    tmp = tmp_path_factory.mktemp("csv")
    frame = make_frame(rows, seed, "str", 0.0)[["k", "i", "v"]]
    frame["v"] = frame.v.fillna(0.0)
    _write_csv(tmp / "a.csv", frame, crlf)
    _write_csv(tmp / "b.csv", frame.iloc[: rows // 2], crlf)
    df = edf.read_csv([tmp / "a.csv", tmp / "b.csv"], blocksize=blocksize)
    size = (tmp / "a.csv").stat().st_size
    assert df.npartitions >= -(-size // blocksize)
    got = df.compute(SyncClient())
    want = pd.concat([pd.read_csv(tmp / "a.csv"), pd.read_csv(tmp / "b.csv")], ignore_index=True)
    assert_frame_equal(got.reset_index(drop=True), want, check_dtype=False)
    assert df.length().compute(SyncClient()) == len(want)


def test_read_csv_without_blocksize_and_with_options(client, tmp_path):
    frame = make_frame(50, 1, "int", 0.0)[["k", "i", "t"]]
    frame.to_csv(tmp_path / "x.csv", index=False)
    df = edf.read_csv(tmp_path / "x.csv", blocksize=None, parse_dates=["t"])
    assert df.npartitions == 1
    assert_frame_equal(df.compute(client), pd.read_csv(tmp_path / "x.csv", parse_dates=["t"]))
    df = edf.read_csv(tmp_path / "x.csv", blocksize=200, parse_dates=["t"], usecols=["k", "t"])
    want = pd.read_csv(tmp_path / "x.csv", parse_dates=["t"], usecols=["k", "t"])
    assert_frame_equal(df.compute(client).reset_index(drop=True), want)


def test_read_csv_names_a_column_whose_dtype_changes(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n" + "1,x\n" * 50 + ",y\n")
    df = edf.read_csv(tmp_path / "x.csv", blocksize=64, sample_rows=10)
    with pytest.raises(ValueError, match=r"column 'a' is float64 .* pass dtype="):
        df.compute(SyncClient())
    ok = edf.read_csv(tmp_path / "x.csv", blocksize=64, dtype={"a": "float64"})
    assert ok.a.count().compute(SyncClient()) == 50
    with pytest.raises(ValueError, match="nrows= is not supported"):
        edf.read_csv(tmp_path / "x.csv", nrows=3)
