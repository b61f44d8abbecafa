"""The generator: layout, determinism, and the published distributions within tolerances."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from taskbench.comparisons.data import (
    TRIPS_SCHEMA,
    ZONES_SCHEMA,
    DataError,
    dataset_fingerprint,
    generate,
    read_manifest,
    synthetic_zones,
    trip_files,
    zones_path,
)
from taskbench.comparisons.data.generate import (
    DIRTY_SHARES,
    PASSENGER_COUNT_SHARES,
    PAYMENT_TYPE_SHARES,
    TRIPS_2015,
    rows_per_month,
)
from taskbench.comparisons.data.zones import BOROUGH_COUNTS, JFK, LAGUARDIA

SHARED_DATA = Path(__file__).parents[3] / ".." / "shared" / "data"
ROWS = 200_000


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    generate(out, rows=ROWS, start="2015-01", months=12, seed=7)
    return out


@pytest.fixture(scope="module")
def trips(dataset: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(f) for f in trip_files(dataset)], ignore_index=True)


@pytest.fixture(scope="module")
def clean(trips: pd.DataFrame) -> pd.DataFrame:
    """Rows without planted dirt, where the clean-row statistics are stated."""
    keep = (trips.trip_distance > 0) & (trips.trip_distance < 100) & (trips.fare_amount > 0)
    return trips[keep]


def test_layout_and_schema(dataset: Path, trips: pd.DataFrame) -> None:
    files = trip_files(dataset)
    assert [f.name for f in files] == [
        f"yellow_tripdata_2015-{m:02d}.parquet" for m in range(1, 13)
    ]
    for f in files:
        assert pq.read_schema(f).remove_metadata() == TRIPS_SCHEMA
        month = int(f.stem[-2:])
        pickups = pd.read_parquet(f, columns=["tpep_pickup_datetime"]).tpep_pickup_datetime
        assert (pickups.dt.month == month).all() and (pickups.dt.year == 2015).all()
    assert pq.read_schema(zones_path(dataset)).remove_metadata() == ZONES_SCHEMA
    assert len(trips) == ROWS
    assert trips.trip_id.is_unique and trips.trip_id.min() == 0 and trips.trip_id.max() == ROWS - 1
    assert trips.tpep_pickup_datetime.notna().all()
    assert trips[["pickup_longitude", "dropoff_latitude"]].isna().all().all()
    assert trips.congestion_surcharge.isna().all() and trips.airport_fee.isna().all()


def test_manifest_records_the_run(dataset: Path) -> None:
    manifest = read_manifest(dataset)
    assert manifest.kind == "generated"
    assert manifest.rows == ROWS and manifest.seed == 7
    assert manifest.months == [f"2015-{m:02d}" for m in range(1, 13)]
    assert sum(f["rows"] for f in manifest.files) == ROWS
    assert manifest.fingerprint == dataset_fingerprint(dataset)
    assert manifest.created_by.startswith("taskbench data generate --rows 200000")
    assert manifest.generator_version
    assert manifest.zones == {"name": "zones.parquet", "rows": 265, "source": "synthetic"}


def test_same_seed_same_bytes_whatever_the_threads(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", rows=30_000, months=2, seed=3, workers=1)
    b = generate(tmp_path / "b", rows=30_000, months=2, seed=3, workers=3)
    c = generate(tmp_path / "c", rows=30_000, months=2, seed=4)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    for name in ("trips/yellow_tripdata_2015-01.parquet", "zones.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    manifest_a, manifest_b = read_manifest(tmp_path / "a"), read_manifest(tmp_path / "b")
    assert manifest_a.created_by.replace(str(tmp_path / "a"), "") == manifest_b.created_by.replace(
        str(tmp_path / "b"), ""
    )
    assert replace(manifest_a, created_by="") == replace(manifest_b, created_by="")


def test_rows_per_month_follow_2015(trips: pd.DataFrame) -> None:
    counts = rows_per_month(ROWS, [(2015, m) for m in range(1, 13)])
    assert sum(counts) == ROWS
    expected = ROWS * np.array(TRIPS_2015) / sum(TRIPS_2015)
    assert np.abs(np.array(counts) - expected).max() <= 1
    by_month = trips.tpep_pickup_datetime.dt.month.value_counts()
    assert by_month.tolist() == sorted(counts, reverse=True)
    assert set(by_month.index[:3]) == {3, 4, 5}  # March-May busiest
    assert rows_per_month(5, [(2015, 1), (2015, 2)]) in ([3, 2], [2, 3])


def test_passenger_count_shares_within_one_point(trips: pd.DataFrame) -> None:
    shares = trips.passenger_count.value_counts(normalize=True, dropna=False) * 100
    for count in (1, 2, 3, 4, 5, 6):
        assert shares[count] == pytest.approx(PASSENGER_COUNT_SHARES[count] * 100, abs=1.0)
    assert 0 < shares.get(0, 0) < 0.1
    assert 0 < trips.passenger_count.isna().mean() * 100 < 0.2
    assert trips.passenger_count.isin([7, 8, 9]).mean() * 100 < 0.1
    unreported = trips.passenger_count.isna()
    assert trips.RatecodeID[unreported].isna().all()
    assert trips.store_and_fwd_flag[unreported].isna().all()


def test_payment_type_shares(trips: pd.DataFrame) -> None:
    shares = trips.payment_type.value_counts(normalize=True)
    for code, share in PAYMENT_TYPE_SHARES.items():
        assert shares[code] == pytest.approx(share, abs=0.01)
    assert set(shares.index) == {1, 2, 3, 4}


def test_tips(clean: pd.DataFrame) -> None:
    assert (clean.tip_amount[clean.payment_type != 1] == 0).all()  # cash tips are not recorded
    card = clean.tip_amount[clean.payment_type == 1]
    assert (card == 0).mean() == pytest.approx(0.037, abs=0.005)
    assert card.mean() == pytest.approx(2.76, abs=0.15)


def test_fare_rules(trips: pd.DataFrame, clean: pd.DataFrame) -> None:
    assert np.corrcoef(clean.fare_amount, clean.trip_distance)[0, 1] == pytest.approx(
        0.95, abs=0.02
    )
    metered = clean[clean.RatecodeID == 1]
    assert (metered.fare_amount >= 2.5 + 2.5 * metered.trip_distance - 0.25).all()
    assert ((metered.fare_amount * 2) % 1 == 0).all()  # $0.50 steps
    jfk = clean[clean.RatecodeID == 2]
    assert len(jfk) > 0 and (jfk.fare_amount == 52.0).all()
    assert ((jfk.PULocationID == JFK) | (jfk.DOLocationID == JFK)).all()
    assert (clean.mta_tax[clean.RatecodeID == 1] == 0.5).all()
    assert (clean.improvement_surcharge == 0.3).all()
    hour = metered.tpep_pickup_datetime.dt.hour
    weekday = metered.tpep_pickup_datetime.dt.day_of_week < 5
    night = (hour >= 20) | (hour < 6)
    peak = weekday & (hour >= 16) & (hour < 20)
    assert (metered.extra[night] == 0.5).all()
    assert (metered.extra[peak] == 1.0).all()
    assert (metered.extra[~night & ~peak] == 0.0).all()
    parts = ["fare_amount", "extra", "mta_tax", "tip_amount", "tolls_amount"]
    parts.append("improvement_surcharge")
    assert np.allclose(trips[parts].sum(axis=1), trips.total_amount, atol=0.011)


def test_trip_distance_mode_about_one_mile_with_long_tail(clean: pd.DataFrame) -> None:
    counts, edges = np.histogram(clean.trip_distance, bins=np.arange(0, 30.001, 0.25))
    assert 0.75 <= edges[counts.argmax()] < 1.5
    assert 1.3 <= clean.trip_distance.median() <= 2.2
    assert clean.trip_distance.quantile(0.99) > 15
    durations = clean.tpep_dropoff_datetime - clean.tpep_pickup_datetime
    assert pd.Timedelta(minutes=5) < durations.median() < pd.Timedelta(minutes=20)


def test_pickup_timing(trips: pd.DataFrame) -> None:
    hours = trips.tpep_pickup_datetime.dt.hour.value_counts().sort_index()
    assert hours.idxmin() == 5
    assert hours.idxmax() in (18, 19)
    assert hours[5] < hours[6] < hours[7] < hours[8]
    midday = hours.loc[9:16]
    assert (midday / midday.mean()).between(0.88, 1.12).all()
    dates = trips.tpep_pickup_datetime.dt.normalize()
    per_day = dates.value_counts()
    by_weekday = per_day.groupby(per_day.index.day_of_week).mean()  # per calendar day
    assert by_weekday.idxmax() == 5  # Saturday
    assert by_weekday.idxmin() == 0  # Monday


def test_locations_skew_to_manhattan_and_airports(dataset: Path, trips: pd.DataFrame) -> None:
    zones = pd.read_parquet(zones_path(dataset)).set_index("LocationID")
    pickup_borough = trips.PULocationID.map(zones.Borough)
    assert (pickup_borough == "Manhattan").mean() > 0.8
    assert (trips.DOLocationID.map(zones.Borough) == "Manhattan").mean() > 0.75
    top = trips.PULocationID.value_counts().index[:15]
    assert JFK in top and LAGUARDIA in top
    for airport in (JFK, LAGUARDIA):
        assert (trips.PULocationID == airport).mean() > 0.015
    assert set(trips.PULocationID) <= set(zones.index)


def test_dirty_values_in_stated_shares(trips: pd.DataFrame) -> None:
    n = len(trips)

    def within(count: int, share: float) -> bool:
        expected = n * share
        return abs(count - expected) <= 5 * np.sqrt(expected) + 1

    assert within((trips.fare_amount < 0).sum(), DIRTY_SHARES["negative_amounts"])
    assert within((trips.trip_distance == 0).sum(), DIRTY_SHARES["zero_distance"])
    backwards = trips.tpep_dropoff_datetime < trips.tpep_pickup_datetime
    assert within(backwards.sum(), DIRTY_SHARES["dropoff_before_pickup"])
    assert 1 <= (trips.trip_distance >= 300).sum() <= 20
    negative = trips[trips.fare_amount < 0]
    assert (negative.total_amount <= 0).all()


def test_synthetic_zones_have_real_borough_counts() -> None:
    zones = synthetic_zones().to_pandas()
    assert zones.LocationID.tolist() == list(range(1, 266))
    assert zones.Borough.value_counts().to_dict() == BOROUGH_COUNTS
    by_id = zones.set_index("LocationID")
    assert by_id.loc[JFK].tolist() == ["Queens", "JFK Airport", "Airports"]
    assert by_id.loc[LAGUARDIA].tolist() == ["Queens", "LaGuardia Airport", "Airports"]
    assert by_id.loc[1].Zone == "Newark Airport"
    assert ((zones.Borough == "Manhattan") & (zones.service_zone == "Yellow Zone")).sum() == 55
    assert synthetic_zones().equals(synthetic_zones())


@pytest.mark.skipif(not SHARED_DATA.exists(), reason=f"shared test data absent: {SHARED_DATA}")
def test_real_zone_table(tmp_path: Path) -> None:
    lookup = SHARED_DATA / "taxi_zone_lookup.csv"
    manifest = generate(tmp_path, rows=20_000, seed=1, zones=lookup)
    zones = pd.read_parquet(zones_path(tmp_path))
    assert len(zones) == 265 and manifest.zones["source"] == str(lookup)
    real = pd.read_csv(lookup)
    assert zones.Zone.tolist() == real.Zone.tolist()
    trips = pd.read_parquet(trip_files(tmp_path)[0])
    assert set(trips.PULocationID) <= set(zones.LocationID)
    names = trips.PULocationID.map(zones.set_index("LocationID").Borough)
    assert (names == "Manhattan").mean() > 0.8


def test_zero_rows_still_write_every_month(tmp_path: Path) -> None:
    manifest = generate(tmp_path, rows=0, months=2)
    assert manifest.rows == 0 and len(trip_files(tmp_path)) == 2
    assert pq.read_table(trip_files(tmp_path)[1]).num_rows == 0


def test_refuses_to_overwrite_a_dataset(tmp_path: Path) -> None:
    generate(tmp_path, rows=100)
    with pytest.raises(DataError, match="already holds a dataset"):
        generate(tmp_path, rows=100)
    first = generate(tmp_path, rows=100, seed=5, overwrite=True)
    assert read_manifest(tmp_path).fingerprint == first.fingerprint
