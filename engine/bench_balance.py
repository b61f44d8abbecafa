"""``taskbench bench balance``: load-balance quality per policy and workload, in one run.

Real runs use a ``LocalCluster`` (2 workers × 1 thread by default); ``--sim`` runs the
simulator instead (8 workers × 2 threads by default). The figure is the makespan ratio
(makespan ÷ the workload's lower bound, see ``engine.workloads``) with the idle fraction.
Real runs also print what the simulator predicted for the same cluster, so the simulator
is checked against reality in every run; ``--vs dask`` adds dask.distributed on the same
real workloads.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from typing import Any

from taskbench.engine.sim import simulate
from taskbench.engine.stream import TaskStream
from taskbench.engine.workloads import NAMES, Workload, make

POLICIES = {
    "random": ("random", False),
    "round-robin": ("round-robin", False),
    "locality": ("locality", False),
    "locality+stealing": ("locality", True),
}


def _result(stream: TaskStream, workload: Workload, n_workers: int, threads: int, joins=None):
    if joins:
        workload.join_at = joins  # the measured join times, not the planned ones
    makespan = stream.makespan()
    lower = workload.lower_bound(n_workers, threads)
    return {
        "makespan_s": makespan,
        "lower_bound_s": lower,
        "makespan_ratio": makespan / lower,
        "idle_fraction": stream.idle_fraction(n_workers * threads),
        "tasks": len(stream.records),
    }


def run_sim(name: str, policy: str, n_workers: int, threads: int, scale: float, seed: int = 0):
    workload = make(name, n_workers, threads, scale, seed)
    placement, stealing = POLICIES[policy]
    r = simulate(workload, n_workers, threads, placement=placement, stealing=stealing, seed=seed)
    r.stream.meta["workers"] = {f"sim://worker-{i}": threads for i in range(n_workers)}
    return {**_result(r.stream, workload, n_workers, threads), "steals": r.steals}, r.stream


def run_real(name: str, policy: str, n_workers: int, scale: float, seed: int = 0):
    """One workload on a fresh ``LocalCluster``; a late joiner is started during the run."""
    from taskbench.engine.client import Client
    from taskbench.engine.cluster import LocalCluster

    workload = make(name, n_workers, 1, scale, seed)
    placement, stealing = POLICIES[policy]
    late = sorted(workload.join_at)
    envs = workload.worker_env(n_workers)
    with LocalCluster(
        n_workers - len(late), 1, placement=placement, stealing=stealing, seed=seed,
        worker_env=envs,
    ) as cluster, Client(cluster) as client:  # fmt: skip
        client.get({"warmup": (sum, [1, 2])}, "warmup")
        start_pos = client.stream_position()
        joins: dict[int, float] = {}
        t0 = time.time()

        def join_later() -> None:
            for index in late:
                time.sleep(max(0.0, workload.join_at[index] - (time.time() - t0)))
                cluster.add_worker(env=envs[index])
                client.wait_for_workers(n_workers - len(late) + len(joins) + 1, timeout=60)
                joins[index] = time.time() - t0

        joiner = threading.Thread(target=join_later, daemon=True)
        joiner.start()
        client.get(workload.graph, workload.keys)
        joiner.join(60)
        stream = client.task_stream(start_pos)
        stream.meta["workers"] = client.identity()["workers"]
    origin = stream.origin()
    joins = {i: t0 + t - origin for i, t in joins.items()}  # relative to the first start
    return _result(stream, workload, n_workers, 1, joins), stream


def run_dask(name: str, n_workers: int, scale: float, seed: int = 0):
    """The same workload on dask.distributed (its own placement and stealing)."""
    from distributed import Client, Nanny, Scheduler, SpecCluster, get_task_stream
    from taskbench.engine.bench import quiet_dask
    from taskbench.engine.stream import from_dask_task_stream

    quiet_dask()
    workload = make(name, n_workers, 1, scale, seed)
    envs = workload.worker_env(n_workers)
    late = sorted(workload.join_at)
    specs = {
        i: {"cls": Nanny, "options": {"nthreads": 1, "env": envs[i], "host": "127.0.0.1",
                                        "dashboard_address": None}}
        for i in range(n_workers) if i not in late
    }  # fmt: skip
    quiet = {"dashboard": False, "dashboard_address": None, "host": "127.0.0.1"}
    scheduler = {"cls": Scheduler, "options": quiet}
    procs = []
    with (
        SpecCluster(workers=specs, scheduler=scheduler, silence_logs=40) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(len(specs))
        joins: dict[int, float] = {}
        t0 = time.time()

        def join_later() -> None:
            for index in late:
                time.sleep(max(0.0, workload.join_at[index] - (time.time() - t0)))
                env = {**__import__("os").environ, **envs[index]}
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address,
                     "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"],
                    env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                ))  # fmt: skip
                client.wait_for_workers(len(specs) + len(joins) + 1, timeout=60)
                joins[index] = time.time() - t0

        with get_task_stream(client) as ts:
            joiner = threading.Thread(target=join_later, daemon=True)
            joiner.start()
            client.get(workload.graph, workload.keys)
            joiner.join(60)
        stream = from_dask_task_stream(ts.data)
        for p in procs:
            p.terminate()
    origin = stream.origin()
    joins = {i: t0 + t - origin for i, t in joins.items()}
    return _result(stream, workload, n_workers, 1, joins), stream


def format_table(results: dict[str, dict[str, dict]], predicted: dict | None) -> str:
    engines = list(next(iter(results.values())))
    lines = ["makespan ratio (idle fraction)".ljust(16) + "".join(e.rjust(22) for e in engines)]
    for workload, row in results.items():
        cells = [f"{row[e]['makespan_ratio']:.2f} ({row[e]['idle_fraction']:.2f})" for e in engines]
        lines.append(workload.ljust(16) + "".join(c.rjust(22) for c in cells))
    if predicted:
        lines.append("")
        lines.append("simulator check: predicted vs measured makespan (s), same cluster")
        for workload, row in predicted.items():
            cells = []
            for e, sim in row.items():
                real = results[workload][e]["makespan_s"]
                cells.append(f"{sim:.2f}/{real:.2f} {100 * (sim - real) / real:+.0f}%")
            lines.append(workload.ljust(16) + "".join(c.rjust(22) for c in cells))
    return "\n".join(lines)


def cmd_balance(args: argparse.Namespace) -> int:
    workloads = args.workloads.split(",") if args.workloads else list(NAMES)
    policies = args.policies.split(",") if args.policies else list(POLICIES)
    for w in workloads:
        if w not in NAMES:
            print(f"taskbench: unknown workload {w!r}; known: {', '.join(NAMES)}", file=sys.stderr)
            return 2
    for p in policies:
        if p not in POLICIES:
            print(f"taskbench: unknown policy {p!r}; known: {', '.join(POLICIES)}", file=sys.stderr)
            return 2
    if args.vs and args.vs != "dask":
        print(f"taskbench: unknown peer {args.vs!r}; known: dask", file=sys.stderr)
        return 2
    workers = args.workers or (8 if args.sim else 2)
    args.scale = args.scale or (1.0 if args.sim else 0.5)
    threads = args.threads or (2 if args.sim else 1)
    results: dict[str, dict[str, dict]] = {}
    predicted: dict[str, dict[str, float]] = {}
    streams: dict[tuple[str, str], TaskStream] = {}
    for w in workloads:
        results[w] = {}
        predicted[w] = {}
        for p in policies:
            if args.sim:
                results[w][p], streams[w, p] = run_sim(w, p, workers, threads, args.scale)
            else:
                results[w][p], streams[w, p] = run_real(w, p, workers, args.scale)
                predicted[w][p] = run_sim(w, p, workers, 1, args.scale)[0]["makespan_s"]
        if args.vs == "dask" and not args.sim:
            results[w]["dask"], streams[w, "dask"] = run_dask(w, workers, args.scale)
    if args.plot:
        from taskbench.engine.plot import plot_task_stream

        pair = [("skewed", "random"), ("skewed", "locality+stealing")]
        if all(k in streams for k in pair):
            plot_task_stream([streams[k] for k in pair], args.plot,
                             title="skewed workload: random placement beside locality + stealing",
                             titles=[f"{p}: makespan ratio {results[w][p]['makespan_ratio']:.2f}"
                                     for w, p in pair])  # fmt: skip
    if args.json:
        mode = "sim" if args.sim else "real"
        print(json.dumps({"mode": mode, "workers": workers, "threads": threads,
                          "results": results, "sim_predicted_makespan_s": predicted or None},
                         indent=2))  # fmt: skip
    else:
        mode = "simulated" if args.sim else "real LocalCluster"
        print(f"{mode}: {workers} workers × {threads} threads, scale {args.scale}")
        print(format_table(results, None if args.sim else predicted))
        if args.plot:
            print(f"wrote {args.plot}")
    return 0


def add_parser(bsub: Any) -> None:
    bal = bsub.add_parser("balance", help="load-balance quality per policy and workload")
    bal.add_argument("--sim", action="store_true", help="simulate instead of running for real")
    bal.add_argument("--workers", type=int, default=0, help="default 2 real, 8 simulated")
    bal.add_argument("--threads", type=int, default=0, help="default 1 real, 2 simulated")
    bal.add_argument(
        "--scale", type=float, default=0.0,
        help="about 2 s × scale of work per thread (default 1 simulated, 0.5 real)",
    )  # fmt: skip
    bal.add_argument("--workloads", default="", help=f"comma-separated: {','.join(NAMES)}")
    bal.add_argument("--policies", default="", help=f"comma-separated: {','.join(POLICIES)}")
    bal.add_argument("--vs", default="", help="peer on the same real workloads: dask")
    bal.add_argument("--plot", help="PNG: skewed, random beside locality+stealing")
    bal.add_argument("--json", action="store_true")
    bal.set_defaults(func=cmd_balance)
