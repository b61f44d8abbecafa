"""A small dataset that plants every semantic trap of the problem set where engines disagree.

It starts from generated trips (Dec 2015 - Jan 2016, so two years) and then plants: null
passenger counts, payment types, zone ids and distances; distances that truncate and round
differently (-1.5, 2.5, 2.7) and that sit on q07's BETWEEN bounds; mostly-null totals, so that
q11 fills its top 100 with null totals in trip_id order and q08 has all-null sums; zero fares
and null tips for q05; zones with one trip, or with several trips at one instant, for q12;
microsecond pickup times; zone ids missing from the zones table; a zone with a null Borough.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from taskbench.comparisons.data import TRIPS_SCHEMA, generate, trip_files, zones_path
from taskbench.comparisons.data.manifest import write_dataset
from taskbench.comparisons.data.schema import parquet_writer, trip_file_name

ROWS = 2_000
NON_NULL_TOTALS = 60  # < 100: q11 must fill up with null totals, ordered by trip_id
TIED_TOTALS = 25  # of those, this many share the largest total
LONE_ZONE = 301  # one trip: q12's average gap is null
UNKNOWN_ZONE = 300  # not in the zones table: inner joins drop it
SAME_INSTANT_ZONE = 302  # sub-second gaps, and two trips at one instant


def write_edge_dataset(out: Path) -> Path:
    """Write the edge dataset to ``out`` (which must not exist yet); return ``out``."""
    base = out.parent / f"{out.name}-base"
    generate(base, rows=ROWS, start="2015-12", months=2, seed=7)
    trips = pq.read_table(trip_files(base)).to_pandas(
        types_mapper={pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype()}.get
    )
    _plant(trips)
    zones = pq.read_table(zones_path(base)).to_pandas()
    busy = trips["PULocationID"].value_counts().index[3]  # a zone with many pickups
    zones.loc[zones["LocationID"] == busy, "Borough"] = None
    _write(trips, zones, out)
    return out


def _plant(t: pd.DataFrame) -> None:
    rng = np.random.default_rng(0)
    n = len(t)
    t.loc[0:9, "passenger_count"] = pd.NA
    t.loc[10:19, "payment_type"] = pd.NA
    t.loc[20:29, "PULocationID"] = pd.NA
    t.loc[25:34, "DOLocationID"] = pd.NA
    t.loc[35:39, "PULocationID"] = UNKNOWN_ZONE
    t.loc[40, "PULocationID"] = LONE_ZONE
    # Sub-second gaps (whole-second arithmetic is wrong here) and two trips at one instant.
    t.loc[41:44, "PULocationID"] = SAME_INSTANT_ZONE
    offsets = pd.to_timedelta([0, 250_000, 500_000, 500_000], unit="us")
    t.loc[41:44, "tpep_pickup_datetime"] = t.loc[41, "tpep_pickup_datetime"] + offsets
    # Truncation vs rounding vs flooring; a null distance is a null group.
    odd = [-1.5, -0.5, -2.7, 0.5, 2.5, 2.7, 3.5, -0.0, 99.99, 300.5]
    t.loc[50 : 50 + len(odd) - 1, "trip_distance"] = odd
    t.loc[60:61, "trip_distance"] = np.nan
    # q05: zero and negative fares on card trips are excluded; a null tip is skipped.
    t.loc[70:74, ["payment_type", "fare_amount"]] = [1, 0.0]
    t.loc[75:76, ["payment_type", "fare_amount"]] = [1, -5.0]
    t.loc[77:79, "tip_amount"] = np.nan
    # Microsecond pickups (kept inside their month).
    micro = pd.to_timedelta(rng.integers(1, 999_999, 200), unit="us")
    t.loc[100:299, "tpep_pickup_datetime"] += micro
    # q07: BETWEEN bounds and passenger filters in the busiest month (2016-01).
    january = np.flatnonzero(t["tpep_pickup_datetime"].to_numpy() >= np.datetime64("2016-01-01"))
    rows = january[:8]
    t.loc[rows, "trip_distance"] = [5.0, 20.0, 4.999999, 20.000001, 12.0, 12.0, 12.0, 12.0]
    t.loc[rows, "passenger_count"] = [2, 2, 2, 2, 1, 2, pd.NA, 6]
    # Mostly null totals: q08 gets all-null groups, q11 a top 100 that needs null fill.
    keep = rng.choice(n, NON_NULL_TOTALS, replace=False)
    totals = t["total_amount"].to_numpy().copy()
    t["total_amount"] = np.nan
    t.loc[keep, "total_amount"] = totals[keep]
    t.loc[keep[:TIED_TOTALS], "total_amount"] = 999.99


def _write(trips: pd.DataFrame, zones: pd.DataFrame, out: Path) -> None:
    (out / "trips").mkdir(parents=True)
    trips = trips.sort_values("trip_id").reset_index(drop=True)
    months = trips["tpep_pickup_datetime"].dt.to_period("M")
    file_rows = {}
    for period, rows in trips.groupby(months, sort=True):
        assert rows["tpep_pickup_datetime"].min() >= dt.datetime(period.year, period.month, 1)
        name = trip_file_name(period.year, period.month)
        table = pa.Table.from_pandas(rows, schema=TRIPS_SCHEMA, preserve_index=False)
        with parquet_writer(out / name) as writer:
            writer.write_table(table)
        file_rows[name] = len(rows)
    write_dataset(
        out,
        kind="generated",
        zones=pa.Table.from_pandas(zones, preserve_index=False),
        zones_source="synthetic, one Borough nulled",
        file_rows=file_rows,
        seed=7,
        created_by="tests/comparisons/edge_data.py",
    )
