"""Scheduling throughput, inter-task lag and per-task overhead of the engine (asv).

The real figures run on a 2-worker × 1-thread ``LocalCluster``; the state machine's
transition rate is measured in-process with no sockets. ``taskbench bench scheduler
--vs dask`` puts the same figures beside dask's in one run.
"""

from __future__ import annotations

import time

from taskbench.engine.client import Client
from taskbench.engine.cluster import LocalCluster
from taskbench.engine.graph import KIND_PLAIN
from taskbench.engine.state import SchedulerState
from taskbench.engine.workloads import chain_graph, independent_graph, sleep_graph

TASKS = 20_000
LAG_TASKS = 2_000


class _Cluster:
    timeout = 300

    def setup(self, *params):
        self.cluster = LocalCluster(2, 1).start()
        self.client = Client(self.cluster)
        self.client.get(independent_graph(100, "warmup"), [("warmup", 0)])

    def teardown(self, *params):
        self.client.close()
        self.cluster.close()


class Throughput(_Cluster):
    params = ["independent", "chain"]
    param_names = ["graph"]
    unit = "tasks/s"

    def track_tasks_per_second(self, graph):
        make = independent_graph if graph == "independent" else chain_graph
        dsk = make(TASKS, f"{graph}-{time.monotonic_ns()}")
        keys = list(dsk) if graph == "independent" else [list(dsk)[-1]]
        t0 = time.perf_counter()
        self.client.get(dsk, keys)
        return TASKS / (time.perf_counter() - t0)


class _BackedUpRun(_Cluster):
    """Backed-up 1 ms tasks, all submitted at once; the run's task stream is kept."""

    def setup(self, *params):
        super().setup(*params)
        dsk = sleep_graph(LAG_TASKS, f"sleep-{time.monotonic_ns()}")
        start = self.client.stream_position()
        t0 = time.perf_counter()
        self.client.get(dsk, list(dsk))
        self.wall = time.perf_counter() - t0
        self.stream = self.client.task_stream(start)


class Lag(_BackedUpRun):
    """The gap between tasks on a thread while work was queued (DESIGN.md)."""

    params = ["p50", "p90", "p99"]
    param_names = ["percentile"]
    unit = "us"

    def track_inter_task_lag(self, percentile):
        return self.stream.lag_percentiles((50, 90, 99))[percentile]


class Overhead(_BackedUpRun):
    """(wall − Σ compute / threads) / tasks."""

    unit = "us"

    def track_per_task_overhead(self):
        return self.stream.per_task_overhead(self.wall, threads=2) * 1e6


class StateTransitions:
    """The pure state machine alone: transitions per second through a whole graph."""

    params = ["independent", "chain"]
    param_names = ["graph"]
    unit = "transitions/s"

    def setup(self, graph):
        dsk = independent_graph(TASKS) if graph == "independent" else chain_graph(TASKS)
        self.tasks = {}
        for key, (_func, arg) in dsk.items():
            deps = (arg,) if isinstance(arg, tuple) else ()
            self.tasks[key] = (deps, None, KIND_PLAIN, key[0])
        self.order = {k: i for i, k in enumerate(self.tasks)}
        self.wanted = list(self.tasks) if graph == "independent" else [list(self.tasks)[-1]]

    def track_transitions_per_second(self, graph):
        state = SchedulerState(log_length=10)
        for w in ("w1", "w2"):
            state.add_worker(w, 1, stimulus_id="add")
        t0 = time.perf_counter()
        worker_msgs, _ = state.update_graph("c", self.tasks, self.wanted, self.order,
                                            stimulus_id="graph")  # fmt: skip
        for address, msgs in worker_msgs.items():
            for msg in msgs:
                done = [(entry[0], 28, 0.0) for entry in msg["tasks"]]
                state.tasks_finished(address, done, stimulus_id="done")
        state.release_keys("c", self.wanted, stimulus_id="release")
        elapsed = time.perf_counter() - t0
        assert not state.tasks
        # released → waiting → processing → memory → released → forgotten
        return 5 * len(self.tasks) / elapsed
