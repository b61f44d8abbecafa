"""index.html: the Jinja2 templates in ``templates/`` over the report model; no HTML in code."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import jinja2
from taskbench.reports import text
from taskbench.reports.model import AsvLink, Report

TEMPLATES = Path(__file__).resolve().parent / "templates"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters.update(
        seconds=text.seconds,
        seconds_range=text.seconds_range,
        spread=text.spread,
        micros=text.micros,
        times=text.times,
        ratio=text.ratio,
        interval=text.interval,
        score=text.score,
        fraction=text.fraction,
        count=text.count,
    )
    return env


def render_html(report: Report, figures: Mapping[str, str], asv: AsvLink) -> str:
    return environment().get_template("index.html").render(report=report, figures=figures, asv=asv)


def write_html(report: Report, figures: Mapping[str, str], asv: AsvLink, path: Path) -> None:
    """Write the page of ``report`` to ``path``; ``figures`` maps figure names to their src."""
    path.write_text(render_html(report, figures, asv), encoding="utf-8")
