"""Shuffle overhead, throughput and memory of the engine's hash shuffle (asv).

Every case hash-shuffles a taxi-like frame (``comparisons.bench.frames.taxi_partition``, made on
the workers, persisted before the clock starts) on ``trip_id`` into as many partitions as it has,
on a fresh 2-worker × 1-thread `LocalCluster` with its workers' sizeof set to the case's sizeof
mode: ``sampled`` (the default) or ``deep`` (the exact size that lagged the 2016 workers). Timed
is ``shuffle(...).map_partitions(len)``, which touches every output partition and gathers only
their lengths. Each case is measured once per run, in ``setup_cache`` (one cluster per case, not
one per figure), and each figure comes from its own shuffle:

- ``track_overhead_ratio``: shuffle wall time ÷ one pandas process hash-partitioning the same
  frame in memory into the same number of partitions (DESIGN.md), the fastest of 3 baseline
  runs of that frame;
- ``track_throughput``: the frame's in-memory size (pandas, deep) ÷ shuffle wall time;
- ``track_worker_peak_ratio``: the workers' summed peak RSS during the shuffle, less their
  RSS before the data was made (after a warm-up), ÷ the frame's size (input and output both
  live at the peak, so 2 is the floor for a copying shuffle);
- ``track_client_peak_ratio``: the client process's peak RSS during the shuffle, less its RSS
  before it, ÷ the frame's size: the client holds none of the data, only the graph and the
  lengths, so this stays near 0.

Before the measured shuffles a case runs one untimed, so figures are hot (the first shuffle in
fresh worker processes also pays for first-touch memory). Cases that an implementation cannot
run yet raise NotImplementedError in setup, which asv reports as skipped. ``make test``'s short
grid is 1M rows at 32 partitions, both implementations, both column sets, sampled sizeof;
``TASKBENCH_ASV_FULL=1`` runs the whole grid, 10M rows included (those take minutes each).
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pandas as pd
import psutil
from taskbench.comparisons.bench import frames
from taskbench.comparisons.bench.memory import peak_rss_bytes, reset_peak_rss, rss_bytes
from taskbench.comparisons.bench.shuffle import pandas_baseline
from taskbench.engine.client import Client
from taskbench.engine.cluster import LocalCluster
from taskbench.engine.dataframe import from_map, from_pandas

from . import FULL

ROWS = [1_000_000, 10_000_000] if FULL else [1_000_000]
PARTITIONS = [8, 32, 128] if FULL else [32]
METHODS = ["tasks", "p2p"]
COLUMNS = list(frames.COLUMN_SETS)
SIZEOF = ["sampled", "deep"] if FULL else ["sampled"]
ON = "trip_id"
BASELINE_REPEATS = 3


def _unavailable(method: str) -> str | None:
    """Why ``method`` cannot shuffle yet (its NotImplementedError), or None if it can."""
    try:
        from_pandas(frames.taxi_partition(0, 2, "numeric"), 1).shuffle(ON, 1, method=method)
    except NotImplementedError as e:
        return str(e)
    return None


def _shuffle(frame: Any, rows: int, partitions: int, method: str) -> float:
    """One shuffle of ``frame``, checked to keep every row: its wall time in seconds."""
    t0 = time.perf_counter()
    lengths = frame.shuffle(ON, partitions, method=method).map_partitions(len).compute()
    seconds = time.perf_counter() - t0
    if int(pd.Series(lengths).sum()) != rows:
        raise RuntimeError("the shuffle lost or duplicated rows")
    return seconds


def _own_peak() -> int | None:
    """This process's peak RSS since start or the last reset (Linux VmHWM), children excluded."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def measure_case(
    rows: int, partitions: int, method: str, columns: str, sizeof: str, frame_info: dict
) -> dict[str, float | None]:
    """Every figure of one case, on its own fresh cluster (module docstring)."""
    nbytes, baseline = frame_info["bytes"], frame_info["baseline_seconds"]
    with LocalCluster(2, 1, sizeof=sizeof) as cluster, Client(cluster):
        meta = frames.taxi_partition(0, 0, columns)
        warm = from_map(frames.taxi_item, [(0, 1000), (1, 1000)], meta=meta, column_set=columns)
        warm.shuffle(ON, 2, method=method).map_partitions(len).compute()
        pids = [p.pid for p in cluster.worker_processes]
        idle = rss_bytes(*pids)
        items = list(enumerate(frames.partition_rows(rows, partitions)))
        frame = from_map(frames.taxi_item, items, meta=meta, column_set=columns).persist()
        if frame.length().compute() != rows:
            raise RuntimeError("the workers made the wrong number of rows")
        _shuffle(frame, rows, partitions, method)  # warm: first-touch memory
        overhead = _shuffle(frame, rows, partitions, method) / baseline
        throughput = nbytes / _shuffle(frame, rows, partitions, method) / 1e6
        client_before = psutil.Process().memory_info().rss
        peaks_reset = reset_peak_rss(*pids) and reset_peak_rss()  # no pid: this process
        _shuffle(frame, rows, partitions, method)
        worker_peak, client_peak = peak_rss_bytes(*pids), _own_peak()
    known = peaks_reset and None not in (worker_peak, idle, client_peak, client_before)
    return {
        "overhead_ratio": overhead,
        "throughput": throughput,
        "worker_peak_ratio": (worker_peak - idle) / nbytes if known else None,
        "client_peak_ratio": (client_peak - client_before) / nbytes if known else None,
    }


class Shuffle:
    params = [ROWS, PARTITIONS, METHODS, COLUMNS, SIZEOF]
    param_names = ["rows", "partitions", "implementation", "columns", "sizeof"]
    timeout = 60

    def setup_cache(self) -> dict:
        """Per case: its figures, why it cannot run (a string), or the error it raised."""
        unavailable = {m: _unavailable(m) for m in METHODS}
        out: dict = {}
        for rows, nparts, columns in itertools.product(ROWS, PARTITIONS, COLUMNS):
            df = frames.taxi_frame(rows, nparts, columns)
            info = {
                "bytes": frames.frame_bytes(df),
                "baseline_seconds": pandas_baseline(df, ON, nparts, BASELINE_REPEATS)["seconds"],
            }
            del df
            for method, sizeof in itertools.product(METHODS, SIZEOF):
                case = (rows, nparts, method, columns, sizeof)
                if unavailable[method]:
                    out[case] = unavailable[method]
                    continue
                try:
                    out[case] = measure_case(*case, info)
                except Exception as e:  # one broken case must not lose the others' figures
                    out[case] = {"error": f"{type(e).__name__}: {e}"}
        return out

    setup_cache.timeout = 4 * 3600 if FULL else 900

    def setup(self, cases, rows, partitions, implementation, columns, sizeof):
        figures = cases[(rows, partitions, implementation, columns, sizeof)]
        if isinstance(figures, str):
            raise NotImplementedError(figures)  # asv: skipped
        if "error" in figures:
            raise RuntimeError(f"the case failed in setup_cache: {figures['error']}")
        self.figures = figures

    def _figure(self, name: str) -> float:
        value = self.figures[name]
        if value is None:
            raise NotImplementedError(f"{name}: peak RSS is not readable on this platform")
        return value

    def track_overhead_ratio(self, *params):
        return self._figure("overhead_ratio")

    track_overhead_ratio.unit = "ratio"

    def track_throughput(self, *params):
        return self._figure("throughput")

    track_throughput.unit = "MB/s"

    def track_worker_peak_ratio(self, *params):
        return self._figure("worker_peak_ratio")

    track_worker_peak_ratio.unit = "ratio"

    def track_client_peak_ratio(self, *params):
        return self._figure("client_peak_ratio")

    track_client_peak_ratio.unit = "ratio"
