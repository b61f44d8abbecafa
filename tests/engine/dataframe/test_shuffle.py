"""The shuffle keeps every row exactly once and puts equal keys together, staged or not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import taskbench.engine.dataframe as edf
from hypothesis import given
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal
from taskbench.engine import comm
from taskbench.engine.dataframe.partitioning import PartitionSplit, concat_shards, piece_rows
from taskbench.engine.dataframe.shuffle import (
    SHUFFLE_METHODS,
    _stages,
    hash_columns,
    hash_targets,
    partition_by_hash,
    register_shuffle_method,
    split_by_targets,
    tasks_layers,
)

from tests.engine.dataframe.helpers import SETTINGS, frames, make_frame


def row_checksums(df: pd.DataFrame) -> pd.Series:
    """One hash per row over index and values: equal multisets of rows, equal sorted hashes."""
    return pd.util.hash_pandas_object(df, index=True).sort_values(ignore_index=True)


def null_key(x: object) -> object:
    return "<null>" if pd.isna(x) else x


# ---------------------------------------------------------------- hashing


def test_equal_keys_hash_equal_across_dtypes():
    ints = [pd.Series([1, -1, 0], dtype=t) for t in ("int8", "int32", "int64", "Int64")]
    assert len({tuple(hash_columns(s.to_frame("k"), ["k"])) for s in ints}) == 1
    floats = pd.DataFrame({"k": [0.0, -0.0, np.nan, float("nan")]})
    h = hash_columns(floats, ["k"])
    assert h[0] == h[1] and h[2] == h[3]
    strs = ["a", None, np.nan, "b"]
    obj = pd.DataFrame({"k": pd.Series(strs, dtype=object)})
    arrow = pd.DataFrame({"k": pd.Series(strs, dtype="str")})
    assert (hash_columns(obj, ["k"]) == hash_columns(arrow, ["k"])).all()
    assert hash_columns(obj, ["k"])[1] == hash_columns(obj, ["k"])[2]
    nullable = pd.DataFrame({"k": pd.Series([1, None], dtype="Int64")})
    assert hash_columns(nullable, ["k"])[1] == h[2]  # every null hashes alike
    times = pd.Series(pd.to_datetime(["2015-01-01", None]))
    us, ns = times.astype("datetime64[us]"), times.astype("datetime64[ns]")
    assert (hash_columns(us.to_frame("k"), ["k"]) == hash_columns(ns.to_frame("k"), ["k"])).all()


def test_hash_is_stable_across_processes():
    # fixed values: a change here would misplace rows between old and new workers
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    assert hash_columns(df, ["a"]).tolist() == hash_columns(df.copy(), ["a"]).tolist()
    assert partition_by_hash(df, ["a", "b"], 7)[0].shape[1] == 2


@given(st.lists(st.integers(0, 9), max_size=200), st.integers(1, 12))
def test_split_by_targets_keeps_order_and_rows(targets, n):
    targets = np.array([t % n for t in targets], dtype=np.intp)
    df = pd.DataFrame({"t": targets, "pos": np.arange(len(targets))})
    shards = split_by_targets(df, targets, n)
    assert len(shards) == n
    for j, shard in enumerate(shards):
        assert (shard.t == j).all()
        assert shard.pos.is_monotonic_increasing
    assert sum(map(len, shards)) == len(df)


@given(st.integers(1, 5000), st.integers(2, 64))
def test_stages_cover_every_partition(size, max_branch):
    stages, k = _stages(size, max_branch)
    assert k**stages >= size
    assert stages == 1 or k <= max_branch
    assert (k - 1) ** stages < size or k == 2


# ---------------------------------------------------------------- shuffle


def _check_shuffle(pdf: pd.DataFrame, out: list[pd.DataFrame], on: list, n: int) -> None:
    assert len(out) == n
    whole = pd.concat(out) if out else pdf.iloc[:0]
    # every row exactly once: counts and checksums, not shapes
    assert len(whole) == len(pdf)
    assert row_checksums(whole).equals(row_checksums(pdf))
    assert sorted(whole.index) == sorted(pdf.index)
    # equal keys (nulls included) in one partition
    seen: dict = {}
    for j, part in enumerate(out):
        for key in part[on].map(null_key).itertuples(index=False):
            assert seen.setdefault(tuple(key), j) == j
    # and where the pandas baseline puts them
    expected = partition_by_hash(pdf, on, n)
    for got, want in zip(out, expected, strict=True):
        assert sorted(got.index) == sorted(want.index)


@SETTINGS
@given(frames(), st.integers(1, 12), st.sampled_from([2, 3, 32]))
def test_shuffle_keeps_every_row_once(client, case, nout, max_branch):
    pdf, nparts = case
    df = edf.from_pandas(pdf, nparts)
    for on in (["k"], ["k", "s"]):
        shuffled = df.shuffle(on, nout, max_branch=max_branch)
        parts = [shuffled.get_partition(j) for j in range(nout)]
        out = client.get(
            {k: v for p in parts for k, v in p.graph.items()},
            [(p._name, 0) for p in parts],
        )
        _check_shuffle(pdf, out, on, nout)
        assert_frame_equal(
            shuffled.compute(client).sort_index(), pdf.sort_index(), check_index_type=False
        )


def test_staged_shuffle_has_fewer_tasks_and_the_same_partitions(client):
    pdf = make_frame(3000, 7, "str", 0.1)
    df = edf.from_pandas(pdf, 64)
    direct = df.shuffle("k", 64, max_branch=64)
    staged = df.shuffle("k", 64, max_branch=8)
    n_direct = len(direct.graph) - len(df.graph)
    n_staged = len(staged.graph) - len(df.graph)
    assert n_direct == 64 + 64 * 64 + 64
    assert n_staged < n_direct / 3
    a = client.get(direct.graph, direct._output_keys())
    b = client.get(staged.graph, staged._output_keys())
    for x, y in zip(a, b, strict=True):
        assert sorted(x.index) == sorted(y.index)
    _check_shuffle(pdf, b, ["k"], 64)


def test_shuffle_with_a_key_that_holds_most_rows(client):
    pdf = make_frame(2000, 3, "skew", 0.0)
    out = edf.from_pandas(pdf, 8).shuffle("k", 8)
    parts = client.get(out.graph, out._output_keys())
    _check_shuffle(pdf, parts, ["k"], 8)
    assert max(map(len, parts)) >= 0.9 * len(pdf) - 50


def test_shuffle_changes_partition_count_both_ways(client):
    pdf = make_frame(500, 2, "int", 0.1)
    for nin, nout in ((1, 40), (40, 1), (3, 70), (70, 3)):
        out = edf.from_pandas(pdf, nin).shuffle("k", nout, max_branch=8)
        _check_shuffle(pdf, client.get(out.graph, out._output_keys()), ["k"], nout)


def test_shuffle_errors_name_the_problem():
    df = edf.from_pandas(make_frame(10, 0, "int", 0.0), 2)
    with pytest.raises(KeyError, match="shuffle: column 'nope' not found"):
        df.shuffle("nope")
    with pytest.raises(ValueError, match="npartitions must be a positive integer, got 0"):
        df.shuffle("k", 0)
    with pytest.raises(ValueError, match="unknown shuffle method 'scatter'"):
        df.shuffle("k", 2, method="scatter")


def test_a_registered_method_plugs_in(client):
    calls = []

    def recording(frame, npartitions, name, partitioner, extra_key, options):
        calls.append(options)
        return tasks_layers(frame, npartitions, name, partitioner, extra_key, options)

    register_shuffle_method("recording", recording)
    try:
        pdf = make_frame(100, 1, "int", 0.0)
        out = edf.from_pandas(pdf, 4).shuffle("k", 3, method="recording", flavour="x")
        _check_shuffle(pdf, client.get(out.graph, out._output_keys()), ["k"], 3)
        assert calls and calls[0]["flavour"] == "x"
    finally:
        SHUFFLE_METHODS.pop("recording")


def test_default_method_from_environment(monkeypatch):
    df = edf.from_pandas(make_frame(10, 0, "int", 0.0), 2)
    monkeypatch.setenv("TASKBENCH_SHUFFLE", "scatter")
    with pytest.raises(ValueError, match="unknown shuffle method 'scatter'"):
        df.shuffle("k")


def object_columns(n: int) -> pd.DataFrame:
    """Object columns of every kind the shuffles send differently: Arrow, pickle, mixtures."""
    flags = np.array(["N", "Y", None], dtype=object)
    strbytes = [f"c{i}".encode() if i % 9 else f"c{i}" for i in range(n)]
    return pd.DataFrame(
        {
            "k": np.arange(n) % 7,
            "s": np.array([f"s{i}" if i % 5 else None for i in range(n)], dtype=object),
            "nan": np.array([f"t{i}" if i % 5 else np.nan for i in range(n)], dtype=object),
            "raw": np.array([f"b{i}".encode() for i in range(n)], dtype=object),
            "strbytes": np.array(strbytes, dtype=object),
            "mixed": np.array([i if i % 2 else str(i) for i in range(n)], dtype=object),
            "flag": flags[np.arange(n) % 3],  # three objects, repeated
            "text": pd.Series([f"é{i}" if i % 3 else None for i in range(n)], dtype="str"),
        }
    )


@pytest.mark.parametrize(
    "method,options",
    [("tasks", {"max_branch": 2}), ("tasks", {"max_branch": 32}), ("p2p", {})],
)
@pytest.mark.parametrize("encode", [True, False])
def test_object_columns_round_trip_exactly(client, method, options, encode):
    pdf = object_columns(200)
    out = edf.from_pandas(pdf, 5).shuffle("k", 6, method=method, encode_strings=encode, **options)
    out = out.compute(client).sort_index()
    assert_frame_equal(out, pdf)
    for col in ("s", "nan", "raw", "strbytes", "mixed", "flag"):
        assert [type(v) for v in out[col]] == [type(v) for v in pdf[col]], col


@SETTINGS
@given(case=frames(), n=st.integers(1, 9), data=st.data())
def test_partition_split_pieces_are_the_rows_of_their_targets(case, n, data):
    pdf, _ = case
    objects = object_columns(len(pdf)).drop(columns="k").add_prefix("o_")
    pdf = pd.concat([pdf, objects.set_axis(pdf.index)], axis=1)
    targets = hash_targets(pdf, n, None, ["k"])
    want = split_by_targets(pdf, targets, n)
    split = PartitionSplit(pdf, targets, n)
    chosen = data.draw(st.lists(st.integers(0, n - 1), unique=True), label="targets")
    wire = data.draw(st.booleans(), label="wire")
    piece = split.piece(chosen, wire=wire)
    if wire:  # as it travels
        piece = comm.loads(comm.dumps(piece))
    start = 0
    for j in chosen:
        assert split.count(j) == len(want[j])
        rows = piece_rows(piece, start, start + split.count(j))
        assert_frame_equal(concat_shards([rows], pdf.columns), want[j], check_index_type=False)
        start += split.count(j)
    assert start == len(piece[0])
