"""``taskbench bench shuffle``: the frame, the baseline and a small engine-only run."""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest
from taskbench.engine import bench_shuffle as bs


def test_taxi_partitions_are_deterministic_and_partitioned():
    a = bs.taxi_partition(3, 500, "strings")
    b = bs.taxi_partition(3, 500, "strings")
    pd.testing.assert_frame_equal(a, b)
    assert a.trip_id.tolist() == list(range(1500, 2000))
    assert a.medallion.dtype == object and a.medallion.str.len().eq(32).all()
    assert set(bs.taxi_partition(0, 10, "numeric").columns) < set(a.columns)
    sizes = bs.partition_rows(1003, 4)
    assert sum(sizes) == 1003 and max(sizes) - min(sizes) <= 1
    frame = bs.taxi_frame(1003, 4, "numeric")
    assert frame.trip_id.is_unique and len(frame) == 1003


@pytest.mark.parametrize(
    ("text", "rows"), [("1M", 10**6), ("10m", 10**7), ("500k", 500_000), ("1e6", 10**6)]
)
def test_parse_rows(text, rows):
    assert bs.parse_rows(text) == rows


def test_parse_rows_refuses_nonsense():
    with pytest.raises(argparse.ArgumentTypeError):
        bs.parse_rows("lots")
    with pytest.raises(argparse.ArgumentTypeError):
        bs.parse_rows("0")


def _args(**kw) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="suite")
    bs.add_parser(sub)
    argv = ["shuffle"]
    for key, value in kw.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return parser.parse_args(argv)


def test_engine_only_run_reports_both_sizeof_modes(capsys):
    args = _args(rows="5k", partitions=4, repeats=2, columns="strings")
    assert args.func is bs.cmd_shuffle
    results = bs.measure(args, lambda msg: None)
    assert results["meta"]["rows"] == 5_000
    for name in ("taskbench-tasks", "taskbench-tasks-deep"):
        r = results[name]
        assert r["seconds"] > 0 and r["overhead_ratio"] > 0 and r["mb_per_s"] > 0
        assert len(r["runs"]) == 2 and r["tasks"] > 0
    assert results["taskbench-tasks-deep"]["sizeof_mode"] == "deep"
    p2p = results["taskbench-p2p"]
    assert "seconds" in p2p or p2p["available"] is False
    table = bs.format_table(results)
    assert "taskbench-tasks-deep" in table and "taskbench-p2p" in table
    json.dumps(results)


def test_command_prints_json(capsys):
    args = _args(rows="5k", partitions=2, repeats=1, methods="tasks", sizeof="sampled")
    args.json = True
    assert bs.cmd_shuffle(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"pandas", "taskbench-tasks", "meta"}


def test_command_refuses_unknown_peers(capsys):
    args = _args(rows="5k", vs="duckdb")
    assert bs.cmd_shuffle(args) == 2
    assert "unknown peer" in capsys.readouterr().err
