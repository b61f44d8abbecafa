"""``WorkerTasks``, the worker's pure task state: no threads, no sockets, no clock."""

from __future__ import annotations

import msgpack
import pytest
from taskbench.engine.graph import KIND_PLAIN
from taskbench.engine.sim import _Worker
from taskbench.engine.stream import TaskRecord, Transfer
from taskbench.engine.worker import Worker
from taskbench.engine.worker_state import WorkerRecord, WorkerTasks


def task(key, priority=0, deps=(), report=False):
    """A ``compute`` entry: deps are (key, nbytes, holders)."""
    return (key, priority, KIND_PLAIN, list(deps), report)


def state(*tasks, data=None, now=1.0):
    st = WorkerTasks(len)
    st.data.update(data or {})
    st.compute(tasks, None, now)
    st.validate_state()
    return st


def run(st, t, result="r", start=2.0, stop=3.0, now=3.5, thread=0):
    n = st.task_finished(t, thread, start, stop, result, len(result), now)
    st.validate_state()
    return n


def test_both_the_worker_and_the_simulator_drive_worker_tasks():
    assert isinstance(Worker("tcp://127.0.0.1:1", token="t").state, WorkerTasks)
    assert isinstance(_Worker(0, 1, 1.0).state, WorkerTasks)


def test_threads_take_ready_tasks_by_priority_then_arrival():
    st = state(task("c", 5), task("a", 1), task("b", 3), task("a2", 1))
    order = []
    while (t := st.next_ready()) is not None:
        assert t.state == "executing" and t in st.executing
        order.append(t.key)
    assert order == ["a", "a2", "b", "c"]
    st.validate_state()


def test_a_finished_task_unblocks_its_local_dependents_in_place():
    st = state(task("a"), task("b", 1, [("a", 10, [])]), task("c", 2, [("a", 10, [])]))
    assert st.tasks["b"].state == "waiting" and st.waiting_local == {
        "a": [st.tasks["b"], st.tasks["c"]]
    }
    a = st.next_ready()
    assert run(st, a, "xy", now=3.5) == 2
    assert st.data["a"] == "xy" and "a" not in st.tasks
    assert [st.next_ready().key, st.next_ready().key] == ["b", "c"]
    [record] = st.records
    assert record == WorkerRecord("a", 0, 1.0, 2.0, 3.0, 2, 0.5, None)
    assert record.sizeof_seconds == 0.5 and st.tasks["b"].ready == 3.5


def test_steal_gives_up_queued_tasks_only():
    st = state(
        task("run"),
        task("queued", 1),
        task("fetching", 2, [("x", 10, ["tcp://peer"])]),
        task("needed", 3),
        task("after", 4, [("needed", 10, [])]),
    )
    running = st.next_ready()
    assert running.key == "run"
    msg = st.give_up(["run", "queued", "fetching", "needed", "unknown"])
    assert msg == {
        "op": "steal-response",
        "keys": ["run", "queued", "fetching", "needed", "unknown"],
        "stolen": [False, True, True, False, False],  # started; queued; waiting; a task here waits
    }
    assert set(st.tasks) == {"run", "needed", "after"}
    assert "x" not in st.waiting_fetch  # nobody here waits for it any more
    st.validate_state()
    assert st.next_ready().key == "needed"  # the stolen one's heap entry is skipped


def test_free_of_a_queued_task_forgets_it():
    st = state(task("a"), task("b", 1, [("a", 1, [])]), task("c", 2))
    st.free(["b", "c"])
    st.validate_state()
    assert set(st.tasks) == {"a"} and st.waiting_local == {}
    assert run(st, st.next_ready()) == 0
    assert st.next_ready() is None


def test_a_task_freed_while_it_runs_is_dropped_unless_asked_again():
    st = state(task("a"), task("b"))
    a, b = st.next_ready(), st.next_ready()
    st.free(["a", "b"])
    assert a.state == b.state == "cancelled" and a in st.executing
    st.validate_state()
    run(st, a)
    assert "a" not in st.data and "a" not in st.tasks and not st.records
    st.compute([task("b")], None, 5.0)  # asked again before it returned: it carries on
    assert b.state == "executing" and st.next_ready() is None
    run(st, b)
    assert [r.key for r in st.records] == ["b"] and st.data["b"] == "r"


def test_inputs_from_peers_are_queued_per_peer_then_in_flight():
    st = state(
        task("t", 0, [("x", 100, ["tcp://p1", "tcp://p2"]), ("y", 50, ["tcp://p2"])]),
        task("u", 1, [("x", 100, ["tcp://p1"])]),
    )
    assert st.fetch_queue == {"tcp://p1": {"x": 100}, "tcp://p2": {"y": 50}}
    assert st.take_fetches("tcp://p1") == {"x": 100}
    assert st.in_flight == {"x": "tcp://p1"}
    st.validate_state()
    msg = st.fetched("tcp://p1", ["x"], {"x": ("X", 100)}, 1.0, 1.5, 1.6)
    assert msg == {"op": "add-replicas", "keys": [("x", 100)]}
    assert st.next_ready().key == "u" and st.tasks["t"].missing == 1
    st.take_fetches("tcp://p2")
    st.fetched("tcp://p2", ["y"], {"y": ("Y", 50)}, 1.0, 2.0, 2.1)
    t = st.next_ready()
    assert t.key == "t" and t.ready == 2.1
    assert t.transfers == [("x", "tcp://p1", 100, 1.0, 1.5), ("y", "tcp://p2", 50, 1.0, 2.0)]
    st.validate_state()


def test_a_fetch_that_comes_back_empty_cancels_its_waiters():
    st = state(task("a"), task("t", 0, [("x", 1, ["tcp://p"]), ("a", 1, [])]))
    st.take_fetches("tcp://p")
    assert st.fetched("tcp://p", ["x"], {}, 1.0, 2.0, 2.0) is None
    assert st.messages == [{"op": "missing-data", "key": "x", "source": "tcp://p", "task": "t"}]
    assert "t" not in st.tasks and st.waiting_local == {}
    st.validate_state()


def test_an_input_nobody_holds_is_reported_missing_at_once():
    st = state(task("a"), task("t", 0, [("a", 1, []), ("gone", 1, [])]))
    assert "t" not in st.tasks and st.waiting_local == {}
    assert st.messages == [{"op": "missing-data", "key": "gone", "source": "", "task": "t"}]


def test_a_task_whose_result_is_held_is_reported_done_without_running():
    st = state(task("a"), data={"a": "abc"})
    assert not st.tasks and st.records == [WorkerRecord("a", -1, 0.0, 0.0, 0.0, 3, 0.0, None)]


def test_an_error_is_one_message_with_its_record():
    st = state(task("a", report=True))
    t = st.next_ready()
    st.task_started(t, 2.0)
    st.task_erred(t, 1, 2.0, 2.5, {"text": "ValueError: no"})
    st.validate_state()
    started, records, [msg] = st.drain()
    assert started == [("a", 2.0)] and records == []
    assert msg == {
        "op": "task-erred",
        "key": "a",
        "text": "ValueError: no",
        "record": WorkerRecord("a", 1, 1.0, 2.0, 2.5, 0, 0.0, None),
    }
    assert not st.started and not st.messages  # drained in place


def test_reset_forgets_everything_and_running_tasks_finish_cancelled():
    st = state(task("a"), task("b", 1, [("a", 1, [])]), task("c", 2, [("x", 1, ["tcp://p"])]))
    a = st.next_ready()
    st.reset()
    st.validate_state()
    assert not (st.tasks or st.heap or st.waiting_local or st.waiting_fetch or st.fetch_queue)
    run(st, a)
    assert not st.records and not st.data


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda st: st.heap.clear(), "not in the heap"),
        (lambda st: st.data.update(a=1), "both held and a task"),
        (lambda st: setattr(st.tasks["b"], "missing", 2), "b"),
        (lambda st: st.waiting_local.clear(), "waits for 'a'"),
        (lambda st: st.fetch_queue.clear(), "nobody fetches 'x'"),
    ],
)
def test_validate_state_catches_a_broken_invariant(breakage, message):
    st = state(task("a"), task("b", 1, [("a", 1, [])]), task("c", 2, [("x", 1, ["tcp://p"])]))
    breakage(st)
    with pytest.raises(AssertionError, match=message):
        st.validate_state()


def test_a_worker_record_crosses_the_wire_and_becomes_a_task_record():
    r = WorkerRecord(("x", 1), 0, 1.0, 2.0, 3.0, 8, 1e-6, [("y", "tcp://p", 4, 0.5, 0.9)])
    wire = msgpack.unpackb(msgpack.packb([r]), use_list=False)[0]
    assert wire == (("x", 1), 0, 1.0, 2.0, 3.0, 8, 1e-6, (("y", "tcp://p", 4, 0.5, 0.9),))
    assert TaskRecord.from_worker(r, "tcp://w", "x", "memory") == TaskRecord(
        "('x', 1)", "x", "tcp://w", 0, 1.0, 2.0, 3.0, 8, 1e-6, "memory",
        [Transfer("y", "tcp://p", 4, 0.5, 0.9)],
    )  # fmt: skip
