"""``taskbench bench scheduler|balance|shuffle``: the engine beside dask and Spark, in one run.

Every bench records `record.BenchResult`s (one type, with the run's metadata), prints them
with the one table formatter, and prints them as one JSON object with ``--json``. The root
command (``taskbench.cli``) calls :func:`add_parser`.
"""

from __future__ import annotations

from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register ``bench`` and its three suites under ``subparsers`` (argparse)."""
    from taskbench.comparisons.bench import balance, scheduler, shuffle

    bench = subparsers.add_parser("bench", help="side-by-side measurements in one run")
    bsub = bench.add_subparsers(dest="suite", required=True)
    scheduler.add_parser(bsub)
    balance.add_parser(bsub)
    shuffle.add_parser(bsub)
