"""Bad command lines, run as a user runs them: one line on stderr, exit 1 or 2, nothing written.

Each case is the real ``taskbench`` command (``python -m taskbench.cli``) in a subprocess, in
a fresh folder that holds a few input files. Almost every mistake is refused while the
arguments are parsed (~1 s a call, mostly imports); the cases run in parallel threads once per
module, and each test checks one case's outcome. A case may name ``{busy_port}``, a port some
other socket already listens on.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

TIMEOUT = 30  # seconds: no bad command line may hang
RECORD = (
    '{"key": "inc-1", "prefix": "inc", "worker": "tcp://127.0.0.1:1", "thread": 0, '
    '"ready": null, "start": 1.0, "stop": 1.5, "nbytes": 8, "sizeof_seconds": 0.0, '
    '"status": "memory"}\n'
)
INPUTS = {
    "good.jsonl": '{"meta": {"title": "t"}}\n' + RECORD,
    "garbage.jsonl": RECORD + "{not json\n",
    "empty.jsonl": "",
    "wrong-type.jsonl": RECORD.replace('"start": 1.0', '"start": "soon"'),
    "a-file.txt": "not a folder\n",
}

# (argv, what the one line must say, exit code)
CASES: list[tuple[list[str], list[str], int]] = [
    # the root command
    (["--frob"], ["unrecognized arguments: --frob"], 2),
    ([], ["required: command"], 2),
    (["engine", "--frob"], ["unrecognized arguments: --frob"], 2),
    (["check", "--frob"], ["unrecognized arguments: --frob"], 2),
    # engine scheduler
    (["engine", "scheduler", "--port", "99999"], ["--port", "99999"], 2),
    (["engine", "scheduler", "--balance-interval", "0"], ["--balance-interval", "'0'"], 2),
    (["engine", "scheduler", "--bandwidth", "nan"], ["--bandwidth", "'nan'"], 2),
    (["engine", "scheduler", "--token-file", "missing/token"], ["--token-file", "missing"], 2),
    (["engine", "scheduler", "--log-level", "loud"], ["--log-level", "'loud'"], 2),
    (["engine", "scheduler", "--port", "{busy_port}"], ["cannot start a scheduler"], 1),
    (["engine", "scheduler", "--host", "999.1.1.1", "--port", "0"], ["999.1.1.1"], 1),
    # engine worker
    (["engine", "worker", "notanaddress"], ["address", "'notanaddress'"], 2),
    (["engine", "worker", "tcp://127.0.0.1:1", "--nthreads", "0"], ["--nthreads", "'0'"], 2),
    (["engine", "worker", "tcp://127.0.0.1:1", "--nthreads", "-2"], ["--nthreads", "'-2'"], 2),
    (["engine", "worker", "tcp://127.0.0.1:1"], ["cannot join tcp://127.0.0.1:1"], 1),
    # bench scheduler
    (["bench", "scheduler", "--tasks", "-5"], ["--tasks", "'-5'"], 2),
    (["bench", "scheduler", "--repeats", "0"], ["--repeats", "'0'"], 2),
    (["bench", "scheduler", "--workers", "0"], ["--workers", "'0'"], 2),
    (["bench", "scheduler", "--vs", "sparkle"], ["--vs", "sparkle"], 2),
    (["bench", "scheduler", "--stream-out", "missing/s.jsonl"], ["--stream-out", "missing"], 2),
    # bench balance
    (["bench", "balance", "--workers", "-1"], ["--workers", "'-1'"], 2),
    (["bench", "balance", "--scale", "-1"], ["--scale", "'-1'"], 2),
    (["bench", "balance", "--scale", "0"], ["--scale", "'0'"], 2),
    (["bench", "balance", "--policies", "greedy"], ["--policies", "greedy"], 2),
    (["bench", "balance", "--sim", "--plot", "missing/b.png"], ["--plot", "missing"], 2),
    # bench shuffle
    (["bench", "shuffle", "--partitions", "0"], ["--partitions", "'0'"], 2),
    (["bench", "shuffle", "--methods", "magic"], ["--methods", "magic"], 2),
    (["bench", "shuffle", "--vs", "duckdb"], ["--vs", "duckdb"], 2),
    (["bench", "shuffle", "--on", "nocolumn"], ["--on", "'nocolumn'"], 2),
    # stream plot
    (["stream", "plot", "garbage.jsonl", "-o", "x.png"], ["garbage.jsonl:2", "not JSON"], 1),
    (["stream", "plot", "wrong-type.jsonl", "-o", "x.png"], ["wrong-type.jsonl:1", "start"], 1),
    (["stream", "plot", "empty.jsonl", "-o", "x.png"], ["no task records in empty.jsonl"], 1),
    (["stream", "plot", "nope.jsonl", "-o", "x.png"], ["runs", "'nope.jsonl'"], 2),
    (["stream", "plot", "good.jsonl", "-o", "missing/x.png"], ["--output", "missing"], 2),
    # data generate / import
    (["data", "generate", "--out", "missing/ds"], ["--out", "missing"], 2),
    (["data", "generate", "--out", "a-file.txt"], ["--out", "a-file.txt"], 2),
    (["data", "import", "no.parquet", "--out", "ds"], ["PATH", "'no.parquet'"], 2),
    # check
    (["check", "--data", ".", "--timeout", "-1"], ["--timeout", "'-1'"], 2),
    (["check", "--data", "nowhere"], ["nowhere"], 2),
    # compare
    (["compare", "--data", "nowhere"], ["nowhere"], 2),
    (["compare", "--data", ".", "--engines", "polars"], ["unknown engine 'polars'"], 2),
    (["compare", "--data", ".", "--queries", "q13"], ["unknown query q13"], 2),
    (["compare", "--data", ".", "--repeat", "2"], ["--repeat 2: at least 3"], 2),
    (["compare", "--data", ".", "--mode", "disk"], ["--mode", "'disk'"], 2),
    (["compare", "--data", ".", "--timeout", "0"], ["--timeout", "'0'"], 2),
    (["compare", "--data", ".", "--resume"], ["--resume needs --out"], 2),
    # cluster
    (["cluster", "launch", "--spec", "x.yaml"], ["invalid choice: 'launch'"], 2),
    (["cluster", "up", "--spec", "nowhere.yaml"], ["nowhere.yaml: cannot read"], 2),
    (["cluster", "up", "--spec", "a-file.txt"], ["a-file.txt: expected a mapping"], 2),
]


def message_lines(stderr: str) -> list[str]:
    """stderr without argparse's usage block (``usage:`` and its indented continuation)."""
    lines, in_usage = [], False
    for line in stderr.splitlines():
        if line.startswith("usage:"):
            in_usage = True
        elif not (in_usage and line.startswith(" ")):
            in_usage = False
            if line.strip():
                lines.append(line)
    return lines


def tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))}


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    for name, text in INPUTS.items():
        (cwd / name).write_text(text)
    try:
        return subprocess.run(
            [sys.executable, "-m", "taskbench.cli", *argv],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, None, "", "")  # returncode None: timed out


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple]:
    """Every case run once, in parallel: index -> (completed process, cwd, crash-log folder)."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    logs = tmp_path_factory.mktemp("crash-logs")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKBENCH_")}
    env |= {"TASKBENCH_LOG_DIR": str(logs), "TASKBENCH_TOKEN": "fuzz", "PYTHONUNBUFFERED": "1"}
    env_no_token = {k: v for k, v in env.items() if k != "TASKBENCH_TOKEN"}
    jobs = {}
    with busy, ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for i, (argv, _, _) in enumerate(CASES):
            argv = [a.replace("{busy_port}", str(busy.getsockname()[1])) for a in argv]
            cwd = tmp_path_factory.mktemp(f"case{i}")
            # no token set: a scheduler that started would write .taskbench-token in cwd
            case_env = env_no_token if argv[:2] == ["engine", "scheduler"] else env
            jobs[i] = (pool.submit(_run, argv, cwd, case_env), cwd)
        return {i: (job.result(), cwd, logs) for i, (job, cwd) in jobs.items()}


@pytest.mark.parametrize(
    "index", range(len(CASES)), ids=[" ".join(argv) or "(none)" for argv, _, _ in CASES]
)
def test_bad_command_line(index: int, outcomes: dict[int, tuple]) -> None:
    _, says, code = CASES[index]
    done, cwd, logs = outcomes[index]
    assert done.returncode is not None, f"still running after {TIMEOUT} s"
    assert "Traceback" not in done.stderr, done.stderr
    lines = message_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    for text in says:
        assert text in lines[0]
    assert "internal error" not in lines[0]
    assert done.returncode == code, done.stderr
    assert tree(cwd) == {name: len(text.encode()) for name, text in INPUTS.items()}
    assert not any(logs.iterdir()), "a crash log was written"


def test_every_subcommand_is_fuzzed() -> None:
    covered = {tuple(argv[:2]) for argv, _, _ in CASES}
    for command in [("engine", "scheduler"), ("engine", "worker"), ("bench", "scheduler"),
                    ("bench", "balance"), ("bench", "shuffle"), ("stream", "plot"),
                    ("data", "generate"), ("data", "import")]:  # fmt: skip
        assert command in covered
    for command in ("check", "compare"):
        assert any(argv[:1] == [command] for argv, _, _ in CASES)
