"""``taskbench compare``: real engines, interleaved rounds, immutable records, resume, failures."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import psutil
import pytest
from taskbench.comparisons import solutions
from taskbench.comparisons.bench.record import BenchResult
from taskbench.comparisons.compare import RECORDS, java_major, read_records

from taskbench.cli import main

FAKE = "fake=tests.comparisons.fake_solution"


def compare(*argv: str) -> int:
    return main(["compare", *argv])


def query_records(run: Path) -> list[BenchResult]:
    return [r for r in read_records(run / RECORDS) if r.name == "query_seconds"]


def session_processes(run: Path) -> list[psutil.Process]:
    """The engine processes of the run in ``run`` still alive (others' runs do not count)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(p.info["cmdline"] or [])
        if "taskbench.comparisons.session" in cmdline and str(run) in cmdline:
            found.append(p)
    return found


@pytest.fixture
def fake_engine(monkeypatch):
    monkeypatch.setenv(solutions.EXTRA_ENV, FAKE)
    for name in ("FAKE_HANG", "FAKE_CRASH", "FAKE_DIE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.duckdb
def test_memory_run_records_every_event_interleaved_and_checked(datasets, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["--engines", "pandas,duckdb,engine", "--data", str(datasets["generated"])]
    code = compare(*argv, "--queries", "q01,q07,q12", "--out", str(run), "--cores", "2")
    out = capsys.readouterr().out
    assert code == 0, out
    records = read_records(run / RECORDS)
    queries = [r for r in records if r.name == "query_seconds"]
    assert len(queries) == 3 * 3 * 3
    assert {r.status for r in queries} == {"valid"}
    assert all(len(r.values) == 1 and r.values[0] > 0 for r in queries)
    assert all(r.params["cold"] == (r.params["run"] == 1) for r in queries)
    # start and load timed apart, once per engine
    for engine in ("pandas", "duckdb", "engine"):
        names = [r.name for r in records if r.engine == engine and r.name != "query_seconds"]
        assert names == ["start_seconds", "load_seconds"]
    # interleaved: every round runs each query on every engine, the order rotated per round
    orders = {}
    for r in queries:
        orders.setdefault((r.params["run"], r.params["query"]), []).append(r.engine)
    assert orders[(1, "q01")] == ["pandas", "duckdb", "engine"]
    assert orders[(2, "q01")] == ["duckdb", "engine", "pandas"]
    assert orders[(3, "q07")] == ["engine", "pandas", "duckdb"]
    # every record carries what the issue lists
    r = next(r for r in queries if r.engine == "duckdb")
    assert r.params["mode"] == "memory" and r.params["rows_out"] > 0
    assert r.params["checksum"] and r.params["peak_rss_bytes"] > 0
    meta = r.metadata
    assert meta["engine_version"].startswith("duckdb")
    assert meta["config"]["sha256"] and meta["config"]["path"].endswith("duckdb.toml")
    assert meta["config"]["resolved"]["settings"]["load"]["mode"]["value"] == "table"
    assert meta["data"]["fingerprint"].startswith("sha256:") and meta["data"]["rows"] == 20_000
    assert meta["data"]["months"] == 2
    assert {"cpu", "cores", "ram_gb", "os", "python", "java"} <= set(meta["machine"])
    assert {"sha", "dirty"} <= set(meta["git"]) and meta["timestamp"]
    assert meta["cluster"] is None
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["engines"] == ["pandas", "duckdb", "engine"]
    assert manifest["single_threaded"] == ["pandas"]
    assert manifest["command"].startswith("taskbench compare")
    assert "table" in manifest["configs"]["duckdb"]["settings"]["memory"]["mode"]["value"]
    # the engine's task stream of q12's last run, for the report
    stream = run / "bench" / "stream-engine-memory-q12.jsonl"
    lines = stream.read_text().splitlines()
    assert json.loads(lines[0])["meta"]["title"].startswith("engine q12") and len(lines) > 10
    assert "engine (memory): 9 valid" in out
    assert not session_processes(run)


def test_scan_mode_reads_the_files_in_every_query(datasets, tmp_path):
    run = tmp_path / "run"
    code = compare(
        "--engines", "pandas,engine", "--data", str(datasets["generated"]),
        "--queries", "q02", "--mode", "scan", "--out", str(run),
    )  # fmt: skip
    assert code == 0
    records = read_records(run / RECORDS)
    assert not [r for r in records if r.name == "load_seconds"]  # no load apart: each query reads
    queries = [r for r in records if r.name == "query_seconds"]
    assert {r.params["mode"] for r in queries} == {"scan"} and len(queries) == 6
    assert all(0 < r.params["load_seconds"] < r.values[0] for r in queries)
    resolved = queries[0].metadata["config"]["resolved"]["settings"]
    engine = next(r for r in queries if r.engine == "engine")
    assert engine.metadata["config"]["resolved"]["settings"]["load"]["persist"]["value"] is False
    assert resolved == {}  # pandas: no setting differs from its defaults


def test_wrong_error_timeout_and_crash_are_records_without_time(datasets, tmp_path, fake_engine):
    fake_engine.setenv("FAKE_HANG", "1")
    fake_engine.setenv("FAKE_DIE", "1")
    run = tmp_path / "run"
    code = compare(
        "--engines", "pandas,fake", "--data", str(datasets["generated"]),
        "--queries", "q01,q02,q04,q06,q07", "--out", str(run), "--timeout", "8", "--repeat", "3",
    )  # fmt: skip
    assert code == 1
    records = query_records(run)
    fake = {(r.params["query"], r.params["run"]): r for r in records if r.engine == "fake"}
    assert {fake["q01", k].status for k in (1, 2, 3)} == {"wrong"}
    assert {fake["q02", k].status for k in (1, 2, 3)} == {"error"}
    assert "planted failure" in fake["q02", 1].params["detail"]
    assert fake["q04", 1].status == "timeout" and "--timeout 8" in fake["q04", 1].params["detail"]
    assert fake["q06", 1].status == "error" and "exited" in fake["q06", 1].params["detail"]
    # a query that ended its process is not run again: later rounds say so, with its status
    assert (
        fake["q04", 3].status == "timeout"
        and "in run 1; not run again" in (fake["q04", 3].params["detail"])
    )
    assert fake["q06", 2].status == "error" and "not run again" in fake["q06", 2].params["detail"]
    assert all(not r.values and r.value is None for r in fake.values() if r.status != "valid")
    # each failure ended the process; the next query started a new one, and ran cold
    assert fake["q07", 1].status == "valid" and fake["q07", 1].params["cold"]
    assert {fake["q07", k].status for k in (2, 3)} == {"valid"}
    starts = [r for r in read_records(run / RECORDS) if r.name == "start_seconds"]
    assert [r.params["process"] for r in starts if r.engine == "fake"] == [1, 2, 3]
    # the other engine lost nothing
    assert {r.status for r in records if r.engine == "pandas"} == {"valid"}
    assert len([r for r in records if r.engine == "pandas"]) == 15
    assert not session_processes(run)


def test_resume_adds_only_what_is_missing(datasets, tmp_path):
    run = tmp_path / "run"
    data = str(datasets["generated"])
    assert (
        compare("--engines", "pandas", "--data", data, "--queries", "q01", "--out", str(run)) == 0
    )
    first = (run / RECORDS).read_text()
    argv = ["--engines", "pandas", "--data", data, "--queries", "q01,q03", "--out", str(run)]
    assert compare(*argv) == 2  # an existing run is never added to by accident
    assert compare(*argv, "--resume") == 0
    text = (run / RECORDS).read_text()
    assert text.startswith(first)  # appended, never rewritten
    keys = [
        (r.params["query"], r.params["run"]) for r in query_records(run) if r.engine == "pandas"
    ]
    assert sorted(keys) == [("q01", 1), ("q01", 2), ("q01", 3), ("q03", 1), ("q03", 2), ("q03", 3)]
    assert compare(*argv, "--resume") == 0
    assert len(query_records(run)) == 6
    manifest = json.loads((run / "run.json").read_text())
    assert len(manifest["commands"]) == 3 and [q["id"] for q in manifest["queries"]] == [
        "q01",
        "q03",
    ]


def test_resume_refuses_records_of_other_data(datasets, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["--engines", "pandas", "--queries", "q01", "--out", str(run)]
    assert compare(*argv, "--data", str(datasets["generated"])) == 0
    capsys.readouterr()
    assert compare(*argv, "--data", str(datasets["edge"]), "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "records of two datasets never share a run" in err and "run.json" in err
    # a foreign record planted in the file is found by its line
    lines = (run / RECORDS).read_text().splitlines()
    planted = json.loads(lines[-1])
    planted["metadata"]["data"]["fingerprint"] = "sha256:" + "0" * 64
    with open(run / RECORDS, "a") as f:
        f.write(json.dumps(planted) + "\n")
    assert compare(*argv, "--data", str(datasets["generated"]), "--resume") == 2
    assert f"{RECORDS}:{len(lines) + 1}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--engines", "polars"], "unknown engine 'polars'"),
        (["--queries", "q01,q99"], "unknown query q99"),
        (["--repeat", "2"], "--repeat 2: at least 3"),
        (["--cores", "64"], "--cores 64: this process may use only"),
    ],
)
def test_bad_invocations_are_one_line(datasets, argv, message, capsys, tmp_path):
    code = compare("--data", str(datasets["generated"]), "--out", str(tmp_path / "r"), *argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "r").exists()


def test_data_without_manifest_and_unwritable_out(datasets, tmp_path, capsys):
    assert compare("--data", str(datasets["generated"]), "--resume") == 2
    assert "--resume needs --out" in capsys.readouterr().err
    bare = tmp_path / "bare"
    shutil.copytree(datasets["generated"], bare)
    (bare / "manifest.json").unlink()
    assert compare("--data", str(bare), "--out", str(tmp_path / "r1")) == 2
    assert "manifest" in capsys.readouterr().err
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert compare("--data", str(datasets["generated"]), "--out", str(blocker / "run")) == 2
    err = capsys.readouterr().err
    assert "cannot write the run folder --out" in err and "a-file/run" in err


def test_a_missing_java_is_an_error_for_spark_and_a_note_for_all(
    datasets, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-java"))
    argv = ["--data", str(datasets["generated"]), "--queries", "q01"]
    assert compare(*argv, "--engines", "spark", "--out", str(tmp_path / "r1")) == 2
    assert "spark needs Java 17 or newer: no java" in capsys.readouterr().err
    monkeypatch.setenv(solutions.EXTRA_ENV, "")
    # `all` goes on without spark, and says so in the terminal and in the run's manifest
    monkeypatch.setattr(solutions, "ENGINES", {"pandas": solutions.ENGINES["pandas"],
                                               "spark": solutions.ENGINES["spark"]})  # fmt: skip
    assert compare(*argv, "--engines", "all", "--out", str(tmp_path / "r2")) == 0
    assert "spark skipped: it needs Java 17 or newer" in capsys.readouterr().err
    notes = json.loads((tmp_path / "r2" / "run.json").read_text())["notes"]
    assert any(n.startswith("spark skipped") for n in notes)


def test_java_versions_are_read_both_ways():
    assert java_major("17.0.15") == 17 and java_major("1.8.0_392") == 8
    assert java_major("21") == 21 and java_major(None) is None and java_major("x") is None


@pytest.mark.spark
@pytest.mark.dask
@pytest.mark.duckdb
@pytest.mark.slow
def test_all_engines_both_modes(datasets, tmp_path):
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("no Java for Spark")
    run = tmp_path / "run"
    code = compare(
        "--engines", "all", "--data", str(datasets["generated"]), "--queries", "q07",
        "--mode", "both", "--out", str(run), "--timeout", "240",
    )  # fmt: skip
    assert code == 0
    records = query_records(run)
    engines = ["pandas", "engine", "duckdb", "spark", "dask"]
    for mode in ("memory", "scan"):
        for engine in engines:
            rows = [r for r in records if r.engine == engine and r.params["mode"] == mode]
            assert len(rows) == 3 and {r.status for r in rows} == {"valid"}, (engine, mode)
    spark = next(r for r in records if r.engine == "spark" and r.params["mode"] == "scan")
    assert spark.metadata["config"]["resolved"]["settings"]["load"]["cache"]["value"] is False
    assert (
        spark.metadata["config"]["resolved"]["settings"]["session"]["spark.master"]["value"]
        == "local[2]"
    )
    assert not session_processes(run)
