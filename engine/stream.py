"""Task records and the metrics DESIGN.md defines over them (lag, makespan, idle, balance).

Times are seconds since the epoch (floats, µs resolution); lags are reported in µs.
Plotting lives in `engine.plot`, so importing this module never pulls in matplotlib.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from taskbench.engine.graph import key_prefix, key_str
from taskbench.engine.worker_state import WorkerRecord

TaskStatus = Literal["memory", "erred"]

#: Field order of a wire row, `TaskStream.to_rows`; transfers nest as `TRANSFER_FIELDS` lists.
ROW_FIELDS = (
    "key",
    "prefix",
    "worker",
    "thread",
    "ready",
    "start",
    "stop",
    "nbytes",
    "sizeof_seconds",
    "status",
    "transfers",
    "placed_by",
)
TRANSFER_FIELDS = ("key", "source", "nbytes", "start", "stop")

#: Chrome-trace thread id of each worker's "transfers" row (kept clear of thread indices).
TRANSFER_TID = 1_000_000


@dataclass(slots=True)
class Transfer:
    """One dependency fetched from a peer for a task."""

    key: str
    source: str
    nbytes: int
    start: float
    stop: float


@dataclass(slots=True)
class TaskRecord:
    """One task run on one worker thread; `ready` is None when the engine does not report it.

    `placed_by` names the scheduler's rule that put the task on its worker (``policy``,
    ``eager``, ``steal``, ``restriction``; see `engine.state`); None for peers' streams and
    records written before it existed.
    """

    key: str
    prefix: str
    worker: str
    thread: int
    ready: float | None
    start: float
    stop: float
    nbytes: int
    sizeof_seconds: float
    status: TaskStatus
    transfers: list[Transfer] = field(default_factory=list)
    placed_by: str | None = None

    @classmethod
    def from_worker(
        cls,
        r: WorkerRecord,
        worker: str,
        prefix: str,
        status: TaskStatus,
        placed_by: str | None = None,
    ) -> TaskRecord:
        """The stream's record of what ``worker`` reported; the key becomes its string."""
        return cls(key_str(r.key), prefix, worker, r.thread, r.ready, r.start, r.stop, r.nbytes,
                   r.sizeof_seconds, status, [Transfer(*t) for t in r.transfers or ()],
                   placed_by)  # fmt: skip


class RecordBuffer:
    """A bounded, columnar store of task records: about 60 bytes a record.

    Records keep their index for life (``count`` is how many were ever appended); when
    more than ``capacity`` are held, the oldest batches are dropped whole.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.count = 0
        self._held = 0
        self._chunks: deque[tuple] = deque()

    @property
    def first(self) -> int:
        return self.count - self._held

    def append(
        self,
        worker: str,
        status: str,
        prefixes: list[str],
        rows: Sequence[WorkerRecord],
        placed_by: Sequence[str | None] | None = None,
    ) -> None:
        """Records as ``worker`` sent them (plain tuples off the wire will do), with the rule
        that placed each task, where the scheduler knows it."""
        if not rows:
            return
        numbers = np.array([r[1:7] for r in rows], dtype=np.float64)  # thread .. sizeof_seconds
        transfers = {i: r[7] for i, r in enumerate(rows) if r[7]}
        keys = [r[0] for r in rows]
        placed = list(placed_by) if placed_by is not None else [None] * len(rows)
        chunk = (self.count, worker, status, keys, prefixes, numbers, transfers, placed)
        self._chunks.append(chunk)
        self.count += len(rows)
        self._held += len(rows)
        while self._held > self.capacity and len(self._chunks) > 1:
            self._held -= len(self._chunks.popleft()[3])

    def rows(self, start: int = 0) -> list[tuple]:
        """Wire rows (``ROW_FIELDS``) of every held record with index ≥ ``start``."""
        out = []
        for first, worker, status, keys, prefixes, numbers, transfers, placed in self._chunks:
            if first + len(keys) <= start:
                continue
            for i in range(max(start - first, 0), len(keys)):
                thread, ready, begin, stop, nbytes, sizeof_s = numbers[i].tolist()
                out.append(
                    (key_str(keys[i]), prefixes[i], worker, int(thread), ready, begin, stop,
                     int(nbytes), sizeof_s, status, transfers.get(i, ()), placed[i])
                )  # fmt: skip
        return out


class TaskStream:
    """The records of one run, with the measured quantities of DESIGN.md.

    Inter-task lag: per (worker, thread), records sorted by start; for consecutive tasks
    a, b the lag is `b.start - max(a.stop, b.ready)`, i.e. the gap counted only while b was
    runnable (queued) on the worker; gaps with nothing queued are idle time, not lag. When
    `b.ready` is None (peers' streams, where backed-up submission keeps work queued) the
    lag is `b.start - a.stop`. Negative lags (clock jitter) are clamped to 0. A record with
    `ready > start` is impossible: its lag is clamped the same way and it is counted in
    `clock_anomalies` instead of raising.
    """

    __slots__ = ("meta", "records")

    def __init__(self, records: Iterable[TaskRecord] = (), meta: dict[str, Any] | None = None):
        self.records: list[TaskRecord] = list(records)
        self.meta: dict[str, Any] = dict(meta or {})

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[TaskRecord]:
        return iter(self.records)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskStream):
            return NotImplemented
        return self.records == other.records and self.meta == other.meta

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TaskStream({len(self.records)} records, meta={self.meta!r})"

    def extend(self, records: Iterable[TaskRecord]) -> None:
        """Append records, e.g. when merging the streams of several workers."""
        self.records.extend(records)

    # ---- serialisation ------------------------------------------------------------------

    def to_rows(self) -> list[tuple]:
        """Compact msgpack-able rows in `ROW_FIELDS` order, transfers as nested lists."""
        return [
            (
                r.key,
                r.prefix,
                r.worker,
                r.thread,
                r.ready,
                r.start,
                r.stop,
                r.nbytes,
                r.sizeof_seconds,
                r.status,
                [[t.key, t.source, t.nbytes, t.start, t.stop] for t in r.transfers],
                r.placed_by,
            )
            for r in self.records
        ]

    @classmethod
    def from_rows(
        cls, rows: Iterable[Sequence[Any]], meta: dict[str, Any] | None = None
    ) -> TaskStream:
        """Rebuild a stream from `to_rows` output (tuples or the lists msgpack gives back);
        rows without the trailing `placed_by` (older peers) read it as None."""
        records = [
            TaskRecord(
                *row[:10],
                [Transfer(*t) for t in row[10]],
                row[11] if len(row) > 11 else None,
            )
            for row in rows
        ]
        return cls(records, meta)

    def to_jsonl(self, path: str | os.PathLike[str]) -> None:
        """Write one JSON object per record, preceded by a `{"meta": {...}}` line if meta is set."""
        with open(path, "w", encoding="utf-8") as f:
            if self.meta:
                f.write(json.dumps({"meta": self.meta}) + "\n")
            for r in self.records:
                obj = {
                    "key": r.key,
                    "prefix": r.prefix,
                    "worker": r.worker,
                    "thread": r.thread,
                    "ready": r.ready,
                    "start": r.start,
                    "stop": r.stop,
                    "nbytes": r.nbytes,
                    "sizeof_seconds": r.sizeof_seconds,
                    "status": r.status,
                    "transfers": [
                        {
                            "key": t.key,
                            "source": t.source,
                            "nbytes": t.nbytes,
                            "start": t.start,
                            "stop": t.stop,
                        }
                        for t in r.transfers
                    ],
                }
                if r.placed_by is not None:
                    obj["placed_by"] = r.placed_by
                f.write(json.dumps(obj) + "\n")

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike[str]) -> TaskStream:
        """Read `to_jsonl` output; blank lines are skipped, a first `meta` line becomes `meta`;
        a record without `placed_by` (written before it existed) reads it as None."""
        records: list[TaskRecord] = []
        meta: dict[str, Any] = {}
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                obj = json.loads(line)
                if "meta" in obj and len(obj) == 1:
                    if records:
                        raise ValueError(f"{path}:{lineno}: meta line after task records")
                    meta = obj["meta"]
                    continue
                transfers = [Transfer(**t) for t in obj.pop("transfers", ())]
                records.append(TaskRecord(**obj, transfers=transfers))
        return cls(records, meta)

    def to_chrome_trace(self, path: str | os.PathLike[str]) -> None:
        """Write Chrome trace-event JSON (Perfetto, chrome://tracing).

        One "X" event per task (pid = worker, tid = thread) and per transfer (tid
        `TRANSFER_TID`, named "transfers"); ts/dur are µs from `origin()`.
        """
        t0 = self.origin()
        events: list[dict[str, Any]] = []
        pids = {w: i for i, w in enumerate(sorted({r.worker for r in self.records}), 1)}
        named: set[tuple[int, int]] = set()

        def name_thread(pid: int, tid: int, name: str) -> None:
            if (pid, tid) not in named:
                named.add((pid, tid))
                events.append(
                    {
                        "name": "thread_name",
                        "ph": "M",
                        "pid": pid,
                        "tid": tid,
                        "args": {"name": name},
                    }
                )
                events.append(
                    {
                        "name": "thread_sort_index",
                        "ph": "M",
                        "pid": pid,
                        "tid": tid,
                        "args": {"sort_index": tid},
                    }
                )

        for worker, pid in pids.items():
            events.append(
                {"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": worker}}
            )
        for r in self.records:
            pid = pids[r.worker]
            name_thread(pid, r.thread, f"thread {r.thread}")
            args: dict[str, Any] = {
                "key": r.key,
                "nbytes": r.nbytes,
                "sizeof_us": round(r.sizeof_seconds * 1e6, 3),
                "status": r.status,
            }
            if r.ready is not None:
                args["queued_us"] = round((r.start - r.ready) * 1e6, 3)
            events.append(
                {
                    "name": r.prefix,
                    "cat": r.status,
                    "ph": "X",
                    "pid": pid,
                    "tid": r.thread,
                    "ts": round((r.start - t0) * 1e6, 3),
                    "dur": round((r.stop - r.start) * 1e6, 3),
                    "args": args,
                }
            )
            for t in r.transfers:
                name_thread(pid, TRANSFER_TID, "transfers")
                events.append(
                    {
                        "name": "transfer",
                        "cat": "transfer",
                        "ph": "X",
                        "pid": pid,
                        "tid": TRANSFER_TID,
                        "ts": round((t.start - t0) * 1e6, 3),
                        "dur": round((t.stop - t.start) * 1e6, 3),
                        "args": {
                            "key": t.key,
                            "source": t.source,
                            "nbytes": t.nbytes,
                            "for": r.key,
                        },
                    }
                )
        trace = {"traceEvents": events, "displayTimeUnit": "ms", "otherData": self.meta}
        with open(path, "w", encoding="utf-8") as f:
            f.write(json.dumps(trace))  # json.dump streams through the slow pure-Python encoder

    # ---- metrics ------------------------------------------------------------------------

    def origin(self) -> float:
        """Earliest start of any task or transfer (the zero of traces and plots); 0.0 if empty."""
        starts = [r.start for r in self.records]
        starts.extend(t.start for r in self.records for t in r.transfers)
        return min(starts, default=0.0)

    def by_thread(self) -> dict[tuple[str, int], list[TaskRecord]]:
        """Records grouped by (worker, thread), each list sorted by start."""
        groups: dict[tuple[str, int], list[TaskRecord]] = {}
        for r in self.records:
            groups.setdefault((r.worker, r.thread), []).append(r)
        for recs in groups.values():
            recs.sort(key=lambda r: (r.start, r.stop))
        return groups

    def inter_task_lags(self) -> np.ndarray:
        """Inter-task lags in µs (float64), by the policy in the class docstring."""
        n = len(self.records)
        if n < 2:
            return np.empty(0)
        index: dict[tuple[str, int], int] = {}
        group = np.fromiter(
            (index.setdefault((r.worker, r.thread), len(index)) for r in self.records),
            dtype=np.int64,
            count=n,
        )
        start = np.fromiter((r.start for r in self.records), dtype=np.float64, count=n)
        stop = np.fromiter((r.stop for r in self.records), dtype=np.float64, count=n)
        ready = np.fromiter(
            (np.nan if r.ready is None else r.ready for r in self.records),
            dtype=np.float64,
            count=n,
        )
        order = np.lexsort((stop, start, group))
        group, start, stop, ready = group[order], start[order], stop[order], ready[order]
        same = group[1:] == group[:-1]
        # fmax ignores NaN, so an unknown `ready` falls back to the previous stop.
        lags = start[1:] - np.fmax(stop[:-1], ready[1:])
        return np.maximum(lags[same], 0.0) * 1e6

    @property
    def clock_anomalies(self) -> int:
        """Records whose `ready` is later than their `start` (impossible; their lag is clamped)."""
        return sum(1 for r in self.records if r.ready is not None and r.ready > r.start)

    def lag_percentiles(self, ps: Sequence[float] = (50, 90, 99)) -> dict[str, float | None]:
        """`{"p50": .., "p90": .., "p99": ..}` in µs; values are None when there is no lag."""
        lags = self.inter_task_lags()
        names = [f"p{p:g}" for p in ps]
        if lags.size == 0:
            return dict.fromkeys(names)
        values = np.percentile(lags, list(ps))
        return {name: float(v) for name, v in zip(names, values, strict=True)}

    def placement_counts(self) -> dict[str, int]:
        """Tasks per placement rule (``placed_by``), most first; empty when none is known."""
        counts: dict[str, int] = {}
        for r in self.records:
            if r.placed_by is not None:
                counts[r.placed_by] = counts.get(r.placed_by, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def makespan(self) -> float:
        """Max stop - min start over tasks, in seconds; 0.0 for an empty stream."""
        if not self.records:
            return 0.0
        return max(r.stop for r in self.records) - min(r.start for r in self.records)

    def busy_seconds(self) -> float:
        """Σ (stop - start) over tasks."""
        return sum(r.stop - r.start for r in self.records)

    def idle_fraction(self, threads: int) -> float:
        """1 - Σ busy / (threads * makespan); raises ValueError on an empty stream."""
        span = self._nonempty_makespan(threads)
        return 1.0 - self.busy_seconds() / (threads * span)

    def per_task_overhead(self, wall: float, threads: int) -> float:
        """(wall - Σ compute / threads) / tasks, in seconds; raises ValueError if empty."""
        if threads <= 0:
            raise ValueError(f"threads must be positive, got {threads}")
        if not self.records:
            raise ValueError("per-task overhead of an empty task stream")
        return (wall - self.busy_seconds() / threads) / len(self.records)

    def makespan_ratio(self, threads: int, critical_path: float | None = None) -> float:
        """Load-balance quality: makespan / max(Σ durations / threads, critical path); 1.0 is
        perfect. Raises ValueError on an empty stream or a zero lower bound."""
        span = self._nonempty_makespan(threads)
        bound = max(self.busy_seconds() / threads, critical_path or 0.0)
        if bound <= 0:
            raise ValueError("makespan ratio with a zero lower bound")
        return span / bound

    def _nonempty_makespan(self, threads: int) -> float:
        if threads <= 0:
            raise ValueError(f"threads must be positive, got {threads}")
        span = self.makespan()
        if span <= 0:
            raise ValueError("metric undefined: task stream is empty or has zero makespan")
        return span


# ---- peers ------------------------------------------------------------------------------


def from_dask_task_stream(records: list[dict[str, Any]]) -> TaskStream:
    """Convert `distributed.Client.get_task_stream()` output into a TaskStream.

    The "compute" start/stop becomes the task's; "transfer" entries become Transfers
    (dask reports one per gather from a peer, without key or size, so those are "" and 0);
    other actions (disk, deserialize) are dropped, as are records that never computed.
    Dask thread ids are mapped to 0..n-1 per worker in order of first start; `ready` is
    None, so lags are measured stop to start.
    """
    rows = []
    for rec in records:
        compute = [s for s in rec.get("startstops", ()) if s.get("action") == "compute"]
        if not compute:
            continue
        rows.append((compute[-1]["start"], compute[-1]["stop"], rec))
    rows.sort(key=lambda row: row[0])

    threads: dict[tuple[str, Any], int] = {}
    per_worker: dict[str, int] = {}
    out: list[TaskRecord] = []
    for start, stop, rec in rows:
        worker = str(rec["worker"])
        ident = (worker, rec.get("thread"))
        if ident not in threads:
            threads[ident] = per_worker.get(worker, 0)
            per_worker[worker] = threads[ident] + 1
        key = rec["key"]
        transfers = [
            Transfer("", str(s.get("source", "")), 0, float(s["start"]), float(s["stop"]))
            for s in rec.get("startstops", ())
            if s.get("action") == "transfer"
        ]
        out.append(
            TaskRecord(
                key=key if isinstance(key, str) else str(key),
                prefix=key_prefix(key),
                worker=worker,
                thread=threads[ident],
                ready=None,
                start=float(start),
                stop=float(stop),
                nbytes=int(rec.get("nbytes") or 0),
                sizeof_seconds=0.0,
                status="memory" if rec.get("status", "OK") == "OK" else "erred",
                transfers=transfers,
            )
        )
    return TaskStream(out, meta={"engine": "dask"})
