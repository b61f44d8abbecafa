"""The pandas reference against plain-Python answers on the edge dataset (no pandas groupby)."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter, defaultdict

import pandas as pd
import pyarrow.parquet as pq
import pytest
from taskbench.comparisons import solutions
from taskbench.comparisons.data import trip_files, zones_path
from taskbench.comparisons.normalize import compare, normalize
from taskbench.comparisons.queries import QUERIES, TOP_K, parameters


@pytest.fixture(scope="module")
def rows(datasets):
    table = pq.read_table(trip_files(datasets["edge"]))
    return table.to_pylist()


@pytest.fixture(scope="module")
def borough(datasets):
    zones = pq.read_table(zones_path(datasets["edge"])).to_pylist()
    return {z["LocationID"]: z["Borough"] for z in zones}


def check(datasets, reference, query_id, records, columns):
    query = QUERIES[query_id]
    expected = normalize(pd.DataFrame.from_records(records, columns=columns), query)
    mismatch = compare(expected, reference("edge", query_id), query)
    assert mismatch is None, f"{query_id}: plain Python vs pandas reference: {mismatch}"


def test_q01_null_payment_type_is_a_group(datasets, reference, rows):
    counts = Counter(r["payment_type"] for r in rows)
    assert counts[None] == 10
    check(datasets, reference, "q01", list(counts.items()), ["payment_type", "count"])


def test_q04_truncates_toward_zero(datasets, reference, rows):
    counts = Counter(
        (
            r["passenger_count"],
            r["tpep_pickup_datetime"].year,
            None if r["trip_distance"] is None else math.trunc(r["trip_distance"]),
        )
        for r in rows
    )
    assert any(key[2] == -1 for key in counts) and any(key[2] is None for key in counts)
    records = [(*key, n) for key, n in counts.items()]
    check(datasets, reference, "q04", records, ["passenger_count", "year", "distance", "count"])


def test_q05_skips_zero_fares_and_null_tips(datasets, reference, rows):
    fractions = defaultdict(list)
    for r in rows:
        if r["payment_type"] == 1 and r["fare_amount"] > 0 and r["tip_amount"] is not None:
            fractions[r["tpep_pickup_datetime"].hour].append(r["tip_amount"] / r["fare_amount"])
    records = [(h, sum(v) / len(v)) for h, v in fractions.items()]
    check(datasets, reference, "q05", records, ["hour", "avg_tip_fraction"])


def test_q06_weekday_is_monday_zero(datasets, reference, rows):
    groups = defaultdict(list)
    for r in rows:
        t = r["tpep_pickup_datetime"]
        groups[t.weekday(), t.hour].append(r["fare_amount"])
    assert len(groups) > 150  # 2,000 rows leave a few weekday-hours empty
    records = [(*k, len(v), sum(v) / len(v)) for k, v in groups.items()]
    check(datasets, reference, "q06", records, ["weekday", "hour", "count", "avg_fare_amount"])


def test_q07_between_is_inclusive_in_the_busiest_month(datasets, reference, rows):
    p = parameters(datasets["edge"])
    assert p.month == "2016-01"
    picked = [
        r for r in rows
        if r["trip_distance"] is not None and 5 <= r["trip_distance"] <= 20
        and r["passenger_count"] is not None and r["passenger_count"] >= 2
        and p.month_start <= r["tpep_pickup_datetime"] < p.month_end
    ]  # fmt: skip
    assert {5.0, 20.0} <= {r["trip_distance"] for r in picked}
    totals = [r["total_amount"] for r in picked if r["total_amount"] is not None]
    records = [(len(picked), sum(totals) if totals else None)]
    check(datasets, reference, "q07", records, ["count", "sum_total_amount"])


def test_q08_all_null_totals_sum_to_null(datasets, reference, rows):
    groups = defaultdict(list)
    for r in rows:
        groups[r["PULocationID"], r["DOLocationID"]].append(r)
    records = []
    for key, members in groups.items():
        distances = [m["trip_distance"] for m in members if m["trip_distance"] is not None]
        totals = [m["total_amount"] for m in members if m["total_amount"] is not None]
        records.append(
            (
                *key,
                len(members),
                sum(distances) / len(distances) if distances else None,
                sum(totals) if totals else None,
            )
        )
    assert any(rec[4] is None for rec in records)
    columns = ["PULocationID", "DOLocationID", "count", "avg_trip_distance", "sum_total_amount"]
    check(datasets, reference, "q08", records, columns)


def test_q09_is_an_inner_join_with_a_null_borough_group(datasets, reference, rows, borough):
    groups = defaultdict(list)
    for r in rows:
        if r["PULocationID"] in borough:
            groups[borough[r["PULocationID"]]].append(r["fare_amount"])
    assert None in groups
    records = [(b, len(v), sum(v) / len(v)) for b, v in groups.items()]
    check(datasets, reference, "q09", records, ["borough", "count", "avg_fare_amount"])


def test_q11_fills_with_null_totals_in_trip_id_order(datasets, reference, rows):
    ordered = sorted(
        rows,
        key=lambda r: (r["total_amount"] is None, -(r["total_amount"] or 0), r["trip_id"]),
    )[:TOP_K]
    assert sum(r["total_amount"] is None for r in ordered) == TOP_K - 60
    records = [(r["trip_id"], r["tpep_pickup_datetime"], r["total_amount"]) for r in ordered]
    check(datasets, reference, "q11", records, ["trip_id", "tpep_pickup_datetime", "total_amount"])


def test_q12_average_gap_telescopes(datasets, reference, rows):
    times = defaultdict(list)
    for r in rows:
        times[r["PULocationID"]].append(r["tpep_pickup_datetime"])
    records = []
    for zone, stamps in times.items():
        span = (max(stamps) - min(stamps)) / dt.timedelta(microseconds=1) / 1e6
        records.append((zone, span / (len(stamps) - 1) if len(stamps) > 1 else None))
    assert any(avg is None for _, avg in records) and None in times
    check(datasets, reference, "q12", records, ["PULocationID", "avg_gap_s"])


def test_reference_is_the_pandas_solution():
    assert solutions.REFERENCE == "pandas" and solutions.is_implemented("pandas")
