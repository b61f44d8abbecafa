"""``taskbench engine …`` and the root command, run as a user would run them (real processes)."""

from __future__ import annotations

import os
import signal
import socket
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
            assert list(client.get(dsk, list(dsk))) == list(range(1, 101))  # list or tuple
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


def _no_token_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TASKBENCH_")}


def test_scheduler_writes_no_token_until_its_port_is_bound(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        cmd = [*TASKBENCH, "engine", "scheduler", "--port", port]
        out = subprocess.run(cmd, cwd=tmp_path, env=_no_token_env(), capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    assert out.returncode == 1 and "cannot start a scheduler" in out.stderr
    assert list(tmp_path.iterdir()) == []  # no .taskbench-token


@pytest.mark.parametrize(
    ("argv", "flag", "value"),
    [
        (["engine", "worker", "tcp://127.0.0.1:1", "--nthreads", "0"], "--nthreads", "'0'"),
        (["engine", "worker", "tcp://127.0.0.1:1", "--nthreads", "-2"], "--nthreads", "'-2'"),
        (["engine", "worker", "notanaddress"], "address", "'notanaddress'"),
        (["engine", "scheduler", "--port", "99999"], "--port", "'99999'"),
        (["engine", "scheduler", "--balance-interval", "0"], "--balance-interval", "'0'"),
    ],
)
def test_engine_flags_are_checked_where_they_are_parsed(argv, flag, value, capsys):
    from taskbench.engine.cli import build_parser

    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert f"argument {flag}:" in error and value in error


def test_unknown_flag_is_named_before_a_missing_command(capsys):
    from taskbench.cli import main

    for argv in (["--frob"], ["engine", "--frob"], ["check", "--frob"]):
        assert main(argv) == 2
        assert capsys.readouterr().err.splitlines()[-1].endswith("unrecognized arguments: --frob")
    assert main([]) == 2
    assert "required: command" in capsys.readouterr().err


def test_help_shows_the_defaults():
    out = run("engine", "scheduler", "--help", root=True)
    assert out.returncode == 0
    help_text = " ".join(out.stdout.split())
    assert "(default: 8786)" in help_text and "(default: locality)" in help_text
    assert "(default: None)" not in help_text and "(default: False)" not in help_text


def test_an_internal_error_is_one_line_and_a_log_with_the_traceback(tmp_path, monkeypatch, capsys):
    from taskbench.engine import plot

    from taskbench import cli

    def boom(args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(plot, "cmd_stream_plot", boom)  # a bug in a command
    monkeypatch.setenv(cli.LOG_DIR_ENV, str(tmp_path))
    assert cli.main(["stream", "plot", __file__, "-o", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "internal error (RuntimeError: boom)" in err[0]
    (log,) = tmp_path.glob("crash-*.log")
    assert str(log) in err[0] and "Traceback" in log.read_text()
    with pytest.raises(RuntimeError, match="boom"):  # --debug: the traceback itself
        cli.main(["--debug", "stream", "plot", __file__, "-o", str(tmp_path / "x.png")])


def test_the_root_imports_only_the_command_it_runs():
    from taskbench.cli import COMMANDS, build_parser

    # the stubs of the commands not run list them as the full parser does
    assert build_parser([]).format_help() == build_parser().format_help()
    code = (
        "import sys; from taskbench.cli import main; main(['engine', 'worker', 'x']); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pandas', 'taskbench')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    loaded = out.stdout
    assert "taskbench.engine.cli" in loaded and "pandas" not in loaded
    assert all(module not in loaded for module, _ in list(COMMANDS.values())[1:])


_FAULTS = """
import resource, sys, threading, numpy as np
from taskbench.engine.worker import keep_freed_memory
kept = keep_freed_memory(int(sys.argv[1]))
x = np.random.default_rng(0).random(900_000)
faults = []
def task():  # as a worker thread runs tasks: column-sized temporaries of a few sizes
    for rounds in (5, 50):  # the first rounds grow the heap
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(rounds):  # a task's temporaries: 28 MB at once, then freed
            parts = [x * k for k in range(3)]
            sum(parts)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
thread = threading.Thread(target=task)
thread.start()
thread.join()
print(kept, faults[1])
"""


def test_worker_processes_keep_freed_memory_to_reuse():
    """With --malloc-keep, a column-sized temporary reuses freed pages instead of faulting in
    fresh ones; 0 leaves the C library's policy, and the flag is one of the options' flags."""

    def faults(keep: int) -> tuple[str, int]:
        out = subprocess.run(
            [sys.executable, "-c", _FAULTS, str(keep)], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        kept, count = out.stdout.split()
        return kept, int(count)

    kept, default_faults = faults(0)
    assert kept == "False"
    kept, kept_faults = faults(256 << 20)
    assert kept == "True"
    assert kept_faults * 4 < default_faults  # hundreds of pages a round mapped afresh
    from taskbench.engine.cli import build_parser
    from taskbench.engine.options import DEFAULTS, EngineOptions

    args = ["engine", "worker", "tcp://127.0.0.1:1", *DEFAULTS.replace(malloc_keep=0).worker_args()]
    assert build_parser().parse_args(args).malloc_keep == 0
    assert build_parser().parse_args(args[:3]).malloc_keep == DEFAULTS.malloc_keep
    with pytest.raises(ValueError, match="malloc_keep must be >= 0 bytes, got -1"):
        EngineOptions(malloc_keep=-1)
    out = run("engine", "worker", "tcp://127.0.0.1:1", "--malloc-keep", "lots")
    assert out.returncode == 2 and "--malloc-keep" in out.stderr
