"""The taskbench engine: the dataframe layer (``engine.dataframe``) on a ``LocalCluster``.

The trips are read one partition per parquet row group and persisted on the workers, as
dask's solution does; the zones table is small and is broadcast in the joins. Groupbys are
tree reductions with ``dropna=False`` (null keys form a group); q12 shuffles by pickup zone
(p2p, dask's default) so that each zone's trips meet in one partition, then orders them there
(``sort_within_partitions``, Spark's ``sortWithinPartitions``). Results are small
and are finished in pandas exactly as the reference does.
"""

from __future__ import annotations

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

NAME = "engine"
PICKUP = "tpep_pickup_datetime"


@dataclass
class Session:
    cluster: Any
    client: Any


@dataclass
class Handle:
    trips: Any  # engine.dataframe.DataFrame, persisted
    zones: pd.DataFrame | None
    params: Parameters
    session: Session


def version() -> str:
    from importlib.metadata import version as dist_version

    return f"taskbench engine {dist_version('taskbench')}"


def start(config: EngineConfig) -> Session:
    from taskbench.engine.client import Client
    from taskbench.engine.cluster import LocalCluster
    from taskbench.engine.options import DEFAULTS, EngineOptions

    # [cluster]: the cluster's shape, plus any EngineOptions field that departs from DEFAULTS;
    # or the address of a running scheduler (a cluster started apart), which is used as it is
    changes, shape = EngineOptions.split(config.section("cluster"))
    unknown = set(shape) - {"n_workers", "threads_per_worker", "address"}
    if unknown:
        raise ValueError(f"{config.path}: unknown [cluster] setting(s) {sorted(unknown)}")
    if "address" in shape:
        return Session(None, Client(str(shape["address"])))
    cluster = LocalCluster(
        int(shape.get("n_workers", config.cores)),
        int(shape.get("threads_per_worker", 1)),
        options=DEFAULTS.replace(**changes),
    ).start()
    return Session(cluster, Client(cluster))


def load(session: Session, data_dir: str | os.PathLike[str], config: EngineConfig) -> Handle:
    from taskbench.engine.dataframe import read_parquet

    files = [str(f) for f in trip_files(data_dir)]
    trips = read_parquet(files, columns=list(TRIP_COLUMNS))
    if config.get("load", "persist", True):
        trips = trips.persist(session.client)
        session.client.wait(trips._futures)  # load time is the time to have it in memory
    zones = None
    if has_zones(data_dir):
        zones = pd.read_parquet(zones_path(data_dir), columns=list(ZONE_COLUMNS))
    return Handle(trips, zones, parameters(data_dir), session)


def stop(session: Session) -> None:
    session.client.close()
    if session.cluster is not None:  # a cluster started apart outlives the session
        session.cluster.close()


def _run(h: Handle, collection: Any) -> Any:
    return collection.compute(h.session.client)


def _count(h: Handle, frame: Any, by: list) -> pd.DataFrame:
    sizes = _run(h, frame.groupby(by, dropna=False).size())
    return sizes.rename("count").reset_index()


def q01(h: Handle) -> pd.DataFrame:
    return _count(h, h.trips, ["payment_type"])


def q02(h: Handle) -> pd.DataFrame:
    t = h.trips[["passenger_count", "total_amount"]]
    means = _run(h, t.groupby(["passenger_count"], dropna=False).agg({"total_amount": "mean"}))
    return means.rename(columns={"total_amount": "avg_total_amount"}).reset_index()


def q03(h: Handle) -> pd.DataFrame:
    t = h.trips[["passenger_count", PICKUP]]
    t = t.assign(year=t[PICKUP].dt.year)
    return _count(h, t, ["passenger_count", "year"])


def q04(h: Handle) -> pd.DataFrame:
    t = h.trips[["passenger_count", PICKUP, "trip_distance"]]
    t = t.assign(year=t[PICKUP].dt.year, distance=t["trip_distance"].map_partitions(np.trunc))
    return _count(h, t, ["passenger_count", "year", "distance"])  # ORDER BY: normalize() sorts


def q05(h: Handle) -> pd.DataFrame:
    t = h.trips
    card = t[(t["fare_amount"] > 0) & (t["payment_type"] == 1)]
    card = card.assign(
        avg_tip_fraction=card["tip_amount"] / card["fare_amount"], hour=card[PICKUP].dt.hour
    )[["hour", "avg_tip_fraction"]]
    return _run(h, card.groupby(["hour"]).agg({"avg_tip_fraction": "mean"})).reset_index()


def q06(h: Handle) -> pd.DataFrame:
    t = h.trips[[PICKUP, "fare_amount"]]
    t = t.assign(weekday=t[PICKUP].dt.dayofweek, hour=t[PICKUP].dt.hour)
    agg = _run(h, t.groupby(["weekday", "hour"]).agg({"fare_amount": ["size", "mean"]}))
    return pd.DataFrame(
        {"count": agg[("fare_amount", "size")], "avg_fare_amount": agg[("fare_amount", "mean")]}
    ).reset_index()


def q07(h: Handle) -> pd.DataFrame:
    t, p = h.trips, h.params
    mask = (
        t["trip_distance"].between(5, 20)
        & (t["passenger_count"] >= 2)
        & (t[PICKUP] >= p.month_start)
        & (t[PICKUP] < p.month_end)
    )
    from taskbench.engine.dataframe import compute

    rows = t[mask]
    amount = rows["total_amount"]
    count, nonnull, total = compute(
        rows.length(), amount.count(), amount.sum(), client=h.session.client
    )
    return pd.DataFrame({"count": [int(count)], "sum_total_amount": [total if nonnull else np.nan]})


def q08(h: Handle) -> pd.DataFrame:
    t = h.trips[["PULocationID", "DOLocationID", "trip_distance", "total_amount"]]
    agg = _run(
        h,
        t.groupby(["PULocationID", "DOLocationID"], dropna=False).agg(
            {"trip_distance": ["size", "mean"], "total_amount": ["sum", "count"]}
        ),
    )
    sums = agg[("total_amount", "sum")].where(agg[("total_amount", "count")] > 0)
    return pd.DataFrame(
        {
            "count": agg[("trip_distance", "size")],
            "avg_trip_distance": agg[("trip_distance", "mean")],
            "sum_total_amount": sums,
        }
    ).reset_index()


def _zones(h: Handle) -> pd.DataFrame:
    if h.zones is None:
        raise LookupError("the dataset has no zones table (import it with --zones)")
    return h.zones


def _small(frame: pd.DataFrame) -> Any:
    from taskbench.engine.dataframe import from_pandas

    return from_pandas(frame, npartitions=1)


def q09(h: Handle) -> pd.DataFrame:
    zones = _zones(h).rename(columns={"LocationID": "PULocationID", "Borough": "borough"})
    joined = h.trips[["PULocationID", "fare_amount"]].merge(
        _small(zones[["PULocationID", "borough"]]), on="PULocationID"
    )
    agg = _run(h, joined.groupby(["borough"], dropna=False).agg({"fare_amount": ["size", "mean"]}))
    return pd.DataFrame(
        {"count": agg[("fare_amount", "size")], "avg_fare_amount": agg[("fare_amount", "mean")]}
    ).reset_index()


def q10(h: Handle) -> pd.DataFrame:
    zones = _zones(h)
    pickup = zones.rename(columns={"LocationID": "PULocationID", "Borough": "pickup_borough"})
    dropoff = zones.rename(columns={"LocationID": "DOLocationID", "Borough": "dropoff_borough"})
    joined = (
        h.trips[["PULocationID", "DOLocationID"]]
        .merge(_small(pickup[["PULocationID", "pickup_borough"]]), on="PULocationID")
        .merge(_small(dropoff[["DOLocationID", "dropoff_borough"]]), on="DOLocationID")
    )
    return _count(h, joined, ["pickup_borough", "dropoff_borough"])


def q11(h: Handle) -> pd.DataFrame:
    from taskbench.engine.dataframe import compute

    t = h.trips[["trip_id", PICKUP, "total_amount"]]
    top, nulls = compute(  # ties on the 100th total all come back; trip_id orders them
        t.nlargest(TOP_K, "total_amount", keep="all"),
        t[t["total_amount"].isna()].nsmallest(TOP_K, "trip_id"),
        client=h.session.client,
    )
    top = top.sort_values(["total_amount", "trip_id"], ascending=[False, True]).head(TOP_K)
    if len(top) < TOP_K:  # NULLS LAST, in trip_id order
        top = pd.concat([top, nulls.head(TOP_K - len(top))])
    return top


def _zone_gaps(df: pd.DataFrame) -> pd.DataFrame:
    """Within one partition, all of each zone's trips in (pickup, trip_id) order: the mean gap
    between consecutive pickups."""
    gap = df.groupby("PULocationID", dropna=False)[PICKUP].diff().dt.total_seconds()
    answer = gap.groupby(df["PULocationID"], dropna=False).mean().rename("avg_gap_s")
    return answer.reset_index()


def q12(h: Handle) -> pd.DataFrame:
    t = h.trips[["PULocationID", PICKUP, "trip_id"]]
    by_zone = t.shuffle(on="PULocationID", npartitions=t.npartitions, method="p2p")  # as dask's
    ordered = by_zone.sort_within_partitions([PICKUP, "trip_id"])  # as Spark's, per partition
    meta = pd.DataFrame({"PULocationID": pd.Series([], dtype=t._meta["PULocationID"].dtype),
                         "avg_gap_s": pd.Series([], dtype="float64")})  # fmt: skip
    return _run(h, ordered.map_partitions(_zone_gaps, meta=meta))


def stream_position(h: Handle) -> int:
    """Where the cluster's task stream is now (the runner records one query's stream)."""
    return h.session.client.stream_position()


def write_task_stream(h: Handle, since: int, path: str, title: str) -> None:
    """The task records since ``since`` as JSONL, titled (``taskbench stream plot`` reads it)."""
    stream = h.session.client.task_stream(since)
    stream.meta = {"engine": "taskbench", "title": title}
    stream.to_jsonl(path)
