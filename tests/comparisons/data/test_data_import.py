"""The importer: every header variant, schema drift, clear errors and counted bad rows."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from taskbench.comparisons.data import (
    TRIPS_SCHEMA,
    DataError,
    dataset_fingerprint,
    import_files,
    inspect_file,
    read_manifest,
    trip_files,
    zones_path,
)

SHARED_DATA = Path(__file__).parents[3] / ".." / "shared" / "data"
SAMPLES = SHARED_DATA / "tlc-samples"
requires_samples = pytest.mark.skipif(
    not SAMPLES.exists(), reason=f"real TLC samples absent: {SAMPLES} (see shared/data/README.md)"
)

MODERN = (
    "VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,"
    "RatecodeID,store_and_fwd_flag,PULocationID,DOLocationID,payment_type,fare_amount,extra,"
    "mta_tax,tip_amount,tolls_amount,improvement_surcharge,total_amount,congestion_surcharge,"
    "Airport_fee"
)
MODERN_ROWS = [
    "2,2023-01-01 00:32:10,2023-01-01 00:40:36,1,0.97,1,N,161,141,2,9.3,1,0.5,0,0,1,14.3,2.5,0",
    "2,2023-01-01 00:55:08,2023-01-01 01:01:27,1,1.1,1,N,43,237,1,7.9,1,0.5,4,0,1,16.9,2.5,0",
    "1,2023-01-31 23:58:00,2023-02-01 00:10:00,2,2.5,1,Y,132,230,1,70,0,0.5,15,6.55,1,94.3,2.5,"
    "1.25",
    "1,2023-02-01 00:03:00,2023-02-01 00:20:00,,3.0,,,138,48,1,20,0,0.5,5,6.55,1,35.55,2.5,1.25",
]
SNAKE = (
    "vendor_id,pickup_datetime,dropoff_datetime,passenger_count,trip_distance,rate_code_id,"
    "store_and_fwd_flag,pickup_location_id,dropoff_location_id,payment_type,fare_amount,extra,"
    "mta_tax,tip_amount,tolls_amount,improvement_surcharge,total_amount,congestion_surcharge"
)
# 2015 CSV: coordinates instead of zone ids, RateCodeID spelled the old way.
COORDS_2015 = (
    "VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,"
    "pickup_longitude,pickup_latitude,RateCodeID,store_and_fwd_flag,dropoff_longitude,"
    "dropoff_latitude,payment_type,fare_amount,extra,mta_tax,tip_amount,tolls_amount,"
    "improvement_surcharge,total_amount"
)
COORDS_2015_ROWS = [
    "2,2015-01-15 19:05:39,2015-01-15 19:23:42,1,1.59,-73.993896484375,40.750110626220703,1,N,"
    "-73.974784851074219,40.750617980957031,1,12,1,0.5,3.25,0,0.3,17.05",
    "1,2015-01-10 20:33:38,2015-01-10 20:53:28,1,3.30,-74.001647949218750,40.724243164062500,1,N,"
    "-73.994415283203125,40.759109497070313,1,14.5,0.5,0.5,2,0,0.3,17.8",
]
# 2014 CSV: leading spaces in the header, a blank line, text vendor and payment codes.
LEGACY_2014 = (
    "vendor_id, pickup_datetime, dropoff_datetime, passenger_count, trip_distance,"
    " pickup_longitude, pickup_latitude, rate_code, store_and_fwd_flag, dropoff_longitude,"
    " dropoff_latitude, payment_type, fare_amount, surcharge, mta_tax, tip_amount,"
    " tolls_amount, total_amount"
)
LEGACY_2014_ROWS = [
    "",
    "CMT,2014-01-09 20:45:25,2014-01-09 20:52:31,1,0.7,-73.994770,40.736828,1,N,-73.982227,"
    "40.731790,CRD,6.5,0.5,0.5,1.4,0,8.9",
    "VTS,2014-01-09 20:46:12,2014-01-09 20:55:12,1,1.4,-73.982392,40.773382,1,,-73.960449,"
    "40.763995,CSH,8.5,0.5,0.5,0,0,9.5",
]
# 2009 names (TLC's 2009 files).
LEGACY_2009 = (
    "vendor_name,Trip_Pickup_DateTime,Trip_Dropoff_DateTime,Passenger_Count,Trip_Distance,"
    "Start_Lon,Start_Lat,Rate_Code,store_and_forward,End_Lon,End_Lat,Payment_Type,Fare_Amt,"
    "surcharge,mta_tax,Tip_Amt,Tolls_Amt,Total_Amt"
)
LEGACY_2009_ROWS = [
    "VTS,2009-01-04 02:52:00,2009-01-04 03:02:00,1,2.63,-73.991957,40.721567,,,-73.993803,"
    "40.695922,CASH,8.9,0.5,,0,0,9.4",
    "DDS,2009-01-04 03:31:00,2009-01-04 03:38:00,3,4.55,-73.982102,40.73629,,,-73.95585,"
    "40.76803,Credit,12.1,0.5,,2,0,14.6",
    "CMT,2009-01-03 15:43:27,2009-01-03 15:57:15,5,10.35,-74.002587,40.739748,,0,-73.869983,"
    "40.770225,Credit,23.7,0,,4.74,0,28.44",
]


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def read_out(out: Path) -> pd.DataFrame:
    frames = [pd.read_parquet(f) for f in trip_files(out)]
    return pd.concat(frames, ignore_index=True).sort_values("trip_id", ignore_index=True)


def assert_canonical(out: Path) -> None:
    for f in trip_files(out):
        assert pq.read_schema(f).remove_metadata() == TRIPS_SCHEMA, f


def test_tlc_camelcase_csv(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "yellow_tripdata_2023-01.csv", MODERN, MODERN_ROWS)
    report = import_files([src], tmp_path / "out")
    assert_canonical(tmp_path / "out")
    [file_report] = report.files
    assert (file_report.rows_in, file_report.rows_written, file_report.rows_rejected) == (4, 4, 0)
    assert file_report.columns["Airport_fee"] == "airport_fee"
    assert file_report.months == {"2023-01": 3, "2023-02": 1}
    trips = read_out(tmp_path / "out")
    assert trips.trip_id.tolist() == [0, 1, 2, 3]
    assert trips.airport_fee.tolist() == [0, 0, 1.25, 1.25]
    assert trips.PULocationID.tolist() == [161, 43, 132, 138]
    assert trips.passenger_count.isna().tolist() == [False, False, False, True]
    assert trips.store_and_fwd_flag.tolist()[:3] == ["N", "N", "Y"]
    assert trips.tpep_pickup_datetime[2] == pd.Timestamp("2023-01-31 23:58:00")
    assert trips.pickup_longitude.isna().all()
    assert [p.name for p in trip_files(tmp_path / "out")] == [
        "yellow_tripdata_2023-01.parquet",
        "yellow_tripdata_2023-02.parquet",
    ]


def test_snake_case_export_with_integers_written_as_floats(tmp_path: Path) -> None:
    rows = [
        "2.0,2018-01-11 18:24:44,2018-01-11 18:35:02,1.0,1.65,1.0,N,230,237,1.0,8.5,1.0,0.5,"
        "2.06,0.0,0.3,12.36,",
        ",2018-01-05 15:31:57,2018-01-05 15:37:18,,0.73,,,223,223,,5.5,0.0,0.5,1.58,0.0,0.3,7.88,",
    ]
    src = write_csv(tmp_path / "snake.csv", SNAKE, rows)
    report = import_files([src], tmp_path / "out")
    assert report.rows_rejected == 0
    trips = read_out(tmp_path / "out")
    assert trips.VendorID.tolist()[0] == 2 and pd.isna(trips.VendorID[1])
    assert trips.RatecodeID.tolist()[0] == 1 and trips.payment_type.isna().tolist() == [False, True]
    assert trips.congestion_surcharge.isna().all()
    assert trips.DOLocationID.tolist() == [237, 223]


def test_coordinate_era_csv_keeps_coordinates_and_nulls_zone_ids(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "yellow_tripdata_2015-01.csv", COORDS_2015, COORDS_2015_ROWS)
    report = import_files([src], tmp_path / "out")
    assert report.files[0].rows_written == 2 and report.files[0].unknown_columns == []
    trips = read_out(tmp_path / "out")
    assert trips.PULocationID.isna().all() and trips.DOLocationID.isna().all()
    assert trips.pickup_longitude.tolist() == [-73.993896484375, -74.00164794921875]
    assert trips.dropoff_latitude.notna().all()
    assert trips.RatecodeID.tolist() == [1, 1]
    assert trips.congestion_surcharge.isna().all() and trips.airport_fee.isna().all()


def test_2014_csv_with_spaced_header_and_text_codes(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "yellow_tripdata_2014-01.csv", LEGACY_2014, LEGACY_2014_ROWS)
    report = import_files([src], tmp_path / "out")
    assert report.rows_rejected == 0 and report.files[0].rows_in == 2
    assert report.files[0].columns[" surcharge"] == "extra"
    trips = read_out(tmp_path / "out")
    assert trips.VendorID.tolist() == [1, 2]  # CMT, VTS
    assert trips.payment_type.tolist() == [1, 2]  # CRD, CSH
    assert trips.extra.tolist() == [0.5, 0.5]
    assert trips.store_and_fwd_flag.tolist()[0] == "N" and pd.isna(trips.store_and_fwd_flag[1])
    assert trips.improvement_surcharge.isna().all()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_2009_names(tmp_path: Path, fmt: str) -> None:
    src = write_csv(tmp_path / "yellow_tripdata_2009-01.csv", LEGACY_2009, LEGACY_2009_ROWS)
    if fmt == "parquet":
        frame = pd.read_csv(src)  # typed columns, all-null Rate_Code and mta_tax as floats
        src = tmp_path / "yellow_tripdata_2009-01.parquet"
        frame.to_parquet(src)
    report = import_files([src], tmp_path / "out")
    assert report.rows_rejected == 0
    trips = read_out(tmp_path / "out")
    assert trips.VendorID.tolist() == [2, 3, 1]  # VTS, DDS, CMT
    assert trips.payment_type.tolist() == [2, 1, 1]  # CASH, Credit, Credit
    assert trips.fare_amount.tolist() == [8.9, 12.1, 23.7]
    assert trips.tip_amount.tolist() == [0, 2, 4.74]
    assert trips.pickup_longitude.tolist()[0] == -73.991957
    assert trips.RatecodeID.isna().all() and trips.mta_tax.isna().all()
    assert trips.store_and_fwd_flag.tolist()[2] == "N"
    assert trips.PULocationID.isna().all()


def _parquet_month(path: Path, month: int, *, drift: bool) -> Path:
    """Modern parquet; ``drift`` flips names and types the way TLC files drift between years."""
    n = 3
    pickup = pd.date_range(f"2022-{month:02d}-03 08:00", periods=n, freq="h").as_unit("ns")
    columns = {
        "VendorID": pa.array([1, 2, 2], pa.int64()),
        "tpep_pickup_datetime": pa.array(pickup),
        "tpep_dropoff_datetime": pa.array(pickup + pd.Timedelta(minutes=9)),
        "passenger_count": pa.array([1.0, None, 3.0]) if drift else pa.array([1, 2, 3]),
        "trip_distance": pa.array([1.2, 2.0, 0.5]),
        "RatecodeID": pa.array([1.0, 1.0, None]) if drift else pa.array([1, 1, 2], pa.int32()),
        "store_and_fwd_flag": pa.array(["N", "N", None]),
        "PULocationID": pa.array([140, 236, 132], pa.int64()),
        "DOLocationID": pa.array([7, 263, 48], pa.int32()),
        "payment_type": pa.array([1, 2, 1], pa.int64()),
        "fare_amount": pa.array([7.5, 10.0, 52.0]),
        "extra": pa.array([0.0, 0.5, 0.0]),
        "mta_tax": pa.array([0.5, 0.5, 0.5]),
        "tip_amount": pa.array([2.0, 0.0, 11.0]),
        "tolls_amount": pa.array([0.0, 0.0, 6.55]),
        "improvement_surcharge": pa.array([0.3, 0.3, 0.3]),
        "total_amount": pa.array([12.8, 13.8, 72.85]),
        "congestion_surcharge": pa.nulls(n) if drift else pa.array([2.5, 2.5, 2.5]),
        ("Airport_fee" if drift else "airport_fee"): pa.array([0.0, 0.0, 1.25]),
    }
    if drift:
        columns["tpep_pickup_datetime"] = columns["tpep_pickup_datetime"].cast(pa.timestamp("us"))
    pq.write_table(pa.table(columns), path)
    return path


def test_parquet_schema_drift_becomes_one_schema(tmp_path: Path) -> None:
    a = _parquet_month(tmp_path / "yellow_tripdata_2022-03.parquet", 3, drift=False)
    b = _parquet_month(tmp_path / "yellow_tripdata_2022-04.parquet", 4, drift=True)
    assert pq.read_schema(b).field("congestion_surcharge").type == pa.null()
    report = import_files([a, b], tmp_path / "out")
    assert report.rows_rejected == 0
    assert_canonical(tmp_path / "out")
    trips = read_out(tmp_path / "out")
    assert trips.trip_id.tolist() == list(range(6))
    assert trips.airport_fee.tolist() == [0, 0, 1.25] * 2
    assert trips.passenger_count.tolist()[:3] == [1, 2, 3] and pd.isna(trips.passenger_count[4])
    assert trips.congestion_surcharge.isna().tolist() == [False] * 3 + [True] * 3
    assert trips.tpep_pickup_datetime[3] == pd.Timestamp("2022-04-03 08:00")


def test_unknown_columns_are_kept_out_and_reported(tmp_path: Path) -> None:
    header = MODERN + ",cbd_congestion_fee,Unnamed: 0"
    rows = [row + ",0.75,17" for row in MODERN_ROWS[:2]]
    src = write_csv(tmp_path / "extra.csv", header, rows)
    report = import_files([src], tmp_path / "out")
    assert report.files[0].unknown_columns == ["cbd_congestion_fee", "Unnamed: 0"]
    assert "unknown columns kept out: cbd_congestion_fee, Unnamed: 0" in report.files[0].summary()
    assert_canonical(tmp_path / "out")
    assert read_manifest(tmp_path / "out").sources[0]["unknown_columns"] == [
        "cbd_congestion_fee",
        "Unnamed: 0",
    ]


def test_bad_rows_are_counted_per_file_never_dropped_silently(tmp_path: Path) -> None:
    good = MODERN_ROWS[0]
    rows = [
        good,
        good.replace("2023-01-01 00:32:10", "not a date"),  # row 2
        good.replace("2023-01-01 00:32:10", ""),  # row 3: no pickup time
        good.replace(",9.3,", ",abc,"),  # row 4
        good.replace("2,2023", "X,2023", 1),  # row 5: vendor is no code
        good.replace(",N,161", ",1.5,161").replace(",1,0.97,", ",1.5,0.97,"),  # row 6
        good + ",surplus,fields",  # a malformed line
        good,
    ]
    src = write_csv(tmp_path / "dirty.csv", MODERN, rows)
    report = import_files([src], tmp_path / "out")
    [r] = report.files
    assert (r.rows_in, r.rows_written, r.rows_rejected) == (8, 2, 6)
    assert r.reasons == {
        "VendorID: not an integer code": 1,
        "fare_amount: not a number": 1,
        "malformed CSV line (wrong number of fields)": 1,
        "passenger_count: not an integer code": 1,
        "store_and_fwd_flag: not Y or N": 1,
        "tpep_pickup_datetime: missing": 1,
        "tpep_pickup_datetime: not a timestamp": 1,
    }
    assert r.examples["tpep_pickup_datetime: not a timestamp"] == [
        {"row": 2, "column": "tpep_pickup_datetime", "value": "not a date"}
    ]
    assert r.examples["tpep_pickup_datetime: missing"][0]["row"] == 3
    assert r.examples["fare_amount: not a number"][0] == {
        "row": 4,
        "column": "fare_amount",
        "value": "abc",
    }
    [line] = r.examples["malformed CSV line (wrong number of fields)"]
    assert line["value"].endswith(",surplus,fields")
    assert "6 rejected" in r.summary()
    trips = read_out(tmp_path / "out")
    assert len(trips) == 2 and trips.fare_amount.tolist() == [9.3, 9.3]
    assert read_manifest(tmp_path / "out").sources[0]["rows_rejected"] == 6


def test_strict_makes_a_bad_row_an_error_and_leaves_no_files(tmp_path: Path) -> None:
    rows = [MODERN_ROWS[0], MODERN_ROWS[1].replace(",7.9,", ",seven,")]
    src = write_csv(tmp_path / "dirty.csv", MODERN, rows)
    with pytest.raises(DataError, match=r"dirty\.csv: 1 rows cannot be parsed.*fare_amount"):
        import_files([src], tmp_path / "out", strict=True)
    assert trip_files(tmp_path / "out") == []
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_missing_required_columns_error_names_file_and_columns(tmp_path: Path) -> None:
    header = MODERN.replace("tpep_pickup_datetime", "pickup_time").replace("fare_amount", "fare")
    bad = write_csv(tmp_path / "odd_names.csv", header, MODERN_ROWS[:1])
    good = write_csv(tmp_path / "good.csv", MODERN, MODERN_ROWS[:1])
    with pytest.raises(DataError) as caught:
        import_files([good, bad], tmp_path / "out")
    message = str(caught.value)
    assert "odd_names.csv" in message
    assert "missing required columns: tpep_pickup_datetime, fare_amount" in message
    assert "unrecognised columns: pickup_time, fare" in message
    assert trip_files(tmp_path / "out") == []  # every file is checked before writing


def test_missing_locations_error(tmp_path: Path) -> None:
    header = MODERN.replace("PULocationID", "pu").replace("DOLocationID", "do")
    src = write_csv(tmp_path / "nolocs.csv", header, MODERN_ROWS[:1])
    with pytest.raises(DataError, match=r"nolocs\.csv.*PULocationID and DOLocationID \(or pickup"):
        inspect_file(src)


def test_other_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nothere\.csv: no such file"):
        import_files([tmp_path / "nothere.csv"], tmp_path / "out")
    (tmp_path / "trips.xlsx").write_text("x")
    with pytest.raises(DataError, match=r"trips\.xlsx: unsupported file type"):
        import_files([tmp_path / "trips.xlsx"], tmp_path / "out")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: empty file"):
        import_files([tmp_path / "empty.csv"], tmp_path / "out")
    twice = write_csv(tmp_path / "twice.csv", MODERN + ",airport_fee", [MODERN_ROWS[0] + ",0"])
    with pytest.raises(DataError, match=r"twice\.csv: columns 'Airport_fee' and 'airport_fee'"):
        import_files([twice], tmp_path / "out")
    table = pq.read_table(_parquet_month(tmp_path / "m.parquet", 3, drift=False))
    fare_index = table.schema.get_field_index("fare_amount")
    dates = pa.array(pd.date_range("2022-01-01", periods=3))
    pq.write_table(table.set_column(fare_index, "fare_amount", dates), tmp_path / "typed.parquet")
    with pytest.raises(DataError, match=r"typed\.parquet.*'fare_amount'.*cannot hold numbers"):
        import_files([tmp_path / "typed.parquet"], tmp_path / "out")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"broken\.parquet: cannot read parquet file"):
        import_files([tmp_path / "broken.parquet"], tmp_path / "out")


def test_trip_ids_unique_across_files_and_import_is_deterministic(tmp_path: Path) -> None:
    a = write_csv(tmp_path / "a.csv", MODERN, MODERN_ROWS)
    b = _parquet_month(tmp_path / "b.parquet", 1, drift=True)
    gz = tmp_path / "c.csv.gz"
    gz.write_bytes(gzip.compress((MODERN + "\n" + "\n".join(MODERN_ROWS) + "\n").encode()))
    first = import_files([a, b, gz], tmp_path / "one")
    second = import_files([a, b, gz], tmp_path / "two")
    assert first.manifest.fingerprint == second.manifest.fingerprint
    assert first.manifest.fingerprint == dataset_fingerprint(tmp_path / "one")
    trips = read_out(tmp_path / "one")
    assert trips.trip_id.tolist() == list(range(11))
    assert first.manifest.rows == 11
    assert first.manifest.months == ["2022-01", "2023-01", "2023-02"]


def test_directory_input_and_zone_lookup(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_csv(inputs / "a.csv", MODERN, MODERN_ROWS)
    (inputs / "notes.txt").write_text("ignored")
    lookup = tmp_path / "taxi_zone_lookup.csv"
    lookup.write_text("LocationID,Borough,Zone,service_zone\n1,EWR,Newark Airport,EWR\n")
    report = import_files([inputs], tmp_path / "out", zones=lookup)
    assert [Path(f.path).name for f in report.files] == ["a.csv"]
    zones = pd.read_parquet(zones_path(tmp_path / "out"))
    assert zones.LocationID.tolist() == [1]
    assert report.manifest.zones["source"] == str(lookup)
    bare = import_files([inputs], tmp_path / "bare")
    assert bare.manifest.zones["name"] is None
    assert not zones_path(tmp_path / "bare").exists()
    bad_lookup = write_csv(tmp_path / "zones.csv", "id,name", ["1,x"])
    with pytest.raises(DataError, match=r"zones\.csv: not a zone lookup: missing columns"):
        import_files([inputs], tmp_path / "again", zones=bad_lookup)


def test_reimporting_a_dataset_into_itself_is_refused(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "a.csv", MODERN, MODERN_ROWS)
    import_files([src], tmp_path / "ds")
    again = import_files([tmp_path / "ds" / "trips"], tmp_path / "copy")
    assert again.files[0].unknown_columns == ["trip_id"]  # ids are assigned afresh
    assert again.manifest.rows == 4
    with pytest.raises(DataError, match="is part of the output dataset"):
        import_files([tmp_path / "ds" / "trips"], tmp_path / "ds", overwrite=True)
    assert len(trip_files(tmp_path / "ds")) == 2


@requires_samples
@pytest.mark.parametrize("month", ["2018-03", "2019-06", "2020-09"])
def test_real_monthly_samples(tmp_path: Path, month: str) -> None:
    src = SAMPLES / f"yellow_tripdata_sample_{month}.csv"
    report = import_files([src], tmp_path)
    [r] = report.files
    assert (r.rows_in, r.rows_written, r.rows_rejected) == (10_000, 10_000, 0)
    assert r.unknown_columns == []
    assert max(r.months, key=r.months.get) == month and r.months[month] >= 9_990
    trips = read_out(tmp_path)
    raw = pd.read_csv(src)
    assert np.allclose(trips.fare_amount, raw.fare_amount)
    assert np.allclose(trips.total_amount, raw.total_amount)
    assert (trips.PULocationID == raw.pickup_location_id).all()
    assert (trips.tpep_pickup_datetime == pd.to_datetime(raw.pickup_datetime)).all()
    assert trips.passenger_count.isna().sum() == raw.passenger_count.isna().sum()
    assert_canonical(tmp_path)


@requires_samples
def test_real_sample_with_floats_and_empty_fields(tmp_path: Path) -> None:
    src = SAMPLES / "yellow_tripdata_sample_10_trips_from_each_month.csv"
    report = import_files([src], tmp_path)
    [r] = report.files
    assert (r.rows_in, r.rows_written, r.rows_rejected) == (360, 360, 0)
    expected = [f"{y}-{m:02d}" for y in (2018, 2019, 2020) for m in range(1, 13)]
    assert list(r.months) == expected and set(r.months.values()) == {10}
    trips = read_out(tmp_path)
    raw = pd.read_csv(src)
    assert trips.VendorID.dropna().isin([1, 2, 4]).all()
    assert trips.passenger_count.isna().sum() == raw.passenger_count.isna().sum() == 14
    assert trips.payment_type.dropna().tolist() == raw.payment_type.dropna().astype(int).tolist()
    assert trips.congestion_surcharge.isna().sum() == raw.congestion_surcharge.isna().sum()
    assert pq.read_schema(trip_files(tmp_path)[0]).field("passenger_count").type == pa.int32()


@requires_samples
def test_all_real_samples_together_with_the_real_zones(tmp_path: Path) -> None:
    paths = sorted(SAMPLES.glob("*.csv"))
    report = import_files(paths, tmp_path, zones=SHARED_DATA / "taxi_zone_lookup.csv")
    assert report.manifest.rows == 30_360 and report.rows_rejected == 0
    trips = read_out(tmp_path)
    assert trips.trip_id.is_unique
    zones = pd.read_parquet(zones_path(tmp_path))
    assert len(zones) == 265
    assert set(trips.PULocationID.dropna()) <= set(zones.LocationID)
