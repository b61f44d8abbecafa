"""The exporters over one model: results.csv, summary.md and the page's HTML, read as files."""

from __future__ import annotations

import csv
import html
import re
from html.parser import HTMLParser

from taskbench.reports import text
from taskbench.reports.export_csv import COLUMNS
from taskbench.reports.site import Site

from .conftest import ENGINES, MODES, QUERIES, SUPERSEDED_SECONDS, WRONG


class Cells(HTMLParser):
    """The text of every headline cell: {(mode, engine, query): (status, text)}."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str, str], tuple[str, str]] = {}
        self._open: tuple[tuple[str, str, str], str] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "td" and "data-engine" in a:
            self._open = ((a["data-mode"], a["data-engine"], a["data-query"]), a["data-status"])
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._open:
            key, status = self._open
            assert key not in self.cells, f"two cells for {key}"
            self.cells[key] = (status, " ".join("".join(self._text).split()))
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open:
            self._text.append(data)


def page_cells(site: Site) -> dict[tuple[str, str, str], tuple[str, str]]:
    parser = Cells()
    parser.feed(site.index.read_text())
    return parser.cells


def test_every_output_is_written(site: Site) -> None:
    for path in (site.index, site.summary, site.csv):
        assert path.is_file() and path.stat().st_size > 0
    for src in site.figures.values():
        assert (site.out / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    names = set(site.figures)
    assert {f"times:{m}" for m in MODES} | {f"speedup:{m}" for m in MODES} <= names
    assert {"lag", "balance", "shuffle", "stream:scheduler-stream.jsonl"} <= names


def test_csv_has_one_row_per_query_record_and_no_number_for_invalid_ones(site: Site) -> None:
    with open(site.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS
    expected = sum(len(run.query_records()) for run in site.report.runs)
    assert len(rows) == expected
    assert {r["run_id"] for r in rows} == {run.run_id for run in site.report.runs}
    for r in rows:
        assert (r["seconds"] != "") == (r["status"] == "valid"), r
        assert r["status"] == "valid" or r["detail"]
    wrong = [r for r in rows if (r["engine"], r["mode"], r["query"]) == WRONG]
    assert wrong and all(r["status"] == "wrong" and r["seconds"] == "" for r in wrong)
    superseded = [r for r in rows if r["superseded"] == "True"]
    assert len(superseded) == 2 and all(
        float(r["seconds"]) == SUPERSEDED_SECONDS for r in superseded
    )
    assert {r["cold"] for r in rows if r["run"] == "1"} == {"True"}


def markdown_tables(summary: str) -> dict[str, list[list[str]]]:
    """Headline tables of summary.md by mode: the rows under '### MODE mode' headings."""
    tables: dict[str, list[list[str]]] = {}
    for mode in MODES:
        block = summary.split(f"### {mode} mode", 1)[1]
        lines = [ln for ln in block.strip().splitlines()]
        rows = []
        for line in lines:
            if not line.startswith("|"):
                break
            rows.append([c.strip() for c in line.strip("|").split(" | ")])
        tables[mode] = rows
    return tables


def test_markdown_headline_is_the_page_headline(site: Site) -> None:
    summary = site.summary.read_text()
    cells = page_cells(site)
    for mode, rows in markdown_tables(summary).items():
        header, _, *body, score = rows
        assert header[1:] == [e + (" (1 thread)" if e == "pandas" else "") for e in ENGINES]
        assert [r[0].split()[0] for r in body] == [q for q, _ in QUERIES]
        assert score[0] == f"**score ({mode})**"
        t = next(t for t in site.report.tables if t.mode == mode)
        for row, (query, _) in zip(body, QUERIES, strict=True):
            for engine, md in zip(ENGINES, row[1:], strict=True):
                status, html = cells[mode, engine, query]
                cell = t.cell(engine, query)
                assert status == cell.status
                if cell.valid:
                    median = text.seconds(cell.median)
                    assert md.startswith(median) and html.startswith(median)
                    assert f"cold {text.seconds(cell.cold)}" in md and "cold" in html
                else:
                    assert md == f"**{cell.status.upper()}**" and html == cell.status
                    assert not re.search(r"\d", md + html)
        assert score[1:] == [text.score(t.scores[e]) for e in ENGINES]


def test_markdown_has_notes_speedups_story_and_comparison(site: Site) -> None:
    summary = site.summary.read_text()
    assert "> - spark skipped: no Java 17+" in summary
    assert "single-threaded by nature: pandas" in summary
    assert "duckdb is" in summary and "faster than pandas" in summary
    assert "## 2026-12-04-b against 2026-12-01-a" in summary
    assert "2026-12-04-b is 1.2" in summary  # taskbench got 25 % faster
    assert "sampled sizeof is" in summary and "lag p99" in summary
    assert "[asv history](asv/index.html)" in summary
    assert "- duckdb q02: wrong: checksum 1234 != reference 5678" in summary
    assert "- dask q03: timeout: no answer in 300 s" in summary


def test_the_page_shows_setup_notes_and_each_engine_setting_with_its_reason(site: Site) -> None:
    page = site.index.read_text()
    run = site.report.run
    assert all(c in page for c in run.commands) and run.commands[1].endswith("--resume")
    assert [c.split()[2] for c in run.bench_commands] == ["balance", "scheduler", "shuffle"]
    assert all(html.escape(c) in page for c in run.bench_commands)
    assert "sha256:abc123" in page and "Synthetic CPU" in page
    assert "spark.driver.memory" in page and "1g cannot cache 10M rows" in page
    assert 'class="notes"' in page and "spark skipped: no Java 17+" in page
    assert "pandas is single-threaded by nature" in page
    assert 'href="asv/index.html"' in page
    assert 'id="compare"' in page
    assert "<script" not in page  # a static page: nothing to run, nothing fetched
    assert "<strong>duckdb</strong> q02: wrong: checksum 1234 != reference 5678" in page


def test_a_single_run_skips_absent_inputs_with_a_line_and_has_no_comparison(single_site) -> None:
    page = (single_site.out / "index.html").read_text()
    assert 'id="compare"' not in page
    for command in (
        "taskbench bench scheduler",
        "taskbench bench balance",
        "taskbench bench shuffle",
    ):
        assert command in page
    assert "asv/index.html" in page and 'id="asv-link"' not in page
    figures = {p.name for p in (single_site.out / "figures").iterdir()}
    assert figures == {f"{k}-{m}.png" for k in ("times", "speedup") for m in MODES}
    parser = Cells()
    parser.feed(page)
    assert len(parser.cells) == len(MODES) * len(ENGINES) * len(QUERIES)
    engine, mode, query = WRONG
    assert parser.cells[mode, engine, query] == ("wrong", "wrong")
