"""``taskbench bench scheduler``: the engine beside its peers, in one process and one run.

Every figure comes from this run on this machine; comparisons are ratios against the
peers measured alongside, never against numbers from elsewhere. All engines are started
first and stay up; then each round runs every engine's independent and chain graph once,
in an order rotated each round (`comparisons.bench.interleave`), ``--repeats`` rounds, so
that a slow spell of the machine falls on every engine alike. Last, one lag run of 1 ms
tasks per engine. A ratio between engines is the ratio of their median tasks/s, with a
bootstrap 95 % interval. Graphs are plain dicts (dask's ``delayed`` chains build in
quadratic time). dask.distributed manages a few hundred tasks per second here, so it gets
fewer tasks (``--peer-tasks``) and is compared in tasks per second; the output says so.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskbench.comparisons.argtypes import (
    comma_choices,
    non_negative_int,
    output_file,
    positive_int,
)
from taskbench.comparisons.bench import interleave, ratio_json, ratio_of_medians
from taskbench.comparisons.bench.console import (
    Say,
    add_output_flags,
    emit,
    link,
    log_folder,
    peer_logs,
    plural,
    progress,
    ratio_text,
    spread,
)
from taskbench.comparisons.bench.memory import peak_rss_bytes
from taskbench.comparisons.bench.record import (
    BenchResult,
    collect,
    fmt,
    format_table,
    run_metadata,
    to_document,
)
from taskbench.engine.stream import TaskRecord, TaskStream
from taskbench.engine.workloads import chain_graph, independent_graph, sleep_graph

if TYPE_CHECKING:
    from taskbench.comparisons.stats import Ratio

PEERS = ("dask",)
Get = Callable[[dict, list], Any]
StreamOf = Callable[[Callable[[], Any]], tuple[TaskStream, float]]
PARTS = (  # record name, graph, the size that says how many tasks, whether only the end is asked
    ("independent_tasks_per_s", independent_graph, "tasks", False),
    ("chain_tasks_per_s", chain_graph, "chain_tasks", True),
)


@dataclass
class Engine:
    """One engine, up and ready: how it runs a graph, and how it records a run's tasks.

    ``graph_seconds(k)``, where the engine reports it, gives the scheduler's own time to take
    in each of the last ``k`` graphs (message in to tasks placed). ``finish(metadata)`` gives
    the records read once after the rounds, while the engine is still up.
    """

    name: str
    get: Get
    stream_of: StreamOf
    threads: int
    sizes: dict[str, int]  #: tasks, chain_tasks, lag_tasks (0 skips a part)
    graph_seconds: Callable[[int], list[float]] | None = None
    finish: Callable[[dict[str, Any]], list[BenchResult | None]] | None = None


def _one_run(engine: Engine, make: Callable[[int, str], dict], n: int, last_only: bool):
    """One timed graph: (tasks/s, the scheduler's update_graph seconds or None)."""
    dsk = make(n, f"{make.__name__}-{time.monotonic_ns()}")
    keys = [list(dsk)[-1]] if last_only else list(dsk)
    t0 = time.perf_counter()
    engine.get(dsk, keys)
    rate = n / (time.perf_counter() - t0)
    seconds = engine.graph_seconds(1) if engine.graph_seconds is not None else []
    return rate, (seconds[-1] if seconds else None)


def _part(make: Callable[[int, str], dict], n: int) -> str:
    return f"{n:,} {make.__name__.removesuffix('_graph')} tasks"


def measure(
    engines: list[Engine],
    *,
    repeats: int,
    metadata: dict[str, Any],
    say: Say | None = None,
    run_one: Callable[[Engine, Callable[[int, str], dict], int, bool], tuple] = _one_run,
) -> tuple[list[BenchResult], dict[str, TaskStream], dict[str, Any]]:
    """Throughput, lag, overhead and idle records of every engine, measured in rounds.

    Returns the records, each engine's lag-run stream, and what the run did: ``order`` (the
    labels run, round by round) and ``ratios`` (the first engine's median tasks/s over each
    other's, with the interval). ``run_one`` runs one timed graph (a seam for tests).
    """
    say = say or progress("scheduler")
    for e in engines:
        warm = independent_graph(50, f"warmup-{time.monotonic_ns()}")
        e.get(warm, list(warm))
    runs: dict[str, Callable[[], tuple]] = {}
    what: dict[str, tuple[Engine, str, Callable[[int, str], dict], int]] = {}
    for name, make, size, last_only in PARTS:
        for e in engines:
            n = e.sizes[size]
            if n:
                label = f"{e.name}: {_part(make, n)}"
                runs[label] = functools.partial(run_one, e, make, n, last_only)
                what[label] = (e, name, make, n)
    rounds = interleave(runs, repeats, say)
    out: list[BenchResult | None] = []
    rates: dict[tuple[str, str], list[float]] = {}
    for label, results in rounds.results.items():
        e, name, make, n = what[label]
        rates[e.name, name] = [rate for rate, _ in results]
        out.append(BenchResult.of(name, e.name, rates[e.name, name], metadata, tasks=n))
        graph = [s / n * 1e6 for _, s in results if s is not None]
        graph_name = f"{make.__name__.removesuffix('_graph')}_update_graph_us"
        out.append(BenchResult.of(graph_name, e.name, graph or None, metadata, tasks=n))
    ratios = []
    for name, _, _, _ in PARTS:
        ours = rates.get((engines[0].name, name))
        for e in engines[1:]:
            theirs = rates.get((e.name, name))
            if ours and theirs:
                part = name.removesuffix("_tasks_per_s")
                r = ratio_of_medians(ours, theirs)
                ratios.append(ratio_json(r, engines[0].name, e.name, part=part, quantity=name))
    streams: dict[str, TaskStream] = {}
    lagged = {e.name: e for e in engines if e.sizes["lag_tasks"]}
    lag_runs = {name: functools.partial(_lag_run, e, say) for name, e in lagged.items()}
    for name, [(stream, wall)] in interleave(lag_runs, 1).results.items():
        streams[name] = stream
        out += _lag_records(lagged[name], stream, wall, metadata)
    for e in engines:
        if e.finish is not None:
            out += e.finish(metadata)
    return collect(out), streams, {"order": rounds.order, "ratios": ratios}


def _lag_run(engine: Engine, say: Say) -> tuple[TaskStream, float]:
    n = engine.sizes["lag_tasks"]
    say(f"{engine.name}: {n:,} tasks of 1 ms for lag and idle time")
    dsk = sleep_graph(n, f"sleep-{time.monotonic_ns()}")
    return engine.stream_of(lambda: engine.get(dsk, list(dsk)))


def _lag_records(
    engine: Engine, stream: TaskStream, wall: float, metadata: dict[str, Any]
) -> list[BenchResult | None]:
    """Lag percentiles, every gap (``lag_us``: the lag histogram), overhead and idle time."""
    lag = {"tasks": engine.sizes["lag_tasks"], "task_seconds": 0.001}
    lags = stream.lag_percentiles((50, 90, 99))
    out = [BenchResult.of(f"lag_{p}_us", engine.name, lags[p], metadata, **lag) for p in lags]
    out.append(BenchResult.of("lag_us", engine.name, stream.inter_task_lags(), metadata, **lag))
    if stream.records:
        overhead = stream.per_task_overhead(wall, engine.threads) * 1e6
        out.append(BenchResult.of("per_task_overhead_us", engine.name, overhead, metadata, **lag))
        idle = stream.idle_fraction(engine.threads)
        out.append(BenchResult.of("idle_fraction", engine.name, idle, metadata, **lag))
    return out


# ---------------------------------------------------------------- engines


@contextlib.contextmanager
def engine_cluster(workers: int, sizes: dict[str, int]) -> Iterator[Engine]:
    """The engine on a LocalCluster of ``workers`` × 1 thread."""
    from taskbench.engine.client import Client
    from taskbench.engine.cluster import LocalCluster

    progress("scheduler")(f"taskbench: starting a LocalCluster of {plural(workers, 'worker')}")
    with LocalCluster(workers, 1) as cluster, Client(cluster) as client:

        def stream_of(run: Callable[[], Any]) -> tuple[TaskStream, float]:
            pos = client.stream_position()
            t0 = time.perf_counter()
            run()
            wall = time.perf_counter() - t0
            stream = client.task_stream(pos)
            stream.meta = {
                "engine": "taskbench",
                "workload": f"{len(stream):,} independent 1 ms tasks",
                "title": f"taskbench engine: {len(stream):,} independent 1 ms tasks, "
                f"{plural(workers, 'worker')} × 1 thread",
            }
            return stream, wall

        def graph_seconds(k: int) -> list[float]:
            return [seconds for _, seconds in client.identity()["graph_updates"][-k:]]

        def finish(metadata: dict[str, Any]) -> list[BenchResult | None]:
            peak = peak_rss_bytes(cluster.scheduler_process.pid)
            mb = None if peak is None else peak / 1e6
            return [BenchResult.of("scheduler_peak_rss_mb", "taskbench", mb, metadata)]

        yield Engine("taskbench", client.get, stream_of, workers, sizes, graph_seconds, finish)


def quiet_dask() -> None:
    """Keep dask.distributed's INFO chatter (ours and its worker processes') off the console."""
    import logging
    import os

    os.environ["DASK_LOGGING__DISTRIBUTED"] = "error"
    logging.getLogger("distributed").setLevel(logging.ERROR)


@contextlib.contextmanager
def dask_distributed_cluster(workers: int, sizes: dict[str, int]) -> Iterator[Engine]:
    """dask.distributed on its LocalCluster of ``workers`` processes × 1 thread."""
    from distributed import Client, LocalCluster
    from taskbench.engine.stream import from_dask_task_stream

    quiet_dask()
    say = progress("scheduler")
    say(f"dask-distributed: starting a LocalCluster of {plural(workers, 'worker')}")
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
        ) as cluster,
        Client(cluster) as client,
    ):

        def stream_of(run: Callable[[], Any]) -> tuple[TaskStream, float]:
            from distributed import get_task_stream

            with get_task_stream(client) as ts:
                t0 = time.perf_counter()
                run()
                wall = time.perf_counter() - t0
            stream = from_dask_task_stream(ts.data)
            stream.meta.update(
                workload=f"{len(stream):,} independent 1 ms tasks",
                title=f"dask.distributed: {len(stream):,} independent 1 ms tasks, "
                f"{plural(workers, 'worker')} × 1 thread",
            )
            return stream, wall

        def graph_seconds(k: int) -> list[float]:
            updates = [
                msg["metrics"]["duration_seconds"]
                for _, msg in client.get_events("scheduler")
                if isinstance(msg, dict)
                and msg.get("action") == "update-graph"
                and "metrics" in msg
            ]
            return updates[-k:]

        yield Engine("dask-distributed", client.get, stream_of, workers, sizes, graph_seconds)


def dask_threaded(workers: int, sizes: dict[str, int]) -> Engine:
    """dask's threaded scheduler in this process, ``workers`` threads."""
    import threading

    import dask
    from dask.callbacks import Callback

    def get(dsk: dict, keys: list) -> Any:
        return dask.threaded.get(dsk, keys, num_workers=workers)

    def stream_of(run: Callable[[], Any]) -> tuple[TaskStream, float]:
        starts: dict = {}
        records: list[TaskRecord] = []
        threads: dict[int, int] = {}
        lock = threading.Lock()

        def pretask(key, dsk, state):
            starts[key] = time.time()

        def posttask(key, result, dsk, state, worker_id):
            stop = time.time()
            with lock:
                tid = threads.setdefault(threading.get_ident(), len(threads))
            records.append(
                TaskRecord(str(key), "sleep", "dask-threaded", tid, None, starts[key], stop, 0,
                           0.0, "memory", [])
            )  # fmt: skip

        with Callback(pretask=pretask, posttask=posttask):
            t0 = time.perf_counter()
            run()
            wall = time.perf_counter() - t0
        return TaskStream(records, {"engine": "dask-threaded"}), wall

    return Engine("dask-threaded", get, stream_of, workers, sizes)


# ---------------------------------------------------------------- command

ROWS = [
    ("independent tasks/s", "independent_tasks_per_s", "{:,.0f}"),
    ("chain tasks/s", "chain_tasks_per_s", "{:,.0f}"),
    ("lag p50 (µs)", "lag_p50_us", "{:,.1f}"),
    ("lag p90 (µs)", "lag_p90_us", "{:,.1f}"),
    ("lag p99 (µs)", "lag_p99_us", "{:,.1f}"),
    ("per-task overhead (µs)", "per_task_overhead_us", "{:,.1f}"),
    ("idle fraction (1 ms tasks)", "idle_fraction", "{:.3f}"),
    ("scheduler peak RSS (MB)", "scheduler_peak_rss_mb", "{:,.0f}"),
    ("update_graph, independent (µs/task)", "independent_update_graph_us", "{:,.1f}"),
    ("update_graph, chain (µs/task)", "chain_update_graph_us", "{:,.1f}"),
]


def _cell(results: list[BenchResult], name: str, engine: str, spec: str) -> str:
    """A record's median, with the min–max of its rounds when it has several."""
    for r in results:
        if r.name == name and r.engine == engine:
            return spread(r.values, spec) if r.statistic == "median" else fmt(r.value, spec)
    return "-"


def format_results(
    results: list[BenchResult],
    sizes: dict[str, dict[str, int]],
    ratios: list[dict[str, Any]] = (),
    repeats: int = 1,
) -> str:
    """The table (one column per engine), the task counts, and the engine's ratios."""
    engines = list(sizes)
    rows = [
        [label, *(_cell(results, name, e, spec) for e in engines)] for label, name, spec in ROWS
    ]
    table = format_table(["measure", *engines], rows, min_width=12)
    width = max(len(e) for e in engines)
    counts = [
        f"  {e + ':':{width + 1}} {s['tasks']:,} independent, {s['chain_tasks']:,} chain, "
        f"{s['lag_tasks']:,} × 1 ms"
        for e, s in sizes.items()
    ]
    lines = [
        table,
        f"tasks/s and update_graph: median of {plural(repeats, 'round')} (min–max); each round "
        "runs every engine once, in an order rotated each round",
        "tasks per engine:",
        *counts,
        "lag: per worker thread, the gap from one task's end to the next one's start while work "
        "was queued",
        "per-task overhead: (wall time − compute time ÷ threads) ÷ tasks",
        "idle fraction: share of thread time with no task running",
    ]
    for e in engines[1:]:
        mine = [r for r in ratios if r["denominator"] == e]
        if not mine:
            continue
        text = ", ".join(f"{r['part']} ×{ratio_text(_ratio(r), '{:.1f}')}" for r in mine)
        lines.append(f"taskbench vs {e}: {text}")
    if ratios:
        lines.append(
            "  (ratio of median tasks/s [bootstrap 95 % interval], same rounds; "
            "a peer with fewer tasks is compared per task)"
        )
    return "\n".join(lines)


def _ratio(r: dict[str, Any]) -> Ratio:
    from taskbench.comparisons.stats import Ratio

    return Ratio(r["value"], r["low"], r["high"], r["confidence"])


def cmd_scheduler(args: argparse.Namespace) -> int:
    peers = args.vs
    metadata = run_metadata()
    n_chain = args.tasks if args.chain_tasks is None else args.chain_tasks
    ours = {"tasks": args.tasks, "chain_tasks": n_chain, "lag_tasks": args.lag_tasks}
    sizes = {"taskbench": ours}
    peer_log = None
    with contextlib.ExitStack() as stack:
        engines = [stack.enter_context(engine_cluster(args.workers, ours))]
        if "dask" in peers:
            n_peer = min(args.peer_tasks, args.tasks)
            peer = {
                "tasks": n_peer, "chain_tasks": min(n_peer, n_chain),
                "lag_tasks": min(args.lag_tasks, n_peer),
            }  # fmt: skip
            sizes["dask-distributed"] = peer
            sizes["dask-threaded"] = ours
            peer_log = log_folder() / "dask.log"
            progress("scheduler")(f"dask.distributed's own logs go to {peer_log}")
            stack.enter_context(peer_logs(peer_log))
            engines.append(stack.enter_context(dask_distributed_cluster(args.workers, peer)))
            engines.append(dask_threaded(args.workers, ours))
        results, streams, run = measure(engines, repeats=args.repeats, metadata=metadata)
    written: dict[str, str] = {}  # engine -> file
    if args.stream_out:
        for engine, stream in streams.items():
            if engine == "taskbench":
                written[engine] = str(args.stream_out)
            elif engine == "dask-distributed" and stream.records:
                written[engine] = peer_stream_path(str(args.stream_out))
            else:
                continue
            stream.to_jsonl(written[engine])
    doc = to_document(
        "scheduler", results, metadata, workers=args.workers, threads_per_worker=1,
        repeats=args.repeats, sizes=sizes, order=run["order"], ratios=run["ratios"],
        streams={streams[e].meta["title"]: link(path, args.json_out)
                 for e, path in written.items()},
    )  # fmt: skip
    if peer_log is not None:
        doc["peer_log"] = str(peer_log)

    def table() -> str:
        cores = metadata["machine"]["cores"]
        lines = [
            f"{plural(args.workers, 'worker process', 'worker processes')} × 1 thread, "
            f"{plural(cores, 'core')}",
            format_results(results, sizes, run["ratios"], args.repeats),
        ]
        if "taskbench" in written:
            lines.append(f"engine task stream (1 ms tasks) written to {written['taskbench']}")
        if "dask-distributed" in written:
            peer_file = written["dask-distributed"]
            lines.append(f"dask.distributed task stream (1 ms tasks) written to {peer_file}")
        if peer_log is not None:
            lines.append(f"dask.distributed logs: {peer_log}")
        return "\n".join(lines)

    emit(doc, table, args)
    return 0


def peer_stream_path(stream_out: str) -> str:
    """Where dask.distributed's stream goes beside ours: ``run.jsonl`` -> ``run-dask.jsonl``."""
    root, ext = os.path.splitext(stream_out)
    return f"{root}-dask{ext or '.jsonl'}"


def add_parser(bsub: Any) -> None:
    """Add ``scheduler`` to ``taskbench bench``'s subcommands."""
    sch = bsub.add_parser("scheduler", help="throughput, lag and overhead vs dask")
    sch.add_argument(
        "--tasks", type=non_negative_int, default=20_000, help="independent tasks (0 skips)"
    )
    sch.add_argument(
        "--chain-tasks", type=non_negative_int, help="chain length (default --tasks; 0 skips)"
    )
    sch.add_argument("--workers", type=positive_int, default=2, help="worker processes")
    sch.add_argument(
        "--lag-tasks", type=non_negative_int, default=2_000, help="1 ms tasks (0 skips)"
    )
    sch.add_argument(
        "--peer-tasks", type=positive_int, default=2_000, help="tasks for dask.distributed"
    )
    sch.add_argument(
        "--repeats", type=positive_int, default=3,
        help="rounds; each runs every engine's graphs once, the order rotated each round",
    )  # fmt: skip
    sch.add_argument(
        "--vs", type=comma_choices(PEERS, "peer"), default=[], help="comma-separated peers: dask"
    )
    add_output_flags(sch)
    sch.add_argument(
        "--stream-out", type=output_file,
        help="write the engine's lag-run task stream (JSONL); dask's goes beside it (NAME-dask)",
    )  # fmt: skip
    sch.set_defaults(func=cmd_scheduler)
