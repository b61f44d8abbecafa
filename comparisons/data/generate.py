"""Synthetic NYC yellow-taxi trips in the canonical layout, deterministic for a seed.

Every month is cut into chunks of ``ROW_GROUP_ROWS`` rows; chunk k of month (y, m) draws from
its own generator seeded by ``(seed, y, m, k)``, so the output does not depend on threads or
timing, and ``trip_id`` is the row's position in the dataset (months in order). Chunks are
drawn on a thread pool and written in order, one row group each, so memory stays bounded.

The model follows published 2015 facts (TLC fare rules and trip statistics) whatever the
year: rows per month follow 2015's trips per calendar month, every month uses the 2015 fare
schedule, and ``congestion_surcharge`` and ``airport_fee``, which did not exist in 2015, are
null, as in the TLC's own 2015 files. ``DIRTY_SHARES`` states how often each
kind of dirty value is planted; clean-row statistics (shares, means, correlation) hold on
rows where ``0 < trip_distance < 100`` and ``fare_amount > 0``.
"""

from __future__ import annotations

import calendar
import datetime as dt
import os
import shlex
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from taskbench.comparisons.data.manifest import (
    GENERATOR_VERSION,
    Manifest,
    staged_dataset,
    write_dataset,
)
from taskbench.comparisons.data.schema import (
    COORDINATE_COLUMNS,
    ROW_GROUP_ROWS,
    TRIPS_SCHEMA,
    parquet_writer,
    trip_file_name,
)
from taskbench.comparisons.data.zones import (
    JFK,
    LAGUARDIA,
    NEWARK,
    ZoneWeights,
    read_zone_lookup,
    synthetic_zones,
    zone_weights,
)

# Yellow-taxi trips per calendar month in 2015 (TLC trip records); rows are split in proportion.
TRIPS_2015: tuple[int, ...] = (
    12_748_986,
    12_450_521,
    13_351_609,
    13_071_789,
    13_158_262,
    12_324_935,
    11_562_783,
    11_130_304,
    11_225_063,
    12_315_488,
    11_312_676,
    11_460_573,
)
# Share of a week's trips on each day, Monday first: Saturday busiest, Monday quietest.
DAY_OF_WEEK_SHARES: tuple[float, ...] = (0.126, 0.139, 0.144, 0.150, 0.153, 0.156, 0.132)
# Pickups by hour (relative): weekdays have the evening peak, weekends the late nights.
_HOURS_WEEKDAY = (2.0, 1.1, 0.7, 0.5, 0.5, 0.5, 1.8, 3.7, 4.8, 4.8, 4.6, 4.6,
                  4.7, 4.7, 4.8, 4.7, 4.6, 5.6, 6.9, 6.9, 6.0, 5.8, 5.7, 4.4)  # fmt: skip
_HOURS_WEEKEND = (5.0, 4.3, 3.5, 2.7, 1.8, 0.9, 0.9, 1.3, 2.2, 3.2, 4.2, 4.8,
                  5.1, 5.2, 5.2, 5.1, 5.0, 5.2, 5.6, 5.5, 5.0, 4.8, 4.9, 4.8)  # fmt: skip
# Mean speed (mph) by pickup hour: fast at night, slowest in the daytime.
_SPEED_BY_HOUR = (18, 19, 19, 20, 21, 20, 16, 12.5, 10.5, 10, 10, 10,
                  10, 10, 10, 10, 10.5, 10.5, 10.5, 11.5, 13, 14, 15, 16)  # fmt: skip

PASSENGER_COUNT_SHARES: dict[int | None, float] = {
    1: 0.705,
    2: 0.143,
    5: 0.054,
    3: 0.042,
    6: 0.035,
    4: 0.020,
    0: 0.0003,
    7: 0.0001,
    8: 0.00005,
    9: 0.00005,
    None: 0.0005,  # trips the vendor did not report: RatecodeID and the flag are null too
}
PAYMENT_TYPE_SHARES: dict[int, float] = {1: 0.627, 2: 0.369, 3: 0.003, 4: 0.001}
VENDOR_SHARES: dict[int, float] = {1: 0.47, 2: 0.53}
DIRTY_SHARES: dict[str, float] = {
    "negative_amounts": 0.0005,  # voided trips: every amount negated
    "zero_distance": 0.006,
    "dropoff_before_pickup": 0.0001,
    "extreme_distance": 0.00002,  # 300 to 300,000 miles
}
CARD_ZERO_TIP_SHARE = 0.037

# 2015 fare rules (TLC): $2.50 flag drop, $0.50 per 1/5 mile or per minute in slow traffic,
# $0.50 night surcharge 20-06h, $1 weekday peak 16-20h, $0.50 MTA tax, $0.30 improvement
# surcharge, JFK<->Manhattan flat $52 (+$4.50 weekday peak), Newark metered + $17.50.
FLAG_DROP = 2.5
FARE_UNIT = 0.5
JFK_FLAT_FARE = 52.0
JFK_PEAK_SURCHARGE = 4.5
NEWARK_SURCHARGE = 17.5
NIGHT_SURCHARGE = 0.5
PEAK_SURCHARGE = 1.0
MTA_TAX = 0.5
IMPROVEMENT_SURCHARGE = 0.3
BRIDGE_TOLL = 5.54
# Tip percentages: the screen's 20/25/30% buttons, or a typed amount.
_TIP_BUTTONS = (0.20, 0.25, 0.30)
_TIP_BUTTON_SHARES = (0.38, 0.18, 0.08)
_TYPED_TIP_RANGE = (0.10, 0.26)


@dataclass(frozen=True)
class _Chunk:
    year: int
    month: int
    index: int
    rows: int
    first_trip_id: int


def parse_month(text: str) -> tuple[int, int]:
    """``"2015-01"`` -> ``(2015, 1)``."""
    try:
        year, month = (int(part) for part in text.split("-"))
        dt.date(year, month, 1)
    except ValueError as exc:
        raise ValueError(f"month must look like 2015-01, got {text!r}") from exc
    return year, month


def month_range(start: str, months: int) -> list[tuple[int, int]]:
    """``months`` consecutive (year, month) pairs from ``start``."""
    year, month = parse_month(start)
    first = year * 12 + month - 1
    return [(k // 12, k % 12 + 1) for k in range(first, first + months)]


def rows_per_month(rows: int, months: list[tuple[int, int]]) -> list[int]:
    """Split ``rows`` over months in proportion to 2015's trips per calendar month, exactly."""
    weights = np.array([TRIPS_2015[m - 1] for _, m in months], dtype=float)
    ideal = rows * weights / weights.sum()
    counts = np.floor(ideal).astype(np.int64)
    short = rows - int(counts.sum())
    counts[np.argsort(-(ideal - counts), kind="stable")[:short]] += 1
    return [int(c) for c in counts]


def generate(
    out: str | os.PathLike[str],
    *,
    rows: int,
    start: str = "2015-01",
    months: int = 1,
    seed: int = 0,
    zones: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    workers: int | None = None,
    created_by: str | None = None,
) -> Manifest:
    """Write a synthetic dataset (trip files, zones, manifest) to ``out``; return the manifest."""
    if rows < 0 or months < 1:
        raise ValueError("rows must be >= 0 and months >= 1")
    month_list = month_range(start, months)
    zone_table = synthetic_zones() if zones is None else read_zone_lookup(zones)
    model = _Model(zone_weights(zone_table))
    chunks = list(_plan_chunks(rows, month_list))
    workers = workers or min(4, os.cpu_count() or 1)

    def draw(chunk: _Chunk) -> pa.Table:
        key = [seed, chunk.year, chunk.month, chunk.index]
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(key)))
        return trips_table(rng, chunk, model)

    target = Path(out)
    with staged_dataset(target, overwrite=overwrite) as staging:
        file_rows = _write_trips(staging, draw, chunks, workers=workers, progress=progress)
        manifest = write_dataset(
            staging,
            kind="generated",
            zones=zone_table,
            zones_source="synthetic" if zones is None else str(zones),
            file_rows=file_rows,
            seed=seed,
            created_by=created_by or _default_command(rows, start, months, seed, target, zones),
            generator_version=GENERATOR_VERSION,
        )
    return manifest


def _write_trips(
    out: Path,
    draw: Callable[[_Chunk], pa.Table],
    chunks: list[_Chunk],
    *,
    workers: int,
    progress: bool,
) -> dict[str, int]:
    """Draw the chunks on a thread pool and write them in order; return {file name: rows}."""
    from tqdm import tqdm

    total = sum(chunk.rows for chunk in chunks)
    bar = tqdm(total=total, unit="rows", unit_scale=True, disable=not progress, file=sys.stderr)
    file_rows: dict[str, int] = {}
    writer = None
    current: tuple[int, int] | None = None
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        with bar:
            for chunk, table in _in_order(pool, draw, chunks, window=workers + 1):
                if (chunk.year, chunk.month) != current:
                    if writer is not None:
                        writer.close()
                    current = (chunk.year, chunk.month)
                    name = trip_file_name(*current)
                    writer = parquet_writer(out / name)
                    file_rows[name] = 0
                if table.num_rows:
                    writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
                file_rows[name] += table.num_rows
                bar.update(table.num_rows)
    finally:
        if writer is not None:
            writer.close()
        pool.shutdown(wait=True, cancel_futures=True)  # on an interrupt, draw nothing more
    return file_rows


def _default_command(
    rows: int, start: str, months: int, seed: int, out: Path, zones: object
) -> str:
    words = ["taskbench", "data", "generate", "--rows", str(rows), "--start", start]
    words += ["--months", str(months), "--seed", str(seed), "--out", str(out)]
    if zones is not None:
        words += ["--zones", str(zones)]
    return shlex.join(words)


def _plan_chunks(rows: int, months: list[tuple[int, int]]) -> Iterator[_Chunk]:
    trip_id = 0
    for (year, month), count in zip(months, rows_per_month(rows, months), strict=True):
        sizes = [ROW_GROUP_ROWS] * (count // ROW_GROUP_ROWS)
        if count % ROW_GROUP_ROWS or not sizes:
            sizes.append(count % ROW_GROUP_ROWS)
        for index, size in enumerate(sizes):
            yield _Chunk(year, month, index, size, trip_id)
            trip_id += size


def _in_order(
    pool: ThreadPoolExecutor,
    draw: Callable[[_Chunk], pa.Table],
    chunks: list[_Chunk],
    window: int,
) -> Iterator[tuple[_Chunk, pa.Table]]:
    """Run ``draw`` on the pool with at most ``window`` chunks in flight; yield in order."""
    todo = iter(chunks)
    pending: deque[tuple[_Chunk, Future[pa.Table]]] = deque()
    for chunk in todo:
        pending.append((chunk, pool.submit(draw, chunk)))
        if len(pending) >= window:
            break
    while pending:
        chunk, future = pending.popleft()
        following = next(todo, None)
        if following is not None:
            pending.append((following, pool.submit(draw, following)))
        yield chunk, future.result()


_TABLE_BITS = 20  # categorical draws resolve shares to 2**-20 (about one in a million)


def _index_table(weights: np.ndarray) -> np.ndarray:
    """A lookup table: entry j is the category holding quantile (j + 0.5) / 2**_TABLE_BITS."""
    cdf = np.cumsum(weights, dtype=float)
    points = (np.arange(1 << _TABLE_BITS) + 0.5) / (1 << _TABLE_BITS)
    index = np.minimum(np.searchsorted(cdf / cdf[-1], points, side="right"), len(weights) - 1)
    return index.astype(np.int16 if len(weights) < 2**15 else np.int32)


class _Categorical:
    """Draws from a fixed discrete distribution by table lookup (no per-draw search)."""

    def __init__(self, values: np.ndarray, weights: np.ndarray, nulls: np.ndarray | None = None):
        self.table = _index_table(np.asarray(weights, dtype=float))
        self.values = np.asarray(values)[self.table]
        self.nulls = None if nulls is None else np.asarray(nulls)[self.table]

    @classmethod
    def of(cls, shares: dict) -> _Categorical:
        keys = list(shares)
        values = np.array([0 if k is None else k for k in keys], dtype=np.int32)
        return cls(values, np.array(list(shares.values())), np.array([k is None for k in keys]))

    def slots(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Random table slots: ``values[slots]`` (and ``nulls[slots]``) are the draws."""
        return rng.integers(0, 1 << _TABLE_BITS, n, dtype=np.uint32)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.values[self.slots(rng, n)]


class _Model:
    """Everything a chunk needs that does not depend on the seed, computed once."""

    def __init__(self, zones: ZoneWeights):
        self.vendor = _Categorical.of(VENDOR_SHARES)
        self.passengers = _Categorical.of(PASSENGER_COUNT_SHARES)
        self.payment = _Categorical.of(PAYMENT_TYPE_SHARES)
        self.pickup_zone = _Categorical(zones.location_id, zones.pickup)
        self.dropoff_zone = _Categorical(zones.location_id, zones.dropoff)
        self.is_manhattan = np.zeros(int(zones.location_id.max()) + 1, dtype=bool)
        self.is_manhattan[zones.location_id] = zones.is_manhattan
        self._hours: dict[tuple[int, int], _Categorical] = {}

    def hour_of_month(self, year: int, month: int) -> _Categorical:
        """Hours of the month (day * 24 + hour) weighted by day-of-week and hour profiles."""
        if (year, month) not in self._hours:
            days = calendar.monthrange(year, month)[1]
            weekday = (dt.date(year, month, 1).weekday() + np.arange(days)) % 7
            weekday_hours = np.array(_HOURS_WEEKDAY) / sum(_HOURS_WEEKDAY)
            weekend_hours = np.array(_HOURS_WEEKEND) / sum(_HOURS_WEEKEND)
            hours = np.where((weekday >= 5)[:, None], weekend_hours, weekday_hours)
            cells = (np.array(DAY_OF_WEEK_SHARES)[weekday][:, None] * hours).ravel()
            self._hours[(year, month)] = _Categorical(np.arange(len(cells)), cells)
        return self._hours[(year, month)]


def trips_table(rng: np.random.Generator, chunk: _Chunk, model: _Model) -> pa.Table:
    """One chunk of trips as a ``TRIPS_SCHEMA`` table (vectorised; no per-row Python)."""
    n = chunk.rows
    hours = model.hour_of_month(chunk.year, chunk.month)
    hour_of_month = hours.sample(rng, n).astype(np.int64)
    start = np.datetime64(f"{chunk.year:04d}-{chunk.month:02d}-01", "us").astype(np.int64)
    pickup = start + (hour_of_month * 3600 + rng.integers(0, 3600, n)) * 1_000_000
    hour = hour_of_month % 24
    weekday = ((pickup // 86_400_000_000) + 3) % 7  # 1970-01-01 was a Thursday
    is_night = (hour >= 20) | (hour < 6)
    is_peak = (weekday < 5) & (hour >= 16) & (hour < 20)

    vendor = model.vendor.sample(rng, n)
    slots = model.passengers.slots(rng, n)
    passengers, unreported = model.passengers.values[slots], model.passengers.nulls[slots]
    payment = model.payment.sample(rng, n)
    pu = model.pickup_zone.sample(rng, n)
    do = model.dropoff_zone.sample(rng, n)
    pu_manhattan = model.is_manhattan[pu]
    do_manhattan = model.is_manhattan[do]

    # Distance: a city trip is lognormal (mode about 1 mile) with a longer outer-borough tail;
    # airport trips are drawn around the airport's distance from Midtown.
    long_tail = rng.random(n) >= 0.88
    city = np.exp(
        np.where(long_tail, np.log(4.6), np.log(1.45))
        + np.where(long_tail, 0.45, 0.62) * rng.standard_normal(n)
    )
    jfk = (pu == JFK) | (do == JFK)
    lga = ((pu == LAGUARDIA) | (do == LAGUARDIA)) & ~jfk
    newark = ((pu == NEWARK) | (do == NEWARK)) & ~jfk & ~lga
    jfk_manhattan = ((pu == JFK) & do_manhattan) | ((do == JFK) & pu_manhattan)
    noise = rng.standard_normal(n)
    distance = city
    distance = np.where(lga, np.clip(9.5 + 2.0 * noise, 4.0, 20.0), distance)
    distance = np.where(
        jfk, np.clip(np.where(jfk_manhattan, 17.5, 12.0) + 2.5 * noise, 2, 30), distance
    )
    distance = np.where(newark, np.clip(17.0 + 3.0 * noise, 8.0, 35.0), distance)
    distance = np.round(distance, 2)

    # Duration from an hour-dependent speed; long trips run faster on highways.
    speed = np.array(_SPEED_BY_HOUR)[hour] * np.exp(0.4 * rng.standard_normal(n))
    speed = speed * (1.0 + 0.035 * np.minimum(distance, 20.0)) * np.where(weekday >= 5, 1.1, 1.0)
    minutes = distance / speed * 60.0 + rng.uniform(0.4, 2.5, n)
    duration_s = np.round(minutes * 60.0).astype(np.int64)
    slow_share = np.clip(0.6 - 0.025 * speed + 0.22 * rng.standard_normal(n), 0.0, 0.9)

    # Rate codes and fares.
    ratecode = np.ones(n, dtype=np.int32)
    ratecode[newark] = 3
    ratecode[jfk_manhattan] = 2
    r = rng.random(n)
    other = ratecode == 1
    ratecode[other & (r < 0.003)] = 5  # negotiated
    ratecode[other & (r >= 0.003) & (r < 0.0035)] = 4  # Nassau or Westchester
    metered = FLAG_DROP + FARE_UNIT * (np.round(distance * 5.0) + np.round(minutes * slow_share))
    fare = metered
    fare = np.where(ratecode == 2, JFK_FLAT_FARE, fare)
    fare = np.where(ratecode == 3, metered + NEWARK_SURCHARGE, fare)
    fare = np.where(ratecode == 4, np.round(metered * 1.6 * 2.0) / 2.0, fare)
    fare = np.where(ratecode == 5, np.round(metered * rng.uniform(0.8, 1.3, n)), fare)
    extra = np.where(is_night, NIGHT_SURCHARGE, np.where(is_peak, PEAK_SURCHARGE, 0.0))
    extra = np.where(ratecode == 2, np.where(is_peak, JFK_PEAK_SURCHARGE, 0.0), extra)
    mta_tax = np.where(ratecode == 3, 0.0, MTA_TAX)
    improvement = np.full(n, IMPROVEMENT_SURCHARGE)
    outer = ~(pu_manhattan & do_manhattan)
    toll_chance = np.where(jfk | lga | newark, 0.45, np.where(outer, 0.12, 0.004))
    tolls = np.where(rng.random(n) < toll_chance, BRIDGE_TOLL, 0.0)
    tolls = np.where(newark & (tolls > 0), 2 * BRIDGE_TOLL + 1.42, tolls)

    # Tips: only card tips are recorded; a few card riders tip nothing.
    t = rng.random(n)
    cuts = np.cumsum((CARD_ZERO_TIP_SHARE, *_TIP_BUTTON_SHARES))
    typed = rng.uniform(*_TYPED_TIP_RANGE, n)
    percent = np.select(
        [t < cuts[0], t < cuts[1], t < cuts[2], t < cuts[3]], [0.0, *_TIP_BUTTONS], typed
    )
    base = fare + extra + mta_tax + improvement + tolls
    tip = np.where(payment == 1, np.round(percent * base, 2), 0.0)
    total = np.round(base + tip, 2)

    # Dirty values, planted in the stated shares.
    d = rng.random(n)
    edges = np.cumsum(list(DIRTY_SHARES.values()))
    negative = d < edges[0]
    zero_distance = (d >= edges[0]) & (d < edges[1])
    backwards = (d >= edges[1]) & (d < edges[2])
    extreme = (d >= edges[2]) & (d < edges[3])
    distance = np.where(zero_distance, 0.0, distance)
    distance = np.where(extreme, np.round(10.0 ** rng.uniform(2.5, 5.5, n), 2), distance)
    sign = np.where(negative, -1.0, 1.0)

    def signed(amount: np.ndarray) -> pa.Array:
        return pa.array(amount * sign + 0.0)  # + 0.0 turns -0.0 into 0.0

    duration_s = np.where(backwards, -rng.integers(1, 3600, n), duration_s)
    dropoff = pickup + duration_s * 1_000_000

    flag = (vendor == 1) & (rng.random(n) < 0.017)
    flag_array = pa.DictionaryArray.from_arrays(
        pa.array(flag.astype(np.int8), mask=unreported), pa.array(["N", "Y"])
    ).cast(pa.string())
    nulls = pa.nulls(n, pa.float64())
    columns = [
        pa.array(vendor),
        pa.array(pickup.view("datetime64[us]")),
        pa.array(dropoff.view("datetime64[us]")),
        pa.array(passengers, mask=unreported),
        pa.array(distance),
        pa.array(ratecode, mask=unreported),
        flag_array,
        pa.array(pu),
        pa.array(do),
        pa.array(payment),
        signed(fare),
        signed(extra),
        signed(mta_tax),
        signed(tip),
        signed(tolls),
        signed(improvement),
        signed(total),
        nulls,  # congestion_surcharge: no such fee in 2015
        nulls,  # airport_fee: no such fee in 2015
        pa.array(np.arange(chunk.first_trip_id, chunk.first_trip_id + n, dtype=np.int64)),
        *(nulls for _ in COORDINATE_COLUMNS),
    ]
    return pa.Table.from_arrays(columns, schema=TRIPS_SCHEMA)
