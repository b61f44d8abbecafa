"""Build the site: load the runs, analyse them, then write every format and figure into DIR.

Nothing is written until every input has been read, so a bad input leaves DIR untouched.
``reports.asv_history.publish(DIR/asv)`` writes the asv site; the page links
``asv/index.html`` whenever that file exists.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from taskbench.reports import asv_history, export_csv, export_html, export_markdown, figures
from taskbench.reports.loader import ReportError, load_run
from taskbench.reports.model import AsvLink, Report, analyse

ASV_INDEX = Path("asv") / "index.html"


@dataclass(frozen=True)
class Site:
    """What was written: the folder, its pages, and the report they show."""

    out: Path
    index: Path
    summary: Path
    csv: Path
    figures: dict[str, str]
    asv: AsvLink
    report: Report


def check_output(out: Path) -> None:
    """A ReportError unless ``out`` is (or can be made) a writable folder."""
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {str(out)!r} is a file, not a folder")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ReportError(f"--out {str(out)!r}: {str(parent)!r} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ReportError(f"--out {str(out)!r}: {str(parent)!r} is not writable")


def publish_asv(
    out: Path, publish: bool, publisher: Callable[[Path], object] = asv_history.publish
) -> AsvLink:
    """Publish the asv history into ``out/asv`` (when asked) and link it; a failure is a note."""
    note = ""
    if publish:
        try:
            publisher(out / ASV_INDEX.parent)
        except Exception as e:  # the history's failure must not sink the report
            first = (str(e).strip().splitlines() or [""])[0]
            note = f"asv history not published: {type(e).__name__}: {first}"
    if (out / ASV_INDEX).is_file():
        return AsvLink(ASV_INDEX.as_posix(), note)
    missing = f"No asv history: no {out / ASV_INDEX}."
    return AsvLink(None, f"{note} {missing}".strip())


def build(run_dirs: Sequence[str | Path], out: str | Path, *, publish: bool = True) -> Site:
    """Read ``run_dirs`` (the last is reported in full; later ones compared with the first)
    and write index.html, summary.md, results.csv and figures/ into ``out``."""
    out = Path(out)
    check_output(out)
    runs = [load_run(p) for p in run_dirs]
    report = analyse(runs)
    try:
        out.mkdir(parents=True, exist_ok=True)
        drawn = figures.draw_all(report, out / "figures")
        asv = publish_asv(out, publish)
        index, summary, csv = out / "index.html", out / "summary.md", out / "results.csv"
        export_html.write_html(report, drawn, asv, index)
        export_markdown.write_markdown(report, drawn, asv, summary)
        export_csv.write_csv(runs, csv)
    except OSError as e:
        where = e.filename or out
        raise ReportError(f"cannot write {where}: {e.strerror or e}") from None
    return Site(out, index, summary, csv, drawn, asv, report)
