"""``taskbench bench scheduler``, run as a user would run it (real processes, loopback)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from taskbench.comparisons import stats
from taskbench.comparisons.bench import scheduler as bsch
from taskbench.engine.stream import TaskRecord, TaskStream

TASKBENCH = [sys.executable, "-m", "taskbench.cli"]


def run(*args, timeout=300):
    return subprocess.run([*TASKBENCH, *args], capture_output=True, text=True, timeout=timeout)


def _record(doc: dict, name: str, engine: str) -> dict:
    return next(r for r in doc["results"] if (r["name"], r["engine"]) == (name, engine))


def _value(doc: dict, name: str, engine: str) -> float | None:
    found = [r["value"] for r in doc["results"] if (r["name"], r["engine"]) == (name, engine)]
    return found[0] if found else None


def _fake_engine(name: str, gaps_us: list[float], sizes: dict[str, int]) -> bsch.Engine:
    """An engine whose lag run gives one thread's tasks with these gaps; nothing is run."""

    def stream_of(run):
        records, t = [], 0.0
        for gap in [0.0, *gaps_us]:
            t += gap / 1e6
            records.append(TaskRecord(f"k{t}", "sleep", "w", 0, None, t, t + 0.001, 0, 0.0,
                                      "memory", []))  # fmt: skip
            t += 0.001
        return TaskStream(records, {"title": f"{name} lag run"}), t

    return bsch.Engine(name, lambda dsk, keys: None, stream_of, 1, sizes)


def test_engines_run_in_rotated_rounds_and_compare_by_ratios_of_medians():
    rates = {
        ("taskbench", "independent_graph"): iter([100.0, 300.0, 200.0]),
        ("taskbench", "chain_graph"): iter([50.0, 50.0, 50.0]),
        ("dask-distributed", "independent_graph"): iter([10.0, 20.0, 10.0]),
        ("dask-distributed", "chain_graph"): iter([5.0, 5.0, 5.0]),
    }
    calls = []

    def run_one(engine, make, n, last_only):
        calls.append(f"{engine.name} {make.__name__}")
        return next(rates[engine.name, make.__name__]), n * 1e-6  # 1 µs per task taken in

    ours = _fake_engine("taskbench", [10.0, 30.0], {"tasks": 4, "chain_tasks": 4, "lag_tasks": 3})
    peer = _fake_engine("dask-distributed", [500.0, 700.0],
                        {"tasks": 2, "chain_tasks": 2, "lag_tasks": 3})  # fmt: skip
    said = []
    results, streams, run = bsch.measure(
        [ours, peer], repeats=3, metadata={}, say=said.append, run_one=run_one
    )
    first = ["taskbench independent_graph", "dask-distributed independent_graph",
             "taskbench chain_graph", "dask-distributed chain_graph"]  # fmt: skip
    assert calls == [*first, *first[1:], first[0], *first[2:], *first[:2]]
    assert run["order"][1][0] == "dask-distributed: 2 independent tasks"
    assert said[0] == "round 1/3: taskbench: 4 independent tasks"

    def record(name, engine):
        return next(r for r in results if (r.name, r.engine) == (name, engine))

    ind = record("independent_tasks_per_s", "taskbench")
    assert ind.values == [100.0, 300.0, 200.0] and ind.params == {"tasks": 4}
    assert record("independent_update_graph_us", "taskbench").values == [1.0, 1.0, 1.0]
    ratio = next(r for r in run["ratios"] if r["part"] == "independent")
    expected = stats.speedup([10.0, 20.0, 10.0], [100.0, 300.0, 200.0])  # ours ÷ theirs
    assert (ratio["numerator"], ratio["denominator"]) == ("taskbench", "dask-distributed")
    assert ratio["value"] == 20.0 == expected.value
    assert (ratio["low"], ratio["high"]) == (expected.low, expected.high)
    assert record("lag_us", "taskbench").values == pytest.approx([10.0, 30.0])
    assert record("lag_us", "dask-distributed").values == pytest.approx([500.0, 700.0])
    assert record("lag_us", "taskbench").unit == "us"
    assert record("lag_p50_us", "taskbench").value == pytest.approx(20.0)
    assert streams["taskbench"].meta["title"] == "taskbench lag run"
    text = bsch.format_results(results, {"taskbench": ours.sizes, "dask-distributed": peer.sizes},
                               run["ratios"], 3)  # fmt: skip
    assert "200 (100–300)" in text
    assert f"independent ×20.0 [{expected.low:.1f}–{expected.high:.1f}]" in text


def test_bench_scheduler_json_against_dask(tmp_path):
    stream_file = tmp_path / "stream.jsonl"
    json_file = tmp_path / "scheduler.json"
    out = run("bench", "scheduler", "--tasks", "400", "--lag-tasks", "60", "--peer-tasks",
              "100", "--repeats", "2", "--vs", "dask", "--json", "--json-out", str(json_file),
              "--stream-out", str(stream_file))  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert doc == json.loads(json_file.read_text())
    assert doc["bench"] == "scheduler"
    engines = {r["engine"] for r in doc["results"]}
    assert engines == {"taskbench", "dask-distributed", "dask-threaded"}
    for engine in engines:
        assert _value(doc, "independent_tasks_per_s", engine) > 0
        assert _value(doc, "chain_tasks_per_s", engine) > 0
        assert _value(doc, "lag_p50_us", engine) <= _value(doc, "lag_p99_us", engine)
        assert len(_record(doc, "independent_tasks_per_s", engine)["values"]) == 2  # per round
    for engine in ("taskbench", "dask-distributed"):
        gaps = _record(doc, "lag_us", engine)
        assert gaps["unit"] == "us" and 0 < len(gaps["values"]) < 60
        assert all(v >= 0 for v in gaps["values"])
        assert gaps["value"] == pytest.approx(_value(doc, "lag_p50_us", engine))
    ratios = doc["params"]["ratios"]
    assert {(r["part"], r["denominator"]) for r in ratios} == {
        (part, peer) for part in ("independent", "chain")
        for peer in ("dask-distributed", "dask-threaded")
    }  # fmt: skip
    assert all(r["low"] <= r["value"] <= r["high"] for r in ratios)
    assert sorted(doc["params"]["streams"].values()) == ["stream-dask.jsonl", "stream.jsonl"]
    assert len(doc["params"]["order"]) == 2
    assert doc["params"]["sizes"]["taskbench"]["tasks"] == 400
    assert doc["params"]["sizes"]["dask-distributed"]["tasks"] == 100
    assert doc["params"]["workers"] == 2
    assert _value(doc, "scheduler_peak_rss_mb", "taskbench") > 0
    lines = stream_file.read_text().splitlines()
    assert len(lines) == 61  # a meta line and one record per 1 ms task
    # progress went to stderr, one line per step; stdout held only the JSON object
    progress = [line for line in out.stderr.splitlines() if line.startswith("[scheduler] ")]
    assert "[scheduler] round 1/2: taskbench: 400 independent tasks" in progress
    assert "[scheduler] round 2/2: dask-distributed: 100 chain tasks" in progress
    assert doc["peer_log"].endswith("dask.log")

    png = tmp_path / "stream.png"
    plotted = run("stream", "plot", str(stream_file), "-o", str(png))
    assert plotted.returncode == 0, plotted.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_peers_logs_stay_off_the_screen_and_their_stream_is_drawn_beside_ours(tmp_path):
    """dask's shutdown noise (a worker's CommClosedError traceback) goes to the named log."""
    stream_file = tmp_path / "stream.jsonl"
    out = run("bench", "scheduler", "--vs", "dask", "--tasks", "500", "--chain-tasks", "200",
              "--lag-tasks", "50", "--peer-tasks", "200", "--repeats", "1",
              "--stream-out", str(stream_file))  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "CommClosedError" not in out.stderr, out.stderr
    assert all(line.startswith("[scheduler] ") for line in out.stderr.splitlines()), out.stderr
    log = next(line for line in out.stdout.splitlines() if line.startswith("dask.distributed logs"))
    assert (tmp_path / "stream-dask.jsonl").exists()
    assert log.split(": ", 1)[1].endswith("dask.log")
    # every term is defined under the table; plurals are right
    assert "2 worker processes × 1 thread" in out.stdout
    assert "\nlag: " in out.stdout and "per-task overhead: " in out.stdout

    png = tmp_path / "stream.png"
    both = [str(stream_file), str(tmp_path / "stream-dask.jsonl")]
    plotted = run("stream", "plot", *both, "-o", str(png))
    assert plotted.returncode == 0, plotted.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_peer_is_refused():
    out = run("bench", "scheduler", "--vs", "sparkle", "--tasks", "10")
    assert out.returncode == 2 and "unknown peer" in out.stderr and "sparkle" in out.stderr
