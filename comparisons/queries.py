"""The problem set: one registry of NYC-taxi queries that every engine answers under the same ids.

Each :class:`Query` holds the SQL text that is its spec, the semantics notes that settle where
engines disagree, and the shape of its answer (columns, kinds, sort order) that
:mod:`comparisons.normalize` uses to check every engine against the pandas reference.

Semantics, once for all queries:

- Nulls form a group (``GROUP BY`` keeps a null key; pandas needs ``dropna=False``).
- ``CAST(x AS INT)`` truncates toward zero (DuckDB's cast rounds, so it uses ``trunc``).
- ``weekday`` is Monday = 0 … Sunday = 6; ``year``/``hour`` read the naive timestamp as it is.
  All times are naive and mean UTC; no engine may shift them by a session time zone.
- Aggregates follow SQL: ``avg``/``sum`` skip nulls; ``avg``/``sum`` over no non-null value is
  null (pandas needs ``min_count=1`` for ``sum``); ``count(*)`` counts rows.
- Ties are broken by ``trip_id``, which is unique.
- Joins with ``zones`` are inner joins: a trip whose zone id is null or not in the table drops
  out. A zone with a null ``Borough`` forms the null-borough group.

The SQL is written once, here. It reads the tables ``trips`` and ``zones``, takes parameters as
``:name``, and spells out what dialects default differently (``NULLS LAST``). The SQL solutions
run it through :func:`render_sql`: their dialect differs only by a few :class:`Rewrite` rules,
each with its reason.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from taskbench.comparisons.data.manifest import read_manifest

Kind = Literal["int", "float", "str", "timestamp"]

# The trip columns the problem set reads; every solution loads exactly these.
TRIP_COLUMNS: tuple[str, ...] = (
    "tpep_pickup_datetime",
    "passenger_count",
    "trip_distance",
    "PULocationID",
    "DOLocationID",
    "payment_type",
    "fare_amount",
    "tip_amount",
    "total_amount",
    "trip_id",
)
ZONE_COLUMNS: tuple[str, ...] = ("LocationID", "Borough")
TOP_K = 100  # q11


@dataclass(frozen=True)
class Column:
    """One column of an answer: its name, its kind, and whether null is a legitimate value."""

    name: str
    kind: Kind
    nullable: bool = False


@dataclass(frozen=True)
class Query:
    """One question of the problem set. ``order`` sorts a normalised answer ("-x": descending)."""

    id: str
    title: str
    sql: str
    notes: tuple[str, ...]
    columns: tuple[Column, ...]
    keys: tuple[str, ...]  # the columns that identify a row (group keys, trip_id)
    order: tuple[str, ...]  # total order of the answer; nulls last in every column
    needs_zones: bool = False
    spec_orders: bool = False  # the SQL itself orders the answer (ORDER BY … / LIMIT)

    @property
    def names(self) -> tuple[str, ...]:
        """The answer's column names, in order."""
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        """The column called ``name``."""
        return next(c for c in self.columns if c.name == name)

    @property
    def parameters(self) -> tuple[str, ...]:
        """The names of the SQL's ``:name`` parameters (fields of :class:`Parameters`)."""
        return tuple(dict.fromkeys(_PARAMETER.findall(self.sql)))


@dataclass(frozen=True)
class Parameters:
    """Values some queries take from the dataset; every engine gets the same ones."""

    month: str  # q07's month, "YYYY-MM"
    month_start: dt.datetime = field(repr=False)  # inclusive
    month_end: dt.datetime = field(repr=False)  # exclusive


@dataclass(frozen=True)
class Rewrite:
    """One place where a SQL dialect spells the registry's SQL differently, and why.

    ``pattern`` is a regular expression over the registry's SQL; ``replacement`` is what the
    dialect writes instead (:func:`re.sub` syntax).
    """

    pattern: str
    replacement: str
    reason: str


_TABLE = re.compile(r"\b(FROM|JOIN)\s+(trips|zones)\b")
_PARAMETER = re.compile(r"(?<![:\w]):(\w+)")


def render_sql(
    query: Query,
    rewrites: Sequence[Rewrite],
    *,
    tables: Mapping[str, str | None],
    parameter: Callable[[str], str],
) -> str:
    """The query's SQL in one dialect: its rewrites applied, the tables ``trips`` and ``zones``
    named ``tables[…]``, and each ``:name`` parameter spelled ``parameter(name)``."""
    sql = query.sql
    for rewrite in rewrites:
        sql = re.sub(rewrite.pattern, rewrite.replacement, sql)

    def table(match: re.Match[str]) -> str:
        name = tables.get(match.group(2))
        if name is None:
            raise LookupError(f"the dataset has no {match.group(2)} table (import it with --zones)")
        return f"{match.group(1)} {name}"

    sql = _TABLE.sub(table, sql)
    return _PARAMETER.sub(lambda match: parameter(match.group(1)), sql)


def query_functions(run: Callable[[Any, Query], Any]) -> tuple[Callable[[Any], Any], ...]:
    """``q01`` … ``q12`` for a solution that answers every query one way: ``run(handle, query)``."""

    def function(query_id: str) -> Callable[[Any], Any]:
        def answer(handle: Any) -> Any:
            return run(handle, QUERIES[query_id])

        answer.__name__ = answer.__qualname__ = query_id
        answer.__doc__ = QUERIES[query_id].title
        return answer

    return tuple(function(query_id) for query_id in QUERY_IDS)


def _int(name: str, nullable: bool = False) -> Column:
    return Column(name, "int", nullable)


def _float(name: str) -> Column:
    return Column(name, "float", True)


COUNT = _int("count")

QUERIES: dict[str, Query] = {
    q.id: q
    for q in [
        Query(
            "q01",
            "trips per payment type",
            "SELECT payment_type, count(*) AS count FROM trips GROUP BY payment_type",
            ("Litwintschik's billion-taxi-rides query 1.", "A null payment_type is a group."),
            (_int("payment_type", nullable=True), COUNT),
            keys=("payment_type",),
            order=("payment_type",),
        ),
        Query(
            "q02",
            "average total per passenger count",
            "SELECT passenger_count, avg(total_amount) AS avg_total_amount\n"
            "FROM trips GROUP BY passenger_count",
            ("Litwintschik's query 2.", "A null passenger_count is a group."),
            (_int("passenger_count", nullable=True), _float("avg_total_amount")),
            keys=("passenger_count",),
            order=("passenger_count",),
        ),
        Query(
            "q03",
            "trips per passenger count and year",
            "SELECT passenger_count, year(tpep_pickup_datetime) AS year, count(*) AS count\n"
            "FROM trips GROUP BY 1, 2",
            ("Litwintschik's query 3.", "year() of the naive pickup time."),
            (_int("passenger_count", nullable=True), _int("year"), COUNT),
            keys=("passenger_count", "year"),
            order=("passenger_count", "year"),
        ),
        Query(
            "q04",
            "trips per passenger count, year and whole miles",
            "SELECT passenger_count, year(tpep_pickup_datetime) AS year,\n"
            "       CAST(trip_distance AS INT) AS distance, count(*) AS count\n"
            "FROM trips GROUP BY 1, 2, 3\n"
            "ORDER BY year, count DESC, passenger_count NULLS LAST, distance NULLS LAST",
            (
                "Litwintschik's query 4.",
                "CAST truncates toward zero: 2.7 -> 2, -1.5 -> -1 (DuckDB's cast rounds).",
                "A null trip_distance is a null distance group.",
            ),
            (
                _int("passenger_count", nullable=True),
                _int("year"),
                _int("distance", nullable=True),
                COUNT,
            ),
            keys=("passenger_count", "year", "distance"),
            order=("year", "-count", "passenger_count", "distance"),
            spec_orders=True,
        ),
        Query(
            "q05",
            "tip fraction by hour of day",
            "SELECT hour(tpep_pickup_datetime) AS hour,\n"
            "       avg(tip_amount / fare_amount) AS avg_tip_fraction\n"
            "FROM trips WHERE fare_amount > 0 AND payment_type = 1 GROUP BY 1",
            (
                "Rocklin's tip analysis: card payments only (cash tips are not recorded).",
                "fare_amount > 0 excludes division by zero; a null tip is skipped by avg.",
            ),
            (_int("hour"), _float("avg_tip_fraction")),
            keys=("hour",),
            order=("hour",),
        ),
        Query(
            "q06",
            "trips and fares by weekday and hour",
            "SELECT weekday(tpep_pickup_datetime) AS weekday, hour(tpep_pickup_datetime) AS hour,\n"
            "       count(*) AS count, avg(fare_amount) AS avg_fare_amount\n"
            "FROM trips GROUP BY 1, 2",
            (
                "weekday: Monday = 0 … Sunday = 6 (Spark dayofweek is Sunday = 1, DuckDB "
                "dayofweek is Sunday = 0).",
                "168 groups when the data covers every weekday and hour.",
            ),
            (_int("weekday"), _int("hour"), COUNT, _float("avg_fare_amount")),
            keys=("weekday", "hour"),
            order=("weekday", "hour"),
        ),
        Query(
            "q07",
            "selective filter: mid-length group trips in one month",
            "SELECT count(*) AS count, sum(total_amount) AS sum_total_amount FROM trips\n"
            "WHERE trip_distance BETWEEN 5 AND 20 AND passenger_count >= 2\n"
            "  AND tpep_pickup_datetime >= :month_start AND tpep_pickup_datetime < :month_end",
            (
                "The month is the dataset's busiest (most trips; the earliest on ties), from "
                "the manifest: see parameters(). It is a half-open interval.",
                "BETWEEN includes both ends. A null passenger_count or distance fails the filter.",
                "One row; sum over no rows is null.",
            ),
            (COUNT, _float("sum_total_amount")),
            keys=(),
            order=(),
        ),
        Query(
            "q08",
            "high cardinality: pickup x drop-off zone pairs",
            "SELECT PULocationID, DOLocationID, count(*) AS count,\n"
            "       avg(trip_distance) AS avg_trip_distance,\n"
            "       sum(total_amount) AS sum_total_amount\n"
            "FROM trips GROUP BY 1, 2",
            ("Null zone ids are groups.", "A group whose totals are all null sums to null."),
            (
                _int("PULocationID", nullable=True),
                _int("DOLocationID", nullable=True),
                COUNT,
                _float("avg_trip_distance"),
                _float("sum_total_amount"),
            ),
            keys=("PULocationID", "DOLocationID"),
            order=("PULocationID", "DOLocationID"),
        ),
        Query(
            "q09",
            "join: trips and fares by pickup borough",
            "SELECT z.Borough AS borough, count(*) AS count,\n"
            "       avg(t.fare_amount) AS avg_fare_amount\n"
            "FROM trips t JOIN zones z ON t.PULocationID = z.LocationID GROUP BY 1",
            (
                "Inner join: trips with a null or unknown PULocationID drop out.",
                "A null Borough in the zones table is a group.",
            ),
            (Column("borough", "str", True), COUNT, _float("avg_fare_amount")),
            keys=("borough",),
            order=("borough",),
            needs_zones=True,
        ),
        Query(
            "q10",
            "double join: borough to borough",
            "SELECT pz.Borough AS pickup_borough, dz.Borough AS dropoff_borough,\n"
            "       count(*) AS count\n"
            "FROM trips t JOIN zones pz ON t.PULocationID = pz.LocationID\n"
            "             JOIN zones dz ON t.DOLocationID = dz.LocationID\n"
            "GROUP BY 1, 2",
            ("Both joins are inner joins.",),
            (Column("pickup_borough", "str", True), Column("dropoff_borough", "str", True), COUNT),
            keys=("pickup_borough", "dropoff_borough"),
            order=("pickup_borough", "dropoff_borough"),
            needs_zones=True,
        ),
        Query(
            "q11",
            f"top {TOP_K} trips by total",
            "SELECT trip_id, tpep_pickup_datetime, total_amount FROM trips\n"
            f"ORDER BY total_amount DESC NULLS LAST, trip_id LIMIT {TOP_K}",
            (
                "Ties on total_amount are broken by trip_id, so the answer is unique.",
                "Null totals come last (only reached with fewer than 100 non-null totals).",
                "The pickup time must come back unshifted (naive UTC).",
            ),
            (_int("trip_id"), Column("tpep_pickup_datetime", "timestamp"), _float("total_amount")),
            keys=("trip_id",),
            order=("-total_amount", "trip_id"),
            spec_orders=True,
        ),
        Query(
            "q12",
            "full shuffle: average gap between pickups per zone",
            "SELECT PULocationID, avg(gap_s) AS avg_gap_s FROM (\n"
            "  SELECT PULocationID,\n"
            "         date_diff('microsecond', lag(tpep_pickup_datetime) OVER w,\n"
            "                   tpep_pickup_datetime) / 1e6 AS gap_s\n"
            "  FROM trips\n"
            "  WINDOW w AS (PARTITION BY PULocationID ORDER BY tpep_pickup_datetime, trip_id))\n"
            "GROUP BY PULocationID",
            (
                "Within each PULocationID, ordered by (pickup, trip_id): "
                "gap_i = pickup_i - pickup_(i-1) in seconds (float, microsecond precision).",
                "A zone with one trip has no gap: its group stays, with a null average.",
                "A null PULocationID is a zone of its own.",
                "Solutions must sort within zones (window/lag or shuffle + sort): that is the "
                "work measured. The sum telescopes, so avg = (last - first) / (n - 1) is a check "
                "on the reference, not an allowed shortcut.",
            ),
            (_int("PULocationID", nullable=True), _float("avg_gap_s")),
            keys=("PULocationID",),
            order=("PULocationID",),
        ),
    ]
}

QUERY_IDS: tuple[str, ...] = tuple(QUERIES)


def get_query(query_id: str) -> Query:
    """The query with this id; a :class:`KeyError` lists the valid ids."""
    try:
        return QUERIES[query_id]
    except KeyError:
        raise KeyError(f"unknown query {query_id!r}; valid: {', '.join(QUERY_IDS)}") from None


def busiest_month(month_rows: dict[str, int]) -> str:
    """The month (``YYYY-MM``) with the most trips; the earliest one on ties."""
    if not month_rows:
        raise ValueError("the dataset has no trip files")
    return min(month_rows, key=lambda m: (-month_rows[m], m))


def parameters(data_dir: str | os.PathLike[str]) -> Parameters:
    """The query parameters of a dataset, read from its manifest."""
    manifest = read_manifest(data_dir)
    month_rows = {}
    for entry in manifest.files:
        month = entry["name"].rsplit("yellow_tripdata_", 1)[-1].removesuffix(".parquet")
        month_rows[month] = month_rows.get(month, 0) + int(entry["rows"])
    return month_parameters(busiest_month(month_rows))


def month_parameters(month: str) -> Parameters:
    """:class:`Parameters` for q07's month ``YYYY-MM``."""
    year, number = (int(part) for part in month.split("-"))
    start = dt.datetime(year, number, 1)
    end = dt.datetime(year + number // 12, number % 12 + 1, 1)
    return Parameters(month=month, month_start=start, month_end=end)


def has_zones(data_dir: str | os.PathLike[str]) -> bool:
    """Whether the dataset has a zones table (q09 and q10 need one)."""
    return read_manifest(data_dir).zones.get("name") is not None
