"""``taskbench check``: the matrix, wrong/error/timeout cells, and clear invocation errors."""

from __future__ import annotations

import json
import shutil

import psutil
import pytest
from taskbench.comparisons import solutions
from taskbench.comparisons.check import check, resolve_engines, resolve_queries
from taskbench.comparisons.cli import main
from taskbench.comparisons.data.manifest import write_dataset
from taskbench.comparisons.data.schema import trip_files

FAKE = "fake=tests.comparisons.fake_solution"


@pytest.fixture
def fake_engine(monkeypatch):
    monkeypatch.setenv(solutions.EXTRA_ENV, FAKE)
    for name in ("FAKE_HANG", "FAKE_CRASH"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_names_are_resolved_and_unknown_ones_listed():
    assert resolve_engines("all") == list(solutions.ENGINES)
    assert resolve_engines("dask, pandas,dask") == ["dask", "pandas"]
    with pytest.raises(KeyError, match="valid: pandas, engine, duckdb, spark, dask"):
        resolve_engines("pandas,polars")
    assert resolve_queries("q05,q01") == ["q05", "q01"]
    with pytest.raises(KeyError, match=r"q99.*valid: all, q01"):
        resolve_queries("q01,q99")
    with pytest.raises(KeyError, match="no queries given"):
        resolve_queries(" , ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--engines", "polars"], "unknown engine 'polars'; valid: pandas, engine, duckdb"),
        (["--queries", "q1"], "unknown query q1; valid: all, q01"),
    ],
)
def test_bad_names_exit_2_with_the_valid_ones(argv, message, datasets, capsys):
    assert main(["check", "--data", str(datasets["edge"]), *argv]) == 2
    assert message in capsys.readouterr().err


def test_missing_data_dir_exits_2_naming_it(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["check", "--engines", "pandas", "--data", str(missing)]) == 2
    assert f"{missing}: no such dataset directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["check", "--engines", "pandas", "--data", str(tmp_path / "empty")]) == 2
    assert "no trip files" in capsys.readouterr().err


@pytest.mark.duckdb
def test_json_matrix_with_an_engine_not_implemented_yet(datasets, capsys):
    code = main(
        ["check", "--engines", "pandas,duckdb,engine", "--data", str(datasets["edge"]), "--json"]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["valid"] is True
    assert result["dataset"]["rows"] == 2_000 and result["cores"] >= 1
    for engine in ("pandas", "duckdb"):
        assert {c["status"] for c in result["results"][engine].values()} == {"valid"}
        assert result["engines"][engine]["version"].startswith(engine)
    if not solutions.is_implemented("engine"):
        assert result["engines"]["engine"]["status"] == "not implemented yet"
        statuses = {c["status"] for c in result["results"]["engine"].values()}
        assert statuses == {"not implemented yet"}


def test_wrong_answers_and_errors_are_cells_with_details(datasets, fake_engine, capsys):
    report = check(datasets["edge"], ["pandas", "fake"], cores=1, timeout=120)
    cells = report.cells["fake"]
    assert cells["q01"].status == "wrong"
    assert cells["q01"].detail.startswith("row 0, column count: expected ")
    assert (cells["q02"].status, cells["q02"].detail) == ("error", "ValueError: planted failure")
    assert cells["q03"].status == "wrong" and "passenger_count: expected integers" in (
        cells["q03"].detail
    )
    assert cells["q05"].status == "not implemented yet"
    assert {cells[q].status for q in ("q04", "q06", "q12")} == {"valid"}
    assert not report.valid
    text = report.format()
    assert "[1] fake q01: wrong: row 0, column count" in text
    assert "[2] fake q02: error: ValueError: planted failure" in text
    assert "SOME ANSWERS ARE WRONG OR FAILED" in text
    assert json.loads(json.dumps(report.to_dict()))["results"]["fake"]["q05"]["status"] == (
        "not implemented yet"
    )


def test_a_hung_engine_is_killed_at_the_timeout(datasets, fake_engine):
    fake_engine.setenv("FAKE_HANG", "1")
    report = check(datasets["edge"], ["fake"], ["q01", "q04", "q06"], cores=1, timeout=6)
    assert report.runs["fake"].status == "timeout"
    assert report.cells["fake"]["q01"].status == "wrong"  # answered before the hang
    assert report.cells["fake"]["q04"].status == "error"
    assert report.cells["fake"]["q06"].detail == "not run: timed out after 6 s"
    leftovers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if "taskbench.comparisons.check" in " ".join(p.info["cmdline"] or [])
        and "fake" in p.info["cmdline"]
    ]
    assert not leftovers


def test_a_crashed_engine_fails_every_query(datasets, fake_engine):
    fake_engine.setenv("FAKE_CRASH", "1")
    report = check(datasets["edge"], ["fake"], ["q01", "q02"], cores=1, timeout=60)
    assert report.runs["fake"].status == "failed"
    assert report.runs["fake"].message == "exit status 3"
    assert [c.status for c in report.cells["fake"].values()] == ["error", "error"]


def test_joins_are_skipped_without_a_zones_table(datasets, tmp_path):
    out = tmp_path / "nozones"
    (out / "trips").mkdir(parents=True)
    rows = {}
    for path in trip_files(datasets["edge"]):
        shutil.copy(path, out / "trips" / path.name)
        rows[f"trips/{path.name}"] = 1_000
    write_dataset(
        out,
        kind="imported",
        zones=None,
        zones_source=None,
        file_rows=rows,
        seed=None,
        created_by="test",
    )
    report = check(out, ["pandas"], ["q01", "q09", "q10"], cores=1, timeout=120)
    statuses = {q: c.status for q, c in report.cells["pandas"].items()}
    assert statuses == {"q01": "valid", "q09": "skipped", "q10": "skipped"}
    assert report.valid
