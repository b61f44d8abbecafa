"""Deterministic engine metrics (asv): no clock, the same value on every run and every machine.

Every benchmark here is a ``track_`` whose value depends only on the code and the pinned
library versions, so ``make test`` can compare it with the stored baseline
(``benchmarks/baseline/``, ``python -m taskbench.reports.asv_history check``) and fail on any
metric that got worse. asv has no per-benchmark direction: every metric here is **lower is
better by construction**, and ``asv compare`` reads them that way.

``Simulated`` runs each load-balance workload (``engine.workloads``) in the simulator
(``engine.sim``: the real ``SchedulerState`` and policies, 8 virtual workers × 2 threads) under
each placement policy, once per run, in ``setup_cache``; per case it reports

- ``makespan_ratio``: makespan ÷ the workload's lower bound (1 is perfect);
- ``idle_fraction``: 1 − Σ busy ÷ (threads × makespan);
- ``messages_out_per_task``: messages the state emits (compute, free, steal requests to the
  workers; in-memory reports to the client) ÷ tasks;
- ``messages_in_per_task``: messages the virtual workers send the state (started, finished
  batches, steal responses, replicas) ÷ tasks;
- ``bytes_per_task``: bytes moved between the virtual workers (completed fetches) ÷ tasks;
- ``transitions_per_task``: task-state transitions the state made ÷ tasks (3 is a wanted task
  that runs once and is kept: released → waiting → processing → memory; an intermediate result
  adds its release, a steal or a recomputation adds more).

``Sizeof.track_error_factor`` is the sampled size estimate's error on the seeded 1M-row
results of ``benchmarks.sizeof``: max(estimate ÷ exact, exact ÷ estimate), so 1 is exact and
an under- and an over-estimate count alike (the signed error is its ratio's side).

Each class carries an explicit ``version``: bump it when a metric's *definition* changes (asv
then treats old and new results as not comparable) and re-record the baseline with
``python -m taskbench.reports.asv_history baseline``. One regex selects this suite:
``--bench '^deterministic\\.'``.
"""

from __future__ import annotations

from typing import Any

from taskbench.comparisons.bench.balance import POLICIES
from taskbench.engine.sim import Simulation
from taskbench.engine.sizeof import deep_sizeof, sizeof
from taskbench.engine.workloads import NAMES, make

from .sizeof import KINDS, make_frame

WORKERS = 8
THREADS = 2
SCALE = 1.0  # a perfect schedule takes about 2 s of virtual time
SEED = 0


class _CountingSimulation(Simulation):
    """The simulator, counting the messages each way and the bytes its links carry."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state.log = _Count()  # the bounded transition log, replaced by a counter
        self.messages_out = 0
        self.messages_in = 0
        self.bytes_moved = 0

    def _route(self, msgs: tuple[dict, dict]) -> None:
        self.messages_out += sum(len(batch) for side in msgs for batch in side.values())
        super()._route(msgs)

    def _to_scheduler(self, w: Any, msg: dict) -> None:
        self.messages_in += 1
        super()._to_scheduler(w, msg)

    def _fetched(self, w: Any, peer: str, key: Any, nbytes: int, start: float) -> None:
        if w.alive:
            self.bytes_moved += nbytes
        super()._fetched(w, peer, key, nbytes, start)


class _Count:
    """Stands in for ``SchedulerState.log``: counts what is appended, keeps nothing."""

    def __init__(self) -> None:
        self.n = 0

    def append(self, entry: object) -> None:
        self.n += 1

    def __iter__(self):
        return iter(())


def simulate_counted(workload_name: str, policy: str) -> dict[str, float]:
    """One simulated run of ``workload_name`` under ``policy``: every metric of ``Simulated``."""
    workload = make(workload_name, WORKERS, THREADS, SCALE, SEED)
    options = POLICIES[policy].replace(seed=SEED)
    sim = _CountingSimulation(workload, WORKERS, THREADS, options=options)
    result = sim.run()
    tasks = len(workload.graph)
    transitions = sim.state.log.n
    if not (sim.messages_out and sim.messages_in and transitions >= 3 * len(workload.keys)):
        raise RuntimeError(
            f"the counters missed the run ({sim.messages_out} out, {sim.messages_in} in, "
            f"{transitions} transitions for {tasks} tasks): has engine.sim changed?"
        )
    return {
        "makespan_ratio": result.makespan_ratio,
        "idle_fraction": result.idle_fraction(WORKERS * THREADS),
        "messages_out_per_task": sim.messages_out / tasks,
        "messages_in_per_task": sim.messages_in / tasks,
        "bytes_per_task": sim.bytes_moved / tasks,
        "transitions_per_task": transitions / tasks,
    }


class Simulated:
    """The simulator's figures per placement policy and workload (module docstring)."""

    params = (list(POLICIES), list(NAMES))
    param_names = ["policy", "workload"]
    version = 1
    timeout = 600

    def setup_cache(self) -> dict[tuple[str, str], dict[str, float]]:
        return {(p, w): simulate_counted(w, p) for p in POLICIES for w in NAMES}

    setup_cache.timeout = 600

    def track_makespan_ratio(self, runs, policy, workload):
        return runs[(policy, workload)]["makespan_ratio"]

    track_makespan_ratio.unit = "ratio"

    def track_idle_fraction(self, runs, policy, workload):
        return runs[(policy, workload)]["idle_fraction"]

    track_idle_fraction.unit = "fraction"

    def track_messages_out_per_task(self, runs, policy, workload):
        return runs[(policy, workload)]["messages_out_per_task"]

    track_messages_out_per_task.unit = "messages/task"

    def track_messages_in_per_task(self, runs, policy, workload):
        return runs[(policy, workload)]["messages_in_per_task"]

    track_messages_in_per_task.unit = "messages/task"

    def track_bytes_per_task(self, runs, policy, workload):
        return runs[(policy, workload)]["bytes_per_task"]

    track_bytes_per_task.unit = "bytes/task"

    def track_transitions_per_task(self, runs, policy, workload):
        return runs[(policy, workload)]["transitions_per_task"]

    track_transitions_per_task.unit = "transitions/task"


def error_factor(estimate: float, exact: float) -> float:
    """max(estimate ÷ exact, exact ÷ estimate): 1 is exact; lower is better either way."""
    if estimate <= 0 or exact <= 0:
        raise ValueError(f"sizes must be positive, got estimate {estimate}, exact {exact}")
    return max(estimate / exact, exact / estimate)


class Sizeof:
    """The sampled estimate's error against the exact deep size (seeded frames, fixed offsets)."""

    params = [KINDS]
    param_names = ["kind"]
    version = 1
    timeout = 300

    def setup_cache(self) -> dict[str, float]:
        out = {}
        for kind in KINDS:
            frame = make_frame(kind)
            out[kind] = error_factor(sizeof(frame), deep_sizeof(frame))
        return out

    setup_cache.timeout = 300

    def track_error_factor(self, factors, kind):
        return factors[kind]

    track_error_factor.unit = "ratio"


class _CountingClient:
    """A synchronous client that counts the tasks of every graph it is given."""

    def __init__(self) -> None:
        self.tasks = 0

    def get(self, graph: dict, keys: list) -> Any:
        from taskbench.engine.dataframe.optimize import is_task
        from taskbench.engine.local import get_sync

        self.tasks += sum(1 for task in graph.values() if is_task(task))
        return get_sync(graph, keys)

    def wait(self, futures: Any) -> None:
        """Nothing to wait for: ``persist`` here keeps the partitions in the graph."""


def count_query_tasks(data_dir: str, mode: str) -> dict[str, int]:
    """Tasks each query of the engine's solution sends, on ``data_dir``, in ``mode``."""
    from taskbench.comparisons.queries import QUERY_IDS
    from taskbench.comparisons.solutions import load_config, load_solution, run_query

    solution = load_solution("engine")
    client = _CountingClient()
    session = solution.Session(None, client)
    handle = solution.load(session, data_dir, load_config("engine", cores=2).for_mode(mode))
    counts = {}
    for query_id in QUERY_IDS:
        client.tasks = 0
        run_query(solution, handle, query_id)
        counts[query_id] = client.tasks
    return counts


class QueryTasks:
    """Tasks per query of the engine's dataframe solution (fusion, pruning, pushdown): a
    change that unfuses a graph or stops pruning shows as more tasks. Seeded 60k rows over
    12 months (one partition a month), both comparison modes, counted without a clock."""

    params = (["memory", "scan"], ["q01", "q02", "q03", "q04", "q05", "q06", "q07", "q08", "q09",
                                   "q10", "q11", "q12"])  # fmt: skip
    param_names = ["mode", "query"]
    version = 1
    timeout = 300

    def setup_cache(self) -> dict[str, dict[str, int]]:
        import tempfile

        from taskbench.comparisons.data.generate import generate

        with tempfile.TemporaryDirectory() as folder:
            generate(folder + "/data", rows=60_000, start="2015-01", months=12, seed=SEED,
                     workers=1)  # fmt: skip
            return {mode: count_query_tasks(folder + "/data", mode) for mode in self.params[0]}

    setup_cache.timeout = 300

    def track_tasks(self, counts, mode, query):
        return counts[mode][query]

    track_tasks.unit = "tasks"
