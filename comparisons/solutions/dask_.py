"""Dask: ``dask.dataframe`` on a distributed ``LocalCluster`` of single-threaded worker processes.

Notes for dask reviewers:

- ``read_parquet`` reports nullable int32 columns as int32, but a partition with a null holds
  float64 (pandas' conversion). ``load`` casts those columns to float64 so that the meta is
  true for every partition.
- That cast also sidesteps dask/dask#12488 (open): ``persist()`` of a bare
  ``read_parquet(columns=…)`` returns a collection whose partition count predates IO fusion,
  and every later compute fails with "lost dependencies". With a blockwise step on top, the
  fused partitions are persisted consistently.
- Groupbys pass ``dropna=False`` (null keys form groups); top-k reduces per partition and then
  once more; q12 shuffles on the zone and sorts within each partition.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

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

NAME = "dask"
PICKUP = "tpep_pickup_datetime"
# int32 in the files, null somewhere in real data: float64 in every partition.
NULLABLE_INTS = ("passenger_count", "payment_type", "PULocationID", "DOLocationID")


@dataclass
class Session:
    """The cluster and the client connected to it."""

    cluster: Any  # distributed.LocalCluster, or None for an external scheduler
    client: Any  # distributed.Client


@dataclass
class Handle:
    """The dataset as dask DataFrames (persisted in worker memory if configured)."""

    session: Session
    trips: Any  # dask.dataframe.DataFrame
    zones: Any | None
    params: Parameters


def version() -> str:
    """dask's and distributed's versions."""
    import dask
    import distributed

    return f"dask {dask.__version__} (distributed {distributed.__version__})"


def start(config: EngineConfig) -> Session:
    """A LocalCluster built from the config's ``[cluster]`` settings, and a client on it; or,
    with ``[client] address``, a client on a scheduler that is already running."""
    from distributed import Client, LocalCluster

    address = config.get("client", "address")
    if address:
        return Session(None, Client(address))
    options = config.section("cluster")
    if options.get("dashboard_address") is False:
        options["dashboard_address"] = None
    if isinstance(options.get("silence_logs"), str):
        level = getattr(logging, options["silence_logs"].upper())
        options["silence_logs"] = level
        for name in ("distributed", "dask"):
            logging.getLogger(name).setLevel(level)
    cluster = LocalCluster(**options)
    try:
        client = Client(cluster)
    except BaseException:
        cluster.close()
        raise
    return Session(cluster, client)


def load(session: Session, data_dir: str | os.PathLike[str], config: EngineConfig) -> Handle:
    """``read_parquet`` of the trip files and zones; persisted in the workers if configured."""
    import dask.dataframe as dd
    from distributed import wait

    files = [str(f) for f in trip_files(data_dir)]
    trips = dd.read_parquet(files, columns=list(TRIP_COLUMNS))
    trips = trips.astype({name: "float64" for name in NULLABLE_INTS})
    zones = None
    if has_zones(data_dir):
        zones = dd.read_parquet(str(zones_path(data_dir)), columns=list(ZONE_COLUMNS))
        zones = zones.astype({"LocationID": "float64"})  # joins against float64 zone ids
    if config.get("load", "persist", False):
        trips = trips.persist()
        zones = zones.persist() if zones is not None else None
        wait([trips] + ([zones] if zones is not None else []))
    return Handle(session, trips, zones, parameters(data_dir))


def stop(session: Session) -> None:
    """Close the client and the cluster."""
    session.client.close()
    if session.cluster is not None:
        session.cluster.close()


def _size(grouped: Any) -> pd.DataFrame:
    return grouped.size().compute().rename("count").reset_index()


def q01(h: Handle) -> pd.DataFrame:
    return _size(h.trips.groupby("payment_type", dropna=False))


def q02(h: Handle) -> pd.DataFrame:
    grouped = h.trips.groupby("passenger_count", dropna=False)["total_amount"].mean()
    return grouped.compute().rename("avg_total_amount").reset_index()


def q03(h: Handle) -> pd.DataFrame:
    t = h.trips.assign(year=h.trips[PICKUP].dt.year)
    return _size(t.groupby(["passenger_count", "year"], dropna=False))


def q04(h: Handle) -> pd.DataFrame:
    t = h.trips.assign(year=h.trips[PICKUP].dt.year, distance=np.trunc(h.trips["trip_distance"]))
    # the spec's ORDER BY: normalize() sorts
    return _size(t.groupby(["passenger_count", "year", "distance"], dropna=False))


def q05(h: Handle) -> pd.DataFrame:
    t = h.trips
    card = t[(t["fare_amount"] > 0) & (t["payment_type"] == 1)]
    card = card.assign(hour=card[PICKUP].dt.hour, fraction=card["tip_amount"] / card["fare_amount"])
    answer = card.groupby("hour")["fraction"].mean().compute()
    return answer.rename("avg_tip_fraction").reset_index()


def q06(h: Handle) -> pd.DataFrame:
    t = h.trips.assign(weekday=h.trips[PICKUP].dt.day_of_week, hour=h.trips[PICKUP].dt.hour)
    answer = t.groupby(["weekday", "hour"]).agg(
        count=("fare_amount", "size"), avg_fare_amount=("fare_amount", "mean")
    )
    return answer.compute().reset_index()


def q07(h: Handle) -> pd.DataFrame:
    import dask

    t, p = h.trips, h.params
    mask = (
        t["trip_distance"].between(5, 20)
        & (t["passenger_count"] >= 2)
        & (t[PICKUP] >= p.month_start)
        & (t[PICKUP] < p.month_end)
    )
    picked = t[mask]
    rows, total, totals = dask.compute(
        picked["trip_id"].count(), picked["total_amount"].sum(), picked["total_amount"].count()
    )
    return pd.DataFrame(
        {"count": [int(rows)], "sum_total_amount": [float(total) if totals else np.nan]}
    )


def q08(h: Handle) -> pd.DataFrame:
    grouped = h.trips.groupby(["PULocationID", "DOLocationID"], dropna=False)
    answer = grouped.agg(
        count=("trip_distance", "size"),
        avg_trip_distance=("trip_distance", "mean"),
        sum_total_amount=("total_amount", "sum"),
        totals=("total_amount", "count"),
    ).compute()
    # SQL: a group whose totals are all null sums to null, not 0.
    answer["sum_total_amount"] = answer["sum_total_amount"].where(answer.pop("totals") > 0)
    return answer.reset_index()


def _zones(h: Handle) -> Any:
    if h.zones is None:
        raise LookupError("the dataset has no zones table (import it with --zones)")
    return h.zones


def q09(h: Handle) -> pd.DataFrame:
    zones = _zones(h).rename(columns={"LocationID": "PULocationID", "Borough": "borough"})
    joined = h.trips[["PULocationID", "fare_amount"]].merge(zones, on="PULocationID")
    answer = joined.groupby("borough", dropna=False).agg(
        count=("fare_amount", "size"), avg_fare_amount=("fare_amount", "mean")
    )
    return answer.compute().reset_index()


def q10(h: Handle) -> pd.DataFrame:
    zones = _zones(h)
    pickup = zones.rename(columns={"LocationID": "PULocationID", "Borough": "pickup_borough"})
    dropoff = zones.rename(columns={"LocationID": "DOLocationID", "Borough": "dropoff_borough"})
    joined = (
        h.trips[["PULocationID", "DOLocationID"]]
        .merge(pickup, on="PULocationID")
        .merge(dropoff, on="DOLocationID")
    )
    return _size(joined.groupby(["pickup_borough", "dropoff_borough"], dropna=False))


def _top(frame: pd.DataFrame) -> pd.DataFrame:
    """The first TOP_K rows by total_amount DESC NULLS LAST, trip_id (per partition, then once
    more over the candidates). ``keep="all"`` keeps rows tied with the last one, so the
    trip_id tie-break is exact; null totals fill up in trip_id order."""
    top = frame.nlargest(TOP_K, "total_amount", keep="all")
    top = top.sort_values(["total_amount", "trip_id"], ascending=[False, True]).head(TOP_K)
    if len(top) < TOP_K:
        nulls = frame[frame["total_amount"].isna()].nsmallest(TOP_K - len(top), "trip_id")
        top = pd.concat([top, nulls])
    return top


def q11(h: Handle) -> pd.DataFrame:
    columns = h.trips[["trip_id", PICKUP, "total_amount"]]
    candidates = columns.map_partitions(_top).compute()
    return _top(candidates)


def _gaps(part: pd.DataFrame) -> pd.DataFrame:
    """Average pickup gap (s) per zone, for a partition that holds whole zones."""
    part = part.sort_values([PICKUP, "trip_id"])
    zones = part.groupby("PULocationID", dropna=False)
    gap = zones[PICKUP].diff().dt.total_seconds()  # within each zone, in (pickup, trip_id) order
    answer = gap.groupby(part["PULocationID"], dropna=False).mean().rename("avg_gap_s")
    return answer.reset_index()


def q12(h: Handle) -> pd.DataFrame:
    columns = h.trips[["PULocationID", PICKUP, "trip_id"]]
    shuffled = columns.shuffle(on="PULocationID")
    meta = pd.DataFrame(
        {"PULocationID": pd.Series(dtype="float64"), "avg_gap_s": pd.Series(dtype="float64")}
    )
    return shuffled.map_partitions(_gaps, meta=meta).compute()
