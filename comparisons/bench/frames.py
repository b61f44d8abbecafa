"""The taxi-like frame the shuffle bench and its asv suite shuffle, made per partition.

Workers make their partitions themselves (`taxi_item` is the task), so this module is what
they import when they unpickle one: it needs numpy and pandas only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

SEED = 42
ZONES = 265
NUMERIC = "numeric"
STRINGS = "strings"
COLUMN_SETS = (NUMERIC, STRINGS)
_EPOCH = np.datetime64("2015-01-01T00:00:00", "us")
_MONTH_US = 31 * 86_400 * 10**6


def _hex_strings(rng: np.random.Generator, n: int, width: int = 32) -> np.ndarray:
    """``n`` distinct-object random hex strings of ``width`` chars, as an object array."""
    digits = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)
    text = digits[rng.integers(0, 16, n * width)].tobytes().decode("ascii")
    out = np.empty(n, dtype=object)
    out[:] = [text[i : i + width] for i in range(0, n * width, width)]
    return out


def taxi_partition(
    index: int, rows: int, columns: str = STRINGS, seed: int = SEED, nparts: int = 0
) -> pd.DataFrame:
    """Partition ``index`` of a taxi-like frame: ``rows`` trips, deterministic for the seed.

    numeric: vendor, pickup/dropoff times, passengers, distance, zones, payment type, fare,
    tip, total and a unique ``trip_id`` (``index * rows + row``); strings adds
    ``store_and_fwd_flag`` (Y/N) and the 2013 files' ``medallion`` and ``hack_license``
    (32-char hex), as object columns with one Python string per row, as pandas reads CSV.
    """
    if columns not in COLUMN_SETS:
        raise ValueError(f"columns must be one of {COLUMN_SETS}, got {columns!r}")
    rng = np.random.default_rng([seed, index])
    pickup = _EPOCH + rng.integers(0, _MONTH_US, rows).astype("timedelta64[us]")
    duration = (rng.gamma(2.0, 400.0, rows) * 1e6).astype("timedelta64[us]")
    distance = np.round(rng.gamma(1.5, 2.0, rows), 2)
    fare = np.round(2.5 + 2.5 * distance + rng.normal(0, 1, rows).clip(-2, 5), 2)
    tip = np.round(fare * rng.choice([0.0, 0.15, 0.2, 0.25], rows), 2)
    data: dict[str, Any] = {
        "VendorID": rng.integers(1, 3, rows, dtype=np.int32),
        "tpep_pickup_datetime": pickup,
        "tpep_dropoff_datetime": pickup + duration,
        "passenger_count": rng.choice(np.array([1, 1, 1, 1, 2, 2, 3, 5, 6], np.int32), rows),
        "trip_distance": distance,
        "PULocationID": rng.integers(1, ZONES + 1, rows, dtype=np.int32),
        "DOLocationID": rng.integers(1, ZONES + 1, rows, dtype=np.int32),
        "payment_type": rng.choice(np.array([1, 1, 2, 3], np.int32), rows),
        "fare_amount": fare,
        "tip_amount": tip,
        "total_amount": np.round(fare + tip + 0.8, 2),
        "trip_id": np.arange(index * rows, (index + 1) * rows, dtype=np.int64),
    }
    if columns == STRINGS:
        flags = np.array(["N", "Y"], dtype=object)
        data["store_and_fwd_flag"] = flags[(rng.random(rows) < 0.01).astype(np.intp)]
        data["medallion"] = _hex_strings(rng, rows)
        data["hack_license"] = _hex_strings(rng, rows)
    df = pd.DataFrame(data)
    for col in ("store_and_fwd_flag", "medallion", "hack_license"):
        if col in df:
            df[col] = df[col].astype(object)
    return df


def partition_rows(rows: int, nparts: int) -> list[int]:
    """Rows of each of ``nparts`` partitions: as equal as possible, summing to ``rows``."""
    return [rows * (i + 1) // nparts - rows * i // nparts for i in range(nparts)]


def taxi_frame(rows: int, nparts: int, columns: str = STRINGS, seed: int = SEED) -> pd.DataFrame:
    """The whole frame the engines shuffle: the concatenation of its partitions."""
    sizes = partition_rows(rows, nparts)
    parts = [taxi_partition(i, n, columns, seed) for i, n in enumerate(sizes)]
    return pd.concat(parts, ignore_index=True)


def frame_bytes(df: pd.DataFrame) -> int:
    """The frame's in-memory size (pandas, deep)."""
    return int(df.memory_usage(deep=True, index=True).sum())


def taxi_item(item: tuple[int, int], column_set: str) -> pd.DataFrame:
    """``taxi_partition(index, rows, column_set)`` for ``item = (index, rows)``: a from_map task."""
    index, rows = item
    return taxi_partition(index, rows, column_set)
