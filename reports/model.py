"""The report's model: loaded runs -> headline tables, scores, speed-ups and the engine's story.

Every number here comes from `taskbench.comparisons.stats`; this module only decides which
records feed it:

- A cell is one engine × query × mode. Its records are keyed by run index; when a resumed
  run recorded a run twice, the later line wins. Hot = the valid runs with ``cold`` false;
  cold = the valid run 1.
- A cell is valid only when every record of it is valid. Otherwise it takes the status of its
  worst record (wrong, then error, timeout, not implemented yet, no reference, skipped) and
  carries no number at all: one wrong answer makes the engine's answer to that query wrong.
- The score (ClickBench's) is over hot medians. Wrong, error, timeout and not implemented
  count as failures (None); a skipped query, one with no reference answer, or no record at
  all is left out of that engine's score.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from taskbench.comparisons import stats
from taskbench.comparisons.bench.record import BenchResult
from taskbench.reports.loader import BenchDocument, QueryInfo, Run, Stream, read_stream

#: Worst first: the status a cell takes when its records disagree.
PRECEDENCE = ("wrong", "error", "timeout", "not implemented yet", "no reference", "skipped")
#: Statuses shown in red: the engine ran and failed.
FAILED = ("wrong", "error", "timeout")
#: Statuses that count as a failure in the score.
SCORED_FAILURES = ("wrong", "error", "timeout", "not implemented yet")
NO_RECORD = "no record"
#: The engine under test, as `taskbench compare` names it: set against each peer.
SUBJECT = "engine"
#: Names that mark a peer's stream file (``scheduler-stream-dask.jsonl``).
PEERS = ("dask", "spark", "duckdb", "pandas")

#: The command that makes each bench input, for the line shown when it is absent.
BENCH_COMMANDS = {
    "stream": "taskbench bench scheduler --vs dask --stream-out RUN/bench/scheduler-stream.jsonl",
    "scheduler": "taskbench bench scheduler --vs dask --json-out RUN/bench/scheduler.json",
    "balance": "taskbench bench balance --vs dask --json-out RUN/bench/balance.json "
    "--stream-out RUN/bench/balance",
    "shuffle": "taskbench bench shuffle --sizeof deep,sampled --json-out RUN/bench/shuffle.json",
}


# ---------------------------------------------------------------- headline tables


@dataclass(frozen=True)
class Cell:
    """One engine × query × mode: hot runs summarised, the cold run beside, or a status only."""

    engine: str
    query: str
    mode: str
    status: str
    hot: tuple[float, ...] = ()
    cold: float | None = None
    detail: str = ""

    @property
    def valid(self) -> bool:
        return self.status == "valid"

    @property
    def failed(self) -> bool:
        return self.status in FAILED

    @cached_property
    def summary(self) -> stats.Summary | None:
        return stats.summarize(self.hot) if self.valid and self.hot else None

    @property
    def median(self) -> float | None:
        s = self.summary
        return None if s is None else s.median


@dataclass(frozen=True)
class Change:
    """A ratio of medians with its interval and words, or why there is none (``words``)."""

    engine: str
    mode: str
    query: str
    ratio: stats.Ratio | None
    words: str
    against: str = ""  #: the baseline's name

    @property
    def kind(self) -> str:
        """``faster``, ``slower``, ``unclear`` (the interval holds 1) or ``none`` (no ratio)."""
        if self.ratio is None:
            return "none"
        if not self.ratio.clear:
            return "unclear"
        return "faster" if self.ratio.value >= 1 else "slower"


def change(
    engine: str, mode: str, query: str, subject: Cell | None, baseline: Cell | None,
    subject_name: str, baseline_name: str,
) -> Change:  # fmt: skip
    """``subject`` against ``baseline``: stats.speedup of their hot runs, and stats.verdict."""
    for cell, name in ((subject, subject_name), (baseline, baseline_name)):
        if cell is None:
            return Change(engine, mode, query, None, f"no record in {name}", baseline_name)
        if not cell.valid:
            return Change(engine, mode, query, None, f"{name}: {cell.status}", baseline_name)
        if not cell.hot:
            return Change(engine, mode, query, None, f"{name}: no hot run", baseline_name)
    try:
        ratio = stats.speedup(subject.hot, baseline.hot)  # type: ignore[union-attr]
    except ValueError as e:
        return Change(engine, mode, query, None, f"no ratio ({e})", baseline_name)
    words = stats.verdict(ratio, subject_name, baseline_name)
    return Change(engine, mode, query, ratio, words, baseline_name)


@dataclass
class ModeTable:
    """The headline of one mode: one cell per engine × query, a score per engine."""

    mode: str
    engines: list[str]
    queries: list[QueryInfo]
    cells: dict[tuple[str, str], Cell]
    scores: dict[str, float | None]
    reference: str
    speedups: list[Change]  #: each engine's hot runs against the reference's, per query
    versus: list[Change]  #: the engine under test against each peer, per query

    def cell(self, engine: str, query: str) -> Cell:
        return self.cells[engine, query]

    def rows(self) -> list[tuple[QueryInfo, list[Cell]]]:
        return [(q, [self.cells[e, q.id] for e in self.engines]) for q in self.queries]

    def versus_tally(self) -> dict[str, Counter[str]]:
        """{peer: how many queries the engine is faster, slower, unclear or has no ratio}."""
        tally: dict[str, Counter[str]] = {}
        for c in self.versus:
            tally.setdefault(c.against, Counter())[c.kind] += 1
        return tally

    def without_time(self) -> list[Cell]:
        """The cells that show a status instead of a time, in table order (with the why)."""
        return [c for _, cells in self.rows() for c in cells if not c.valid]


def _key(r: BenchResult) -> tuple[str, str, str]:
    return r.engine, str(r.params.get("mode", "")), str(r.params.get("query", ""))


def _run_index(r: BenchResult) -> int:
    try:
        return int(r.params.get("run", 0))
    except (TypeError, ValueError):
        return 0


def records_by_cell(run: Run) -> tuple[dict[tuple[str, str, str], dict[int, BenchResult]], int]:
    """{(engine, mode, query): {run index: record}}, the later line winning; and how many
    records a later one superseded (a resumed run)."""
    out: dict[tuple[str, str, str], dict[int, BenchResult]] = defaultdict(dict)
    superseded = 0
    for r in run.query_records():
        runs = out[_key(r)]
        superseded += _run_index(r) in runs
        runs[_run_index(r)] = r
    return out, superseded


def make_cell(engine: str, query: str, mode: str, records: Iterable[BenchResult]) -> Cell:
    """The cell of these records (the policy is in the module docstring)."""
    records = sorted(records, key=_run_index)
    if not records:
        return Cell(engine, query, mode, NO_RECORD)
    bad = [r for r in records if r.status != "valid"]
    if bad:
        rank = {s: i for i, s in enumerate(PRECEDENCE)}
        worst = min(bad, key=lambda r: rank.get(r.status, len(rank)))
        return Cell(engine, query, mode, worst.status, detail=str(worst.params.get("detail") or ""))
    hot = tuple(v for r in records if not r.params.get("cold") for v in r.values)
    cold = next((r.values[0] for r in records if _run_index(r) == 1 and r.values), None)
    return Cell(engine, query, mode, "valid", hot, cold)


def mode_table(run: Run, mode: str, grouped: dict[tuple[str, str, str], dict]) -> ModeTable:
    cells = {
        (e, q.id): make_cell(e, q.id, mode, grouped.get((e, mode, q.id), {}).values())
        for e in run.engines
        for q in run.queries
    }
    times: dict[str, dict[str, float | None]] = {e: {} for e in run.engines}
    for (e, q), cell in cells.items():
        if cell.valid and cell.hot:
            times[e][q] = cell.median
        elif cell.status in SCORED_FAILURES:
            times[e][q] = None
    ref = run.reference
    speedups = [
        change(e, mode, q.id, cells[e, q.id], cells.get((ref, q.id)), e, ref)
        for q in run.queries
        for e in run.engines
        if e != ref and ref in run.engines
    ]
    versus = [
        change(SUBJECT, mode, q.id, cells[SUBJECT, q.id], cells[peer, q.id], SUBJECT, peer)
        for peer in run.engines
        for q in run.queries
        if SUBJECT in run.engines and peer not in (SUBJECT, ref)
    ]
    scores = stats.scores(times)
    return ModeTable(mode, run.engines, run.queries, cells, scores, ref, speedups, versus)


# ---------------------------------------------------------------- startup, setup


@dataclass(frozen=True)
class Overhead:
    """Startup or load time of one engine in one mode (not part of any query's time)."""

    engine: str
    mode: str
    name: str  #: ``start_seconds`` or ``load_seconds``
    status: str
    summary: stats.Summary | None


def overheads(run: Run) -> list[Overhead]:
    groups: dict[tuple[str, str, str], list[BenchResult]] = defaultdict(list)
    for r in run.records:
        if r.name in ("start_seconds", "load_seconds"):
            groups[r.engine, str(r.params.get("mode", "")), r.name].append(r)
    out = []
    for (engine, mode, name), rs in sorted(groups.items()):
        values = [v for r in rs if r.status == "valid" for v in r.values]
        bad = [r.status for r in rs if r.status != "valid"]
        status = bad[0] if bad and not values else "valid"
        summary = stats.summarize(values) if values else None
        out.append(Overhead(engine, mode, name, status, summary))
    return out


@dataclass(frozen=True)
class Setting:
    section: str
    key: str
    value: Any
    reason: str


@dataclass(frozen=True)
class EngineConfig:
    engine: str
    path: str
    sha256: str
    settings: list[Setting]


def engine_configs(run: Run) -> list[EngineConfig]:
    """Every engine's non-default settings with their reasons (run.json ``configs``)."""
    out = []
    for engine, config in run.configs.items():
        config = config or {}
        settings = []
        for section, entries in (config.get("settings") or {}).items():
            for key, entry in (entries or {}).items():
                if isinstance(entry, dict):
                    settings.append(
                        Setting(section, key, entry.get("value"), str(entry.get("reason") or ""))
                    )
                else:
                    settings.append(Setting(section, key, entry, ""))
        out.append(
            EngineConfig(
                engine, str(config.get("path") or ""), str(config.get("sha256") or ""), settings
            )
        )
    return out


# ---------------------------------------------------------------- the engine's own story


@dataclass
class LagSeries:
    """Every inter-task gap of one engine (µs), with the recorded p50 and p99."""

    engine: str
    values: list[float]
    p50: float
    p99: float


@dataclass
class BalanceRow:
    workload: str
    policy: str
    engine: str
    makespan_ratio: float | None
    idle_fraction: float | None


@dataclass
class ShuffleCell:
    """One engine's shuffle with one sizeof mode: overhead over pandas and its wall times."""

    overhead: float | None
    low: float | None
    high: float | None
    seconds: stats.Summary | None
    values: tuple[float, ...] = ()


@dataclass
class ShuffleRow:
    engine: str
    method: str
    rows: Any
    partitions: Any
    by_sizeof: dict[str, ShuffleCell]
    sampled_vs_deep: Change | None = None


@dataclass
class Story:
    """The engine's own measurements from ``bench/``; a ``missing`` line for each absent input."""

    streams: list[Stream] = field(default_factory=list)
    lag: list[LagSeries] = field(default_factory=list)
    balance_panels: list[tuple[str, Stream]] = field(default_factory=list)
    balance_rows: list[BalanceRow] = field(default_factory=list)
    shuffle_rows: list[ShuffleRow] = field(default_factory=list)
    shuffle_peers: list[ShuffleRow] = field(default_factory=list)
    shuffle_baseline: stats.Summary | None = None
    sizeofs: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)  #: section -> what is absent and why


def _value(results: Sequence[BenchResult], name: str, engine: str) -> float | None:
    return next((r.value for r in results if r.name == name and r.engine == engine), None)


def lag_series(doc: BenchDocument) -> list[LagSeries]:
    out = []
    engines = list(dict.fromkeys(r.engine for r in doc.named("lag_us") if r.values))
    engines.sort(key=lambda e: (not e.startswith("taskbench"), e))
    for engine in engines:
        values = [v for r in doc.named("lag_us") if r.engine == engine for v in r.values]
        p50 = _value(doc.results, "lag_p50_us", engine)
        p99 = _value(doc.results, "lag_p99_us", engine)
        out.append(
            LagSeries(
                engine,
                values,
                float(np.percentile(values, 50)) if p50 is None else p50,
                float(np.percentile(values, 99)) if p99 is None else p99,
            )
        )
    return out


def balance(doc: BenchDocument, story: Story) -> None:
    streams = doc.params.get("streams") or {}
    unreadable = []
    for title, relative in streams.items():
        path = doc.path.parent / str(relative)
        if path.is_file():
            story.balance_panels.append((str(title), read_stream(path)))
        else:
            unreadable.append(str(relative))
    if unreadable:
        story.missing["balance-streams"] = (
            f"stream files listed in {doc.path.name} are missing: {', '.join(unreadable)}"
        )
    elif not streams:
        story.missing["balance-streams"] = (
            f"{doc.path.name} lists no stream files (params 'streams'), so no pictures"
        )
    for r in doc.named("makespan_ratio"):
        match = {"workload": r.params.get("workload"), "policy": r.params.get("policy")}
        idle = next(
            (
                x.value
                for x in doc.named("idle_fraction")
                if x.engine == r.engine and all(x.params.get(k) == v for k, v in match.items())
            ),
            None,
        )
        story.balance_rows.append(
            BalanceRow(str(match["workload"]), str(match["policy"]), r.engine, r.value, idle)
        )


def _family(engine: str, method: str, sizeof: str | None) -> str:
    """``taskbench-tasks-deep`` -> ``taskbench``: the engine without its method and sizeof."""
    for suffix in (f"-{sizeof}", f"-{method}"):
        if suffix != "-None" and engine.endswith(suffix):
            engine = engine[: -len(suffix)]
    return engine


def shuffle(doc: BenchDocument, story: Story) -> None:
    def seconds(engine: str, params: dict) -> BenchResult | None:
        keys = ("method", "sizeof", "rows", "partitions")
        return next(
            (
                r
                for r in doc.named("seconds")
                if r.engine == engine and all(r.params.get(k) == params.get(k) for k in keys)
            ),
            None,
        )

    rows: dict[tuple, ShuffleRow] = {}
    for r in doc.named("overhead_ratio"):
        if r.engine == "pandas":
            continue
        p = r.params
        method, sizeof = str(p.get("method", "")), p.get("sizeof")
        secs = seconds(r.engine, p)
        low, high = p.get("low"), p.get("high")
        cell = ShuffleCell(
            r.value,
            None if low is None else float(low),
            None if high is None else float(high),
            stats.summarize(secs.values) if secs is not None and secs.values else None,
            tuple(secs.values) if secs is not None else (),
        )
        family = _family(r.engine, method, sizeof)
        key = (family, method, p.get("rows"), p.get("partitions"), sizeof is None)
        row = rows.setdefault(
            key, ShuffleRow(family, method, p.get("rows"), p.get("partitions"), {})
        )
        row.by_sizeof[str(sizeof) if sizeof is not None else ""] = cell
    sizeofs = sorted({s for row in rows.values() for s in row.by_sizeof if s})
    story.sizeofs = sorted(sizeofs, key=lambda s: (s != "deep", s))
    for (_, _, _, _, peer), row in rows.items():
        if peer:
            story.shuffle_peers.append(row)
            continue
        deep, sampled = row.by_sizeof.get("deep"), row.by_sizeof.get("sampled")
        if deep is not None and sampled is not None and deep.values and sampled.values:
            a = Cell(row.engine, row.method, "", "valid", sampled.values)
            b = Cell(row.engine, row.method, "", "valid", deep.values)
            row.sampled_vs_deep = change(
                row.engine, "", row.method, a, b, "sampled sizeof", "deep sizeof"
            )
        story.shuffle_rows.append(row)
    base = [v for r in doc.named("seconds") if r.engine == "pandas" for v in r.values]
    story.shuffle_baseline = stats.summarize(base) if base else None


def story(run: Run) -> Story:
    out = Story()
    balance_doc = run.benches.get("balance")
    listed = set()
    if balance_doc is not None:
        for rel in (balance_doc.params.get("streams") or {}).values():
            listed.add((balance_doc.path.parent / str(rel)).resolve())
    paths = [p for p in run.stream_paths if p.resolve() not in listed]
    # the engine's own stream first, its peers' after it
    paths.sort(key=lambda p: (any(peer in p.stem for peer in PEERS), p.name))
    out.streams = [read_stream(p) for p in paths]
    if not out.streams:
        out.missing["stream"] = f"no task stream in bench/; {BENCH_COMMANDS['stream']} makes one"
    scheduler = run.benches.get("scheduler")
    if scheduler is not None:
        out.lag = lag_series(scheduler)
    if not out.lag:
        where = "no bench/scheduler.json" if scheduler is None else "no lag_us records"
        out.missing["lag"] = f"{where}; {BENCH_COMMANDS['scheduler']} makes them"
    if balance_doc is not None:
        balance(balance_doc, out)
    else:
        out.missing["balance"] = f"no bench/balance.json; {BENCH_COMMANDS['balance']} makes it"
    shuffle_doc = run.benches.get("shuffle")
    if shuffle_doc is not None:
        shuffle(shuffle_doc, out)
    if not out.shuffle_rows and not out.shuffle_peers:
        where = "no bench/shuffle.json" if shuffle_doc is None else "no overhead_ratio records"
        out.missing["shuffle"] = f"{where}; {BENCH_COMMANDS['shuffle']} makes them"
    return out


# ---------------------------------------------------------------- the whole report


@dataclass
class RunComparison:
    """A later run (``new``) against the first (``base``), per engine, mode and query."""

    base: Run
    new: Run
    changes: dict[str, list[Change]]  #: mode -> changes


@dataclass(frozen=True)
class AsvLink:
    """Where the asv history is (relative to the site), or the line saying why it is not."""

    href: str | None
    note: str = ""


@dataclass
class Report:
    """Everything the exporters show; ``run`` is the run reported in full (the last given)."""

    runs: list[Run]
    tables: list[ModeTable]
    overheads: list[Overhead]
    configs: list[EngineConfig]
    story: Story
    comparisons: list[RunComparison]
    superseded: int  #: records a later line of a resumed run replaced

    @property
    def run(self) -> Run:
        return self.runs[-1]

    def overhead(self, engine: str, mode: str, name: str) -> Overhead | None:
        """The startup (``start_seconds``) or load time of ``engine`` in ``mode``, if recorded."""
        return next(
            (o for o in self.overheads if (o.engine, o.mode, o.name) == (engine, mode, name)),
            None,
        )


def compare_runs(base: Run, new: Run) -> RunComparison:
    base_groups, _ = records_by_cell(base)
    new_groups, _ = records_by_cell(new)
    changes: dict[str, list[Change]] = {}
    for mode in new.modes:
        if mode not in base.modes:
            continue
        rows = []
        for q in new.queries:
            for e in new.engines:
                if e not in base.engines:
                    continue
                b = make_cell(e, q.id, mode, base_groups.get((e, mode, q.id), {}).values())
                n = make_cell(e, q.id, mode, new_groups.get((e, mode, q.id), {}).values())
                rows.append(change(e, mode, q.id, n, b, new.run_id, base.run_id))
        changes[mode] = rows
    return RunComparison(base, new, changes)


def analyse(runs: Sequence[Run]) -> Report:
    """The report of ``runs``: the last in full, and each later run against the first."""
    if not runs:
        raise ValueError("no runs to report")
    run = runs[-1]
    grouped, superseded = records_by_cell(run)
    tables = [mode_table(run, mode, grouped) for mode in run.modes]
    comparisons = [compare_runs(runs[0], other) for other in runs[1:]]
    return Report(
        list(runs),
        tables,
        overheads(run),
        engine_configs(run),
        story(run),
        comparisons,
        superseded,
    )
