"""The taxi zones table, synthetic or read from a real ``taxi_zone_lookup.csv``, and trip weights.

The synthetic table has the real shape: 265 zones with the real borough counts (Manhattan 69,
Queens 69, Brooklyn 61, Bronx 43, Staten Island 20, EWR 1, Unknown 2), 55 Manhattan
"Yellow Zone"s, and the real ids of the landmarks queries care about: 1 Newark Airport,
132 JFK Airport, 138 LaGuardia Airport, 264/265 Unknown. The other boroughs are spread over the
remaining ids by a fixed permutation, so the table is the same for every seed.

Pickup and dropoff weights come from borough shares of yellow-taxi trips (Manhattan about 88%
of pickups, the two airports about 5%), spread over each borough's zones by a fixed Zipf-like
ranking; they work the same way for the synthetic and for a real table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from taskbench.comparisons.data.schema import ZONES_SCHEMA, DataError

JFK = 132
LAGUARDIA = 138
NEWARK = 1
BOROUGH_COUNTS: dict[str, int] = {
    "Manhattan": 69,
    "Queens": 69,
    "Brooklyn": 61,
    "Bronx": 43,
    "Staten Island": 20,
    "EWR": 1,
    "Unknown": 2,
}
MANHATTAN_YELLOW_ZONES = 55

# Shares of trip endpoints by kind of zone: (pickup, dropoff). Each column sums to 1.
_ENDPOINT_SHARES: dict[str, tuple[float, float]] = {
    "Manhattan": (0.885, 0.840),
    "Brooklyn": (0.030, 0.055),
    "Queens": (0.024, 0.040),
    "Bronx": (0.002, 0.012),
    "Staten Island": (0.0002, 0.0008),
    "JFK": (0.018, 0.013),
    "LaGuardia": (0.031, 0.022),
    "EWR": (0.0001, 0.0022),
    "Unknown": (0.0097, 0.015),
}
_MANHATTAN_BORO_ZONE_FACTOR = 0.15  # upper Manhattan sees far fewer yellow cabs
_ZIPF_EXPONENT = 0.6
_FIXED_SEED = 2015


def synthetic_zones() -> pa.Table:
    """The synthetic zones table (same for every seed)."""
    ids = np.arange(1, 266, dtype=np.int32)
    borough = np.empty(265, dtype=object)
    zone = np.empty(265, dtype=object)
    service = np.empty(265, dtype=object)
    fixed = {
        NEWARK: ("EWR", "Newark Airport", "EWR"),
        JFK: ("Queens", "JFK Airport", "Airports"),
        LAGUARDIA: ("Queens", "LaGuardia Airport", "Airports"),
        264: ("Unknown", "NV", "N/A"),
        265: ("Unknown", "NA", "N/A"),
    }
    free_ids = [i for i in range(1, 266) if i not in fixed]
    labels: list[str] = []
    for name in ("Manhattan", "Queens", "Brooklyn", "Bronx", "Staten Island"):
        taken = sum(1 for b, _, _ in fixed.values() if b == name)
        labels += [name] * (BOROUGH_COUNTS[name] - taken)
    assert len(labels) == len(free_ids)
    shuffled = np.random.default_rng(_FIXED_SEED).permutation(np.array(labels, dtype=object))
    counters: dict[str, int] = {}
    for location_id, name in zip(free_ids, shuffled, strict=True):
        counters[name] = counters.get(name, 0) + 1
        k = counters[name]
        borough[location_id - 1] = name
        zone[location_id - 1] = f"{name} zone {k:02d}"
        yellow = name == "Manhattan" and k <= MANHATTAN_YELLOW_ZONES
        service[location_id - 1] = "Yellow Zone" if yellow else "Boro Zone"
    for location_id, (b, z, s) in fixed.items():
        borough[location_id - 1], zone[location_id - 1], service[location_id - 1] = b, z, s
    return pa.table(
        [pa.array(ids), pa.array(borough, pa.string()), pa.array(zone), pa.array(service)],
        schema=ZONES_SCHEMA,
    )


def read_zone_lookup(path: str | os.PathLike[str]) -> pa.Table:
    """Read a TLC ``taxi_zone_lookup.csv`` (or a zones parquet) into ``ZONES_SCHEMA``."""
    path = Path(path)
    try:
        if path.suffix == ".parquet":
            table = pq.read_table(path)
        else:
            table = pacsv.read_csv(
                path,
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.string() for name in ZONES_SCHEMA.names},
                    strings_can_be_null=True,
                ),
            )
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"{path}: cannot read zone lookup: {exc}") from exc
    missing = [name for name in ZONES_SCHEMA.names if name not in table.column_names]
    if missing:
        raise DataError(
            f"{path}: not a zone lookup: missing columns {missing}; found {table.column_names}"
        )
    try:
        ids = pc.cast(table["LocationID"], pa.int32())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(f"{path}: LocationID must be integers: {exc}") from exc
    if ids.null_count or len(pc.unique(ids)) != len(ids):
        raise DataError(f"{path}: LocationID must be unique and not empty")
    columns = [ids] + [pc.cast(table[n], pa.string()) for n in ZONES_SCHEMA.names[1:]]
    return pa.Table.from_arrays(columns, schema=ZONES_SCHEMA).sort_by("LocationID")


@dataclass(frozen=True)
class ZoneWeights:
    """Pickup and dropoff probabilities per zone, aligned with ``location_id``."""

    location_id: np.ndarray  # int32
    pickup: np.ndarray  # float64, sums to 1
    dropoff: np.ndarray  # float64, sums to 1
    is_manhattan: np.ndarray  # bool


def zone_weights(zones: pa.Table) -> ZoneWeights:
    """Trip endpoint weights for a zones table (synthetic or real)."""
    ids = zones["LocationID"].to_numpy().astype(np.int32)
    borough = np.array(zones["Borough"].fill_null("").to_pylist(), dtype=object)
    service = np.array(zones["service_zone"].fill_null("").to_pylist(), dtype=object)
    kind = borough.copy()
    kind[ids == JFK] = "JFK"
    kind[ids == LAGUARDIA] = "LaGuardia"
    rank_rng = np.random.default_rng(_FIXED_SEED + 1)
    base = np.zeros(len(ids))
    for name in np.unique(kind):
        members = np.flatnonzero(kind == name)
        ranks = rank_rng.permutation(len(members))
        base[members] = 1.0 / (ranks + 3.0) ** _ZIPF_EXPONENT
    base[(kind == "Manhattan") & (service != "Yellow Zone")] *= _MANHATTAN_BORO_ZONE_FACTOR
    weights = []
    for side in (0, 1):
        w = np.zeros(len(ids))
        for name in np.unique(kind):
            members = kind == name
            share = _ENDPOINT_SHARES.get(name, (1e-5, 1e-5))[side]
            w[members] = base[members] / base[members].sum() * share
        weights.append(w / w.sum())
    return ZoneWeights(ids, weights[0], weights[1], kind == "Manhattan")
