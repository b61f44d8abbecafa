"""The root ``taskbench`` command: it wires each layer's subcommands and does nothing else."""

from __future__ import annotations

import argparse
import logging
import sys

from taskbench import __version__


def build_parser() -> argparse.ArgumentParser:
    from taskbench.comparisons import bench
    from taskbench.comparisons import cli as check_cli
    from taskbench.comparisons.data import cli as data_cli
    from taskbench.engine import cli as engine_cli
    from taskbench.engine import plot

    parser = argparse.ArgumentParser(
        prog="taskbench", description="Measure task engines honestly: the engine, beside its peers."
    )
    parser.add_argument("--version", action="version", version=f"taskbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    engine_cli.add_parser(sub)  # engine scheduler|worker
    bench.add_parser(sub)  # bench scheduler|balance|shuffle
    plot.add_parser(sub)  # stream plot
    data_cli.add_parser(sub)  # data generate|import
    check_cli.add_parser(sub)  # check
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "WARNING"),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
