"""The checks catch classic cross-engine mistakes: plausible wrong SQL is flagged on edge data."""

from __future__ import annotations

import pytest
from taskbench.comparisons.normalize import compare, normalize
from taskbench.comparisons.queries import QUERIES

from tests.comparisons.conftest import CORES

pytestmark = pytest.mark.duckdb

T = "{trips}"
WRONG = {
    "null group dropped": (
        "q01",
        f"SELECT payment_type, count(*) FROM {T} WHERE payment_type IS NOT NULL GROUP BY 1",
    ),
    "DuckDB's rounding cast": (
        "q04",
        f"SELECT passenger_count, year(tpep_pickup_datetime), CAST(trip_distance AS BIGINT), "
        f"count(*) FROM {T} GROUP BY ALL",
    ),
    "floor instead of truncation": (
        "q04",
        f"SELECT passenger_count, year(tpep_pickup_datetime), CAST(floor(trip_distance) AS BIGINT),"
        f" count(*) FROM {T} GROUP BY ALL",
    ),
    "zero fares kept": (
        "q05",
        f"SELECT hour(tpep_pickup_datetime), avg(tip_amount / fare_amount) FROM {T} "
        f"WHERE fare_amount <> 0 AND payment_type = 1 GROUP BY 1",
    ),
    "weekday with Sunday = 0": (
        "q06",
        f"SELECT dayofweek(tpep_pickup_datetime), hour(tpep_pickup_datetime), count(*), "
        f"avg(fare_amount) FROM {T} GROUP BY ALL",
    ),
    "exclusive BETWEEN": (
        "q07",
        f"SELECT count(*), sum(total_amount) FROM {T} WHERE trip_distance > 5 AND "
        f"trip_distance < 20 AND passenger_count >= 2 AND tpep_pickup_datetime >= '2016-01-01' "
        f"AND tpep_pickup_datetime < '2016-02-01'",
    ),
    "sum of nothing is 0": (
        "q08",
        f"SELECT PULocationID, DOLocationID, count(*), avg(trip_distance), "
        f"coalesce(sum(total_amount), 0) FROM {T} GROUP BY ALL",
    ),
    "left join": (
        "q09",
        f"SELECT z.Borough, count(*), avg(fare_amount) FROM {T} t "
        "LEFT JOIN {zones} z ON t.PULocationID = z.LocationID GROUP BY 1",
    ),
    "ties broken the other way": (
        "q11",
        f"SELECT trip_id, tpep_pickup_datetime, total_amount FROM {T} "
        "ORDER BY total_amount DESC NULLS LAST, trip_id DESC LIMIT 100",
    ),
    "nulls first": (
        "q11",
        f"SELECT trip_id, tpep_pickup_datetime, total_amount FROM {T} "
        "ORDER BY total_amount DESC NULLS FIRST, trip_id LIMIT 100",
    ),
    "whole-second gaps": (
        "q12",
        "SELECT PULocationID, avg(gap) FROM (SELECT PULocationID, date_diff('second', "
        "lag(tpep_pickup_datetime) OVER (PARTITION BY PULocationID ORDER BY "
        f"tpep_pickup_datetime, trip_id), tpep_pickup_datetime) AS gap FROM {T}) GROUP BY 1",
    ),
    "lone zones dropped": (
        "q12",
        "SELECT PULocationID, avg(gap) FROM (SELECT PULocationID, (epoch_us(tpep_pickup_datetime)"
        " - epoch_us(lag(tpep_pickup_datetime) OVER (PARTITION BY PULocationID ORDER BY "
        f"tpep_pickup_datetime, trip_id))) / 1e6 AS gap FROM {T}) GROUP BY 1 "
        "HAVING count(gap) > 0",
    ),
}


@pytest.mark.parametrize("mistake", WRONG)
def test_plausible_mistake_is_flagged(mistake, datasets, engines, reference):
    query_id, sql = WRONG[mistake]
    _, handle = engines.handle("duckdb", datasets["edge"])
    raw = handle.session.execute(sql.format(trips=handle.trips, zones=handle.zones)).df()
    query = QUERIES[query_id]
    got = normalize(raw, query)
    assert compare(reference("edge", query_id), got, query) is not None, mistake
    assert CORES  # the same pool as the answer tests
