"""``taskbench plan --spec SPEC --data DIR``: the engine's query times on a spec's cluster,
predicted on this machine before any cluster is paid for.

The model, stated once:

- **Target.** The spec's data: ``data.generate`` laid out as the generator writes it (one
  partition per parquet row group, of up to 1M rows); any other source is DIR's own row
  groups. ``--rows`` replaces the row count, laid out by the generator over the same months.
- **Measure.** The problem set runs on the real engine here as ``taskbench compare`` runs it
  in memory mode (the engine's solution module; a LocalCluster of ``--sample-workers`` workers
  of 1 thread), in rounds (one cold, ``--repeats`` hot), on three sets of persisted
  partitions of DIR's rows. *large*: k partitions of the target's partition size (as far as
  DIR's row groups and ``--sample-rows`` allow; k ≤ ``--sample-rows`` / size), read on the
  workers as ``read_parquet`` reads them; *small*: k partitions of ``TINY_ROWS`` rows;
  *layout*: as many partitions as the target has, of ``TINY_ROWS`` rows: the target's graphs,
  task for task. Every graph the client submits is kept (keys, dependencies) beside the task
  records the engine leaves; a task's duration and output bytes are its median over hot runs.
- **Scale** (the rule). A layer (the tasks of one collection, named by task prefix and rank:
  one groupby's chunks, one shuffle's splits) costs ``a + b·rows`` in the rows of its task's
  partition (the target's mean partition, for a layer that is not one task per partition):
  ``b ≥ 0`` is the slope from the small to the large run, anchored at the large run. Output
  bytes follow the same rule, times the layer's bytes in the layout run over the small run
  (how the target's partition count divides the data: a shuffle's shards). A layer that only
  the target's partition count makes (a groupby's combine level, a staged shuffle's later
  rounds) keeps its layout-run duration plus its prefix's slope, and its output bytes are its
  inputs' at the target, in the proportion of output to input the layout run measured. The
  persisted partitions' bytes per row follow the rule too, and so does each query's client
  time (wall time outside its graphs' makespans: building, submitting, gathering, finishing in
  pandas), plus what more the layout's graphs cost the client than the small run's (never
  less).
- **Simulate.** Each graph runs in ``engine.sim`` (the real scheduler state and policies) on
  nodes × workers_per_node virtual workers of threads_per_worker threads, each with an inbound
  link of ``--bandwidth`` bytes/s and ``LATENCY``; the per-task overhead is the large run's
  median inter-task lag. The persisted partitions are root tasks of no duration, submitted
  alone first, so that the scheduler places them as ``persist`` did (`HeldFirst`). Task
  durations are this machine's: a node's core is taken to be as fast as one here, and as
  shared as when the large run's workers shared this machine.
- **Predict.** A query's time is the sum of its graphs' simulated makespans plus its client
  time; its makespan ratio is Σ makespans / Σ lower bounds (`SimResult`). The cost of an ec2
  spec is the predicted total (each query once) in hours × instances × the spec's price per
  instance-hour; a local cluster costs 0.

``--against RUN_DIR`` sets a plan beside a ``taskbench compare`` run: the engine's hot median per
query (memory mode) and the relative error, (predicted − measured) / measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from taskbench.comparisons.argtypes import (
    existing_file,
    output_file,
    parse_rows,
    positive_int,
    positive_number,
)
from taskbench.engine.client import Client
from taskbench.engine.graph import KIND_PLAIN, key_prefix, key_str
from taskbench.engine.sim import CLIENT, SimResult, Simulation

DEFAULT_BANDWIDTH = 1e9  #: bytes/s of each worker's inbound link: loopback, or a 10 Gb/s NIC
LATENCY = 150e-6  #: seconds a message takes each way (the simulator's default)
DEFAULT_SAMPLE_ROWS = 2_000_000  #: two of the generator's partitions
TINY_ROWS = 1_000  #: rows of a partition of the layout and small runs
DEFAULT_REPEATS = 3  #: hot rounds of the queries per run, after one cold round
TOLERANCE = 0.25  #: ``--against`` marks a relative error beyond this
BUSY_MACHINE = 0.1  #: others' share of the CPUs, while measuring, that the table warns of
ENGINE = "engine"
MODE = "memory"


class PlanError(Exception):
    """Bad input, in one line naming the file or the flag: exit 2."""


class SampleError(Exception):
    """A query that failed on the engine here: exit 1."""


# ---------------------------------------------------------------- the target's partitions


@dataclass(frozen=True)
class Target:
    """The data the spec's cluster would hold: rows per partition, and where that comes from."""

    partitions: list[int]
    source: str

    @property
    def rows(self) -> int:
        return sum(self.partitions)


def generated_partitions(rows: int, months: Sequence[tuple[int, int]]) -> list[int]:
    """Rows per partition of a generated dataset: the generator's row groups, month by month."""
    from taskbench.comparisons.data.generate import _plan_chunks

    return [chunk.rows for chunk in _plan_chunks(rows, list(months)) if chunk.rows]


def target_of(spec: Any, data_dir: Path, rows: int | None = None) -> Target:
    """The target's partitions, by the module's rule."""
    from taskbench.comparisons.data import read_manifest
    from taskbench.comparisons.data.generate import month_range, parse_month

    generate = spec.data.generate
    if generate is not None:
        months = month_range(generate.start, generate.months)
        where = "the spec's data.generate"
        if rows is None:
            return Target(generated_partitions(generate.rows, months), where)
    elif rows is None:
        return Target([g.rows for g in row_groups(data_dir)], f"{data_dir}'s row groups")
    else:
        months = [parse_month(m) for m in read_manifest(data_dir).months]
        where = f"{data_dir}'s months"
    return Target(generated_partitions(rows, months), f"--rows over {where}")


# ---------------------------------------------------------------- measuring on the engine


@dataclass
class Submitted:
    """One graph as the client sent it: keys in order, their dependencies, the wanted keys,
    and when (seconds since the epoch, the clock of the task records)."""

    keys: list
    deps: list
    wanted: list
    at: float


class RecordingClient(Client):
    """A client that keeps every graph it submits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.submitted: list[Submitted] = []
        super().__init__(*args, **kwargs)

    async def _submit(self, graph: Any, wanted: list) -> None:
        self.submitted.append(Submitted(graph.keys, graph.deps, wanted, time.time()))
        await super()._submit(graph, wanted)


def sample_partition(frame: pd.DataFrame) -> pd.DataFrame:
    """A tiny partition, made on the client (``read_sample``) and handed to a worker."""
    return frame


def row_group_partition(group: tuple[str, int, int, int]) -> pd.DataFrame:
    """A large partition, read on the worker as ``read_parquet`` reads it, cut to ``rows``:
    ``group`` is (path, row group, rows, offset)."""
    from taskbench.comparisons.queries import TRIP_COLUMNS
    from taskbench.engine.dataframe.io import read_row_group

    path, row_group, rows, offset = group
    columns = list(TRIP_COLUMNS)
    frame = read_row_group(path, row_group, columns, columns, None, offset)
    return frame if len(frame) <= rows else frame.iloc[:rows].copy()


@dataclass
class GraphTasks:
    """One submitted graph: keys in order, their dependencies, the wanted keys, and each task's
    median duration and output bytes over the hot runs."""

    keys: list
    deps: list
    wanted: list
    seconds: np.ndarray
    nbytes: np.ndarray


@dataclass
class Run:
    """What one set of sample partitions measured: the persist graph, each query's graphs
    and client time (median over hot runs of wall − Σ its graphs' makespans)."""

    partition_rows: list[int]
    data: GraphTasks
    graphs: dict[str, list[GraphTasks]]
    client_seconds: dict[str, float]
    lags_us: np.ndarray  #: inter-task lags of every hot run
    transfer_bytes: int
    transfer_seconds: float
    other_cpu: float = 0.0  #: share of this machine's CPUs others kept busy meanwhile

    @property
    def rows(self) -> float:
        """Mean rows per partition."""
        return float(np.mean(self.partition_rows))


@dataclass
class Measurement:
    """The three runs of the module's rule."""

    layout: Run  #: the target's partition count, tiny partitions
    small: Run  #: k tiny partitions
    large: Run  #: k large partitions


class OtherLoad:
    """Watches how much of this machine's CPUs processes outside this one's tree keep busy:
    their work slows the tasks measured here, and inflates the prediction."""

    def __init__(self) -> None:
        self.start = self._now()

    @staticmethod
    def _now() -> tuple[float, float, float]:
        import psutil

        machine = psutil.cpu_times()
        busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        ours = 0.0
        me = psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            ours += times.user + times.system
        return time.monotonic(), busy, ours

    def share(self) -> float:
        """Others' CPU seconds since this was made, over all CPU seconds of the while."""
        (t0, busy0, ours0), (t1, busy1, ours1) = self.start, self._now()
        cpus = len(os.sched_getaffinity(0))
        return max((busy1 - busy0) - (ours1 - ours0), 0.0) / max((t1 - t0) * cpus, 1e-9)


@dataclass(frozen=True)
class RowGroup:
    path: str
    index: int
    rows: int
    offset: int


def row_groups(data_dir: Path) -> list[RowGroup]:
    """DIR's non-empty row groups in reading order: the partitions ``read_parquet`` makes."""
    import pyarrow.parquet as pq
    from taskbench.comparisons.data import trip_files

    groups, offset = [], 0
    for path in trip_files(data_dir):
        meta = pq.ParquetFile(path).metadata
        for i in range(meta.num_row_groups):
            rows = meta.row_group(i).num_rows
            if rows:
                groups.append(RowGroup(str(path), i, rows, offset))
            offset += rows
    return groups


def read_sample(data_dir: Path, rows: int) -> pd.DataFrame:
    """The first ``rows`` rows of DIR, taken from every trip file in proportion to its rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from taskbench.comparisons.data import trip_files
    from taskbench.comparisons.queries import TRIP_COLUMNS

    files = trip_files(data_dir)
    sizes = [pq.ParquetFile(f).metadata.num_rows for f in files]
    weights = np.cumsum([0, *sizes])
    shares = np.diff(np.round(weights * rows / max(weights[-1], 1))).astype(int)
    frames = []
    for path, share in zip(files, shares, strict=True):
        batches, got = [], 0
        for batch in pq.ParquetFile(path).iter_batches(65_536, columns=list(TRIP_COLUMNS)):
            if got >= share:
                break
            batches.append(batch)
            got += batch.num_rows
        if batches:
            frames.append(pa.Table.from_batches(batches).slice(0, share).to_pandas())
    return pd.concat(frames, ignore_index=True)


def measure(
    data_dir: Path,
    target: Target,
    queries: Sequence[str],
    *,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    workers: int = 2,
    repeats: int = DEFAULT_REPEATS,
    say: Callable[[str], None] = lambda line: None,
) -> Measurement:
    """The queries on the real engine, on the three sets of partitions of the module's rule."""
    from taskbench.comparisons.solutions import load_config, load_solution
    from taskbench.comparisons.solutions.engine import Session
    from taskbench.engine.cluster import LocalCluster
    from taskbench.engine.dataframe import from_map

    groups = row_groups(data_dir)
    p = len(target.partitions)
    large_rows = min(max(target.partitions), max(g.rows for g in groups), sample_rows)
    fitting = [g for g in groups if g.rows >= large_rows]
    k = min(p, len(fitting), max(1, sample_rows // large_rows))
    tiny_rows = min(TINY_ROWS, sum(g.rows for g in groups) // p)
    if tiny_rows < 2:
        raise PlanError(f"{data_dir}: {sum(g.rows for g in groups):,} rows cannot fill the "
                        f"target's {p} partitions with 2 rows each")  # fmt: skip
    tiny = read_sample(data_dir, tiny_rows * p)
    layout = [tiny.iloc[i * tiny_rows : (i + 1) * tiny_rows] for i in range(p)]
    large = [(g.path, g.index, large_rows, g.offset) for g in fitting[:k]]
    meta = tiny.iloc[:0]
    sets = {
        "layout": (from_map(sample_partition, layout, meta=meta), [tiny_rows] * p),
        "large": (from_map(row_group_partition, large, meta=meta), [large_rows] * k),
    }
    if k != p:
        sets["small"] = (from_map(sample_partition, layout[:k], meta=meta), [tiny_rows] * k)
    solution = load_solution(ENGINE)
    config = load_config(ENGINE, cores=workers).for_mode(MODE)
    config = config.with_value("load", "persist", False, "plan persists its own partitions")
    cluster = LocalCluster(workers, 1).start()
    session = Session(cluster, RecordingClient(cluster))
    runs = {}
    try:
        base = solution.load(session, data_dir, config)  # zones and parameters, as compare's
        for name, (frame, rows) in sets.items():
            say(f"measuring {len(queries)} queries on {len(rows)} partitions of {rows[0]:,} rows")
            runs[name] = _run_queries(solution, base, frame, rows, queries, repeats)
    finally:
        solution.stop(session)
    return Measurement(runs["layout"], runs.get("small", runs["layout"]), runs["large"])


def _run_queries(
    solution: Any,
    base: Any,
    frame: Any,
    partition_rows: list[int],
    queries: Sequence[str],
    repeats: int,
) -> Run:
    """Persist ``frame`` as the trips, then run the queries in rounds, as ``compare`` does:
    round 0 is cold, the ``repeats`` rounds after it are hot."""
    from taskbench.comparisons.check import answer

    load = OtherLoad()
    client: RecordingClient = base.session.client
    client.submitted.clear()
    mark = client.stream_position()
    trips = frame.persist(client)
    client.wait(trips._futures)
    persisted = client.submitted[-1]
    data = _graph_tasks([(persisted, _records_of([persisted], client.task_stream(mark))[0])])
    handle = dataclasses.replace(base, trips=trips)
    hot: dict[str, list[tuple[list[Submitted], list[dict], float]]] = {q: [] for q in queries}
    lags, moved, moving = [], 0, 0.0
    for run in range(1 + repeats):
        for q in queries:
            client.submitted.clear()
            mark = client.stream_position()
            got = answer(solution, handle, q)
            if got.status != "answer":
                raise SampleError(f"{q} on the sample: {got.status}: {got.detail}")
            stream = client.task_stream(mark)
            if run:
                submitted = list(client.submitted)
                hot[q].append((submitted, _records_of(submitted, stream), got.seconds))
                lags.append(stream.inter_task_lags())
                transfers = [t for r in stream.records for t in r.transfers]
                moved += sum(t.nbytes for t in transfers)
                moving += sum(t.stop - t.start for t in transfers)
    graphs, client_seconds = {}, {}
    for q, runs in hot.items():
        shapes = {tuple(len(s.keys) for s in submitted) for submitted, _, _ in runs}
        if len(shapes) != 1:
            raise SampleError(f"{q}: its graphs differ between runs ({sorted(shapes)} tasks)")
        graphs[q] = [
            _graph_tasks([(submitted[g], records[g]) for submitted, records, _ in runs])
            for g in range(len(runs[0][0]))
        ]
        client_seconds[q] = statistics.median(
            wall - sum(_makespan(r) for r in records) for _, records, wall in runs
        )
    return Run(partition_rows, data, graphs, client_seconds, np.concatenate(lags), moved, moving,
               load.share())  # fmt: skip


def _records_of(submitted: list[Submitted], stream: Any) -> list[dict[str, Any]]:
    """Each graph's task records, by key: a record belongs to the last graph submitted before
    it started that holds its key (a query may compute the same keys in several graphs)."""
    from taskbench.engine.graph import key_str

    names = [{key_str(k) for k in s.keys} for s in submitted]
    out: list[dict[str, Any]] = [{} for _ in submitted]
    for r in stream.records:
        holding = [i for i, keys in enumerate(names) if r.key in keys]
        before = [i for i in holding if submitted[i].at <= r.start]
        if holding:
            out[(before or holding)[-1]][r.key] = r
    return out


def _graph_tasks(runs: list[tuple[Submitted, dict[str, Any]]]) -> GraphTasks:
    """The same graph in each run, with its records: each task's median duration and bytes."""
    from taskbench.engine.graph import key_str

    seconds, nbytes = [], []
    for submitted, records in runs:
        found = [records.get(key_str(k)) for k in submitted.keys]
        seconds.append([r.stop - r.start if r else 0.0 for r in found])
        nbytes.append([r.nbytes if r else 0 for r in found])
    last = runs[-1][0]
    return GraphTasks(last.keys, last.deps, last.wanted, np.median(seconds, axis=0),
                      np.median(nbytes, axis=0))  # fmt: skip


def _makespan(records: dict[str, Any]) -> float:
    if not records:
        return 0.0
    return max(r.stop for r in records.values()) - min(r.start for r in records.values())


# ---------------------------------------------------------------- scaling and simulating


@dataclass(frozen=True)
class Line:
    """``value`` at ``rows``, rising by ``slope`` per row (never below 0)."""

    rows: float
    value: float
    slope: float = 0.0

    def __call__(self, rows: float) -> float:
        return max(self.value + self.slope * (rows - self.rows), 0.0)


def fit(small: float, small_rows: float, large: float, large_rows: float) -> Line:
    """The line through the small and the large run, slope ≥ 0, anchored at the large."""
    span = large_rows - small_rows
    return Line(large_rows, large, max((large - small) / span, 0.0) if span > 0 else 0.0)


def layers(keys: list) -> dict[tuple[str, int], list[int]]:
    """Positions of each layer's tasks (a layer: the keys of one collection), named by its
    task prefix and how many layers of that prefix come before it."""
    from taskbench.engine.graph import key_prefix

    by_name: dict[Any, list[int]] = {}
    for i, key in enumerate(keys):
        by_name.setdefault(key[0] if isinstance(key, tuple) else key, []).append(i)
    named: dict[tuple[str, int], list[int]] = {}
    for at in by_name.values():
        prefix = key_prefix(keys[at[0]])
        named[(prefix, sum(p == prefix for p, _ in named))] = at
    return named


class GraphScaler:
    """One graph's layers at the target: the layout run's layers, fitted on the small and the
    large run's, by the module's rule."""

    def __init__(self, layout: GraphTasks, small: GraphTasks, large: GraphTasks, m: Measurement):
        self.graphs = {"layout": layout, "small": small, "large": large}
        self.layers = {run: layers(g.keys) for run, g in self.graphs.items()}
        self.rows = {"layout": m.layout.rows, "small": m.small.rows, "large": m.large.rows}

    def _mean(self, field: str, run: str, name: tuple[str, int]) -> float:
        return float(getattr(self.graphs[run], field)[self.layers[run][name]].mean())

    def _fit(self, field: str, names: list[tuple[str, int]]) -> Line:
        small = np.mean([self._mean(field, "small", n) for n in names])
        large = np.mean([self._mean(field, "large", n) for n in names])
        return fit(small, self.rows["small"], large, self.rows["large"])

    def line(self, field: str, name: tuple[str, int]) -> Line:
        """``field`` (seconds or nbytes) of a task of layer ``name`` against its rows; for a
        layer the large run lacks, the duration only (its bytes follow its inputs')."""
        if name in self.layers["large"]:
            line = self._fit(field, [name])
            small = self._mean(field, "small", name)
            if field == "nbytes" and small > 0:  # the target's partition count divides data
                share = self._mean(field, "layout", name) / small  # differently: shards
                line = Line(line.rows, line.value * share, line.slope * share)
            return line
        same = [n for n in self.layers["large"] if n[0] == name[0]]
        slope = self._fit(field, same).slope if same else 0.0
        return Line(self.rows["layout"], self._mean(field, "layout", name), slope)

    def tasks(
        self, target: Target, held: dict[Any, float], tiny_held: dict[Any, float]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each task's duration and output bytes at the target, in the layout's key order;
        ``held`` and ``tiny_held``: the persisted partitions' bytes at the target and in the
        layout run."""
        layout = self.graphs["layout"]
        seconds, nbytes = np.zeros(len(layout.keys)), np.zeros(len(layout.keys))
        mean_rows = target.rows / len(target.partitions)
        flowing = []
        for name, at in self.layers["layout"].items():
            whole = len(at) == len(target.partitions)  # a layer of one task per partition
            rows = target.partitions if whole else [mean_rows] * len(at)
            line = self.line("seconds", name)
            seconds[at] = [line(r) for r in rows]
            if name in self.layers["large"]:
                line = self.line("nbytes", name)
                nbytes[at] = [line(r) for r in rows]
            else:
                flowing.append(at)
        if flowing:
            self._flow(nbytes, flowing, held, tiny_held)
        return seconds, nbytes

    def _flow(
        self, nbytes: np.ndarray, flowing: list[list[int]], held: dict, tiny_held: dict
    ) -> None:
        """Bytes of the layers the large run lacks: their inputs' bytes at the target, in the
        proportion of output to input that the layout run measured, layer by layer."""
        from taskbench.engine.graph import order

        layout = self.graphs["layout"]
        at = {key: i for i, key in enumerate(layout.keys)}
        priority = order(dict(zip(layout.keys, layout.deps, strict=True)))
        for positions in sorted(flowing, key=lambda ps: min(priority[layout.keys[i]] for i in ps)):
            tiny_in = sum(
                layout.nbytes[at[d]] if d in at else tiny_held.get(d, 0.0)
                for i in positions for d in layout.deps[i]
            )  # fmt: skip
            ratio = layout.nbytes[positions].sum() / tiny_in if tiny_in > 0 else 0.0
            for i in sorted(positions, key=lambda i: priority[layout.keys[i]]):
                inputs = sum(nbytes[at[d]] if d in at else held.get(d, 0.0)
                             for d in layout.deps[i])  # fmt: skip
                nbytes[i] = ratio * inputs if tiny_in > 0 else layout.nbytes[i]


def workload(
    name: str, graph: GraphTasks, seconds: np.ndarray, nbytes: np.ndarray, held: dict[Any, float]
) -> Any:
    """The simulator's workload of one graph; keys it reads from outside (the persisted
    partitions, ``held``: key → bytes) are root tasks of no duration."""
    from taskbench.engine.graph import order
    from taskbench.engine.workloads import Workload

    durations = dict(zip(graph.keys, seconds.tolist(), strict=True))
    sizes = dict(zip(graph.keys, nbytes.tolist(), strict=True))
    deps = {key: tuple(d) for key, d in zip(graph.keys, graph.deps, strict=True)}
    outside = {d for ds in deps.values() for d in ds} | set(graph.wanted)
    for key in outside - durations.keys():
        durations[key], sizes[key], deps[key] = 0.0, held.get(key, 0.0), ()
    priority = order(deps)
    ordered = sorted(deps, key=priority.__getitem__)  # dependencies first
    return Workload(
        name,
        dict.fromkeys(ordered),
        list(graph.wanted),
        {key: durations[key] for key in ordered},
        {key: int(sizes[key]) for key in ordered},
        {key: deps[key] for key in ordered},
    )


class HeldFirst(Simulation):
    """``Simulation`` where the persisted partitions (``held``: root tasks of no duration) are
    submitted alone first, and so placed as ``persist`` placed them before the query; the
    query's graph follows once they are in memory."""

    def __init__(self, workload: Any, n_workers: int, threads: int, *, held: Any, **own: Any):
        super().__init__(workload, n_workers, threads, **own)
        self.held = [key for key in workload.graph if key in held]
        self.waiting = set(self.held)

    def _submit(self) -> None:
        if not self.held:
            return super()._submit()
        tasks = {key: ((), None, KIND_PLAIN, key_prefix(key)) for key in self.held}
        priority = {key: i for i, key in enumerate(self.held)}
        self._route(self.state.update_graph(CLIENT, tasks, self.held, priority,
                                            stimulus_id="persist"))  # fmt: skip

    def _route(self, msgs: tuple[dict, dict]) -> None:
        super()._route(msgs)
        for msg in msgs[1].get(CLIENT, ()):
            if self.waiting and msg["op"] == "in-memory":
                self.waiting.difference_update(msg["keys"])
                if not self.waiting:
                    self._at(self.now + self.latency, super()._submit)

    def query_makespan(self, result: SimResult) -> float:
        """The makespan of the query's own tasks, from the first to start to the last to end."""
        held = {key_str(key) for key in self.held}
        records = [r for r in result.stream.records if r.key not in held]
        return max(r.stop for r in records) - min(r.start for r in records) if records else 0.0


def predict(
    m: Measurement, target: Target, spec: Any, *, bandwidth: float
) -> dict[str, dict[str, Any]]:
    """Each query's predicted seconds on the spec's cluster, with its simulation's figures."""
    workers = spec.nodes * spec.engine.workers_per_node
    threads = spec.engine.threads_per_worker
    mean_rows = target.rows / len(target.partitions)
    per_row = fit(m.small.data.nbytes.mean() / m.small.rows, m.small.rows,
                  m.large.data.nbytes.mean() / m.large.rows, m.large.rows)  # fmt: skip
    held = {key: per_row(rows) * rows
            for key, rows in zip(m.layout.data.keys, target.partitions, strict=True)}  # fmt: skip
    tiny_held = dict(zip(m.layout.data.keys, m.layout.data.nbytes.tolist(), strict=True))
    out = {}
    for q, graphs in m.layout.graphs.items():
        makespan = lower = 0.0
        tasks = moved = 0
        for g, graph in enumerate(graphs):
            scaler = GraphScaler(graph, m.small.graphs[q][g], m.large.graphs[q][g], m)
            seconds, nbytes = scaler.tasks(target, held, tiny_held)
            sim = HeldFirst(
                workload(f"{q}-{g}", graph, seconds, nbytes, held), workers, threads, held=held,
                bandwidth=bandwidth, latency=LATENCY, task_overhead=task_overhead(m),
            )  # fmt: skip
            result = sim.run()
            makespan += sim.query_makespan(result)
            lower += result.lower_bound
            tasks += len(graph.keys)
            moved += sum(t.nbytes for r in result.stream.records for t in r.transfers)
        client = fit(m.small.client_seconds[q], m.small.rows,
                     m.large.client_seconds[q], m.large.rows)(mean_rows)  # fmt: skip
        client += max(m.layout.client_seconds[q] - m.small.client_seconds[q], 0.0)
        out[q] = {
            "seconds": makespan + client,
            "makespan": makespan,
            "client_seconds": client,
            "lower_bound": lower,
            "makespan_ratio": makespan / lower if lower > 0 else None,
            "tasks": tasks,
            "transfer_bytes": moved,
        }
    return out


def task_overhead(m: Measurement) -> float:
    """Seconds the simulator adds before each task: the large run's median inter-task lag."""
    lags = m.large.lags_us
    return float(np.median(lags)) * 1e-6 if lags.size else 30e-6


def cost(spec: Any, seconds: float) -> dict[str, Any]:
    """What running the queries once costs on the spec's cluster, by the module's rule."""
    hours = seconds / 3600
    price = spec.ec2.price_per_instance_hour if spec.ec2 is not None else 0.0
    return {
        "usd": hours * spec.instances * price,
        "hours": hours,
        "instances": spec.instances,
        "price_per_instance_hour": price,
        "price_date": str(spec.ec2.price_date) if spec.ec2 is not None else None,
        "lifetime_usd": spec.cost_estimate(),
        "max_lifetime_minutes": spec.max_lifetime_minutes,
    }


# ---------------------------------------------------------------- the plan document


def plan(
    spec_path: Path,
    data_dir: Path,
    queries: Sequence[str],
    *,
    rows: int | None = None,
    bandwidth: float = DEFAULT_BANDWIDTH,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    workers: int = 2,
    repeats: int = DEFAULT_REPEATS,
    say: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Measure, scale, simulate: the plan as one JSON-ready document."""
    from taskbench.comparisons.bench.record import run_metadata
    from taskbench.comparisons.check import dataset_info
    from taskbench.comparisons.data import DataError
    from taskbench.infra.spec import SpecError, load_spec

    try:
        spec = load_spec(spec_path)
    except SpecError as e:
        raise PlanError(str(e)) from None
    try:
        data = dataset_info(data_dir)
    except DataError as e:
        raise PlanError(str(e)) from None
    target = target_of(spec, data_dir, rows)
    measured = measure(data_dir, target, queries, sample_rows=sample_rows, workers=workers,
                       repeats=repeats, say=say)  # fmt: skip
    return document(spec_path, spec, data_dir, data, target, measured, bandwidth=bandwidth,
                    sample_workers=workers, repeats=repeats, metadata=run_metadata())  # fmt: skip


def document(
    spec_path: Path,
    spec: Any,
    data_dir: Path,
    data: dict[str, Any],
    target: Target,
    m: Measurement,
    *,
    bandwidth: float,
    sample_workers: int,
    repeats: int,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The plan of ``spec`` from the measurement: every figure the table shows, and how."""
    queries = predict(m, target, spec, bandwidth=bandwidth)
    total = sum(q["seconds"] for q in queries.values())
    moving = m.large.transfer_seconds
    return {
        "command": "plan",
        "spec": {
            "path": str(spec_path),
            "name": spec.name,
            "provider": spec.provider,
            "nodes": spec.nodes,
            "workers_per_node": spec.engine.workers_per_node,
            "threads_per_worker": spec.engine.threads_per_worker,
            "workers": spec.nodes * spec.engine.workers_per_node,
        },
        "data": {"path": str(data_dir), "rows": data["rows"], "fingerprint": data["fingerprint"]},
        "target": {
            "rows": target.rows,
            "partitions": len(target.partitions),
            "source": target.source,
        },
        "sample": {
            run: {
                "partitions": len(r.partition_rows),
                "rows_per_partition": r.rows,
                "other_cpu": r.other_cpu,
            }
            for run, r in (("layout", m.layout), ("small", m.small), ("large", m.large))
        }
        | {
            "workers": sample_workers,
            "repeats": repeats,
            "transfer_bytes_per_second": m.large.transfer_bytes / moving if moving > 0 else None,
        },
        "model": {"bandwidth": bandwidth, "latency": LATENCY, "task_overhead": task_overhead(m)},
        "queries": queries,
        "total_seconds": total,
        "cost": cost(spec, total),
        "metadata": metadata or {},
    }


def format_plan(doc: dict[str, Any]) -> str:
    """The plan as a table: each query's prediction, then the total and the cost."""
    from taskbench.comparisons.bench.record import fmt, format_table

    spec, target, sample, model = doc["spec"], doc["target"], doc["sample"], doc["model"]
    threads = spec["workers"] * spec["threads_per_worker"]
    lines = [
        f"taskbench plan: {spec['path']} ({spec['provider']}): {spec['nodes']} nodes x "
        f"{spec['workers_per_node']} workers/node x {spec['threads_per_worker']} threads/worker "
        f"= {threads} threads; bandwidth {model['bandwidth'] / 1e9:.3g} GB/s per worker, "
        f"latency {model['latency'] * 1e6:.0f} us",
        f"target: {target['rows']:,} rows in {target['partitions']} partitions "
        f"({target['source']})",
        f"measured on {doc['data']['path']} by {sample['workers']} local workers, "
        f"{sample['repeats']} hot rounds: "
        + ", ".join(
            f"{run} {sample[run]['partitions']} x {sample[run]['rows_per_partition']:,.0f} rows"
            for run in ("layout", "small", "large")
        )
        + f"; per-task overhead {model['task_overhead'] * 1e6:.0f} us (median lag)",
    ]
    other = sample["large"]["other_cpu"]
    if other > BUSY_MACHINE:
        lines.append(
            f"note: other processes kept {other:.0%} of this machine's CPUs busy during the "
            "large run: its tasks ran slower, and the predictions are inflated"
        )
    lines.append("")
    rows = [
        [q, f"{p['seconds']:.3f}", f"{p['makespan']:.3f}", f"{p['client_seconds']:.3f}",
         fmt(p["makespan_ratio"], "{:.2f}"), str(p["tasks"]), f"{p['transfer_bytes'] / 1e6:.1f}"]
        for q, p in doc["queries"].items()
    ]  # fmt: skip
    header = ["query", "predicted s", "makespan s", "client s", "makespan ratio", "tasks",
              "transfers MB"]  # fmt: skip
    lines.append(format_table(header, rows))
    c = doc["cost"]
    lines += ["", f"total: {doc['total_seconds']:.3f} s, each query once"]
    if c["price_per_instance_hour"]:
        lines.append(
            f"cost: {c['hours']:.6f} h x {c['instances']} instances x "
            f"{c['price_per_instance_hour']} USD/h (price of {c['price_date']}) = "
            f"{c['usd']:.6f} USD; the spec's lifetime cap: {c['lifetime_usd']:.2f} USD "
            f"({c['max_lifetime_minutes']} min)"
        )
    else:
        lines.append("cost: 0 USD (a local cluster)")
    return "\n".join(lines)


# ---------------------------------------------------------------- against a compare run


def measured_seconds(run_dir: Path) -> dict[str, list[float]]:
    """The engine's hot, valid query times in memory mode of a ``compare`` run, per query."""
    from taskbench.comparisons.compare import RECORDS, read_records

    path = run_dir / RECORDS
    if not path.is_file():
        raise PlanError(f"{run_dir}: not a compare run folder (no {RECORDS})")
    try:
        records = read_records(path)
    except (ValueError, KeyError, TypeError) as e:
        raise PlanError(f"{path}: not a records file ({e})") from None
    times: dict[str, list[float]] = {}
    for r in records:
        p = r.params
        if (r.name, r.engine, r.status, p.get("mode"), p.get("cold")) == (
            "query_seconds", ENGINE, "valid", MODE, False,
        ):  # fmt: skip
            times.setdefault(p["query"], []).extend(r.values)
    if not times:
        raise PlanError(f"{path}: no valid hot {ENGINE} query records in {MODE} mode")
    return times


def against(doc: dict[str, Any], measured: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Per query both predicted and measured: predicted seconds, measured hot median (and how
    many runs), relative error (predicted − measured) / measured; None where one is missing."""
    rows = []
    for q in sorted(set(doc["queries"]) | set(measured)):
        predicted = doc["queries"].get(q, {}).get("seconds")
        times = measured.get(q, [])
        median = statistics.median(times) if times else None
        error = (predicted - median) / median if predicted is not None and median else None
        rows.append({"query": q, "predicted": predicted, "measured": median, "runs": len(times),
                     "error": error})  # fmt: skip
    return rows


def format_against(rows: list[dict[str, Any]], run_dir: Path) -> str:
    """The predicted-vs-measured table, with how many errors lie within ``TOLERANCE``."""
    from taskbench.comparisons.bench.record import fmt, format_table

    table = format_table(
        ["query", "predicted s", "measured s", "hot runs", "error", f"within {TOLERANCE:.0%}"],
        [
            [r["query"], fmt(r["predicted"], "{:.3f}"), fmt(r["measured"], "{:.3f}"),
             str(r["runs"]), fmt(None if r["error"] is None else 100 * r["error"], "{:+.1f} %"),
             "-" if r["error"] is None else ("yes" if abs(r["error"]) <= TOLERANCE else "NO")]
            for r in rows
        ],
    )  # fmt: skip
    errors = [abs(r["error"]) for r in rows if r["error"] is not None]
    within = sum(e <= TOLERANCE for e in errors)
    worst = f"; largest |error| {max(errors):.1%}" if errors else ""
    return (
        f"predicted vs measured ({ENGINE}, {MODE} mode, hot medians of {run_dir}):\n{table}\n"
        f"{within} of {len(errors)} queries within {TOLERANCE:.0%}{worst}"
    )


def read_plan(path: Path) -> dict[str, Any]:
    """A plan written by ``--json-out``."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise PlanError(f"{path}: not a plan JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("command") != "plan" or "queries" not in doc:
        raise PlanError(f"{path}: not a plan JSON (written by taskbench plan --json-out)")
    return doc


# ---------------------------------------------------------------- the command


def add_parser(subparsers: Any) -> None:
    """Register ``plan`` under ``subparsers`` (argparse)."""
    parser = subparsers.add_parser(
        "plan",
        help="predict the engine's query times and cost on a cluster spec",
        description="Measure the problem set on the real engine here on a sample of DIR, scale "
        "it to the spec's data and simulate the spec's cluster: predicted seconds, makespan "
        "ratio and cost per query. With --against RUN_DIR, beside a compare run's times.",
    )
    parser.add_argument("--spec", type=Path, help="cluster spec, e.g. infra/clusters/ec2-10.yaml")
    parser.add_argument("--data", type=Path, help="dataset directory (taskbench data generate)")
    parser.add_argument("--rows", type=parse_rows, help="target rows instead of the spec's data")
    parser.add_argument("--queries", default="all", help="all, or a comma list of q01…q12")
    parser.add_argument(
        "--bandwidth", type=positive_number, default=DEFAULT_BANDWIDTH,
        help="bytes/s of each worker's inbound link in the simulation (1e9: loopback; "
        "1.25e9 is a 10 Gb/s NIC)",
    )  # fmt: skip
    parser.add_argument(
        "--sample-rows", type=parse_rows, default=DEFAULT_SAMPLE_ROWS,
        help="rows of DIR measured at the target's partition size: as many such partitions "
        "as fit (2M: two of the generator's partitions)",
    )  # fmt: skip
    parser.add_argument(
        "--sample-workers", type=positive_int, default=min(2, len(os.sched_getaffinity(0))),
        help="engine workers (1 thread each) of the local cluster that measures",
    )  # fmt: skip
    parser.add_argument("--repeats", type=positive_int, default=DEFAULT_REPEATS,
                        help="hot rounds of the queries per run, after one cold round")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    parser.add_argument("--json-out", type=output_file, help="write the plan's JSON here")
    parser.add_argument("--against", type=Path, metavar="RUN_DIR",
                        help="a taskbench compare run folder: predicted vs measured")  # fmt: skip
    parser.add_argument(
        "--plan", type=existing_file, metavar="FILE",
        help="a plan written by --json-out, instead of measuring (with --against)",
    )  # fmt: skip
    parser.set_defaults(func=run_plan)


def run_plan(args: argparse.Namespace) -> int:
    """The ``plan`` command: 0, 1 when a query fails on the sample, 2 for bad input."""
    try:
        return _run(args)
    except PlanError as e:
        print(f"taskbench plan: error: {e}", file=sys.stderr)
        return 2
    except SampleError as e:
        print(f"taskbench plan: error: {e}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    from taskbench.comparisons.check import resolve_queries
    from taskbench.comparisons.queries import QUERIES, has_zones

    measured = measured_seconds(args.against) if args.against else None
    if args.plan:
        if measured is None:
            raise PlanError("--plan FILE compares a stored plan: give --against RUN_DIR too")
        doc = read_plan(args.plan)
    else:
        if args.spec is None or args.data is None:
            raise PlanError("--spec and --data are required (or --plan FILE --against RUN_DIR)")
        try:
            queries = resolve_queries(args.queries)
        except KeyError as e:
            raise PlanError(f"--queries: {e.args[0]}") from None
        if (args.data / "manifest.json").is_file() and not has_zones(args.data):
            queries = [q for q in queries if not QUERIES[q].needs_zones]
        doc = plan(args.spec, args.data, queries, rows=args.rows, bandwidth=args.bandwidth,
                   sample_rows=args.sample_rows, workers=args.sample_workers,
                   repeats=args.repeats, say=lambda line: print(line, file=sys.stderr))  # fmt: skip
    if measured is not None:
        doc["against"] = {"run": str(args.against), "queries": against(doc, measured)}
    if args.json_out:
        args.json_out.write_text(json.dumps(doc, indent=1) + "\n")
    if args.json:
        print(json.dumps(doc, indent=1))
        return 0
    if not args.plan:
        print(format_plan(doc))
    if measured is not None:
        print(("" if args.plan else "\n") + format_against(doc["against"]["queries"], args.against))
    return 0
