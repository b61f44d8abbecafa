"""Apache Spark: Spark SQL on a SparkSession (``local[N]`` by default, or any master URL).

Notes for Spark reviewers: parquet ``timestamp[us]`` is read as ``timestamp_ntz``, and the
session zone is UTC, so nothing is shifted. ``weekday()`` is already Monday = 0 and
``CAST(double AS INT)`` truncates, as the spec says. Answers come back with ``toPandas()``
(through Arrow). ``pyspark.pandas`` is not used: it does not import under pandas 3.
Temporary views carry a per-load suffix, so one session can hold several datasets (tests).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

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

NAME = "spark"
_LOADS = itertools.count()


@dataclass
class Handle:
    """A session with the dataset's views: ``trips`` and ``zones`` name them in this session."""

    session: Any  # pyspark.sql.SparkSession
    params: Parameters
    trips: str
    zones: str | None
    cached: list[Any]


def version() -> str:
    """pyspark's version."""
    import pyspark

    return f"pyspark {pyspark.__version__}"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide pyspark's own pandas-3 warnings: "does not yet fully support pandas >= 3.0.0" and
    the deprecated ``copy=`` it passes to ``astype``. The paths used here (SQL, toPandas
    through Arrow) are checked by the answer checks instead. Under ``-W error`` these
    warnings would abort toPandas() midway."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not yet fully support pandas")
        warnings.filterwarnings(
            "ignore", message="The copy keyword is deprecated", module="pyspark"
        )
        yield


def start(config: EngineConfig) -> Any:
    """A SparkSession with the config's ``[session]`` settings."""
    for key, value in config.section("env").items():
        os.environ.setdefault(key, str(value))
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("taskbench-comparisons")
    for key, value in config.section("session").items():
        builder = builder.config(key, str(value).lower() if isinstance(value, bool) else value)
    with _quiet():
        session = builder.getOrCreate()
    level = config.get("driver", "log_level")
    if level:
        session.sparkContext.setLogLevel(str(level))
    return session


def load(session: Any, data_dir: str | os.PathLike[str], config: EngineConfig) -> Handle:
    """Read the trip files (and zones) with ``spark.read.parquet``; cache them if configured."""
    suffix = next(_LOADS)
    trips = session.read.parquet(*[str(f) for f in trip_files(data_dir)]).select(*TRIP_COLUMNS)
    frames = [trips]
    zones_view = None
    if has_zones(data_dir):
        zones = session.read.parquet(str(zones_path(data_dir))).select(*ZONE_COLUMNS)
        zones_view = f"zones_{suffix}"
        zones.createOrReplaceTempView(zones_view)
        frames.append(zones)
    cached = []
    if config.get("load", "cache", False):
        for frame in frames:
            frame.cache().count()  # materialise now: loading is timed apart from the queries
            cached.append(frame)
    trips.createOrReplaceTempView(f"trips_{suffix}")
    return Handle(session, parameters(data_dir), f"trips_{suffix}", zones_view, cached)


def unload(h: Handle) -> None:
    """Drop a dataset's views and cached data, keeping the session."""
    for frame in h.cached:
        frame.unpersist()
    h.session.catalog.dropTempView(h.trips)
    if h.zones:
        h.session.catalog.dropTempView(h.zones)


def stop(session: Any) -> None:
    """Stop the session and its JVM-side context."""
    session.stop()


def _sql(h: Handle, sql: str) -> pd.DataFrame:
    frame = h.session.sql(sql.format(trips=h.trips, zones=h.zones))
    with _quiet():
        return frame.toPandas()


def _ntz(value: dt.datetime) -> str:
    # A literal, not a bound parameter: pyspark binds a naive datetime as a session-zoned
    # TIMESTAMP via the Python process's local zone, which could shift it.
    return f"TIMESTAMP_NTZ '{value.isoformat(sep=' ')}'"


def q01(h: Handle) -> pd.DataFrame:
    return _sql(h, "SELECT payment_type, count(*) AS count FROM {trips} GROUP BY payment_type")


def q02(h: Handle) -> pd.DataFrame:
    return _sql(
        h,
        "SELECT passenger_count, avg(total_amount) AS avg_total_amount "
        "FROM {trips} GROUP BY passenger_count",
    )


def q03(h: Handle) -> pd.DataFrame:
    return _sql(
        h,
        "SELECT passenger_count, year(tpep_pickup_datetime) AS year, count(*) AS count "
        "FROM {trips} GROUP BY 1, 2",
    )


def q04(h: Handle) -> pd.DataFrame:
    return _sql(
        h,
        "SELECT passenger_count, year(tpep_pickup_datetime) AS year, "
        "CAST(trip_distance AS INT) AS distance, count(*) AS count "
        "FROM {trips} GROUP BY 1, 2, 3 "
        "ORDER BY year, count DESC, passenger_count NULLS LAST, distance NULLS LAST",
    )


def q05(h: Handle) -> pd.DataFrame:
    return _sql(
        h,
        "SELECT hour(tpep_pickup_datetime) AS hour, "
        "avg(tip_amount / fare_amount) AS avg_tip_fraction "
        "FROM {trips} WHERE fare_amount > 0 AND payment_type = 1 GROUP BY 1",
    )


def q06(h: Handle) -> pd.DataFrame:
    return _sql(
        h,
        "SELECT weekday(tpep_pickup_datetime) AS weekday, hour(tpep_pickup_datetime) AS hour, "
        "count(*) AS count, avg(fare_amount) AS avg_fare_amount FROM {trips} GROUP BY 1, 2",
    )


def q07(h: Handle) -> pd.DataFrame:
    return _sql(
        h,
        "SELECT count(*) AS count, sum(total_amount) AS sum_total_amount FROM {trips} "
        "WHERE trip_distance BETWEEN 5 AND 20 AND passenger_count >= 2 "
        f"AND tpep_pickup_datetime >= {_ntz(h.params.month_start)} "
        f"AND tpep_pickup_datetime < {_ntz(h.params.month_end)}",
    )


def q08(h: Handle) -> pd.DataFrame:
    return _sql(
        h,
        "SELECT PULocationID, DOLocationID, count(*) AS count, "
        "avg(trip_distance) AS avg_trip_distance, sum(total_amount) AS sum_total_amount "
        "FROM {trips} GROUP BY 1, 2",
    )


def _need_zones(h: Handle) -> None:
    if h.zones is None:
        raise LookupError("the dataset has no zones table (import it with --zones)")


def q09(h: Handle) -> pd.DataFrame:
    _need_zones(h)
    return _sql(
        h,
        "SELECT z.Borough AS borough, count(*) AS count, avg(t.fare_amount) AS avg_fare_amount "
        "FROM {trips} t JOIN {zones} z ON t.PULocationID = z.LocationID GROUP BY 1",
    )


def q10(h: Handle) -> pd.DataFrame:
    _need_zones(h)
    return _sql(
        h,
        "SELECT pz.Borough AS pickup_borough, dz.Borough AS dropoff_borough, count(*) AS count "
        "FROM {trips} t JOIN {zones} pz ON t.PULocationID = pz.LocationID "
        "JOIN {zones} dz ON t.DOLocationID = dz.LocationID GROUP BY 1, 2",
    )


def q11(h: Handle) -> pd.DataFrame:
    return _sql(
        h,
        "SELECT trip_id, tpep_pickup_datetime, total_amount FROM {trips} "
        f"ORDER BY total_amount DESC NULLS LAST, trip_id LIMIT {TOP_K}",
    )


def q12(h: Handle) -> pd.DataFrame:
    return _sql(
        h,
        "SELECT PULocationID, avg(CAST(gap_us AS DOUBLE) / 1e6) AS avg_gap_s FROM ("
        "  SELECT PULocationID, timestampdiff(MICROSECOND, lag(tpep_pickup_datetime) OVER w,"
        "    tpep_pickup_datetime) AS gap_us"
        "  FROM {trips}"
        "  WINDOW w AS (PARTITION BY PULocationID ORDER BY tpep_pickup_datetime, trip_id)"
        ") GROUP BY PULocationID",
    )
