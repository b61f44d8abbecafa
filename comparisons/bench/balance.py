"""``taskbench bench balance``: load-balance quality per policy and workload, in one run.

Real runs use a ``LocalCluster`` (2 workers × 1 thread by default); ``--sim`` runs the
simulator instead (8 workers × 2 threads by default). The figure is the makespan ratio
(makespan ÷ the workload's lower bound, see ``engine.workloads``) with the idle fraction.
Real runs also print what the simulator predicted for the same cluster, so the simulator
is checked against reality in every run; ``--vs dask`` adds dask.distributed on the same
real workloads. Every run also counts which rule placed its tasks (``placed_by``: the policy,
eager hand-over, a steal), because eager hand-over can pin work before any policy is asked,
and the pictures are titled for what happened, not for the policy's name alone.

Real runs are measured in ``--repeats`` rounds: each round runs every workload under every
policy (and dask) once, each on a fresh cluster, the order rotated one place per round
(`comparisons.bench.interleave`); every figure's record holds one value per round, and its
value is the median. A policy is compared with dask by the ratio of median makespans, with
its bootstrap 95 % interval. The simulator is deterministic, so ``--sim`` runs each once.
The pictures (``--plot``) and streams (``--stream-out``) show, for each panel, the round
whose makespan ratio is the median one.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from taskbench.comparisons.argtypes import (
    comma_choices,
    output_file,
    output_folder,
    positive_int,
    positive_number,
)
from taskbench.comparisons.bench import Rounds, interleave, ratio_json, ratio_of_medians
from taskbench.comparisons.bench.console import (
    Say,
    add_output_flags,
    emit,
    link,
    log_folder,
    peer_logs,
    plural,
    progress,
)
from taskbench.comparisons.bench.record import (
    BenchResult,
    collect,
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
    figures: dict[str, Any] | list[dict[str, Any]],
    engine: str,
    metadata: dict[str, Any],
    **params: Any,
) -> list[BenchResult]:
    """``run_sim``/``run_real``/``run_dask`` figures as records: one run's, or one value per
    round from a list of runs."""
    runs = figures if isinstance(figures, list) else [figures]
    return collect(
        BenchResult.of(name, engine, [f[name] for f in runs if f.get(name) is not None] or None,
                       metadata, **params)
        for name in FIGURES
    )  # fmt: skip


DASK = "dask"  #: the column, subject and record engine of dask.distributed
#: One real run of a workload by a subject (a policy or `DASK`): its figures and stream.
RunOne = Callable[[str, str], tuple[dict[str, Any], TaskStream]]


def measure_real(
    workloads: list[str],
    subjects: list[str],
    run_one: RunOne,
    repeats: int,
    metadata: dict[str, Any],
    say: Say | None = None,
) -> tuple[list[BenchResult], dict[tuple[str, str], list[TaskStream]], Rounds, list[dict]]:
    """Every workload under every subject (policies, and `DASK`), in interleaved rounds.

    Returns the records (one value per round; a policy's also carry the simulator's
    prediction), each (workload, subject)'s streams in round order, the rounds, and each
    policy's ratio to dask: median dask makespan ÷ median policy makespan, with its interval
    (above 1, the policy finished first).
    """
    labels = {f"{w}, {p}": (w, p) for w in workloads for p in subjects}
    runs = {label: functools.partial(run_one, w, p) for label, (w, p) in labels.items()}
    rounds = interleave(runs, repeats, say)
    results: list[BenchResult] = []
    streams: dict[tuple[str, str], list[TaskStream]] = {}
    makespans: dict[tuple[str, str], list[float]] = {}
    for label, done in rounds.results.items():
        w, p = labels[label]
        figures = [f for f, _ in done]
        streams[w, p] = [stream for _, stream in done]
        makespans[w, p] = [f["makespan_s"] for f in figures]
        engine = DASK if p == DASK else "taskbench"
        results += records(figures, engine, metadata, workload=w, policy=p, mode="real")
    ratios = []
    for w in workloads:
        theirs = makespans.get((w, DASK))
        for p in subjects:
            ours = makespans.get((w, p))
            if p != DASK and ours and theirs:
                r = ratio_of_medians(theirs, ours)
                ratios.append(ratio_json(r, DASK, p, workload=w, quantity="makespan_s"))
    return results, streams, rounds, ratios


def median_run(streams: list[TaskStream], ratios: list[float]) -> tuple[TaskStream, float]:
    """The run whose makespan ratio is nearest the median (the earliest of a tie)."""
    middle = statistics.median(ratios)
    i = min(range(len(ratios)), key=lambda k: (abs(ratios[k] - middle), k))
    return streams[i], ratios[i]


def format_results(
    results: list[BenchResult],
    workloads: list[str],
    columns: list[str],
    ratios: list[dict[str, Any]] = (),
) -> str:
    """Makespan ratio (idle fraction) per workload and policy, with the spread of the rounds;
    the comparison with dask and the simulator check, if any."""

    def record(name: str, workload: str, column: str) -> BenchResult | None:
        return _record(results, name, workload, column)

    def figure(name: str, workload: str, column: str) -> float | None:
        r = record(name, workload, column)
        return None if r is None else r.value

    rows = []
    rounds = 1
    for w in workloads:
        cells = []
        for c in columns:
            ratio, idle = record("makespan_ratio", w, c), figure("idle_fraction", w, c)
            if ratio is None:
                cells.append("-")
                continue
            rounds = max(rounds, len(ratio.values))
            low, high = min(ratio.values), max(ratio.values)
            spread = f" {low:.2f}–{high:.2f}" if len(ratio.values) > 1 else ""
            cells.append(f"{ratio.value:.2f}{spread}" + ("" if idle is None else f" ({idle:.2f})"))
        rows.append([w, *cells])
    head = "makespan ratio (idle fraction) per workload and policy"
    if rounds > 1:
        head = (f"makespan ratio, median and min–max of {rounds} rounds (idle fraction, median) "
                "per workload and policy")  # fmt: skip
    lines = [head]
    lines += [format_table(["workload", *columns], rows, min_width=20), *DEFINITIONS]
    if ratios:
        policies = [c for c in columns if c != DASK]
        found = {(r["workload"], r["denominator"]): r for r in ratios}
        table = [[w, *(_ratio_cell(found.get((w, p))) for p in policies)] for w in workloads]
        lines += ["", "against dask.distributed: median dask makespan ÷ median policy makespan "
                  "[bootstrap 95 % interval]; above 1, the policy finished first"]  # fmt: skip
        lines.append(format_table(["workload", *policies], table, min_width=20))
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
        lines += ["", "simulator check: predicted/measured (median) makespan (s), same cluster"]
        lines.append(format_table(["workload", *columns], checked, min_width=20))
    return "\n".join(lines)


def _record(
    results: list[BenchResult], name: str, workload: str, column: str
) -> BenchResult | None:
    """The record of ``name`` for this workload and column (a policy, or dask)."""
    engine = DASK if column == DASK else "taskbench"
    for r in results:
        same = r.params.get("workload") == workload and r.params.get("policy") == column
        if (r.name, r.engine) == (name, engine) and same:
            return r
    return None


def _ratio_cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "-"
    return f"{r['value']:.2f} [{r['low']:.2f}–{r['high']:.2f}]"


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


#: The skewed workload's panels: random placement beside work stealing (and dask, if run).
PANELS = (("skewed", "random"), ("skewed", "locality+stealing"), ("skewed", DASK))


def _real_run(w: str, p: str, *, workers: int, scale: float, peer_log: Path | None):
    """One real run for `measure_real`: a policy on the engine (with the simulator's
    prediction for it), or dask with its logs sent to ``peer_log``."""
    if p == DASK:
        with peer_logs(peer_log) if peer_log is not None else contextlib.nullcontext():
            return run_dask(w, workers, scale)
    figures, stream = run_real(w, p, workers, scale)
    figures[PREDICTED] = run_sim(w, p, workers, 1, scale)[0]["makespan_s"]
    return figures, stream


def cmd_balance(args: argparse.Namespace) -> int:
    workloads = args.workloads or list(NAMES)
    policies = args.policies or list(POLICIES)
    workers = args.workers or (8 if args.sim else 2)
    scale = args.scale or (1.0 if args.sim else 0.5)  # None: the default
    threads = args.threads or (2 if args.sim else 1)
    mode = "sim" if args.sim else "real"
    metadata = run_metadata()
    say = progress("balance")
    with_dask = "dask" in args.vs and not args.sim
    subjects = policies + ([DASK] if with_dask else [])
    peer_log = log_folder() / "dask.log" if with_dask else None
    if peer_log is not None:
        say(f"dask.distributed's own logs go to {peer_log}")
    ratios: list[dict[str, Any]] = []
    order: list[list[str]] = []
    if args.sim:
        results: list[BenchResult] = []
        streams: dict[tuple[str, str], list[TaskStream]] = {}
        runs = len(workloads) * len(policies)
        for i, (w, p) in enumerate([(w, p) for w in workloads for p in policies], 1):
            say(f"{i}/{runs} {w}, {p}: simulating")
            figures, stream = run_sim(w, p, workers, threads, scale)
            streams[w, p] = [stream]
            results += records(figures, "taskbench", metadata, workload=w, policy=p, mode=mode)
    else:
        run_one = functools.partial(_real_run, workers=workers, scale=scale, peer_log=peer_log)
        results, streams, rounds, ratios = measure_real(
            workloads, subjects, run_one, args.repeats, metadata, say
        )
        order = rounds.order
    label = "simulated" if args.sim else "real LocalCluster"
    cluster = f"{plural(workers, 'worker')} × {plural(threads, 'thread')}"
    shown: dict[tuple[str, str], tuple[TaskStream, str]] = {}  # panel -> (stream, its title)
    for w, p in PANELS:
        if (w, p) not in streams:
            continue
        runs = _record(results, "makespan_ratio", w, p).values
        stream, ratio = median_run(streams[w, p], runs)
        name = "dask.distributed" if p == DASK else f"policy {p}"
        which = f", the median of {len(runs)} rounds" if len(runs) > 1 else ""
        title = f"{name}: makespan ratio {ratio:.2f}{which}\n{what_happened(stream)}"
        shown[w, p] = stream, title
    pair = [k for k in PANELS[:2] if k in shown]
    if args.plot and len(pair) == 2:
        from taskbench.engine.plot import plot_task_stream

        panels = [k for k in PANELS if k in shown]
        engines = "taskbench engine" + (" and dask.distributed" if len(panels) > 2 else "")
        plot_task_stream([shown[k][0] for k in panels], args.plot,
                         titles=[shown[k][1] for k in panels],
                         title=f"skewed workload ({label}, {cluster}) on the {engines}: "
                         "makespan ratio, and what placed the tasks")  # fmt: skip
    written: dict[str, str] = {}  # panel title -> file
    if args.stream_out:
        folder = Path(args.stream_out)
        folder.mkdir(exist_ok=True)
        for (w, p), (stream, title) in shown.items():
            path = folder / f"{w}-{p}.jsonl"
            stream.meta.update(title=title, workload=w, policy=p, mode=mode,
                               engine=DASK if p == DASK else "taskbench")  # fmt: skip
            stream.to_jsonl(path)
            written[title] = str(path)
    doc = to_document(
        "balance", results, metadata, mode=mode, workers=workers, threads=threads,
        scale=scale, repeats=1 if args.sim else args.repeats, order=order, ratios=ratios,
        streams={title: link(path, args.json_out) for title, path in written.items()},
    )  # fmt: skip
    if peer_log is not None:
        doc["peer_log"] = str(peer_log)

    def table() -> str:
        lines = [f"{label}: {cluster}, scale {scale}"]
        columns = policies + ([DASK] if with_dask else [])
        lines.append(format_results(results, workloads, columns, ratios))
        if args.plot:
            lines.append(f"wrote {args.plot}" if len(pair) == 2 else
                         "no picture: it needs the skewed workload under random and "
                         "locality+stealing")  # fmt: skip
        for title, path in written.items():
            lines.append(f"task stream ({title.splitlines()[0]}) written to {path}")
        if args.stream_out and not written:
            lines.append("no task streams written: they are of the skewed workload under random "
                         "and locality+stealing")  # fmt: skip
        if peer_log is not None:
            lines.append(f"dask.distributed logs: {peer_log}")
        return "\n".join(lines)

    emit(doc, table, args)
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
        "--vs", type=comma_choices([DASK], "peer"), default=[],
        help="peer on the same real workloads: dask",
    )  # fmt: skip
    bal.add_argument(
        "--repeats", type=positive_int, default=3,
        help="rounds of the real runs, each running every workload under every policy (and "
        "dask) once, the order rotated each round; --sim runs once (it is deterministic)",
    )  # fmt: skip
    bal.add_argument(
        "--plot", type=output_file, help="PNG: skewed, random beside locality+stealing"
    )
    bal.add_argument(
        "--stream-out", type=output_folder, metavar="DIR",
        help="write the skewed workload's task streams (random, locality+stealing, and dask if "
        "run) as DIR/skewed-POLICY.jsonl",
    )  # fmt: skip
    add_output_flags(bal)
    bal.set_defaults(func=cmd_balance)
