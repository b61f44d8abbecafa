"""pandas: the reference answer. One process, the whole dataset in memory via ``read_parquet``.

Integer columns with nulls (passenger_count, payment_type, zone ids in old files) come back as
float64 with NaN; every groupby passes ``dropna=False`` so that null keys form groups.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
from taskbench.comparisons.data import trip_files, zones_path
from taskbench.comparisons.queries import (
    TOP_K,
    TRIP_COLUMNS,
    ZONE_COLUMNS,
    Parameters,
    has_zones,
    parameters,
)
from taskbench.comparisons.solutions import EngineConfig

NAME = "pandas"
PICKUP = "tpep_pickup_datetime"


@dataclass
class Handle:
    """The loaded dataset."""

    trips: pd.DataFrame
    zones: pd.DataFrame | None
    params: Parameters
    session: None = None


def version() -> str:
    """pandas' version."""
    return f"pandas {pd.__version__}"


def start(config: EngineConfig) -> None:
    """pandas has nothing to start."""
    return None


def load(session: None, data_dir: str | os.PathLike[str], config: EngineConfig) -> Handle:
    """Read the problem set's columns of every trip file, and the zones table, into memory."""
    files = [str(f) for f in trip_files(data_dir)]
    trips = pd.read_parquet(files, columns=list(TRIP_COLUMNS))
    zones = None
    if has_zones(data_dir):
        zones = pd.read_parquet(zones_path(data_dir), columns=list(ZONE_COLUMNS))
    return Handle(trips, zones, parameters(data_dir))


def stop(session: None) -> None:
    """pandas has nothing to stop."""


def _count(grouped: pd.core.groupby.DataFrameGroupBy) -> pd.DataFrame:
    return grouped.size().rename("count").reset_index()


def q01(h: Handle) -> pd.DataFrame:
    return _count(h.trips.groupby("payment_type", dropna=False))


def q02(h: Handle) -> pd.DataFrame:
    grouped = h.trips.groupby("passenger_count", dropna=False)["total_amount"].mean()
    return grouped.rename("avg_total_amount").reset_index()


def q03(h: Handle) -> pd.DataFrame:
    t = h.trips
    keys = [t["passenger_count"], t[PICKUP].dt.year.rename("year")]
    return _count(t.groupby(keys, dropna=False))


def q04(h: Handle) -> pd.DataFrame:
    t = h.trips
    keys = [
        t["passenger_count"],
        t[PICKUP].dt.year.rename("year"),
        np.trunc(t["trip_distance"]).rename("distance"),
    ]
    return _count(t.groupby(keys, dropna=False))  # the spec's ORDER BY: normalize() sorts


def q05(h: Handle) -> pd.DataFrame:
    t = h.trips
    card = t[(t["fare_amount"] > 0) & (t["payment_type"] == 1)]
    fraction = (card["tip_amount"] / card["fare_amount"]).rename("avg_tip_fraction")
    return fraction.groupby(card[PICKUP].dt.hour.rename("hour")).mean().reset_index()


def q06(h: Handle) -> pd.DataFrame:
    t = h.trips
    keys = [t[PICKUP].dt.day_of_week.rename("weekday"), t[PICKUP].dt.hour.rename("hour")]
    fares = t["fare_amount"].groupby(keys)
    return pd.DataFrame({"count": fares.size(), "avg_fare_amount": fares.mean()}).reset_index()


def q07(h: Handle) -> pd.DataFrame:
    t, p = h.trips, h.params
    mask = (
        t["trip_distance"].between(5, 20)
        & (t["passenger_count"] >= 2)
        & (t[PICKUP] >= p.month_start)
        & (t[PICKUP] < p.month_end)
    )
    totals = t.loc[mask, "total_amount"]
    return pd.DataFrame({"count": [int(mask.sum())], "sum_total_amount": [totals.sum(min_count=1)]})


def q08(h: Handle) -> pd.DataFrame:
    grouped = h.trips.groupby(["PULocationID", "DOLocationID"], dropna=False)
    return pd.DataFrame(
        {
            "count": grouped.size(),
            "avg_trip_distance": grouped["trip_distance"].mean(),
            "sum_total_amount": grouped["total_amount"].sum(min_count=1),
        }
    ).reset_index()


def _zones(h: Handle) -> pd.DataFrame:
    if h.zones is None:
        raise LookupError("the dataset has no zones table (import it with --zones)")
    return h.zones


def q09(h: Handle) -> pd.DataFrame:
    zones = _zones(h).rename(columns={"LocationID": "PULocationID", "Borough": "borough"})
    joined = h.trips[["PULocationID", "fare_amount"]].merge(zones, on="PULocationID")
    fares = joined.groupby("borough", dropna=False)["fare_amount"]
    return pd.DataFrame({"count": fares.size(), "avg_fare_amount": fares.mean()}).reset_index()


def q10(h: Handle) -> pd.DataFrame:
    zones = _zones(h)
    pickup = zones.rename(columns={"LocationID": "PULocationID", "Borough": "pickup_borough"})
    dropoff = zones.rename(columns={"LocationID": "DOLocationID", "Borough": "dropoff_borough"})
    joined = (
        h.trips[["PULocationID", "DOLocationID"]]
        .merge(pickup, on="PULocationID")
        .merge(dropoff, on="DOLocationID")
    )
    return _count(joined.groupby(["pickup_borough", "dropoff_borough"], dropna=False))


def q11(h: Handle) -> pd.DataFrame:
    t = h.trips[["trip_id", PICKUP, "total_amount"]]
    # keep="all" keeps every row tied with the 100th, so the trip_id tie-break below is exact.
    top = t.nlargest(TOP_K, "total_amount", keep="all")
    top = top.sort_values(["total_amount", "trip_id"], ascending=[False, True]).head(TOP_K)
    if len(top) < TOP_K:  # NULLS LAST: fill up with null totals in trip_id order
        nulls = t[t["total_amount"].isna()].sort_values("trip_id").head(TOP_K - len(top))
        top = pd.concat([top, nulls])
    return top


def q12(h: Handle) -> pd.DataFrame:
    t = h.trips[["PULocationID", PICKUP, "trip_id"]].sort_values([PICKUP, "trip_id"])
    zones = t.groupby("PULocationID", dropna=False)
    gap = zones[PICKUP].diff().dt.total_seconds()  # within each zone, in (pickup, trip_id) order
    answer = gap.groupby(t["PULocationID"], dropna=False).mean().rename("avg_gap_s")
    return answer.reset_index()
