"""One conformance suite for every ``get``: synchronous, in-process cluster, LocalCluster.

Each executor runs our own mixin and dask's (``dask.utils_test.GetFunctionTestMixin``): a
``get`` here keeps dask's contract, so lists of keys come back as tuples and a missing
output key raises ``KeyError``.
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
from taskbench.engine.client import Client
from taskbench.engine.cluster import InProcessCluster, LocalCluster
from taskbench.engine.comm import SerializationError
from taskbench.engine.graph import GraphError
from taskbench.engine.local import get_sync

try:
    from dask.utils_test import GetFunctionTestMixin as DaskGetFunctionTestMixin
except ImportError:  # dask is optional: without it, its contract tests are skipped

    class DaskGetFunctionTestMixin:
        def test_dask_contract(self):
            pytest.skip("dask is not installed")


def inc(x):
    return x + 1


def add(*args):
    return sum(args)


def total(items):
    """Sum of a nested list of numbers."""
    return sum(total(i) if isinstance(i, list) else i for i in items)


def fail(x):
    raise ValueError(f"bad value {x}")


def make_lock(x):
    return threading.Lock()


def big_array(seed):
    return np.random.default_rng(seed).random(1_000_000)


def frame(n):
    return pd.DataFrame({"i": np.arange(n), "s": [f"row-{i}" for i in range(n)]})


class GetFunctionTestMixin:
    """Every engine's ``get`` must pass these; subclasses provide the ``get`` fixture."""

    serializes_results = True

    def test_independent(self, get):
        dsk = {("x", i): (inc, i) for i in range(50)}
        assert get(dsk, list(dsk)) == tuple(i + 1 for i in range(50))

    def test_chain(self, get):
        dsk = {("c", 0): 0, **{("c", i): (inc, ("c", i - 1)) for i in range(1, 200)}}
        assert get(dsk, ("c", 199)) == 199

    def test_tree_reduction(self, get):
        dsk = {("leaf", i): (inc, i) for i in range(64)}
        level, width = "leaf", 64
        depth = 0
        while width > 1:
            depth += 1
            name = f"level-{depth}"
            for j in range(width // 2):
                dsk[(name, j)] = (add, (level, 2 * j), (level, 2 * j + 1))
            level, width = name, width // 2
        assert get(dsk, (level, 0)) == sum(range(1, 65))

    def test_diamond(self, get):
        dsk = {"a": 1, "b": (inc, "a"), "c": (add, "a", 10), "d": (add, "b", "c")}
        assert get(dsk, "d") == 2 + 11

    def test_nested_keys_in_lists_and_nested_tasks(self, get):
        dsk = {
            "a": 1,
            "b": (inc, "a"),
            "c": (total, ["a", ["b", "a"], [("x", 0)]]),
            ("x", 0): (add, (inc, "a"), 5),
        }
        assert get(dsk, "c") == 1 + 2 + 1 + 7

    def test_nested_output_keys(self, get):
        dsk = {"a": 1, "b": (inc, "a"), "c": (inc, "b")}
        assert get(dsk, [["a", "b"], "c"]) == ((1, 2), 3)
        assert get(dsk, ["a"]) == (1,)

    def test_literal_data_in_graph(self, get):
        arr = np.arange(10)
        dsk = {"data": arr, "s": (np.sum, "data")}
        assert get(dsk, "s") == 45

    def test_large_numpy_and_pandas_results(self, get):
        dsk = {"arr": (big_array, 7), "df": (frame, 100_000)}
        arr, df = get(dsk, ["arr", "df"])
        np.testing.assert_array_equal(arr, big_array(7))
        pd.testing.assert_frame_equal(df, frame(100_000))

    def test_exception_keeps_type_message_and_traceback(self, get):
        dsk = {"a": 1, "boom": (fail, "a"), "after": (inc, "boom")}
        with pytest.raises(ValueError, match="bad value 1") as info:
            get(dsk, "after")
        if self.serializes_results:
            notes = "\n".join(getattr(info.value, "__notes__", []))
            assert "'boom'" in notes
            assert "in fail" in notes  # the remote traceback names the failing function

    def test_usable_after_exception(self, get):
        with pytest.raises(ValueError):
            get({"boom": (fail, 2)}, "boom")
        assert get({"ok": (inc, 1)}, "ok") == 2
        # the very same keys, fixed, run again
        with pytest.raises(ValueError):
            get({"k": (fail, 3)}, "k")
        assert get({"k": (inc, 3)}, "k") == 4

    def test_unpicklable_result(self, get):
        dsk = {"lock": (make_lock, 1)}
        if self.serializes_results:
            with pytest.raises(SerializationError, match="lock"):
                get(dsk, "lock")
            assert get({"fine": (inc, 1)}, "fine") == 2
        else:
            assert type(get(dsk, "lock")) is type(threading.Lock())

    def test_empty_graph(self, get):
        assert get({}, []) == ()

    def test_repeated_graphs(self, get):
        dsk = {("r", i): (inc, i) for i in range(20)}
        dsk["sum"] = (add, *[("r", i) for i in range(20)])
        results = [get(dsk, "sum") for _ in range(5)]
        assert results == [sum(range(1, 21))] * 5

    def test_graph_errors_before_anything_runs(self, get):
        with pytest.raises(GraphError, match="cycle"):
            get({"a": (inc, "b"), "b": (inc, "a")}, "a")
        with pytest.raises(GraphError, match="nope") as info:
            get({"a": 1}, "nope")
        assert isinstance(info.value, KeyError)  # dask's contract for a missing output key
        assert str(info.value) == "output keys not in the graph: 'nope'"
        with pytest.raises(GraphError, match=r"\('x', 3\)"):
            get({("x", 0): 1, ("x", 1): 2, "y": (add, ("x", 0), ("x", 3))}, "y")

    def test_dask_array_graph(self, get):
        da = pytest.importorskip("dask.array")
        x = da.arange(100, chunks=10).sum()
        assert x.compute(scheduler=get) == sum(range(100))


class TestSync(GetFunctionTestMixin):
    serializes_results = False

    @pytest.fixture
    def get(self):
        return get_sync


@pytest.fixture(scope="module")
def inprocess_client():
    with InProcessCluster(2, 2, validate=True) as cluster, Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def local_client():
    with LocalCluster(2, 1, validate=True) as cluster, Client(cluster) as client:
        yield client


class TestInProcessCluster(GetFunctionTestMixin):
    @pytest.fixture
    def get(self, inprocess_client):
        return inprocess_client.get


class TestLocalCluster(GetFunctionTestMixin):
    @pytest.fixture
    def get(self, local_client):
        return local_client.get


class TestDaskContractSync(DaskGetFunctionTestMixin):
    get = staticmethod(get_sync)


class TestDaskContractInProcessCluster(DaskGetFunctionTestMixin):
    @pytest.fixture(autouse=True)
    def _use_client(self, inprocess_client):
        self.get = inprocess_client.get


class TestDaskContractLocalCluster(DaskGetFunctionTestMixin):
    @pytest.fixture(autouse=True)
    def _use_client(self, local_client):
        self.get = local_client.get


def test_futures_submit_map_gather():
    with InProcessCluster(2, 1) as cluster, Client(cluster) as client:
        a = client.submit(inc, 1)
        b = client.submit(add, a, 10)
        assert b.result() == 12
        futures = client.map(inc, range(10))
        assert client.gather(futures) == list(range(1, 11))
        kw = client.submit(lambda x, y=0: x * y, 3, y=4)
        assert kw.result() == 12


def test_task_stream_records_every_task():
    with InProcessCluster(2, 1) as cluster, Client(cluster) as client:
        start = client.stream_position()
        dsk = {("x", i): (inc, i) for i in range(30)}
        dsk["s"] = (add, *list(dsk))
        client.get(dsk, "s")
        stream = client.task_stream(start)
        addresses = {w.address for w in cluster.workers}
    keys = {r.key for r in stream.records}
    assert len(stream.records) == 31
    assert "s" in keys and "('x', 0)" in keys
    workers = {r.worker for r in stream.records}
    assert workers == addresses
    for r in stream.records:
        assert r.ready <= r.start <= r.stop
        assert r.prefix in ("x", "s")
        assert r.status == "memory"
    # "s" needed inputs from both workers: the ones it fetched are recorded as transfers
    s = next(r for r in stream.records if r.key == "s")
    other = [r for r in stream.records if r.worker != s.worker]
    assert {t.key for t in s.transfers} == {r.key for r in other}
    assert all(t.source != s.worker and t.start <= t.stop <= s.start for t in s.transfers)


def test_persist_keeps_results_for_later_graphs():
    from taskbench.engine.client import default_client

    with InProcessCluster(2, 1) as cluster, Client(cluster) as client:
        assert default_client() is client
        futures = client.persist(
            {("p", i): (inc, i) for i in range(4)}, [("p", i) for i in range(4)]
        )
        assert client.gather(futures) == [1, 2, 3, 4]
        # a later graph names the persisted keys as inputs
        assert client.get({"s": (add, *[f.key for f in futures])}, "s") == 10
    assert default_client() is None


def test_wait_blocks_until_persisted_results_exist():
    with InProcessCluster(1, 1) as cluster, Client(cluster) as client:
        futures = client.persist(
            {("w", i): (big_array, i) for i in range(3)}, [("w", i) for i in range(3)]
        )
        client.wait(futures)
        assert all(f.done() for f in futures)
