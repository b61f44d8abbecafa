"""The p2p shuffle: every row exactly once, restricted unpacks, and workers dying mid-shuffle.

Three layers, as the code is split: the scheduler's bookkeeping (``engine.shuffle_state``)
driven as a pure state machine (with a randomised model of workers, deliveries and deaths),
the worker runtime's buffer (``engine.shuffle_runtime``), and whole shuffles
(``engine.dataframe.p2p``) on an in-process and a multi-process cluster, compared with the
``tasks`` shuffle and with pandas' hash partition, partition by partition.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import numpy as np
import pandas as pd
import pytest
import taskbench.engine.dataframe as edf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal
from taskbench.engine import comm, shuffle_runtime
from taskbench.engine.client import Client
from taskbench.engine.cluster import InProcessCluster, LocalCluster
from taskbench.engine.dataframe.p2p import p2p_layers
from taskbench.engine.dataframe.shuffle import (
    SHUFFLE_METHODS,
    hash_targets,
    partition_by_hash,
    rearrange,
    tasks_layers,
)
from taskbench.engine.local import get_sync
from taskbench.engine.shuffle_runtime import Batch, ShuffleRuntime
from taskbench.engine.shuffle_state import SHUFFLE_CLIENT
from taskbench.engine.state import SchedulerState

from tests.engine.dataframe.helpers import SETTINGS, frames, make_frame


@pytest.fixture(autouse=True)
def p2p_registered(monkeypatch):
    monkeypatch.setitem(SHUFFLE_METHODS, "p2p", p2p_layers)


def row_checksums(df: pd.DataFrame) -> pd.Series:
    """One hash per row over index and every column: equal multisets of rows, equal hashes."""
    return pd.util.hash_pandas_object(df, index=True).sort_values(ignore_index=True)


def check_partitions(pdf: pd.DataFrame, got: list, on: list, n_out: int, tasks: list) -> None:
    """Every row once (count and checksum); each partition as pandas and ``tasks`` make it."""
    assert len(got) == n_out
    whole = pd.concat(got) if got else pdf.iloc[:0]
    assert len(whole) == len(pdf)
    assert row_checksums(whole).equals(row_checksums(pdf))
    for part, want, same in zip(got, partition_by_hash(pdf, on, n_out), tasks, strict=True):
        assert sorted(part.index) == sorted(want.index)
        assert list(part.dtypes) == list(pdf.dtypes)
        # the same rows in the same order as the tasks shuffle (input order, then row order);
        # a RangeIndex may come back as an equal Index
        assert_frame_equal(part, same, check_index_type=False)


def both_shuffles(client: Any, pdf: pd.DataFrame, n_in: int, on: list, n_out: int, **options):
    df = edf.from_pandas(pdf, n_in)
    p2p = df.shuffle(on, n_out, method="p2p", **options)
    tasks = df.shuffle(on, n_out, method="tasks")
    return client.get(p2p.graph, p2p._output_keys()), client.get(tasks.graph, tasks._output_keys())


# =========================================================================== scheduler state


def shuffle_graph(n: int, m: int, tag: str = "s") -> tuple[dict, dict, dict]:
    """(spec, update_graph tasks, order) of a p2p shuffle of inputs ``("in", i)``."""
    spec = {
        "id": f"out-{tag}", "n": n, "m": m, "assign": f"p2p-assign-{tag}",
        "transfer": f"p2p-transfer-{tag}", "barrier": f"p2p-barrier-{tag}", "output": f"out-{tag}",
    }  # fmt: skip
    tasks: dict[Any, tuple] = {("in", i): ([], "run", 0, "in") for i in range(n)}
    tasks[spec["assign"]] = ([], "run", 0, "p2p-assign")
    for i in range(n):
        tasks[(spec["transfer"], i)] = ([("in", i), spec["assign"]], "run", 0, "p2p-transfer")
    tasks[spec["barrier"]] = ([(spec["transfer"], i) for i in range(n)], "run", 0, "p2p-barrier")
    for j in range(m):
        tasks[(spec["output"], j)] = ([spec["barrier"]], "run", 0, "out")
    return spec, tasks, {k: i for i, k in enumerate(tasks)}


def outputs(spec: dict) -> list:
    return [(spec["output"], j) for j in range(spec["m"])]


def where(state: SchedulerState, key: Any) -> str:
    ts = state.tasks[key]
    assert ts.state == "processing", ts
    return ts.processing_on.address


def ask(state: SchedulerState, spec: dict, index: int | None, address: str | None = None):
    key = spec["assign"] if index is None else (spec["transfer"], index)
    address = address or where(state, key)
    wm, _ = state.shuffle_request(
        address, {"spec": spec, "index": index, "req": 7}, stimulus_id="ask"
    )
    [reply] = [m for m in wm[address] if m["op"] == "shuffle-plan"]
    assert reply["req"] == 7
    return reply


def finish(state: SchedulerState, *keys: Any) -> tuple[dict, dict]:
    by_worker: dict[str, list] = {}
    for key in keys:
        by_worker.setdefault(where(state, key), []).append((key, 10, 0.001))
    wm: dict = {}
    cm: dict = {}
    for addr, done in by_worker.items():
        w, c = state.tasks_finished(addr, done, stimulus_id="fin")
        for a, msgs in w.items():
            wm.setdefault(a, []).extend(msgs)
        for a, msgs in c.items():
            cm.setdefault(a, []).extend(msgs)
    return wm, cm


def computed(wm: dict) -> dict[str, list]:
    out: dict[str, list] = {}
    for addr, msgs in wm.items():
        for msg in msgs:
            if msg["op"] == "compute":
                out.setdefault(addr, []).extend(t[0] for t in msg["tasks"])
    return out


def through_barrier(workers=("A", "B"), n: int = 4, m: int = 6, **kwargs: Any):
    """A state with a shuffle whose transfers and barrier are done: unpacks are placed."""
    state = SchedulerState(validate=True, **kwargs)
    for w in workers:
        state.add_worker(w, 1, stimulus_id=f"add-{w}")
    spec, tasks, order = shuffle_graph(n, m)
    state.update_graph("c", tasks, outputs(spec), order, stimulus_id="graph")
    assert ask(state, spec, None)["inc"] == 1
    finish(state, spec["assign"], *[("in", i) for i in range(n)])
    plans = [ask(state, spec, i) for i in range(n)]
    assert all(p["send"] is None and p["epoch"] == 1 for p in plans)  # first run: everything
    finish(state, *[(spec["transfer"], i) for i in range(n)])
    wm, _ = finish(state, spec["barrier"])
    return state, spec, plans[0], wm


def owner_of(plan: dict, j: int) -> str:
    return plan["workers"][plan["owners"][j]]


def test_unpacks_run_only_on_their_owners():
    state, spec, plan, _wm = through_barrier(("A", "B", "C"), n=4, m=7)
    assert sorted(set(plan["workers"])) == ["A", "B", "C"]
    owners = {owner_of(plan, j) for j in range(7)}
    assert owners == {"A", "B", "C"}  # spread over every worker alive at assign time
    for j, key in enumerate(outputs(spec)):
        assert where(state, key) == owner_of(plan, j)
        assert state.tasks[key].restriction.address == owner_of(plan, j)


def test_restricted_unpacks_are_never_stolen():
    # every output on A; B idle: stealing would love to move them
    state, spec, _plan, _ = through_barrier(("A",), n=3, m=12)
    state.add_worker("B", 1, stimulus_id="late")
    state.durations["out"] = 10.0
    wm, _ = state.balance(1.0, stimulus_id="tick")
    assert not any(m["op"] == "steal-request" for msgs in wm.values() for m in msgs)
    assert all(where(state, k) == "A" for k in outputs(spec))
    assert state.workers["A"].stealable == [{} for _ in state.workers["A"].stealable]


def test_pinned_input_does_not_pull_an_unpack_to_the_wrong_worker():
    # one input: the barrier follows its single transfer, but an unpack goes to its owner
    state = SchedulerState(validate=True)
    for w in ("A", "B"):
        state.add_worker(w, 1, stimulus_id=w)
    spec, tasks, order = shuffle_graph(1, 4)
    state.update_graph("c", tasks, outputs(spec), order, stimulus_id="graph")
    ask(state, spec, None)
    finish(state, spec["assign"], ("in", 0))
    plan = ask(state, spec, 0)
    transfer_on = where(state, (spec["transfer"], 0))
    wm, _ = finish(state, (spec["transfer"], 0))
    placed = computed(wm)
    for j, key in enumerate(outputs(spec)):
        if owner_of(plan, j) == transfer_on:
            assert key in placed.get(transfer_on, []) or state.tasks[key].state == "processing"
        else:
            assert state.tasks[key].state == "waiting"  # until the barrier is in memory
    finish(state, spec["barrier"])
    for j, key in enumerate(outputs(spec)):
        assert where(state, key) == owner_of(plan, j)


def test_a_lost_worker_moves_only_its_outputs_and_only_their_shards_are_sent_again():
    state, spec, plan, _ = through_barrier(("A", "B"), n=4, m=6)
    on_a = [j for j in range(6) if owner_of(plan, j) == "A"]
    on_b = [j for j in range(6) if owner_of(plan, j) == "B"]
    finish(state, *[outputs(spec)[j] for j in on_a])  # A's outputs are done
    state.remove_worker("B", stimulus_id="kill-B")
    for j in on_a:
        assert state.tasks[outputs(spec)[j]].state == "memory"  # kept: never re-run
    for j in on_b:
        ts = state.tasks[outputs(spec)[j]]
        assert ts.state == "waiting" and ts.restriction.address == "A"
    # every transfer runs again (B may have held shards from any of them): their inputs and
    # the assign task were freed, so they run again too; the shuffle keeps its incarnation
    assert ask(state, spec, None)["inc"] == 1
    finish(state, spec["assign"], *[("in", i) for i in range(4)])
    for i in range(4):
        key = (spec["transfer"], i)
        assert state.tasks[key].state == "processing"
        assert SHUFFLE_CLIENT in state.tasks[key].who_wants
        again = ask(state, spec, i)
        # ... but sends only the moved outputs, now all owned by A
        assert sorted(again["send"]) == on_b
        assert {owner_of(again, j) for j in range(6)} == {"A"}
    finish(state, *[(spec["transfer"], i) for i in range(3)])
    for j in on_b:
        assert state.tasks[outputs(spec)[j]].state == "waiting"  # one transfer still out
    finish(state, (spec["transfer"], 3))
    for j in on_b:
        assert where(state, outputs(spec)[j]) == "A"
    for i in range(4):  # the shuffle's own want is gone again
        assert state.tasks[(spec["transfer"], i)].who_wants is None


def test_a_transfer_that_finishes_on_an_old_plan_runs_again():
    state = SchedulerState(validate=True)
    for w in ("A", "B", "C"):
        state.add_worker(w, 1, stimulus_id=w)
    spec, tasks, order = shuffle_graph(3, 6)
    state.update_graph("c", tasks, outputs(spec), order, stimulus_id="graph")
    ask(state, spec, None)
    finish(state, spec["assign"], *[("in", i) for i in range(3)])
    plans = {i: ask(state, spec, i) for i in range(3)}
    # C dies while every transfer runs; the transfers elsewhere go on with epoch-1 plans
    lost = [j for j in range(6) if owner_of(plans[0], j) == "C"]
    on_c = [i for i in range(3) if where(state, (spec["transfer"], i)) == "C"]
    others = [i for i in range(3) if i not in on_c]
    state.remove_worker("C", stimulus_id="kill-C")
    rec = state.shuffles.records[spec["id"]]
    assert rec.epoch == 2 and [rec.output_epoch[j] for j in lost] == [2] * len(lost)
    finish(state, *[(spec["transfer"], i) for i in others])
    for i in others:  # finished on epoch 1: they run once more, for the moved outputs only
        key = (spec["transfer"], i)
        assert rec.done_epoch[i] == 1 and SHUFFLE_CLIENT in state.tasks[key].who_wants
        assert state.tasks[key].state in ("waiting", "processing")
    # their inputs were kept for that run (inputs of the transfers lost with C run again)
    for key in (spec["assign"], *[("in", i) for i in range(3)]):
        assert state.tasks[key].state in ("memory", "processing")
        if state.tasks[key].state == "processing":
            finish(state, key)
    for i in range(3):
        again = ask(state, spec, i)
        assert again["epoch"] == 2
        assert again["send"] == (None if i in on_c else lost)  # never finished: everything
    for j in range(6):
        assert state.tasks[outputs(spec)[j]].state == "waiting"
    finish(state, *[(spec["transfer"], i) for i in range(3)])
    finish(state, spec["barrier"])
    for j in range(6):
        assert where(state, outputs(spec)[j]) in ("A", "B")


def test_forgetting_the_shuffle_drops_its_buffers_everywhere():
    state, spec, _plan, _ = through_barrier(("A", "B"), n=2, m=3)
    finish(state, *outputs(spec))
    wm, _ = state.release_keys("c", outputs(spec), stimulus_id="done")
    assert state.tasks == {} and state.shuffles.records == {}
    for addr in ("A", "B"):
        assert {"op": "shuffle-drop", "id": spec["id"], "inc": 1} in wm[addr]


def test_a_stale_request_is_told_to_abandon():
    state, spec, _plan, _ = through_barrier(("A", "B"), n=2, m=2)
    # the transfers are done: a late request from any worker gets no plan
    assert ask(state, spec, 0, "A") == {"op": "shuffle-plan", "req": 7, "abandon": True}
    assert ask(state, spec, None, "B")["abandon"]


# ---------------------------------------------------------------- a model of workers


class FakeWorker:
    def __init__(self) -> None:
        self.queue: dict[Any, list] = {}  # key -> deps entries, not started
        self.started: dict[Any, Any] = {}  # key -> plan (transfers) or shards (unpacks)
        self.zombies: dict[Any, Any] = {}  # freed while running: they still run to the end
        self.data: set = set()
        self.held: dict[int, set[int]] = {}  # output -> inputs whose shard is here


class ShuffleModel:
    """Fake workers around the real ``SchedulerState``: plans, deliveries, deaths, steals.

    A transfer asks for its plan when it starts and delivers when it ends, to the owners its
    plan named; a delivery to a worker that died meanwhile is lost (harsher than the real
    transfer, which would ask again). An unpack takes its shards when it starts and must
    find one from every input; a worker freed of a running task lets it run on (a zombie).
    """

    def __init__(self, rnd: random.Random, n: int, m: int, n_workers: int, stealing: bool):
        self.rnd = rnd
        self.state = SchedulerState(validate=True, stealing=stealing, placement="random", seed=1)
        self.spec, self.tasks, self.order = shuffle_graph(n, m)
        self.n, self.m = n, m
        self.workers: dict[str, FakeWorker] = {}
        self.next = 0
        self.done: dict[int, int] = {}  # output -> unpacks that reported a result
        self.wanted = set(outputs(self.spec))
        for _ in range(n_workers):
            self.add_worker()
        self.apply(self.state.update_graph(
            "c", self.tasks, sorted(self.wanted), self.order, stimulus_id="graph"
        ))  # fmt: skip

    # -- plumbing
    def apply(self, msgs: tuple) -> None:
        wm, _cm = msgs
        for addr, batch in wm.items():
            fw = self.workers.get(addr)
            if fw is None:
                continue
            for msg in batch:
                op = msg["op"]
                if op == "compute":
                    for key, _prio, _kind, deps, _report in msg["tasks"]:
                        if key in fw.zombies:
                            fw.started[key] = fw.zombies.pop(key)  # picked up again
                        else:
                            fw.queue[key] = deps
                elif op == "free":
                    for key in msg["keys"]:
                        fw.data.discard(key)
                        fw.queue.pop(key, None)
                        if key in fw.started:
                            fw.zombies[key] = fw.started.pop(key)
                elif op == "steal-request":
                    stolen = [fw.queue.pop(k, None) is not None for k in msg["keys"]]
                    for k, ok in zip(msg["keys"], stolen, strict=True):
                        self.apply(self.state.steal_response(addr, k, ok, stimulus_id="steal"))
                elif op == "shuffle-drop":
                    fw.held.clear()
                else:
                    assert op == "shuffle-plan", msg

    def role(self, key: Any) -> str:
        spec = self.spec
        if key == spec["assign"]:
            return "assign"
        if key == spec["barrier"]:
            return "barrier"
        return {spec["transfer"]: "transfer", spec["output"]: "output"}.get(key[0], "input")

    def ready(self, fw: FakeWorker, deps: list) -> bool:
        for dk, _nbytes, _holders in deps:
            if dk in fw.data:
                continue
            ts = self.state.tasks.get(dk)
            if ts is None or ts.state != "memory":
                return False
        return True

    # -- actions
    def add_worker(self) -> None:
        addr = f"w{self.next}"
        self.next += 1
        self.workers[addr] = FakeWorker()
        self.apply(self.state.add_worker(addr, self.rnd.choice([1, 2]), stimulus_id="add"))

    def remove_worker(self) -> None:
        addr = self.rnd.choice(sorted(self.workers))
        del self.workers[addr]
        self.apply(self.state.remove_worker(addr, stimulus_id="kill"))

    def start(self, addr: str, key: Any) -> None:
        fw = self.workers[addr]
        deps = fw.queue.pop(key)
        fetched = [(d[0], 10) for d in deps if d[0] not in fw.data]
        if fetched:  # copies from peers, which the scheduler learns of (or frees)
            fw.data.update(k for k, _ in fetched)
            self.apply(self.state.add_replicas(addr, fetched, stimulus_id="replicas"))
        role = self.role(key)
        if role in ("transfer", "assign"):
            index = key[1] if role == "transfer" else None
            wm, _ = self.state.shuffle_request(
                addr, {"spec": self.spec, "index": index, "req": 0}, stimulus_id="ask"
            )
            [plan] = [m for m in wm[addr] if m["op"] == "shuffle-plan"]
            rest = {a: [m for m in b if m["op"] != "shuffle-plan"] for a, b in wm.items()}
            self.apply((rest, {}))
            fw.started[key] = plan
        elif role == "output":
            j = key[1]
            shards = fw.held.pop(j, set())
            assert shards == set(range(self.n)), f"unpack {j} on {addr} found shards {shards}"
            fw.started[key] = shards
        else:
            fw.started[key] = None

    def end(self, addr: str, key: Any, zombie: bool) -> None:
        fw = self.workers[addr]
        result = (fw.zombies if zombie else fw.started).pop(key)
        if self.role(key) == "transfer" and not result.get("abandon"):
            send = result["send"] if result["send"] is not None else range(self.m)
            for j in send:
                owner = result["workers"][result["owners"][j]]
                if owner in self.workers:
                    self.workers[owner].held.setdefault(j, set()).add(key[1])
        if zombie:
            return
        fw.data.add(key)
        if self.role(key) == "output":
            self.done[key[1]] = self.done.get(key[1], 0) + 1
        self.apply(self.state.tasks_finished(addr, [(key, 10, 0.01)], stimulus_id="fin"))

    def step(self) -> bool:
        rnd = self.rnd
        roll = rnd.random()
        if roll < 0.03 and self.workers:
            self.remove_worker()
            return True
        if roll < 0.06 and len(self.workers) < 4:
            self.add_worker()
            return True
        if roll < 0.09:
            self.apply(self.state.balance(float(rnd.randrange(100)), stimulus_id="tick"))
        if roll < 0.11 and self.wanted:
            key = rnd.choice(sorted(self.wanted))  # a client lets go of an output, then wants it
            self.apply(self.state.release_keys("c", [key], stimulus_id="release"))
            self.apply(self.state.update_graph(
                "c", {k: v for k, v in self.tasks.items() if k not in self.state.tasks},
                [key], self.order, stimulus_id="again",
            ))  # fmt: skip
            return True
        if not self.workers:
            self.add_worker()
            return True
        return self.move()

    def move(self) -> bool:
        """A worker starts a ready task, or one it runs ends; False when nothing can."""
        moves = [
            (addr, key, kind)
            for addr, fw in sorted(self.workers.items())
            for kind, keys in (("start", fw.queue), ("end", fw.started), ("zombie", fw.zombies))
            for key in sorted(keys, key=str)
            if kind != "start" or self.ready(fw, fw.queue[key])
        ]
        if not moves:
            return False
        addr, key, kind = self.rnd.choice(moves)
        if kind == "start":
            self.start(addr, key)
        else:
            self.end(addr, key, kind == "zombie")
        return True


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    n=st.integers(1, 5),
    m=st.integers(1, 6),
    n_workers=st.integers(1, 3),
    stealing=st.booleans(),
)
def test_model_every_unpack_finds_all_its_shards(seed, n, m, n_workers, stealing):
    model = ShuffleModel(random.Random(seed), n, m, n_workers, stealing)
    for _ in range(400):
        if not model.step():
            break
    if not model.workers:
        model.add_worker()
    for _ in range(5000):  # no more deaths: run to the end
        if not model.move():
            break
    state = model.state
    for key in outputs(model.spec):
        assert state.tasks[key].state == "memory", state.story(key)
    assert all(model.done[j] >= 1 for j in range(m))
    model.apply(state.release_keys("c", outputs(model.spec), stimulus_id="done"))
    assert state.tasks == {} and not state.shuffles.records


# =========================================================================== worker runtime


def test_runtime_buffer_replaces_repeats_and_ignores_stale_incarnations():
    rt = ShuffleRuntime(None)
    mine = (pd.RangeIndex(2), [np.array([1, 2])])
    piece = (pd.Index([7, 8]), [np.array([3, 4])])
    wire = comm.dumps(piece)
    # one batch from input 1: output 0 gets its first row, output 1 none, output 2 the second
    msg = {"id": "s", "inc": 2, "source": 1, "outputs": [0, 1, 2], "counts": [1, 0, 1]}
    assert rt.receive(msg, wire) == {"op": "shuffle-ack"}
    assert rt.receive(msg, wire) == {"op": "shuffle-ack"}  # the same batch again: replaced
    assert rt.put("s", 2, 0, [0], [2], Batch(mine))
    assert rt.held("s") == 4  # (0, from 0), (0, from 1), (1, from 1: empty), (2, from 1)
    old = {"id": "s", "inc": 1, "source": 5, "outputs": [0], "counts": [0]}
    assert rt.receive(old, [])["stale"]
    shards = rt.take("s", 0)
    assert sorted(shards) == [0, 1] and shards[0].batch.value() is mine
    index, arrays = shards[1].batch.value()
    assert index.tolist() == [7, 8]
    assert (shards[1].start, shards[1].stop) == (0, 1) and arrays[0].tolist() == [3, 4]
    assert rt.take("s", 1) == {1: None}
    assert rt.take("s", 2)[1][1:] == (1, 2)
    rt.drop("s", 2)
    assert rt.held() == 0
    assert rt.receive(msg, wire)["stale"]  # late shards of a dropped shuffle are refused


# =========================================================================== clusters


@pytest.fixture(scope="module")
def inproc():
    with InProcessCluster(2, 1) as cluster, Client(cluster) as client:
        yield cluster, client


@pytest.fixture(scope="module")
def local():
    with LocalCluster(2, 1, validate=True) as cluster, Client(cluster) as client:
        yield cluster, client


CASES = [
    # (key kind, null share, rows, inputs, outputs)
    ("int", 0.0, 500, 4, 4),
    ("float", 0.3, 500, 5, 3),  # nulls and -0.0 in keys
    ("object", 0.3, 400, 3, 7),  # None and NaN in string keys, more outputs than inputs
    ("str", 0.2, 400, 7, 2),  # arrow strings, fewer outputs than inputs
    ("skew", 0.0, 2000, 6, 6),  # one key holds 90% of the rows
    ("bool", 0.0, 300, 3, 5),  # at most two non-empty outputs
    ("int", 0.1, 7, 9, 12),  # more partitions than rows: empty inputs and outputs
    ("int", 0.0, 200, 1, 1),  # a single partition
    ("int", 0.0, 0, 3, 4),  # no rows at all
]


@pytest.mark.parametrize("kind,nulls,rows,n_in,n_out", CASES)
def test_inproc_p2p_matches_tasks_and_pandas(inproc, kind, nulls, rows, n_in, n_out):
    cluster, client = inproc
    pdf = make_frame(rows, 11, kind, nulls)
    for on in (["k"], ["k", "s", "t"]):
        got, tasks = both_shuffles(client, pdf, n_in, on, n_out)
        check_partitions(pdf, got, on, n_out, tasks)
    assert all(w.shuffle is None or w.shuffle.held() == 0 for w in cluster.workers)
    assert not cluster.scheduler.state.shuffles.records  # forgotten with its tasks


@SETTINGS
@given(case=frames(), n_out=st.integers(1, 12))
def test_inproc_p2p_keeps_every_row_once(inproc, case, n_out):
    _cluster, client = inproc
    pdf, n_in = case
    got, tasks = both_shuffles(client, pdf, n_in, ["k"], n_out)
    check_partitions(pdf, got, ["k"], n_out, tasks)


@SETTINGS
@given(case=frames(), n_out=st.integers(1, 12))
def test_inproc_p2p_with_a_batch_per_output(inproc, monkeypatch, case, n_out):
    """Batches cut at every output: each peer gets many messages from one transfer."""
    monkeypatch.setattr(shuffle_runtime, "BATCH_BYTES", 1)
    _cluster, client = inproc
    pdf, n_in = case
    got, tasks = both_shuffles(client, pdf, n_in, ["k"], n_out)
    check_partitions(pdf, got, ["k"], n_out, tasks)


@SETTINGS
@given(
    n=st.integers(0, 60), n_in=st.integers(1, 6), n_out=st.integers(1, 8),
    key=st.sampled_from([7, "x", None, np.nan]),
)  # fmt: skip
def test_inproc_p2p_sends_every_row_to_one_output_when_keys_are_equal(inproc, n, n_in, n_out, key):
    """One key (or only nulls): one output holds every row, every other one is empty."""
    _cluster, client = inproc
    pdf = make_frame(n, 3, "int", 0.2).assign(k=pd.Series([key] * n, dtype=object))
    got, tasks = both_shuffles(client, pdf, n_in, ["k"], n_out)
    check_partitions(pdf, got, ["k"], n_out, tasks)
    assert sorted(map(len, got))[:-1] == [0] * (n_out - 1)


def test_synchronous_executor_runs_p2p_in_process():
    pdf = make_frame(300, 5, "object", 0.2)
    df = edf.from_pandas(pdf, 4)
    p2p = df.shuffle("k", 5, method="p2p")
    tasks = df.shuffle("k", 5, method="tasks")
    check_partitions(
        pdf, get_sync(p2p.graph, p2p._output_keys()), ["k"], 5,
        get_sync(tasks.graph, tasks._output_keys()),
    )  # fmt: skip
    assert_frame_equal(p2p.compute(), tasks.compute())


def test_graph_is_linear_in_inputs_plus_outputs():
    pdf = make_frame(100, 1, "int", 0.0)
    for n_in, n_out in ((8, 8), (64, 64), (100, 3), (3, 100)):
        df = edf.from_pandas(pdf, n_in)
        added = len(df.shuffle("k", n_out, method="p2p").graph) - len(df.graph)
        assert added == n_in + n_out + 2  # transfers, unpacks, assign, barrier
    big = edf.from_pandas(pdf, 64)
    assert len(big.shuffle("k", 64, method="tasks", max_branch=64).graph) > 64 * 64


def test_persisted_shuffle_and_one_partition_at_a_time(inproc):
    cluster, client = inproc
    pdf = make_frame(600, 3, "str", 0.1)
    df = edf.from_pandas(pdf, 5).persist(client)
    shuffled = df.shuffle("k", 4, method="p2p").persist(client)
    assert_frame_equal(shuffled.compute(client).sort_index(), pdf.sort_index())
    expected = partition_by_hash(pdf, ["k"], 4)
    for j in (2, 0):  # a graph with one unpack: the others' shards are dropped with it
        part = df.shuffle("k", 4, method="p2p").get_partition(j).compute(client)
        assert sorted(part.index) == sorted(expected[j].index)
    del shuffled
    deadline = time.monotonic() + 10
    while any(w.shuffle is not None and w.shuffle.held() for w in cluster.workers):
        assert time.monotonic() < deadline, "shards left behind after the shuffles were done"
        time.sleep(0.02)


def test_restrictions_hold_with_aggressive_stealing():
    with (
        InProcessCluster(3, 1, placement="random", balance_interval=0.001) as cluster,
        Client(cluster) as client,
    ):
        pdf = make_frame(3000, 9, "int", 0.0)
        df = edf.from_pandas(pdf, 12)
        out = df.shuffle("k", 24, method="p2p").map_partitions(_slow_len, meta=0)
        lengths = out.compute(client)
        assert lengths.sum() == len(pdf)
        asked = [e[0] for e in cluster.scheduler.state.events if e[1] == "steal-request"]
        assert asked  # stealing was busy (inputs, map_partitions tasks) ...
        # ... and never proposed to move an unpack task
        layers = out._layers
        unpacks = {
            k for layer, tasks in layers.items() if layer.startswith("shuffle-") for k in tasks
        }
        assert not unpacks & set(asked)


def _slow_len(part: pd.DataFrame) -> int:
    time.sleep(0.002)
    return len(part)


def _slow_targets(df: pd.DataFrame, npartitions: int, extra: Any, on: list, delay: float):
    time.sleep(delay)
    return hash_targets(df, npartitions, extra, on)


def _slow_sum(part: pd.DataFrame, delay: float) -> pd.DataFrame:
    time.sleep(delay)
    return part


def test_a_worker_leaving_after_the_shuffle_moves_only_its_outputs():
    with InProcessCluster(3, 1) as cluster, Client(cluster) as client:
        pdf = make_frame(3000, 4, "object", 0.1)
        df = edf.from_pandas(pdf, 6).persist(client)
        shuffled = df.shuffle("k", 9, method="p2p")
        slow = shuffled.map_partitions(_slow_sum, 0.15, meta=shuffled._meta)
        box: dict = {}
        t = threading.Thread(target=lambda: box.update(out=slow.compute(client)), daemon=True)
        t.start()
        state = cluster.scheduler.state
        deadline = time.monotonic() + 30
        name = shuffled._name
        while not any(e[2] == "memory" and e[0][0] == name for e in list(state.log)):
            assert time.monotonic() < deadline, "no unpack finished"
            time.sleep(0.01)
        [rec] = list(state.shuffles.records.values())
        victim = cluster.workers[2]
        moved = [j for j, ws in enumerate(list(rec.owners)) if ws.address == victim.address]
        sent_before = sum(w.shuffle.sent for w in cluster.workers[:2] if w.shuffle)
        from taskbench.engine.client import sync

        sync(victim.close(), 10)
        t.join(60)
        assert not t.is_alive() and "out" in box
        assert_frame_equal(box["out"].sort_index(), pdf.sort_index())
        resent = sum(w.shuffle.sent for w in cluster.workers[:2]) - sent_before
        assert 0 < resent <= 6 * len(moved)  # the moved outputs' shards, not the whole shuffle
        stories = [state.story((shuffled._name, j)) for j in range(9)]
        kept = [j for j in range(9) if j not in moved]
        for j in kept:  # the survivors' unpacks ran once
            assert sum(1 for e in stories[j] if e[2] == "memory") <= 1, stories[j]


@pytest.mark.parametrize(
    "columns,encode", [("numeric", True), ("strings", True), ("strings", False)]
)
def test_local_cluster_p2p_matches_tasks(local, columns, encode):
    from taskbench.comparisons.bench.frames import taxi_frame

    _cluster, client = local
    pdf = taxi_frame(20_000, 6, columns)
    got, tasks = both_shuffles(client, pdf, 6, ["PULocationID"], 8, encode_strings=encode)
    check_partitions(pdf, got, ["PULocationID"], 8, tasks)


def _killed_mid_shuffle(phase: str) -> None:
    with LocalCluster(2, 1, validate=True) as cluster, Client(cluster) as client:
        pdf = make_frame(4000, 8, "str", 0.1)
        df = edf.from_pandas(pdf, 8)
        delay = 0.25 if phase == "transfer" else 0.0
        partitioner = {"func": _slow_targets, "kwargs": {"on": ["k"], "delay": delay}}
        shuffled = rearrange(df, 8, partitioner, method="p2p")
        out = shuffled.map_partitions(_slow_sum, 0.2 if phase == "unpack" else 0.0, meta=df._meta)
        box: dict = {}

        def run() -> None:
            try:
                box["out"] = out.compute(client)
            except BaseException as e:
                box["error"] = e

        t = threading.Thread(target=run, daemon=True)
        t.start()
        start = client.stream_position()
        # the kill lands while transfers run (phase transfer) or while outputs are consumed
        want = "p2p-transfer" if phase == "transfer" else "slow_sum"
        deadline = time.monotonic() + 60
        while True:
            stream = client.task_stream(start)
            if sum(1 for r in stream.records if r.prefix.startswith(want)) >= 2:
                break
            assert time.monotonic() < deadline, "the shuffle did not start"
            time.sleep(0.05)
        victim = next(
            a
            for a, pid in client.identity()["pids"].items()
            if pid == cluster.worker_processes[0].pid
        )
        kill_time = time.time()
        cluster.kill_worker(0)
        t.join(120)
        assert not t.is_alive(), "the shuffle did not finish after a worker died"
        assert "error" not in box, box.get("error")
        assert_frame_equal(box["out"].sort_index(), pdf.sort_index())
        records = client.task_stream(start).records
        transfers = [r for r in records if r.prefix == "p2p-transfer"]
        assert len(transfers) > 8  # the kill landed mid-shuffle: transfers ran again
        unpacks: dict[str, list] = {}
        for r in records:
            if r.key.startswith(f"('{shuffled._name}'"):
                unpacks.setdefault(r.key, []).append(r)
        for runs in unpacks.values():
            first = min(runs, key=lambda r: r.start)
            if first.worker != victim and first.stop < kill_time:
                assert len(runs) == 1, runs  # unpacked on the survivor: never redone
        expected = partition_by_hash(pdf, ["k"], 8)
        parts = client.get(shuffled.graph, shuffled._output_keys())
        for got, want_part in zip(parts, expected, strict=True):
            assert sorted(got.index) == sorted(want_part.index)


def test_sigkill_during_transfers_gives_the_right_result():
    _killed_mid_shuffle("transfer")


def test_sigkill_while_outputs_are_consumed_gives_the_right_result():
    _killed_mid_shuffle("unpack")


def test_tasks_layers_and_p2p_share_the_builder_signature():
    import inspect

    assert list(inspect.signature(p2p_layers).parameters) == list(
        inspect.signature(tasks_layers).parameters
    )
