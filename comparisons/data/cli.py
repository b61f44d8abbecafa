"""``taskbench data generate|import``: the command line of the data layer.

``taskbench/cli.py`` calls :func:`add_parser` to register ``data``; every subcommand sets
``func``, and ``args.func(args)`` returns the exit code (0 ok, 1 data error, 130 after Ctrl-C,
143 after SIGTERM; the previous dataset at ``--out`` is then as it was). ``--json`` prints
one machine-readable object on stdout; the progress bar goes to stderr, only on a terminal.
``python -m taskbench.comparisons.data.cli generate …`` runs the same commands without the
entry point.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from taskbench.comparisons.argtypes import (
    existing_file,
    existing_path,
    output_folder,
    parse_rows,
    positive_int,
)
from taskbench.comparisons.data.generate import generate, parse_month
from taskbench.comparisons.data.importer import import_files
from taskbench.comparisons.data.schema import DataError


def _month(text: str) -> str:
    try:
        year, month = parse_month(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return f"{year:04d}-{month:02d}"


def add_parser(subparsers: Any) -> None:
    """Register ``data generate`` and ``data import`` under ``subparsers`` (argparse)."""
    data = subparsers.add_parser(
        "data",
        help="NYC-taxi data in the canonical layout",
        description="Generate or import NYC-taxi data in the canonical layout.",
    )
    add_commands(data.add_subparsers(dest="data_command", required=True, metavar="COMMAND"))


def add_commands(subparsers: Any) -> None:
    """Register the ``generate`` and ``import`` subcommands themselves."""
    gen = subparsers.add_parser(
        "generate",
        help="write a synthetic, deterministic NYC-taxi dataset",
        description="Write a synthetic NYC yellow-taxi dataset (trips/, zones, manifest).",
    )
    gen.add_argument("--rows", type=parse_rows, default=1_000_000, help="e.g. 1M, 10M, 1e6")
    gen.add_argument("--start", type=_month, default="2015-01", help="first month, YYYY-MM")
    gen.add_argument("--months", type=positive_int, default=1, help="number of months")
    gen.add_argument("--seed", type=int, default=0, help="seed of the generator")
    gen.add_argument("--out", type=output_folder, required=True, help="output directory")
    gen.add_argument("--zones", type=existing_file, help="a real taxi_zone_lookup.csv to use")
    gen.add_argument(
        "--workers", type=positive_int, help="generator threads (default: cores, at most 4)"
    )
    _add_common(gen)
    gen.set_defaults(func=run_generate)

    imp = subparsers.add_parser(
        "import",
        help="normalise real TLC files into the canonical layout",
        description="Import TLC yellow-taxi parquet/CSV files (or directories of them).",
    )
    imp.add_argument(
        "paths", nargs="+", type=existing_path, metavar="PATH", help="files or folders of them"
    )
    imp.add_argument("--out", type=output_folder, required=True, help="output directory")
    imp.add_argument("--zones", type=existing_file, help="taxi_zone_lookup.csv to store as zones")
    imp.add_argument("--strict", action="store_true", help="any unparseable row is an error")
    _add_common(imp)
    imp.set_defaults(func=run_import)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _progress(args: argparse.Namespace) -> bool:
    return not args.quiet and not args.json and sys.stderr.isatty()


@contextlib.contextmanager
def _terminate_interrupts(received: list[int]) -> Iterator[None]:
    """In the block, SIGTERM interrupts like Ctrl-C (and is noted in ``received``): a write
    stopped either way leaves the previous dataset as it was."""

    def interrupt(signum: int, frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may handle signals
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _interrupted(command: str, out: object, received: list[int]) -> int:
    """One line, no traceback; the exit status of a process stopped by the signal."""
    print(f"taskbench data {command}: interrupted; {out} left as it was", file=sys.stderr)
    return 128 + (received[-1] if received else signal.SIGINT)


def run_generate(args: argparse.Namespace) -> int:
    """The ``data generate`` command."""
    t0 = time.perf_counter()
    signals: list[int] = []
    try:
        with _terminate_interrupts(signals):
            manifest = generate(
                args.out,
                rows=args.rows,
                start=args.start,
                months=args.months,
                seed=args.seed,
                zones=args.zones,
                overwrite=args.overwrite,
                progress=_progress(args),
                workers=args.workers,
            )
    except KeyboardInterrupt:
        return _interrupted("generate", args.out, signals)
    except (DataError, ValueError) as exc:
        print(f"taskbench data generate: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"taskbench data generate: error: {exc}; {args.out} left as it was", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - t0
    rate = manifest.rows / seconds if seconds > 0 else 0.0
    if args.json:
        result = {"command": "data generate", "seconds": round(seconds, 3)}
        result |= {"rows_per_s": round(rate), "out": str(args.out), **manifest.to_dict()}
        print(json.dumps(result))
    else:
        print(
            f"wrote {manifest.rows:,} rows in {len(manifest.files)} monthly files to {args.out} "
            f"in {seconds:.2f} s ({rate / 1e6:.2f}M rows/s)\nfingerprint {manifest.fingerprint}"
        )
    return 0


def run_import(args: argparse.Namespace) -> int:
    """The ``data import`` command."""
    signals: list[int] = []
    try:
        with _terminate_interrupts(signals):
            report = import_files(
                args.paths,
                args.out,
                zones=args.zones,
                strict=args.strict,
                overwrite=args.overwrite,
                progress=_progress(args),
            )
    except KeyboardInterrupt:
        return _interrupted("import", args.out, signals)
    except DataError as exc:
        print(f"taskbench data import: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"taskbench data import: error: {exc}; {args.out} left as it was", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"command": "data import", "out": str(args.out), **report.to_dict()}))
    else:
        for file_report in report.files:
            print(file_report.summary())
        manifest = report.manifest
        print(
            f"wrote {manifest.rows:,} rows in {len(manifest.files)} monthly files to {args.out}; "
            f"{report.rows_rejected:,} rows rejected\nfingerprint {manifest.fingerprint}"
        )
        if manifest.zones["name"] is None:
            print("no zones table written (pass --zones taxi_zone_lookup.csv)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``generate`` or ``import`` from ``argv``; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m taskbench.comparisons.data.cli",
        description="Generate or import NYC-taxi data in the canonical layout.",
    )
    add_commands(parser.add_subparsers(dest="data_command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
