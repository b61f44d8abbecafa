"""``taskbench report RUN_DIR... [--out DIR]``: the published report of comparison runs.

A bad input (a missing run folder, one without run.json, a malformed records line) or an
output that cannot be written is one line on stderr and exit 2; nothing is written then.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from taskbench.reports import text
from taskbench.reports.model import ModeTable

DEFAULT_OUT = "results/site"


def add_parser(subparsers: Any) -> None:
    """Register ``report`` under ``subparsers`` (argparse)."""
    parser = subparsers.add_parser(
        "report",
        help="published report of comparison runs (HTML, Markdown, CSV, figures)",
        description="Read run folders of `taskbench compare` (and their bench/ documents) and "
        "write index.html, summary.md, results.csv and figures/ into --out. With two or more "
        "runs, the last is reported in full and each later run is compared with the first.",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders, oldest first")
    parser.add_argument("--out", default=DEFAULT_OUT, help="site folder (created if missing)")
    parser.add_argument(
        "--no-asv",
        action="store_true",
        help="do not publish the asv history (an existing DIR/asv/index.html is still linked)",
    )
    parser.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    """The ``report`` command."""
    from taskbench.reports.loader import ReportError
    from taskbench.reports.site import build

    try:
        site = build(args.runs, args.out, publish=not args.no_asv)
    except ReportError as e:
        print(f"taskbench report: error: {e}", file=sys.stderr)
        return 2
    run = site.report.run
    for table in site.report.tables:
        print("\n".join(headline(table, run.single_threaded)), end="\n\n")
    print(f"report of {run.run_id}: {site.index.resolve()}")
    print(f"  {site.summary}, {site.csv}, {len(site.figures)} figures in {site.out / 'figures'}")
    for note in [*run.notes, site.asv.note]:
        if note:
            print(f"  {note}")
    return 0


def headline(table: ModeTable, single_threaded: Sequence[str]) -> list[str]:
    """The headline for a terminal: hot medians per query and engine, a status in capitals
    where there is no time, and the score row."""
    header = [f"hot median, {table.mode} mode"] + [
        e + ("*" if e in single_threaded else "") for e in table.engines
    ]
    rows = [
        [q.id] + [text.seconds(c.median) if c.valid else c.status.upper() for c in cells]
        for q, cells in table.rows()
    ]
    rows.append(["score"] + [text.score(table.scores.get(e)) for e in table.engines])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join([row[0].ljust(widths[0])] + [row[i].rjust(widths[i]) for i in range(1, len(row))])
        for row in [header, *rows]
    ]
    if single_threaded:
        lines.append("* single-threaded by nature")
    return lines
