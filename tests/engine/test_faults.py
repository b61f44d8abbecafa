"""Workers dying mid-graph, hostile connections, and the wait for a worker that never comes."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time

import numpy as np
import pytest
from taskbench.engine import comm
from taskbench.engine.client import Client
from taskbench.engine.cluster import LocalCluster


def slow_block(i, seconds=0.05):
    time.sleep(seconds)
    return np.full(10_000, i, dtype="int64")


def block_sum(*blocks):
    return int(sum(int(b.sum()) for b in blocks))


def slow_inc(x, seconds=0.2):
    time.sleep(seconds)
    return x + 1


def reduction_graph(n=40):
    dsk = {("block", i): (slow_block, i) for i in range(n)}
    for j in range(n // 4):
        dsk[("part", j)] = (block_sum, *[("block", 4 * j + k) for k in range(4)])
    dsk["total"] = (sum, [("part", j) for j in range(n // 4)])
    return dsk


def expected_total(n=40):
    return sum(i * 10_000 for i in range(n))


def run_in_thread(fn):
    out = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as e:
            out["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, out


def test_sigkill_worker_mid_graph_recomputes_elsewhere():
    with LocalCluster(2, 1, validate=True) as cluster, Client(cluster) as client:
        start = client.stream_position()
        dsk = reduction_graph()
        t, out = run_in_thread(lambda: client.get(dsk, "total"))
        time.sleep(0.6)  # about half the blocks have run, spread over both workers
        victim = client.identity()["pids"]
        cluster.kill_worker(0)
        t.join(60)
        assert not t.is_alive(), "the graph did not finish after a worker died"
        assert "error" not in out, out.get("error")
        assert out["value"] == expected_total()
        stream = client.task_stream(start)
        workers = {r.worker for r in stream.records}
        # tasks ran on the worker that died, and the survivor finished the graph
        assert len(workers) == 2, victim
        survivor = client.identity()["workers"]
        assert len(survivor) == 1
        # the cluster keeps working for the next graph
        assert client.get({"x": (slow_inc, 1, 0.0)}, "x") == 2


def test_only_worker_dies_then_a_new_one_finishes_the_graph():
    with LocalCluster(1, 1, no_worker_timeout=60) as cluster, Client(cluster) as client:
        dsk = {("s", i): (slow_inc, i) for i in range(6)}
        t, out = run_in_thread(lambda: client.get(dsk, list(dsk)))
        time.sleep(0.3)
        cluster.kill_worker(0)
        cluster.add_worker()
        t.join(60)
        assert not t.is_alive()
        assert out.get("value") == tuple(i + 1 for i in range(6)), out.get("error")


def test_only_worker_dies_fails_clearly_after_the_timeout():
    with LocalCluster(1, 1, no_worker_timeout=1.5) as cluster, Client(cluster) as client:
        dsk = {("s", i): (slow_inc, i, 1.0) for i in range(4)}
        t, out = run_in_thread(lambda: client.get(dsk, list(dsk)))
        time.sleep(0.3)
        cluster.kill_worker(0)
        t.join(30)
        assert not t.is_alive(), "the client hung instead of failing"
        err = out.get("error")
        assert err is not None
        assert "no worker was available for 1.5 s" in str(err)


def _raw_connect(address):
    _, host, port = comm.parse_address(address)
    return socket.create_connection((host, port), timeout=5)


def test_hostile_connections_are_refused_while_clients_keep_working():
    with LocalCluster(2, 1) as cluster, Client(cluster) as client:
        dsk = {("ok", i): (slow_inc, i, 0.0) for i in range(100)}
        for attack in ("garbage", "oversized", "wrong-token"):
            if attack == "wrong-token":
                with pytest.raises(comm.HandshakeError):
                    asyncio.run(comm.connect(cluster.address, "not-the-token", timeout=5))
            else:
                s = _raw_connect(cluster.address)
                if attack == "garbage":
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 4)
                else:
                    s.sendall(struct.pack("<QI", 1 << 40, 1) + struct.pack("<Q", 1 << 40))
                s.settimeout(10)
                # the scheduler sends its challenge, then closes on the bad frame
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                s.close()
            assert client.get(dsk, list(dsk)) == tuple(i + 1 for i in range(100))
        assert len(client.identity()["workers"]) == 2


def test_worker_processes_are_gone_after_close():
    cluster = LocalCluster(2, 1).start()
    procs = [cluster.scheduler_process, *cluster.worker_processes]
    cluster.close()
    assert all(p.poll() is not None for p in procs)


def test_cluster_cleans_up_when_the_body_raises():
    procs = []
    with pytest.raises(KeyboardInterrupt), LocalCluster(1, 1) as cluster:
        procs = [cluster.scheduler_process, *cluster.worker_processes]
        raise KeyboardInterrupt
    assert procs and all(p.poll() is not None for p in procs)


CHILD = """
import os, signal, sys, time
from taskbench.engine.cluster import LocalCluster
with LocalCluster(2, 1) as cluster:
    pids = [cluster.scheduler_process.pid] + [p.pid for p in cluster.worker_processes]
    print(" ".join(map(str, pids)), flush=True)
    if sys.argv[1] == "sigint":
        os.kill(os.getpid(), signal.SIGINT)
    time.sleep(60)
"""


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("how", ["sigint", "sigkill"])
def test_children_die_with_the_parent(tmp_path, how):
    import subprocess
    import sys

    script = tmp_path / "child.py"
    script.write_text(CHILD)
    parent = subprocess.Popen(
        [sys.executable, str(script), how], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 3
    if how == "sigkill":
        parent.kill()
    parent.wait(30)
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)
