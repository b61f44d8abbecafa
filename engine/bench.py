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
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import psutil
from taskbench.engine.stream import TaskRecord, TaskStream

LAG_TASK_SECONDS = 0.001


def noop(x: object) -> None:
    return None


def inc(x: int) -> int:
    return x + 1


def busy_sleep(x: object, seconds: float = LAG_TASK_SECONDS) -> object:
    time.sleep(seconds)
    return x


def independent_graph(n: int, name: str = "noop") -> dict:
    return {(name, i): (noop, i) for i in range(n)}


def chain_graph(n: int, name: str = "inc") -> dict:
    dsk: dict = {(name, 0): (inc, 0)}
    for i in range(1, n):
        dsk[(name, i)] = (inc, (name, i - 1))
    return dsk


def sleep_graph(n: int, name: str = "sleep") -> dict:
    return {(name, i): (busy_sleep, i) for i in range(n)}


def _timed(get: Callable, dsk: dict, keys: list) -> float:
    t0 = time.perf_counter()
    get(dsk, keys)
    return time.perf_counter() - t0


def _rate(get: Callable, make: Callable[[int, str], dict], n: int, repeats: int, last_only: bool):
    """Median tasks/s over ``repeats`` runs (fresh keys each time), and the spread."""
    rates = []
    for r in range(repeats):
        dsk = make(n, f"{make.__name__}-{r}-{time.monotonic_ns()}")
        keys = [list(dsk)[-1]] if last_only else list(dsk)
        rates.append(n / _timed(get, dsk, keys))
    return statistics.median(rates), min(rates), max(rates)


def _summary(
    get: Callable,
    n_tasks: int,
    n_chain: int,
    lag_tasks: int,
    threads: int,
    repeats: int,
    stream_of: Callable[[Callable[[], Any]], tuple[TaskStream, float]],
) -> tuple[dict, TaskStream]:
    """Each part with a count of 0 is skipped (its figures are None)."""
    get(independent_graph(50, "warmup"), list(independent_graph(50, "warmup")))
    out: dict[str, Any] = {"independent_tasks": n_tasks, "chain_tasks": n_chain}
    out["lag_tasks"] = lag_tasks
    for part, make, n, last_only in (
        ("independent", independent_graph, n_tasks, False),
        ("chain", chain_graph, n_chain, True),
    ):
        rate, lo, hi = _rate(get, make, n, repeats, last_only) if n else (None, None, None)
        out[f"{part}_tasks_per_s"], out[f"{part}_range"] = rate, [lo, hi]
    stream = TaskStream()
    if lag_tasks:
        dsk = sleep_graph(lag_tasks, f"sleep-{time.monotonic_ns()}")
        stream, wall = stream_of(lambda: get(dsk, list(dsk)))
        lags = stream.lag_percentiles((50, 90, 99))
        out.update({f"lag_{p}_us": lags[p] for p in ("p50", "p90", "p99")})
        out["per_task_overhead_us"] = stream.per_task_overhead(wall, threads) * 1e6
        out["idle_fraction"] = stream.idle_fraction(threads)
    return out, stream


# ---------------------------------------------------------------- engines


def run_engine(n_tasks: int, n_chain: int, lag_tasks: int, workers: int, repeats: int):
    from taskbench.engine.client import Client
    from taskbench.engine.cluster import LocalCluster

    with LocalCluster(workers, 1) as cluster, Client(cluster) as client:

        def stream_of(run: Callable[[], Any]) -> tuple[TaskStream, float]:
            pos = client.stream_position()
            t0 = time.perf_counter()
            run()
            wall = time.perf_counter() - t0
            return client.task_stream(pos), wall

        out, stream = _summary(client.get, n_tasks, n_chain, lag_tasks, workers, repeats, stream_of)
        out["scheduler_peak_rss_mb"] = peak_rss_mb(cluster.scheduler_process.pid)
    stream.meta = {"engine": "taskbench", "title": "taskbench engine: 1 ms tasks"}
    return out, stream


def quiet_dask() -> None:
    """Keep dask.distributed's INFO chatter (ours and its worker processes') off the console."""
    import logging
    import os

    os.environ["DASK_LOGGING__DISTRIBUTED"] = "error"
    logging.getLogger("distributed").setLevel(logging.ERROR)


def run_dask_distributed(n_tasks: int, n_chain: int, lag_tasks: int, workers: int, repeats: int):
    from distributed import Client, LocalCluster
    from taskbench.engine.stream import from_dask_task_stream

    quiet_dask()
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

        out, stream = _summary(client.get, n_tasks, n_chain, lag_tasks, workers, repeats, stream_of)
    return out, stream


def run_dask_threaded(n_tasks: int, n_chain: int, lag_tasks: int, workers: int, repeats: int):
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

    return _summary(get, n_tasks, n_chain, lag_tasks, workers, repeats, stream_of)


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
]


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM on Linux; current RSS elsewhere), in MB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return psutil.Process(pid).memory_info().rss / 1e6


def machine() -> dict[str, Any]:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": psutil.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
    }


def format_table(results: dict[str, dict]) -> str:
    names = list(results)
    width = max(len(r[0]) for r in ROWS) + 2
    cols = [max(14, len(n) + 2) for n in names]
    lines = ["".ljust(width) + "".join(n.rjust(c) for n, c in zip(names, cols, strict=True))]
    for label, field, fmt in ROWS:
        cells = []
        for n, c in zip(names, cols, strict=True):
            v = results[n].get(field)
            cells.append(("-" if v is None else fmt.format(v)).rjust(c))
        lines.append(label.ljust(width) + "".join(cells))
    sizes = "; ".join(
        f"{n}: {r['independent_tasks']:,} independent, {r['chain_tasks']:,} chain, "
        f"{r['lag_tasks']:,} × 1 ms"
        for n, r in results.items()
    )
    lines.append(f"tasks per engine — {sizes}")
    base = results.get("taskbench")
    if base:
        for n, r in results.items():
            if n == "taskbench":
                continue
            ratios = [
                f"{part} ×{base[f'{part}_tasks_per_s'] / r[f'{part}_tasks_per_s']:.1f}"
                for part in ("independent", "chain")
                if base[f"{part}_tasks_per_s"] and r[f"{part}_tasks_per_s"]
            ]
            lines.append(f"taskbench vs {n}: {', '.join(ratios)} (tasks/s, same run)")
    return "\n".join(lines)


def cmd_scheduler(args: argparse.Namespace) -> int:
    peers = [p for p in (args.vs or "").split(",") if p]
    unknown = set(peers) - {"dask"}
    if unknown:
        print(f"taskbench: unknown peer(s) {sorted(unknown)}; known: dask", file=sys.stderr)
        return 2
    results: dict[str, dict] = {}
    streams: dict[str, TaskStream] = {}
    common = {"workers": args.workers, "repeats": args.repeats}
    n_chain = args.tasks if args.chain_tasks is None else args.chain_tasks
    results["taskbench"], streams["taskbench"] = run_engine(
        args.tasks, n_chain, args.lag_tasks, **common
    )
    if "dask" in peers:
        n_peer = min(args.peer_tasks, args.tasks)
        results["dask-distributed"], streams["dask-distributed"] = run_dask_distributed(
            n_peer, n_peer, min(args.lag_tasks, n_peer), **common
        )
        results["dask-threaded"], streams["dask-threaded"] = run_dask_threaded(
            args.tasks, n_chain, args.lag_tasks, **common
        )
    if args.stream_out:
        streams["taskbench"].to_jsonl(args.stream_out)
    if args.json:
        print(json.dumps({**results, "meta": {"machine": machine(), "workers": args.workers,
                                               "threads_per_worker": 1}}, indent=2))  # fmt: skip
    else:
        print(f"{args.workers} worker processes × 1 thread, {machine()['cores']} cores")
        print(format_table(results))
        if args.stream_out:
            print(f"engine task stream (1 ms tasks) written to {args.stream_out}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="side-by-side measurements in one run")
    bsub = bench.add_subparsers(dest="suite", required=True)
    sch = bsub.add_parser("scheduler", help="throughput, lag and overhead vs dask")
    sch.add_argument("--tasks", type=int, default=20_000)
    sch.add_argument("--chain-tasks", type=int, help="chain length (default --tasks; 0 skips)")
    sch.add_argument("--workers", type=int, default=2)
    sch.add_argument("--lag-tasks", type=int, default=2_000, help="1 ms tasks (0 skips)")
    sch.add_argument("--peer-tasks", type=int, default=2_000, help="tasks for dask.distributed")
    sch.add_argument("--repeats", type=int, default=3)
    sch.add_argument("--vs", default="", help="comma-separated peers: dask")
    sch.add_argument("--json", action="store_true")
    sch.add_argument("--stream-out", help="write the engine's lag-run task stream (JSONL)")
    sch.set_defaults(func=cmd_scheduler)

    from taskbench.engine import bench_balance, bench_shuffle

    bench_balance.add_parser(bsub)
    bench_shuffle.add_parser(bsub)
