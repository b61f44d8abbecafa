"""Synthetic run folders as `taskbench compare` writes them, with bench documents and streams.

Five engines (spark skipped: no Java), three queries, three runs, both modes. Planted: duckdb
answers q02 wrongly in memory mode (when ``wrong``), dask times out on q03 in scan mode, and
taskbench's q01 run 2 in memory mode was recorded twice by a resumed run (the later wins).
"""

from __future__ import annotations

import io
import json
import random
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from taskbench.comparisons.bench.record import BenchResult, to_document

ENGINES = ["engine", "pandas", "duckdb", "dask", "spark"]
QUERIES = [
    ("q01", "trips per payment type"),
    ("q02", "average total per passenger count"),
    ("q03", "trips per passenger count and year"),
]
MODES = ["memory", "scan"]
REPEAT = 3
#: hot seconds of each engine on each query in memory mode (scan adds 50 %, run 1 doubles)
BASE = {
    "engine": [0.40, 0.55, 0.90],
    "pandas": [1.10, 1.40, 2.60],
    "duckdb": [0.12, 0.20, 0.31],
    "dask": [0.80, 1.00, 1.90],
}
WRONG = ("duckdb", "memory", "q02")
TIMEOUT = ("dask", "scan", "q03")
RESUMED = ("engine", "memory", "q01", 2)
SUPERSEDED_SECONDS = 99.0  #: the first try of the resumed record (replaced by the later line)
SKIPPED_NOTE = "spark skipped: no Java 17+ on this machine"


def machine() -> dict[str, Any]:
    return {
        "cpu": "Synthetic CPU @ 3.0GHz",
        "cores": 2,
        "physical_cores": 1,
        "ram_gb": 7.6,
        "os": "Linux-6.1",
        "python": "3.11.2",
        "java": None,
    }


def setting(value: Any, reason: str) -> dict[str, Any]:
    return {"value": value, "reason": reason}


def run_info(run_id: str) -> dict[str, Any]:
    command = (
        "taskbench compare --engines all --data data/taxi-1M --mode memory,scan "
        f"--repeat {REPEAT} --out results/runs/{run_id}"
    )
    return {
        "schema": 1,
        "run_id": run_id,
        "command": command,
        "commands": [command, f"{command} --resume"],  # resumed once
        "engines": ENGINES,
        "queries": [{"id": q, "title": t} for q, t in QUERIES],
        "modes": MODES,
        "repeat": REPEAT,
        "cores": 2,
        "timeout": 300.0,
        "reference": "pandas",
        "single_threaded": ["pandas"],
        "data": {
            "path": "data/taxi-1M",
            "kind": "parquet",
            "fingerprint": "sha256:abc123",
            "rows": 1_000_000,
            "months": ["2016-01", "2016-02"],
        },
        "machine": machine(),
        "versions": {"taskbench": "0.1.0", "pandas": "3.1.0", "duckdb": "2.0.1", "pyspark": None},
        "git": {"sha": "0123456789abcdef0123456789abcdef01234567", "dirty": False},
        "started": "2026-12-04T18:00:00+00:00",
        "cluster": None,
        "configs": {
            "duckdb": {
                "path": "comparisons/configs/duckdb.toml",
                "sha256": "d" * 64,
                "settings": {"connect": {"threads": setting(2, "same cores as every engine")}},
            },
            "spark": {
                "path": "comparisons/configs/spark.toml",
                "sha256": "e" * 64,
                "settings": {
                    "session": {"spark.driver.memory": setting("8g", "1g cannot cache 10M rows")}
                },
            },
        },
        "notes": [SKIPPED_NOTE],
    }


def record(name: str, engine: str, status: str, values: list[float], meta: dict, **params) -> dict:
    return BenchResult(name, engine, "s", values, params, meta, "median", status).to_json()


def query_records(run_id: str, speed: float, wrong: bool) -> list[dict]:
    """Every record of a run: startup and load per engine and mode, then each query's runs."""
    rng = random.Random(run_id)
    meta = {
        "run_id": run_id,
        "engine_version": "1.0",
        "config": {"sha256": "c" * 64},
        "data": {"fingerprint": "sha256:abc123"},
        "machine": machine(),
        "cores": 2,
    }
    out: list[dict] = []
    for mode in MODES:
        for engine in ENGINES:
            if engine == "spark":
                why = {"mode": mode, "detail": "no Java 17+"}
                out.append(record("start_seconds", engine, "skipped", [], meta, **why))
                for q, _ in QUERIES:
                    out.append(
                        record(
                            "query_seconds",
                            engine,
                            "skipped",
                            [],
                            meta,
                            query=q,
                            run=1,
                            cold=True,
                            **why,
                        )
                    )
                continue
            process = {"mode": mode, "process": f"{engine}-{mode}"}
            out.append(
                record("start_seconds", engine, "valid", [0.5 + rng.random()], meta, **process)
            )
            out.append(
                record("load_seconds", engine, "valid", [1.0 + rng.random()], meta, **process)
            )
            for qi, (q, _) in enumerate(QUERIES):
                hot = BASE[engine][qi] * (1.5 if mode == "scan" else 1.0)
                hot *= speed if engine == "engine" else 1.0
                for run in range(1, REPEAT + 1):
                    params = {
                        **process,
                        "query": q,
                        "run": run,
                        "cold": run == 1,
                        "rows_out": 7,
                        "checksum": "9f3a",
                        "peak_rss_bytes": 2**28,
                    }
                    seconds = hot * (2.0 if run == 1 else 1 + 0.05 * rng.random())
                    key = (engine, mode, q)
                    if wrong and key == WRONG:
                        detail = "checksum 1234 != reference 5678"
                        out.append(
                            record(
                                "query_seconds", engine, "wrong", [], meta, **params, detail=detail
                            )
                        )
                    elif key == TIMEOUT:
                        if run == 1:  # the process was killed: no later runs
                            detail = "no answer in 300 s"
                            out.append(
                                record(
                                    "query_seconds",
                                    engine,
                                    "timeout",
                                    [],
                                    meta,
                                    **params,
                                    detail=detail,
                                )
                            )
                    elif (*key, run) == RESUMED:
                        first = {**params, "process": "taskbench-memory-1"}
                        out.append(
                            record(
                                "query_seconds",
                                engine,
                                "valid",
                                [SUPERSEDED_SECONDS],
                                meta,
                                **first,
                            )
                        )
                        later = {**params, "process": "taskbench-memory-2"}
                        out.append(
                            record("query_seconds", engine, "valid", [seconds], meta, **later)
                        )
                    else:
                        out.append(
                            record("query_seconds", engine, "valid", [seconds], meta, **params)
                        )
    return out


def stream_text(title: str, workers: int, threads: int, tasks: int, seed: int, **kw: Any) -> str:
    """A task-stream JSONL file; ``transfers``: every 7th task fetched a dependency first;
    ``skew``: the share of tasks piled onto worker 0."""
    rng = random.Random(seed)
    transfers, skew = kw.get("transfers", False), kw.get("skew", 0.0)
    prefixes = ["inc", "sum", "split"]
    lines = [json.dumps({"meta": {"title": title, "engine": "taskbench"}})]
    clock = {(w, t): 100.0 for w in range(workers) for t in range(threads)}
    for i in range(tasks):
        w = 0 if rng.random() < skew else rng.randrange(workers)
        t = rng.randrange(threads)
        start = clock[w, t] + rng.uniform(0.00005, 0.0003)
        stop = start + rng.uniform(0.001, 0.004)
        clock[w, t] = stop
        moves = []
        if transfers and i % 7 == 0:
            source = f"tcp://127.0.0.1:{4000 + (w + 1) % workers}"
            moves.append(
                {"key": f"inc-{i}", "source": source, "nbytes": 8000,
                 "start": start - 0.0004, "stop": start - 0.0001}
            )  # fmt: skip
        task = {
            "key": f"('{prefixes[i % 3]}-x', {i})",
            "prefix": prefixes[i % 3],
            "worker": f"tcp://127.0.0.1:{4000 + w}",
            "thread": t,
            "ready": start - 0.001,
            "start": start,
            "stop": stop,
            "nbytes": 8000,
            "sizeof_seconds": 1e-6,
            "status": "memory",
            "transfers": moves,
            "placed_by": "policy",
        }
        lines.append(json.dumps(task))
    return "\n".join(lines) + "\n"


def scheduler_document(meta: dict) -> dict:
    rng = random.Random(3)
    lag = {
        "taskbench": [rng.lognormvariate(4.0, 0.5) for _ in range(2000)],
        "dask-distributed": [rng.lognormvariate(7.0, 0.6) for _ in range(2000)],
    }
    results = []
    for engine, values in lag.items():
        ordered = sorted(values)
        results.append(BenchResult("lag_us", engine, "us", values, {"tasks": 2000}, meta))
        results.append(BenchResult.of("lag_p50_us", engine, ordered[999], meta, tasks=2000))
        results.append(BenchResult.of("lag_p99_us", engine, ordered[1979], meta, tasks=2000))
    return to_document("scheduler", results, meta, workers=2)


def balance_document(meta: dict) -> dict:
    results = []
    for policy, ratio, idle in (("random", 1.62, 0.31), ("locality", 1.08, 0.05)):
        where = {"workload": "skewed", "policy": policy}
        results.append(BenchResult.of("makespan_ratio", "taskbench", ratio, meta, **where))
        results.append(BenchResult.of("idle_fraction", "taskbench", idle, meta, **where))
    where = {"workload": "skewed", "policy": "dask"}
    results.append(BenchResult.of("makespan_ratio", "dask", 1.21, meta, **where))
    streams = {
        "random placement": "balance-random-stream.jsonl",
        "locality + stealing": "balance-locality-stream.jsonl",
    }
    return to_document("balance", results, meta, mode="real", workers=2, streams=streams)


def shuffle_document(meta: dict) -> dict:
    """Method ``tasks`` under engine ``taskbench``; ``p2p`` under the bench's own labels."""
    frame = {"rows": 1_000_000, "partitions": 32}
    results = [
        BenchResult.of("seconds", "pandas", [0.42, 0.40, 0.45], meta, "min", **frame),
        BenchResult.of("overhead_ratio", "pandas", 1.0, meta, **frame),
    ]
    for method in ("tasks", "p2p"):
        for sizeof, base in (("sampled", 1.2), ("deep", 2.6)):
            engine = "taskbench" if method == "tasks" else f"taskbench-p2p-{sizeof}"
            params = {**frame, "method": method, "sizeof": sizeof}
            values = [base * f for f in (1.0, 1.04, 0.97)]
            interval = {"low": base / 0.45 * 0.97, "high": base / 0.40 * 1.04}
            results.append(BenchResult.of("seconds", engine, values, meta, **params))
            results.append(
                BenchResult.of("overhead_ratio", engine, base / 0.42, meta, **interval, **params)
            )
    peer = {**frame, "method": "tasks"}
    results.append(BenchResult.of("seconds", "dask-tasks", [3.1, 3.2, 3.0], meta, **peer))
    results.append(BenchResult.of("overhead_ratio", "dask-tasks", 3.1 / 0.42, meta, **peer))
    return to_document("shuffle", results, meta, **frame)


def write_bench(folder: Path, run_id: str) -> None:
    bench = folder / "bench"
    bench.mkdir()
    meta = {"run_id": run_id, "machine": machine()}
    for name, document in (
        ("scheduler", scheduler_document),
        ("balance", balance_document),
        ("shuffle", shuffle_document),
    ):
        command = f"taskbench bench {name} --json-out {bench / name}.json"
        (bench / f"{name}.json").write_text(json.dumps(document({**meta, "command": command})))
    streams = {
        "scheduler-stream.jsonl": stream_text("taskbench: 300 tasks", 2, 2, 300, 1, transfers=True),
        "scheduler-stream-dask.jsonl": stream_text("dask.distributed: 300 tasks", 2, 1, 300, 2),
        "balance-random-stream.jsonl": stream_text("random", 2, 1, 200, 3, skew=0.8),
        "balance-locality-stream.jsonl": stream_text("locality", 2, 1, 200, 4, transfers=True),
    }
    for name, text in streams.items():
        (bench / name).write_text(text)


def write_run(
    folder: Path, run_id: str, speed: float = 1.0, wrong: bool = True, bench: bool = True
) -> Path:
    """A run folder at ``folder``: taskbench ``speed`` times its base times."""
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(run_info(run_id), indent=2))
    lines = [json.dumps(r) for r in query_records(run_id, speed, wrong)]
    (folder / "records.jsonl").write_text("\n".join(lines) + "\n")
    if bench:
        write_bench(folder, run_id)
    return folder


ASV_PAGE = (
    "<!doctype html><html><head><title>asv history</title><link rel='icon' href='data:,'>"
    "</head><body><h1>airspeed velocity of taskbench</h1></body></html>"
)


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Run A (no bench/) and run B (taskbench 20 % faster, with bench/)."""
    root = tmp_path_factory.mktemp("runs")
    a = write_run(root / "2026-12-01-a", "2026-12-01-a", bench=False)
    b = write_run(root / "2026-12-04-b", "2026-12-04-b", speed=0.8)
    return a, b


@pytest.fixture(scope="session")
def site(runs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory):
    """The site of A then B, with a planted asv history (nothing published)."""
    from taskbench.reports.site import build

    out = tmp_path_factory.mktemp("site")
    (out / "asv").mkdir()
    (out / "asv" / "index.html").write_text(ASV_PAGE)
    return build(list(runs), out, publish=False)


@dataclass(frozen=True)
class Command:
    """What one ``taskbench report`` command did: its exit code, output, and site folder."""

    out: Path
    code: int
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def single_site(runs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Command:
    """Run A alone, reported by the command itself: a wrong cell and a timeout, no bench/, no
    asv history, no comparison."""
    from taskbench.cli import main

    out = tmp_path_factory.mktemp("single") / "site" / "nested"
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        code = main(["report", str(runs[0]), "--out", str(out), "--no-asv"])
    return Command(out, code, stdout.getvalue(), stderr.getvalue())
