"""``taskbench bench scheduler``, run as a user would run it (real processes, loopback)."""

from __future__ import annotations

import json
import subprocess
import sys

TASKBENCH = [sys.executable, "-m", "taskbench.cli"]


def run(*args, timeout=300):
    return subprocess.run([*TASKBENCH, *args], capture_output=True, text=True, timeout=timeout)


def _value(doc: dict, name: str, engine: str) -> float | None:
    found = [r["value"] for r in doc["results"] if (r["name"], r["engine"]) == (name, engine)]
    return found[0] if found else None


def test_bench_scheduler_json_against_dask(tmp_path):
    stream_file = tmp_path / "stream.jsonl"
    out = run("bench", "scheduler", "--tasks", "400", "--lag-tasks", "60", "--peer-tasks",
              "100", "--repeats", "1", "--vs", "dask", "--json", "--stream-out",
              str(stream_file))  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert doc["bench"] == "scheduler"
    engines = {r["engine"] for r in doc["results"]}
    assert engines == {"taskbench", "dask-distributed", "dask-threaded"}
    for engine in engines:
        assert _value(doc, "independent_tasks_per_s", engine) > 0
        assert _value(doc, "chain_tasks_per_s", engine) > 0
        assert _value(doc, "lag_p50_us", engine) <= _value(doc, "lag_p99_us", engine)
    assert doc["params"]["sizes"]["taskbench"]["tasks"] == 400
    assert doc["params"]["sizes"]["dask-distributed"]["tasks"] == 100
    assert doc["params"]["workers"] == 2
    assert _value(doc, "scheduler_peak_rss_mb", "taskbench") > 0
    lines = stream_file.read_text().splitlines()
    assert len(lines) == 61  # a meta line and one record per 1 ms task
    # progress went to stderr, one line per step; stdout held only the JSON object
    progress = [line for line in out.stderr.splitlines() if line.startswith("[scheduler] ")]
    assert "[scheduler] taskbench: 400 independent tasks, repeat 1/1" in progress
    assert "[scheduler] dask-distributed: 100 chain tasks, repeat 1/1" in progress
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
