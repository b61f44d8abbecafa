import json
import random
import subprocess
import sys

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from taskbench.engine.stream import (
    TRANSFER_TID,
    TaskRecord,
    TaskStream,
    Transfer,
    from_dask_task_stream,
    key_prefix,
)

US = 1e-6


def rec(
    start: float,
    stop: float,
    ready: float | None = None,
    *,
    worker: str = "tcp://127.0.0.1:4000",
    thread: int = 0,
    key: str | None = None,
    prefix: str = "inc",
    transfers: list[Transfer] | None = None,
    status: str = "memory",
) -> TaskRecord:
    return TaskRecord(
        key=key or f"{prefix}-{start}",
        prefix=prefix,
        worker=worker,
        thread=thread,
        ready=ready,
        start=start,
        stop=stop,
        nbytes=28,
        sizeof_seconds=2 * US,
        status=status,
        transfers=transfers or [],
    )


# ---- inter-task lag -----------------------------------------------------------------------


def test_lag_counts_only_from_ready_when_ready_after_previous_stop():
    # Thread idle from 1.0 to 3.0 (nothing queued): idle time, not lag.
    s = TaskStream([rec(0.0, 1.0, ready=0.0), rec(3.0 + 10 * US, 4.0, ready=3.0)])
    assert s.inter_task_lags() == pytest.approx([10.0])


def test_lag_counts_from_previous_stop_when_ready_before_it():
    s = TaskStream([rec(0.0, 1.0, ready=0.0), rec(1.0 + 20 * US, 2.0, ready=0.5)])
    assert s.inter_task_lags() == pytest.approx([20.0])


def test_lag_without_ready_is_stop_to_start():
    s = TaskStream([rec(0.0, 1.0), rec(1.0 + 30 * US, 2.0), rec(5.0, 6.0)])
    assert s.inter_task_lags() == pytest.approx([30.0, 3e6])


def test_lag_is_per_thread_and_ignores_input_order():
    w1, w2 = "tcp://127.0.0.1:1", "tcp://127.0.0.1:2"
    records = [
        rec(0.0, 1.0, ready=0.0, worker=w1, thread=0),
        rec(1.0 + 5 * US, 2.0, ready=0.2, worker=w1, thread=0),
        rec(2.0 + 7 * US, 3.0, ready=2.5 - 1.0, worker=w1, thread=0),
        # Same thread index on another worker and another thread on w1: separate rows.
        rec(0.5, 1.5, ready=0.0, worker=w2, thread=0),
        rec(0.0, 0.1, ready=0.0, worker=w1, thread=1),
        rec(9.0, 9.5, ready=8.0, worker=w1, thread=1),  # queued 1 s after thread went idle
    ]
    random.Random(1).shuffle(records)
    lags = sorted(TaskStream(records).inter_task_lags())
    assert lags == pytest.approx([5.0, 7.0, 1e6])


def test_negative_lag_is_clamped_without_anomaly():
    s = TaskStream([rec(0.0, 1.0, ready=0.0), rec(1.0 - 3 * US, 2.0, ready=0.5)])
    assert s.inter_task_lags().tolist() == [0.0]
    assert s.clock_anomalies == 0


def test_ready_after_start_is_clamped_and_counted():
    s = TaskStream([rec(0.0, 1.0, ready=0.0), rec(2.0, 3.0, ready=2.5)])
    assert s.inter_task_lags().tolist() == [0.0]
    assert s.clock_anomalies == 1


def test_lag_on_epoch_timestamps_is_accurate_to_a_microsecond():
    t = 1_795_971_313.892518
    s = TaskStream([rec(t, t + 0.001, ready=t), rec(t + 0.001 + 42 * US, t + 0.002, ready=t)])
    assert s.inter_task_lags() == pytest.approx([42.0], abs=0.5)


def test_single_tasks_have_no_lag():
    s = TaskStream([rec(0.0, 1.0, thread=0), rec(0.0, 1.0, thread=1)])
    assert s.inter_task_lags().size == 0
    assert s.lag_percentiles() == {"p50": None, "p90": None, "p99": None}
    assert TaskStream().lag_percentiles() == {"p50": None, "p90": None, "p99": None}


def test_lag_percentiles():
    # Lags of 1..100 µs on one thread.
    records, t = [rec(0.0, 1.0)], 1.0
    for lag in range(1, 101):
        t += lag * US
        records.append(rec(t, t + 0.5))
        t += 0.5
    s = TaskStream(records)
    expected = np.percentile(np.arange(1, 101, dtype=float), [50, 90, 99])
    got = s.lag_percentiles()
    assert list(got) == ["p50", "p90", "p99"]
    assert list(got.values()) == pytest.approx(expected.tolist(), abs=1e-6)
    assert got["p50"] == pytest.approx(50.5, abs=1e-6)
    assert list(s.lag_percentiles((99.9,))) == ["p99.9"]


# ---- makespan, idle, overhead, balance ------------------------------------------------------


def two_threads() -> TaskStream:
    return TaskStream(
        [
            rec(10.0, 10.5, thread=0),
            rec(10.5, 11.0, thread=0),
            rec(10.0, 10.5, thread=1),
        ]
    )


def test_makespan_busy_and_idle_fraction():
    s = two_threads()
    assert s.makespan() == pytest.approx(1.0)
    assert s.busy_seconds() == pytest.approx(1.5)
    assert s.idle_fraction(threads=2) == pytest.approx(0.25)
    assert s.idle_fraction(threads=4) == pytest.approx(1 - 1.5 / 4)


def test_per_task_overhead():
    assert two_threads().per_task_overhead(wall=1.2, threads=2) == pytest.approx((1.2 - 0.75) / 3)


def test_makespan_ratio():
    s = two_threads()
    assert s.makespan_ratio(threads=2) == pytest.approx(1.0 / 0.75)
    assert s.makespan_ratio(threads=2, critical_path=0.9) == pytest.approx(1.0 / 0.9)
    assert s.makespan_ratio(threads=2, critical_path=0.5) == pytest.approx(1.0 / 0.75)
    perfect = TaskStream([rec(0.0, 1.0, thread=0), rec(0.0, 1.0, thread=1)])
    assert perfect.makespan_ratio(threads=2) == pytest.approx(1.0)


def test_metrics_of_empty_stream():
    s = TaskStream()
    assert s.makespan() == 0.0
    assert s.busy_seconds() == 0.0
    assert s.inter_task_lags().size == 0
    with pytest.raises(ValueError, match="empty"):
        s.idle_fraction(threads=2)
    with pytest.raises(ValueError, match="empty"):
        s.per_task_overhead(wall=1.0, threads=2)
    with pytest.raises(ValueError, match="empty"):
        s.makespan_ratio(threads=2)
    with pytest.raises(ValueError, match="threads"):
        two_threads().idle_fraction(threads=0)


def test_by_thread_groups_and_sorts():
    s = TaskStream([rec(2.0, 3.0), rec(0.0, 1.0, thread=1), rec(0.0, 1.0)])
    groups = s.by_thread()
    assert set(groups) == {("tcp://127.0.0.1:4000", 0), ("tcp://127.0.0.1:4000", 1)}
    assert [r.start for r in groups[("tcp://127.0.0.1:4000", 0)]] == [0.0, 2.0]


# ---- serialisation --------------------------------------------------------------------------

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
times = st.floats(min_value=0, max_value=2e9, allow_nan=False, allow_infinity=False)
sizes = st.integers(min_value=0, max_value=2**62)

transfers = st.builds(Transfer, key=text, source=text, nbytes=sizes, start=times, stop=times)
records = st.builds(
    TaskRecord,
    key=text,
    prefix=text,
    worker=text,
    thread=st.integers(min_value=0, max_value=256),
    ready=st.none() | times,
    start=times,
    stop=times,
    nbytes=sizes,
    sizeof_seconds=times,
    status=st.sampled_from(["memory", "erred"]),
    transfers=st.lists(transfers, max_size=3),
    placed_by=st.none() | st.sampled_from(["policy", "eager", "steal", "restriction"]),
)
metas = st.dictionaries(text, st.integers() | text, max_size=3)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(recs=st.lists(records, max_size=8), meta=metas)
def test_jsonl_round_trip(tmp_path, recs, meta):
    s = TaskStream(recs, meta=meta)
    path = tmp_path / "stream.jsonl"
    s.to_jsonl(path)
    assert TaskStream.from_jsonl(path) == s


@settings(max_examples=60)
@given(recs=st.lists(records, max_size=8))
def test_rows_round_trip_through_msgpack(recs):
    s = TaskStream(recs)
    wire = msgpack.unpackb(msgpack.packb(s.to_rows()))
    assert TaskStream.from_rows(wire) == s
    assert TaskStream.from_rows(s.to_rows()) == s


def test_jsonl_meta_line_and_blank_lines(tmp_path):
    s = TaskStream([rec(0.0, 1.0, ready=0.0)], meta={"engine": "taskbench", "run": 3})
    path = tmp_path / "s.jsonl"
    s.to_jsonl(path)
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"meta": {"engine": "taskbench", "run": 3}}
    assert len(lines) == 2
    path.write_text("\n".join(lines[1:]) + "\n\n")  # no meta line, trailing blank
    assert TaskStream.from_jsonl(path) == TaskStream(s.records)


def test_chrome_trace(tmp_path):
    w1, w2 = "tcp://127.0.0.1:1", "tcp://127.0.0.1:2"
    tr = Transfer("x-1", w2, 800, 100.25, 100.5)
    s = TaskStream(
        [
            rec(100.0, 100.25, worker=w2, key="x-1", prefix="x"),
            rec(100.5, 101.0, ready=100.5, worker=w1, thread=1, key="y-1", transfers=[tr]),
            rec(101.0, 101.5, worker=w1, thread=0, key="y-2", status="erred"),
        ],
        meta={"engine": "taskbench"},
    )
    path = tmp_path / "trace.json"
    s.to_chrome_trace(path)
    trace = json.loads(path.read_text())
    events = trace["traceEvents"]
    complete = [e for e in events if e["ph"] == "X"]
    assert len(complete) == len(s) + 1
    by_key = {e["args"]["key"]: e for e in complete if e["cat"] != "transfer"}
    assert by_key["x-1"]["ts"] == 0.0
    assert by_key["y-1"]["ts"] == 500_000.0
    assert by_key["y-1"]["dur"] == 500_000.0
    assert by_key["y-1"]["args"]["nbytes"] == 28
    assert by_key["y-1"]["args"]["sizeof_us"] == pytest.approx(2.0)
    assert by_key["y-2"]["cat"] == "erred"
    (transfer,) = [e for e in complete if e["cat"] == "transfer"]
    assert transfer["tid"] == TRANSFER_TID
    assert transfer["pid"] == by_key["y-1"]["pid"] != by_key["x-1"]["pid"]
    assert (transfer["ts"], transfer["dur"]) == (250_000.0, 250_000.0)
    meta = [e for e in events if e["ph"] == "M"]
    processes = {e["args"]["name"] for e in meta if e["name"] == "process_name"}
    assert processes == {w1, w2}
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in meta if e["name"] == "thread_name"}
    assert names[(transfer["pid"], TRANSFER_TID)] == "transfers"
    assert names[(by_key["y-1"]["pid"], 1)] == "thread 1"
    assert trace["otherData"] == {"engine": "taskbench"}


def test_stream_module_does_not_import_matplotlib():
    code = "import sys, engine.stream, engine.plot; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- peers ------------------------------------------------------------------------------------


def test_key_prefix_matches_dask_key_split():
    assert key_prefix("inc-1") == "inc"
    assert key_prefix("read-parquet-abcdef12-0") == "read-parquet"
    assert key_prefix(("getitem-5f3c8ac1b2d4e6f7a8b9c0d1e2f3a4b5", 3)) == "getitem"
    assert key_prefix("f8e9a2b1c3d4e5f6a7b8c9d0e1f2a3b4") == "data"
    assert key_prefix("('x-1', 2)") == "x"


def test_from_dask_task_stream_shape():
    # Shape as returned by distributed 2026.8 `Client.get_task_stream()`.
    w1, w2 = "inproc://192.0.2.2/1/4", "inproc://192.0.2.2/1/6"
    data = [
        {
            "key": "add-0",
            "worker": w2,
            "thread": 555,
            "nbytes": 28,
            "status": "OK",
            "startstops": [
                {"action": "transfer", "source": w1, "start": 10.1, "stop": 10.2},
                {"action": "compute", "start": 10.3, "stop": 10.4},
            ],
        },
        {
            "key": ("inc-5f3c8ac1", 0),
            "worker": w1,
            "thread": 777,
            "nbytes": 28,
            "status": "OK",
            "startstops": [{"action": "compute", "start": 10.0, "stop": 10.1}],
        },
        {
            "key": "inc-1",
            "worker": w1,
            "thread": 999,
            "status": "error",
            "startstops": [{"action": "compute", "start": 10.05, "stop": 10.06}],
        },
        {"key": "never-ran", "worker": w1, "thread": 1, "startstops": []},
        {
            "key": "inc-2",
            "worker": w1,
            "thread": 777,
            "nbytes": 28,
            "status": "OK",
            "startstops": [
                {"action": "disk-read", "start": 10.15, "stop": 10.16},
                {"action": "compute", "start": 10.2, "stop": 10.3},
            ],
        },
    ]
    s = from_dask_task_stream(data)
    assert s.meta == {"engine": "dask"}
    by_key = {r.key: r for r in s.records}
    assert set(by_key) == {"add-0", "('inc-5f3c8ac1', 0)", "inc-1", "inc-2"}
    assert by_key["('inc-5f3c8ac1', 0)"].prefix == "inc"
    assert (by_key["('inc-5f3c8ac1', 0)"].worker, by_key["('inc-5f3c8ac1', 0)"].thread) == (w1, 0)
    assert by_key["inc-1"].thread == 1
    assert by_key["inc-1"].status == "erred"
    assert by_key["inc-1"].nbytes == 0
    assert by_key["inc-2"].thread == 0
    assert (by_key["inc-2"].start, by_key["inc-2"].stop) == (10.2, 10.3)
    assert by_key["add-0"].thread == 0
    assert by_key["add-0"].transfers == [Transfer("", w1, 0, 10.1, 10.2)]
    assert all(r.ready is None for r in s.records)
    assert s.inter_task_lags() == pytest.approx([0.1e6])


def _inc(x: int) -> int:
    return x + 1


def _add(*xs: int) -> int:
    return sum(xs)


@pytest.mark.dask
def test_from_real_dask_task_stream():
    distributed = pytest.importorskip("distributed")
    n = 6
    dsk: dict = {f"inc-{i}": (_inc, i) for i in range(n)}
    dsk["add-0"] = (_add, *[f"inc-{i}" for i in range(n)])
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        with distributed.get_task_stream(client) as ts:
            assert client.get(dsk, "add-0") == sum(range(1, n + 1))
        s = from_dask_task_stream(ts.data)
        workers = set(cluster.workers.values())
    assert len(s) == n + 1
    assert {r.prefix for r in s.records} == {"inc", "add"}
    assert {r.thread for r in s.records} <= {0, 1}
    assert {r.worker for r in s.records} <= {w.address for w in workers}
    assert all(r.status == "memory" and r.stop >= r.start for r in s.records)
    assert s.makespan() > 0
    assert s.inter_task_lags().min(initial=0.0) >= 0.0


def test_record_buffer_keeps_indices_and_drops_whole_old_batches():
    from taskbench.engine.stream import RecordBuffer

    buf = RecordBuffer(capacity=5)
    rows = [(("x", i), 0, 1.0 + i, 2.0 + i, 3.0 + i, 100 + i, 1e-6, ()) for i in range(3)]
    buf.append("tcp://w1", "memory", ["x"] * 3, rows)
    transfer = [["('x', 0)", "tcp://w1", 100, 2.5, 2.6]]
    buf.append("tcp://w2", "erred", ["y"], [("y", 1, 4.0, 5.0, 6.0, 0, 0.0, transfer)])
    assert buf.count == 4 and buf.first == 0
    out = buf.rows(2)
    assert out[0] == ("('x', 2)", "x", "tcp://w1", 0, 3.0, 4.0, 5.0, 102, 1e-6, "memory", (), None)
    assert out[1] == ("y", "y", "tcp://w2", 1, 4.0, 5.0, 6.0, 0, 0.0, "erred", transfer, None)
    stream = TaskStream.from_rows(buf.rows())
    assert [r.key for r in stream.records] == ["('x', 0)", "('x', 1)", "('x', 2)", "y"]
    assert stream.records[3].transfers[0].source == "tcp://w1"
    buf.append("tcp://w1", "memory", ["z"] * 3, [("z", 0, 1.0, 2.0, 3.0, 1, 0.0, ())] * 3)
    # 7 held > 5: the oldest whole batch (3 records) goes, indices stay
    assert buf.count == 7 and buf.first == 3
    assert [r[0] for r in buf.rows()] == ["y", "z", "z", "z"]
    assert [r[0] for r in buf.rows(5)] == ["z", "z"]


def test_record_buffer_carries_the_placement_rule():
    from taskbench.engine.stream import RecordBuffer

    buf = RecordBuffer(capacity=10)
    rows = [(f"x-{i}", 0, 1.0, 2.0, 3.0, 8, 0.0, ()) for i in range(2)]
    buf.append("tcp://w1", "memory", ["x", "x"], rows, ["policy", "eager"])
    buf.append("tcp://w1", "memory", ["y"], [("y", 0, 1.0, 2.0, 3.0, 8, 0.0, ())])
    stream = TaskStream.from_rows(buf.rows())
    assert [r.placed_by for r in stream.records] == ["policy", "eager", None]


def test_records_written_before_placed_by_read_it_as_none(tmp_path):
    """Old JSONL lines and old wire rows (11 fields) have no ``placed_by``."""
    old = rec(0.0, 1.0, ready=0.0)
    line = {f: getattr(old, f) for f in ("key", "prefix", "worker", "thread", "ready", "start",
                                         "stop", "nbytes", "sizeof_seconds", "status")}  # fmt: skip
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps({**line, "transfers": []}) + "\n")
    assert TaskStream.from_jsonl(path).records[0].placed_by is None
    assert TaskStream.from_rows([(*TaskStream([old]).to_rows()[0][:11],)]).records == [old]
    # a record without a rule is written as before: no new field on the line
    TaskStream([old]).to_jsonl(path)
    assert "placed_by" not in path.read_text()
    placed = rec(0.0, 1.0)
    placed.placed_by = "eager"
    TaskStream([placed]).to_jsonl(path)
    assert json.loads(path.read_text())["placed_by"] == "eager"
    assert TaskStream.from_jsonl(path).records == [placed]


def test_simulated_records_say_which_rule_placed_each_task():
    from taskbench.engine.sim import simulate
    from taskbench.engine.workloads import Workload, make, work

    graph, deps = {}, {}
    for i in range(4):
        graph[("root", i)], deps[("root", i)] = (work, 0.01, 10), ()
    graph[("link", 0)], deps[("link", 0)] = (work, 0.01, 10), ()
    for i in range(1, 5):
        before = ("link", i - 1)
        graph[("link", i)], deps[("link", i)] = (work, 0.01, 10, before), (before,)
    keys = list(graph)
    wl = Workload("mixed", graph, keys, dict.fromkeys(keys, 0.01), dict.fromkeys(keys, 10), deps)
    placed = {r.key: r.placed_by for r in simulate(wl, 2, 1).stream.records}
    assert {placed[f"('root', {i})"] for i in range(4)} == {"policy"}
    assert placed["('link', 0)"] == "policy"
    assert {placed[f"('link', {i})"] for i in range(1, 5)} == {"eager"}

    # skewed: every root pinned to the loader's worker; stealing moves some of them
    for placement in ("random", "round-robin", "locality"):
        r = simulate(make("skewed", 4, 1, 0.2), 4, 1, placement=placement, stealing=False)
        rules = [r.placed_by for r in r.stream.records]
        assert rules.count("eager") == len(rules) - 1  # all but the loader
    stolen = simulate(make("skewed", 4, 1, 0.2), 4, 1, stealing=True)
    rules = [r.placed_by for r in stolen.stream.records]
    assert rules.count("steal") == stolen.steals > 0
