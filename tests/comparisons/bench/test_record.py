"""`BenchResult`, its metadata, the one table formatter and the process-tree memory helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from taskbench.comparisons.bench import memory
from taskbench.comparisons.bench.record import (
    UNITS,
    BenchResult,
    collect,
    find,
    format_table,
    run_metadata,
    to_document,
)


def test_record_round_trips_through_json():
    meta = run_metadata()
    assert {"cpu", "cores", "ram_gb", "os", "python"} <= set(meta["machine"])
    assert {"taskbench", "dask", "pyspark", "pandas"} <= set(meta["versions"])
    assert set(meta["git"]) == {"sha", "dirty"} and meta["timestamp"].endswith("+00:00")
    r = BenchResult.of("seconds", "taskbench", [3.0, 1.0, 2.0], meta, rows=10)
    assert r.unit == UNITS["seconds"] == "s" and r.value == 2.0 and r.params == {"rows": 10}
    back = BenchResult.from_json(json.loads(json.dumps(r.to_json())))
    assert back == r
    low = BenchResult.of("seconds", "pandas", [3.0, 1.0], meta, "min")
    assert low.value == 1.0


def test_missing_values_make_no_record_and_units_are_declared():
    assert BenchResult.of("seconds", "x", None, {}) is None
    assert BenchResult.of("seconds", "x", [], {}) is None
    with pytest.raises(KeyError):
        BenchResult.of("furlongs", "x", 1.0, {})
    rs = collect([BenchResult.of("tasks", "a", 3, {}, w="x"), None])
    assert find(rs, "tasks", "a", w="x") == 3.0 and find(rs, "tasks", "a", w="y") is None


def test_document_states_shared_metadata_once():
    meta = {"m": 1}
    rs = [BenchResult.of("seconds", "a", 1.0, meta), BenchResult.of("seconds", "b", 2.0, {"m": 2})]
    doc = to_document("demo", rs, meta, rows=5)
    assert doc["bench"] == "demo" and doc["params"] == {"rows": 5} and doc["metadata"] == meta
    assert "metadata" not in doc["results"][0] and doc["results"][1]["metadata"] == {"m": 2}


def test_table_aligns_columns_and_spans_notes():
    text = format_table(["engine", "time s"], [["a", "1.0"], ["longer", "22.5"], ["a note"]])
    lines = text.splitlines()
    assert lines[0] == "engine  time s" and lines[1] == "a          1.0"
    assert lines[2] == "longer    22.5" and lines[3] == "a note"


def test_memory_of_a_process_tree():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        mine = memory.rss_bytes()
        tree = {p.pid for p in memory.process_tree()}
        assert {os.getpid(), child.pid} <= tree
        assert memory.rss_bytes() > memory.rss_bytes(child.pid) > 0 and mine > 0
        peak = memory.peak_rss_bytes(child.pid)
        assert peak is not None and peak >= memory.rss_bytes(child.pid) * 0.5
        if sys.platform == "linux":
            assert memory.reset_peak_rss(child.pid)
    finally:
        child.kill()
        child.wait()
    assert memory.rss_bytes(child.pid) is None and memory.peak_rss_bytes(child.pid) is None
