"""Files -> plain dataclasses: run folders, bench documents and task streams; nothing else.

A run folder (written by ``taskbench compare``) holds ``run.json`` (what was run, where, how),
``records.jsonl`` (one `BenchResult` per line) and, optionally, ``bench/`` with bench ``--json``
documents and task-stream JSONL files. Anything the report cannot read is a
`ReportError` whose message names the file, and the line for a JSONL file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskbench.comparisons.bench.record import BenchResult

RUN_SCHEMA = 1


class ReportError(Exception):
    """An input the report cannot read or an output it cannot write: the one line the user sees."""


@dataclass(frozen=True)
class QueryInfo:
    id: str
    title: str


@dataclass(frozen=True)
class BenchDocument:
    """One bench ``--json`` document; its records carry the document's metadata if not their own."""

    name: str
    path: Path
    params: dict[str, Any]
    metadata: dict[str, Any]
    results: list[BenchResult]

    def named(self, name: str) -> list[BenchResult]:
        return [r for r in self.results if r.name == name]


@dataclass(frozen=True)
class Transfer:
    source: str
    nbytes: int
    start: float
    stop: float


@dataclass(frozen=True)
class Task:
    """One task of a stream: where (worker, thread) and when (start, stop) it ran."""

    key: str
    prefix: str
    worker: str
    thread: int
    start: float
    stop: float
    nbytes: int = 0
    transfers: tuple[Transfer, ...] = ()
    placed_by: str | None = None


@dataclass(frozen=True)
class Stream:
    """A task-stream JSONL file: a ``{"meta": ...}`` first line, then one task per line."""

    path: Path
    meta: dict[str, Any]
    tasks: list[Task]

    @property
    def title(self) -> str:
        return str(self.meta.get("title") or self.path.stem)


@dataclass
class Run:
    """One run folder: run.json's fields, every record, and the bench inputs beside them."""

    path: Path
    run_id: str
    command: str
    commands: list[str]  #: every command that wrote into the run (a resumed run has several)
    engines: list[str]
    queries: list[QueryInfo]
    modes: list[str]
    repeat: int | None
    cores: int | None
    timeout: float | None
    reference: str
    single_threaded: list[str]
    data: dict[str, Any]
    machine: dict[str, Any]
    versions: dict[str, Any]
    git: dict[str, Any]
    started: str | None
    cluster: Any
    configs: dict[str, Any]
    notes: list[str]
    records: list[BenchResult]
    benches: dict[str, BenchDocument] = field(default_factory=dict)
    stream_paths: list[Path] = field(default_factory=list)  #: bench/*stream*.jsonl

    @property
    def bench_commands(self) -> list[str]:
        """The commands that wrote bench/'s documents (their metadata's ``command``)."""
        docs = self.benches.values()
        return [str(d.metadata["command"]) for d in docs if "command" in d.metadata]

    def query_records(self) -> list[BenchResult]:
        return [r for r in self.records if r.name == "query_seconds"]


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ReportError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}:{e.lineno}: not JSON ({e.msg})") from None


def _jsonl(path: Path):
    """(line number, object) of every non-blank line of ``path``."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ReportError(f"{path}: cannot read ({e.strerror or e})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as e:
            raise ReportError(f"{path}:{number}: not JSON ({e.msg})") from None


def _record(data: Any, where: str, metadata: dict[str, Any] | None = None) -> BenchResult:
    if not isinstance(data, dict):
        raise ReportError(f"{where}: not a record (expected a JSON object)")
    try:
        return BenchResult.from_json(data, metadata)
    except KeyError as e:
        raise ReportError(f"{where}: not a record (no {e.args[0]!r})") from None
    except (TypeError, ValueError) as e:
        raise ReportError(f"{where}: not a record ({e})") from None


def read_records(path: Path) -> list[BenchResult]:
    """Every `BenchResult` of a records.jsonl file."""
    return [_record(obj, f"{path}:{n}") for n, obj in _jsonl(path)]


def read_bench_document(path: Path) -> BenchDocument:
    """A bench ``--json`` document (`record.to_document`)."""
    doc = _read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        raise ReportError(f"{path}: not a bench document (no 'results' list)")
    metadata = doc.get("metadata") or {}
    results = [_record(r, f"{path}: result {i}", metadata) for i, r in enumerate(doc["results"], 1)]
    name = str(doc.get("bench") or path.stem)
    return BenchDocument(name, path, dict(doc.get("params") or {}), metadata, results)


def read_stream(path: Path) -> Stream:
    """A task-stream JSONL file (``taskbench bench … --stream-out``)."""
    meta: dict[str, Any] = {}
    tasks: list[Task] = []
    for number, obj in _jsonl(path):
        if not isinstance(obj, dict):
            raise ReportError(f"{path}:{number}: not a task (expected a JSON object)")
        if "meta" in obj and not tasks and not meta:
            meta = dict(obj["meta"] or {})
            continue
        try:
            transfers = tuple(
                Transfer(str(t.get("source", "")), int(t.get("nbytes") or 0),
                         float(t["start"]), float(t["stop"]))
                for t in obj.get("transfers") or ()
            )  # fmt: skip
            tasks.append(
                Task(
                    key=str(obj["key"]),
                    prefix=str(obj.get("prefix") or obj["key"]),
                    worker=str(obj["worker"]),
                    thread=int(obj.get("thread") or 0),
                    start=float(obj["start"]),
                    stop=float(obj["stop"]),
                    nbytes=int(obj.get("nbytes") or 0),
                    transfers=transfers,
                    placed_by=obj.get("placed_by"),
                )
            )
        except KeyError as e:
            raise ReportError(f"{path}:{number}: not a task (no {e.args[0]!r})") from None
        except (TypeError, ValueError, AttributeError) as e:
            raise ReportError(f"{path}:{number}: not a task ({e})") from None
    return Stream(path, meta, tasks)


def _list(value: Any) -> list:
    return list(value) if isinstance(value, list | tuple) else []


def load_run(path: str | Path) -> Run:
    """The run folder at ``path``: run.json, records.jsonl and bench/ (when present)."""
    folder = Path(path)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ReportError(f"run folder {str(path)!r} {what}")
    info_path = folder / "run.json"
    if not info_path.is_file():
        raise ReportError(f"{folder}: no run.json (not a run folder of taskbench compare)")
    info = _read_json(info_path)
    if not isinstance(info, dict):
        raise ReportError(f"{info_path}: not a run description (expected a JSON object)")
    if info.get("schema", RUN_SCHEMA) != RUN_SCHEMA:
        raise ReportError(f"{info_path}: schema {info.get('schema')!r}, expected 1")
    records_path = folder / "records.jsonl"
    if not records_path.is_file():
        raise ReportError(f"{folder}: no records.jsonl")
    records = read_records(records_path)

    queries = []
    for q in _list(info.get("queries")):
        if isinstance(q, dict):
            queries.append(QueryInfo(str(q.get("id")), str(q.get("title") or "")))
        else:
            queries.append(QueryInfo(str(q), ""))
    known = {q.id for q in queries}
    for r in records:  # a query the run recorded but run.json does not list
        q = r.params.get("query")
        if r.name == "query_seconds" and q is not None and str(q) not in known:
            known.add(str(q))
            queries.append(QueryInfo(str(q), ""))
    engines = [str(e) for e in _list(info.get("engines"))]
    engines += sorted({r.engine for r in records} - set(engines))
    modes = [str(m) for m in _list(info.get("modes"))]
    modes += sorted({str(r.params["mode"]) for r in records if "mode" in r.params} - set(modes))

    bench_dir = folder / "bench"
    benches: dict[str, BenchDocument] = {}
    streams: list[Path] = []
    if bench_dir.is_dir():
        for doc_path in sorted(bench_dir.glob("*.json")):
            doc = read_bench_document(doc_path)
            benches[doc.name] = doc
        streams = sorted(bench_dir.glob("*stream*.jsonl"))

    return Run(
        path=folder,
        run_id=str(info.get("run_id") or folder.name),
        command=str(info.get("command") or ""),
        commands=[str(c) for c in _list(info.get("commands"))]
        or ([str(info["command"])] if info.get("command") else []),
        engines=engines,
        queries=queries,
        modes=modes,
        repeat=info.get("repeat"),
        cores=info.get("cores"),
        timeout=info.get("timeout"),
        reference=str(info.get("reference") or "pandas"),
        single_threaded=[str(e) for e in _list(info.get("single_threaded"))],
        data=dict(info.get("data") or {}),
        machine=dict(info.get("machine") or {}),
        versions=dict(info.get("versions") or {}),
        git=dict(info.get("git") or {}),
        started=info.get("started"),
        cluster=info.get("cluster"),
        configs=dict(info.get("configs") or {}),
        notes=[str(n) for n in _list(info.get("notes"))],
        records=records,
        benches=benches,
        stream_paths=streams,
    )
