"""Placement and stealing on ``SchedulerState`` (no sockets), the steal race, the simulator."""

from __future__ import annotations

import threading
import time

import pytest
from taskbench.engine.client import Client
from taskbench.engine.cluster import InProcessCluster, LocalCluster
from taskbench.engine.graph import KIND_PLAIN
from taskbench.engine.policies import PLACEMENTS, make_placement
from taskbench.engine.sim import simulate
from taskbench.engine.state import SchedulerState
from taskbench.engine.workloads import NAMES, make


def state_with(workers, **kw):
    st = SchedulerState(validate=True, **kw)
    for w in workers:
        st.add_worker(w, 1, stimulus_id=f"add-{w}")
    return st


def submit(st, spec, wanted=None, sid="g"):
    tasks = {k: (tuple(deps), f"run-{k}", KIND_PLAIN, k.split("-")[0]) for k, deps in spec.items()}
    order = {k: i for i, k in enumerate(spec)}
    return st.update_graph("c", tasks, wanted or list(spec), order, stimulus_id=sid)


def where(st):
    return {k: ts.processing_on.address for k, ts in st.tasks.items() if ts.processing_on}


def finish(st, worker, key, nbytes=10, duration=0.01):
    return st.tasks_finished(worker, [(key, nbytes, duration)], stimulus_id=f"done-{key}")


def test_unknown_policy_names_the_choices():
    with pytest.raises(ValueError, match="round-robin"):
        make_placement("nearest")
    assert set(PLACEMENTS) == {"random", "round-robin", "locality"}


def test_round_robin_cycles_in_join_order():
    st = state_with(["A", "B", "C"], placement="round-robin", stealing=False)
    submit(st, {f"t-{i}": [] for i in range(6)})
    placed = where(st)
    assert sorted(placed.values()) == ["A", "A", "B", "B", "C", "C"]


def test_random_is_seeded():
    def run(seed):
        st = state_with(["A", "B", "C", "D"], placement="random", stealing=False, seed=seed)
        submit(st, {f"t-{i}": [] for i in range(40)})
        return where(st)

    assert run(1) == run(1)
    assert run(1) != run(2)
    assert len(set(run(1).values())) == 4


def test_locality_weighs_occupancy_against_transfer():
    st = state_with(["A", "B"], stealing=False, bandwidth=1e6)
    submit(st, {"big-0": []})
    finish(st, "A", "big-0", nbytes=5_000_000)  # 5 s to move at 1 MB/s
    submit(st, {"busy-0": [], "busy-1": [], "busy-2": []}, sid="g1")
    loads = {w: st.workers[w].occupancy for w in "AB"}
    # even on the busier worker, the task that needs 5 MB goes where the 5 MB is
    submit(st, {"use-0": ["big-0"]}, sid="g2")
    assert where(st)["use-0"] == "A"
    # a task whose input is tiny goes to the least occupied worker, holder or not
    submit(st, {"small-0": []}, sid="g3")
    holder = where(st)["small-0"]
    finish(st, holder, "small-0", nbytes=1)
    loads = {w: st.workers[w].occupancy for w in "AB"}
    assert loads["A"] != loads["B"]
    submit(st, {"use2-0": ["small-0"]}, sid="g4")
    assert where(st)["use2-0"] == min(loads, key=loads.get)


def test_running_tasks_raise_the_estimate_of_an_unseen_prefix():
    st = state_with(["A", "B"], stealing=False)
    submit(st, {"slow-0": [], "slow-1": []})
    assert st.estimate("slow") == st.default_duration
    w = where(st)["slow-0"]
    st.task_started("Z", [("slow-0", 50.0)], stimulus_id="s0")  # not its worker: ignored
    st.task_started(w, [("slow-0", 100.0)], stimulus_id="s")
    st.balance(102.5, stimulus_id="tick")
    assert st.estimate("slow") == pytest.approx(2.5)
    assert st.workers[w].occupancy == pytest.approx(2.5)  # occupancy follows at the tick
    finish(st, w, "slow-0", duration=3.0)
    assert st.estimate("slow") == 3.0 and not st.first_started


def _skewed_state():
    """All four tasks queued on A (they fan out from a task that ran there)."""
    st = state_with(["A", "B"])
    submit(st, {"load": [], **{f"work-{i}": ["load"] for i in range(4)}})
    assert set(where(st).values()) == {"A"}
    finish(st, "A", "load", nbytes=1000, duration=0.001)
    st.durations["work"] = 1.0  # as learnt from earlier runs
    return st


def test_balance_asks_the_victim_then_moves_the_task_on_confirmation():
    st = _skewed_state()
    wm, _ = st.balance(10.0, stimulus_id="tick")
    [request] = wm["A"]
    assert request["op"] == "steal-request"
    asked = request["keys"]
    assert 1 <= len(asked) <= 2  # enough to even out, not more
    key = asked[0]
    assert st.tasks[key].processing_on.address == "A"  # nothing moves before the victim says so
    wm, _ = st.steal_response("A", key, True, stimulus_id="resp")
    [compute] = wm["B"]
    assert [t[0] for t in compute["tasks"]] == [key]
    assert compute["tasks"][0][3] == [("load", 1000, ["A"])]  # the thief fetches the input
    assert where(st)[key] == "B"
    assert st.story(key)[-1][1:] == ("processing", "processing", "resp")  # the steal itself
    assert [e[1] for e in st.events_of(key)] == ["steal-request", "stolen"]


def test_refused_and_stale_steal_responses_change_nothing():
    st = _skewed_state()
    wm, _ = st.balance(10.0, stimulus_id="tick")
    keys = wm["A"][0]["keys"]
    # the victim had already started the first one
    assert st.steal_response("A", keys[0], False, stimulus_id="r1") == ({}, {})
    assert where(st)[keys[0]] == "A"
    # a reply for a task that finished meanwhile is stale
    if len(keys) > 1:
        finish(st, "A", keys[1])
        assert st.steal_response("A", keys[1], True, stimulus_id="r2") == ({}, {})
    # a reply from a worker that was never asked is ignored
    assert st.steal_response("B", keys[0], True, stimulus_id="r3") == ({}, {})
    assert where(st)[keys[0]] == "A"


def test_thief_gone_before_confirmation_places_the_task_afresh():
    st = _skewed_state()
    st.add_worker("C", 1, stimulus_id="add-C")
    wm, _ = st.balance(10.0, stimulus_id="tick")
    key = wm["A"][0]["keys"][0]
    thief = st.steals[st.tasks[key]][1].address
    st.remove_worker(thief, stimulus_id="bye")
    st.steal_response("A", key, True, stimulus_id="resp")
    assert st.tasks[key].state == "processing"
    assert where(st)[key] != thief


def test_stealing_off_never_asks():
    st = state_with(["A", "B"], stealing=False)
    submit(st, {"load": [], **{f"work-{i}": ["load"] for i in range(4)}})
    finish(st, "A", "load")
    st.durations["work"] = 1.0
    assert st.balance(10.0, stimulus_id="tick") == ({}, {})


# ---------------------------------------------------------------- the steal race, for real


def sleepy(i, seconds):
    time.sleep(seconds)
    return i


def test_steal_race_runs_every_task_exactly_once():
    """Many steals, some of them racing the victim starting the task: exactly one run each."""
    with InProcessCluster(1, 1, balance_interval=0.01) as cluster, Client(cluster) as client:
        start = client.stream_position()
        dsk = {("race", i): (sleepy, i, 0.004) for i in range(300)}
        result = {}

        def run():
            result["value"] = client.get(dsk, list(dsk))

        t = threading.Thread(target=run)
        t.start()
        time.sleep(0.05)
        cluster.add_worker()  # idle thief: the balancer steals from the busy worker
        t.join(60)
        assert result["value"] == tuple(range(300))
        stream = client.task_stream(start)
    keys = [r.key for r in stream.records if r.prefix == "race"]
    assert len(keys) == 300 and len(set(keys)) == 300  # every task ran exactly once
    assert len({r.worker for r in stream.records}) == 2  # and the thief did get work
    log = cluster.scheduler.state.log
    assert any(e[1:3] == ("processing", "processing") for e in log)  # a steal


def test_late_joiner_gets_work_on_a_real_cluster():
    with LocalCluster(1, 1, balance_interval=0.02) as cluster, Client(cluster) as client:
        start = client.stream_position()
        dsk = {("late", i): (sleepy, i, 0.01) for i in range(200)}

        def join_later():
            time.sleep(0.3)
            cluster.add_worker()  # from a thread that ends at once: the worker must stay

        t = threading.Thread(target=join_later)
        t.start()
        assert client.get(dsk, list(dsk)) == tuple(range(200))
        t.join(60)
        stream = client.task_stream(start)
    per_worker = {}
    for r in stream.records:
        per_worker[r.worker] = per_worker.get(r.worker, 0) + 1
    assert len(per_worker) == 2 and min(per_worker.values()) >= 20, per_worker


# ---------------------------------------------------------------- simulator


def test_simulation_is_deterministic_for_a_seed():
    w = make("heterogeneous", 4, 2, scale=0.2, seed=3)
    a = simulate(w, 4, 2, placement="random", seed=7)
    b = simulate(w, 4, 2, placement="random", seed=7)
    assert a.stream.to_rows() == b.stream.to_rows()
    c = simulate(w, 4, 2, placement="random", seed=8)
    assert c.stream.to_rows() != a.stream.to_rows()


@pytest.mark.parametrize("name", NAMES)
def test_simulation_runs_every_task_once_and_respects_the_lower_bound(name):
    w = make(name, 4, 2, scale=0.2)
    r = simulate(w, 4, 2, validate=True)
    keys = [rec.key for rec in r.stream.records]
    assert len(keys) == len(set(keys)) == len(w.graph)
    assert r.makespan_ratio >= 1.0
    # dependencies finish before their dependents start
    stop = {rec.key: rec.stop for rec in r.stream.records}
    start = {rec.key: rec.start for rec in r.stream.records}
    from taskbench.engine.graph import key_str

    for key, deps in w.dependencies.items():
        for d in deps:
            assert stop[key_str(d)] <= start[key_str(key)]


def test_straggler_and_late_joiner_are_modelled():
    straggler = simulate(make("straggler", 2, 1, scale=0.2), 2, 1, stealing=False)
    by_worker = {}
    for rec in straggler.stream.records:
        by_worker.setdefault(rec.worker, []).append(rec.stop - rec.start)
    means = sorted(sum(v) / len(v) for v in by_worker.values())
    assert means[1] / means[0] == pytest.approx(3.0, rel=0.2)
    late = make("late-joiner", 2, 1, scale=0.2)
    r = simulate(late, 2, 1)
    first = min(rec.start for rec in r.stream.records if rec.worker.endswith("-1"))
    assert first >= late.join_at[1]
