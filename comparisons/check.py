"""Answer checks: every query on every engine once, each engine in its own process, vs pandas.

The parent (:func:`check`) starts one child per engine
(``python -m taskbench.comparisons.check``), so a
crash, a hung JVM or a memory blow-up takes down only that engine. The child starts the
engine, loads the dataset, runs each query, normalises the answer and writes it to a scratch
directory with one JSON line per event. The parent waits up to ``timeout`` seconds per
engine, then kills the child's whole process group (its JVM and dask workers too), and
compares every answer with the pandas reference, which always runs first.

Each cell of the resulting matrix is one of :data:`STATUSES`.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from taskbench.comparisons.data import DataError, read_manifest, trip_files
from taskbench.comparisons.normalize import AnswerError, checksum, compare, normalize
from taskbench.comparisons.queries import QUERIES, QUERY_IDS, has_zones
from taskbench.comparisons.solutions import (
    REFERENCE,
    NotImplementedYet,
    all_engines,
    check_engine_name,
    is_implemented,
    load_config,
    load_solution,
    query_function,
)

STATUSES = ("valid", "wrong", "error", "not implemented yet", "skipped", "no reference")
FAILURES = ("wrong", "error", "no reference")
DEFAULT_TIMEOUT = 900.0
_EVENTS = "events.jsonl"


@dataclass
class Cell:
    """The outcome of one query on one engine."""

    status: str
    detail: str = ""
    seconds: float | None = None
    checksum: str | None = None


@dataclass
class EngineRun:
    """How one engine's process went."""

    status: str = "not run"  # ran | not implemented yet | failed | timeout
    version: str | None = None
    start_seconds: float | None = None
    load_seconds: float | None = None
    message: str = ""


@dataclass
class CheckReport:
    """The matrix of one ``check`` run, with what it ran on."""

    data: str
    dataset: dict[str, Any]
    cores: int
    engines: list[str]
    queries: list[str]
    runs: dict[str, EngineRun] = field(default_factory=dict)
    cells: dict[str, dict[str, Cell]] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        """No wrong answer, no error (engines not implemented yet and skipped queries aside)."""
        return not any(
            cell.status in FAILURES for row in self.cells.values() for cell in row.values()
        )

    def to_dict(self) -> dict[str, Any]:
        """The report as one JSON-ready object."""
        return {
            "command": "check",
            "data": self.data,
            "dataset": self.dataset,
            "cores": self.cores,
            "reference": REFERENCE,
            "queries": self.queries,
            "engines": {name: asdict(self.runs[name]) for name in self.engines},
            "results": {
                name: {q: asdict(self.cells[name][q]) for q in self.queries}
                for name in self.engines
            },
            "valid": self.valid,
        }

    def format(self) -> str:
        """The matrix (queries x engines) with footnotes for wrong answers and errors."""
        notes: list[str] = []
        table = [["query", *self.engines]]
        for q in self.queries:
            row = [q]
            for name in self.engines:
                cell = self.cells[name][q]
                text = cell.status
                if cell.status in FAILURES and cell.detail:
                    notes.append(f"{name} {q}: {cell.status}: {cell.detail}")
                    text = f"{cell.status} [{len(notes)}]"
                row.append(text)
            table.append(row)
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        ds = self.dataset
        lines = [
            f"taskbench check: {len(self.queries)} queries x {len(self.engines)} engines on "
            f"{self.data} ({ds.get('kind')}, {ds.get('rows', 0):,} rows, "
            f"{ds.get('fingerprint', '')[:19]}…), {self.cores} cores, reference {REFERENCE}",
            "",
        ]
        lines += [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table
        ]
        if notes:
            lines += [""] + [f"[{i}] {note}" for i, note in enumerate(notes, 1)]
        lines.append("")
        for name in self.engines:
            run = self.runs[name]
            timing = ", ".join(
                f"{label} {value:.2f} s"
                for label, value in (("start", run.start_seconds), ("load", run.load_seconds))
                if value is not None
            )
            text = f"{name}: {run.version or run.status}" + (f" ({timing})" if timing else "")
            if run.message:
                text += f"; {run.message}"
            lines.append(text)
        lines.append("all answers valid" if self.valid else "SOME ANSWERS ARE WRONG OR FAILED")
        return "\n".join(lines)


def resolve_engines(text: str) -> list[str]:
    """``all`` or a comma list of engine names, validated; a KeyError names the valid ones."""
    if text.strip() == "all":
        return list(all_engines())
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise KeyError(f"no engines given; valid: all, {', '.join(all_engines())}")
    for name in names:
        check_engine_name(name)
    return list(dict.fromkeys(names))


def resolve_queries(text: str | None) -> list[str]:
    """``all`` (or None) or a comma list of query ids, validated."""
    if text is None or text.strip() == "all":
        return list(QUERY_IDS)
    ids = [q.strip() for q in text.split(",") if q.strip()]
    unknown = [q for q in ids if q not in QUERIES]
    if unknown or not ids:
        what = f"unknown query {', '.join(unknown)}" if unknown else "no queries given"
        raise KeyError(f"{what}; valid: all, {', '.join(QUERY_IDS)}")
    return list(dict.fromkeys(ids))


def dataset_info(data_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The dataset's manifest summary; :class:`DataError` if ``data_dir`` holds no dataset."""
    path = Path(data_dir)
    if not path.is_dir():
        raise DataError(f"{path}: no such dataset directory")
    if not trip_files(path):
        raise DataError(
            f"{path}: no trip files (trips/yellow_tripdata_*.parquet); "
            f"create a dataset with `taskbench data generate --out {path}`"
        )
    manifest = read_manifest(path)
    return {
        "kind": manifest.kind,
        "rows": manifest.rows,
        "months": len(manifest.months),
        "fingerprint": manifest.fingerprint,
        "zones": manifest.zones.get("name") is not None,
    }


def check(
    data_dir: str | os.PathLike[str],
    engines: Sequence[str],
    queries: Sequence[str] = QUERY_IDS,
    *,
    cores: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    spark_master: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> CheckReport:
    """Run ``queries`` on each engine in its own process and check the answers against pandas."""
    engines = [check_engine_name(e) for e in engines]
    for q in queries:
        if q not in QUERIES:
            raise KeyError(f"unknown query {q!r}; valid: {', '.join(QUERY_IDS)}")
    cores = cores or os.cpu_count() or 1
    data = str(Path(data_dir).resolve())
    report = CheckReport(data, dataset_info(data), cores, list(engines), list(queries))
    zones = has_zones(data)
    runnable = [q for q in queries if zones or not QUERIES[q].needs_zones]
    say = progress or (lambda _: None)
    with tempfile.TemporaryDirectory(prefix="taskbench-check-") as scratch:
        answers: dict[str, dict[str, Any]] = {}
        for name in [REFERENCE] + [e for e in engines if e != REFERENCE]:
            if not is_implemented(name):
                report.runs[name] = EngineRun("not implemented yet")
                answers[name] = {}
                continue
            out = Path(scratch) / name
            out.mkdir()
            say(f"{name}: running {len(runnable)} queries …")
            t0 = time.perf_counter()
            run, answers[name] = _run_child(
                name, data, runnable, out, cores=cores, timeout=timeout, spark_master=spark_master,
                say=say,
            )  # fmt: skip
            report.runs[name] = run
            say(f"{name}: {run.status} in {time.perf_counter() - t0:.1f} s")
        reference = answers[REFERENCE]
        for name in engines:
            report.cells[name] = {}
            for q in queries:
                report.cells[name][q] = _cell(
                    name, q, zones, report.runs[name], answers[name], reference
                )
    return report


def _cell(
    name: str,
    q: str,
    zones: bool,
    run: EngineRun,
    answers: dict[str, Any],
    reference: dict[str, Any],
) -> Cell:
    query = QUERIES[q]
    if query.needs_zones and not zones:
        return Cell("skipped", "the dataset has no zones table")
    if run.status == "not implemented yet":
        return Cell("not implemented yet")
    got = answers.get(q)
    if got is None:
        why = run.message or f"engine {run.status}"
        return Cell("error", f"not run: {why}")
    seconds = got.get("seconds")
    if got["status"] != "answer":
        return Cell(got["status"], got.get("detail", ""), seconds)
    expected = reference.get(q)
    if expected is None or expected["status"] != "answer":
        return Cell("no reference", f"{REFERENCE} has no answer for {q}", seconds)
    mismatch = compare(expected["frame"], got["frame"], query)
    digest = checksum(got["frame"], query)
    if mismatch is not None:
        return Cell("wrong", str(mismatch), seconds, digest)
    return Cell("valid", "", seconds, digest)


def _run_child(
    name: str,
    data: str,
    queries: Sequence[str],
    out: Path,
    *,
    cores: int,
    timeout: float,
    spark_master: str | None,
    say: Callable[[str], None] = lambda _: None,
) -> tuple[EngineRun, dict[str, Any]]:
    command = [
        sys.executable,
        "-m",
        "taskbench.comparisons.check",
        "--engine",
        name,
        "--data",
        data,
    ]
    command += ["--queries", ",".join(queries), "--out", str(out), "--cores", str(cores)]
    if spark_master:
        command += ["--spark-master", spark_master]
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [root, env.get("PYTHONPATH")] if p)
    run = EngineRun()
    with open(out / "stderr.txt", "wb") as stderr, open(out / "stdout.txt", "wb") as stdout:
        child = subprocess.Popen(
            command, stdout=stdout, stderr=stderr, env=env, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        told = 0  # events already told, as progress
        while True:
            try:
                code = child.wait(timeout=max(0.0, min(0.5, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                told = _tell_progress(out, name, len(queries), told, say)
                if time.monotonic() >= deadline:
                    _kill_group(child)
                    code = None
                    break
    _tell_progress(out, name, len(queries), told, say)
    answers = _read_events(out, run)
    if code is None:
        run.status = "timeout"
        run.message = f"timed out after {timeout:g} s"
    elif code != 0 or run.status != "ran":
        run.status = "failed"
        run.message = run.message or _last_line(out / "stderr.txt") or f"exit status {code}"
    return run, answers


def _kill_group(child: subprocess.Popen) -> None:
    """Stop the child and everything it started (it leads its own process group)."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _tell_progress(out: Path, name: str, total: int, told: int, say: Callable[[str], None]) -> int:
    """Say what the child has done since event ``told``; returns the events told so far."""
    path = out / _EVENTS
    if not path.exists():
        return told
    lines = path.read_text().split("\n")[:-1]  # whole lines only: the last may be half written
    done = 0
    for i, line in enumerate(lines):
        event = json.loads(line)
        kind = event["event"]
        done += kind == "query"
        if i < told:
            continue
        if kind == "start":
            say(f"{name}: started ({event['version']}) in {event['seconds']:.1f} s")
        elif kind == "load":
            say(f"{name}: loaded the data in {event['seconds']:.1f} s")
        elif kind == "query":
            took = f" in {event['seconds']:.2f} s" if event.get("seconds") is not None else ""
            status = "answered" if event["status"] == "answer" else event["status"]
            say(f"{name}: {event['query']} {status}{took} ({done}/{total})")
    return max(told, len(lines))


def _read_events(out: Path, run: EngineRun) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    path = out / _EVENTS
    if not path.exists():
        return answers
    for line in path.read_text().splitlines():
        event = json.loads(line)
        kind = event.pop("event")
        if kind == "start":
            run.version, run.start_seconds = event["version"], event["seconds"]
        elif kind == "load":
            run.load_seconds = event["seconds"]
        elif kind == "setup failed":
            run.message = event["detail"]
        elif kind == "done":
            run.status = "ran"
        elif kind == "query":
            if event["status"] == "answer":
                with open(out / f"{event['query']}.pkl", "rb") as f:
                    event["frame"] = pickle.load(f)
            answers[event["query"]] = event
    return answers


def _last_line(path: Path) -> str:
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return _short(lines[-1]) if lines else ""


def _short(text: str, limit: int = 300) -> str:
    first = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    return first if len(first) <= limit else first[: limit - 1] + "…"


def describe(exc: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    return f"{type(exc).__name__}: {_short(str(exc))}"


# ---- the child: one engine, one dataset ------------------------------------------------------


def run_engine(
    name: str,
    data_dir: str,
    queries: Sequence[str],
    out: str | os.PathLike[str],
    *,
    cores: int,
    spark_master: str | None = None,
) -> int:
    """Start ``name``, load the data, answer ``queries`` and write the answers to ``out``."""
    out = Path(out)
    events = open(out / _EVENTS, "a")  # noqa: SIM115 - closed below; one line per event

    def emit(kind: str, **fields: Any) -> None:
        events.write(json.dumps({"event": kind, **fields}) + "\n")
        events.flush()

    try:
        solution = load_solution(name)
        config = load_config(name, cores=cores)
        if spark_master and name == "spark":
            config = config.with_value(
                "session", "spark.master", spark_master, "given with --spark-master"
            )
        t0 = time.perf_counter()
        try:
            session = solution.start(config)
            emit("start", version=solution.version(), seconds=time.perf_counter() - t0)
            t0 = time.perf_counter()
            handle = solution.load(session, data_dir, config)
            emit("load", seconds=time.perf_counter() - t0)
        except Exception as exc:
            emit("setup failed", detail=describe(exc))
            traceback.print_exc()
            return 1
        try:
            for q in queries:
                _answer(solution, handle, q, out, emit)
        finally:
            solution.stop(session)
        emit("done")
        return 0
    finally:
        events.close()


@dataclass
class Answer:
    """One query's outcome in an engine process: ``answer`` (with its normalised frame),
    ``error``, ``wrong`` (the result could not be normalised) or ``not implemented yet``."""

    status: str
    seconds: float | None = None
    frame: Any = None
    detail: str = ""


def answer(solution: Any, handle: Any, q: str) -> Answer:
    """Run query ``q`` on a loaded handle, timed, and normalise its result."""
    try:
        function = query_function(solution, q)
    except NotImplementedYet:
        return Answer("not implemented yet")
    t0 = time.perf_counter()
    try:
        raw = function(handle)
    except Exception as exc:
        traceback.print_exc()
        return Answer("error", _since(t0), detail=describe(exc))
    seconds = _since(t0)
    try:
        return Answer("answer", seconds, normalize(raw, QUERIES[q]))
    except AnswerError as exc:
        return Answer("wrong", seconds, detail=str(exc))


def _answer(solution: Any, handle: Any, q: str, out: Path, emit: Callable[..., None]) -> None:
    got = answer(solution, handle, q)
    if got.frame is not None:
        with open(out / f"{q}.pkl", "wb") as f:
            pickle.dump(got.frame, f)
    fields = {"detail": got.detail} if got.detail else {}
    if got.seconds is not None:
        fields["seconds"] = got.seconds
    emit("query", query=q, status=got.status, **fields)


def _since(t0: float) -> float:
    return round(time.perf_counter() - t0, 6)


def main(argv: list[str] | None = None) -> int:
    """The child process's entry point (``python -m taskbench.comparisons.check --engine …``)."""
    parser = argparse.ArgumentParser(prog="python -m taskbench.comparisons.check")
    parser.add_argument("--engine", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--queries", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--cores", type=int, required=True)
    parser.add_argument("--spark-master")
    args = parser.parse_args(argv)
    return run_engine(
        args.engine,
        args.data,
        resolve_queries(args.queries),
        args.out,
        cores=args.cores,
        spark_master=args.spark_master,
    )


if __name__ == "__main__":
    sys.exit(main())
