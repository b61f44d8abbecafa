"""Clusters on this machine: real processes over loopback TCP, or everything in-process.

``LocalCluster`` starts the scheduler and each worker as its own process (the same
``taskbench engine …`` commands used across hosts), with a fresh random token. It is a
context manager that stops every process on every exit path: a normal exit, an
exception, Ctrl-C, or the parent dying (children ask the kernel for SIGTERM when their
parent goes, and have their own session so a terminal's Ctrl-C reaches only the parent).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from taskbench.engine import comm as _comm
from taskbench.engine.client import Client, sync
from taskbench.engine.options import DEFAULTS, SIZEOF_ENV, EngineOptions
from taskbench.engine.scheduler import Scheduler
from taskbench.engine.worker import Worker

STARTUP_TIMEOUT = 60.0
IN_PROCESS_DEFAULTS = DEFAULTS.replace(validate=True)


class LocalCluster:
    """A scheduler and ``n_workers`` worker processes on 127.0.0.1."""

    def __init__(
        self,
        n_workers: int = 2,
        threads_per_worker: int = 1,
        *,
        options: EngineOptions = DEFAULTS,
        env: dict[str, str] | None = None,
        worker_env: list[dict[str, str]] | None = None,
        log_level: str = "WARNING",
        **changes: Any,
    ) -> None:
        """``changes`` amend ``options`` by name (``placement="random"``, ``sizeof="deep"``).

        ``worker_env[i]`` adds environment variables for worker ``i`` only. Workers run in
        ``options.sizeof`` mode unless their environment sets ``TASKBENCH_SIZEOF``.
        """
        self.options = options.replace(**changes)
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        self.worker_env = worker_env or []
        self.token = _comm.new_token()
        self.address = ""
        self._tmp = tempfile.TemporaryDirectory(prefix="taskbench-cluster-")
        self._explicit_env = dict(env or {})
        self._env = {
            **os.environ,
            **self._explicit_env,
            _comm.TOKEN_ENV: self.token,
            "PYTHONUNBUFFERED": "1",
        }
        self._log_level = log_level
        self.scheduler_process: subprocess.Popen | None = None
        self.worker_processes: list[subprocess.Popen] = []

    def _spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        cmd = [
            sys.executable,
            "-m",
            "taskbench.engine.cli",
            "engine",
            *args,
            "--parent-pid",
            str(os.getpid()),
            "--log-level",
            self._log_level,
        ]
        return subprocess.Popen(cmd, env={**self._env, **(env or {})}, start_new_session=True)

    def start(self) -> LocalCluster:
        address_file = Path(self._tmp.name) / "scheduler-address"
        try:
            self.scheduler_process = self._spawn(
                "scheduler", "--port", "0", "--address-file", str(address_file),
                *self.options.scheduler_args(),
            )  # fmt: skip
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while not address_file.exists() or not address_file.read_text().strip():
                if self.scheduler_process.poll() is not None:
                    raise RuntimeError(
                        f"the scheduler exited with code {self.scheduler_process.returncode}"
                    )
                if time.monotonic() > deadline:
                    raise TimeoutError("the scheduler did not start in time")
                time.sleep(0.02)
            self.address = address_file.read_text().strip()
            for _ in range(self.n_workers):
                self.add_worker()
            self.wait_for_workers(self.n_workers)
        except BaseException:
            self.close()
            raise
        return self

    def add_worker(
        self, nthreads: int | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        i = len(self.worker_processes)
        extra = env if env is not None else (self.worker_env[i] if i < len(self.worker_env) else {})
        threads = str(nthreads or self.threads_per_worker)
        # a TASKBENCH_SIZEOF given for the workers wins over the options (the worker checks it)
        given = {**self._explicit_env, **extra}
        flags = self.options.worker_args(sizeof=SIZEOF_ENV not in given)
        p = self._spawn("worker", self.address, "--nthreads", threads, *flags, env=extra)
        self.worker_processes.append(p)
        return p

    def wait_for_workers(self, n: int, timeout: float = STARTUP_TIMEOUT) -> None:
        with Client(self, timeout=timeout) as c:
            c.wait_for_workers(n, timeout)

    def kill_worker(self, index: int = 0, sig: int = signal.SIGKILL) -> None:
        """Kill worker process ``index`` with ``sig`` (SIGKILL by default: no goodbye)."""
        p = self.worker_processes[index]
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, sig)
        p.wait(10)

    def close(self) -> None:
        """Workers first (they say goodbye), then the scheduler; SIGKILL after 5 s."""
        _stop(self.worker_processes)
        if self.scheduler_process is not None:
            _stop([self.scheduler_process])
        self.worker_processes = []
        self.scheduler_process = None
        self._tmp.cleanup()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if self.scheduler_process is not None:
            with contextlib.suppress(Exception):
                self.close()


def _stop(procs: list[subprocess.Popen], grace: float = 5.0) -> None:
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait(5)


class InProcessCluster:
    """Scheduler and workers in this process, on the I/O loop, over the in-process transport.

    The same frames, handshake and serialization as over TCP, without sockets: for tests.
    """

    def __init__(
        self,
        n_workers: int = 2,
        threads_per_worker: int = 1,
        *,
        options: EngineOptions = IN_PROCESS_DEFAULTS,
        **changes: Any,
    ) -> None:
        """``changes`` amend ``options`` by name; ``validate`` is on by default here (tests).

        Workers share this process, so ``options.sizeof`` is not applied: the process's
        `engine.sizeof` mode holds.
        """
        self.options = options.replace(**changes)
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        self.token = _comm.new_token()
        self.address = ""
        self.scheduler: Scheduler | None = None
        self.workers: list[Worker] = []

    async def _start(self) -> None:
        self.scheduler = Scheduler(token=self.token, options=self.options)
        self.address = await self.scheduler.start("inproc://")
        for _ in range(self.n_workers):
            await self._add_worker()

    async def _add_worker(self) -> Worker:
        w = Worker(
            self.address,
            nthreads=self.threads_per_worker,
            token=self.token,
            listen="inproc://",
        )
        await w.start()
        self.workers.append(w)
        return w

    def start(self) -> InProcessCluster:
        sync(self._start(), STARTUP_TIMEOUT)
        return self

    def add_worker(self) -> Worker:
        return sync(self._add_worker(), STARTUP_TIMEOUT)

    def close(self) -> None:
        async def stop() -> None:
            for w in self.workers:
                await w.close()
            await asyncio.sleep(0.05)  # let the goodbyes arrive
            if self.scheduler is not None:
                self.scheduler.close()
            await asyncio.sleep(0)

        sync(stop(), 10)
        self.workers = []

    def __enter__(self) -> InProcessCluster:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
