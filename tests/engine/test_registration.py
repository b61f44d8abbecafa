"""A peer that lies is refused or dropped, with a reason; the scheduler serves everyone else.

The lying workers are raw connections over the engine's comm (handshake, then hand-written
messages). After each lie, a real client on the same cluster runs a graph.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import subprocess
import sys

import pytest
from taskbench.engine import comm
from taskbench.engine.client import Client, sync
from taskbench.engine.cluster import InProcessCluster, LocalCluster
from taskbench.engine.graph import GraphError
from taskbench.engine.scheduler import Scheduler, registration_problem
from taskbench.engine.worker import RegistrationRefused, Worker

T = 10.0  # seconds: the bound on any single wait here
DROP = object()  # a field the message leaves out


def inc(x):
    return x + 1


GRAPH = {("ok", i): (inc, i) for i in range(50)}
EXPECTED = tuple(range(1, 51))


def registration(**changes: object) -> dict:
    """A well-formed ``register-worker``, with ``changes`` (``DROP`` removes a field)."""
    msg = {
        "op": "register-worker",
        "address": "tcp://127.0.0.1:9",
        "nthreads": 2,
        "pid": 4242,
        "protocol": comm.PROTOCOL,
        **changes,
    }
    return {k: v for k, v in msg.items() if v is not DROP}


# --------------------------------------------------------------------------- the rules


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param({"nthreads": 0}, r"nthreads must be an integer >= 1, not 0", id="nthreads-0"),
        pytest.param({"nthreads": -2}, r"nthreads .* not -2", id="nthreads-negative"),
        pytest.param({"nthreads": "4"}, r"nthreads .* not '4'", id="nthreads-str"),
        pytest.param({"nthreads": True}, r"nthreads .* not True", id="nthreads-bool"),
        pytest.param({"nthreads": 1.5}, r"nthreads .* not 1.5", id="nthreads-float"),
        pytest.param({"nthreads": DROP}, r"nthreads .* not None", id="nthreads-missing"),
        pytest.param({"memory_limit": -1}, r"memory_limit .* >= 0, not -1", id="memory-negative"),
        pytest.param({"memory_limit": math.nan}, r"memory_limit .* nan", id="memory-nan"),
        pytest.param({"memory_limit": "1GB"}, r"memory_limit .* '1GB'", id="memory-str"),
        pytest.param({"address": "tcp://127.0.0.1:99999"}, r"is not tcp://host:port", id="port"),
        pytest.param({"address": "tcp://127.0.0.1:0"}, r"port 1-65535", id="port-0"),
        pytest.param({"address": "tcp://:80"}, r"is not tcp://host:port", id="no-host"),
        pytest.param({"address": "no address"}, r"is not tcp://host:port", id="garbage"),
        pytest.param({"address": "http://h:80"}, r"is not tcp://host:port", id="scheme"),
        pytest.param({"address": "inproc://w"}, r"is not tcp://host:port", id="inproc-on-tcp"),
        pytest.param({"address": 80}, r"address 80 is not a string", id="address-int"),
        pytest.param({"protocol": 999}, r"speaks protocol 999, this scheduler", id="protocol"),
        pytest.param({"protocol": "1"}, r"speaks protocol '1'", id="protocol-str"),
        pytest.param({"protocol": DROP}, r"sent no protocol version", id="protocol-missing"),
        pytest.param({"pid": -1}, r"pid must be an integer >= 0, not -1", id="pid"),
        pytest.param(
            {"address": "tcp://127.0.0.1:8000"}, r"127.0.0.1:8000 is already registered", id="dup"
        ),
    ],
)
def test_registration_problem_names_the_lie(changes, reason):
    problem = registration_problem(registration(**changes), "tcp", {"tcp://127.0.0.1:8000"})
    assert problem is not None
    assert "\n" not in problem  # the worker prints it as one line
    assert re.search(reason, problem), problem


def test_registration_problem_accepts_honest_workers():
    assert registration_problem(registration(), "tcp", set()) is None
    assert registration_problem(registration(memory_limit=0), "tcp", set()) is None
    assert registration_problem(registration(memory_limit=2**34), "tcp", set()) is None
    assert registration_problem(registration(address="tcp://[::1]:8786"), "tcp", set()) is None
    assert registration_problem(registration(address="inproc://w-1"), "inproc", set()) is None
    assert registration_problem(registration(address="inproc://"), "inproc", set()) is not None
    assert registration_problem(registration(pid=DROP), "tcp", set()) is None


# --------------------------------------------------------------------------- a live cluster


async def _lie(address: str, token: str, *messages: dict) -> list[dict]:
    """Register, then send the other ``messages``; every reply until the scheduler hangs up."""
    c = await comm.connect(address, token, timeout=T)
    replies = []
    try:
        first, *rest = messages
        await c.write(first)
        replies.append((await c.read(timeout=T))[0])
        for msg in rest:
            c.send(msg)
        while True:
            reply, _ = await c.read(timeout=T)
            replies.append(reply)
    except comm.CommClosedError:
        return replies
    finally:
        c.abort()


def lie(cluster, *messages: dict) -> list[dict]:
    return asyncio.run(asyncio.wait_for(_lie(cluster.address, cluster.token, *messages), 2 * T))


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(2, 1, validate=True) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def client(cluster):
    with Client(cluster) as client:
        yield client


def _refused(replies: list[dict]) -> str:
    assert [r["op"] for r in replies] == ["refused"], replies
    return replies[0]["message"]


def test_lying_workers_are_refused_and_the_cluster_keeps_working(cluster, client):
    workers = client.identity()["workers"]
    assert client.get(GRAPH, list(GRAPH)) == EXPECTED
    real = next(iter(workers))
    lies = [
        (registration(nthreads=0), "nthreads must be an integer >= 1, not 0"),
        (registration(nthreads=-2), "nthreads must be an integer >= 1, not -2"),
        (registration(memory_limit=-1), "memory_limit must be a number of bytes >= 0, not -1"),
        (registration(address=real), f"a worker at {real} is already registered"),
        (registration(address="tcp://127.0.0.1:70000"), "is not tcp://host:port"),
        (registration(address="tcp//nowhere"), "is not tcp://host:port"),
        (
            registration(protocol=999),
            f"speaks protocol 999, this scheduler protocol {comm.PROTOCOL}",
        ),
        (registration(protocol=DROP), "the worker sent no protocol version"),
    ]
    for msg, reason in lies:
        assert reason in _refused(lie(cluster, msg))
        assert client.identity()["workers"] == workers
        assert client.get(GRAPH, list(GRAPH)) == EXPECTED


def test_a_second_registration_on_one_connection_is_refused(cluster, client):
    workers = client.identity()["workers"]
    replies = lie(cluster, registration(), registration(nthreads=8))
    assert [r["op"] for r in replies] == ["registered", "refused"], replies
    assert "already registered the worker at tcp://127.0.0.1:9" in replies[1]["message"]
    assert client.identity()["workers"] == workers  # the liar is gone
    assert client.get(GRAPH, list(GRAPH)) == EXPECTED


def test_a_message_that_fails_drops_only_its_worker(cluster, client):
    workers = client.identity()["workers"]
    garbage = {"op": "task-finished", "records": "not records"}
    replies = lie(cluster, registration(address="tcp://127.0.0.1:10"), garbage)
    assert [r["op"] for r in replies] == ["registered"], replies  # then the scheduler hung up
    assert client.identity()["workers"] == workers
    assert client.get(GRAPH, list(GRAPH)) == EXPECTED


def test_lying_clients_are_refused_or_dropped(cluster, client):
    # a client id that is taken would steal the real client's stream
    assert "taken" in _refused(lie(cluster, {"op": "register-client", "client": client.id}))
    assert "invalid" in _refused(lie(cluster, {"op": "register-client", "client": ["x"]}))
    assert client.get(GRAPH, list(GRAPH)) == EXPECTED
    # a registered client whose message fails is dropped; the others keep working
    replies = lie(cluster, {"op": "register-client", "client": "liar"}, {"op": "release-keys"})
    assert [r["op"] for r in replies] == ["registered"], replies
    assert client.get(GRAPH, list(GRAPH)) == EXPECTED
    assert client.identity()["workers"] and len(client.identity()["workers"]) == 2


def test_a_graph_that_fails_in_the_scheduler_is_refused_to_its_client_only(monkeypatch):
    """A bug while handling one client's graph: that client is told why, the rest go on."""
    with InProcessCluster(1, 1) as cluster, Client(cluster) as victim, Client(cluster) as other:

        def boom(*args, **kwargs):
            raise ZeroDivisionError("division by zero")

        monkeypatch.setattr(cluster.scheduler.state, "update_graph", boom)
        with pytest.raises(GraphError, match=r"failed on this graph .*ZeroDivisionError"):
            victim.get(GRAPH, list(GRAPH))
        monkeypatch.undo()
        with pytest.raises(ConnectionError):  # its connection was closed
            victim.get(GRAPH, list(GRAPH))
        assert other.get(GRAPH, list(GRAPH)) == EXPECTED
        with Client(cluster) as again:
            assert again.get(GRAPH, list(GRAPH)) == EXPECTED


# --------------------------------------------------------------------------- real workers


def test_a_refused_worker_raises_with_the_reason_and_the_scheduler_logs_it(caplog):
    with InProcessCluster(1, 1) as cluster, Client(cluster) as client:
        with caplog.at_level(logging.WARNING, logger="taskbench.engine.scheduler"):
            w = Worker(cluster.address, nthreads=0, token=cluster.token, listen="inproc://")
            with pytest.raises(RegistrationRefused, match="nthreads must be an integer >= 1"):
                sync(w.start(), T)
        assert w.closing  # its threads and server are stopped
        assert "refused worker registration" in caplog.text
        assert "nthreads must be an integer >= 1, not 0" in caplog.text
        assert len(client.identity()["workers"]) == 1
        assert client.get(GRAPH, list(GRAPH)) == EXPECTED


def test_the_cli_worker_prints_the_refusal_on_one_line_and_exits_nonzero(monkeypatch):
    """A real scheduler of another protocol refuses a real ``engine worker`` process."""
    token = comm.new_token()
    monkeypatch.setattr(comm, "PROTOCOL", comm.PROTOCOL + 1)  # this process's scheduler only

    async def start() -> Scheduler:
        s = Scheduler(token=token)
        await s.start("tcp://127.0.0.1:0")
        return s

    scheduler = sync(start(), T)
    try:
        env = {**os.environ, comm.TOKEN_ENV: token}
        cmd = [sys.executable, "-m", "taskbench.engine.cli", "engine", "worker"]
        done = subprocess.run(
            [*cmd, scheduler.address, "--log-level", "WARNING"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        sync(_close(scheduler), T)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if "refused" in line]
    assert len(lines) == 1, done.stderr
    assert f"speaks protocol {comm.PROTOCOL - 1}, this scheduler protocol" in lines[0]


async def _close(scheduler: Scheduler) -> None:
    scheduler.close()
