"""``taskbench bench scheduler``: the engine beside its peers, in one process and one run.

Every figure comes from this run on this machine; comparisons are ratios against the
peers measured alongside, never against numbers from elsewhere. Graphs are plain dicts
(dask's ``delayed`` chains build in quadratic time). dask.distributed manages a few
hundred tasks per second here, so it gets fewer tasks (``--peer-tasks``) and is compared
in tasks per second; the output says so.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

from taskbench.comparisons.argtypes import (
    comma_choices,
    non_negative_int,
    output_file,
    positive_int,
)
from taskbench.comparisons.bench.console import Say, log_folder, peer_logs, plural, progress
from taskbench.comparisons.bench.memory import peak_rss_bytes
from taskbench.comparisons.bench.record import (
    BenchResult,
    collect,
    find,
    fmt,
    format_table,
    run_metadata,
    to_document,
)
from taskbench.engine.stream import TaskRecord, TaskStream
from taskbench.engine.workloads import chain_graph, independent_graph, sleep_graph

PEERS = ("dask",)
Get = Callable[[dict, list], Any]
StreamOf = Callable[[Callable[[], Any]], tuple[TaskStream, float]]


def _rates(
    get: Get, make: Callable[[int, str], dict], n: int, repeats: int, last_only: bool, say: Say
):
    """Tasks/s of each of ``repeats`` runs (fresh keys each time)."""
    rates = []
    for r in range(repeats):
        say(f"{n:,} {make.__name__.removesuffix('_graph')} tasks, repeat {r + 1}/{repeats}")
        dsk = make(n, f"{make.__name__}-{r}-{time.monotonic_ns()}")
        keys = [list(dsk)[-1]] if last_only else list(dsk)
        t0 = time.perf_counter()
        get(dsk, keys)
        rates.append(n / (time.perf_counter() - t0))
    return rates


def measure(
    engine: str,
    get: Get,
    stream_of: StreamOf,
    *,
    tasks: int,
    chain_tasks: int,
    lag_tasks: int,
    threads: int,
    repeats: int,
    metadata: dict[str, Any],
    graph_seconds: Callable[[int], list[float]] | None = None,
    say: Say | None = None,
) -> tuple[list[BenchResult], TaskStream]:
    """Throughput, lag, overhead and idle records of one engine; a part with 0 tasks is skipped.

    ``graph_seconds(k)``, where the engine reports it, gives the scheduler's own time to take
    in each of the last ``k`` graphs (message in to tasks placed): ``*_update_graph_us``, in
    microseconds per task, so that graphs of different sizes compare. ``say`` hears of each
    step (default: a ``[scheduler] engine:`` line on stderr).
    """
    if say is None:
        say = _say_for(engine)
    get(independent_graph(50, "warmup"), list(independent_graph(50, "warmup")))
    out: list[BenchResult | None] = []
    for name, make, n, last_only in (
        ("independent_tasks_per_s", independent_graph, tasks, False),
        ("chain_tasks_per_s", chain_graph, chain_tasks, True),
    ):
        if n:
            rates = _rates(get, make, n, repeats, last_only, say)
            out.append(BenchResult.of(name, engine, rates, metadata, tasks=n))
            if graph_seconds is not None:
                per_task = [s / n * 1e6 for s in graph_seconds(repeats)]
                graph = "independent" if make is independent_graph else "chain"
                out.append(
                    BenchResult.of(f"{graph}_update_graph_us", engine, per_task, metadata, tasks=n)
                )
    stream = TaskStream()
    if lag_tasks:
        say(f"{lag_tasks:,} tasks of 1 ms for lag and idle time")
        dsk = sleep_graph(lag_tasks, f"sleep-{time.monotonic_ns()}")
        stream, wall = stream_of(lambda: get(dsk, list(dsk)))
        lags = stream.lag_percentiles((50, 90, 99))
        lag = {"tasks": lag_tasks, "task_seconds": 0.001}
        for p in ("p50", "p90", "p99"):
            out.append(BenchResult.of(f"lag_{p}_us", engine, lags[p], metadata, **lag))
        overhead = stream.per_task_overhead(wall, threads) * 1e6
        out.append(BenchResult.of("per_task_overhead_us", engine, overhead, metadata, **lag))
        idle = stream.idle_fraction(threads)
        out.append(BenchResult.of("idle_fraction", engine, idle, metadata, **lag))
    return collect(out), stream


def _say_for(engine: str) -> Say:
    say = progress("scheduler")
    return lambda message: say(f"{engine}: {message}")


# ---------------------------------------------------------------- engines


def run_engine(workers: int, metadata: dict[str, Any], **sizes: Any):
    from taskbench.engine.client import Client
    from taskbench.engine.cluster import LocalCluster

    _say_for("taskbench")(f"starting a LocalCluster of {plural(workers, 'worker')}")
    with LocalCluster(workers, 1) as cluster, Client(cluster) as client:

        def stream_of(run: Callable[[], Any]) -> tuple[TaskStream, float]:
            pos = client.stream_position()
            t0 = time.perf_counter()
            run()
            wall = time.perf_counter() - t0
            return client.task_stream(pos), wall

        def graph_seconds(k: int) -> list[float]:
            return [seconds for _, seconds in client.identity()["graph_updates"][-k:]]

        results, stream = measure(
            "taskbench", client.get, stream_of, threads=workers, metadata=metadata,
            graph_seconds=graph_seconds, **sizes,
        )  # fmt: skip
        peak = peak_rss_bytes(cluster.scheduler_process.pid)
        rss = BenchResult.of(
            "scheduler_peak_rss_mb", "taskbench", None if peak is None else peak / 1e6, metadata
        )
    stream.meta = {
        "engine": "taskbench",
        "workload": f"{len(stream):,} independent 1 ms tasks",
        "title": f"taskbench engine: {len(stream):,} independent 1 ms tasks, "
        f"{plural(workers, 'worker')} × 1 thread",
    }
    return collect([*results, rss]), stream


def quiet_dask() -> None:
    """Keep dask.distributed's INFO chatter (ours and its worker processes') off the console."""
    import logging
    import os

    os.environ["DASK_LOGGING__DISTRIBUTED"] = "error"
    logging.getLogger("distributed").setLevel(logging.ERROR)


def run_dask_distributed(workers: int, metadata: dict[str, Any], **sizes: Any):
    from distributed import Client, LocalCluster
    from taskbench.engine.stream import from_dask_task_stream

    quiet_dask()
    _say_for("dask-distributed")(f"starting a LocalCluster of {plural(workers, 'worker')}")
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
            return from_dask_task_stream(ts.data), wall

        def graph_seconds(k: int) -> list[float]:
            updates = [
                msg["metrics"]["duration_seconds"]
                for _, msg in client.get_events("scheduler")
                if isinstance(msg, dict)
                and msg.get("action") == "update-graph"
                and "metrics" in msg
            ]
            return updates[-k:]

        results, stream = measure(
            "dask-distributed", client.get, stream_of, threads=workers, metadata=metadata,
            graph_seconds=graph_seconds, **sizes,
        )  # fmt: skip
    stream.meta.update(
        workload=f"{len(stream):,} independent 1 ms tasks",
        title=f"dask.distributed: {len(stream):,} independent 1 ms tasks, "
        f"{plural(workers, 'worker')} × 1 thread",
    )
    return results, stream


def run_dask_threaded(workers: int, metadata: dict[str, Any], **sizes: Any):
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
        return TaskStream(records), wall

    return measure("dask-threaded", get, stream_of, threads=workers, metadata=metadata, **sizes)


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


def format_results(results: list[BenchResult], sizes: dict[str, dict[str, int]]) -> str:
    """The table (one column per engine), the task counts, and the engine's ratios."""
    engines = list(sizes)
    rows = [
        [label, *(fmt(find(results, name, e), spec) for e in engines)] for label, name, spec in ROWS
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
        "tasks per engine:",
        *counts,
        "lag: per worker thread, the gap from one task's end to the next one's start while work "
        "was queued",
        "per-task overhead: (wall time − compute time ÷ threads) ÷ tasks",
        "idle fraction: share of thread time with no task running",
    ]
    for e in engines[1:]:
        ratios = []
        for part in ("independent", "chain"):
            ours = find(results, f"{part}_tasks_per_s", "taskbench")
            theirs = find(results, f"{part}_tasks_per_s", e)
            if ours and theirs:
                ratios.append(f"{part} ×{ours / theirs:.1f}")
        lines.append(f"taskbench vs {e}: {', '.join(ratios)} (tasks/s, same run)")
    return "\n".join(lines)


def cmd_scheduler(args: argparse.Namespace) -> int:
    peers = args.vs
    metadata = run_metadata()
    n_chain = args.tasks if args.chain_tasks is None else args.chain_tasks
    ours = {"tasks": args.tasks, "chain_tasks": n_chain, "lag_tasks": args.lag_tasks}
    sizes = {"taskbench": ours}
    common = {"workers": args.workers, "metadata": metadata, "repeats": args.repeats}
    results, stream = run_engine(**common, **ours)
    peer_log = peer_stream_out = None
    if "dask" in peers:
        n_peer = min(args.peer_tasks, args.tasks)
        peer = {"tasks": n_peer, "chain_tasks": n_peer, "lag_tasks": min(args.lag_tasks, n_peer)}
        sizes["dask-distributed"] = peer
        peer_log = log_folder() / "dask.log"
        progress("scheduler")(f"dask.distributed's own logs go to {peer_log}")
        with peer_logs(peer_log):
            peer_results, peer_stream = run_dask_distributed(**common, **peer)
        results += peer_results
        sizes["dask-threaded"] = ours
        results += run_dask_threaded(**common, **ours)[0]
        if args.stream_out and peer_stream.records:
            peer_stream_out = peer_stream_path(args.stream_out)
            peer_stream.to_jsonl(peer_stream_out)
    if args.stream_out:
        stream.to_jsonl(args.stream_out)
    if args.json:
        doc = to_document("scheduler", results, metadata, workers=args.workers,
                          threads_per_worker=1, repeats=args.repeats, sizes=sizes)  # fmt: skip
        if peer_log is not None:
            doc["peer_log"] = str(peer_log)
        print(json.dumps(doc, indent=2))
    else:
        cores = metadata["machine"]["cores"]
        print(f"{plural(args.workers, 'worker process', 'worker processes')} × 1 thread, "
              f"{plural(cores, 'core')}")  # fmt: skip
        print(format_results(results, sizes))
        if args.stream_out:
            print(f"engine task stream (1 ms tasks) written to {args.stream_out}")
        if peer_stream_out:
            print(f"dask.distributed task stream (1 ms tasks) written to {peer_stream_out}")
        if peer_log is not None:
            print(f"dask.distributed logs: {peer_log}")
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
    sch.add_argument("--repeats", type=positive_int, default=3, help="runs of each part")
    sch.add_argument(
        "--vs", type=comma_choices(PEERS, "peer"), default=[], help="comma-separated peers: dask"
    )
    sch.add_argument("--json", action="store_true", help="print one JSON object")
    sch.add_argument(
        "--stream-out", type=output_file, help="write the engine's lag-run task stream (JSONL)"
    )
    sch.set_defaults(func=cmd_scheduler)
