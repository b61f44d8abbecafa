"""The canonical NYC-taxi layout: one Arrow schema for every trip file, and the zones table.

A dataset directory holds ``trips/yellow_tripdata_YYYY-MM.parquet`` (one file per pickup
month, so ``DIR/trips`` reads as one parquet dataset in any engine), ``zones.parquet`` and
``manifest.json``. Every trip file has exactly ``TRIPS_SCHEMA``:

- the modern TLC columns, in the TLC's order, with fixed types: small codes and zone ids
  are int32, timestamps are naive ``timestamp[us]``, amounts and distances are float64;
- ``trip_id`` (int64, never null), unique across the whole dataset, for total orderings;
- four trailing coordinate columns (``pickup_longitude`` …), always present so that every
  file of every dataset has one schema: they are null for generated data and for modern
  files, and zone ids are null where only coordinates exist (TLC files before mid-2016).

``tpep_pickup_datetime`` is never null either: a trip without a pickup time has no month.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

MONEY_COLUMNS: tuple[str, ...] = (
    "fare_amount",
    "extra",
    "mta_tax",
    "tip_amount",
    "tolls_amount",
    "improvement_surcharge",
    "total_amount",
    "congestion_surcharge",
    "airport_fee",
)
COORDINATE_COLUMNS: tuple[str, ...] = (
    "pickup_longitude",
    "pickup_latitude",
    "dropoff_longitude",
    "dropoff_latitude",
)

TRIPS_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("VendorID", pa.int32()),
        pa.field("tpep_pickup_datetime", pa.timestamp("us"), nullable=False),
        pa.field("tpep_dropoff_datetime", pa.timestamp("us")),
        pa.field("passenger_count", pa.int32()),
        pa.field("trip_distance", pa.float64()),
        pa.field("RatecodeID", pa.int32()),
        pa.field("store_and_fwd_flag", pa.string()),
        pa.field("PULocationID", pa.int32()),
        pa.field("DOLocationID", pa.int32()),
        pa.field("payment_type", pa.int32()),
        *(pa.field(name, pa.float64()) for name in MONEY_COLUMNS),
        pa.field("trip_id", pa.int64(), nullable=False),
        *(pa.field(name, pa.float64()) for name in COORDINATE_COLUMNS),
    ]
)

ZONES_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("LocationID", pa.int32(), nullable=False),
        pa.field("Borough", pa.string()),
        pa.field("Zone", pa.string()),
        pa.field("service_zone", pa.string()),
    ]
)

TRIPS_DIR = "trips"
TRIP_FILE_PATTERN = "trips/yellow_tripdata_*.parquet"
ZONES_FILE = "zones.parquet"
MANIFEST_FILE = "manifest.json"

# Low-cardinality columns get parquet dictionary encoding; the rest are plain-encoded,
# which is faster to write and no bigger for near-unique values.
DICTIONARY_COLUMNS: tuple[str, ...] = (
    "VendorID",
    "passenger_count",
    "RatecodeID",
    "store_and_fwd_flag",
    "PULocationID",
    "DOLocationID",
    "payment_type",
    "extra",
    "mta_tax",
    "tolls_amount",
    "improvement_surcharge",
    "congestion_surcharge",
    "airport_fee",
)
ROW_GROUP_ROWS = 1_000_000


class DataError(ValueError):
    """A data file that cannot be read into the canonical layout; the message names the file."""


def trip_file_name(year: int, month: int) -> str:
    """The path of one pickup month's file, relative to the dataset directory."""
    return f"{TRIPS_DIR}/yellow_tripdata_{year:04d}-{month:02d}.parquet"


def trip_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The trip files of a dataset directory, in month order."""
    return sorted(Path(directory).glob(TRIP_FILE_PATTERN))


def zones_path(directory: str | os.PathLike[str]) -> Path:
    """The zones table of a dataset directory."""
    return Path(directory) / ZONES_FILE


def parquet_writer(
    path: str | os.PathLike[str], schema: pa.Schema = TRIPS_SCHEMA
) -> pq.ParquetWriter:
    """A parquet writer with the layout's encoding settings (snappy, selective dictionaries)."""
    dictionary = [name for name in DICTIONARY_COLUMNS if name in schema.names]
    return pq.ParquetWriter(path, schema, compression="snappy", use_dictionary=dictionary)
