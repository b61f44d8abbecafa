"""``taskbench bench balance``: load-balance quality per policy and workload, in one run.

Real runs use a ``LocalCluster`` (2 workers × 1 thread by default); ``--sim`` runs the
simulator instead (8 workers × 2 threads by default). The figure is the makespan ratio
(makespan ÷ the workload's lower bound, see ``engine.workloads``) with the idle fraction.
Real runs also print what the simulator predicted for the same cluster, so the simulator
is checked against reality in every run; ``--vs dask`` adds dask.distributed on the same
real workloads. Every run also counts which rule placed its tasks (``placed_by``: the policy,
eager hand-over, a steal), because eager hand-over can pin work before any policy is asked,
and the pictures are titled for what happened, not for the policy's name alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

from taskbench.comparisons.argtypes import (
    comma_choices,
    output_file,
    positive_int,
    positive_number,
)
from taskbench.comparisons.bench.console import (
    log_folder,
    peer_logs,
    plural,
    progress,
)
from taskbench.comparisons.bench.record import (
    BenchResult,
    collect,
    find,
    format_table,
    run_metadata,
    to_document,
)
from taskbench.comparisons.bench.scheduler import quiet_dask
from taskbench.engine.options import EngineOptions
from taskbench.engine.sim import simulate
from taskbench.engine.stream import TaskStream
from taskbench.engine.workloads import NAMES, Workload, make

#: Policy label -> the engine options that make it (the labels name what they set).
POLICIES: dict[str, EngineOptions] = {
    "random": EngineOptions(placement="random", stealing=False),
    "round-robin": EngineOptions(placement="round-robin", stealing=False),
    "locality": EngineOptions(placement="locality", stealing=False),
    "locality+stealing": EngineOptions(placement="locality", stealing=True),
}
PREDICTED = "sim_predicted_makespan_s"  # real runs: the simulator's makespan, same cluster
RULES = ("policy", "eager", "steal", "restriction")  # what placed a task: engine.state
FIGURES = ("makespan_s", "lower_bound_s", "makespan_ratio", "idle_fraction", "tasks", "steals",
           PREDICTED, *(f"placed_by_{rule}" for rule in RULES))  # fmt: skip
DEFINITIONS = (
    "makespan ratio: makespan ÷ its lower bound, max(Σ durations ÷ threads, critical path); 1 is "
    "best",
    "idle fraction: share of thread time with no task running",
)


def _result(stream: TaskStream, workload: Workload, n_workers: int, threads: int, joins=None):
    if joins:
        workload.join_at = joins  # the measured join times, not the planned ones
    makespan = stream.makespan()
    lower = workload.lower_bound(n_workers, threads)
    placed = stream.placement_counts()
    return {
        "makespan_s": makespan,
        "lower_bound_s": lower,
        "makespan_ratio": makespan / lower,
        "idle_fraction": stream.idle_fraction(n_workers * threads),
        "tasks": len(stream.records),
        **({f"placed_by_{rule}": placed.get(rule, 0) for rule in RULES} if placed else {}),
    }


def run_sim(name: str, policy: str, n_workers: int, threads: int, scale: float, seed: int = 0):
    """One workload in the simulator under ``policy``: its figures and task stream."""
    workload = make(name, n_workers, threads, scale, seed)
    options = POLICIES[policy].replace(seed=seed)
    r = simulate(workload, n_workers, threads, options=options)
    r.stream.meta["workers"] = {f"sim://worker-{i}": threads for i in range(n_workers)}
    return {**_result(r.stream, workload, n_workers, threads), "steals": r.steals}, r.stream


def run_real(name: str, policy: str, n_workers: int, scale: float, seed: int = 0):
    """One workload on a fresh ``LocalCluster``; a late joiner is started during the run."""
    from taskbench.engine.client import Client
    from taskbench.engine.cluster import LocalCluster

    workload = make(name, n_workers, 1, scale, seed)
    late = sorted(workload.join_at)
    envs = workload.worker_env(n_workers)
    options = POLICIES[policy].replace(seed=seed)
    with (
        LocalCluster(n_workers - len(late), 1, options=options, worker_env=envs) as cluster,
        Client(cluster) as client,
    ):
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
                env = {**os.environ, **envs[index]}
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address,
                     "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"],
                    env=env, stdout=subprocess.DEVNULL,  # stderr: to the peer log
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


def records(
    figures: dict[str, Any], engine: str, metadata: dict[str, Any], **params: Any
) -> list[BenchResult]:
    """``run_sim``/``run_real``/``run_dask`` figures as records."""
    return collect(
        BenchResult.of(name, engine, figures.get(name), metadata, **params) for name in FIGURES
    )


def format_results(results: list[BenchResult], workloads: list[str], columns: list[str]) -> str:
    """Makespan ratio (idle fraction) per workload and policy; the simulator check if any."""

    def figure(name: str, workload: str, column: str) -> float | None:
        engine = "dask" if column == "dask" else "taskbench"
        return find(results, name, engine, workload=workload, policy=column)

    rows = []
    for w in workloads:
        cells = []
        for c in columns:
            ratio, idle = figure("makespan_ratio", w, c), figure("idle_fraction", w, c)
            cells.append("-" if ratio is None else f"{ratio:.2f} ({idle:.2f})")
        rows.append([w, *cells])
    lines = ["makespan ratio (idle fraction) per workload and policy"]
    lines += [format_table(["workload", *columns], rows, min_width=20), *DEFINITIONS]
    placed = [[w, *(_placed(figure, w, c) for c in columns)] for w in workloads]
    if any(cell != "-" for row in placed for cell in row[1:]):
        lines += ["", "tasks placed by each rule: policy / eager / steal"]
        lines.append(format_table(["workload", *columns], placed, min_width=20))
        lines += [
            "policy: the placement policy chose the worker; steal: a steal moved it there",
            "eager: handed at once to the worker running its single input, before any policy",
        ]
    checked = [
        [w, *(_check(figure(PREDICTED, w, c), figure("makespan_s", w, c)) for c in columns)]
        for w in workloads
    ]
    if any(cell != "-" for row in checked for cell in row[1:]):
        lines += ["", "simulator check: predicted/measured makespan (s), same cluster"]
        lines.append(format_table(["workload", *columns], checked, min_width=20))
    return "\n".join(lines)


def _placed(figure: Any, workload: str, column: str) -> str:
    counts = [figure(f"placed_by_{rule}", workload, column) for rule in RULES]
    if counts[0] is None:
        return "-"
    text = " / ".join(f"{int(n):,}" for n in counts[:3])
    return text + (f" (+{int(counts[3]):,} restricted)" if counts[3] else "")


def what_happened(stream: TaskStream) -> str:
    """One line on what really placed the tasks of a run, from its records' ``placed_by``."""
    counts = stream.placement_counts()
    n = sum(counts.values())
    if not n:
        return "its own placement and stealing"
    eager, steal, policy = counts.get("eager", 0), counts.get("steal", 0), counts.get("policy", 0)
    if steal:
        return f"stealing moved {steal:,} of {n:,} tasks off the worker first given them"
    if eager >= n / 2:
        from taskbench.engine.plot import worker_names

        pinned = {r.worker for r in stream.records if r.placed_by == "eager"}
        where = "their input's worker"
        if len(pinned) == 1:
            where = f"{worker_names(stream)[pinned.pop()]}, {where}"
        return f"no stealing: eager hand-over kept {eager:,} of {n:,} tasks on {where}"
    return f"no stealing: the placement policy chose the worker of {policy:,} of {n:,} tasks"


def _check(sim: float | None, real: float | None) -> str:
    if sim is None or real is None:
        return "-"
    return f"{sim:.2f}/{real:.2f} {100 * (sim - real) / real:+.0f}%"


def cmd_balance(args: argparse.Namespace) -> int:
    workloads = args.workloads or list(NAMES)
    policies = args.policies or list(POLICIES)
    workers = args.workers or (8 if args.sim else 2)
    scale = args.scale or (1.0 if args.sim else 0.5)  # None: the default
    threads = args.threads or (2 if args.sim else 1)
    mode = "sim" if args.sim else "real"
    metadata = run_metadata()
    results: list[BenchResult] = []
    streams: dict[tuple[str, str], TaskStream] = {}
    say = progress("balance")
    with_dask = "dask" in args.vs and not args.sim
    runs = len(workloads) * (len(policies) + with_dask)
    peer_log = log_folder() / "dask.log" if with_dask else None
    if peer_log is not None:
        say(f"dask.distributed's own logs go to {peer_log}")
    done = 0
    for w in workloads:
        for p in policies:
            done += 1
            params = {"workload": w, "policy": p, "mode": mode}
            if args.sim:
                say(f"{done}/{runs} {w}, {p}: simulating")
                figures, streams[w, p] = run_sim(w, p, workers, threads, scale)
            else:
                say(f"{done}/{runs} {w}, {p}: running on a LocalCluster, then simulating it")
                figures, streams[w, p] = run_real(w, p, workers, scale)
                figures[PREDICTED] = run_sim(w, p, workers, 1, scale)[0]["makespan_s"]
            results += records(figures, "taskbench", metadata, **params)
        if with_dask:
            done += 1
            say(f"{done}/{runs} {w}, dask: running on dask.distributed")
            with peer_logs(peer_log):
                figures, streams[w, "dask"] = run_dask(w, workers, scale)
            results += records(figures, "dask", metadata, workload=w, policy="dask", mode=mode)
    label = "simulated" if args.sim else "real LocalCluster"
    cluster = f"{plural(workers, 'worker')} × {plural(threads, 'thread')}"
    if args.plot:
        from taskbench.engine.plot import plot_task_stream

        pair = [("skewed", "random"), ("skewed", "locality+stealing")]
        if all(k in streams for k in pair):
            panels = pair + [("skewed", "dask")] * (("skewed", "dask") in streams)
            titles = []
            for w, p in panels:
                engine = "dask" if p == "dask" else "taskbench"
                ratio = find(results, "makespan_ratio", engine, workload=w, policy=p)
                name = "dask.distributed" if p == "dask" else f"policy {p}"
                titles.append(f"{name}: makespan ratio {ratio:.2f}\n"
                              f"{what_happened(streams[w, p])}")  # fmt: skip
            engines = "taskbench engine" + (" and dask.distributed" if len(panels) > 2 else "")
            plot_task_stream([streams[k] for k in panels], args.plot, titles=titles,
                             title=f"skewed workload ({label}, {cluster}) on the {engines}: "
                             "makespan ratio, and what placed the tasks")  # fmt: skip
    if args.json:
        doc = to_document("balance", results, metadata, mode=mode, workers=workers,
                          threads=threads, scale=scale)  # fmt: skip
        if peer_log is not None:
            doc["peer_log"] = str(peer_log)
        print(json.dumps(doc, indent=2))
    else:
        print(f"{label}: {cluster}, scale {scale}")
        columns = policies + (["dask"] if with_dask else [])
        print(format_results(results, workloads, columns))
        if args.plot:
            print(f"wrote {args.plot}")
        if peer_log is not None:
            print(f"dask.distributed logs: {peer_log}")
    return 0


def add_parser(bsub: Any) -> None:
    """Add ``balance`` to ``taskbench bench``'s subcommands."""
    bal = bsub.add_parser("balance", help="load-balance quality per policy and workload")
    bal.add_argument("--sim", action="store_true", help="simulate instead of running for real")
    bal.add_argument("--workers", type=positive_int, help="default 2 real, 8 simulated")
    bal.add_argument("--threads", type=positive_int, help="default 1 real, 2 simulated")
    bal.add_argument(
        "--scale", type=positive_number,
        help="about 2 s × scale of work per thread (default 1 simulated, 0.5 real)",
    )  # fmt: skip
    bal.add_argument(
        "--workloads", type=comma_choices(NAMES, "workload"), default=[],
        help=f"comma-separated: {','.join(NAMES)} (default: all)",
    )  # fmt: skip
    bal.add_argument(
        "--policies", type=comma_choices(POLICIES, "policy"), default=[],
        help=f"comma-separated: {','.join(POLICIES)} (default: all)",
    )  # fmt: skip
    bal.add_argument(
        "--vs", type=comma_choices(["dask"], "peer"), default=[],
        help="peer on the same real workloads: dask",
    )  # fmt: skip
    bal.add_argument(
        "--plot", type=output_file, help="PNG: skewed, random beside locality+stealing"
    )
    bal.add_argument("--json", action="store_true", help="print one JSON object")
    bal.set_defaults(func=cmd_balance)
