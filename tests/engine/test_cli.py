"""The ``taskbench`` entry points, run as a user would run them (real processes, loopback)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from taskbench.engine.client import Client

TASKBENCH = [sys.executable, "-m", "taskbench.engine.cli"]


def inc(x):
    return x + 1


def run(*args, timeout=300, env=None):
    return subprocess.run(
        [*TASKBENCH, *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_scheduler_and_workers_started_separately(tmp_path):
    token_file = tmp_path / "token"
    address_file = tmp_path / "address"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKBENCH_")}
    sched = subprocess.Popen(
        [*TASKBENCH, "engine", "scheduler", "--port", "0", "--token-file", str(token_file),
         "--address-file", str(address_file), "--log-level", "WARNING"],
        env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    workers = []
    try:
        deadline = time.monotonic() + 30
        while not address_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        address = address_file.read_text()
        assert address.startswith("tcp://127.0.0.1:")
        assert token_file.stat().st_mode & 0o777 == 0o600
        worker_env = {**env, "TASKBENCH_TOKEN_FILE": str(token_file)}
        worker_cmd = [
            *TASKBENCH,
            "engine",
            "worker",
            address,
            "--nthreads",
            "2",
            "--log-level",
            "WARNING",
        ]
        for _ in range(2):
            workers.append(subprocess.Popen(worker_cmd, env=worker_env))
        with Client(address, token=token_file.read_text()) as client:
            assert client.wait_for_workers(2, timeout=30) == 2
            assert client.identity()["workers"] == {a: 2 for a in client.identity()["workers"]}
            dsk = {("x", i): (inc, i) for i in range(100)}
            assert client.get(dsk, list(dsk)) == list(range(1, 101))
        # a worker with the wrong token is refused and exits with an error
        bad = run("engine", "worker", address, "--log-level", "WARNING", timeout=60,
                  env={**env, "TASKBENCH_TOKEN": "wrong"})  # fmt: skip
        assert bad.returncode != 0
        assert "handshake" in bad.stderr.lower()
    finally:
        for p in [*workers, sched]:
            p.send_signal(signal.SIGTERM)
        for p in [*workers, sched]:
            p.wait(15)
    assert all(p.returncode is not None for p in [*workers, sched])


def test_bench_scheduler_json_against_dask(tmp_path):
    stream_file = tmp_path / "stream.jsonl"
    out = run("bench", "scheduler", "--tasks", "400", "--lag-tasks", "60", "--peer-tasks",
              "100", "--repeats", "1", "--vs", "dask", "--json", "--stream-out",
              str(stream_file))  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert set(result) == {"taskbench", "dask-distributed", "dask-threaded", "meta"}
    for engine in ("taskbench", "dask-distributed", "dask-threaded"):
        r = result[engine]
        assert r["independent_tasks_per_s"] > 0 and r["chain_tasks_per_s"] > 0
        assert r["lag_p50_us"] is not None and r["lag_p50_us"] <= r["lag_p99_us"]
    assert result["taskbench"]["independent_tasks"] == 400
    assert result["dask-distributed"]["independent_tasks"] == 100
    assert result["meta"]["workers"] == 2
    lines = stream_file.read_text().splitlines()
    assert len(lines) == 61  # a meta line and one record per 1 ms task

    png = tmp_path / "stream.png"
    plotted = run("stream", "plot", str(stream_file), "-o", str(png))
    assert plotted.returncode == 0, plotted.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments_get_clear_errors(tmp_path):
    out = run("bench", "scheduler", "--vs", "sparkle", "--tasks", "10")
    assert out.returncode == 2 and "unknown peer" in out.stderr and "sparkle" in out.stderr
    missing = tmp_path / "nope.jsonl"
    out = run("stream", "plot", str(missing), "-o", str(tmp_path / "x.png"))
    assert out.returncode == 2 and str(missing) in out.stderr


@pytest.mark.parametrize("argv", [["--help"], ["engine", "--help"], ["data", "--help"]])
def test_help(argv):
    out = run(*argv)
    assert out.returncode == 0 and "usage" in out.stdout


def test_readme_names_every_command():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for command in ("make demo", "make test", "taskbench engine scheduler", "taskbench bench"):
        assert command in readme
