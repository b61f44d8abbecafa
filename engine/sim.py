"""A deterministic discrete-event simulation of a cluster, driving the real scheduler state.

The real ``SchedulerState`` and policies run against virtual workers on a virtual clock:
a heap of timed events, ordered by (time, sequence), so a seed gives identical records.
Each virtual worker drives the real worker's rules (``engine.worker_state.WorkerTasks``:
the ready heap, local unblocking, fetches, the steal rule, the records) and adds what the
shell adds: threads, and a per-worker inbound link (latency + bytes / bandwidth, one
transfer at a time). Workers and scheduler exchange the real messages, so every metric
and picture works on simulated runs too.

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

from taskbench.engine.graph import KIND_PLAIN, key_prefix, order
from taskbench.engine.options import DEFAULTS, EngineOptions
from taskbench.engine.state import SchedulerState
from taskbench.engine.stream import TaskRecord, TaskStream
from taskbench.engine.worker_state import LocalTask, WorkerTasks
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


class _Worker:
    """A virtual worker: the real ``WorkerTasks``, holding sizes, plus threads and a link."""

    def __init__(self, index: int, nthreads: int, speed: float) -> None:
        self.index = index
        self.address = f"sim://worker-{index}"
        self.nthreads = nthreads
        self.free_threads = list(range(nthreads - 1, -1, -1))
        self.slowdown = speed
        self.state = WorkerTasks(_held_size)
        self.link_free_at = 0.0
        self.alive = True


def _held_size(nbytes: int) -> int:
    return nbytes


class Simulation:
    """Run ``workload`` on ``n_workers`` × ``threads`` virtual workers."""

    def __init__(
        self,
        workload: Workload,
        n_workers: int,
        threads: int = 1,
        *,
        options: EngineOptions = DEFAULTS,
        bandwidth: float = 500e6,
        latency: float = 150e-6,
        task_overhead: float = 30e-6,
        leave_at: dict[int, float] | None = None,
    ) -> None:
        self.workload = workload
        self.n_workers = n_workers
        self.threads = threads
        self.balance_interval = options.balance_interval
        self.bandwidth = bandwidth
        self.latency = latency
        self.task_overhead = task_overhead
        self.leave_at = leave_at or {}
        self.state = SchedulerState(options, log_length=1000)
        self.validate = options.validate
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
            done = [(r.key, r.nbytes, r.stop - r.start) for r in msg["records"]]
            self._route(state.tasks_finished(w.address, done, stimulus_id=self._sid("done")))
        elif op == "task-started":
            self._route(state.task_started(w.address, msg["tasks"], stimulus_id=self._sid("start")))
        elif op == "steal-response":
            for key, stolen in zip(msg["keys"], msg["stolen"], strict=True):
                self.steals += stolen
                self._route(
                    state.steal_response(w.address, key, stolen, stimulus_id=self._sid("steal"))
                )
        elif op == "add-replicas":
            self._route(state.add_replicas(w.address, msg["keys"], stimulus_id=self._sid("rep")))
        elif op == "missing-data":
            self._route(
                state.missing_data(w.address, msg["key"], msg["source"], msg["task"],
                                   stimulus_id=self._sid("missing"))
            )  # fmt: skip
        else:
            raise RuntimeError(f"simulated worker sent {op!r}: {msg}")

    # ------------------------------------------------------------ worker side

    def _deliver(self, w: _Worker, msg: dict) -> None:
        if not w.alive:
            return
        op = msg["op"]
        if op == "compute":
            if w.state.compute(msg["tasks"], None, self.now):
                self._start_fetches(w)
            self._start_tasks(w)
        elif op == "free":
            w.state.free(msg["keys"])
        elif op == "steal-request":
            self._to_scheduler(w, w.state.give_up(msg["keys"]))
        self._flush(w)

    def _start_fetches(self, w: _Worker) -> None:
        """Queue each new fetch on the worker's inbound link, one transfer at a time."""
        fetch_queue = w.state.fetch_queue
        for peer in list(fetch_queue):
            for key, nbytes in w.state.take_fetches(peer).items():
                start = max(self.now, w.link_free_at)
                stop = start + self.latency + nbytes / self.bandwidth
                w.link_free_at = stop - self.latency
                self._at(stop, self._fetched, w, peer, key, nbytes, start)

    def _fetched(self, w: _Worker, peer: str, key: Any, nbytes: int, start: float) -> None:
        if not w.alive:
            return
        got = {key: (nbytes, nbytes)}
        replicas = w.state.fetched(peer, (key,), got, start, self.now, self.now)
        if replicas is not None:
            self._to_scheduler(w, replicas)
        self._flush(w)
        self._start_tasks(w)

    def _start_tasks(self, w: _Worker) -> None:
        wl = self.workload
        while w.free_threads:
            t = w.state.next_ready()
            if t is None:
                break
            thread = w.free_threads.pop()
            start = self.now + self.task_overhead
            if t.report_start:
                self._at(start, self._started, w, t)
            stop = start + wl.durations[t.key] * w.slowdown
            self._at(stop, self._finish, w, t, thread, start)

    def _started(self, w: _Worker, t: LocalTask) -> None:
        w.state.task_started(t, self.now)
        self._flush(w)

    def _finish(self, w: _Worker, t: LocalTask, thread: int, start: float) -> None:
        if not w.alive:
            return
        w.free_threads.append(thread)
        nbytes = self.workload.nbytes[t.key]
        w.state.task_finished(t, thread, start, self.now, nbytes, nbytes, self.now)
        self._flush(w)
        self._start_tasks(w)

    def _flush(self, w: _Worker) -> None:
        """Send what the worker's state has to say, as the real worker's flush does."""
        started, records, messages = w.state.drain()
        if started:
            self._to_scheduler(w, {"op": "task-started", "tasks": started})
        if records:
            tasks = self.state.tasks
            for r in records:
                if r.thread >= 0:  # -1: the result was held, nothing ran
                    prefix = key_prefix(r.key)
                    ts = tasks.get(r.key)  # still processing: the scheduler hears of it later
                    placed = ts.placed_by if ts is not None else None
                    self.records.append(
                        TaskRecord.from_worker(r, w.address, prefix, "memory", placed)
                    )
            self._to_scheduler(w, {"op": "task-finished", "records": records})
        for msg in messages:
            self._to_scheduler(w, msg)
        if self.validate:
            w.state.validate_state()


def simulate(
    workload: Workload, n_workers: int, threads: int = 1, *, options: EngineOptions = DEFAULTS,
    **settings: Any,
) -> SimResult:  # fmt: skip
    """Run one simulation; ``settings`` amend ``options`` by name, or are ``Simulation``'s own.

    ``bandwidth`` here is the virtual link's; the scheduler's estimate is ``options.bandwidth``.
    """
    changes, own = EngineOptions.split(settings)
    if "bandwidth" in changes:
        own["bandwidth"] = changes.pop("bandwidth")
    return Simulation(workload, n_workers, threads, options=options.replace(**changes), **own).run()
