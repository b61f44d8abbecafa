"""``taskbench check``: every engine's answers against the pandas reference.

``taskbench/cli.py`` calls :func:`add_parser` to register ``check``; it sets ``func``, and
``args.func(args)`` returns the exit code: 0 when no answer is wrong or failed (engines not
implemented yet and queries skipped for want of a zones table do not count), 1 when some
are, 2 for a bad invocation (unknown engine or query, no dataset at ``--data``).
``python -m taskbench.comparisons.cli check …`` runs the same command without the entry point.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from taskbench.comparisons.argtypes import ArgumentParser, positive_int, positive_number
from taskbench.comparisons.check import DEFAULT_TIMEOUT, check, resolve_engines, resolve_queries
from taskbench.comparisons.data import DataError
from taskbench.comparisons.queries import QUERY_IDS
from taskbench.comparisons.solutions import ENGINES


def add_parser(subparsers: Any) -> None:
    """Register ``check`` under ``subparsers`` (argparse)."""
    parser = subparsers.add_parser(
        "check",
        help="answers of every engine against pandas",
        description="Run every query on every engine once, each engine in its own process, "
        "and check the answers against the pandas reference.",
    )
    add_arguments(parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``check``."""
    parser.add_argument(
        "--engines",
        default="all",
        help=f"all, or a comma list of: {', '.join(ENGINES)} (default: all)",
    )
    parser.add_argument("--data", required=True, help="dataset directory (taskbench data …)")
    parser.add_argument(
        "--queries", default="all", help=f"all, or a comma list of {QUERY_IDS[0]}…{QUERY_IDS[-1]}"
    )
    parser.add_argument("--cores", type=positive_int, help="cores per engine (default: all)")
    parser.add_argument(
        "--timeout",
        type=positive_number,
        default=DEFAULT_TIMEOUT,
        help=f"seconds per engine process (default: {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--spark-master", help="a Spark master URL instead of local[cores]")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    """The ``check`` command."""
    try:
        engines = resolve_engines(args.engines)
        queries = resolve_queries(args.queries)
    except KeyError as exc:
        print(f"taskbench check: error: {exc.args[0]}", file=sys.stderr)
        return 2

    def progress(line: str) -> None:  # stderr: --json output on stdout stays one object
        print(f"[check] {line}", file=sys.stderr, flush=True)

    try:
        report = check(
            args.data,
            engines,
            queries,
            cores=args.cores,
            timeout=args.timeout,
            spark_master=args.spark_master,
            progress=progress,
        )
    except DataError as exc:
        print(f"taskbench check: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict()) if args.json else report.format())
    return 0 if report.valid else 1


def main(argv: list[str] | None = None) -> int:
    """Run ``check`` from ``argv``; return the exit code."""
    parser = ArgumentParser(prog="python -m taskbench.comparisons.cli")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
