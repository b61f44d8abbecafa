"""The local provider for real: a Spark standalone cluster and engine processes on loopback,
up, used, and down with nothing left; a taken port, a stale pid file, SIGTERM halfway."""

from __future__ import annotations

import json
import operator
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from taskbench.engine.client import Client
from taskbench.infra.local import ClusterError, LocalCluster
from taskbench.infra.spec import ClusterSpec, load_spec

from .conftest import CLUSTERS, assert_nothing_left, recorded, spec_file

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_up_status_use_and_down_leave_no_process(tmp_path: Path) -> None:
    spec = load_spec(spec_file(tmp_path))
    cluster = LocalCluster(spec, tmp_path / "cluster")
    try:
        state = cluster.up()
        pids = recorded(cluster)
        assert len(pids) == 1 + spec.nodes + 1 + spec.nodes  # master, workers, scheduler, workers
        spark, engine = state["spark"], state["engine"]
        assert spark["status"] == "ALIVE" and spark["url"] == cluster.master_url
        assert [w["cores"] for w in spark["workers"]] == [1, 1]
        assert [w["memory_mb"] for w in spark["workers"]] == [1024, 1024]
        assert all(w["address"].startswith("127.0.0.1:") for w in spark["workers"])
        assert len(engine["workers"]) == 2 and all(w["threads"] == 1 for w in engine["workers"])
        token = cluster.layout.token.read_text()
        assert oct(cluster.layout.token.stat().st_mode & 0o777) == "0o600"
        with Client(cluster.engine_address, token=token) as client:
            assert client.get({"a": 1, "b": (operator.add, "a", 41)}, "b") == 42
        job = (
            "from pyspark.sql import SparkSession;"
            f"s = SparkSession.builder.master({cluster.master_url!r})"
            ".config('spark.driver.host', '127.0.0.1')"
            ".config('spark.driver.bindAddress', '127.0.0.1')"
            ".config('spark.ui.enabled', 'false').getOrCreate();"
            "print(s.range(1000).selectExpr('sum(id) AS s').collect()[0].s); s.stop()"
        )
        done = subprocess.run([sys.executable, "-c", job], capture_output=True, text=True,
                              timeout=180)  # fmt: skip
        assert done.stdout.split()[-1:] == ["499500"], done.stderr[-2000:]

        # what an EC2 master reads through node.json, against these real processes
        node = tmp_path / "node"
        (node / "engine").mkdir(parents=True)
        (node / "engine" / "token").write_text(token)
        (node / "node.json").write_text(json.dumps({"spark_url": cluster.master_url,
            "webui": cluster.webui, "engine_address": cluster.engine_address}))  # fmt: skip
        ec2_spec = CLUSTERS / "ec2-small.yaml"
        done = subprocess.run([sys.executable, "-m", "taskbench.cli", "cluster", "status",
                               "--spec", str(ec2_spec), "--dir", str(node), "--json"],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        seen = json.loads(done.stdout)
        assert len(seen["spark"]["workers"]) == 2 and len(seen["engine"]["workers"]) == 2
        assert {w["rss_mb"] for w in seen["engine"]["workers"]} == {None}  # not this machine's
    finally:
        pids = recorded(cluster)
        stopped = cluster.down()
    assert len(stopped) == len(pids) == 6
    assert_nothing_left(pids, cluster)
    assert cluster.down() == []  # down again: nothing to do


def assert_up_fails_on_a_taken_engine_port(cluster: LocalCluster, match: str) -> None:
    """``up`` with the engine's port held by another socket: ``match`` is in the error, and
    nothing is left running."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", cluster.ports.engine_port))
        s.listen()
        with pytest.raises(ClusterError, match=match):
            cluster.up()
    assert recorded(cluster) == []


def test_a_taken_port_is_named_and_nothing_starts(tmp_path: Path) -> None:
    cluster = LocalCluster(load_spec(spec_file(tmp_path)), tmp_path / "cluster")
    assert_up_fails_on_a_taken_engine_port(
        cluster, rf"{cluster.ports.engine_port} \(engine scheduler\)"
    )


def test_a_port_taken_after_the_check_is_named_from_the_schedulers_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another program may bind the port between the check and the start: the error quotes
    the scheduler's own last words, and nothing is left running."""
    cluster = LocalCluster(load_spec(spec_file(tmp_path)), tmp_path / "cluster")
    monkeypatch.setattr("taskbench.infra.local.port_taken", lambda port: False)
    monkeypatch.setattr(cluster, "_daemon", lambda *args: None)  # Spark is not under test here
    assert_up_fails_on_a_taken_engine_port(
        cluster, r"scheduler exited \(scheduler: .*address already in use"
    )


def test_stale_and_reused_pid_files_are_cleaned_and_a_live_one_refused(tmp_path: Path) -> None:
    spec = load_spec(spec_file(tmp_path))
    cluster = LocalCluster(spec, tmp_path / "cluster")
    cluster.layout.engine.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stranger = subprocess.Popen(["sleep", "60"])  # a live pid that is not ours: never killed
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "taskbench.cli", "engine", "scheduler", "--port", "0"],
        env={**os.environ, "TASKBENCH_TOKEN": "x" * 32}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        stale = cluster.layout.engine_pidfile("worker-8")
        stale.write_text(f"{dead.pid}\n")
        reused = cluster.layout.engine_pidfile("worker-9")
        reused.write_text(f"{stranger.pid}\n")
        assert cluster.live_processes() == {} and not stale.exists() and not reused.exists()
        assert stranger.poll() is None
        cluster.layout.engine_pidfile("scheduler").write_text(f"{scheduler.pid}\n")
        with pytest.raises(ClusterError, match="already up"):
            cluster.up()
        assert cluster.down() == [f"engine scheduler (pid {scheduler.pid})"]
        assert not psutil.pid_exists(scheduler.pid)  # stopped and reaped by down
        assert stranger.poll() is None
    finally:
        stranger.kill()
        scheduler.kill()


# Runs `taskbench cluster up` with one change: before waiting for workers to join, it touches
# MARKER and sleeps (bounded), so the test's SIGTERM lands halfway through `up` on every run.
PAUSED_UP = """
import sys, time
from pathlib import Path
from taskbench import cli
from taskbench.infra.local import LocalCluster

marker, args = Path(sys.argv[1]), sys.argv[2:]
join = LocalCluster._wait_until_joined

def paused(self):
    marker.touch()
    time.sleep(60)
    join(self)

LocalCluster._wait_until_joined = paused
sys.exit(cli.main(args))
"""


def test_sigterm_halfway_through_up_stops_what_had_started(tmp_path: Path) -> None:
    path = spec_file(tmp_path)
    cluster = LocalCluster(load_spec(path), tmp_path / "cluster")
    marker = tmp_path / "waiting-for-workers"
    up = subprocess.Popen(
        [sys.executable, "-c", PAUSED_UP, str(marker), "cluster", "up", "--spec", str(path),
         "--dir", str(cluster.layout.folder)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not marker.exists() and up.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marker.exists(), "up never reached the wait for workers"
    pids = [int(p.read_text()) for p in (cluster.layout.spark / "pids").glob("*.pid")]
    assert pids and cluster.layout.engine_pidfiles(), (
        "the Spark daemons or the engine did not start"
    )
    up.send_signal(signal.SIGTERM)
    _, err = up.communicate(timeout=120)
    assert up.returncode == 130, err
    assert "interrupted; what had started was stopped" in err
    assert_nothing_left(pids + recorded(cluster), cluster)


def test_the_command_reports_a_bad_spec_and_an_ec2_spec(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n")
    env = {**os.environ, "TASKBENCH_LOG_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "taskbench.cli", "cluster"]
    done = subprocess.run([*command, "up", "--spec", str(bad)], capture_output=True, text=True,
                          env=env, timeout=60)  # fmt: skip
    assert done.returncode == 2 and f"{bad}: provider: Field required" in done.stderr
    assert isinstance(load_spec(CLUSTERS / "ec2-small.yaml"), ClusterSpec)
    done = subprocess.run([*command, "status", "--spec", str(CLUSTERS / "ec2-small.yaml"),
                           "--dir", str(tmp_path / "none")],
                          capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert done.returncode == 1 and f"no EC2 run recorded in {tmp_path / 'none'}" in done.stderr
