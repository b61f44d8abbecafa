"""The published page in a real browser: Debian's headless chromium, driven by Playwright.

One browser launch for the module; the page is loaded once and every test reads it.
``reports/install-browser.sh`` installs chromium (the Makefile calls it first).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from .conftest import ENGINES, MODES, QUERIES, TIMEOUT, WRONG

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@dataclass
class Loaded:
    page: object
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not shutil.which(CHROMIUM):
        pytest.skip("no chromium on PATH: run reports/install-browser.sh")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def loaded(browser, site) -> Iterator[Loaded]:
    page = browser.new_page()
    result = Loaded(page)
    page.on("console", lambda m: m.type == "error" and result.errors.append(m.text))
    page.on("pageerror", lambda e: result.errors.append(str(e)))
    page.on("requestfailed", lambda r: result.errors.append(f"failed: {r.url}"))
    page.on("request", lambda r: result.requests.append(r.url))
    page.goto(site.index.as_uri(), wait_until="load")
    yield result
    page.close()


def test_the_page_loads_with_no_console_error_and_fetches_only_local_files(loaded) -> None:
    assert loaded.page.title() == "taskbench report: 2026-12-04-b"
    assert loaded.errors == []
    assert loaded.requests and all(u.startswith(("file://", "data:")) for u in loaded.requests)


def test_every_figure_is_drawn(loaded, site) -> None:
    images = loaded.page.eval_on_selector_all(
        "img", "imgs => imgs.map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])"
    )
    assert sorted(src for src, _, _ in images) == sorted(site.figures.values())
    assert all(complete and width > 0 for _, complete, width in images), images


def test_one_cell_per_engine_and_query_in_each_mode(loaded) -> None:
    for mode in MODES:
        cells = loaded.page.eval_on_selector_all(
            f'table.headline[data-mode="{mode}"] td[data-engine]',
            "tds => tds.map(t => [t.dataset.engine, t.dataset.query, t.dataset.mode])",
        )
        assert len(cells) == len(ENGINES) * len(QUERIES)
        assert {(e, q) for e, q, _ in cells} == {(e, q) for e in ENGINES for q, _ in QUERIES}
        assert {m for _, _, m in cells} == {mode}
    total = loaded.page.locator("td[data-engine][data-query][data-mode]").count()
    assert total == len(MODES) * len(ENGINES) * len(QUERIES)


def cell(loaded, key: tuple[str, str, str]):
    engine, mode, query = key
    selector = f'td[data-engine="{engine}"][data-query="{query}"][data-mode="{mode}"]'
    locator = loaded.page.locator(selector)
    assert locator.count() == 1
    return locator


@pytest.mark.parametrize("key", [WRONG, TIMEOUT], ids=["wrong", "timeout"])
def test_a_failed_cell_shows_its_status_in_red_and_no_number(loaded, key) -> None:
    td = cell(loaded, key)
    status = "wrong" if key == WRONG else "timeout"
    assert td.get_attribute("data-status") == status
    shown = td.inner_text().strip()
    assert shown.lower() == status and not re.search(r"\d", shown)
    red, green, blue = map(
        int, re.findall(r"\d+", td.evaluate("t => getComputedStyle(t).color"))[:3]
    )
    assert red > 150 and green < 80 and blue < 80


def test_a_valid_cell_shows_its_hot_median_and_cold_run(loaded, site) -> None:
    from taskbench.reports import text

    t = next(t for t in site.report.tables if t.mode == "memory")
    expected = t.cell("duckdb", "q01")
    shown = cell(loaded, ("duckdb", "memory", "q01")).inner_text()
    assert shown.startswith(text.seconds(expected.median))
    assert f"cold {text.seconds(expected.cold)}" in shown


def test_the_notes_are_shown_before_the_tables(loaded) -> None:
    notes = loaded.page.locator("#notes")
    assert notes.is_visible() and "spark skipped: no Java 17+" in notes.inner_text()
    first_table = loaded.page.locator("table.headline").first.bounding_box()
    assert notes.bounding_box()["y"] < first_table["y"]


def test_the_asv_link_resolves(browser, loaded) -> None:
    href = loaded.page.locator("#asv-link").evaluate("a => a.href")
    assert href.startswith("file://") and href.endswith("/asv/index.html")
    page = browser.new_page()
    try:
        response = page.goto(href, wait_until="load")
        assert response is not None and response.ok
        assert page.title() == "asv history"
    finally:
        page.close()
