"""``taskbench compare``: the problem set on every engine, timed, checked and recorded for good.

The protocol (DESIGN.md, "Comparison protocol"):

- Each engine runs in a process of its own (:mod:`comparisons.session`), in its own process
  group, pinned to the same ``--cores`` CPUs as every other. Start, load and each query are
  timed apart. All engines of a mode stay up for the whole mode, so their runs interleave.
- Rounds: in round r every query runs once on every engine, query by query, the engines in
  an order rotated each round, so drift on a shared machine hits them alike. Round 1 is cold;
  the others are hot.
- Every answer is checked against the pandas reference with :mod:`comparisons.normalize`. A
  wrong answer, an error or a timeout is recorded with its status and no time.
- A query past ``--timeout`` ends its engine's process group, and so does a query that kills
  its process; the engine starts again for its next query, and the run goes on. Such a query
  is not run again in later rounds: they record the same status, saying so. An engine that
  fails to start :data:`MAX_FAILED_STARTS` times in a mode records its queries as errors.
- Modes: ``memory`` (each engine holds the data first: the ``[memory]`` settings of its
  config) and ``scan`` (every query starts from the parquet files). Every record names its mode.

A run folder holds ``run.json`` (what was asked, on what, by which commands), ``records.jsonl``
(one :class:`BenchResult` per timed event, appended, never rewritten), ``reference/`` (the
pandas answers), ``answers/`` (scratch), ``logs/`` (each engine process's output) and
``bench/`` (task streams; the engine benches' documents when ``make demo`` puts them there).
``--resume`` skips every (engine, mode, query, run) already recorded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import pickle
import re
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskbench.comparisons.bench.record import BenchResult, git_state, machine, versions
from taskbench.comparisons.check import _kill_group, dataset_info
from taskbench.comparisons.normalize import checksum, compare
from taskbench.comparisons.queries import QUERIES
from taskbench.comparisons.solutions import MODES, REFERENCE, is_implemented, load_config
from tqdm import tqdm

SCHEMA = 1
DEFAULT_REPEAT = 3
DEFAULT_TIMEOUT = 300.0
MAX_FAILED_STARTS = 2  #: failed starts of an engine in a mode before its queries are given up
STREAM_QUERY = "q12"  #: the engine query whose task stream the report draws
MANIFEST = "run.json"
RECORDS = "records.jsonl"
SINGLE_THREADED = ("pandas",)


class CompareError(Exception):
    """A bad invocation, stated in one line: nothing was run (or nothing more)."""


@dataclass
class Plan:
    """What one ``compare`` invocation runs."""

    data: Path
    out: Path
    engines: list[str]
    queries: list[str]
    modes: list[str]
    repeat: int = DEFAULT_REPEAT
    cores: int = 2
    timeout: float = DEFAULT_TIMEOUT
    resume: bool = False
    spark_master: str | None = None
    engine_scheduler: str | None = None
    cluster: dict[str, Any] | None = None  #: the cluster the run used, as records carry it
    command: str = ""
    explicit_engines: bool = True  #: named by the user (a missing Java is then an error)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- checks before anything runs


def java_version() -> str | None:
    """The version of the Java that Spark would use (``$JAVA_HOME`` first, then PATH)."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        return None
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "([^"]+)"', done.stderr + done.stdout)
    return found.group(1) if found else None


def java_major(version: str | None) -> int | None:
    """17 for ``"17.0.12"``, 8 for ``"1.8.0_392"``; None when unknown."""
    if not version:
        return None
    parts = version.split(".")
    major = parts[1] if parts[0] == "1" and len(parts) > 1 else parts[0]
    return int(major) if major.isdigit() else None


def prepare(plan: Plan) -> dict[str, Any]:
    """Check the invocation and make the run folder; returns the run's manifest.

    Raises :class:`CompareError` for a dataset without a manifest, a Java too old for
    Spark, an unwritable ``--out``, more cores than this process may use, and a resumed run
    whose records come from other data or another core count.
    """
    from taskbench.comparisons.data import DataError

    try:
        data = dataset_info(plan.data)
    except DataError as exc:
        raise CompareError(str(exc)) from None
    usable = len(os.sched_getaffinity(0))
    if plan.cores > usable:
        raise CompareError(f"--cores {plan.cores}: this process may use only {usable} CPUs")
    java = java_version()
    if "spark" in plan.engines and (java_major(java) or 0) < 17:
        why = f"found Java {java}" if java else "no java on PATH or in $JAVA_HOME"
        if plan.explicit_engines:
            raise CompareError(f"spark needs Java 17 or newer: {why}")
        plan.engines.remove("spark")
        plan.notes.append(f"spark skipped: it needs Java 17 or newer ({why})")
    for name in list(plan.engines):
        if not is_implemented(name):
            plan.engines.remove(name)
            plan.notes.append(f"{name} skipped: no solution module yet")
    if not data["zones"]:
        dropped = [q for q in plan.queries if QUERIES[q].needs_zones]
        plan.queries = [q for q in plan.queries if q not in dropped]
        if dropped:
            plan.notes.append(f"{', '.join(dropped)} skipped: the dataset has no zones table")
    if not plan.engines or not plan.queries:
        raise CompareError("nothing to run: " + ("; ".join(plan.notes) or "no engines"))
    try:
        for sub in ("reference", "answers", "logs", "bench"):
            (plan.out / sub).mkdir(parents=True, exist_ok=True)
        probe = plan.out / ".write-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise CompareError(f"cannot write the run folder --out {plan.out}: {why}") from None
    manifest_path = plan.out / MANIFEST
    if manifest_path.exists() and not plan.resume:
        raise CompareError(
            f"{plan.out} already holds a run; pass --resume to add to it, or another --out"
        )
    manifest = _manifest(plan, data, java)
    if manifest_path.exists():
        manifest = _merge_manifest(manifest_path, manifest, plan)
    _write_json(manifest_path, manifest)
    return manifest


def _manifest(plan: Plan, data: dict[str, Any], java: str | None) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "run_id": plan.out.name,
        "command": plan.command,
        "commands": [plan.command],
        "engines": plan.engines,
        "queries": [{"id": q, "title": QUERIES[q].title} for q in plan.queries],
        "modes": plan.modes,
        "repeat": plan.repeat,
        "cores": plan.cores,
        "timeout": plan.timeout,
        "reference": REFERENCE,
        "single_threaded": [e for e in plan.engines if e in SINGLE_THREADED],
        "data": {"path": str(plan.data.resolve()), **data},
        "machine": {**machine(), "java": java},
        "versions": versions(),
        "git": git_state(),
        "started": _now(),
        "cluster": plan.cluster,
        "configs": {e: config_record(e, plan.cores) for e in plan.engines},
        "notes": plan.notes,
    }


def _merge_manifest(path: Path, new: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """A resumed run's manifest: the same data and cores, the union of what was asked."""
    old = json.loads(path.read_text())
    was, now = old["data"]["fingerprint"], new["data"]["fingerprint"]
    if was != now:
        raise CompareError(
            f"{path}: the run's records are of data {was[:19]}…, but --data {plan.data} is "
            f"{now[:19]}…; records of two datasets never share a run (choose another --out)"
        )
    if old["cores"] != new["cores"]:
        raise CompareError(f"{path}: the run used --cores {old['cores']}, not {new['cores']}")
    merged = dict(old)
    for key in ("engines", "modes"):
        merged[key] = list(dict.fromkeys([*old[key], *new[key]]))
    ids = {q["id"] for q in old["queries"]}
    merged["queries"] = old["queries"] + [q for q in new["queries"] if q["id"] not in ids]
    merged["repeat"] = max(old["repeat"], new["repeat"])
    merged["commands"] = [*old.get("commands", [old["command"]]), new["command"]]
    merged["configs"] = {**old["configs"], **new["configs"]}
    merged["notes"] = list(dict.fromkeys([*old["notes"], *new["notes"]]))
    merged["single_threaded"] = [e for e in merged["engines"] if e in SINGLE_THREADED]
    return merged


def config_record(engine: str, cores: int) -> dict[str, Any]:
    """The engine's config file, its hash and its settings (every mode's, with reasons)."""
    config = load_config(engine, cores=cores)
    digest = hashlib.sha256(Path(config.path).read_bytes()).hexdigest() if config.path else None
    return {**config.to_dict(), "sha256": digest}


def recorded_keys(path: Path, fingerprint: str) -> set[tuple[str, str, str, int]]:
    """(engine, mode, query, run) of every query record in ``path``; checks every line."""
    keys: set[tuple[str, str, str, int]] = set()
    if not path.exists():
        return keys
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = BenchResult.from_json(json.loads(line))
        except (ValueError, KeyError, TypeError) as exc:
            raise CompareError(f"{path}:{number}: not a record ({exc})") from None
        theirs = record.metadata.get("data", {}).get("fingerprint")
        if theirs != fingerprint:
            raise CompareError(
                f"{path}:{number}: a record of data {str(theirs)[:19]}…, not {fingerprint[:19]}…;"
                " records of two datasets never share a run"
            )
        p = record.params
        if record.name == "query_seconds":
            keys.add((record.engine, p["mode"], p["query"], int(p["run"])))
    return keys


# ---------------------------------------------------------------- one engine process


class EngineProcess:
    """One engine's process in one mode: started on demand, asked one query at a time."""

    def __init__(self, engine: str, mode: str, plan: Plan, number: int) -> None:
        self.engine, self.mode, self.plan, self.number = engine, mode, plan, number
        self.child: subprocess.Popen | None = None
        self.version: str | None = None
        self.asked: set[str] = set()  # queries run in this process: the next run is hot
        self._buffer = b""
        self._reply_fd = -1
        self._closed = False  # the process closed its end of the protocol pipe

    @property
    def alive(self) -> bool:
        return self.child is not None and self.child.poll() is None

    def start(self) -> Iterator[dict[str, Any]]:
        """Start the process; yields its ``start`` (and ``load``) events as they come."""
        read_fd, write_fd = os.pipe()
        log = self.plan.out / "logs" / f"{self.engine}-{self.mode}-{self.number}.log"
        command = [
            sys.executable, "-m", "taskbench.comparisons.session",
            "--engine", self.engine, "--mode", self.mode, "--data", str(self.plan.data),
            "--cores", str(self.plan.cores), "--answers", str(self.plan.out / "answers"),
            "--reply-fd", str(write_fd),
        ]  # fmt: skip
        if self.plan.spark_master:
            command += ["--spark-master", self.plan.spark_master]
        if self.plan.engine_scheduler:
            command += ["--engine-scheduler", self.plan.engine_scheduler]
        with open(log, "ab") as stderr:
            self.child = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                pass_fds=(write_fd,),
                start_new_session=True,
            )
        os.close(write_fd)
        self._reply_fd = read_fd
        for event in ("start", "load") if self.mode == "memory" else ("start",):
            reply = self._receive(self.plan.timeout)
            if reply is None or reply.get("status") == "error":
                reply = reply or self._gone(event)
                reply.setdefault("event", event)
                self.kill()
                yield reply
                return
            self.version = reply.get("version", self.version)
            yield reply

    def ask(self, query: str, run: int, stream: str | None = None) -> dict[str, Any]:
        """One query's reply; a ``timeout`` or a vanished process ends the process."""
        assert self.child is not None and self.child.stdin is not None
        request = {"query": query, "run": run, **({"stream": stream} if stream else {})}
        cold = query not in self.asked
        self.asked.add(query)
        try:
            self.child.stdin.write((json.dumps(request) + "\n").encode())
            self.child.stdin.flush()
        except OSError:
            self.kill()
            return {**self._gone("query"), "cold": cold, "ended": True}
        reply = self._receive(self.plan.timeout)
        if reply is None:
            gone = self._closed or not self.alive
            self.kill()
            if gone:
                return {**self._gone("query"), "cold": cold, "ended": True}
            return {
                "status": "timeout",
                "detail": f"past --timeout {self.plan.timeout:g} s; the process was ended",
                "cold": cold,
                "ended": True,
            }
        return {**reply, "cold": cold}

    def _gone(self, event: str) -> dict[str, Any]:
        code = None
        if self.child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self.child.wait(timeout=5)
        log = self.plan.out / "logs" / f"{self.engine}-{self.mode}-{self.number}.log"
        last = _last_line(log)
        why = f"the engine process exited ({code})" if code is not None else "no reply"
        return {"event": event, "status": "error", "detail": f"{why}: {last}" if last else why}

    def _receive(self, timeout: float) -> dict[str, Any] | None:
        """The next reply line, or None after ``timeout`` seconds or at the pipe's end."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._reply_fd], [], [], min(left, 1.0))
            if not ready:
                if not self.alive:
                    return None
                continue
            chunk = os.read(self._reply_fd, 65536)
            if not chunk:
                self._closed = True
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def stop(self) -> None:
        """Ask the process to stop the engine and exit; end its group if it does not."""
        if self.alive and self.child is not None and self.child.stdin is not None:
            try:
                self.child.stdin.write(b'{"stop": true}\n')
                self.child.stdin.close()
                self.child.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()

    def kill(self) -> None:
        """End the process group (its JVM, its workers) and close the pipes."""
        if self.child is not None:
            if self.child.poll() is None:
                _kill_group(self.child)
            else:  # the leader is gone; its group may not be
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.child.pid, 9)
            if self.child.stdin is not None:
                with contextlib.suppress(OSError):
                    self.child.stdin.close()
        if self._reply_fd >= 0:
            os.close(self._reply_fd)
            self._reply_fd = -1
        self._buffer = b""


# ---------------------------------------------------------------- the runner


class Runner:
    """Runs a prepared :class:`Plan` and appends its records to the run folder."""

    def __init__(
        self, plan: Plan, manifest: dict[str, Any], say: Callable[[str], None] | None = None
    ) -> None:
        self.plan, self.manifest = plan, manifest
        self.say = say or (lambda _: None)
        self.fingerprint = manifest["data"]["fingerprint"]
        self.records_path = plan.out / RECORDS
        self.done = recorded_keys(self.records_path, self.fingerprint)
        self.reference = self._saved_reference()
        self.written: list[BenchResult] = []
        self.versions_seen: dict[str, str] = {}
        self._base = {
            "run_id": manifest["run_id"],
            "data": manifest["data"],
            "machine": manifest["machine"],
            "versions": manifest["versions"],
            "git": manifest["git"],
            "cluster": manifest["cluster"],
            "cores": plan.cores,
        }

    def _saved_reference(self) -> dict[str, Any]:
        answers = {}
        for q in self.plan.queries:
            path = self.plan.out / "reference" / f"{q}.pkl"
            if path.exists():
                with open(path, "rb") as f:
                    answers[q] = pickle.load(f)
        return answers

    def todo(self) -> list[tuple[str, str, int, str]]:
        """(mode, query, run, engine) still to run, in the order they run."""
        out = []
        for mode in self.plan.modes:
            for run in range(1, self.plan.repeat + 1):
                order = _rotated(self.plan.engines, run - 1)
                for q in self.plan.queries:
                    out += [(mode, q, run, e) for e in order if (e, mode, q, run) not in self.done]
        return out

    def run(self) -> list[BenchResult]:
        """Every remaining query run of every mode; returns the records written."""
        todo = self.todo()
        bar = tqdm(total=len(todo), unit="run", file=sys.stderr, dynamic_ncols=True, disable=None)
        try:
            for mode in self.plan.modes:
                mode_todo = [t for t in todo if t[0] == mode]
                if mode_todo:
                    self._run_mode(mode, mode_todo, bar)
        finally:
            bar.close()
        return self.written

    def _run_mode(self, mode: str, todo: list[tuple[str, str, int, str]], bar: tqdm) -> None:
        processes: dict[str, EngineProcess] = {}
        failed_starts: dict[str, int] = {e: 0 for e in self.plan.engines}
        ended: dict[tuple[str, str], dict[str, Any]] = {}  # (engine, query) -> the fatal reply
        reference: EngineProcess | None = None
        if REFERENCE not in self.plan.engines and any(
            q not in self.reference for _, q, _, _ in todo
        ):
            reference = EngineProcess(REFERENCE, "memory", self.plan, 0)
        try:
            groups: dict[tuple[str, int], list[str]] = {}
            for _, q, run, engine in todo:
                groups.setdefault((q, run), []).append(engine)
            for (q, run), engines in groups.items():
                replies: dict[str, dict[str, Any]] = {}
                for engine in engines:
                    bar.set_postfix_str(f"{mode} · {engine} · {q} · run {run}", refresh=True)
                    if (engine, q) in ended:
                        replies[engine] = ended[engine, q]
                    else:
                        replies[engine] = self._ask(engine, mode, q, run, processes, failed_starts)
                        if replies[engine].get("ended"):
                            ended[engine, q] = _not_again(replies[engine], run)
                    bar.update(1)
                if q not in self.reference:
                    self._take_reference(q, replies, reference)
                for engine, reply in replies.items():
                    self._write(self._query_record(engine, mode, q, run, reply))
        finally:
            for process in [*processes.values(), *([reference] if reference else [])]:
                process.stop()

    def _ask(
        self,
        engine: str,
        mode: str,
        q: str,
        run: int,
        processes: dict[str, EngineProcess],
        failed_starts: dict[str, int],
    ) -> dict[str, Any]:
        process = processes.get(engine)
        while process is None or not process.alive:
            if failed_starts[engine] >= MAX_FAILED_STARTS:
                detail = f"the engine failed to start {MAX_FAILED_STARTS} times; see logs/"
                return {"status": "error", "cold": True, "detail": detail}
            number = process.number + 1 if process else 1
            process = processes[engine] = EngineProcess(engine, mode, self.plan, number)
            if not self._start(process):
                failed_starts[engine] += 1
        stream = None
        if engine == "engine" and q == STREAM_QUERY and run == self.plan.repeat:
            stream = str(self.plan.out / "bench" / f"stream-{engine}-{mode}-{q}.jsonl")
        return process.ask(q, run, stream)

    def _start(self, process: EngineProcess) -> bool:
        ok = True
        for event in process.start():
            if process.version:
                self.versions_seen[process.engine] = process.version
            status = event.get("status", "valid")
            seconds = event.get("seconds")
            if status == "valid":
                self.say(f"{process.engine} ({process.mode}): {event['event']} {seconds:.1f} s")
            else:
                self.say(f"{process.engine} ({process.mode}): {event['event']} failed: "
                         f"{event.get('detail', '')}")  # fmt: skip
                ok = False
            params = {"mode": process.mode, "process": process.number}
            if event.get("cpus"):
                params["cpus"] = event["cpus"]
            if status != "valid":
                params["detail"] = event.get("detail", "")
            self._write(
                BenchResult(
                    f"{event['event']}_seconds",
                    process.engine,
                    "s",
                    [seconds] if status == "valid" else [],
                    params,
                    self._metadata(process.engine, process.mode),
                    status=status,
                )
            )
        return ok and process.alive

    def _take_reference(
        self, q: str, replies: dict[str, dict[str, Any]], process: EngineProcess | None
    ) -> None:
        reply = replies.get(REFERENCE)
        if reply is None and process is not None:
            if not process.alive:
                list(process.start())
            reply = process.ask(q, 0) if process.alive else None
        if reply and reply.get("answer"):
            with open(reply["answer"], "rb") as f:
                frame = pickle.load(f)
            with open(self.plan.out / "reference" / f"{q}.pkl", "wb") as f:
                pickle.dump(frame, f)
            self.reference[q] = frame

    def _query_record(
        self, engine: str, mode: str, q: str, run: int, reply: dict[str, Any]
    ) -> BenchResult:
        params: dict[str, Any] = {
            "mode": mode,
            "query": q,
            "run": run,
            "cold": bool(reply.get("cold")),
            "rows_out": None,
            "checksum": None,
            "peak_rss_bytes": reply.get("peak_rss_bytes"),
        }
        status = {"answer": "valid"}.get(reply["status"], reply["status"])
        detail = reply.get("detail", "")
        if reply.get("answer"):
            with open(reply["answer"], "rb") as f:
                frame = pickle.load(f)
            os.unlink(reply["answer"])
            params["rows_out"] = len(frame)
            params["checksum"] = checksum(frame, QUERIES[q])
            expected = self.reference.get(q)
            if expected is None:
                status, detail = "no reference", f"{REFERENCE} has no answer for {q}"
            else:
                mismatch = compare(expected, frame, QUERIES[q])
                if mismatch is not None:
                    status, detail = "wrong", str(mismatch)
        if mode == "scan" and reply.get("load_seconds") is not None:
            params["load_seconds"] = reply["load_seconds"]
        if reply.get("stream"):
            params["stream"] = os.path.relpath(reply["stream"], self.plan.out)
        if status != "valid":
            params["detail"] = detail
        return BenchResult(
            "query_seconds",
            engine,
            "s",
            [reply["seconds"]] if status == "valid" else [],
            params,
            self._metadata(engine, mode),
            status=status,
        )

    def _metadata(self, engine: str, mode: str) -> dict[str, Any]:
        """What every record of this engine carries: the run's facts, its config, its mode's."""
        config = dict(self.manifest["configs"][engine])
        config["mode"] = mode
        config["resolved"] = load_config(engine, cores=self.plan.cores).for_mode(mode).to_dict()
        return {
            **self._base,
            "engine_version": self.versions_seen.get(engine),
            "config": config,
            "timestamp": _now(),
        }

    def _write(self, record: BenchResult) -> None:
        with open(self.records_path, "a") as f:
            f.write(json.dumps(record.to_json()) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.written.append(record)
        if record.name == "query_seconds":
            p = record.params
            self.done.add((record.engine, p["mode"], p["query"], p["run"]))


def _not_again(reply: dict[str, Any], run: int) -> dict[str, Any]:
    """What later rounds record for a query that ended its engine's process in round ``run``."""
    detail = f"{reply.get('detail', '')} (in run {run}; not run again)"
    return {"status": reply["status"], "detail": detail, "cold": False}


def _rotated(items: Sequence[str], by: int) -> list[str]:
    by %= max(len(items), 1)
    return [*items[by:], *items[:by]]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    scratch = path.with_name(f".{path.name}.tmp")
    scratch.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(scratch, path)


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


# ---------------------------------------------------------------- summary and command


def read_records(path: Path) -> list[BenchResult]:
    """Every record of a run folder's ``records.jsonl``."""
    if not path.exists():
        return []
    return [BenchResult.from_json(json.loads(ln)) for ln in path.read_text().splitlines() if ln]


def summary_lines(records: Sequence[BenchResult]) -> list[str]:
    """One line per engine and mode: statuses, hot geometric mean, start and load."""
    import math

    from taskbench.comparisons.stats import summarize

    lines = []
    groups: dict[tuple[str, str], list[BenchResult]] = {}
    for r in records:
        groups.setdefault((r.engine, r.params["mode"]), []).append(r)
    for (engine, mode), rows in groups.items():
        queries = [r for r in rows if r.name == "query_seconds"]
        counts: dict[str, int] = {}
        hot: dict[str, list[float]] = {}
        for r in queries:
            counts[r.status] = counts.get(r.status, 0) + 1
            if r.status == "valid" and not r.params["cold"]:
                hot.setdefault(r.params["query"], []).extend(r.values)
        medians = [summarize(v).median for v in hot.values()]
        setup = ", ".join(
            f"{name} {r.values[-1]:.1f} s"
            for name in ("start", "load")
            for r in [next((x for x in reversed(rows) if x.name == f"{name}_seconds"), None)]
            if r is not None and r.values
        )
        status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        text = f"{engine} ({mode}): {status}"
        if medians:
            geomean = math.exp(sum(math.log(max(m, 1e-9)) for m in medians) / len(medians))
            text += f"; hot geometric mean {geomean:.3f} s over {len(medians)} queries"
        lines.append(text + (f"; {setup}" if setup else ""))
    return lines


def add_parser(subparsers: Any) -> None:
    """Register ``compare`` under ``subparsers`` (argparse)."""
    from taskbench.comparisons.argtypes import positive_int, positive_number
    from taskbench.comparisons.solutions import ENGINES

    parser = subparsers.add_parser(
        "compare",
        help="time every engine on the problem set, answers checked, records kept",
        description="Run the problem set on every engine in its own process, interleaved "
        "round by round, check every answer against pandas, and append one record per timed "
        "event to the run folder (taskbench report renders it).",
    )
    parser.add_argument(
        "--engines", default="all", help=f"all, or a comma list of: {', '.join(ENGINES)}"
    )
    parser.add_argument("--data", required=True, help="dataset directory (taskbench data …)")
    parser.add_argument("--queries", default="all", help="all, or a comma list of q01…q12")
    parser.add_argument(
        "--repeat", type=positive_int, default=DEFAULT_REPEAT,
        help=f"runs of each query; run 1 is cold (default {DEFAULT_REPEAT}, at least 3)",
    )  # fmt: skip
    parser.add_argument(
        "--mode", choices=[*MODES, "both"], default="memory",
        help="memory: data held by each engine first; scan: every query reads the files",
    )  # fmt: skip
    parser.add_argument(
        "--cores", type=positive_int, default=min(2, len(os.sched_getaffinity(0))),
        help="cores for every engine (default 2, or fewer if this machine has fewer)",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=positive_number, default=DEFAULT_TIMEOUT,
        help=f"seconds per query, start and load (default {DEFAULT_TIMEOUT:g})",
    )  # fmt: skip
    parser.add_argument("--out", help="run folder (default results/runs/<UTC time>)")
    parser.add_argument("--resume", action="store_true", help="add to --out; skip what it holds")
    parser.add_argument("--spark-master", help="a Spark master URL instead of local[cores]")
    parser.add_argument(
        "--engine-scheduler",
        help="an engine scheduler's address instead of a LocalCluster of --cores workers "
        "(its token from $TASKBENCH_TOKEN or $TASKBENCH_TOKEN_FILE)",
    )
    parser.set_defaults(func=run_compare)


def _command_line(args: Any) -> str:
    """The command that makes this run again, every default spelled out."""
    import shlex

    argv = ["taskbench", "compare", "--engines", args.engines, "--data", args.data]
    argv += ["--queries", args.queries, "--repeat", str(args.repeat), "--mode", args.mode]
    argv += ["--cores", str(args.cores), "--timeout", f"{args.timeout:g}"]
    if args.out:
        argv += ["--out", args.out]
    cluster_argv = getattr(args, "cluster_argv", None)  # a layer above's flags, resolved
    if cluster_argv:  # into the two below
        argv += cluster_argv
    else:
        for flag, value in (("--spark-master", args.spark_master),
                            ("--engine-scheduler", args.engine_scheduler)):  # fmt: skip
            argv += [flag, value] if value else []
    return shlex.join(argv)


def run_compare(args: Any) -> int:
    """The ``compare`` command: 0 when all answers are valid, 1 when some are not, 2: bad input."""
    from taskbench.comparisons.check import resolve_engines, resolve_queries

    def fail(message: str) -> int:
        print(f"taskbench compare: error: {message}", file=sys.stderr)
        return 2

    if args.repeat < 3:
        return fail(f"--repeat {args.repeat}: at least 3 (run 1 is cold, the rest give the spread)")
    try:
        engines = resolve_engines(args.engines)
        queries = resolve_queries(args.queries)
    except KeyError as exc:
        return fail(exc.args[0])
    if args.resume and not args.out:
        return fail("--resume needs --out, the run folder to add to")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    plan = Plan(
        data=Path(args.data),
        out=Path(args.out or Path("results") / "runs" / stamp),
        engines=engines,
        queries=queries,
        modes=list(MODES) if args.mode == "both" else [args.mode],
        repeat=args.repeat,
        cores=args.cores,
        timeout=args.timeout,
        resume=args.resume,
        spark_master=args.spark_master,
        engine_scheduler=args.engine_scheduler,
        cluster=getattr(args, "cluster_record", None),
        command=_command_line(args),
        explicit_engines=args.engines.strip() != "all",
    )
    try:
        manifest = prepare(plan)
        for note in plan.notes:
            print(f"taskbench compare: note: {note}", file=sys.stderr)
        runner = Runner(plan, manifest, say=lambda line: tqdm.write(line, file=sys.stderr))
    except CompareError as exc:
        return fail(str(exc))
    try:
        written = runner.run()
    except KeyboardInterrupt:
        print(
            f"taskbench compare: interrupted; the records so far are in {plan.out}; "
            f"add the rest with --resume --out {plan.out}",
            file=sys.stderr,
        )
        return 130
    records = read_records(plan.out / RECORDS)
    for line in summary_lines(records):
        print(line)
    print(f"{len(written)} records added to {plan.out / RECORDS}")
    bad = [r for r in records if r.name == "query_seconds" and r.status != "valid"]
    return 1 if bad else 0
