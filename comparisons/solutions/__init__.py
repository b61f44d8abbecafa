"""One solution module per engine, all answering the problem set under the same query names.

The engine interface: a solution module ``comparisons/solutions/<module>.py`` defines

- ``NAME`` (str) and ``version() -> str``;
- ``start(config: EngineConfig) -> session``: start the engine (a SparkSession, a dask
  cluster and client, a DuckDB connection; None for pandas). Timed as startup;
- ``load(session, data_dir, config) -> handle``: load or register the dataset the engine's
  natural way, reading :data:`comparisons.queries.TRIP_COLUMNS` from
  :func:`comparisons.data.trip_files` and the zones table, and binding
  :func:`comparisons.queries.parameters`. Timed as load. The handle has ``.session``;
- ``q01(handle) … q12(handle) -> pandas.DataFrame``: one function per query id, returning
  the answer with the registry's column names (:mod:`comparisons.normalize` fixes dtypes and
  order, so any dtype that holds the right values will do);
- ``stop(session)``: release everything ``start`` made.

``setup(name, data_dir, config)`` and ``teardown(handle)`` below compose these for callers that
do not time startup and load apart. Adding an engine is one module with those names plus an
entry in :data:`ENGINES`: ``engine`` is already listed, and until ``solutions/engine.py``
exists every caller sees :class:`NotImplementedYet` rather than a crash. A module may also leave
a query out: that query is "not implemented yet" for it. ``TASKBENCH_SOLUTIONS=name=module``
adds a module without editing the registry (a solution under development, a test double).

Settings that differ from an engine's defaults live in ``comparisons/configs/<name>.toml``:
each key is ``{ value = …, reason = "…" }`` inside a section the solution reads. String values
may say ``{cores}`` or ``{cores*K}``: every engine gets the same core count. The sections
``[memory]`` and ``[scan]`` hold the ``[load]`` settings of a comparison mode
(:data:`MODES`, :meth:`EngineConfig.for_mode`): in ``memory`` every engine holds the data in
its own memory before the queries, in ``scan`` every query starts from the parquet files.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
from taskbench.comparisons.queries import QUERY_IDS

# Engine name -> solution module. pandas is the reference answer.
ENGINES: dict[str, str] = {
    "pandas": "taskbench.comparisons.solutions.pandas_",
    "engine": "taskbench.comparisons.solutions.engine",
    "duckdb": "taskbench.comparisons.solutions.duckdb_",
    "spark": "taskbench.comparisons.solutions.spark",
    "dask": "taskbench.comparisons.solutions.dask_",
}
REFERENCE = "pandas"
# "name=module,…": extra solution modules (one under development, or a test double).
EXTRA_ENV = "TASKBENCH_SOLUTIONS"
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
#: Comparison modes: the data held in each engine's memory first, or read by every query.
MODES = ("memory", "scan")
_CORES = re.compile(r"\{cores(?:\s*\*\s*(\d+))?\}")


class NotImplementedYet(LookupError):
    """The engine has no solution module yet, or the module lacks this query."""


@dataclass(frozen=True)
class Setting:
    """One non-default setting and the reason for it."""

    value: Any
    reason: str


@dataclass(frozen=True)
class EngineConfig:
    """An engine's reviewable settings (from its TOML file) and the run's core count."""

    engine: str
    cores: int
    sections: dict[str, dict[str, Setting]] = field(default_factory=dict)
    path: str | None = None

    def section(self, name: str) -> dict[str, Any]:
        """The values of one section, with ``{cores}`` filled in."""
        return {k: _fill(s.value, self.cores) for k, s in self.sections.get(name, {}).items()}

    def get(self, section: str, key: str, default: Any = None) -> Any:
        """One value, with ``{cores}`` filled in."""
        return self.section(section).get(key, default)

    def with_value(self, section: str, key: str, value: Any, reason: str) -> EngineConfig:
        """A copy with one setting replaced (a command-line override, with its reason)."""
        sections = {name: dict(items) for name, items in self.sections.items()}
        sections.setdefault(section, {})[key] = Setting(value, reason)
        return EngineConfig(self.engine, self.cores, sections, self.path)

    def for_mode(self, mode: str) -> EngineConfig:
        """The config of one comparison mode: ``[load]`` with ``[<mode>]``'s keys over it."""
        if mode not in MODES:
            raise KeyError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
        sections = {name: dict(items) for name, items in self.sections.items()}
        load = sections.pop("load", {})
        load.update(sections.pop(mode, {}))
        for other in MODES:
            sections.pop(other, None)
        if load:
            sections["load"] = load
        return EngineConfig(self.engine, self.cores, sections, self.path)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a results record: every filled-in value with its reason."""
        return {
            "engine": self.engine,
            "cores": self.cores,
            "path": self.path,
            "settings": {
                name: {
                    k: {"value": _fill(s.value, self.cores), "reason": s.reason}
                    for k, s in items.items()
                }
                for name, items in self.sections.items()
            },
        }


def _fill(value: Any, cores: int) -> Any:
    if not isinstance(value, str) or "{cores" not in value:
        return value
    filled = _CORES.sub(lambda m: str(cores * int(m.group(1) or 1)), value)
    return int(filled) if filled.isdigit() else filled


def load_config(
    engine: str, *, cores: int | None = None, path: str | os.PathLike[str] | None = None
) -> EngineConfig:
    """Read ``configs/<engine>.toml`` (none is an empty config); every key needs a reason."""
    cores = cores or os.cpu_count() or 1
    if cores < 1:
        raise ValueError(f"cores must be at least 1, got {cores}")
    file = Path(path) if path is not None else CONFIG_DIR / f"{engine}.toml"
    if not file.exists():
        if path is not None:
            raise FileNotFoundError(f"no engine config at {file}")
        return EngineConfig(engine, cores)
    try:
        raw = tomllib.loads(file.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{file}: not valid TOML: {exc}") from None
    sections: dict[str, dict[str, Setting]] = {}
    for name, items in raw.items():
        if not isinstance(items, dict):
            raise ValueError(f"{file}: top-level key {name!r} must be a [section]")
        sections[name] = {}
        for key, entry in items.items():
            if not (isinstance(entry, dict) and set(entry) == {"value", "reason"}):
                raise ValueError(f'{file}: [{name}] {key} must be {{ value = …, reason = "…" }}')
            if not str(entry["reason"]).strip():
                raise ValueError(f"{file}: [{name}] {key} has an empty reason")
            sections[name][key] = Setting(entry["value"], str(entry["reason"]))
    return EngineConfig(engine, cores, sections, str(file))


def all_engines() -> dict[str, str]:
    """:data:`ENGINES` plus any extra modules named in ``$TASKBENCH_SOLUTIONS``."""
    engines = dict(ENGINES)
    for item in os.environ.get(EXTRA_ENV, "").split(","):
        name, _, module = item.strip().partition("=")
        if name and module:
            engines[name.strip()] = module.strip()
        elif item.strip():
            raise ValueError(f"{EXTRA_ENV}: expected name=module, got {item.strip()!r}")
    return engines


def check_engine_name(name: str) -> str:
    """``name`` if it is a known engine; otherwise a :class:`KeyError` listing them."""
    engines = all_engines()
    if name not in engines:
        raise KeyError(f"unknown engine {name!r}; valid: {', '.join(engines)}")
    return name


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def is_implemented(name: str) -> bool:
    """Whether the engine's solution module exists (without importing it)."""
    return _module_exists(all_engines()[check_engine_name(name)])


def load_solution(name: str) -> ModuleType:
    """Import an engine's solution module; :class:`NotImplementedYet` if it does not exist."""
    module = all_engines()[check_engine_name(name)]
    if not _module_exists(module):
        raise NotImplementedYet(f"{name}: not implemented yet (no {module} module)")
    return importlib.import_module(module)


def query_function(solution: ModuleType, query_id: str) -> Any:
    """The solution's function for ``query_id``; :class:`NotImplementedYet` if it has none."""
    if query_id not in QUERY_IDS:
        raise KeyError(f"unknown query {query_id!r}; valid: {', '.join(QUERY_IDS)}")
    function = getattr(solution, query_id, None)
    if function is None:
        raise NotImplementedYet(f"{solution.NAME}: {query_id} not implemented yet")
    return function


def setup(name: str, data_dir: str | os.PathLike[str], config: EngineConfig | None = None) -> Any:
    """Start an engine and load a dataset into it; returns the handle the queries take."""
    solution = load_solution(name)
    config = config or load_config(name)
    session = solution.start(config)
    try:
        return solution.load(session, data_dir, config)
    except BaseException:
        solution.stop(session)
        raise


def teardown(handle: Any) -> None:
    """Stop the engine behind a handle made by :func:`setup`."""
    solution = importlib.import_module(type(handle).__module__)
    solution.stop(handle.session)


def run_query(solution: ModuleType, handle: Any, query_id: str) -> pd.DataFrame:
    """Run one query on a loaded handle."""
    return query_function(solution, query_id)(handle)
