"""What a bench shows the person at the terminal: progress on stderr, peers' logs in a file.

Its output is the table on stdout, or the ``--json`` document instead; ``--json-out FILE``
writes the document to a file while the table still prints (`add_output_flags`, `emit`).
Files the document names (task streams) are given relative to the document's folder when it
is written to a file, absolute when it is printed (`link`). Repeated values print as their
median with the min–max (`spread`); a ratio of medians as ``1.84 [1.70–2.01]`` (`ratio_text`).

Progress goes to stderr, one plain line per step (``[scheduler] taskbench: 20,000 independent
tasks, repeat 2/3``), so that ``--json`` output on stdout stays one clean object. Peers
(dask.distributed) log and print tracebacks from their own processes, e.g. a worker's
``CommClosedError`` on shutdown; `peer_logs` sends all of it, from this process and its
children, to a log file the output names, never to the user's screen.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from taskbench.comparisons.stats import Ratio

Say = Callable[[str], None]

_console: TextIO | None = None  # the real stderr while peer_logs redirects file descriptor 2


def progress(section: str) -> Say:
    """A function printing ``[section] message`` lines to the terminal's stderr."""

    def say(message: str) -> None:
        print(f"[{section}] {message}", file=_console or sys.stderr, flush=True)

    return say


def log_folder() -> Path:
    """A fresh folder for this run's peer logs (kept after the run, for reading)."""
    return Path(tempfile.mkdtemp(prefix="taskbench-peers-"))


@contextlib.contextmanager
def peer_logs(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Send everything written to stderr, here and by child processes, to ``path``.

    The ``distributed`` loggers write there too, and are quietened to warnings; `progress`
    lines still reach the terminal. Everything is put back on exit.
    """
    global _console
    path = Path(path)
    sys.stderr.flush()
    saved = os.dup(2)
    previous = _console
    log = open(path, "ab")  # noqa: SIM115 - closed below, after file descriptor 2 is restored
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # children read it at import
    handler = logging.StreamHandler(open(path, "a", encoding="utf-8"))  # noqa: SIM115
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    dask_logger = logging.getLogger("distributed")
    old = dask_logger.handlers[:], dask_logger.propagate, dask_logger.level
    dask_logger.handlers = [handler]
    dask_logger.propagate = False
    dask_logger.setLevel(logging.WARNING)
    _console = os.fdopen(os.dup(saved), "w", encoding="utf-8", errors="replace")
    os.dup2(log.fileno(), 2)
    old_stderr = sys.stderr  # not always file descriptor 2 (pytest's capture, for one)
    sys.stderr = open(path, "a", encoding="utf-8", errors="replace", buffering=1)  # noqa: SIM115
    try:
        yield path
    finally:
        sys.stderr.close()
        sys.stderr = old_stderr
        os.dup2(saved, 2)
        os.close(saved)
        _console.close()
        _console = previous
        dask_logger.handlers, dask_logger.propagate = old[0], old[1]
        dask_logger.setLevel(old[2])
        handler.close()
        log.close()


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 thread``, ``2 threads``, ``20,000 tasks``."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"


def spread(values: Sequence[float], spec: str = "{:.3f}") -> str:
    """``0.412 (0.398–0.470)``: the median, then the min–max when there is more than one value."""
    from taskbench.comparisons.stats import summarize

    if not values:
        return "-"
    s = summarize(values)
    if s.n == 1:
        return spec.format(s.median)
    return f"{spec.format(s.median)} ({spec.format(s.low)}–{spec.format(s.high)})"


def ratio_text(ratio: Ratio, spec: str = "{:.2f}") -> str:
    """``1.84 [1.70–2.01]``: a ratio of medians and its bootstrap 95 % interval."""
    return f"{spec.format(ratio.value)} [{spec.format(ratio.low)}–{spec.format(ratio.high)}]"


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """``--json`` (print the document instead of the table) and ``--json-out FILE``."""
    from taskbench.comparisons.argtypes import output_file

    parser.add_argument("--json", action="store_true", help="print one JSON object, no table")
    parser.add_argument(
        "--json-out", type=output_file, metavar="FILE",
        help="also write the JSON object to FILE (the table still prints unless --json)",
    )  # fmt: skip


def link(path: str | os.PathLike[str], json_out: str | os.PathLike[str] | None) -> str:
    """How a document names a file it points to: relative to ``json_out``'s folder, if the
    document is written there, else the absolute path."""
    target = Path(path).resolve()
    if json_out is None:
        return str(target)
    return os.path.relpath(target, Path(json_out).resolve().parent)


def emit(doc: dict[str, Any], table: Callable[[], str], args: argparse.Namespace) -> None:
    """The run's output: ``doc`` to ``--json-out``, then ``doc`` (``--json``) or the table."""
    text = json.dumps(doc, indent=2)
    if getattr(args, "json_out", None):
        Path(args.json_out).write_text(text + "\n", encoding="utf-8")
    if args.json:
        print(text)
    else:
        print(table())
        if getattr(args, "json_out", None):
            print(f"JSON document written to {args.json_out}")
