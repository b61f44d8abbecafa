"""Shuffle overhead, throughput and memory of the engine's hash shuffle (asv).

Every case hash-shuffles a taxi-like frame (``comparisons.bench.frames.taxi_partition``, made on
the workers, persisted before the clock starts) on ``trip_id`` into as many partitions as it has,
on a 2-worker × 1-thread `LocalCluster` started in ``setup`` with its workers' sizeof set to
the case's sizeof mode: ``sampled`` (the default) or ``deep`` (the exact size that lagged the
2016 workers). Timed is ``shuffle(...).map_partitions(len)``, which touches every output
partition and gathers only their lengths.

- ``track_overhead_ratio``: shuffle wall time ÷ one pandas process hash-partitioning the same
  frame in memory into the same number of partitions (DESIGN.md), the baseline measured once
  per frame in ``setup_cache``;
- ``track_throughput``: the frame's in-memory size (pandas, deep) ÷ shuffle wall time;
- ``track_worker_peak_ratio``: the workers' summed peak RSS during the shuffle, less their
  RSS before the data was made (after a warm-up), ÷ the frame's size (input and output both
  live at the peak, so 2 is the floor for a copying shuffle);
- ``peakmem_shuffle``: asv's peak RSS of this (client) process over the shuffle: the client
  holds none of the data, only the graph and the lengths.

Setup runs the shuffle once before the measured run, so figures are hot (the first shuffle
in fresh worker processes also pays for first-touch memory). Cases that an implementation
cannot run yet (``p2p``) raise NotImplementedError in setup, which asv reports as skipped.
To keep ``make test``'s ``asv run --quick`` short, it runs 1M rows at 32 partitions only
(both implementations, both column sets, both sizeof modes: the seed's comparison);
set ``TASKBENCH_ASV_FULL=1`` for the whole grid, 10M rows included (those take minutes each).
"""

from __future__ import annotations

import os
import time

import pandas as pd
from taskbench.comparisons.bench import frames
from taskbench.comparisons.bench.memory import peak_rss_bytes, reset_peak_rss, rss_bytes
from taskbench.comparisons.bench.shuffle import pandas_baseline
from taskbench.engine.client import Client
from taskbench.engine.cluster import LocalCluster
from taskbench.engine.dataframe import from_map, from_pandas

FULL = os.environ.get("TASKBENCH_ASV_FULL", "") not in ("", "0")
ROWS = [1_000_000, 10_000_000] if FULL else [1_000_000]
PARTITIONS = [8, 32, 128]
METHODS = ["tasks", "p2p"]
SIZEOF = ["sampled", "deep"]
ON = "trip_id"


def _skipped(partitions: int, columns: str, sizeof: str) -> str | None:
    """Why a case is left out of the short (non-FULL) grid, or None if it runs."""
    if FULL:
        return None
    if partitions != 32:
        return "the short grid runs 32 partitions only (TASKBENCH_ASV_FULL=1 for all)"
    return None


def _runnable(method: str, partitions: int, columns: str, sizeof: str) -> None:
    """Raise NotImplementedError (asv: skipped) for a case that is not run here."""
    from_pandas(frames.taxi_partition(0, 2, "numeric"), 1).shuffle(ON, 1, method=method)
    reason = _skipped(partitions, columns, sizeof)
    if reason:
        raise NotImplementedError(reason)


class Shuffle:
    params = [ROWS, PARTITIONS, METHODS, list(frames.COLUMN_SETS), SIZEOF]
    param_names = ["rows", "partitions", "implementation", "columns", "sizeof"]
    timeout = 1800
    number = 1
    repeat = 1

    def setup_cache(self) -> dict:
        """Per frame (rows, partitions, columns): its size and the pandas baseline seconds."""
        out = {}
        for rows in ROWS:
            for nparts in PARTITIONS:
                for columns in frames.COLUMN_SETS:
                    if _skipped(nparts, columns, "sampled"):
                        continue
                    df = frames.taxi_frame(rows, nparts, columns)
                    base = pandas_baseline(df, ON, nparts, repeats=3)
                    out[(rows, nparts, columns)] = {
                        "bytes": frames.frame_bytes(df),
                        "baseline_seconds": base["seconds"],
                    }
                    del df
        return out

    def setup(self, cache, rows, partitions, implementation, columns, sizeof):
        _runnable(implementation, partitions, columns, sizeof)
        self.data = cache[(rows, partitions, columns)]
        self.cluster = LocalCluster(2, 1, sizeof=sizeof).start()
        self.client = Client(self.cluster)
        meta = frames.taxi_partition(0, 0, columns)
        warm = from_map(frames.taxi_item, [(0, 1000), (1, 1000)], meta=meta, column_set=columns)
        warm.shuffle(ON, 2, method=implementation).map_partitions(len).compute()
        self.pids = [p.pid for p in self.cluster.worker_processes]
        self.idle = rss_bytes(*self.pids)
        items = list(enumerate(frames.partition_rows(rows, partitions)))
        self.frame = from_map(frames.taxi_item, items, meta=meta, column_set=columns).persist()
        if self.frame.length().compute() != rows:
            raise RuntimeError("the workers made the wrong number of rows")
        self.rows = rows
        self.partitions = partitions
        self.method = implementation
        self._shuffle()  # warm: the first shuffle also pays for first-touch memory

    def teardown(self, *params):
        if hasattr(self, "client"):
            self.client.close()
        if hasattr(self, "cluster"):
            self.cluster.close()

    def _shuffle(self) -> float:
        t0 = time.perf_counter()
        lengths = self.frame.shuffle(ON, self.partitions, method=self.method)
        lengths = lengths.map_partitions(len).compute()
        seconds = time.perf_counter() - t0
        if int(pd.Series(lengths).sum()) != self.rows:
            raise RuntimeError("the shuffle lost or duplicated rows")
        return seconds

    def track_overhead_ratio(self, *params):
        return self._shuffle() / self.data["baseline_seconds"]

    track_overhead_ratio.unit = "ratio"

    def track_throughput(self, *params):
        return self.data["bytes"] / self._shuffle() / 1e6

    track_throughput.unit = "MB/s"

    def track_worker_peak_ratio(self, *params):
        reset_peak_rss(*self.pids)
        self._shuffle()
        peak = peak_rss_bytes(*self.pids)
        if peak is None or self.idle is None:
            raise NotImplementedError("peak RSS is not readable on this platform")
        return (peak - self.idle) / self.data["bytes"]

    track_worker_peak_ratio.unit = "ratio"

    def peakmem_shuffle(self, *params):
        self._shuffle()
