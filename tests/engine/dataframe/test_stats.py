"""Partition statistics: pruning and pushdown give the unoptimised plan's answer and pandas',
with empty partitions, filters that keep all or no partitions, all-null columns (no min/max)
and overlapping statistics; ``len`` of an unfiltered read needs no task."""

from __future__ import annotations

import operator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from taskbench.engine.dataframe import compute, read_parquet
from taskbench.engine.dataframe.core import _plan
from taskbench.engine.dataframe.optimize import FusedProgram
from taskbench.engine.dataframe.stats import ColumnStats, Predicate
from taskbench.engine.graph import key_prefix

from tests.engine.dataframe.helpers import SETTINGS

START = pd.Timestamp("2015-01-01")


@st.composite
def datasets(draw) -> pd.DataFrame:
    """Rows in time order (selective statistics) or shuffled (overlapping ones), a column
    that is all null in some row groups, and an integer key."""
    n = draw(st.integers(0, 120))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    t = START + pd.to_timedelta(np.sort(rng.integers(0, 90 * 86400, n)), unit="s")
    df = pd.DataFrame({
        "t": t,
        "k": rng.integers(0, 6, n),
        "v": rng.normal(size=n).round(2),
        "sparse": np.where(np.arange(n) >= n // 2, rng.normal(size=n), np.nan),
        "u": pd.Series(t).where(rng.random(n) > 0.3),  # times with NaT
    })  # fmt: skip
    if draw(st.booleans()):
        df = df.sample(frac=1, random_state=1).reset_index(drop=True)
    return df


def write(df: pd.DataFrame, folder, row_group_size: int) -> list[str]:
    """Two files (the second may be empty) of small row groups."""
    folder.mkdir(parents=True, exist_ok=True)
    half = len(df) // 2
    paths = []
    for i, part in enumerate([df.iloc[:half], df.iloc[half:]]):
        path = folder / f"part-{i}.parquet"
        table = pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False)
        pq.write_table(table, path, row_group_size=row_group_size)
        paths.append(str(path))
    return paths


PREDICATES = {
    "time range": lambda d: (
        (d["t"] >= START + pd.Timedelta(days=30)) & (d["t"] < START + pd.Timedelta(days=45))
    ),
    "between": lambda d: d["v"].between(-0.5, 0.5),
    "nothing passes": lambda d: d["k"] > 100,
    "all pass": lambda d: d["k"] >= 0,
    "null column": lambda d: d["sparse"] > 0,
    "equality and a bound": lambda d: (d["k"] == 3) & (d["v"] < 0),
    "times with NaT": lambda d: d["u"] < START + pd.Timedelta(days=40),
    "an integer against a float": lambda d: (d["k"] >= 2.5) & (d["k"] <= np.float64(4)),
}


@SETTINGS
@given(datasets(), st.integers(1, 25), st.sampled_from(sorted(PREDICATES)))
def test_pruned_and_pushed_filters_equal_the_plain_plan_and_pandas(
    tmp_path_factory, df, row_group_size, which
) -> None:
    paths = write(df, tmp_path_factory.mktemp("pq"), row_group_size)
    predicate = PREDICATES[which]
    want = df[predicate(df)]

    in_memory = read_parquet(paths)  # as persisted data is: statistics, no read to push into
    in_memory._source = None
    plain = read_parquet(paths)
    plain._source, plain._stats = None, None
    scanned = read_parquet(paths)
    got = [d[predicate(d)].compute() for d in (in_memory, plain, scanned)]
    for frame in got:
        assert frame["v"].tolist() == pytest.approx(want["v"].tolist(), nan_ok=True)
        assert frame["t"].tolist() == want["t"].tolist()
    count, total = compute(in_memory[predicate(in_memory)].length(),
                           in_memory[predicate(in_memory)]["v"].sum())  # fmt: skip
    assert count == len(want) and np.isclose(total, want["v"].sum())


def test_a_time_filter_drops_partitions_before_the_graph_is_built(tmp_path) -> None:
    days = pd.date_range(START, periods=12 * 30, freq="D")
    df = pd.DataFrame({"t": days, "v": np.arange(len(days), dtype=float)})
    paths = write(df, tmp_path, 30)  # 12 row groups, a month each
    d = read_parquet(paths)
    d._source = None  # memory mode: statistics only
    month = d[(d["t"] >= START + pd.Timedelta(days=60)) & (d["t"] < START + pd.Timedelta(days=90))]
    assert month.npartitions == 1
    graph = _plan([month["v"].sum()])[0]
    programs = [v[0] for v in graph.values() if isinstance(v[0], FusedProgram)]
    steps = [key_prefix(k) for p in programs for k, _ in p.steps]
    assert steps.count("read-parquet") == 1  # 11 of 12 row groups are never read
    assert len(graph) == 1  # the read, mask, filter, the sum's chunk and the sum: one task
    assert month["v"].sum().compute() == df["v"].iloc[60:90].sum()
    nothing = d[d["t"] < START - pd.Timedelta(days=1)]
    assert nothing.npartitions == 1 and len(nothing.compute()) == 0
    assert _plan([nothing])[0] == {(nothing._name, 0): nothing._meta}  # no task at all


def test_pushdown_reads_only_the_row_groups_and_columns_needed(tmp_path) -> None:
    days = pd.date_range(START, periods=120, freq="D")
    df = pd.DataFrame({"t": days, "v": np.arange(120.0), "w": np.arange(120.0)})
    d = read_parquet(write(df, tmp_path, 30))
    kept = d[d["t"] >= START + pd.Timedelta(days=100)][["v"]]
    assert kept.npartitions == 1 and list(kept.meta.columns) == ["v"]
    task = next(iter(_plan([kept])[0].values()))
    assert ("t", ">=", START + pd.Timedelta(days=100)) in task[-2]  # the filters, in the read
    pd.testing.assert_frame_equal(kept.compute(), df[df["t"] >= days[100]][["v"]])


def test_len_of_an_unfiltered_read_needs_no_task(tmp_path) -> None:
    df = pd.DataFrame({"v": np.arange(50.0)})
    d = read_parquet(write(df, tmp_path, 7))
    assert d.known_rows() == 50 and len(d) == 50
    assert all(not isinstance(v, tuple) for v in _plan([d.length()])[0].values())
    assert d[["v"]].assign(w=1).known_rows() == 50
    assert d[d["v"] > 3].known_rows() is None


@pytest.mark.parametrize(
    ("op", "value", "stats", "keep"),
    [
        (operator.ge, 5, ColumnStats(0, 4, 0), False),
        (operator.ge, 5, ColumnStats(0, 5, 0), True),
        (operator.lt, 0, ColumnStats(0, 4, 0), False),
        (operator.eq, 2, ColumnStats(3, 9, 0), False),
        (operator.eq, 2, ColumnStats(None, None, 10), False),  # all null: nothing passes
        (operator.eq, 2, ColumnStats(None, None, None), True),  # unknown: keep
        (operator.gt, "b", ColumnStats(1, 4, 0), True),  # unorderable: keep
    ],
)
def test_a_term_prunes_only_what_its_statistics_exclude(op, value, stats, keep) -> None:
    from taskbench.engine.dataframe.stats import comparison

    predicate = comparison(op, "c", (stats,), None, value)
    assert isinstance(predicate, Predicate) and predicate.may_match(0) is keep


def test_numpy_decides_only_what_it_compares_as_pandas_does() -> None:
    from taskbench.engine.dataframe.core import numpy_decides

    meta = pd.DataFrame({
        "f": [1.5], "i": np.array([1], np.int32), "t": [START], "tz": [START.tz_localize("UTC")],
        "n": pd.array([1], dtype="Int64"), "s": ["a"],
    }).iloc[:0]  # fmt: skip
    assert numpy_decides(meta, (("f", "ge", 1), ("i", "lt", 2.5), ("t", "ge", START)))
    assert numpy_decides(meta, (("t", "lt", np.datetime64("2015-02-01T00:00")),))
    for term in [("tz", "ge", START.tz_localize("UTC")), ("n", "ge", 1), ("s", "ge", "a"),
                 ("t", "ge", START.date()), ("t", "ge", START.tz_localize("UTC")),
                 ("f", "ge", START), ("i", "eq", "1")]:  # fmt: skip
        assert not numpy_decides(meta, (term,)), term
