"""A deterministic discrete-event simulation of a cluster, driving the real scheduler state.

The real ``SchedulerState`` and policies run against virtual workers on a virtual clock:
a heap of timed events, ordered by (time, sequence), so a seed gives identical records.
Virtual workers follow the real worker's rules — a ready heap by priority, dependents of
local tasks unblocked in place, inputs fetched from the peer that holds them over a
per-worker inbound link (latency + bytes / bandwidth, one transfer at a time), steal
requests refused once a task has started — and emit the same task records, so every
metric and picture works on simulated runs too.

Costs modelled: message latency each way, a fixed per-task overhead on the worker,
nominal task durations × the worker's slowdown, and transfers. Scheduler CPU is not
modelled (the state runs in zero virtual time).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taskbench.engine.graph import KIND_PLAIN, key_prefix, key_str, order
from taskbench.engine.state import SchedulerState
from taskbench.engine.stream import TaskRecord, TaskStream, Transfer
from taskbench.engine.workloads import Workload

CLIENT = "sim-client"


@dataclass
class SimResult:
    makespan: float
    stream: TaskStream
    steals: int
    lower_bound: float

    @property
    def makespan_ratio(self) -> float:
        return self.makespan / self.lower_bound

    def idle_fraction(self, threads: int) -> float:
        return self.stream.idle_fraction(threads)


class _Task:
    __slots__ = ("deps", "key", "missing", "priority", "ready", "report", "state", "transfers")

    def __init__(self, key: Any, priority: int, deps: list, report: bool) -> None:
        self.key = key
        self.priority = priority
        self.deps = deps
        self.report = report
        self.missing = 0
        self.ready = 0.0
        self.state = "waiting"
        self.transfers: list[Transfer] = []


class _Worker:
    def __init__(self, index: int, nthreads: int, speed: float) -> None:
        self.index = index
        self.address = f"sim://worker-{index}"
        self.nthreads = nthreads
        self.free_threads = list(range(nthreads - 1, -1, -1))
        self.slowdown = speed
        self.data: dict[Any, int] = {}
        self.tasks: dict[Any, _Task] = {}
        self.heap: list = []
        self.waiting_local: dict[Any, list[_Task]] = {}
        self.waiting_fetch: dict[Any, list[_Task]] = {}
        self.link_free_at = 0.0
        self.alive = True


class Simulation:
    """Run ``workload`` on ``n_workers`` × ``threads`` virtual workers."""

    def __init__(
        self,
        workload: Workload,
        n_workers: int,
        threads: int = 1,
        *,
        placement: str = "locality",
        stealing: bool = True,
        balance_interval: float = 0.1,
        bandwidth: float = 500e6,
        latency: float = 150e-6,
        task_overhead: float = 30e-6,
        seed: int = 0,
        validate: bool = False,
        leave_at: dict[int, float] | None = None,
    ) -> None:
        self.workload = workload
        self.n_workers = n_workers
        self.threads = threads
        self.balance_interval = balance_interval
        self.bandwidth = bandwidth
        self.latency = latency
        self.task_overhead = task_overhead
        self.leave_at = leave_at or {}
        self.state = SchedulerState(
            validate=validate, placement=placement, stealing=stealing, seed=seed, log_length=1000
        )
        self.now = 0.0
        self._events: list = []
        self._seq = itertools.count()
        self._workers: dict[str, _Worker] = {}
        self._stimulus = itertools.count()
        self._remaining = set(workload.keys)
        self.records: list[TaskRecord] = []
        self.steals = 0

    # ------------------------------------------------------------ event loop

    def _at(self, t: float, fn: Callable, *args: Any) -> None:
        heapq.heappush(self._events, (t, next(self._seq), fn, args))

    def _sid(self, what: str) -> str:
        return f"{what}-{next(self._stimulus)}"

    def run(self, max_events: int = 50_000_000) -> SimResult:
        wl = self.workload
        for i in range(self.n_workers):
            self._at(wl.join_at.get(i, 0.0), self._join, i)
        for i, t in self.leave_at.items():
            self._at(t, self._leave, i)
        self._at(0.0, self._submit)
        self._at(self.balance_interval, self._balance)
        for _ in range(max_events):
            if not self._events or not self._remaining:
                break
            t, _, fn, args = heapq.heappop(self._events)
            self.now = t
            fn(*args)
        if self._remaining:
            raise RuntimeError(f"simulation stopped with {len(self._remaining)} keys not done")
        stream = TaskStream(self.records, meta={"engine": "sim", "workload": wl.name})
        return SimResult(
            makespan=stream.makespan(),
            stream=stream,
            steals=self.steals,
            lower_bound=wl.lower_bound(self.n_workers, self.threads),
        )

    # ------------------------------------------------------------ scheduler side

    def _route(self, msgs: tuple[dict, dict]) -> None:
        worker_msgs, client_msgs = msgs
        for address, batch in worker_msgs.items():
            w = self._workers[address]
            for msg in batch:
                self._at(self.now + self.latency, self._deliver, w, msg)
        for msg in client_msgs.get(CLIENT, ()):
            if msg["op"] == "in-memory":
                self._remaining.difference_update(msg["keys"])
            elif msg["op"] == "task-erred":
                raise RuntimeError(f"simulated task {msg['key']!r} erred: {msg.get('text')}")

    def _submit(self) -> None:
        wl = self.workload
        deps = wl.dependencies
        prio = order(deps)
        tasks = {k: (deps[k], None, KIND_PLAIN, key_prefix(k)) for k in wl.graph}
        self._route(self.state.update_graph(CLIENT, tasks, wl.keys, prio, stimulus_id="graph"))

    def _join(self, index: int) -> None:
        w = _Worker(index, self.threads, self.workload.slowdown.get(index, 1.0))
        self._workers[w.address] = w
        self._route(self.state.add_worker(w.address, self.threads, stimulus_id=self._sid("join")))

    def _leave(self, index: int) -> None:
        w = self._workers[f"sim://worker-{index}"]
        w.alive = False
        self._route(self.state.remove_worker(w.address, stimulus_id=self._sid("leave")))

    def _balance(self) -> None:
        if self._remaining:
            self._route(self.state.balance(self.now, stimulus_id=self._sid("balance")))
            self._at(self.now + self.balance_interval, self._balance)

    def _to_scheduler(self, w: _Worker, msg: dict) -> None:
        self._at(self.now + self.latency, self._receive, w, msg)

    def _receive(self, w: _Worker, msg: dict) -> None:
        if not w.alive:
            return
        state, op = self.state, msg["op"]
        if op == "task-finished":
            r = msg["record"]
            done = [(msg["key"], r.nbytes, r.stop - r.start)]
            self._route(state.tasks_finished(w.address, done, stimulus_id=self._sid("done")))
        elif op == "task-started":
            started = [(msg["key"], msg["start"])]
            self._route(state.task_started(w.address, started, stimulus_id=self._sid("start")))
        elif op == "steal-response":
            if msg["stolen"]:
                self.steals += 1
            self._route(
                state.steal_response(w.address, msg["key"], msg["stolen"],
                                     stimulus_id=self._sid("steal"))
            )  # fmt: skip
        elif op == "add-replicas":
            self._route(state.add_replicas(w.address, msg["keys"], stimulus_id=self._sid("rep")))

    # ------------------------------------------------------------ worker side

    def _deliver(self, w: _Worker, msg: dict) -> None:
        if not w.alive:
            return
        op = msg["op"]
        if op == "compute":
            for key, priority, _kind, deps, report in msg["tasks"]:
                self._new_task(w, key, priority, deps, report)
            self._start_tasks(w)
        elif op == "free":
            for key in msg["keys"]:
                w.data.pop(key, None)
                t = w.tasks.pop(key, None)
                if t is not None:
                    t.state = "cancelled"
        elif op == "steal-request":
            for key in msg["keys"]:
                t = w.tasks.get(key)
                ok = (
                    t is not None
                    and t.state in ("waiting", "ready")
                    and not w.waiting_local.get(key)
                )
                if ok:
                    del w.tasks[key]
                    t.state = "cancelled"
                self._to_scheduler(w, {"op": "steal-response", "key": key, "stolen": ok})

    def _new_task(self, w: _Worker, key: Any, priority: int, deps: tuple, report: bool) -> None:
        old = w.tasks.get(key)
        if old is not None:
            if old.state == "cancelled":
                old.state = "executing"
            return
        t = _Task(key, priority, [d[0] for d in deps], report)
        for dep_key, nbytes, holders in deps:
            if dep_key in w.data:
                continue
            t.missing += 1
            if dep_key in w.tasks:
                w.waiting_local.setdefault(dep_key, []).append(t)
            elif dep_key in w.waiting_fetch:
                w.waiting_fetch[dep_key].append(t)
            else:
                w.waiting_fetch[dep_key] = [t]
                source = self._workers[holders[0]]
                start = max(self.now, w.link_free_at)
                stop = start + self.latency + nbytes / self.bandwidth
                w.link_free_at = stop - self.latency
                self._at(stop, self._fetched, w, dep_key, nbytes, source.address, start)
        w.tasks[key] = t
        if t.missing == 0:
            self._make_ready(w, t)

    def _make_ready(self, w: _Worker, t: _Task) -> None:
        t.state = "ready"
        t.ready = self.now
        heapq.heappush(w.heap, (t.priority, next(self._seq), t))

    def _fetched(self, w: _Worker, key: Any, nbytes: int, source: str, start: float) -> None:
        if not w.alive:
            return
        w.data[key] = nbytes
        for t in w.waiting_fetch.pop(key, []):
            if t.state != "waiting":
                continue
            t.transfers.append(Transfer(key_str(key), source, nbytes, start, self.now))
            t.missing -= 1
            if t.missing == 0:
                self._make_ready(w, t)
        self._to_scheduler(w, {"op": "add-replicas", "keys": [(key, nbytes)]})
        self._start_tasks(w)

    def _start_tasks(self, w: _Worker) -> None:
        wl = self.workload
        while w.free_threads and w.heap:
            t = heapq.heappop(w.heap)[2]
            if t.state != "ready":
                continue
            t.state = "executing"
            thread = w.free_threads.pop()
            start = self.now + self.task_overhead
            if t.report:
                self._at(start, self._to_scheduler, w,
                         {"op": "task-started", "key": t.key, "start": start})  # fmt: skip
            stop = start + wl.durations[t.key] * w.slowdown
            self._at(stop, self._finish, w, t, thread, start)

    def _finish(self, w: _Worker, t: _Task, thread: int, start: float) -> None:
        if not w.alive:
            return
        w.free_threads.append(thread)
        if t.state == "executing":
            key = t.key
            nbytes = self.workload.nbytes[key]
            del w.tasks[key]
            w.data[key] = nbytes
            record = TaskRecord(key_str(key), key_prefix(key), w.address, thread, t.ready,
                                start, self.now, nbytes, 0.0, "memory", t.transfers)  # fmt: skip
            self.records.append(record)
            for d in w.waiting_local.pop(key, []):
                d.missing -= 1
                if d.missing == 0 and d.state == "waiting":
                    self._make_ready(w, d)
            self._to_scheduler(w, {"op": "task-finished", "key": key, "record": record})
        self._start_tasks(w)


def simulate(workload: Workload, n_workers: int, threads: int = 1, **options: Any) -> SimResult:
    """Run one simulation (see ``Simulation`` for the options)."""
    return Simulation(workload, n_workers, threads, **options).run()
