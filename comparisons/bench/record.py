"""One result record for every measurement, its metadata, and the one table formatter.

A `BenchResult` is one measured quantity of one engine in one run, as pyperf keeps them: a
name, a unit (declared once, in `UNITS`), the raw values (one per repeat; never a lone
summary), the parameters that say what was measured, and the run's metadata (machine,
library versions, git commit, timestamp). The benches print their tables from these records
with `format_table` and their ``--json`` documents with `to_document`; the comparison runner
writes the same records.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import statistics
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata as _importlib_metadata
from pathlib import Path
from typing import Any, Literal

import psutil

SCHEMA = 1

#: The unit of every quantity a bench records, declared once.
UNITS: dict[str, str] = {
    # scheduler
    "independent_tasks_per_s": "tasks/s",
    "chain_tasks_per_s": "tasks/s",
    "lag_p50_us": "us",
    "lag_p90_us": "us",
    "lag_p99_us": "us",
    "lag_us": "us",  # every inter-task gap of a run, for the lag histogram
    "per_task_overhead_us": "us",
    "idle_fraction": "fraction",
    "scheduler_peak_rss_mb": "MB",
    "independent_update_graph_us": "us",
    "chain_update_graph_us": "us",
    # balance
    "makespan_s": "s",
    "lower_bound_s": "s",
    "makespan_ratio": "ratio",
    "steals": "count",
    "tasks": "count",
    "sim_predicted_makespan_s": "s",
    # tasks placed by each rule (`engine.state.PlacementRule`)
    "placed_by_policy": "count",
    "placed_by_eager": "count",
    "placed_by_steal": "count",
    "placed_by_restriction": "count",
    # shuffle
    "seconds": "s",
    "cold_seconds": "s",
    "mb_per_s": "MB/s",
    "overhead_ratio": "ratio",
    "sizeof_seconds": "s",
    "peak_worker_rss_bytes": "bytes",
    "idle_worker_rss_bytes": "bytes",
    "memory_over_data": "ratio",
}

Statistic = Literal["median", "min"]
#: A record's status: ``valid`` carries values; every other status carries none.
STATUSES = ("valid", "wrong", "error", "timeout", "no reference", "not implemented yet", "skipped")
_LIBRARIES = ("taskbench", "dask", "distributed", "pyspark", "pandas", "numpy", "pyarrow")


@dataclass(frozen=True)
class BenchResult:
    """One quantity of one engine in one run: raw values, what was measured, where and when.

    ``value`` summarises ``values`` by ``statistic``: the median, or the minimum for a
    baseline taken at its best. A record whose ``status`` is not ``valid`` (a wrong answer, an
    error, a timeout) has no values and no value: its time is never averaged in.
    """

    name: str  #: the quantity, a key of `UNITS`: ``"lag_p99_us"``
    engine: str  #: what was measured: ``"taskbench"``, ``"dask-distributed"``, ``"spark"``
    unit: str
    values: list[float]  #: one per repeat
    params: dict[str, Any] = field(default_factory=dict)  #: workload, policy, rows, …
    metadata: dict[str, Any] = field(default_factory=dict)  #: see `run_metadata`
    statistic: Statistic = "median"
    status: str = "valid"

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}; valid: {', '.join(STATUSES)}")
        if self.status != "valid" and self.values:
            raise ValueError(f"a {self.status!r} record carries no values, got {self.values}")

    @classmethod
    def of(
        cls,
        name: str,
        engine: str,
        values: float | Iterable[float] | None,
        metadata: Mapping[str, Any],
        statistic: Statistic = "median",
        **params: Any,
    ) -> BenchResult | None:
        """A record with the unit from `UNITS`; None when there is no value to record."""
        if values is None:
            return None
        vals = [float(values)] if isinstance(values, int | float) else [float(v) for v in values]
        if not vals:
            return None
        return cls(name, engine, UNITS[name], vals, dict(params), dict(metadata), statistic)

    @property
    def value(self) -> float | None:
        if not self.values:
            return None
        return min(self.values) if self.statistic == "min" else statistics.median(self.values)

    def to_json(self, *, metadata: bool = True) -> dict[str, Any]:
        """A JSON-ready dict; ``metadata=False`` leaves out what a document states once."""
        out: dict[str, Any] = {
            "name": self.name,
            "engine": self.engine,
            "unit": self.unit,
            "values": self.values,
            "value": self.value,
            "statistic": self.statistic,
            "status": self.status,
            "params": self.params,
        }
        if metadata:
            out["metadata"] = self.metadata
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any], metadata: Mapping[str, Any] | None = None):
        """The record `to_json` wrote (``metadata`` for one written without its own)."""
        return cls(
            data["name"],
            data["engine"],
            data["unit"],
            [float(v) for v in data["values"]],
            dict(data.get("params", {})),
            dict(data.get("metadata", metadata or {})),
            data.get("statistic", "median"),
            data.get("status", "valid"),
        )


def collect(records: Iterable[BenchResult | None]) -> list[BenchResult]:
    """The records that exist (`BenchResult.of` gives None for a missing value)."""
    return [r for r in records if r is not None]


def find(results: Iterable[BenchResult], name: str, engine: str, **params: Any) -> float | None:
    """The value of the one record with this name, engine and (a subset of) params, or None."""
    for r in results:
        if (
            r.name == name
            and r.engine == engine
            and all(r.params.get(k) == v for k, v in params.items())
        ):
            return r.value
    return None


def to_document(
    bench: str, results: Sequence[BenchResult], metadata: Mapping[str, Any], **params: Any
) -> dict[str, Any]:
    """A bench's ``--json`` object: the run's metadata and parameters once, then every record."""
    return {
        "schema": SCHEMA,
        "bench": bench,
        "params": params,
        "metadata": dict(metadata),
        "results": [r.to_json(metadata=r.metadata != metadata) for r in results],
    }


# ---------------------------------------------------------------- metadata


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, OS and Python of this machine."""
    return {
        "cpu": _cpu_model(),
        "cores": psutil.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str | None]:
    """Installed versions of the engine and its peers (None: not installed); nothing imported."""
    out: dict[str, str | None] = {}
    for name in _LIBRARIES:
        try:
            out[name] = _importlib_metadata.version(name)
        except _importlib_metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_state(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The commit of the checkout holding this package, and whether it has uncommitted changes."""
    where = str(path or Path(__file__).resolve().parent)

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", where, *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    if sha is None:
        return {"sha": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"sha": sha.strip(), "dirty": None if status is None else bool(status.strip())}


def run_metadata(**extra: Any) -> dict[str, Any]:
    """What every record of this run carries: the command line, machine, versions, git, UTC
    timestamp."""
    return {
        "command": shlex.join(["taskbench", *sys.argv[1:]]),
        "machine": machine(),
        "versions": versions(),
        "git": git_state(),
        "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **extra,
    }


# ---------------------------------------------------------------- table


def fmt(value: float | None, spec: str) -> str:
    """``spec.format(value)``, or ``-`` for a missing value."""
    return "-" if value is None else spec.format(value)


def format_table(header: Sequence[str], rows: Iterable[Sequence[str]], min_width: int = 0) -> str:
    """Plain-text columns: the first left-aligned, the rest right-aligned, two spaces apart.

    A row of one cell is a note and spans the table.
    """
    rows = [list(r) for r in rows]
    ncols = len(header)
    widths = [len(h) for h in header]
    for r in rows:
        if len(r) == ncols:
            widths = [max(w, len(c)) for w, c in zip(widths, r, strict=True)]
    widths = [widths[0]] + [max(w, min_width) for w in widths[1:]]

    def line(cells: Sequence[str]) -> str:
        if len(cells) != ncols:
            return "  ".join(cells)
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    return "\n".join(line(r) for r in [list(header), *rows])
