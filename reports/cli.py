"""``taskbench report RUN_DIR... [--out DIR]``: the published report of comparison runs.

A bad input (a missing run folder, one without run.json, a malformed records line) or an
output that cannot be written is one line on stderr and exit 2; nothing is written then.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

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
    print(f"report of {site.report.run.run_id}: {site.index}")
    print(f"  {site.summary}, {site.csv}, {len(site.figures)} figures in {site.out / 'figures'}")
    if site.asv.note:
        print(f"  {site.asv.note}")
    return 0
