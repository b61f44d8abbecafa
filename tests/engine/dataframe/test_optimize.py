"""Fused graphs give the unfused plan's answers and pandas', in fewer tasks; several results
go as one graph; fusion never makes a cycle."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from taskbench.engine.dataframe import compute, from_pandas, persist, read_parquet
from taskbench.engine.dataframe.core import _plan, filter_rows, filter_terms
from taskbench.engine.dataframe.io import read_row_group
from taskbench.engine.dataframe.optimize import Blockwise, FusedProgram, fuse
from taskbench.engine.graph import key_prefix
from taskbench.engine.local import get_sync

from tests.engine.dataframe.helpers import SETTINGS, frames


def unfused(collection):
    """What the plan gave before fusion: the layers as they are, on the synchronous executor."""
    return collection._finalize(get_sync(collection.graph, collection._output_keys()))


def prefixes(collections) -> Counter:
    graph = _plan(collections)[0]
    return Counter(key_prefix(k) for k, v in graph.items() if isinstance(v, tuple))


def chain(d):
    """Row-wise work, a filter and three reductions sharing it (q07's shape)."""
    mask = d["v"].between(-1, 1) & (d["i"] >= -50) & (d["t"] < pd.Timestamp("2015-01-08"))
    rows = d[mask].assign(w=lambda df: df["v"] * 2)
    return rows.length(), rows["w"].count(), rows["w"].sum()


def chain_pandas(df: pd.DataFrame) -> tuple:
    rows = df[df["v"].between(-1, 1) & (df["i"] >= -50) & (df["t"] < pd.Timestamp("2015-01-08"))]
    w = rows["v"] * 2
    return len(rows), w.count(), w.sum()


@SETTINGS
@given(frames())
def test_fused_equals_unfused_and_pandas(case) -> None:
    df, nparts = case
    d = from_pandas(df, nparts)
    fused = compute(*chain(d))
    plain = tuple(unfused(c) for c in chain(d))
    want = chain_pandas(df)
    assert fused[:2] == plain[:2] == want[:2]
    assert np.isclose(fused[2], plain[2]) and np.isclose(fused[2], want[2])
    projected = d.assign(x=d["i"] * 2 + 1)[["k", "x"]]
    pd.testing.assert_frame_equal(projected.compute(), unfused(projected))
    pd.testing.assert_frame_equal(projected.compute(), df.assign(x=df["i"] * 2 + 1)[["k", "x"]])


def test_a_filter_and_a_reduction_on_12_partitions_is_12_tasks_and_a_few() -> None:
    df = pd.DataFrame({"i": np.arange(1200), "v": np.linspace(0, 1, 1200)})
    d = from_pandas(df, 12)
    total = d[(d["v"] > 0.25) & (d["i"] % 2 == 0)]["v"].sum()
    tasks = prefixes([total])
    assert sum(tasks.values()) <= 12 + 3, tasks
    assert tasks["sum-chunk"] == 12  # the fused task keeps its last step's name
    assert np.isclose(total.compute(), df[(df.v > 0.25) & (df.i % 2 == 0)]["v"].sum())


def test_three_results_share_one_pass_over_the_filter() -> None:
    df = pd.DataFrame({"i": np.arange(600), "v": np.arange(600) / 7, "t": pd.Timestamp("2015")})
    d = from_pandas(df, 12)
    tasks = prefixes(chain(d.assign(i=d["i"] - 300, t=d["t"] + pd.Timedelta(days=1))))
    fused = [p for p in tasks if p.startswith("fused-")]
    assert len(fused) == 1 and tasks[fused[0]] == 12  # one task per partition for all three
    assert not any(p in tasks for p in ("filter", "between", "ge", "lt", "assign"))


def test_over_one_partition_the_reductions_finish_in_the_task_that_reads_it() -> None:
    """A tree over one partition fuses its chunk and its final step (and the row-wise steps
    after it); three results of one program come back from that one task."""
    df = pd.DataFrame({"i": np.arange(600), "v": np.arange(600) / 7, "t": pd.Timestamp("2015")})
    d = from_pandas(df, 1)
    sent = []

    class Spy:
        def get(self, graph, keys):
            sent.append((dict(graph), list(keys)))
            return get_sync(graph, keys)

    assert compute(*chain(d), client=Spy()) == pytest.approx(chain_pandas(df))
    [(graph, keys)] = sent
    tasks = [k for k, v in graph.items() if isinstance(v, tuple)]  # beside the data
    assert [key_prefix(k) for k in keys] == ["fused-sum"] and tasks == keys
    counts = d.groupby("i").size().rename("n")
    assert list(prefixes([counts])) == ["rename"]  # chunk, final step, getitem and rename
    pd.testing.assert_series_equal(counts.compute(Spy()), df.groupby("i").size().rename("n"))


def test_work_that_leaves_and_comes_back_is_not_fused_into_a_cycle() -> None:
    df = pd.DataFrame({"v": np.arange(40, dtype=float)})
    d = from_pandas(df, 4)
    doubled = d["v"] * 2
    centred = doubled - doubled.mean()  # doubled -> mean (all partitions) -> centred
    pd.testing.assert_series_equal(centred.compute(), df["v"] * 2 - (df["v"] * 2).mean())


def test_a_fused_program_runs_its_steps_once_in_order() -> None:
    calls = []

    def step(x, tag):
        calls.append(tag)
        return x + 1

    program = FusedProgram(
        inputs=("in",), steps=((("a", 0), (step, "in", "a")), (("b", 0), (step, ("a", 0), "b"))),
        outputs=(("a", 0), ("b", 0)),
    )  # fmt: skip
    assert program(1) == (2, 3) and calls == ["a", "b"]


@pytest.mark.parametrize("n", [1, 3])
def test_compute_and_persist_of_several_collections(client, n) -> None:
    df = pd.DataFrame({"k": np.arange(30) % n, "v": np.arange(30.0)})
    d = from_pandas(df, 3)
    a, b = d["v"] + 1, d.groupby("k")["v"].sum()
    got_a, got_b = compute(a, b, client=client)
    pd.testing.assert_series_equal(got_a, df["v"] + 1)
    pd.testing.assert_series_equal(got_b, df.groupby("k")["v"].sum())
    kept_a, kept_b = persist(a, a * 2, client=client)
    pd.testing.assert_series_equal((kept_a + kept_b).compute(client), (df["v"] + 1) * 3)


@SETTINGS
@given(frames(), st.booleans())
def test_fusion_survives_empty_partitions_and_culling(case, take_head) -> None:
    df, nparts = case
    d = from_pandas(df, nparts)
    kept, want = d[d["i"] > 0], df[df["i"] > 0]
    out, want = kept.assign(j=kept["i"] - 1), want.assign(j=want["i"] - 1)
    got = out.head(3) if take_head else out.compute()
    pd.testing.assert_frame_equal(got, want.head(3) if take_head else want)


def test_reads_in_a_fused_program_take_only_the_columns_its_steps_use(tmp_path) -> None:
    df = pd.DataFrame({"a": np.arange(40), "b": np.arange(40.0), "c": ["x"] * 40, "d": 1.5})
    df.to_parquet(tmp_path / "f.parquet", row_group_size=10)
    d = read_parquet([str(tmp_path / "f.parquet")], columns=["a", "b", "c", "d"])
    kept = d[d["a"] % 3 == 0].assign(e=d["b"] * 2)
    out = kept.groupby("a").agg({"e": "sum"})
    graph = _plan([out, d.length(), d[d["a"] > 5]["b"].count()])[0]
    reads = [task for v in graph.values() if isinstance(v, tuple) and isinstance(v[0], FusedProgram)
             for _, task in v[0].steps if task[0] is read_row_group]  # fmt: skip
    assert reads and {frozenset(t[4]) for t in reads} == {frozenset("ab")}  # never c, d
    got = compute(out, d[d["a"] > 5]["b"].count())
    want = df[df["a"] % 3 == 0].assign(e=df["b"] * 2).groupby("a").agg({"e": "sum"})
    pd.testing.assert_frame_equal(got[0], want)
    assert got[1] == (df["a"] > 5).sum() and len(d) == 40


def window_frame(tmp_path):
    days = pd.date_range("2015-01-01", periods=120, freq="D")
    df = pd.DataFrame({"t": days, "v": np.arange(120.0), "i": np.arange(120) % 7,
                       "s": np.array(list("abcdefg"))[np.arange(120) % 7]})  # fmt: skip
    df.to_parquet(tmp_path / "f.parquet", row_group_size=10)  # 12 partitions of 10 days
    d = read_parquet([str(tmp_path / "f.parquet")])
    d._source = None  # memory mode: statistics prune, nothing is pushed into the read
    return df, d, days


def filter_steps(results: tuple, func) -> list:
    programs = [v[0] for v in _plan(results)[0].values() if isinstance(v[0], FusedProgram)]
    return [task for p in programs for _, task in p.steps if task[0] is func]


def test_a_filter_the_statistics_decide_evaluates_only_the_undecided_terms(tmp_path) -> None:
    df, d, days = window_frame(tmp_path)
    rows = d[(d["t"] >= days[25]) & (d["t"] < days[55]) & (d["i"] > 1)]
    assert rows.npartitions == 4  # partitions 2..5
    results = (rows.length(), rows["v"].count(), rows["v"].sum())
    tasks = prefixes(results)
    fused = [p for p in tasks if p.startswith("fused-")]
    assert len(fused) == 1 and tasks[fused[0]] == 4, tasks  # one task per kept partition
    assert not any(p in tasks for p in ("and", "ge", "lt", "gt", "filter")), tasks  # no mask
    steps = filter_steps(results, filter_terms)
    assert sorted(len(task[2]) for task in steps) == [1, 1, 2, 2]  # days 30-49 need only i > 1
    assert all(task[-1] == ("v",) for task in steps)  # it copies only v's rows
    want = df[(df["t"] >= days[25]) & (df["t"] < days[55]) & (df["i"] > 1)]
    count, nonnull, total = compute(*results)
    assert (count, nonnull, total) == (len(want), want["v"].count(), want["v"].sum())


def test_a_pruning_filter_by_a_mask_runs_in_the_program_of_the_partition_it_keeps(tmp_path):
    df, d, days = window_frame(tmp_path)
    rows = d[(d["t"] >= days[25]) & (d["t"] < days[55]) & (d["s"] >= "c")]  # strings: a mask
    assert rows.npartitions == 4
    results = (rows.length(), rows["v"].sum())
    tasks = prefixes(results)
    fused = [p for p in tasks if p.startswith("fused-")]
    assert len(fused) == 1 and tasks[fused[0]] == 4, tasks  # the mask runs in the same task
    assert not any(p in tasks for p in ("and", "ge", "lt", "filter")), tasks
    assert filter_steps(results, filter_rows) and not filter_steps(results, filter_terms)
    want = df[(df["t"] >= days[25]) & (df["t"] < days[55]) & (df["s"] >= "c")]
    assert compute(*results) == (len(want), want["v"].sum())


def test_a_renumbered_layer_reading_two_partitions_of_a_group_stays_apart() -> None:
    def add(a, b):
        return a + b

    layers = {
        "x": Blockwise({("x", i): (add, i, 1) for i in range(3)}),
        "y": Blockwise({("y", i): (add, ("x", i), 10) for i in range(3)}),
        # partition j of z reads partitions j and j + 1 of y: no one program holds both
        "z": Blockwise({("z", j): (add, ("y", j), ("y", (j + 1) % 3)) for j in range(3)}),
    }
    layers["z"].renumbered = True
    graph = fuse(layers, [("z", j) for j in range(3)])
    assert ("y", 0) in graph and all(("z", j) in graph for j in range(3))  # y fused with x only
    assert get_sync(graph, [("z", j) for j in range(3)]) == (23, 25, 24)


def test_a_callable_in_assign_keeps_every_column_it_might_read(tmp_path) -> None:
    df = pd.DataFrame({"a": np.arange(20), "b": np.arange(20.0), "c": 1.5})
    df.to_parquet(tmp_path / "f.parquet", row_group_size=5)
    d = read_parquet([str(tmp_path / "f.parquet")])
    out = d[d["a"] > 3].assign(w=lambda p: p["b"] * p["c"])[["w"]]
    want = df[df["a"] > 3].assign(w=lambda p: p["b"] * p["c"])[["w"]]
    pd.testing.assert_frame_equal(out.compute(), want)
    d._source = None  # the filter is not pushed into the read: it narrows in the program
    pd.testing.assert_frame_equal(d[d["a"] > 3].assign(w=lambda p: p["b"] * p["c"])[["w"]]
                                  .compute(), want)  # fmt: skip
