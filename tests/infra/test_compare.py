"""``taskbench compare --cluster``: Spark on a real standalone cluster and the engine on its own
scheduler, every record naming the cluster; and the clear error when no cluster is up."""

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
from taskbench.infra.local import LocalCluster
from taskbench.infra.spec import load_spec

from .conftest import assert_nothing_left, recorded, spec_file

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def taskbench(*argv: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKBENCH_TOKEN")}
    return subprocess.run([sys.executable, "-m", "taskbench.cli", *argv], capture_output=True,
                          text=True, timeout=timeout, env=env)  # fmt: skip


def data_and_cluster(tmp_path: Path, rows: str) -> tuple[Path, Path, LocalCluster, list[str]]:
    """Generated data, a spec on free ports, its cluster (not up yet) and the flags naming it."""
    data = tmp_path / "data"
    made = taskbench("data", "generate", "--rows", rows, "--start", "2015-01", "--months", "1",
                     "--seed", "0", "--out", str(data), "--quiet")  # fmt: skip
    assert made.returncode == 0, made.stderr
    path = spec_file(tmp_path)
    cluster = LocalCluster(load_spec(path), tmp_path / "cluster")
    return data, path, cluster, ["--spec", str(path), "--dir", str(cluster.layout.folder)]


def test_compare_on_a_local_cluster_then_down_leaves_nothing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    data, path, cluster, where = data_and_cluster(tmp_path, "20k")
    up = taskbench("cluster", "up", *where)
    pids = recorded(cluster)
    try:
        assert up.returncode == 0, up.stderr
        done = taskbench("compare", "--cluster", str(path), "--cluster-dir",
                         str(cluster.layout.folder), "--engines", "engine,spark", "--queries",
                         "q01,q07", "--data", str(data), "--out", str(run))  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        manifest = json.loads((run / "run.json").read_text())
        assert manifest["command"].endswith(
            f"--cluster {path} --cluster-dir {cluster.layout.folder}"
        )
        assert manifest["cluster"]["spec"]["name"] == "local"
        assert manifest["cluster"]["spark"]["url"] == cluster.master_url
        assert len(manifest["cluster"]["engine"]["workers"]) == 2
        records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
        queries = [r for r in records if r["name"] == "query_seconds"]
        assert len(queries) == 2 * 2 * 3 and {r["status"] for r in queries} == {"valid"}
        assert all(r["metadata"]["cluster"]["spec"]["nodes"] == 2 for r in records)
        # Spark ran as an application of the standalone master, not in local mode
        assert list((cluster.layout.spark / "work").glob("app-*"))
        # the engine's tasks ran on the cluster's scheduler
        with Client(cluster.engine_address, token=cluster.layout.token.read_text()) as client:
            stream = client.task_stream()
        assert len(stream.records) > 0
        assert {r.worker for r in stream.records} <= {
            w["address"] for w in manifest["cluster"]["engine"]["workers"]
        }
    finally:
        down = taskbench("cluster", "down", *where)
    assert down.returncode == 0, down.stderr
    assert_nothing_left(pids, cluster)


def test_compare_without_a_cluster_up_says_so(tmp_path: Path) -> None:
    path = spec_file(tmp_path)
    done = taskbench("compare", "--cluster", str(path), "--cluster-dir", str(tmp_path / "none"),
                     "--data", str(tmp_path), "--out", str(tmp_path / "run"))  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"taskbench compare: error: no cluster is up in {tmp_path / 'none'}: taskbench cluster "
        f"up --spec {path}"
    )
    assert not (tmp_path / "run").exists()


def test_spark_workers_killed_mid_run_give_records_not_a_hang(tmp_path: Path) -> None:
    """Every Spark worker SIGKILLed once Spark has loaded: its queries end as timeout or error
    records within their timeout (30 s), the run finishes, and down cleans the stale pid files."""
    run = tmp_path / "run"
    data, path, cluster, where = data_and_cluster(tmp_path, "50k")
    assert taskbench("cluster", "up", *where).returncode == 0
    pids = recorded(cluster)
    workers = [int(p.read_text()) for p in cluster.layout.spark_pidfiles() if "Worker" in p.name]
    compare = subprocess.Popen(
        [sys.executable, "-m", "taskbench.cli", "compare", "--cluster", str(path),
         "--cluster-dir", str(cluster.layout.folder), "--engines", "spark", "--queries",
         "q01,q07", "--timeout", "30", "--data", str(data), "--out", str(run)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        records = run / "records.jsonl"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and '"load_seconds"' not in _text(records):
            assert compare.poll() is None, compare.stderr.read() if compare.stderr else ""
            time.sleep(0.05)
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        _, err = compare.communicate(timeout=300)  # bounded: 2 queries x 3 runs x 30 s at most
        assert compare.returncode == 1, err[-3000:]
        queries = [json.loads(line) for line in records.read_text().splitlines()
                   if '"query_seconds"' in line]  # fmt: skip
        assert queries and queries[-1]["status"] in ("timeout", "error")
        assert {"timeout", "error"} & {r["status"] for r in queries}
    finally:
        compare.kill()
        down = taskbench("cluster", "down", *where)
    assert down.returncode == 0, down.stderr
    assert_nothing_left(pids, cluster)


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""
