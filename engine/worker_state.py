"""A worker's task bookkeeping as a pure state: events in, work and messages out.

No I/O, no threads, no clock: timestamps come in with the events, and the driver holds
whatever lock guards it. ``engine.worker`` drives it with threads and sockets,
``engine.sim`` drives it for its virtual workers, so these rules are written once:

- A task is ``waiting`` for inputs, ``ready`` in the heap, ``executing`` on a thread, or
  ``cancelled``. Threads pop the ready heap in the scheduler's priority order, then in
  order of arrival.
- An input is held here (``data``), made by a task here (``waiting_local``: the task's
  dependents are unblocked in place when it finishes), or fetched from the first holder
  the scheduler names (``fetch_queue`` per peer, then ``in_flight``). A fetch that comes
  back without the key cancels its waiters and reports ``missing-data``.
- A steal request is granted for a task that has not started and that no task here
  waits on; every other is refused.
- A task freed while it runs keeps its thread, cancelled; its result is dropped, unless
  it is asked for again before it returns. A task asked for while its result is here is
  reported done at once (thread -1).
- Messages to the scheduler collect in ``started``, ``records`` and ``messages`` until
  the driver drains them, so completions go out in batches.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from heapq import heappop, heappush
from typing import Any, Literal, NamedTuple

from taskbench.engine.graph import key_str

Key = Any
LocalTaskStateName = Literal["waiting", "ready", "executing", "cancelled"]

_new = tuple.__new__  # builds a WorkerRecord at a third of the cost of calling the class


class WorkerRecord(NamedTuple):
    """One task run as its worker reports it, and the wire row of ``task-finished``.

    The receiver knows the rest of a ``TaskRecord``: the worker (the sender), the prefix
    and the status. ``key`` is the task's own key; ``thread`` is -1 for a result already
    held (nothing ran); ``transfers`` holds ``TRANSFER_FIELDS`` rows, or None.
    """

    key: Key
    thread: int
    ready: float
    start: float
    stop: float
    nbytes: int
    sizeof_seconds: float
    transfers: list[tuple] | None


class LocalTask:
    """One task as the worker that runs it sees it."""

    __slots__ = (
        "deps",
        "key",
        "kind",
        "missing",
        "priority",
        "ready",
        "report_start",
        "run",
        "state",
        "transfers",
    )

    def __init__(self, key: Key, priority: int, kind: int, run: object, report: bool) -> None:
        self.key = key
        self.priority = priority
        self.kind = kind
        self.run = run
        self.report_start = report  # the scheduler wants to hear when it starts
        self.deps: list[Key] = []
        self.missing = 0  # inputs not yet held here
        self.ready = 0.0  # when the last input arrived
        self.state: LocalTaskStateName = "waiting"
        self.transfers: list[tuple] | None = None  # TRANSFER_FIELDS rows

    def __repr__(self) -> str:
        return f"<LocalTask {self.key!r} {self.state}>"


class WorkerTasks:
    """All the tasks of one worker: the ready heap, what runs, what waits, what it holds.

    Named for what it holds, apart from ``engine.state.WorkerState`` (the scheduler's view
    of a worker). ``sizeof`` measures a held value (the simulator holds sizes).
    """

    def __init__(self, sizeof: Callable[[Any], int]) -> None:
        self.sizeof = sizeof
        self.data: dict[Key, Any] = {}
        self.tasks: dict[Key, LocalTask] = {}
        self.heap: list[tuple[int, int, LocalTask]] = []
        self.waiting_local: dict[Key, list[LocalTask]] = {}
        self.waiting_fetch: dict[Key, list[LocalTask]] = {}
        self.fetch_queue: dict[str, dict[Key, int]] = {}  # peer -> {key: nbytes}, not asked yet
        self.in_flight: dict[Key, str] = {}
        self.started: list[tuple[Key, float]] = []
        self.records: list[WorkerRecord] = []
        self.messages: list[dict[str, Any]] = []
        self._seq = itertools.count()

    @property
    def executing(self) -> list[LocalTask]:
        """The tasks running on a thread (kept as a state, not a set: no cost per task)."""
        return [t for t in self.tasks.values() if t.state in ("executing", "cancelled")]

    # ------------------------------------------------------------ events

    def compute(self, tasks: Sequence[tuple], runs: Iterable[object] | None, now: float) -> bool:
        """A ``compute`` message: each task ready now, waiting on one here, or on fetches.

        Returns whether fetches were queued.
        """
        data = self.data
        local = self.tasks
        fetch_needed = False
        if runs is None:
            runs = itertools.repeat(None, len(tasks))
        for (key, priority, kind, deps, report_start), run in zip(tasks, runs, strict=True):
            old = local.get(key)
            if old is not None:
                if old.state == "cancelled":
                    old.state = "executing"  # freed, then asked again while it runs
                continue
            if key in data:
                self.records.append(
                    _new(WorkerRecord, (key, -1, 0.0, 0.0, 0.0, self.sizeof(data[key]), 0.0, None))
                )
                continue
            t = LocalTask(key, priority, kind, run, report_start)
            missing = 0
            for dep_key, nbytes, holders in deps:
                t.deps.append(dep_key)
                if dep_key in data:
                    continue
                missing += 1
                if dep_key in local:
                    self.waiting_local.setdefault(dep_key, []).append(t)
                elif holders:
                    waiters = self.waiting_fetch.get(dep_key)
                    if waiters is None:
                        self.waiting_fetch[dep_key] = [t]
                        self.fetch_queue.setdefault(holders[0], {})[dep_key] = nbytes
                        fetch_needed = True
                    else:
                        waiters.append(t)
                else:
                    self._missing(dep_key, "", key)
                    self._cancel(t)
                    missing = -1
                    break
            if missing < 0:
                continue
            local[key] = t
            t.missing = missing
            if missing == 0:
                t.state = "ready"
                t.ready = now
                heappush(self.heap, (priority, next(self._seq), t))
        return fetch_needed

    def next_ready(self) -> LocalTask | None:
        """A thread is free: the first ready task by priority, now executing; None if none."""
        heap = self.heap
        while heap:
            t = heappop(heap)[2]
            if t.state == "ready":
                t.state = "executing"
                return t
        return None

    def task_started(self, t: LocalTask, start: float) -> None:
        if t.report_start:
            self.started.append((t.key, start))

    def task_finished(
        self,
        t: LocalTask,
        thread: int,
        start: float,
        stop: float,
        result: Any,
        nbytes: int,
        now: float,
    ) -> int:
        """``t`` returned ``result`` (sized by ``now``); returns how many tasks it made ready."""
        key = t.key
        if t.state != "executing":
            if self.tasks.get(key) is t:
                del self.tasks[key]
            return 0
        del self.tasks[key]
        self.data[key] = result
        self.records.append(
            _new(WorkerRecord, (key, thread, t.ready, start, stop, nbytes, now - stop, t.transfers))
        )
        unblocked = self.waiting_local.pop(key, None)
        if not unblocked:
            return 0
        n = 0
        for d in unblocked:
            d.missing -= 1
            if d.missing == 0 and d.state == "waiting":
                d.state = "ready"
                d.ready = now
                heappush(self.heap, (d.priority, next(self._seq), d))
                n += 1
        return n

    def task_erred(
        self, t: LocalTask, thread: int, start: float, stop: float, error: dict[str, Any]
    ) -> None:
        """``t`` raised; ``error`` holds the exception's fields of the ``task-erred`` message."""
        key = t.key
        if t.state != "executing":
            if self.tasks.get(key) is t:
                del self.tasks[key]
            return
        del self.tasks[key]
        record = WorkerRecord(key, thread, t.ready, start, stop, 0, 0.0, t.transfers)
        self.messages.append({"op": "task-erred", "key": key, **error, "record": record})

    def take_fetches(self, peer: str) -> dict[Key, int] | None:
        """The keys queued for ``peer`` (with their sizes), now in flight."""
        keys = self.fetch_queue.pop(peer, None)
        if keys:
            for key in keys:
                self.in_flight[key] = peer
        return keys

    def fetched(
        self,
        peer: str,
        keys: Iterable[Key],
        got: dict[Key, tuple[Any, int]],
        start: float,
        stop: float,
        now: float,
    ) -> dict[str, Any] | None:
        """Keys asked of ``peer`` came back: ``got`` maps each key received to (value, nbytes).

        Returns the ``add-replicas`` message for the scheduler, or None.
        """
        replicas = []
        for key in keys:
            self.in_flight.pop(key, None)
            waiters = self.waiting_fetch.pop(key, ())
            if key not in got:
                for t in waiters:
                    self._missing(key, peer, t.key)
                    if self.tasks.get(t.key) is t:
                        del self.tasks[t.key]
                        self._cancel(t)
                continue
            value, nbytes = got[key]
            self.data[key] = value
            replicas.append((key, nbytes))
            transfer = (key_str(key), peer, nbytes, start, stop)
            for t in waiters:
                if t.state != "waiting":
                    continue
                if t.transfers is None:
                    t.transfers = []
                t.transfers.append(transfer)
                t.missing -= 1
                if t.missing == 0:
                    t.state = "ready"
                    t.ready = now
                    heappush(self.heap, (t.priority, next(self._seq), t))
        return {"op": "add-replicas", "keys": replicas} if replicas else None

    def free(self, keys: Iterable[Key]) -> None:
        """The scheduler no longer needs these results or tasks here."""
        for key in keys:
            self.data.pop(key, None)
            t = self.tasks.get(key)
            if t is None:
                continue
            if t.state == "executing":
                t.state = "cancelled"  # stays in tasks until it returns
            elif t.state != "cancelled":
                del self.tasks[key]
                self._cancel(t)

    def give_up(self, keys: Sequence[Key]) -> dict[str, Any]:
        """A steal request; returns the ``steal-response`` (the rule is the module's)."""
        stolen = []
        for key in keys:
            t = self.tasks.get(key)
            ok = (
                t is not None
                and t.state in ("ready", "waiting")
                and not self.waiting_local.get(key)
            )
            if ok:
                del self.tasks[key]
                self._cancel(t)
            stolen.append(ok)
        return {"op": "steal-response", "keys": keys, "stolen": stolen}

    def reset(self) -> None:
        """The scheduler is gone: forget everything; running tasks finish cancelled."""
        for t in self.tasks.values():
            t.state = "cancelled"
        self.tasks.clear()
        self.data.clear()
        self.heap.clear()
        self.waiting_local.clear()
        self.waiting_fetch.clear()
        self.fetch_queue.clear()
        self.in_flight.clear()
        self.drain()

    def drain(self) -> tuple[list, list, list]:
        """Take the messages collected so far: (started, records, other messages)."""
        out = self.started[:], self.records[:], self.messages[:]
        # drivers may hold on to these lists: empty them in place
        self.started.clear()
        self.records.clear()
        self.messages.clear()
        return out

    # ------------------------------------------------------------ internals

    def _missing(self, dep_key: Key, source: str, task_key: Key) -> None:
        self.messages.append(
            {"op": "missing-data", "key": dep_key, "source": source, "task": task_key}
        )

    def _cancel(self, t: LocalTask) -> None:
        """Cancel ``t``, which is not (or no longer) in ``tasks``, and stop it waiting."""
        t.state = "cancelled"
        for dep in t.deps:
            for table in (self.waiting_local, self.waiting_fetch):
                waiters = table.get(dep)
                if waiters and t in waiters:
                    waiters.remove(t)
                    if not waiters:
                        del table[dep]  # a fetch already queued still lands: a replica

    # ------------------------------------------------------------ invariants

    def validate_state(self) -> None:
        """Check the invariants; raise AssertionError naming the first that fails."""
        data, tasks = self.data, self.tasks
        queued = {entry[2] for entry in self.heap}
        for key, t in tasks.items():
            assert t.key == key, (key, t)
            assert key not in data, f"{t} is both held and a task"
            if t.state == "ready":
                assert t in queued, f"{t} is ready but not in the heap"
                assert t.missing == 0 and all(d in data for d in t.deps), t
            elif t.state == "waiting":
                lacking = [d for d in t.deps if d not in data]
                assert t.missing == len(lacking) > 0, (t, t.missing, lacking)
                for d in lacking:
                    in_local = t in self.waiting_local.get(d, ())
                    in_fetch = t in self.waiting_fetch.get(d, ())
                    assert in_local != in_fetch, f"{t} waits for {d!r} {in_local=} {in_fetch=}"
            else:
                assert t.state in ("executing", "cancelled"), f"{t}: unknown state"
        for key, waiters in self.waiting_local.items():
            assert waiters and key in tasks, f"tasks wait for {key!r}, which is not a task here"
            for t in waiters:
                assert tasks.get(t.key) is t and t.state == "waiting", (key, t)
        queued_keys = {k for keys in self.fetch_queue.values() for k in keys}
        for key, waiters in self.waiting_fetch.items():
            assert waiters and key not in data, key
            assert key in queued_keys or key in self.in_flight, f"nobody fetches {key!r}"
            for t in waiters:
                assert tasks.get(t.key) is t and t.state == "waiting", (key, t)
        for peer, keys in self.fetch_queue.items():
            assert keys, f"empty fetch queue for {peer}"
