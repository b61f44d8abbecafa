"""DuckDB: SQL over the parquet files on one connection with ``threads = N``.

Where DuckDB differs from the spec's semantics: ``CAST(double AS INTEGER)`` rounds (2.7 -> 3),
so q04 truncates with ``trunc`` first; ``isodow`` is Monday = 1, so weekday is ``isodow - 1``.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import duckdb
import pandas as pd
from taskbench.comparisons.data import trip_files, zones_path
from taskbench.comparisons.queries import TOP_K, TRIP_COLUMNS, Parameters, has_zones, parameters
from taskbench.comparisons.solutions import EngineConfig

NAME = "duckdb"
_LOADS = itertools.count()  # view names per load: one connection can hold several datasets


@dataclass
class Handle:
    """A connection with the dataset's views; ``trips`` and ``zones`` are their names."""

    session: duckdb.DuckDBPyConnection
    params: Parameters
    trips: str
    zones: str | None


def version() -> str:
    """DuckDB's version."""
    return f"duckdb {duckdb.__version__}"


def start(config: EngineConfig) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with the config's ``[session]`` options SET."""
    con = duckdb.connect(":memory:")
    for key, value in config.section("session").items():
        con.execute(f"SET {key} = {_literal(value)}")
    return con


def _literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def load(
    session: duckdb.DuckDBPyConnection, data_dir: str | os.PathLike[str], config: EngineConfig
) -> Handle:
    """Register the trip files and zones as views over the parquet files (tables if configured)."""
    mode = config.get("load", "mode", "view")
    if mode not in ("view", "table"):
        raise ValueError(f"duckdb [load] mode must be 'view' or 'table', got {mode!r}")
    kind = "VIEW" if mode == "view" else "TABLE"
    suffix = next(_LOADS)
    files = ", ".join(_literal(str(f)) for f in trip_files(data_dir))
    columns = ", ".join(TRIP_COLUMNS)
    trips = f"trips_{suffix}"
    session.execute(f"CREATE {kind} {trips} AS SELECT {columns} FROM read_parquet([{files}])")
    zones = None
    if has_zones(data_dir):
        zones = f"zones_{suffix}"
        path = _literal(str(zones_path(data_dir)))
        session.execute(
            f"CREATE {kind} {zones} AS SELECT LocationID, Borough FROM read_parquet({path})"
        )
    return Handle(session, parameters(data_dir), trips, zones)


def stop(session: duckdb.DuckDBPyConnection) -> None:
    """Close the connection."""
    session.close()


def _sql(h: Handle, sql: str, params: list | None = None) -> pd.DataFrame:
    text = sql.format(trips=h.trips, zones=h.zones)
    return h.session.execute(text, params or []).df()


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
        "FROM {trips} GROUP BY ALL",
    )


def q04(h: Handle) -> pd.DataFrame:
    return _sql(
        h,
        "SELECT passenger_count, year(tpep_pickup_datetime) AS year, "
        "CAST(trunc(trip_distance) AS BIGINT) AS distance, count(*) AS count "
        "FROM {trips} GROUP BY ALL "
        "ORDER BY year, count DESC, passenger_count NULLS LAST, distance NULLS LAST",
    )


def q05(h: Handle) -> pd.DataFrame:
    return _sql(
        h,
        "SELECT hour(tpep_pickup_datetime) AS hour, "
        "avg(tip_amount / fare_amount) AS avg_tip_fraction "
        "FROM {trips} WHERE fare_amount > 0 AND payment_type = 1 GROUP BY ALL",
    )


def q06(h: Handle) -> pd.DataFrame:
    return _sql(
        h,
        "SELECT isodow(tpep_pickup_datetime) - 1 AS weekday, hour(tpep_pickup_datetime) AS hour, "
        "count(*) AS count, avg(fare_amount) AS avg_fare_amount FROM {trips} GROUP BY ALL",
    )


def q07(h: Handle) -> pd.DataFrame:
    return _sql(
        h,
        "SELECT count(*) AS count, sum(total_amount) AS sum_total_amount FROM {trips} "
        "WHERE trip_distance BETWEEN 5 AND 20 AND passenger_count >= 2 "
        "AND tpep_pickup_datetime >= ? AND tpep_pickup_datetime < ?",
        [h.params.month_start, h.params.month_end],
    )


def q08(h: Handle) -> pd.DataFrame:
    return _sql(
        h,
        "SELECT PULocationID, DOLocationID, count(*) AS count, "
        "avg(trip_distance) AS avg_trip_distance, sum(total_amount) AS sum_total_amount "
        "FROM {trips} GROUP BY ALL",
    )


def _need_zones(h: Handle) -> None:
    if h.zones is None:
        raise LookupError("the dataset has no zones table (import it with --zones)")


def q09(h: Handle) -> pd.DataFrame:
    _need_zones(h)
    return _sql(
        h,
        "SELECT z.Borough AS borough, count(*) AS count, avg(t.fare_amount) AS avg_fare_amount "
        "FROM {trips} t JOIN {zones} z ON t.PULocationID = z.LocationID GROUP BY ALL",
    )


def q10(h: Handle) -> pd.DataFrame:
    _need_zones(h)
    return _sql(
        h,
        "SELECT pz.Borough AS pickup_borough, dz.Borough AS dropoff_borough, count(*) AS count "
        "FROM {trips} t JOIN {zones} pz ON t.PULocationID = pz.LocationID "
        "JOIN {zones} dz ON t.DOLocationID = dz.LocationID GROUP BY ALL",
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
        "SELECT PULocationID, avg(gap_us / 1e6) AS avg_gap_s FROM ("
        "  SELECT PULocationID,"
        "    epoch_us(tpep_pickup_datetime) - lag(epoch_us(tpep_pickup_datetime))"
        "    OVER (PARTITION BY PULocationID ORDER BY tpep_pickup_datetime, trip_id) AS gap_us"
        "  FROM {trips}) GROUP BY PULocationID",
    )
