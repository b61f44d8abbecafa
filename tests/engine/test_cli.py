"""``taskbench engine …`` and the root command, run as a user would run them (real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from taskbench.engine.client import Client

TASKBENCH = [sys.executable, "-m", "taskbench.engine.cli"]  # what LocalCluster runs
ROOT = [sys.executable, "-m", "taskbench.cli"]  # the ``taskbench`` command


def inc(x):
    return x + 1


def run(*args, timeout=300, env=None, root=False):
    cmd = [*(ROOT if root else TASKBENCH), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


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


def test_bad_arguments_get_clear_errors(tmp_path):
    missing = tmp_path / "nope.jsonl"
    out = run("stream", "plot", str(missing), "-o", str(tmp_path / "x.png"), root=True)
    assert out.returncode == 2 and str(missing) in out.stderr
    out = run("engine", "worker", "tcp://127.0.0.1:1", "--sizeof", "exact")
    assert out.returncode == 2 and "--sizeof" in out.stderr and "exact" in out.stderr


def test_worker_refuses_a_bad_sizeof_in_its_environment():
    env = {**os.environ, "TASKBENCH_SIZEOF": "exact"}
    out = run("engine", "worker", "tcp://127.0.0.1:1", "--log-level", "WARNING", env=env)
    assert out.returncode == 2 and "TASKBENCH_SIZEOF='exact'" in out.stderr


def test_scheduler_flags_default_to_the_engine_options():
    from taskbench.engine.cli import build_parser, options_from_args
    from taskbench.engine.options import DEFAULTS

    args = build_parser().parse_args(["engine", "scheduler"])
    assert options_from_args(args) == DEFAULTS
    args = build_parser().parse_args(["engine", "scheduler", *DEFAULTS.replace(
        placement="random", stealing=False, seed=3, validate=True).scheduler_args()])  # fmt: skip
    assert options_from_args(args) == DEFAULTS.replace(
        placement="random", stealing=False, seed=3, validate=True
    )


def test_root_command_wires_every_layer_and_has_a_version():
    out = run("--version", root=True)
    assert out.returncode == 0 and out.stdout.startswith("taskbench ")
    out = run("--help", root=True)
    for command in ("engine", "bench", "stream", "data", "check"):
        assert command in out.stdout


@pytest.mark.parametrize("argv", [["--help"], ["engine", "--help"], ["data", "--help"]])
def test_help(argv):
    out = run(*argv, root=True)
    assert out.returncode == 0 and "usage" in out.stdout


def test_readme_names_every_command():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for command in ("make demo", "make test", "taskbench engine scheduler", "taskbench bench"):
        assert command in readme
