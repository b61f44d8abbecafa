"""The local provider: a real Spark standalone cluster and an engine cluster on 127.0.0.1.

``up`` starts a Spark master and one Spark worker per spec node with
``$SPARK_HOME/sbin/spark-daemon.sh`` (the pip pyspark has no start-master.sh), then an engine
scheduler and ``workers_per_node`` engine workers per node through ``taskbench engine``. Every
log, pid and work file lives under one cluster folder. Every port binds to loopback, the
master's REST submission server is off, and the engine's token is a file in the folder
(mode 0600) that is never printed.

Policy: a cluster folder holds at most one cluster. ``up`` refuses when a process it
recorded is alive, removes stale pid files, and checks every port before starting anything.
A failure or interrupt halfway through ``up`` stops what was started. ``down`` stops the
Spark daemons, then the engine's process groups, then checks that no recorded process
remains, killing any that does.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from taskbench.infra.spec import ClusterSpec, LocalSpec

HOST = "127.0.0.1"
MASTER = "org.apache.spark.deploy.master.Master"
WORKER = "org.apache.spark.deploy.worker.Worker"
START_TIMEOUT = 120.0  #: seconds for every Spark and engine worker to join
STOP_GRACE = 10.0  #: seconds a process has to exit after SIGTERM before SIGKILL


class ClusterError(RuntimeError):
    """A cluster that cannot start, be read or be stopped; the message says which part."""


def spark_home() -> Path:
    """The installed pyspark package folder, which is a Spark distribution."""
    try:
        import pyspark
    except ImportError:
        raise ClusterError("pyspark is not installed: pip install -e '.[spark]'") from None
    return Path(pyspark.__file__).parent


@dataclass(frozen=True)
class Layout:
    """Where a local cluster keeps its files."""

    folder: Path

    @property
    def spark(self) -> Path:
        return self.folder / "spark"

    @property
    def engine(self) -> Path:
        return self.folder / "engine"

    @property
    def token(self) -> Path:
        return self.engine / "token"

    @property
    def state(self) -> Path:
        return self.folder / "cluster.json"

    def engine_pidfile(self, role: str) -> Path:
        return self.engine / f"{role}.pid"

    def engine_pidfiles(self) -> list[Path]:
        return sorted(self.engine.glob("*.pid"))

    def spark_pidfiles(self) -> list[Path]:
        return sorted((self.spark / "pids").glob("*.pid"))


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int | None) -> psutil.Process | None:
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc
    except psutil.Error:
        return None


def recorded_process(pidfile: Path) -> psutil.Process | None:
    """The live process a pid file names, if it is still the one recorded: a Spark daemon of
    the file's class or a ``taskbench`` process. A reused pid is someone else's: None."""
    proc = _alive(_read_pid(pidfile))
    if proc is None:
        return None
    marker = "taskbench" if pidfile.parent.name == "engine" else pidfile.stem.split("-")[-2]
    try:
        return proc if marker in " ".join(proc.cmdline()) else None
    except psutil.Error:
        return None


def port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return True
    return False


def spark_status(webui: str) -> dict[str, Any]:
    """A Spark master's own JSON (at its web UI): its status and its alive workers."""
    try:
        with urllib.request.urlopen(f"{webui}/json/", timeout=5) as reply:
            master = json.load(reply)
    except OSError as e:
        raise ClusterError(f"spark master at {webui} does not answer ({e})") from None
    workers = [
        {"id": w["id"], "address": f"{w['host']}:{w['port']}", "cores": w["cores"],
         "memory_mb": w["memory"], "state": w["state"]}
        for w in master.get("workers", []) if w.get("state") == "ALIVE"
    ]  # fmt: skip
    return {"url": master.get("url"), "status": master.get("status"), "workers": workers}


def engine_status(address: str, token_file: Path, local_pids: bool = True) -> dict[str, Any]:
    """An engine scheduler's identity: its workers, their threads, and (for workers on this
    machine, ``local_pids``) the memory they use."""
    from taskbench.engine.client import Client

    try:
        token = token_file.read_text().strip()
    except OSError:
        raise ClusterError(f"no engine token in {token_file}") from None
    try:
        with Client(address, token=token, timeout=5) as client:
            identity = client.identity()
    except (OSError, TimeoutError) as e:
        raise ClusterError(f"engine scheduler at {address}: {e}") from None
    pids = identity.get("pids", {}) if local_pids else {}
    workers = []
    for worker, nthreads in sorted(identity["workers"].items()):
        proc = _alive(pids.get(worker))
        rss = proc.memory_info().rss if proc else None
        workers.append({"address": worker, "threads": nthreads,
                        "rss_mb": None if rss is None else round(rss / 2**20)})  # fmt: skip
    return {"address": identity["address"], "workers": workers}


class LocalCluster:
    """A Spark standalone cluster and an engine cluster described by one spec."""

    def __init__(self, spec: ClusterSpec, folder: Path) -> None:
        if spec.provider != "local":
            raise ClusterError(f"spec {spec.name!r} is for provider {spec.provider}, not local")
        self.spec = spec
        self.ports = spec.local or LocalSpec()
        self.layout = Layout(Path(folder).resolve())

    # ------------------------------------------------------------ names

    @property
    def master_url(self) -> str:
        return f"spark://{HOST}:{self.ports.spark_port}"

    @property
    def webui(self) -> str:
        return f"http://{HOST}:{self.ports.spark_webui_port}"

    @property
    def engine_address(self) -> str:
        return f"tcp://{HOST}:{self.ports.engine_port}"

    @property
    def engine_workers(self) -> int:
        return self.spec.nodes * self.spec.engine.workers_per_node

    def ports_needed(self) -> dict[int, str]:
        ports = {
            self.ports.spark_port: "spark master",
            self.ports.spark_webui_port: "spark master web UI",
            self.ports.engine_port: "engine scheduler",
        }
        for i in range(1, self.spec.nodes + 1):
            ports.setdefault(self.ports.spark_webui_port + i, f"spark worker {i} web UI")
        if len(ports) < 3 + self.spec.nodes:
            raise ClusterError(f"the spec's local ports overlap: {sorted(ports)}")
        return ports

    def _spark_env(self) -> dict[str, str]:
        spark = self.layout.spark
        inherited = {k: v for k, v in os.environ.items() if k != "SPARK_NO_DAEMONIZE"}
        return {
            **inherited,
            "SPARK_HOME": str(spark_home()),
            "SPARK_LOG_DIR": str(spark / "logs"),
            "SPARK_PID_DIR": str(spark / "pids"),
            "SPARK_WORKER_DIR": str(spark / "work"),
            "SPARK_IDENT_STRING": f"taskbench-{self.spec.name}",
            "SPARK_LOCAL_IP": HOST,
            "SPARK_MASTER_HOST": HOST,
            "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
            "PYSPARK_PYTHON": sys.executable,
        }

    def _daemon(self, action: str, cls: str, instance: int, *args: str) -> None:
        script = spark_home() / "sbin" / "spark-daemon.sh"
        done = subprocess.run(
            ["bash", str(script), action, cls, str(instance), *args],
            env=self._spark_env(), capture_output=True, text=True, timeout=60,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if done.returncode != 0:
            what = f"{cls.rsplit('.', 1)[-1].lower()} {instance}"
            detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
            raise ClusterError(f"spark {what}: spark-daemon.sh {action} failed: {detail[0]}")

    # ------------------------------------------------------------ up

    def live_processes(self) -> dict[Path, psutil.Process]:
        """{pid file: its live process}; stale pid files are removed on the way."""
        live = {}
        for path in self.layout.spark_pidfiles() + self.layout.engine_pidfiles():
            proc = recorded_process(path)
            if proc is None:
                path.unlink(missing_ok=True)
            else:
                live[path] = proc
        return live

    def up(self) -> dict[str, Any]:
        """Start both clusters and wait for every worker; stop everything on any failure."""
        layout = self.layout
        if self.live_processes():
            raise ClusterError(
                f"a cluster is already up in {layout.folder}: taskbench cluster down first"
            )
        taken = [f"{port} ({what})" for port, what in self.ports_needed().items()
                 if port_taken(port)]  # fmt: skip
        if taken:
            raise ClusterError(f"ports taken on {HOST}: {', '.join(taken)}; free them or set "
                               "local: ports in the spec")  # fmt: skip
        for sub in ("logs", "pids", "work"):
            (layout.spark / sub).mkdir(parents=True, exist_ok=True)
        layout.engine.mkdir(parents=True, exist_ok=True)
        try:
            with _terminate_as_interrupt():
                self._start()
                state = self.state()
                layout.state.write_text(json.dumps(state, indent=1) + "\n")
                return state
        except BaseException:
            self.down()
            raise

    def _start(self) -> None:
        spec, ports = self.spec, self.ports
        self._daemon("start", MASTER, 1, "--host", HOST, "--port", str(ports.spark_port),
                     "--webui-port", str(ports.spark_webui_port))  # fmt: skip
        memory = f"{max(1, int(spec.memory_gb_per_node * 1024))}m"
        for i in range(1, spec.nodes + 1):
            self._daemon("start", WORKER, i, "--host", HOST, "--cores", str(spec.cores_per_node),
                         "--memory", memory, "--webui-port", str(ports.spark_webui_port + i),
                         self.master_url)  # fmt: skip
        token = self.layout.token
        token.touch(mode=0o600)
        token.write_text(secrets.token_hex(32))
        listening = self.layout.engine / "address"
        listening.unlink(missing_ok=True)
        self._engine("scheduler", "scheduler", "--host", HOST, "--port", str(ports.engine_port),
                     "--token-file", str(token), "--address-file", str(listening))  # fmt: skip
        self._wait(lambda: listening.is_file(), "the engine scheduler to listen")
        for i in range(self.engine_workers):
            self._engine(f"worker-{i + 1}", "worker", self.engine_address, "--host", HOST,
                         "--nthreads", str(spec.engine.threads_per_worker))  # fmt: skip
        self._wait_until_joined()

    def _engine(self, role: str, command: str, *args: str) -> None:
        log = open(self.layout.engine / f"{role}.log", "ab")  # noqa: SIM115 (the child keeps it)
        with log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "taskbench.cli", "engine", command, *args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "TASKBENCH_TOKEN_FILE": str(self.layout.token)},
                start_new_session=True,  # outlives this command; its own process group
            )  # fmt: skip
        self.layout.engine_pidfile(role).write_text(f"{proc.pid}\n")

    def _wait(self, done: Callable[[], bool], what: str) -> None:
        """Poll ``done`` until it holds; a dead engine process or START_TIMEOUT is an error."""
        deadline = time.monotonic() + START_TIMEOUT
        while not done():
            dead = [p.stem for p in self.layout.engine_pidfiles() if not recorded_process(p)]
            if dead:
                said = "; ".join(f"{role}: {self._last_words(role)}" for role in dead)
                raise ClusterError(f"engine {', '.join(dead)} exited ({said}); see "
                                   f"{self.layout.engine}")  # fmt: skip
            if time.monotonic() > deadline:
                raise ClusterError(f"waited {START_TIMEOUT:.0f} s for {what}; logs in "
                                   f"{self.layout.folder}")  # fmt: skip
            time.sleep(0.5)

    def _last_words(self, role: str) -> str:
        """The last line an engine process wrote to its log, which names why it stopped."""
        log = self.layout.engine / f"{role}.log"
        lines = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
        return lines[-1] if lines else "its log is empty"

    def _wait_until_joined(self) -> None:
        joined = {"spark": 0, "engine": 0}

        def all_joined() -> bool:
            with contextlib.suppress(OSError, ValueError, ClusterError):
                joined["spark"] = len(self.spark_status()["workers"])
                joined["engine"] = len(self.engine_status()["workers"])
            return joined["spark"] >= self.spec.nodes and joined["engine"] >= self.engine_workers

        self._wait(all_joined, f"{self.spec.nodes} Spark and {self.engine_workers} engine "
                   "workers to join")  # fmt: skip

    # ------------------------------------------------------------ status

    def spark_status(self) -> dict[str, Any]:
        return spark_status(self.webui)

    def engine_status(self) -> dict[str, Any]:
        return engine_status(self.engine_address, self.layout.token)

    def state(self) -> dict[str, Any]:
        return {
            "spec": self.spec.name,
            "folder": str(self.layout.folder),
            "spark": self.spark_status(),
            "engine": self.engine_status(),
        }

    # ------------------------------------------------------------ down

    def down(self) -> list[str]:
        """Stop everything this folder recorded; returns what was stopped. Raises if a
        recorded process outlives SIGKILL."""
        stopped = []
        for i in range(self.spec.nodes, 0, -1):
            stopped += self._stop_spark(WORKER, i)
        stopped += self._stop_spark(MASTER, 1)
        procs = {path: recorded_process(path) for path in self.layout.engine_pidfiles()}
        for path, proc in procs.items():
            if proc is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
                stopped.append(f"engine {path.stem} (pid {proc.pid})")
        live = [p for p in procs.values() if p is not None]
        _, left = psutil.wait_procs(live, timeout=STOP_GRACE)
        for proc in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        _, left = psutil.wait_procs(left, timeout=STOP_GRACE)
        for path in procs:
            path.unlink(missing_ok=True)
        self.layout.state.unlink(missing_ok=True)
        if left:
            raise ClusterError(f"processes outlived SIGKILL: {[p.pid for p in left]}")
        return stopped

    def _stop_spark(self, cls: str, instance: int) -> list[str]:
        ident = f"taskbench-{self.spec.name}"
        pidfile = self.layout.spark / "pids" / f"spark-{ident}-{cls}-{instance}.pid"
        proc = recorded_process(pidfile)
        if proc is None:
            pidfile.unlink(missing_ok=True)
            return []
        with contextlib.suppress(ClusterError):
            self._daemon("stop", cls, instance)
        _, left = psutil.wait_procs([proc], timeout=STOP_GRACE)
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(left, timeout=STOP_GRACE)
        pidfile.unlink(missing_ok=True)
        return [f"spark {cls.rsplit('.', 1)[-1].lower()} {instance} (pid {proc.pid})"]


@contextlib.contextmanager
def _terminate_as_interrupt():
    """SIGTERM raises KeyboardInterrupt here, so ``up`` cleans up as for Ctrl-C."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
