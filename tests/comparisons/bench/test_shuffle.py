"""``taskbench bench shuffle``: the frame, the baseline and a small engine-only run."""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest
from taskbench.comparisons import stats
from taskbench.comparisons.bench import frames, interleave
from taskbench.comparisons.bench import shuffle as bs
from taskbench.comparisons.bench.record import find

from taskbench.cli import main


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


def _fake_subject(label: str, engine: str, params: dict, times: list[float], calls: list[str]):
    """A subject whose runs take the given seconds, in its own round order; no sleeping."""
    seconds = iter(times)

    def run() -> dict:
        calls.append(label)
        peak = 400e6 if engine == "taskbench" else None
        return {"seconds": next(seconds), "lengths": [5, 5], "peak_worker_rss_bytes": peak}

    constant = {"idle_worker_rss_bytes": 200e6} if engine == "taskbench" else {}
    return bs.Subject(label, engine, params, run, constant)


def test_overhead_is_the_ratio_of_medians_of_interleaved_hot_rounds():
    calls: list[str] = []
    subjects = [
        _fake_subject("pandas", "pandas", {"role": "baseline"}, [9.0, 1.0, 0.5, 1.5, 1.0], calls),
        _fake_subject("taskbench-tasks", "taskbench", {"method": "tasks", "sizeof": "sampled"},
                      [7.0, 2.0, 2.0, 3.0, 1.0], calls),
        _fake_subject("dask-p2p", "dask", {"method": "p2p"}, [8.0, 4.0, 4.4, 3.6, 4.0], calls),
    ]  # fmt: skip
    rounds = interleave({s.label: s.run for s in subjects}, 5)
    assert calls[:6] == ["pandas", "taskbench-tasks", "dask-p2p",
                         "taskbench-tasks", "dask-p2p", "pandas"]  # fmt: skip
    bs.check_outputs(subjects, rounds, rows=10)
    results, ratios = bs.records(subjects, rounds, 100e6, {}, rows=10, partitions=2)

    def record(name: str, engine: str):
        return next(r for r in results if (r.name, r.engine) == (name, engine))

    base = record("seconds", "pandas")
    assert base.values == [1.0, 0.5, 1.5, 1.0] and base.value == 1.0  # round 1 is cold
    assert base.params == {"rows": 10, "partitions": 2, "role": "baseline"}
    assert record("cold_seconds", "pandas").values == [9.0]
    assert not any(r.name == "overhead_ratio" and r.engine == "pandas" for r in results)
    ours = record("seconds", "taskbench")
    assert ours.values == [2.0, 2.0, 3.0, 1.0] and ours.params["method"] == "tasks"
    overhead = record("overhead_ratio", "taskbench")
    expected = stats.speedup(base.values, ours.values)  # subject ÷ baseline: speed-up inverted
    assert overhead.value == pytest.approx(2.0) == expected.value
    assert (overhead.params["low"], overhead.params["high"]) == (expected.low, expected.high)
    assert overhead.params["baseline"] == "pandas" and overhead.params["sizeof"] == "sampled"
    assert record("mb_per_s", "taskbench").values == pytest.approx([50.0, 50.0, 100 / 3, 100.0])
    assert record("memory_over_data", "taskbench").values == [2.0] * 4  # (400 - 200) MB / 100 MB
    peer = stats.speedup(ours.values, [4.0, 4.4, 3.6, 4.0])  # times faster than dask-p2p
    assert peer.value == 2.0 and ratios == [
        {"quantity": "seconds", "numerator": "dask-p2p", "denominator": "taskbench-tasks",
         "value": peer.value, "low": peer.low, "high": peer.high, "confidence": 0.95}
    ]  # fmt: skip
    run = {"rows": 10, "partitions": 2, "on": "trip_id", "columns": "numeric",
           "data_bytes": 100e6, "repeats": 5, "ratios": ratios}  # fmt: skip
    table = bs.format_results(results, run).splitlines()
    row = next(line for line in table if line.startswith("taskbench-tasks"))
    assert "2.000 (1.000–3.000)" in row and f"2.00 [{expected.low:.2f}–{expected.high:.2f}]" in row
    base_row = next(line for line in table if line.startswith("pandas "))
    assert base_row.split()[1:5] == ["1.000", "(0.500–1.500)", "baseline", "9.000"]
    assert any(line.startswith("taskbench-tasks is 2.00× faster than dask-p2p") for line in table)


def test_a_wrong_partition_stops_the_bench():
    calls: list[str] = []
    subjects = [
        _fake_subject("pandas", "pandas", {"role": "baseline"}, [1.0], calls),
        _fake_subject("taskbench-tasks", "taskbench", {"method": "tasks"}, [1.0], calls),
    ]
    rounds = interleave({s.label: s.run for s in subjects}, 1)
    rounds.results["taskbench-tasks"][0]["lengths"] = [4, 6]
    with pytest.raises(RuntimeError, match="differ from pandas' hash partition"):
        bs.check_outputs(subjects, rounds, rows=10)


def test_engine_only_run_reports_both_sizeof_modes():
    args = _args(rows="5k", partitions=4, repeats=2, columns="strings")
    assert args.func is bs.cmd_shuffle and args.sizeof == ["sampled", "deep"]
    results, run = bs.measure(args, lambda msg: None, metadata={"test": True})
    assert run["rows"] == 5_000
    for method in ("tasks", "p2p"):
        for mode in ("sampled", "deep"):
            which = {"method": method, "sizeof": mode}
            assert find(results, "seconds", "taskbench", **which) > 0
            assert find(results, "mb_per_s", "taskbench", **which) > 0
            assert find(results, "overhead_ratio", "taskbench", **which) > 0
            assert find(results, "tasks", "taskbench", **which) > 0
            assert find(results, "cold_seconds", "taskbench", **which) > 0
            runs = next(r for r in results if r.name == "seconds" and r.params == {
                **r.params, **which})  # fmt: skip
            assert len(runs.values) == 1  # two rounds: one cold, one hot
    assert find(results, "sizeof_seconds", "taskbench", sizeof="deep") > 0
    assert len(run["order"]) == 2 and run["order"][1][-1] == "pandas"  # rotated
    table = bs.format_results(results, run)
    assert "taskbench-tasks-deep" in table and "taskbench-p2p" in table
    json.dumps([r.to_json() for r in results])


def test_command_writes_json_and_prints_the_table(tmp_path, capsys):
    path = tmp_path / "shuffle.json"
    argv = ["bench", "shuffle", "--rows", "5k", "--partitions", "2", "--repeats", "3",
            "--methods", "tasks", "--sizeof", "sampled", "--json-out", str(path)]  # fmt: skip
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "overhead [95 % CI]" in out and f"JSON document written to {path}" in out
    assert "[shuffle] round 3/3: pandas" in err
    doc = json.loads(path.read_text())
    assert doc["bench"] == "shuffle" and doc["params"]["rows"] == 5000
    assert {"machine", "versions", "git", "timestamp"} <= set(doc["metadata"])
    assert {r["engine"] for r in doc["results"]} == {"pandas", "taskbench"}
    by = {(r["name"], r["engine"]): r for r in doc["results"]}
    base, ours = by["seconds", "pandas"], by["seconds", "taskbench"]
    assert base["params"]["role"] == "baseline" and len(base["values"]) == 2
    assert ours["params"] | {"method": "tasks", "sizeof": "sampled", "rows": 5000,
                             "partitions": 2} == ours["params"]  # fmt: skip
    assert len(ours["values"]) == 2 and all(v > 0 for v in ours["values"])
    overhead = by["overhead_ratio", "taskbench"]
    assert overhead["unit"] == "ratio" and overhead["value"] > 0
    assert overhead["params"]["low"] <= overhead["value"] <= overhead["params"]["high"]
    assert doc["params"]["order"] == [["pandas", "taskbench-tasks"],
                                      ["taskbench-tasks", "pandas"],
                                      ["pandas", "taskbench-tasks"]]  # fmt: skip


def test_command_prints_json(capsys):
    args = _args(rows="5k", partitions=2, repeats=1, methods="tasks", sizeof="sampled")
    args.json = True
    assert bs.cmd_shuffle(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bench"] == "shuffle" and out["params"]["rows"] == 5000
    assert {r["engine"] for r in out["results"]} == {"pandas", "taskbench"}


def test_command_refuses_unknown_peers(capsys):
    args = _args(rows="5k", vs="duckdb")
    assert bs.cmd_shuffle(args) == 2
    assert "unknown peer" in capsys.readouterr().err
