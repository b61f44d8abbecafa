"""``taskbench bench shuffle``: the frame, the baseline and a small engine-only run."""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest
from taskbench.comparisons.bench import frames
from taskbench.comparisons.bench import shuffle as bs
from taskbench.comparisons.bench.record import find


def test_taxi_partitions_are_deterministic_and_partitioned():
    a = frames.taxi_partition(3, 500, "strings")
    b = frames.taxi_partition(3, 500, "strings")
    pd.testing.assert_frame_equal(a, b)
    assert a.trip_id.tolist() == list(range(1500, 2000))
    assert a.medallion.dtype == object and a.medallion.str.len().eq(32).all()
    assert set(frames.taxi_partition(0, 10, "numeric").columns) < set(a.columns)
    sizes = frames.partition_rows(1003, 4)
    assert sum(sizes) == 1003 and max(sizes) - min(sizes) <= 1
    frame = frames.taxi_frame(1003, 4, "numeric")
    assert frame.trip_id.is_unique and len(frame) == 1003


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    bs.add_parser(parser.add_subparsers(dest="suite"))
    return parser


def _args(**kw) -> argparse.Namespace:
    argv = ["shuffle"]
    for key, value in kw.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return _parser().parse_args(argv)


@pytest.mark.parametrize("argv", [["--sizeof", "exact"], ["--sizeof", "sampled,dep"]])
def test_unknown_sizeof_mode_is_an_argparse_error(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["shuffle", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--sizeof" in err and "sampled, deep" in err


def test_engine_only_run_reports_both_sizeof_modes():
    args = _args(rows="5k", partitions=4, repeats=2, columns="strings")
    assert args.func is bs.cmd_shuffle and args.sizeof == ["sampled", "deep"]
    results, run = bs.measure(args, lambda msg: None, metadata={"test": True})
    assert run["rows"] == 5_000
    for name in ("taskbench-tasks", "taskbench-tasks-deep"):
        assert find(results, "seconds", name) > 0 and find(results, "mb_per_s", name) > 0
        assert find(results, "overhead_ratio", name) > 0 and find(results, "tasks", name) > 0
        runs = next(r for r in results if r.engine == name and r.name == "seconds")
        assert len(runs.values) == 1  # two repeats: one cold, one hot
        assert find(results, "cold_seconds", name) > 0
    deep = [r for r in results if r.engine == "taskbench-tasks-deep"]
    assert {r.params["sizeof"] for r in deep} == {"deep"}
    assert find(results, "sizeof_seconds", "taskbench-tasks-deep") > 0
    p2p = find(results, "seconds", "taskbench-p2p")
    assert p2p is not None or "taskbench-p2p" in run["not_measured"]
    table = bs.format_results(results, run)
    assert "taskbench-tasks-deep" in table and "taskbench-p2p" in table
    json.dumps([r.to_json() for r in results])


def test_command_prints_json(capsys):
    args = _args(rows="5k", partitions=2, repeats=1, methods="tasks", sizeof="sampled")
    args.json = True
    assert bs.cmd_shuffle(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bench"] == "shuffle" and out["params"]["rows"] == 5000
    assert {r["engine"] for r in out["results"]} == {"pandas", "taskbench-tasks"}
    assert {"machine", "versions", "git", "timestamp"} <= set(out["metadata"])


def test_command_refuses_unknown_peers(capsys):
    args = _args(rows="5k", vs="duckdb")
    assert bs.cmd_shuffle(args) == 2
    assert "unknown peer" in capsys.readouterr().err
