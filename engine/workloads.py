"""Load-balance workloads, shared by the simulator and the real cluster.

Each workload is a graph of ``work`` tasks with nominal durations and output sizes, plus
what happens to the cluster while it runs (a worker joining, a worker running slow):

- ``skewed``: one ``load`` task makes a dataset that every root task reads. With eager
  assignment, all roots start on the loader's worker.
- ``heterogeneous``: independent tasks with lognormal durations spanning 100×.
- ``tree-reduce``: leaves make 1 MB arrays, reduced pairwise: real transfers.
- ``late-joiner``: independent tasks; the last worker joins halfway through.
- ``straggler``: independent tasks; one worker runs every task 3× slower.

Load-balance quality is makespan ÷ lower bound, the lower bound being the larger of the
critical path and the time at which the cluster's capacity, integrated over time (threads
× speed, counting only workers present), covers the total nominal work. With a fixed,
uniform cluster that is DESIGN.md's max(Σ durations / threads, critical path).

The throughput graphs at the end (`independent_graph`, `chain_graph`, `sleep_graph`) are the
scheduler bench's and the asv suite's: no-op, increment and 1 ms tasks in plain dicts.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SLOWDOWN_ENV = "TASKBENCH_SLOWDOWN"
NAMES = ("skewed", "heterogeneous", "tree-reduce", "late-joiner", "straggler")
_slowdown: float | None = None


def _slowdown_factor() -> float:
    global _slowdown
    if _slowdown is None:
        _slowdown = float(os.environ.get(SLOWDOWN_ENV, "1"))
    return _slowdown


def work(seconds: float, nbytes: int, *inputs: Any) -> np.ndarray:
    """Stand-in for real work: sleep ``seconds`` (× this worker's slowdown), make ``nbytes``."""
    time.sleep(seconds * _slowdown_factor())
    return np.zeros(max(nbytes // 8, 1), dtype=np.float64)


@dataclass
class Workload:
    """A graph with nominal costs, and the cluster's history while it runs."""

    name: str
    graph: dict
    keys: list
    durations: dict  # key → nominal seconds
    nbytes: dict  # key → output bytes
    dependencies: dict  # key → tuple of keys
    join_at: dict[int, float] = field(default_factory=dict)  # worker index → join time (s)
    slowdown: dict[int, float] = field(default_factory=dict)  # worker index → factor

    def critical_path(self) -> float:
        finish: dict = {}
        for key in self.graph:  # graphs are built in topological order
            deps = self.dependencies[key]
            finish[key] = self.durations[key] + max((finish[d] for d in deps), default=0.0)
        return max(finish.values(), default=0.0)

    def lower_bound(self, n_workers: int, threads: int) -> float:
        """Earliest possible makespan on ``n_workers`` × ``threads`` (module docstring)."""
        total = sum(self.durations.values())
        speeds = [threads / self.slowdown.get(i, 1.0) for i in range(n_workers)]
        joins = sorted((self.join_at.get(i, 0.0), speeds[i]) for i in range(n_workers))
        done, rate, now = 0.0, 0.0, 0.0
        for at, speed in joins:
            if rate and done + rate * (at - now) >= total:
                break
            done += rate * (at - now)
            now, rate = at, rate + speed
        capacity_bound = now + (total - done) / rate
        return max(capacity_bound, self.critical_path())

    def worker_env(self, n_workers: int) -> list[dict[str, str]]:
        return [
            {SLOWDOWN_ENV: str(self.slowdown[i])} if i in self.slowdown else {}
            for i in range(n_workers)
        ]


def _independent(name: str, seconds: list[float], nbytes: int = 1000) -> Workload:
    graph, durations, sizes, deps = {}, {}, {}, {}
    for i, d in enumerate(seconds):
        key = (name, i)
        graph[key] = (work, d, nbytes)
        durations[key], sizes[key], deps[key] = d, nbytes, ()
    return Workload(name, graph, list(graph), durations, sizes, deps)


def make(name: str, n_workers: int, threads: int, scale: float = 1.0, seed: int = 0) -> Workload:
    """Workload ``name`` sized for ``n_workers`` × ``threads``: about 2 s × ``scale`` of work
    per thread, so a perfect schedule takes about 2 s × ``scale``.
    """
    rng = np.random.default_rng(seed)
    slots = n_workers * threads
    per_thread = 2.0 * scale
    if name == "skewed":
        n, d, dataset = int(per_thread / 0.02) * slots, 0.02, 10_000_000
        graph: dict = {"load": (work, 0.01, dataset)}
        durations = {"load": 0.01}
        sizes = {"load": dataset}
        deps: dict = {"load": ()}
        for i in range(n):
            r = ("root", i)
            graph[r] = (work, d, 1000, "load")
            durations[r], sizes[r], deps[r] = d, 1000, ("load",)
        return Workload(name, graph, [("root", i) for i in range(n)], durations, sizes, deps)
    if name == "heterogeneous":
        n = int(per_thread / 0.02) * slots
        raw = rng.lognormal(mean=0.0, sigma=1.2, size=n)
        seconds = np.clip(0.001 * raw / np.quantile(raw, 0.01), 0.001, 0.1)  # 1 ms … 100 ms
        seconds *= per_thread * slots / seconds.sum()
        return _independent(name, [float(s) for s in seconds])
    if name == "tree-reduce":
        leaves = 1 << max(1, int(np.log2(per_thread * slots / 0.03)))
        graph, durations, sizes, deps = {}, {}, {}, {}
        level, width = 0, leaves
        for i in range(leaves):
            key = ("leaf", i)
            graph[key] = (work, 0.02, 1_000_000)
            durations[key], sizes[key], deps[key] = 0.02, 1_000_000, ()
        prev = "leaf"
        while width > 1:
            level += 1
            name_l = f"reduce-{level}"
            for j in range(width // 2):
                key = (name_l, j)
                inputs = ((prev, 2 * j), (prev, 2 * j + 1))
                graph[key] = (work, 0.01, 1_000_000, *inputs)
                durations[key], sizes[key], deps[key] = 0.01, 1_000_000, inputs
            prev, width = name_l, width // 2
        return Workload(name, graph, [(prev, 0)], durations, sizes, deps)
    if name == "late-joiner":
        n = int(per_thread / 0.02) * slots
        w = _independent(name, [0.02] * n)
        ideal = sum(w.durations.values()) / slots
        w.join_at = {n_workers - 1: ideal / 2}
        return w
    if name == "straggler":
        n = int(per_thread / 0.02) * slots
        w = _independent(name, [float(s) for s in rng.uniform(0.01, 0.03, n)])
        w.slowdown = {n_workers - 1: 3.0}
        return w
    raise ValueError(f"unknown workload {name!r}; choose one of {', '.join(NAMES)}")


# ---------------------------------------------------------------- throughput graphs

LAG_TASK_SECONDS = 0.001


def noop(x: object) -> None:
    return None


def inc(x: int) -> int:
    return x + 1


def busy_sleep(x: object, seconds: float = LAG_TASK_SECONDS) -> object:
    time.sleep(seconds)
    return x


def independent_graph(n: int, name: str = "noop") -> dict:
    """``n`` independent no-op tasks."""
    return {(name, i): (noop, i) for i in range(n)}


def chain_graph(n: int, name: str = "inc") -> dict:
    """A chain of ``n`` increments, each waiting on the one before."""
    dsk: dict = {(name, 0): (inc, 0)}
    for i in range(1, n):
        dsk[(name, i)] = (inc, (name, i - 1))
    return dsk


def sleep_graph(n: int, name: str = "sleep") -> dict:
    """``n`` independent 1 ms tasks: enough queued work that gaps between them are lag."""
    return {(name, i): (busy_sleep, i) for i in range(n)}
