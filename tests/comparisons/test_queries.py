"""The problem set registry: fixed ids, complete specs, consistent answer shapes, parameters."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from taskbench.comparisons.data import TRIPS_SCHEMA, ZONES_SCHEMA
from taskbench.comparisons.queries import (
    QUERIES,
    QUERY_IDS,
    TRIP_COLUMNS,
    ZONE_COLUMNS,
    busiest_month,
    get_query,
    month_parameters,
    parameters,
)


def test_ids_are_fixed():
    assert tuple(f"q{i:02d}" for i in range(1, 13)) == QUERY_IDS
    assert all(QUERIES[q].id == q for q in QUERY_IDS)


@pytest.mark.parametrize("query_id", QUERY_IDS)
def test_query_is_complete_and_consistent(query_id):
    q = QUERIES[query_id]
    assert q.title and q.sql.lstrip().upper().startswith("SELECT") and q.notes
    names = q.names
    assert len(set(names)) == len(names)
    assert set(q.keys) <= set(names)
    assert {name.lstrip("-") for name in q.order} <= set(names)
    # The order is total: it covers the keys (every group key, or trip_id).
    assert set(q.keys) <= {name.lstrip("-") for name in q.order}
    for key in q.keys:
        assert q.column(key).kind in ("int", "str")
    assert q.column("count").kind == "int" if "count" in names else True


def test_needs_zones_exactly_for_the_joins():
    assert [q for q in QUERY_IDS if QUERIES[q].needs_zones] == ["q09", "q10"]
    assert all("JOIN" in QUERIES[q].sql for q in ("q09", "q10"))


def test_loaded_columns_exist_in_the_layout():
    assert set(TRIP_COLUMNS) <= set(TRIPS_SCHEMA.names)
    assert set(ZONE_COLUMNS) <= set(ZONES_SCHEMA.names)


def test_unknown_query_lists_the_valid_ids():
    with pytest.raises(KeyError, match="q01, q02"):
        get_query("q13")


def test_busiest_month_takes_the_earliest_on_ties():
    assert busiest_month({"2015-02": 5, "2015-01": 3}) == "2015-02"
    assert busiest_month({"2019-06": 10_010, "2018-03": 10_010, "2018-01": 10}) == "2018-03"
    with pytest.raises(ValueError):
        busiest_month({})


def test_month_interval_is_half_open_and_rolls_over_the_year():
    p = month_parameters("2015-12")
    assert (p.month_start, p.month_end) == (dt.datetime(2015, 12, 1), dt.datetime(2016, 1, 1))
    assert month_parameters("2016-02").month_end == dt.datetime(2016, 3, 1)


def test_parameters_come_from_the_manifest(tmp_path):
    (tmp_path / "manifest.json").write_text(
        json.dumps(
            {
                "kind": "imported", "rows": 30, "months": ["2018-01", "2018-03"], "seed": None,
                "fingerprint": "sha256:x", "generator_version": "1", "created_by": "test",
                "zones": {"name": None, "rows": 0, "source": None},
                "files": [
                    {"name": "trips/yellow_tripdata_2018-01.parquet", "rows": 10},
                    {"name": "trips/yellow_tripdata_2018-03.parquet", "rows": 20},
                ],
            }
        )
    )  # fmt: skip
    assert parameters(tmp_path).month == "2018-03"
