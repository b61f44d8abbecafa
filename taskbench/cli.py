"""The root ``taskbench`` command: it wires each layer's subcommands and does nothing else.

A user's mistake is one line on stderr and exit 2 (argparse, by the rules of
`taskbench.engine.argtypes`) or 1 (a command's own check). Anything else that escapes a
command is a bug of ours: one line naming the log file that holds its traceback, and exit 1;
``--debug`` prints the traceback instead.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from taskbench import __version__
from taskbench.engine.argtypes import ArgumentParser

#: Where the traceback of an unexpected error goes (overridable with this variable).
LOG_DIR_ENV = "TASKBENCH_LOG_DIR"


#: Each command: the module whose ``add_parser`` defines it, and its help in the command list.
#: Only the module of the command being run is imported; the others would cost a second of
#: imports (pandas, pyarrow) before even a bad flag could be reported.
COMMANDS = {
    "engine": ("taskbench.engine.cli", "run engine processes (multi-host)"),
    "bench": ("taskbench.comparisons.bench", "side-by-side measurements in one run"),
    "stream": ("taskbench.engine.plot", "task streams of recorded runs"),
    "data": ("taskbench.comparisons.data.cli", "NYC-taxi data in the canonical layout"),
    "check": ("taskbench.comparisons.cli", "answers of every engine against pandas"),
    "compare": (
        "taskbench.infra.compare",
        "time every engine on the problem set, answers checked, records kept",
    ),
    "report": (
        "taskbench.reports.cli",
        "published report of comparison runs (HTML, Markdown, CSV, figures)",
    ),
    "cluster": ("taskbench.infra.cli", "local and EC2 clusters: up, status, run, down"),
    "plan": ("taskbench.infra.plan", "predict the engine's query times and cost on a cluster spec"),
}


def build_parser(argv: list[str] | None = None) -> ArgumentParser:
    """The root parser; given ``argv``, only the command it names is defined in full."""
    parser = ArgumentParser(
        prog="taskbench", description="Measure task engines honestly: the engine, beside its peers."
    )
    parser.add_argument("--version", action="version", version=f"taskbench {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of an unexpected error"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    # the root's flags take no value, so the first word that is not a flag is the command
    named = next((a for a in argv if not a.startswith("-")), None) if argv is not None else None
    for name, (module, help_text) in COMMANDS.items():
        if argv is None or name == named:
            importlib.import_module(module).add_parser(sub)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def crash_log_dir() -> Path:
    """The folder of crash logs: ``$TASKBENCH_LOG_DIR``, else ``taskbench`` in the temp dir."""
    return Path(os.environ.get(LOG_DIR_ENV) or Path(tempfile.gettempdir()) / "taskbench")


def write_crash_log(argv: list[str]) -> Path | None:
    """Write the current exception's traceback, with the command line, to a new log file."""
    try:
        folder = crash_log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = folder / f"crash-{stamp}-{os.getpid()}.log"
        path.write_text(
            f"taskbench {__version__}\nargv: {argv!r}\n\n{traceback.format_exc()}", encoding="utf-8"
        )
        return path
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    """Run ``taskbench`` with ``argv``; return the exit code (argparse's 2 included)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return _run(argv)
    except KeyboardInterrupt:
        print("taskbench: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if "--debug" in argv:  # read from argv: the error may come before or during parsing
            raise
        path = write_crash_log(argv)
        first = (str(e).strip().splitlines() or [""])[0]
        where = f"traceback in {path}" if path else "no log could be written"
        print(
            f"taskbench: internal error ({type(e).__name__}: {first}); {where}; --debug prints it",
            file=sys.stderr,
        )
        return 1


def _run(argv: list[str]) -> int:
    # words after "--" pass through, whole, to a command that takes them (cluster run)
    head, tail = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (
        argv, None)  # fmt: skip
    try:
        parser = build_parser(head)
        args = parser.parse_args(head)
        if tail is not None and not getattr(args, "passthrough_help", None):
            parser.error(f"{args.command} takes no words after --")
        args.passthrough = tail or []
    except SystemExit as e:  # --help, --version, or a bad argument argparse has reported
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    logging.basicConfig(
        level=getattr(args, "log_level", "WARNING"),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
