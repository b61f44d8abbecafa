"""The model: which records feed each cell, score and ratio; the numbers are stats' own."""

from __future__ import annotations

from pathlib import Path

import pytest
from taskbench.comparisons import stats
from taskbench.reports.loader import load_run
from taskbench.reports.model import NO_RECORD, Report, analyse

from .conftest import ENGINES, MODES, QUERIES, RESUMED, SUPERSEDED_SECONDS, TIMEOUT, WRONG


@pytest.fixture(scope="module")
def report(runs: tuple[Path, Path]) -> Report:
    return analyse([load_run(runs[0]), load_run(runs[1])])


@pytest.fixture(scope="module")
def single(runs: tuple[Path, Path]) -> Report:
    return analyse([load_run(runs[0])])


def table(report: Report, mode: str):
    return next(t for t in report.tables if t.mode == mode)


def test_one_table_per_mode_with_one_cell_per_engine_and_query(report: Report) -> None:
    assert [t.mode for t in report.tables] == MODES
    for t in report.tables:
        assert set(t.cells) == {(e, q) for e in ENGINES for q, _ in QUERIES}
        assert all(c.mode == t.mode for c in t.cells.values())


def test_a_wrong_answer_and_a_timeout_carry_no_number(report: Report) -> None:
    engine, mode, query = WRONG
    wrong = table(report, mode).cell(engine, query)
    assert wrong.status == "wrong" and wrong.failed
    assert wrong.hot == () and wrong.cold is None and wrong.summary is None
    assert "checksum" in wrong.detail
    engine, mode, query = TIMEOUT
    timeout = table(report, mode).cell(engine, query)
    assert timeout.status == "timeout" and timeout.summary is None and timeout.cold is None


def test_skipped_engine_is_not_failed_and_not_scored(report: Report) -> None:
    for t in report.tables:
        assert all(t.cell("spark", q).status == "skipped" for q, _ in QUERIES)
        assert not t.cell("spark", "q01").failed
        assert t.scores["spark"] is None


def test_hot_is_the_valid_non_cold_runs_and_cold_is_run_one(report: Report) -> None:
    run = report.run
    cell = table(report, "scan").cell("pandas", "q02")
    records = [
        r
        for r in run.query_records()
        if (r.engine, r.params["mode"], r.params["query"]) == ("pandas", "scan", "q02")
    ]
    assert cell.cold == next(r.values[0] for r in records if r.params["run"] == 1)
    assert sorted(cell.hot) == sorted(r.values[0] for r in records if not r.params["cold"])
    assert cell.summary == stats.summarize(cell.hot)


def test_a_resumed_run_keeps_the_later_record(report: Report) -> None:
    engine, mode, query, _ = RESUMED
    cell = table(report, mode).cell(engine, query)
    assert len(cell.hot) == 2 and SUPERSEDED_SECONDS not in cell.hot
    assert report.superseded == 1


def test_scores_are_stats_scores_over_hot_medians(report: Report) -> None:
    for t in report.tables:
        times: dict[str, dict[str, float | None]] = {e: {} for e in ENGINES}
        for (engine, query), cell in t.cells.items():
            if cell.valid:
                times[engine][query] = cell.median
            elif cell.failed:
                times[engine][query] = None
        assert t.scores == stats.scores(times)
    memory = table(report, "memory").scores
    assert memory["duckdb"] is not None and memory["duckdb"] > 1.0  # its wrong answer costs


def test_speedups_over_pandas_say_faster_only_when_the_interval_excludes_one(report) -> None:
    for t in report.tables:
        assert {c.engine for c in t.speedups} == set(ENGINES) - {"pandas"}
        for c in t.speedups:
            cell, ref = t.cell(c.engine, c.query), t.cell("pandas", c.query)
            if not (cell.valid and ref.valid):
                assert c.ratio is None and cell.status in c.words
                continue
            assert c.ratio == stats.speedup(cell.hot, ref.hot)
            assert c.words == stats.verdict(c.ratio, c.engine, "pandas")
            assert ("faster" in c.words) == (c.ratio.clear and c.ratio.value >= 1)
    duckdb = next(c for c in table(report, "scan").speedups if c.engine == "duckdb")
    assert duckdb.kind == "faster"


def test_comparing_runs_finds_the_faster_engine(report: Report) -> None:
    (comparison,) = report.comparisons
    assert comparison.base.run_id == "2026-12-01-a" and comparison.new.run_id == "2026-12-04-b"
    assert set(comparison.changes) == set(MODES)
    for mode, changes in comparison.changes.items():
        assert len(changes) == len(ENGINES) * len(QUERIES)
        for c in changes:
            if c.engine == "engine":
                assert c.kind == "faster" and c.ratio.value == pytest.approx(1.25, rel=0.1)
                assert c.words.startswith("2026-12-04-b is")
            if (c.engine, mode, c.query) in (WRONG, TIMEOUT) or c.engine == "spark":
                assert c.ratio is None


def test_single_run_has_no_comparison_and_says_what_makes_each_bench_input(single) -> None:
    assert single.comparisons == []
    missing = single.story.missing
    assert set(missing) == {"stream", "lag", "balance", "shuffle"}
    assert "taskbench bench scheduler" in missing["stream"]
    assert "--json-out RUN/bench/scheduler.json" in missing["lag"]
    assert "taskbench bench balance" in missing["balance"]
    assert "taskbench bench shuffle" in missing["shuffle"]


def test_the_engine_story_from_bench_documents(report: Report) -> None:
    story = report.story
    assert story.missing == {}
    # the balance streams are pictured with balance, not as task streams; the engine's first
    assert [s.path.name for s in story.streams] == [
        "scheduler-stream.jsonl",
        "scheduler-stream-dask.jsonl",
    ]
    assert [s.engine for s in story.lag] == ["taskbench", "dask-distributed"]
    scheduler = report.run.benches["scheduler"]
    p99 = next(r for r in scheduler.results if r.name == "lag_p99_us" and r.engine == "taskbench")
    assert story.lag[0].p99 == p99.value and len(story.lag[0].values) == 2000
    assert [title for title, _ in story.balance_panels] == [
        "random placement",
        "locality + stealing",
    ]
    ratios = {(b.policy, b.engine): b.makespan_ratio for b in story.balance_rows}
    assert ratios == {
        ("random", "taskbench"): 1.62,
        ("locality", "taskbench"): 1.08,
        ("dask", "dask"): 1.21,
    }
    assert story.sizeofs == ["deep", "sampled"]
    assert [(r.engine, r.method) for r in story.shuffle_rows] == [
        ("taskbench", "tasks"),
        ("taskbench", "p2p"),
    ]
    for row in story.shuffle_rows:
        deep, sampled = row.by_sizeof["deep"], row.by_sizeof["sampled"]
        assert deep.overhead > sampled.overhead and deep.low < deep.overhead < deep.high
        assert row.sampled_vs_deep.kind == "faster"
        assert row.sampled_vs_deep.ratio == stats.speedup(sampled.values, deep.values)
    assert [(r.engine, r.method) for r in story.shuffle_peers] == [("dask", "tasks")]
    assert story.shuffle_baseline == stats.summarize([0.42, 0.40, 0.45])


def test_a_cell_with_no_record_says_so(runs: tuple[Path, Path]) -> None:
    run = load_run(runs[0])
    run.engines.append("polars")
    report = analyse([run])
    assert all(t.cell("polars", "q01").status == NO_RECORD for t in report.tables)
    assert all(t.scores["polars"] is None for t in report.tables)


def test_the_engine_is_set_against_each_peer_but_the_reference(report: Report) -> None:
    """Per mode and query, engine against duckdb, dask and spark; a peer's failure, no ratio."""
    for table in report.tables:
        assert {c.against for c in table.versus} == {"duckdb", "dask", "spark"}
        assert len(table.versus) == 3 * len(QUERIES)
        by = {(c.against, c.query): c for c in table.versus}
        assert by["dask", "q01"].kind == "faster"  # 0.40 s against 0.80 s, every run
        assert by["duckdb", "q01"].kind == "slower"  # 0.40 s against 0.12 s
        assert by["spark", "q01"].ratio is None and by["spark", "q01"].words == "spark: skipped"
        tally = table.versus_tally()
        assert sum(tally["spark"].values()) == len(QUERIES) and tally["spark"]["none"] == 3
    scan = next(t for t in report.tables if t.mode == "scan")
    assert {(c.against, c.query) for c in scan.versus if c.ratio is None} >= {("dask", "q03")}
